"""The IPP printer over HTTP (twisted.web): `/ipp/print`, with the request body streamed, never buffered.

Paths: `/ipp/print` is the default queue; `/ipp/print/NAME` and `/printers/NAME` the configured
queue NAME; a job URI is the printer URI plus `/JOB-ID`.

twisted.web normally collects a request body in `Request.content` (a temporary file) and renders
only once it is complete. Here `IppRequest.handleContentChunk` receives the body as it arrives
(chunked or with a Content-Length; Twisted answers `Expect: 100-continue` itself): the IPP header is
gathered until its end-of-attributes tag, decoded and checked, and for Print-Job and Send-Document the
document bytes that follow are decompressed (compression=gzip|deflate) and written straight into an
`IncomingFile`, whose back-pressure pauses the socket. Memory per request stays at the IPP header
plus the IncomingFile's bounded buffer, whatever the document's size. A request refused at header
time (bad request, unsupported format, unknown job, spool full, too large) has the rest of its body
read and dropped, and is answered when the body ends. The response to a job-creating request is
written only after the JobService made the job durable.

Authentication (`[ipp] authentication = "basic"`, spooler.ipp.server.auth): the Authorization header is
checked as soon as the headers are in, before any of the body is accepted; while scrypt runs in a
thread the socket is paused and the little already read is held. A request with wrong credentials
gets HTTP 401 with a Basic challenge (its body is dropped). A request without any may only read
(ANONYMOUS_OPERATIONS, as CUPS's default policy: clients ask for the printer's attributes before
they know they need a password); any other operation gets the 401 as soon as its IPP header is
read, and its document is never spooled. The authenticated user
replaces the request's requesting-user-name, so it owns the job and is the requester of every
operation. On plain http with Basic configured and `allow_basic_without_tls` false, every request
is refused (403): the credentials would cross the network in clear. The same site class serves
ipps, wrapped in TLS by `TlsIppFactory`.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IAddress
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.server import NOT_DONE_YET, Request

from spooler.config import Config
from spooler.ipp.server.attributes import PrinterAttributes, PrinterIdentity
from spooler.ipp.server.auth import AuthRefused, BasicAuthenticator
from spooler.ipp.codec import Attribute, IppParseError, decode_message, encode_message, find_data_offset
from spooler.ipp.server.device import AskDevice, DeviceDescriber
from spooler.ipp.server.operations import (
    DOCUMENT_OPERATIONS,
    Decompressor,
    DocumentPlan,
    IppError,
    PrinterOperations,
    RequestContext,
    bad_request,
)
from spooler.ipp.tags import Operation, Status, Tag
from spooler.jobs.service import JobService
from spooler.model import Job, JobNotFound, JobTooLarge
from spooler.store.spoolfiles import IncomingFile
from spooler.web import HttpLimits, LimitedChannel, LimitedSite

log = Logger(namespace="spooler.ipp")

PRINTER_PATH = b"/ipp/print"
#: The other IPP listener of the same printer and its port (None until it listens), or None if there is none.
Sibling = Callable[[], "tuple[IppSite, int | None] | None"]
#: What a client may do without credentials where Basic authentication is configured.
ANONYMOUS_OPERATIONS = frozenset({Operation.GET_PRINTER_ATTRIBUTES, Operation.GET_JOBS, Operation.GET_JOB_ATTRIBUTES,
                                  Operation.VALIDATE_JOB})  # fmt: skip
#: The IPP header (everything before the document data) may not be larger than this.
MAX_HEADER_SIZE = 1024 * 1024


class IppIntake:
    """One HTTP request body, parsed as it streams in: IPP header first, then the document."""

    def __init__(self, site: IppSite, request: IppRequest, declared_length: int | None) -> None:
        self.site = site
        self.request = request
        # The printer the request addressed; render_POST sets it from the path once the body is in.
        self.context = RequestContext(printer_uri=site.printer_uri(request, PRINTER_PATH.decode()),
                                      peer_host=request.peer_host(), queue=site.default_queue,
                                      user=request.auth_user)  # fmt: skip
        self.state = "header"  # header -> data | discard
        self.buffer = bytearray()
        self.message: Any = None
        self.parse_error: str | None = None
        self.failure: Failure | None = None
        self.plan: DocumentPlan | None = None
        self.document: IncomingFile | None = None
        self.decompressor: Decompressor | None = None
        self.received = 0
        self.complete = False
        self.answered = False
        if declared_length is not None and declared_length > site.max_request_size:
            self._refuse(IppError(Status.CLIENT_ERROR_REQUEST_ENTITY_TOO_LARGE,
                                  f"the request is larger than {site.max_request_size} bytes"))  # fmt: skip

    # -- the body, as it arrives -------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        if self.state == "discard":
            return
        if self.received > self.site.max_request_size and self.failure is None:
            self._refuse(IppError(Status.CLIENT_ERROR_REQUEST_ENTITY_TOO_LARGE,
                                  f"the request is larger than {self.site.max_request_size} bytes"))  # fmt: skip
            return
        if self.state == "data":
            self._write(data)
            return
        self.buffer += data
        offset = find_data_offset(self.buffer) if len(self.buffer) >= 8 else None
        if offset is None:
            if len(self.buffer) > MAX_HEADER_SIZE:
                self._refuse(IppError(Status.CLIENT_ERROR_REQUEST_ENTITY_TOO_LARGE, "the IPP header is too large"))
                self.state = "discard"
            return
        header, rest = bytes(self.buffer[:offset]), bytes(self.buffer[offset:])
        self.buffer = bytearray()
        self._header(header)
        if self.state == "data" and rest:
            self._write(rest)

    def _header(self, header: bytes) -> None:
        try:
            self.message, _ = decode_message(header)
        except IppParseError as error:
            self.parse_error = str(error)
            self.state = "discard"
            return
        try:
            self.site.address(self.request, self.message, self.context)
        except IppError as error:
            self.context.refusal = error  # a queue that does not exist: refused after the request checks
        if self.context.user is not None:
            self._set_requester(self.context.user)
        elif self.request.anonymous and self.message.code not in ANONYMOUS_OPERATIONS:
            self.request.auth_refusal = AuthRefused(401, "authentication required")
            self.state = "discard"
            return
        if self.message.code not in DOCUMENT_OPERATIONS or self.failure is not None:
            self.state = "discard"  # anything after the attributes is ignored
            return
        try:
            self.plan = self.site.operations.plan_document(self.message, self.context)
            self.document = self.site.jobs.open_incoming(on_pressure=self.request.pressure)
        except Exception:
            self.failure = Failure()
            self.state = "discard"
            return
        self.decompressor = Decompressor(self.plan.compression, self.document.write,
                                         max_ratio=self.site.max_compression_ratio)  # fmt: skip
        self.state = "data"

    def _set_requester(self, user: str) -> None:
        """The authenticated user is the requester, whatever requesting-user-name the client sent."""
        if not self.message.groups or self.message.groups[0].tag != Tag.OPERATION:
            return  # check_request refuses it
        attributes = self.message.groups[0].attributes
        requester = Attribute.name("requesting-user-name", user)
        for index, attribute in enumerate(attributes):
            if attribute.name == "requesting-user-name":
                attributes[index] = requester
                return
        attributes.append(requester)

    def _write(self, data: bytes) -> None:
        assert self.decompressor is not None
        try:
            self.decompressor.write(data)
        except Exception:
            self._refuse(Failure())

    def _refuse(self, error: Exception | Failure) -> None:
        """Answer with this error once the body ends; the rest of the body is dropped (but the IPP
        header is still read, if it is not complete yet, so the answer has the right request-id)."""
        if self.failure is None:
            self.failure = error if isinstance(error, Failure) else Failure(error)
        if self.state != "header":
            self.state = "discard"
        self._drop_document()

    def _drop_document(self) -> None:
        if self.document is not None:
            document, self.document = self.document, None
            document.discard()

    # -- the end of the body -------------------------------------------------------------------------

    def finish(self) -> Deferred[bytes]:
        """The whole body arrived: run the operation; fires with the encoded IPP response."""
        self.complete = True
        if self.parse_error is not None or (self.message is None and self.failure is None):
            request_id = int.from_bytes(bytes(self.buffer[4:8]), "big", signed=True) if len(self.buffer) >= 8 else 0
            why = self.parse_error or "the body is not a complete IPP request"
            log.info("Bad IPP request from {host}: {why}", spool_event="ipp_bad_request", host=self.context.peer_host,
                     why=why)  # fmt: skip
            return succeed(encode_message(bad_request(max(request_id, 0), why)))
        if self.message is None:
            assert self.failure is not None
            return succeed(encode_message(bad_request(0, self.failure.getErrorMessage())))
        if self.failure is None and self.decompressor is not None:
            try:
                self.decompressor.close()
            except Exception:
                self._refuse(Failure())
        if self.failure is not None:
            self._drop_document()
            if not self.failure.check(IppError, JobTooLarge):
                log.warn("IPP request from {host} refused: {why}", spool_event="ipp_refused",
                         host=self.context.peer_host, why=self.failure.getErrorMessage())  # fmt: skip
            return succeed(encode_message(self.site.operations.error_response(self.message, self.failure)))
        document, self.document = self.document, None
        answer = self.site.operations.respond(self.message, self.context, document=document, plan=self.plan)
        return answer.addCallback(encode_message)

    def abort(self) -> None:
        """The connection went away before the body ended: nothing was acknowledged."""
        if not self.complete:
            self.state = "discard"
            self._drop_document()


class IppRequest(Request):
    """A twisted.web request whose body goes to an IppIntake instead of `content`."""

    intake: IppIntake | None = None
    #: Fires once the credentials are checked (None: no authentication on this listener).
    auth_done: Deferred[None] | None = None
    auth_user: str | None = None
    auth_refusal: AuthRefused | None = None
    anonymous = False  # Basic is configured and the request has no credentials: read-only operations
    _held: list[bytes] | None = None

    def gotLength(self, length: int | None) -> None:
        self.content = io.BytesIO()  # type: ignore[assignment]  # stays empty: the body is streamed
        # The request line's path (Request.path is only set once the whole body is in).
        self.target_path: bytes = getattr(self.channel, "_path", None) or b"/"
        self._body_over = False
        self._paused_by_us = False
        self._length = length
        site: IppSite = self.channel.site  # type: ignore[union-attr,attr-defined]
        if site.refuse_plain:
            self.auth_done = succeed(None)
            self.auth_refusal = AuthRefused(403, "this printer requires authentication, which is only done over ipps")
            return  # the body is dropped
        headers = self.requestHeaders.getRawHeaders(b"authorization")
        header = headers[0] if headers else None
        if site.authenticator is None or header is None:
            self.anonymous = site.authenticator is not None
            self._open_intake()
            return
        self.auth_done = Deferred()
        self._held = []
        checking = site.authenticator.check(header, self.peer_host())
        checking.addCallbacks(self._authenticated, self._refused)
        if not self.auth_done.called:
            self.pressure(True)  # scrypt runs: read no more of the body meanwhile

    def _open_intake(self) -> None:
        content_type = (self.requestHeaders.getRawHeaders(b"content-type") or [b""])[0]
        if content_type.split(b";")[0].strip().lower() == b"application/ipp":
            self.intake = IppIntake(self.channel.site, self, self._length)  # type: ignore[union-attr,attr-defined]

    def _authenticated(self, user: str) -> None:
        self.auth_user = user
        held, self._held = self._held or [], None
        self.pressure(False)
        if not getattr(self, "_disconnected", False):
            self._open_intake()
            for data in held:
                self.handleContentChunk(data)
        assert self.auth_done is not None
        self.auth_done.callback(None)

    def _refused(self, failure: Failure) -> None:
        if failure.check(AuthRefused):
            self.auth_refusal = failure.value
        else:
            log.failure("IPP authentication failed", failure, spool_event="ipp_auth_error")
            self.auth_refusal = AuthRefused(500, "the credentials could not be checked")
        self._held = None
        self.pressure(False)
        assert self.auth_done is not None
        self.auth_done.callback(None)

    def handleContentChunk(self, data: bytes) -> None:
        if self.intake is not None:
            self.intake.feed(data)
        elif self._held is not None:
            self._held.append(data)  # a paused socket: at most what one read brought

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._body_over = True
        super().requestReceived(command, path, version)

    def pressure(self, paused: bool) -> None:
        """Back-pressure from the spool file: stop or restart reading the socket (while the body lasts;
        once it is over the HTTP channel owns the transport's reading state)."""
        transport = getattr(self.channel, "transport", None)
        if transport is None:
            return
        if paused and not self._body_over:
            self._paused_by_us = True
            transport.pauseProducing()
        elif not paused and self._paused_by_us:
            self._paused_by_us = False
            if not self._body_over:
                transport.resumeProducing()

    def peer_host(self) -> str:
        return str(getattr(self.getClientAddress(), "host", "") or "")

    def connectionLost(self, reason: Failure) -> None:
        if self.intake is not None:
            self.intake.abort()
        super().connectionLost(reason)


class PrinterResource(Resource):
    """POST application/ipp is an IPP request; GET of a printer's path shows a one-line page."""

    isLeaf = True

    def __init__(self, site_holder: IppSite) -> None:
        super().__init__()
        self._site = site_holder

    def render(self, request: IppRequest) -> Any:  # type: ignore[override]
        """Render once the credentials are checked; a refused request gets its HTTP error."""
        done = request.auth_done
        if request.auth_refusal is not None and (done is None or done.called):
            if request.intake is not None:
                request.intake.abort()
            return self._refuse(request)
        if done is None or done.called:
            return super().render(request)

        def checked(_: object) -> None:
            if request.channel is None or getattr(request, "_disconnected", False):
                if request.intake is not None:
                    request.intake.abort()
                return
            body = self._refuse(request) if request.auth_refusal is not None else super(PrinterResource, self).render(
                request)
            if body is not NOT_DONE_YET:
                request.write(body)
                request.finish()

        done.addCallback(checked)
        done.addErrback(self._failed, request)
        return NOT_DONE_YET

    def _refuse(self, request: IppRequest) -> bytes:
        refusal = request.auth_refusal
        assert refusal is not None
        request.setResponseCode(refusal.code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        if refusal.code == 401 and self._site.authenticator is not None:
            request.setHeader(b"www-authenticate", self._site.authenticator.challenge())
        if refusal.code == 429:
            request.setHeader(b"retry-after", b"60")
        if refusal.code != 401 or request.getHeader(b"authorization"):
            log.warn("IPP request from {host} refused: {why}", spool_event="ipp_auth_refused",
                     host=request.peer_host(), code=refusal.code, why=refusal.reason)  # fmt: skip
        return f"{refusal.reason}\n".encode()

    def render_POST(self, request: IppRequest) -> Any:  # type: ignore[override]
        """An IPP request, wherever it is posted (`/`, `/admin/` as CUPS' admin tools do, a printer's
        path): its printer-uri names the printer (IppSite.address)."""
        if request.intake is None:
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"text/plain")
            return b"expected Content-Type: application/ipp\n"
        answer = request.intake.finish()
        self._site.track(answer)
        answer.addCallback(self._write, request)
        answer.addErrback(self._failed, request)
        return NOT_DONE_YET

    @staticmethod
    def _write(body: bytes, request: IppRequest) -> None:
        if request.channel is None or getattr(request, "_disconnected", False):
            return
        request.setHeader(b"content-type", b"application/ipp")
        request.setHeader(b"content-length", str(len(body)).encode())
        request.write(body)
        request.finish()

    @staticmethod
    def _failed(failure: Failure, request: IppRequest) -> None:
        log.failure("IPP response could not be written", failure, spool_event="ipp_error")
        if request.channel is not None and not getattr(request, "_disconnected", False):
            request.channel.transport.abortConnection()  # type: ignore[union-attr]

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        printer = self._site.printer_path(request.path)
        queue = self._site.queue_named(printer[0]) if printer is not None else None
        if queue is None:
            request.setResponseCode(404)
            return b"not found\n"
        return f"{self._site.printer_name(queue)}: IPP printer for queue {queue}\n".encode()


class IppChannel(LimitedChannel):
    """An HTTP connection of the IPP site (spooler.web.LimitedChannel: counted, ranked for eviction, held
    to the header deadline), so that a stop can cut the uploads still in progress."""

    site: IppSite

    def receiving(self) -> bool:
        """Whether a request body is still arriving (its job was never acknowledged)."""
        return any(isinstance(r, IppRequest) and r.intake is not None and not r.intake.complete
                   for r in self.requests)  # fmt: skip


class IppSite(LimitedSite):
    """The IPP front-end's factory: `connections` and `close_all()` as every intake factory has, and the
    HTTP limits of spooler.web (connections, per address, the deadline of the request head; the body is
    the document, streamed by IppRequest and capped by max_request_size)."""

    protocol = IppChannel  # type: ignore[assignment]
    requestFactory = IppRequest  # type: ignore[assignment]
    deadline_covers_body = False

    def __init__(self, jobs: JobService, operations: PrinterOperations, *, max_request_size: int,
                 idle_timeout: float, max_connections: int, reactor: Any = None, secure: bool = False,
                 authenticator: BasicAuthenticator | None = None, refuse_plain: bool = False,
                 queues: Sequence[str] = ("default",), sibling: Sibling | None = None,
                 describer: DeviceDescriber | None = None, max_per_address: int | None = None,
                 header_timeout: float | None = None, max_compression_ratio: float = 0) -> None:  # fmt: skip
        """`queues`: the configured queue names (the default queue is "default" if there is one, else
        the first). `sibling`: the other IPP listener of the same printer (ipp for ipps and back).
        `describer`: keeps the printer describing the real device, stopped with the site."""
        if reactor is None:
            from twisted.internet import reactor as default_reactor  # only where no reactor is passed in (tests)

            reactor = default_reactor
        limits = HttpLimits(max_connections=max_connections, max_per_address=max_per_address,
                            header_timeout=header_timeout, idle_timeout=idle_timeout)  # fmt: skip
        super().__init__(PrinterResource(self), reactor=reactor, name="IPPS" if secure else "IPP", limits=limits)
        self.secure = secure  # served over TLS (ipps)
        self.authenticator = authenticator  # Basic authentication on this listener
        self.refuse_plain = refuse_plain  # Basic is configured but not allowed here: refuse everything
        self.sibling = sibling
        self.jobs = jobs
        self.operations = operations
        self.max_request_size = max_request_size
        self.max_connections = max_connections
        self.answers: set[Deferred[Any]] = set()
        self.queues = tuple(queues)
        self.describer = describer
        self.default_queue = "default" if "default" in self.queues else self.queues[0]
        #: A gzip/deflate document may expand this many times its compressed size (0: no limit).
        self.max_compression_ratio = max_compression_ratio

    @staticmethod
    def printer_path(path: bytes | str) -> tuple[str | None, str] | None:
        """(queue name, printer path) of a request path or of a printer-uri's path; the name is None
        for the default queue, whether or not a queue of that name is configured. `/ipp/print` (and
        `/`) is the default queue; `/ipp/print/NAME` and `/printers/NAME` (the CUPS and Windows style)
        name queue NAME; a trailing job-id segment (a job URI) is allowed. None: not a printer's
        path. All-digit queue names read as job ids."""
        text = path.decode("utf-8", "replace") if isinstance(path, bytes) else path
        parts = [part for part in text.split("?", 1)[0].split("/") if part]
        if parts and parts[-1].isdigit():
            parts = parts[:-1]
        if parts in ([], ["ipp", "print"]):
            return None, PRINTER_PATH.decode()
        if len(parts) == 3 and parts[:2] == ["ipp", "print"]:
            return parts[2], f"/ipp/print/{parts[2]}"
        if len(parts) == 2 and parts[0] == "printers":
            return parts[1], f"/printers/{parts[1]}"
        return None

    def queue_named(self, name: str | None) -> str | None:
        """The configured queue a printer path names (None: the default queue), or None."""
        if name is None:
            return self.default_queue
        return name if name in self.queues else None

    def printer_name(self, queue: str) -> str:
        """printer-name of a queue: the configured printer name for the default queue, the queue's
        own name for the others (as CUPS names its printers after their queues)."""
        return self.operations.printer.identity.name if queue == self.default_queue else queue

    def address(self, request: Request, message: Any, context: RequestContext) -> None:
        """Point `context` at the queue the request addresses: the one its printer-uri names (or, for
        a job operation without one, its job-uri), wherever the request was posted (`lp -h HOST -d
        QUEUE` posts to `/` with printer-uri `/printers/QUEUE`); without either, the request path's.
        Raises IppError(client-error-not-found) for a queue that is not configured."""
        target: str | None = None
        operation = message.groups[0] if message.groups and message.groups[0].tag == Tag.OPERATION else None
        for name in ("printer-uri", "job-uri"):
            attribute = operation.get(name) if operation is not None else None
            if attribute is not None and len(attribute.values) == 1 and attribute.values[0].tag == Tag.URI:
                try:
                    target = urlsplit(str(attribute.values[0].value)).path or "/"
                except ValueError:
                    raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, f"{name} is not a URI") from None
                break
        printer = self.printer_path(target if target is not None else
                                    (request.path or getattr(request, "target_path", b"/")))
        if printer is None and target is not None and (job := self._cups_job(target)) is not None:
            printer = (None if job.queue == self.default_queue else job.queue,
                       PRINTER_PATH.decode() if job.queue == self.default_queue else f"/printers/{job.queue}")
        queue = self.queue_named(printer[0]) if printer is not None else None
        if printer is None or queue is None:
            raise IppError(Status.CLIENT_ERROR_NOT_FOUND, f"there is no printer at {(target or '')[:200]}")
        path = printer[1]
        context.queue = queue
        context.printer_name = self.printer_name(queue)
        context.printer_uri = self.printer_uri(request, path)
        context.uris = self.printer_uris(request, path)

    def _cups_job(self, path: str) -> Job | None:
        """The job a CUPS-style job URI path (`/jobs/ID`, as `lp -i` sends) names, if it exists."""
        parts = [part for part in path.split("/") if part]
        if len(parts) != 2 or parts[0] != "jobs" or not (parts[1].isascii() and parts[1].isdigit()) \
                or len(parts[1]) > 10:
            return None
        try:
            return self.jobs.get(int(parts[1]))
        except JobNotFound:
            return None

    def printer_uri(self, request: Request, path: str) -> str:
        host = (request.getHeader(b"host") or b"").decode("ascii", "replace").strip()
        if not host or any(ch in host for ch in "/ \\@?#"):
            address = request.getHost()
            host = f"{getattr(address, 'host', '127.0.0.1')}:{getattr(address, 'port', 631)}"
        return f"{'ipps' if self.secure else 'ipp'}://{host}{path}"

    def security(self) -> tuple[str, str]:
        """(uri-security-supported, uri-authentication-supported) of this listener's URI."""
        authentication = "basic" if self.authenticator is not None else "requesting-user-name"
        return ("tls" if self.secure else "none"), authentication

    def printer_uris(self, request: Request, path: str) -> list[tuple[str, str, str]]:
        """printer-uri-supported with its security and authentication: the URI the client used, then
        the other listener's (same host name, its port) if there is one and it serves requests."""
        uris = [(self.printer_uri(request, path), *self.security())]
        other = self.sibling() if self.sibling is not None else None
        if other is not None:
            site, number = other
            if number and not site.refuse_plain:
                host = uris[0][0].split("://", 1)[1].split("/", 1)[0]
                name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
                uris.append((f"{'ipps' if site.secure else 'ipp'}://{name}:{number}{path}", *site.security()))
        return uris

    def track(self, answer: Deferred[Any]) -> None:
        self.answers.add(answer)

        def forget(result: object) -> object:
            self.answers.discard(answer)
            return result

        answer.addBoth(forget)

    def close_all(self) -> Deferred[Any]:
        """At shutdown: cut connections still uploading (never acknowledged) and wait for the jobs
        already being made durable, so that every client that got a success has its job."""
        if self.describer is not None:
            self.describer.stop()
        for channel in list(self.connections):
            if channel.receiving() and channel.transport is not None:
                channel.transport.abortConnection()
        return gatherResults([d.addErrback(lambda _: None) for d in list(self.answers)])


