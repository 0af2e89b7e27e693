"""What the offline login may believe: which cached credentials and revocations count at a login on this
device, what the central server's signatures say, and what a peer may add to the cache. Pure (no I/O,
no clock of its own): the share layer and the login service ask it.

The rules:
- a credential counts only on the devices the server allows its user (`Credential.allowed_on`);
- a credential a peer brought counts only while its issuer (the peer that signed its record) is
  enrolled here, checked at every login: removing a peer takes its entries out at once;
- with the central server's signing key pinned (`[server] signing_key`), a credential a peer brought
  counts only with the server's grant (user, credential, verifier and devices, signed by the server),
  and a revocation a peer brought is taken only with the server's signature: an enrolled spooler
  cannot make up a PIN for anyone, nor withdraw anyone's;
- a peer's credential never replaces one this spooler learned from the server itself, unless the
  server signed the newer one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from spooler.login.entries import (METHODS, Credential, Revocation, UserEntry, clean_profile, parse_devices,
                                   parse_server_time)  # fmt: skip
from spooler.login.peers import EnrolledPeers, PeerIdentity
from spooler.signing import (GRANT, PEER_RECORD, REVOCATION, SignatureError, Statement, as_json, from_json,
                             parse_public_key, public_key_text, sign, unverified_payload, verify)  # fmt: skip

#: Credentials one entry holds at most (spooler.login.entries.UserEntry.from_dict refuses more).
MAX_CREDENTIALS = 16
#: Own signed records and verified statements remembered at most (then forgotten all at once).
MAX_REMEMBERED = 20_000


class Refused(Exception):
    """A peer's record this spooler does not take; `reason` is a short phrase for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OwnRecord(Refused):
    """A record this spooler signed itself, come back through a peer: nothing to learn from it."""


class NotHere(Refused):
    """A credential the server allows on other devices, not this one: left out, without alarm."""


@dataclass(frozen=True)
class Grant:
    """The central server's signed word on one accepted login (docs/central-api.md, "Signed grants")."""

    user: str
    credential: str
    kind: str
    verifier: str
    devices: tuple[str, ...]
    issued_at: float  # server clock
    expires_at: float  # server clock
    statement: Statement


def open_grant(server_key: Ed25519PublicKey, statement: Statement, *, verified: dict[str, Any] | None = None) -> Grant:
    """The grant a statement signed by the server says (`verified`: its payload, already verified)."""
    payload = verified if verified is not None else verify(server_key, GRANT, statement)
    try:
        kind, verifier = payload["kind"], payload["verifier"]
        if kind not in METHODS or not isinstance(verifier, str) or not verifier.startswith("scrypt$"):
            raise ValueError("kind or verifier")
        issued_at = parse_server_time(payload["issued_at"], float("nan"))
        expires_at = parse_server_time(payload["expires_at"], float("nan"))
        if issued_at != issued_at or expires_at != expires_at:
            raise ValueError("times")
        return Grant(_text(payload["user"]), _text(payload["credential"]), kind, verifier,
                     parse_devices(payload["devices"]), issued_at, expires_at, statement)  # fmt: skip
    except (KeyError, TypeError, ValueError):
        raise SignatureError("the server's grant is signed but not as documented") from None


def open_server_revocation(server_key: Ed25519PublicKey, statement: Statement, *,
                           verified: dict[str, Any] | None = None) -> Revocation:  # fmt: skip
    """The revocation a statement signed by the server says (`verified`: its payload, already verified)."""
    payload = verified if verified is not None else verify(server_key, REVOCATION, statement)
    try:
        revoked_at = parse_server_time(payload["revoked_at"], float("nan"))
        if revoked_at != revoked_at:
            raise ValueError("revoked_at")
        return Revocation.from_dict(dict(payload, revoked_at=revoked_at, issuer=None, record=None, signed=None))
    except (KeyError, TypeError, ValueError):
        raise SignatureError("the server's revocation is signed but not as documented") from None


