"""User sync: pulls the users the central server assigns to this device (up to 100, verifiers only)
and the revocations into the credential cache, on demand (`spooler users sync`) and on a schedule.

When the server sends a lookup KDF (`lookup_kdf`) and, with each PIN and card, its `lookup` (that
KDF of the secret), the synced credentials enter the cache's keyed index: a PIN typed without a user
name then costs one scrypt, not a scan of every synced verifier."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet.defer import DeferredLock, inlineCallbacks
from twisted.logger import Logger

from spooler.centralapi import REVOCATIONS, USERS, CentralApi
from spooler.login.cache import CredentialCache
from spooler.login.entries import (Credential, Revocation, UserEntry, apply_sync, clean_profile, parse_devices,
                                   parse_server_time)  # fmt: skip
from spooler.login.trust import Trust, open_server_revocation
from spooler.model import SpoolerError
from spooler.signing import SignatureError, from_json

log = Logger(namespace="spooler.login.sync")

MAX_SYNCED_USERS = 100
MAX_PER_KIND = 3


class SyncError(SpoolerError):
    """The server's answer cannot be used (the message says why)."""


#: (method, lookup digest, verifier) -> the fingerprint to store (CredentialCache.fingerprint).
Fingerprinter = Callable[[str, bytes, str], str]


