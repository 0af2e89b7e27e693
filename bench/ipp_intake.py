"""IPP intake benchmark: small Print-Job requests through `spooler serve` against cupsd, in the same run.

Both servers get the same client (ipptool, the CUPS conformance tool) sending Print-Job with a
10 KB PDF: first one client sending N jobs back to back, then 4 clients at once (N/4 jobs each).
The figure is jobs per second; the result is the ratio spooler / cupsd (1.0 = as fast as cupsd).

* spooler: a fresh `python -m spooler serve` on a free port; its device is `socket://127.0.0.1:1`
  (refuses connections), so jobs stay spooled and delivery does not compete with intake. Each job is
  fsynced (data, folder, SQLite WAL) before its success is sent.
* spooler-files: the same daemon with `spool.inline_max = 0`, so every document gets its own spool
  file (fsync of the file and of the folder, then the row's commit): the path small jobs took before
  inline storage, measured in the same run for comparison (`--no-files` leaves it out).
* cupsd: a scratch cupsd (tests/spooler_harness.py ScratchCups: loopback only, no browsing, nothing
  under /etc/cups) with a raw queue to file:///dev/null and `MaxJobs 0`; cupsd does not fsync spool
  files by default.

Steps alternate (spooler first on even runs, cupsd first on odd ones); medians, minimum and maximum
over the runs are reported. Every spooler step is checked: the number of new job rows equals the
number of successful responses. Beside jobs per second, each server's CPU time per job (user +
system, from /proc/PID/stat) is shown: on a loaded machine it is steadier than the throughput.

    python bench/ipp_intake.py                  # 400 jobs x 5 runs
    python bench/ipp_intake.py --jobs 100 --runs 2    # quick
    python bench/ipp_intake.py --json
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

CLIENTS = 4
PRINT_JOB_TEST = """{
\tNAME "Print-Job"
\tOPERATION Print-Job
\tGROUP operation-attributes-tag
\tATTR charset attributes-charset utf-8
\tATTR naturalLanguage attributes-natural-language en
\tATTR uri printer-uri $uri
\tATTR name requesting-user-name $user
\tATTR name job-name "bench"
\tATTR mimeMediaType document-format application/pdf
\tFILE $filename
\tSTATUS successful-ok
\tSTATUS server-error-busy REPEAT-MATCH
\tDELAY "0,0.001"
}
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ten_kb_pdf() -> bytes:
    body = b"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
    padding = b"% " + b"x" * 76 + b"\n"
    data = b"%PDF-1.4\n" + body
    while len(data) < 10_000 - 64:
        data += padding
    return data + b"trailer << /Root 1 0 R >>\n%%EOF\n"


