"""The listeners' connection limits: `limits.max_connections` per listener and, on the HTTP listeners,
`limits.max_connections_per_address` per client address. When a limit is reached, one connection that
is not waiting for its job to be committed or its request to be answered is closed to make room for
the new one: first those whose client never sent a byte, the oldest first, then the one whose client
has been silent the longest. Only when every candidate is committing or answering is the new one
refused. The per-address limit picks among that address's own connections only, so one address
flooding a listener competes with itself, never with the others.

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


class AddressedEvictable(Evictable, Protocol):
    #: The client's address, as the per-address limit counts it.
    peer_host: str


def admit(connections: Collection[Evictable], limit: int, now: float, *, protocol: str, host: str) -> bool:
    """Whether a new connection may be accepted with `connections` open: below `limit`, or once the
    connection ranked first (see the module docstring) has been evicted to make room."""
    if len(connections) < limit:
        return True
    return _make_room(connections, now, protocol=protocol, host=host, limit=limit, scope="listener")


def admit_from(connections: Collection[AddressedEvictable], limit: int, per_address: int | None, now: float, *,
               protocol: str, host: str) -> bool:  # fmt: skip
    """`admit` with a per-address limit as well: with `per_address` connections from `host` open, the
    one of them ranked first makes room (or, all of them busy, the new one is refused)."""
    if per_address is not None:
        own = [connection for connection in connections if connection.peer_host == host]
        if len(own) >= per_address:
            return _make_room(own, now, protocol=protocol, host=host, limit=per_address, scope="address")
    return admit(connections, limit, now, protocol=protocol, host=host)


def _make_room(connections: Collection[Evictable], now: float, *, protocol: str, host: str, limit: int,
               scope: str) -> bool:  # fmt: skip
    candidates = [(rank, id(connection), connection) for connection in connections
                  if (rank := connection.eviction_rank()) is not None]  # fmt: skip
    where = "connections open" if scope == "listener" else f"connections open from {host}"
    if candidates:
        (_, since), _, idlest = min(candidates, key=lambda item: (item[0], item[1]))
        log.warn("{protocol} connection idle for {idle:.1f}s closed to make room for one from {host} "
                 "({limit} {where})", spool_event="connection_evicted", protocol=protocol, host=host,
                 idle=now - since, limit=limit, where=where, scope=scope)  # fmt: skip
        idlest.evict()
        return True
    log.warn("{protocol} connection from {host} refused: {limit} {where} already, all busy",
             spool_event="connection_refused", protocol=protocol, host=host, limit=limit, where=where,
             scope=scope)  # fmt: skip
    return False
