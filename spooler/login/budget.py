"""Failure budgets against guessing (PINs, card numbers, passwords, private-print keys), per scope:
the device (logins that name no user), a user, a terminal, a held job.

Failures add up in a counter that forgets one failure every `max_delay` seconds. Once it reaches
`free`, every further failure locks the scope for `first_delay`, doubled per failure up to
`max_delay`; while a scope is locked every attempt is refused before any secret is checked. An
attempt is charged *before* it is checked (so that attempts in flight count, and a kill -9 in the
middle leaves the charge), and a success only gives back its own charge: it never clears the
failures of others (a wrong PIN, then the guesser's own PIN, then a wrong one again keeps counting).

The bound this gives, whatever the guesser does (proof in `guess_bound`): at most
`free + steps + 1 + T / max_delay` guesses in T seconds, where `steps` is the number of doublings
from `first_delay` to `max_delay`.

State is kept in SQLite (the table `failure_budget` of STATE/login.db, synchronous=FULL), so locks
survive a restart and a kill -9. Driven by an injected clock (`seconds()`).
"""

from __future__ import annotations

import math
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spooler.login.schema import LOGIN_SCHEMA
from spooler.schema import migrate

#: Scopes kept at most; beyond, those with the fewest failures left go first (a flood of made-up
#: user names cannot push out the counter of a user under attack, whose count is high).
MAX_SCOPES = 10_000


@dataclass(frozen=True)
class BudgetPolicy:
    """`free` failures cost nothing; each further one locks for `first_delay`, doubling up to
    `max_delay`; one failure is forgotten per `max_delay` seconds."""

    free: int = 5
    first_delay: float = 300.0
    max_delay: float = 900.0

    def __post_init__(self) -> None:
        if self.free < 1 or self.first_delay <= 0 or self.max_delay < self.first_delay:
            raise ValueError("a budget needs free >= 1 and 0 < first_delay <= max_delay")

    @property
    def steps(self) -> int:
        """Failures past `free` until the delay reaches `max_delay`."""
        return max(0, math.ceil(math.log2(self.max_delay / self.first_delay)))

    def delay(self, failures: float) -> float:
        """The lock that a failure bringing the count to `failures` starts (0: none)."""
        count = math.ceil(failures - 1e-9)  # a failure partly forgotten still counts as one
        if count < self.free:
            return 0.0
        return min(self.max_delay, self.first_delay * 2.0 ** min(count - self.free, 64))

    def decayed(self, failures: float, since: float, now: float) -> float:
        return max(0.0, failures - max(0.0, now - since) / self.max_delay)

    def guess_bound(self, seconds: float) -> int:
        """The most guesses any guesser gets in `seconds` from a clean start.

        With f the counter (0 at the start), G the guesses and D the decay applied over the window:
        f_end = G - D, and D <= seconds / max_delay (f decays by one per max_delay, and not at all
        at 0). A failure that brings f above free + steps - 1 locks for max_delay, in which f
        decays by exactly 1, so from then on f just after a failure never grows; and the first
        such failure found f at most free + steps - 1. So f <= free + steps at all times, and
        G = f_end + D <= free + steps + seconds / max_delay (one more guess is allowed for, to
        stay clear of rounding)."""
        return self.free + self.steps + 1 + math.floor(seconds / self.max_delay)

    def greedy_guesses(self, seconds: float) -> int:
        """Guesses of a guesser who tries the moment each lock ends, from a clean start (pure; the
        tests check it against FailureBudget on a Clock)."""
        failures, at, locked_until, now, guesses = 0.0, 0.0, 0.0, 0.0, 0
        while True:
            now = max(now, locked_until)
            if now > seconds:
                return guesses
            failures = self.decayed(failures, at, now) + 1
            at = now
            guesses += 1
            wait = self.delay(failures)
            if wait:
                locked_until = now + wait


