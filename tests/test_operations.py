"""Running it as a service, in process: which reloaded keys apply live (pure table), sd_notify over a
real datagram socket, Twisted's per-connection chatter demoted to debug, a truncated user sync said
as a warning, the log of one idle hour on a Clock, held-offline jobs relabelled when the server is
back, and login.db's numbered migrations."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import succeed
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher

from inprocess import Rig
from spooler.config import config_from_mapping
from spooler.dispatch.dispatcher import HELD_AFTER_OUTAGE, HELD_OFFLINE_MESSAGE
from spooler.login.cache import CredentialCache
from spooler.login.schema import LOGIN_SCHEMA
from spooler.login.keys import LoginKeys
from spooler.login.sync import UserSync, assigned_users
from spooler.model import JobState
from spooler.accounting.outbox import Outbox
from spooler.reload import applies_live, flatten, plan, with_old_values
from spooler.schema import SchemaTooNew, migrate
from spooler.spoollog import LevelFilter
from spooler.systemd import Notifier, notify_socket_address, watchdog_interval

SERVER = {"queue_uri": "ipp://server.test/ipp/print", "probe_interval": 1, "probe_timeout": 1}


def config(tmp_path: Path, **raw: Any) -> Any:
    return config_from_mapping(raw, base=tmp_path, state_dir=tmp_path / "state")


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """Every event at info or above, as the daemon's text log would show it (chatter demoted)."""
    seen: list[dict[str, Any]] = []
    observer = LevelFilter("info").wrap(seen.append)
    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


# -- reload: what applies live ---------------------------------------------------------------------


@pytest.mark.parametrize(("key", "old", "new", "live"), [
    ("listen.raw", "tcp:9100", "tcp:9101", True),
    ("listen.raw", "tcp:9100", None, True),  # raw and LPD turn on and off live
    ("listen.ipp", "tcp:631", "tcp:8631", True),
    ("listen.ipp", "tcp:631", None, False),  # the IPP printer's pieces are wired at start
    ("login.share_listen", None, "tcp:8640", False),
    ("queues", (), (1,), True),
    ("device.uri", "socket://a", "socket://b", True),
    ("device.name", "a", "b", False),
    ("limits.max_connections", 1, 2, True),
    ("log.level", "info", "debug", True),
    ("log.spool_log_max_size", 1, 2, False),
    ("server.probe_interval", 1, 2, True),
    ("server.api_url", "http://a/", "http://b/", False),
    ("state_dir", "/a", "/b", False),
    ("ipp.authentication", "none", "basic", False),
    ("some.future_key", 1, 2, False),  # a key nobody listed needs a restart
])
def test_which_keys_apply_live(key: str, old: Any, new: Any, live: bool) -> None:
    assert applies_live(key, old, new) is live


def test_a_reload_plan_keeps_the_old_value_of_keys_that_wait(tmp_path: Path) -> None:
    old = config(tmp_path, device={"name": "branch-1"}, limits={"max_connections": 10})
    new = config(tmp_path, device={"name": "branch-2"}, limits={"max_connections": 20},
                 server={"queue_uri": "ipp://server.test/ipp/print"})  # fmt: skip
    changes = plan(old, new)
    assert sorted(changes.live) == ["limits.max_connections"]
    assert "device.name" in changes.restart and any(key.startswith("server") for key in changes.restart)
    running = with_old_values(old, new, changes.restart)
    assert (running.device.name, running.limits.max_connections, running.server) == ("branch-1", 20, None)
    assert plan(old, running).changed == ["limits.max_connections"]
    moved = config(tmp_path, device={"name": "branch-1"}, limits={"max_connections": 10},
                   listen={"ipp": "tcp:9999:interface=127.0.0.1"})
    assert list(plan(old, moved).live) == ["listen.ipp"]
    assert list(plan(old, moved, pinned=["listen.ipp"]).restart) == ["listen.ipp"]  # e.g. advertised by DNS-SD
    assert "source" not in flatten(old) and flatten(old)["device.name"] == "branch-1"


# -- systemd ---------------------------------------------------------------------------------------


