"""Terminal sessions: who is logged in at the device terminal, under which random token, until when.

Pure bookkeeping on an injected clock, no I/O. A session ends at logout, when it has seen no
request for `idle_timeout` seconds, or when the login's own validity ends, whichever comes first.
Tokens are 256 random bits; only their SHA-256 is kept as the key (a memory dump or a timing probe
of the table does not give a usable token). Sessions live in memory only: a restart logs everyone
out, which is what a kiosk wants.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IReactorTime

#: The most sessions kept at once; beyond it the least recently used one ends.
MAX_SESSIONS = 256
#: The most sessions of one user; a further login of theirs ends their own least recently used one
#: (never someone else's: one user logging in again and again cannot log everyone else out).
MAX_SESSIONS_PER_USER = 4


@dataclass
class Session:
    user: str
    mode: str  # "online" | "offline"
    notice: str | None
    profile: dict[str, Any]
    peer: str  # the client address the session was opened from (it is bound to it)
    created_at: float
    last_seen: float
    valid_until: float
    key: str = field(repr=False, default="")

    def public(self, idle_timeout: float) -> dict[str, Any]:
        """What the terminal page is told about its session (no token)."""
        return {
            "user": self.user,
            "full_name": str(self.profile.get("full_name") or ""),
            "mode": self.mode,
            "notice": self.notice,
            "idle_timeout": idle_timeout,
        }


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class SessionStore:
    def __init__(self, clock: IReactorTime, *, idle_timeout: float, max_sessions: int = MAX_SESSIONS,
                 max_per_user: int = MAX_SESSIONS_PER_USER) -> None:  # fmt: skip
        self._clock = clock
        self.idle_timeout = idle_timeout
        self._max = max_sessions
        self._max_per_user = max_per_user
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        self._expire()
        return len(self._sessions)

    def open(self, *, user: str, mode: str, notice: str | None, profile: dict[str, Any], peer: str,
             valid_until: float | None) -> tuple[str, Session]:  # fmt: skip
        """A new session: (its token, the session). The token is shown once, to its client. A user at
        their cap loses their own least recently used session; a full table loses its least
        recently used one (with the per-user cap, at least MAX_SESSIONS / MAX_SESSIONS_PER_USER users
        must be logged in for that)."""
        self._expire()
        mine = [session for session in self._sessions.values() if session.user == user]
        while len(mine) >= self._max_per_user:
            oldest = min(mine, key=lambda session: session.last_seen)
            mine.remove(oldest)
            del self._sessions[oldest.key]
        while len(self._sessions) >= self._max:
            oldest = min(self._sessions.values(), key=lambda session: session.last_seen)
            del self._sessions[oldest.key]
        now = self._clock.seconds()
        if not valid_until or valid_until != valid_until:  # unknown (0, None, NaN): idle time alone
            valid_until = float("inf")
        token = secrets.token_urlsafe(32)
        session = Session(user=user, mode=mode, notice=notice, profile=dict(profile), peer=peer, created_at=now,
                          last_seen=now, valid_until=valid_until, key=_key(token))  # fmt: skip
        self._sessions[session.key] = session
        return token, session

    def find(self, token: str | None, peer: str) -> Session | None:
        """The live session of `token` used from `peer`, touched (its idle time starts again); None if
        there is none, it expired, or it was opened from another address."""
        if not token:
            return None
        self._expire()
        session = self._sessions.get(_key(token))
        if session is None or not secrets.compare_digest(session.peer, peer):
            return None
        session.last_seen = self._clock.seconds()
        return session

    def close(self, token: str | None) -> Session | None:
        if not token:
            return None
        return self._sessions.pop(_key(token), None)

    def _alive(self, session: Session, now: float) -> bool:
        return now - session.last_seen < self.idle_timeout and now < session.valid_until

    def _expire(self) -> None:
        now = self._clock.seconds()
        for key in [key for key, session in self._sessions.items() if not self._alive(session, now)]:
            del self._sessions[key]
