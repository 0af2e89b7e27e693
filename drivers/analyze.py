"""``python -m drivers.analyze FILE [--format F] [--memory-limit B] [--cpu-limit S] [--page-cap N]``.

Prints one JSON line.

The child process behind :func:`drivers.sandbox.analyze_isolated`: it sets its own resource limits
first, analyses, and prints the DocumentStats as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys


def _limit(kind: int, value: int) -> None:
    soft, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, hard))


def main(argv: list[str] | None = None) -> int:
    """Analyse one file under resource limits and print its statistics as JSON."""
    parser = argparse.ArgumentParser(prog="python -m drivers.analyze")
    parser.add_argument("path")
    parser.add_argument("--format", default=None)
    parser.add_argument("--memory-limit", type=int, default=0)
    parser.add_argument("--cpu-limit", type=int, default=0)
    parser.add_argument("--page-cap", type=int, default=0)
    args = parser.parse_args(argv)
    # Load the code first: the limits are for the analysis, not for the interpreter and libraries.
    import pypdf  # noqa: F401

    for optional in ("numpy", "PIL.Image"):  # used by the PDF analyser when installed
        try:
            __import__(optional)
        except ImportError:
            pass

    from drivers import Limits, analyze_file
    from drivers.stats import unknown

    if args.memory_limit:
        _limit(resource.RLIMIT_AS, args.memory_limit)
    if args.cpu_limit:
        _limit(resource.RLIMIT_CPU, args.cpu_limit)
    limits = Limits(page_cap=args.page_cap) if args.page_cap else Limits()
    try:
        stats = analyze_file(args.path, declared_format=args.format, limits=limits)
    except MemoryError:
        stats = unknown(args.format or "application/octet-stream", "memory limit")
    if args.memory_limit and stats.status == "unknown" and (
            "MemoryError" in stats.reason or "failed to map segment" in stats.reason
            or "Cannot allocate memory" in stats.reason):
        stats = unknown(stats.format, "memory limit")  # a library that could not load under the limit
    json.dump(stats.to_dict(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
