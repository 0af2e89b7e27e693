"""Cache entries of the offline login (verifiers, profile, expiry) and the pure rules that merge them:
the newest credential wins, a revocation beats any credential verified before it. No I/O here.

Times: `verified_at` and `revoked_at` are the central server's clock (from its answers), so that they
compare with each other; `expires_at` and `updated_at` are this spooler's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

METHODS = ("pin", "card", "password")
ORIGINS = ("login", "sync")  # where a credential was first learned
SOURCES = ("login", "sync", "peer")  # how this spooler got it
PROFILE_FIELDS = ("full_name", "email", "groups")


@dataclass(frozen=True)
class Credential:
    """One verifier of a user's PIN, card or password: `id` is the server's ("pin-1", "card-2", "password")."""

    id: str
    kind: str
    verifier: str
    verified_at: float
    origin: str = "login"
    source: str = "login"
    fingerprint: str | None = None  # this spooler's index of the secret (spooler.login.cache); never shared

    def to_dict(self, *, shared: bool = False) -> dict[str, Any]:
        data = {"id": self.id, "kind": self.kind, "verifier": self.verifier, "verified_at": self.verified_at,
                "origin": self.origin, "source": self.source}  # fmt: skip
        if not shared and self.fingerprint:
            data["fingerprint"] = self.fingerprint
        return data

    @classmethod
    def from_dict(cls, raw: Any) -> Credential:
        if not isinstance(raw, dict):
            raise ValueError("a credential must be an object")
        kind, verifier = raw.get("kind"), raw.get("verifier")
        if kind not in METHODS or not isinstance(verifier, str) or not verifier.startswith("scrypt$"):
            raise ValueError("a credential needs a kind (pin, card, password) and an scrypt verifier")
        credential_id = raw.get("id")
        if not isinstance(credential_id, str) or not 0 < len(credential_id) <= 64:
            raise ValueError("a credential needs an id")
        origin = raw.get("origin", "login")
        source = raw.get("source", "login")
        fingerprint = raw.get("fingerprint")
        return cls(credential_id, kind, verifier, float(raw.get("verified_at", 0.0)),
                   origin if origin in ORIGINS else "login", source if source in SOURCES else "peer",
                   fingerprint if isinstance(fingerprint, str) else None)  # fmt: skip


@dataclass(frozen=True)
class UserEntry:
    """What this spooler knows about one user: profile, credentials, until when they may log in offline."""

    user: str
    profile: dict[str, Any]
    credentials: dict[str, Credential]
    expires_at: float
    updated_at: float
    source: str = "login"

    def to_dict(self, *, shared: bool = False) -> dict[str, Any]:
        return {"user": self.user, "profile": dict(self.profile),
                "credentials": [c.to_dict(shared=shared) for c in self.credentials.values()],
                "expires_at": self.expires_at, "updated_at": self.updated_at, "source": self.source}  # fmt: skip

    @classmethod
    def from_dict(cls, raw: Any) -> UserEntry:
        if not isinstance(raw, dict) or not isinstance(raw.get("user"), str) or not raw["user"]:
            raise ValueError("an entry needs a user")
        if len(raw["user"]) > 256:
            raise ValueError("a user name is at most 256 characters")
        credentials = raw.get("credentials", [])
        if not isinstance(credentials, list) or len(credentials) > 16:
            raise ValueError("an entry has at most 16 credentials")
        parsed = [Credential.from_dict(item) for item in credentials]
        source = raw.get("source", "login")
        return cls(raw["user"], clean_profile(raw.get("profile")), {c.id: c for c in parsed},
                   float(raw.get("expires_at", 0.0)), float(raw.get("updated_at", 0.0)),
                   source if source in SOURCES else "peer")  # fmt: skip

    def shareable(self) -> UserEntry | None:
        """The entry as a peer may see it: credentials first learned from a login (a synced user is
        this device's assignment, not the fleet's), no fingerprints; None if nothing is left."""
        kept = {cid: replace(c, fingerprint=None) for cid, c in self.credentials.items() if c.origin == "login"}
        return replace(self, credentials=kept) if kept else None


@dataclass(frozen=True)
class Revocation:
    """The server's word that a user (kind "user") or some of their credentials may no longer log in."""

    user: str
    kind: str  # user, card, pin, password
    credential: str | None  # None: every credential of that kind
    revoked_at: float

    def covers(self, user: str, credential: Credential) -> bool:
        if user != self.user or credential.verified_at > self.revoked_at:
            return False
        if self.kind == "user":
            return True
        return self.kind == credential.kind and self.credential in (None, credential.id)

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.user, "kind": self.kind, "credential": self.credential, "revoked_at": self.revoked_at}

    @classmethod
    def from_dict(cls, raw: Any) -> Revocation:
        if not isinstance(raw, dict) or not isinstance(raw.get("user"), str) or not raw["user"]:
            raise ValueError("a revocation needs a user")
        kind = raw.get("kind", "user")
        if kind not in ("user", *METHODS):
            raise ValueError("a revocation's kind is user, card, pin or password")
        credential = raw.get("credential")
        if credential is not None and not isinstance(credential, str):
            raise ValueError("a revocation's credential is an id or null")
        return cls(raw["user"], kind, credential, float(raw["revoked_at"]))


