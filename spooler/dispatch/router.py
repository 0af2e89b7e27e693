"""Where a job goes when it reaches the head of its queue: the routing rule, in one pure function.

    released at the device         -> the device                    (pull print: where its owner stands)
    no central server configured   -> the device                    (mode standalone)
    server up (or not yet known)   -> forward to the server         (mode online)
    server down, policy "print"    -> the device now                (mode offline: device spooling)
    server down, policy "hold"     -> held until its owner releases it at the device (offline pull print)
    server down, policy "queue"    -> wait, in order, for the server (the queue holds back)

A job is "released at the device" when its owner released it at the device terminal (pull print),
or released a job held because the server was down (by whatever means): the job service marks it
so (RELEASED_AT_DEVICE), and it prints on this device even once the server is back (it is not sent
to the server, where it would have to be released a second time).
"""

from __future__ import annotations

import enum

from spooler.model import Mode

OFFLINE_POLICIES = ("print", "hold", "queue")
#: Job attributes the rule depends on (kept in the job's row): held because the central server was
#: down (set by the dispatcher), and released by its owner to this device (set by the job service).
HELD_OFFLINE = "held_offline"
RELEASED_AT_DEVICE = "release_to_device"


class Decision(enum.Enum):
    FORWARD = "forward"
    DEVICE = "device"
    HOLD = "hold"
    WAIT = "wait"


def route(*, server_configured: bool, server_usable: bool, offline_policy: str,
          released_at_device: bool = False) -> Decision:  # fmt: skip
    if released_at_device or not server_configured:
        return Decision.DEVICE
    if server_usable:
        return Decision.FORWARD
    return {"print": Decision.DEVICE, "hold": Decision.HOLD, "queue": Decision.WAIT}[offline_policy]


def mode(*, server_configured: bool, server_usable: bool) -> Mode:
    if not server_configured:
        return Mode.STANDALONE
    return Mode.ONLINE if server_usable else Mode.OFFLINE
