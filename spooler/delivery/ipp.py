"""The `ipp://` and `ipps://` backend: forward a job to an IPP printer or print server queue (RFC 8011).

How a delivery goes, as the CUPS ipp backend does it:

1. Get-Printer-Attributes (operations-supported, document-format-supported), cached for a while.
2. Create-Job, then one Send-Document per spool file (last-document true on the last), when the peer
   lists both operations; otherwise one Print-Job. The peer's job-id is passed to the journal as
   soon as the peer has given it: right after Create-Job (before any document byte is sent), or
   after Print-Job's response.
3. Get-Job-Attributes every `poll_interval` until the remote job is completed (receipt, with
   job-impressions-completed), canceled or aborted (permanent DeliveryError), or `follow_timeout`
   has passed (receipt: the peer has the job, it must not be sent again).

A job of several documents for a peer that does not take multiple-document jobs (its
multiple-document-jobs-supported is not true, as ippeveprinter's; or it has no Create-Job) goes as
one peer job per document, in order, each followed as in 3 before the next is sent: the journal
holds every peer job-id so far ("jobs:12,13"), so that after a restart `recover` asks about the last
one and only the documents the peer does not have are sent again (PartialDelivery). Copies with
multiple-document-handling=separate-documents-collated-copies go as rounds of single copies.

The HTTP exchange is spooler.ipp.client's (IppClient, which this backend is): documents are streamed
from the spool files, never read into memory; a stalled exchange is given up on after `io_timeout`
without progress; failures are classified there (retryable or permanent). `ipps://` is IPP over
HTTPS, the peer's certificate checked against `tls_trust_root` (None: the platform's trust store).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from spooler.delivery.base import DeliveryFile, DeliveryReceipt, Journal, PartialDelivery, RemoteCopy
from spooler.ipp.client import RETRYABLE_STATUSES, IppClient, IppStatusError, is_retryable_status
from spooler.ipp.codec import Attribute, IppMessage
from spooler.ipp.tags import JobState, Operation, Status, Tag
from spooler.model import DeliveryError, Job

__all__ = ["IppBackend", "RETRYABLE_STATUSES", "is_retryable_status"]

OCTET_STREAM = "application/octet-stream"
#: How long the peer's operations-supported / document-format-supported answer is reused.
CAPABILITIES_TTL = 300.0
#: First wait before asking the peer about a job it is printing; it doubles up to poll_interval.
FIRST_POLL = 0.2
#: Job-state-reasons that say the remote job still waits for documents.
INCOMING_REASONS = frozenset({"job-incoming", "job-data-insufficient"})


#: The journal of a job sent as one peer job per document: "jobs:" and the peer's job-ids so far.
SPLIT_PREFIX = "jobs:"


def split_journal(job_ids: Sequence[int]) -> str:
    return SPLIT_PREFIX + ",".join(str(job_id) for job_id in job_ids)


def split_job_ids(journal: str) -> list[int]:
    """The peer job-ids of a split journal, in order; [] for anything else."""
    if not journal.startswith(SPLIT_PREFIX):
        return []
    parts = journal[len(SPLIT_PREFIX):].split(",")
    if not all(part.isascii() and part.isdigit() and len(part) <= 10 for part in parts):
        return []
    return [int(part) for part in parts]


def _clip(text: str, limit: int) -> str:
    """Text cut to at most `limit` UTF-8 octets, on a character boundary."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore")


