"""The client of the central server's HTTP JSON API (docs/central-api.md): one call with deadlines
and the typed answers every user of the API (accounting upload, logins, user sync) builds on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from .model import SpoolerError
from .web import AnswerTooLarge, read_capped

#: The largest answer the spooler reads from the API (a sync of 100 users is well under 1 MB).
MAX_ANSWER = 10 * 1024 * 1024


def iso_time(timestamp: float | None) -> str | None:
    """UTC with millisecond precision and a Z (docs/central-api.md, "Conventions")."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CentralApiError(SpoolerError):
    """A call to the central API did not succeed."""


class CentralApiDown(CentralApiError):
    """No usable answer: refused, reset, timed out, 5xx, or not JSON. The server counts as down."""


class CentralApiInDoubt(CentralApiDown):
    """The request went out and no answer came (timeout, reset): the server may have acted on it.
    For an idempotent call this is just "down"; for one that is not (PaperCut's api.processJob) the
    caller must not send it again blindly."""


class CentralApiRefused(CentralApiError):
    """A 4xx answer: the server is up and said no (401 login refused, 400 our bug, 413 too large)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Deadline:
    """How long a call may take: to connect, and in all (docs/central-api.md, "Timeouts")."""

    connect: float
    total: float


HEALTH = Deadline(2.0, 3.0)
LOGIN = Deadline(2.0, 5.0)
USERS = Deadline(5.0, 30.0)
REVOCATIONS = Deadline(5.0, 15.0)
ACCOUNTING = Deadline(5.0, 30.0)


class CentralApi:
    """Calls `base_url` (".../api/v1/") on the given reactor. Every call ends by its deadline.
    This is the "generic" central backend (spooler.central): it can do everything the API offers."""

    kind = "generic"

    def __init__(self, reactor: Any, base_url: str) -> None:
        self._reactor = reactor
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"

    def url(self, path: str | tuple[str, ...], query: dict[str, str] | None = None) -> str:
        """A fixed path ("accounting") or segments (("devices", name, "users")), each quoted whole."""
        segments = path.split("/") if isinstance(path, str) else path
        if any(segment in ("", ".", "..") for segment in segments):
            raise ValueError(f"not a path segment of the API: {path!r}")
        address = self.base_url + "/".join(quote(segment, safe="") for segment in segments)
        return address + ("?" + urlencode(query) if query else "")

    @inlineCallbacks
    def call(self, method: str, path: str | tuple[str, ...], body: Any = None, *, deadline: Deadline,
             query: dict[str, str] | None = None) -> Any:  # fmt: skip
        """The decoded JSON answer of a 2xx; raises CentralApiRefused (4xx) or CentralApiDown."""
        headers = {b"Accept": [b"application/json"]}
        encoded = None
        if body is not None:
            headers[b"Content-Type"] = [b"application/json"]
            # bytes: a body already encoded as JSON (the accounting outbox joins stored records as they are)
            encoded = body if isinstance(body, bytes) else json.dumps(body).encode()
        what = f"{method} {path if isinstance(path, str) else '/'.join(path)}"
        code, data = yield http_request(self._reactor, method, self.url(path, query), headers, encoded,
                                        deadline=deadline, what=what)  # fmt: skip
        return json_answer(what, code, data)


def json_answer(what: str, code: int, data: bytes) -> Any:
    """The decoded JSON of a 2xx answer; CentralApiRefused for a 4xx, CentralApiDown for anything else."""
    try:
        answer = json.loads(data)
    except ValueError:
        raise CentralApiDown(f"{what}: answer {code} is not JSON") from None
    if code >= 500:
        raise CentralApiDown(f"{what}: {code} {_error_text(answer)}")
    if code >= 400:
        raise CentralApiRefused(code, _error_text(answer))
    if code >= 300:
        raise CentralApiDown(f"{what}: unexpected {code}")
    return answer


#: Failures that prove the request never reached the server (it cannot have acted on it).
NOT_SENT = (ConnectError, DNSLookupError, ConnectingCancelledError, ConnectTimeoutError)


@inlineCallbacks
def http_request(reactor: Any, method: str, url: str, headers: dict[bytes, list[bytes]], body: bytes | None, *,
                 deadline: Deadline, what: str) -> Any:  # fmt: skip
    """(status, body) of one HTTP request that ends by its deadline. A failure is CentralApiDown, or
    CentralApiInDoubt when the request may have reached the server (sent, then no answer)."""
    agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(), connectTimeout=deadline.connect)
    all_headers = Headers({b"User-Agent": [b"branch-spooler"], **headers})
    producer = BytesProducer(body) if body is not None else None
    pending: list[Deferred[Any]] = [agent.request(method.encode(), url.encode(), all_headers, producer)]
    timer = reactor.callLater(deadline.total, lambda: pending[0].cancel())
    try:
        response = yield pending[0]
        # Counted as it arrives: the cap holds for a chunked answer (no Content-Length) too.
        pending[0] = read_capped(response, MAX_ANSWER)
        data = yield pending[0]
    except AnswerTooLarge as error:
        raise CentralApiDown(f"{what}: {error}") from None
    except CentralApiError:
        raise
    except NOT_SENT as error:
        raise CentralApiDown(f"{what}: {type(error).__name__}: {error}") from None
    except Exception as error:  # reset, cancelled by the deadline after the request went out, TLS
        raise CentralApiInDoubt(f"{what}: {type(error).__name__}: {error}") from None
    finally:
        if timer.active():
            timer.cancel()
    return response.code, data


def _error_text(answer: Any) -> str:
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return str(answer["error"])[:200]
    return "(no error text)"


@implementer(IBodyProducer)
class BytesProducer:
    """A request body already in memory (the API's bodies are small JSON documents)."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass
