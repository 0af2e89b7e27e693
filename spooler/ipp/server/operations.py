"""IPP printer operations: turns decoded requests into calls on the JobService and answers with IPP
responses. Request checks (RFC 8011 4.1), status mapping of the service's typed errors, and the
operation table. No HTTP here (see resource.py) and no policy (see spooler.jobs.service).

Private print (PWG 5100.11 job-password): Print-Job and Create-Job with `job-password` (octetString,
job-password-encryption "none") make a job held until released with that key; Release-Job of a
private job (from PJL HOLDKEY too) takes the key in the same `job-password` operation attribute.
Job privacy (CUPS's JobPrivateValues and JobPrivateAccess defaults): with authentication on,
Get-Jobs and Get-Job-Attributes leave out job-name and job-originating-user-name of jobs that are
neither the requester's nor asked for by an admin."""

from __future__ import annotations

import uuid as uuid_module
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from spooler.ipp.server.attributes import (
    COMPRESSIONS,
    DEFAULT_FORMAT,
    JOB_DESCRIPTION_DEFAULT,
    OPERATIONS,
    SUPPORTED_VERSIONS,
    WHICH_JOBS,
    PrinterAttributes,
    PrinterStatus,
    check_job_template,
    ipp_datetime,
    job_attributes,
    job_summary,
    printer_alerts,
)
from spooler.ipp.codec import Attribute, AttributeGroup, IppMessage
from spooler.ipp.server.requests import (NAME_TAGS, IppError, RequestContext, _operation_attributes, _value,
                                          response_for)  # fmt: skip
from spooler.ipp.server.administration import AdministrationOperations
from spooler.ipp.server.notifications import SubscriptionOperations
from spooler.ipp.server.subscriptions import Subscriptions, ipp_status
from spooler.ipp.tags import Operation, Status, Tag
from spooler.intake.base import JobRequest
from spooler.jobs.queue_admin import QueueAdministration
from spooler.jobs.service import MAX_HOLD_KEY, JobService
from spooler.model import FINAL_STATES, IllegalTransition, Job, JobNotFound, JobState, JobTooLarge, NotAccepting, \
    NotAuthorized, NotPossible, SpoolFull
from spooler.store.spoolfiles import IncomingFile

log = Logger(namespace="spooler.ipp")

CHARSETS = frozenset({"utf-8", "us-ascii"})
DOCUMENT_OPERATIONS = frozenset({Operation.PRINT_JOB, Operation.SEND_DOCUMENT})
#: Operations on one job, which a job-uri may address without a printer-uri (RFC 8011 4.1.5).
JOB_OPERATIONS = frozenset({
    Operation.SEND_DOCUMENT, Operation.CANCEL_JOB, Operation.GET_JOB_ATTRIBUTES, Operation.HOLD_JOB,
    Operation.RELEASE_JOB, Operation.CLOSE_JOB, Operation.RESTART_JOB, Operation.SET_JOB_ATTRIBUTES,
    Operation.REPROCESS_JOB, Operation.RESUME_JOB, Operation.PROMOTE_JOB, Operation.SCHEDULE_JOB_AFTER,
    Operation.CANCEL_DOCUMENT, Operation.GET_DOCUMENT_ATTRIBUTES, Operation.GET_DOCUMENTS,
    Operation.SET_DOCUMENT_ATTRIBUTES, Operation.RESUBMIT_JOB,
})  # fmt: skip
NOT_COMPLETED = (JobState.PENDING, JobState.PENDING_HELD, JobState.PROCESSING, JobState.PROCESSING_STOPPED)
#: What a requester who is neither the job's owner nor an admin does not see (CUPS's JobPrivateValues
#: default: job-name, job-originating-host-name, job-originating-user-name, phone; only the first and
#: the third exist here).
PRIVATE_JOB_VALUES = frozenset({"job-name", "job-originating-user-name", "job-originating-host-name", "phone"})


@dataclass
class DocumentPlan:
    """What a document-carrying request needs before its data is streamed: how to decompress it."""

    compression: str = "none"
    document_format: str = DEFAULT_FORMAT
    job_id: int | None = None
    last: bool = True
    warnings: list[Attribute] = field(default_factory=list)


