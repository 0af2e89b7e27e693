"""Accounting records: the one record each finished job leaves (what it was, where it went, what it
printed), built by a pure function from the job, its documents and its analysis. Pure: no I/O.

The store writes the record in the same transaction as the job's final state (JobStore.update_job
of a store opened with a `RecordMaker`); spooler.accounting.outbox sends it to the central server; spooler.accounting.report sums it up.

Figures the analysis could not establish are `None` with `"analysis": "unknown"` (or `"pending"`
while it runs): a record never carries a guessed figure. Pages known but colour not (a page whose
colour could not be told) leave `color_pages` and `mono_pages` None with `"analysis": "ok"`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spooler.centralapi import iso_time
from spooler.model import Document, Job, JobState, Mode
from spooler.store.database import Entry

#: Written in every record made while the central server was unreachable: none of these were applied
#: to the job (the server reconciles when the record arrives). Offline login refers to this field.
OFFLINE_LIMITS: tuple[str, ...] = ("credit", "quota", "projects", "policies")
#: The name of that field in a record.
OFFLINE_LIMITS_FIELD = "offline_limits"

OUTCOMES: dict[JobState, str] = {
    JobState.COMPLETED: "completed",
    JobState.CANCELED: "canceled",
    JobState.ABORTED: "aborted",
}

#: The `analysis` field: the figures are known, could not be known, or are still being counted.
ANALYSIS_OK, ANALYSIS_UNKNOWN, ANALYSIS_PENDING = "ok", "unknown", "pending"

#: The figures taken from the job's analysis; all None unless the analysis is "ok".
FIGURES = ("pages", "impressions", "sheets", "color_pages", "mono_pages")

RECORD_VERSION = 1


def record_id(spool_id: str, job_id: int) -> str:
    """Globally unique and stable: the same job always gets the same id, so that a retry after a
    crash (or a cut in the middle of an upload) can never make a second record at the server."""
    return f"{spool_id}:{job_id}"


def analysis_pending(job: Job, documents: Sequence[Document], *, analysis_enabled: bool) -> bool:
    """Whether the job's figures may still arrive: analysis is on, the job has documents whose data
    was kept, and no figures landed yet."""
    return analysis_enabled and bool(documents) and "analysis" not in job.attributes and not job.files_removed


def _known(value: Any) -> int | None:
    """A figure the analysis may not have established (colour): None stays None, never 0."""
    return None if value is None else int(value)


def _duplex(sides: str | None) -> bool | None:
    if sides is None:
        return None
    return sides.startswith("two-sided")


def build_record(
    job: Job,
    documents: Sequence[Document],
    *,
    spool_id: str,
    device: str,
    analysis_enabled: bool = True,
    device_impressions: int | None = None,
) -> Entry:
    """The accounting record of a finished job.

    `device_impressions` is the device's own count (IPP job-impressions-completed) where the
    delivery reported one; by default it is read from the job's attributes, where the dispatcher
    keeps the receipt's count ("impressions_reported"). Raises ValueError for a job not finished."""
    if job.state not in OUTCOMES:
        raise ValueError(f"job {job.job_id} is {job.state.keyword}: only a finished job has a record")
    attributes = job.attributes
    analysis = attributes.get("analysis")
    pending = analysis_pending(job, documents, analysis_enabled=analysis_enabled)
    if isinstance(analysis, dict) and analysis.get("status") == ANALYSIS_OK:
        status, reason = ANALYSIS_OK, ""
    elif pending:
        status, reason = ANALYSIS_PENDING, "the analysis has not finished yet"
    else:
        status = ANALYSIS_UNKNOWN
        if isinstance(analysis, dict):
            reason = str(analysis.get("reason") or "the analysis could not count this job")
        elif not documents:
            reason = "the job has no document"
        elif not analysis_enabled:
            reason = "analysis is switched off"
        else:
            reason = "the job was not analysed"
    known = status == ANALYSIS_OK
    figures: dict[str, Any] = {name: None for name in FIGURES}
    sides = job.sides
    sizes: dict[str, int] | None = None
    copies = job.copies
    if known:
        assert isinstance(analysis, dict)
        figures = {
            "pages": int(analysis["pages"]),
            "impressions": int(analysis["impressions"]),
            "sheets": int(analysis["sheets"]),
            "color_pages": _known(analysis.get("color_impressions")),
            "mono_pages": _known(analysis.get("mono_impressions")),
        }
        sides = analysis.get("sides") or sides
        sizes = {str(name): int(count) for name, count in (analysis.get("sizes") or {}).items()}
        copies = int(analysis.get("copies") or copies)
    if device_impressions is None:
        reported = attributes.get("impressions_reported")
        device_impressions = int(reported) if isinstance(reported, int) and not isinstance(reported, bool) else None
    journal = attributes.get("delivery")
    delivery: dict[str, Any] = journal if isinstance(journal, dict) else {}
    printed_at = None
    if job.state == JobState.COMPLETED:
        printed_at = delivery.get("completed_at") or job.completed_at
    finished_at = job.completed_at if job.completed_at is not None else job.created_at
    offline = job.mode == Mode.OFFLINE
    identifier = record_id(spool_id, job.job_id)
    body: dict[str, Any] = {
        "record_id": identifier,
        "record_version": RECORD_VERSION,
        "job_id": job.job_id,
        "job_uuid": job.uuid,
        "device": device,
        "queue": job.queue,
        "protocol": job.protocol,
        "user": job.user,
        "host": job.host,
        "job_name": job.name,
        "route": job.route.value,
        "mode": job.mode.value,
        "document_format": job.document_format,
        "documents": len(documents),
        "bytes": job.size,
        "copies": copies,
        **figures,
        "paper_sizes": sizes,
        "sides": sides,
        "duplex": _duplex(sides),
        "analysis": status,
        "analysis_reason": reason,
        "device_impressions": device_impressions,
        "remote_job_id": delivery.get("remote_job_id"),
        "submitted_at": iso_time(job.created_at),  # when the spooler received it ("received_at" is the server's)
        "printed_at": iso_time(printed_at),
        "finished_at": iso_time(finished_at),
        "outcome": OUTCOMES[job.state],
        "reason": job.reason,
        OFFLINE_LIMITS_FIELD: list(OFFLINE_LIMITS) if offline else [],
    }
    return Entry(job.job_id, identifier, float(finished_at), pending, body)


@dataclass(frozen=True)
class RecordMaker:
    """What the store calls to make a finished job's record (with the daemon's device name; the
    store gives its own spool id): `JobStore.open(path, record_maker=RecordMaker(...))`."""

    device: str
    analysis_enabled: bool = True

    def __call__(self, job: Job, documents: Sequence[Document], spool_id: str) -> Entry:
        return build_record(job, documents, spool_id=spool_id, device=self.device,
                            analysis_enabled=self.analysis_enabled)  # fmt: skip
