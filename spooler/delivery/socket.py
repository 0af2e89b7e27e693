"""The `socket://host:port` backend: raw AppSocket/JetDirect delivery, as the CUPS socket backend does it.

Connect with a timeout, stream the documents, half-close, then wait for the device to close its
side (it has then taken the whole job). A stalled peer is given up on after `io_timeout` without
progress. Connection failures are retryable; the job waits and nothing is dropped.

With `socket://host:port?pjl=1` the job is wrapped in a PJL job (see `pjl_wrapper`): UEL,
``@PJL JOB NAME="..."``, ``@PJL SET USERNAME="..."``, ``@PJL ENTER LANGUAGE=...`` (only when the
document is not PJL-wrapped itself and its format has a PJL language), the documents, then UEL
``@PJL EOJ NAME="..."`` UEL. Printers show the name and user, and accounting counts the job as one.
"""

from __future__ import annotations

import unicodedata
from typing import IO

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ConnectError, ConnectionDone, DNSLookupError, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IReactorTCP, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure

from spooler.delivery.base import DeliveryFile, DeliveryReceipt, Journal
from spooler.model import DeliveryError, Job
from spooler.pjl import UEL, parse_pjl_header, username_insertion

#: Bytes of back-channel (status) data read from a device before the rest is ignored.
MAX_BACKCHANNEL = 64 * 1024