def synced_entry(raw: Any, *, verified_at: float, now: float, device: str,
                 fingerprint: Fingerprinter | None = None) -> UserEntry:  # fmt: skip
    """A user of a `devices/{device}/users` answer as a cache entry (pure), with the devices the server
    allows the user on (this device, when the server does not say). With `fingerprint`, a PIN or card
    that comes with its `lookup` gets its fingerprint (an unusable lookup is ignored)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise SyncError("a synced user has no name")
    try:
        devices = parse_devices(raw["devices"]) if "devices" in raw else (device,)
    except ValueError as error:
        raise SyncError(f"the devices of {raw['name']!r}: {error}") from None
    credentials: dict[str, Credential] = {}
    for kind, items in (("card", raw.get("cards") or []), ("pin", raw.get("pins") or [])):
        if not isinstance(items, list):
            raise SyncError(f"the {kind}s of {raw['name']!r} are not a list")
        for item in items[:MAX_PER_KIND]:
            credential = _credential(item, kind, verified_at, devices, fingerprint)
            credentials[credential.id] = credential
    if raw.get("password") is not None:
        credential = _credential(raw["password"], "password", verified_at, devices)
        credentials[credential.id] = credential
    return UserEntry(raw["name"], clean_profile(raw), credentials, now, now, "sync")


def _credential(item: Any, kind: str, verified_at: float, devices: tuple[str, ...],
                fingerprint: Fingerprinter | None = None) -> Credential:  # fmt: skip
    if not isinstance(item, dict) or not isinstance(item.get("verifier"), str) \
            or not item["verifier"].startswith("scrypt$") or not isinstance(item.get("id"), str):  # fmt: skip
        raise SyncError(f"a synced {kind} is not an id with an scrypt verifier")
    fp = None
    if fingerprint is not None and isinstance(item.get("lookup"), str):
        try:
            digest = base64.b64decode(item["lookup"], validate=True)
        except binascii.Error:
            digest = b""
        if len(digest) == 32:
            fp = fingerprint(kind, digest, item["verifier"])
    return Credential(item["id"], kind, item["verifier"], verified_at, origin="sync", source="sync", fingerprint=fp,
                      devices=devices)  # fmt: skip


def assigned_users(answer: dict[str, Any]) -> tuple[int, bool]:
    """How many users the server assigns to this device (its "total", else what it sent), and whether
    that is only a lower bound (it said "truncated" without a total)."""
    sent = len(answer["users"])
    total = answer.get("total")
    if isinstance(total, int) and not isinstance(total, bool) and total >= sent:
        return total, False
    if answer.get("truncated"):
        return sent + 1, True
    return sent, False


class UserSync:
    def __init__(self, reactor: Any, cache: CredentialCache, api: CentralApi, *, device: str,
                 validity: float, trust: Trust | None = None) -> None:  # fmt: skip
        self._reactor = reactor
        self.trust = trust
        self.cache = cache
        self.api = api
        self.device = device
        self.validity = validity
        self._lock = DeferredLock()
        self.last: dict[str, Any] | None = None
        self.on_revocations: list[Callable[[list[Revocation]], None]] = []  # e.g. the push to peers

    def sync(self) -> Any:
        """A Deferred summary {"users", "removed", "revocations", "truncated"}; one sync at a time."""
        return self._lock.run(self._sync)

    @inlineCallbacks
    def _sync(self) -> Any:
        answer = yield self.api.call("GET", ("devices", self.device, "users"), deadline=USERS)
        if not isinstance(answer, dict) or not isinstance(answer.get("users"), list):
            raise SyncError("the users answer has no \"users\" list")
        now = self._reactor.seconds()
        verified_at = parse_server_time(answer.get("server_time"), now)
        fingerprint = self._lookup_kdf(answer.get("lookup_kdf"))
        listed: dict[str, UserEntry] = {}
        total, at_least = assigned_users(answer)
        for raw in answer["users"][:MAX_SYNCED_USERS]:
            entry = synced_entry(raw, verified_at=verified_at, now=now, device=self.device,
                                 fingerprint=fingerprint)  # fmt: skip
            listed[entry.user] = entry
        removed = 0
        for name, local in list(self.cache.entries.items()):
            if name in listed or not any(c.origin == "sync" for c in local.credentials.values()):
                continue
            kept = {cid: c for cid, c in local.credentials.items() if c.origin != "sync"}
            removed += 1
            if kept:
                self.cache.put(UserEntry(name, local.profile, kept, local.renewed_at, now, local.source))
            else:
                self.cache.remove(name)
        for name, entry in listed.items():
            self.cache.put(apply_sync(self.cache.entries.get(name), entry))
        new_revocations = yield self.pull_revocations()
        self.cache.purge(now, self.validity)
        truncated = bool(answer.get("truncated")) or total > len(listed)
        self.last = {"users": len(listed), "removed": removed, "revocations": new_revocations,
                     "truncated": truncated, "assigned": total, "at": now}  # fmt: skip
        if truncated:
            log.warn("User sync truncated: synced {users} of {of} users assigned to this device (at most "
                     f"{MAX_SYNCED_USERS} are kept); the others cannot log in offline here",
                     spool_event="users_synced", of=f"more than {total - 1}" if at_least else total, **self.last)
        else:
            log.info("User sync: {users} users, {removed} no longer listed, {revocations} new revocations",
                     spool_event="users_synced", **self.last)  # fmt: skip
        return self.last

    def _lookup_kdf(self, kdf: Any) -> Fingerprinter | None:
        """Adopt the server's lookup KDF; how to fingerprint its lookups (None: it sent none usable)."""
        if kdf is None:
            return None
        try:
            if self.cache.set_lookup_kdf(kdf, "server"):
                log.info("The user sync brought a new lookup KDF: PINs and cards are indexed anew",
                         spool_event="login_lookup_kdf")  # fmt: skip
        except ValueError as error:
            log.warn("The server's lookup KDF is not usable ({detail}); synced PINs and cards are found by a scan",
                     spool_event="login_lookup_kdf_refused", detail=str(error))  # fmt: skip
            return None
        return self.cache.fingerprint

    @inlineCallbacks
    def pull_revocations(self) -> Any:
        query = {"since": self.cache.sync_since} if self.cache.sync_since else None
        answer = yield self.api.call("GET", "revocations", deadline=REVOCATIONS, query=query)
        if not isinstance(answer, dict) or not isinstance(answer.get("revocations"), list):
            raise SyncError("the revocations answer has no \"revocations\" list")
        revocations = []
        for raw in answer["revocations"]:
            try:
                revoked_at = parse_server_time(raw.get("revoked_at"), float("nan"))
                if revoked_at != revoked_at:
                    raise ValueError("no revoked_at")
                revocation = Revocation.from_dict({"user": raw.get("user"), "kind": raw.get("kind", "user"),
                                                   "credential": raw.get("credential"), "revoked_at": revoked_at})
                revocations.append(self._with_signature(revocation, raw.get("signed")))
            except (ValueError, TypeError, AttributeError):
                log.warn("A revocation from the server is not usable; skipped", spool_event="revocation_skipped")
        known = set(self.cache.revocations)
        new = self.cache.add_revocations(revocations)
        if new:
            fresh = [revocation for revocation in self.cache.revocations if revocation not in known]
            for listener in list(self.on_revocations):
                try:
                    listener(fresh)
                except Exception:  # noqa: BLE001 - a listener's bug must not fail the sync
                    log.failure("A revocation listener failed")
        if isinstance(answer.get("server_time"), str):
            self.cache.set_sync_since(answer["server_time"])
        return new

    def _with_signature(self, revocation: Revocation, signed: Any) -> Revocation:
        """The revocation with the server's signature kept (so that peers take it when they require
        one), if the server signed it and the signature verifies under the pinned key."""
        if self.trust is None or self.trust.server_key is None or signed is None:
            return revocation
        try:
            statement = from_json(signed)
            server = open_server_revocation(self.trust.server_key, statement)
        except SignatureError as error:
            log.warn("A revocation from the server has no valid signature ({detail}); applied here, not shared",
                     spool_event="revocation_unsigned", detail=str(error))  # fmt: skip
            return revocation
        if (server.user, server.kind, server.credential) != (revocation.user, revocation.kind, revocation.credential):
            return revocation
        return replace(revocation, revoked_at=server.revoked_at, signed=statement)

    @inlineCallbacks
    def scheduled(self) -> Any:
        """The timer's call: a failure is logged, never raised (the next run tries again)."""
        try:
            yield self.sync()
        except Exception as error:  # noqa: BLE001
            log.warn("User sync failed: {detail}", spool_event="users_sync_failed", detail=str(error))
