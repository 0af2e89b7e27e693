"""Reading an HTTP answer's body with a size cap (the central API client, the share client): the cap
holds whether the answer declares a Content-Length or comes chunked, because the bytes are counted as
they arrive and the connection is cut the moment they pass it — the body is never collected first."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import PartialDownloadError, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH, IResponse


class AnswerTooLarge(Exception):
    """An answer's body is larger than the reader's cap."""


class _CappedBody(Protocol):
    def __init__(self, response: IResponse, limit: int, done: Deferred[bytes]) -> None:
        self._response = response
        self._limit = limit
        self._done = done
        self._parts: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._done.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._parts = []
            self._done.errback(AnswerTooLarge(f"the answer is larger than {self._limit} bytes"))
            self._abort()
            return
        self._parts.append(data)

    def _abort(self) -> None:
        _cut(self.transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._done.called:
            return
        if reason.check(ResponseDone):
            self._done.callback(b"".join(self._parts))
        elif reason.check(PotentialDataLoss):
            self._done.errback(PartialDownloadError(self._response.code, self._response.phrase,
                                                    b"".join(self._parts)))  # fmt: skip
        else:
            self._done.errback(reason)


def read_capped(response: IResponse, limit: int) -> Deferred[bytes]:
    """The body of `response`, or AnswerTooLarge as soon as it declares or brings more than `limit`
    bytes (the connection is then cut). Cancelling it cuts the connection too."""
    holder: list[_CappedBody] = []

    def cancel(_: Deferred[bytes]) -> None:
        if holder:
            _cut(holder[0].transport)

    done: Deferred[bytes] = Deferred(cancel)
    if response.length is not UNKNOWN_LENGTH and response.length is not None and response.length > limit:
        done.errback(AnswerTooLarge(f"an answer of {response.length} bytes is larger than {limit} bytes"))
        response.deliverBody(_Discard())
        return done
    reader = _CappedBody(response, limit, done)
    holder.append(reader)
    response.deliverBody(reader)
    return done


def _cut(transport: object) -> None:
    """Stop reading a response and close its connection (the client's transport proxy has no
    abortConnection; stopProducing stops the reading and closes)."""
    if transport is None:
        return
    abort = getattr(transport, "abortConnection", None)
    if abort is not None:
        abort()
    else:
        transport.stopProducing()  # type: ignore[attr-defined]


class _Discard(Protocol):
    """Takes a body too large to want: the connection is cut at once."""

    def connectionMade(self) -> None:
        _cut(self.transport)

    def dataReceived(self, data: bytes) -> None:
        pass
