"""The `socket://host:port` backend: raw AppSocket/JetDirect delivery, as the CUPS socket backend does it.

Connect with a timeout, stream the documents, half-close, then wait for the device to close its
side (it has then taken the whole job). A stalled peer is given up on after `io_timeout` without
progress. Connection failures are retryable; the job waits and nothing is dropped.

With `socket://host:port?pjl=1` the job is wrapped in a PJL job (see `pjl_wrapper`): UEL,
``@PJL JOB NAME="..."``, ``@PJL SET USERNAME="..."``, then each document in a section of its own
(after a UEL, with ``@PJL ENTER LANGUAGE=...`` when the document is not PJL-wrapped itself and its
format has a PJL language), then UEL ``@PJL EOJ NAME="..."`` UEL. Printers show the name and user,
switch language for each document, and accounting counts the job as one.

For the central server's raw queue (`username`), a job of one PJL-framed document that names no user
gets ``@PJL SET USERNAME`` where its own PJL starts; any other job the PJL wrapper, as with pjl=1.

Without PJL, a job of several documents goes as one connection per document, in order: a raw
stream has no way to tell the device where one document (and its language) ends. Each connection
the device closed cleanly is journaled ("sent:N"), so that after a restart only the documents it has
not taken are sent again.
"""

from __future__ import annotations

import socket
import struct
import unicodedata
from collections.abc import Sequence
from typing import IO

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ConnectError, ConnectionDone, DNSLookupError, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol, IReactorTCP, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from zope.interface import implementer

from spooler.delivery.base import DeliveryFile, DeliveryReceipt, Journal, PartialDelivery
from spooler.model import DeliveryError, Job
from drivers.pjl import UEL, parse_pjl_header, username_insertion

#: Bytes of back-channel (status) data read from a device before the rest is ignored.
MAX_BACKCHANNEL = 64 * 1024


