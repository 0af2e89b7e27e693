"""Accounting records: the pure builder (table-tested), the store writing a job's final state and its
record in one transaction, and the outbox's batches, retries, age limit and audit (with a Clock)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

import factories
from inprocess import Rig
from spooler.accounting.records import OFFLINE_LIMITS, RecordMaker, build_record, record_id
from spooler.centralapi import CentralApiDown, CentralApiRefused
from spooler.config import AccountingConfig, config_from_mapping, keys_of
from spooler.delivery.base import DeliveryReceipt
from spooler.intake.base import JobRequest
from spooler.model import ConfigError, Document, Job, JobState, Mode, Route
from spooler.accounting.outbox import Outbox, retry_delay
from spooler.states import transition
from spooler.store.database import _SCHEMA, JobStore

T0 = 1_700_000_000.0

ANALYSIS_OK = {
    "status": "ok", "reason": "", "pages": 3, "copies": 2, "sides": "two-sided-long-edge", "impressions": 6,
    "sheets": 4, "color_impressions": 2, "mono_impressions": 4, "sizes": {"iso_a4_210x297mm": 6}, "documents": [],
}  # fmt: skip


def make_job(job_id: int = 7, state: JobState = JobState.COMPLETED, **changes: Any) -> Job:
    return factories.make_job(**{
        "job_id": job_id, "uuid": f"uuid-{job_id}", "protocol": "ipp", "host": "ws1", "name": "report.pdf",
        "size": 1234, "state": state, "reason": "x", "created_at": T0, "completed_at": T0 + 5, "copies": 2,
        "sides": "two-sided-long-edge", "route": Route.DEVICE, "mode": Mode.OFFLINE,
        "attributes": {"analysis": ANALYSIS_OK, "delivery": {"completed_at": T0 + 4}}, **changes,
    })  # fmt: skip


DOCS = [Document(7, 1, "d000007-001", 1234, "application/pdf")]


# -- the pure builder ---------------------------------------------------------------------------------

BUILDER_CASES = [
    # (name, job, documents, analysis_enabled, expected subset)
    ("offline completed with figures", make_job(), DOCS, True, {
        "record_id": "spool-1:7", "job_id": 7, "device": "branch-1", "user": "alice", "host": "ws1",
        "job_name": "report.pdf", "queue": "default", "protocol": "ipp", "route": "device", "mode": "offline",
        "document_format": "application/pdf", "bytes": 1234, "pages": 3, "copies": 2, "impressions": 6,
        "sheets": 4, "color_pages": 2, "mono_pages": 4, "paper_sizes": {"iso_a4_210x297mm": 6}, "duplex": True,
        "outcome": "completed", "analysis": "ok", "submitted_at": "2023-11-14T22:13:20.000Z",
        "printed_at": "2023-11-14T22:13:24.000Z", "finished_at": "2023-11-14T22:13:25.000Z",
        "offline_limits": ["credit", "quota", "projects", "policies"], "device_impressions": None,
    }),
    ("online forward to the server", make_job(route=Route.SERVER, mode=Mode.ONLINE), DOCS, True, {
        "route": "server", "mode": "online", "offline_limits": [], "pages": 3,
    }),
    ("device count reported", make_job(attributes={"analysis": ANALYSIS_OK, "impressions_reported": 5}), DOCS, True,
     {"device_impressions": 5, "impressions": 6, "printed_at": "2023-11-14T22:13:25.000Z"}),
    ("analysis could not count", make_job(attributes={"analysis": dict(ANALYSIS_OK, status="unknown",
                                                                       reason="application/pdf: encrypted")}),
     DOCS, True, {"analysis": "unknown", "analysis_reason": "application/pdf: encrypted", "pages": None,
                  "impressions": None, "sheets": None, "color_pages": None, "mono_pages": None,
                  "paper_sizes": None, "copies": 2}),
    ("figures still being counted", make_job(attributes={}), DOCS, True,
     {"analysis": "pending", "pages": None, "sheets": None}),
    ("analysis switched off", make_job(attributes={}), DOCS, False,
     {"analysis": "unknown", "analysis_reason": "analysis is switched off", "pages": None}),
    ("canceled before any document", make_job(state=JobState.CANCELED, attributes={}, size=0), [], True,
     {"outcome": "canceled", "analysis": "unknown", "analysis_reason": "the job has no document",
      "printed_at": None, "documents": 0}),
    ("aborted keeps its figures", make_job(state=JobState.ABORTED), DOCS, True,
     {"outcome": "aborted", "printed_at": None, "pages": 3}),
    ("one-sided and standalone", make_job(sides=None, mode=Mode.STANDALONE,
                                          attributes={"analysis": dict(ANALYSIS_OK, sides="one-sided")}),
     DOCS, True, {"duplex": False, "sides": "one-sided", "mode": "standalone", "offline_limits": []}),
]  # fmt: skip


@pytest.mark.parametrize("name,job,documents,enabled,expected", BUILDER_CASES, ids=[c[0] for c in BUILDER_CASES])
def test_build_record(name: str, job: Job, documents: list[Document], enabled: bool, expected: dict[str, Any]) -> None:
    entry = build_record(job, documents, spool_id="spool-1", device="branch-1", analysis_enabled=enabled)
    for key, value in expected.items():
        assert entry.body[key] == value, key
    assert entry.record_id == entry.body["record_id"] == "spool-1:7"
    assert entry.analysis_pending == (expected.get("analysis") == "pending")
    assert entry.finished_at == job.completed_at
    json.dumps(entry.body)  # JSON-ready


def test_unknown_figures_are_never_invented() -> None:
    for name, job, documents, enabled, _ in BUILDER_CASES:
        body = build_record(job, documents, spool_id="s", device="d", analysis_enabled=enabled).body
        figures = [body[key] for key in ("pages", "impressions", "sheets", "color_pages", "mono_pages")]
        assert (body["analysis"] == "ok") == all(isinstance(value, int) for value in figures), name
        assert body["analysis"] == "ok" or figures == [None] * 5, name


def test_a_job_not_finished_has_no_record() -> None:
    with pytest.raises(ValueError):
        build_record(make_job(state=JobState.PROCESSING), DOCS, spool_id="s", device="d")


def test_record_ids_are_stable_per_job_and_unique_per_spool() -> None:
    assert record_id("a", 1) == record_id("a", 1) != record_id("b", 1) != record_id("a", 2)
    assert OFFLINE_LIMITS == ("credit", "quota", "projects", "policies")


# -- the store: final state and record in one transaction ---------------------------------------------


def accounting_rig(tmp_path: Path, **raw: Any) -> Rig:
    return Rig(tmp_path, record_maker=raw.pop("record_maker", RecordMaker(device="branch-1")), **raw)


def count_records(store: JobStore) -> int:
    return len(store.accounting_records())


def test_delivery_writes_one_record_with_the_device_count(tmp_path: Path) -> None:
    rig = accounting_rig(tmp_path)
    job = rig.submit(b"%!PS\n", user="bob", name="memo")
    rig.dispatcher.start()
    rig.clock.advance(0)
    rig.backend.pending.pop(0).callback(DeliveryReceipt("printed", remote_job_id="42", impressions=3))
    record = rig.store.record_of(job.job_id)
    assert record is not None
    assert (record["user"], record["job_name"], record["outcome"], record["device_impressions"]) == (
        "bob", "memo", "completed", 3)
    assert record["record_id"] == f"{rig.store.spool_id}:{job.job_id}"
    assert record["remote_job_id"] == "42" and record["printed_at"] is not None
    assert record["analysis"] == "pending"  # the figures come from the analysis, later
    # Later writes of the finished job (retention marks, ...) never add a second record.
    rig.store.update_job(rig.store.get(job.job_id).evolve(files_removed=True))
    assert count_records(rig.store) == 1


def test_cancel_and_abort_write_records_too(tmp_path: Path) -> None:
    rig = accounting_rig(tmp_path)
    rig.dispatcher.pause()
    first = rig.submit(b"one", user="carol")
    rig.service.cancel(first.job_id, requester="carol")
    created = rig.service.create_job(JobRequest(protocol="ipp", host="h", user="dave"))
    rig.service.close_job(created.job_id, requester="dave")  # no document: aborted
    outcomes = {r["job_id"]: r["outcome"] for r in rig.store.accounting_records()}
    assert outcomes == {first.job_id: "canceled", created.job_id: "aborted"}


def test_the_record_and_the_final_state_commit_together(tmp_path: Path) -> None:
    on_fire = [False]

    def maker(job: Job, documents: Any, spool_id: str) -> Any:
        if on_fire[0]:
            raise RuntimeError("disk on fire")
        return RecordMaker(device="d")(job, documents, spool_id)

    rig = accounting_rig(tmp_path, record_maker=maker)
    rig.dispatcher.pause()
    job = rig.submit(b"data", user="erin")
    on_fire[0] = True
    with pytest.raises(RuntimeError):
        rig.service.cancel(job.job_id, admin=True)
    assert rig.store.get(job.job_id).state == JobState.PENDING  # rolled back with the record
    on_fire[0] = False
    rig.service.cancel(job.job_id, admin=True)
    assert rig.store.get(job.job_id).state == JobState.CANCELED and count_records(rig.store) == 1


def finished(store: JobStore, job_id: int, *, completed_at: float, analysis: bool = True, docs: bool = True) -> Job:
    """A finished job written through the store (insert, then final state): its record comes with it."""
    attributes = {"analysis": ANALYSIS_OK} if analysis else {}
    job = make_job(job_id, state=JobState.PENDING, created_at=completed_at - 1, completed_at=None,
                   attributes=attributes)  # fmt: skip
    documents = [Document(job_id, 1, f"d{job_id:06d}-001", 10, "application/pdf")] if docs else []
    store.insert_job(job, documents)
    done = transition(transition(job, JobState.PROCESSING, now=completed_at - 0.5), JobState.COMPLETED,
                      now=completed_at)  # fmt: skip
    store.update_job(done)
    return done


def test_figures_landing_after_completion_complete_the_record(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path / "db", record_maker=RecordMaker(device="d"))
    done = finished(store, 1, completed_at=T0, analysis=False)
    record = store.record_of(1)
    assert record is not None and record["analysis"] == "pending" and record["_analysis_pending"]
    store.update_job(done.evolve(attributes={"analysis": ANALYSIS_OK}))
    record = store.record_of(1)
    assert record is not None and record["analysis"] == "ok" and record["pages"] == 3
    assert not record["_analysis_pending"] and count_records(store) == 1


def test_a_record_given_up_on_or_sent_is_never_rewritten(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path / "db", record_maker=RecordMaker(device="d"))
    late = finished(store, 1, completed_at=T0, analysis=False)
    sent = finished(store, 2, completed_at=T0 + 1)
    assert store.give_up_pending(T0 + 0.5, "too slow") == 1
    upload = store.begin_upload([2], T0 + 2)
    store.finish_upload(upload, [2], T0 + 3, accepted=1, duplicates=0)
    store.update_job(late.evolve(attributes={"analysis": ANALYSIS_OK}))  # too late: stays as sent out
    store.update_job(sent.evolve(attributes={"analysis": dict(ANALYSIS_OK, pages=99)}))
    first, second = store.record_of(1), store.record_of(2)
    assert first is not None and (first["analysis"], first["analysis_reason"], first["pages"]) == ("unknown",
                                                                                                 "too slow", None)
    assert second is not None and second["pages"] == 3 and second["_sent_at"] == T0 + 3


def test_finished_jobs_from_before_accounting_get_their_records(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(_SCHEMA[0] + "; PRAGMA user_version=1;")
    old.execute("INSERT INTO meta VALUES ('next_job_id', '1'), ('spool_id', 'old-spool')")
    old.commit()
    old.close()
    store = JobStore.open(path)  # migrates to the current schema
    finished(store, 1, completed_at=T0)  # written without a record maker: as before accounting
    assert count_records(store) == 0
    store.close()
    store = JobStore.open(path, record_maker=RecordMaker(device="d"))  # the spooler, now with accounting
    assert store.record_missing() == 1 and store.record_missing() == 0
    record = store.record_of(1)
    assert record is not None and record["record_id"] == "old-spool:1"


# -- the outbox -----------------------------------------------------------------------------------------


class FakeCentral:
    """The API as the outbox sees it: each call waits for the test (`answer`, `fail_with`) or, with
    `auto`, is answered at once like the reference server (deduplicated by record_id)."""

    def __init__(self, auto: bool = False) -> None:
        self.auto = auto
        self.calls: list[list[dict[str, Any]]] = []
        self.pending: list[tuple[Deferred[Any], list[dict[str, Any]]]] = []
        self.stored: dict[str, dict[str, Any]] = {}
        self.canceled = 0

    def call(self, method: str, path: str, body: Any = None, *, deadline: Any) -> Deferred[Any]:
        assert (method, path) == ("POST", "accounting") and isinstance(body, bytes)
        body = json.loads(body)
        self.calls.append(body["records"])
        if self.auto:
            return succeed(self.store(body["records"]))

        def cancel(waiting: Deferred[Any]) -> None:
            self.canceled += 1
            self.pending[:] = [entry for entry in self.pending if entry[0] is not waiting]

        waiting: Deferred[Any] = Deferred(cancel)
        self.pending.append((waiting, body["records"]))
        return waiting

    def store(self, records: list[dict[str, Any]]) -> dict[str, int]:
        new = [r for r in records if r["record_id"] not in self.stored]
        self.stored.update((r["record_id"], r) for r in new)
        return {"accepted": len(new), "duplicates": len(records) - len(new)}

    def answer(self) -> None:
        waiting, records = self.pending.pop(0)
        waiting.callback(self.store(records))

    def fail_with(self, error: Exception) -> None:
        self.pending.pop(0)[0].errback(error)


def outbox_rig(tmp_path: Path, jobs: int = 5, **config: Any) -> tuple[JobStore, Clock, FakeCentral, Outbox]:
    store = JobStore.open(tmp_path / "spooler.db", record_maker=RecordMaker(device="d"))
    clock = Clock()
    clock.advance(T0 + 100)
    for job_id in range(1, jobs + 1):
        finished(store, job_id, completed_at=T0 + 10 - job_id)  # the highest job id is the oldest record
    central = FakeCentral(auto=config.pop("auto", False))
    settings = AccountingConfig(**({"batch_size": 2, "retry_initial": 5.0, "retry_max": 40.0} | config))
    outbox = Outbox(store=store, api=central, clock=clock, config=settings)
    return store, clock, central, outbox


def ids(records: list[dict[str, Any]]) -> list[int]:
    return [record["job_id"] for record in records]


def test_batches_go_oldest_first_and_are_marked_sent_only_after_the_200(tmp_path: Path) -> None:
    store, clock, central, outbox = outbox_rig(tmp_path)
    outbox.start()
    clock.advance(0)
    assert ids(central.calls[0]) == [5, 4]
    assert store.outbox_counts(not_before=0)["sent"] == 0  # in flight: not sent yet
    central.answer()
    assert store.outbox_counts(not_before=0)["sent"] == 2
    clock.advance(0)
    central.answer()
    clock.advance(0)
    central.answer()
    clock.advance(0)
    assert [ids(call) for call in central.calls] == [[5, 4], [3, 2], [1]]
    assert store.outbox_counts(not_before=0) | {} == {"records": 5, "sent": 5, "waiting": 0,
                                                      "pending_analysis": 0, "expired": 0, "rejected": 0,
                                                      "in_doubt": 0}
    audit = list(reversed(store.uploads()))
    assert [(u["records"], u["outcome"], u["accepted"], u["duplicates"]) for u in audit] == [
        (2, "sent", 2, 0), (2, "sent", 2, 0), (1, "sent", 1, 0)]
    clock.advance(60)
    assert len(central.calls) == 3  # nothing more to send


def test_a_failed_upload_backs_off_and_sends_the_same_records_again(tmp_path: Path) -> None:
    store, clock, central, outbox = outbox_rig(tmp_path, jobs=2)
    outbox.start()
    clock.advance(0)
    central.fail_with(CentralApiDown("POST accounting: ConnectionRefusedError"))
    assert outbox.status()["state"] == "retrying"
    clock.advance(4.9)
    assert len(central.calls) == 1
    clock.advance(0.1)
    central.fail_with(CentralApiDown("503"))
    clock.advance(9.9)
    assert len(central.calls) == 2
    clock.advance(0.1)
    assert ids(central.calls[2]) == ids(central.calls[0]) == [2, 1]
    central.answer()
    assert [u["outcome"] for u in reversed(store.uploads())] == ["failed", "failed", "sent"]
    assert [retry_delay(n, initial=5, maximum=40) for n in range(6)] == [0, 5, 10, 20, 40, 40]


def test_an_upload_cut_off_is_sent_again_after_a_restart_and_counted_once(tmp_path: Path) -> None:
    store, clock, central, outbox = outbox_rig(tmp_path, jobs=3, batch_size=3)
    outbox.start()
    clock.advance(0)
    central.store(central.calls[0])  # the server stored the batch, but its answer never came back
    outbox.stop()  # the spooler stops (a kill -9 leaves the audit row "sending": see below)
    assert central.canceled == 1 and store.outbox_counts(not_before=0)["sent"] == 0
    store.begin_upload([1], clock.seconds())  # as a crash would leave it
    again = Outbox(store=store, api=central, clock=clock, config=AccountingConfig(batch_size=3))
    again.start()
    clock.advance(0)
    central.answer()
    assert ids(central.calls[1]) == [3, 2, 1] and len(central.stored) == 3
    outcomes = [(u["outcome"], u["accepted"], u["duplicates"]) for u in reversed(store.uploads())]
    assert outcomes == [("interrupted", None, None), ("interrupted", None, None), ("sent", 0, 3)]


def test_records_past_the_age_limit_stay_local_and_are_never_sent(tmp_path: Path) -> None:
    store, clock, central, outbox = outbox_rig(tmp_path, jobs=4, auto=True, batch_size=10, max_age=92.5)
    # Records of jobs 1..4 finished at T0+9 .. T0+6; now is T0+100: those before T0+7.5 expired
    clock.advance(0)
    outbox.start()
    clock.advance(0)
    assert sorted(ids(central.calls[0])) == [1, 2]
    counts = store.outbox_counts(not_before=clock.seconds() - 92.5)
    assert (counts["sent"], counts["expired"], counts["waiting"]) == (2, 2, 0)
    assert ids(store.unsent_records(before=clock.seconds() - 92.5)) == [4, 3]
    clock.advance(3600)
    assert len(central.calls) == 1


def test_a_record_waits_for_its_figures_at_most_analysis_wait(tmp_path: Path) -> None:
    store, clock, central, outbox = outbox_rig(tmp_path, jobs=1, auto=True, analysis_wait=300.0, interval=10.0)
    late = finished(store, 9, completed_at=clock.seconds(), analysis=False)
    slow = finished(store, 10, completed_at=clock.seconds(), analysis=False)
    outbox.start()
    clock.advance(0)
    assert ids(central.calls[0]) == [1]
    store.update_job(late.evolve(attributes={"analysis": ANALYSIS_OK}))
    clock.advance(10)
    assert ids(central.calls[1]) == [9] and central.calls[1][0]["pages"] == 3
    clock.advance(290)
    assert len(central.calls) == 2  # job 10's figures may still come
    clock.advance(10)
    assert ids(central.calls[2]) == [10]
    assert central.calls[2][0]["analysis"] == "unknown" and central.calls[2][0]["pages"] is None


def test_the_server_coming_back_cuts_the_backoff_short(tmp_path: Path) -> None:
    store, clock, central, outbox = outbox_rig(tmp_path, jobs=1, retry_initial=60.0, retry_max=600.0)
    outbox.start()
    clock.advance(0)
    central.fail_with(CentralApiDown("ConnectionRefusedError"))
    clock.advance(60)
    central.fail_with(CentralApiDown("ConnectionRefusedError"))
    assert outbox.status()["next_attempt_at"] == clock.seconds() + 120
    clock.advance(10)
    outbox.kick()  # the dispatcher saw the server come back
    clock.advance(0)
    assert len(central.calls) == 3
    central.answer()
    assert store.outbox_counts(not_before=0)["sent"] == 1


def test_too_large_batches_are_halved_and_a_refused_record_is_set_aside(tmp_path: Path) -> None:
    store, clock, central, outbox = outbox_rig(tmp_path, jobs=4, batch_size=4)
    outbox.start()
    clock.advance(0)
    central.fail_with(CentralApiRefused(413, "at most 2 records per upload"))
    clock.advance(0)
    assert ids(central.calls[1]) == [4, 3]
    central.fail_with(CentralApiRefused(400, "records[1] is bad"))
    clock.advance(0)
    assert ids(central.calls[2]) == [4]
    central.answer()
    clock.advance(0)
    central.fail_with(CentralApiRefused(400, "records[0] is bad"))  # job 3 alone: the culprit
    clock.advance(0)
    central.answer()
    assert ids(central.calls[4]) == [2, 1]
    counts = store.outbox_counts(not_before=0)
    assert (counts["sent"], counts["rejected"]) == (3, 1)
    record = store.record_of(3)
    assert record is not None and record["_rejected"] == "records[0] is bad"


def test_a_200_that_does_not_account_for_the_batch_is_not_trusted(tmp_path: Path) -> None:
    store, clock, central, outbox = outbox_rig(tmp_path, jobs=2)
    outbox.start()
    clock.advance(0)
    central.pending.pop(0)[0].callback({"accepted": 1})
    assert store.outbox_counts(not_before=0)["sent"] == 0 and outbox.failures == 1


def test_accounting_configuration(tmp_path: Path) -> None:
    config = config_from_mapping({"accounting": {"batch_size": 1000, "max_age": "7d", "interval": "2s",
                                                 "analysis_wait": 0}}, base=tmp_path, state_dir=tmp_path)  # fmt: skip
    assert (config.accounting.batch_size, config.accounting.max_age, config.accounting.analysis_wait) == (
        1000, 7 * 86400, 0)
    for raw, key in (({"batch_size": 1001}, "accounting.batch_size"), ({"batch_size": 0}, "accounting.batch_size"),
                     ({"max_age": "soon"}, "accounting.max_age"), ({"colour": 1}, "accounting.colour"),
                     ({"retry_initial": "1m", "retry_max": "1s"}, "accounting.retry_max")):  # fmt: skip
        with pytest.raises(ConfigError) as caught:
            config_from_mapping({"accounting": raw}, base=tmp_path, state_dir=tmp_path)
        assert caught.value.key == key


def test_the_sample_configuration_shows_every_accounting_key() -> None:
    text = (Path(__file__).parent.parent / "samples" / "spooler.toml").read_text()
    assert "\n[accounting]\n" in text
    for key in keys_of(AccountingConfig):
        assert f"\n{key} =" in text.split("[accounting]", 1)[1], key


def test_the_dispatcher_tells_the_outbox_when_the_server_comes_back(tmp_path: Path) -> None:
    """The listener hook the service uses: down, then up, each told once."""
    rig = accounting_rig(tmp_path, server={"queue_uri": "ipp://server.test/ipp/print", "probe_interval": 1,
                                           "down_after": 2, "up_after": 2})  # fmt: skip
    told: list[str] = []
    rig.dispatcher.server_listeners.append(told.append)
    assert rig.server is not None
    rig.server.probe_results[:] = [True, False, False, True, True, True]
    rig.dispatcher.start()
    for _ in range(6):
        rig.clock.advance(1)
    assert told == ["up", "down", "up"]


def test_an_offline_job_printed_on_the_device_says_what_was_not_applied(tmp_path: Path) -> None:
    rig = accounting_rig(tmp_path, server={"queue_uri": "ipp://server.test/ipp/print", "probe_interval": 1},
                         queues={"default": {"offline_policy": "print"}})  # fmt: skip
    assert rig.server is not None
    rig.server.probe_results[:] = [False, False]
    rig.dispatcher.start()
    rig.clock.advance(0)
    rig.clock.advance(1)
    job = rig.submit(b"offline", user="frank")
    rig.clock.advance(0)
    rig.backend.succeed()
    record = rig.store.record_of(job.job_id)
    assert record is not None and (record["route"], record["mode"]) == ("device", "offline")
    assert record["offline_limits"] == list(OFFLINE_LIMITS)


def test_a_400_that_names_no_record_sets_nothing_aside(tmp_path: Path) -> None:
    store, clock, central, outbox = outbox_rig(tmp_path, jobs=1)
    outbox.start()
    clock.advance(0)
    central.fail_with(CentralApiRefused(400, "expected {\"records\": [...]}"))
    assert store.outbox_counts(not_before=0)["rejected"] == 0 and outbox.failures == 1
    clock.advance(5)
    central.answer()
    assert store.outbox_counts(not_before=0)["sent"] == 1


def test_a_store_error_does_not_end_the_outbox(tmp_path: Path) -> None:
    store, clock, central, outbox = outbox_rig(tmp_path, jobs=1, auto=True, retry_max=60.0)
    real = store.records_to_send
    failures = [sqlite3.OperationalError("database or disk is full")]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    store.records_to_send = flaky  # type: ignore[method-assign]
    outbox.start()
    clock.advance(0)
    assert central.calls == []
    clock.advance(60)
    assert ids(central.calls[0]) == [1]


def test_a_record_with_pages_known_and_colour_unknown_says_null_not_mono() -> None:
    analysis = {**ANALYSIS_OK, "color_impressions": None, "mono_impressions": None}
    entry = build_record(make_job(attributes={"analysis": analysis}), DOCS, spool_id="spool-1", device="branch-1")
    body = entry.body
    assert (body["analysis"], body["pages"], body["impressions"]) == ("ok", 3, 6)
    assert (body["color_pages"], body["mono_pages"]) == (None, None)
    assert json.loads(json.dumps(body))["mono_pages"] is None
