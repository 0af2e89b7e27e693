"""The HTTP connection handling every twisted.web server of the spooler shares: the body cap enforced as
the body arrives (never after it was buffered), the header deadline, the idle timeout, the connection
cap with idle-first eviction and the per-address cap (spooler.intake.limits), the refusal of clients
that are not allowed at all, and a site that writes no access log.

Where the body cap hooks in, and why there. twisted.web's `HTTPChannel` parses the request head, then
calls `Request.gotLength(length)` (the declared Content-Length, or None for a chunked body) before it
reads any of the body, and `Request.handleContentChunk(data)` for every piece of the body as it is
decoded (identity or chunked); only when the body is complete does it call `Request.requestReceived`,
which renders. The stock `gotLength` opens `Request.content` — a `BytesIO` below 100,000 bytes, a
temporary file above — and the stock `handleContentChunk` writes everything into it: a 200 MiB body is
buffered in a 200 MiB temporary file before any resource sees it. Installed Twisted (26.10) has no
body-size setting on the channel (only `maxHeaders` and `totalHeadersSize` for the head). So
`LimitedRequest` — the site's `requestFactory`, the documented way to choose the request class —
overrides those two hooks: a declared length over the cap is refused in `gotLength`, before one byte
of the body is read (and before Twisted answers `Expect: 100-continue`, whose header it removes so
that no "100 Continue" follows the refusal); a chunked body is counted in `handleContentChunk` and
refused the moment it passes the cap. The IPP request (spooler.ipp.server.resource) uses the same two hooks
to stream documents instead. The refusal itself is written by the channel (`LimitedChannel.refuse`):
a complete `413` JSON answer with `Connection: close`, then a half-close; whatever the client still
sends is read and dropped (never stored) for at most LINGER seconds or LINGER_BYTES bytes, so that a
client busy sending sees the answer instead of a reset, and then the connection is closed. No
Twisted internals are patched: only public methods of `HTTPChannel` (`connectionMade`,
`dataReceived`, `lineReceived`, `rawDataReceived`, `allHeadersReceived`, `allContentReceived`,
`requestDone`, `connectionLost`) and of `Request` are overridden in subclasses.

The header deadline: `HTTPChannel`'s own timeout (`Site(timeout=...)`, TimeoutMixin) is an *idle*
timeout, reset by every byte, so a client sending one header byte every few seconds holds its
connection for ever (slowloris). `LimitedChannel` adds a deadline that no trickle resets: the request
head must be complete within `header_timeout` of the connection being opened, or of the first byte of
a later request on a kept-alive connection (until then the idle timeout governs). On the JSON sites,
whose bodies are small, the deadline runs until the body is complete too; the IPP site, whose bodies
are documents of any size, stops it at the end of the head (its idle timeout covers a stalled body).
A missed deadline is answered `408` and the connection closed.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from io import BytesIO
from typing import Any

from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from spooler.intake.limits import admit_from

log = Logger(namespace="spooler.web")

#: After a refusal, what the client still sends is dropped for at most this long and this much.
LINGER = 2.0
LINGER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class HttpLimits:
    """The connection limits of one HTTP listener (`limits.*` of the configuration)."""

    max_connections: int = 100
    #: Connections one client address may hold at once; None: no per-address limit (a UNIX socket).
    max_per_address: int | None = None
    #: The request head (on JSON sites the whole request) must arrive within this; None: no deadline.
    header_timeout: float | None = 20.0
    #: A connection without a byte for this long is closed (Twisted's own timeout); None: never.
    idle_timeout: float | None = 60.0

    @classmethod
    def from_config(cls, limits: Any, *, idle_timeout: float | None) -> HttpLimits:
        """The limits of an HTTP listener from `[limits]` (spooler.config.LimitsConfig); the JSON
        listeners pass their own, shorter, idle timeout, the IPP listener `limits.idle_timeout`."""
        return cls(max_connections=limits.max_connections, max_per_address=limits.max_connections_per_address,
                   header_timeout=limits.header_timeout, idle_timeout=idle_timeout)  # fmt: skip


def normal_host(host: str) -> str:
    """An IP address in one spelling (brackets off, IPv4-mapped IPv6 as IPv4); a name as it is."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        parsed = ipaddress.ip_address(host)
    except ValueError:
        return host
    mapped = getattr(parsed, "ipv4_mapped", None)
    return str(mapped or parsed)


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def address_host(address: IAddress | None) -> str:
    """The client's host as the limits count it (`normal_host`); a UNIX socket peer is ""."""
    return normal_host(str(getattr(address, "host", "") or ""))


