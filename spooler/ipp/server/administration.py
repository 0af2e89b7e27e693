"""The IPP/2.1 and 2.2 operations for administrators and job owners (RFC 3380, PWG 5100.11, PWG 5100.5):
Set-Printer-Attributes, Get-Printer-Supported-Values, Enable-/Disable-Printer (and CUPS' Accept-/
Reject-Jobs, which cupsaccept and cupsreject send), Hold-New-Jobs,
Release-Held-New-Jobs, Pause-Printer-After-Current-Job, Restart-/Shutdown-/Startup-Printer,
Set-Job-Attributes, Restart-Job, Reprocess-Job, Resubmit-Job, Cancel-Current-Job, Suspend-Current-Job,
Resume-Job, Promote-Job, Schedule-Job-After, Cancel-Jobs, Purge-Jobs, and the document operations
Cancel-Document, Get-Document-Attributes, Get-Documents, Set-Document-Attributes.

Requests are checked and mapped onto spooler.jobs.queue_admin, which decides. Printer operations are for
`ipp.admin_users`; job and document operations for the job's owner or an administrator."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import inlineCallbacks

from spooler.ipp.server.attributes import DOCUMENT_SETTABLE, JOB_SETTABLE, PRINTER_SETTABLE, check_job_template
from spooler.ipp.codec import Attribute, AttributeGroup, IppMessage
from spooler.ipp.server.requests import (NAME_TAGS, IppError, RequestContext, _operation_attributes, _value,
                                          response_for)  # fmt: skip
from spooler.ipp.tags import Operation, Status, Tag
from spooler.model import Document, Job, JobState
from spooler.jobs.queue_admin import QueueAdministration

if TYPE_CHECKING:  # the operations these extend (which import this module)
    from spooler.ipp.server.operations import PrinterOperations

#: document-state of a document (PWG 5100.5) from its job's state.
_DOCUMENT_STATES = {
    JobState.PENDING: 3, JobState.PENDING_HELD: 3, JobState.PROCESSING: 5, JobState.PROCESSING_STOPPED: 6,
    JobState.CANCELED: 7, JobState.ABORTED: 8, JobState.COMPLETED: 9,
}  # fmt: skip
_TEXT_TAGS = (Tag.TEXT, Tag.TEXT_WITH_LANGUAGE)
_JOB_TEMPLATE_KEPT = ("media", "print-color-mode", "print-quality", "output-bin", "orientation-requested",
                      "multiple-document-handling")  # fmt: skip


def _to_set(group: AttributeGroup | None, settable: tuple[str, ...], what: str) -> AttributeGroup:
    """The group of attributes a Set-xxx-Attributes request sets, if it has any and each is settable."""
    if group is None or not group.attributes:
        raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, f"no {what} attributes to set")
    refused = [a for a in group.attributes if a.name not in settable]
    if refused:
        raise IppError(Status.CLIENT_ERROR_ATTRIBUTES_NOT_SETTABLE,
                       f"{', '.join(a.name for a in refused)} cannot be set",
                       [Attribute.out_of_band(a.name, Tag.NOT_SETTABLE) for a in refused])  # fmt: skip
    return group


class AdministrationOperations:
    """The administration operations of a PrinterOperations (package-internal: it uses its helpers)."""

    def __init__(self, ops: PrinterOperations, admin: QueueAdministration) -> None:
        self.ops = ops
        self.admin = admin

    def handlers(self) -> dict[int, Callable[..., Any]]:
        admin = self.admin
        return {
            Operation.RESTART_JOB: self.restart_job,
            Operation.PURGE_JOBS: self.purge_jobs,
            Operation.SET_PRINTER_ATTRIBUTES: self.set_printer_attributes,
            Operation.SET_JOB_ATTRIBUTES: self.set_job_attributes,
            Operation.GET_PRINTER_SUPPORTED_VALUES: self.get_printer_supported_values,
            Operation.ENABLE_PRINTER: self._for_admin(lambda queue, by: admin.set_accepting(queue, True, by=by)),
            Operation.DISABLE_PRINTER: self.disable_printer,
            Operation.PAUSE_PRINTER_AFTER_CURRENT_JOB: self.ops.pause_printer,  # pausing lets the current job end
            Operation.HOLD_NEW_JOBS: self._for_admin(lambda queue, by: admin.hold_new_jobs(queue, by=by)),
            Operation.RELEASE_HELD_NEW_JOBS: self._for_admin(lambda queue, by: admin.release_held_new_jobs(queue,
                                                                                                          by=by)),
            Operation.RESTART_PRINTER: self._for_admin(lambda queue, by: admin.restart(by=by)),
            Operation.SHUTDOWN_PRINTER: self._for_admin(lambda queue, by: admin.shutdown(by=by)),
            Operation.STARTUP_PRINTER: self._for_admin(lambda queue, by: admin.startup(by=by)),
            Operation.REPROCESS_JOB: self.reprocess_job,
            Operation.CANCEL_CURRENT_JOB: self._for_admin(lambda queue, by: admin.cancel_current(queue, by=by)),
            Operation.SUSPEND_CURRENT_JOB: self._for_admin(lambda queue, by: admin.suspend_current(queue, by=by)),
            Operation.RESUME_JOB: self.resume_job,
            Operation.PROMOTE_JOB: self.promote_job,
            Operation.SCHEDULE_JOB_AFTER: self.schedule_job_after,
            Operation.CANCEL_DOCUMENT: self.cancel_document,
            Operation.GET_DOCUMENT_ATTRIBUTES: self.get_document_attributes,
            Operation.GET_DOCUMENTS: self.get_documents,
            Operation.SET_DOCUMENT_ATTRIBUTES: self.set_document_attributes,
            Operation.CANCEL_JOBS: self.cancel_jobs,
            Operation.RESUBMIT_JOB: self.resubmit_job,
            # cupsaccept and cupsreject (-r REASON): the same as Enable-Printer and Disable-Printer.
            Operation.CUPS_ACCEPT_JOBS: self._for_admin(lambda queue, by: admin.set_accepting(queue, True, by=by)),
            Operation.CUPS_REJECT_JOBS: self.disable_printer,
        }

    # -- helpers -----------------------------------------------------------------------------------

    def _admin(self, message: IppMessage) -> str:
        return self.ops._require_admin(_operation_attributes(message))

    def _requester(self, message: IppMessage) -> tuple[AttributeGroup, str | None, bool]:
        operation = _operation_attributes(message)
        return operation, self.ops._user(operation), self.ops._is_admin(operation)

    @staticmethod
    def _ok(message: IppMessage) -> IppMessage:
        return response_for(message, Status.SUCCESSFUL_OK)

    def _for_admin(self, action: Callable[[str, str], object]) -> Callable[[IppMessage, RequestContext], IppMessage]:
        """An operation only an administrator may do: `action(queue addressed, administrator)`."""
        def handler(message: IppMessage, context: RequestContext) -> IppMessage:
            action(context.queue, self._admin(message))
            return self._ok(message)

        return handler

    # -- the printer ---------------------------------------------------------------------------------

    def set_printer_attributes(self, message: IppMessage, context: RequestContext) -> IppMessage:
        by = self._admin(message)
        group = _to_set(message.printer_attributes, PRINTER_SETTABLE, "printer")
        wrong = [a for a in group.attributes if len(a.values) != 1 or a.values[0].tag not in _TEXT_TAGS]
        if wrong:
            raise IppError(Status.CLIENT_ERROR_ATTRIBUTES_OR_VALUES_NOT_SUPPORTED, "a printer text must be one text",
                           wrong)  # fmt: skip
        texts = {}
        for attribute in group.attributes:
            value = attribute.values[0].value
            texts[attribute.name] = str(value[1] if isinstance(value, tuple) else value)
        self.admin.set_texts(context.queue, texts, by=by)
        return self._ok(message)

    def get_printer_supported_values(self, message: IppMessage, context: RequestContext) -> IppMessage:
        """RFC 3380 4.3: for each settable printer attribute (those asked for), what it may be set to:
        any text of its syntax, as the administrator defines it ('admin-define')."""
        operation = _operation_attributes(message)
        requested = self.ops._requested(operation)
        names = [name for name in PRINTER_SETTABLE if requested is None or "all" in requested or name in requested]
        response = self._ok(message)
        response.add_group(Tag.PRINTER, *(Attribute.out_of_band(name, Tag.ADMIN_DEFINE) for name in names))
        return response

    def disable_printer(self, message: IppMessage, context: RequestContext) -> IppMessage:
        by = self._admin(message)
        reason = _value(_operation_attributes(message), "printer-state-message", _TEXT_TAGS)  # cupsreject -r
        self.admin.set_accepting(context.queue, False, by=by,
                                 reason=str(reason or ""))  # fmt: skip
        return self._ok(message)

    # -- jobs ------------------------------------------------------------------------------------------

    def set_job_attributes(self, message: IppMessage, context: RequestContext) -> IppMessage:
        operation, user, admin = self._requester(message)
        job_id = self.ops._job_id(operation)
        self.ops.jobs.authorize(self.ops.jobs.get(job_id), user, admin)
        group = _to_set(message.job_attributes, JOB_SETTABLE, "job")
        template = [a for a in group.attributes if a.name != "job-name"]
        unsupported = check_job_template(template, self.ops.printer.job_template_checks)
        unsupported += [a for a in group.attributes if a.name == "job-name" and
                        (len(a.values) != 1 or a.values[0].tag not in NAME_TAGS)]  # fmt: skip
        if unsupported:
            raise IppError(Status.CLIENT_ERROR_ATTRIBUTES_OR_VALUES_NOT_SUPPORTED, "unsupported values", unsupported)
        name = _value(group, "job-name", NAME_TAGS)
        self.admin.set_job_attributes(
            job_id, requester=user, admin=admin, name=str(name) if name is not None else None,
            hold=_value(group, "job-hold-until", (Tag.KEYWORD, Tag.NAME, Tag.NAME_WITH_LANGUAGE)),
            copies=_value(group, "copies", (Tag.INTEGER,)), sides=_value(group, "sides", (Tag.KEYWORD,)),
        )  # fmt: skip
        return self._ok(message)

    @inlineCallbacks
    def _copy(self, message: IppMessage, context: RequestContext, changes: dict[str, Any],
              warnings: list[Attribute]) -> Any:  # fmt: skip
        operation, user, admin = self._requester(message)
        job = yield self.admin.copy_job(self.ops._job_id(operation), requester=user, admin=admin, changes=changes)
        return self.ops._job_response(message, context, job, warnings)

    def restart_job(self, message: IppMessage, context: RequestContext) -> Any:
        """Restart-Job (RFC 8011 4.3.7): a held job is released; a finished one whose documents are
        kept prints again, as a new job (its own id and accounting record), answered with it."""
        operation, user, admin = self._requester(message)
        job = self.ops.jobs.get(self.ops._job_id(operation))
        if job.state == JobState.PENDING_HELD:
            self.ops.jobs.release(job.job_id, requester=user, admin=admin)
            return self._ok(message)
        return self._copy(message, context, {}, [])

    def reprocess_job(self, message: IppMessage, context: RequestContext) -> Any:
        return self._copy(message, context, {}, [])

    def resubmit_job(self, message: IppMessage, context: RequestContext) -> Any:
        """Resubmit-Job: a finished job again, as a new job, with the job-template attributes given."""
        operation = _operation_attributes(message)
        fidelity = bool(_value(operation, "ipp-attribute-fidelity", (Tag.BOOLEAN,), False))
        group = message.job_attributes
        warnings = check_job_template(group.attributes, self.ops.printer.job_template_checks) if group else []
        if warnings and fidelity:
            raise IppError(Status.CLIENT_ERROR_ATTRIBUTES_OR_VALUES_NOT_SUPPORTED, "unsupported values", warnings)
        changes: dict[str, Any] = {}
        if group is not None:
            bad = {a.name for a in warnings}
            if isinstance(copies := _value(group, "copies", (Tag.INTEGER,)), int) and "copies" not in bad:
                changes["copies"] = copies
            if isinstance(sides := _value(group, "sides", (Tag.KEYWORD,)), str) and "sides" not in bad:
                changes["sides"] = sides
            ipp = {key: group[key].first for key in _JOB_TEMPLATE_KEPT
                   if key in group and key not in bad and isinstance(group[key].first, (str, int))}  # fmt: skip
            if ipp:
                changes["ipp"] = ipp
        if (name := _value(operation, "job-name", NAME_TAGS)) is not None:
            changes["name"] = str(name)[:255]
        return self._copy(message, context, changes, warnings)

    def resume_job(self, message: IppMessage, context: RequestContext) -> IppMessage:
        operation, user, admin = self._requester(message)
        self.admin.resume_job(self.ops._job_id(operation), requester=user, admin=admin)
        return self._ok(message)

    def promote_job(self, message: IppMessage, context: RequestContext) -> IppMessage:
        by = self._admin(message)
        self.admin.promote(self.ops._job_id(_operation_attributes(message)), by=by)
        return self._ok(message)

    def schedule_job_after(self, message: IppMessage, context: RequestContext) -> IppMessage:
        by = self._admin(message)
        operation = _operation_attributes(message)
        after = _value(operation, "predecessor-job-id", (Tag.INTEGER,))
        self.admin.schedule_after(self.ops._job_id(operation), int(after) if after is not None else None, by=by)
        return self._ok(message)

    def cancel_jobs(self, message: IppMessage, context: RequestContext) -> IppMessage:
        by = self._admin(message)
        listed = _operation_attributes(message).get("job-ids")
        job_ids = [int(v) for v in listed.all if isinstance(v, int)] if listed is not None else None
        self.admin.cancel_jobs(context.queue, job_ids, by=by)
        return self._ok(message)

    @inlineCallbacks
    def purge_jobs(self, message: IppMessage, context: RequestContext) -> Any:
        yield self.admin.purge_jobs(context.queue, by=self._admin(message))
        return self._ok(message)

    # -- documents -------------------------------------------------------------------------------------

    def _document_number(self, operation: AttributeGroup) -> int:
        number = _value(operation, "document-number", (Tag.INTEGER,))
        if number is None:
            raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, "document-number is missing")
        return int(number)

    def _document(self, job: Job, document: Document, context: RequestContext,
                  operation: AttributeGroup) -> list[Attribute]:  # fmt: skip
        """A document's attributes (PWG 5100.5); its name is private as the job's name is."""
        canceled = document.number in (job.attributes.get("canceled_documents") or ())
        state = 7 if canceled else _DOCUMENT_STATES[job.state]
        reasons = "document-canceled-by-user" if canceled else {3: "queued", 5: "processing-to-stop-point", 6: "none",
                                                                 7: "none", 8: "aborted-by-system",
                                                                 9: "completed-successfully"}[state]  # fmt: skip
        name = (job.attributes.get("document_names") or {}).get(str(document.number)) or job.name
        return [
            Attribute.charset("attributes-charset", "utf-8"),
            Attribute.language("attributes-natural-language", "en"),
            Attribute.integer("document-number", document.number),
            Attribute.integer("document-job-id", job.job_id),
            Attribute.uri("document-job-uri", f"{context.printer_uri}/{job.job_id}"),
            Attribute.uri("document-printer-uri", context.printer_uri),
            Attribute.enum("document-state", state),
            Attribute.keyword("document-state-reasons", reasons),
            Attribute.mime("document-format", document.document_format),
            *([] if "job-name" in self.ops._hidden_from(job, operation) else
              [Attribute.name("document-name", name[:255])]),
            Attribute.integer("k-octets", min((document.size + 1023) // 1024, 0x7FFFFFFF)),
            Attribute.integer("time-at-creation", int(job.created_at)),
        ]

    def _documents(self, job_id: int) -> tuple[Job, list[Document]]:
        return self.ops.jobs.get(job_id), self.ops.jobs.documents(job_id)

    def get_document_attributes(self, message: IppMessage, context: RequestContext) -> IppMessage:
        operation = _operation_attributes(message)
        job, documents = self._documents(self.ops._job_id(operation))
        number = self._document_number(operation)
        document = next((d for d in documents if d.number == number), None)
        if document is None:
            raise IppError(Status.CLIENT_ERROR_NOT_FOUND, f"job {job.job_id} has no document {number}")
        requested = self.ops._requested(operation)
        attributes = self._document(job, document, context, operation)
        if requested is not None and "all" not in requested and "document-description" not in requested:
            attributes = [a for a in attributes if a.name in requested]
        response = self._ok(message)
        response.add_group(Tag.DOCUMENT, *attributes)
        return response

    def get_documents(self, message: IppMessage, context: RequestContext) -> IppMessage:
        operation = _operation_attributes(message)
        job, documents = self._documents(self.ops._job_id(operation))
        limit = _value(operation, "limit", (Tag.INTEGER,))
        if isinstance(limit, int) and limit > 0:
            documents = documents[:limit]
        requested = self.ops._requested(operation) or {"document-number"}
        response = self._ok(message)
        for document in documents:
            attributes = self._document(job, document, context, operation)
            if "all" not in requested and "document-description" not in requested:
                attributes = [a for a in attributes if a.name in requested]
            response.add_group(Tag.DOCUMENT, *attributes)
        return response

    def cancel_document(self, message: IppMessage, context: RequestContext) -> IppMessage:
        operation, user, admin = self._requester(message)
        self.admin.cancel_document(self.ops._job_id(operation), self._document_number(operation), requester=user,
                                   admin=admin)  # fmt: skip
        return self._ok(message)

    def set_document_attributes(self, message: IppMessage, context: RequestContext) -> IppMessage:
        operation, user, admin = self._requester(message)
        groups = message.groups_of(Tag.DOCUMENT)
        group = _to_set(groups[0] if groups else None, DOCUMENT_SETTABLE, "document")
        name = _value(group, "document-name", NAME_TAGS)
        self.admin.name_document(self.ops._job_id(operation), self._document_number(operation), str(name),
                                 requester=user, admin=admin)  # fmt: skip
        return self._ok(message)
