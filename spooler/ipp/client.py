"""An IPP client over HTTP (RFC 8010 section 4): one request at a time to `ipp://` or `ipps://`
URIs, the request's documents streamed from files after the encoded header, the answer read with a
size cap and decoded, a stalled exchange given up on. What it does with the answers is its callers'
business: the delivery backend (spooler.delivery.ipp) forwards jobs with it, and the IPP printer asks
the real device for its description through that same backend.

Errors are DeliveryError, classified: connection refused / timed out / reset, HTTP 5xx, 404, 408,
429 and the IPP statuses that say "later" (server-error-busy, -service-unavailable,
-temporary-error, -not-accepting-jobs, ...) are retryable; the other HTTP 4xx and IPP client-error-*
statuses are permanent (IppStatusError carries the status).

`ipps://` is IPP over HTTPS. The peer's certificate is checked against `tls_trust_root` (None: the
platform's trust store); that needs pyOpenSSL (`twisted[tls]`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import CancelledError, Deferred, TimeoutError as DeferredTimeoutError
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.internet.interfaces import IConsumer, IDelayedCall, IReactorTime
from twisted.internet.task import Cooperator
from twisted.python.failure import Failure
from twisted.internet.protocol import Protocol, connectionDone
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, FileBodyProducer, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IResponse
from zope.interface import implementer

from spooler.ipp.codec import Attribute, IppMessage, IppParseError, decode, encode_message
from spooler.ipp.tags import Operation, Status, Tag
from spooler.model import DeliveryError

__all__ = ["IppClient", "IppStatusError", "RETRYABLE_STATUSES", "is_retryable_status"]

DEFAULT_PORT = 631
DEFAULT_PATH = "/ipp/print"
IPP_VERSION = (1, 1)  # what every IPP printer and server speaks (IPP Everywhere peers speak 2.0 too)
#: A response larger than this is not an IPP answer we want.
MAX_RESPONSE = 4 * 1024 * 1024
#: Non-successful IPP statuses after which trying again later may succeed.
RETRYABLE_STATUSES = frozenset({
    Status.CLIENT_ERROR_TIMEOUT,  # a multi-document job timed out at the peer: send it again
    Status.SERVER_ERROR_INTERNAL_ERROR,
    Status.SERVER_ERROR_SERVICE_UNAVAILABLE,
    Status.SERVER_ERROR_DEVICE_ERROR,
    Status.SERVER_ERROR_TEMPORARY_ERROR,
    Status.SERVER_ERROR_NOT_ACCEPTING_JOBS,
    Status.SERVER_ERROR_BUSY,
    Status.SERVER_ERROR_PRINTER_IS_DEACTIVATED,
    Status.SERVER_ERROR_TOO_MANY_JOBS,
})  # fmt: skip
#: HTTP statuses besides 5xx after which trying again later may succeed. 404 is one (as CUPS stops
#: the queue and keeps the jobs): a wrong printer path is a configuration error, not the job's fault.
RETRYABLE_HTTP = frozenset({404, 408, 429})


def is_retryable_status(status: int) -> bool:
    """Whether a non-successful IPP status-code means "try again later"."""
    return status in RETRYABLE_STATUSES


def _status_name(status: int) -> str:
    try:
        return Status(status).name.lower().replace("_", "-")
    except ValueError:
        return f"status {status:#06x}"


class IppStatusError(DeliveryError):
    """The peer answered with a non-successful IPP status."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message, retryable=is_retryable_status(status))
        self.status = status


class _CountingConsumer:
    """Passes writes on to the HTTP transport and reports each as progress."""

    def __init__(self, consumer: IConsumer, progress: Callable[[], None]) -> None:
        self._consumer = consumer
        self._progress = progress

    def write(self, data: bytes) -> None:
        self._progress()
        self._consumer.write(data)


@implementer(IBodyProducer)
class _IppBody:
    """The HTTP body of an IPP request: the encoded header, then each file's bytes, streamed."""

    def __init__(self, header: bytes, paths: Sequence[Path], cooperator: Cooperator,
                 progress: Callable[[], None]) -> None:  # fmt: skip
        self._header = header
        self._paths = list(paths)
        self._cooperator = cooperator
        self._progress = progress
        try:
            self.length: int = len(header) + sum(os.path.getsize(path) for path in self._paths)
        except OSError as error:
            raise DeliveryError(f"cannot read spool file: {error.strerror}", retryable=False) from None
        self._current: FileBodyProducer | None = None
        self._finished: Deferred[None] | None = None
        self._consumer: _CountingConsumer | None = None
        self._stopped = False
        #: The connection was made and the request began to go out: from now on the peer may act on it.
        self.started = False

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        self.started = True
        self._consumer = _CountingConsumer(consumer, self._progress)
        self._finished = Deferred()
        self._consumer.write(self._header)
        self._next()
        return self._finished

    def _next(self, _: object = None) -> None:
        assert self._finished is not None and self._consumer is not None
        self._current = None
        if self._stopped:
            return
        if not self._paths:
            self._finished.callback(None)
            return
        path = self._paths.pop(0)
        try:
            handle = open(path, "rb")
        except OSError as error:
            self._finished.errback(Failure(DeliveryError(f"cannot read spool file: {error.strerror}",
                                                         retryable=False)))  # fmt: skip
            return
        self._current = FileBodyProducer(handle, cooperator=self._cooperator)
        self._current.startProducing(self._consumer).addCallbacks(self._next, self._failed)

    def _failed(self, failure: Failure) -> None:
        assert self._finished is not None
        if not self._finished.called:
            self._finished.errback(failure)

    def pauseProducing(self) -> None:
        if self._current is not None:
            self._current.pauseProducing()

    def resumeProducing(self) -> None:
        if self._current is not None:
            self._current.resumeProducing()

    def stopProducing(self) -> None:
        self._stopped = True
        if self._current is not None:
            self._current.stopProducing()