def _text(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 256:
        raise ValueError("expected a text")
    return value


@dataclass(frozen=True)
class SharedCredential:
    user: str
    profile: dict[str, Any]
    credential: Credential


class Trust:
    """The trust of one spooler: its device name, its key pair, the enrolled peers (a live object:
    `spooler peers add/remove` change what counts at the next login) and the server's signing key."""

    def __init__(self, device: str, peers: EnrolledPeers | None = None, *, identity: PeerIdentity | None = None,
                 server_key: Ed25519PublicKey | None = None) -> None:  # fmt: skip
        self.device = device
        self.peers = peers if peers is not None else EnrolledPeers([])
        self.identity = identity
        self.own_key = identity.key if identity is not None else None
        self.server_key = server_key
        self._server_key_text = public_key_text(server_key) if server_key is not None else ""
        self._signed: dict[str, Statement] = {}  # our own records, by what they say (signing is not free)
        # Statements whose signature verified, with what they say: a pull brings the same records again
        # every share_interval, and a signature check costs more than everything else about a record.
        self._verified: dict[tuple[str, Statement], dict[str, Any]] = {}

    # -- at a login ----------------------------------------------------------------------------------

    def usable(self, credential: Credential) -> bool:
        """Whether a cached credential may let its user in here (cheap: checked on every candidate)."""
        if not credential.allowed_on(self.device):
            return False
        if credential.source != "peer":
            return True
        if credential.issuer is None or not self.peers.is_enrolled(credential.issuer):
            return False
        return self.server_key is None or credential.grant is not None

    def grant_holds(self, user: str, credential: Credential) -> bool:
        """After a match: a peer's credential needs the server's valid grant when the server signs."""
        if self.server_key is None or credential.source != "peer":
            return True
        if credential.grant is None:
            return False
        try:
            grant = self._open_grant(credential.grant)
        except SignatureError:
            return False
        return _matches(grant, user, credential)

    def counting(self, revocations: Iterable[Revocation]) -> list[Revocation]:
        """The revocations that count now: the server's (from our sync, or signed by it) and those of
        peers still enrolled."""
        return [r for r in revocations
                if r.issuer is None or r.signed is not None or self.peers.is_enrolled(r.issuer)]  # fmt: skip

    def learned_grant(self, answer: Any, user: str, credential_id: str, method: str) -> Grant:
        """The grant of a login answer, checked against the pinned server key and the answer itself."""
        assert self.server_key is not None
        if not isinstance(answer, dict) or answer.get("grant") is None:
            raise SignatureError("the server's login answer has no grant")
        grant = open_grant(self.server_key, from_json(answer["grant"]))
        if (grant.user, grant.credential, grant.kind) != (user, credential_id, method):
            raise SignatureError("the server's grant is for another login")
        return grant

    # -- what this spooler shares --------------------------------------------------------------------

    def outgoing_credentials(self, entries: Iterable[UserEntry]) -> list[dict[str, str]]:
        """Signed records of the credentials peers may learn: those learned here at a login (never a
        synced user's: they belong to the device the server assigned them to; never one valid on this
        device only; with the server's key pinned, only with its grant) and those of enrolled peers,
        passed on as their issuer signed them. Never a fingerprint."""
        out: list[dict[str, str]] = []
        for entry in entries:
            for credential in entry.credentials.values():
                if credential.source == "peer":
                    if credential.record is not None and self.usable(credential):
                        out.append(as_json(credential.record))
                elif credential.origin == "login" and credential.devices not in ((), (self.device,)) \
                        and (self.server_key is None or credential.grant is not None):  # fmt: skip
                    record = self._own_credential_record(entry, credential)
                    if record is not None:
                        out.append(as_json(record))
        return out

    def outgoing_revocations(self, revocations: Iterable[Revocation]) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for revocation in revocations:
            if revocation.refusal:
                continue
            if revocation.issuer is not None and revocation.signed is None:
                if revocation.record is not None and self.peers.is_enrolled(revocation.issuer):
                    out.append(as_json(revocation.record))
                continue
            record = self._own_revocation_record(revocation)
            if record is not None:
                out.append(as_json(record))
        return out

    def _own_credential_record(self, entry: UserEntry, credential: Credential) -> Statement | None:
        if self.identity is None:
            return None
        payload = {"type": "credential", "issuer": self.own_key, "user": entry.user, "profile": entry.profile,
                   "credential": {"id": credential.id, "kind": credential.kind, "verifier": credential.verifier,
                                  "verified_at": credential.verified_at, "devices": list(credential.devices)},
                   "grant": as_json(credential.grant) if credential.grant is not None else None}  # fmt: skip
        return self._sign(payload)

    def _own_revocation_record(self, revocation: Revocation) -> Statement | None:
        if self.identity is None:
            return None
        payload = {"type": "revocation", "issuer": self.own_key, "user": revocation.user, "kind": revocation.kind,
                   "credential": revocation.credential, "revoked_at": revocation.revoked_at,
                   "signed": as_json(revocation.signed) if revocation.signed is not None else None}  # fmt: skip
        return self._sign(payload)

    def _verify(self, key: str, domain: str, statement: Statement) -> dict[str, Any]:
        """`signing.verify` of a statement by `key` (an ed25519: text), remembered once it verified."""
        memo = (domain + "\0" + key, statement)
        payload = self._verified.get(memo)
        if payload is None:
            payload = verify(parse_public_key(key), domain, statement)
            if len(self._verified) > MAX_REMEMBERED:
                self._verified.clear()
            self._verified[memo] = payload
        return payload

    def _open_grant(self, statement: Statement) -> Grant:
        assert self.server_key is not None
        return open_grant(self.server_key, statement, verified=self._verify(self._server_key_text, GRANT, statement))

    def _sign(self, payload: dict[str, Any]) -> Statement:
        assert self.identity is not None
        memo = json.dumps(payload, sort_keys=True)
        if memo not in self._signed:
            if len(self._signed) > MAX_REMEMBERED:
                self._signed.clear()
            self._signed[memo] = sign(self.identity.signing, PEER_RECORD, payload)
        return self._signed[memo]

    # -- what a peer sends ---------------------------------------------------------------------------

    def _issuer_payload(self, raw: Any) -> dict[str, Any]:
        try:
            statement = from_json(raw)
            issuer = unverified_payload(statement).get("issuer")
        except SignatureError as error:
            raise Refused(str(error)) from None
        if issuer == self.own_key:
            raise OwnRecord("signed by this spooler")
        if not isinstance(issuer, str) or not self.peers.is_enrolled(issuer):
            raise Refused("its issuer is not an enrolled peer")
        try:
            payload = self._verify(issuer, PEER_RECORD, statement)
        except SignatureError:
            raise Refused("its issuer's signature does not verify") from None
        return dict(payload, _statement=statement)

    def accept_credential(self, raw: Any, now: float) -> SharedCredential:
        """A peer's credential record as a cache credential; Refused (with the reason) if it may not count here."""
        payload = self._issuer_payload(raw)
        if payload.get("type") != "credential":
            raise Refused("not a credential record")
        try:
            user = _text(payload["user"])
            body = payload["credential"]
            credential = Credential.from_dict({"id": body["id"], "kind": body["kind"], "verifier": body["verifier"],
                                               "verified_at": float(body["verified_at"]), "devices": body["devices"],
                                               "origin": "login", "source": "peer"})  # fmt: skip
        except (KeyError, TypeError, ValueError):
            raise Refused("the record is not as documented") from None
        if not credential.allowed_on(self.device):
            raise NotHere(f"the server does not allow {user} on this device")
        grant_statement = None
        verified_at, grant_until = min(credential.verified_at, now), None
        if self.server_key is not None:
            try:
                grant = self._open_grant(from_json(payload.get("grant")))
            except SignatureError as error:
                raise Refused(f"no valid server signature ({error})") from None
            if not _matches(grant, user, credential):
                raise Refused("the server's grant is for another credential")
            if grant.expires_at <= now:
                raise Refused("the server's grant has expired")
            grant_statement, verified_at, grant_until = grant.statement, min(grant.issued_at, now), grant.expires_at
        credential = replace(credential, verified_at=verified_at, issuer=payload["issuer"],
                             record=payload["_statement"], grant=grant_statement, grant_until=grant_until)  # fmt: skip
        return SharedCredential(user, clean_profile(payload.get("profile")), credential)

    def accept_revocation(self, raw: Any, now: float) -> Revocation:
        payload = self._issuer_payload(raw)
        if payload.get("type") != "revocation":
            raise Refused("not a revocation record")
        try:
            claimed = Revocation.from_dict({key: payload.get(key) for key in ("user", "kind", "credential", "revoked_at")})
        except (KeyError, TypeError, ValueError):
            raise Refused("the record is not as documented") from None
        signed = None
        revoked_at = min(claimed.revoked_at, now)  # a peer cannot withdraw what the server grants later
        if self.server_key is not None:
            try:
                signed = from_json(payload.get("signed"))
                server = open_server_revocation(self.server_key, signed,
                                                verified=self._verify(self._server_key_text, REVOCATION, signed))
            except SignatureError as error:
                raise Refused(f"no valid server signature ({error})") from None
            if (server.user, server.kind, server.credential) != (claimed.user, claimed.kind, claimed.credential):
                raise Refused("the server's signature is for another revocation")
            revoked_at = server.revoked_at
        return replace(claimed, revoked_at=revoked_at, issuer=payload["issuer"], record=payload["_statement"],
                       signed=signed)  # fmt: skip


def _matches(grant: Grant, user: str, credential: Credential) -> bool:
    return (grant.user, grant.credential, grant.kind, grant.verifier, grant.devices) == (
        user, credential.id, credential.kind, credential.verifier, credential.devices)


def merge_shared(local: UserEntry | None, shared: SharedCredential, *, now: float,
                 usable: Callable[[Credential], bool]) -> UserEntry | None:
    """The entry after a peer's credential is taken in, or None when it changes nothing (pure).

    Per credential id: a credential learned here from the server stays, unless the peer's is newer,
    signed by the server and another verifier (the secret changed); a peer's credential is replaced by a newer one, or by any when it no longer
    counts (its issuer was removed). Our fingerprint stays as the hint."""
    incoming = shared.credential
    ours = local.credentials.get(incoming.id) if local is not None else None
    if ours is not None:
        if ours.source != "peer":
            if incoming.grant is None or incoming.verified_at <= ours.verified_at or incoming.verifier == ours.verifier:
                return None
        elif usable(ours) and incoming.verified_at <= ours.verified_at:
            return None
        if replace(ours, fingerprint=None) == incoming:
            return None
    elif local is not None and len(local.credentials) >= MAX_CREDENTIALS:
        return None
    credential = replace(incoming, fingerprint=ours.fingerprint if ours is not None else None)
    renewed_at = min(incoming.verified_at, now)
    if local is None:
        return UserEntry(shared.user, shared.profile, {credential.id: credential}, renewed_at, now, "peer")
    newer = renewed_at > local.renewed_at
    return UserEntry(local.user, shared.profile if newer else local.profile, {**local.credentials, credential.id: credential},
                     max(local.renewed_at, renewed_at), now, "peer" if newer else local.source)  # fmt: skip
