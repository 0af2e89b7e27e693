"""The spooler against the peers users would otherwise pick, each comparison in one run, one table:

    python bench/peers.py             # every row, 5 runs each (a few minutes)
    python bench/peers.py --quick     # smaller, 3 runs (about a minute)
    python bench/peers.py --json      # the figures as one JSON object on stdout

Rows (medians over the runs; ours and the peer alternate, the first one swapped every other run):

* raw 9100, one big job, vs p910nd writing to a file: MB/s from connect to the server's close. Ours
  is acknowledged only once the job is durable (data fsynced, renamed, folder fsynced, SQLite commit);
  p910nd writes without fsync. Our device is `socket://127.0.0.1:1` (refuses), so jobs stay spooled.
* raw 9100, many 10 KB jobs on sequential connections (p910nd serves one connection at a time): jobs/s.
* IPP Print-Job, 10 KB, one ipptool sending N jobs back to back (the client of bench/ipp_intake.py),
  vs cupsd (scratch instance, raw queue to /dev/null) and vs ippeveprinter (CUPS' IPP Everywhere
  printer; `-c /bin/cat`, and dbus + avahi restricted to lo in a private mount and PID namespace).
* memory under load: the daemon's VmHWM (peak RSS) after 50 concurrent clients sent 4 jobs each —
  ours over IPP, LPD and raw mixed, cupsd over IPP (the only protocol it takes itself).
* page counting: bench/page_count.py --quick's 1000-page PDF, a fresh process each (pages + colour
  for ours; pages only for qpdf --show-npages and gs pdfpagecount).

Peers need: p910nd, cupsd + ipptool (cups, cups-ipp-utils), ippeveprinter, dbus-daemon, avahi-daemon,
qpdf, gs. A missing one gives "-" in its row. Everything listens on 127.0.0.1; p910nd needs port 9100
free. The figures are the machine's of the moment: re-run on a quiet machine for final numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from chaos_harness import ipp_print_job, lpd_print, raw_print  # noqa: E402
from spooler_harness import IppEvePrinter, ScratchCups, Spooler, free_port, wait_for  # noqa: E402

P910ND_PORT = 9100


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def vm_hwm(pid: int) -> float:
    """Peak resident set size of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- the peers ---------------------------------------------------------------------------------------


class P910nd:
    """p910nd on 127.0.0.1:9100 writing to a file, in a private mount namespace (it wants
    /var/lock/p910nd, kept off the host's /run with a tmpfs of its own)."""

    def __init__(self, root: Path) -> None:
        self.output = root / "p910nd.out"
        self.output.touch()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> P910nd:
        script = ("mount -t tmpfs -o size=1m,mode=755 x /run && mkdir -p /run/lock/p910nd && "
                  f"exec p910nd -d -i 127.0.0.1 -f {self.output} 0")  # fmt: skip
        self.process = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError("p910nd exited (is port 9100 taken?)")
            try:
                socket.create_connection(("127.0.0.1", P910ND_PORT), timeout=1).close()
            except OSError:
                return False
            return True

        wait_for(ready, timeout=10, what="p910nd to listen")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


def our_spooler(root: Path, **extra: Any) -> Spooler:
    root.mkdir(parents=True, exist_ok=True)
    settings = {"device__uri": "socket://127.0.0.1:1", "device__retry_initial": "1h", "device__retry_max": "1h",
                "spool__min_free_space": 0, "log__level": "warn", "analysis__enabled": False} | extra  # fmt: skip
    return Spooler(root, **settings)


# -- the measurements ---------------------------------------------------------------------------------


