"""End to end, through the public surfaces: a real `spooler serve`, real clients (nc, the CUPS socket
backend, plain sockets), the device sink, `spooler jobs/show/status/log`, and the spool log."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from spooler_harness import (
    CUPS_SOCKET_BACKEND, RawDevice, Spooler, free_port, pjl_job, require_tool, send_raw, wait_for,
)  # fmt: skip

pytestmark = pytest.mark.e2e
SpoolerFactory = Callable[..., Spooler]


def test_nc_job_arrives_byte_identical_with_its_pjl_user(spooler_factory: SpoolerFactory, tmp_path: Path) -> None:
    nc = require_tool("nc")
    spooler = spooler_factory().start()
    data = pjl_job("alice", "Budget 2027", os.urandom(200_000), extra="@PJL SET COPIES=3\r\n")
    job_file = tmp_path / "job.prn"
    job_file.write_bytes(data)
    with open(job_file, "rb") as stdin:
        result = subprocess.run([nc, "-N", "127.0.0.1", str(spooler.raw_port)], stdin=stdin, timeout=30)
    assert result.returncode == 0
    [delivered] = spooler.wait_delivered(1)
    assert delivered.read_bytes() == data
    sidecar = spooler.sink_sidecar(delivered)
    assert (sidecar["user"], sidecar["name"], sidecar["copies"]) == ("alice", "Budget 2027", 3)

    [job] = spooler.jobs()
    assert (job["job_id"], job["user"], job["name"], job["state"]) == (1, "alice", "Budget 2027", "completed")
    assert job["size"] == len(data) and job["document_format"] == "application/pdf"
    [received] = spooler.events("job_received")
    assert (received["job_id"], received["user"], received["size"], received["protocol"]) == (1, "alice", len(data),
                                                                                                "raw")  # fmt: skip
    # (job_analyzed, from the page count running beside delivery, may come anywhere in between)
    assert [r["event"] for r in spooler.log_records() if r.get("job_id") == 1 and r["event"] != "job_analyzed"] == [
        "job_received", "delivery_started", "job_completed"]  # fmt: skip

    table = spooler.cli("jobs", "--all").stdout
    assert "alice" in table and "Budget 2027" in table and table.splitlines()[0].split()[:3] == ["ID", "STATE", "USER"]
    shown = spooler.cli("show", "1").stdout
    assert "alice" in shown and "completed" in shown
    # Only the spooler's user is admin: the admin socket and the state folder are private.
    assert (spooler.state_dir / "admin.sock").stat().st_mode & 0o777 == 0o600
    assert spooler.state_dir.stat().st_mode & 0o777 == 0o700
    assert (spooler.state_dir / "spooler.db").stat().st_mode & 0o077 == 0
    wait_for(lambda: spooler.events("job_analyzed"), timeout=30, what="the page count")  # the last event
    human_log = spooler.cli("log", "--job", "1").stdout.splitlines()
    assert len(human_log) == len(spooler.log_records()) - 1 and all("alice" in line for line in human_log)
    assert any("job_completed" in line for line in human_log)
    assert spooler.cli("log", "--user", "bob").stdout == ""


def test_cups_socket_backend_run_directly(spooler_factory: SpoolerFactory, tmp_path: Path) -> None:
    backend = require_tool(CUPS_SOCKET_BACKEND)
    spooler = spooler_factory().start()
    data = pjl_job("erin", "from CUPS", b"%PDF-1.5\n" + os.urandom(50_000))
    (tmp_path / "job.pdf").write_bytes(data)
    env = dict(os.environ, DEVICE_URI=f"socket://127.0.0.1:{spooler.raw_port}")
    result = subprocess.run([backend, "5", "erin", "raw title", "1", "", str(tmp_path / "job.pdf")],
                            env=env, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Print file sent" in result.stderr
    [delivered] = spooler.wait_delivered(1)
    assert delivered.read_bytes() == data
    [job] = spooler.jobs()
    assert (job["user"], job["name"], job["protocol"]) == ("erin", "from CUPS", "raw")
    assert spooler.events("job_received")[0]["user"] == "erin"


def test_many_clients_at_once(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory().start()
    payloads = [pjl_job(f"user{n}", f"job {n}", os.urandom(1000 + n * 997)) for n in range(24)]
    threads = [threading.Thread(target=send_raw, args=(spooler.raw_port, p)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    delivered = spooler.wait_delivered(len(payloads))
    assert sorted(f.read_bytes() for f in delivered) == sorted(payloads)
    assert {job["user"] for job in spooler.jobs()} == {f"user{n}" for n in range(24)}


def test_an_unreachable_device_keeps_jobs_waiting_and_the_admin_sees_why(spooler_factory: SpoolerFactory) -> None:
    device_port = free_port()  # nothing listens there until the test starts the device
    spooler = spooler_factory(device__uri=f"socket://127.0.0.1:{device_port}", device__retry_initial="30s",
                              device__connect_timeout="2s")  # fmt: skip
    spooler.start()
    payloads = [pjl_job("dave", f"waiting {n}", os.urandom(5000)) for n in range(3)]
    for payload in payloads:
        send_raw(spooler.raw_port, payload)
    wait_for(lambda: spooler.job(1)["attempts"] >= 1 and spooler.job(1)["state"] == "pending", what="a failed try")
    job = spooler.job(1)
    assert "waiting for the device" in job["message"] and "next attempt" in job["message"]
    status = spooler.cli("status").stdout
    assert "unreachable" in status and "3 waiting for the device" in status
    assert [e["job_id"] for e in spooler.events("delivery_failed")] == [1]  # jobs 2 and 3 wait behind job 1
    assert spooler.events("device_down")

    device = RawDevice(device_port)
    try:
        assert "retrying now: 1, 2, 3" in spooler.cli("flush").stdout
        wait_for(lambda: len(device.jobs) == 3, what="delivery after flush")
        assert device.jobs == payloads  # in arrival order, byte-identical
        wait_for(lambda: all(j["state"] == "completed" for j in spooler.jobs()), what="jobs completed")
        assert spooler.events("device_up")
    finally:
        device.close()


def test_cancel_hold_release_and_unknown_jobs_through_the_cli(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory(device__uri="socket://127.0.0.1:9", device__retry_initial="1h",
                              device__retry_max="1h")  # fmt: skip
    spooler.start()
    for n in range(3):
        send_raw(spooler.raw_port, pjl_job("frank", f"job {n}", b"data"))
    assert spooler.cli("hold", "2").stdout == "job 2: pending-held\n"
    assert spooler.cli("cancel", "3").stdout == "job 3: canceled\n"
    assert spooler.cli("release", "2").stdout == "job 2: pending\n"
    states = {j["job_id"]: j["state"] for j in spooler.jobs()}
    assert states[2] == "pending" and states[3] == "canceled"
    for command in (["show", "999"], ["cancel", "999"], ["hold", "999"], ["flush", "999"]):
        result = spooler.cli(*command, check=False)
        assert (result.returncode, result.stderr) == (1, "spooler: no job 999\n"), command
    again = spooler.cli("cancel", "3", check=False)
    assert again.returncode == 1 and "canceled; it cannot become canceled" in again.stderr
    bad = spooler.cli("show", "abc", check=False)
    assert bad.returncode == 2 and "not a job number" in bad.stderr
    bad_state = spooler.cli("jobs", "--state", "printing", check=False)
    assert bad_state.returncode == 2 and "unknown state" in bad_state.stderr
    assert [j["job_id"] for j in json_of(spooler.cli("jobs", "--state", "canceled", "--json").stdout)] == [3]


def json_of(text: str) -> Any:
    import json

    return json.loads(text)


def test_sigterm_stops_cleanly_and_the_cli_still_reads_the_store(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory().start()
    send_raw(spooler.raw_port, pjl_job("gina", "before stop", b"%PDF-1.4 x"))
    spooler.wait_delivered(1)
    assert spooler.stop() == 0
    assert spooler.events("spooler_stopped")
    assert not (spooler.state_dir / "admin.sock").exists()  # a clean stop removes the admin socket
    jobs = spooler.cli("jobs", "--all")
    assert "gina" in jobs.stdout and "not running" in jobs.stderr
    status = spooler.cli("status")
    assert "NOT RUNNING" in status.stdout and "1 completed" in status.stdout
    shown = spooler.cli("show", "1", "--json")
    assert json_of(shown.stdout)["user"] == "gina"
    assert "gina" in spooler.cli("log").stdout
    cancel = spooler.cli("cancel", "1", check=False)
    assert cancel.returncode == 1 and "not running" in cancel.stderr


def test_a_second_spooler_on_the_same_state_folder_is_refused(spooler_factory: SpoolerFactory) -> None:
    first = spooler_factory().start()
    (first.root / "second").mkdir()
    second = Spooler(first.root / "second")  # its own ports, the same state folder
    second.state_dir = first.state_dir
    second.write_config()
    second.start(wait=False)
    assert second.process is not None
    assert second.process.wait(timeout=20) == 1
    assert "is in use by another spooler" in second.stderr()
    send_raw(first.raw_port, b"still fine")
    first.wait_delivered(1)


def test_a_listener_that_cannot_bind_is_a_clear_error(spooler_factory: SpoolerFactory) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        spooler = spooler_factory()
        spooler.raw_port = taken.getsockname()[1]
        spooler.write_config()
        spooler.start(wait=False)
        assert spooler.process is not None and spooler.process.wait(timeout=20) == 1
    assert "cannot listen on 127.0.0.1" in spooler.stderr() and "Traceback" not in spooler.stderr()


# -- bad input ---------------------------------------------------------------------------------------


def test_an_oversize_job_is_refused_and_nothing_else_is_disturbed(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory(limits__max_job_size="100KiB").start()
    send_raw(spooler.raw_port, pjl_job("ok", "small", b"x" * 1000))
    with pytest.raises(OSError):  # the spooler resets the connection
        send_raw(spooler.raw_port, b"y" * 5_000_000)
    send_raw(spooler.raw_port, pjl_job("ok", "after", b"z" * 1000))
    delivered = spooler.wait_delivered(2)
    assert [spooler.sink_sidecar(f)["name"] for f in delivered] == ["small", "after"]
    [refused] = spooler.events("job_refused")
    assert "larger than the limit" in refused["why"]
    assert list((spooler.state_dir / "incoming").iterdir()) == []


def test_an_idle_client_is_disconnected_without_a_job(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory(limits__idle_timeout="1s").start()
    with socket.create_connection(("127.0.0.1", spooler.raw_port)) as idle:
        idle.sendall(b"half a job")
        idle.settimeout(10)
        try:
            assert idle.recv(10) == b""
        except ConnectionResetError:
            pass
    [refused] = spooler.events("job_refused")
    assert "idle" in refused["why"] and refused["size"] == 10
    assert spooler.jobs() == []


def test_garbage_pjl_still_prints(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory().start()
    garbage = b"\x1b%-12345X@PJL SET USERNAME=\"\x00\x01\xff\r\n@PJL ===\r\n@PJL JOB NAME=\"unterminated\r\n" + os.urandom(
        4000
    )
    send_raw(spooler.raw_port, garbage)
    [delivered] = spooler.wait_delivered(1)
    assert delivered.read_bytes() == garbage
    [job] = spooler.jobs()
    assert job["state"] == "completed" and job["user"].isprintable()


def test_a_connection_reset_mid_stream_is_not_a_job(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory().start()
    with socket.create_connection(("127.0.0.1", spooler.raw_port)) as client:
        client.sendall(b"x" * 300_000)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
    wait_for(lambda: spooler.events("job_incomplete"), what="the cut to be logged")
    send_raw(spooler.raw_port, b"a whole job")
    [delivered] = spooler.wait_delivered(1)
    assert delivered.read_bytes() == b"a whole job"
    assert len(spooler.jobs()) == 1


def test_below_the_disk_floor_new_jobs_are_refused_and_existing_ones_kept(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory(device__uri="socket://127.0.0.1:9", device__retry_initial="1h",
                              device__retry_max="1h")  # fmt: skip
    spooler.start()
    send_raw(spooler.raw_port, pjl_job("ivan", "kept", b"keep me"))
    assert spooler.stop() == 0
    spooler.write_config(spool__min_free_space="1000000TB")
    spooler.start()
    with socket.create_connection(("127.0.0.1", spooler.raw_port)) as client:
        client.settimeout(10)
        try:
            client.sendall(b"refused")
            assert client.recv(10) == b""
        except (ConnectionResetError, BrokenPipeError):
            pass
    refused = spooler.events("spool_full")  # the harness's readiness probe was refused too
    assert refused and all("below the floor" in r["why"] for r in refused)
    status = spooler.cli("status").stdout
    assert "REFUSING NEW JOBS" in status
    [job] = spooler.jobs()
    assert job["name"] == "kept" and job["state"] in ("pending", "processing")  # retried at the restart
    spooler.stop()
    spooler.write_config(spool__min_free_space="1MiB", device__uri=spooler.sink.as_uri())
    spooler.start()
    [delivered] = spooler.wait_delivered(1)
    assert delivered.read_bytes() == pjl_job("ivan", "kept", b"keep me")


def test_spooler_log_follow_shows_new_events(spooler_factory: SpoolerFactory) -> None:
    import sys

    spooler = spooler_factory().start()
    follower = subprocess.Popen([sys.executable, "-m", "spooler", "log", "-f", "--json", "--config",
                                 str(spooler.config_path)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert follower.stdout is not None
        assert json_of(follower.stdout.readline())["event"] == "spooler_started"
        send_raw(spooler.raw_port, pjl_job("hana", "followed", b"x"))
        events: list[str] = []
        while "job_completed" not in events:
            event = json_of(follower.stdout.readline())["event"]
            if event != "job_analyzed":  # the page count runs beside delivery
                events.append(event)
        assert events == ["job_received", "delivery_started", "job_completed"]
    finally:
        follower.terminate()
        follower.wait(10)
