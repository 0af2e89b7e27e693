"""The printer as IPP clients see it: printer-state, printer-state-reasons and printer-state-message,
told truthfully from what the dispatcher, the device, the central server and the spool say. Pure:
the job service gathers the inputs (and when the condition last changed)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from spooler.dispatch.dispatcher import DeviceStatus
from spooler.dispatch.health import DOWN, HealthTracker
from spooler.model import JobState

#: What each queue's offline policy does, as the printer-state-message says it.
OFFLINE_NOTES = {
    "print": "jobs print directly on this device",
    "hold": "jobs are held until their owner releases them at the device",
    "queue": "jobs wait here, in order, until it is back",
}
#: The states of jobs the printer still has to do something with.
QUEUED_STATES = (JobState.PENDING, JobState.PENDING_HELD, JobState.PROCESSING, JobState.PROCESSING_STOPPED)


@dataclass(frozen=True)
class PrinterCondition:
    """What the printer is doing, told truthfully from the dispatcher, the device and the spool."""

    state: str  # idle | processing | stopped (IPP printer-state keywords)
    reasons: tuple[str, ...]
    message: str
    accepting: bool
    changed_at: float
    queued: int


def queued_jobs(counts: Mapping[JobState, int]) -> int:
    return sum(counts.get(state, 0) for state in QUEUED_STATES)


def describe_printer(*, counts: Mapping[JobState, int], paused: bool, shut_down: bool = False, busy: bool,
                     device: DeviceStatus, server: HealthTracker | None, offline_policies: Collection[str],
                     room: bool, not_accepting: str | None = None,
                     holding_new_jobs: bool = False) -> tuple[str, tuple[str, ...], str]:  # fmt: skip
    """(printer-state keyword, printer-state-reasons, printer-state-message) of the whole printer or
    of one queue. `room`: the spool is above its floor; `not_accepting`: the queue was set not to take
    jobs (IPP Disable-Printer), with the administrator's reason ("" for none; None: it accepts);
    `holding_new_jobs`: the queue holds new jobs (Hold-New-Jobs)."""
    waiting = counts.get(JobState.PENDING, 0) + counts.get(JobState.PROCESSING, 0)
    reasons: list[str] = []
    messages: list[str] = []
    state = "processing" if busy or (waiting and device.state == "unreachable") else "idle"
    if shut_down:
        state = "stopped"
        reasons.append("shutdown")
        messages.append("Shut down by an administrator.")
    elif paused:
        state = "stopped"
        reasons.append("moving-to-paused" if busy else "paused")
        messages.append("Paused by an administrator" + (": finishing the current job." if busy else "."))
    if not_accepting is not None:
        messages.append("Not accepting jobs" + (f": {not_accepting}." if not_accepting else "."))
    if holding_new_jobs:
        reasons.append("hold-new-jobs")
        messages.append("New jobs are held until released.")
    if device.state == "unreachable":
        reasons.append("offline-report")
        if waiting:
            reasons.append("connecting-to-device")
        messages.append(f"The device {device.uri} is unreachable: {device.detail}.")
    elif busy and device.state == "unknown":
        reasons.append("connecting-to-device")
        messages.append(f"Connecting to the device {device.uri}.")
    if server is not None and server.state == DOWN:
        reasons.append("other-report")
        messages.append(f"Offline: the central print server is unreachable ({server.detail}); "
                        + "; ".join(OFFLINE_NOTES[policy] for policy in sorted(offline_policies)) + ".")  # fmt: skip
    if not room:
        reasons.append("spool-area-full")
        messages.append("The spool is full: new jobs are refused.")
    if not messages:
        messages.append("Printing." if state == "processing" else "Idle.")
    return state, tuple(reasons), " ".join(messages)
