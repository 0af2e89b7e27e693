"""Run an analysis in a child process with a wall-clock timeout, RLIMIT_AS and RLIMIT_CPU; and the
command, request and reply of the long-lived workers (drivers.worker) that the spooler runs.

:func:`analyze_isolated` blocks (call it from a thread, never from the reactor thread) and never
raises: a child that runs out of time, memory or crashes yields status "unknown" with the reason
"time limit", "memory limit" or "crashed".
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

from drivers.stats import DocumentStats, unknown

_ROOT = str(Path(__file__).resolve().parent.parent)


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux PR_SET_PDEATHSIG): an
    analysis worker killed by the spooler, or Ghostscript run by a worker, does not outlive it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the end of stdin still stops a worker between documents


def default_timeout(size: int) -> float:
    """30 s plus 0.1 s per MB of document."""
    return 30.0 + 0.1 * size / 1e6


def analysis_command(path: str | os.PathLike[str], *, declared_format: str | None = None,
                     timeout: float | None = None, memory_limit: int = 1 << 30,
                     page_cap: int = 100_000) -> tuple[list[str], dict[str, str], float]:
    """The child's argv and environment, and the wall-clock timeout to kill it after: for callers
    that run the child themselves (the spooler spawns it from its reactor, so it can kill it)."""
    if timeout is None:
        try:
            timeout = default_timeout(os.path.getsize(path))
        except OSError:
            timeout = default_timeout(0)
    command = [sys.executable, "-m", "drivers.analyze", os.fspath(path),
               "--memory-limit", str(memory_limit),
               "--cpu-limit", str(max(1, math.ceil(timeout)) + 1), "--page-cap", str(page_cap)]
    if declared_format:
        command += ["--format", declared_format]
    env = dict(os.environ)
    env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return command, env, timeout


def result_from(returncode: int, stdout: bytes, stderr: bytes, *,
                declared_format: str | None = None) -> DocumentStats:
    """The statistics a finished child reported, or "unknown" with why it failed."""
    fmt = declared_format or "application/octet-stream"
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return unknown(fmt, "time limit")
    if returncode != 0:
        if b"MemoryError" in stderr:
            return unknown(fmt, "memory limit")
        return unknown(fmt, f"crashed (exit {returncode})")
    try:
        return DocumentStats.from_dict(json.loads(stdout.decode().splitlines()[-1]))
    except (ValueError, IndexError, KeyError, TypeError):
        return unknown(fmt, "crashed: unreadable result")


def analyze_isolated(path: str | os.PathLike[str], *, declared_format: str | None = None,
                     timeout: float | None = None, memory_limit: int = 1 << 30,
                     page_cap: int = 100_000) -> DocumentStats:
    """Analyse `path` in ``python -m drivers.analyze``; kill it after `timeout` seconds.

    `timeout` defaults to :func:`default_timeout` of the file size; `memory_limit` (bytes) is the
    child's RLIMIT_AS, set after its imports; RLIMIT_CPU is the timeout rounded up plus one second.
    """
    fmt = declared_format or "application/octet-stream"
    command, env, timeout = analysis_command(path, declared_format=declared_format, timeout=timeout,
                                             memory_limit=memory_limit, page_cap=page_cap)  # fmt: skip
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return unknown(fmt, "time limit")
    except OSError as error:
        return unknown(fmt, f"crashed: cannot start the analyser: {error}")
    return result_from(done.returncode, done.stdout, done.stderr, declared_format=declared_format)


def worker_command(*, memory_limit: int = 1 << 30) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of a long-lived analysis worker (``python -m drivers.worker``),
    which reads one JSON request per line and answers one JSON line per document."""
    command = [sys.executable, "-m", "drivers.worker", "--memory-limit", str(memory_limit)]
    env = dict(os.environ)
    env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return command, env


def worker_request(path: str | os.PathLike[str], *, declared_format: str | None = None,
                   timeout: float | None = None, page_cap: int = 100_000) -> tuple[bytes, float]:
    """One request line for a worker, and the wall-clock time the document may take (the worker's
    RLIMIT_CPU allowance is that rounded up plus one second, as for the one-shot child)."""
    if timeout is None:
        try:
            timeout = default_timeout(os.path.getsize(path))
        except OSError:
            timeout = default_timeout(0)
    request = {"path": os.fspath(path), "format": declared_format,
               "cpu_limit": max(1, math.ceil(timeout)) + 1, "page_cap": page_cap}
    return (json.dumps(request) + "\n").encode(), timeout


def reply_from(line: bytes, *, declared_format: str | None = None) -> tuple[DocumentStats, int]:
    """The statistics and RSS (bytes) in one worker reply line."""
    fmt = declared_format or "application/octet-stream"
    try:
        reply = json.loads(line)
        return DocumentStats.from_dict(reply["stats"]), int(reply.get("rss") or 0)
    except (ValueError, KeyError, TypeError):
        return unknown(fmt, "crashed: unreadable result"), 0
