"""The `lpd://host[:port]/queue` backend: an RFC 1179 client, as the CUPS lpd backend does it.

One connection per job: ``02 queue``, then the control file (subcommand 02), then every data file
(subcommand 03) with its byte count, each followed by a zero byte; every command and every file
waits for the peer's one-byte acknowledgement. The job is delivered when the last one arrives
(the spooler's own LPD server sends it only once the job is durable).

Control file: ``H`` host, ``P`` user, ``J`` job name, ``C`` class (our host name, as BSD lpr does),
``L`` user only with ``?banner=1`` (it asks for a banner page), then per data file its print lines,
``U`` and ``N`` (job name). Print lines are ``l`` (print as is, control characters included: right
for data that is already formatted for the printer). Copies: the print line is repeated
`job.copies` times (RFC 1179 section 7; CUPS' ``manual_copies`` style; the spooler's own LPD server
reads copies this way), so a peer that honours repeats prints the copies and the data is sent once.

File names: ``cfA{nnn}{host}`` / ``dfA{nnn}{host}``, ``dfB..`` for further files (52 at most), nnn
being the job id modulo 1000. The source port is not privileged (RFC 1179 asks for 721-731; we do
not run as root, and most servers no longer check).

Failures: refused or timed-out connections, a peer that stops answering for `io_timeout` or closes
early, and every non-zero acknowledgement are retryable. RFC 1179 gives a refusal no reason (queue
disabled, no space, unknown queue, not allowed all look alike), so an unknown queue is retryable too:
the job waits rather than being dropped for what may be a passing condition.

probe() sends ``03 queue`` (short queue state) and wants an answer within the timeouts. recover()
returns None: LPD cannot tell whether a job arrived whole (a job whose last acknowledgement was lost
may then be printed twice; the window is one round trip).
"""

from __future__ import annotations

import re
import socket
import unicodedata
from typing import IO, Any
from urllib.parse import parse_qs, unquote, urlsplit

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ConnectError, ConnectionDone, DNSLookupError, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.basic import FileSender
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from spooler.delivery.base import DeliveryFile, DeliveryReceipt, Journal
from spooler.model import DeliveryError, Job

__all__ = ["LpdBackend", "control_file"]

DEFAULT_PORT = 515
#: Letters of the data files of one job: dfA..., dfB..., ... dfz...
DATA_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: RFC 1179 section 7 limits, in octets.
LIMITS = {"H": 31, "P": 31, "J": 99, "C": 31, "L": 31, "N": 131}
MAX_COPIES = 100
_HOST_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_QUEUE = re.compile(r"^[\x21-\x7e]{1,255}\Z")


def _clean(text: str, limit: int) -> str:
    """A control-file operand: no control or formatting characters, at most `limit` UTF-8 octets."""
    kept = "".join(c for c in text if unicodedata.category(c)[0] != "C" and c not in "\u2028\u2029").strip()
    encoded = kept.encode("utf-8")[:limit]
    return encoded.decode("utf-8", "ignore")


def local_host_name() -> str:
    """Our host name as it goes into control files and file names: [A-Za-z0-9._-], at most 31 octets."""
    name = _HOST_CHARS.sub("", socket.gethostname().split(".")[0])[:31]
    return name or "localhost"


def control_file(job: Job, data_names: list[str], host: str, *, banner: bool = False) -> bytes:
    """The RFC 1179 control file for `job` whose data files are called `data_names`."""
    user = _clean(job.user, LIMITS["P"]) or "anonymous"
    name = _clean(job.name, LIMITS["J"]) or "untitled"
    lines = [f"H{host}", f"P{user}", f"J{name}", f"C{host}"]
    if banner:
        lines.append(f"L{_clean(job.user, LIMITS['L']) or user}")
    copies = max(1, min(job.copies, MAX_COPIES))
    for data_name in data_names:
        lines += [f"l{data_name}"] * copies
        lines += [f"U{data_name}", f"N{_clean(job.name, LIMITS['N']) or name}"]
    return ("\n".join(lines) + "\n").encode("utf-8")


