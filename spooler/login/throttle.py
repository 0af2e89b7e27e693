"""Brute-force limits of the device login: failures in a row per user and per terminal; after
`max_failures` of them the user or terminal is locked for `lockout` seconds (every attempt refused,
right or wrong). Driven by a clock (`seconds()`), kept in memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Counters kept at most (oldest dropped first): a flood of made-up user names cannot grow memory.
MAX_TRACKED = 10_000


@dataclass
class _Counter:
    failures: int = 0
    locked_until: float = 0.0


class Throttle:
    def __init__(self, clock: Any, *, max_failures: int = 5, lockout: float = 300.0) -> None:
        self._clock = clock
        self.max_failures = max_failures
        self.lockout = lockout
        self._counters: dict[tuple[str, str], _Counter] = {}

    def _keys(self, user: str | None, terminal: str) -> list[tuple[str, str]]:
        keys = [("terminal", terminal)]
        if user:
            keys.append(("user", user))
        return keys

    def locked(self, user: str | None, terminal: str) -> float | None:
        """Seconds until the lock on this user or terminal ends, or None when an attempt may go on."""
        now = self._clock.seconds()
        waits = [counter.locked_until - now for key in self._keys(user, terminal)
                 if (counter := self._counters.get(key)) is not None and counter.locked_until > now]  # fmt: skip
        return max(waits) if waits else None

    def failed(self, user: str | None, terminal: str) -> None:
        now = self._clock.seconds()
        for key in self._keys(user, terminal):
            counter = self._counters.pop(key, None) or _Counter()
            if counter.locked_until and counter.locked_until <= now:
                counter = _Counter()  # a lock that ended starts a fresh count
            counter.failures += 1
            if counter.failures >= self.max_failures:
                counter.locked_until = now + self.lockout
            self._counters[key] = counter  # re-inserted last: the dict stays in least-recent order
        while len(self._counters) > MAX_TRACKED:
            del self._counters[next(iter(self._counters))]

    def succeeded(self, user: str | None, terminal: str) -> None:
        for key in self._keys(user, terminal):
            self._counters.pop(key, None)
