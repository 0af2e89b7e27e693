"""`spooler status`, assembled in one place for the running daemon (the admin API) and for the CLI
while the daemon is down: what the store says (jobs by state, jobs waiting for the server or the
device, the accounting backlog, the forwards in doubt), the spool's room against its floor, and — only from the running
daemon — the live parts (mode, the central server's and the device's health, listeners,
connections, the job under way, the outbox's state, the central API's kind, the outage and the jobs
printed since it began, the login cache with its sync and sharing peers); without them those read
"unknown" (the login cache is then read as stored)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from spooler.config import Config
from spooler.dispatch.reconcile import forward_status
from spooler.model import JobState
from spooler.store.database import JobStore
from spooler.store.spoolfiles import spool_floor

#: The device as the status shows it when nothing live is known (same keys as DeviceStatus.as_dict).
UNKNOWN_DEVICE = {"state": "unknown", "since": None, "detail": "", "consecutive_failures": 0}


def spooler_status(config: Config, store: JobStore, *, daemon: dict[str, Any],
                   live: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The status document. `daemon` says whether and how the daemon runs; `live` is what only the
    running daemon knows (each key replaces the "unknown" one)."""
    counts = store.count_by_state()
    waiting = store.count_waiting_by_route()
    queue = {state.keyword: counts.get(state, 0) for state in JobState}
    status: dict[str, Any] = {
        "daemon": daemon,
        "mode": "standalone" if config.server is None else "unknown",
        "mode_since": None,
        "server": None if config.server is None else {"uri": config.server.queue_uri, "state": "unknown", "detail": ""},
        "listeners": {},
        "device": {"uri": config.device.uri, **UNKNOWN_DEVICE},
        "queue": queue,
        "waiting_for_server": waiting.get("server", 0),
        "waiting_for_device": waiting.get("device", 0),
        "held": queue[JobState.PENDING_HELD.keyword],
        "spool": spool_floor(config).room().as_dict(),
        "accounting": local_accounting(config, store, daemon_running=bool(daemon.get("running"))),
        "forwards_in_doubt": None if config.server is None else forward_status(store),
        "offline": None,  # while the central server is down: since when, jobs printed offline since (live)
        "login": None if daemon.get("running") else stored_login(config),
    }
    return status | (live or {})


def stored_login(config: Config) -> dict[str, Any] | None:
    """The login cache as stored (spooler.login.runtime), read only while the daemon is down."""
    from spooler.login.runtime import stored_login_status

    return stored_login_status(config, time.time())


def local_accounting(config: Config, store: JobStore, *, daemon_running: bool) -> dict[str, Any] | None:
    """The accounting backlog as the store has it, when no outbox is running (None: a spool from
    before accounting)."""
    try:
        counts = store.outbox_counts(not_before=time.time() - config.accounting.max_age)
    except sqlite3.OperationalError:
        return None
    server = config.server
    if server is None or not server.api_url:
        state = "local only (no [server] api_url)"
    elif daemon_running:
        state = f"local only (the {server.kind} server has no accounting import)"
    else:
        state = "daemon down"
    return dict(counts, state=state)
