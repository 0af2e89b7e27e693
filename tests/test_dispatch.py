"""The dispatcher, driven by a Clock and a scripted backend: order, retry with capped backoff, cancel."""

from __future__ import annotations

from pathlib import Path

import pytest

from factories import fired_ok
from inprocess import Rig
from spooler.dispatch.dispatcher import backoff_delay
from spooler.model import DeliveryError, JobState


@pytest.mark.parametrize(
    ("failures", "delay"), [(0, 0), (1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (50, 60), (10_000, 60)]
)
def test_backoff_is_exponential_and_capped(failures: int, delay: float) -> None:
    assert backoff_delay(failures, initial=5, maximum=60) == delay


def test_jobs_leave_in_arrival_order_one_at_a_time(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    for n in range(3):
        rig.submit(f"job {n}".encode())
    rig.dispatcher.start()
    rig.clock.advance(0)
    assert [a[0] for a in rig.backend.attempts] == [1]  # one at a time
    for expected in (2, 3):
        rig.backend.succeed()
        rig.clock.advance(0)
        assert rig.backend.attempts[-1][0] == expected
    rig.backend.succeed()
    rig.clock.advance(0)
    assert [a[1] for a in rig.backend.attempts] == [b"job 0", b"job 1", b"job 2"]
    assert all(rig.store.get(i).state == JobState.COMPLETED for i in (1, 2, 3))
    assert rig.dispatcher.device.state == "ok"


def test_an_unreachable_device_keeps_jobs_waiting_in_order_with_backoff(tmp_path: Path) -> None:
    rig = Rig(tmp_path, device={"retry_initial": 5, "retry_max": 20})
    rig.submit(b"first")
    rig.submit(b"second")
    rig.dispatcher.start()
    rig.clock.advance(0)
    delays = []
    for _ in range(4):
        rig.backend.fail(DeliveryError("connection refused", retryable=True))
        job = rig.store.get(1)
        assert job.state == JobState.PENDING and "connection refused" in job.message
        assert job.next_attempt_at is not None
        delays.append(job.next_attempt_at - rig.clock.seconds())
        rig.clock.advance(job.next_attempt_at - rig.clock.seconds() - 0.5)
        assert len(rig.backend.pending) == 0  # not before its time, and job 2 does not overtake
        rig.clock.advance(0.5)
        assert rig.backend.attempts[-1][0] == 1
    assert delays == [5, 10, 20, 20]
    assert rig.dispatcher.device.state == "unreachable"
    assert rig.store.get(2).state == JobState.PENDING
    rig.backend.succeed()
    rig.clock.advance(0)
    assert rig.backend.attempts[-1][0] == 2
    assert rig.dispatcher.device.state == "ok"
    assert rig.store.get(1).attempts == 5


def test_flush_retries_at_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path, device={"retry_initial": 60, "retry_max": 600})
    rig.submit(b"x")
    rig.dispatcher.start()
    rig.clock.advance(0)
    rig.backend.fail(DeliveryError("refused", retryable=True))
    assert rig.backend.pending == []
    assert rig.service.flush() == [1]
    rig.clock.advance(0)
    assert len(rig.backend.pending) == 1


def test_a_permanent_error_aborts_the_job_and_the_queue_goes_on(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.submit(b"bad")
    rig.submit(b"good")
    rig.dispatcher.start()
    rig.clock.advance(0)
    rig.backend.fail(DeliveryError("spool file missing", retryable=False))
    rig.clock.advance(0)
    assert rig.store.get(1).state == JobState.ABORTED
    assert rig.backend.attempts[-1][0] == 2


def test_an_unexpected_error_does_not_lose_the_job(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.submit(b"x")
    rig.dispatcher.start()
    rig.clock.advance(0)
    rig.backend.fail(RuntimeError("bug"))
    job = rig.store.get(1)
    assert job.state == JobState.PENDING and job.next_attempt_at is not None


def test_held_jobs_step_aside_and_release_puts_them_back(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.submit(b"one")
    rig.submit(b"two")
    rig.service.hold(1, admin=True)
    rig.dispatcher.start()
    rig.clock.advance(0)
    assert rig.backend.attempts[-1][0] == 2
    rig.backend.succeed()
    rig.service.release(1, admin=True)
    rig.clock.advance(0)
    assert rig.backend.attempts[-1][0] == 1


def test_cancel_during_delivery_aborts_the_attempt(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.submit(b"one")
    rig.submit(b"two")
    rig.dispatcher.start()
    rig.clock.advance(0)
    rig.service.cancel(1, admin=True)
    assert rig.backend.canceled == 1
    rig.clock.advance(0)
    assert rig.store.get(1).state == JobState.CANCELED
    assert rig.backend.attempts[-1][0] == 2


def test_stop_requeues_the_job_being_delivered(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.submit(b"one")
    rig.dispatcher.start()
    rig.clock.advance(0)
    rig.dispatcher.stop()
    job = rig.store.get(1)
    assert job.state == JobState.PENDING and "interrupted" in job.message


def purged(rig: Rig) -> tuple[int, int]:
    return fired_ok(rig.upkeep.purge())  # type: ignore[no-any-return]


def test_retention_removes_files_then_records_of_finished_jobs_only(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spool={"keep_files": "1h", "keep_history": "1d", "min_free_space": 0})
    rig.submit(b"done")
    rig.submit(b"waiting")
    rig.dispatcher.start()
    rig.clock.advance(0)
    rig.backend.succeed()
    spool_file = rig.config.spool_dir / rig.store.documents(1)[0].file_name
    assert purged(rig) == (0, 0)
    rig.clock.advance(3601)
    assert purged(rig) == (1, 0)
    assert not spool_file.exists() and rig.store.get(1).files_removed
    assert (rig.config.spool_dir / rig.store.documents(2)[0].file_name).exists()  # job 2 still waits
    rig.clock.advance(86400)
    assert purged(rig) == (0, 1)
    assert [job.job_id for job in rig.store.list_jobs()] == [2]


def test_recovery_after_a_crash(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.submit(b"one")
    rig.submit(b"two")
    rig.dispatcher.start()
    rig.clock.advance(0)  # job 1 is processing when the "crash" happens
    (rig.config.incoming_dir / "abc.part").write_bytes(b"partial upload")
    (rig.config.spool_dir / "0123456789abcdef01234567").write_bytes(b"renamed, never committed")
    (rig.config.spool_dir / rig.store.documents(2)[0].file_name).unlink()
    kept = rig.store.documents(1)[0].file_name
    rig.store.close()

    after = Rig(tmp_path)
    assert after.store.get(1).state == JobState.PENDING
    assert after.store.get(2).state == JobState.ABORTED and after.store.get(2).reason == "document-access-error"
    assert list(after.config.incoming_dir.iterdir()) == []
    assert sorted(p.name for p in after.config.spool_dir.iterdir()) == [kept]


def test_a_partial_delivery_found_after_a_restart_resumes_where_it_stopped(tmp_path: Path) -> None:
    """A job sent one peer job per document, cut off by a crash: the backend's recover says which
    documents the peer has, and the next attempt gets that (only the rest is sent)."""
    from spooler.delivery.base import PartialDelivery

    rig = Rig(tmp_path)
    job = rig.submit(b"three documents")
    rig.dispatcher.start()
    rig.clock.advance(0)
    journal = rig.backend.journals[0]
    journal("jobs:11,12")  # document 1 is the peer's job 11, its job 12 was made for document 2
    rig.store.close()

    after = Rig(tmp_path)
    found = PartialDelivery(1, "jobs:11")
    after.backend.recover_results[job.job_id] = found
    after.dispatcher.start()
    after.clock.advance(0)
    assert after.backend.recovered == [(job.job_id, "jobs:11,12")]
    assert after.backend.resumes == [found]
    after.backend.succeed("the rest sent", remote_job_id="jobs:11,13")
    done = after.store.get(job.job_id)
    assert done.state == JobState.COMPLETED and done.attributes["delivery"]["remote_job_id"] == "jobs:11,13"


def test_job_ids_follow_commit_order_when_uploads_finish_together(tmp_path: Path) -> None:
    """Upload A is fsynced first, but B's rename and row land first: B must get the lower id, or B
    would be delivered before a job (A) whose id is lower but whose row does not exist yet."""
    from twisted.internet.defer import Deferred

    from spooler.intake.base import JobRequest
    from spooler.store.spoolfiles import IncomingFile

    held: list[tuple[Deferred[object], object, tuple[object, ...]]] = []

    def thread(function, *args):  # type: ignore[no-untyped-def]
        d: Deferred[object] = Deferred()
        held.append((d, function, args))
        return d

    rig = Rig(tmp_path, run_in_thread=thread)

    def belongs_to(entry: tuple[object, object, tuple[object, ...]], upload: IncomingFile) -> bool:
        _, function, args = entry
        return getattr(function, "__self__", None) is upload or (bool(args) and args[0] == upload.path)

    def run(upload: IncomingFile, *, stop_before_rename: bool = False) -> None:
        while entry := next((e for e in held if belongs_to(e, upload)), None):
            d, function, args = entry
            if stop_before_rename and getattr(function, "__name__", "") == "commit_file":
                return
            held.remove(entry)
            d.callback(function(*args))  # type: ignore[operator]

    uploads = []
    for name in ("A", "B"):
        upload = rig.service.open_incoming()
        upload.write(name.encode() * 10)
        rig.service.submit(upload, JobRequest(protocol="raw", host="h", name=name))
        uploads.append(upload)
    run(uploads[0], stop_before_rename=True)  # A: written and fsynced, not yet renamed
    run(uploads[1])  # B: all the way to its row
    assert [(job.job_id, job.name) for job in rig.store.list_jobs()] == [(1, "B")]
    run(uploads[0])
    assert [(job.job_id, job.name) for job in rig.store.list_jobs()] == [(1, "B"), (2, "A")]
