"""The small-job commit path behind IPP (and LPD, raw) intake: documents up to spool.inline_max
stored in the job's row, the one accessor that gives every reader a file, recovery and retention of
inline data, and group commit (jobs ready during a commit share the next transaction)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred

from factories import fired_ok
from inprocess import Rig
from spooler.store.groupcommit import GroupCommit
from spooler.model import Document, Job, JobState
from spooler.store.database import JobStore


def inline_rows(rig: Rig) -> list[tuple[int, int, bytes]]:
    with sqlite3.connect(rig.config.database_path) as db:
        return [(a, b, bytes(c)) for a, b, c in db.execute("SELECT job_id, number, data FROM document_data")]


def files_of(rig: Rig, job_id: int) -> list[bytes]:
    return [path.read_bytes() for path in fired_ok(rig.documents.files(job_id))]


def test_a_small_document_is_stored_in_its_row_and_gets_a_file_only_when_read(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spool={"inline_max": 1000})
    job = rig.submit(b"%!PS small job", user="kim")
    assert inline_rows(rig) == [(job.job_id, 1, b"%!PS small job")]
    assert list(rig.config.spool_dir.iterdir()) == [] and list(rig.config.incoming_dir.iterdir()) == []
    assert rig.store.get(job.job_id).size == 14 and rig.store.get(job.job_id).document_format == "application/postscript"
    assert files_of(rig, job.job_id) == [b"%!PS small job"]
    assert [p.name for p in rig.config.spool_dir.iterdir()] == [rig.store.documents(job.job_id)[0].file_name]


def test_a_document_above_the_limit_gets_its_own_spool_file(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spool={"inline_max": 1000})
    job = rig.submit(b"x" * 1001)
    assert inline_rows(rig) == []
    [document] = rig.store.documents(job.job_id)
    assert (rig.config.spool_dir / document.file_name).read_bytes() == b"x" * 1001


def test_delivery_reads_an_inline_document_through_the_accessor(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spool={"inline_max": 1000})
    rig.submit(b"first inline job")
    rig.submit(b"y" * 5000)
    rig.dispatcher.start()
    rig.clock.advance(0)
    rig.backend.succeed()
    rig.clock.advance(0)
    assert rig.backend.attempts == [(1, b"first inline job"), (2, b"y" * 5000)]


def test_recovery_drops_copies_of_inline_documents_and_keeps_their_jobs(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spool={"inline_max": 1000})
    job = rig.submit(b"kept in the database")
    [document] = rig.store.documents(job.job_id)
    (rig.config.spool_dir / document.file_name).write_bytes(b"kept in")  # a copy cut short by a crash
    rig.store.close()

    after = Rig(tmp_path, spool={"inline_max": 1000})
    assert after.store.get(job.job_id).state == JobState.PENDING  # not aborted for a missing file
    assert list(after.config.spool_dir.iterdir()) == []
    assert files_of(after, job.job_id) == [b"kept in the database"]


def test_retention_removes_inline_data_with_the_files(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spool={"inline_max": 1000, "keep_files": 10, "keep_history": 1000})
    job = rig.submit(b"printed and done")
    rig.service.cancel(job.job_id, admin=True)
    files_of(rig, job.job_id)
    rig.clock.advance(11)
    rig.upkeep.purge()
    assert inline_rows(rig) == [] and list(rig.config.spool_dir.iterdir()) == []
    assert rig.store.get(job.job_id).files_removed


def test_send_document_data_always_goes_to_a_spool_file(tmp_path: Path) -> None:
    from spooler.intake.base import JobRequest

    rig = Rig(tmp_path, spool={"inline_max": 1000})
    job = rig.service.create_job(JobRequest(protocol="ipp", host="h", user="kim"))
    incoming = rig.service.open_incoming()
    incoming.write(b"%PDF-1.7 tiny")
    done: list[Any] = []
    rig.service.add_document(job.job_id, incoming, True, requester="kim").addBoth(done.append)
    assert isinstance(done[0], Job), done[0]
    assert inline_rows(rig) == []
    [document] = rig.store.documents(job.job_id)
    assert (rig.config.spool_dir / document.file_name).read_bytes() == b"%PDF-1.7 tiny"


# -- group commit -------------------------------------------------------------------------------------


class HeldThread:
    """A run_in_thread whose calls wait until the test lets them run, one at a time."""

    def __init__(self) -> None:
        self.calls: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = []

    def __call__(self, function: Any, *args: Any) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        self.calls.append((done, function, args))
        return done

    def run_next(self) -> None:
        done, function, args = self.calls.pop(0)
        maybeDeferred(function, *args).chainDeferred(done)


def new_job(rig: Rig, job_id: int) -> tuple[Job, list[Document], dict[int, bytes]]:
    job = Job(job_id=job_id, uuid=f"uuid-{job_id}", queue="default", protocol="ipp", user="u", host="h", name="n",
              document_format="application/pdf", size=3, state=JobState.PENDING, reason="job-queued",
              created_at=1.0)  # fmt: skip
    return job, [Document(job_id, 1, f"f{job_id}", 3, "application/pdf")], {1: b"abc"}


def test_jobs_ready_during_a_commit_share_the_next_transaction(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    held = HeldThread()
    commits = GroupCommit(lambda: JobStore.open(rig.config.database_path), held)
    fired: list[int] = []
    for job_id in (1, 2, 3, 4):
        commits.insert(*new_job(rig, job_id)).addCallback(lambda _, j=job_id: fired.append(j))
    assert len(held.calls) == 1  # job 1 is being committed; 2-4 wait for it
    held.run_next()
    assert fired == [1] and len(held.calls) == 1
    assert [job.job_id for job in rig.store.list_jobs()] == [1]  # 2-4 not durable: not answered either
    held.run_next()
    assert fired == [1, 2, 3, 4] and held.calls == []
    assert (commits.commits, commits.largest_group) == (2, 3)
    assert [job.job_id for job in rig.store.list_jobs()] == [1, 2, 3, 4]
    assert rig.store.inline_data(3, 1) == b"abc"


def test_a_bad_job_in_a_group_fails_alone(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    held = HeldThread()
    commits = GroupCommit(lambda: JobStore.open(rig.config.database_path), held)
    outcomes: dict[int, Any] = {}
    for job_id in (1, 2, 2, 3):  # the second job 2 breaks the primary key
        commits.insert(*new_job(rig, job_id)).addBoth(lambda result, j=job_id: outcomes.setdefault(j, []).append(result))
    held.run_next()
    held.run_next()
    assert outcomes[1] == [None] and outcomes[3] == [None]
    assert outcomes[2][0] is None and outcomes[2][1].check(sqlite3.IntegrityError)
    assert [job.job_id for job in rig.store.list_jobs()] == [1, 2, 3]


def test_a_document_stays_inline_up_to_the_limit_and_spills_whole_beyond_it(tmp_path: Path) -> None:
    import random

    from conftest import run_synchronously
    from spooler.store.spoolfiles import IncomingFile, SpoolFloor

    limit = 1000
    rng = random.Random(7)
    for size in (1, limit - 1, limit, limit + 1, 3 * limit, 5_000_000):
        data = rng.randbytes(size)
        incoming = IncomingFile(tmp_path, run_synchronously, max_size=10**9, floor=SpoolFloor(tmp_path, 0),
                                inline_max=limit)
        offset = 0
        while offset < size:
            step = rng.randint(1, max(1, size // 3))
            incoming.write(data[offset:offset + step])
            offset += step
        sizes: list[Any] = []
        incoming.finish().addBoth(sizes.append)
        assert sizes == [size]
        if size <= limit:
            assert incoming.inline == data and not incoming.path.exists()
        else:
            assert incoming.inline is None and incoming.path.read_bytes() == data
            incoming.discard()
            assert not incoming.path.exists()