def send_file(port: int, path: Path) -> float:
    """Seconds from connect to the server's close for one raw job read from `path`."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock, open(path, "rb") as source:
        sock.sendfile(source)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    return time.perf_counter() - started


def small_jobs(port: int, count: int, payload: bytes) -> float:
    started = time.perf_counter()
    for _ in range(count):
        raw_print(port, payload)
    return time.perf_counter() - started


def raw_rows(root: Path, runs: int, big_mb: int, small: int) -> dict[str, Any]:
    big = root / "big.bin"
    with open(big, "wb") as out:
        chunk = os.urandom(1024 * 1024)
        for _ in range(big_mb):
            out.write(chunk)
    payload = os.urandom(10_000)
    figures: dict[str, dict[str, list[float]]] = {"big": {"ours": [], "peer": []}, "small": {"ours": [], "peer": []}}
    for run in range(runs):
        order = ["ours", "peer"] if run % 2 == 0 else ["peer", "ours"]
        for who in order:
            folder = root / f"raw-{who}-{run}"
            folder.mkdir()
            if who == "ours":
                server: Any = our_spooler(folder).start()
                port = server.raw_port
            else:
                server = P910nd(folder).start()
                port = P910ND_PORT
            try:
                os.sync()
                figures["big"][who].append(big_mb * 1.048576 / send_file(port, big))
                figures["small"][who].append(small / small_jobs(port, small, payload))
            finally:
                server.stop()
            shutil.rmtree(folder, ignore_errors=True)
            os.sync()
        log(f"raw run {run + 1}: big ours {figures['big']['ours'][-1]:.0f} MB/s, p910nd {figures['big']['peer'][-1]:.0f}"
            f" MB/s; small ours {figures['small']['ours'][-1]:.0f} jobs/s, p910nd {figures['small']['peer'][-1]:.0f}")
    big.unlink()
    return figures


def ipp_rows(root: Path, runs: int, jobs: int) -> dict[str, list[float]]:
    import ipp_intake

    ipptool = shutil.which("ipptool")
    if ipptool is None:
        raise RuntimeError("ipptool is missing")
    work = root / "ipp-work"
    work.mkdir()
    (work / "doc.pdf").write_bytes(ipp_intake.ten_kb_pdf())
    (work / "bench-print-job.test").write_text(ipp_intake.PRINT_JOB_TEST)
    spooler = our_spooler(root / "ipp-ours")
    cups = ScratchCups(root / "ipp-cups", extra=("MaxJobs 0", "PreserveJobHistory No", "PreserveJobFiles No"))
    eve = IppEvePrinter(root / "ipp-eve") if shutil.which("ippeveprinter") else None
    if eve is not None:
        eve.root.mkdir()
    figures: dict[str, list[float]] = {"ours": [], "cupsd": [], "ippeveprinter": []}
    try:
        spooler.start()
        cups.start()
        cups.run("lpadmin", "-p", "null", "-E", "-v", "file:///dev/null", check=True)
        uris = {"ours": f"ipp://127.0.0.1:{spooler.ipp_port}/ipp/print",
                "cupsd": f"ipp://127.0.0.1:{cups.port}/printers/null"}  # fmt: skip
        if eve is not None:
            try:
                uris["ippeveprinter"] = eve.start().uri
            except (RuntimeError, AssertionError) as error:
                log(f"ippeveprinter could not start: {error}")
        for uri in uris.values():
            ipp_intake.run_clients(ipptool, uri, work, 20, 1)  # warm-up
        for run in range(runs):
            names = list(uris) if run % 2 == 0 else list(reversed(uris))
            for name in names:
                elapsed, passed = ipp_intake.run_clients(ipptool, uris[name], work, jobs, 1)
                figures[name].append(passed / elapsed)
            log(f"ipp run {run + 1}: " + ", ".join(f"{n} {figures[n][-1]:.0f} jobs/s" for n in uris))
    finally:
        for stop in ((eve.stop if eve is not None else None), cups.stop,
                     (spooler.stop if spooler.process is not None else None)):  # fmt: skip
            try:
                if stop is not None:
                    stop()
            except (OSError, subprocess.SubprocessError, AssertionError) as error:
                log(f"stopping a peer: {error}")
    return figures


def load_clients(send: Callable[[int, int], bool], clients: int, jobs: int) -> int:
    """`clients` threads sending `jobs` jobs each at once; how many were acknowledged."""
    acknowledged = [0] * clients
    barrier = threading.Barrier(clients)

    def client(number: int) -> None:
        barrier.wait(30)
        for sequence in range(jobs):
            try:
                acknowledged[number] += bool(send(number, sequence))
            except Exception:  # a refused or cut request counts as not acknowledged
                pass

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return sum(acknowledged)


def memory_rows(root: Path, runs: int, clients: int = 50, jobs: int = 4) -> dict[str, list[float]]:
    document = os.urandom(50_000)
    figures: dict[str, list[float]] = {"ours": [], "ours_ipp": [], "cupsd": [], "ours_idle": [], "cupsd_idle": []}
    for run in range(runs):
        folder = root / f"mem-{run}"
        spooler = our_spooler(folder / "ours", limits__max_connections=200).start()
        assert spooler.process is not None
        figures["ours_idle"].append(vm_hwm(spooler.process.pid))

        def ours(number: int, sequence: int) -> bool:
            protocol = ("ipp", "lpd", "raw")[number % 3]
            if protocol == "ipp":
                return ipp_print_job(spooler.ipp_port, "default", "m", f"m{number}-{sequence}", document) == 0
            if protocol == "lpd":
                return lpd_print(spooler.lpd_port, "default", "m", f"m{number}-{sequence}", document, sequence)
            return raw_print(spooler.raw_port, document)

        done = load_clients(ours, clients, jobs)
        figures["ours"].append(vm_hwm(spooler.process.pid))
        spooler.stop()
        spooler = our_spooler(folder / "ours-ipp", limits__max_connections=200).start()
        assert spooler.process is not None
        load_clients(lambda n, s: ipp_print_job(spooler.ipp_port, "default", "m", f"i{n}-{s}", document) == 0,
                     clients, jobs)  # fmt: skip
        figures["ours_ipp"].append(vm_hwm(spooler.process.pid))
        spooler.stop()
        cups = ScratchCups(folder / "cups", extra=("MaxJobs 0", "PreserveJobHistory No", "PreserveJobFiles No",
                                                   "MaxClients 200"))  # fmt: skip
        cups.start()
        try:
            cups.run("lpadmin", "-p", "null", "-E", "-v", "file:///dev/null", check=True)
            assert cups.process is not None
            figures["cupsd_idle"].append(vm_hwm(cups.process.pid))
            cupsd_done = load_clients(lambda n, s: _cups_print(cups.port, document, f"c{n}-{s}"), clients, jobs)
            figures["cupsd"].append(vm_hwm(cups.process.pid))
        finally:
            cups.stop()
        shutil.rmtree(folder, ignore_errors=True)
        log(f"memory run {run + 1}: ours {figures['ours'][-1]:.0f} MB ({done} jobs acknowledged), ours IPP only "
            f"{figures['ours_ipp'][-1]:.0f} MB, cupsd {figures['cupsd'][-1]:.0f} MB ({cupsd_done} jobs)")
    return figures


def _cups_print(port: int, document: bytes, name: str) -> bool:
    """Print-Job to the scratch cupsd's raw queue `null` (IPP status successful-ok or ok-ignored...)."""
    from spooler.ipp.codec import Attribute, IppMessage, decode, encode_message
    from spooler.ipp.tags import Operation, Tag
    import http.client

    message = IppMessage((2, 0), int(Operation.PRINT_JOB), 1)
    message.add_group(Tag.OPERATION, Attribute.charset("attributes-charset", "utf-8"),
                      Attribute.language("attributes-natural-language", "en"),
                      Attribute.uri("printer-uri", f"ipp://127.0.0.1:{port}/printers/null"),
                      Attribute.name("requesting-user-name", "m"), Attribute.name("job-name", name),
                      Attribute.mime("document-format", "application/octet-stream"))  # fmt: skip
    message.data = document
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/printers/null", body=encode_message(message),
                           headers={"Content-Type": "application/ipp"})  # fmt: skip
        response = connection.getresponse()
        body = response.read()
        return response.status == 200 and decode(body).code < 0x100
    finally:
        connection.close()


