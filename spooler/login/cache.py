"""The credential cache at rest: STATE/login.db (SQLite), every row sealed with AES-GCM under a key of
the key file, bound to its row (kind, slot, key id) so that rows cannot be swapped or altered; the
decrypted entries live in memory, with the fingerprint index of PIN and card logins.

Rows: `("user", random slot)` holds one UserEntry; `("meta", "revocations")` the revocations;
`("meta", "sync")` the last sync's server time; `("meta", "lookup")` the lookup KDF. Nothing in a
row is readable without the key file.

The index of PIN and card logins: a credential's `fingerprint` is `KDF-ID:VERIFIER-TAG:KEY`, KEY
being the HMAC (under the key file's fingerprint key) of the lookup KDF of the secret (one scrypt
with the salt that every PIN and card of this spooler share: the central server's, from the user
sync, else one made here). A fingerprint counts only while the lookup KDF and the credential's
verifier are the ones it was made with; a login still checks the verifier it points to.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from spooler.login.entries import Credential, Revocation, UserEntry
from spooler.login.keys import LoginKeys
from spooler.model import SpoolerError
from spooler.login.schema import LOGIN_SCHEMA
from spooler.schema import migrate
from spooler.verifiers import SCRYPT_N, lookup_digest, make_lookup_kdf, parse_lookup_kdf

#: Revocations kept (the newest); the server keeps every one, so an older one comes back with a full pull.
MAX_REVOCATIONS = 10_000
#: Entries stay this long after they expired, so that a login says "expired" rather than "unknown".
KEEP_EXPIRED = 7 * 86400.0


class CacheError(SpoolerError):
    """A row cannot be opened: altered, or sealed under a key the key file does not hold."""


def _tag(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _aad(kind: str, slot: str, key_id: str) -> bytes:
    return f"spooler-login-cache/v1\0{kind}\0{slot}\0{key_id}".encode()


def seal(keys: LoginKeys, kind: str, slot: str, value: Any) -> tuple[str, bytes]:
    nonce = secrets.token_bytes(12)
    plain = json.dumps(value, separators=(",", ":")).encode("utf-8")
    return keys.current, nonce + AESGCM(keys.current_key).encrypt(nonce, plain, _aad(kind, slot, keys.current))


def unseal(keys: LoginKeys, kind: str, slot: str, key_id: str, blob: bytes) -> Any:
    key = keys.keys.get(key_id)
    if key is None:
        raise CacheError(f"the cache row {kind}/{slot} is sealed under key {key_id}, which the key file does not hold")
    try:
        plain = AESGCM(key).decrypt(blob[:12], blob[12:], _aad(kind, slot, key_id))
    except (InvalidTag, ValueError):
        raise CacheError(f"the cache row {kind}/{slot} does not open: altered, or sealed under another key") from None
    return json.loads(plain)


class CredentialCache:
    """Entries by user (in memory, written through to the database), revocations, fingerprint index."""

    def __init__(self, connection: sqlite3.Connection, keys: LoginKeys) -> None:
        self._db = connection
        self.keys = keys
        self.entries: dict[str, UserEntry] = {}
        self.revocations: list[Revocation] = []
        self.sync_since: str | None = None
        self.unreadable: int = 0
        self._slots: dict[str, str] = {}
        self._index: dict[str, list[tuple[str, str]]] = {}
        self.lookup_kdf = ""
        self.lookup_source = "device"  # or "server": the salt came with the user sync

    # -- opening -----------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, keys: LoginKeys, *, strict: bool = False, lookup_cost: int = SCRYPT_N) -> CredentialCache:
        """Open (create) the database and decrypt every row. A row that does not open is skipped and
        counted in `unreadable` (logged by the caller), or raises CacheError when `strict`. A cache
        without a lookup KDF gets one of its own (scrypt N=`lookup_cost`, a random salt)."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.close(fd)
        connection = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA busy_timeout=5000")
        connection.execute("PRAGMA secure_delete=ON")  # overwritten rows leave no old ciphertext behind
        migrate(connection, LOGIN_SCHEMA, what=f"the login cache {path}")
        cache = cls(connection, keys)
        cache._load(strict)
        if not cache.lookup_kdf:
            cache.set_lookup_kdf(make_lookup_kdf(n=lookup_cost), "device")
        return cache

    def _load(self, strict: bool) -> None:
        for kind, slot, key_id, blob in self._db.execute("SELECT kind, slot, key_id, blob FROM sealed"):
            try:
                value = unseal(self.keys, kind, slot, key_id, blob)
                if kind == "user":
                    entry = UserEntry.from_dict(value)
                    self.entries[entry.user] = entry
                    self._slots[entry.user] = slot
                elif (kind, slot) == ("meta", "revocations"):
                    self.revocations = [Revocation.from_dict(item) for item in value]
                elif (kind, slot) == ("meta", "sync"):
                    self.sync_since = value.get("since")
                elif (kind, slot) == ("meta", "lookup"):
                    parse_lookup_kdf(value.get("kdf"))
                    self.lookup_kdf, self.lookup_source = value["kdf"], str(value.get("source", "device"))
            except CacheError:
                if strict:
                    raise
                self.unreadable += 1
            except (ValueError, KeyError, TypeError):
                if strict:
                    raise CacheError(f"the cache row {kind}/{slot} holds no valid entry") from None
                self.unreadable += 1
        self._reindex()

    def close(self) -> None:
        self._db.close()

    # -- the fingerprint index -----------------------------------------------------------------------

    def _reindex(self) -> None:
        self._index = {}
        for entry in self.entries.values():
            self._index_entry(entry)

    def _index_entry(self, entry: UserEntry) -> None:
        for credential in entry.credentials.values():
            if (key := self._current_key(credential)) is not None:
                self._index.setdefault(key, []).append((entry.user, credential.id))

    def _current_key(self, credential: Credential) -> str | None:
        """The index key of a credential's fingerprint, if it was made with this lookup KDF for this verifier."""
        kdf_id, _, rest = (credential.fingerprint or "").partition(":")
        verifier_tag, _, key = rest.partition(":")
        if key and kdf_id == _tag(self.lookup_kdf) and verifier_tag == _tag(credential.verifier):
            return key
        return None

    def is_indexed(self, credential: Credential) -> bool:
        return self._current_key(credential) is not None

    def lookup(self, secret: str) -> bytes:
        """The lookup KDF of a secret: one scrypt (blocking: run it in a thread)."""
        return lookup_digest(secret, self.lookup_kdf)

    def lookup_key(self, method: str, digest: bytes) -> str:
        """Where a PIN or card whose lookup KDF is `digest` sits in the index (HMAC-SHA256)."""
        return hmac.new(self.keys.fingerprint_key, method.encode("ascii") + b"\0" + digest, hashlib.sha256).hexdigest()

    def fingerprint(self, method: str, digest: bytes, verifier: str) -> str:
        """The fingerprint to store with a credential of this verifier whose lookup KDF is `digest`."""
        return f"{_tag(self.lookup_kdf)}:{_tag(verifier)}:{self.lookup_key(method, digest)}"

    def set_lookup_kdf(self, kdf: str, source: str) -> bool:
        """Use this lookup KDF from now on (ValueError if it is not one); True if it changed. The
        fingerprints made with the previous one stop counting (their logins are found by a scan
        until they log in again, or until the next sync brings theirs)."""
        parse_lookup_kdf(kdf)
        if (kdf, source) == (self.lookup_kdf, self.lookup_source):
            return False
        self.lookup_kdf, self.lookup_source = kdf, source
        self._put_meta("lookup", {"kdf": kdf, "source": source})
        self._reindex()
        return True

    def _unindex(self, user: str) -> None:
        for fp, owners in list(self._index.items()):
            kept = [owner for owner in owners if owner[0] != user]
            if kept:
                self._index[fp] = kept
            else:
                del self._index[fp]

    def indexed(self, key: str) -> list[tuple[str, str]]:
        return list(self._index.get(key, []))

    # -- changes -----------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Many changes in one durable commit (a peer's pull brings up to a thousand entries at once)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def put(self, entry: UserEntry) -> None:
        slot = self._slots.get(entry.user) or secrets.token_hex(12)
        key_id, blob = seal(self.keys, "user", slot, entry.to_dict())
        self._db.execute("INSERT OR REPLACE INTO sealed (kind, slot, key_id, blob) VALUES ('user', ?, ?, ?)",
                         (slot, key_id, blob))  # fmt: skip
        self._slots[entry.user] = slot
        self._unindex(entry.user)
        self.entries[entry.user] = entry
        self._index_entry(entry)

    def remove(self, user: str) -> None:
        slot = self._slots.pop(user, None)
        if slot is not None:
            self._db.execute("DELETE FROM sealed WHERE kind = 'user' AND slot = ?", (slot,))
        self._unindex(user)
        self.entries.pop(user, None)

    def add_revocations(self, revocations: list[Revocation]) -> int:
        """Store revocations not yet known (applying one twice changes nothing); how many were new."""
        known = set(self.revocations)
        new = [revocation for revocation in revocations if revocation not in known]
        if new:
            self.revocations = sorted(self.revocations + new, key=lambda r: r.revoked_at)[-MAX_REVOCATIONS:]
            self._put_meta("revocations", [r.to_dict() for r in self.revocations])
        return len(new)

    def set_sync_since(self, since: str) -> None:
        self.sync_since = since
        self._put_meta("sync", {"since": since})

    def _put_meta(self, slot: str, value: Any) -> None:
        key_id, blob = seal(self.keys, "meta", slot, value)
        self._db.execute("INSERT OR REPLACE INTO sealed (kind, slot, key_id, blob) VALUES ('meta', ?, ?, ?)",
                         (slot, key_id, blob))  # fmt: skip

    def purge(self, now: float, validity: float) -> list[str]:
        """Remove entries expired (under `validity`, the setting of now) for longer than KEEP_EXPIRED;
        the users removed."""
        gone = [user for user, entry in self.entries.items() if entry.valid_until(validity) + KEEP_EXPIRED < now]
        for user in gone:
            self.remove(user)
        return gone

    # -- key rotation ------------------------------------------------------------------------------

    def rotate(self) -> str:
        """Re-encrypt every row under a new key, crash-safely: (1) the key file gets the new key
        beside the old ones; (2) one transaction re-seals every row; (3) the key file keeps only the
        new key. A crash after (1) or (2) leaves rows that open with a key the file holds. The
        fingerprint key is replaced too, so the fingerprints go (logins rebuild them). The new key id."""
        new_keys = self.keys.with_new_key()
        new_keys.save()
        self.keys = new_keys
        entries = {user: replace(entry, credentials={cid: replace(c, fingerprint=None)
                                                     for cid, c in entry.credentials.items()})
                   for user, entry in self.entries.items()}  # fmt: skip
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM sealed")
            self._slots = {}
            for entry in entries.values():
                self.put(entry)
            self._put_meta("revocations", [r.to_dict() for r in self.revocations])
            if self.sync_since is not None:
                self._put_meta("sync", {"since": self.sync_since})
            self._put_meta("lookup", {"kdf": self.lookup_kdf, "source": self.lookup_source})
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.keys = new_keys.only_current()
        self.keys.save()
        return self.keys.current

    # -- reading -----------------------------------------------------------------------------------

    def credentials_of(self, method: str) -> list[tuple[str, Credential]]:
        return [(entry.user, credential) for entry in self.entries.values()
                for credential in entry.credentials.values() if credential.kind == method]  # fmt: skip