class _Watchdog:
    """Cancels an HTTP request that makes no progress (nothing sent, no answer) for `timeout`
    seconds; the first interval also allows for connecting."""

    def __init__(self, clock: IReactorTime, timeout: float, connect_timeout: float) -> None:
        self._clock = clock
        self._timeout = timeout
        self._last = clock.seconds() + connect_timeout
        self._call: IDelayedCall | None = None
        self._target: Deferred[Any] | None = None
        self.fired = False

    def watch(self, target: Deferred[Any]) -> None:
        self._target = target
        self._call = self._clock.callLater(self._last + self._timeout - self._clock.seconds(), self._check)

    def touch(self) -> None:
        self._last = max(self._last, self._clock.seconds())

    def _check(self) -> None:
        self._call = None
        remaining = self._last + self._timeout - self._clock.seconds()
        if remaining > 0:
            self._call = self._clock.callLater(remaining, self._check)
            return
        self.fired = True
        if self._target is not None:
            self._target.cancel()  # also when it is "called" but waiting on a chained Deferred

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


def _is_cancel(failure: Failure) -> bool:
    """A cancel (CancelledError, or ConnectingCancelledError when it came while still connecting),
    also when twisted.web wrapped it in ResponseNeverReceived & co."""
    if failure.check(CancelledError, ConnectingCancelledError):
        return True
    reasons: list[Any] = getattr(failure.value, "reasons", None) or []
    return bool(reasons) and all(isinstance(r, Failure) and r.check(CancelledError, ConnectingCancelledError)
                                 for r in reasons)  # fmt: skip


def _describe(failure: Failure) -> str:
    reasons = getattr(failure.value, "reasons", None)
    if reasons:
        return "; ".join(r.getErrorMessage() for r in reasons if isinstance(r, Failure))
    return failure.getErrorMessage()


