"""In-doubt forwards: a forward to the central server's queue that ended without an answer saying what
the server kept (the answer was lost when the server died or hung, the attempt was cut off, or the
spooler was killed) may have left a copy there: an empty Create-Job, or the whole job. The spooler
does not know, so it prints the job where its queue's policy says (never lose a job), and keeps the
forward "in doubt" in the store (`forwards_in_doubt`, written in the same transaction as the job's
delivery journal). When the server can be asked again, this module asks it and settles each one:

* before the job is forwarded again (the dispatcher calls `Reconciler.settle`): a whole copy at the
  server *is* the job's delivery (it is not sent again); an empty one is canceled;
* once the job has finished here (printed on the device, delivered by another attempt, canceled by
  its owner): a copy the server still holds (pending-held in a pull-print queue, pending, or an
  empty Create-Job) is canceled with Cancel-Job; one it has printed is reported (a duplicate that
  could not be avoided); none is none. A job that was aborted here keeps the server's whole copy
  (the only one left);
* while the job is held here (the queue's offline policy hold, waiting for its owner at the device):
  an empty copy is canceled; a whole one is watched, and if the server prints it the job is completed
  here (not printed again); once the job is released and printed, or canceled, as above.

The server is asked by the job-id it gave the forward (IPP Get-Job-Attributes) or, when its answer
never came, by the job-uuid the spooler gave that attempt (IPP Get-Jobs of the job's user: cupsd and
the reference server keep a client's job-uuid). LPD and raw queues cannot be asked: their in-doubt
forwards are left unresolved at once, and said so.

Reconciliation runs beside the queues (it never holds a queue's lane), one request at a time with the
server's I/O timeout, only while the server is usable; a check that fails is tried again later with
a capped backoff. Every outcome goes to the spool log (`forward_reconciled`), `spooler show` and
`spooler status`.
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from spooler.delivery.base import DeliveryReceipt, RemoteCopy
from spooler.delivery.ipp import split_job_ids
from spooler.model import DeliveryError, ForwardInDoubt, Job, JobState, Route
from spooler.states import transition
from spooler.store.database import JobStore

log = Logger(namespace="spooler.dispatch.reconcile")

# -- what became of an in-doubt forward ---------------------------------------------------------------

#: The server's copy (held, pending, or an empty Create-Job) was canceled.
CANCELED = "canceled"
#: The server had printed its copy (or was printing it): a duplicate if the job printed here too.
PRINTED_AT_SERVER = "printed_at_server"
#: The server has no live copy (it never arrived, or it was canceled or aborted there).
NOT_AT_SERVER = "not_at_server"
#: The server has the whole job and it is the job's delivery: it was not sent again.
DELIVERED = "delivered"
#: The job did not print here (aborted): the server's whole copy is left to print.
KEPT = "kept"
#: The server cannot be asked (an LPD or raw queue): nobody knows.
UNRESOLVED = "unresolved"
OUTCOMES = (CANCELED, PRINTED_AT_SERVER, NOT_AT_SERVER, DELIVERED, KEPT, UNRESOLVED)

#: The stages of a copy at the server, from its IPP job-state and reasons (see `copy_stage`).
INCOMING, WAITING, PRINTING, PRINTED, GONE, UNKNOWN = "incoming", "waiting", "printing", "printed", "gone", "unknown"
#: job-state-reasons of a job that still waits for (some of) its documents.
INCOMING_REASONS = frozenset({"job-incoming", "job-data-insufficient"})

#: What the spooler did with the job, as far as a copy at the server matters.
FINISHED_HERE = "finished"  # printed here or by another attempt, or canceled by its owner
ABORTED_HERE = "aborted"  # gave up on it: the server's copy is the only one
FORWARDING = "forwarding"  # not printed anywhere yet, about to be forwarded to this server again
HELD_HERE = "held"  # not printed anywhere yet, held here until its owner releases it

#: Actions: cancel the server's copy, nothing to do (the outcome is known), take the copy as the job's
#: delivery (for a held job: complete it here, the server printed it), or ask again later.
CANCEL, NOTHING, TAKE, LATER = "cancel", "nothing", "take", "later"

#: Longest wait between two checks of an in-doubt forward the server could not be asked about.
CHECK_RETRY_MAX = 60.0
CHECK_RETRY_FIRST = 1.0
#: In-doubt forwards settled per pass (the next pass follows at once while some are due).
BATCH = 20


def copy_stage(copy: RemoteCopy | None, documents: int = 1) -> str:
    """Where the server's copy of a job of `documents` documents stands: incoming (an empty or partial
    Create-Job), waiting (whole, not printed: pending, or pending-held in a pull-print queue),
    printing, printed, gone, or unknown. A queue that holds every job (cupsd with
    job-hold-until-default) says job-hold-until-specified of an empty job too: its number-of-documents
    tells."""
    if copy is None or copy.state in (int(JobState.CANCELED), int(JobState.ABORTED)):
        return GONE
    if copy.state == int(JobState.COMPLETED):
        return PRINTED
    if copy.state in (int(JobState.PROCESSING), int(JobState.PROCESSING_STOPPED)):
        return PRINTING
    if copy.state in (int(JobState.PENDING), int(JobState.PENDING_HELD)):
        partial = copy.documents is not None and copy.documents < documents
        return INCOMING if partial or INCOMING_REASONS & set(copy.reasons) else WAITING
    return UNKNOWN


def decide(stage: str, here: str) -> tuple[str, str | None]:
    """What to do with a copy at `stage` of a job the spooler `here` finished, aborted or is about to
    forward: (action, outcome once done). Never cancels the only copy of a job."""
    if stage == UNKNOWN:
        return LATER, None
    if stage == GONE:
        return NOTHING, NOT_AT_SERVER
    if stage == INCOMING:
        return CANCEL, CANCELED  # an empty Create-Job is nobody's copy
    if here == FORWARDING:
        return TAKE, DELIVERED  # the server has the whole job: that is its delivery
    if here == HELD_HERE:
        # The owner may still release it here: watch the server's copy; printed there, it is done.
        return (TAKE, PRINTED_AT_SERVER) if stage in (PRINTING, PRINTED) else (LATER, None)
    if stage in (PRINTING, PRINTED):
        return NOTHING, PRINTED_AT_SERVER
    if here == ABORTED_HERE:
        return NOTHING, KEPT
    return CANCEL, CANCELED


def is_split_journal(remote_job_id: Any) -> bool:
    """Whether a journaled peer job id is the IPP backend's list of one peer job per document."""
    return isinstance(remote_job_id, str) and bool(split_job_ids(remote_job_id))


