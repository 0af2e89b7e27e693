"""The credential cache at rest: STATE/login.db (SQLite), every row sealed with AES-GCM under a key of
the key file, bound to its row (kind, slot, key id) so that rows cannot be swapped or altered; the
decrypted entries live in memory, with the fingerprint index of PIN and card logins.

Rows: `("user", random slot)` holds one UserEntry; `("meta", "revocations")` the revocations;
`("meta", "sync")` the last sync's server time. Nothing in a row is readable without the key file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from spooler.login.entries import Credential, Revocation, UserEntry
from spooler.login.keys import LoginKeys
from spooler.model import SpoolerError
from spooler.schema import migrate

#: Revocations kept (the newest); the server keeps every one, so an older one comes back with a full pull.
MAX_REVOCATIONS = 10_000
#: Entries stay this long after they expired, so that a login says "expired" rather than "unknown".
KEEP_EXPIRED = 7 * 86400.0


#: login.db's migrations (spooler.schema): step N makes version N. Append a step for a new table or
#: column (e.g. persisted lockouts); never edit one that has shipped.
LOGIN_SCHEMA = [
    # version 1: the sealed rows. (Caches from before versioning have the table already.)
    """
    CREATE TABLE IF NOT EXISTS sealed (kind TEXT NOT NULL, slot TEXT NOT NULL, key_id TEXT NOT NULL,
                                       blob BLOB NOT NULL, PRIMARY KEY (kind, slot))
    """,
]


class CacheError(SpoolerError):
    """A row cannot be opened: altered, or sealed under a key the key file does not hold."""


def fingerprint(key: bytes, method: str, secret: str) -> str:
    """The keyed index of a PIN or card number (HMAC-SHA256): finds a seen credential without a scan."""
    return hmac.new(key, f"{method}\0{secret}".encode("utf-8"), hashlib.sha256).hexdigest()


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

    # -- opening -----------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, keys: LoginKeys, *, strict: bool = False) -> CredentialCache:
        """Open (create) the database and decrypt every row. A row that does not open is skipped and
        counted in `unreadable` (logged by the caller), or raises CacheError when `strict`."""
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
            if credential.fingerprint:
                self._index.setdefault(credential.fingerprint, []).append((entry.user, credential.id))

    def _unindex(self, user: str) -> None:
        for fp, owners in list(self._index.items()):
            kept = [owner for owner in owners if owner[0] != user]
            if kept:
                self._index[fp] = kept
            else:
                del self._index[fp]

    def fingerprint(self, method: str, secret: str) -> str:
        return fingerprint(self.keys.fingerprint_key, method, secret)

    def indexed(self, fp: str) -> list[tuple[str, str]]:
        return list(self._index.get(fp, []))

    # -- changes -----------------------------------------------------------------------------------

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

    def purge(self, now: float) -> list[str]:
        """Remove entries expired for longer than KEEP_EXPIRED; the users removed."""
        gone = [user for user, entry in self.entries.items() if entry.expires_at + KEEP_EXPIRED < now]
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
