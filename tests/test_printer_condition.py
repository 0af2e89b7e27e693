"""The printer's condition as IPP clients see it (printer-state, -reasons, -message), table-tested:
a pure function of the queue counts, the device's and the server's health and the spool's room."""

from __future__ import annotations

from typing import Any

import pytest

from spooler.dispatch.dispatcher import DeviceStatus
from spooler.dispatch.health import HealthTracker
from spooler.jobs.condition import describe_printer, queued_jobs
from spooler.model import JobState

DEVICE = "socket://printer:9100"


def down_server() -> HealthTracker:
    server = HealthTracker("server", down_after=1)
    server.record(False, 1.0, "connection refused")
    return server


def describe(**given: Any) -> tuple[str, tuple[str, ...], str]:
    inputs: dict[str, Any] = {"counts": {}, "paused": False, "busy": False, "device": DeviceStatus(DEVICE),
                              "server": None, "offline_policies": {"print"}, "room": True}  # fmt: skip
    return describe_printer(**(inputs | given))


CASES = [
    ({}, "idle", (), "Idle."),
    ({"busy": True, "device": DeviceStatus(DEVICE, "ok")}, "processing", (), "Printing."),
    ({"busy": True}, "processing", ("connecting-to-device",), f"Connecting to the device {DEVICE}."),
    ({"paused": True}, "stopped", ("paused",), "Paused by an administrator."),
    ({"paused": True, "busy": True, "device": DeviceStatus(DEVICE, "ok")}, "stopped", ("moving-to-paused",),
     "Paused by an administrator: finishing the current job."),
    ({"counts": {JobState.PENDING: 2}, "device": DeviceStatus(DEVICE, "unreachable", detail="refused")},
     "processing", ("offline-report", "connecting-to-device"), f"The device {DEVICE} is unreachable: refused."),
    ({"device": DeviceStatus(DEVICE, "unreachable", detail="refused")}, "idle", ("offline-report",),
     f"The device {DEVICE} is unreachable: refused."),
    ({"room": False}, "idle", ("spool-area-full",), "The spool is full: new jobs are refused."),
    ({"shut_down": True, "paused": True}, "stopped", ("shutdown",), "Shut down by an administrator."),
    ({"not_accepting": "toner"}, "idle", (), "Not accepting jobs: toner."),
    ({"not_accepting": ""}, "idle", (), "Not accepting jobs."),
    ({"holding_new_jobs": True}, "idle", ("hold-new-jobs",), "New jobs are held until released."),
    ({"server": down_server(), "offline_policies": {"queue", "hold"}}, "idle", ("other-report",),
     "Offline: the central print server is unreachable (connection refused); jobs are held until their owner "
     "releases them at the device; jobs wait here, in order, until it is back."),
]  # fmt: skip


@pytest.mark.parametrize(("given", "state", "reasons", "message"), CASES)
def test_condition(given: dict[str, Any], state: str, reasons: tuple[str, ...], message: str) -> None:
    assert describe(**given) == (state, reasons, message)


def test_queued_jobs_are_those_the_printer_still_has_to_handle() -> None:
    counts = {JobState.PENDING: 1, JobState.PENDING_HELD: 2, JobState.PROCESSING: 1, JobState.COMPLETED: 9,
              JobState.CANCELED: 3}  # fmt: skip
    assert queued_jobs(counts) == 4
