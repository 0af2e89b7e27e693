"""Chaos run: mixed IPP, LPD and raw clients submit numbered jobs for a bounded time while the spooler
is killed with `kill -9` at random moments and restarted, and the central server (spooler-refserver:
killed, or refusing, hanging, answering errors) and the device (a raw socket printer) go down and up.
Then every copy found at the server and at the device is matched to its job and the summary printed:

    python bench/chaos.py                 # 10 minutes
    python bench/chaos.py --minutes 2 --seed 7 --json report.json
    python bench/chaos.py --server-queue lpd   # the server's queue over LPD (it cannot be asked)

The clients: 2 IPP (our minimal Print-Job client), 2 LPD (RFC 1179 receive-job), 2 raw (PJL-wrapped,
as `nc -N` sends), on the queues "default" (offline policy print) and "ordered" (policy queue). The
central server's queue (--server-queue): "ipp-held" (the default: IPP, every job held until released,
as MyQ and PaperCut pull print; it releases each on its own --release-after seconds of working time
after it arrived), "ipp" (printed at once), "lpd" or "raw". What is checked, how duplicates are
classified and what the in-doubt line says is in tests/chaos_harness.py. The exit status is 1 when
anything counted as a failure (lost, duplicated where the peer could tell, out of order, a partial
copy the spooler should not have produced, an acknowledged job not completed). Everything runs on
127.0.0.1 in a /tmp/chaos* folder, removed at the end (kept with --keep, or when the run failed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from chaos_harness import SERVER_QUEUES, ChaosRun, summary  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the clients send (default 10)")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100000, help="random seed (default: the time)")
    parser.add_argument("--pace", type=float, default=2.5, help="mean seconds between two acts of chaos")
    parser.add_argument("--think", type=float, default=0.3, help="mean seconds a client waits between jobs")
    parser.add_argument("--max-size", type=int, default=64 * 1024, help="most jobs are up to this many bytes")
    parser.add_argument("--server-queue", choices=SERVER_QUEUES, default="ipp-held",
                        help="the central server's queue (default ipp-held: IPP, jobs held until released)")
    parser.add_argument("--release-after", type=float, default=8.0,
                        help="ipp-held: seconds of working time after which the server releases a held job")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the full report as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder")
    parser.add_argument("--quiet", action="store_true", help="no timeline on stderr")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="chaos", dir="/tmp"))
    log = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    print(f"chaos run: seed {args.seed}, {args.minutes} min, server queue {args.server_queue}, folder {root}",
          file=sys.stderr)  # fmt: skip
    run = ChaosRun(root, args.minutes * 60, seed=args.seed, pace=args.pace, think=args.think, max_size=args.max_size,
                   log=log, server_queue=args.server_queue, release_after=args.release_after)  # fmt: skip
    report = run.run()
    print(summary(report, args.minutes * 60))
    if args.json:
        args.json.write_text(json.dumps(report | {"seed": args.seed, "minutes": args.minutes}, indent=2))
    if report["failures"]:
        print(f"details: {json.dumps({k: report[k] for k in ('lost', 'duplicate_tokens', 'out_of_order_pairs', 'partial_bug_tokens')})}")
        print(f"in-doubt forwards reconciled: {json.dumps((report.get('in_doubt') or {}).get('events', [])[:50])}")
        print(f"run folder kept: {root}")
    elif not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
