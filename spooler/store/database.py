"""The job store: the SQLite database of jobs and documents (WAL, synchronous=FULL) and the job-id counter.

Synchronous and short: every method is one small transaction, called on the reactor thread. The
spool files themselves belong to `spooler.store.spoolfiles`; this module only records their names.
"""

from __future__ import annotations

import json
import sqlite3
import uuid as uuid_module
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.logger import Logger

from spooler.model import Document, ForwardInDoubt, Job, JobNotFound, JobState, Mode, Route
from spooler.schema import migrate


@dataclass(frozen=True)
class Entry:
    """An accounting record as the store keeps it: its body plus the columns the outbox and reports
    select on (made by spooler.accounting.records)."""

    job_id: int
    record_id: str
    finished_at: float
    analysis_pending: bool
    body: dict[str, Any]


#: Makes a finished job's accounting record from the job, its documents and this spool's id
#: (spooler.accounting.records.RecordMaker); pure.
RecordMakerType = Callable[[Job, Sequence[Document], str], Entry]

log = Logger(namespace="spooler.store")

SCHEMA_VERSION = 3

#: The job database's migrations (spooler.schema): append a step for a new version, never edit one.
_SCHEMA = [
    # version 1
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE jobs (
        job_id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        queue TEXT NOT NULL,
        protocol TEXT NOT NULL,
        user TEXT NOT NULL,
        host TEXT NOT NULL,
        name TEXT NOT NULL,
        document_format TEXT NOT NULL,
        size INTEGER NOT NULL,
        copies INTEGER NOT NULL,
        sides TEXT,
        state INTEGER NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        route TEXT NOT NULL,
        mode TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at REAL,
        created_at REAL NOT NULL,
        processing_at REAL,
        completed_at REAL,
        files_removed INTEGER NOT NULL DEFAULT 0,
        hold_key_verifier TEXT,
        attributes TEXT NOT NULL
    );
    CREATE INDEX jobs_by_state ON jobs (state, job_id);
    CREATE TABLE documents (
        job_id INTEGER NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        file_name TEXT NOT NULL,
        size INTEGER NOT NULL,
        document_format TEXT NOT NULL,
        PRIMARY KEY (job_id, number)
    );
    """,
    # version 2: accounting records, one per finished job (spooler.accounting.records), and the audit of their
    # uploads (spooler.accounting.outbox). No foreign key: a record outlives its job's row (retention).
    """
    CREATE TABLE accounting (
        job_id INTEGER PRIMARY KEY,
        record_id TEXT NOT NULL UNIQUE,
        finished_at REAL NOT NULL,
        analysis_pending INTEGER NOT NULL,
        body TEXT NOT NULL,
        sent_at REAL,
        upload INTEGER,
        rejected TEXT
    );
    CREATE INDEX accounting_unsent ON accounting (finished_at, job_id) WHERE sent_at IS NULL AND rejected IS NULL;
    CREATE INDEX accounting_by_time ON accounting (finished_at);
    CREATE INDEX accounting_pending ON accounting (finished_at) WHERE analysis_pending = 1;
    CREATE TABLE accounting_uploads (
        upload INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at REAL NOT NULL,
        finished_at REAL,
        records INTEGER NOT NULL,
        first_job_id INTEGER,
        last_job_id INTEGER,
        outcome TEXT NOT NULL,
        accepted INTEGER,
        duplicates INTEGER,
        detail TEXT NOT NULL DEFAULT ''
    );
    """,
    # version 3: forwards to the central server whose outcome is in doubt (spooler.dispatch.reconcile), written
    # in the same transaction as the job's row (its delivery journal); open while outcome is NULL.
    """
    CREATE TABLE forwards_in_doubt (
        forward_id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id INTEGER NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
        uri TEXT NOT NULL,
        forward_uuid TEXT,
        remote_job_id TEXT,
        started_at REAL NOT NULL,
        recorded_at REAL NOT NULL,
        cause TEXT NOT NULL,
        outcome TEXT,
        detail TEXT NOT NULL DEFAULT '',
        resolved_at REAL,
        checks INTEGER NOT NULL DEFAULT 0,
        next_check_at REAL
    );
    CREATE INDEX forwards_open ON forwards_in_doubt (next_check_at, forward_id) WHERE outcome IS NULL;
    CREATE INDEX forwards_by_job ON forwards_in_doubt (job_id);
    """,
]

_JOB_COLUMNS = (
    "job_id", "uuid", "queue", "protocol", "user", "host", "name", "document_format", "size",
    "copies", "sides", "state", "reason", "message", "route", "mode", "attempts", "next_attempt_at",
    "created_at", "processing_at", "completed_at", "files_removed", "hold_key_verifier", "attributes",
)  # fmt: skip


def new_job_uuid() -> str:
    return str(uuid_module.uuid4())


def spool_file_name(job_id: int, number: int) -> str:
    """The name of a document's data file in the spool folder: ours, derived from numbers only."""
    return f"d{job_id:06d}-{number:03d}"


def _job_to_row(job: Job) -> tuple[Any, ...]:
    values = job.summary() | {
        "state": int(job.state),
        "route": job.route.value,
        "mode": job.mode.value,
        "files_removed": int(job.files_removed),
        "hold_key_verifier": job.hold_key_verifier,
        "attributes": json.dumps(job.attributes, sort_keys=True),
    }
    return tuple(values[column] for column in _JOB_COLUMNS)


def _row_to_job(row: sqlite3.Row) -> Job:
    return Job(
        job_id=row["job_id"],
        uuid=row["uuid"],
        queue=row["queue"],
        protocol=row["protocol"],
        user=row["user"],
        host=row["host"],
        name=row["name"],
        document_format=row["document_format"],
        size=row["size"],
        copies=row["copies"],
        sides=row["sides"],
        state=JobState(row["state"]),
        reason=row["reason"],
        message=row["message"],
        route=Route(row["route"]),
        mode=Mode(row["mode"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        processing_at=row["processing_at"],
        completed_at=row["completed_at"],
        files_removed=bool(row["files_removed"]),
        hold_key_verifier=row["hold_key_verifier"],
        attributes=json.loads(row["attributes"]),
    )


class JobStore:
    """Jobs and their documents in SQLite. Open with `JobStore.open` (daemon) or `open_readonly` (CLI)."""

    def __init__(self, connection: sqlite3.Connection, *, readonly: bool = False,
                 record_maker: RecordMakerType | None = None) -> None:  # fmt: skip
        """With a `record_maker`, every write of a job in a final state also writes its accounting
        record, in the same transaction (see update_job)."""
        self._db = connection
        self._db.row_factory = sqlite3.Row
        self.readonly = readonly
        self._next_job_id: int | None = None
        self._record_maker = record_maker
        #: Called with each job this connection wrote, once its transaction committed (IPP event
        #: notifications); `notify` also calls them for a job another connection wrote.
        self.observers: list[Callable[[Job], None]] = []

    @classmethod
    def open(cls, path: Path, *, record_maker: RecordMakerType | None = None) -> JobStore:
        connection = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=5000")
        store = cls(connection, record_maker=record_maker)
        store._migrate()
        store._ensure_inline_table()
        return store

    @classmethod
    def open_readonly(cls, path: Path) -> JobStore:
        if not path.exists():
            raise FileNotFoundError(str(path))
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, isolation_level=None)
        connection.execute("PRAGMA busy_timeout=5000")
        return cls(connection, readonly=True)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        migrate(self._db, _SCHEMA, what="the job database")
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('next_job_id', '1')")
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('spool_id', ?)", (new_job_uuid(),))

    def _ensure_inline_table(self) -> None:
        """The data of documents stored inline (small ones): kept apart from `documents` so that
        listing jobs never reads it. Created here, not by a schema version, as it only adds a table."""
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS document_data (job_id INTEGER NOT NULL REFERENCES jobs (job_id) "
            "ON DELETE CASCADE, number INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (job_id, number))"
        )

    # -- job ids ---------------------------------------------------------------------------------

    def allocate_job_id(self) -> int:
        """The next job id. Persisted when the job is inserted; an id whose job never got its row
        (a crash before the commit) is reused, which is safe because no client ever saw it."""
        if self._next_job_id is None:
            stored = int(self._meta("next_job_id"))
            highest = self._db.execute("SELECT COALESCE(MAX(job_id), 0) FROM jobs").fetchone()[0]
            self._next_job_id = max(stored, highest + 1)
        job_id = self._next_job_id
        self._next_job_id += 1
        return job_id

    def _meta(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else ""

    @property
    def spool_id(self) -> str:
        return self._meta("spool_id")

    def setting(self, key: str) -> str | None:
        """A value kept in the meta table (spooler.jobs.printer_settings), or None."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"setting:{key}",)).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (f"setting:{key}", value))

    # -- writes ----------------------------------------------------------------------------------

    def insert_job(self, job: Job, documents: Iterable[Document]) -> None:
        placeholders = ", ".join("?" for _ in _JOB_COLUMNS)
        with self._transaction() as db:
            db.execute(f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({placeholders})", _job_to_row(job))
            db.executemany(
                "INSERT INTO documents (job_id, number, file_name, size, document_format) VALUES (?, ?, ?, ?, ?)",
                [(d.job_id, d.number, d.file_name, d.size, d.document_format) for d in documents],
            )
            db.execute(
                "UPDATE meta SET value = MAX(CAST(value AS INTEGER), ?) WHERE key = 'next_job_id'",
                (job.job_id + 1,),
            )
        self.notify(job)

    def notify(self, *jobs: Job) -> None:
        """Tell the observers about jobs that were written (an observer's failure is only logged)."""
        for observer in list(self.observers):
            for job in jobs:
                try:
                    observer(job)
                except Exception:
                    log.failure("A job observer failed", job_id=job.job_id)

    def insert_jobs(self, entries: Iterable[tuple[Job, Iterable[Document], dict[int, bytes]]]) -> None:
        """Several new jobs in one transaction (group commit: one WAL fsync for all of them), each
        with its documents and the data of those stored inline (document number -> bytes)."""
        entries = list(entries)
        placeholders = ", ".join("?" for _ in _JOB_COLUMNS)
        with self._transaction() as db:
            highest = 0
            for job, documents, inline in entries:
                db.execute(f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({placeholders})", _job_to_row(job))
                db.executemany(
                    "INSERT INTO documents (job_id, number, file_name, size, document_format) VALUES (?, ?, ?, ?, ?)",
                    [(d.job_id, d.number, d.file_name, d.size, d.document_format) for d in documents],
                )
                db.executemany("INSERT INTO document_data (job_id, number, data) VALUES (?, ?, ?)",
                               [(job.job_id, number, data) for number, data in inline.items()])  # fmt: skip
                highest = max(highest, job.job_id)
            db.execute("UPDATE meta SET value = MAX(CAST(value AS INTEGER), ?) WHERE key = 'next_job_id'",
                       (highest + 1,))  # fmt: skip
        self.notify(*(job for job, _, _ in entries))

    def inline_data(self, job_id: int, number: int) -> bytes | None:
        """The data of a document stored inline, or None (it has a spool file of its own)."""
        try:
            row = self._db.execute("SELECT data FROM document_data WHERE job_id = ? AND number = ?",
                                   (job_id, number)).fetchone()  # fmt: skip
        except sqlite3.OperationalError:  # a read-only view of a database that never had the table
            return None
        return bytes(row[0]) if row else None

    def inline_file_names(self) -> set[str]:
        """The spool names of documents stored inline (their spool files are mere copies)."""
        rows = self._db.execute(
            "SELECT d.file_name FROM documents d JOIN document_data USING (job_id, number)"
        )
        return {row[0] for row in rows}

    def drop_inline_data(self, job_ids: Iterable[int]) -> None:
        with self._transaction() as db:
            db.executemany("DELETE FROM document_data WHERE job_id = ?", [(job_id,) for job_id in job_ids])

    @staticmethod
    def _update_row(db: sqlite3.Connection, job: Job) -> None:
        assignments = ", ".join(f"{column} = ?" for column in _JOB_COLUMNS[1:])
        cursor = db.execute(f"UPDATE jobs SET {assignments} WHERE job_id = ?", _job_to_row(job)[1:] + (job.job_id,))
        if cursor.rowcount != 1:
            raise JobNotFound(job.job_id)

    def update_job(self, job: Job) -> None:
        """Write the job's row. A job in a final state gets its accounting record in the same
        transaction (once: a record whose figures were still pending is completed when they land)."""
        self.update_jobs([job])

    def update_jobs(self, jobs: Sequence[Job]) -> None:
        """update_job for several jobs, in one transaction (one fsync)."""
        with self._transaction() as db:
            for job in jobs:
                self._write_job(db, job)
        self.notify(*jobs)

    def _write_job(self, db: sqlite3.Connection, job: Job) -> None:
        """The job's row, and its accounting record if it is final (see update_job), in `db`'s transaction."""
        self._update_row(db, job)
        if self._record_maker is not None and job.state.is_final:
            self._write_record(db, job)

    def add_document(self, job: Job, document: Document) -> None:
        """One more document of a job (IPP Send-Document) and the job's new row, in one transaction."""
        with self._transaction() as db:
            self._update_row(db, job)
            db.execute(
                "INSERT INTO documents (job_id, number, file_name, size, document_format) VALUES (?, ?, ?, ?, ?)",
                (document.job_id, document.number, document.file_name, document.size, document.document_format),
            )
        self.notify(job)

    def delete_jobs(self, job_ids: Iterable[int]) -> None:
        with self._transaction() as db:
            db.executemany("DELETE FROM jobs WHERE job_id = ?", [(job_id,) for job_id in job_ids])

    # -- forwards in doubt (spooler.dispatch.reconcile) ------------------------------------------------------

    def record_forward_in_doubt(self, forward: ForwardInDoubt, job: Job | None = None) -> int:
        """Keep `forward` as in doubt, in one transaction with the job's new row (its delivery journal)
        when `job` is given. Returns its forward_id."""
        with self._transaction() as db:
            if job is not None:
                self._write_job(db, job)
            cursor = db.execute(
                "INSERT INTO forwards_in_doubt (job_id, uri, forward_uuid, remote_job_id, started_at, recorded_at,"
                " cause, outcome, detail, resolved_at, next_check_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (forward.job_id, forward.uri, forward.forward_uuid, forward.remote_job_id, forward.started_at,
                 forward.recorded_at, forward.cause[:500], forward.outcome, forward.detail[:500], forward.resolved_at,
                 forward.next_check_at),
            )  # fmt: skip
        if job is not None:
            self.notify(job)
        return int(cursor.lastrowid or 0)

    def resolve_forward(self, forward_id: int, outcome: str, detail: str, now: float, job: Job | None = None) -> bool:
        """Close an open in-doubt forward with what reconciliation found or did, with the job's new row
        in the same transaction when `job` is given. False (and nothing written) if it was no longer open."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE forwards_in_doubt SET outcome = ?, detail = ?, resolved_at = ?, checks = checks + 1,"
                " next_check_at = NULL WHERE forward_id = ? AND outcome IS NULL",
                (outcome, detail[:500], now, forward_id),
            )
            if cursor.rowcount == 1 and job is not None:
                self._write_job(db, job)
        if cursor.rowcount == 1 and job is not None:
            self.notify(job)
        return cursor.rowcount == 1

    def check_forward_later(self, forward_id: int, when: float, detail: str) -> None:
        """Asking the server about an open in-doubt forward failed: ask again at `when`."""
        with self._transaction() as db:
            db.execute(
                "UPDATE forwards_in_doubt SET checks = checks + 1, next_check_at = ?, detail = ?"
                " WHERE forward_id = ? AND outcome IS NULL",
                (when, detail[:500], forward_id),
            )

    def forwards_of_job(self, job_id: int) -> list[ForwardInDoubt]:
        try:
            rows = self._db.execute("SELECT * FROM forwards_in_doubt WHERE job_id = ? ORDER BY forward_id",
                                    (job_id,)).fetchall()  # fmt: skip
        except sqlite3.OperationalError:  # a read-only view of a database from before schema version 3
            return []
        return [_forward_row(row) for row in rows]

    #: Jobs whose in-doubt forwards reconciliation settles on its own: finished ones, and held ones
    #: (not a Create-Job still waiting for its documents); the dispatcher settles the others.
    _SETTLEABLE = (f"(j.state IN ({int(JobState.CANCELED)}, {int(JobState.ABORTED)}, {int(JobState.COMPLETED)})"
                   f" OR (j.state = {int(JobState.PENDING_HELD)} AND j.reason != 'job-incoming'))")

    def open_forwards(self, *, due_by: float | None = None, settleable: bool = False,
                      limit: int = 100) -> list[ForwardInDoubt]:  # fmt: skip
        """Open in-doubt forwards, oldest first; with `due_by`, only those whose next check is due by
        then; with `settleable`, only those of finished or held jobs."""
        query, params = "SELECT f.* FROM forwards_in_doubt f JOIN jobs j USING (job_id) WHERE f.outcome IS NULL", []
        if due_by is not None:
            query += " AND (f.next_check_at IS NULL OR f.next_check_at <= ?)"
            params.append(due_by)
        if settleable:
            query += " AND " + self._SETTLEABLE
        rows = self._db.execute(query + " ORDER BY f.forward_id LIMIT ?", (*params, limit))
        return [_forward_row(row) for row in rows]

    def next_forward_check(self) -> float | None:
        """When the earliest open in-doubt forward of a finished or held job that waits is due (None:
        none waits)."""
        row = self._db.execute(
            "SELECT MIN(f.next_check_at) FROM forwards_in_doubt f JOIN jobs j USING (job_id)"
            " WHERE f.outcome IS NULL AND f.next_check_at IS NOT NULL AND " + self._SETTLEABLE
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def forward_counts(self) -> dict[str, int]:
        """In-doubt forwards by outcome ("open" for those not resolved yet)."""
        try:
            rows = self._db.execute(
                "SELECT COALESCE(outcome, 'open'), COUNT(*) FROM forwards_in_doubt GROUP BY outcome"
            ).fetchall()
        except sqlite3.OperationalError:  # a read-only view of a database from before schema version 3
            return {}
        return {outcome: count for outcome, count in rows}

    # -- reads -----------------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        row = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return _row_to_job(row)

    def documents(self, job_id: int) -> list[Document]:
        rows = self._db.execute("SELECT * FROM documents WHERE job_id = ? ORDER BY number", (job_id,)).fetchall()
        return [Document(r["job_id"], r["number"], r["file_name"], r["size"], r["document_format"]) for r in rows]

    def list_jobs(self, states: Iterable[JobState] | None = None, *, limit: int | None = None,
                  newest_first: bool = False) -> list[Job]:  # fmt: skip
        """Jobs in arrival order (or the newest first), optionally only those in `states`."""
        query, params = "SELECT * FROM jobs", []
        if states is not None:
            wanted = [int(s) for s in states]
            query += f" WHERE state IN ({', '.join('?' for _ in wanted)})"
            params.extend(wanted)
        query += " ORDER BY job_id DESC" if newest_first else " ORDER BY job_id"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        return [_row_to_job(row) for row in self._db.execute(query, params)]

    def head_of_queue(self, queue: str | None = None) -> Job | None:
        """The oldest job (of `queue`, or of every queue) that still waits for delivery; held jobs step
        aside. A job being delivered stays at the head; an administrator's reordering (Promote-Job,
        Schedule-Job-After: the job's "queue_order" attribute) comes before arrival order."""
        states = (int(JobState.PROCESSING), int(JobState.PENDING))
        where = "state IN (?, ?)" + (" AND queue = ?" if queue is not None else "")
        row = self._db.execute(
            f"SELECT * FROM jobs WHERE {where} ORDER BY state = ? DESC, "
            "COALESCE(json_extract(attributes, '$.queue_order'), job_id), job_id LIMIT 1",
            (*states, *([queue] if queue is not None else []), states[0]),
        ).fetchone()
        return _row_to_job(row) if row else None

    def queue_order(self, queue: str) -> list[tuple[int, float]]:
        """(job id, place) of the jobs of `queue` waiting for delivery, in the order they will leave."""
        rows = self._db.execute(
            "SELECT job_id, COALESCE(json_extract(attributes, '$.queue_order'), job_id) AS place FROM jobs "
            "WHERE queue = ? AND state IN (?, ?, ?) ORDER BY place, job_id",
            (queue, int(JobState.PENDING), int(JobState.PENDING_HELD), int(JobState.PROCESSING)),
        ).fetchall()
        return [(int(job_id), float(place)) for job_id, place in rows]

    def waiting_queues(self) -> set[str]:
        """The queues that have jobs waiting for delivery."""
        rows = self._db.execute(
            "SELECT DISTINCT queue FROM jobs WHERE state IN (?, ?)", (int(JobState.PENDING), int(JobState.PROCESSING))
        )
        return {row[0] for row in rows}

    def count_waiting_by_route(self) -> dict[str, int]:
        """Jobs waiting for delivery (pending or under way), by the route they wait for."""
        rows = self._db.execute(
            "SELECT route, COUNT(*) FROM jobs WHERE state IN (?, ?) GROUP BY route",
            (int(JobState.PENDING), int(JobState.PROCESSING)),
        ).fetchall()
        return {route: count for route, count in rows}

    def count_jobs(self) -> list[tuple[str, JobState, str, str, int]]:
        """(queue, state, route, mode, count) of every job kept (waiting and finished, within retention)."""
        rows = self._db.execute("SELECT queue, state, route, mode, COUNT(*) FROM jobs GROUP BY queue, state, route, mode")
        return [(queue, JobState(state), route, mode, count) for queue, state, route, mode, count in rows]

    def count_printed_offline(self, since: float) -> int:
        """Jobs printed on the device in offline mode that finished at or after `since` (an outage's start)."""
        return int(self._db.execute(
            "SELECT COUNT(*) FROM jobs WHERE state = ? AND route = 'device' AND mode = 'offline' AND completed_at >= ?",
            (int(JobState.COMPLETED), since),
        ).fetchone()[0])  # fmt: skip

    def count_by_state(self, queue: str | None = None) -> dict[JobState, int]:
        if queue is None:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        else:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs WHERE queue = ? GROUP BY state",
                                    (queue,)).fetchall()  # fmt: skip
        return {JobState(state): count for state, count in rows}

    def finished_before(self, when: float, *, files_present: bool | None = None) -> list[Job]:
        query = "SELECT * FROM jobs WHERE state IN (?, ?, ?) AND completed_at < ?"
        params: list[Any] = [int(JobState.CANCELED), int(JobState.ABORTED), int(JobState.COMPLETED), when]
        if files_present is not None:
            query += " AND files_removed = ?"
            params.append(0 if files_present else 1)
        return [_row_to_job(row) for row in self._db.execute(query + " ORDER BY job_id", params)]

    def all_file_names(self) -> set[str]:
        rows = self._db.execute(
            "SELECT d.file_name FROM documents d JOIN jobs j USING (job_id) WHERE j.files_removed = 0"
        )
        return {row[0] for row in rows}

    # -- accounting records (spooler.accounting.records, spooler.accounting.outbox, spooler.accounting.report) -------------------

    def _write_record(self, db: sqlite3.Connection, job: Job) -> None:
        assert self._record_maker is not None
        existing = db.execute(
            "SELECT analysis_pending, sent_at FROM accounting WHERE job_id = ?", (job.job_id,)
        ).fetchone()
        if existing is not None and not (existing["analysis_pending"] and existing["sent_at"] is None):
            return  # one record per job; a record sent (or complete) is never rewritten
        entry = self._record_maker(job, self.documents(job.job_id), self.spool_id)
        if existing is not None and entry.analysis_pending:
            return  # still waiting for the figures
        db.execute(
            "INSERT OR REPLACE INTO accounting (job_id, record_id, finished_at, analysis_pending, body)"
            " VALUES (?, ?, ?, ?, ?)",
            (entry.job_id, entry.record_id, entry.finished_at, int(entry.analysis_pending),
             json.dumps(entry.body, sort_keys=True)),
        )  # fmt: skip

    def record_missing(self, limit: int = 1000) -> int:
        """Write the records of finished jobs that have none (jobs finished before accounting existed);
        at most `limit` per call. Returns how many were written."""
        if self._record_maker is None:
            return 0
        rows = self._db.execute(
            "SELECT j.* FROM jobs j LEFT JOIN accounting a USING (job_id)"
            " WHERE j.state IN (?, ?, ?) AND a.job_id IS NULL ORDER BY j.job_id LIMIT ?",
            (int(JobState.CANCELED), int(JobState.ABORTED), int(JobState.COMPLETED), limit),
        ).fetchall()
        if rows:
            with self._transaction() as db:
                for row in rows:
                    self._write_record(db, _row_to_job(row))
        return len(rows)

    def record_of(self, job_id: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM accounting WHERE job_id = ?", (job_id,)).fetchone()
        return _record_row(row) if row else None

    def records_to_send(self, limit: int, *, not_before: float) -> list[tuple[int, str]]:
        """The oldest unsent records (job id, body as JSON text) whose figures are in, none finished
        before `not_before` (too old to send)."""
        return [
            (row[0], row[1])
            for row in self._db.execute(
                "SELECT job_id, body FROM accounting WHERE sent_at IS NULL AND rejected IS NULL"
                " AND finished_at >= ? AND analysis_pending = 0 ORDER BY finished_at, job_id LIMIT ?",
                (not_before, limit),
            )
        ]

    def give_up_pending(self, before: float, reason: str) -> int:
        """Records still waiting for their figures although their job finished before `before`: their
        figures become "unknown" for good (a late analysis no longer changes them), so that what is
        sent is what is kept. Returns how many."""
        rows = self._db.execute(
            "SELECT job_id, body FROM accounting WHERE analysis_pending = 1 AND sent_at IS NULL AND finished_at < ?",
            (before,),
        ).fetchall()
        if rows:
            with self._transaction() as db:
                for job_id, body in rows:
                    record = json.loads(body) | {"analysis": "unknown", "analysis_reason": reason}
                    db.execute(
                        "UPDATE accounting SET analysis_pending = 0, body = ? WHERE job_id = ? AND analysis_pending = 1",
                        (json.dumps(record, sort_keys=True), job_id),
                    )
        return len(rows)

    def begin_upload(self, job_ids: Sequence[int], now: float) -> int:
        """An audit row for an upload about to start; its number."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO accounting_uploads (started_at, records, first_job_id, last_job_id, outcome)"
                " VALUES (?, ?, ?, ?, 'sending')",
                (now, len(job_ids), min(job_ids, default=None), max(job_ids, default=None)),
            )
        return int(cursor.lastrowid or 0)

    def finish_upload(self, upload: int, job_ids: Sequence[int], now: float, *, accepted: int,
                      duplicates: int) -> None:  # fmt: skip
        """The server answered 200: the records are sent (only now), and the audit says so, together."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE accounting SET sent_at = ?, upload = ? WHERE job_id = ? AND sent_at IS NULL",
                [(now, upload, job_id) for job_id in job_ids],
            )
            db.execute(
                "UPDATE accounting_uploads SET finished_at = ?, outcome = 'sent', accepted = ?, duplicates = ?"
                " WHERE upload = ?",
                (now, accepted, duplicates, upload),
            )

    def fail_upload(self, upload: int, now: float, outcome: str, detail: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE accounting_uploads SET finished_at = ?, outcome = ?, detail = ? WHERE upload = ?",
                (now, outcome, detail[:500], upload),
            )

    def interrupted_uploads(self, now: float) -> int:
        """Uploads left 'sending' by a crash: marked interrupted (their records were never marked sent)."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE accounting_uploads SET outcome = 'interrupted', finished_at = ?,"
                " detail = 'the spooler stopped before the answer' WHERE outcome = 'sending'",
                (now,),
            )
        return cursor.rowcount

    def reject_record(self, job_id: int, detail: str) -> None:
        """The server refused this record on its own (400): kept locally, never sent again."""
        with self._transaction() as db:
            db.execute("UPDATE accounting SET rejected = ? WHERE job_id = ?", (detail[:500] or "refused", job_id))

    def mark_in_doubt(self, job_id: int, detail: str) -> None:
        """An upload of this record may or may not have reached a server that does not deduplicate
        (PaperCut's api.processJob): never sent again on its own; `resolve_in_doubt` decides."""
        with self._transaction() as db:
            db.execute("UPDATE accounting SET rejected = ? WHERE job_id = ? AND sent_at IS NULL",
                       (IN_DOUBT + detail[:480], job_id))  # fmt: skip

    def resolve_in_doubt(self, job_id: int, *, imported: bool, now: float) -> bool:
        """The admin checked the server: the record was imported (marked sent) or not (sent again)."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE accounting SET rejected = NULL, sent_at = ? WHERE job_id = ? AND rejected LIKE ?",
                (now if imported else None, job_id, IN_DOUBT + "%"),
            )
        return cursor.rowcount == 1

    def outbox_counts(self, *, not_before: float) -> dict[str, int]:
        """Records by where they stand: sent, waiting (to send), pending (figures still coming),
        expired (unsent and older than the age limit: kept, never sent), rejected (refused by the server)."""
        row = self._db.execute(
            "SELECT COUNT(*),"
            " SUM(sent_at IS NOT NULL),"
            " SUM(sent_at IS NULL AND rejected IS NULL AND finished_at >= ?),"
            " SUM(sent_at IS NULL AND rejected IS NULL AND finished_at >= ? AND analysis_pending = 1),"
            " SUM(sent_at IS NULL AND rejected IS NULL AND finished_at < ?),"
            " SUM(rejected IS NOT NULL AND rejected NOT LIKE ?),"
            " SUM(rejected LIKE ?)"
            " FROM accounting",
            (not_before, not_before, not_before, IN_DOUBT + "%", IN_DOUBT + "%"),
        ).fetchone()
        total, sent, waiting, pending, expired, rejected, in_doubt = (int(value or 0) for value in row)
        return {"records": total, "sent": sent, "waiting": waiting, "pending_analysis": pending,
                "expired": expired, "rejected": rejected, "in_doubt": in_doubt}  # fmt: skip

    def unsent_records(self, *, before: float | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Records not sent (and, with `before`, finished before it: the expired ones), oldest first."""
        query, params = "SELECT * FROM accounting WHERE sent_at IS NULL", []
        if before is not None:
            query += " AND finished_at < ?"
            params.append(before)
        query += " ORDER BY finished_at, job_id"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        return [_record_row(row) for row in self._db.execute(query, params)]

    def accounting_records(self, *, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
        """Every record finished in [since, until), oldest first (the reports' input)."""
        query, params = "SELECT * FROM accounting WHERE 1 = 1", []
        if since is not None:
            query += " AND finished_at >= ?"
            params.append(since)
        if until is not None:
            query += " AND finished_at < ?"
            params.append(until)
        return [_record_row(row) for row in self._db.execute(query + " ORDER BY finished_at, job_id", params)]

    def uploads(self, limit: int = 20) -> list[dict[str, Any]]:
        """The audit of the latest uploads, newest first."""
        rows = self._db.execute("SELECT * FROM accounting_uploads ORDER BY upload DESC LIMIT ?", (limit,))
        return [dict(row) for row in rows]


#: How an in-doubt record's `rejected` column starts (the rest says why).
IN_DOUBT = "in doubt: "


def _forward_row(row: sqlite3.Row) -> ForwardInDoubt:
    return ForwardInDoubt(
        job_id=row["job_id"], uri=row["uri"], started_at=row["started_at"], recorded_at=row["recorded_at"],
        cause=row["cause"], forward_uuid=row["forward_uuid"], remote_job_id=row["remote_job_id"],
        forward_id=row["forward_id"], outcome=row["outcome"], detail=row["detail"], resolved_at=row["resolved_at"],
        checks=row["checks"], next_check_at=row["next_check_at"],
    )  # fmt: skip


def _record_row(row: sqlite3.Row) -> dict[str, Any]:
    """A stored record: its body plus where it stands in the outbox."""
    return json.loads(row["body"]) | {
        "_finished_at": row["finished_at"], "_sent_at": row["sent_at"], "_upload": row["upload"],
        "_rejected": row["rejected"], "_analysis_pending": bool(row["analysis_pending"]),
    }  # fmt: skip
