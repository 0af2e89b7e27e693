"""Reloading the configuration with SIGHUP, with real processes: jobs keep flowing through `nc`, an LPD
upload and a terminal session opened before the reload go on after it, a moved listener opens its
new port and closes the old one, a change that needs a restart is named in one warning, a bad file
changes nothing; the daemon tells systemd (NOTIFY_SOCKET) when it is ready, reloading and stopping;
every job acknowledged is delivered."""

from __future__ import annotations

import http.client
import json
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from spooler_harness import RawJobSender, RefServer, free_port, pjl_job, send_raw, wait_for
from test_e2e_login import central  # noqa: F401 - the reference server with test_e2e_login's users
from test_e2e_terminal import TerminalClient

pytestmark = pytest.mark.e2e

ALICE_PIN = "735194"  # test_e2e_login's USERS


class NotifySocket:
    """The socket systemd would listen on for sd_notify datagrams."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.settimeout(20)

    def next(self) -> dict[str, str]:
        message = self.socket.recv(4096).decode()
        return dict(line.split("=", 1) for line in message.splitlines())

    def close(self) -> None:
        self.socket.close()


def lpd_open_job(port: int) -> socket.socket:
    """An LPD connection with its receive-job command acknowledged (the job is not sent yet)."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=20)
    connection.sendall(b"\x02default\n")
    assert connection.recv(1) == b"\0"
    return connection


def lpd_finish_job(connection: socket.socket, name: str, data: bytes) -> None:
    control = f"Hworkstation\nPerin\nJ{name}\nldfA042workstation\nNdata\n".encode()
    for subcommand, content in ((b"\x02%d cfA042workstation\n", control), (b"\x03%d dfA042workstation\n", data)):
        connection.sendall(subcommand % len(content))
        assert connection.recv(1) == b"\0"
        connection.sendall(content + b"\0")
        assert connection.recv(1) == b"\0"
    connection.close()


def reloads(spooler: Any) -> list[dict[str, Any]]:
    return [r for r in spooler.log_records() if r["event"] in ("config_reloaded", "config_reload_failed")]


