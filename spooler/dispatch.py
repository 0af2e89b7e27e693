"""The dispatcher: sends a queue's jobs to the device one at a time, in arrival order, and retries
with capped exponential backoff when the device cannot take them. It never drops a job and never
stops the queue silently: the job's message, the device status and the spool log say why it waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from spooler.delivery.base import DeliveryBackend, DeliveryFile, DeliveryReceipt
from spooler.model import DeliveryError, Job, JobState
from spooler.states import transition
from spooler.store import JobStore

log = Logger(namespace="spooler.dispatch")


@dataclass
class DeviceStatus:
    """What the dispatcher last learned about the device."""

    uri: str
    state: str = "unknown"  # unknown | ok | unreachable
    since: float | None = None
    detail: str = ""
    consecutive_failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "state": self.state,
            "since": self.since,
            "detail": self.detail,
            "consecutive_failures": self.consecutive_failures,
        }


def backoff_delay(failures: int, *, initial: float, maximum: float) -> float:
    """Seconds to wait after `failures` failed attempts in a row: initial, 2x, 4x, ... capped at maximum."""
    if failures <= 0:
        return 0.0
    return min(maximum, initial * 2 ** min(failures - 1, 32))


class Dispatcher:
    def __init__(
        self,
        *,
        store: JobStore,
        backend: DeliveryBackend,
        clock: IReactorTime,
        spool_dir: Path,
        retry_initial: float,
        retry_max: float,
        queue: str | None = None,
    ) -> None:
        """Delivers the jobs of `queue` to one device, or of every queue (None), in arrival order."""
        self._store = store
        self._backend = backend
        self._clock = clock
        self._spool_dir = spool_dir
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._queue = queue
        self.device = DeviceStatus(uri=backend.uri)
        self._running = False
        self._timer: IDelayedCall | None = None
        self._current: Deferred[Any] | None = None
        self._current_job_id: int | None = None
        self._stopping = False

    # -- control ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self.wake()

    def stop(self) -> Deferred[None]:
        """Stop dispatching; an attempt under way is cut off and its job goes back to pending."""
        self._running = False
        self._stopping = True
        self._cancel_timer()
        if self._current is not None:
            current = self._current
            current.cancel()
            return current.addBoth(lambda _: None)
        return succeed(None)

    def pause(self) -> None:
        """Start no new delivery until `resume`; one under way is let finish (cutting it off could
        print it twice)."""
        self._running = False
        self._cancel_timer()

    def resume(self) -> None:
        self.start()

    @property
    def paused(self) -> bool:
        return not self._running and not self._stopping

    def wake(self, delay: float = 0.0) -> None:
        """Look at the queue again after `delay` seconds (sooner if already scheduled sooner)."""
        if not self._running:
            return
        due = self._clock.seconds() + delay
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= due:
                return
            self._timer.cancel()
        self._timer = self._clock.callLater(delay, self._run)

    def flush(self, job_ids: list[int] | None = None) -> list[int]:
        """Retry now every job waiting for delivery (or only `job_ids`), in order. Returns those touched."""
        touched = []
        for job in self._store.list_jobs([JobState.PENDING]):
            if (self._queue is not None and job.queue != self._queue) or (
                job_ids is not None and job.job_id not in job_ids
            ):
                continue
            if job.next_attempt_at is not None:
                self._store.update_job(job.evolve(next_attempt_at=None))
            touched.append(job.job_id)
        self.device.consecutive_failures = 0
        self._cancel_timer()
        self.wake()
        return touched

    def abort(self, job_id: int) -> None:
        """Cut off the delivery of `job_id` if it is under way (its job was canceled)."""
        if self._current_job_id == job_id and self._current is not None:
            self._current.cancel()

    @property
    def busy_with(self) -> int | None:
        return self._current_job_id

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # -- the loop ----------------------------------------------------------------------------------

    def _run(self) -> None:
        self._timer = None
        if not self._running or self._current is not None:
            return
        job = self._store.head_of_queue(self._queue)
        if job is None:
            return
        now = self._clock.seconds()
        if job.next_attempt_at is not None and job.next_attempt_at > now:
            self.wake(job.next_attempt_at - now)
            return
        job = transition(job, JobState.PROCESSING, now=now, message=f"sending to {self._backend.uri}")
        self._store.update_job(job)
        documents = self._store.documents(job.job_id)
        files = [DeliveryFile(doc, self._spool_dir / doc.file_name) for doc in documents]
        log.info(
            "Job {job_id} sending to {device} (attempt {attempt})",
            spool_event="delivery_started", job_id=job.job_id, user=job.user, route=job.route.value,
            device=self._backend.uri, attempt=job.attempts, size=job.size,
        )  # fmt: skip
        self._current_job_id = job.job_id
        try:
            attempt = self._backend.deliver(job, files)
        except Exception:
            attempt = Deferred()
            attempt.errback()
        self._current = attempt
        attempt.addCallbacks(self._delivered, self._failed, callbackArgs=(job,), errbackArgs=(job,))
        attempt.addErrback(self._bug, job)
        attempt.addBoth(self._attempt_over)

    def _attempt_over(self, _: object) -> None:
        self._current = None
        self._current_job_id = None
        self.wake()

    def _fresh(self, job: Job) -> Job | None:
        """The job as stored now, if it is still the one being delivered (it may have been canceled)."""
        current = self._store.get(job.job_id)
        return current if current.state == JobState.PROCESSING else None

    def _delivered(self, receipt: DeliveryReceipt, job: Job) -> None:
        now = self._clock.seconds()
        self._device_ok(now)
        current = self._fresh(job)
        if current is None:
            log.info("Job {job_id} delivered after it was canceled", spool_event="delivery_late", job_id=job.job_id)
            return
        done = transition(current, JobState.COMPLETED, now=now, message=receipt.detail)
        if receipt.remote_job_id:
            done = done.evolve(attributes=done.attributes | {"remote_job_id": receipt.remote_job_id})
        self._store.update_job(done)
        log.info(
            "Job {job_id} delivered: {detail}",
            spool_event="job_completed", job_id=job.job_id, user=job.user, route=job.route.value,
            size=job.size, detail=receipt.detail, already_delivered=receipt.already_delivered,
            seconds=round(now - (job.processing_at or now), 3),
        )  # fmt: skip

    def _failed(self, failure: Failure, job: Job) -> None:
        now = self._clock.seconds()
        current = self._fresh(job)
        if failure.check(CancelledError):
            if current is not None:
                self._store.update_job(
                    transition(current, JobState.PENDING, now=now, message="delivery interrupted; will be sent again")
                )
                log.info("Job {job_id} delivery interrupted", spool_event="delivery_interrupted", job_id=job.job_id)
            return
        failure.trap(DeliveryError)
        error: DeliveryError = failure.value  # type: ignore[assignment]
        if current is None:
            return
        if not error.retryable:
            self._store.update_job(
                transition(current, JobState.ABORTED, now=now, reason="aborted-by-system", message=str(error))
            )
            log.error(
                "Job {job_id} aborted: {error}", spool_event="job_aborted", job_id=job.job_id, user=job.user,
                error=str(error),
            )  # fmt: skip
            return
        self._device_failed(now, str(error))
        delay = backoff_delay(self.device.consecutive_failures, initial=self._retry_initial, maximum=self._retry_max)
        message = f"waiting for the device: {error}; next attempt in {delay:.0f}s"
        self._store.update_job(
            transition(current, JobState.PENDING, now=now, reason="job-queued", message=message).evolve(
                next_attempt_at=now + delay
            )
        )
        log.warn(
            "Job {job_id} not delivered: {error}; retry in {delay:.0f}s",
            spool_event="delivery_failed", job_id=job.job_id, user=job.user, route=job.route.value,
            error=str(error), delay=delay, attempt=job.attempts,
        )  # fmt: skip

    def _bug(self, failure: Failure, job: Job) -> None:
        """An unexpected error is a bug, not a reason to lose the job: log it loudly and retry later."""
        log.failure("Job {job_id}: unexpected error while delivering", failure, spool_event="delivery_error",
                    job_id=job.job_id)  # fmt: skip
        now = self._clock.seconds()
        current = self._store.get(job.job_id)
        if current.state == JobState.PROCESSING:
            self._store.update_job(
                transition(current, JobState.PENDING, now=now, message="internal error; will retry").evolve(
                    next_attempt_at=now + self._retry_max
                )
            )

    # -- device health -----------------------------------------------------------------------------

    def _device_ok(self, now: float) -> None:
        if self.device.state != "ok":
            if self.device.state == "unreachable":
                log.info("Device {device} is reachable again", spool_event="device_up", device=self.device.uri)
            self.device.state, self.device.since = "ok", now
        self.device.detail = ""
        self.device.consecutive_failures = 0

    def _device_failed(self, now: float, detail: str) -> None:
        self.device.consecutive_failures += 1
        if self.device.state != "unreachable":
            log.warn("Device {device} is unreachable: {detail}", spool_event="device_down", device=self.device.uri,
                     detail=detail)  # fmt: skip
            self.device.state, self.device.since = "unreachable", now
        self.device.detail = detail
