"""The dispatcher: takes each queue's jobs one at a time, in arrival order, routes each when it
reaches the head of its queue (forward to the central server, print on the device, hold, or wait:
see spooler.dispatch.router), delivers it, and retries with capped backoff when nothing can take it.

It keeps the health of the central server (probes on a short interval plus the outcome of every
real forwarding attempt, with hysteresis) and of the device, tells every change of mode to the
spool log, and journals each delivery (and the peer's own job id) in the job's row before and after
it is attempted, so that a restart asks the peer before sending a job twice. A forward whose outcome
is unknown (no answer, cut off, a restart) is kept in doubt with the job's row and settled with the
server by spooler.dispatch.reconcile. It never drops a job and never stops a queue silently: the job's
message, `spooler status` and the log say why it waits.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from spooler.config import QueueConfig, ServerConfig
from spooler.delivery.base import DeliveryBackend, DeliveryFile, DeliveryReceipt, PartialDelivery
from spooler.dispatch.health import DOWN, UNKNOWN, UP, HealthTracker
from spooler.dispatch.reconcile import Reconciler, interrupted_forward, is_split_journal, new_forward_uuid
from spooler.model import DeliveryError, ForwardInDoubt, Job, JobNotFound, JobState, Mode, Route
from spooler.dispatch.router import HELD_OFFLINE, RELEASED_AT_DEVICE, Decision, mode, route
from spooler.states import transition
from spooler.store.database import JobStore
from spooler.store.documents import SpoolDocuments

log = Logger(namespace="spooler.dispatch")

WAITING_FOR_SERVER = "waiting for the central server to come back (queue policy)"
HELD_OFFLINE_MESSAGE = "held while the central server is down: release it at the device"
HELD_AFTER_OUTAGE = "held during an outage of the central server (now back): release it at the device"
#: Longest wait before a failed forward is tried again while the server is not yet known to be down.
FORWARD_RETRY_MAX = 5.0


#: The device's health (a HealthTracker's state) in the words of `spooler status` and the IPP printer.
DEVICE_STATES = {UNKNOWN: "unknown", UP: "ok", DOWN: "unreachable"}


@dataclass(frozen=True)
class DeviceStatus:
    """What the dispatcher last learned about the device, as `spooler status` and the printer say it."""

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


@dataclass
class Lane:
    """One queue's delivery loop: at most one job under way."""

    name: str
    offline_policy: str
    timer: IDelayedCall | None = None
    current: Deferred[Any] | None = None
    job_id: int | None = None
    route: Route | None = None


