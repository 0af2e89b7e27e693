"""The job state machine: the one function that changes a job's state, and the table it obeys. Pure."""

from __future__ import annotations

from spooler.model import FINAL_STATES, IllegalTransition, Job, JobState

S = JobState

#: Every legal (from, to) pair. Anything else raises IllegalTransition.
ALLOWED: frozenset[tuple[JobState, JobState]] = frozenset(
    {
        (S.PENDING, S.PENDING_HELD),  # hold
        (S.PENDING, S.PROCESSING),  # a delivery starts
        (S.PENDING, S.CANCELED),
        (S.PENDING, S.ABORTED),
        (S.PENDING_HELD, S.PENDING),  # release
        (S.PENDING_HELD, S.CANCELED),
        (S.PENDING_HELD, S.ABORTED),
        (S.PENDING_HELD, S.COMPLETED),  # held here, printed by the central server meanwhile (spooler.dispatch.reconcile)
        (S.PROCESSING, S.COMPLETED),
        (S.PROCESSING, S.PENDING),  # retry later, or recovery after a restart
        (S.PROCESSING, S.PROCESSING_STOPPED),
        (S.PROCESSING, S.CANCELED),
        (S.PROCESSING, S.ABORTED),
        (S.PROCESSING_STOPPED, S.PROCESSING),
        (S.PROCESSING_STOPPED, S.PENDING),
        (S.PROCESSING_STOPPED, S.CANCELED),
        (S.PROCESSING_STOPPED, S.ABORTED),
    }
)

#: The job-state-reasons keyword a state gets when the caller gives none.
DEFAULT_REASON: dict[JobState, str] = {
    S.PENDING: "job-queued",
    S.PENDING_HELD: "job-hold-until-specified",
    S.PROCESSING: "job-printing",
    S.PROCESSING_STOPPED: "printer-stopped",
    S.CANCELED: "job-canceled-by-user",
    S.ABORTED: "aborted-by-system",
    S.COMPLETED: "job-completed-successfully",
}


def can_transition(current: JobState, wanted: JobState) -> bool:
    return (current, wanted) in ALLOWED


def transition(
    job: Job, wanted: JobState, *, now: float, reason: str | None = None, message: str = ""
) -> Job:
    """Return `job` in state `wanted`, or raise IllegalTransition. Stamps the times the state implies."""
    if not can_transition(job.state, wanted):
        raise IllegalTransition(job.job_id, job.state, wanted)
    changes: dict[str, object] = {
        "state": wanted,
        "reason": reason or DEFAULT_REASON[wanted],
        "message": message,
    }
    if wanted == S.PROCESSING:
        changes["processing_at"] = now
        changes["attempts"] = job.attempts + 1
        changes["next_attempt_at"] = None
    if wanted in FINAL_STATES:
        changes["completed_at"] = now
        changes["next_attempt_at"] = None
    return job.evolve(**changes)


def recover_after_restart(job: Job, *, now: float) -> Job | None:
    """What a job loaded at start-up becomes: a job cut off while processing goes back to pending
    (one an administrator suspended, IPP Suspend-Current-Job, stays stopped until resumed)."""
    if job.state == S.PROCESSING_STOPPED and job.reason == "job-suspended":
        return None
    if job.state in (S.PROCESSING, S.PROCESSING_STOPPED):
        return transition(
            job, S.PENDING, now=now, reason="job-queued", message="requeued after a restart of the spooler"
        )
    return None
