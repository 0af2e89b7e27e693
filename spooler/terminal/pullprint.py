"""Pull print at the device: which held jobs a logged-in user sees, and what releasing or deleting
one does. No HTTP here; the terminal's resource calls it with the session's user.

The rules:

* A user sees only their own jobs that wait in pending-held: jobs of a `hold`-policy queue held
  while the central server was down, and jobs held at intake (PJL private print, IPP
  job-hold-until). A job of someone else is "not found" (its existence is not revealed).
* **Release prints the job on this device** — the one the user stands at (the CUPS/MyQ baseline):
  also when the central server has come back since the job was held, and also for a job held at
  intake, which would otherwise be forwarded to the server's queue and need a second release
  there. The owner rule of JobService (requester == the job's user) still applies.
* A private job (PJL HOLDKEY, IPP job-password) is released only with its key, typed on the
  terminal's keypad: the session proves who the user is, the key that the job's sender knew it.
* Delete cancels the job (JobService.cancel with the session's user as requester).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred

from spooler.dispatch.router import HELD_OFFLINE
from spooler.jobs.service import INCOMING, JobService
from spooler.model import Job, JobNotFound, JobState, SpoolerError


class NotYourJob(SpoolerError):
    """The job does not exist or belongs to someone else (the terminal does not say which)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"you have no job {job_id}")
        self.job_id = job_id


class JobNotHeld(SpoolerError):
    """The job is the user's but is not waiting to be released (printing, printed, deleted)."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.job_id} is {job.state.keyword}, not waiting to be released")
        self.job_id = job.job_id
        self.state = job.state


def job_view(job: Job) -> dict[str, Any]:
    """What the terminal shows of one job: name, pages, colour, time (from the job's analysis)."""
    analysis = job.attributes.get("analysis") or {}
    known = analysis.get("status") == "ok"
    pages = analysis.get("pages") if known else None
    color: str | None = None  # unknown: never shown as mono
    if known and analysis.get("color_impressions") is not None and analysis.get("mono_impressions") is not None:
        color = "color" if int(analysis["color_impressions"]) > 0 else "mono"
    return {
        "id": job.job_id,
        "name": job.name or "(untitled)",
        "pages": pages,
        "sheets": analysis.get("sheets") if known else None,
        "copies": job.copies,
        "color": color,
        "sides": job.sides,
        "size": job.size,
        "time": job.created_at,
        "state": job.state.keyword,
        "held_offline": bool(job.attributes.get(HELD_OFFLINE)),
        "private": job.hold_key_verifier is not None,
    }


class PullPrint:
    def __init__(self, jobs: JobService) -> None:
        self._jobs = jobs

    def held_jobs(self, user: str) -> list[Job]:
        """The user's held jobs, oldest first."""
        return [job for job in self._jobs.list_jobs(state=JobState.PENDING_HELD) if job.user == user]

    def _mine(self, user: str, job_id: int) -> Job:
        try:
            job = self._jobs.get(job_id)
        except JobNotFound:
            raise NotYourJob(job_id) from None
        if job.user != user:
            raise NotYourJob(job_id)
        return job

    def release(self, user: str, job_id: int, key: str | None = None) -> Deferred[Job]:
        """Release one of `user`'s held jobs to this device; a private one with its `key`. Fails with
        NotYourJob, JobNotHeld or HoldKeyRefused."""
        job = self._mine(user, job_id)
        if job.state is not JobState.PENDING_HELD or job.reason == INCOMING:
            raise JobNotHeld(job)
        if job.hold_key_verifier is not None and key is not None:
            return self._jobs.release_with_key(job_id, key, requester=user, to_device=True)
        return maybeDeferred(self._jobs.release, job_id, requester=user, to_device=True)

    def delete(self, user: str, job_id: int) -> Job:
        """Cancel one of `user`'s jobs that has not finished."""
        job = self._mine(user, job_id)
        if job.state.is_final:
            raise JobNotHeld(job)
        return self._jobs.cancel(job_id, requester=user)