def answer_bytes(status: int, body: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete HTTP/1.1 answer that closes the connection (the channel's own refusals)."""
    data = json.dumps(body).encode("utf-8") + b"\n"
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    lines = [f"HTTP/1.1 {status} {phrase}", "Content-Type: application/json", f"Content-Length: {len(data)}",
             "Cache-Control: no-store", "Connection: close", *(f"{name}: {value}" for name, value in headers)]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


class LimitedChannel(HTTPChannel):
    """An HTTP connection of a LimitedSite: counted in `site.connections`, ranked for eviction, held to
    the header deadline, and able to refuse a request before its body is read (`refuse`)."""

    site: LimitedSite

    peer_host = ""
    last_activity = 0.0
    received_any = False
    #: A request was received whole and is being answered (never evicted meanwhile).
    answering = False
    #: The head of the current request is complete (its deadline, on a head-only site, is over).
    head_received = False
    #: Refused: the answer is written, what the client still sends is dropped until the close.
    refused = False
    _deadline: IDelayedCall | None = None
    _linger: IDelayedCall | None = None
    _lingered = 0

    def connectionMade(self) -> None:
        super().connectionMade()
        self.peer_host = address_host(self.transport.getPeer() if self.transport is not None else None)
        self.last_activity = self.site.reactor.seconds()
        self.site.connections.add(self)
        self._start_deadline()

    def dataReceived(self, data: bytes) -> None:
        if self.refused:
            self._drop(len(data))
            return
        self.last_activity = self.site.reactor.seconds()
        self.received_any = True
        if self._deadline is None and not self.answering and not self.head_received:
            self._start_deadline()  # the first byte of a later request on a kept-alive connection
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if not self.refused:
            super().lineReceived(line)

    def rawDataReceived(self, data: bytes) -> None:
        if not self.refused:
            super().rawDataReceived(data)

    def allHeadersReceived(self) -> None:
        self.head_received = True
        if not self.site.deadline_covers_body:
            self._stop_deadline()
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        if self.refused:
            return
        self._stop_deadline()
        self.answering = True
        super().allContentReceived()

    def requestDone(self, request: Request) -> None:
        self.answering = False
        self.head_received = False
        super().requestDone(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.site.connections.discard(self)
        self._stop_deadline()
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        super().connectionLost(reason)

    # -- limits --------------------------------------------------------------------------------------

    def eviction_rank(self) -> tuple[bool, float] | None:
        """For the connection limits (spooler.intake.limits): a request received whole is being
        answered and is never cut; an idle keep-alive connection, one whose request is still arriving,
        or one already refused may be."""
        if self.refused:
            return (False, 0.0)
        if self.answering:
            return None
        return (self.received_any, self.last_activity)

    def evict(self) -> None:
        self.site.connections.discard(self)
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _start_deadline(self) -> None:
        timeout = self.site.limits.header_timeout
        if timeout is not None and self._deadline is None:
            self._deadline = self.site.reactor.callLater(timeout, self._deadline_passed)

    def _stop_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        timeout = self.site.limits.header_timeout
        what = "request" if self.site.deadline_covers_body else "request head"
        self.refuse(408, "request-timeout", f"the {what} did not arrive within {timeout:g} s")

    # -- refusals ------------------------------------------------------------------------------------

    def refuse(self, status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Answer `status` with `{"error", "code"}` now, whatever the request's state (nothing of its body
        is read any more), and close the connection; the first refusal of a connection wins."""
        if self.refused or self.transport is None:
            return
        self.refused = True
        self.persistent = False
        self._stop_deadline()
        self.setTimeout(None)
        log.warn("{site}: refused a request from {host} with {status}: {why}", spool_event="http_refused",
                 site=self.site.name, host=self.peer_host, status=status, code=code, why=message)  # fmt: skip
        self.transport.write(answer_bytes(status, {"error": message, "code": code}, headers))
        half_close = getattr(self.transport, "loseWriteConnection", None)
        if half_close is not None:
            half_close()  # the answer, then FIN; reading goes on (and drops) for a moment
        else:
            self.transport.loseConnection()
        self._linger = self.site.reactor.callLater(LINGER, self._end_linger)

    def _drop(self, size: int) -> None:
        self._lingered += size
        if self._lingered > LINGER_BYTES:
            self._end_linger()

    def _end_linger(self) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]


class LimitedRequest(Request):
    """A request whose body may not pass the site's `max_body`: refused with 413 as soon as the head
    declares more, or as soon as a chunked body passes it (see the module docstring)."""

    refused = False
    body_received = 0

    def _limit(self) -> int | None:
        site = getattr(self.channel, "site", None)
        return getattr(site, "max_body", None)

    def gotLength(self, length: int | None) -> None:
        limit = self._limit()
        if limit is not None and length is not None and length > limit:
            self.content = BytesIO()  # type: ignore[assignment]  # stays empty
            self._too_large(limit)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        self.body_received += len(data)
        limit = self._limit()
        if limit is not None and self.body_received > limit:
            self._too_large(limit)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self.refused:
            super().requestReceived(command, path, version)

    def _too_large(self, limit: int) -> None:
        self.refused = True
        self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after the refusal
        channel = self.channel
        if isinstance(channel, LimitedChannel):
            channel.refuse(413, "too-large", f"the request body is larger than {limit} bytes")
        elif channel is not None and channel.transport is not None:
            channel.transport.abortConnection()


class LimitedSite(Site):
    """A twisted.web site with the limits of the module docstring; no access log (the spool log records
    what requests change), no tracebacks to clients.

    `peer_allowed(host)`, when given, is asked for every new connection before anything is read: a
    client it refuses is closed at once (the share endpoint admits only its peers)."""

    protocol = LimitedChannel  # type: ignore[assignment]
    requestFactory = LimitedRequest
    noisy = False
    displayTracebacks = False
    #: Whether the header deadline runs until the body is complete (small JSON bodies) or ends with the head.
    deadline_covers_body = True

    def __init__(self, resource: IResource, *, reactor: Any, name: str, limits: HttpLimits,
                 max_body: int | None = None, peer_allowed: Callable[[str], bool] | None = None) -> None:  # fmt: skip
        super().__init__(resource, timeout=limits.idle_timeout, reactor=reactor)  # type: ignore[arg-type]
        self.name = name
        self.limits = limits
        self.max_body = max_body
        self.peer_allowed = peer_allowed
        self.connections: set[LimitedChannel] = set()

    def log(self, request: object) -> None:
        """No access log."""

    def buildProtocol(self, addr: IAddress | None) -> Any:
        host = address_host(addr)
        if self.peer_allowed is not None and not self.peer_allowed(host):
            log.warn("{site}: connection from {host} refused: not a peer", spool_event="connection_refused",
                     site=self.name, protocol=self.name, host=host, scope="peer")  # fmt: skip
            return None
        limits = self.limits
        if not admit_from(self.connections, limits.max_connections, limits.max_per_address, self.reactor.seconds(),
                          protocol=self.name, host=host):  # fmt: skip
            return None
        return super().buildProtocol(addr)
