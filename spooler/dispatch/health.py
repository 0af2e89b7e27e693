"""Health of a peer (the central server, the device) with hysteresis: N failures in a row make it
down, M successes in a row make it up again. Pure: the caller passes the time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

UNKNOWN, UP, DOWN = "unknown", "up", "down"


@dataclass
class HealthTracker:
    name: str
    down_after: int = 2
    up_after: int = 2
    state: str = UNKNOWN
    since: float | None = None
    detail: str = ""
    failures: int = 0  # in a row
    successes: int = 0  # in a row

    def record(self, ok: bool, now: float, detail: str = "") -> str | None:
        """Count one probe or delivery outcome. Returns the new state if it changed, else None.

        From unknown one success is enough to be up (nothing says otherwise); from down it takes
        `up_after`, so that a flapping peer does not pull jobs back and forth."""
        if ok:
            self.successes += 1
            self.failures = 0
            self.detail = ""
            needed = 1 if self.state == UNKNOWN else self.up_after
            if self.state != UP and self.successes >= needed:
                return self._become(UP, now)
        else:
            self.failures += 1
            self.successes = 0
            self.detail = detail
            if self.state != DOWN and self.failures >= self.down_after:
                return self._become(DOWN, now)
        return None

    def _become(self, state: str, now: float) -> str:
        self.state, self.since = state, now
        return state

    @property
    def usable(self) -> bool:
        """Whether jobs may be sent to it: up, or not yet known to be down."""
        return self.state != DOWN

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "since": self.since, "detail": self.detail,
                "failures_in_a_row": self.failures, "successes_in_a_row": self.successes}  # fmt: skip