class Decompressor:
    """Streams `compression` = gzip or deflate data (zlib or raw deflate, detected) into a sink,
    bounded output per step, so a small compressed request cannot balloon in memory. With
    `max_ratio`, a document that expands more than that many times its compressed size (past the
    first EXPANSION_ALLOWANCE bytes) is refused with request-entity-too-large: a 1 MB gzip of zeros
    does not become a 1 GiB job."""

    STEP = 1024 * 1024
    #: Output always allowed, whatever the ratio (a small, very regular document is no attack).
    EXPANSION_ALLOWANCE = 16 * 1024 * 1024

    def __init__(self, compression: str, sink: Callable[[bytes], None], *, max_ratio: float = 0) -> None:
        self._compression = compression
        self._sink = sink
        self._inflater: Any = None
        self._pending = b""
        self._max_ratio = max_ratio
        self.consumed = 0  # compressed bytes taken in
        self.produced = 0  # document bytes given out

    def _emit(self, out: bytes) -> None:
        self.produced += len(out)
        if self._max_ratio and self.produced > max(self.EXPANSION_ALLOWANCE, self._max_ratio * self.consumed):
            raise IppError(Status.CLIENT_ERROR_REQUEST_ENTITY_TOO_LARGE,
                           f"the {self._compression} document expands more than {self._max_ratio:g} times "
                           f"its compressed size")  # fmt: skip
        self._sink(out)

    def write(self, data: bytes) -> None:
        if self._compression == "none":
            self._sink(data)
            return
        if self._inflater is None:
            self._pending += data
            if len(self._pending) < 2:
                return
            data, self._pending = self._pending, b""
            if self._compression == "gzip":
                wbits = 16 + zlib.MAX_WBITS
            elif data[0] & 0x0F == 8 and (data[0] * 256 + data[1]) % 31 == 0:
                wbits = zlib.MAX_WBITS  # zlib-wrapped deflate
            else:
                wbits = -zlib.MAX_WBITS  # raw deflate
            self._inflater = zlib.decompressobj(wbits)
        try:
            out = self._inflater.decompress(data, self.STEP)
            self.consumed += len(data) - len(self._inflater.unconsumed_tail)
            while out:
                self._emit(out)
                tail = self._inflater.unconsumed_tail
                out = self._inflater.decompress(tail, self.STEP) if tail else b""
                self.consumed += len(tail) - len(self._inflater.unconsumed_tail)
        except zlib.error as error:
            raise IppError(Status.CLIENT_ERROR_COMPRESSION_ERROR, f"cannot decompress the document: {error}") from None

    def close(self) -> None:
        if self._compression == "none":
            return
        if self._inflater is None:
            if self._pending:
                raise IppError(Status.CLIENT_ERROR_COMPRESSION_ERROR, "truncated compressed document")
            return
        try:
            rest = self._inflater.flush()
        except zlib.error as error:
            raise IppError(Status.CLIENT_ERROR_COMPRESSION_ERROR, f"cannot decompress the document: {error}") from None
        if rest:
            self._emit(rest)
        if not self._inflater.eof:
            raise IppError(Status.CLIENT_ERROR_COMPRESSION_ERROR, "truncated compressed document")


