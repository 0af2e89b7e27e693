"""IPP large-job benchmark: one big Print-Job (500 MB by default) through `spooler serve` and through
cupsd in the same run: time to the success answer and the server's peak RSS (VmHWM).

* Client, for both: ipptool (the CUPS conformance tool) sending one Print-Job whose FILE is the
  document (application/pdf: a %PDF header and random bytes), timed from start to exit.
* spooler: a fresh `python -m spooler serve` per run (so VmHWM belongs to that job alone); device
  `socket://127.0.0.1:1` (refuses connections: the job stays spooled), analysis off (intake alone).
  The success comes only once the document is fsynced, renamed, its folder fsynced and its row
  committed. Checked each run: one job row of the right size, and the spool file's first, middle and
  last MiB equal to the document's.
* cupsd: a fresh scratch cupsd per run (tests/spooler_harness.py ScratchCups) with a raw queue to
  file:///dev/null and `MaxJobs 0`; it does not fsync what it spools. Its VmHWM is the scheduler's
  (the file backend that reads the job afterwards is a separate process).

Runs alternate (spooler first on even runs); medians (min-max) are reported. Target: the spooler's
peak RSS under 100 MB.

    python bench/ipp_large.py                       # 500 MB x 3 runs
    python bench/ipp_large.py --size-mb 100 --runs 1   # quick
    python bench/ipp_large.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from spooler_harness import ScratchCups, Spooler, require_tool  # noqa: E402

RSS_TARGET_MB = 100
PRINT_JOB_TEST = """{
\tNAME "Print-Job (large)"
\tOPERATION Print-Job
\tGROUP operation-attributes-tag
\tATTR charset attributes-charset utf-8
\tATTR naturalLanguage attributes-natural-language en
\tATTR uri printer-uri $uri
\tATTR name requesting-user-name $user
\tATTR name job-name "large"
\tATTR mimeMediaType document-format application/pdf
\tFILE $filename
\tSTATUS successful-ok
}
"""
MIB = 1024 * 1024


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_document(path: Path, size: int) -> None:
    block = os.urandom(4 * MIB)
    with open(path, "wb") as out:
        out.write(b"%PDF-1.7\n")
        left = size - 9
        while left > 0:
            left -= out.write(block[: min(left, len(block))])


def vmhwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for {pid}")


def send(ipptool: str, uri: str, work: Path, document: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run([ipptool, "-t", "-T", "600", "-f", str(document), uri, "large.test"], cwd=work,
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or "[PASS]" not in result.stdout:
        raise SystemExit(f"ipptool failed against {uri}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return elapsed


def same_samples(document: Path, copy: Path, size: int) -> bool:
    with open(document, "rb") as a, open(copy, "rb") as b:
        for offset in (0, max(0, size // 2 - MIB // 2), max(0, size - MIB)):
            a.seek(offset)
            b.seek(offset)
            if a.read(MIB) != b.read(MIB):
                return False
    return True


def spooler_run(root: Path, ipptool: str, work: Path, document: Path, size: int) -> tuple[float, int, int]:
    """(seconds, VmHWM kB at the end, VmHWM kB once listening) of one fresh daemon taking the job."""
    root.mkdir()
    spooler = Spooler(root, device__uri="socket://127.0.0.1:1", device__retry_initial="1h", device__retry_max="1h",
                      spool__min_free_space=0, log__level="warn", analysis__enabled=False,
                      limits__max_job_size=size + MIB, ipp__max_request_size=size + 2 * MIB)  # fmt: skip
    try:
        spooler.start()
        assert spooler.process is not None
        idle = vmhwm_kb(spooler.process.pid)
        elapsed = send(ipptool, f"ipp://127.0.0.1:{spooler.ipp_port}/ipp/print", work, document)
        peak = vmhwm_kb(spooler.process.pid)
        with sqlite3.connect(f"file:{spooler.state_dir / 'spooler.db'}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT j.size, d.file_name FROM jobs j JOIN documents d USING (job_id)").fetchall()
        if len(rows) != 1 or rows[0][0] != size:
            raise SystemExit(f"spooler: expected one job of {size} bytes, found {rows}")
        if not same_samples(document, spooler.state_dir / "spool" / rows[0][1], size):
            raise SystemExit("spooler: the spool file differs from the document")
        return elapsed, peak, idle
    finally:
        if spooler.process is not None:
            spooler.stop()
        shutil.rmtree(root, ignore_errors=True)


def cupsd_run(root: Path, ipptool: str, work: Path, document: Path) -> tuple[float, int, int]:
    cups = ScratchCups(root, extra=("MaxJobs 0", "PreserveJobHistory No", "PreserveJobFiles No",
                                    "MaxRequestSize 0"))  # fmt: skip
    try:
        cups.start()
        assert cups.process is not None
        cups.run("lpadmin", "-p", "null", "-E", "-v", "file:///dev/null", check=True)
        idle = vmhwm_kb(cups.process.pid)
        elapsed = send(ipptool, f"ipp://127.0.0.1:{cups.port}/printers/null", work, document)
        return elapsed, vmhwm_kb(cups.process.pid), idle
    finally:
        cups.stop()
        shutil.rmtree(root, ignore_errors=True)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=500, help="document size in MB (10^6 bytes; default 500)")
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--tmp", default="/tmp", help="where the document and the servers' spools live")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    ipptool = require_tool("ipptool")
    require_tool("/usr/sbin/cupsd")
    size = args.size_mb * 1_000_000
    root = Path(tempfile.mkdtemp(prefix="ippl", dir=args.tmp))
    series: dict[str, dict[str, list[float]]] = {
        name: {"seconds": [], "mb_per_s": [], "peak_rss_mb": [], "idle_rss_mb": []} for name in ("spooler", "cupsd")
    }
    try:
        work = root / "work"
        work.mkdir()
        (work / "large.test").write_text(PRINT_JOB_TEST)
        document = work / "document.pdf"
        log(f"writing a {args.size_mb} MB document; then {args.runs} runs, each on fresh servers")
        make_document(document, size)
        for run in range(args.runs):
            order = ["spooler", "cupsd"] if run % 2 == 0 else ["cupsd", "spooler"]
            for name in order:
                os.sync()
                if name == "spooler":
                    elapsed, peak, idle = spooler_run(root / f"s{run}", ipptool, work, document, size)
                else:
                    elapsed, peak, idle = cupsd_run(root / f"c{run}", ipptool, work, document)
                figures = series[name]
                figures["seconds"].append(elapsed)
                figures["mb_per_s"].append(size / 1e6 / elapsed)
                figures["peak_rss_mb"].append(peak / 1024)
                figures["idle_rss_mb"].append(idle / 1024)
                log(f"run {run + 1} {name:8s}: {elapsed:6.2f} s ({size / 1e6 / elapsed:6.1f} MB/s), peak RSS "
                    f"{peak / 1024:6.1f} MiB (listening: {idle / 1024:.1f} MiB)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result: dict[str, Any] = {
        "document_mb": args.size_mb, "runs": args.runs, "cpus": os.cpu_count(), "rss_target_mb": RSS_TARGET_MB,
        **{name: {key: summary(values) for key, values in figures.items()} for name, figures in series.items()},
    }  # fmt: skip
    result["time_ratio"] = result["spooler"]["seconds"]["median"] / result["cupsd"]["seconds"]["median"]
    within = result["spooler"]["peak_rss_mb"]["max"] < RSS_TARGET_MB
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"IPP Print-Job of {args.size_mb} MB, {args.runs} runs ({os.cpu_count()} CPUs); medians (min-max)")
        print(f"{'':8s} {'seconds':>20s} {'MB/s':>20s} {'peak RSS MiB':>20s} {'listening MiB':>14s}")
        for name in ("spooler", "cupsd"):
            f = result[name]
            cells = [f"{f[k]['median']:.2f} ({f[k]['min']:.2f}-{f[k]['max']:.2f})"
                     for k in ("seconds", "mb_per_s", "peak_rss_mb")]  # fmt: skip
            print(f"{name:8s} {cells[0]:>20s} {cells[1]:>20s} {cells[2]:>20s} {f['idle_rss_mb']['median']:14.1f}")
        print(f"time spooler / cupsd: {result['time_ratio']:.2f}; spooler peak RSS "
              f"{'under' if within else 'NOT under'} {RSS_TARGET_MB} MiB")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
