"""Failure modes (normal, refuse, hang, slow, error) and the factory wrapper that applies them to a listener.

Every listener of the reference server (the API, IPP and LPD ports) serves a `FailureModeFactory`
around its real protocol factory, and a `ModeController` tells them all which mode is on:

- normal: the real protocol, untouched;
- refuse: the ports stop listening (the controller calls its `on_listening` hooks), so a connect
  is refused; connections already open are cut;
- hang: a connection is accepted, its bytes swallowed, and nothing is ever answered; it stays open
  until the mode changes (then it is cut);
- slow: whatever the real protocol writes is held back `delay` seconds (each answer, not each byte);
- error: the API answers 503 (its resource asks the controller), IPP answers
  server-error-service-unavailable and LPD refuses with a non-zero acknowledgement (the `error`
  factory given to the wrapper).

Changing to refuse, hang or error cuts every open connection, so that the new mode applies at once
(a kept-alive HTTP connection must not slip through).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IHalfCloseableProtocol, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import alsoProvides, implementer

from spooler.ipp.codec import IppMessage, encode_message
from spooler.ipp.server.operations import response_for
from spooler.ipp.tags import Status

log = Logger(namespace="spooler.refserver.modes")

MODES = ("normal", "refuse", "hang", "slow", "error")
#: Modes in which the connections already open are cut when the mode is switched on.
CUTTING_MODES = ("refuse", "hang", "error")
DEFAULT_DELAY = 5.0


class ModeController:
    """The current failure mode and the delay of the slow mode; tells the listeners when it changes."""

    def __init__(self, mode: str = "normal", delay: float = DEFAULT_DELAY) -> None:
        check_mode(mode, delay)
        self.mode = mode
        self.delay = delay
        self.factories: list[FailureModeFactory] = []
        #: Called with True/False when the ports must listen / stop listening; may return a Deferred.
        self.on_listening: list[Callable[[bool], Any]] = []

    def set(self, mode: str, delay: float | None = None) -> Deferred[None]:
        """Switch to `mode` (and `delay`, if given); fires once the ports listen or stopped listening."""
        check_mode(mode, delay)
        previous = self.mode
        self.mode = mode
        if delay is not None:
            self.delay = delay
        log.info("Failure mode {previous} -> {mode} (delay {delay}s)", refserver_event="mode_changed",
                 previous=previous, mode=mode, delay=self.delay)  # fmt: skip
        for factory in self.factories:
            factory.mode_changed(previous, mode)
        listening = [maybeDeferred(hook, mode != "refuse") for hook in self.on_listening]
        return gatherResults(listening, consumeErrors=True).addCallback(lambda _: None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "delay": self.delay,
            "connections": {factory.name: len(factory.protocols) for factory in self.factories},
        }


def check_mode(mode: str, delay: float | None) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (one of: {', '.join(MODES)})")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= 3600):
        raise ValueError(f"the delay must be a number of seconds between 0 and 3600, got {delay!r}")


class FailureModeProtocol(ProtocolWrapper):
    """The transport of the real protocol: passes everything through, except that in slow mode each
    answer (the first write after a quiet spell and whatever follows it) is held back `delay` seconds."""

    factory: FailureModeFactory

    def __init__(self, factory: FailureModeFactory, wrapped: Any, built_in: str) -> None:
        super().__init__(factory, wrapped)  # type: ignore[arg-type]
        self.built_in = built_in
        self._held: list[bytes] = []
        self._release: IDelayedCall | None = None
        self._close_when_released = False

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(transport)  # replaces what this object directly provides with the transport's
        if IHalfCloseableProtocol.providedBy(self.wrappedProtocol):
            alsoProvides(self, IHalfCloseableProtocol)  # raw and LPD clients half-close after the job

    def readConnectionLost(self) -> None:
        self.wrappedProtocol.readConnectionLost()

    def writeConnectionLost(self) -> None:
        self.wrappedProtocol.writeConnectionLost()

    def write(self, data: bytes) -> None:
        if self._release is None and self.factory.controller.mode == "slow" and self.factory.controller.delay > 0:
            self._release = self.factory.clock.callLater(self.factory.controller.delay, self._flush)
        if self._release is not None:
            self._held.append(data)
        else:
            self.transport.write(data)

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self.disconnecting = 1
        if self._release is not None:
            self._close_when_released = True
        else:
            self.transport.loseConnection()

    def _flush(self) -> None:
        self._release = None
        data, self._held = b"".join(self._held), []
        if data and self.transport is not None:
            self.transport.write(data)
        if self._close_when_released and self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._release is not None and self._release.active():
            self._release.cancel()
        self._release = None
        super().connectionLost(reason)


@implementer(IHalfCloseableProtocol)
class SwallowProtocol(Protocol):
    """The hang mode: reads and drops every byte, never answers, never closes — not even when the
    client half-closes after its job (a raw client's end of job): a server that closed then would
    look, to a raw client, exactly like one that printed the job."""

    def dataReceived(self, data: bytes) -> None:
        pass

    def readConnectionLost(self) -> None:
        pass

    def writeConnectionLost(self) -> None:
        pass


class FailureModeFactory(WrappingFactory):
    """Wraps a listener's factory so that the controller's mode applies to every new connection.

    It stands in for the wrapped factory where the spooler expects an intake factory: `connections`
    and `close_all()` are the wrapped factory's."""

    noisy = False

    def __init__(self, name: str, wrapped: Any, controller: ModeController, clock: IReactorTime,
                 error: Any = None) -> None:  # fmt: skip
        super().__init__(wrapped)
        self.name = name
        self.controller = controller
        self.clock = clock
        self.error = error
        controller.factories.append(self)

    def buildProtocol(self, addr: IAddress | None) -> Any:
        mode = self.controller.mode
        if mode == "refuse":
            return None  # only between a switch to refuse and the port closing
        if mode == "hang":
            inner: Any = SwallowProtocol()
        elif mode == "error" and self.error is not None:
            inner = self.error.buildProtocol(addr)
        else:
            inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            return None
        return FailureModeProtocol(self, inner, mode)

    def mode_changed(self, previous: str, mode: str) -> None:
        """Cut connections the new mode must not keep: all of them for refuse, hang and error;
        the hung and error ones when leaving those modes. The same mode again changes nothing."""
        if mode == previous:
            return
        for protocol in list(self.protocols):
            if mode in CUTTING_MODES or protocol.built_in in CUTTING_MODES:
                if protocol.transport is not None:
                    protocol.transport.abortConnection()

    @property
    def connections(self) -> Any:
        return getattr(self.wrappedFactory, "connections", self.protocols)

    def close_all(self) -> Deferred[Any]:
        for protocol in list(self.protocols):
            if protocol.built_in in CUTTING_MODES and protocol.transport is not None:
                protocol.transport.abortConnection()
        close = getattr(self.wrappedFactory, "close_all", None)
        return maybeDeferred(close) if close is not None else succeed(None)


# -- the error mode of the print queue ---------------------------------------------------------------


class IppUnavailableResource(Resource):
    """Answers every IPP request with server-error-service-unavailable (and its request-id)."""

    isLeaf = True

    def render_POST(self, request: Request) -> bytes:
        header = request.content.read(8) if request.content is not None else b""
        version = (header[0], header[1]) if len(header) >= 2 else (1, 1)
        operation = int.from_bytes(header[2:4], "big") if len(header) >= 4 else 0
        request_id = int.from_bytes(header[4:8], "big") if len(header) >= 8 else 0
        answer = response_for(IppMessage(version, operation, request_id), Status.SERVER_ERROR_SERVICE_UNAVAILABLE,
                              "the central server is unavailable (reference server in error mode)")  # fmt: skip
        request.setHeader(b"content-type", b"application/ipp")
        return encode_message(answer)

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(503)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"service unavailable (reference server in error mode)\n"


class QuietErrorSite(Site):
    noisy = False

    def log(self, request: object) -> None:
        pass


def ipp_error_factory() -> Site:
    return QuietErrorSite(IppUnavailableResource())


class LpdRefusalProtocol(Protocol):
    """Answers the first LPD command with a non-zero acknowledgement (RFC 1179: refused) and closes."""

    def __init__(self) -> None:
        self._answered = False

    def dataReceived(self, data: bytes) -> None:
        if not self._answered and b"\n" in data:
            self._answered = True
            self.transport.write(b"\x01")
            self.transport.loseConnection()


class CloseAtOnceProtocol(Protocol):
    """The error mode of a raw (port 9100) queue, which has no way to say no: close at once."""

    def connectionMade(self) -> None:
        self.transport.loseConnection()


def raw_error_factory() -> Factory:
    factory: Factory = Factory.forProtocol(CloseAtOnceProtocol)
    factory.noisy = False
    return factory


def lpd_error_factory() -> Factory:
    factory: Factory = Factory.forProtocol(LpdRefusalProtocol)
    factory.noisy = False
    return factory