class DeviceResetAfterSend(DeliveryError):
    """The device reset the connection after the whole job had been sent (retryable)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class _RawSender(Protocol):
    """Writes `parts` in order (bytes as they are, files streamed; the first file from byte `skip`,
    its start having gone, rewritten, in the bytes before it), half-closes, and waits for the device
    to close its side."""

    def __init__(self, parts: Sequence[bytes | DeliveryFile], done: Deferred[DeliveryReceipt], clock: IReactorTime,
                 io_timeout: float, description: str, skip: int = 0) -> None:  # fmt: skip
        self._parts = list(parts)
        self._skip = skip
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
        #: Whether a peer that read the whole job but never closes its side has it (a printer that
        #: keeps the connection open has printed it) or not (a print server's queue closes after the
        #: end of a job: one that never does has hung, and may have swallowed the job).
        self.trust_open_end = True

    def connectionMade(self) -> None:
        self._arm_watchdog()
        self._send_next()

    def _send_next(self, _: object = None) -> None:
        if self._current is not None:
            self._progress += self._current.tell()
            self._current.close()
            self._current = None
        while self._parts and isinstance(self._parts[0], bytes):
            data = self._parts.pop(0)
            assert isinstance(data, bytes)
            self.transport.write(data)  # type: ignore[union-attr]
            self._progress += len(data)
        if not self._parts:
            self._sent_all = True
            self.transport.loseWriteConnection()  # type: ignore[attr-defined]
            return
        delivery_file = self._parts.pop(0)
        assert isinstance(delivery_file, DeliveryFile)
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
            if self._sent_all and self.trust_open_end:
                # Everything was sent; a device that never closes its side has still taken the data.
                self._succeed("sent; the device did not close the connection")
            elif self._sent_all:
                self._fail(DeliveryError(f"{self._description} took the whole job but never closed the"
                                         f" connection within {self._io_timeout:.0f}s: it may have hung",
                                         retryable=True, sent=True))  # fmt: skip
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

    def _fail(self, error: DeliveryError, sent: bool | None = None) -> None:
        if not self._done.called:
            error.sent = self._position() > 0 if sent is None else sent  # a raw peer prints what it read
            self._done.errback(Failure(error))


#: Linux TCP states (include/net/tcp_states.h) in which the peer's FIN came before it acknowledged ours.
_TCP_CLOSE_WAIT, _TCP_LAST_ACK, _TCP_CLOSING = 8, 9, 11


def peer_acknowledged_our_end(handle: socket.socket) -> bool | None:
    """Whether, now that the peer's FIN is in, it had acknowledged everything we sent, our FIN
    included, with no reset pending; None where the kernel cannot say (no TCP_INFO)."""
    try:
        info = handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        error = handle.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except (AttributeError, OSError):
        return None
    state = info[0]  # struct tcp_info: 8 bytes of u8 fields, then u32 rto, ato, snd_mss, rcv_mss, unacked
    (unacked,) = struct.unpack_from("I", info, 24)
    return error == 0 and unacked == 0 and state not in (_TCP_CLOSE_WAIT, _TCP_LAST_ACK, _TCP_CLOSING)


@implementer(IHalfCloseableProtocol)
class _ServerQueueSender(_RawSender):
    """`_RawSender` for the central server's raw queue, which reads a job to its end and then closes.
    A queue that closes before it has seen the end of the job has not taken it (a print server in
    trouble, or a proxy in front of one with no backend, accepts and closes at once): found by
    bench/chaos.py --server-queue raw, where the reference server's error mode lost ~10 jobs in 2
    minutes that were counted forwarded. A reset is never a delivery here either.

    The job is held back `settle` seconds after the connection is made: a queue that accepts and
    closes at once has then closed before it could take anything. (Once the queue's kernel has the
    whole job, a queue that drops it unread looks exactly like one that read it: raw has no answer.)"""

    settle = 0.0
    _settling: IDelayedCall | None = None

    def connectionMade(self) -> None:
        if self.settle <= 0:
            super().connectionMade()
            return
        self._arm_watchdog()
        self._settling = self._clock.callLater(self.settle, self._settled)

    def _settled(self) -> None:
        self._settling = None
        self._send_next()

    def connectionLost(self, reason: Failure = ConnectionDone()) -> None:  # type: ignore[assignment]
        if self._settling is not None and self._settling.active():
            self._settling.cancel()
        super().connectionLost(reason)

    def readConnectionLost(self) -> None:
        if self._settling is not None and self._settling.active():
            self._settling.cancel()
            self._fail(DeliveryError(f"{self._description} closed the connection at once: it is not taking jobs",
                                     retryable=True), sent=False)  # fmt: skip
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        handle = self.transport.getHandle()  # type: ignore[union-attr]
        whole = self._sent_all and peer_acknowledged_our_end(handle) is not False
        if whole:
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self._fail(DeliveryError(f"{self._description} closed the connection before it had the end of the job:"
                                 " it has not taken it", retryable=True), sent=False)  # fmt: skip
        self.transport.abortConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        """Our end is sent; the queue closes its side once it has read the job."""


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


def pjl_wrapper(job: Job, documents: Sequence[tuple[bytes, str]]) -> tuple[bytes, list[bytes], bytes]:
    """The PJL around a job's documents: (the job's header, what goes before each document, the
    job's end). `documents`: each document's first bytes and its format. Every document after the
    first starts a new section (UEL); each gets ``ENTER LANGUAGE`` when it is not PJL-wrapped itself
    and its format has a PJL language."""
    name = pjl_string(job.name) or "untitled"
    user = pjl_string(job.user) or "anonymous"
    utf8 = not (name + user).isascii()
    encoding = "utf-8" if utf8 else "ascii"
    lines = ["@PJL"] + (["@PJL SET STRINGCODESET=UTF8"] if utf8 else [])
    lines += [f'@PJL JOB NAME="{name}"', f'@PJL SET USERNAME="{user}"']
    header = UEL + "".join(line + "\r\n" for line in lines).encode(encoding)
    before = []
    for number, (head, document_format) in enumerate(documents):
        language = PJL_LANGUAGES.get((document_format or "").lower())
        wrapped = parse_pjl_header(head) is not None
        section = b"" if number == 0 or wrapped else UEL + b"@PJL\r\n"  # a wrapped document brings its own UEL
        if language is not None and not wrapped:
            section += f"@PJL ENTER LANGUAGE={language}\r\n".encode("ascii")
        before.append(section)
    end = UEL + f'@PJL EOJ NAME="{name}"\r\n'.encode(encoding) + UEL
    return header, before, end


#: remote_job_id journaled by a job sent as one connection per document: "sent:N" (N documents taken).
SENT_PREFIX = "sent:"

#: Seconds a job for the central server's raw queue is held back after the connection is made, for a
#: queue that accepts and closes at once to show it (see `_ServerQueueSender`).
SERVER_QUEUE_SETTLE = 0.1


class SocketBackend:
    """Delivers to `socket://host:port[?pjl=1]`."""

    def __init__(self, host: str, port: int, *, reactor: IReactorTCP, clock: IReactorTime,
                 connect_timeout: float, io_timeout: float, pjl: bool = False, username: bool = False,
                 settle: float = SERVER_QUEUE_SETTLE) -> None:  # fmt: skip
        """`username`: the peer is the central server's raw queue: make sure the job names its user in
        PJL (the queue reads it there: a job without a user line gets ``@PJL SET USERNAME``, one
        without PJL the PJL wrapper), take a peer that never closes the connection after the whole
        job for a hung server, not for a printer that printed it (the job is in doubt and goes again:
        possibly twice, never lost), and a peer that closes before it has the end of the job, or
        within `settle` seconds of connecting, or resets, for one that did not take it."""
        self.host = host
        self.port = port
        self.pjl = pjl
        self.username = username
        self.uri = f"socket://{host}:{port}" + ("?pjl=1" if pjl else "")
        self._reactor = reactor
        self._clock = clock
        self._connect_timeout = connect_timeout
        self._io_timeout = io_timeout
        self._settle = settle
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

    def recover(self, job: Job, remote_job_id: str | None) -> Deferred[DeliveryReceipt | PartialDelivery | None]:
        """A raw device cannot be asked what it printed; but where a job went one connection per
        document, the journal says how many connections the device closed cleanly."""
        if remote_job_id and remote_job_id.startswith(SENT_PREFIX) and remote_job_id[len(SENT_PREFIX):].isdigit():
            return succeed(PartialDelivery(int(remote_job_id[len(SENT_PREFIX):]), remote_job_id))
        return succeed(None)

    def deliver(self, job: Job, files: list[DeliveryFile], journal: Journal | None = None,
                resume: PartialDelivery | None = None) -> Deferred[DeliveryReceipt]:  # fmt: skip
        if len(files) > 1 and not (self.pjl or self.username):
            return Deferred.fromCoroutine(self._deliver_each(job, files, journal, resume))
        if not (self.pjl or self.username) or not files:
            return self._send(job, list(files))
        try:
            documents = []
            for delivery_file in files:
                with open(delivery_file.path, "rb") as handle:
                    documents.append((handle.read(PJL_SNIFF),
                                      delivery_file.document.document_format or job.document_format))
        except OSError as error:
            return fail(DeliveryError(f"cannot read spool file: {error.strerror}", retryable=False))
        if not self.pjl and len(files) == 1:
            # The central server's raw queue: a PJL job without a user gets one, in its own PJL.
            inserted = username_insertion(documents[0][0], username_line(job))
            if inserted is not None:
                prefix, skip = inserted
                return self._send(job, [prefix, files[0]], skip)
        header, before, end = pjl_wrapper(job, documents)
        parts: list[bytes | DeliveryFile] = [header]
        for section, delivery_file in zip(before, files):
            parts += [section, delivery_file]
        parts.append(end)
        return self._send(job, parts)

    async def _deliver_each(self, job: Job, files: list[DeliveryFile], journal: Journal | None,
                            resume: PartialDelivery | None) -> DeliveryReceipt:  # fmt: skip
        """One connection per document, in order; each one the device took is journaled."""
        done = min(resume.documents_done, len(files)) if resume is not None else 0
        if done == len(files):
            return DeliveryReceipt(f"{self.host}:{self.port} had taken all {len(files)} documents already",
                                   already_delivered=True)  # fmt: skip
        for number in range(done, len(files)):
            await self._send(job, [files[number]])
            if journal is not None:
                journal(f"{SENT_PREFIX}{number + 1}")
        return DeliveryReceipt(f"sent to {self.host}:{self.port}, one connection per document ({len(files)})")

    def _send(self, job: Job, parts: list[bytes | DeliveryFile], skip: int = 0) -> Deferred[DeliveryReceipt]:
        """One connection: `parts` in order (the first file from byte `skip`), then wait for the device
        to close."""
        transport_holder: list[object] = []
        canceled: list[bool] = []

        def cancel(_: Deferred[DeliveryReceipt]) -> None:
            canceled.append(True)
            if transport_holder:
                transport_holder[0].abortConnection()  # type: ignore[attr-defined]
            if connecting is not None:
                connecting.cancel()

        done: Deferred[DeliveryReceipt] = Deferred(cancel)
        connecting: Deferred[Protocol] | None = None
        description = f"{self.host}:{self.port}"
        endpoint = HostnameEndpoint(self._reactor, self.host, self.port, timeout=self._connect_timeout)
        tolerate_reset = job.uuid in self._reset_after_send and not self.username

        def sender() -> _RawSender:
            kind = _ServerQueueSender if self.username else _RawSender
            protocol = kind(parts, done, self._clock, self._io_timeout, description, skip)
            protocol.tolerate_reset = tolerate_reset
            if isinstance(protocol, _ServerQueueSender):
                protocol.settle = self._settle
            protocol.trust_open_end = not self.username  # a print server's raw queue closes after a job
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
            if canceled or failure.check(CancelledError):
                # The attempt was canceled while connecting (whether the name lookup or the connect
                # was under way): it ends as canceled, not as a failure of the device.
                return
            if failure.check(ConnectError, DNSLookupError, TimeoutError):
                message = f"cannot connect to {description}: {failure.getErrorMessage()}"
            else:
                message = f"cannot connect to {description}: {failure.value!r}"
            if not done.called:
                done.errback(Failure(DeliveryError(message, retryable=True)))

        connecting.addCallbacks(connected, not_connected)
        return done