@dataclass
class _Target:
    route: Route
    backend: DeliveryBackend
    mode: Mode = field(default=Mode.STANDALONE)


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
        documents: SpoolDocuments,
        retry_initial: float,
        retry_max: float,
        queues: Sequence[QueueConfig] = (QueueConfig("default"),),
        server: DeliveryBackend | None = None,
        server_config: ServerConfig | None = None,
    ) -> None:
        """`backend` is the device; `server` (with `server_config`) the central server's print queue;
        `documents` gives a job's files (a document stored inline gets its file before delivery)."""
        self._store = store
        self._backend = backend
        self._server = server
        self._server_config = server_config or (ServerConfig(queue_uri=server.uri) if server else None)
        self._clock = clock
        self._documents = documents
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._policies = {queue.name: queue.offline_policy for queue in queues}
        self._lanes: dict[str, Lane] = {}
        #: The device's health: one failed delivery makes it unreachable, one success (or probe) ok again.
        self.device_health = HealthTracker("device", down_after=1, up_after=1)
        self.server_health: HealthTracker | None = None
        if self._server_config is not None:
            self.server_health = HealthTracker(
                "server", down_after=self._server_config.down_after, up_after=self._server_config.up_after
            )
        self._running = False
        self._paused = False  # by pause(), also before start() (a printer paused before a restart)
        self._stopping = False
        self._probe_timer: IDelayedCall | None = None
        self._probing: Deferred[Any] | None = None
        self._device_probing: Deferred[Any] | None = None
        #: Called with the server's new health state ("up", "down") whenever it changes.
        self.server_listeners: list[Callable[[str], None]] = []
        #: Failed delivery attempts since the start, by route ("server", "device") and retryable or not.
        self.failed_attempts: collections.Counter[tuple[str, bool]] = collections.Counter()
        #: Probes of the central server since the start, by outcome ("ok", "failed").
        self.probes: collections.Counter[str] = collections.Counter()
        #: Settles forwards to the server whose outcome is in doubt (spooler.dispatch.reconcile).
        self.reconciler: Reconciler | None = None
        if self._server is not None and self._server_config is not None:
            self.reconciler = Reconciler(store=store, server=self._server, clock=clock,
                                         usable=lambda: self._server_usable, timeout=self._server_config.io_timeout)  # fmt: skip

    # -- control ---------------------------------------------------------------------------------

    def start(self) -> None:
        for name in self._store.waiting_queues():
            self._lane(name)  # jobs of a queue no longer configured still leave
        self._running = not self._paused
        if self._server is not None and self._probe_timer is None and not self._stopping:
            self._probe_timer = self._clock.callLater(0, self._probe)
        if self.reconciler is not None and not self._stopping:
            self.reconciler.start()
        self.wake()

    def stop(self) -> Deferred[None]:
        """Stop dispatching and probing; attempts under way are cut off and their jobs go back to pending."""
        self._running = False
        self._stopping = True
        if self._probe_timer is not None and self._probe_timer.active():
            self._probe_timer.cancel()
        self._probe_timer = None
        for probe in (self._probing, self._device_probing):
            if probe is not None:
                probe.cancel()
        if self.reconciler is not None:
            self.reconciler.stop()
        waits = []
        for lane in self._lanes.values():
            self._cancel_timer(lane)
            if lane.current is not None:
                current = lane.current
                current.cancel()
                waits.append(current.addBoth(lambda _: None))
        from twisted.internet.defer import gatherResults

        return gatherResults(waits).addCallback(lambda _: None) if waits else succeed(None)

    def reconfigure(self, *, queues: Sequence[QueueConfig], backend: DeliveryBackend | None, retry_initial: float,
                    retry_max: float, server: DeliveryBackend | None,
                    server_config: ServerConfig | None) -> None:  # fmt: skip
        """A reload: new offline policies, a new device or server queue (None: keep the one in use), new
        retry and health settings. A delivery under way finishes where it started; nothing is dropped.
        A new device or server starts with an unknown health."""
        self._policies = {queue.name: queue.offline_policy for queue in queues}
        for name, lane in self._lanes.items():
            lane.offline_policy = self._policies.get(name, "print")
        self._retry_initial, self._retry_max = retry_initial, retry_max
        if backend is not None:
            if backend.uri != self._backend.uri:
                self.device_health = HealthTracker("device", down_after=1, up_after=1)
            self._backend = backend
        if server_config is not None and self._server_config is not None:
            self._server_config = server_config
            assert self.server_health is not None
            self.server_health.down_after, self.server_health.up_after = server_config.down_after, server_config.up_after
            if server is not None:
                if server.uri != getattr(self._server, "uri", None):
                    self.server_health = HealthTracker("server", down_after=server_config.down_after,
                                                       up_after=server_config.up_after)  # fmt: skip
                self._server = server
        self.wake()

    def pause(self) -> None:
        """Start no new delivery until `resume`; one under way is let finish (cutting it off could
        print it twice)."""
        self._paused = True
        self._running = False
        for lane in self._lanes.values():
            self._cancel_timer(lane)

    def resume(self) -> None:
        self._paused = False
        self._running = True
        self.wake()

    @property
    def paused(self) -> bool:
        return self._paused and not self._stopping

    def wake(self, delay: float = 0.0, queue: str | None = None) -> None:
        """Look at the queues again after `delay` seconds (sooner if already scheduled sooner)."""
        if not self._running:
            return
        names = [queue] if queue is not None else self._queue_names()
        for name in names:
            lane = self._lane(name)
            due = self._clock.seconds() + delay
            if lane.timer is not None and lane.timer.active():
                if lane.timer.getTime() <= due:
                    continue
                lane.timer.cancel()
            lane.timer = self._clock.callLater(delay, self._run, lane)

    def flush(self, job_ids: list[int] | None = None) -> list[int]:
        """Retry now every job waiting for delivery (or only `job_ids`), in order. Returns those touched."""
        touched = []
        for job in self._store.list_jobs([JobState.PENDING]):
            if job_ids is not None and job.job_id not in job_ids:
                continue
            if job.next_attempt_at is not None:
                self._store.update_job(job.evolve(next_attempt_at=None))
            touched.append(job.job_id)
        self.device_health.failures = 0  # the backoff starts again from retry_initial
        for lane in self._lanes.values():
            self._cancel_timer(lane)
        self.wake()
        return touched

    def abort(self, job_id: int) -> None:
        """Cut off the delivery of `job_id` if it is under way (its job was canceled)."""
        for lane in self._lanes.values():
            if lane.job_id == job_id and lane.current is not None:
                lane.current.cancel()
        self._settle_doubts(job_id)

    def _settle_doubts(self, job_id: int) -> None:
        """A job finished: if a forward of it is in doubt, the server's copy can be settled now."""
        if self.reconciler is not None and any(f.outcome is None for f in self._store.forwards_of_job(job_id)):
            self.reconciler.kick()

    @property
    def device(self) -> DeviceStatus:
        health = self.device_health
        return DeviceStatus(self._backend.uri, DEVICE_STATES[health.state], health.since, health.detail,
                            health.failures)  # fmt: skip

    @property
    def busy_with(self) -> int | None:
        return next((lane.job_id for lane in self._lanes.values() if lane.job_id is not None), None)

    def delivering(self, queue: str) -> int | None:
        """The job of `queue` being delivered now, if any."""
        lane = self._lanes.get(queue)
        return lane.job_id if lane is not None else None

    @property
    def mode(self) -> Mode:
        return mode(server_configured=self._server is not None, server_usable=self._server_usable)

    def offline_policy(self, queue: str) -> str:
        return self._policies.get(queue, "print")

    def expected(self, queue: str) -> tuple[Route, Mode]:
        """Where a new job of `queue` is expected to go now, for its record until it is routed."""
        decision = route(server_configured=self._server is not None, server_usable=self._server_usable,
                         offline_policy=self._policies.get(queue, "print"))  # fmt: skip
        return (Route.SERVER if decision in (Decision.FORWARD, Decision.WAIT) else Route.DEVICE), self.mode

    @property
    def _server_usable(self) -> bool:
        return self.server_health is not None and self.server_health.usable

    def status(self) -> dict[str, Any]:
        health = self.server_health
        return {
            "mode": self.mode.value,
            "mode_since": health.since if health is not None else None,
            "server": None if health is None or self._server is None else {"uri": self._server.uri, **health.as_dict()},
            "device": self.device.as_dict(),
            "forwards_in_doubt": self.reconciler.status() if self.reconciler is not None else None,
            "queues": {name: {"offline_policy": lane.offline_policy, "delivering": lane.job_id,
                              "route": lane.route.value if lane.route else None}
                       for name, lane in sorted(self._lanes.items())},  # fmt: skip
        }

    # -- lanes -------------------------------------------------------------------------------------

    def _queue_names(self) -> list[str]:
        """The queues with a lane: the configured ones and any other that has had a job. (A job's own
        queue is woken by name, which makes its lane; start() adds those of jobs left from before.)"""
        return sorted(set(self._policies) | set(self._lanes))

    def _lane(self, name: str) -> Lane:
        if name not in self._lanes:
            self._lanes[name] = Lane(name, self._policies.get(name, "print"))
        return self._lanes[name]

    def _cancel_timer(self, lane: Lane) -> None:
        if lane.timer is not None and lane.timer.active():
            lane.timer.cancel()
        lane.timer = None

    def _run(self, lane: Lane) -> None:
        lane.timer = None
        if not self._running or lane.current is not None:
            return
        job = self._store.head_of_queue(lane.name)
        if job is None:
            return
        now = self._clock.seconds()
        if job.next_attempt_at is not None and job.next_attempt_at > now:
            self.wake(job.next_attempt_at - now, lane.name)
            return
        decision = route(server_configured=self._server is not None, server_usable=self._server_usable,
                         offline_policy=lane.offline_policy,
                         released_at_device=bool(job.attributes.get(RELEASED_AT_DEVICE)))  # fmt: skip
        if decision is Decision.HOLD:
            held = transition(job, JobState.PENDING_HELD, now=now, reason="job-hold-until-specified",
                              message=HELD_OFFLINE_MESSAGE)  # fmt: skip
            self._store.update_job(held.evolve(route=Route.DEVICE, mode=Mode.OFFLINE,
                                               attributes=held.attributes | {HELD_OFFLINE: True}))  # fmt: skip
            log.info("Job {job_id} held: the central server is down (queue {queue}: hold)",
                     spool_event="job_held_offline", job_id=job.job_id, user=job.user, queue=lane.name)  # fmt: skip
            self.wake(0, lane.name)
            return
        if decision is Decision.WAIT:
            if job.message != WAITING_FOR_SERVER:
                self._store.update_job(job.evolve(message=WAITING_FOR_SERVER, route=Route.SERVER, mode=Mode.OFFLINE))
                log.info("Job {job_id} waits for the central server (queue {queue}: queue)",
                         spool_event="job_waiting_for_server", job_id=job.job_id, user=job.user,
                         queue=lane.name)  # fmt: skip
            return  # woken when the server is back
        target = self._target(decision)
        self._attempt(lane, job, target, now)

    def _target(self, decision: Decision) -> _Target:
        current_mode = self.mode
        if decision is Decision.FORWARD:
            assert self._server is not None
            return _Target(Route.SERVER, self._server, current_mode)
        return _Target(Route.DEVICE, self._backend, current_mode)

    def _attempt(self, lane: Lane, job: Job, target: _Target, now: float) -> None:
        earlier = job.attributes.get("delivery") or {}
        journal_entry: dict[str, Any] = {"uri": target.backend.uri, "route": target.route.value, "started_at": now}
        # The peers' own job ids, by URI, from every earlier attempt: a forward cut off after the server
        # had the job, then attempts at the device, must still ask the server before sending it again.
        remote_jobs = dict(earlier.get("remote_jobs") or {})
        if earlier.get("uri") and earlier.get("remote_job_id"):
            remote_jobs[earlier["uri"]] = earlier["remote_job_id"]
        if remote_jobs:
            journal_entry["remote_jobs"] = remote_jobs
        doubts: list[ForwardInDoubt] = []
        if target.route is Route.SERVER and self.reconciler is not None:
            # Each forward carries a job-uuid of its own (found by it if its answer is lost); copies
            # left by earlier forwards are the in-doubt ones, settled before this one is sent.
            journal_entry["forward_uuid"] = new_forward_uuid()
            doubts = self.reconciler.open_forwards(job, target.backend.uri)
            if is_split_journal(remote_jobs.get(target.backend.uri)):
                # Sent as one server job per document (a server without multiple-document jobs): the
                # backend's own recover knows which documents the server has (not kept in doubt).
                journal_entry["remote_job_id"] = remote_jobs[target.backend.uri]
        elif remote_jobs.get(target.backend.uri):
            journal_entry["remote_job_id"] = remote_jobs[target.backend.uri]
        job = transition(job, JobState.PROCESSING, now=now, message=f"sending to {target.backend.uri}").evolve(
            route=target.route, mode=target.mode, attributes=job.attributes | {"delivery": journal_entry}
        )
        self._store.update_job(job)  # journaled before the attempt
        canceled = set(job.attributes.get("canceled_documents") or ())  # IPP Cancel-Document
        files = [DeliveryFile(doc, self._documents.path(doc)) for doc in self._store.documents(job.job_id)
                 if doc.number not in canceled]  # fmt: skip
        log.info(
            "Job {job_id} sending to {destination} (attempt {attempt})",
            spool_event="delivery_started", job_id=job.job_id, user=job.user, route=target.route.value,
            mode=target.mode.value, destination=target.backend.uri, attempt=job.attempts, size=job.size,
        )  # fmt: skip

        def journal(remote_job_id: str) -> None:
            stored = self._store.get(job.job_id)
            entry = dict(stored.attributes.get("delivery") or {}) | {"remote_job_id": remote_job_id}
            self._store.update_job(stored.evolve(attributes=stored.attributes | {"delivery": entry}))

        delivering = [False]  # whether the job itself went to the peer (not just a question)

        def deliver(found: DeliveryReceipt | PartialDelivery | None) -> Any:
            if isinstance(found, DeliveryReceipt):
                return found
            delivering[0] = True
            # Some documents are at the peer already (one peer job per document): only the rest go.
            resume: dict[str, Any] = {"resume": found} if isinstance(found, PartialDelivery) else {}
            return self._documents.files(job.job_id).addCallback(
                lambda _: target.backend.deliver(job, files, journal, **resume))

        def recover(found: DeliveryReceipt | None) -> Any:
            if found is None and "remote_job_id" in journal_entry:
                # An earlier attempt got as far as the peer's own job: ask it before sending again.
                return maybeDeferred(target.backend.recover, job, journal_entry["remote_job_id"])
            return found

        if doubts:
            assert self.reconciler is not None
            attempt = self.reconciler.settle(job, doubts).addCallback(recover).addCallback(deliver)
        else:
            attempt = maybeDeferred(recover, None).addCallback(deliver)
        lane.current, lane.job_id, lane.route = attempt, job.job_id, target.route
        attempt.addCallbacks(self._delivered, self._failed, callbackArgs=(job, target),
                             errbackArgs=(job, target, delivering))  # fmt: skip
        attempt.addErrback(self._bug, job, target, delivering)
        attempt.addBoth(self._attempt_over, lane)

    def _attempt_over(self, _: object, lane: Lane) -> None:
        lane.current, lane.job_id, lane.route = None, None, None
        self.wake(0, lane.name)

    def _fresh(self, job: Job) -> Job | None:
        """The job as stored now, if it is still the one being delivered (it may have been canceled,
        or canceled and purged: IPP Purge-Jobs)."""
        try:
            current = self._store.get(job.job_id)
        except JobNotFound:
            return None
        return current if current.state == JobState.PROCESSING else None

    def _delivered(self, receipt: DeliveryReceipt, job: Job, target: _Target) -> None:
        now = self._clock.seconds()
        self._peer_ok(target, now)
        current = self._fresh(job)
        if current is None:
            log.info("Job {job_id} delivered after it was canceled", spool_event="delivery_late", job_id=job.job_id)
            if target.route is Route.SERVER and self.reconciler is not None:
                # The server has a job its owner canceled here: settle its copy like an in-doubt one.
                stored = self._store.get(job.job_id)
                late = interrupted_forward(stored, now=now, cause="delivered after the job was canceled here")
                if late is not None:
                    self._keep_in_doubt(replace(late, remote_job_id=receipt.remote_job_id or late.remote_job_id))
                    self._settle_doubts(job.job_id)
            return
        entry = dict(current.attributes.get("delivery") or {}) | {"completed_at": now}
        if receipt.remote_job_id:
            entry["remote_job_id"] = receipt.remote_job_id
        attributes = current.attributes | {"delivery": entry}
        if receipt.impressions is not None:
            attributes["impressions_reported"] = receipt.impressions
        done = transition(current, JobState.COMPLETED, now=now, message=receipt.detail).evolve(attributes=attributes)
        self._store.update_job(done)
        self._settle_doubts(job.job_id)
        log.info(
            "Job {job_id} delivered to the {route}: {detail}",
            spool_event="job_completed", job_id=job.job_id, user=job.user, route=target.route.value,
            mode=target.mode.value, size=job.size, detail=receipt.detail, already_delivered=receipt.already_delivered,
            remote_job_id=receipt.remote_job_id, seconds=round(now - (job.processing_at or now), 3),
        )  # fmt: skip

    def _in_doubt(self, failure: Failure, job: Job, target: _Target, delivering: bool) -> ForwardInDoubt | None:
        """The forward this failed attempt leaves in doubt: one that went out (or got as far as the
        server's own job id) without an answer saying what the server kept."""
        if target.route is not Route.SERVER or self.reconciler is None or not delivering:
            return None
        stored = self._store.get(job.job_id)
        journaled = bool((stored.attributes.get("delivery") or {}).get("remote_job_id"))
        if failure.check(CancelledError):
            cause = "cut off before the server's answer"
        elif failure.check(DeliveryError):
            sent = failure.value.sent  # type: ignore[union-attr]
            if not sent and not (sent is None and journaled):  # (the server has a job of it if it gave an id)
                return None
            cause = f"the server may keep a copy: {failure.getErrorMessage()}"
        else:
            cause = f"internal error: {failure.getErrorMessage()}"
        return interrupted_forward(stored, now=self._clock.seconds(), cause=cause)

    def _keep_in_doubt(self, forward: ForwardInDoubt, job: Job | None = None) -> None:
        """Record `forward` as in doubt (with the job's new row, in one transaction, if given)."""
        forward_id = self._store.record_forward_in_doubt(forward, job)
        log.warn(
            "Job {job_id}: the forward to {server} is in doubt ({cause}); the server may hold a copy, settled"
            " when it can be asked", spool_event="forward_in_doubt", job_id=forward.job_id, server=forward.uri,
            cause=forward.cause, forward_id=forward_id, forward_uuid=forward.forward_uuid,
            remote_job_id=forward.remote_job_id,
        )  # fmt: skip

    def _write(self, job: Job, doubt: ForwardInDoubt | None) -> None:
        if doubt is not None:
            self._keep_in_doubt(doubt, job)
        else:
            self._store.update_job(job)

    def _failed(self, failure: Failure, job: Job, target: _Target, delivering: list[bool]) -> None:
        now = self._clock.seconds()
        current = self._fresh(job)
        doubt = self._in_doubt(failure, job, target, delivering[0])
        if doubt is not None and current is None:
            self._keep_in_doubt(doubt)  # canceled meanwhile: the server's copy can be settled at once
            self._settle_doubts(job.job_id)
        if failure.check(CancelledError):
            if current is not None:
                self._write(transition(current, JobState.PENDING, now=now,
                                       message="delivery interrupted; will be sent again"), doubt)  # fmt: skip
                log.info("Job {job_id} delivery interrupted", spool_event="delivery_interrupted", job_id=job.job_id)
            return
        failure.trap(DeliveryError)
        error: DeliveryError = failure.value  # type: ignore[assignment]
        self.failed_attempts[(target.route.value, error.retryable)] += 1
        if error.retryable:
            self._peer_failed(target, now, str(error))
        if current is None:
            return
        if not error.retryable:
            self._write(transition(current, JobState.ABORTED, now=now, reason="aborted-by-system",
                                   message=str(error)), doubt)  # fmt: skip
            self._settle_doubts(job.job_id)
            log.error(
                "Job {job_id} aborted: {error}", spool_event="job_aborted", job_id=job.job_id, user=job.user,
                route=target.route.value, error=str(error),
            )  # fmt: skip
            return
        if target.route is Route.SERVER:
            # Try again soon; if the server is now known to be down, the job is routed by the queue's
            # offline policy at once (no waiting on a server already known to be down).
            assert self._server_config is not None
            delay = min(self._server_config.probe_interval, FORWARD_RETRY_MAX) if self._server_usable else 0.0
            message = f"the central server did not take it: {error}"
        else:
            delay = backoff_delay(self.device_health.failures, initial=self._retry_initial,
                                  maximum=self._retry_max)  # fmt: skip
            message = f"waiting for the device: {error}; next attempt in {delay:.0f}s"
        self._write(
            transition(current, JobState.PENDING, now=now, reason="job-queued", message=message).evolve(
                next_attempt_at=now + delay if delay else None
            ), doubt,
        )  # fmt: skip
        log.warn(
            "Job {job_id} not delivered to the {route}: {error}; retry in {delay:.0f}s",
            spool_event="delivery_failed", job_id=job.job_id, user=job.user, route=target.route.value,
            error=str(error), delay=delay, attempt=job.attempts,
        )  # fmt: skip

    def _bug(self, failure: Failure, job: Job, target: _Target, delivering: list[bool]) -> None:
        """An unexpected error is a bug, not a reason to lose the job: log it loudly and retry later
        (a forward it cut off stays in doubt)."""
        log.failure("Job {job_id}: unexpected error while delivering", failure, spool_event="delivery_error",
                    job_id=job.job_id)  # fmt: skip
        now = self._clock.seconds()
        current = self._store.get(job.job_id)
        if current.state == JobState.PROCESSING:
            self._write(
                transition(current, JobState.PENDING, now=now, message="internal error; will retry").evolve(
                    next_attempt_at=now + self._retry_max
                ), self._in_doubt(failure, job, target, delivering[0]),
            )  # fmt: skip

    # -- health -----------------------------------------------------------------------------------

    def _peer_ok(self, target: _Target, now: float) -> None:
        if target.route is Route.SERVER:
            self._server_outcome(True, now)
        else:
            self._device_ok(now)

    def _peer_failed(self, target: _Target, now: float, detail: str) -> None:
        if target.route is Route.SERVER:
            self._server_outcome(False, now, detail)
        else:
            self._device_failed(now, detail)

    def _server_outcome(self, ok: bool, now: float, detail: str = "") -> None:
        assert self.server_health is not None and self._server is not None
        changed = self.server_health.record(ok, now, detail)
        if changed is not None:
            for listener in self.server_listeners:
                listener(changed)
        if changed == DOWN:
            log.warn(
                "Central server {server} is down: {detail}; now offline", spool_event="mode_changed",
                mode=Mode.OFFLINE.value, server=self._server.uri, detail=detail,
            )  # fmt: skip
            # Forwarding attempts under way would wait on a server known to be down: cut them off.
            for lane in self._lanes.values():
                if lane.route is Route.SERVER and lane.current is not None:
                    lane.current.cancel()
            self.wake()
        elif changed == UP:
            log.warn("Central server {server} is up; now online", spool_event="mode_changed",
                     mode=Mode.ONLINE.value, server=self._server.uri)  # fmt: skip
            self._relabel_held_offline()
            self.wake()
            if self.reconciler is not None:
                self.reconciler.kick()  # the copies in-doubt forwards may have left can be settled now

    def _relabel_held_offline(self) -> None:
        """Jobs held during the outage stay held (released at the device, they print there), but their
        message no longer says the server is down."""
        held = [job.evolve(message=HELD_AFTER_OUTAGE) for job in self._store.list_jobs([JobState.PENDING_HELD])
                if job.attributes.get(HELD_OFFLINE) and job.message == HELD_OFFLINE_MESSAGE]  # fmt: skip
        if held:
            self._store.update_jobs(held)

    def _probe(self) -> None:
        """Probe the server (and, while it is unreachable, the device) every probe_interval."""
        assert self._server is not None and self._server_config is not None
        config = self._server_config
        self._probe_timer = None
        if self._stopping:
            return
        if self._probing is None:
            probe = maybeDeferred(self._server.probe).addTimeout(config.probe_timeout, self._clock)
            self._probing = probe

            def outcome(result: object) -> None:
                self._probing = None
                if self._stopping:
                    return
                self.probes["failed" if isinstance(result, Failure) else "ok"] += 1
                if isinstance(result, Failure):
                    detail = ("no answer within {:.1f}s".format(config.probe_timeout)
                              if result.check(CancelledError, TimeoutError) or "Timeout" in type(result.value).__name__
                              else result.getErrorMessage())  # fmt: skip
                    self._server_outcome(False, self._clock.seconds(), detail)
                else:
                    self._server_outcome(True, self._clock.seconds())

            probe.addBoth(outcome)
        self._probe_device()
        self._probe_timer = self._clock.callLater(config.probe_interval, self._probe)

    def _probe_device(self) -> None:
        if self.device_health.state != DOWN or self._device_probing is not None:
            return
        assert self._server_config is not None
        probe = maybeDeferred(self._backend.probe).addTimeout(self._server_config.probe_timeout, self._clock)
        self._device_probing = probe

        def outcome(result: object) -> None:
            self._device_probing = None
            if not isinstance(result, Failure) and not self._stopping and self.device_health.state == DOWN:
                log.info("Device {device} answers again: retrying the jobs waiting for it",
                         spool_event="device_probe_ok", device=self._backend.uri)  # fmt: skip
                self.flush()

        probe.addBoth(outcome)

    def _device_ok(self, now: float) -> None:
        was = self.device_health.state
        if self.device_health.record(True, now) == UP and was == DOWN:
            log.info("Device {device} is reachable again", spool_event="device_up", device=self._backend.uri)

    def _device_failed(self, now: float, detail: str) -> None:
        if self.device_health.record(False, now, detail) == DOWN:
            log.warn("Device {device} is unreachable: {detail}", spool_event="device_down", device=self._backend.uri,
                     detail=detail)  # fmt: skip
