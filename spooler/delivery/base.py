"""What every delivery backend promises: deliver a job's files, or fail with a classified DeliveryError;
probe the peer; and after a restart, say whether a job whose delivery was cut off already arrived."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from twisted.internet.defer import Deferred

from spooler.model import Document, Job

#: Called by a backend as soon as the peer has given the job an id of its own (IPP job-id, ...), so
#: that the id is journaled before the document is sent and a restart can ask the peer about it.
Journal = Callable[[str], None]


@dataclass(frozen=True)
class DeliveryReceipt:
    """What a successful delivery reports. `already_delivered` means a retry found the job delivered;
    `impressions` is the peer's own count (IPP job-impressions-completed) where it reported one."""

    detail: str
    remote_job_id: str | None = None
    already_delivered: bool = False
    impressions: int | None = None


@dataclass(frozen=True)
class RemoteCopy:
    """What a peer says of a copy of a job it holds: its job-id there, IPP job-state and reasons, and
    how many documents it has (None: not said). spooler.dispatch.reconcile decides what that means."""

    remote_job_id: str
    state: int
    reasons: tuple[str, ...] = ()
    documents: int | None = None


@dataclass(frozen=True)
class PartialDelivery:
    """What `recover` found of a job a backend sends as several peer jobs or connections, one per
    document (a device without multiple-document jobs): the first `documents_done` are at the peer,
    as `remote_job_id` (the backend's own journal value) records; `deliver(..., resume=...)` sends
    the rest only, so that a restart never sends a document the peer already has."""

    documents_done: int
    remote_job_id: str


@dataclass(frozen=True)
class DeliveryFile:
    document: Document
    path: Path


class DeliveryBackend(Protocol):
    uri: str

    def deliver(self, job: Job, files: list[DeliveryFile], journal: Journal | None = None) -> Deferred[DeliveryReceipt]:
        """Send the job. Fails with DeliveryError (retryable or not); cancelling aborts the attempt.
        A backend whose `recover` may return a PartialDelivery also takes it as `resume=`."""
        ...

    def probe(self) -> Deferred[None]:
        """Fires when the peer answers as a printer would, within the backend's timeouts; fails with a
        retryable DeliveryError otherwise (refused, timed out, accepted but silent, error status)."""
        ...

    def recover(self, job: Job, remote_job_id: str | None) -> Deferred[DeliveryReceipt | PartialDelivery | None]:
        """After a restart, for a job whose delivery was under way: a receipt if the peer already has
        the whole job (it must not be sent again), None if it must be sent again (a partial job left at
        the peer has been canceled where the protocol allows), a PartialDelivery if the job went as
        one peer job per document and only some are at the peer. Backends that cannot ask return None."""
        ...