def test_sd_notify_over_a_datagram_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(5)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        assert notifier.ready("listening on raw 127.0.0.1:9100")
        message = listener.recv(4096).decode()
        assert message.splitlines()[:2] == ["READY=1", "STATUS=listening on raw 127.0.0.1:9100"]
        assert notifier.reloading() and listener.recv(4096).decode().startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert notifier.stopping("signal SIGTERM") and listener.recv(4096) == b"STOPPING=1\nSTATUS=signal SIGTERM"
    finally:
        listener.close()
    assert not Notifier({}).ready("x")  # not under systemd: nothing to do
    assert notify_socket_address({"NOTIFY_SOCKET": "@abstract/name"}) == b"\0abstract/name"
    assert notify_socket_address({"NOTIFY_SOCKET": "relative"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}, 42) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_interval({}, 42) is None


def test_the_watchdog_pings_while_the_reactor_turns(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(5)
    clock = Clock()
    try:
        timer = Notifier({"NOTIFY_SOCKET": str(path)}).watchdog(clock, {"WATCHDOG_USEC": "4000000"})
        assert timer is not None
        timer.startService()
        clock.advance(2)
        clock.advance(2)
        assert [listener.recv(100) for _ in range(3)] == [b"WATCHDOG=1"] * 3  # at start, then every 2 s
        timer.stopService()
    finally:
        listener.close()


# -- quiet logs ------------------------------------------------------------------------------------


def test_on_the_journal_lines_carry_their_syslog_priority(tmp_path: Path) -> None:
    from twisted.logger import Logger

    from spooler.spoollog import TextObserver, on_journal

    with open(tmp_path / "stderr", "w") as stream:
        stat = __import__("os").fstat(stream.fileno())
        assert on_journal(stream, {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"})
        assert not on_journal(stream, {"JOURNAL_STREAM": "1:2"}) and not on_journal(stream, {})
        seen: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(seen.append)
        try:
            Logger(namespace="spooler.test").warn("the server is down")
            Logger(namespace="spooler.test").info("a sync")
        finally:
            globalLogPublisher.removeObserver(seen.append)
        journal, terminal = TextObserver(stream, journal=True), TextObserver(stream)
        for event in seen:
            journal(event)
        terminal(seen[0])
    lines = (tmp_path / "stderr").read_text().splitlines()
    assert lines[:2] == ["<4>[warn] spooler.test: the server is down", "<6>[info] spooler.test: a sync"]
    assert lines[2].endswith(" [warn] spooler.test: the server is down") and lines[2][:4].isdigit()


def test_a_reload_changes_the_text_log_level() -> None:
    from twisted.logger import Logger

    seen: list[dict[str, Any]] = []
    levels = LevelFilter("info")
    observer = levels.wrap(seen.append)
    globalLogPublisher.addObserver(observer)
    try:
        Logger(namespace="spooler.test").info("one")
        levels.set("warn")
        Logger(namespace="spooler.test").info("two")
        Logger(namespace="spooler.test").warn("three")
    finally:
        globalLogPublisher.removeObserver(observer)
    assert [event["log_format"] for event in seen] == ["one", "three"]


def test_client_factory_chatter_is_debug_not_info(events: list[dict[str, Any]]) -> None:
    factory = Factory()
    factory.doStart()
    factory.doStop()
    assert events == []  # Twisted logs both at info; the text log shows them only at debug
    debug: list[dict[str, Any]] = []
    observer = LevelFilter("debug").wrap(debug.append)
    globalLogPublisher.addObserver(observer)
    try:
        factory.doStart()
        factory.doStop()
    finally:
        globalLogPublisher.removeObserver(observer)
    assert [event["log_level"] for event in debug if "factory" in event.get("log_format", "")] == [LogLevel.debug] * 2


def synced(api_answer: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    tmp_path.mkdir(exist_ok=True)
    cache = CredentialCache.open(tmp_path / "login.db", LoginKeys.generate(tmp_path / "login.key"))

    class Api:
        def call(self, method: str, path: Any, *args: Any, **kwargs: Any) -> Any:
            return succeed(api_answer if path != "revocations" else {"revocations": []})

    results: list[Any] = []
    UserSync(Clock(), cache, Api(), device="branch-1", validity=3600).sync().addBoth(results.append)  # type: ignore[arg-type]
    cache.close()
    assert isinstance(results[0], dict), results
    return results[0]


def user(number: int) -> dict[str, Any]:
    return {"name": f"user{number}", "pins": [{"id": "pin-1", "verifier": "scrypt$16384$8$1$AA==$AA=="}]}


def test_a_truncated_user_sync_is_a_warning_that_says_how_many(tmp_path: Path, events: list[dict[str, Any]]) -> None:
    from twisted.logger import formatEvent

    summary = synced({"users": [user(n) for n in range(100)], "truncated": True, "total": 101}, tmp_path)
    assert (summary["users"], summary["truncated"], summary["assigned"]) == (100, True, 101)
    [event] = [e for e in events if e.get("spool_event") == "users_synced"]
    assert event["log_level"] == LogLevel.warn
    assert "synced 100 of 101 users" in formatEvent(event)
    # A server that sends more than 100 without saying so: the extra ones are dropped, and said.
    events.clear()
    summary = synced({"users": [user(n) for n in range(101)]}, tmp_path / "b")
    assert summary["truncated"] and "synced 100 of 101 users" in formatEvent(events[-1])
    events.clear()
    synced({"users": [user(n) for n in range(3)]}, tmp_path / "c")
    assert [e["log_level"] for e in events if e.get("spool_event") == "users_synced"] == [LogLevel.info]
    assert assigned_users({"users": [1] * 100, "truncated": True}) == (101, True)


def test_one_idle_hour_on_a_clock_says_only_what_changed(tmp_path: Path, events: list[dict[str, Any]]) -> None:
    """The dispatcher probing a healthy server every second and the outbox looking for records every
    10 s, for one simulated hour: one line (the server found up), nothing per probe or per look."""
    r = Rig(tmp_path, server=SERVER)

    class Api:
        calls = 0

        def call(self, *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return succeed({"accepted": 0, "duplicates": 0})

    outbox = Outbox(store=r.store, api=Api(), clock=r.clock, config=r.config.accounting)  # type: ignore[arg-type]
    r.dispatcher.start()
    outbox.start()
    events.clear()
    for _ in range(3600):
        r.clock.advance(1)
    outbox.stop()
    assert r.server is not None and r.server.probes >= 3600
    assert [e.get("spool_event") for e in events] == ["mode_changed"], [e.get("log_format") for e in events]


# -- held offline, then the server is back ---------------------------------------------------------


def test_jobs_held_offline_lose_the_server_is_down_message_when_it_is_back(tmp_path: Path) -> None:
    r = Rig(tmp_path, server=SERVER | {"down_after": 2, "up_after": 2}, queues={"default": {"offline_policy": "hold"}})
    r.dispatcher.start()
    assert r.server is not None
    r.server.probe_results[:] = [False, False]
    r.clock.advance(0)
    r.clock.advance(1)
    r.submit(b"held while down", user="ann")
    r.clock.advance(0)
    assert (r.store.get(1).state, r.store.get(1).message) == (JobState.PENDING_HELD, HELD_OFFLINE_MESSAGE)
    r.server.probe_results[:] = [True, True]
    r.clock.advance(1)
    r.clock.advance(1)
    held = r.store.get(1)
    assert (held.state, held.message) == (JobState.PENDING_HELD, HELD_AFTER_OUTAGE)  # still held, told why


# -- login.db migrations ---------------------------------------------------------------------------


def test_login_db_migrations_are_numbered_and_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "login.db"
    legacy = sqlite3.connect(str(path))  # a cache from before versioning: the table, user_version 0
    legacy.execute("CREATE TABLE sealed (kind TEXT NOT NULL, slot TEXT NOT NULL, key_id TEXT NOT NULL, "
                   "blob BLOB NOT NULL, PRIMARY KEY (kind, slot))")  # fmt: skip
    legacy.execute("INSERT INTO sealed VALUES ('meta', 'x', 'k', x'00')")
    legacy.commit()
    legacy.close()
    cache = CredentialCache.open(path, LoginKeys.generate(tmp_path / "login.key"))
    cache.close()
    with sqlite3.connect(str(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(LOGIN_SCHEMA)
        assert db.execute("SELECT COUNT(*) FROM sealed WHERE slot = 'x'").fetchone()[0] == 1  # kept
    steps = [*LOGIN_SCHEMA, "CREATE TABLE lockouts (id TEXT PRIMARY KEY)"]  # what a later version appends
    db = sqlite3.connect(str(path), isolation_level=None)
    assert migrate(db, steps, what="login.db") == len(LOGIN_SCHEMA)
    assert migrate(db, steps, what="login.db") == len(steps)  # nothing left to run
    db.close()
    with pytest.raises(SchemaTooNew, match="newer"):
        CredentialCache.open(path, LoginKeys.generate(tmp_path / "other.key"))
