"""The reference server's durable state in DIR/central.db (SQLite, synchronous=FULL): accounting
records deduplicated by record_id across restarts, and the revocations added at run time."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounting (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL UNIQUE,
    received_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    kind TEXT NOT NULL,
    credential TEXT,
    revoked_at REAL NOT NULL,
    UNIQUE (user, kind, credential, revoked_at)
);
"""


def iso(timestamp: float) -> str:
    """UTC, millisecond precision, with a Z: "2026-11-25T00:31:18.123Z"."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    """Seconds since the epoch from an ISO 8601 time; a time without an offset is UTC."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


class CentralStore:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    @classmethod
    def open(cls, path: Path) -> CentralStore:
        connection = sqlite3.connect(str(path), isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.executescript(SCHEMA)
        return cls(connection)

    def close(self) -> None:
        self._db.close()

    # -- accounting --------------------------------------------------------------------------------

    def add_records(self, records: list[dict[str, Any]], now: float | None = None) -> tuple[int, int]:
        """Stores the records not seen before (by record_id), in one transaction: (accepted, duplicates)."""
        now = time.time() if now is None else now
        accepted = 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for record in records:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO accounting (record_id, received_at, body) VALUES (?, ?, ?)",
                    (record["record_id"], now, json.dumps(record, ensure_ascii=False, sort_keys=True)),
                )
                accepted += cursor.rowcount
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return accepted, len(records) - accepted

    def records(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT body, received_at FROM accounting ORDER BY seq").fetchall()
        return [dict(json.loads(body), received_at=iso(received_at)) for body, received_at in rows]

    def record_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM accounting").fetchone()[0])

    # -- revocations -------------------------------------------------------------------------------

    def add_revocation(self, user: str, kind: str, credential: str | None, revoked_at: float) -> dict[str, Any]:
        self._db.execute(
            "INSERT OR IGNORE INTO revocations (user, kind, credential, revoked_at) VALUES (?, ?, ?, ?)",
            (user, kind, credential, revoked_at),
        )
        return revocation(user, kind, credential, revoked_at)

    def revocations(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT user, kind, credential, revoked_at FROM revocations ORDER BY revoked_at, seq")
        return [revocation(*row) for row in rows.fetchall()]


def revocation(user: str, kind: str, credential: str | None, revoked_at: float) -> dict[str, Any]:
    return {"user": user, "kind": kind, "credential": credential, "revoked_at": iso(revoked_at),
            "_at": revoked_at}  # fmt: skip
