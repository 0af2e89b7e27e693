"""Load and abuse with real processes: 50 concurrent clients over IPP, LPD and raw; floods of idle
connections (the well-behaved client still gets in); a client that sends a byte now and then (cut off
at the idle timeout); the disk filling up (new jobs refused with each protocol's busy answer, existing
jobs untouched, intake back by itself when space returns)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from chaos_harness import ipp_print_job, lpd_print, raw_print
from spooler_harness import IN_CI, Spooler, free_port, open_idle, pjl_job, require_tool, short_tempdir, wait_for

pytestmark = pytest.mark.e2e
SpoolerFactory = Callable[..., Spooler]
BUSY = 0x0507  # server-error-busy


def send_job(spooler: Spooler, protocol: str, name: str, data: bytes, queue: str = "default") -> bool:
    """One job over `protocol`; True when the client saw the protocol's acknowledgement."""
    try:
        if protocol == "ipp":
            return ipp_print_job(spooler.ipp_port, queue, "load", name, data) == 0
        if protocol == "lpd":
            return lpd_print(spooler.lpd_port, queue, "load", name, data, number=1)
        return raw_print(spooler.raw_port, pjl_job("load", name, data))
    except OSError:
        return False
    except Exception as error:  # http.client's RemoteDisconnected & co: no answer, no acknowledgement
        if type(error).__module__ == "http.client":
            return False
        raise


def delivered_names(spooler: Spooler) -> list[str]:
    return [spooler.sink_sidecar(path)["name"] for path in spooler.sink_files()]


@pytest.fixture(autouse=True)
def many_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, 8192):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))


def test_fifty_concurrent_clients_across_the_three_protocols(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory().start()
    protocols = ["ipp", "lpd", "raw"]
    results: dict[str, bool] = {}
    start = threading.Barrier(50)

    def client(number: int) -> None:
        protocol = protocols[number % 3]
        start.wait(30)
        for sequence in range(3):
            name = f"{protocol}-{number}-{sequence}"
            results[name] = send_job(spooler, protocol, name, os.urandom(2000 + 97 * number) + name.encode())

    threads = [threading.Thread(target=client, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 150 and all(results.values()), sorted(n for n, ok in results.items() if not ok)
    spooler.wait_delivered(150, timeout=120)
    names = delivered_names(spooler)
    assert sorted(names) == sorted(results)  # every job once
    journal = [d["uuid"] for d in spooler.deliveries()]
    assert len(journal) == len(set(journal)) == 150
    for number in range(50):  # per client, its jobs in the order it sent them
        mine = [n for n in names if n.startswith(f"{protocols[number % 3]}-{number}-")]
        assert mine == sorted(mine) and len(mine) == 3


def test_floods_of_idle_connections_do_not_starve_real_clients(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory(limits__max_connections=40)
    ports = {"raw": spooler.raw_port, "lpd": spooler.lpd_port, "ipp": spooler.ipp_port}
    # Deep accept queues, so that each flood is connected at once (no SYN retries spread over half a
    # minute) and the real clients come after it.
    spooler.write_config(**{f"listen__{protocol}": f"tcp:{port}:interface=127.0.0.1:backlog=2048"
                            for protocol, port in ports.items()})  # fmt: skip
    spooler.start()
    flood = [sock for port in ports.values() for sock in open_idle(port, 1000)]
    try:
        wait_for(lambda: len(spooler.events("connection_evicted")) >= 3 * (1000 - 40), timeout=60,
                 what="the floods to be taken in (40 kept per listener, the others evicted by newer ones)")  # fmt: skip
        for number in range(2):
            for protocol in ports:
                assert send_job(spooler, protocol, f"{protocol} {number}", b"through the flood"), (protocol, number)
        spooler.wait_delivered(6, timeout=30)
        assert sorted(delivered_names(spooler)) == sorted(f"{p} {n}" for p in ports for n in range(2))
        status = spooler.status()
        assert all(status["connections"][protocol] <= 40 for protocol in ports)  # the limit still holds
    finally:
        for sock in flood:
            sock.close()


def test_clients_sending_a_byte_now_and_then_are_cut_off_at_the_idle_timeout(spooler_factory: SpoolerFactory) -> None:
    # "One byte a minute", scaled: idle_timeout 1 s, a byte every 2.5 s; over each protocol at once.
    spooler = spooler_factory(limits__idle_timeout="1s").start()
    ports = {"raw": spooler.raw_port, "lpd": spooler.lpd_port, "ipp": spooler.ipp_port}
    starts = {"raw": b"\x1b%-12345X@PJL\r\n", "lpd": b"\x02default\n",
              "ipp": b"POST /ipp/print HTTP/1.1\r\nHost: x\r\n"}  # fmt: skip
    cut: dict[str, bool] = {}

    def drip(protocol: str) -> None:
        with socket.create_connection(("127.0.0.1", ports[protocol]), timeout=30) as slow:
            slow.sendall(starts[protocol])
            if protocol == "lpd":
                assert slow.recv(1) == b"\x00"  # the queue is accepted; then the client stalls
            for _ in range(6):
                time.sleep(2.5)
                try:
                    slow.sendall(b"X")
                    slow.settimeout(0.5)
                    if slow.recv(100) == b"":
                        cut[protocol] = True
                        return
                except TimeoutError:
                    slow.settimeout(30)
                except (BrokenPipeError, ConnectionResetError):
                    cut[protocol] = True
                    return
            cut[protocol] = False

    threads = [threading.Thread(target=drip, args=(protocol,)) for protocol in ports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert cut == {"raw": True, "lpd": True, "ipp": True}
    assert spooler.jobs() == []
    for protocol in ports:
        assert send_job(spooler, protocol, f"normal {protocol}", b"a normal job")  # the spooler is fine
    spooler.wait_delivered(3)


# -- the disk filling up --------------------------------------------------------------------------------


class TmpfsSpooler(Spooler):
    """A spooler whose state folder is a small tmpfs of its own: mounted in a private mount namespace
    (`unshare --mount`), so the machine's mounts are untouched and the mount goes with the process. The
    test sees the folder through /proc/PID/root."""

    def __init__(self, root: Path, size: str, **settings: object) -> None:
        self.mount_point = root / "fs"
        self.mount_point.mkdir(parents=True)
        self.size = size
        super().__init__(root, **settings)
        self.inside = self.mount_point / "state"
        self.state_dir = self.inside
        self.sink = self.inside / "device"
        self.write_config()

    def command(self) -> list[str]:
        mount = f'mount -t tmpfs -o size={self.size},mode=700 spool "$0" && exec "$@"'
        return [require_tool("unshare"), "--mount", "--propagation", "private", "--", "sh", "-c", mount,
                str(self.mount_point), *super().command()]  # fmt: skip

    def start(self, wait: bool = True) -> TmpfsSpooler:
        super().start(wait=False)
        assert self.process is not None
        self.state_dir = Path(f"/proc/{self.process.pid}/root{self.inside}")
        self.sink = self.state_dir / "device"
        wait_for(self._ready, timeout=20, what=f"the spooler to listen (stderr: {self.stderr_path})")
        return self

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return super().cli(*args, "--state-dir", str(self.state_dir), check=check)


@pytest.fixture
def tmpfs_spooler() -> Iterator[Callable[..., TmpfsSpooler]]:
    require_tool("unshare")
    made: list[TmpfsSpooler] = []

    def make(size: str, **settings: object) -> TmpfsSpooler:
        spooler = TmpfsSpooler(short_tempdir("df"), size, **settings)
        made.append(spooler)
        probe = subprocess.run(spooler.command()[:9] + ["true"], capture_output=True, text=True)
        if probe.returncode != 0:
            message = f"cannot mount a tmpfs in a private namespace here: {probe.stderr.strip()}"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        return spooler

    yield make
    for spooler in made:
        spooler.cleanup()


def test_a_full_disk_refuses_new_jobs_busy_keeps_the_old_ones_and_recovers_by_itself(
        tmpfs_spooler: Callable[..., TmpfsSpooler]) -> None:  # fmt: skip
    device_port = free_port()  # nothing listens: jobs stay spooled
    spooler = tmpfs_spooler("48m", spool__min_free_space="16MiB", device__uri=f"socket://127.0.0.1:{device_port}",
                            device__retry_initial="200ms", device__retry_max="500ms").start()  # fmt: skip
    kept = {protocol: os.urandom(100_000) for protocol in ("ipp", "lpd", "raw")}
    for protocol, data in kept.items():
        assert send_job(spooler, protocol, f"before {protocol}", data)
    def summary() -> dict[int, tuple[object, ...]]:
        return {job["job_id"]: (job["name"], job["state"] in ("pending", "processing"), job["size"], job["uuid"])
                for job in spooler.jobs()}  # fmt: skip

    before = summary()
    spool_files = {p.name: p.read_bytes() for p in (spooler.state_dir / "spool").iterdir()}
    assert len(before) == 3 and len(spool_files) == 3

    filler = spooler.state_dir / "filler"
    with open(filler, "wb") as handle:  # the disk fills up: free space falls below the 16 MiB floor
        handle.write(b"\0" * (shutil.disk_usage(spooler.state_dir).free - 8 * 1024 * 1024))
    assert shutil.disk_usage(spooler.state_dir).free < 16 * 1024 * 1024
    assert ipp_print_job(spooler.ipp_port, "default", "late", "refused", b"no room") == BUSY
    assert not send_job(spooler, "lpd", "refused", b"no room")
    assert not send_job(spooler, "raw", "refused", b"no room")
    status = spooler.status()
    assert status["daemon"]["running"] and status["spool"]["accepting"] is False
    assert summary() == before  # the old jobs untouched (still waiting for the device)
    assert {p.name: p.read_bytes() for p in (spooler.state_dir / "spool").iterdir()} == spool_files
    assert spooler.events("spool_full")

    filler.unlink()  # space returns: intake resumes by itself
    for protocol in ("ipp", "lpd", "raw"):
        assert send_job(spooler, protocol, f"after {protocol}", b"room again")
    assert len(spooler.jobs()) == 6

    # A job bigger than the disk: above the floor when it starts, it hits ENOSPC mid-stream and is
    # refused cleanly (no acknowledgement, nothing left behind); the next job is taken.
    for protocol in ("raw", "lpd", "ipp"):
        assert not send_job(spooler, protocol, f"huge {protocol}", b"\0" * (64 * 1024 * 1024)), protocol
        wait_for(lambda: list((spooler.state_dir / "incoming").iterdir()) == [], what="incoming/ emptied")
        assert send_job(spooler, protocol, f"fits {protocol}", b"fits")
    assert len(spooler.jobs()) == 9 and summary().items() >= before.items()
    assert spooler.process is not None and spooler.process.poll() is None