class PrinterOperations:
    """The printer object's operations, one method each; `respond` picks the method by operation-id."""

    def __init__(
        self,
        jobs: JobService,
        printer: PrinterAttributes,
        *,
        admin_users: tuple[str, ...] = (),
        up_since: float,
        clock_seconds: Callable[[], float],
        job_privacy: bool = False,
    ) -> None:
        """`job_privacy`: hide private job values from other users (on when IPP authentication is,
        since without it a user name is only what the client claims)."""
        self.jobs = jobs
        self.printer = printer
        self.admin_users = frozenset(admin_users)
        self.job_privacy = job_privacy
        self.up_since = up_since
        self._seconds = clock_seconds
        self._handlers: dict[int, Callable[..., Any]] = {
            Operation.PRINT_JOB: self.print_job,
            Operation.VALIDATE_JOB: self.validate_job,
            Operation.CREATE_JOB: self.create_job,
            Operation.SEND_DOCUMENT: self.send_document,
            Operation.CANCEL_JOB: self.cancel_job,
            Operation.GET_JOB_ATTRIBUTES: self.get_job_attributes,
            Operation.GET_JOBS: self.get_jobs,
            Operation.GET_PRINTER_ATTRIBUTES: self.get_printer_attributes,
            Operation.HOLD_JOB: self.hold_job,
            Operation.RELEASE_JOB: self.release_job,
            Operation.PAUSE_PRINTER: self.pause_printer,
            Operation.RESUME_PRINTER: self.resume_printer,
            Operation.CANCEL_MY_JOBS: self.cancel_my_jobs,
            Operation.CLOSE_JOB: self.close_job,
            Operation.IDENTIFY_PRINTER: self.identify_printer,
        }
        # The IPP/2.1-2.2 operations live in modules of their own (sharing spooler.ipp.server.requests).
        self.administration = QueueAdministration(jobs)
        self.notifications = SubscriptionOperations(self, Subscriptions(clock_seconds))
        self._handlers.update(self.notifications.handlers())
        self._handlers.update(AdministrationOperations(self, self.administration).handlers())
        assert set(self._handlers) == set(OPERATIONS)
        notifier = self.notifications.notifier
        jobs.observe_jobs(notifier.job_changed)
        self.administration.printer_changed.append(notifier.printer_changed)
        jobs.observe_server(lambda state: notifier.printer_changed(None, None))

    def queue_names(self) -> list[str]:
        return self.jobs.queue_names()

    # -- request checks (RFC 8011 4.1) -------------------------------------------------------------

    def check_request(self, message: IppMessage) -> None:
        """The checks every request passes before its operation runs; raises IppError."""
        if message.version not in SUPPORTED_VERSIONS:
            raise IppError(Status.SERVER_ERROR_VERSION_NOT_SUPPORTED,
                           f"IPP version {message.version[0]}.{message.version[1]} is not supported")  # fmt: skip
        if message.request_id <= 0:
            raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, "request-id must be greater than zero")
        if not message.groups or message.groups[0].tag != Tag.OPERATION:
            raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, "the operation attributes group must come first")
        operation = message.groups[0]
        if len(operation.attributes) < 2 or operation.attributes[0].name != "attributes-charset" \
                or operation.attributes[1].name != "attributes-natural-language":
            raise IppError(Status.CLIENT_ERROR_BAD_REQUEST,
                           "attributes-charset and attributes-natural-language must come first")  # fmt: skip
        charset = _value(operation, "attributes-charset", (Tag.CHARSET,))
        _value(operation, "attributes-natural-language", (Tag.NATURAL_LANGUAGE,))
        if str(charset).lower() not in CHARSETS:
            raise IppError(Status.CLIENT_ERROR_CHARSET_NOT_SUPPORTED, f"charset {charset} is not supported",
                           [operation.attributes[0]])  # fmt: skip
        for group in message.groups:  # several groups of one kind (subscription templates) may repeat names
            names = [attribute.name for attribute in group.attributes]
            if len(set(names)) != len(names):
                twice = next(name for name in names if names.count(name) > 1)
                raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, f"{twice} is given twice")
        if message.code not in self._handlers:
            raise IppError(Status.SERVER_ERROR_OPERATION_NOT_SUPPORTED,
                           f"operation {message.code:#06x} is not supported")  # fmt: skip
        has_printer_uri = _value(operation, "printer-uri", (Tag.URI,)) is not None
        has_job_uri = _value(operation, "job-uri", (Tag.URI,)) is not None
        if not has_printer_uri and not (has_job_uri and message.code in JOB_OPERATIONS):
            raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, "printer-uri is missing")
        self._user(operation)  # its syntax

    def _check(self, message: IppMessage, context: RequestContext) -> None:
        """check_request, then whether the printer addressed exists."""
        self.check_request(message)
        if context.refusal is not None:
            raise context.refusal

    def plan_document(self, message: IppMessage, context: RequestContext) -> DocumentPlan:
        """Header-time checks of a Print-Job or Send-Document, before any of its data is accepted."""
        self._check(message, context)
        operation = _operation_attributes(message)
        plan = DocumentPlan()
        plan.compression = self._compression(operation)
        plan.document_format = self._document_format(operation)
        if message.code == Operation.PRINT_JOB:
            plan.warnings = self._job_template(message)
        else:
            plan.job_id = self._job_id(operation)
            last = _value(operation, "last-document", (Tag.BOOLEAN,))
            if last is None:
                raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, "last-document is missing")
            plan.last = bool(last)
            self.jobs.incoming_job(plan.job_id, requester=self._user(operation), admin=self._is_admin(operation))
        return plan

    def _compression(self, operation: AttributeGroup) -> str:
        compression = _value(operation, "compression", (Tag.KEYWORD,), "none")
        if compression not in COMPRESSIONS:
            raise IppError(Status.CLIENT_ERROR_COMPRESSION_NOT_SUPPORTED, f"compression {compression} is not supported",
                           [operation["compression"]])  # fmt: skip
        return str(compression)

    def _document_format(self, operation: AttributeGroup) -> str:
        document_format = _value(operation, "document-format", (Tag.MIME_MEDIA_TYPE,), DEFAULT_FORMAT)
        if str(document_format).lower() not in self.printer.document_formats:
            raise IppError(Status.CLIENT_ERROR_DOCUMENT_FORMAT_NOT_SUPPORTED,
                           f"document-format {document_format} is not supported",
                           [operation["document-format"]])  # fmt: skip
        return str(document_format).lower()

    def _job_template(self, message: IppMessage) -> list[Attribute]:
        """Unsupported job-template attributes: an error with ipp-attribute-fidelity, else warnings."""
        operation = _operation_attributes(message)
        fidelity = bool(_value(operation, "ipp-attribute-fidelity", (Tag.BOOLEAN,), False))
        _value(operation, "job-name", NAME_TAGS)
        unsupported = []
        for group in message.groups_of(Tag.JOB):
            unsupported += check_job_template(group.attributes, self.printer.job_template_checks)
        if unsupported and fidelity:
            raise IppError(Status.CLIENT_ERROR_ATTRIBUTES_OR_VALUES_NOT_SUPPORTED,
                           "some job attributes are not supported", unsupported)  # fmt: skip
        return unsupported

    def _job_id(self, operation: AttributeGroup) -> int:
        job_id = _value(operation, "job-id", (Tag.INTEGER,))
        if job_id is None:
            job_uri = _value(operation, "job-uri", (Tag.URI,))
            if job_uri is None:
                raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, "job-id or job-uri is missing")
            tail = str(job_uri).rstrip("/").rsplit("/", 1)[-1]
            # ASCII digits only ("²".isdigit() is true, int("²") fails), and no longer than a job-id
            # (an integer, RFC 8011 5.3.2) can be: a longer number is no job, not an internal error.
            if not (tail.isascii() and tail.isdigit()) or len(tail) > 10 or int(tail) > 2**31 - 1:
                raise IppError(Status.CLIENT_ERROR_NOT_FOUND, f"no job at {str(job_uri)[:200]}")
            job_id = int(tail)
        if job_id < 1:
            raise IppError(Status.CLIENT_ERROR_NOT_FOUND, f"no job {job_id}")
        return int(job_id)

    @staticmethod
    def _user(operation: AttributeGroup) -> str | None:
        user = _value(operation, "requesting-user-name", NAME_TAGS)
        return str(user) if user else None

    def _is_admin(self, operation: AttributeGroup) -> bool:
        user = self._user(operation)
        return user is not None and user in self.admin_users

    # -- dispatch ------------------------------------------------------------------------------------

    def respond(
        self,
        message: IppMessage,
        context: RequestContext,
        *,
        document: IncomingFile | None = None,
        plan: DocumentPlan | None = None,
    ) -> Deferred[IppMessage]:
        """Run the request's operation; fires with the response, never fails (errors become statuses)."""
        try:
            if plan is None:
                self._check(message, context)
            handler = self._handlers[message.code]
            if message.code in DOCUMENT_OPERATIONS:
                result = handler(message, context, document, plan or self.plan_document(message, context))
            else:
                result = handler(message, context)
        except Exception:
            if document is not None:
                document.discard()
            return succeed(self.error_response(message, Failure()))
        if not isinstance(result, Deferred):
            result = succeed(result)
        return result.addErrback(lambda failure: self.error_response(message, failure))

    def error_response(self, message: IppMessage, failure: Failure) -> IppMessage:
        error = failure.value
        if isinstance(error, IppError):
            status, text, unsupported = error.status, error.message, error.unsupported
        elif isinstance(error, JobNotFound):
            status, text, unsupported = Status.CLIENT_ERROR_NOT_FOUND, str(error), []
        elif isinstance(error, NotAuthorized):
            status, text, unsupported = Status.CLIENT_ERROR_NOT_AUTHORIZED, str(error), []
            self._refused(message, text)
        elif isinstance(error, IllegalTransition):
            status, text, unsupported = Status.CLIENT_ERROR_NOT_POSSIBLE, str(error), []
        elif isinstance(error, SpoolFull):
            status, text, unsupported = Status.SERVER_ERROR_BUSY, str(error), []
            self._refused(message, text)
        elif isinstance(error, JobTooLarge):
            status, text, unsupported = Status.CLIENT_ERROR_REQUEST_ENTITY_TOO_LARGE, str(error), []
            self._refused(message, text)
        elif isinstance(error, NotPossible):
            status, text, unsupported = Status.CLIENT_ERROR_NOT_POSSIBLE, str(error), []
        elif isinstance(error, NotAccepting):
            status, text, unsupported = Status.SERVER_ERROR_NOT_ACCEPTING_JOBS, str(error), []
            self._refused(message, text)
        elif (known := ipp_status(error)) is not None:
            (status, text), unsupported = known, []
        else:
            log.failure("IPP operation {operation:#06x} failed", failure, spool_event="ipp_error",
                        operation=message.code)  # fmt: skip
            status, text, unsupported = Status.SERVER_ERROR_INTERNAL_ERROR, "internal error", []
        response = response_for(message, status, text)
        if unsupported:
            response.add_group(Tag.UNSUPPORTED_GROUP, *unsupported)
        return response

    @staticmethod
    def _refused(message: IppMessage, why: str) -> None:
        log.warn("IPP operation {operation:#06x} refused: {why}", spool_event="ipp_refused", operation=message.code,
                 why=why)  # fmt: skip

    def _job_request(self, message: IppMessage, context: RequestContext, document_format: str | None) -> JobRequest:
        operation = _operation_attributes(message)
        job_group = message.job_attributes
        hold = _value(job_group, "job-hold-until", (Tag.KEYWORD, Tag.NAME, Tag.NAME_WITH_LANGUAGE))
        name = _value(operation, "job-name", NAME_TAGS) or _value(operation, "document-name", NAME_TAGS)
        copies = _value(job_group, "copies", (Tag.INTEGER,))
        sides = _value(job_group, "sides", (Tag.KEYWORD,))
        ipp: dict[str, Any] = {}
        for key in ("media", "print-color-mode", "print-quality", "output-bin", "orientation-requested",
                    "multiple-document-handling"):
            if job_group is not None and (attribute := job_group.get(key)) is not None and \
                    isinstance(attribute.first, (str, int)):
                ipp[key] = attribute.first
        attributes: dict[str, Any] = {"ipp": ipp} if ipp else {}
        if (client_uuid := client_job_uuid(operation, job_group)) is not None:
            attributes["client_job_uuid"] = client_uuid
        return JobRequest(
            protocol="ipp", host=context.peer_host, queue=context.queue, user=self._user(operation),
            name=str(name) if name else None,
            document_format=None if document_format in (None, DEFAULT_FORMAT) else document_format,
            copies=int(copies) if isinstance(copies, int) and 1 <= copies <= 999 else None,
            sides=str(sides) if sides in ("one-sided", "two-sided-long-edge", "two-sided-short-edge") else None,
            attributes=attributes, hold=hold == "indefinite",
            hold_key=self._job_password(operation),
        )  # fmt: skip

    @staticmethod
    def _job_password(operation: AttributeGroup) -> str | None:
        """The key of a private job (job-password, PWG 5100.11), or None; only in clear ("none")."""
        password = _value(operation, "job-password", (Tag.OCTET_STRING,))
        if password is None:
            return None
        encryption = _value(operation, "job-password-encryption", (Tag.KEYWORD,), "none")
        if encryption != "none":
            raise IppError(Status.CLIENT_ERROR_ATTRIBUTES_OR_VALUES_NOT_SUPPORTED,
                           f"job-password-encryption {encryption} is not supported (only none)",
                           [operation["job-password-encryption"]])  # fmt: skip
        try:
            text = bytes(password).decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        if not 0 < len(text) <= MAX_HOLD_KEY or not text.isprintable():
            raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, "job-password must be 1 to 255 printable characters",
                           [operation["job-password"]])  # fmt: skip
        return text

    def _job_response(self, message: IppMessage, context: RequestContext, job: Job,
                      warnings: list[Attribute], *, subscribe: bool = False) -> IppMessage:  # fmt: skip
        """The answer to a job-creating request; with `subscribe`, the subscriptions its subscription
        groups ask for are made for the job and answered (RFC 3995 7.1)."""
        subscriptions, failed = self.notifications.with_job(message, context, job) if subscribe else ([], 0)
        status = Status.SUCCESSFUL_OK_IGNORED_OR_SUBSTITUTED_ATTRIBUTES if warnings else Status.SUCCESSFUL_OK
        if failed:
            status = Status.SUCCESSFUL_OK_IGNORED_SUBSCRIPTIONS
        response = response_for(message, status)
        if warnings:
            response.add_group(Tag.UNSUPPORTED_GROUP, *warnings)
        response.add_group(Tag.JOB, *job_summary(job, context.printer_uri))
        for group in subscriptions:
            response.add_group(Tag.SUBSCRIPTION, *group)
        return response

    # -- operations ------------------------------------------------------------------------------------

    @inlineCallbacks
    def print_job(self, message: IppMessage, context: RequestContext, document: IncomingFile | None,
                  plan: DocumentPlan) -> Any:  # fmt: skip
        if document is None or document.size == 0:
            if document is not None:
                yield document.discard()
            raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, "Print-Job without document data")
        try:
            request = self._job_request(message, context, plan.document_format)
        except Exception:
            # A generator's exception fails its Deferred: respond()'s own discard never sees it.
            yield document.discard()
            raise
        job = yield self.jobs.submit(document, request)
        return self._job_response(message, context, job, plan.warnings, subscribe=True)

    def validate_job(self, message: IppMessage, context: RequestContext) -> IppMessage:
        operation = _operation_attributes(message)
        self._compression(operation)
        self._document_format(operation)
        warnings = self._job_template(message)
        if not self.jobs.accepting():
            raise SpoolFull("the spool is full")
        status = Status.SUCCESSFUL_OK_IGNORED_OR_SUBSTITUTED_ATTRIBUTES if warnings else Status.SUCCESSFUL_OK
        response = response_for(message, status)
        if warnings:
            response.add_group(Tag.UNSUPPORTED_GROUP, *warnings)
        return response

    @inlineCallbacks
    def create_job(self, message: IppMessage, context: RequestContext) -> Any:
        operation = _operation_attributes(message)
        document_format = self._document_format(operation) if "document-format" in operation else None
        warnings = self._job_template(message)
        request = self._job_request(message, context, document_format)
        verifier = (yield self.jobs.hold_key_verifier(request.hold_key)) if request.hold_key else None
        job = self.jobs.create_job(request, hold_key_verifier=verifier)
        return self._job_response(message, context, job, warnings, subscribe=True)

    @inlineCallbacks
    def send_document(self, message: IppMessage, context: RequestContext, document: IncomingFile | None,
                      plan: DocumentPlan) -> Any:  # fmt: skip
        operation = _operation_attributes(message)
        assert plan.job_id is not None
        if document is not None and document.size == 0:
            yield document.discard()
            document = None
        if document is None and not plan.last:
            raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, "Send-Document without data and not the last document")
        job = yield self.jobs.add_document(plan.job_id, document, plan.last, requester=self._user(operation),
                                           admin=self._is_admin(operation))  # fmt: skip
        return self._job_response(message, context, job, [])

    def close_job(self, message: IppMessage, context: RequestContext) -> IppMessage:
        operation = _operation_attributes(message)
        job = self.jobs.close_job(self._job_id(operation), requester=self._user(operation),
                                  admin=self._is_admin(operation))  # fmt: skip
        return self._job_response(message, context, job, [])

    def _job_change(self, message: IppMessage, change: Callable[..., Job]) -> IppMessage:
        operation = _operation_attributes(message)
        change(self._job_id(operation), requester=self._user(operation), admin=self._is_admin(operation))
        return response_for(message, Status.SUCCESSFUL_OK)

    def cancel_job(self, message: IppMessage, context: RequestContext) -> IppMessage:
        return self._job_change(message, self.jobs.cancel)

    def hold_job(self, message: IppMessage, context: RequestContext) -> IppMessage:
        return self._job_change(message, self.jobs.hold)

    def release_job(self, message: IppMessage, context: RequestContext) -> Any:
        """Release-Job; a private job's key comes as job-password (client-error-not-authorized
        without it, with a wrong one, or after too many wrong ones)."""
        operation = _operation_attributes(message)
        key = self._job_password(operation)
        if key is None:
            return self._job_change(message, self.jobs.release)
        released = self.jobs.release_with_key(self._job_id(operation), key, requester=self._user(operation),
                                              admin=self._is_admin(operation))  # fmt: skip
        return released.addCallback(lambda _: response_for(message, Status.SUCCESSFUL_OK))

    def cancel_my_jobs(self, message: IppMessage, context: RequestContext) -> IppMessage:
        operation = _operation_attributes(message)
        user = self._user(operation)
        if user is None:
            raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, "requesting-user-name is missing")
        job_ids = operation.get("job-ids")
        if job_ids is not None:
            for job_id in job_ids.all:
                if isinstance(job_id, int):
                    self.jobs.cancel(job_id, requester=user, admin=self._is_admin(operation))
        else:
            self.jobs.cancel_my_jobs(user)
        return response_for(message, Status.SUCCESSFUL_OK)

    def get_job_attributes(self, message: IppMessage, context: RequestContext) -> IppMessage:
        operation = _operation_attributes(message)
        job = self.jobs.get(self._job_id(operation))
        requested = self._requested(operation)
        response = response_for(message, Status.SUCCESSFUL_OK)
        response.add_group(Tag.JOB, *job_attributes(job, context.printer_uri, requested, self._seconds(),
                                                    hidden=self._hidden_from(job, operation)))  # fmt: skip
        return response

    def _hidden_from(self, job: Job, operation: AttributeGroup) -> frozenset[str]:
        """The private values of `job` that this requester does not see (none if it is theirs or
        they are an admin). The requester is CUPS's: the authenticated user (who replaced
        requesting-user-name), else the requesting-user-name of an anonymous request."""
        if not self.job_privacy:
            return frozenset()
        requester = self._user(operation)
        if requester is not None and (requester == job.user or requester in self.admin_users):
            return frozenset()
        return PRIVATE_JOB_VALUES

    def get_jobs(self, message: IppMessage, context: RequestContext) -> IppMessage:
        operation = _operation_attributes(message)
        which = _value(operation, "which-jobs", (Tag.KEYWORD,), "not-completed")
        if which not in WHICH_JOBS:
            raise IppError(Status.CLIENT_ERROR_ATTRIBUTES_OR_VALUES_NOT_SUPPORTED,
                           f"which-jobs {which} is not supported", [operation["which-jobs"]])  # fmt: skip
        limit = _value(operation, "limit", (Tag.INTEGER,))
        first_index = _value(operation, "first-index", (Tag.INTEGER,), 1)
        if first_index < 1:
            raise IppError(Status.CLIENT_ERROR_ATTRIBUTES_OR_VALUES_NOT_SUPPORTED,
                           f"first-index {first_index} is out of range", [operation["first-index"]])  # fmt: skip
        my_jobs = bool(_value(operation, "my-jobs", (Tag.BOOLEAN,), False))
        user = self._user(operation)
        if which == "completed":
            states: tuple[JobState, ...] = tuple(FINAL_STATES)
        elif which == "not-completed":
            states = NOT_COMPLETED
        elif which == "all":
            states = tuple(JobState)
        elif which == "proof-print":
            states = ()  # no job here is a proof print
        else:
            states = (JobState.from_keyword(str(which)),)
        jobs = [job for job in self.jobs.list_jobs(include_finished=True)
                if job.state in states and job.queue == context.queue]  # fmt: skip
        if my_jobs:
            jobs = [job for job in jobs if user is not None and job.user == user]
        jobs.sort(key=lambda job: job.job_id, reverse=which == "completed")
        jobs = jobs[first_index - 1:]  # paging (PWG 5100.13): first-index counts from 1
        if isinstance(limit, int) and limit > 0:
            jobs = jobs[:limit]
        requested = self._requested(operation) or set(JOB_DESCRIPTION_DEFAULT)
        response = response_for(message, Status.SUCCESSFUL_OK)
        for job in jobs:
            response.add_group(Tag.JOB, *job_attributes(job, context.printer_uri, requested, self._seconds(),
                                                        hidden=self._hidden_from(job, operation)))  # fmt: skip
        return response

    @staticmethod
    def _requested(operation: AttributeGroup) -> set[str] | None:
        attribute = operation.get("requested-attributes")
        if attribute is None:
            return None
        return {str(value) for value in attribute.all if isinstance(value, str)}

    def printer_status(self, queue: str | None = None) -> PrinterStatus:
        """The state of the printer of `queue` (None: of the whole spooler)."""
        condition = self.jobs.printer_condition(queue)
        return PrinterStatus(
            state=condition.state, reasons=condition.reasons, message=condition.message,
            accepting=condition.accepting, state_changed_at=max(condition.changed_at, self.up_since),
            queued_jobs=condition.queued, now=self._seconds(), up_since=self.up_since,
        )  # fmt: skip

    def queue_attributes(self, context: RequestContext, status: PrinterStatus) -> list[Attribute]:
        """What differs between the queues' printers: printer-name, what administrators set
        (Set-Printer-Attributes), when they last changed it, and the queue's alerts."""
        settings = self.jobs.settings.queue(context.queue)
        attributes = [Attribute.name("printer-name", (context.printer_name or self.printer.identity.name)[:127])]
        attributes += [Attribute.text(name, value) for name, value in sorted(settings.texts.items())]
        if settings.config_changed_at > self.up_since:
            attributes += [Attribute.integer("printer-config-change-time", int(settings.config_changed_at)),
                           Attribute.datetime("printer-config-change-date-time",
                                              ipp_datetime(settings.config_changed_at))]  # fmt: skip
        alerts = printer_alerts(status)
        attributes += [Attribute.octets("printer-alert", *(alert for alert, _ in alerts)),
                       Attribute.text("printer-alert-description", *(text for _, text in alerts))]  # fmt: skip
        return attributes

    def get_printer_attributes(self, message: IppMessage, context: RequestContext) -> IppMessage:
        operation = _operation_attributes(message)
        if "document-format" in operation:
            self._document_format(operation)
        requested = self._requested(operation)
        status = self.printer_status(context.queue)
        response = response_for(message, Status.SUCCESSFUL_OK)
        response.add_group(Tag.PRINTER, *self.printer.render(status, context.printer_uri, requested, uris=context.uris,
                                                             overrides=self.queue_attributes(context, status)))
        return response

    def _require_admin(self, operation: AttributeGroup) -> str:
        user = self._user(operation)
        if user is None or user not in self.admin_users:
            raise NotAuthorized(f"{user or 'an anonymous user'} is not an administrator of this printer")
        return user

    def pause_printer(self, message: IppMessage, context: RequestContext) -> IppMessage:
        self.jobs.pause_printer(by=self._require_admin(_operation_attributes(message)))
        self.notifications.notifier.printer_changed(None, None)
        return response_for(message, Status.SUCCESSFUL_OK)

    def resume_printer(self, message: IppMessage, context: RequestContext) -> IppMessage:
        self.jobs.resume_printer(by=self._require_admin(_operation_attributes(message)))
        self.notifications.notifier.printer_changed(None, None)
        return response_for(message, Status.SUCCESSFUL_OK)

    def identify_printer(self, message: IppMessage, context: RequestContext) -> IppMessage:
        operation = _operation_attributes(message)
        actions = operation.get("identify-actions")
        log.info("Identify-Printer from {user}@{host}: {actions}", spool_event="printer_identify",
                 user=self._user(operation), host=context.peer_host,
                 actions=[str(v) for v in actions.all] if actions else ["sound"])  # fmt: skip
        return response_for(message, Status.SUCCESSFUL_OK)


def client_job_uuid(operation: AttributeGroup, job_group: AttributeGroup | None) -> str | None:
    """The job-uuid a client gave its Create-Job or Print-Job (operation or job group), kept as the
    job's job-uuid as CUPS does, so that a client that lost the answer can find its job with Get-Jobs
    (a forwarding spooler does: spooler.dispatch.reconcile). Only a well-formed urn:uuid: counts."""
    for group in (operation, job_group):
        attribute = group.get("job-uuid") if group is not None else None
        if attribute is None or len(attribute.values) != 1 or attribute.values[0].tag != Tag.URI:
            continue
        value = attribute.values[0].value
        if isinstance(value, str) and value[:9].lower() == "urn:uuid:":
            try:
                return str(uuid_module.UUID(value[9:]))
            except ValueError:
                return None
    return None


def bad_request(request_id: int, text: str) -> IppMessage:
    """The answer to bytes that are not an IPP request at all."""
    return response_for(IppMessage((1, 1), 0, request_id), Status.CLIENT_ERROR_BAD_REQUEST, text)