class IppClient:
    """Talks IPP to `ipp://host[:port]/path` or `ipps://host[:port]/path` (default port 631, default
    path /ipp/print). The URI's query string, if any, is not sent to the peer."""

    def __init__(
        self,
        uri: str,
        *,
        reactor: Any,
        clock: IReactorTime,
        connect_timeout: float,
        io_timeout: float,
        tls_trust_root: Any = None,
    ) -> None:
        parts = urlsplit(uri)
        if parts.scheme not in ("ipp", "ipps") or not parts.hostname:
            raise ValueError(f"not an ipp:// or ipps:// URI: {uri!r}")
        self.uri = uri
        self.tls = parts.scheme == "ipps"
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORT
        path = parts.path or DEFAULT_PATH
        host = f"[{self.host}]" if ":" in self.host else self.host
        #: The printer-uri attribute sent to the peer.
        self.printer_uri = f"{parts.scheme}://{host}:{self.port}{path}"
        self._url = f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}".encode("ascii")
        self._reactor = reactor
        self._clock = clock
        self._connect_timeout = connect_timeout
        self._io_timeout = io_timeout
        self._tls_trust_root = tls_trust_root
        self._cooperator = Cooperator(scheduler=lambda work: clock.callLater(0, work))
        self._request_id = 0

    # -- the HTTP exchange --------------------------------------------------------------------------

    def _agent(self) -> Agent:
        if self.tls:  # twisted[tls] (pyOpenSSL, service_identity) is an install requirement
            policy = BrowserLikePolicyForHTTPS(trustRoot=self._tls_trust_root)
            return Agent(self._reactor, contextFactory=policy, connectTimeout=self._connect_timeout)
        return Agent(self._reactor, connectTimeout=self._connect_timeout)

    def _request(self, operation: Operation, *attributes: Attribute) -> IppMessage:
        self._request_id = self._request_id % 0x7FFFFFFF + 1
        message = IppMessage(IPP_VERSION, int(operation), self._request_id)
        message.add_group(
            Tag.OPERATION, Attribute.charset("attributes-charset", "utf-8"),
            Attribute.language("attributes-natural-language", "en"),
            Attribute.uri("printer-uri", self.printer_uri), *attributes,
        )  # fmt: skip
        return message

    async def _post(self, message: IppMessage, paths: Sequence[Path] = (), *, timeout: float | None = None,
                    what: str = "") -> IppMessage:  # fmt: skip
        """Send one IPP request (followed by the files' bytes) and return the peer's successful answer;
        raises DeliveryError (classified) for everything else, CancelledError when cancelled. The error
        is `sent` when the request went out and no answer said what the peer made of it."""
        timeout = self._io_timeout if timeout is None else timeout
        what = what or Operation(message.code).name.replace("_", "-").title()
        description = f"{what} at {self.printer_uri}"
        watchdog = _Watchdog(self._clock, timeout, self._connect_timeout)
        body = _IppBody(encode_message(message), paths, self._cooperator, watchdog.touch)
        headers = Headers({b"content-type": [b"application/ipp"], b"user-agent": [b"spooler-ipp-backend"]})
        request: Deferred[IResponse] = self._agent().request(b"POST", self._url, headers, body)
        watchdog.watch(request)
        # A cancel of this exchange fails `request` with whatever the step under way says (a failed name
        # lookup, a cancelled connect): it is a cancel all the same, never a failure of the peer.
        canceled: list[bool] = []
        answered: Deferred[IResponse] = Deferred(lambda _: (canceled.append(True), request.cancel()))
        request.chainDeferred(answered)
        try:
            response: IResponse = await answered
        except Exception:
            failure = Failure()
            if watchdog.fired:
                raise DeliveryError(f"{description}: no answer within {timeout:g}s", retryable=True,
                                    sent=body.started) from None  # fmt: skip
            if canceled or _is_cancel(failure):
                raise CancelledError() from None
            if failure.check(DeliveryError):
                raise
            for reason in getattr(failure.value, "reasons", None) or ():
                if isinstance(reason, Failure) and reason.check(DeliveryError):
                    raise reason.value from None  # a spool file could not be read: not the peer's fault
            if failure.check(ConnectError, DNSLookupError, ConnectTimeoutError):
                raise DeliveryError(f"cannot connect to {self.host}:{self.port}: {failure.getErrorMessage()}",
                                    retryable=True) from None  # fmt: skip
            raise DeliveryError(f"{description} failed: {_describe(failure)}", retryable=True,
                                sent=body.started) from None  # fmt: skip
        finally:
            watchdog.stop()
        reading: Deferred[bytes] = Deferred(lambda _: reader.stop())
        reader = _BodyReader(reading, MAX_RESPONSE)
        response.deliverBody(reader)
        reading.addTimeout(timeout, self._clock)
        try:
            data = await reading
        except Exception:
            failure = Failure()
            if failure.check(DeferredTimeoutError):
                raise DeliveryError(f"{description}: the answer stalled for {timeout:g}s", retryable=True,
                                    sent=True) from None  # fmt: skip
            if failure.check(CancelledError):
                raise
            if failure.check(DeliveryError):
                raise
            if response.code == 200:
                raise DeliveryError(f"{description}: the answer was cut off: {_describe(failure)}",
                                    retryable=True, sent=True) from None  # fmt: skip
            data = b""
        if response.code != 200:
            phrase = response.phrase.decode("latin-1", "replace")
            retryable = response.code >= 500 or response.code in RETRYABLE_HTTP
            raise DeliveryError(f"{description}: HTTP {response.code} {phrase}", retryable=retryable)
        try:
            answer = decode(data, max_attributes=20000, max_values=100000, max_groups=10000)
        except IppParseError as error:
            raise DeliveryError(f"{description}: the answer is not IPP: {error}", retryable=True,
                                sent=True) from None  # fmt: skip
        if answer.code >= 0x0100:
            text = ""
            if (operation := answer.operation_attributes) is not None and (found := operation.get("status-message")):
                text = f" ({found.first})"
            raise IppStatusError(f"{description}: {_status_name(answer.code)}{text}", status=answer.code)
        return answer

    def printer_attributes(self, names: Sequence[str], *, timeout: float | None = None) -> Deferred[Any]:
        """Get-Printer-Attributes for `names`: fires with the peer's printer attributes (a list of
        Attribute, empty if it sent none) or fails with a DeliveryError."""

        async def ask() -> Any:
            answer = await self._post(self._request(Operation.GET_PRINTER_ATTRIBUTES,
                                                    Attribute.keyword("requested-attributes", *names)),
                                      timeout=timeout, what="Get-Printer-Attributes")  # fmt: skip
            group = answer.printer_attributes
            return list(group.attributes) if group is not None else []

        return Deferred.fromCoroutine(ask())


class _BodyReader(Protocol):
    """Collects a response body of at most `limit` bytes into `done`."""

    def __init__(self, done: Deferred[bytes], limit: int) -> None:
        self._done = done
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            if not self._done.called:
                self._done.errback(Failure(DeliveryError(f"the answer is larger than {self._limit} bytes",
                                                         retryable=True)))  # fmt: skip
            self.stop()
            return
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(b"".join(self._chunks))
        else:
            self._done.errback(reason)
