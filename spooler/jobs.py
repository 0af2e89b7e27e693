"""The job service: where every front-end's job ends up. It accepts incoming documents, makes them
durable jobs, and carries out what clients and admins ask (cancel, hold, release, flush), start-up
recovery and retention. Protocols parse; this decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from drivers.detect import OCTET_STREAM, PJL_LANGUAGES, sniff
from spooler.config import Config
from spooler.dispatch import Dispatcher
from spooler.model import Document, Job, JobState, NotAuthorized, SpoolFull
from spooler.pjl import parse_pjl_header
from spooler.spoolfiles import (
    IncomingFile,
    RunInThread,
    commit_file,
    ensure_private_dir,
    free_space,
    fsync_directory,
    remove_quietly,
)
from spooler.states import recover_after_restart, transition
from spooler.store import JobStore, new_job_uuid, spool_file_name
from spooler.verifiers import make_verifier

log = Logger(namespace="spooler.jobs")

DEFAULT_QUEUE = "default"
ANONYMOUS = "anonymous"
UNTITLED = "Untitled"
MAX_NAME_LENGTH = 255


def clean_text(value: str | None, *, limit: int = MAX_NAME_LENGTH) -> str | None:
    """A client-supplied name made safe to store and show: printable characters only, capped."""
    if value is None:
        return None
    cleaned = "".join(ch for ch in value if ch.isprintable()).strip()[:limit]
    return cleaned or None


@dataclass(frozen=True)
class JobRequest:
    """What a front-end learned about a job from its protocol (None: it did not say)."""

    protocol: str
    host: str
    queue: str = DEFAULT_QUEUE
    user: str | None = None
    name: str | None = None
    document_format: str | None = None
    copies: int | None = None
    sides: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


class JobService:
    def __init__(
        self,
        *,
        config: Config,
        store: JobStore,
        dispatcher: Dispatcher,
        clock: IReactorTime,
        run_in_thread: RunInThread,
    ) -> None:
        self.config = config
        self.store = store
        self.dispatcher = dispatcher
        self._clock = clock
        self._run_in_thread = run_in_thread

    def _now(self) -> float:
        """Seconds since the epoch, from the injected clock (the reactor in production)."""
        return self._clock.seconds()

    # -- intake ----------------------------------------------------------------------------------

    def space_left(self) -> int:
        return free_space(self.config.spool_dir)

    def accepting(self) -> bool:
        return self.space_left() >= self.config.spool.min_free_space

    def open_incoming(self, *, on_pressure: Callable[[bool], None] = lambda paused: None) -> IncomingFile:
        """Start receiving a document. Raises SpoolFull below the free-space floor."""
        if not self.accepting():
            raise SpoolFull(
                f"free space in {self.config.spool_dir} is below the floor of {self.config.spool.min_free_space} bytes"
            )
        return IncomingFile(
            self.config.incoming_dir,
            self._run_in_thread,
            max_size=self.config.limits.max_job_size,
            min_free_space=self.config.spool.min_free_space,
            on_pressure=on_pressure,
        )

    @inlineCallbacks
    def submit(self, documents: IncomingFile | list[IncomingFile], request: JobRequest) -> Any:
        """Make one or more received documents a durable job; fires with the Job once data and row are
        on disk. Every document is discarded if any step fails.

        Order (DESIGN 3): data fsynced, renamed into the spool folder, folder fsynced; then the row is
        committed; only then does the caller acknowledge the client.
        """
        incoming = [documents] if isinstance(documents, IncomingFile) else list(documents)
        if not incoming:
            raise ValueError("a job needs at least one document")
        committed: list[Path] = []
        try:
            sizes = []
            for document in incoming:
                sizes.append((yield document.finish()))
            job_id = self.store.allocate_job_id()
            for number, document in enumerate(incoming, start=1):
                destination = self.config.spool_dir / spool_file_name(job_id, number)
                yield self._run_in_thread(commit_file, document.path, destination)
                committed.append(destination)
        except BaseException:
            for document in incoming:
                yield document.discard()
            for path in committed:
                remove_quietly(path)
            raise
        try:
            job = yield self._record(job_id, incoming, sizes, request)
        except BaseException:
            for path in committed:
                remove_quietly(path)
            raise
        log.info(
            "Job {job_id} received from {user}@{host} over {protocol}: {name!r}, {size} bytes, {document_format}",
            spool_event="job_received", job_id=job.job_id, user=job.user, host=job.host, protocol=job.protocol,
            name=job.name, size=job.size, document_format=job.document_format, copies=job.copies,
            queue=job.queue, route=job.route.value, state=job.state.keyword, documents=len(incoming),
        )  # fmt: skip
        if job.state == JobState.PENDING:
            self.dispatcher.wake()
        return job

    @inlineCallbacks
    def _record(self, job_id: int, incoming: list[IncomingFile], sizes: list[int], request: JobRequest) -> Any:
        """Build the job from what the protocol said and what its first document says, and commit it."""
        head = bytes(incoming[0].head)
        header = parse_pjl_header(head)
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
        held = header is not None and header.private
        verifier = None
        if held and header is not None and header.hold_key:
            verifier = yield self._run_in_thread(make_verifier, header.hold_key)
        job = Job(
            job_id=job_id,
            uuid=new_job_uuid(),
            queue=request.queue,
            protocol=request.protocol,
            user=user,
            host=clean_text(request.host) or "",
            name=name,
            document_format=formats[0],
            size=sum(sizes),
            copies=max(1, min(copies, 9999)),
            sides=sides,
            state=JobState.PENDING_HELD if held else JobState.PENDING,
            reason="job-hold-until-specified" if held else "job-queued",
            message="private print: held until released" if held else "",
            created_at=self._now(),
            hold_key_verifier=verifier,
            attributes=attributes,
        )
        self.store.insert_job(
            job,
            [Document(job_id, number, spool_file_name(job_id, number), size, document_format)
             for number, (size, document_format) in enumerate(zip(sizes, formats), start=1)],  # fmt: skip
        )
        return job

    @staticmethod
    def _detect_format(head: bytes, header: Any) -> str:
        if header is None:
            return sniff(head)
        if header.language in PJL_LANGUAGES:
            return PJL_LANGUAGES[header.language]
        inner = sniff(head[header.pdl_offset :])
        return inner if inner != "text/plain" else OCTET_STREAM

    # -- what clients and admins ask ---------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        return self.store.get(job_id)

    def _authorize(self, job: Job, requester: str | None, admin: bool) -> None:
        if not admin and (requester is None or requester != job.user):
            raise NotAuthorized(f"only the owner of job {job.job_id} ({job.user}) or an admin may change it")

    def _change(self, job_id: int, wanted: JobState, *, requester: str | None, admin: bool, reason: str,
                message: str, event: str) -> Job:  # fmt: skip
        job = self.store.get(job_id)
        self._authorize(job, requester, admin)
        changed = transition(job, wanted, now=self._now(), reason=reason, message=message)
        if wanted == JobState.PENDING:
            changed = changed.evolve(next_attempt_at=None)
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

    def release(self, job_id: int, *, requester: str | None = None, admin: bool = False) -> Job:
        job = self._change(job_id, JobState.PENDING, requester=requester, admin=admin, reason="job-queued",
                           message=f"released by {requester or 'admin'}", event="job_released")  # fmt: skip
        self.dispatcher.wake()
        return job

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

    def queue_counts(self) -> dict[str, int]:
        counts = self.store.count_by_state()
        return {state.keyword: counts.get(state, 0) for state in JobState}

    # -- start-up recovery and retention -----------------------------------------------------------

    def recover(self) -> None:
        """Make the spool consistent after any stop, clean or not (runs before the listeners open)."""
        for directory in (self.config.spool_dir, self.config.incoming_dir):
            ensure_private_dir(directory)
        for partial in sorted(self.config.incoming_dir.iterdir()):
            remove_quietly(partial)
            log.info("Discarded incomplete incoming data {file} (never acknowledged)",
                     spool_event="incoming_discarded", file=partial.name)  # fmt: skip
        referenced = self.store.all_file_names()
        for path in sorted(self.config.spool_dir.iterdir()):
            if path.name not in referenced:
                remove_quietly(path)
                log.info("Removed orphan spool file {file} (its job was never committed)",
                         spool_event="orphan_removed", file=path.name)  # fmt: skip
        now = self._now()
        for job in self.store.list_jobs([JobState.PENDING, JobState.PENDING_HELD, JobState.PROCESSING,
                                         JobState.PROCESSING_STOPPED]):  # fmt: skip
            missing = [d.file_name for d in self.store.documents(job.job_id)
                       if not (self.config.spool_dir / d.file_name).exists()]  # fmt: skip
            if missing:
                aborted = transition(job, JobState.ABORTED, now=now, reason="document-access-error",
                                     message=f"spool data missing: {', '.join(missing)}")  # fmt: skip
                self.store.update_job(aborted)
                log.error("Job {job_id} aborted: its spool data is missing", spool_event="job_aborted",
                          job_id=job.job_id, user=job.user, missing=missing)  # fmt: skip
                continue
            recovered = recover_after_restart(job, now=now)
            if recovered is None and job.next_attempt_at is not None:
                # A restart is a fresh start: the device (or its configuration) may have been fixed.
                self.store.update_job(job.evolve(next_attempt_at=None))
            if recovered is not None:
                self.store.update_job(recovered)
                log.info("Job {job_id} requeued after a restart", spool_event="job_requeued",
                         job_id=job.job_id, user=job.user)  # fmt: skip
        fsync_directory(self.config.spool_dir)

    @inlineCallbacks
    def purge(self) -> Any:
        """Retention: remove the files of finished jobs after keep_files, their rows after keep_history.
        Fires with (jobs whose files were removed, records removed). Files go first, off the reactor
        thread; a row is only marked or deleted once its files are gone."""
        now = self._now()
        expired_files = self.store.finished_before(now - self.config.spool.keep_files, files_present=True)
        expired_rows = self.store.finished_before(now - self.config.spool.keep_history)
        doomed = {job.job_id: job for job in expired_files + expired_rows}
        paths = [self.config.spool_dir / document.file_name
                 for job_id in doomed for document in self.store.documents(job_id)]  # fmt: skip
        if paths:
            yield self._run_in_thread(lambda: [remove_quietly(path) for path in paths])
        for job in expired_files:
            self.store.update_job(self.store.get(job.job_id).evolve(files_removed=True))
        self.store.delete_jobs(job.job_id for job in expired_rows)
        if expired_files or expired_rows:
            log.info("Retention: removed the files of {files} job(s) and the records of {rows} job(s)",
                     spool_event="retention", files=len(expired_files), rows=len(expired_rows))  # fmt: skip
        return len(expired_files), len(expired_rows)

    def spool_path(self, document: Document) -> Path:
        return self.config.spool_dir / document.file_name
