"""The reference server's user directory: loaded from a JSON file of plain secrets, kept as scrypt verifiers.

The users file is the server's own database stand-in, the only place plain secrets exist. At start
every password, PIN and card number is turned into a verifier (`spooler.verifiers.make_verifier`)
and the secret is dropped; a PIN or card login without a user name finds its candidates through an
HMAC fingerprint keyed with a random key that lives in memory only, then checks the verifier.

Each PIN and card also gets its *lookup*: the lookup KDF of the directory (scrypt with one salt for
all of them, `lookup_kdf`) of the secret, sent with the user sync so that a spooler can index the
PINs and cards it never saw typed (spooler.login.cache), as a server computes it when a PIN is set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spooler.verifiers import SCRYPT_N, check_verifier, lookup_digest, make_lookup_kdf, make_verifier

MAX_USERS_PER_DEVICE = 100
MAX_CARDS = 3
MAX_PINS = 3
METHODS = ("pin", "card", "password")
REVOCATION_KINDS = ("user", "card", "pin", "password")


class UsersFileError(ValueError):
    """The users file cannot be used (the message says where and why)."""


@dataclass(frozen=True)
class Credential:
    id: str  # "card-1", "pin-2", "password": stable within a users file, named by revocations
    kind: str
    verifier: str
    lookup: str | None = None  # base64 of the directory's lookup KDF of the secret (PINs and cards)

    def as_dict(self) -> dict[str, str]:
        shown = {"id": self.id, "verifier": self.verifier}
        if self.lookup is not None:
            shown["lookup"] = self.lookup
        return shown


@dataclass
class User:
    name: str
    full_name: str = ""
    email: str = ""
    groups: list[str] = field(default_factory=list)
    credit: float | None = None
    devices: list[str] = field(default_factory=list)  # empty: every device
    credentials: list[Credential] = field(default_factory=list)

    def profile(self) -> dict[str, Any]:
        return {"name": self.name, "full_name": self.full_name, "email": self.email, "groups": list(self.groups),
                "credit": self.credit}  # fmt: skip

    def allowed_on(self, device: str) -> bool:
        return not self.devices or device in self.devices

    def of_kind(self, kind: str) -> list[Credential]:
        return [credential for credential in self.credentials if credential.kind == kind]


class UserDirectory:
    """Users by name, their verifiers, and the fingerprint index for PIN and card logins."""

    def __init__(self, users: list[User], fingerprints: dict[tuple[str, str], list[tuple[str, str]]],
                 key: bytes, lookup_kdf: str = "") -> None:  # fmt: skip
        self.users = {user.name: user for user in users}
        self._fingerprints = fingerprints
        self._key = key
        self.lookup_kdf = lookup_kdf

    @classmethod
    def from_mapping(
        cls, raw: Any, *, cost: int = SCRYPT_N, source: str = "users"
    ) -> tuple[UserDirectory, list[dict[str, Any]]]:
        """The directory and the revocations listed in the file (`{"users": [...], "revocations": [...]}`)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("users"), list):
            raise UsersFileError(f"{source}: expected an object with a \"users\" list")
        key = secrets.token_bytes(32)
        lookup_kdf = make_lookup_kdf(n=cost)
        users: list[User] = []
        fingerprints: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for index, entry in enumerate(raw["users"]):
            where = f"{source}: users[{index}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
                raise UsersFileError(f"{where}: each user needs a \"name\"")
            name = entry["name"]
            if any(user.name == name for user in users):
                raise UsersFileError(f"{where}: the user {name!r} is listed twice")
            credit = entry.get("credit")
            if credit is not None and (isinstance(credit, bool) or not isinstance(credit, (int, float))):
                raise UsersFileError(f"{where}: \"credit\" must be a number or null")
            user = User(name=name, full_name=str(entry.get("full_name", "")), email=str(entry.get("email", "")),
                        groups=_strings(entry.get("groups", []), f"{where}.groups"),
                        credit=None if credit is None else float(credit),
                        devices=_strings(entry.get("devices", []), f"{where}.devices"))  # fmt: skip
            for kind, plural, limit in (("card", "cards", MAX_CARDS), ("pin", "pins", MAX_PINS)):
                values = _strings(entry.get(plural, []), f"{where}.{plural}")
                if len(values) > limit:
                    raise UsersFileError(f"{where}: at most {limit} {plural} per user")
                for number, secret in enumerate(values, start=1):
                    lookup = base64.b64encode(lookup_digest(secret, lookup_kdf)).decode("ascii")
                    credential = Credential(f"{kind}-{number}", kind, make_verifier(secret, n=cost), lookup)
                    user.credentials.append(credential)
                    fingerprints.setdefault((kind, _fingerprint(key, secret)), []).append((name, credential.id))
            if (password := entry.get("password")) is not None:
                if not isinstance(password, str) or not password:
                    raise UsersFileError(f"{where}: \"password\" must be a non-empty text")
                user.credentials.append(Credential("password", "password", make_verifier(password, n=cost)))
            users.append(user)
        revocations = raw.get("revocations", [])
        if not isinstance(revocations, list):
            raise UsersFileError(f"{source}: \"revocations\" must be a list")
        return cls(users, fingerprints, key, lookup_kdf), revocations

    @classmethod
    def load(cls, path: Path, *, cost: int = SCRYPT_N) -> tuple[UserDirectory, list[dict[str, Any]]]:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise UsersFileError(f"cannot read {path}: {error.strerror or error}") from None
        except ValueError as error:
            raise UsersFileError(f"{path} is not valid JSON: {error}") from None
        return cls.from_mapping(raw, cost=cost, source=str(path))

    def candidates(self, method: str, secret: str, user: str | None) -> list[tuple[User, Credential]]:
        """The (user, credential) pairs whose verifier the secret matches (checked with scrypt)."""
        if method == "password":
            found = self.users.get(user or "")
            pairs = [(found, c) for c in found.of_kind("password")] if found is not None else []
        else:
            pairs = []
            for name, credential_id in self._fingerprints.get((method, _fingerprint(self._key, secret)), []):
                if user is not None and name != user:
                    continue
                owner = self.users[name]
                pairs += [(owner, c) for c in owner.credentials if c.id == credential_id]
        return [(owner, credential) for owner, credential in pairs if check_verifier(secret, credential.verifier)]

    def for_device(self, device: str) -> list[User]:
        return [user for user in self.users.values() if user.allowed_on(device)]


def _fingerprint(key: bytes, secret: str) -> str:
    return hmac.new(key, secret.encode("utf-8"), hashlib.sha256).hexdigest()


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise UsersFileError(f"{where}: expected a list of texts")
    return list(value)
