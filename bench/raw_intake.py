"""Raw-intake benchmark: one big job and many small concurrent jobs through `spooler serve` vs a plain fsynced copy.

Measures, in one run (see bench/README.md):

* big job: the time from connect to the spooler's close (the durable "ack") for one N-MiB raw job
  sent over loopback with socket.sendfile, as a ratio to a plain copy of the same bytes into the same
  folder (1 MiB writes, then fsync); and the daemon's peak RSS (VmHWM of a fresh daemon per run);
* small jobs: jobs/s with C concurrent clients (threads), each job its own connection, against a
  sequential loop of the same number of files written, fsynced, renamed and folder-fsynced (a
  different kind of baseline: it has no concurrency, no network and no SQLite commit).

The device is `socket://127.0.0.1:1`, which refuses connections: jobs stay spooled and delivery does
not compete with intake. Everything runs on 127.0.0.1, under one temporary folder in /tmp that is
removed at the end.

    python bench/raw_intake.py                 # 1024 MiB x 5 runs, 2000 small jobs from 16 clients
    python bench/raw_intake.py --quick         # smoke run: 256 MiB x 3 runs, 300 small jobs
    python bench/raw_intake.py --json          # a JSON object on stdout instead of the table
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spooler.store.spoolfiles import fsync_directory  # the same fsync the spooler does, for the baseline

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
MB = 1000 * 1000
COPY_CHUNK = MiB
DEVICE_URI = "socket://127.0.0.1:1"  # refuses connections: jobs stay spooled
RATIO_TARGET = 0.7
RSS_TARGET_MB = 80.0
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0
CLIENT_TIMEOUT = 300.0
#: Daemon stderr lines from these namespaces are expected while the device refuses connections.
EXPECTED_NAMESPACES = ("spooler.dispatch",)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- data and the plain-copy baselines -------------------------------------------------------------


def make_source(path: Path, size: int, seed: int = 9100) -> None:
    """Pseudo-random (incompressible, not repeating) data, fsynced; it then sits in the page cache."""
    rng = random.Random(seed)
    with open(path, "wb") as out:
        left = size
        while left:
            block = rng.randbytes(min(COPY_CHUNK, left))
            out.write(block)
            left -= len(block)
        out.flush()
        os.fsync(out.fileno())


def plain_copy(source: Path, destination: Path) -> float:
    """Copy `source` to `destination` in 1 MiB reads and writes, then fsync. Returns seconds."""
    buffer = bytearray(COPY_CHUNK)
    view = memoryview(buffer)
    started = time.perf_counter()
    with open(source, "rb", buffering=0) as src:
        fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            while count := src.readinto(buffer):
                chunk = view[:count]
                while chunk:
                    chunk = chunk[os.write(fd, chunk) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    return time.perf_counter() - started


def durable_small_files(folder: Path, count: int, payload: bytes) -> float:
    """What a durable spool does per job, sequentially: write, fsync, rename, fsync the folder."""
    incoming, spool = folder / "incoming", folder / "spool"
    incoming.mkdir(parents=True)
    spool.mkdir()
    started = time.perf_counter()
    for number in range(1, count + 1):
        part = incoming / f"{number}.part"
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(part, spool / f"d{number:06d}-001")
        fsync_directory(spool)
    return time.perf_counter() - started


# -- the daemon --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def proc_status(pid: int) -> dict[str, int]:
    """The kB figures of /proc/PID/status (VmRSS, VmHWM, ...)."""
    figures = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                figures[key] = int(value.split()[0])
    return figures


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Daemon:
    """`python -m spooler serve` on a fresh state folder and a free port; stderr goes to STATE/daemon.stderr."""

    def __init__(self, state_dir: Path, *, max_job_size: int) -> None:
        self.state_dir = state_dir
        self.port = free_port()
        self.stderr_path = state_dir / "daemon.stderr"
        self.max_job_size = max_job_size
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def write_config(self) -> Path:
        config = self.state_dir / "bench.toml"
        config.write_text(
            f'state_dir = "{self.state_dir}"\n'
            "[listen]\n"
            f'raw = "tcp:{self.port}:interface=127.0.0.1"\n'
            'lpd = ""\n'
            'ipp = ""\n'
            "[limits]\n"
            f"max_job_size = {self.max_job_size}\n"
            "max_connections = 200\n"
            "[spool]\n"
            'min_free_space = "1GiB"\n'
            "[device]\n"
            f'uri = "{DEVICE_URI}"\n'
            'retry_initial = "1h"\n'
            'retry_max = "1h"\n'
            "[analysis]\n"
            "enabled = false\n"  # intake alone: page counting runs in child processes beside it
        )
        return config

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "spooler", "serve", "--config", str(config)],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
            )  # fmt: skip
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Until the raw port accepts a connection (the probe is an empty job, which the spooler ignores)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the daemon exited with {self.process.returncode}:\n{self.stderr_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as probe:
                    probe.shutdown(socket.SHUT_WR)
                    probe.recv(1)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the daemon did not listen on port {self.port} within {READY_TIMEOUT:.0f}s")

    def memory_kb(self) -> dict[str, int]:
        return proc_status(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time. Returns the exit status."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"the daemon ignored SIGTERM for {STOP_TIMEOUT:.0f}s and was killed") from None

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def unexpected_stderr(self) -> list[str]:
        """Daemon stderr lines at warn level or above (or tracebacks) not explained by the refusing device."""
        flagged = []
        for line in self.stderr_text().splitlines():
            serious = any(tag in line for tag in ("[warn]", "[error]", "[critical]", "Traceback"))
            if serious and not any(f"] {namespace}:" in line for namespace in EXPECTED_NAMESPACES):
                flagged.append(line)
        if len(flagged) > 5:
            flagged[5:] = [f"... {len(flagged)} flagged daemon stderr lines in all"]
        return flagged


@contextmanager
def running_daemon(state_dir: Path, *, max_job_size: int) -> Iterator[Daemon]:
    daemon = Daemon(state_dir, max_job_size=max_job_size)
    try:
        daemon.start()
        yield daemon
    finally:
        status = daemon.stop()
        if status not in (0, None):
            log(f"  warning: the daemon exited with status {status}; see {daemon.stderr_path}")


# -- clients -----------------------------------------------------------------------------------------


def wait_for_close(sock: socket.socket) -> None:
    """The ack: the spooler closes its side once the job is durable. Anything else is an error."""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        raise RuntimeError(f"the spooler sent {len(data)} unexpected bytes")


def send_file_job(port: int, source: Path) -> float:
    """One job: connect, sendfile, half-close, wait for the close. Returns seconds from connect to close."""
    with open(source, "rb") as data:
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as sock:
            sock.sendfile(data)
            sock.shutdown(socket.SHUT_WR)
            wait_for_close(sock)
        return time.perf_counter() - started


def send_small_job(port: int, payload: bytes) -> float:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        wait_for_close(sock)
    return time.perf_counter() - started


@dataclass
class ClientLoad:
    seconds: float
    latencies: list[float]
    errors: list[str]


def concurrent_small_jobs(port: int, payload: bytes, jobs: int, clients: int) -> ClientLoad:
    """`clients` threads sending `jobs` jobs between them, back-to-back, all starting together."""
    shares = [jobs // clients + (1 if index < jobs % clients else 0) for index in range(clients)]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(share: int) -> None:
        start.wait()
        mine, failed = [], []
        for _ in range(share):
            try:
                mine.append(send_small_job(port, payload))
            except (OSError, RuntimeError) as error:
                failed.append(f"{type(error).__name__}: {error}")
        with lock:
            latencies.extend(mine)
            errors.extend(failed)

    threads = [threading.Thread(target=client, args=(share,), daemon=True) for share in shares]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return ClientLoad(time.perf_counter() - started, latencies, errors)


# -- correctness -------------------------------------------------------------------------------------


def spooled_jobs(state_dir: Path) -> list[tuple[int, str, int, int, bytes | None]]:
    """(job_id, file name, document size, job size, data if stored inline) of every job row in the
    daemon's database (small documents are stored in the database itself: `spool.inline_max`)."""
    with sqlite3.connect(f"{(state_dir / 'spooler.db').as_uri()}?mode=ro", uri=True) as db:
        return db.execute(
            "SELECT j.job_id, d.file_name, d.size, j.size, i.data FROM jobs j JOIN documents d USING (job_id)"
            " LEFT JOIN document_data i USING (job_id, number) ORDER BY job_id"
        ).fetchall()