class _LpdSender(Protocol, TimeoutMixin):
    """Sends one job and waits for every acknowledgement."""

    def __init__(self, backend: LpdBackend, job: Job, files: list[DeliveryFile],
                 done: Deferred[DeliveryReceipt]) -> None:  # fmt: skip
        self._backend = backend
        self._done = done
        self._files = list(files)
        self.callLater = backend.clock.callLater  # TimeoutMixin's clock
        number = job.job_id % 1000
        host = backend.host_name
        self._control_name = f"cfA{number:03d}{host}"
        self._data_names = [f"df{DATA_LETTERS[i]}{number:03d}{host}" for i in range(len(files))]
        self._control = control_file(job, self._data_names, host, banner=backend.banner)
        control_header = b"\x02%d %s\n" % (len(self._control), self._control_name.encode())
        self._steps: list[tuple[str, Any, str]] = [
            ("bytes", b"\x02" + backend.queue.encode() + b"\n", f"the receive-job command for {backend.queue}"),
            ("bytes", control_header, "the control file's header"),
            ("bytes", self._control + b"\x00", "the control file"),
        ]
        for data_name, delivery_file in zip(self._data_names, self._files):
            self._steps.append(("data-header", (data_name, delivery_file), f"the header of data file {data_name}"))
            self._steps.append(("file", delivery_file, f"data file {data_name}"))
        self._what = ""
        self._waiting = False
        self._current: IO[bytes] | None = None
        self._finished = False
        #: The whole job was sent; only the last acknowledgement is missing (a queue that takes the job
        #: then never says so leaves it in doubt: DeliveryError.sent).
        self._last_ack_pending = False

    def connectionMade(self) -> None:
        self.setTimeout(self._backend.io_timeout)
        self._next()

    def _next(self) -> None:
        if not self._steps:
            self._finished = True
            self.setTimeout(None)
            self._succeed()
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        kind, value, self._what = self._steps.pop(0)
        self._waiting = True
        if kind == "bytes":
            self.transport.write(value)  # type: ignore[union-attr]
        elif kind == "data-header":
            data_name, delivery_file = value
            try:
                size = delivery_file.path.stat().st_size
            except OSError as error:
                self._abort(DeliveryError(f"cannot read spool file: {error.strerror}", retryable=False))
                return
            self.transport.write(b"\x03%d %s\n" % (size, data_name.encode()))  # type: ignore[union-attr]
        else:
            self._waiting = False
            try:
                self._current = open(value.path, "rb")
            except OSError as error:
                self._abort(DeliveryError(f"cannot read spool file: {error.strerror}", retryable=False))
                return
            sender = FileSender()
            sender.beginFileTransfer(self._current, self.transport, self._sent_chunk).addCallbacks(
                self._file_sent, self._send_failed)  # fmt: skip

    def _sent_chunk(self, chunk: bytes) -> bytes:
        self.resetTimeout()
        return chunk

    def _file_sent(self, _: object) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
        self._waiting = True
        self._last_ack_pending = not self._steps
        self.transport.write(b"\x00")  # type: ignore[union-attr]

    def _send_failed(self, failure: Failure) -> None:
        self._fail(DeliveryError(f"sending to {self._backend.description} failed: {failure.getErrorMessage()}",
                                 retryable=True))  # fmt: skip

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        for byte in data:
            if not self._waiting:
                self._abort(DeliveryError(f"{self._backend.description} sent unexpected data", retryable=True))
                return
            self._waiting = False
            if byte != 0:
                self._last_ack_pending = False  # a refusal is an answer
                self._abort(DeliveryError(
                    f"{self._backend.description} refused {self._what} (acknowledgement {byte:#04x}): the queue may"
                    " be unknown, disabled or out of space", retryable=True))  # fmt: skip
                return
            self._next()
            if self._done.called:
                return

    def timeoutConnection(self) -> None:
        self._abort(DeliveryError(f"{self._backend.description} did not answer {self._what} within"
                                  f" {self._backend.io_timeout:g}s", retryable=True))  # fmt: skip

    def _abort(self, error: DeliveryError) -> None:
        self._fail(error)
        self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = ConnectionDone()) -> None:  # type: ignore[assignment]
        self.setTimeout(None)
        if self._current is not None and not self._current.closed:
            self._current.close()
        if not self._finished:
            self._fail(DeliveryError(f"{self._backend.description} closed the connection before acknowledging"
                                     f" {self._what}: {reason.getErrorMessage()}", retryable=True))  # fmt: skip

    def _succeed(self) -> None:
        if not self._done.called:
            self._done.callback(DeliveryReceipt(
                f"queued at {self._backend.description} as {self._control_name}"))  # fmt: skip

    def _fail(self, error: DeliveryError) -> None:
        if not self._done.called:
            if self._last_ack_pending:
                error.sent = True
            self._done.errback(Failure(error))


