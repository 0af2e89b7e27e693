"""Upkeep of the spool: start-up recovery (after any stop, clean or not: partial uploads discarded,
orphan files removed, jobs that were being delivered put back in their queue — a forward to the
central server among them kept in doubt — jobs whose data is missing aborted) and retention (the files of finished jobs removed after spool.keep_files, their
records after spool.keep_history)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from spooler.config import Config
from spooler.dispatch.reconcile import interrupted_forward
from spooler.jobs.service import INCOMING
from spooler.model import JobState
from spooler.states import recover_after_restart, transition
from spooler.store.database import JobStore
from spooler.store.spoolfiles import RunInThread, ensure_private_dir, fsync_directory, remove_quietly

log = Logger(namespace="spooler.jobs")


class SpoolUpkeep:
    def __init__(self, *, config: Config, store: JobStore, clock: IReactorTime, run_in_thread: RunInThread,
                 analyze_later: Callable[[int], None] | None = None) -> None:  # fmt: skip
        """`analyze_later` is given every job whose page figures a stop cut off (None: no analysis)."""
        self._config = config
        self._store = store
        self._clock = clock
        self._run_in_thread = run_in_thread
        self._analyze_later = analyze_later or (lambda job_id: None)

    def reconfigure(self, config: Config) -> None:
        """A reload: the retention times apply from the next pass."""
        self._config = config

    def _now(self) -> float:
        return self._clock.seconds()

    def recover(self) -> None:
        """Make the spool consistent after any stop, clean or not (runs before the listeners open)."""
        for directory in (self._config.spool_dir, self._config.incoming_dir):
            ensure_private_dir(directory)
        for partial in sorted(self._config.incoming_dir.iterdir()):
            remove_quietly(partial)
            log.info("Discarded incomplete incoming data {file} (never acknowledged)",
                     spool_event="incoming_discarded", file=partial.name)  # fmt: skip
        referenced = self._store.all_file_names()
        inline_names = self._store.inline_file_names()
        for path in sorted(self._config.spool_dir.iterdir()):
            if path.name in inline_names:
                remove_quietly(path)  # a copy that was never fsynced: written again when needed
                continue
            if path.name not in referenced:
                remove_quietly(path)
                log.info("Removed orphan spool file {file} (its job was never committed)",
                         spool_event="orphan_removed", file=path.name)  # fmt: skip
        now = self._now()
        for job in self._store.list_jobs([JobState.PENDING, JobState.PENDING_HELD, JobState.PROCESSING,
                                          JobState.PROCESSING_STOPPED]):  # fmt: skip
            missing = [d.file_name for d in self._store.documents(job.job_id)
                       if d.file_name not in inline_names and not (self._config.spool_dir / d.file_name).exists()]
            if missing:
                aborted = transition(job, JobState.ABORTED, now=now, reason="document-access-error",
                                     message=f"spool data missing: {', '.join(missing)}")  # fmt: skip
                self._store.update_job(aborted)
                log.error("Job {job_id} aborted: its spool data is missing", spool_event="job_aborted",
                          job_id=job.job_id, user=job.user, missing=missing)  # fmt: skip
                continue
            if job.state == JobState.PENDING_HELD and job.reason == INCOMING:
                self._store.update_job(transition(job, JobState.ABORTED, now=now, reason="aborted-by-system",
                                                  message="the spooler restarted before the job was closed"))
                log.warn("Job {job_id} aborted: the spooler restarted before its client closed it",
                         spool_event="job_aborted", job_id=job.job_id, user=job.user)  # fmt: skip
                continue
            recovered = recover_after_restart(job, now=now)
            if recovered is None and job.next_attempt_at is not None:
                # A restart is a fresh start: the device (or its configuration) may have been fixed.
                self._store.update_job(job.evolve(next_attempt_at=None))
            if recovered is not None:
                # A forward to the server cut off by the stop is in doubt (spooler.dispatch.reconcile).
                doubt = interrupted_forward(job, now=now, cause="the spooler stopped before the server's answer") \
                    if job.state == JobState.PROCESSING else None
                if doubt is not None:
                    self._store.record_forward_in_doubt(doubt, recovered)
                    log.warn("Job {job_id}: the forward to {server} cut off by the restart is in doubt",
                             spool_event="forward_in_doubt", job_id=job.job_id, server=doubt.uri, cause=doubt.cause,
                             forward_uuid=doubt.forward_uuid, remote_job_id=doubt.remote_job_id)  # fmt: skip
                else:
                    self._store.update_job(recovered)
                log.info("Job {job_id} requeued after a restart", spool_event="job_requeued",
                         job_id=job.job_id, user=job.user)  # fmt: skip
        fsync_directory(self._config.spool_dir)
        for job in self._store.list_jobs():
            if "analysis" not in job.attributes and not job.files_removed and job.reason != INCOMING \
                    and job.state != JobState.ABORTED:
                self._analyze_later(job.job_id)  # cut off by a stop before its figures were in

    @inlineCallbacks
    def purge(self) -> Any:
        """Retention: remove the files of finished jobs after keep_files, their rows after keep_history.
        Fires with (jobs whose files were removed, records removed). Files go first, off the reactor
        thread; a row is only marked or deleted once its files are gone."""
        now = self._now()
        expired_files = self._store.finished_before(now - self._config.spool.keep_files, files_present=True)
        expired_rows = self._store.finished_before(now - self._config.spool.keep_history)
        doomed = {job.job_id: job for job in expired_files + expired_rows}
        paths = [self._config.spool_dir / document.file_name
                 for job_id in doomed for document in self._store.documents(job_id)]  # fmt: skip
        if paths:
            yield self._run_in_thread(lambda: [remove_quietly(path) for path in paths])
        for job in expired_files:
            self._store.update_job(self._store.get(job.job_id).evolve(files_removed=True))
        if expired_files:
            self._store.drop_inline_data(job.job_id for job in expired_files)
        self._store.delete_jobs(job.job_id for job in expired_rows)
        if expired_files or expired_rows:
            log.info("Retention: removed the files of {files} job(s) and the records of {rows} job(s)",
                     spool_event="retention", files=len(expired_files), rows=len(expired_rows))  # fmt: skip
        return len(expired_files), len(expired_rows)