class IppBackend(IppClient):
    """Delivers jobs to `ipp://host[:port]/path` or `ipps://host[:port]/path` (default port 631,
    default path /ipp/print), as an IppClient of that URI."""

    def __init__(
        self,
        uri: str,
        *,
        reactor: Any,
        clock: IReactorTime,
        connect_timeout: float,
        io_timeout: float,
        follow_timeout: float = 300.0,
        poll_interval: float = 5.0,
        probe_timeout: float = 5.0,
        tls_trust_root: Any = None,
    ) -> None:
        super().__init__(uri, reactor=reactor, clock=clock, connect_timeout=connect_timeout, io_timeout=io_timeout,
                         tls_trust_root=tls_trust_root)  # fmt: skip
        self._follow_timeout = follow_timeout
        self._poll_interval = poll_interval
        self._probe_timeout = probe_timeout
        self._capabilities: tuple[float, frozenset[int], frozenset[str], bool] | None = None

    # -- capabilities -------------------------------------------------------------------------------

    async def _capabilities_now(self) -> tuple[frozenset[int], frozenset[str], bool]:
        """The peer's operations-supported, document-format-supported and whether it takes jobs of
        several documents (multiple-document-jobs-supported true; absent means no, RFC 8011)."""
        now = self._clock.seconds()
        if self._capabilities is not None and now - self._capabilities[0] < CAPABILITIES_TTL:
            return self._capabilities[1], self._capabilities[2], self._capabilities[3]
        answer = await self._post(self._request(
            Operation.GET_PRINTER_ATTRIBUTES,
            Attribute.keyword("requested-attributes", "operations-supported", "document-format-supported",
                              "multiple-document-jobs-supported"),
        ))  # fmt: skip
        printer = answer.printer_attributes
        operations: frozenset[int] = frozenset()
        formats: frozenset[str] = frozenset()
        multiple = False
        if printer is not None:
            if (found := printer.get("operations-supported")) is not None:
                operations = frozenset(v for v in found.all if isinstance(v, int))
            if (found := printer.get("document-format-supported")) is not None:
                formats = frozenset(v.lower() for v in found.all if isinstance(v, str))
            if (found := printer.get("multiple-document-jobs-supported")) is not None:
                multiple = found.first is True
        self._capabilities = (now, operations, formats, multiple)
        return operations, formats, multiple

    # -- the backend interface ------------------------------------------------------------------------

    def probe(self) -> Deferred[None]:
        """Get-Printer-Attributes (printer-state, printer-is-accepting-jobs) within connect_timeout plus
        probe_timeout. A peer that is not accepting jobs fails the probe (retryably)."""
        return Deferred.fromCoroutine(self._probe())

    async def _probe(self) -> None:
        try:
            answer = await self._post(self._request(
                Operation.GET_PRINTER_ATTRIBUTES,
                Attribute.keyword("requested-attributes", "printer-state", "printer-is-accepting-jobs"),
            ), timeout=self._probe_timeout, what="Get-Printer-Attributes")  # fmt: skip
        except DeliveryError as error:
            raise DeliveryError(str(error), retryable=True) from None
        printer = answer.printer_attributes
        accepting = printer.get("printer-is-accepting-jobs") if printer is not None else None
        if accepting is not None and accepting.first is False:
            raise DeliveryError(f"{self.printer_uri} is not accepting jobs", retryable=True)

    def deliver(self, job: Job, files: list[DeliveryFile], journal: Journal | None = None,
                resume: PartialDelivery | None = None) -> Deferred[DeliveryReceipt]:  # fmt: skip
        return Deferred.fromCoroutine(self._deliver(job, files, journal, resume))

    def _job_attributes(self, job: Job, copies: int | None = None) -> list[Attribute]:
        attributes = []
        copies = job.copies if copies is None else copies
        if copies > 1:
            attributes.append(Attribute.integer("copies", copies))
        if job.sides:
            attributes.append(Attribute.keyword("sides", job.sides))
        ipp = job.attributes.get("ipp", {})
        if isinstance(ipp, dict):
            for key in ("media", "print-color-mode"):
                value = ipp.get(key)
                if isinstance(value, str) and value and len(value) <= 255:
                    attributes.append(Attribute.keyword(key, value))
        return attributes

    def _identity(self, job: Job) -> list[Attribute]:
        identity = [
            Attribute.name("requesting-user-name", _clip(job.user or "anonymous", 255)),
            Attribute.name("job-name", _clip(job.name or "untitled", 255)),
        ]
        if forward_uuid := forward_uuid_of(job):
            # This attempt's own job-uuid (CUPS keeps a client's): a lost answer's copy can be found.
            identity.append(Attribute.uri("job-uuid", f"urn:uuid:{forward_uuid}"))
        return identity

    @staticmethod
    def _format(document_format: str, formats: frozenset[str]) -> str:
        document_format = (document_format or OCTET_STREAM).lower()
        return document_format if document_format in formats else OCTET_STREAM

    async def _deliver(self, job: Job, files: list[DeliveryFile], journal: Journal | None,
                       resume: PartialDelivery | None = None) -> DeliveryReceipt:  # fmt: skip
        if not files:
            raise DeliveryError("the job has no documents", retryable=False)
        try:
            operations, formats, multiple = await self._capabilities_now()
        except DeliveryError as error:
            error.sent = False  # a question only: the peer has nothing of the job yet
            raise
        multi = Operation.CREATE_JOB in operations and Operation.SEND_DOCUMENT in operations
        if resume is not None or (len(files) > 1 and not (multi and multiple)):
            return await self._deliver_split(job, files, journal, resume, multi, formats)
        user = Attribute.name("requesting-user-name", _clip(job.user or "anonymous", 255))
        if multi:
            created = self._request(Operation.CREATE_JOB, *self._identity(job))
            if job_attributes := self._job_attributes(job):
                created.add_group(Tag.JOB, *job_attributes)
            job_id = self._job_id(await self._post(created))
            if journal is not None:
                journal(str(job_id))
            try:
                for number, delivery_file in enumerate(files, start=1):
                    send = self._request(
                        Operation.SEND_DOCUMENT, Attribute.integer("job-id", job_id), user,
                        Attribute.mime("document-format", self._format(delivery_file.document.document_format,
                                                                       formats)),
                        Attribute.boolean("last-document", number == len(files)),
                    )  # fmt: skip
                    await self._post(send, [delivery_file.path])
            except DeliveryError as error:
                # Canceled: nothing of it is left at the peer. Not canceled: an empty or partial job
                # (or a whole one whose answer was lost) may be, whatever stopped the sending.
                error.sent = not await self._cancel_quietly(job_id, job)
                raise
        else:
            document_format = self._format(files[0].document.document_format if len(files) == 1
                                           else job.document_format, formats)  # fmt: skip
            printed = self._request(Operation.PRINT_JOB, *self._identity(job),
                                    Attribute.mime("document-format", document_format))  # fmt: skip
            if job_attributes := self._job_attributes(job):
                printed.add_group(Tag.JOB, *job_attributes)
            accepted = await self._post(printed, [f.path for f in files])
            try:
                job_id = self._job_id(accepted)
            except DeliveryError:  # the peer has the job all the same: do not send it again
                return DeliveryReceipt(f"accepted by {self.printer_uri} without a job-id; not followed to completion")
            if journal is not None:
                journal(str(job_id))
        return await self._follow(job, job_id)

    @staticmethod
    def split_steps(job: Job, files: list[DeliveryFile]) -> list[tuple[DeliveryFile, int]]:
        """The peer jobs a job of several documents becomes where the peer takes one document per
        job: (document, copies) in order. Uncollated (the default): each document with all its
        copies; collated: rounds of one copy of every document."""
        handling = (job.attributes.get("ipp") or {}).get("multiple-document-handling")
        if handling == "separate-documents-collated-copies" and job.copies > 1 and len(files) > 1:
            return [(delivery_file, 1) for _ in range(job.copies) for delivery_file in files]
        return [(delivery_file, job.copies) for delivery_file in files]

    async def _deliver_split(self, job: Job, files: list[DeliveryFile], journal: Journal | None,
                             resume: PartialDelivery | None, multi: bool, formats: frozenset[str]) -> DeliveryReceipt:
        """One peer job per document, in order, each followed before the next goes (see the module's
        docstring); the journal records every peer job-id as soon as the peer gives it."""
        steps = self.split_steps(job, files)
        done = min(resume.documents_done, len(steps)) if resume is not None else 0
        job_ids = split_job_ids(resume.remote_job_id)[:done] if resume is not None else []
        if done and len(job_ids) < done:
            done, job_ids = 0, []  # a journal this backend did not write: send everything
        impressions: list[int | None] = []
        for number in range(done, len(steps)):
            delivery_file, copies = steps[number]
            document_format = self._format(delivery_file.document.document_format, formats)
            if multi:
                created = self._request(Operation.CREATE_JOB, *self._identity(job))
                if job_attributes := self._job_attributes(job, copies):
                    created.add_group(Tag.JOB, *job_attributes)
                job_id = self._job_id(await self._post(created))
                job_ids.append(job_id)
                if journal is not None:
                    journal(split_journal(job_ids))
                try:
                    await self._post(self._request(
                        Operation.SEND_DOCUMENT, Attribute.integer("job-id", job_id),
                        Attribute.name("requesting-user-name", _clip(job.user or "anonymous", 255)),
                        Attribute.mime("document-format", document_format), Attribute.boolean("last-document", True),
                    ), [delivery_file.path])  # fmt: skip
                except DeliveryError:
                    await self._cancel_quietly(job_id, job)
                    raise
            else:
                printed = self._request(Operation.PRINT_JOB, *self._identity(job),
                                        Attribute.mime("document-format", document_format))  # fmt: skip
                if job_attributes := self._job_attributes(job, copies):
                    printed.add_group(Tag.JOB, *job_attributes)
                job_id = self._job_id(await self._post(printed, [delivery_file.path]))
                job_ids.append(job_id)
                if journal is not None:
                    journal(split_journal(job_ids))
            impressions.append((await self._follow(job, job_id)).impressions)
        remote = split_journal(job_ids)
        if done == len(steps):
            return DeliveryReceipt(f"{self.printer_uri} already has every document of the job ({remote})",
                                   remote_job_id=remote, already_delivered=True)  # fmt: skip
        counted = None if done or any(count is None for count in impressions) else sum(c or 0 for c in impressions)
        return DeliveryReceipt(f"sent to {self.printer_uri} as {len(steps)} jobs, one per document ({remote})",
                               remote_job_id=remote, impressions=counted)  # fmt: skip

    def _job_id(self, answer: IppMessage) -> int:
        group = answer.job_attributes
        found = group.get("job-id") if group is not None else None
        if found is None or not isinstance(found.first, int) or isinstance(found.first, bool):
            raise DeliveryError(f"{self.printer_uri} accepted the job but gave no job-id", retryable=False)
        return found.first

    async def _job_state(self, job: Job, job_id: int, *, timeout: float | None = None) -> dict[str, Any]:
        answer = await self._post(self._request(
            Operation.GET_JOB_ATTRIBUTES, Attribute.integer("job-id", job_id),
            Attribute.name("requesting-user-name", _clip(job.user or "anonymous", 255)),
            Attribute.keyword("requested-attributes", "job-state", "job-state-reasons", "job-state-message",
                              "job-impressions-completed", "number-of-documents"),
        ), timeout=timeout)  # fmt: skip
        group = answer.job_attributes
        state: dict[str, Any] = {"state": None, "reasons": [], "message": "", "impressions": None, "documents": None}
        if group is None:
            return state
        if (found := group.get("job-state")) is not None and isinstance(found.first, int):
            state["state"] = found.first
        if (found := group.get("job-state-reasons")) is not None:
            state["reasons"] = [str(v) for v in found.all if isinstance(v, str)]
        if (found := group.get("job-state-message")) is not None and isinstance(found.first, str):
            state["message"] = found.first
        if (found := group.get("job-impressions-completed")) is not None and isinstance(found.first, int) \
                and not isinstance(found.first, bool):
            state["impressions"] = found.first
        if (found := group.get("number-of-documents")) is not None and isinstance(found.first, int) \
                and not isinstance(found.first, bool):
            state["documents"] = found.first
        return state

    async def _follow(self, job: Job, job_id: int) -> DeliveryReceipt:
        """Poll the peer's job until it is final. The peer has the whole job by now: cutting the
        following off (a cancel, when the server goes down) is no reason to send the job again."""
        not_followed = DeliveryReceipt(f"accepted by the peer as job {job_id} at {self.printer_uri};"
                                       " not followed to completion", remote_job_id=str(job_id))  # fmt: skip
        try:
            return await self._poll_until_final(job, job_id, not_followed)
        except CancelledError:
            # Found by bench/chaos.py: a cut while following sent a job the server had whole to the device.
            return not_followed

    async def _poll_until_final(self, job: Job, job_id: int, not_followed: DeliveryReceipt) -> DeliveryReceipt:
        remote = str(job_id)
        deadline = self._clock.seconds() + self._follow_timeout
        step = min(FIRST_POLL, self._poll_interval)
        while self._clock.seconds() < deadline:
            try:
                state = await self._job_state(job, job_id)
            except IppStatusError as error:
                if error.status in (Status.CLIENT_ERROR_NOT_FOUND, Status.CLIENT_ERROR_GONE):
                    return DeliveryReceipt(f"accepted by {self.printer_uri} as job {job_id}; the peer no longer"
                                           " knows the job", remote_job_id=remote)  # fmt: skip
                if not error.retryable:
                    return not_followed
                state = None
            except DeliveryError:
                state = None  # the peer has the job; a network hiccup while following changes nothing
            if state is not None:
                if state["state"] == JobState.COMPLETED:
                    return DeliveryReceipt(f"completed by {self.printer_uri} as job {job_id}", remote_job_id=remote,
                                           impressions=state["impressions"])  # fmt: skip
                if state["state"] in (JobState.CANCELED, JobState.ABORTED):
                    why = ", ".join(r for r in state["reasons"] if r != "none") or state["message"] or "no reason given"
                    word = "canceled" if state["state"] == JobState.CANCELED else "aborted"
                    raise DeliveryError(f"job {job_id} was {word} at {self.printer_uri}: {why}", retryable=False)
            wait = min(step, deadline - self._clock.seconds())
            if wait <= 0:
                break
            await deferLater(self._clock, wait)
            step = min(step * 2, self._poll_interval)  # quick at first (a fast printer), then gentler
        return not_followed

    async def _cancel_quietly(self, job_id: int, job: Job) -> bool:
        """Best effort: cancel a remote job whose documents did not all arrive. True if it is canceled."""
        try:
            await self._cancel(job, job_id)
        except DeliveryError:
            return False
        return True

    async def _cancel(self, job: Job, job_id: int, *, timeout: float | None = None) -> None:
        await self._post(self._request(
            Operation.CANCEL_JOB, Attribute.integer("job-id", job_id),
            Attribute.name("requesting-user-name", _clip(job.user or "anonymous", 255)),
        ), timeout=timeout)  # fmt: skip

    def recover(self, job: Job, remote_job_id: str | None) -> Deferred[DeliveryReceipt | PartialDelivery | None]:
        """Asks the peer about the job it gave `remote_job_id`: a receipt when it has the whole job,
        None (after Cancel-Job of a job still waiting for documents) when it must be sent again.
        Fails with a retryable DeliveryError when the peer cannot be asked."""
        return Deferred.fromCoroutine(self._recover(job, remote_job_id))

    async def _recover_split(self, job: Job, remote_job_id: str) -> PartialDelivery | None:
        """A job sent one peer job per document: the peer has every document up to the last job
        journaled if that job is whole; that last one is sent again otherwise (canceled first if it
        still waits for its document)."""
        job_ids = split_job_ids(remote_job_id)
        if not job_ids:
            return None
        whole = await self._recover(job, str(job_ids[-1]))
        done = len(job_ids) if whole is not None else len(job_ids) - 1
        return PartialDelivery(done, split_journal(job_ids[:done]))

    async def _recover(self, job: Job, remote_job_id: str | None) -> DeliveryReceipt | PartialDelivery | None:
        if remote_job_id is not None and remote_job_id.startswith(SPLIT_PREFIX):
            return await self._recover_split(job, remote_job_id)
        if remote_job_id is None or not (remote_job_id.strip().isascii() and remote_job_id.strip().isdigit()):
            return None
        job_id = int(remote_job_id)
        try:
            state = await self._job_state(job, job_id)
        except IppStatusError as error:
            if error.status in (Status.CLIENT_ERROR_NOT_FOUND, Status.CLIENT_ERROR_GONE):
                return None
            raise DeliveryError(str(error), retryable=True) from None
        if state["state"] is None or state["state"] in (JobState.CANCELED, JobState.ABORTED):
            return None
        if INCOMING_REASONS & set(state["reasons"]):
            try:
                await self._cancel(job, job_id)
            except IppStatusError as error:
                if error.retryable:
                    raise
                # not-found / not-possible: it is gone or final by now; either way send it again
            return None
        impressions = state["impressions"] if state["state"] == JobState.COMPLETED else None
        try:
            word = JobState(state["state"]).keyword
        except ValueError:
            word = f"job-state {state['state']}"
        return DeliveryReceipt(f"{self.printer_uri} already has the job as job {job_id} ({word})",
                               remote_job_id=str(job_id),
                               already_delivered=True, impressions=impressions)  # fmt: skip

    # -- in-doubt forwards (spooler.dispatch.reconcile) -------------------------------------------------------

    def find_forward(self, job: Job, remote_job_id: str | None, forward_uuid: str | None, *,
                     timeout: float | None = None) -> Deferred[RemoteCopy | None]:  # fmt: skip
        """What the peer holds of one forward of `job`: by its job-id (Get-Job-Attributes) when the
        peer gave one, else by the job-uuid the forward carried (Get-Jobs of the job's user, not
        completed, then completed). None when the peer has no such job. Fails with a retryable
        DeliveryError when the peer cannot be asked."""
        return Deferred.fromCoroutine(self._find_forward(job, remote_job_id, forward_uuid, timeout))

    async def _find_forward(self, job: Job, remote_job_id: str | None, forward_uuid: str | None,
                            timeout: float | None) -> RemoteCopy | None:  # fmt: skip
        remote = (remote_job_id or "").strip()
        if remote.isascii() and remote.isdigit() and 0 < int(remote) <= 0x7FFFFFFF:
            try:
                state = await self._job_state(job, int(remote), timeout=timeout)
            except IppStatusError as error:
                if error.status in (Status.CLIENT_ERROR_NOT_FOUND, Status.CLIENT_ERROR_GONE):
                    return None
                raise DeliveryError(str(error), retryable=True) from None
            return RemoteCopy(remote, state["state"] or 0, tuple(state["reasons"]), state["documents"])
        if not forward_uuid:
            return None
        wanted = f"urn:uuid:{forward_uuid}".lower()
        for which in ("not-completed", "completed"):
            try:
                answer = await self._post(self._request(
                    Operation.GET_JOBS, Attribute.name("requesting-user-name", _clip(job.user or "anonymous", 255)),
                    Attribute.boolean("my-jobs", True), Attribute.keyword("which-jobs", which),
                    Attribute.keyword("requested-attributes", "job-id", "job-uuid", "job-state", "job-state-reasons",
                                      "number-of-documents"),
                ), timeout=timeout, what="Get-Jobs")  # fmt: skip
            except IppStatusError as error:
                raise DeliveryError(str(error), retryable=True) from None
            for group in answer.groups_of(Tag.JOB):
                found = group.get("job-uuid")
                if found is None or not isinstance(found.first, str) or found.first.lower() != wanted:
                    continue
                job_id, state = group.get("job-id"), group.get("job-state")
                if job_id is None or not isinstance(job_id.first, int) or isinstance(job_id.first, bool):
                    continue
                reasons = group.get("job-state-reasons")
                documents = group.get("number-of-documents")
                return RemoteCopy(
                    str(job_id.first), state.first if state is not None and isinstance(state.first, int) else 0,
                    tuple(str(v) for v in reasons.all if isinstance(v, str)) if reasons is not None else (),
                    documents.first if documents is not None and isinstance(documents.first, int) else None,
                )  # fmt: skip
        return None

    def cancel_forward(self, job: Job, remote_job_id: str, *, timeout: float | None = None) -> Deferred[bool]:
        """Cancel-Job of the peer's copy of `job`: True once canceled, False if the peer says it can
        no longer be (already printed, canceled or gone: ask again what it became). Fails with a
        retryable DeliveryError when the peer cannot be asked."""

        async def cancel() -> bool:
            try:
                await self._cancel(job, int(remote_job_id), timeout=timeout)
            except IppStatusError as error:
                if error.retryable:
                    raise DeliveryError(str(error), retryable=True) from None
                return False
            return True

        return Deferred.fromCoroutine(cancel())


def forward_uuid_of(job: Job) -> str | None:
    """The job-uuid the dispatcher gave the forward under way (journaled in the job's delivery entry)."""
    delivery = job.attributes.get("delivery")
    value = delivery.get("forward_uuid") if isinstance(delivery, dict) else None
    return value if isinstance(value, str) and value else None