def clean_profile(raw: Any) -> dict[str, Any]:
    """The cached part of a profile: name fields and groups (credit is never cached: offline it is unknown)."""
    raw = raw if isinstance(raw, dict) else {}
    groups = raw.get("groups", [])
    return {"full_name": str(raw.get("full_name", ""))[:256], "email": str(raw.get("email", ""))[:256],
            "groups": [str(g)[:128] for g in groups[:64]] if isinstance(groups, list) else []}  # fmt: skip


def is_revoked(user: str, credential: Credential, revocations: list[Revocation]) -> bool:
    return any(revocation.covers(user, credential) for revocation in revocations)


def merge_entries(local: UserEntry | None, incoming: UserEntry) -> UserEntry:
    """Merge an entry learned elsewhere (a peer, a sync) into the local one.

    Per credential id the newer verification wins (a tie keeps the local one; our fingerprint stays);
    the profile, expiry and source come from whichever entry was updated last."""
    if local is None:
        return incoming
    credentials = dict(local.credentials)
    for credential_id, theirs in incoming.credentials.items():
        ours = credentials.get(credential_id)
        if ours is None:
            credentials[credential_id] = theirs
        elif theirs.verified_at > ours.verified_at:
            # Our fingerprint stays as the hint (it is always checked against the verifier it points to).
            credentials[credential_id] = replace(theirs, fingerprint=ours.fingerprint)
    newer = incoming if incoming.updated_at > local.updated_at else local
    return UserEntry(local.user, newer.profile, credentials, newer.expires_at,
                     max(local.updated_at, incoming.updated_at), newer.source)  # fmt: skip


def apply_sync(local: UserEntry | None, synced: UserEntry) -> UserEntry:
    """A user as the server's sync lists them now: the synced credentials replace the ones learned by
    an earlier sync (a salt changes when the server restarts; a credential not listed is gone); those
    learned from a login stay until they expire or are revoked. A credential id seen at a login keeps
    its origin, with the synced verifier and the synced fingerprint (if the server sent a lookup; else
    ours, which stops counting if the verifier changed)."""
    if local is None:
        return synced
    credentials = {cid: c for cid, c in local.credentials.items() if c.origin != "sync" and cid not in synced.credentials}
    for credential_id, theirs in synced.credentials.items():
        ours = local.credentials.get(credential_id)
        if ours is None:
            credentials[credential_id] = theirs
        else:  # seen at a login here: it stays a login credential (kept when the sync drops the user)
            credentials[credential_id] = replace(theirs, fingerprint=theirs.fingerprint or ours.fingerprint,
                                                 origin=ours.origin)  # fmt: skip
    return UserEntry(local.user, synced.profile, credentials, max(local.expires_at, synced.expires_at),
                     synced.updated_at, "sync")  # fmt: skip


def parse_server_time(text: Any, default: float) -> float:
    """Seconds since the epoch from the server's ISO 8601 time ("...Z"; no offset: UTC), else `default`."""
    if not isinstance(text, str):
        return default
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return default
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
