"""The job store: rows survive reopening, ids never go back, queue order, retention queries."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import factories
from spooler.model import Document, Job, JobNotFound, JobState
from spooler.store.database import JobStore, spool_file_name


def make_job(job_id: int, state: JobState = JobState.PENDING, **extra: object) -> Job:
    return factories.make_job(job_id, uuid=f"uuid-{job_id}", name=f"job {job_id}", size=3, state=state,
                              reason="job-queued", created_at=100.0 + job_id, **extra)  # fmt: skip


def insert(store: JobStore, job: Job) -> None:
    store.insert_job(job, [Document(job.job_id, 1, spool_file_name(job.job_id, 1), job.size, job.document_format)])


def test_settings_are_durable(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path / "db")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_job_round_trips_through_a_reopen(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path / "db")
    job = make_job(store.allocate_job_id(), attributes={"pjl": {"color": True}}, hold_key_verifier="scrypt$x")
    insert(store, job)
    store.close()
    reopened = JobStore.open(tmp_path / "db")
    assert reopened.get(job.job_id) == job
    assert reopened.documents(job.job_id) == [Document(1, 1, "d000001-001", 3, "application/pdf")]


def test_job_ids_keep_increasing_across_restarts_and_purges(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path / "db")
    for _ in range(3):
        insert(store, make_job(store.allocate_job_id()))
    store.delete_jobs([1, 2, 3])
    store.close()
    store = JobStore.open(tmp_path / "db")
    assert store.allocate_job_id() == 4


def test_an_id_never_committed_is_reused(tmp_path: Path) -> None:
    """A crash between allocating an id and committing its row leaves no trace: no client saw that id."""
    store = JobStore.open(tmp_path / "db")
    insert(store, make_job(store.allocate_job_id()))
    assert store.allocate_job_id() == 2  # never inserted
    store.close()
    assert JobStore.open(tmp_path / "db").allocate_job_id() == 2


def test_update_and_unknown_jobs(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path / "db")
    insert(store, make_job(1))
    store.update_job(store.get(1).evolve(state=JobState.COMPLETED, completed_at=5.0, message="done"))
    assert store.get(1).state == JobState.COMPLETED and store.get(1).message == "done"
    with pytest.raises(JobNotFound):
        store.get(99)
    with pytest.raises(JobNotFound):
        store.update_job(make_job(99))


def test_head_of_queue_is_the_oldest_waiting_job_and_held_jobs_step_aside(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path / "db")
    insert(store, make_job(1, JobState.COMPLETED))
    insert(store, make_job(2, JobState.PENDING_HELD))
    insert(store, make_job(3, JobState.PENDING))
    insert(store, make_job(4, JobState.PENDING))
    insert(store, make_job(5, JobState.PENDING, queue="other"))
    head = store.head_of_queue("default")
    assert head is not None and head.job_id == 3
    assert store.head_of_queue("other").job_id == 5  # type: ignore[union-attr]
    assert store.head_of_queue("none") is None


def test_list_count_and_retention_queries(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path / "db")
    insert(store, make_job(1, JobState.COMPLETED, completed_at=10.0))
    insert(store, make_job(2, JobState.CANCELED, completed_at=20.0, files_removed=True))
    insert(store, make_job(3, JobState.PENDING))
    assert [j.job_id for j in store.list_jobs()] == [1, 2, 3]
    assert [j.job_id for j in store.list_jobs([JobState.PENDING])] == [3]
    assert store.count_by_state() == {JobState.COMPLETED: 1, JobState.CANCELED: 1, JobState.PENDING: 1}
    assert [j.job_id for j in store.finished_before(15.0)] == [1]
    assert [j.job_id for j in store.finished_before(25.0, files_present=True)] == [1]
    assert store.all_file_names() == {"d000001-001", "d000003-001"}


def test_readonly_store_reads_but_cannot_write(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path / "db")
    insert(store, make_job(1))
    reader = JobStore.open_readonly(tmp_path / "db")
    assert reader.get(1).job_id == 1
    with pytest.raises(sqlite3.OperationalError):
        reader.insert_job(make_job(2), [])
    with pytest.raises(FileNotFoundError):
        JobStore.open_readonly(tmp_path / "missing.db")


@pytest.mark.parametrize(
    ("state", "reason", "held"),
    [
        (JobState.PENDING, "job-queued", True),  # waiting for its delivery
        (JobState.PROCESSING, "job-printing", True),  # cut off by the backup's moment
        (JobState.PROCESSING_STOPPED, "printer-stopped", True),
        (JobState.PENDING, "job-incoming", False),  # its documents were still arriving: never acknowledged whole
        (JobState.PENDING_HELD, "job-hold-until-specified", False),  # held already, as it was
        (JobState.COMPLETED, "job-completed-successfully", False),
        (JobState.CANCELED, "job-canceled-by-user", False),
    ],
)
def test_a_restore_holds_the_jobs_that_were_waiting(tmp_path: Path, state: JobState, reason: str,
                                                     held: bool) -> None:  # fmt: skip
    from spooler.backup import hold_waiting_jobs

    store = JobStore.open(tmp_path / "db")
    insert(store, make_job(1, state).evolve(reason=reason))
    store.close()
    assert hold_waiting_jobs(tmp_path / "db", 1_000.0, 2_000.0) == ([1] if held else [])
    store = JobStore.open(tmp_path / "db")
    job = store.get(1)
    store.close()
    if held:
        assert (job.state, job.reason) == (JobState.PENDING_HELD, "job-hold-until-specified")
        assert job.message.startswith("held at restore: it was waiting when the backup was made")
    else:
        assert (job.state, job.reason) == (state, reason)
