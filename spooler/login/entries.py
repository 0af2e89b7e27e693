"""Cache entries of the offline login (verifiers, profile, where and until when they count) and the pure
rules that merge them: a revocation beats any credential verified before it. No I/O here.

Times: `verified_at` and `revoked_at` are the central server's clock (from its answers), so that they
compare with each other; `renewed_at` and `updated_at` are this spooler's clock. How long an entry
lets its user in is not stored: it is `renewed_at` plus the `validity_hours` configured at the time of
the check (`UserEntry.valid_until`), so a shortened setting applies to every entry at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from spooler.signing import SignatureError, Statement, as_json, from_json

METHODS = ("pin", "card", "password", "card+pin", "card+password")
#: The two-factor methods (MyQ X login_info types 4 and 5) and their second factor: the card and the
#: PIN or password are checked as one pair (`pair_secret`), never one without the other.
COMBINED = {"card+pin": "pin", "card+password": "password"}
ORIGINS = ("login", "sync")  # where a credential was first learned
SOURCES = ("login", "sync", "peer")  # how this spooler got it
PROFILE_FIELDS = ("full_name", "email", "groups")
#: Devices a credential may list ("*": every device).
MAX_DEVICES = 256
EVERY_DEVICE = "*"


@dataclass(frozen=True)
class Credential:
    """One verifier of a user's PIN, card or password: `id` is the server's ("pin-1", "card-2", "password").

    `devices` are the devices the central server lets its user log in at ("*": every device; empty: the
    server did not say, so only the device that learned it from the server). A credential that came
    from a peer (`source` "peer") names the peer whose signed `record` brought it (`issuer`), and counts
    only while that peer is enrolled; `grant` is the central server's signature of it, when the server
    signs."""

    id: str
    kind: str
    verifier: str
    verified_at: float
    origin: str = "login"
    source: str = "login"
    fingerprint: str | None = None  # this spooler's index of the secret (spooler.login.cache); never shared
    devices: tuple[str, ...] = ()
    issuer: str | None = None  # the enrolled peer's key (source "peer")
    record: Statement | None = None  # that peer's signed record of it, passed on to other peers as it is
    grant: Statement | None = None  # the central server's signed grant (spooler.signing.GRANT)
    grant_until: float | None = None  # the grant's end (server clock)

    def allowed_on(self, device: str) -> bool:
        """Whether the server lets this credential's user log in at `device`."""
        if self.devices:
            return EVERY_DEVICE in self.devices or device in self.devices
        return self.source != "peer"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "kind": self.kind, "verifier": self.verifier,
                                "verified_at": self.verified_at, "origin": self.origin, "source": self.source,
                                "devices": list(self.devices)}  # fmt: skip
        if self.fingerprint:
            data["fingerprint"] = self.fingerprint
        if self.issuer is not None:
            data["issuer"] = self.issuer
        if self.record is not None:
            data["record"] = as_json(self.record)
        if self.grant is not None:
            data["grant"] = as_json(self.grant)
            data["grant_until"] = self.grant_until
        return data

    @classmethod
    def from_dict(cls, raw: Any) -> Credential:
        if not isinstance(raw, dict):
            raise ValueError("a credential must be an object")
        kind, verifier = raw.get("kind"), raw.get("verifier")
        if kind not in METHODS or not isinstance(verifier, str) or not verifier.startswith("scrypt$"):
            raise ValueError(f"a credential needs a kind ({', '.join(METHODS)}) and an scrypt verifier")
        credential_id = raw.get("id")
        if not isinstance(credential_id, str) or not 0 < len(credential_id) <= 64:
            raise ValueError("a credential needs an id")
        origin = raw.get("origin", "login")
        source = raw.get("source", "login")
        fingerprint = raw.get("fingerprint")
        issuer = raw.get("issuer")
        grant_until = raw.get("grant_until")
        record, grant = _statement(raw, "record"), _statement(raw, "grant")
        return cls(credential_id, kind, verifier, float(raw.get("verified_at", 0.0)),
                   origin if origin in ORIGINS else "login", source if source in SOURCES else "peer",
                   fingerprint if isinstance(fingerprint, str) else None, parse_devices(raw.get("devices", [])),
                   issuer if isinstance(issuer, str) else None, record, grant,
                   float(grant_until) if isinstance(grant_until, (int, float)) and grant is not None else None)  # fmt: skip


def _statement(raw: dict[str, Any], key: str) -> Statement | None:
    """A signed statement stored under `key` (None when absent); ValueError if it is not one."""
    if raw.get(key) is None:
        return None
    try:
        return from_json(raw[key])
    except SignatureError as error:
        raise ValueError(str(error)) from None


def parse_devices(raw: Any) -> tuple[str, ...]:
    """A list of device names ("*": every device) as the server or a peer sent it; ValueError if not one."""
    if not isinstance(raw, (list, tuple)) or len(raw) > MAX_DEVICES:
        raise ValueError(f"devices must be a list of at most {MAX_DEVICES} device names")
    if not all(isinstance(name, str) and 0 < len(name) <= 64 for name in raw):
        raise ValueError("devices must be device names (texts of 1 to 64 characters)")
    return tuple(dict.fromkeys(raw))