def check_spool(state_dir: Path, *, jobs: int, size: int, expected: Callable[[Path], bool],
                expected_inline: Callable[[bytes], bool] | None = None) -> list[str]:  # fmt: skip
    """Problems with what the daemon spooled: `jobs` rows of `size` bytes, each in a file whose content
    `expected` accepts or stored inline with content `expected_inline` accepts."""
    problems = []
    rows = spooled_jobs(state_dir)
    if len(rows) != jobs:
        problems.append(f"{len(rows)} job rows in the database, expected {jobs}")
    for job_id, file_name, doc_size, job_size, inline in rows:
        path = state_dir / "spool" / file_name
        if inline is not None:
            actual, where = len(inline), "inline data"
        else:
            actual, where = (path.stat().st_size if path.exists() else None), f"file {file_name}"
        if not doc_size == job_size == actual == size:
            problems.append(f"job {job_id}: sent {size} bytes, row says {job_size}/{doc_size}, {where} has {actual}")
        elif inline is not None and (expected_inline is None or not expected_inline(inline)):
            problems.append(f"job {job_id}: the inline data differs from what was sent")
        elif inline is None and not expected(path):
            problems.append(f"job {job_id}: the content of {file_name} differs from what was sent")
    # a document stored inline may also have a spool file: a copy written when delivery first needed it
    files = {p.name for p in (state_dir / "spool").iterdir()} - {row[1] for row in rows if row[4] is not None}
    on_disk = {row[1] for row in rows if row[4] is None}
    if files != on_disk:
        problems.append(f"{len(files)} files of their own in the spool folder, expected {len(on_disk)}")
    leftovers = list((state_dir / "incoming").iterdir())
    if leftovers:
        problems.append(f"{len(leftovers)} partial files left in incoming/")
    return problems[:10]


