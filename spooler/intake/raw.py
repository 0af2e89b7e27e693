"""Raw AppSocket/JetDirect intake (port 9100): one connection is one job.

The job ends when the client ends its stream (a FIN or half-close). Only then is the job made
durable, and only after that does the spooler close its side: a client that waits for the close
(the CUPS socket backend does) knows the job is safe. A connection cut any other way (reset, idle
timeout, too large, spooler stopping) leaves no job behind.

Raw has no acknowledgement byte, so the clean close *is* the acknowledgement, and it must never
happen by accident: every connection is held at SO_LINGER {on, 0}, so that if the process dies
(kill -9, a crash) the kernel resets the connection instead of closing it cleanly. Linger is turned
off only for the deliberate close after the job is committed.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IHalfCloseableProtocol, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from spooler.intake.base import (DEFAULT_QUEUE, RECEIVE_SIZE, IntakeFactory, JobRequest, JobSink, peer_host,
                                 set_reset_on_close)  # fmt: skip
from spooler.model import JobTooLarge, SpoolFull
from spooler.store.spoolfiles import IncomingFile

log = Logger(namespace="spooler.raw")


@implementer(IHalfCloseableProtocol)
class RawJobProtocol(Protocol, TimeoutMixin):
    factory: RawJobFactory

    def __init__(self) -> None:
        self.incoming: IncomingFile | None = None
        self.submitted = False
        self.host = ""
        self.last_activity = 0.0
        self.received_any = False

    def connectionMade(self) -> None:
        self.host = peer_host(self.transport.getPeer())  # type: ignore[union-attr]
        set_reset_on_close(self.transport, True)
        if hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = RECEIVE_SIZE  # fewer, larger reads for big jobs
        self.callLater = self.factory.clock.callLater  # TimeoutMixin uses the injected clock
        self.last_activity = self.factory.clock.seconds()
        if not self.factory.jobs.accepting_jobs(self.factory.queue):
            self._refuse("job_refused", f"queue {self.factory.queue} does not accept jobs")
            return
        try:
            self.incoming = self.factory.jobs.open_incoming(on_pressure=self._pressure)
        except SpoolFull as error:
            self._refuse("spool_full", str(error))
            return
        self.setTimeout(self.factory.idle_timeout)

    def _pressure(self, paused: bool) -> None:
        if paused:
            self.transport.pauseProducing()  # type: ignore[union-attr]
        else:
            self.transport.resumeProducing()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self.incoming is None or self.submitted:
            return
        self.resetTimeout()
        self.last_activity = self.factory.clock.seconds()
        self.received_any = True
        try:
            self.incoming.write(data)
        except (JobTooLarge, SpoolFull, OSError) as error:
            self._refuse("job_refused", str(error))

    def readConnectionLost(self) -> None:
        """The client ended its stream cleanly: this is the end of the job."""
        self.setTimeout(None)
        incoming = self.incoming
        if incoming is None or self.submitted:
            return
        self.submitted = True
        if incoming.size == 0:
            incoming.discard()
            log.debug("Empty connection from {host} ignored", host=self.host)
            set_reset_on_close(self.transport, False)
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        request = JobRequest(protocol="raw", host=self.host, queue=self.factory.queue)
        d = self.factory.jobs.submit(incoming, request)
        d.addCallbacks(self._accepted, self._not_accepted)
        self.factory.track_submission(d)

    def writeConnectionLost(self) -> None:
        pass

    def _accepted(self, job: Any) -> None:
        set_reset_on_close(self.transport, False)  # the job is durable: now a clean close acknowledges it
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _not_accepted(self, failure: Failure) -> None:
        log.failure("Raw job from {host} could not be spooled", failure, spool_event="job_refused",
                    host=self.host, protocol="raw")  # fmt: skip
        self.transport.abortConnection()  # type: ignore[union-attr]

    def timeoutConnection(self) -> None:
        size = self.incoming.size if self.incoming else 0
        self._refuse("job_refused", f"idle for {self.factory.idle_timeout:.0f}s after {size} bytes")

    def _refuse(self, event: str, why: str) -> None:
        size = self.incoming.size if self.incoming else 0
        log.warn("Raw connection from {host} refused: {why}", spool_event=event, host=self.host, why=why,
                 size=size, protocol="raw")  # fmt: skip
        self._drop_incoming()
        self.transport.abortConnection()  # type: ignore[union-attr]

    def committing(self) -> bool:
        """For IntakeFactory.close_all: the job is being made durable (or the connection is done)."""
        return self.submitted

    def eviction_rank(self) -> tuple[bool, float] | None:
        """For the connection limit (spooler.intake.limits): a job being committed is never cut."""
        return None if self.submitted else (self.received_any, self.last_activity)

    def evict(self) -> None:
        self.factory.connections.discard(self)
        self._drop_incoming()
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[union-attr]

    def _drop_incoming(self) -> None:
        if self.incoming is not None and not self.submitted:
            self.submitted = True
            self.incoming.discard()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.setTimeout(None)
        self.factory.connection_closed(self)
        if self.incoming is not None and not self.submitted:
            log.warn("Raw connection from {host} cut after {size} bytes: no job", spool_event="job_incomplete",
                     host=self.host, size=self.incoming.size, protocol="raw", why=reason.getErrorMessage())  # fmt: skip
            self._drop_incoming()


class RawJobFactory(IntakeFactory):
    """Port 9100: one RawJobProtocol per connection, each job handed to the job sink, in `queue`
    (the configured default queue)."""

    protocol = RawJobProtocol
    protocol_name = "Raw"

    def __init__(self, jobs: JobSink, clock: IReactorTime, *, idle_timeout: float, max_connections: int,
                 queue: str = DEFAULT_QUEUE) -> None:  # fmt: skip
        super().__init__(jobs, clock, idle_timeout=idle_timeout, max_connections=max_connections)
        self.queue = queue
