"""The spooler's domain model: job states, the Job record and the typed errors. Pure data, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any


class JobState(enum.IntEnum):
    """IPP job-state values (RFC 8011 5.3.7); CUPS uses the same model."""

    PENDING = 3
    PENDING_HELD = 4
    PROCESSING = 5
    PROCESSING_STOPPED = 6
    CANCELED = 7
    ABORTED = 8
    COMPLETED = 9

    @property
    def keyword(self) -> str:
        return self.name.lower().replace("_", "-")

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    @classmethod
    def from_keyword(cls, keyword: str) -> JobState:
        try:
            return cls[keyword.strip().upper().replace("-", "_")]
        except KeyError:
            raise ValueError(f"unknown job state {keyword!r}") from None


FINAL_STATES = frozenset({JobState.CANCELED, JobState.ABORTED, JobState.COMPLETED})


class Route(str, enum.Enum):
    """Where a job goes (or went)."""

    DEVICE = "device"
    SERVER = "server"


class Mode(str, enum.Enum):
    """Whether the central server was part of the decision."""

    STANDALONE = "standalone"  # no central server configured
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True)
class Job:
    """One print job as the store keeps it. Times are seconds since the epoch."""

    job_id: int
    uuid: str
    queue: str
    protocol: str
    user: str
    host: str
    name: str
    document_format: str
    size: int
    state: JobState
    reason: str
    created_at: float
    copies: int = 1
    sides: str | None = None
    message: str = ""
    route: Route = Route.DEVICE
    mode: Mode = Mode.STANDALONE
    attempts: int = 0
    next_attempt_at: float | None = None
    processing_at: float | None = None
    completed_at: float | None = None
    files_removed: bool = False
    hold_key_verifier: str | None = field(default=None, repr=False)
    attributes: dict[str, Any] = field(default_factory=dict)

    def evolve(self, **changes: Any) -> Job:
        return replace(self, **changes)

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly view without secrets, used by the CLI, the admin API and the spool log."""
        return {
            "job_id": self.job_id,
            "uuid": self.uuid,
            "queue": self.queue,
            "protocol": self.protocol,
            "user": self.user,
            "host": self.host,
            "name": self.name,
            "document_format": self.document_format,
            "size": self.size,
            "copies": self.copies,
            "sides": self.sides,
            "state": self.state.keyword,
            "reason": self.reason,
            "message": self.message,
            "route": self.route.value,
            "mode": self.mode.value,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "created_at": self.created_at,
            "processing_at": self.processing_at,
            "completed_at": self.completed_at,
            "files_removed": self.files_removed,
            "private": self.hold_key_verifier is not None,
            "attributes": self.attributes,
        }


@dataclass(frozen=True)
class ForwardInDoubt:
    """A forward to the central server's queue that ended without an answer saying what the server
    kept (spooler.dispatch.reconcile): the server may hold an empty or a whole copy of the job. `forward_uuid`
    is the job-uuid the spooler gave that attempt, `remote_job_id` the server's job-id if it gave one.
    Open while `outcome` is None."""

    job_id: int
    uri: str
    started_at: float
    recorded_at: float
    cause: str
    forward_uuid: str | None = None
    remote_job_id: str | None = None
    forward_id: int | None = None
    outcome: str | None = None
    detail: str = ""
    resolved_at: float | None = None
    checks: int = 0
    next_check_at: float | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "forward_id": self.forward_id, "job_id": self.job_id, "uri": self.uri, "started_at": self.started_at,
            "recorded_at": self.recorded_at, "cause": self.cause, "forward_uuid": self.forward_uuid,
            "remote_job_id": self.remote_job_id, "outcome": self.outcome, "detail": self.detail,
            "resolved_at": self.resolved_at, "checks": self.checks, "next_check_at": self.next_check_at,
        }  # fmt: skip


@dataclass(frozen=True)
class Document:
    """One document of a job: its data file inside the spool folder (a name we chose, never the client's)."""

    job_id: int
    number: int
    file_name: str
    size: int
    document_format: str


# Typed errors. Each front-end maps them to its protocol's own answer.


class SpoolerError(Exception):
    """Base of every error the spooler raises on purpose."""


class ConfigError(SpoolerError):
    """The configuration names `key` and says what is wrong with it."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class IllegalTransition(SpoolerError):
    def __init__(self, job_id: int, current: JobState, wanted: JobState) -> None:
        super().__init__(f"job {job_id} is {current.keyword}; it cannot become {wanted.keyword}")
        self.job_id = job_id
        self.current = current
        self.wanted = wanted


class JobNotFound(SpoolerError):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"no job {job_id}")
        self.job_id = job_id


class NotAuthorized(SpoolerError):
    """Only a job's owner or an admin may change it."""


class HoldKeyRefused(NotAuthorized):
    """A private job (PJL HOLDKEY, IPP job-password) is released only with its key: `reason` is
    "key-required" (none given), "wrong-key", or "locked" (too many wrong keys; `retry_after`)."""

    def __init__(self, job_id: int, reason: str, retry_after: float | None = None) -> None:
        messages = {"key-required": f"job {job_id} is private: it is released only with its key",
                    "wrong-key": f"wrong key for the private job {job_id}",
                    "locked": f"too many wrong keys for job {job_id}: try again in {retry_after or 0:.0f} s"}
        super().__init__(messages[reason])
        self.job_id = job_id
        self.reason = reason
        self.retry_after = retry_after


class SpoolFull(SpoolerError):
    """Free space is below the configured floor: new jobs are refused, existing ones are untouched."""


class NotPossible(SpoolerError):
    """The request makes sense but not for this job or printer now (IPP client-error-not-possible)."""


class NotAccepting(SpoolerError):
    """An administrator set the queue not to accept jobs (IPP Disable-Printer, Shutdown-Printer)."""


class JobTooLarge(SpoolerError):
    """A job exceeded the configured maximum size."""


class StateDirLocked(SpoolerError):
    """Another spooler already runs on this state folder."""


class DeliveryError(SpoolerError):
    """A delivery attempt failed. `retryable` says whether trying again later may succeed; `sent`
    whether the peer may hold a copy of the job: True when the request (or part of the job) went out
    and no answer said what became of it (an empty Create-Job, a whole job whose answer was lost: an
    in-doubt forward), False when nothing of it is left there, None when the backend cannot tell."""

    def __init__(self, message: str, *, retryable: bool, sent: bool | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.sent = sent
