"""The login cache's key file (STATE/keys/login.key, mode 0600): the AES-GCM keys by id, the current one,
and the HMAC key of credential fingerprints; created on first use, replaced atomically."""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from spooler.model import SpoolerError
from spooler.store.spoolfiles import write_private_file

KEY_BYTES = 32


class KeyFileError(SpoolerError):
    """The key file is missing where it must exist, unreadable, or not a key file."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise KeyFileError(f"{what} is not base64 text")
    try:
        value = base64.b64decode(text, validate=True)
    except ValueError:
        raise KeyFileError(f"{what} is not base64 text") from None
    if len(value) != KEY_BYTES:
        raise KeyFileError(f"{what} is not a {KEY_BYTES}-byte key")
    return value


@dataclass
class LoginKeys:
    """Every cache key still in use (a rotation cut short leaves two) and which one encrypts new rows."""

    current: str
    keys: dict[str, bytes]
    fingerprint_key: bytes
    path: Path | None = field(default=None, compare=False)

    @classmethod
    def generate(cls, path: Path | None = None) -> LoginKeys:
        key_id = "k" + secrets.token_hex(4)
        return cls(key_id, {key_id: secrets.token_bytes(KEY_BYTES)}, secrets.token_bytes(KEY_BYTES), path)

    @classmethod
    def load(cls, path: Path) -> LoginKeys:
        try:
            raw = json.loads(path.read_text(encoding="ascii"))
        except FileNotFoundError:
            raise
        except (OSError, ValueError, UnicodeDecodeError) as error:
            raise KeyFileError(f"cannot read the key file {path}: {error}") from None
        if not isinstance(raw, dict) or raw.get("version") != 1 or not isinstance(raw.get("keys"), dict):
            raise KeyFileError(f"{path} is not a login key file")
        keys = {str(key_id): _unb64(value, f"{path}: key {key_id}") for key_id, value in raw["keys"].items()}
        current = raw.get("current")
        if current not in keys:
            raise KeyFileError(f"{path}: the current key {current!r} is not in the file")
        return cls(str(current), keys, _unb64(raw.get("fingerprint_key"), f"{path}: fingerprint_key"), path)

    @classmethod
    def open_or_create(cls, path: Path) -> LoginKeys:
        """The key file at `path`; a new one (and its 0700 folder) the first time."""
        try:
            keys = cls.load(path)
        except FileNotFoundError:
            pass
        else:
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)  # readable by the spooler's user only, whatever put it there
            return keys
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        keys = cls.generate(path)
        keys.save()
        return keys

    def save(self, path: Path | None = None) -> None:
        """Write the file atomically: a 0600 temporary file, fsync, rename, fsync of the folder."""
        path = path or self.path
        assert path is not None
        body = json.dumps({"version": 1, "current": self.current,
                           "keys": {key_id: _b64(key) for key_id, key in self.keys.items()},
                           "fingerprint_key": _b64(self.fingerprint_key)}, indent=1)  # fmt: skip
        write_private_file(path, body.encode("ascii"))
        self.path = path

    @property
    def current_key(self) -> bytes:
        return self.keys[self.current]

    def with_new_key(self) -> LoginKeys:
        """The keys a rotation moves to: a new current key (the old ones kept until the rows are
        re-encrypted) and a new fingerprint key."""
        key_id = "k" + secrets.token_hex(4)
        while key_id in self.keys:
            key_id = "k" + secrets.token_hex(4)
        return LoginKeys(key_id, {**self.keys, key_id: secrets.token_bytes(KEY_BYTES)},
                         secrets.token_bytes(KEY_BYTES), self.path)  # fmt: skip

    def only_current(self) -> LoginKeys:
        return LoginKeys(self.current, {self.current: self.current_key}, self.fingerprint_key, self.path)
