"""The reference central server end to end: a real `spooler-refserver serve` process, printed to with
ipptool and the CUPS lpd backend, its API over the wire, and every failure mode switched with `ctl`."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from spooler_harness import RefServer, Spooler, ipptool_get_jobs, pjl_job, refserver, require_tool, send_raw, short_tempdir, \
    wait_for
from spooler.signing import GRANT, REVOCATION, from_json, parse_public_key, verify
from spooler.verifiers import check_verifier

pytestmark = pytest.mark.e2e
CUPS_LPD_BACKEND = "/usr/lib/cups/backend/lpd"
PRINT_JOB_TEST = "/usr/share/cups/ipptool/print-job.test"
HANG_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def shared() -> Iterator[RefServer]:
    with refserver() as server:
        yield server


@pytest.fixture
def central(shared: RefServer) -> Iterator[RefServer]:
    """The module's server, back in normal mode after each test."""
    yield shared
    if shared.process is not None and shared.process.poll() is None:
        shared.mode("normal")


@pytest.fixture
def document(tmp_path: Path) -> Path:
    path = tmp_path / "hello.txt"
    path.write_bytes(b"Hello from the branch office\n")
    return path


def ipp_print(server: RefServer, file: Path, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    ipptool = require_tool("ipptool")
    return subprocess.run([ipptool, "-T", "5", "-tf", str(file), server.ipp_uri, PRINT_JOB_TEST],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def lpd_print(server: RefServer, file: Path, user: str = "alice", title: str = "Quarterly report",
              timeout: float = 20) -> subprocess.CompletedProcess[str]:  # fmt: skip
    backend = require_tool(CUPS_LPD_BACKEND)
    env = dict(os.environ, DEVICE_URI=server.lpd_uri + "&contimeout=5&sanitize_title=no")
    return subprocess.run([backend, "1", user, title, "1", "", str(file)], env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def hangs(port: int, request: bytes, timeout: float = HANG_TIMEOUT) -> bool:
    """The TCP connect succeeds, the request is sent, and nothing comes back within `timeout`."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        try:
            sock.recv(1)
        except TimeoutError:
            return True
    return False


HTTP_HEALTH = b"GET /api/v1/health HTTP/1.1\r\nHost: central\r\n\r\n"
IPP_PROBE = (
    b"POST /ipp/print HTTP/1.1\r\nHost: central\r\nContent-Type: application/ipp\r\nContent-Length: 9\r\n\r\n"
    b"\x02\x00\x00\x0b\x00\x00\x00\x01\x03"
)  # Get-Printer-Attributes, no attributes
LPD_PROBE = b"\x02default\n"


def test_jobs_printed_over_ipp_and_lpd_land_in_received(central: RefServer, document: Path) -> None:
    before = len(central.received_files())
    result = ipp_print(central, document)
    assert result.returncode == 0, result.stdout + result.stderr
    result = lpd_print(central, document)
    assert result.returncode == 0, result.stderr
    files = central.wait_received(before + 2)
    sidecars = [central.sidecar(path) for path in files[before:]]
    assert {s["protocol"] for s in sidecars} == {"ipp", "lpd"}
    lpd = next(s for s in sidecars if s["protocol"] == "lpd")
    assert (lpd["user"], lpd["name"], lpd["copies"]) == ("alice", "Quarterly report", 1)
    assert all(path.read_bytes() == document.read_bytes() for path in files[before:])
    assert central.status()["received_jobs"] == before + 2


def test_the_api_over_the_wire(central: RefServer) -> None:
    status, health = central.health()
    assert status == 200 and health["status"] == "ok" and health["server_time"].endswith("Z")
    status, login = central.api("POST", "login", {"device": "branch-1", "method": "card", "secret": "0A0B0C0D"})
    assert status == 200 and login["user"]["name"] == "bob" and login["devices"] == ["*"]
    status, published = central.api("GET", "signing-key")
    assert status == 200 and published == {"algorithm": "ed25519", "key": central.signing_key()}
    grant = verify(parse_public_key(published["key"]), GRANT, from_json(login["grant"]))
    assert (grant["user"], grant["credential"], grant["kind"], grant["devices"]) == ("bob", "card-1", "card", ["*"])
    assert check_verifier("0A0B0C0D", grant["verifier"]) and grant["issued_at"] == login["server_time"]
    status, _ = central.api("POST", "login", {"device": "branch-1", "method": "password", "user": "bob",
                                              "secret": "alice-password"})  # fmt: skip
    assert status == 401
    status, users = central.api("GET", "devices/branch-1/users")
    assert status == 200 and {u["name"] for u in users["users"]} == {"alice", "bob", "carol"}
    assert "1234" not in str(users) and "alice-password" not in str(users)
    records = [{"record_id": "e2e-1", "user": "alice", "pages": 2}, {"record_id": "e2e-2", "user": "bob"}]
    assert central.api("POST", "accounting", {"records": records}) == (200, {"accepted": 2, "duplicates": 0})
    assert central.api("POST", "accounting", {"records": records}) == (200, {"accepted": 0, "duplicates": 2})
    assert [r["record_id"] for r in central.accounting() if r["record_id"].startswith("e2e-")] == ["e2e-1", "e2e-2"]


def test_revoke_through_ctl_shows_in_revocations(central: RefServer) -> None:
    _, before = central.api("GET", "revocations")
    revoked = central.revoke("alice", "card", "card-2")
    assert revoked["credential"] == "card-2"
    status, after = central.api("GET", f"revocations?since={before['server_time']}")
    assert status == 200 and [{k: v for k, v in r.items() if k != "signed"} for r in after["revocations"]] == [revoked]
    # Signed by the server's key (the one `spooler-refserver key` prints), over exactly these fields.
    signed = from_json(after["revocations"][0]["signed"])
    assert verify(parse_public_key(central.signing_key()), REVOCATION, signed) == revoked
    status, _ = central.api("POST", "login", {"device": "d", "method": "card", "secret": "04FFEE0011"})
    assert status == 401


def test_refuse_mode_refuses_connections_until_normal(central: RefServer, document: Path) -> None:
    status = central.mode("refuse")
    assert status["mode"] == "refuse" and status["listeners"] == {}
    assert refused(central.api_port) and refused(central.ipp_port) and refused(central.lpd_port)
    assert "refusing connections" in central.ctl("status").stdout
    central.mode("normal")
    assert central.health()[0] == 200
    assert ipp_print(central, document).returncode == 0


def test_hang_mode_accepts_and_never_answers(central: RefServer) -> None:
    central.mode("hang")
    started = time.monotonic()
    assert hangs(central.api_port, HTTP_HEALTH)
    assert time.monotonic() - started >= HANG_TIMEOUT - 0.1
    assert hangs(central.ipp_port, IPP_PROBE, timeout=1)
    assert hangs(central.lpd_port, LPD_PROBE, timeout=1)
    central.mode("normal")
    assert central.health()[0] == 200


def test_slow_mode_delays_every_answer(central: RefServer) -> None:
    central.mode("slow", delay=1)
    started = time.monotonic()
    assert central.health()[0] == 200
    assert time.monotonic() - started >= 1.0
    central.mode("normal")
    started = time.monotonic()
    assert central.health()[0] == 200
    assert time.monotonic() - started < 1.0


def test_error_mode_answers_503_and_ipp_lpd_refuse(central: RefServer, document: Path) -> None:
    before = len(central.received_files())
    central.mode("error")
    status, body = central.health()
    assert status == 503 and "error" in body
    result = ipp_print(central, document)
    assert result.returncode != 0 and "server-error-service-unavailable" in result.stdout
    with socket.create_connection(("127.0.0.1", central.lpd_port), timeout=5) as sock:
        sock.sendall(b"\x02default\n")
        assert sock.recv(1) == b"\x01"  # a non-zero acknowledgement: refused
    central.mode("normal")
    assert central.health()[0] == 200
    assert lpd_print(central, document).returncode == 0
    assert len(central.wait_received(before + 1)) == before + 1


def test_accounting_survives_a_restart_and_stop_refuses() -> None:
    server = RefServer(short_tempdir("rs"), mode="slow", delay=0.2)
    try:
        server.start()
        assert server.status()["mode"] == "slow"
        record = {"record_id": "kept-1", "user": "carol"}
        assert server.api("POST", "accounting", {"records": [record]})[1] == {"accepted": 1, "duplicates": 0}
        assert server.stop() == 0
        assert refused(server.api_port)  # "stop" is the process gone
        assert not server.control_socket.exists() or server.ctl("status", check=False).returncode != 0
        server.initial_mode = "normal"
        server.start()
        assert server.api("POST", "accounting", {"records": [record]})[1] == {"accepted": 0, "duplicates": 1}
        assert [r["record_id"] for r in server.accounting()] == ["kept-1"]
    finally:
        server.cleanup()


def test_a_spooler_forwarding_to_the_central_queue_waits_out_an_outage(spooler_factory: Callable[..., Spooler]) -> None:
    """A real `spooler serve` whose device is the central server's raw queue: jobs wait while the
    central server refuses connections and arrive once it is back."""
    central = RefServer(short_tempdir("rs"), raw=True)
    try:
        central.start()
        spooler = spooler_factory(device__uri=f"socket://127.0.0.1:{central.raw_port}", device__retry_initial="0.5s",
                                  device__retry_max="1s", device__connect_timeout="2s")  # fmt: skip
        spooler.start()
        send_raw(spooler.raw_port, pjl_job("alice", "before", b"%PDF-1.4 first\n"))
        central.wait_received(1)
        central.mode("refuse")
        send_raw(spooler.raw_port, pjl_job("bob", "during", b"%PDF-1.4 second\n"))
        wait_for(lambda: any(job["attempts"] >= 1 and job["state"] == "pending" for job in spooler.jobs()),
                 timeout=10, what="a failed delivery attempt")  # fmt: skip
        assert len(central.received_files()) == 1
        central.mode("normal")
        files = central.wait_received(2)
        assert b"second" in files[1].read_bytes()
    finally:
        central.cleanup()


CANCEL_JOB_TEST = """{
  NAME "Cancel a held job as its owner"
  OPERATION Cancel-Job
  GROUP operation-attributes-tag
  ATTR charset attributes-charset utf-8
  ATTR language attributes-natural-language en
  ATTR uri printer-uri $uri
  ATTR integer job-id $job-id
  ATTR name requesting-user-name $owner
  STATUS successful-ok
}
"""


def test_the_held_queue_holds_jobs_until_released(document: Path, tmp_path: Path) -> None:
    """--hold: jobs wait pending-held (seen with ipptool's Get-Jobs), their owner can cancel them with
    Cancel-Job, and they print only when `ctl release` lets them (or on their own with --release-after)."""
    ipptool = require_tool("ipptool")
    (tmp_path / "cancel-job.test").write_text(CANCEL_JOB_TEST)
    held = RefServer(short_tempdir("rs"), hold=True)
    try:
        held.start()
        assert ipp_print(held, document).returncode == 0
        assert lpd_print(held, document, user="alice").returncode == 0
        rows = ipptool_get_jobs(held.ipp_uri, tmp_path, ["job-id", "job-state", "job-state-reasons"],
                                which="not-completed")  # fmt: skip
        assert [(row["job-state"], row["job-state-reasons"]) for row in rows] == [("pending-held",
                                                                                  "job-held-on-create")] * 2
        assert held.status()["hold"] == {"hold": True, "release_after": None, "held_jobs": 2}
        assert "held        2 jobs, released by ctl release" in held.ctl("status").stdout
        ipp_job, lpd_job = (int(row["job-id"]) for row in rows)
        canceled = subprocess.run([ipptool, "-t", "-d", f"job-id={lpd_job}", "-d", "owner=alice", held.ipp_uri,
                                   str(tmp_path / "cancel-job.test")], capture_output=True, text=True, timeout=30)
        assert canceled.returncode == 0, canceled.stdout + canceled.stderr
        assert held.received_files() == []
        assert held.release() == [ipp_job]  # the canceled one is not held any more
        [printed] = held.wait_received(1)
        assert held.sidecar(printed)["job_id"] == ipp_job
    finally:
        held.cleanup()

    timed = RefServer(short_tempdir("rs"), hold=True, release_after=1.0)
    try:
        timed.start()
        assert ipp_print(timed, document).returncode == 0
        timed.wait_received(1, timeout=20)  # released on its own a second after it arrived
    finally:
        timed.cleanup()


def test_hang_mode_keeps_a_half_closed_raw_connection_open() -> None:
    """A raw client half-closes after its job; a hung server must not answer that with a close (which
    a raw client takes for "printed")."""
    server = RefServer(short_tempdir("rs"), raw=True)
    try:
        server.start()
        assert server.raw_port is not None
        server.mode("hang")
        with socket.create_connection(("127.0.0.1", server.raw_port), timeout=5) as sock:
            sock.sendall(b"\x1b%-12345X@PJL\r\nswallowed")
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(HANG_TIMEOUT)
            with pytest.raises(TimeoutError):
                sock.recv(1)  # neither data nor the end of the connection
        assert server.received_files() == []
    finally:
        server.cleanup()
