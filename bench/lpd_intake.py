"""LPD-intake benchmark: a big job and many small concurrent jobs over LPD, as a ratio to raw 9100 intake.

Each step runs a fresh `spooler serve` (from bench/raw_intake.py) listening on both raw and LPD, on
127.0.0.1, with a device that refuses connections so that jobs stay spooled and delivery does not
compete with intake. Raw and LPD steps alternate, in swapped order every other run.

* big job: raw = connect, sendfile, half-close, wait for the close (raw's durable ack); LPD = the CUPS
  lpd backend's default conversation (02 queue, control file, data file with its byte count, sent
  with sendfile), timed from connect to the last 0x00 (the ack sent once the job is durable).
* small jobs: C concurrent client threads, one connection per job, each LPD client waiting for
  every 0x00 as the CUPS backend does.

    python bench/lpd_intake.py              # 512 MiB x 4 runs, 1000 x 10 KiB jobs from 16 clients
    python bench/lpd_intake.py --quick      # 128 MiB x 2 runs, 300 small jobs
    python bench/lpd_intake.py --json       # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from raw_intake import (  # noqa: E402  (bench/ is not a package)
    CLIENT_TIMEOUT, MiB, Daemon, check_spool, concurrent_small_jobs, free_port, log, make_source, send_file_job,
)  # fmt: skip

RATIO_TARGET = 0.9
QUEUE = b"default"


class LpdDaemon(Daemon):
    """The raw bench's daemon, listening on an LPD port as well."""

    def __init__(self, state_dir: Path, *, max_job_size: int) -> None:
        super().__init__(state_dir, max_job_size=max_job_size)
        self.lpd_port = free_port()

    def write_config(self) -> Path:
        config = super().write_config()
        text = config.read_text().replace('lpd = ""\n', f'lpd = "tcp:{self.lpd_port}:interface=127.0.0.1"\n')
        config.write_text(text)
        return config


def expect_ack(sock: socket.socket, step: str) -> None:
    answer = sock.recv(1)
    if answer != b"\x00":
        raise RuntimeError(f"LPD {step}: expected 0x00, got {answer!r}")


def lpd_conversation(port: int, size: int, send_data: Callable[[socket.socket], None], number: int = 1) -> float:
    """One job as the CUPS lpd backend sends it (control file first). Seconds from connect to the last ack."""
    data_file = f"dfA{number % 1000:03d}bench"
    control = f"Hbench\nPbench\nJbench job\nl{data_file}\nU{data_file}\nNbench\n".encode()
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as sock:
        # Small writes that wait for an answer: without TCP_NODELAY, Nagle holds the trailing 0x00 back
        # until the previous data segment is acknowledged (up to the peer's delayed-ACK timer).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"\x02" + QUEUE + b"\n")
        expect_ack(sock, "receive job")
        sock.sendall(b"\x02%d cfA%03dbench\n" % (len(control), number % 1000))
        expect_ack(sock, "control file command")
        sock.sendall(control + b"\x00")
        expect_ack(sock, "control file")
        sock.sendall(b"\x03%d dfA%03dbench\n" % (size, number % 1000))
        expect_ack(sock, "data file command")
        send_data(sock)  # ends with the trailing 0x00
        expect_ack(sock, "data file (the durable ack)")
        elapsed = time.perf_counter() - started
        sock.shutdown(socket.SHUT_WR)
        if sock.recv(1) != b"":
            raise RuntimeError("unexpected bytes after the last ack")
    return elapsed


def lpd_big_job(port: int, source: Path) -> float:
    size = source.stat().st_size
    with open(source, "rb") as data:

        def send_data(sock: socket.socket) -> None:
            sock.sendfile(data)
            sock.sendall(b"\x00")

        return lpd_conversation(port, size, send_data)


