"""What every delivery backend promises: deliver a job's files, or fail with a classified DeliveryError."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from twisted.internet.defer import Deferred

from spooler.model import Document, Job


@dataclass(frozen=True)
class DeliveryReceipt:
    """What a successful delivery reports. `already_delivered` means a retry found the job delivered."""

    detail: str
    remote_job_id: str | None = None
    already_delivered: bool = False


@dataclass(frozen=True)
class DeliveryFile:
    document: Document
    path: Path


class DeliveryBackend(Protocol):
    uri: str

    def deliver(self, job: Job, files: list[DeliveryFile]) -> Deferred[DeliveryReceipt]:
        """Send the job. Fails with DeliveryError (retryable or not); cancelling aborts the attempt."""
        ...