@dataclass(frozen=True)
class Charge:
    """One attempt charged to a scope, to give back if it succeeds."""

    scope: str
    policy: BudgetPolicy
    locked_until_before: float
    locked_until_after: float


class FailureBudgets:
    """Every scope's counter, in the table `failure_budget` (its own connection to the database)."""

    def __init__(self, connection: sqlite3.Connection, clock: Any) -> None:
        self._db = connection
        self._clock = clock
        migrate(self._db, LOGIN_SCHEMA, what="the login database of the failure budgets")

    @classmethod
    def open(cls, path: Path | str, clock: Any) -> FailureBudgets:
        """On `path` (created 0600 if missing), or in memory with ":memory:" (tests, no login state)."""
        if str(path) != ":memory:":
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        connection = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA busy_timeout=5000")
        return cls(connection, clock)

    def close(self) -> None:
        self._db.close()

    def _row(self, scope: str) -> tuple[float, float, float] | None:
        row = self._db.execute("SELECT failures, at, locked_until FROM failure_budget WHERE scope = ?",
                               (scope,)).fetchone()  # fmt: skip
        return (float(row[0]), float(row[1]), float(row[2])) if row else None

    def _write(self, scope: str, failures: float, at: float, locked_until: float, policy: BudgetPolicy) -> None:
        new = self._db.execute("INSERT OR REPLACE INTO failure_budget (scope, failures, at, locked_until) "
                               "VALUES (?, ?, ?, ?)", (scope, failures, at, locked_until)).rowcount  # fmt: skip
        if new and self._db.execute("SELECT count(*) FROM failure_budget").fetchone()[0] > MAX_SCOPES:
            self._prune(at, policy)

    def _prune(self, now: float, policy: BudgetPolicy) -> None:
        """Forget the scopes with the fewest failures left (never a locked one)."""
        self._db.execute(
            "DELETE FROM failure_budget WHERE scope IN (SELECT scope FROM failure_budget WHERE locked_until <= ? "
            "ORDER BY failures - max(0, ? - at) / ? LIMIT ?)",
            (now, now, policy.max_delay, MAX_SCOPES // 10),
        )  # fmt: skip

    def wait(self, scope: str, policy: BudgetPolicy) -> float | None:
        """Seconds until `scope` may be tried again, or None. Never more than max_delay (a clock
        that jumped back cannot lock anyone out for longer)."""
        row = self._row(scope)
        if row is None:
            return None
        left = row[2] - self._clock.seconds()
        return min(left, policy.max_delay) if left > 0 else None

    def failures(self, scope: str, policy: BudgetPolicy) -> float:
        row = self._row(scope)
        return policy.decayed(row[0], row[1], self._clock.seconds()) if row else 0.0

    def charge(self, scope: str, policy: BudgetPolicy) -> Charge:
        """Count one attempt as failed (durably, before the secret is checked); lock if due."""
        now = self._clock.seconds()
        failures, at, locked_until = self._row(scope) or (0.0, now, 0.0)
        failures = policy.decayed(failures, at, now) + 1
        before = locked_until
        wait = policy.delay(failures)
        if wait:
            locked_until = max(min(locked_until, now + policy.max_delay), now + wait)
        self._write(scope, failures, now, locked_until, policy)
        return Charge(scope, policy, before, locked_until)

    def refund(self, charge: Charge) -> None:
        """The charged attempt succeeded: take back its failure, and the lock it started (unless
        another attempt changed the lock since)."""
        row = self._row(charge.scope)
        if row is None:
            return
        now = self._clock.seconds()
        failures, at, locked_until = row
        failures = max(0.0, charge.policy.decayed(failures, at, now) - 1)
        if locked_until == charge.locked_until_after:
            locked_until = charge.locked_until_before
        self._write(charge.scope, failures, now, locked_until, charge.policy)

    def clear(self, scope: str) -> None:
        self._db.execute("DELETE FROM failure_budget WHERE scope = ?", (scope,))
