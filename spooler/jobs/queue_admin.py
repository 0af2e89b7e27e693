"""What administrators and job owners may do to queues and jobs beyond printing, cancelling, holding
and releasing (IPP/2.1 and 2.2, PWG 5100.11 and 5100.5): enable or disable a queue, hold its new
jobs, set its texts, shut the printer down and start it up; change a job that has not printed yet,
print a retained job again (as a new job, with its own id and accounting record), suspend and resume
the job being printed, reorder a queue, cancel or purge jobs, cancel or name a document.

The decisions and their checks are here; spooler.ipp maps requests onto these calls and the typed
errors onto statuses. Every change goes to the spool log; changes of jobs reach the IPP event
notifications through the store's observers, changes of the printer through `printer_changed`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from spooler.jobs.service import HELD_ON_CREATE, INCOMING, JobService, clean_text
from spooler.model import Document, Job, JobState, NotPossible
from spooler.jobs.printer_settings import SETTABLE_TEXTS
from spooler.store.spoolfiles import fsync_directory, remove_quietly
from spooler.states import transition
from spooler.store.database import new_job_uuid, spool_file_name

log = Logger(namespace="spooler.queue_admin")

SUSPENDED = "job-suspended"
#: What a copy of a job (Restart-Job, Reprocess-Job, Resubmit-Job) does not take from the original.
NOT_COPIED = ("delivery", "analysis", "impressions_reported", "held_offline", "release_to_device", "incoming_since",
              "queue_order", "canceled_documents", "held_on_create", "client_job_uuid")  # fmt: skip
SIDES = ("one-sided", "two-sided-long-edge", "two-sided-short-edge")
MAX_COPIES = 999


class QueueAdministration:
    """Administration of the queues of one JobService. `printer_changed(queue, event)` is called after
    each change of a queue's printer (queue None: every queue), with an IPP event keyword."""

    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs
        self.printer_changed: list[Callable[[str | None, str], None]] = []

    def _changed(self, queue: str | None, event: str) -> None:
        for listener in list(self.printer_changed):
            listener(queue, event)

    def _now(self) -> float:
        return self.jobs.now()

    # -- the queues' printers ----------------------------------------------------------------------

    def set_accepting(self, queue: str, accepting: bool, *, by: str, reason: str = "") -> None:
        """Enable-Printer / Disable-Printer: whether the queue takes new jobs (IPP, LPD, raw)."""
        settings = self.jobs.settings.queue(queue)
        settings.accepting, settings.reason = accepting, "" if accepting else clean_text(reason) or ""
        settings.config_changed_at = self._now()
        self.jobs.settings.save()
        log.info("Queue {queue} {what} by {by}", spool_event="queue_enabled" if accepting else "queue_disabled",
                 queue=queue, by=by, what="accepts jobs again" if accepting else "refuses new jobs")  # fmt: skip
        self._changed(queue, "printer-state-changed")

    def hold_new_jobs(self, queue: str, *, by: str) -> None:
        """Hold-New-Jobs: the queue's new jobs are held (job-held-on-create) until released."""
        settings = self.jobs.settings.queue(queue)
        settings.holding_new_jobs, settings.config_changed_at = True, self._now()
        self.jobs.settings.save()
        log.info("Queue {queue} holds new jobs, by {by}", spool_event="queue_holding_new_jobs", queue=queue, by=by)
        self._changed(queue, "printer-state-changed")

    def release_held_new_jobs(self, queue: str, *, by: str) -> list[int]:
        """Release-Held-New-Jobs: new jobs are no longer held, and those held for it are released."""
        settings = self.jobs.settings.queue(queue)
        settings.holding_new_jobs, settings.config_changed_at = False, self._now()
        self.jobs.settings.save()
        released = []
        for job in self.jobs.list_jobs(state=JobState.PENDING_HELD):
            if job.queue == queue and job.reason == HELD_ON_CREATE:
                released.append(self.jobs.release(job.job_id, admin=True).job_id)
        log.info("Queue {queue} released its held new jobs, by {by}", spool_event="queue_released_new_jobs",
                 queue=queue, by=by, job_ids=released)  # fmt: skip
        self._changed(queue, "printer-state-changed")
        return released

    def set_texts(self, queue: str, texts: dict[str, str], *, by: str) -> None:
        """Set-Printer-Attributes: printer-info, -location, -message-from-operator, -organization,
        -organizational-unit (kept across restarts). An empty text goes back to the configured one."""
        settings = self.jobs.settings.queue(queue)
        for name, value in texts.items():
            if name not in SETTABLE_TEXTS:
                raise NotPossible(f"{name} cannot be set")
            cleaned = "".join(ch for ch in value if ch.isprintable())[:SETTABLE_TEXTS[name]].strip()
            if cleaned:
                settings.texts[name] = cleaned
            else:
                settings.texts.pop(name, None)  # back to what the configuration says
        settings.config_changed_at = self._now()
        self.jobs.settings.save()
        log.info("Queue {queue}: {names} set by {by}", spool_event="printer_attributes_set", queue=queue, by=by,
                 names=sorted(texts))  # fmt: skip
        self._changed(queue, "printer-config-changed")

    def shutdown(self, *, by: str) -> None:
        """Shutdown-Printer: nothing more is sent to the device and no queue takes new jobs, until
        Startup-Printer (a delivery under way is let finish). Kept across restarts."""
        self.jobs.settings.shut_down = True
        self.jobs.settings.save()
        self.jobs.dispatcher.pause()
        log.info("Printer shut down by {by}", spool_event="printer_shutdown", by=by)
        self._changed(None, "printer-shutdown")

    def startup(self, *, by: str) -> None:
        """Startup-Printer: undoes Shutdown-Printer (a printer also paused stays paused)."""
        self.jobs.settings.shut_down = False
        self.jobs.settings.save()
        if not self.jobs.paused:
            self.jobs.dispatcher.resume()
        log.info("Printer started up by {by}", spool_event="printer_startup", by=by)
        self._changed(None, "printer-state-changed")

    def restart(self, *, by: str) -> list[int]:
        """Restart-Printer: started up if it was shut down, and every job waiting for the device is
        tried again now (a device that was failing is given a fresh chance)."""
        if self.jobs.settings.shut_down:
            self.jobs.settings.shut_down = False
            self.jobs.settings.save()
            if not self.jobs.paused:
                self.jobs.dispatcher.resume()
        retried = self.jobs.dispatcher.flush()
        log.info("Printer restarted by {by}; {count} job(s) retried now", spool_event="printer_restarted", by=by,
                 count=len(retried))  # fmt: skip
        self._changed(None, "printer-restarted")
        return retried

    # -- jobs that have not printed ------------------------------------------------------------------

    def set_job_attributes(self, job_id: int, *, requester: str | None, admin: bool, name: str | None = None,
                           hold: str | None = None, copies: int | None = None,
                           sides: str | None = None) -> Job:  # fmt: skip
        """Set-Job-Attributes: job-name, job-hold-until (no-hold | indefinite), copies, sides, while the
        job waits (pending, held, or still receiving its documents)."""
        job = self.jobs.get(job_id)
        self.jobs.authorize(job, requester, admin)
        if job.state not in (JobState.PENDING, JobState.PENDING_HELD):
            raise NotPossible(f"job {job_id} is {job.state.keyword}: it can no longer be changed")
        if copies is not None and not 1 <= copies <= MAX_COPIES:
            raise NotPossible(f"copies must be 1-{MAX_COPIES}")
        if sides is not None and sides not in SIDES:
            raise NotPossible(f"sides {sides} is not supported")
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = clean_text(name) or job.name
        if copies is not None:
            changes["copies"] = copies
        if sides is not None:
            changes["sides"] = sides
        changed = job.evolve(**changes)
        if hold == "indefinite":
            changed = changed.evolve(attributes=changed.attributes | {"hold": True})
            if changed.state == JobState.PENDING:
                changed = transition(changed, JobState.PENDING_HELD, now=self._now(), reason="job-hold-until-specified",
                                     message=f"held by {requester or 'admin'}")  # fmt: skip
        elif hold == "no-hold":
            changed = changed.evolve(attributes={k: v for k, v in changed.attributes.items() if k != "hold"})
            if changed.state == JobState.PENDING_HELD and changed.reason != INCOMING:
                changed = transition(changed, JobState.PENDING, now=self._now(), reason="job-queued",
                                     message=f"released by {requester or 'admin'}").evolve(next_attempt_at=None)
        self.jobs.store.update_job(changed)
        log.info("Job {job_id} changed by {by}: {changes}", spool_event="job_attributes_set", job_id=job_id,
                 user=job.user, by=requester or "admin",
                 changes=sorted(changes) + (["job-hold-until"] if hold else []))  # fmt: skip
        if changed.state == JobState.PENDING:
            self.jobs.dispatcher.wake(queue=job.queue)
        return changed

    def cancel_document(self, job_id: int, number: int, *, requester: str | None, admin: bool) -> Job:
        """Cancel-Document: the document is not printed (the job's other documents are). Canceling
        the last one left cancels the job."""
        job = self.jobs.get(job_id)
        self.jobs.authorize(job, requester, admin)
        numbers = [document.number for document in self.jobs.store.documents(job_id)]
        canceled = set(job.attributes.get("canceled_documents") or ())
        if number not in numbers:
            raise NotPossible(f"job {job_id} has no document {number}")
        if number in canceled or job.state not in (JobState.PENDING, JobState.PENDING_HELD):
            raise NotPossible(f"document {number} of job {job_id} can no longer be canceled")
        canceled.add(number)
        job = job.evolve(attributes=job.attributes | {"canceled_documents": sorted(canceled)})
        self.jobs.store.update_job(job)
        log.info("Job {job_id}: document {number} canceled by {by}", spool_event="document_canceled", job_id=job_id,
                 user=job.user, number=number, by=requester or "admin")  # fmt: skip
        if canceled >= set(numbers) and job.reason != INCOMING:
            return self.jobs.cancel(job_id, requester=requester, admin=admin)
        return job

    def name_document(self, job_id: int, number: int, name: str, *, requester: str | None, admin: bool) -> Job:
        """Set-Document-Attributes: document-name."""
        job = self.jobs.get(job_id)
        self.jobs.authorize(job, requester, admin)
        if number not in [document.number for document in self.jobs.store.documents(job_id)]:
            raise NotPossible(f"job {job_id} has no document {number}")
        if job.state.is_final:
            raise NotPossible(f"job {job_id} is {job.state.keyword}")
        names = dict(job.attributes.get("document_names") or {})
        names[str(number)] = clean_text(name) or ""
        job = job.evolve(attributes=job.attributes | {"document_names": names})
        self.jobs.store.update_job(job)
        return job

    # -- printing a retained job again -------------------------------------------------------------

    @inlineCallbacks
    def copy_job(self, job_id: int, *, requester: str | None, admin: bool,
                 changes: dict[str, Any] | None = None) -> Any:  # fmt: skip
        """Restart-Job, Reprocess-Job, Resubmit-Job: a new job (its own id and accounting record) with
        the documents of a finished job whose files are still kept, and `changes` (name, copies, sides,
        ipp) applied. Fires with the new Job once it is durable."""
        source = self.jobs.get(job_id)
        self.jobs.authorize(source, requester, admin)
        if not source.state.is_final:
            raise NotPossible(f"job {job_id} is {source.state.keyword}: only a finished job can be printed again")
        if source.files_removed:
            raise NotPossible(f"the documents of job {job_id} are no longer kept")
        self.jobs.check_accepting(source.queue)
        store = self.jobs.store
        canceled = set(source.attributes.get("canceled_documents") or ())
        documents = [document for document in store.documents(job_id) if document.number not in canceled]
        if not documents:
            raise NotPossible(f"job {job_id} has no document left to print")
        new_id = store.allocate_job_id()
        copied: list[Document] = []
        inline: dict[int, bytes] = {}
        links: list[tuple[str, str]] = []
        for number, document in enumerate(documents, start=1):
            data = store.inline_data(job_id, document.number)
            name = spool_file_name(new_id, number)
            if data is not None:
                inline[number] = data
            else:
                links.append((document.file_name, name))
            copied.append(Document(new_id, number, name, document.size, document.document_format))
        spool = self.jobs.config.spool_dir

        def link_files() -> None:
            for existing, name in links:
                os.link(spool / existing, spool / name)  # the same bytes, durable already
            fsync_directory(spool)

        try:
            yield self.jobs.run_in_thread(link_files)
        except FileNotFoundError:
            for _, name in links:
                remove_quietly(spool / name)
            raise NotPossible(f"the documents of job {job_id} are no longer kept") from None
        changes = dict(changes or {})
        attributes = {k: v for k, v in source.attributes.items() if k not in NOT_COPIED}
        attributes |= {"documents": len(copied), "copied_from": job_id}
        if "ipp" in changes:
            attributes["ipp"] = dict(attributes.get("ipp") or {}) | changes.pop("ipp")
        held = source.hold_key_verifier is not None or bool(attributes.get("hold"))
        route, mode = self.jobs.dispatcher.expected(source.queue)
        job = source.evolve(
            job_id=new_id, uuid=new_job_uuid(), size=sum(d.size for d in copied), route=route, mode=mode,
            state=JobState.PENDING_HELD if held else JobState.PENDING,
            reason="job-hold-until-specified" if held else "job-queued",
            message=f"a copy of job {job_id}" + (": held until released" if held else ""),
            attempts=0, next_attempt_at=None, processing_at=None, completed_at=None, files_removed=False,
            created_at=self._now(), attributes=attributes, **changes,
        )  # fmt: skip
        try:
            store.insert_jobs([(job, copied, inline)])
        except BaseException:
            for _, name in links:
                remove_quietly(spool / name)
            raise
        log.info("Job {job_id} made from job {source} by {by}", spool_event="job_copied", job_id=new_id,
                 source=job_id, user=job.user, by=requester or "admin", queue=job.queue)  # fmt: skip
        if job.state == JobState.PENDING:
            self.jobs.dispatcher.wake(queue=job.queue)
        self.jobs.analyze_later(new_id)
        return job

    # -- the job being printed -----------------------------------------------------------------------

    def current_job(self, queue: str) -> Job:
        job_id = self.jobs.dispatcher.delivering(queue)
        if job_id is None:
            raise NotPossible(f"queue {queue} is not printing a job")
        return self.jobs.get(job_id)

    def cancel_current(self, queue: str, *, by: str) -> Job:
        """Cancel-Current-Job."""
        return self.jobs.cancel(self.current_job(queue).job_id, requester=by, admin=True)

    def suspend_current(self, queue: str, *, by: str) -> Job:
        """Suspend-Current-Job: the delivery under way is cut off and the job stops (processing-
        stopped, job-suspended) until Resume-Job; the queue goes on with the next job."""
        job = self.current_job(queue)
        stopped = transition(job, JobState.PROCESSING_STOPPED, now=self._now(), reason=SUSPENDED,
                             message=f"suspended by {by}")  # fmt: skip
        self.jobs.store.update_job(stopped)
        self.jobs.dispatcher.abort(job.job_id)
        log.info("Job {job_id} suspended by {by}", spool_event="job_suspended", job_id=job.job_id, user=job.user,
                 by=by)  # fmt: skip
        return stopped

    def resume_job(self, job_id: int, *, requester: str | None, admin: bool) -> Job:
        """Resume-Job: a suspended job waits for the device again (printed from its start)."""
        job = self.jobs.get(job_id)
        self.jobs.authorize(job, requester, admin)
        if job.state != JobState.PROCESSING_STOPPED or job.reason != SUSPENDED:
            raise NotPossible(f"job {job_id} is not suspended")
        resumed = transition(job, JobState.PENDING, now=self._now(), reason="job-queued",
                             message=f"resumed by {requester or 'admin'}")  # fmt: skip
        self.jobs.store.update_job(resumed)
        log.info("Job {job_id} resumed by {by}", spool_event="job_resumed", job_id=job_id, user=job.user,
                 by=requester or "admin")  # fmt: skip
        self.jobs.dispatcher.wake(queue=job.queue)
        return resumed

    # -- the order of a queue ------------------------------------------------------------------------

    def _movable(self, job_id: int) -> Job:
        job = self.jobs.get(job_id)
        if job.state not in (JobState.PENDING, JobState.PENDING_HELD):
            raise NotPossible(f"job {job_id} is {job.state.keyword}: only a waiting job can be moved")
        return job

    def _place(self, job: Job, place: float, by: str) -> Job:
        moved = job.evolve(attributes=job.attributes | {"queue_order": place})
        self.jobs.store.update_job(moved)
        log.info("Job {job_id} moved in queue {queue} by {by}", spool_event="job_moved", job_id=job.job_id,
                 user=job.user, queue=job.queue, by=by)  # fmt: skip
        self._changed(job.queue, "printer-queue-order-changed")
        self.jobs.dispatcher.wake(queue=job.queue)
        return moved

    def promote(self, job_id: int, *, by: str) -> Job:
        """Promote-Job: the job is the next to print (after the one under way)."""
        job = self._movable(job_id)
        order = [place for other, place in self.jobs.store.queue_order(job.queue) if other != job_id]
        return self._place(job, (min(order) if order else float(job_id)) - 1, by)

    def schedule_after(self, job_id: int, after: int | None, *, by: str) -> Job:
        """Schedule-Job-After: the job prints right after job `after` (None: last)."""
        job = self._movable(job_id)
        order = [(other, place) for other, place in self.jobs.store.queue_order(job.queue) if other != job_id]
        if after is None:
            return self._place(job, (max(p for _, p in order) if order else float(job_id)) + 1, by)
        places = [place for other, place in order if other == after]
        if not places:
            raise NotPossible(f"job {after} does not wait in queue {job.queue}")
        later = [place for _, place in order if place > places[0]]
        return self._place(job, (places[0] + min(later)) / 2 if later else places[0] + 1, by)

    # -- many jobs at once ---------------------------------------------------------------------------

    def cancel_jobs(self, queue: str, job_ids: list[int] | None, *, by: str) -> list[int]:
        """Cancel-Jobs: the listed jobs of the queue (each must exist and not be finished: none is
        canceled otherwise), or every unfinished job of the queue."""
        if job_ids is None:
            targets = [job for job in self.jobs.list_jobs() if job.queue == queue]
        else:
            targets = [self.jobs.get(job_id) for job_id in job_ids]
            done = [job.job_id for job in targets if job.state.is_final or job.queue != queue]
            if done:
                raise NotPossible(f"job(s) {', '.join(map(str, done))} cannot be canceled here")
        return [self.jobs.cancel(job.job_id, requester=by, admin=True).job_id for job in targets]

    @inlineCallbacks
    def purge_jobs(self, queue: str, *, by: str) -> Any:
        """Purge-Jobs: every unfinished job of the queue is canceled, and every job of the queue is
        removed with its files (the accounting records stay). Fires with the number removed."""
        self.cancel_jobs(queue, None, by=by)
        doomed = [job for job in self.jobs.store.list_jobs() if job.queue == queue and job.state.is_final]
        paths = [self.jobs.config.spool_dir / document.file_name
                 for job in doomed for document in self.jobs.store.documents(job.job_id)]  # fmt: skip
        if paths:
            yield self.jobs.run_in_thread(lambda: [remove_quietly(path) for path in paths])
        self.jobs.store.delete_jobs(job.job_id for job in doomed)
        log.info("Queue {queue} purged by {by}: {count} job(s) removed", spool_event="queue_purged", queue=queue,
                 by=by, count=len(doomed))  # fmt: skip
        return len(doomed)