def interrupted_forward(job: Job, *, now: float, cause: str) -> ForwardInDoubt | None:
    """The in-doubt forward a job's delivery journal describes (a forward to the server that was under
    way and did not end in a receipt), or None if the journaled attempt was no forward. A forward sent
    as one server job per document is not: the backend's recover resumes it (see spooler.delivery.ipp)."""
    entry = job.attributes.get("delivery")
    if not isinstance(entry, dict) or entry.get("route") != "server" or entry.get("completed_at") is not None:
        return None
    if is_split_journal(entry.get("remote_job_id")):
        return None
    return ForwardInDoubt(
        job_id=job.job_id, uri=str(entry.get("uri", "")), started_at=float(entry.get("started_at") or now),
        recorded_at=now, cause=cause[:500], forward_uuid=entry.get("forward_uuid"),
        remote_job_id=entry.get("remote_job_id"),
    )  # fmt: skip


def forward_status(store: JobStore) -> dict[str, int]:
    """The in-doubt forwards by outcome ("open": not settled yet), for `spooler status`."""
    counts = store.forward_counts()
    return {name: counts.get(name, 0) for name in ("open", *OUTCOMES)}


def new_forward_uuid() -> str:
    """The job-uuid of one forward attempt (a copy at the server is found by it when its answer is lost)."""
    return str(uuid_module.uuid4())


def can_be_asked(backend: Any) -> bool:
    """Whether the server's queue protocol can say what it holds (IPP can; LPD and raw cannot)."""
    return callable(getattr(backend, "find_forward", None)) and callable(getattr(backend, "cancel_forward", None))


def _scheme(uri: str) -> str:
    return uri.split(":", 1)[0] if ":" in uri else uri


