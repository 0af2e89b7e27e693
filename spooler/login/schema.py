"""login.db's schema: its numbered migrations (spooler.schema), one list for every connection that
opens the file (the credential cache, the failure budgets). Step N makes version N; append a step
for a new table or column, never edit one that has shipped."""

from __future__ import annotations

LOGIN_SCHEMA = [
    # version 1: the sealed rows of the credential cache (spooler.login.cache). Caches from before
    # versioning have the table already.
    """
    CREATE TABLE IF NOT EXISTS sealed (kind TEXT NOT NULL, slot TEXT NOT NULL, key_id TEXT NOT NULL,
                                       blob BLOB NOT NULL, PRIMARY KEY (kind, slot))
    """,
    # version 2: the failure budgets of logins (spooler.login.budget), per user, terminal and device.
    """
    CREATE TABLE IF NOT EXISTS failure_budget (scope TEXT PRIMARY KEY, failures REAL NOT NULL, at REAL NOT NULL,
                                               locked_until REAL NOT NULL)
    """,
]
