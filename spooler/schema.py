"""Numbered schema migrations of the spooler's SQLite databases (spooler.db, login.db).

A database's schema is a list of steps; step N (counting from 1) brings it to version N, recorded in
`PRAGMA user_version`. A new version appends one step to the list and never edits an older one, so
that every database, however old, reaches the current schema by running the steps it has not run yet.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from spooler.model import SpoolerError


class SchemaTooNew(SpoolerError):
    """The database was written by a newer spooler (a version this one does not know)."""


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def check_known(version: int, steps: Sequence[str], what: str) -> None:
    if version > len(steps):
        raise SchemaTooNew(f"{what} has schema version {version}, newer than this spooler's {len(steps)}: "
                           "it was written by a newer spooler")  # fmt: skip


def migrate(db: sqlite3.Connection, steps: Sequence[str], *, what: str) -> int:
    """Run the steps the database has not run yet, in one transaction; the version it had before.
    `db` is in autocommit mode (isolation_level=None). Statements are separated by ";"."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(db)
        check_known(version, steps, what)
        for step in steps[version:]:
            for statement in step.split(";"):
                if statement.strip():
                    db.execute(statement)
        if version != len(steps):
            db.execute(f"PRAGMA user_version={len(steps)}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return version
