"""In-process building blocks for unit tests: a JobService on a temporary state folder, a clock, and
a scriptable delivery backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from conftest import run_synchronously
from factories import fired_ok
from spooler.config import Config, config_from_mapping
from spooler.delivery.base import DeliveryFile, DeliveryReceipt, PartialDelivery, RemoteCopy
from spooler.dispatch.dispatcher import Dispatcher
from spooler.jobs.service import JobService
from spooler.jobs.upkeep import SpoolUpkeep
from spooler.model import DeliveryError, Job
from spooler.store.database import JobStore, RecordMakerType
from spooler.store.documents import SpoolDocuments
from spooler.store.spoolfiles import RunInThread


@dataclass
class ScriptedBackend:
    """Each delivery returns a Deferred the test fires; `attempts` records (job id, file bytes).
    `probes` and `recovers` are scripted outcomes (True/False, receipts) consumed in order."""

    uri: str = "test://device"
    attempts: list[tuple[int, bytes]] = field(default_factory=list)
    pending: list[Deferred[DeliveryReceipt]] = field(default_factory=list)
    journals: list[Any] = field(default_factory=list)
    canceled: int = 0
    probe_results: list[bool | None] = field(default_factory=list)  # None: never answers
    probes: int = 0
    recover_results: dict[int, DeliveryReceipt | PartialDelivery | None] = field(default_factory=dict)
    recovered: list[tuple[int, str | None]] = field(default_factory=list)
    resumes: list[PartialDelivery | None] = field(default_factory=list)
    #: What the peer holds, by its job id or by the job-uuid a forward carried (spooler.dispatch.reconcile).
    copies: dict[str, RemoteCopy] = field(default_factory=dict)
    asked: list[tuple[int, str | None, str | None]] = field(default_factory=list)
    canceled_copies: list[str] = field(default_factory=list)
    #: When set, asking about a copy fails with it (the peer cannot be asked).
    ask_error: DeliveryError | None = None

    def deliver(self, job: Job, files: list[DeliveryFile], journal: Any = None,
                resume: PartialDelivery | None = None) -> Deferred[DeliveryReceipt]:  # fmt: skip
        self.attempts.append((job.job_id, b"".join(f.path.read_bytes() for f in files)))
        self.journals.append(journal)
        self.resumes.append(resume)

        def cancel(_: object) -> None:
            self.canceled += 1

        attempt: Deferred[DeliveryReceipt] = Deferred(cancel)
        self.pending.append(attempt)
        return attempt

    def probe(self) -> Deferred[None]:
        self.probes += 1
        outcome = self.probe_results.pop(0) if self.probe_results else True
        if outcome is None:
            return Deferred()  # accepts and never answers
        if outcome:
            return succeed(None)
        return fail(DeliveryError("connection refused", retryable=True))

    def recover(self, job: Job, remote_job_id: str | None) -> Deferred[DeliveryReceipt | PartialDelivery | None]:
        self.recovered.append((job.job_id, remote_job_id))
        return succeed(self.recover_results.get(job.job_id))

    def find_forward(self, job: Job, remote_job_id: str | None, forward_uuid: str | None, *,
                     timeout: float | None = None) -> Deferred[RemoteCopy | None]:  # fmt: skip
        self.asked.append((job.job_id, remote_job_id, forward_uuid))
        if self.ask_error is not None:
            return fail(self.ask_error)
        return succeed(self.copies.get(remote_job_id or "") or (self.copies.get(forward_uuid or "")
                                                                if not remote_job_id else None))  # fmt: skip

    def cancel_forward(self, job: Job, remote_job_id: str, *, timeout: float | None = None) -> Deferred[bool]:
        if self.ask_error is not None:
            return fail(self.ask_error)
        self.canceled_copies.append(remote_job_id)
        for key, copy in list(self.copies.items()):
            if copy.remote_job_id == remote_job_id:
                self.copies[key] = RemoteCopy(remote_job_id, 7, ("job-canceled-by-user",), copy.documents)
        return succeed(True)

    def succeed(self, detail: str = "ok", remote_job_id: str | None = None) -> None:
        self.pending.pop(0).callback(DeliveryReceipt(detail, remote_job_id=remote_job_id))

    def fail(self, error: Exception) -> None:
        self.pending.pop(0).errback(error)


class Rig:
    """A JobService, its store and dispatcher, on a temporary folder, driven by a Clock."""

    def __init__(self, root: Path, *, record_maker: RecordMakerType | None = None,
                 run_in_thread: RunInThread = run_synchronously, budgets: Callable[[Clock], Any] | None = None,
                 **raw_config: Any) -> None:  # fmt: skip
        """`run_in_thread` runs the job service's file work (the group commit always runs at once);
        `budgets(clock)` opens the failure budgets of private jobs' keys (default: in memory)."""
        raw_config.setdefault("spool", {}).setdefault("min_free_space", 0)
        # Unit tests read spool files directly: every document gets one unless a test asks for
        # inline storage (tests/test_ipp_inline.py does; the daemon's default is 64 KiB).
        raw_config["spool"].setdefault("inline_max", 0)
        self.config: Config = config_from_mapping(raw_config, base=root, state_dir=root / "state")
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.backend = ScriptedBackend()
        self.server = ScriptedBackend(uri="test://server") if self.config.server is not None else None
        self.store = JobStore.open(self.config.database_path, record_maker=record_maker)
        self.documents = SpoolDocuments(self.store, self.config.spool_dir, self.config.incoming_dir, run_in_thread)
        self.dispatcher = Dispatcher(
            store=self.store, backend=self.backend, clock=self.clock, documents=self.documents,
            retry_initial=self.config.device.retry_initial, retry_max=self.config.device.retry_max,
            queues=self.config.queues, server=self.server, server_config=self.config.server,
        )  # fmt: skip
        self.service = JobService(
            config=self.config, store=self.store, dispatcher=self.dispatcher, clock=self.clock,
            run_in_thread=run_in_thread, commit_thread=run_synchronously,
            budgets=budgets(self.clock) if budgets is not None else None,
        )  # fmt: skip
        self.upkeep = SpoolUpkeep(config=self.config, store=self.store, clock=self.clock,
                                  run_in_thread=run_synchronously)  # fmt: skip
        self.upkeep.recover()

    def ipp_site(self, **options: Any) -> Any:
        """The IPP printer's site on this rig's job service (build_ipp_site's options)."""
        from spooler.ipp.server.resource import build_ipp_site

        return build_ipp_site(self.service, self.config, self.clock, spool_id=self.store.spool_id, **options)

    def submit(self, data: bytes, **request: Any) -> Job:
        from spooler.intake.base import JobRequest

        incoming = self.service.open_incoming()
        incoming.write(data)
        return fired_ok(self.service.submit(incoming, JobRequest(protocol=request.pop("protocol", "raw"),
                                                                 host=request.pop("host", "127.0.0.1"), **request)))


def http_responses(raw: bytes) -> list[tuple[int, bytes]]:
    """(HTTP status, body) of every response in bytes a server wrote, interim ones included (body b"")."""
    found = []
    while raw:
        head, _, raw = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        found.append((status, raw[:length]))
        raw = raw[length:]
    return found
