"""Routing and health, table-tested: pure functions of the server's state and the queue's policy."""

from __future__ import annotations

import pytest

from spooler.dispatch.health import DOWN, UNKNOWN, UP, HealthTracker
from spooler.model import Mode
from spooler.dispatch.router import Decision, mode, route


@pytest.mark.parametrize(
    ("configured", "usable", "policy", "decision"),
    [
        (False, False, "print", Decision.DEVICE),
        (False, True, "queue", Decision.DEVICE),
        (True, True, "print", Decision.FORWARD),
        (True, True, "hold", Decision.FORWARD),
        (True, True, "queue", Decision.FORWARD),
        (True, False, "print", Decision.DEVICE),
        (True, False, "hold", Decision.HOLD),
        (True, False, "queue", Decision.WAIT),
    ],
)
def test_route(configured: bool, usable: bool, policy: str, decision: Decision) -> None:
    assert route(server_configured=configured, server_usable=usable, offline_policy=policy) is decision


@pytest.mark.parametrize(("configured", "usable", "policy"), [(True, True, "hold"), (True, False, "hold"),
                                                             (True, False, "queue"), (False, False, "print")])  # fmt: skip
def test_a_job_released_at_the_device_prints_there_whatever_the_server_does(configured: bool, usable: bool,
                                                                            policy: str) -> None:  # fmt: skip
    assert route(server_configured=configured, server_usable=usable, offline_policy=policy,
                 released_at_device=True) is Decision.DEVICE


def test_mode() -> None:
    assert mode(server_configured=False, server_usable=False) is Mode.STANDALONE
    assert mode(server_configured=True, server_usable=True) is Mode.ONLINE
    assert mode(server_configured=True, server_usable=False) is Mode.OFFLINE


# Each row: outcomes in order (True = success), and the state after each.
HYSTERESIS = [
    ([True], [UP]),
    ([False, False], [UNKNOWN, DOWN]),
    ([True, False, False, False], [UP, UP, DOWN, DOWN]),
    ([True, False, True, False], [UP, UP, UP, UP]),  # a failure between successes is not enough
    ([False, False, True, True], [UNKNOWN, DOWN, DOWN, UP]),  # back up takes two in a row
    ([False, False, True, False, True, True], [UNKNOWN, DOWN, DOWN, DOWN, DOWN, UP]),
]


@pytest.mark.parametrize(("outcomes", "states"), HYSTERESIS)
def test_hysteresis(outcomes: list[bool], states: list[str]) -> None:
    tracker = HealthTracker("server", down_after=2, up_after=2)
    seen = []
    for second, ok in enumerate(outcomes):
        tracker.record(ok, float(second), "" if ok else "refused")
        seen.append(tracker.state)
    assert seen == states


def test_changes_are_reported_once_with_their_time() -> None:
    tracker = HealthTracker("server", down_after=2, up_after=1)
    assert tracker.record(False, 1.0, "refused") is None
    assert tracker.record(False, 2.0, "refused") == DOWN
    assert (tracker.since, tracker.detail, tracker.usable) == (2.0, "refused", False)
    assert tracker.record(False, 3.0, "refused") is None
    assert tracker.record(True, 4.0) == UP and tracker.usable and tracker.detail == ""