def same_samples(source: Path, copy: Path, size: int) -> bool:
    """Whether the first, middle and last MiB of `copy` equal those of `source` (a full compare costs too much)."""
    offsets = sorted({0, max(0, size // 2 - MiB // 2), max(0, size - MiB)})
    with open(source, "rb") as a, open(copy, "rb") as b:
        for offset in offsets:
            a.seek(offset)
            b.seek(offset)
            if a.read(MiB) != b.read(MiB):
                return False
    return True


# -- one measured step each --------------------------------------------------------------------------


@dataclass
class SpoolerRun:
    seconds: float
    peak_rss_kb: int  # VmHWM of a daemon started for this run alone
    idle_rss_kb: int  # VmRSS once the daemon listens, before the first byte
    cpu_seconds: float  # the daemon's user + system time during the measured part
    jobs: int = 1
    latencies: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def settle() -> None:
    """Flush whatever earlier steps left dirty (deleted files, discards) so it does not land in the next timing."""
    os.sync()
    time.sleep(0.2)


def spooler_big_job(root: Path, name: str, source: Path, size: int) -> SpoolerRun:
    state_dir = root / name
    try:
        with running_daemon(state_dir, max_job_size=max(size, 4 * 1024**3)) as daemon:
            idle = daemon.memory_kb()["VmRSS"]
            cpu_before = daemon.cpu_seconds()
            seconds = send_file_job(daemon.port, source)
            cpu = daemon.cpu_seconds() - cpu_before
            peak = daemon.memory_kb()["VmHWM"]
        problems = check_spool(state_dir, jobs=1, size=size, expected=lambda path: same_samples(source, path, size))
        problems += daemon.unexpected_stderr()
        return SpoolerRun(seconds, peak, idle, cpu, problems=problems)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
        settle()


def spooler_small_jobs(root: Path, name: str, payload: bytes, jobs: int, clients: int) -> SpoolerRun:
    state_dir = root / name
    try:
        with running_daemon(state_dir, max_job_size=4 * 1024**3) as daemon:
            idle = daemon.memory_kb()["VmRSS"]
            cpu_before = daemon.cpu_seconds()
            load = concurrent_small_jobs(daemon.port, payload, jobs, clients)
            cpu = daemon.cpu_seconds() - cpu_before
            peak = daemon.memory_kb()["VmHWM"]
        problems = [f"client: {error}" for error in load.errors[:5]]
        if len(load.errors) > 5:
            problems.append(f"... {len(load.errors)} client errors in all")
        accepted = jobs - len(load.errors)
        problems += check_spool(
            state_dir, jobs=accepted, size=len(payload), expected=lambda path: path.read_bytes() == payload,
            expected_inline=lambda data: data == payload,
        )
        problems += daemon.unexpected_stderr()
        return SpoolerRun(load.seconds, peak, idle, cpu, jobs=accepted, latencies=load.latencies, problems=problems)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
        settle()


def baseline_big_copy(root: Path, name: str, source: Path) -> float:
    folder = root / name
    folder.mkdir()
    try:
        return plain_copy(source, folder / "copy")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        settle()


def baseline_small_files(root: Path, name: str, payload: bytes, jobs: int) -> float:
    folder = root / name
    try:
        return durable_small_files(folder, jobs, payload)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        settle()


# -- the whole benchmark -----------------------------------------------------------------------------


@dataclass
class Settings:
    size_mb: int
    runs: int
    small_jobs: int
    clients: int
    small_size: int


@dataclass
class Measurements:
    plain_seconds: list[float] = field(default_factory=list)
    big: list[SpoolerRun] = field(default_factory=list)
    small_baseline_seconds: list[float] = field(default_factory=list)
    small: list[SpoolerRun] = field(default_factory=list)


def run_round(
    root: Path, label: str, settings: Settings, source: Path, payload: bytes, *, spooler_first: bool
) -> tuple[float, SpoolerRun, float, SpoolerRun]:
    """One round: plain copy and big spooler job, small-file baseline and small spooler jobs (order alternated)."""
    size = settings.size_mb * MiB

    def big_pair() -> tuple[float, SpoolerRun]:
        if spooler_first:
            spooled = spooler_big_job(root, f"{label}-big", source, size)
            return baseline_big_copy(root, f"{label}-copy", source), spooled
        plain = baseline_big_copy(root, f"{label}-copy", source)
        return plain, spooler_big_job(root, f"{label}-big", source, size)

    def small_pair() -> tuple[float, SpoolerRun]:
        if spooler_first:
            spooled = spooler_small_jobs(root, f"{label}-small", payload, settings.small_jobs, settings.clients)
            return baseline_small_files(root, f"{label}-files", payload, settings.small_jobs), spooled
        plain = baseline_small_files(root, f"{label}-files", payload, settings.small_jobs)
        return plain, spooler_small_jobs(root, f"{label}-small", payload, settings.small_jobs, settings.clients)

    plain, big = big_pair()
    log(f"  big job   plain {plain:7.3f}s  spooler {big.seconds:7.3f}s  ratio {plain / big.seconds:5.2f}"
        f"  peak RSS {big.peak_rss_kb / 1024:6.1f} MiB")  # fmt: skip
    files, small = small_pair()
    log(f"  small     plain {settings.small_jobs / files:7.0f}/s  spooler {small.jobs / small.seconds:7.0f}/s"
        f"  peak RSS {small.peak_rss_kb / 1024:6.1f} MiB")  # fmt: skip
    for problem in big.problems + small.problems:
        log(f"  PROBLEM: {problem}")
    return plain, big, files, small


def measure(root: Path, settings: Settings) -> Measurements:
    source = root / "source.bin"
    size = settings.size_mb * MiB
    log(f"generating {settings.size_mb} MiB of pseudo-random data in {source}")
    make_source(source, size)
    payload = random.Random(42).randbytes(settings.small_size)
    results = Measurements()
    for index in range(settings.runs + 1):
        label = "warmup" if index == 0 else f"run{index}"
        log(f"{label} (discarded)" if index == 0 else f"{label}/{settings.runs}")
        plain, big, files, small = run_round(root, label, settings, source, payload, spooler_first=index % 2 == 1)
        if index == 0:
            continue
        results.plain_seconds.append(plain)
        results.big.append(big)
        results.small_baseline_seconds.append(files)
        results.small.append(small)
    return results


# -- the report --------------------------------------------------------------------------------------


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def summarize(settings: Settings, results: Measurements, elapsed: float) -> dict[str, Any]:
    size = settings.size_mb * MiB
    small_bytes = settings.small_jobs * settings.small_size
    big_ratios = [plain / run.seconds for plain, run in zip(results.plain_seconds, results.big)]
    small_rates = [run.jobs / run.seconds for run in results.small]
    file_rates = [settings.small_jobs / seconds for seconds in results.small_baseline_seconds]
    big_peak = [run.peak_rss_kb * 1024 / MB for run in results.big]
    small_peak = [run.peak_rss_kb * 1024 / MB for run in results.small]
    latencies = [latency for run in results.small for latency in run.latencies]
    problems = [problem for run in results.big + results.small for problem in run.problems]
    return {
        "settings": asdict(settings),
        "device": f"{DEVICE_URI} (refuses connections: intake only, no delivery)",
        "rss_method": "VmHWM of a fresh daemon per run (lifetime high-water mark, read just before SIGTERM)",
        "big_job": {
            "bytes": size,
            "plain_copy_seconds": spread(results.plain_seconds),
            "plain_copy_MiB_per_s": spread([size / MiB / s for s in results.plain_seconds]),
            "spooler_seconds": spread([run.seconds for run in results.big]),
            "spooler_MiB_per_s": spread([size / MiB / run.seconds for run in results.big]),
            "ratio_spooler_to_plain": spread(big_ratios),
            "ratio_target": RATIO_TARGET,
            "ratio_ok": statistics.median(big_ratios) >= RATIO_TARGET,
            "daemon_cpu_seconds": spread([run.cpu_seconds for run in results.big]),
            "daemon_idle_rss_MB": spread([run.idle_rss_kb * 1024 / MB for run in results.big]),
            "daemon_peak_rss_MB": spread(big_peak),
        },
        "small_jobs": {
            "jobs": settings.small_jobs,
            "clients": settings.clients,
            "job_bytes": settings.small_size,
            "spooler_seconds": spread([run.seconds for run in results.small]),
            "spooler_jobs_per_s": spread(small_rates),
            "spooler_MiB_per_s": spread([small_bytes / MiB / run.seconds for run in results.small]),
            "job_latency_ms": {"p50": percentile(latencies, 0.5) * 1000, "p99": percentile(latencies, 0.99) * 1000,
                               "max": max(latencies, default=float("nan")) * 1000},  # fmt: skip
            "baseline": "sequential write + fsync + rename + folder fsync per file, no network, no SQLite",
            "baseline_files_per_s": spread(file_rates),
            "ratio_spooler_to_baseline": spread([s / f for s, f in zip(small_rates, file_rates)]),
            "daemon_cpu_seconds": spread([run.cpu_seconds for run in results.small]),
            "daemon_peak_rss_MB": spread(small_peak),
        },
        "peak_rss_MB": max(big_peak + small_peak),
        "rss_target_MB": RSS_TARGET_MB,
        "rss_ok": max(big_peak + small_peak) < RSS_TARGET_MB,
        "problems": problems,
        "elapsed_seconds": elapsed,
    }


def table(summary: dict[str, Any]) -> str:
    big, small, settings = summary["big_job"], summary["small_jobs"], summary["settings"]

    def row(label: str, figures: dict[str, float], unit: str, fmt: str = "{:.3f}") -> str:
        cells = [fmt.format(figures[key]) for key in ("median", "min", "max")]
        return f"  {label:<38}{cells[0]:>10}{cells[1]:>10}{cells[2]:>10}  {unit}"

    head = f"  {'':<38}{'median':>10}{'min':>10}{'max':>10}"
    lines = [
        f"Raw intake, {settings['runs']} runs (after one discarded warm-up), device {summary['device']}",
        f"Peak RSS: {summary['rss_method']}",
        "",
        f"One {settings['size_mb']} MiB job over loopback (sendfile), connect -> close (durable ack)",
        head,
        row("plain copy, 1 MiB writes + fsync", big["plain_copy_seconds"], "s"),
        row("spooler intake", big["spooler_seconds"], "s"),
        row("plain copy throughput", big["plain_copy_MiB_per_s"], "MiB/s", "{:.0f}"),
        row("spooler throughput", big["spooler_MiB_per_s"], "MiB/s", "{:.0f}"),
        row("ratio spooler/plain", big["ratio_spooler_to_plain"], f"target >= {RATIO_TARGET}: "
            + ("ok" if big["ratio_ok"] else "MISSED")),
        row("daemon CPU time (user+sys)", big["daemon_cpu_seconds"], "s"),
        row("daemon RSS when idle", big["daemon_idle_rss_MB"], "MB", "{:.1f}"),
        row("daemon peak RSS (VmHWM)", big["daemon_peak_rss_MB"], "MB", "{:.1f}"),
        "",
        f"{small['jobs']} jobs of {small['job_bytes']} bytes from {small['clients']} concurrent clients",
        head,
        row("spooler", small["spooler_seconds"], "s"),
        row("spooler jobs/s", small["spooler_jobs_per_s"], "jobs/s", "{:.0f}"),
        row("baseline files/s (sequential, *)", small["baseline_files_per_s"], "files/s", "{:.0f}"),
        row("ratio spooler/baseline (*)", small["ratio_spooler_to_baseline"], ""),
        row("daemon CPU time (user+sys)", small["daemon_cpu_seconds"], "s"),
        row("daemon peak RSS (VmHWM)", small["daemon_peak_rss_MB"], "MB", "{:.1f}"),
        "  job latency, all runs: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max:.1f} ms".format(**small["job_latency_ms"]),
        f"  (*) a different kind of baseline: {small['baseline']}",
        "",
        f"Peak RSS overall {summary['peak_rss_MB']:.1f} MB (target < {RSS_TARGET_MB:.0f} MB): "
        + ("ok" if summary["rss_ok"] else "MISSED"),
        "Correctness and daemon stderr: "
        + (f"{len(summary['problems'])} problem(s):" if summary["problems"] else "no problems"),
        *[f"  - {problem}" for problem in summary["problems"][:20]],
        f"Whole benchmark: {summary['elapsed_seconds']:.0f} s",
    ]  # fmt: skip
    return "\n".join(lines)


# -- command line ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=None, help="size of the big job in MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=None, help="measured runs after one warm-up (default 5)")
    parser.add_argument("--small-jobs", type=int, default=None, help="small jobs per run (default 2000)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients for the small jobs")
    parser.add_argument("--small-size", type=int, default=10240, help="bytes per small job")
    parser.add_argument("--quick", action="store_true", help="smoke run: 256 MiB, 3 runs, 300 small jobs")
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of the table")
    parser.add_argument("--tmp", type=Path, default=Path("/tmp"), help="where the temporary folder goes")
    args = parser.parse_args(argv)
    quick = args.quick
    settings = Settings(
        size_mb=args.size_mb or (256 if quick else 1024),
        runs=args.runs or (3 if quick else 5),
        small_jobs=args.small_jobs or (300 if quick else 2000),
        clients=args.clients,
        small_size=args.small_size,
    )
    if min(settings.size_mb, settings.runs, settings.small_jobs, settings.clients, settings.small_size) < 1:
        parser.error("sizes and counts must be at least 1")
    return settings, args


def check_free_space(folder: Path, settings: Settings) -> None:
    """Source + one spooled copy + the daemon's 1 GiB floor + slack."""
    needed = 2 * settings.size_mb * MiB + 1024 * MiB + 512 * MiB
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise SystemExit(f"not enough free space in {folder}: {free / MiB:.0f} MiB, need {needed / MiB:.0f} MiB")


def main(argv: Sequence[str] | None = None) -> int:
    settings, args = parse_args(argv)
    check_free_space(args.tmp, settings)
    root = Path(tempfile.mkdtemp(prefix="rawb", dir=args.tmp))  # short: the admin socket path must stay < 108 bytes
    started = time.perf_counter()
    try:
        results = measure(root, settings)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summary = summarize(settings, results, time.perf_counter() - started)
    print(json.dumps(summary, indent=2) if args.json else table(summary))
    return 1 if summary["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