class TlsIppFactory(TLSMemoryBIOFactory):
    """ipps: an IppSite behind TLS, with the site's `connections`, `close_all()` and `operations`."""

    noisy = False

    def __init__(self, options: Any, site: IppSite) -> None:
        super().__init__(options, False, site)  # type: ignore[arg-type]  # a Site is a protocol factory
        self.site = site

    def buildProtocol(self, addr: IAddress | None) -> Any:
        """The TLS wrapper around the site's channel, or None (the connection is closed) when the site
        refuses it: WrappingFactory would wrap the None."""
        channel = self.site.buildProtocol(addr)
        return None if channel is None else self.protocol(self, channel)

    @property
    def connections(self) -> set[IppChannel]:
        return self.site.connections

    @property
    def operations(self) -> PrinterOperations:
        return self.site.operations

    def close_all(self) -> Deferred[Any]:
        return self.site.close_all()


def build_ipp_site(jobs: JobService, config: Config, reactor: Any, *, spool_id: str, secure: bool = False,
                   operations: PrinterOperations | None = None, authenticator: BasicAuthenticator | None = None,
                   sibling: Sibling | None = None, ask_device: AskDevice | None = None) -> IppSite:  # fmt: skip
    """The IPP front-end as the configuration describes it (the printer's uuid is derived from the
    spool's own id, so it stays the same across restarts). A second listener of the same printer
    (ipps beside ipp) passes the first one's `operations`, and each names the other as `sibling`.
    With `[ipp] authentication = "basic"`, `authenticator` checks the credentials (on plain http only
    if allow_basic_without_tls). `ask_device` is the device backend's Get-Printer-Attributes, when
    the device is an IPP printer: the printer then describes its paper path as the device does."""
    basic = config.ipp.authentication == "basic"
    allowed = basic and (secure or config.ipp.allow_basic_without_tls)
    describer = None
    if operations is None:
        identity = PrinterIdentity(
            name=config.ipp.name, info=config.ipp.info or config.ipp.name, location=config.ipp.location,
            make_and_model=config.ipp.make_and_model, color=config.ipp.color,
            uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:spooler:{spool_id}")),
            max_job_size=config.limits.max_job_size,
            multiple_operation_timeout=max(1, int(config.ipp.multiple_operation_timeout)),
        )  # fmt: skip
        printer = PrinterAttributes(identity)
        operations = PrinterOperations(jobs, printer, admin_users=config.ipp.admin_users,
                                       up_since=reactor.seconds(), clock_seconds=reactor.seconds,
                                       job_privacy=basic)  # fmt: skip
        if ask_device is not None:
            describer = DeviceDescriber(printer, ask_device, reactor, config.device.uri)
    site = IppSite(jobs, operations, max_request_size=config.ipp.max_request_size,
                   idle_timeout=config.limits.idle_timeout, max_connections=config.limits.max_connections,
                   reactor=reactor, secure=secure, authenticator=authenticator if allowed else None,
                   refuse_plain=basic and not allowed, queues=[queue.name for queue in config.queues],
                   sibling=sibling, describer=describer, max_per_address=config.limits.max_connections_per_address,
                   header_timeout=config.limits.header_timeout,
                   max_compression_ratio=config.limits.max_compression_ratio)  # fmt: skip
    if describer is not None:
        describer.start()
    return site