def hup(spooler: Any, notify: NotifySocket) -> dict[str, Any]:
    """SIGHUP, then the spool-log record of that reload (and systemd told RELOADING, then READY)."""
    count = len(reloads(spooler))
    spooler.process.send_signal(signal.SIGHUP)
    record = wait_for(lambda: reloads(spooler)[count] if len(reloads(spooler)) > count else None, timeout=20,
                      what="the reload's log record")  # fmt: skip
    assert "RELOADING" in notify.next()
    assert notify.next()["READY"] == "1"
    assert spooler.process.poll() is None
    return record


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sighup_reloads_without_dropping_anything(spooler_factory: Any, central: RefServer, short_tmp: Path) -> None:
    terminal_port = free_port()
    spooler = spooler_factory(**{
        "server__queue_uri": central.ipp_uri, "server__api_url": central.api_url, "device__name": "branch-1",
        "login__share_listen": "", "login__sync_interval": 0, "queues.default__offline_policy": "print",
        "terminal__enabled": True, "terminal__listen": f"tcp:{terminal_port}:interface=127.0.0.1",
    })  # fmt: skip
    notify = NotifySocket(short_tmp / "notify.sock")
    sender: RawJobSender | None = None
    try:
        spooler.start(env={"NOTIFY_SOCKET": str(notify.path)})
        ready = notify.next()
        assert ready["READY"] == "1" and ready["MAINPID"] == str(spooler.process.pid)
        wait_for(lambda: json.loads(spooler.cli("status", "--json").stdout)["mode"] == "online", timeout=20)
        terminal = TerminalClient(terminal_port)
        assert terminal.login(ALICE_PIN)[0] == 200  # online: the server checks it
        upload = lpd_open_job(spooler.lpd_port)
        sender = RawJobSender(lambda: spooler.raw_port, short_tmp, lambda n: b"%%!PS\n%% job %d\n" % n,
                              prefix="flow")  # fmt: skip
        sender.start()
        wait_for(lambda: len(sender.acknowledged) >= 5, timeout=30, what="jobs flowing")

        # 1. Live keys only: applied, every listener keeps its port, nothing is dropped.
        spooler.write_config(limits__max_connections=40, **{"queues.default__offline_policy": "hold"})
        record = hup(spooler, notify)
        assert record["event"] == "config_reloaded" and record["level"] == "info"
        assert record["applied"] == ["limits.max_connections", "queues"] and record["restart_needed"] == []
        status = json.loads(spooler.cli("status", "--json").stdout)
        assert status["queues"]["default"]["offline_policy"] == "hold"
        assert status["listeners"]["raw"] == f"127.0.0.1:{spooler.raw_port}"
        lpd_finish_job(upload, "begun before the reload", b"%!PS\n% lpd\n")  # the open session went on
        assert terminal.call("GET", "session")[0] == 200  # and the terminal session too

        # 2. The raw listener moves: the new port opens, the old one closes; jobs follow it.
        old_port = spooler.raw_port
        spooler.raw_port = free_port()
        spooler.write_config()
        count = len(sender.acknowledged)
        record = hup(spooler, notify)
        assert record["applied"] == ["listen.raw"], record
        assert refused(old_port)
        wait_for(lambda: len(sender.acknowledged) >= count + 3, timeout=30, what="jobs on the new port")

        # 3. A key that cannot change live: kept, and named in one warning.
        spooler.write_config(device__name="branch-2")
        record = hup(spooler, notify)
        assert (record["level"], record["applied"], record["restart_needed"]) == ("warn", [], ["device.name"])
        assert sum("needs a restart" in line for line in spooler.stderr().splitlines()) == 1

        # 4. A bad file: one warning, the running configuration stays (and keeps taking jobs).
        good = spooler.config_path.read_text()
        spooler.config_path.write_text(good + "\n[limits]\nmax_connections = -1\n")
        record = hup(spooler, notify)
        assert record["event"] == "config_reload_failed" and record["level"] == "warn"
        count = len(sender.acknowledged)
        wait_for(lambda: len(sender.acknowledged) >= count + 3, timeout=30, what="jobs after a bad reload")
        acknowledged = sender.finish()

        # Every acknowledged job reached the central server, and the LPD one too.
        names = set(acknowledged) | {"begun before the reload"}
        central.wait_received(len(names), timeout=60)
        received = {central.sidecar(path)["name"] for path in central.received_files()}
        assert names <= received, sorted(names - received)

        spooler.stop()
        assert notify.next()["STOPPING"] == "1"
        stopped = spooler.events("spooler_stopped")
        assert [r["reason"] for r in stopped] == ["signal SIGTERM"]
    finally:
        if sender is not None:
            sender.finish()
        notify.close()


def test_a_reload_moves_the_device_and_the_log_level(spooler_factory: Any, short_tmp: Path) -> None:
    """Standalone (every job to the device): the device moves to another folder with a reload, the jobs
    after it go there; the log level drops to warn and info lines stop."""
    spooler = spooler_factory()
    notify = NotifySocket(short_tmp / "notify.sock")
    try:
        spooler.start(env={"NOTIFY_SOCKET": str(notify.path)})
        notify.next()
        send_raw(spooler.raw_port, pjl_job("erin", "before", b"%!PS\n% before\n"))
        spooler.wait_delivered(1)
        second = short_tmp / "second-device"
        second.mkdir()
        old_ipp, spooler.ipp_port, admin_port = spooler.ipp_port, free_port(), free_port()
        spooler.write_config(device__uri=second.as_uri(), log__level="warn",
                             admin__listen=f"tcp:{admin_port}:interface=127.0.0.1")  # fmt: skip
        record = hup(spooler, notify)
        assert record["applied"] == ["admin.listen", "device.uri", "listen.ipp", "log.level"], record
        assert refused(old_ipp) and not refused(spooler.ipp_port)  # the IPP printer moved
        connection = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)  # the admin listener is on
        connection.request("GET", "/healthz")
        assert json.loads(connection.getresponse().read())["status"] == "ok"
        connection.close()
        lines = len(spooler.stderr().splitlines())
        send_raw(spooler.raw_port, pjl_job("erin", "after", b"%!PS\n% after\n"))
        [moved] = spooler.wait_delivered(1, directory=second)
        assert spooler.sink_sidecar(moved)["name"] == "after" and len(spooler.sink_files()) == 1
        assert json.loads(spooler.cli("status", "--json").stdout)["device"]["uri"] == second.as_uri()
        assert spooler.stderr().splitlines()[lines:] == []  # job lines are info: no longer shown
    finally:
        notify.close()
