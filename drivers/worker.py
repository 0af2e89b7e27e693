"""``python -m drivers.worker [--memory-limit B]``: a long-lived analysis child.

It reads one JSON request per line on stdin (``{"path": ..., "format": ..., "cpu_limit": S,
"page_cap": N}``), analyses the documents one after another and writes one JSON line per document
on its stdout: ``{"stats": DocumentStats.to_dict(), "rss": bytes}``, after a first line
``{"ready": true}`` once its imports are done and its limits set (the parent's clock for a document
starts there, not with the interpreter). It exits at the end of its
input, when its parent dies, and after a document that exhausted its memory (its heap may be
damaged). The same limits as the one-shot child (drivers.analyze): RLIMIT_AS for the whole process
(set once, after the imports), RLIMIT_CPU per document (the soft limit is moved to the CPU time used
so far plus the document's allowance), the page cap. The wall-clock limit and the recycling are the
parent's (spooler.jobs.analysis).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
from typing import IO

from drivers.analyze import analyse_one, limit, preload
from drivers.sandbox import die_with_parent

#: A request line longer than this is not one the spooler wrote.
MAX_REQUEST = 64 * 1024


def _rss() -> int:
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve(requests: IO[bytes], replies: IO[str], *, memory_limited: bool) -> int:
    """Answer requests until the end of the input (or a memory exhaustion); the number answered."""
    answered = 0
    while True:
        line = requests.readline(MAX_REQUEST + 1)
        if not line:
            return answered
        if len(line) > MAX_REQUEST or not line.endswith(b"\n"):
            raise SystemExit("drivers.worker: request line too long")
        request = json.loads(line)
        cpu_limit = int(request.get("cpu_limit") or 0)
        if cpu_limit:
            limit(resource.RLIMIT_CPU, math.ceil(_cpu_used()) + cpu_limit)
        stats = analyse_one(str(request["path"]), request.get("format"),
                            page_cap=int(request.get("page_cap") or 0), memory_limited=memory_limited,
                            render_seconds=max(0, cpu_limit - 1))
        replies.write(json.dumps({"stats": stats.to_dict(), "rss": _rss()}) + "\n")
        replies.flush()
        answered += 1
        if stats.status == "unknown" and stats.reason == "memory limit":
            return answered  # start afresh: a MemoryError can leave any library's state half-made


def main(argv: list[str] | None = None) -> int:
    """Set the limits, then answer requests on stdin until it ends."""
    parser = argparse.ArgumentParser(prog="python -m drivers.worker")
    parser.add_argument("--memory-limit", type=int, default=0)
    args = parser.parse_args(argv)
    die_with_parent()
    # The replies get a private copy of stdout; fd 1 goes to stderr, so that a library printing
    # something cannot break the protocol.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    preload()
    if args.memory_limit:
        limit(resource.RLIMIT_AS, args.memory_limit)
    replies.write('{"ready": true}\n')
    replies.flush()
    serve(sys.stdin.buffer, replies, memory_limited=bool(args.memory_limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
