"""What every intake front-end shares: the JobSink it hands jobs to (the job service, as SMTP hands
messages to twisted.mail's IMessageDelivery), the JobRequest it hands over, and IntakeFactory, the
connection bookkeeping of a listener (the connection limit, the jobs being committed, the cut at
shutdown). Protocols parse; the sink decides.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.protocol import Protocol as TwistedProtocol

from spooler.intake.limits import Evictable, admit
from spooler.model import Job
from spooler.store.spoolfiles import IncomingFile

DEFAULT_QUEUE = "default"
#: Bytes asked of the socket per read (Twisted's default is 64 KiB).
RECEIVE_SIZE = 256 * 1024


@dataclass(frozen=True)
class JobRequest:
    """What a front-end learned about a job from its protocol (None: it did not say)."""

    protocol: str
    host: str
    queue: str = DEFAULT_QUEUE
    user: str | None = None
    name: str | None = None
    document_format: str | None = None
    copies: int | None = None
    sides: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    hold: bool = False  # held until released (IPP job-hold-until=indefinite)
    hold_key: str | None = field(default=None, repr=False)  # IPP job-password: held until released with it


class JobSink(Protocol):
    """Where intake hands its jobs: the job service (spooler.jobs.service.JobService)."""

    def open_incoming(self, *, on_pressure: Callable[[bool], None] = ...) -> IncomingFile:
        """Start receiving a document (`on_pressure(True)`: pause the client, the disk is behind).
        Raises SpoolFull below the free-space floor."""
        ...

    def accepting_jobs(self, queue: str) -> bool:
        """Whether `queue` takes new jobs (an administrator may have stopped it: IPP Disable-Printer)."""
        ...

    def submit(self, documents: IncomingFile | list[IncomingFile], request: JobRequest) -> Deferred[Job]:
        """Make the received documents one durable job; fires with it once data and row are on disk
        (only then may the client be told). Every document is discarded if it fails."""
        ...


def peer_host(address: IAddress | None) -> str:
    return str(getattr(address, "host", "") or "")


def set_reset_on_close(transport: Any, reset: bool) -> None:
    """SO_LINGER {on, 0}: a close the spooler did not decide on resets the connection."""
    handle = getattr(transport, "getHandle", lambda: None)()
    if isinstance(handle, socket.socket):
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1 if reset else 0, 0))


class IntakeConnection(Evictable, Protocol):
    """What IntakeFactory asks of its protocols, besides the connection limit's eviction."""

    transport: Any

    def committing(self) -> bool:
        """Whether the connection's job is being made durable (or answered): never cut at shutdown."""
        ...


class IntakeFactory(Factory):
    """A front-end's factory: admits connections under `max_connections` (spooler.intake.limits),
    keeps them in `connections` and the jobs being committed in `submissions`, and at shutdown
    (`close_all`) cuts every connection not committing (nothing it sent was acknowledged) and waits
    for the jobs being made durable, so that every client that got its acknowledgement has its job."""

    noisy = False
    #: The protocol's name in log lines ("Raw", "LPD").
    protocol_name = ""

    def __init__(self, jobs: JobSink, clock: IReactorTime, *, idle_timeout: float, max_connections: int) -> None:
        self.jobs = jobs
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.connections: set[Any] = set()
        self.submissions: set[Deferred[Any]] = set()

    def buildProtocol(self, addr: IAddress) -> TwistedProtocol | None:
        if not admit(self.connections, self.max_connections, self.clock.seconds(), protocol=self.protocol_name,
                     host=peer_host(addr)):  # fmt: skip
            return None
        protocol = super().buildProtocol(addr)
        assert protocol is not None
        self.connections.add(protocol)
        return protocol

    def connection_closed(self, protocol: IntakeConnection) -> None:
        self.connections.discard(protocol)

    def track_submission(self, submission: Deferred[Any]) -> None:
        self.submissions.add(submission)
        submission.addBoth(lambda result: (self.submissions.discard(submission), result)[1])

    def close_all(self) -> Deferred[Any]:
        for protocol in list(self.connections):
            if not protocol.committing() and protocol.transport is not None:
                protocol.transport.abortConnection()
        return gatherResults([d.addErrback(lambda _: None) for d in list(self.submissions)])
