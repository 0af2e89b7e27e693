"""Where a job goes when it reaches the head of its queue: the routing rule, in one pure function.

    no central server configured   -> the device                    (mode standalone)
    server up (or not yet known)   -> forward to the server         (mode online)
    server down, policy "print"    -> the device now                (mode offline: device spooling)
    server down, policy "hold"     -> held until its owner releases it at the device (offline pull print)
    server down, policy "queue"    -> wait, in order, for the server (the queue holds back)
"""

from __future__ import annotations

import enum

from spooler.model import Mode

OFFLINE_POLICIES = ("print", "hold", "queue")


class Decision(enum.Enum):
    FORWARD = "forward"
    DEVICE = "device"
    HOLD = "hold"
    WAIT = "wait"


def route(*, server_configured: bool, server_usable: bool, offline_policy: str) -> Decision:
    if not server_configured:
        return Decision.DEVICE
    if server_usable:
        return Decision.FORWARD
    return {"print": Decision.DEVICE, "hold": Decision.HOLD, "queue": Decision.WAIT}[offline_policy]


def mode(*, server_configured: bool, server_usable: bool) -> Mode:
    if not server_configured:
        return Mode.STANDALONE
    return Mode.ONLINE if server_usable else Mode.OFFLINE