def page_rows(quick: bool) -> dict[str, Any]:
    command = [sys.executable, str(REPO / "bench" / "page_count.py"), "--json", "--runs", "3"]
    if quick:
        command.append("--quick")
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"page_count.py failed: {done.stderr[-500:]}")
    report = json.loads(done.stdout)
    case = next(c for c in report["cases"] if c["case"] == "pdf 1000 pages")
    return {name: m["seconds"] for name, m in case["processes"].items()} | {"pages": case["in_process"]["pages"]}


# -- the table ----------------------------------------------------------------------------------------------

LIMITS = {
    "raw big": "every job is fsynced before the close that acknowledges it; p910nd never fsyncs",
    "raw small": "per job: fsync of data, folder and SQLite WAL before the acknowledgement, and Python per "
                 "connection; p910nd only write()s",
    "ipp cupsd": "per job fsyncs (cupsd fsyncs nothing) and Python's HTTP/IPP stack",
    "ipp eve": "per job fsyncs (ippeveprinter keeps jobs in memory and its spool without fsync)",
    "memory": "the Python interpreter, Twisted and SQLite (about 50 MB before the first job) against C",
    "pages qpdf": "interpreter start and imports (about 0.1 s) plus the colour walk; qpdf only reads the page tree",
    "pages gs": "interpreter start and the colour walk; gs only counts pages",
}  # fmt: skip


