"""``python -m drivers.analyze FILE [--format F] [--memory-limit B] [--cpu-limit S] [--page-cap N]``.

Prints one JSON line.

The child process behind :func:`drivers.sandbox.analyze_isolated`: it sets its own resource limits
first, analyses, and prints the DocumentStats as JSON on stdout. :func:`preload`, :func:`limit` and
:func:`analyse_one` are shared with the long-lived worker (drivers.worker).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.stats import DocumentStats

_MEMORY_SIGNS = ("MemoryError", "failed to map segment", "Cannot allocate memory")


def limit(kind: int, value: int) -> None:
    """Set the soft limit of `kind` to `value` (never above the hard limit)."""
    soft, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, hard))


_limit = limit  # the old private name


def preload() -> None:
    """Import the analysers and the libraries they use: the limits are for the analysis, not for
    the interpreter and libraries."""
    import pypdf  # noqa: F401

    for optional in ("numpy", "PIL.Image"):  # used by the PDF analyser (declared dependencies)
        try:
            __import__(optional)
        except ImportError:
            pass
    import drivers  # noqa: F401
    import drivers.ghostscript  # noqa: F401


def analyse_one(path: str, declared_format: str | None, *, page_cap: int = 0,
                memory_limited: bool = False, render_seconds: float = 0) -> DocumentStats:
    """drivers.analyze_file under the page cap (and `render_seconds` for Ghostscript), with memory
    exhaustion reported as "memory limit"."""
    from dataclasses import replace

    from drivers import Limits, analyze_file
    from drivers.stats import unknown

    limits = Limits(page_cap=page_cap) if page_cap else Limits()
    if render_seconds:
        limits = replace(limits, render_seconds=render_seconds)
    try:
        stats = analyze_file(path, declared_format=declared_format, limits=limits)
    except MemoryError:
        stats = unknown(declared_format or "application/octet-stream", "memory limit")
    if memory_limited and stats.status == "unknown" and any(sign in stats.reason for sign in _MEMORY_SIGNS):
        stats = unknown(stats.format, "memory limit")  # a library that could not load under the limit
    return stats


def main(argv: list[str] | None = None) -> int:
    """Analyse one file under resource limits and print its statistics as JSON."""
    parser = argparse.ArgumentParser(prog="python -m drivers.analyze")
    parser.add_argument("path")
    parser.add_argument("--format", default=None)
    parser.add_argument("--memory-limit", type=int, default=0)
    parser.add_argument("--cpu-limit", type=int, default=0)
    parser.add_argument("--page-cap", type=int, default=0)
    args = parser.parse_args(argv)
    preload()
    if args.memory_limit:
        limit(resource.RLIMIT_AS, args.memory_limit)
    if args.cpu_limit:
        limit(resource.RLIMIT_CPU, args.cpu_limit)
    stats = analyse_one(args.path, args.format, page_cap=args.page_cap, memory_limited=bool(args.memory_limit),
                        render_seconds=max(0, args.cpu_limit - 1))
    json.dump(stats.to_dict(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
