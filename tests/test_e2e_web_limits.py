"""The HTTP limits of spooler.web against real processes and real clients (issue 14, findings 5 and 6):
a 200 MiB body sent to the login share endpoint by curl (declared, and chunked) is refused with 413
without being read or buffered; a client that is not a peer is refused before it sends anything; 1,100
connections held open on the share endpoint and 100 slow (slowloris) connections on the device terminal
— against a spooler whose file limit is the common 1024 — stop neither IPP printing (ipptool) nor a
legitimate login at the terminal."""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spooler_harness import RefServer, Spooler, free_port, open_idle, require_tool, short_tempdir, wait_for
from test_e2e_terminal import ALICE_PIN, USERS, TerminalClient

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
PRINT_JOB_TEST = Path("/usr/share/cups/ipptool/print-job.test")


class LimitedSpooler(Spooler):
    """A spooler started under `prlimit --nofile=1024:1024`: the usual soft limit of a service, so that
    a connection flood that is not capped ends in EMFILE (no more accepts: IPP printing stops)."""

    def command(self) -> list[str]:
        return [require_tool("prlimit"), "--nofile=1024:1024", "--", *super().command()]


def process_status(pid: int, field: str) -> int:
    """A `VmHWM`/`VmRSS`-style field of /proc/PID/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture(autouse=True)
def many_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, 8192):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))


@pytest.fixture
def branch() -> Iterator[tuple[LimitedSpooler, RefServer, int, int]]:
    """A spooler with the terminal, login sharing (127.0.0.1 as its one peer address) and a reference
    central server that checks logins; (spooler, central, terminal port, share port)."""
    root = short_tempdir("wl")
    (root / "users.json").write_text(json.dumps(USERS))
    (root / "central").mkdir()
    (root / "branch").mkdir()
    central = RefServer(root / "central", users=root / "users.json")
    central.start()
    terminal_port, share_port = free_port(), free_port()
    spooler = LimitedSpooler(root / "branch", **{
        "server__queue_uri": central.ipp_uri, "server__api_url": central.api_url, "device__name": "branch-1",
        "terminal__enabled": True, "terminal__listen": f"tcp:{terminal_port}:interface=127.0.0.1:backlog=2048",
        "login__share_listen": f"tcp:{share_port}:interface=127.0.0.1:backlog=2048",
        "login__peers": ["127.0.0.1:18640"], "login__share": True, "limits__header_timeout": "8s",
    })  # fmt: skip
    spooler.start()
    yield spooler, central, terminal_port, share_port
    spooler.cleanup()
    central.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def curl(*args: str, stdin: Any = None) -> tuple[int, str, int, str]:
    """(exit status, HTTP status, bytes uploaded, body) of one curl run."""
    out = short_tempdir("cu") / "body"
    result = subprocess.run([require_tool("curl"), "-sS", "-o", str(out), "-w", "%{http_code} %{size_upload}",
                             "--max-time", "60", *args], stdin=stdin, capture_output=True, text=True)  # fmt: skip
    code, uploaded = (result.stdout.split() + ["0", "0"])[:2]
    body = out.read_text() if out.exists() else ""
    return result.returncode, code, int(uploaded), body


def ipptool_print(port: int, document: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("ipptool"), "-tf", str(document), f"ipp://127.0.0.1:{port}/ipp/print",
                           str(PRINT_JOB_TEST)], capture_output=True, text=True, timeout=120)  # fmt: skip


# -- finding 5: the share endpoint ----------------------------------------------------------------------


def test_a_200_mib_body_is_refused_413_without_being_read_and_a_non_peer_is_refused(
        branch: tuple[LimitedSpooler, RefServer, int, int]) -> None:  # fmt: skip
    spooler, _central, _terminal_port, share_port = branch
    assert spooler.process is not None
    pid = spooler.process.pid
    url = f"http://127.0.0.1:{share_port}/v1/share/push"
    peak_before = process_status(pid, "VmHWM")

    # Declared: a sparse 200 MiB file (no disk used here either); curl says Expect: 100-continue.
    big = short_tempdir("big") / "body.json"
    with open(big, "wb") as handle:
        handle.truncate(200 * MiB)
    status, code, uploaded, body = curl("-H", "Content-Type: application/json", "--data-binary", f"@{big}", url)
    assert code == "413" and json.loads(body)["code"] == "too-large", (status, code, body)
    assert uploaded < 32 * MiB, uploaded  # the spooler stopped reading: curl could not send the 200 MiB

    # Chunked (no Content-Length): 200 MiB from a pipe, refused once 4 MiB have come.
    source = subprocess.Popen(["head", "-c", str(200 * MiB), "/dev/zero"], stdout=subprocess.PIPE)
    try:
        status, code, uploaded, body = curl("-H", "Content-Type: application/json", "-H",
                                            "Transfer-Encoding: chunked", "-X", "POST", "-T", "-", url,
                                            stdin=source.stdout)  # fmt: skip
    finally:
        source.kill()
        source.wait()
    assert code == "413" and json.loads(body)["code"] == "too-large", (status, code, body)
    assert uploaded < 32 * MiB, uploaded

    # Neither body was buffered: the spooler's peak memory hardly moved, and no (deleted) temporary
    # file of that size is open.
    assert process_status(pid, "VmHWM") - peak_before < 48 * 1024
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            size = os.stat(f"/proc/{pid}/fd/{fd}").st_size
        except OSError:
            continue
        assert not (target.endswith("(deleted)") and size > 8 * MiB), (target, size)
    refusals = [e for e in spooler.events("http_refused") if e.get("site") == "share"]
    assert [e["status"] for e in refusals] == [413, 413]

    # A peer with a message that does not open is answered 401 (the endpoint works) ...
    status, code, _, body = curl("-H", "Content-Type: application/json", "--data-binary", '{"v": 1}', url)
    assert code == "401" and json.loads(body)["code"] == "not-authenticated"
    # ... a client at an address that is no peer (127.0.0.2, also loopback) is closed before it sends.
    status, code, uploaded, body = curl("--interface", "127.0.0.2", "-H", "Content-Type: application/json",
                                        "--data-binary", '{"v": 1}', url)  # fmt: skip
    assert code == "000" and status in (52, 56), (status, code, body)  # empty reply / reset: no HTTP at all
    wait_for(lambda: any(e.get("scope") == "peer" and e.get("host") == "127.0.0.2"
                         for e in spooler.events("connection_refused")), what="the refusal in the spool log")  # fmt: skip


# -- findings 5 and 6: floods -----------------------------------------------------------------------------


class Slowloris:
    """`count` connections to `port` that send a request head one byte every `interval` seconds; `cut`
    counts those the server answered or closed."""

    def __init__(self, port: int, count: int, interval: float = 0.5) -> None:
        self.head = b"GET /api/v1/session HTTP/1.1\r\nHost: terminal\r\nX-Padding: " + b"a" * 4000
        self.sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
        self.sent = [0] * count
        self.cut = [False] * count
        self.answers: list[bytes] = []
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._thread.start()

    def _drip(self) -> None:
        while not self._stop.is_set() and not all(self.cut):
            for index, sock in enumerate(self.sockets):
                if self.cut[index]:
                    continue
                try:
                    sock.setblocking(False)
                    try:
                        data = sock.recv(4096)
                        self.answers.append(data)
                        self.cut[index] = True  # an answer (408) or the end of the connection
                        continue
                    except BlockingIOError:
                        pass
                    sock.send(self.head[self.sent[index] : self.sent[index] + 1])
                    self.sent[index] += 1
                except OSError:
                    self.cut[index] = True
            self._stop.wait(self.interval)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.sockets:
            sock.close()


def test_floods_on_the_share_endpoint_and_the_terminal_stop_neither_printing_nor_a_login(
        branch: tuple[LimitedSpooler, RefServer, int, int], tmp_path: Path) -> None:  # fmt: skip
    spooler, _central, terminal_port, share_port = branch
    assert spooler.process is not None
    pid = spooler.process.pid
    document = tmp_path / "hello.txt"
    document.write_text("printed through the floods\n")
    flood = open_idle(share_port, 1100)  # from 127.0.0.1, a configured peer: the worst case
    slow = Slowloris(terminal_port, 100)
    try:
        wait_for(lambda: len([e for e in spooler.events("connection_evicted") if e["protocol"] == "share"]) >= 1000,
                 timeout=60, what="the share flood to be taken in (the cap kept, the others evicted)")  # fmt: skip
        assert open_files(pid) < 600  # the flood is capped: far from the 1024 file limit
        printed = ipptool_print(spooler.ipp_port, document)
        assert printed.returncode == 0, printed.stdout + printed.stderr
        client = TerminalClient(terminal_port)  # a real login from the slow connections' own address
        status, session = client.login(ALICE_PIN)
        assert status == 200 and session["user"] == "alice", session
        assert client.call("GET", "session")[0] == 200
        # The slow connections, though they never stop sending, are cut: by the header deadline (408)
        # or to make room for newer ones; none of them ever got a page.
        wait_for(lambda: all(slow.cut), timeout=60, what="every slow connection to be cut")
        assert not any(b"200 OK" in answer for answer in slow.answers)
        assert any(answer.startswith(b"HTTP/1.1 408") for answer in slow.answers)
        assert spooler.process.poll() is None
    finally:
        slow.close()
        for sock in flood:
            sock.close()
    [job] = spooler.jobs()  # the job ipptool printed through the floods
    assert job["state"] not in ("canceled", "aborted"), job