class DeviceResetAfterSend(DeliveryError):
    """The device reset the connection after the whole job had been sent (retryable)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class _RawSender(Protocol):
    def __init__(self, files: list[DeliveryFile], done: Deferred[DeliveryReceipt], clock: IReactorTime,
                 io_timeout: float, description: str, prefix: bytes = b"", suffix: bytes = b"",
                 skip: int = 0) -> None:  # fmt: skip
        self._files = list(files)
        self._skip = skip  # bytes of the first file already sent, rewritten, in the prefix
        self._prefix = prefix
        self._suffix = suffix
        self._done = done
        self._clock = clock
        self._io_timeout = io_timeout
        self._description = description
        self._current: IO[bytes] | None = None
        self._sent_all = False
        self._progress = 0
        self._last_seen_progress = -1
        self._watchdog: IDelayedCall | None = None
        self.backchannel = 0
        self.tolerate_reset = False

    def connectionMade(self) -> None:
        self._arm_watchdog()
        if self._prefix:
            self.transport.write(self._prefix)  # type: ignore[union-attr]
            self._progress += len(self._prefix)
        self._send_next()

    def _send_next(self, _: object = None) -> None:
        if self._current is not None:
            self._progress += self._current.tell()
            self._current.close()
            self._current = None
        if not self._files:
            if self._suffix:
                self.transport.write(self._suffix)  # type: ignore[union-attr]
                self._progress += len(self._suffix)
            self._sent_all = True
            self.transport.loseWriteConnection()  # type: ignore[attr-defined]
            return
        delivery_file = self._files.pop(0)
        try:
            self._current = open(delivery_file.path, "rb")
            if self._skip:
                self._current.seek(self._skip)
                self._skip = 0
        except OSError as error:
            self._fail(DeliveryError(f"cannot read spool file: {error.strerror}", retryable=False))
            self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        FileSender().beginFileTransfer(self._current, self.transport).addCallbacks(self._send_next, self._send_failed)

    def _send_failed(self, failure: Failure) -> None:
        self._fail(DeliveryError(f"sending to {self._description} failed: {failure.getErrorMessage()}", retryable=True))

    def _arm_watchdog(self) -> None:
        self._watchdog = self._clock.callLater(self._io_timeout, self._check_progress)

    def _position(self) -> int:
        current = self._current.tell() if self._current is not None and not self._current.closed else 0
        return self._progress + current + self.backchannel + (1 if self._sent_all else 0)

    def _check_progress(self) -> None:
        position = self._position()
        if position == self._last_seen_progress:
            self._watchdog = None
            if self._sent_all:
                # Everything was sent; a device that never closes its side has still taken the data.
                self._succeed("sent; the device did not close the connection")
            else:
                self._fail(DeliveryError(f"{self._description} stopped reading for {self._io_timeout:.0f}s",
                                         retryable=True))  # fmt: skip
            self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        self._last_seen_progress = position
        self._arm_watchdog()

    def dataReceived(self, data: bytes) -> None:
        self.backchannel = min(MAX_BACKCHANNEL, self.backchannel + len(data))

    def connectionLost(self, reason: Failure = ConnectionDone()) -> None:  # type: ignore[assignment]
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        if self._current is not None and not self._current.closed:
            self._current.close()
        if self._sent_all and (reason.check(ConnectionDone) or self.tolerate_reset):
            self._succeed(f"sent to {self._description}")
        elif self._sent_all:
            # Everything was handed to the kernel, but the device reset the connection instead of
            # closing it: switched off, or it dropped the job. It cannot be asked, so the job is sent
            # again (a duplicate is possible; a loss is not acceptable). See SocketBackend.
            self._fail(DeviceResetAfterSend(f"{self._description} reset the connection after the whole job was"
                                            " sent: it may not have taken it; sending it again"))  # fmt: skip
        else:
            self._fail(DeliveryError(f"{self._description} closed the connection early: {reason.getErrorMessage()}",
                                     retryable=True))  # fmt: skip

    def _succeed(self, detail: str) -> None:
        if not self._done.called:
            self._done.callback(DeliveryReceipt(detail))

    def _fail(self, error: DeliveryError) -> None:
        if not self._done.called:
            self._done.errback(Failure(error))


#: Document formats with a PJL personality name for ``@PJL ENTER LANGUAGE``.
PJL_LANGUAGES = {
    "application/pdf": "PDF",
    "application/postscript": "POSTSCRIPT",
    "application/vnd.hp-pcl": "PCL",
    "application/vnd.hp-pclxl": "PCLXL",
}
#: Bytes of the first document read to see whether it is already PJL-wrapped.
PJL_SNIFF = 4096
#: HP caps JOB NAME at 80 characters; USERNAME the same here.
PJL_STRING_LIMIT = 80


def pjl_string(value: str) -> str:
    """A value fit for a quoted PJL string: no quotes, no control or formatting characters, capped."""
    kept = "".join(c for c in value if c == " " or (c != '"' and unicodedata.category(c)[0] not in ("C", "Z")))
    return kept.strip()[:PJL_STRING_LIMIT]


def username_line(job: Job) -> bytes:
    """The ``@PJL SET USERNAME`` line that tells the central server's raw queue who printed."""
    user = pjl_string(job.user) or "anonymous"
    if user.isascii():
        return f'@PJL SET USERNAME="{user}"\r\n'.encode("ascii")
    return f'@PJL SET STRINGCODESET=UTF8\r\n@PJL SET USERNAME="{user}"\r\n'.encode()


def pjl_wrapper(job: Job, head: bytes, document_format: str) -> tuple[bytes, bytes]:
    """The PJL bytes to send before and after the job's documents; `head` is the first document's start."""
    name = pjl_string(job.name) or "untitled"
    user = pjl_string(job.user) or "anonymous"
    utf8 = not (name + user).isascii()
    lines = ["@PJL"]
    if utf8:
        lines.append("@PJL SET STRINGCODESET=UTF8")
    lines += [f'@PJL JOB NAME="{name}"', f'@PJL SET USERNAME="{user}"']
    language = PJL_LANGUAGES.get((document_format or "").lower())
    if language is not None and parse_pjl_header(head) is None:
        lines.append(f"@PJL ENTER LANGUAGE={language}")
    encoding = "utf-8" if utf8 else "ascii"
    prefix = UEL + "".join(line + "\r\n" for line in lines).encode(encoding)
    suffix = UEL + f'@PJL EOJ NAME="{name}"\r\n'.encode(encoding) + UEL
    return prefix, suffix


