"""Every way the daemon stops leaves a `spooler_stopped` line in the spool log, with its reason: each
stop signal, a start that fails, and a `kill -9` (found and written at the next start)."""

from __future__ import annotations

import signal
import socket
from typing import Any

import pytest

pytestmark = pytest.mark.e2e


def stops(spooler: Any) -> list[dict[str, Any]]:
    return spooler.events("spooler_stopped")


def test_every_stop_leaves_a_spooler_stopped_line(spooler_factory: Any) -> None:
    spooler = spooler_factory()
    for number, name in ((signal.SIGINT, "SIGINT"), (signal.SIGQUIT, "SIGQUIT"), (signal.SIGTERM, "SIGTERM")):
        spooler.start()
        assert spooler.stop(number) == 0
        last = stops(spooler)[-1]
        assert (last["reason"], last["level"]) == (f"signal {name}", "info")
        assert last["ran_seconds"] > 0
    assert len(stops(spooler)) == 3

    spooler.start()
    spooler.kill9()  # no chance to say anything: the next start says it
    spooler.start()
    found = stops(spooler)[-1]
    assert (found["reason"], found["level"], found["detected_at_start"]) == (
        "killed or crashed (found at the next start)", "warn", True)
    assert isinstance(found["pid"], int)
    spooler.stop()
    assert stops(spooler)[-1]["reason"] == "signal SIGTERM"

    # A start that fails (its port is taken) says so, and exits with the reason on stderr.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", spooler.raw_port))
        squatter.listen(1)
        spooler.start(wait=False)
        assert spooler.process is not None and spooler.process.wait(timeout=30) == 1
        spooler.process = None
    failed = stops(spooler)[-1]
    assert (failed["reason"], failed["level"]) == ("could not start", "error")
    assert str(spooler.raw_port) in failed["detail"]
    # A clean stop before it, a failed start now: the next start reports no crash.
    spooler.start()
    spooler.stop()
    assert [r["reason"] for r in stops(spooler)[-2:]] == ["could not start", "signal SIGTERM"]