class _QueueStateProbe(Protocol, TimeoutMixin):
    """Asks for the short queue state and is satisfied by any answer that is not a refusal."""

    def __init__(self, backend: LpdBackend, done: Deferred[None], timeout: float) -> None:
        self._backend = backend
        self._done = done
        self._timeout = timeout
        self.callLater = backend.clock.callLater

    def connectionMade(self) -> None:
        self.setTimeout(self._timeout)
        self.transport.write(b"\x03" + self._backend.queue.encode() + b"\n")  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.setTimeout(None)
        if not self._done.called:
            if data[:1] == b"\x01":
                self._done.errback(Failure(DeliveryError(
                    f"{self._backend.description} refused the queue-state request", retryable=True)))  # fmt: skip
            else:
                self._done.callback(None)
        self.transport.loseConnection()  # type: ignore[union-attr]

    def timeoutConnection(self) -> None:
        if not self._done.called:
            self._done.errback(Failure(DeliveryError(
                f"{self._backend.description} did not answer within {self._timeout:g}s", retryable=True)))
        self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = ConnectionDone()) -> None:  # type: ignore[assignment]
        self.setTimeout(None)
        if not self._done.called:
            self._done.errback(Failure(DeliveryError(
                f"{self._backend.description} closed the connection without answering", retryable=True)))


class LpdBackend:
    """Delivers to `lpd://host[:port]/queue[?banner=1]` (default port 515)."""

    def __init__(self, uri: str, *, reactor: Any, clock: IReactorTime, connect_timeout: float, io_timeout: float,
                 probe_timeout: float = 5.0, host_name: str | None = None) -> None:  # fmt: skip
        parts = urlsplit(uri)
        queue = unquote(parts.path.lstrip("/"))
        if parts.scheme != "lpd" or not parts.hostname or not _QUEUE.match(queue):
            raise ValueError(f"not an lpd://host[:port]/queue URI: {uri!r}")
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        self.uri = uri
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORT
        self.queue = queue
        self.banner = options.get("banner", "0").lower() in ("1", "yes", "true", "on")
        self.host_name = _HOST_CHARS.sub("", host_name)[:31] if host_name else local_host_name()
        self.description = f"lpd://{self.host}:{self.port}/{queue}"
        self.reactor = reactor
        self.clock = clock
        self.connect_timeout = connect_timeout
        self.io_timeout = io_timeout
        self.probe_timeout = probe_timeout

    def _endpoint(self) -> HostnameEndpoint:
        return HostnameEndpoint(self.reactor, self.host, self.port, timeout=self.connect_timeout)

    def _connect_failed(self, failure: Failure, done: Deferred[Any]) -> None:
        if failure.check(CancelledError) or done.called:
            return
        if failure.check(ConnectError, DNSLookupError, TimeoutError):
            message = f"cannot connect to {self.host}:{self.port}: {failure.getErrorMessage()}"
        else:
            message = f"cannot connect to {self.host}:{self.port}: {failure.value!r}"
        done.errback(Failure(DeliveryError(message, retryable=True)))

    def deliver(self, job: Job, files: list[DeliveryFile], journal: Journal | None = None) -> Deferred[DeliveryReceipt]:
        if not files:
            return Deferred.fromCoroutine(_raise(DeliveryError("the job has no documents", retryable=False)))
        if len(files) > len(DATA_LETTERS):
            return Deferred.fromCoroutine(_raise(DeliveryError(
                f"LPD carries at most {len(DATA_LETTERS)} documents per job", retryable=False)))  # fmt: skip
        transports: list[Any] = []

        def cancel(_: Deferred[DeliveryReceipt]) -> None:
            if transports:
                transports[0].abortConnection()
            connecting.cancel()

        done: Deferred[DeliveryReceipt] = Deferred(cancel)
        factory = Factory.forProtocol(lambda: _LpdSender(self, job, files, done))
        connecting = self._endpoint().connect(factory)
        connecting.addCallbacks(lambda protocol: transports.append(protocol.transport),
                                self._connect_failed, errbackArgs=(done,))  # fmt: skip
        return done

    def probe(self) -> Deferred[None]:
        done: Deferred[None] = Deferred(lambda _: connecting.cancel())
        factory = Factory.forProtocol(lambda: _QueueStateProbe(self, done, self.probe_timeout))
        connecting = self._endpoint().connect(factory)
        connecting.addErrback(self._connect_failed, done)
        return done

    def recover(self, job: Job, remote_job_id: str | None) -> Deferred[DeliveryReceipt | None]:
        return succeed(None)  # LPD cannot be asked whether a job arrived whole


async def _raise(error: Exception) -> Any:
    raise error
