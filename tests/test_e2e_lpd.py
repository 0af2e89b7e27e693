"""LPD end to end: a real `spooler serve`, the CUPS lpd backend run directly, a scratch cupsd with an lpd://
queue printed to with `lp`, plain sockets for queue state, removal and hostile clients."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from spooler_harness import ScratchCups, Spooler, require_tool, short_tempdir, wait_for

pytestmark = pytest.mark.e2e
SpoolerFactory = Callable[..., Spooler]
CUPS_LPD_BACKEND = "/usr/lib/cups/backend/lpd"
NOT_DELIVERING = {"device__uri": "socket://127.0.0.1:9", "device__retry_initial": "1h", "device__retry_max": "1h"}


def run_lpd_backend(spooler: Spooler, options: str, file: Path, *, user: str = "alice", title: str = "My Title",
                    copies: int = 1, queue: str = "default") -> subprocess.CompletedProcess[str]:  # fmt: skip
    """The CUPS lpd backend as cupsd runs it: argv job-id user title copies options file, DEVICE_URI."""
    backend = require_tool(CUPS_LPD_BACKEND)
    uri = f"lpd://127.0.0.1:{spooler.lpd_port}/{queue}?reserve=none&contimeout=10&sanitize_title=no"
    uri += f"&{options}" if options else ""
    env = dict(os.environ, DEVICE_URI=uri)
    return subprocess.run([backend, "42", user, title, str(copies), "", str(file)], env=env, capture_output=True,
                          text=True, errors="replace", timeout=60)  # fmt: skip


def lpd_exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send bytes to the LPD port and read everything until the spooler closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def lpd_job(queue: str, user: str, name: str, data: bytes, number: int = 1) -> bytes:
    control = f"Hclient\nP{user}\nJ{name}\nldfA{number:03d}client\nUdfA{number:03d}client\n".encode()
    return (b"\x02%s\n" % queue.encode() + b"\x02%d cfA%03dclient\n" % (len(control), number) + control + b"\x00"
            + b"\x03%d dfA%03dclient\n" % (len(data), number) + data + b"\x00")  # fmt: skip


# -- the CUPS lpd backend, run directly ----------------------------------------------------------------


@pytest.mark.parametrize(("options", "copies", "declared"), [
    ("", 1, "application/vnd.cups-raw"),  # CUPS's default: control file first, format l
    ("order=data,control&format=o&banner=on", 1, "application/postscript"),
    ("order=control,data&format=f&manual_copies=no", 3, "text/plain"),
    ("mode=stream&format=l", 1, "application/vnd.cups-raw"),
    ("order=data,control&manual_copies=no", 2, "application/vnd.cups-raw"),
])  # fmt: skip
def test_cups_lpd_backend_jobs_arrive_byte_identical(spooler_factory: SpoolerFactory, tmp_path: Path, options: str,
                                                     copies: int, declared: str) -> None:  # fmt: skip
    spooler = spooler_factory().start()
    data = b"%!PS-Adobe-3.0\n" + os.urandom(300_000) + b"\x00\n%%EOF\n"
    (tmp_path / "job.ps").write_bytes(data)
    title = "Budget 2027 (draft)"
    result = run_lpd_backend(spooler, options, tmp_path / "job.ps", user="alice", title=title, copies=copies)
    assert result.returncode == 0, result.stderr
    [delivered] = spooler.wait_delivered(1)
    assert delivered.read_bytes() == data
    sidecar = spooler.sink_sidecar(delivered)
    assert (sidecar["user"], sidecar["name"], sidecar["copies"]) == ("alice", title, copies)
    [job] = spooler.jobs()
    assert (job["protocol"], job["queue"], job["user"], job["name"], job["size"]) == ("lpd", "default", "alice", title,
                                                                                        len(data))  # fmt: skip
    assert job["attributes"]["declared_format"] == declared and job["document_format"] == "application/postscript"
    [received] = spooler.events("job_received")
    assert (received["protocol"], received["user"], received["job_id"]) == ("lpd", "alice", 1)
    assert "alice" in spooler.cli("jobs", "--all").stdout
    assert not spooler.events("job_refused") and not spooler.events("job_incomplete")


def test_an_unknown_queue_is_refused_and_logged(spooler_factory: SpoolerFactory, tmp_path: Path) -> None:
    spooler = spooler_factory().start()
    assert lpd_exchange(spooler.lpd_port, lpd_job("nosuch", "eve", "x", b"data")) == b"\x01"
    wait_for(lambda: spooler.events("job_refused"), what="the refusal in the spool log")
    [refused] = spooler.events("job_refused")
    assert "unknown queue" in refused["why"] and refused["queue"] == "nosuch"
    assert spooler.jobs() == []


def test_a_single_queue_spooler_answers_the_names_clients_default_to(spooler_factory: SpoolerFactory,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    """As a JetDirect printer does: `lp`, `raw`, `auto` and `PASSTHRU` (any case) reach the one queue, when
    the administrator named no queues; once they are named, only their names do."""
    spooler = spooler_factory().start()
    for number, name in enumerate(("lp", "raw", "auto", "PASSTHRU", "Lp"), start=1):
        (tmp_path / f"{name}.txt").write_bytes(f"sent to {name}\n".encode())
        result = run_lpd_backend(spooler, "", tmp_path / f"{name}.txt", queue=name)
        assert result.returncode == 0, result.stderr
        spooler.wait_delivered(number)
    assert [job["queue"] for job in spooler.jobs()] == ["default"] * 5
    assert [f.read_bytes() for f in spooler.sink_files()] == [f"sent to {n}\n".encode()
                                                              for n in ("lp", "raw", "auto", "PASSTHRU", "Lp")]
    spooler.stop()

    named = spooler_factory()
    named.config_path.write_text(named.config_path.read_text() + "[queues.default]\n")
    named.start()
    assert lpd_exchange(named.lpd_port, lpd_job("lp", "eve", "x", b"data")) == b"\x01"
    wait_for(lambda: named.events("job_refused"), what="the refusal in the spool log")
    assert "unknown queue" in named.events("job_refused")[0]["why"] and named.jobs() == []


def test_named_queues_select_the_job_queue(spooler_factory: SpoolerFactory, tmp_path: Path) -> None:
    spooler = spooler_factory()
    spooler.config_path.write_text(spooler.config_path.read_text() + "[queues.default]\n[queues.color]\n")
    spooler.start()
    (tmp_path / "doc.txt").write_bytes(b"colour page\n")
    assert run_lpd_backend(spooler, "", tmp_path / "doc.txt", queue="color").returncode == 0
    spooler.wait_delivered(1)
    assert [job["queue"] for job in spooler.jobs()] == ["color"]


# -- through a real cupsd ---------------------------------------------------------------------------------


@pytest.fixture
def cupsd() -> Iterator[ScratchCups]:
    for tool in ("lpadmin", "lp", "lpstat"):
        require_tool(tool)
    server = ScratchCups(short_tempdir("cu"))
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def test_lp_through_a_cupsd_lpd_queue(spooler_factory: SpoolerFactory, cupsd: ScratchCups, tmp_path: Path) -> None:
    spooler = spooler_factory().start()
    uri = f"lpd://127.0.0.1:{spooler.lpd_port}/default?reserve=none&manual_copies=no&contimeout=10"
    cupsd.run("lpadmin", "-p", "q", "-E", "-v", uri, check=True)  # no -m: a raw queue, the file passes unchanged
    data = b"%PDF-1.4\n" + os.urandom(100_000) + b"\n%%EOF\n"
    (tmp_path / "report.pdf").write_bytes(data)
    printed = cupsd.run("lp", "-U", "carol", "-d", "q", "-t", "Quarterly report", "-n", "2",
                        str(tmp_path / "report.pdf"), check=True)  # fmt: skip
    assert "request id is q-1" in printed.stdout
    [delivered] = spooler.wait_delivered(1, timeout=30)
    assert delivered.read_bytes() == data
    sidecar = spooler.sink_sidecar(delivered)
    assert (sidecar["user"], sidecar["name"], sidecar["copies"]) == ("carol", "Quarterly report", 2)
    [job] = spooler.jobs()
    assert (job["protocol"], job["user"], job["copies"], job["document_format"]) == ("lpd", "carol", 2,
                                                                                      "application/pdf")  # fmt: skip
    assert spooler.events("job_received")[0]["protocol"] == "lpd"
    wait_for(lambda: "q-1" in cupsd.run("lpstat", "-W", "completed", "-o", "q").stdout, what="cupsd to finish q-1")


# -- queue state and removal over the wire ---------------------------------------------------------------


def test_queue_state_and_removal_over_the_wire(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory(lpd__admin_agents=["root"], **NOT_DELIVERING).start()
    for number, (user, name) in enumerate([("alice", "one"), ("bob", "two"), ("alice", "three")], start=1):
        assert lpd_exchange(spooler.lpd_port, lpd_job("default", user, name, b"x" * number, number)) == b"\x00" * 5
    short = lpd_exchange(spooler.lpd_port, b"\x03default\n").decode()
    assert short.splitlines()[0].startswith("default is ready")
    assert [line.split()[1:3] for line in short.splitlines()[2:]] == [["alice", "1"], ["bob", "2"], ["alice", "3"]]
    long = lpd_exchange(spooler.lpd_port, b"\x04default bob\n").decode()
    assert "bob: " in long and "[job 002client]" in long and "2 bytes" in long
    assert lpd_exchange(spooler.lpd_port, b"\x05default bob 1\n") == b"job 1: permission denied\n"
    assert lpd_exchange(spooler.lpd_port, b"\x05default bob 2\n") == b"job 2 (two) dequeued\n"
    removed = lpd_exchange(spooler.lpd_port, b"\x05default root alice\n")
    assert removed == b"job 1 (one) dequeued\njob 3 (three) dequeued\n"
    assert lpd_exchange(spooler.lpd_port, b"\x03default\n") == b"default is ready\nno entries\n"
    assert {job["state"] for job in spooler.jobs()} == {"canceled"}
    [refused] = spooler.events("remove_refused")
    assert (refused["agent"], refused["job_id"]) == ("bob", 1)
    assert [e["job_id"] for e in spooler.events("job_canceled")] == [2, 1, 3]
    assert lpd_exchange(spooler.lpd_port, b"\x01default\n") == b"\x00"


# -- hostile clients ------------------------------------------------------------------------------------


def test_a_flood_of_held_connections_does_not_stop_a_real_client(spooler_factory: SpoolerFactory,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    spooler = spooler_factory(limits__max_connections=250).start()
    flood: list[socket.socket] = []
    try:
        for number in range(200):  # each opens a job and sends part of a data file, then holds on
            sock = socket.create_connection(("127.0.0.1", spooler.lpd_port), timeout=10)
            sock.sendall(b"\x02default\n\x03999999 dfA%03dflood\n" % number + b"partial")
            flood.append(sock)
        for sock in flood:
            assert sock.recv(2) == b"\x00\x00"
        data = os.urandom(200_000)
        (tmp_path / "job.bin").write_bytes(data)
        result = run_lpd_backend(spooler, "", tmp_path / "job.bin", user="grace", title="through the flood")
        assert result.returncode == 0, result.stderr
        [delivered] = spooler.wait_delivered(1)
        assert delivered.read_bytes() == data
        status = spooler.status()
        assert status["connections"]["lpd"] >= 200 and status["listeners"]["lpd"].endswith(f":{spooler.lpd_port}")
    finally:
        for sock in flood:
            sock.close()
    wait_for(lambda: len(spooler.events("job_incomplete")) == 200, what="the flood's partial files to be dropped")
    assert [job["user"] for job in spooler.jobs()] == ["grace"]
    wait_for(lambda: list((spooler.state_dir / "incoming").iterdir()) == [], what="incoming/ to be empty")


def test_connections_over_the_limit_are_refused(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory(limits__max_connections=20).start()
    held = [socket.create_connection(("127.0.0.1", spooler.lpd_port), timeout=10) for _ in range(30)]
    try:
        # Over the limit, each newcomer takes the slot of the idlest connection (spooler.intake.limits).
        wait_for(lambda: len(spooler.events("connection_evicted")) >= 10, what="10 idle connections evicted")
        assert spooler.status()["connections"]["lpd"] <= 20
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: spooler.cli("status").returncode == 0, what="status")
    assert lpd_exchange(spooler.lpd_port, lpd_job("default", "ok", "after", b"fine")) == b"\x00" * 5
    spooler.wait_delivered(1)


def test_hostile_jobs_write_nothing_outside_the_spool(spooler_factory: SpoolerFactory, tmp_path: Path) -> None:
    spooler = spooler_factory(limits__max_job_size="1MiB").start()
    victim = tmp_path / "victim"
    victim.write_text("keep")
    port = spooler.lpd_port
    traversal = f"\x02default\n\x034 dfA001../../../../{victim}\n".encode()
    assert lpd_exchange(port, traversal + b"evil\x00") == b"\x00\x01"
    control = f"Pmallory\nldfA001h\nU{victim}\nf/etc/shadow\n".encode()
    refused = lpd_exchange(port, b"\x02default\n\x034 dfA001h\nevil\x00" + b"\x02%d cfA001h\n" % len(control)
                           + control + b"\x00")  # fmt: skip
    assert refused == b"\x00\x00\x00\x00\x01"
    assert lpd_exchange(port, b"\x02default\n\x03%d dfA001h\n" % 10**12) == b"\x00\x01"
    assert victim.read_text() == "keep"
    assert spooler.jobs() == []
    assert len(spooler.events("job_refused")) == 3
    assert list((spooler.state_dir / "incoming").iterdir()) == []
    assert list((spooler.state_dir / "spool").iterdir()) == []


def test_an_idle_client_is_cut_off(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory(limits__idle_timeout="1s").start()
    with socket.create_connection(("127.0.0.1", spooler.lpd_port), timeout=10) as idle:
        idle.sendall(b"\x02default\n\x03100 dfA001h\nhalf")
        try:
            assert idle.recv(10) == b"\x00\x00"
            assert idle.recv(10) == b""
        except ConnectionResetError:
            pass
    [refused] = spooler.events("job_refused")
    assert "idle" in refused["why"]
    assert spooler.jobs() == []


def test_the_allow_list_refuses_other_sources(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory(lpd__allow=["10.0.0.0/8"]).start()
    try:
        reply = lpd_exchange(spooler.lpd_port, lpd_job("default", "u", "n", b"x"))
    except OSError:  # reset
        reply = b""
    assert reply == b""  # closed without a byte: no job
    [refused] = spooler.events("connection_refused")
    assert refused["host"] == "127.0.0.1" and "not allowed" in refused["why"]
    assert spooler.jobs() == []


def test_a_crash_mid_job_is_a_reset_never_an_ack(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory().start()
    control = b"Pzoe\nldfA001h\n"
    with socket.create_connection(("127.0.0.1", spooler.lpd_port), timeout=10) as sock:
        sock.sendall(b"\x02default\n" + b"\x02%d cfA001h\n" % len(control) + control + b"\x00")
        acks = b""
        while len(acks) < 3:  # 02 queue, control file command, control file
            acks += sock.recv(3 - len(acks))
        sock.sendall(b"\x0310000 dfA001h\n" + b"x" * 5000)
        assert acks == b"\x00" * 3 and sock.recv(1) == b"\x00"  # the data file's command is acknowledged
        spooler.kill9()
        with pytest.raises(ConnectionResetError):
            while sock.recv(65536):
                pass
    spooler.start()
    assert spooler.jobs() == [] and list((spooler.state_dir / "spool").iterdir()) == []
