"""The job service: where every front-end's job ends up (the JobSink of spooler.intake, and what the
IPP printer and the terminal ask). It makes received documents durable jobs (also document by
document, for IPP Create-Job), carries out what clients and admins ask (cancel, hold, release,
flush, pause) and tells the printer's condition. Protocols parse; this decides. Page figures are
spooler.jobs.figures', recovery and retention spooler.jobs.upkeep's.

Private print: a job whose first document carries a PJL release key (HOLDKEY, JOBPASSWORD), or whose
IPP request gave a job-password, is held with a scrypt verifier of the key; the key itself is taken
out of the document's head before it is stored (drivers.pjl.strip_hold_key, through the incoming
file's head filter). Releasing it takes the key (`release_with_key`), checked against a failure
budget per job; only the local admin may release it without (`release(..., without_key=True)`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from drivers.detect import OCTET_STREAM, PJL_LANGUAGES, sniff
from drivers.pjl import PjlHeader, parse_pjl_header, strip_hold_key
from spooler.config import Config
from spooler.dispatch.dispatcher import Dispatcher
from spooler.dispatch.router import HELD_OFFLINE, RELEASED_AT_DEVICE
from spooler.intake.base import JobRequest
from spooler.jobs.condition import PrinterCondition, describe_printer, queued_jobs
from spooler.jobs.figures import JobFigures
from spooler.login.budget import BudgetPolicy, FailureBudgets
from spooler.model import (Document, HoldKeyRefused, IllegalTransition, Job, JobState, NotAccepting, NotAuthorized,
                           SpoolFull)  # fmt: skip
from spooler.jobs.printer_settings import PrinterSettings
from spooler.states import transition
from spooler.store.database import JobStore, new_job_uuid, spool_file_name
from spooler.store.groupcommit import GroupCommit
from spooler.store.spoolfiles import (INCOMING_SUFFIX, IncomingFile, RunInThread, commit_file, remove_quietly,
                                      spool_floor)  # fmt: skip
from spooler.verifiers import check_verifier, make_verifier

log = Logger(namespace="spooler.jobs")

#: job-state-reasons of a job made by IPP Create-Job that still waits for its documents.
INCOMING = "job-incoming"
#: job-state-reasons of a job held because its queue holds new jobs (IPP Hold-New-Jobs, PWG 5100.11).
HELD_ON_CREATE = "job-held-on-create"
ANONYMOUS = "anonymous"
UNTITLED = "Untitled"
MAX_NAME_LENGTH = 255
#: A private job's key (PJL HOLDKEY, IPP job-password) is at most this long.
MAX_HOLD_KEY = 255
#: job-state-reasons of a private job waiting for its key (PWG 5100.11), and what it says.
PRIVATE_REASON = "job-password-wait"
PRIVATE_MESSAGE = "private print: held until released with its key"


def clean_text(value: str | None, *, limit: int = MAX_NAME_LENGTH) -> str | None:
    """A client-supplied name made safe to store and show: printable characters only, capped."""
    if value is None:
        return None
    cleaned = "".join(ch for ch in value if ch.isprintable()).strip()[:limit]
    return cleaned or None


class JobService:
    def __init__(
        self,
        *,
        config: Config,
        store: JobStore,
        dispatcher: Dispatcher,
        clock: IReactorTime,
        run_in_thread: RunInThread,
        figures: JobFigures | None = None,
        commit_thread: RunInThread | None = None,
        budgets: FailureBudgets | None = None,
    ) -> None:
        """`figures` counts the pages of every new job (None: no analysis); `commit_thread` runs the
        group commits of new jobs (default: `run_in_thread`); `budgets` counts wrong keys of private
        jobs (STATE/login.db in the daemon; in memory if None)."""
        self.config = config
        self.store = store
        self.dispatcher = dispatcher
        self._clock = clock
        self._run_in_thread = run_in_thread
        self._figures = figures
        self.incoming_timeout = config.ipp.multiple_operation_timeout
        #: What administrators set over IPP (paused, queues not accepting or holding new jobs, texts).
        self.settings = PrinterSettings.load(store)
        if self.settings.paused:
            dispatcher.pause()  # paused before a restart: stays paused
        self._next_document: dict[int, int] = {}
        self._conditions: dict[str | None, tuple[tuple[str, tuple[str, ...]], float]] = {}
        self._started_at = clock.seconds()
        self.floor = spool_floor(config)
        self.commits = GroupCommit(lambda: JobStore.open(config.database_path), commit_thread or run_in_thread)
        self.key_budgets = budgets or FailureBudgets.open(":memory:", clock)
        login = config.login
        self.key_policy = BudgetPolicy(login.max_failures, login.lockout, max(login.lockout, login.max_lockout))

    def reconfigure(self, config: Config) -> None:
        """A reload: the configuration the job service reads at use time (limits, spool floor, queues,
        the private-job key budget)."""
        self.config = config
        self.floor = spool_floor(config)
        login = config.login
        self.key_policy = BudgetPolicy(login.max_failures, login.lockout, max(login.lockout, login.max_lockout))

    def _now(self) -> float:
        """Seconds since the epoch, from the injected clock (the reactor in production)."""
        return self._clock.seconds()

    def now(self) -> float:
        return self._clock.seconds()

    @property
    def run_in_thread(self) -> RunInThread:
        """The injected helper that runs blocking work (file system) off the reactor thread."""
        return self._run_in_thread

    # -- intake ----------------------------------------------------------------------------------

    def accepting(self) -> bool:
        """Whether new jobs are taken (the spool is above its free-space floor)."""
        return self.floor.room().accepting

    def _refuse_when_full(self) -> None:
        if not self.accepting():
            raise SpoolFull(f"free space in {self.floor.folder} is below the floor of {self.floor.floor} bytes")

    @property
    def paused(self) -> bool:
        return self.settings.paused

    def accepting_jobs(self, queue: str) -> bool:
        """Whether `queue` takes new jobs as its administrators left it (the spool's room aside)."""
        return self.settings.queue(queue).accepting and not self.settings.shut_down

    def check_accepting(self, queue: str) -> None:
        """Raises NotAccepting when an administrator set `queue` not to take jobs."""
        if not self.accepting_jobs(queue):
            why = self.settings.queue(queue).reason or ("the printer is shut down" if self.settings.shut_down
                                                         else "an administrator disabled it")  # fmt: skip
            raise NotAccepting(f"queue {queue} does not accept jobs: {why}")

    def open_incoming(self, *, on_pressure: Callable[[bool], None] = lambda paused: None) -> IncomingFile:
        """Start receiving a document. Raises SpoolFull below the free-space floor."""
        self._refuse_when_full()
        return IncomingFile(
            self.config.incoming_dir,
            self._run_in_thread,
            max_size=self.config.limits.max_job_size,
            floor=self.floor,
            on_pressure=on_pressure,
            inline_max=self.config.spool.inline_max,
            head_filter=strip_hold_key,
        )

    @inlineCallbacks
    def submit(self, documents: IncomingFile | list[IncomingFile], request: JobRequest) -> Any:
        """Make one or more received documents a durable job; fires with the Job once data and row are
        on disk. Every document is discarded if any step fails.

        Order (DESIGN 3): data fsynced, renamed into the spool folder, folder fsynced; then the row is
        committed; only then does the caller acknowledge the client. A small document (up to
        spool.inline_max) has no file: its data goes into the same transaction as the row.
        """
        incoming = [documents] if isinstance(documents, IncomingFile) else list(documents)
        if not incoming:
            raise ValueError("a job needs at least one document")
        try:
            self.check_accepting(request.queue)
        except NotAccepting:
            for document in incoming:
                yield document.discard()
            raise
        committed: list[Path] = []
        file_names: list[str] = []
        inline: dict[int, bytes] = {}
        try:
            sizes = []
            for document in incoming:
                sizes.append((yield document.finish()))
            for number, document in enumerate(incoming, start=1):
                # The spool name comes from the intake's random token: the job id is given only when
                # the row is committed, so that ids (and so delivery order) follow commit order.
                destination = self.config.spool_dir / document.path.name.removesuffix(INCOMING_SUFFIX)
                file_names.append(destination.name)
                data = document.inline
                if data is not None:
                    inline[number] = data
                    continue
                yield self._run_in_thread(commit_file, document.path, destination)
                committed.append(destination)
        except BaseException:
            for document in incoming:
                yield document.discard()
            for path in committed:
                remove_quietly(path)
            raise
        try:
            job = yield self._record(incoming, file_names, sizes, request, inline)
        except BaseException:
            for path in committed:
                remove_quietly(path)
            raise
        self.store.notify(job)  # committed by the group commit's own connection: tell the observers here
        log.info(
            "Job {job_id} received from {user}@{host} over {protocol}: {name!r}, {size} bytes, {document_format}",
            spool_event="job_received", job_id=job.job_id, user=job.user, host=job.host, protocol=job.protocol,
            name=job.name, size=job.size, document_format=job.document_format, copies=job.copies,
            queue=job.queue, route=job.route.value, state=job.state.keyword, documents=len(incoming),
        )  # fmt: skip
        if job.state == JobState.PENDING:
            self.dispatcher.wake(queue=job.queue)
        self.analyze_later(job.job_id)
        return job

    @inlineCallbacks
    def _record(self, incoming: list[IncomingFile], file_names: list[str], sizes: list[int],
                request: JobRequest, inline: dict[int, bytes] | None = None) -> Any:  # fmt: skip
        """Build the job from what the protocol said and what its first document says, and commit it
        under the next job id (given here, then handed to the group commit at once, which commits
        jobs in the order they were handed in: ids follow commit order)."""
        header = self._pjl_header(incoming[0])
        formats = [self._detect_format(bytes(document.head), parse_pjl_header(bytes(document.head)))
                   for document in incoming]  # fmt: skip
        user = clean_text(request.user) or clean_text(header.user if header else None) or ANONYMOUS
        name = clean_text(request.name) or clean_text(header.job_name if header else None) or UNTITLED
        copies = request.copies or (header.copies if header else None) or 1
        sides = request.sides
        if sides is None and header is not None and header.duplex is not None:
            sides = "one-sided"
            if header.duplex:
                sides = "two-sided-short-edge" if header.binding == "shortedge" else "two-sided-long-edge"
        attributes = dict(request.attributes)
        if header is not None:
            attributes["pjl"] = {
                key: value
                for key, value in (
                    ("language", header.language), ("host", header.host), ("domain", header.domain),
                    ("color", header.color), ("paper", header.paper), ("hold", header.hold),
                )  # fmt: skip
                if value is not None
            }
        if request.document_format:
            attributes["declared_format"] = request.document_format
        key = request.hold_key or (header.hold_key if header is not None and header.private else None)
        asked = (header is not None and header.private) or request.hold or key is not None
        held_on_create = not asked and self.settings.queue(request.queue).holding_new_jobs  # Hold-New-Jobs
        held = asked or held_on_create
        attributes["documents"] = len(incoming)
        if request.hold:
            attributes["hold"] = True
        verifier = None
        if key:
            verifier = yield self._run_in_thread(make_verifier, key[:MAX_HOLD_KEY])
        expected_route, expected_mode = self.dispatcher.expected(request.queue)
        job_id = self.store.allocate_job_id()
        job = Job(
            job_id=job_id,
            uuid=new_job_uuid(),
            queue=request.queue,
            protocol=request.protocol,
            route=expected_route,
            mode=expected_mode,
            user=user,
            host=clean_text(request.host) or "",
            name=name,
            document_format=formats[0],
            size=sum(sizes),
            copies=max(1, min(copies, 9999)),
            sides=sides,
            state=JobState.PENDING_HELD if held else JobState.PENDING,
            reason=PRIVATE_REASON if verifier else HELD_ON_CREATE if held_on_create else
            "job-hold-until-specified" if held else "job-queued",
            message=PRIVATE_MESSAGE if verifier else "held: the queue holds new jobs" if held_on_create else
            "held until released" if held else "",
            created_at=self._now(),
            hold_key_verifier=verifier,
            attributes=attributes,
        )
        # Group commit: shares its transaction (and WAL fsync) with the jobs that get ready meanwhile.
        yield self.commits.insert(
            job,
            [Document(job_id, number, file_name, size, document_format)
             for number, (file_name, size, document_format) in enumerate(zip(file_names, sizes, formats), start=1)],
            inline or {},
        )
        return job

    @staticmethod
    def _pjl_header(document: IncomingFile) -> PjlHeader | None:
        """The PJL header of a document as it was received (with its key, which the stored head lacks)."""
        if isinstance(document.head_facts, PjlHeader):
            return document.head_facts
        return parse_pjl_header(bytes(document.head))

    @staticmethod
    def _detect_format(head: bytes, header: Any) -> str:
        if header is None:
            return sniff(head)
        if header.language in PJL_LANGUAGES:
            return PJL_LANGUAGES[header.language]
        inner = sniff(head[header.pdl_offset :])
        return inner if inner != "text/plain" else OCTET_STREAM

    # -- jobs whose documents come one by one (IPP Create-Job, Send-Document, Close-Job) -------------

    def hold_key_verifier(self, key: str) -> Deferred[str]:
        """The verifier of a private job's key (scrypt, off the reactor thread), for create_job."""
        return self._run_in_thread(make_verifier, key[:MAX_HOLD_KEY])

    def create_job(self, request: JobRequest, *, hold_key_verifier: str | None = None) -> Job:
        """A durable job without documents yet: pending-held with reason job-incoming, so the
        dispatcher leaves it alone until its last document arrives (or it is aborted). With a
        `hold_key_verifier` (of the request's job-password) it stays held, as a private job, once
        its documents are in."""
        self._refuse_when_full()
        self.check_accepting(request.queue)
        verifier = hold_key_verifier
        now = self._now()
        attributes = dict(request.attributes) | {"documents": 0, "incoming_since": now}
        if self.settings.queue(request.queue).holding_new_jobs:
            attributes["held_on_create"] = True
        if request.hold or verifier is not None:
            attributes["hold"] = True
        if request.document_format:
            attributes["declared_format"] = request.document_format
        expected_route, expected_mode = self.dispatcher.expected(request.queue)
        job = Job(
            job_id=self.store.allocate_job_id(),
            uuid=new_job_uuid(),
            queue=request.queue,
            protocol=request.protocol,
            route=expected_route,
            mode=expected_mode,
            user=clean_text(request.user) or ANONYMOUS,
            host=clean_text(request.host) or "",
            name=clean_text(request.name) or UNTITLED,
            document_format=request.document_format or OCTET_STREAM,
            size=0,
            copies=max(1, min(request.copies or 1, 9999)),
            sides=request.sides,
            state=JobState.PENDING_HELD,
            reason=INCOMING,
            message="waiting for its documents",
            created_at=now,
            hold_key_verifier=verifier,
            attributes=attributes,
        )
        self.store.insert_job(job, [])
        log.info(
            "Job {job_id} created by {user}@{host} over {protocol}: {name!r}, documents to follow",
            spool_event="job_created", job_id=job.job_id, user=job.user, host=job.host, protocol=job.protocol,
            name=job.name, queue=job.queue,
        )  # fmt: skip
        return job

    def incoming_job(self, job_id: int, *, requester: str | None, admin: bool = False) -> Job:
        """The job if it still takes documents from this requester; raises JobNotFound, NotAuthorized
        or IllegalTransition (closed, canceled or aborted) otherwise."""
        job = self.store.get(job_id)
        self.authorize(job, requester, admin)
        if job.state != JobState.PENDING_HELD or job.reason != INCOMING:
            raise IllegalTransition(job_id, job.state, JobState.PENDING)
        return job

    @inlineCallbacks
    def add_document(
        self, job_id: int, incoming: IncomingFile | None, last: bool, *, requester: str | None = None,
        admin: bool = False,
    ) -> Any:
        """Make one more document of a Create-Job job durable (data, then row); with `last` the job is
        closed and queued. Fires with the Job once everything is on disk."""
        try:
            job = self.incoming_job(job_id, requester=requester, admin=admin)
        except BaseException:
            if incoming is not None:
                yield incoming.discard()
            raise
        if incoming is not None:
            number = self._next_document.get(job_id, int(job.attributes.get("documents", 0))) + 1
            self._next_document[job_id] = number
            destination = self.config.spool_dir / spool_file_name(job_id, number)
            try:
                size = yield incoming.finish(inline_ok=False)
                yield self._run_in_thread(commit_file, incoming.path, destination)
            except BaseException:
                yield incoming.discard()
                remove_quietly(destination)
                raise
            head = bytes(incoming.head)
            document_format = self._detect_format(head, parse_pjl_header(head))
            header = self._pjl_header(incoming)
            verifier = None
            if number == 1 and header is not None and header.private and header.hold_key:
                verifier = yield self._run_in_thread(make_verifier, header.hold_key[:MAX_HOLD_KEY])
            try:
                job = self.incoming_job(job_id, requester=requester, admin=admin)  # canceled meanwhile?
                count = int(job.attributes.get("documents", 0)) + 1
                private = {"hold": True} if verifier is not None or (header is not None and header.private) else {}
                job = job.evolve(
                    size=job.size + size,
                    document_format=document_format if count == 1 else job.document_format,
                    attributes=job.attributes | {"documents": count, "incoming_since": self._now()} | private,
                    hold_key_verifier=job.hold_key_verifier or verifier,
                )
                self.store.add_document(job, Document(job_id, number, destination.name, size, document_format))
            except BaseException:
                remove_quietly(destination)
                raise
            log.info(
                "Job {job_id}: document {number} received, {size} bytes, {document_format}",
                spool_event="document_received", job_id=job_id, user=job.user, number=number, size=size,
                document_format=document_format,
            )  # fmt: skip
        if last:
            job = self._close_incoming(job)
        return job

    def close_job(self, job_id: int, *, requester: str | None = None, admin: bool = False) -> Job:
        """IPP Close-Job: no more documents will come."""
        return self._close_incoming(self.incoming_job(job_id, requester=requester, admin=admin))

    def _close_incoming(self, job: Job) -> Job:
        self._next_document.pop(job.job_id, None)
        now = self._now()
        if int(job.attributes.get("documents", 0)) == 0:
            closed = transition(job, JobState.ABORTED, now=now, reason="aborted-by-system",
                                message="closed without any document")  # fmt: skip
        elif job.hold_key_verifier is not None:
            closed = job.evolve(reason=PRIVATE_REASON, message=PRIVATE_MESSAGE)
        elif job.attributes.get("hold"):
            closed = job.evolve(reason="job-hold-until-specified", message="held until released")
        elif job.attributes.get("held_on_create"):
            closed = job.evolve(reason=HELD_ON_CREATE, message="held: the queue holds new jobs")
        else:
            closed = transition(job, JobState.PENDING, now=now, reason="job-queued", message="")
        self.store.update_job(closed)
        log.info(
            "Job {job_id} closed by its client: {size} bytes, {state}", spool_event="job_received",
            job_id=job.job_id, user=job.user, host=job.host, protocol=job.protocol, name=job.name, size=job.size,
            document_format=job.document_format, copies=job.copies, queue=job.queue, route=job.route.value,
            state=closed.state.keyword, documents=job.attributes.get("documents", 0),
        )  # fmt: skip
        if closed.state == JobState.PENDING:
            self.dispatcher.wake(queue=closed.queue)
        if closed.state != JobState.ABORTED:
            self.analyze_later(closed.job_id)
        return closed

    def expire_incoming(self) -> list[int]:
        """Abort Create-Job jobs whose client sent nothing for `incoming_timeout` seconds."""
        now = self._now()
        expired = []
        for job in self.store.list_jobs([JobState.PENDING_HELD]):
            since = float(job.attributes.get("incoming_since", job.created_at))
            if job.reason == INCOMING and now - since >= self.incoming_timeout:
                self._next_document.pop(job.job_id, None)
                self.store.update_job(transition(job, JobState.ABORTED, now=now, reason="aborted-by-system",
                                                 message="no document or Close-Job in time"))  # fmt: skip
                log.warn("Job {job_id} aborted: its client stopped sending documents", spool_event="job_aborted",
                         job_id=job.job_id, user=job.user)  # fmt: skip
                expired.append(job.job_id)
        return expired

    # -- the printer as IPP clients see it ----------------------------------------------------------

    def pause_printer(self, *, by: str | None) -> None:
        """Stop sending jobs to the device. A delivery under way is let finish (cutting it could print
        it twice); no new one starts until resume_printer. Kept across restarts."""
        if not self.settings.paused:
            self.settings.paused = True
            self.settings.save()
            self.dispatcher.pause()
            log.info("Printer paused by {by}", spool_event="printer_paused", by=by or "admin",
                     delivering=self.dispatcher.busy_with)  # fmt: skip

    def resume_printer(self, *, by: str | None) -> None:
        if self.settings.paused:
            self.settings.paused = False
            self.settings.save()
            self.dispatcher.resume()
            log.info("Printer resumed by {by}", spool_event="printer_resumed", by=by or "admin")

    def printer_condition(self, queue: str | None = None) -> PrinterCondition:
        """The printer's state as IPP reports it: of one queue (its jobs, its delivery, whether it
        accepts jobs, its offline policy), or of the whole spooler (queue None)."""
        counts = self.store.count_by_state(queue)
        room = self.accepting()
        shut_down = self.settings.shut_down
        accepting = room and (self.accepting_jobs(queue) if queue is not None else not shut_down)
        not_accepting = None
        if queue is not None and not shut_down and not self.accepting_jobs(queue):
            not_accepting = self.settings.queue(queue).reason
        names = [queue] if queue is not None else [q.name for q in self.config.queues]
        state, reasons, message = describe_printer(
            counts=counts, paused=self.paused, shut_down=shut_down, room=room,
            busy=(self.dispatcher.busy_with if queue is None else self.dispatcher.delivering(queue)) is not None,
            device=self.dispatcher.device, server=self.dispatcher.server_health,
            offline_policies={self.dispatcher.offline_policy(name) for name in names},
            not_accepting=not_accepting,
            holding_new_jobs=queue is not None and self.settings.queue(queue).holding_new_jobs,
        )  # fmt: skip
        previous = self._conditions.get(queue)
        since = self._now() if previous is not None and previous[0] != (state, reasons) else (
            previous[1] if previous is not None else self._started_at)  # fmt: skip
        self._conditions[queue] = ((state, reasons), since)
        return PrinterCondition(state, reasons, message, accepting, since, queued_jobs(counts))

    # -- what clients and admins ask ---------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        return self.store.get(job_id)

    def documents(self, job_id: int) -> list[Document]:
        return self.store.documents(job_id)

    def queue_names(self) -> list[str]:
        return [queue.name for queue in self.config.queues]

    def observe_jobs(self, listener: Callable[[Job], None]) -> None:
        """Call `listener` with every job written, once it is committed (IPP event notifications)."""
        self.store.observers.append(listener)

    def observe_server(self, listener: Callable[[str], None]) -> None:
        """Call `listener` with the central server's new health state whenever it changes."""
        self.dispatcher.server_listeners.append(listener)

    def spool_path(self, document: Document) -> Path:
        """Where the document's data is (or will be, for one stored inline) in the spool folder."""
        return self.config.spool_dir / document.file_name

    def authorize(self, job: Job, requester: str | None, admin: bool) -> None:
        if not admin and (requester is None or requester != job.user):
            raise NotAuthorized(f"only the owner of job {job.job_id} ({job.user}) or an admin may change it")

    def _change(self, job_id: int, wanted: JobState, *, requester: str | None, admin: bool, reason: str,
                message: str, event: str, attributes: dict[str, Any] | None = None) -> Job:  # fmt: skip
        job = self.store.get(job_id)
        self.authorize(job, requester, admin)
        changed = transition(job, wanted, now=self._now(), reason=reason, message=message)
        if wanted == JobState.PENDING:
            changed = changed.evolve(next_attempt_at=None)
        if attributes:
            changed = changed.evolve(attributes=changed.attributes | attributes)
        self.store.update_job(changed)
        log.info(
            "Job {job_id} {state} by {by}", spool_event=event, job_id=job_id, user=job.user,
            by=requester or "admin", state=changed.state.keyword,
        )  # fmt: skip
        return changed

    def cancel(self, job_id: int, *, requester: str | None = None, admin: bool = False) -> Job:
        job = self._change(job_id, JobState.CANCELED, requester=requester, admin=admin,
                           reason="job-canceled-by-user" if not admin else "job-canceled-by-operator",
                           message=f"canceled by {requester or 'admin'}", event="job_canceled")  # fmt: skip
        self.dispatcher.abort(job_id)
        return job

    def hold(self, job_id: int, *, requester: str | None = None, admin: bool = False) -> Job:
        return self._change(job_id, JobState.PENDING_HELD, requester=requester, admin=admin,
                            reason="job-hold-until-specified", message=f"held by {requester or 'admin'}",
                            event="job_held")  # fmt: skip

    def cancel_my_jobs(self, requester: str) -> list[Job]:
        """Cancel every unfinished job of `requester` (IPP Cancel-My-Jobs)."""
        canceled = []
        for job in self.list_jobs():
            if job.user == requester and not job.state.is_final:
                canceled.append(self.cancel(job.job_id, requester=requester))
        return canceled

    def _releasable(self, job_id: int, requester: str | None, admin: bool) -> Job:
        job = self.store.get(job_id)
        self.authorize(job, requester, admin)
        if job.reason == INCOMING:
            raise IllegalTransition(job_id, job.state, JobState.PENDING)  # its documents are still coming
        return job

    def release(self, job_id: int, *, requester: str | None = None, admin: bool = False, without_key: bool = False,
                to_device: bool = False) -> Job:  # fmt: skip
        """Release a held job. A private job needs its key (HoldKeyRefused "key-required": use
        release_with_key), unless an admin releases it `without_key` (logged as such). Released at
        the device (pull print: `to_device`), or held because the central server was down (offline
        pull print, whoever releases it), it prints on this device: the router's RELEASED_AT_DEVICE."""
        job = self._releasable(job_id, requester, admin)
        if job.hold_key_verifier is not None:
            if not without_key:
                raise HoldKeyRefused(job_id, "key-required")
            if not admin:
                raise NotAuthorized(f"only an admin may release the private job {job_id} without its key")
            log.warn("Private job {job_id} released by the admin without its key", spool_event="job_key_override",
                     job_id=job_id, user=job.user)  # fmt: skip
        return self._release(job_id, requester=requester, admin=admin, to_device=to_device)

    @inlineCallbacks
    def release_with_key(self, job_id: int, key: str, *, requester: str | None = None, admin: bool = False,
                         to_device: bool = False) -> Any:  # fmt: skip
        """Release a held job, giving its key: checked (off the reactor thread) against the job's
        verifier, within the job's failure budget (wrong keys lock it as wrong PINs lock a login).
        A job that has no key is released as by `release`. Fires with the Job, or fails with
        HoldKeyRefused ("wrong-key", "locked"), NotAuthorized, JobNotFound or IllegalTransition."""
        job = self._releasable(job_id, requester, admin)
        if job.hold_key_verifier is not None:
            scope = f"holdkey:{job.uuid}"
            wait = self.key_budgets.wait(scope, self.key_policy)
            if wait is not None:
                raise HoldKeyRefused(job_id, "locked", retry_after=wait)
            charge = self.key_budgets.charge(scope, self.key_policy)
            right = isinstance(key, str) and 0 < len(key) <= MAX_HOLD_KEY and \
                (yield self._run_in_thread(check_verifier, key, job.hold_key_verifier))  # fmt: skip
            if not right:
                log.warn("Private job {job_id}: a wrong key was given by {by}", spool_event="job_key_refused",
                         job_id=job_id, user=job.user, by=requester or "admin")  # fmt: skip
                raise HoldKeyRefused(job_id, "wrong-key")
            self.key_budgets.refund(charge)
        return self._release(job_id, requester=requester, admin=admin, to_device=to_device)

    def _release(self, job_id: int, *, requester: str | None, admin: bool, to_device: bool) -> Job:
        job = self.store.get(job_id)
        to_device = to_device or bool(job.attributes.get(HELD_OFFLINE))
        job = self._change(job_id, JobState.PENDING, requester=requester, admin=admin, reason="job-queued",
                           message=f"released by {requester or 'admin'}", event="job_released",
                           attributes={RELEASED_AT_DEVICE: True} if to_device else None)  # fmt: skip
        self.dispatcher.wake(queue=job.queue)
        return job

    def wake(self) -> None:
        """Look at the queue again now (LPD's "print waiting jobs" command)."""
        self.dispatcher.wake()

    def flush(self, job_ids: list[int] | None = None) -> list[int]:
        for job_id in job_ids or []:
            self.store.get(job_id)  # raises JobNotFound for an unknown id
        touched = self.dispatcher.flush(job_ids)
        log.info("Flush: retrying {count} job(s) now", spool_event="flush", count=len(touched), job_ids=touched)
        return touched

    def list_jobs(self, *, include_finished: bool = False, state: JobState | None = None) -> list[Job]:
        if state is not None:
            return self.store.list_jobs([state])
        if include_finished:
            return self.store.list_jobs()
        return self.store.list_jobs([JobState.PENDING, JobState.PENDING_HELD, JobState.PROCESSING,
                                     JobState.PROCESSING_STOPPED])  # fmt: skip

    def analyze_later(self, job_id: int) -> None:
        """Count the job's pages in the background (spooler.jobs.figures), if analysis is on."""
        if self._figures is not None:
            self._figures.analyze_later(job_id)

    def close(self) -> None:
        if self._figures is not None:
            self._figures.write_figures()
        self.commits.close()