@dataclass(frozen=True)
class UserEntry:
    """What this spooler knows about one user: profile, credentials, when they last logged in."""

    user: str
    profile: dict[str, Any]
    credentials: dict[str, Credential]
    renewed_at: float  # the last login here (online or offline) or sync; a peer's entry: the login it came from
    updated_at: float
    source: str = "login"

    def valid_until(self, validity: float) -> float:
        """Until when the entry lets its user log in offline, under the validity configured now."""
        return self.renewed_at + validity

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.user, "profile": dict(self.profile),
                "credentials": [c.to_dict() for c in self.credentials.values()],
                "renewed_at": self.renewed_at, "updated_at": self.updated_at, "source": self.source}  # fmt: skip

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
        updated_at = float(raw.get("updated_at", 0.0))
        # Rows written before validity was computed at check time have no renewed_at: their last change is.
        renewed_at = float(raw.get("renewed_at", updated_at))
        return cls(raw["user"], clean_profile(raw.get("profile")), {c.id: c for c in parsed}, renewed_at,
                   updated_at, source if source in SOURCES else "peer")  # fmt: skip


@dataclass(frozen=True)
class Revocation:
    """The server's word that a user (kind "user") or some of their credentials may no longer log in.

    `issuer` is the enrolled peer whose signed `record` brought it (None: this spooler's own sync);
    `signed` the central server's signature of it, when the server signs. `refusal` marks what this
    spooler concluded itself from an online refusal: it is never shared."""

    user: str
    kind: str  # user, card, pin, password
    credential: str | None  # None: every credential of that kind
    revoked_at: float
    issuer: str | None = None
    record: Statement | None = None
    signed: Statement | None = None
    refusal: bool = False

    def covers(self, user: str, credential: Credential) -> bool:
        if user != self.user or credential.verified_at > self.revoked_at:
            return False
        if self.kind == "user":
            return True
        return self.kind == credential.kind and self.credential in (None, credential.id)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"user": self.user, "kind": self.kind, "credential": self.credential,
                                "revoked_at": self.revoked_at}  # fmt: skip
        if self.issuer is not None:
            data["issuer"] = self.issuer
        if self.record is not None:
            data["record"] = as_json(self.record)
        if self.signed is not None:
            data["signed"] = as_json(self.signed)
        if self.refusal:
            data["refusal"] = True
        return data

    @classmethod
    def from_dict(cls, raw: Any) -> Revocation:
        if not isinstance(raw, dict) or not isinstance(raw.get("user"), str) or not raw["user"]:
            raise ValueError("a revocation needs a user")
        kind = raw.get("kind", "user")
        if kind not in ("user", *METHODS):
            raise ValueError(f"a revocation's kind is user or one of {', '.join(METHODS)}")
        credential = raw.get("credential")
        if credential is not None and not isinstance(credential, str):
            raise ValueError("a revocation's credential is an id or null")
        issuer = raw.get("issuer")
        record, signed = _statement(raw, "record"), _statement(raw, "signed")
        return cls(raw["user"], kind, credential, float(raw["revoked_at"]), issuer if isinstance(issuer, str) else None,
                   record, signed, raw.get("refusal") is True)  # fmt: skip


def pair_secret(card: str, second: str) -> str:
    """The one secret of a combined login (its verifier, its lookup KDF): the card and the PIN or
    password together, the card's length first so that no other split of the same characters matches.
    An attacker holding the row must guess both at once; neither factor alone opens it."""
    return f"{len(card)}:{card}{second}"


def method_name(method: str) -> str:
    """A login method as a sentence says it ("card and PIN" for "card+pin")."""
    if method in COMBINED:
        return "card and " + ("PIN" if COMBINED[method] == "pin" else "password")
    return method


def clean_profile(raw: Any) -> dict[str, Any]:
    """The cached part of a profile: name fields and groups (credit is never cached: offline it is unknown)."""
    raw = raw if isinstance(raw, dict) else {}
    groups = raw.get("groups", [])
    return {"full_name": str(raw.get("full_name", ""))[:256], "email": str(raw.get("email", ""))[:256],
            "groups": [str(g)[:128] for g in groups[:64]] if isinstance(groups, list) else []}  # fmt: skip


def is_revoked(user: str, credential: Credential, revocations: list[Revocation]) -> bool:
    return any(revocation.covers(user, credential) for revocation in revocations)


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
            same = ours.verifier == theirs.verifier  # the server's grant of it still holds
            credentials[credential_id] = replace(theirs, fingerprint=theirs.fingerprint or ours.fingerprint,
                                                 origin=ours.origin, grant=ours.grant if same else None,
                                                 grant_until=ours.grant_until if same else None)  # fmt: skip
    return UserEntry(local.user, synced.profile, credentials, max(local.renewed_at, synced.renewed_at),
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
