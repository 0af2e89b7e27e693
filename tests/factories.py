"""Shared test factories: jobs, a job's delivery files, and the result of a Deferred that has fired.
Each test module states only what its jobs need to differ in (`job_factory(protocol="ipp", ...)`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from spooler.delivery.base import DeliveryFile
from spooler.model import Document, Job, JobState

#: A job as every test module starts from; `make_job` and `job_factory` change what a test needs.
JOB_DEFAULTS: dict[str, Any] = {
    "job_id": 7, "uuid": "0123456789abcdef", "queue": "default", "protocol": "raw", "user": "alice", "host": "h",
    "name": "report", "document_format": "application/pdf", "size": 0, "state": JobState.PENDING, "reason": "",
    "created_at": 1.0,
}  # fmt: skip


def make_job(job_id: int | None = None, **changes: Any) -> Job:
    values = JOB_DEFAULTS | changes | ({"job_id": job_id} if job_id is not None else {})
    return Job(**values)


def job_factory(**defaults: Any) -> Callable[..., Job]:
    """`make_job` with this module's own defaults (a value given at the call still wins)."""

    def make(job_id: int | None = None, **changes: Any) -> Job:
        return make_job(**(defaults | changes | ({"job_id": job_id} if job_id is not None else {})))

    return make


def delivery_files(directory: Path, *contents: bytes, job_id: int = 7,
                   document_format: str = "application/pdf") -> list[DeliveryFile]:  # fmt: skip
    """One spool file per content, named as the spooler names them, ready for a backend's deliver."""
    result = []
    for number, content in enumerate(contents, start=1):
        path = directory / f"d{job_id:06d}-{number:03d}"
        path.write_bytes(content)
        result.append(DeliveryFile(Document(job_id, number, path.name, len(content), document_format), path))
    return result


def fired(deferred: Deferred[Any]) -> Any:
    """What a Deferred that has already fired gave (a Failure if it failed); fails the test if it has not."""
    results: list[Any] = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


def fired_ok(deferred: Deferred[Any]) -> Any:
    """The result of a Deferred that has already fired successfully (its failure is raised)."""
    result = fired(deferred)
    if isinstance(result, Failure):
        result.raiseException()
    return result
