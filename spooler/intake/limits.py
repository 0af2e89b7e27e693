"""The intake listeners' connection limit (`limits.max_connections`, per listener): when every slot is
taken, one that is not waiting for its job to be committed or answered is closed to make room for the
new one: first those whose client never sent a byte, the oldest first, then the one whose client has
been silent the longest. Only when every connection is committing or answering is the new one refused.

So a flood of idle connections — even one that reconnects as fast as it is cut — cannot starve
well-behaved clients: a newcomer takes the slot of the stalest idler, a client that has sent
something goes after every silent one, and a job being made durable is never cut. A
connection closed this way had nothing acknowledged: its partial data is dropped as on any cut (the
client sees a reset), and it is logged as `connection_evicted`. (A fixed "idle for at least N
seconds" rule fails here: a flood arriving in waves keeps every slot younger than N.)
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from twisted.logger import Logger

log = Logger(namespace="spooler.intake")


class Evictable(Protocol):
    def eviction_rank(self) -> tuple[bool, float] | None:
        """(whether the client ever sent a byte, when it last did or connected): the lowest rank goes
        first; None while the connection must not be cut."""
        ...

    def evict(self) -> None:
        """Close the connection (a reset: nothing it sent was acknowledged)."""
        ...


def admit(connections: Collection[Evictable], limit: int, now: float, *, protocol: str, host: str) -> bool:
    """Whether a new connection may be accepted with `connections` open: below `limit`, or once the
    connection ranked first (see the module docstring) has been evicted to make room."""
    if len(connections) < limit:
        return True
    candidates = [(rank, id(connection), connection) for connection in connections
                  if (rank := connection.eviction_rank()) is not None]  # fmt: skip
    if candidates:
        (_, since), _, idlest = min(candidates, key=lambda item: (item[0], item[1]))
        log.warn("{protocol} connection idle for {idle:.1f}s closed to make room for one from {host} "
                 "({limit} connections open)", spool_event="connection_evicted", protocol=protocol, host=host,
                 idle=now - since, limit=limit)  # fmt: skip
        idlest.evict()
        return True
    log.warn("{protocol} connection from {host} refused: {limit} connections already open, all busy",
             spool_event="connection_refused", protocol=protocol, host=host, limit=limit)  # fmt: skip
    return False