class Reconciler:
    """Settles the in-doubt forwards to one server (`server`, its delivery backend) while `usable()`."""

    def __init__(self, *, store: JobStore, server: Any, clock: IReactorTime, usable: Callable[[], bool],
                 timeout: float) -> None:  # fmt: skip
        self._store = store
        self._server = server
        self._clock = clock
        self._usable = usable
        self._timeout = timeout
        self._timer: IDelayedCall | None = None
        self._running: Deferred[None] | None = None
        self._again = False
        self._stopped = False

    # -- control -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._stopped = False
        self.kick()

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._running is not None:
            self._running.cancel()

    def kick(self, delay: float = 0.0) -> None:
        """Look at the open in-doubt forwards after `delay` seconds (sooner if already due sooner)."""
        if self._stopped:
            return
        if self._running is not None:
            self._again = self._again or delay == 0
            return
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= self._clock.seconds() + delay:
                return
            self._timer.cancel()
        self._timer = self._clock.callLater(delay, self._run)

    def status(self) -> dict[str, int]:
        return forward_status(self._store)

    # -- the background passes ------------------------------------------------------------------------

    def _run(self) -> None:
        self._timer = None
        if self._stopped or not self._usable():
            return  # woken again when the server is up
        self._again = False
        self._running = Deferred.fromCoroutine(self._pass())

        def over(result: object) -> None:
            self._running = None
            if isinstance(result, Failure) and not result.check(CancelledError):
                log.failure("Reconciling in-doubt forwards failed", result, spool_event="reconcile_error")
            if self._stopped:
                return
            if self._again or (isinstance(result, bool) and result):
                self.kick()
                return
            due = self._store.next_forward_check()
            if due is not None:
                self.kick(max(0.0, due - self._clock.seconds()))

        self._running.addBoth(over)

    async def _pass(self) -> bool:
        """Settle up to BATCH due forwards of finished or held jobs; True if more are due at once."""
        now = self._clock.seconds()
        forwards = self._store.open_forwards(due_by=now, settleable=True, limit=BATCH)
        for forward in forwards:
            if self._stopped or not self._usable():
                return False
            job = self._store.get(forward.job_id)
            await self._settle_finished(job, forward)
        return len(forwards) == BATCH

    async def _settle_finished(self, job: Job, forward: ForwardInDoubt) -> None:
        assert forward.forward_id is not None
        delivery = job.attributes.get("delivery") or {}
        if (job.state == JobState.COMPLETED and forward.remote_job_id and delivery.get("route") == "server"
                and delivery.get("uri") == forward.uri and delivery.get("remote_job_id") == forward.remote_job_id):
            self._resolve(job, forward, DELIVERED, "this copy is the job's delivery", stage=None)
            return
        here = {JobState.ABORTED: ABORTED_HERE, JobState.PENDING_HELD: HELD_HERE}.get(job.state, FINISHED_HERE)
        try:
            await self._settle(job, forward, here)
        except DeliveryError as error:
            self._later(forward, str(error))

    # -- one forward ------------------------------------------------------------------------------------

    async def _settle(self, job: Job, forward: ForwardInDoubt, here: str) -> tuple[str | None, RemoteCopy | None]:
        """Ask the server about `forward` and act (see `decide`); returns the outcome (None when it
        stays open, asked again later) and the copy found. Raises DeliveryError when the server cannot
        be asked."""
        assert forward.forward_id is not None
        if not can_be_asked(self._server):
            self._resolve(job, forward, UNRESOLVED, f"{_scheme(self._server.uri)}:// queues cannot be asked what"
                                                    " they kept: the server may print the job too", stage=None)  # fmt: skip
            return UNRESOLVED, None
        documents = max(1, len(self._store.documents(job.job_id)))
        copy = await self._server.find_forward(job, forward.remote_job_id, forward.forward_uuid,
                                               timeout=self._timeout)  # fmt: skip
        stage = copy_stage(copy, documents)
        action, outcome = decide(stage, here)
        if action == CANCEL:
            assert copy is not None
            if not await self._server.cancel_forward(job, copy.remote_job_id, timeout=self._timeout):
                # Printed, canceled or gone in the meantime: what is it now?
                copy = await self._server.find_forward(job, copy.remote_job_id, None, timeout=self._timeout)
                stage = copy_stage(copy, documents)
                action, outcome = decide(stage, here)
                if action == CANCEL:
                    action, outcome = LATER, None  # refused to cancel a copy it still holds: ask again
        if action == LATER or outcome is None:
            self._later(forward, f"the server's copy is {stage}; asking again later", copy)
            return None, copy
        completed = None
        if action == TAKE and here == HELD_HERE:
            assert copy is not None
            completed = self._printed_at_server(job, forward, copy)
            if completed is None:
                return None, copy  # released here meanwhile: the next pass sees it finished
        where = (f"job {copy.remote_job_id} at {forward.uri}" if copy is not None
                 else f"no job {forward.remote_job_id} at {forward.uri}" if forward.remote_job_id
                 else f"no job with the forward's job-uuid at {forward.uri}")  # fmt: skip
        detail = {
            CANCELED: f"{where} was {stage} ({', '.join(copy.reasons) if copy else ''}); canceled",
            PRINTED_AT_SERVER: f"{where} was {stage}: the server printed the job too",
            NOT_AT_SERVER: f"{where}" + (f" ({stage})" if copy is not None else ""),
            DELIVERED: f"{where} was {stage}: the job's delivery, not sent again",
            KEPT: f"{where} was {stage}: left to print there (the job was aborted here)",
        }[outcome]
        if completed is not None:
            detail = f"{where} was {stage}: the job, held here, is completed (not printed again)"
        self._resolve(job, forward, outcome, detail, stage=stage, copy=copy, job_row=completed)
        return outcome, copy

    def _printed_at_server(self, job: Job, forward: ForwardInDoubt, copy: RemoteCopy) -> Job | None:
        """The held job's new row: completed, by the server's copy (None if it is no longer held)."""
        current = self._store.get(job.job_id)
        if current.state != JobState.PENDING_HELD:
            return None
        now = self._clock.seconds()
        delivery = dict(current.attributes.get("delivery") or {}) | {
            "uri": forward.uri, "route": "server", "remote_job_id": copy.remote_job_id, "completed_at": now}
        message = f"printed by {forward.uri} (job {copy.remote_job_id}) while held here: not printed again"
        return transition(current, JobState.COMPLETED, now=now, message=message).evolve(
            route=Route.SERVER, attributes=current.attributes | {"delivery": delivery})

    def _resolve(self, job: Job, forward: ForwardInDoubt, outcome: str, detail: str, *, stage: str | None,
                 copy: RemoteCopy | None = None, job_row: Job | None = None) -> bool:  # fmt: skip
        assert forward.forward_id is not None
        now = self._clock.seconds()
        if not self._store.resolve_forward(forward.forward_id, outcome, detail, now, job_row):
            return False
        emit = log.warn if outcome in (PRINTED_AT_SERVER, UNRESOLVED) else log.info
        emit(
            "Job {job_id}: in-doubt forward to {server} reconciled: {outcome} ({detail})",
            spool_event="forward_reconciled", job_id=job.job_id, user=job.user, server=forward.uri,
            outcome=outcome, detail=detail, stage=stage, forward_id=forward.forward_id,
            forward_uuid=forward.forward_uuid, remote_job_id=copy.remote_job_id if copy else forward.remote_job_id,
            job_state=job.state.keyword, seconds_in_doubt=round(now - forward.recorded_at, 3),
        )  # fmt: skip
        return True

    def _later(self, forward: ForwardInDoubt, detail: str, copy: RemoteCopy | None = None) -> None:
        assert forward.forward_id is not None
        delay = min(CHECK_RETRY_MAX, CHECK_RETRY_FIRST * 2 ** min(forward.checks, 16))
        self._store.check_forward_later(forward.forward_id, self._clock.seconds() + delay, detail)
        log.info("In-doubt forward {forward_id} of job {job_id}: {detail}; asking again in {delay:.0f}s",
                 spool_event="forward_check_failed", forward_id=forward.forward_id, job_id=forward.job_id,
                 detail=detail, delay=delay)  # fmt: skip

    # -- before a forward (the dispatcher) ----------------------------------------------------------------

    def open_forwards(self, job: Job, uri: str) -> list[ForwardInDoubt]:
        return [f for f in self._store.forwards_of_job(job.job_id) if f.outcome is None and f.uri == uri]

    def settle(self, job: Job, forwards: list[ForwardInDoubt]) -> Deferred[DeliveryReceipt | None]:
        """Before `job` is forwarded to the server again: settle its open in-doubt `forwards` there. A
        whole copy the server already holds is the job's delivery (a receipt: not sent again); empty
        ones are canceled. None: send it. Fails with a retryable DeliveryError (the job waits, in
        order) when the server cannot be asked."""
        return Deferred.fromCoroutine(self._settle_before_forward(job, forwards))

    async def _settle_before_forward(self, job: Job, forwards: list[ForwardInDoubt]) -> DeliveryReceipt | None:
        receipt: DeliveryReceipt | None = None
        for forward in forwards:
            outcome, copy = await self._settle(job, forward, FINISHED_HERE if receipt is not None else FORWARDING)
            if outcome is None:
                raise DeliveryError(f"cannot tell yet what {forward.uri} holds of an earlier forward of the job",
                                    retryable=True)  # fmt: skip
            if outcome == DELIVERED and copy is not None:
                receipt = DeliveryReceipt(f"found at {forward.uri} as job {copy.remote_job_id} after an in-doubt"
                                          " forward: not sent again",
                                          remote_job_id=copy.remote_job_id, already_delivered=True)  # fmt: skip
        return receipt
