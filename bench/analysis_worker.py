"""Page-analysis cost per small document: one child per document (``python -m drivers.analyze``,
the path before the workers) against a long-lived worker (``python -m drivers.worker``), and the
small-job intake rate of a real `spooler serve` with analysis on, before and after, in the same run.

1. CPU per document: N analyses of a 10 KB one-page PDF, (a) N one-shot children one after the other,
   (b) one worker answering N requests. CPU is user + system of the children (RUSAGE_CHILDREN), so
   it includes interpreter start and imports for (a) and one start for (b).
2. Intake: C raw (port 9100 protocol) clients send N jobs of the same PDF to a fresh `spooler serve`
   (device refuses connections, so jobs stay spooled) in three set-ups: analysis off (this tree),
   analysis on with one-shot children (the code of --before-ref, exported with `git archive`), and
   analysis on with workers (this tree). Figures: jobs/s until the last acknowledgement, seconds
   until the last job's figures are in (job_analyzed in the spool log), and CPU per job of the
   spooler and all its children (RUSAGE_CHILDREN of this script around the daemon's life), and of
   the daemon process alone (/proc/PID/stat before it stops; without its analysis children).
   Set-ups alternate in rotated order each run; medians over the runs.

    python bench/analysis_worker.py                    # 200 documents, 300 jobs, 3 runs
    python bench/analysis_worker.py --docs 50 --jobs 100 --runs 1   # quick
    python bench/analysis_worker.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BEFORE_REF = "6d3bcf4"  # main just before the workers: one child per document


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def small_pdf(size: int = 10_000) -> bytes:
    """A valid one-page PDF of about `size` bytes (a text content stream)."""
    text = b"BT /F1 9 Tf 40 800 Td 11 TL\n"
    line = b"(The quick brown fox jumps over the lazy dog, 0123456789) '\n"
    while len(text) < size - 600:
        text += line
    text += b"ET\n"
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>",
               2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
                  b" /Resources << /Font << /F1 5 0 R >> >> >>",
               4: b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream",
               5: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"}
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number, body in objects.items():
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 6\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % offsets[n] for n in range(1, 6))
    out += b"trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def env_for(tree: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def one_shot(path: Path, count: int) -> tuple[float, float]:
    """CPU seconds and wall seconds of `count` one-shot children."""
    cpu, started = children_cpu(), time.monotonic()
    for _ in range(count):
        out = subprocess.run([sys.executable, "-m", "drivers.analyze", str(path), "--memory-limit", str(1 << 30),
                              "--cpu-limit", "31", "--page-cap", "100000"],
                             cwd=REPO, env=env_for(REPO), capture_output=True, check=True)  # fmt: skip
        assert json.loads(out.stdout)["status"] == "ok", out.stdout
    return children_cpu() - cpu, time.monotonic() - started


def worker(path: Path, count: int) -> tuple[float, float]:
    """CPU seconds and wall seconds of one worker answering `count` requests (its start included)."""
    cpu, started = children_cpu(), time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "drivers.worker", "--memory-limit", str(1 << 30)],
                               cwd=REPO, env=env_for(REPO), stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    assert json.loads(process.stdout.readline()) == {"ready": True}
    request = (json.dumps({"path": str(path), "format": "application/pdf", "cpu_limit": 31, "page_cap": 100000})
               + "\n").encode()
    for _ in range(count):
        process.stdin.write(request)
        process.stdin.flush()
        assert json.loads(process.stdout.readline())["stats"]["status"] == "ok"
    process.stdin.close()
    process.wait(timeout=30)
    return children_cpu() - cpu, time.monotonic() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def intake(tree: Path, analysis: bool, document: bytes, jobs: int, clients: int, work: Path) -> dict[str, float]:
    """One fresh daemon from `tree`: jobs/s, seconds until analysed, CPU per job (daemon + children)."""
    state = Path(tempfile.mkdtemp(prefix="aw-", dir=work))
    port = free_port()
    config = state / "spooler.toml"
    config.write_text(
        f'state_dir = "{state / "state"}"\n[listen]\nraw = "tcp:{port}:interface=127.0.0.1"\nlpd = ""\nipp = ""\n'
        '[device]\nuri = "socket://127.0.0.1:1"\nretry_initial = "1h"\nretry_max = "1h"\n'
        f"[analysis]\nenabled = {'true' if analysis else 'false'}\n")
    cpu = children_cpu()
    with open(state / "stderr.log", "wb") as stderr:
        daemon = subprocess.Popen([sys.executable, "-m", "spooler", "serve", "--config", str(config)], cwd=tree,
                                  env=env_for(tree), stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit(f"the spooler from {tree} did not start: {(state / 'stderr.log').read_text()}")
            time.sleep(0.05)
    failures: list[BaseException] = []

    def client(count: int) -> None:
        try:
            for _ in range(count):
                with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                    sock.sendall(document)
                    sock.shutdown(socket.SHUT_WR)
                    while sock.recv(65536):
                        pass
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(jobs // clients,)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    acked = time.monotonic() - started
    sent = (jobs // clients) * clients
    analysed_at = acked
    if analysis:
        spool_log = state / "state" / "log" / "spool.jsonl"
        while True:
            text = spool_log.read_text() if spool_log.exists() else ""
            done = text.count('"job_analyzed"')
            if done >= sent:
                break
            if time.monotonic() - started > 600:
                raise SystemExit(f"only {done} of {sent} jobs analysed")
            time.sleep(0.05)
        analysed_at = time.monotonic() - started
    fields = Path(f"/proc/{daemon.pid}/stat").read_text().rsplit(")", 1)[1].split()
    own_cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # the daemon alone
    daemon.terminate()
    daemon.wait(timeout=60)
    total_cpu = children_cpu() - cpu
    shutil.rmtree(state, ignore_errors=True)
    if failures:
        raise SystemExit(f"client failures: {failures[:3]}")
    return {"jobs_per_s": sent / acked, "analysed_s": analysed_at, "cpu_ms_per_job": 1000 * total_cpu / sent,
            "daemon_cpu_ms_per_job": 1000 * own_cpu / sent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=200, help="analyses per CPU step (default 200)")
    parser.add_argument("--jobs", type=int, default=300, help="jobs per intake step (default 300)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent raw clients (default 4)")
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--before-ref", default=BEFORE_REF, help=f"git ref of the one-shot code (default {BEFORE_REF})")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="awbench-"))
    try:
        document = small_pdf()
        doc_path = work / "small.pdf"
        doc_path.write_bytes(document)
        before = work / "before"
        before.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.before_ref], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
        cpu: dict[str, list[float]] = {"one-shot": [], "worker": []}
        steps: dict[str, list[dict[str, float]]] = {"analysis off": [], "one-shot children": [], "workers": []}
        setups = {"analysis off": (REPO, False), "one-shot children": (before, True), "workers": (REPO, True)}
        for run in range(args.runs):
            log(f"run {run + 1}/{args.runs}: CPU per document")
            for name in (("one-shot", "worker") if run % 2 == 0 else ("worker", "one-shot")):
                seconds, _ = (one_shot if name == "one-shot" else worker)(doc_path, args.docs)
                cpu[name].append(1000 * seconds / args.docs)
            order = list(setups)
            order = order[run % 3:] + order[:run % 3]
            for name in order:
                log(f"run {run + 1}/{args.runs}: intake, {name}")
                tree, analysis = setups[name]
                steps[name].append(intake(tree, analysis, document, args.jobs, args.clients, work))
        load = os.getloadavg()
        figures: dict[str, Any] = {
            "document_bytes": len(document), "docs": args.docs, "jobs": args.jobs, "clients": args.clients,
            "runs": args.runs, "loadavg": load,
            "cpu_ms_per_document": {name: statistics.median(values) for name, values in cpu.items()},
            "intake": {name: {key: statistics.median(step[key] for step in values) for key in values[0]}
                       for name, values in steps.items()},
        }
        if args.json:
            print(json.dumps(figures, indent=1))
            return 0
        print(f"Analysis of a {len(document)}-byte one-page PDF, CPU per document (median of {args.runs} x {args.docs}):")
        per = figures["cpu_ms_per_document"]
        print(f"  one-shot child: {per['one-shot']:7.1f} ms   worker: {per['worker']:6.1f} ms"
              f"   ratio {per['one-shot'] / per['worker']:.1f}x")
        print(f"Intake: {args.jobs} raw jobs from {args.clients} clients (medians of {args.runs} runs)")
        print(f"  {'set-up':20} {'jobs/s':>8} {'all analysed (s)':>17} {'CPU ms/job':>11} {'daemon alone':>13}")
        for name, values in figures["intake"].items():
            print(f"  {name:20} {values['jobs_per_s']:8.0f} {values['analysed_s']:17.2f}"
                  f" {values['cpu_ms_per_job']:11.1f} {values['daemon_cpu_ms_per_job']:13.1f}")
        print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (provisional: shared machine)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