def lpd_small_jobs(port: int, payload: bytes, jobs: int, clients: int) -> tuple[float, list[str]]:
    shares = [jobs // clients + (1 if index < jobs % clients else 0) for index in range(clients)]
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(share: int, first: int) -> None:
        start.wait()
        for number in range(first, first + share):
            try:
                lpd_conversation(port, len(payload), lambda sock: sock.sendall(payload + b"\x00"), number)
            except (OSError, RuntimeError) as error:
                with lock:
                    errors.append(f"{type(error).__name__}: {error}")

    firsts = [sum(shares[:index]) for index in range(clients)]
    threads = [threading.Thread(target=client, args=pair, daemon=True) for pair in zip(shares, firsts)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, errors


@dataclass
class Settings:
    size_mb: int
    runs: int
    small_jobs: int
    clients: int
    small_size: int


def same_head_and_tail(source: Path) -> Callable[[Path], bool]:
    size = source.stat().st_size

    def check(path: Path) -> bool:
        with open(source, "rb") as a, open(path, "rb") as b:
            for offset in (0, max(0, size // 2 - MiB // 2), max(0, size - MiB)):
                a.seek(offset)
                b.seek(offset)
                if a.read(MiB) != b.read(MiB):
                    return False
        return True

    return check


def step(root: Path, label: str, max_job_size: int, run: Callable[[LpdDaemon], Any],
         check: Callable[[Path], list[str]]) -> tuple[Any, list[str]]:  # fmt: skip
    state = root / label
    daemon = LpdDaemon(state, max_job_size=max_job_size)
    try:
        daemon.start()
        result = run(daemon)
    finally:
        daemon.stop()
    problems = [f"{label}: {problem}" for problem in check(state) + daemon.unexpected_stderr()]
    shutil.rmtree(state, ignore_errors=True)
    os.sync()
    return result, problems


def measure(root: Path, settings: Settings) -> dict[str, Any]:
    source = root / "source.bin"
    size = settings.size_mb * MiB
    log(f"generating {settings.size_mb} MiB of pseudo-random data")
    make_source(source, size)
    payload = random.Random(515).randbytes(settings.small_size)
    small_check = lambda path: path.read_bytes() == payload  # noqa: E731
    big_check = same_head_and_tail(source)
    figures: dict[str, list[float]] = {"raw_big": [], "lpd_big": [], "raw_small": [], "lpd_small": []}
    problems: list[str] = []
    for index in range(settings.runs + 1):
        label = "warmup" if index == 0 else f"run{index}"
        log(f"{label}{' (discarded)' if index == 0 else ''}")
        order = ["raw", "lpd"] if index % 2 == 0 else ["lpd", "raw"]
        results: dict[str, float] = {}
        for protocol in order:
            seconds, found = step(
                root, f"{label}-{protocol}-big", size + MiB,
                lambda d, p=protocol: send_file_job(d.port, source) if p == "raw" else lpd_big_job(d.lpd_port, source),
                lambda state: check_spool(state, jobs=1, size=size, expected=big_check),
            )  # fmt: skip
            results[f"{protocol}_big"] = size / MiB / seconds
            problems += found
        for protocol in order:
            if protocol == "raw":
                run = lambda d: concurrent_small_jobs(  # noqa: E731
                    d.port, payload, settings.small_jobs, settings.clients)
                load, found = step(root, f"{label}-raw-small", MiB, run, lambda state: check_spool(
                    state, jobs=settings.small_jobs, size=len(payload), expected=small_check,
                    expected_inline=lambda data: data == payload))  # fmt: skip
                seconds, errors = load.seconds, load.errors
            else:
                run = lambda d: lpd_small_jobs(d.lpd_port, payload, settings.small_jobs, settings.clients)  # noqa: E731
                (seconds, errors), found = step(root, f"{label}-lpd-small", MiB, run, lambda state: check_spool(
                    state, jobs=settings.small_jobs, size=len(payload), expected=small_check,
                    expected_inline=lambda data: data == payload))  # fmt: skip
            results[f"{protocol}_small"] = settings.small_jobs / seconds
            problems += found + errors[:5]
        log(f"  big: raw {results['raw_big']:6.0f} MiB/s  lpd {results['lpd_big']:6.0f} MiB/s"
            f"  | small: raw {results['raw_small']:5.0f} jobs/s  lpd {results['lpd_small']:5.0f} jobs/s")  # fmt: skip
        if index:
            for key, value in results.items():
                figures[key].append(value)
    big_ratios = [lpd / raw for lpd, raw in zip(figures["lpd_big"], figures["raw_big"])]
    small_ratios = [lpd / raw for lpd, raw in zip(figures["lpd_small"], figures["raw_small"])]

    def spread(values: Sequence[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    def ratio(values: Sequence[float]) -> dict[str, float]:
        # Whichever protocol goes first in a round tends to meet a slower disk; the order alternates,
        # so over an even number of runs the geometric mean of the per-run ratios cancels that bias.
        return {**spread(values), "geomean": statistics.geometric_mean(values)}

    return {
        "settings": asdict(settings),
        "big_MiB_per_s": {"raw": spread(figures["raw_big"]), "lpd": spread(figures["lpd_big"])},
        "big_ratio_lpd_to_raw": ratio(big_ratios),
        "small_jobs_per_s": {"raw": spread(figures["raw_small"]), "lpd": spread(figures["lpd_small"])},
        "small_ratio_lpd_to_raw": ratio(small_ratios),
        "ratio_target": RATIO_TARGET,
        "ratio_ok": min(statistics.geometric_mean(big_ratios), statistics.geometric_mean(small_ratios)) >= RATIO_TARGET,
        "problems": problems,
    }


def table(summary: dict[str, Any]) -> str:
    s = summary["settings"]

    def row(label: str, figures: dict[str, float], fmt: str = "{:8.2f}") -> str:
        keys = ("median", "min", "max", "geomean") if "geomean" in figures else ("median", "min", "max")
        return f"  {label:<30}" + "".join(fmt.format(figures[k]) + "  " for k in keys)

    return "\n".join([
        f"LPD vs raw intake, {s['runs']} runs after one discarded warm-up",
        f"  {'':<30}{'median':>8}  {'min':>8}  {'max':>8}  {'geomean':>8}",
        f"One {s['size_mb']} MiB job (MiB/s, connect -> durable ack)",
        row("raw 9100", summary["big_MiB_per_s"]["raw"], "{:8.0f}"),
        row("lpd", summary["big_MiB_per_s"]["lpd"], "{:8.0f}"),
        row("ratio lpd/raw", summary["big_ratio_lpd_to_raw"]),
        f"{s['small_jobs']} jobs of {s['small_size']} bytes from {s['clients']} clients (jobs/s)",
        row("raw 9100", summary["small_jobs_per_s"]["raw"], "{:8.0f}"),
        row("lpd", summary["small_jobs_per_s"]["lpd"], "{:8.0f}"),
        row("ratio lpd/raw", summary["small_ratio_lpd_to_raw"]),
        f"Target: ratios (geometric mean over runs) >= {summary['ratio_target']}: "
        + ("ok" if summary["ratio_ok"] else "MISSED"),
        "Problems: " + ("; ".join(summary["problems"][:10]) if summary["problems"] else "none"),
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=None, help="size of the big job in MiB (default 512)")
    parser.add_argument("--runs", type=int, default=None,
                        help="measured runs after one warm-up (default 4; keep it even: the order alternates)")
    parser.add_argument("--small-jobs", type=int, default=None, help="small jobs per step (default 1000)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--small-size", type=int, default=10240)
    parser.add_argument("--quick", action="store_true", help="128 MiB x 2 runs, 300 small jobs")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--tmp", type=Path, default=Path("/tmp"))
    args = parser.parse_args(argv)
    settings = Settings(
        size_mb=args.size_mb or (128 if args.quick else 512),
        runs=args.runs or (2 if args.quick else 4),
        small_jobs=args.small_jobs or (300 if args.quick else 1000),
        clients=args.clients,
        small_size=args.small_size,
    )
    needed = 2 * settings.size_mb * MiB + 1536 * MiB
    if shutil.disk_usage(args.tmp).free < needed:
        raise SystemExit(f"not enough free space in {args.tmp}: need {needed // MiB} MiB")
    root = Path(tempfile.mkdtemp(prefix="lpdb", dir=args.tmp))
    try:
        summary = measure(root, settings)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(summary, indent=2) if args.json else table(summary))
    return 1 if summary["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