class SocketBackend:
    """Delivers to `socket://host:port[?pjl=1]`."""

    def __init__(self, host: str, port: int, *, reactor: IReactorTCP, clock: IReactorTime,
                 connect_timeout: float, io_timeout: float, pjl: bool = False, username: bool = False) -> None:  # fmt: skip
        """`username`: make sure the job names its user in PJL (the central server's raw queue reads it
        there): a job without a user line gets ``@PJL SET USERNAME``, one without PJL the PJL wrapper."""
        self.host = host
        self.port = port
        self.pjl = pjl
        self.username = username
        self.uri = f"socket://{host}:{port}" + ("?pjl=1" if pjl else "")
        self._reactor = reactor
        self._clock = clock
        self._connect_timeout = connect_timeout
        self._io_timeout = io_timeout
        #: Jobs (by uuid) whose last attempt ended in a reset after the whole job was sent. The next
        #: attempt of such a job takes a reset after the whole job as delivered: a device that always
        #: resets instead of closing must not print a job again and again.
        self._reset_after_send: set[str] = set()

    def probe(self) -> Deferred[None]:
        """A TCP connection within the connect timeout, closed again at once (raw has nothing to ask)."""
        endpoint = HostnameEndpoint(self._reactor, self.host, self.port, timeout=self._connect_timeout)
        description = f"{self.host}:{self.port}"

        def connected(protocol: Protocol) -> None:
            protocol.transport.loseConnection()  # type: ignore[union-attr]

        def failed(failure: Failure) -> None:
            raise DeliveryError(f"cannot connect to {description}: {failure.getErrorMessage()}", retryable=True)

        return endpoint.connect(Factory.forProtocol(Protocol)).addCallbacks(connected, failed)

    def recover(self, job: Job, remote_job_id: str | None) -> Deferred[DeliveryReceipt | None]:
        return succeed(None)  # a raw device cannot be asked what it printed

    def deliver(self, job: Job, files: list[DeliveryFile], journal: Journal | None = None) -> Deferred[DeliveryReceipt]:
        transport_holder: list[object] = []

        def cancel(_: Deferred[DeliveryReceipt]) -> None:
            if transport_holder:
                transport_holder[0].abortConnection()  # type: ignore[attr-defined]
            if connecting is not None:
                connecting.cancel()

        done: Deferred[DeliveryReceipt] = Deferred(cancel)
        connecting: Deferred[Protocol] | None = None
        description = f"{self.host}:{self.port}"
        prefix = suffix = b""
        skip = 0
        if (self.pjl or self.username) and files:
            try:
                with open(files[0].path, "rb") as first:
                    head = first.read(PJL_SNIFF)
            except OSError as error:
                done.errback(Failure(DeliveryError(f"cannot read spool file: {error.strerror}", retryable=False)))
                return done
            inserted = None if self.pjl else username_insertion(head, username_line(job))
            if inserted is None:
                prefix, suffix = pjl_wrapper(job, head, files[0].document.document_format or job.document_format)
            else:
                prefix, skip = inserted
        endpoint = HostnameEndpoint(self._reactor, self.host, self.port, timeout=self._connect_timeout)
        tolerate_reset = job.uuid in self._reset_after_send

        def sender() -> _RawSender:
            protocol = _RawSender(files, done, self._clock, self._io_timeout, description, prefix, suffix, skip)
            protocol.tolerate_reset = tolerate_reset
            return protocol

        def outcome(result: object) -> object:
            if isinstance(result, Failure) and result.check(DeviceResetAfterSend):
                self._reset_after_send.add(job.uuid)
            else:
                self._reset_after_send.discard(job.uuid)
            return result

        done.addBoth(outcome)
        connecting = endpoint.connect(Factory.forProtocol(sender))

        def connected(protocol: Protocol) -> None:
            transport_holder.append(protocol.transport)

        def not_connected(failure: Failure) -> None:
            if failure.check(CancelledError):
                return
            if failure.check(ConnectError, DNSLookupError, TimeoutError):
                message = f"cannot connect to {description}: {failure.getErrorMessage()}"
            else:
                message = f"cannot connect to {description}: {failure.value!r}"
            if not done.called:
                done.errback(Failure(DeliveryError(message, retryable=True)))

        connecting.addCallbacks(connected, not_connected)
        return done
