"""The pull-print hold of the reference server's queue (`serve --hold`), as MyQ and PaperCut hold jobs
until their owner releases them at a printer: the queue holds its new jobs (IPP Hold-New-Jobs, kept
by spooler.queue_admin's settings), so every job it receives (IPP, LPD, raw) is pending-held
(job-held-on-create), visible to IPP Get-Jobs and Get-Job-Attributes and cancellable with
Cancel-Job by its owner, and prints (into DIR/received) only once released:

* by `spooler-refserver ctl release [JOB_ID ...]` (all held jobs when none is named), or
* on its own `release_after` seconds after it arrived, counting only time in which the server
  works (normal or slow mode): a user walking up to a printer cannot release anything while the
  server is down, refusing, hanging or failing, and after a restart the count starts again.

A job whose documents are still coming (job-incoming, an IPP Create-Job) is not released: it is not
a whole job yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from spooler.jobs.service import INCOMING, JobService
from spooler.model import IllegalTransition, JobNotFound, JobState
from spooler.refserver.modes import ModeController

log = Logger(namespace="spooler.refserver.hold")

#: Modes in which the server works, so that held jobs can be released.
WORKING_MODES = ("normal", "slow")
#: Longest interval between two looks at the held jobs.
TICK_MAX = 0.25


def hold_new_jobs(jobs: JobService, queues: Iterable[str], holding: bool) -> None:
    """Make `queues` hold their new jobs or not (as --hold says: a setting a former run left is undone)."""
    changed = False
    for name in queues:
        settings = jobs.settings.queue(name)
        if settings.holding_new_jobs != holding:
            settings.holding_new_jobs, changed = holding, True
    if changed:
        jobs.settings.save()


class HeldQueue:
    """Holds every new job of `jobs`' `queues` and releases held ones on request or after `release_after`."""

    def __init__(self, jobs: JobService, controller: ModeController, clock: IReactorTime,
                 release_after: float | None, queues: Iterable[str] = ("default",)) -> None:  # fmt: skip
        self.jobs = jobs
        self.controller = controller
        self.clock = clock
        self.release_after = release_after
        self._working_since = clock.seconds()
        self._was_working = True
        self._timer: IDelayedCall | None = None
        hold_new_jobs(jobs, queues, True)

    def start(self) -> None:
        if self.release_after is not None:
            self._timer = self.clock.callLater(0, self._tick)

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def held(self) -> list[Any]:
        """The whole jobs waiting for release, oldest first."""
        return [job for job in self.jobs.list_jobs(state=JobState.PENDING_HELD) if job.reason != INCOMING]

    def release(self, job_ids: Iterable[int] | None = None, *, by: str = "ctl") -> list[int]:
        """Release the held jobs named (all when None); returns those released. Raises JobNotFound for
        an unknown id; a job that is not held is skipped."""
        wanted = None if job_ids is None else [int(job_id) for job_id in job_ids]
        if wanted is not None:
            for job_id in wanted:
                self.jobs.get(job_id)  # JobNotFound
        released = []
        for job in self.held():
            if wanted is not None and job.job_id not in wanted:
                continue
            try:
                self.jobs.release(job.job_id, admin=True)
            except (IllegalTransition, JobNotFound):
                continue  # canceled or printed meanwhile
            released.append(job.job_id)
        if released:
            log.info("Released {count} held job(s) ({by}): {job_ids}", refserver_event="jobs_released",
                     count=len(released), job_ids=released, by=by)  # fmt: skip
        return released

    def _tick(self) -> None:
        assert self.release_after is not None
        now = self.clock.seconds()
        working = self.controller.mode in WORKING_MODES
        if working and not self._was_working:
            self._working_since = now  # back from an outage: nobody could release anything meanwhile
        self._was_working = working
        if working:
            due = [job.job_id for job in self.held()
                   if now - max(job.created_at, float(job.attributes.get("incoming_since") or 0),
                                self._working_since) >= self.release_after]  # fmt: skip
            if due:
                self.release(due, by=f"{self.release_after:g}s after arrival")
        self._timer = self.clock.callLater(min(TICK_MAX, self.release_after / 4 or TICK_MAX), self._tick)

    def status(self) -> dict[str, Any]:
        return {"hold": True, "release_after": self.release_after, "held_jobs": len(self.held())}