def rows(result: dict[str, Any]) -> list[tuple[str, str, str, float, str]]:
    """(row, ours, peer, ratio where > 1 means we are ahead, note)."""
    out = []
    raw = result.get("raw")
    if raw:
        for key, label, unit in (("big", "raw 9100 one big job -> file, vs p910nd", "MB/s"),
                                 ("small", "raw 9100 10 KB jobs, sequential, vs p910nd", "jobs/s")):
            ours, peer = median(raw[key]["ours"]), median(raw[key]["peer"])
            out.append((label, f"{ours:.0f} {unit}", f"{peer:.0f} {unit}", ours / peer, LIMITS[f"raw {key}"]))
    ipp = result.get("ipp")
    if ipp:
        ours = median(ipp["ours"])
        for key, label in (("cupsd", "IPP Print-Job 10 KB, sequential, vs cupsd"),
                           ("ippeveprinter", "IPP Print-Job 10 KB, sequential, vs ippeveprinter")):
            if ipp[key]:
                peer = median(ipp[key])
                out.append((label, f"{ours:.0f} jobs/s", f"{peer:.0f} jobs/s", ours / peer,
                            LIMITS["ipp cupsd" if key == "cupsd" else "ipp eve"]))  # fmt: skip
    memory = result.get("memory")
    if memory:
        for key, label in (("ours", "peak RSS, 50 clients x 4 jobs (ours: IPP+LPD+raw), vs cupsd (IPP)"),
                           ("ours_ipp", "peak RSS, 50 IPP clients x 4 jobs, vs cupsd")):
            ours, peer = median(memory[key]), median(memory["cupsd"])
            out.append((label, f"{ours:.0f} MB", f"{peer:.0f} MB", peer / ours, LIMITS["memory"]))
    pages = result.get("pages")
    if pages:
        ours = pages["drivers (pypdf, colour)"]
        for key, label in (("qpdf --show-npages", "page count, 1000-page PDF (process), vs qpdf"),
                           ("gs pdfpagecount", "page count, 1000-page PDF (process), vs ghostscript")):
            peer = pages[key]
            out.append((label, f"{ours:.2f} s", f"{peer:.2f} s", peer / ours,
                        LIMITS["pages qpdf" if "qpdf" in key else "pages gs"]))  # fmt: skip
    return out


def table(result: dict[str, Any]) -> str:
    lines = ["| comparison | ours | peer | ours/peer (>1: ahead) | ahead? | what limits us |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for label, ours, peer, ratio, note in rows(result):
        ahead = ratio >= 1.0
        lines.append(f"| {label} | {ours} | {peer} | {ratio:.2f} | {'yes' if ahead else 'no'} | "
                     f"{'-' if ahead else note} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller jobs and counts, 3 runs")
    parser.add_argument("--runs", type=int, default=0, help="runs per comparison (default 5; --quick 3)")
    parser.add_argument("--only", choices=["raw", "ipp", "memory", "pages"], action="append",
                        help="run only these comparisons (repeatable)")
    parser.add_argument("--json", action="store_true", help="the figures as one JSON object on stdout")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    wanted = args.only or ["raw", "ipp", "memory", "pages"]
    root = Path(tempfile.mkdtemp(prefix="peers", dir="/tmp"))
    result: dict[str, Any] = {"runs": runs, "cpus": os.cpu_count()}
    steps: dict[str, Callable[[], Any]] = {
        "raw": lambda: raw_rows(root, runs, 64 if args.quick else 256, 200 if args.quick else 1000),
        "ipp": lambda: ipp_rows(root, runs, 100 if args.quick else 400),
        "memory": lambda: memory_rows(root, max(1, runs // 2)),
        "pages": lambda: page_rows(args.quick),
    }
    try:
        for name in wanted:
            log(f"-- {name}")
            try:
                result[name] = steps[name]()
            except (RuntimeError, AssertionError, OSError, subprocess.SubprocessError) as error:
                log(f"{name}: skipped: {error}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"Peers, medians of {runs} runs ({os.cpu_count()} CPUs); `python bench/peers.py`")
        print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