def run_clients(ipptool: str, uri: str, work: Path, jobs: int, clients: int) -> tuple[float, int]:
    """Seconds for `clients` ipptool processes to send `jobs` Print-Jobs in all; and how many passed."""
    per_client = jobs // clients
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            [ipptool, "-t", "-R", "-T", "30", "-i", "0.000001", "-n", str(per_client), "-f", "doc.pdf", uri,
             "bench-print-job.test"],
            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        for _ in range(clients)
    ]
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    elapsed = time.perf_counter() - start
    passed = sum(output.count("[PASS]") for output in outputs)
    failed = sum(output.count("[FAIL]") for output in outputs)
    if failed or any(process.returncode for process in processes):
        raise SystemExit(f"ipptool reported failures against {uri}:\n{outputs[0][-2000:]}")
    return elapsed, passed


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def job_rows(spooler: Spooler) -> int:
    with sqlite3.connect(f"file:{spooler.state_dir / 'spooler.db'}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=400, help="jobs per step (default 400)")
    parser.add_argument("--runs", type=int, default=5, help="runs (default 5)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--no-files", action="store_true", help="leave out the spooler with inline_max = 0")
    args = parser.parse_args()
    ipptool = require_tool("ipptool")
    root = Path(tempfile.mkdtemp(prefix="ippb", dir="/tmp"))
    names = ["spooler", "cupsd"] + ([] if args.no_files else ["spooler-files"])
    figures: dict[str, dict[str, list[float]]] = {
        mode: {key: [] for name in names for key in (name, f"{name} cpu ms/job")} | {"ratio": []}
        for mode in ("sequential", "concurrent")
    }
    spoolers: dict[str, Spooler] = {}
    cups: ScratchCups | None = None
    try:
        for name in names:
            if name == "cupsd":
                continue
            (root / name).mkdir()
            spoolers[name] = Spooler(root / name, device__uri="socket://127.0.0.1:1", device__retry_initial="1h",
                                     device__retry_max="1h", spool__min_free_space=0, log__level="warn",
                                     analysis__enabled=False,  # intake alone
                                     spool__inline_max=0 if name == "spooler-files" else 64 * 1024)  # fmt: skip
        cups = ScratchCups(root / "cups", extra=("MaxJobs 0", "PreserveJobHistory No", "PreserveJobFiles No"))
        work = root / "work"
        work.mkdir()
        (work / "doc.pdf").write_bytes(ten_kb_pdf())
        (work / "bench-print-job.test").write_text(PRINT_JOB_TEST)
        for spooler in spoolers.values():
            spooler.start()
        cups.start()
        added = cups.run("lpadmin", "-p", "null", "-E", "-v", "file:///dev/null")
        if added.returncode != 0:
            raise SystemExit(f"lpadmin failed: {added.stderr}")
        uris = {name: f"ipp://127.0.0.1:{spooler.ipp_port}/ipp/print" for name, spooler in spoolers.items()}
        uris["cupsd"] = f"ipp://127.0.0.1:{cups.port}/printers/null"
        pids = {name: spooler.process.pid for name, spooler in spoolers.items() if spooler.process is not None}
        assert cups.process is not None
        pids["cupsd"] = cups.process.pid
        log(f"warm-up; then {args.runs} runs of {args.jobs} jobs, sequential and {CLIENTS} clients")
        for name, uri in uris.items():
            run_clients(ipptool, uri, work, 40, 1)
        for run in range(args.runs):
            order = names if run % 2 == 0 else names[::-1]
            for mode, clients in (("sequential", 1), ("concurrent", CLIENTS)):
                rates = {}
                for name in order:
                    spooler = spoolers.get(name)
                    before = job_rows(spooler) if spooler is not None else 0
                    cpu_before = cpu_seconds(pids[name])
                    elapsed, passed = run_clients(ipptool, uris[name], work, args.jobs, clients)
                    cpu = cpu_seconds(pids[name]) - cpu_before
                    if spooler is not None and job_rows(spooler) - before != passed:
                        raise SystemExit(f"{name}: {passed} successes but {job_rows(spooler) - before} new jobs")
                    rates[name] = passed / elapsed
                    figures[mode][name].append(rates[name])
                    figures[mode][f"{name} cpu ms/job"].append(cpu / passed * 1000)
                figures[mode]["ratio"].append(rates["spooler"] / rates["cupsd"])
                log(f"run {run + 1} {mode:10s}: " + ", ".join(f"{name} {rates[name]:7.1f} jobs/s" for name in names)
                    + f"; ratio {rates['spooler'] / rates['cupsd']:.2f}")
    finally:
        if cups is not None:
            cups.stop()
        for spooler in spoolers.values():
            if spooler.process is not None:
                spooler.stop()
        shutil.rmtree(root, ignore_errors=True)
    result: dict[str, Any] = {
        "jobs_per_step": args.jobs, "runs": args.runs, "clients": CLIENTS, "document_bytes": len(ten_kb_pdf()),
        "cpus": os.cpu_count(),
        **{mode: {name: summary(values) for name, values in series.items()} for mode, series in figures.items()},
    }  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"IPP Print-Job, {result['document_bytes']} bytes, {args.jobs} jobs x {args.runs} runs "
              f"({os.cpu_count()} CPUs)")
        print("medians (min-max); CPU: the server's user + system time per job")
        print(f"{'':12s} {'server':14s} {'jobs/s':>18s} {'CPU ms/job':>20s}")
        for mode in ("sequential", "concurrent"):
            for name in names:
                s, c = result[mode][name], result[mode][f"{name} cpu ms/job"]
                print(f"{mode:12s} {name:14s} {s['median']:7.1f} ({s['min']:.0f}-{s['max']:.0f}) "
                      f"{c['median']:8.2f} ({c['min']:.2f}-{c['max']:.2f})")
            r = result[mode]["ratio"]
            print(f"{mode:12s} {'ratio spooler / cupsd':27s} {r['median']:6.2f} ({r['min']:.2f}-{r['max']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
