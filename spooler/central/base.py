"""What a central backend can do (capability flags), the one interface every backend offers, and how
its secrets are read (from a file or an environment variable named in the configuration, never
from the configuration itself, never logged, shown masked).

Every backend speaks the generic API's calls (docs/central-api.md: `POST login`,
`GET devices/{device}/users`, `GET revocations`, `POST accounting`, `GET health`) and answers in its
format, so the login service, the user sync and the accounting outbox are the same for every kind;
a product backend (PaperCut, MyQ) translates them into the product's documented calls and refuses
with `Unsupported` what the product cannot do.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from spooler.centralapi import CentralApiError, Deadline
from spooler.model import SpoolerError

KINDS = ("generic", "papercut", "myq")


class Unsupported(CentralApiError):
    """The configured product cannot do this (the message says what and why)."""


class SecretError(SpoolerError):
    """A secret named in the configuration cannot be read."""


@dataclass(frozen=True)
class Capabilities:
    """What a kind of central server can do for the spooler (shown by `status`, `server check`, README)."""

    login_methods: frozenset[str]  # of spooler.login.entries.METHODS: the ones the server can check online
    credential_presync: bool  # can pre-load the offline cache with credentials (verifiers) before a login
    revocation_feed: bool  # tells the spooler which users and credentials to stop accepting offline
    accounting_import: str  # "idempotent", "not idempotent" (an ambiguous failure stays in doubt), "none"
    health: bool  # has a health call of its own (otherwise a read call stands in)
    limits: tuple[str, ...] = ()  # what it cannot do, in words, for the admin

    def as_dict(self) -> dict[str, Any]:
        return {"login_methods": sorted(self.login_methods), "credential_presync": self.credential_presync,
                "revocation_feed": self.revocation_feed, "accounting_import": self.accounting_import,
                "health": self.health, "limits": list(self.limits)}  # fmt: skip


GENERIC = Capabilities(frozenset({"pin", "card", "password"}), True, True, "idempotent", True,
                       ("no card and PIN or card and password logins: the generic API checks one secret per login",))


class CentralBackend(Protocol):
    """The central server's channel, whatever the product (spooler.centralapi.CentralApi is "generic")."""

    kind: str
    capabilities: Capabilities

    def call(self, method: str, path: str | tuple[str, ...], body: Any = None, *, deadline: Deadline,
             query: dict[str, str] | None = None) -> Deferred[Any]:  # fmt: skip
        """One call of the generic API, answered in its format (docs/central-api.md)."""
        ...


def capabilities_of(backend: Any) -> Capabilities:
    """The backend's capabilities (the generic API client, and test doubles of it, can do everything)."""
    return getattr(backend, "capabilities", GENERIC)


def read_secret(key: str, *, file: Path | None, env: str | None) -> str:
    """The secret from `file` (first line, whitespace stripped) or the environment variable `env`.
    A file others can read is refused, as ssh does with a private key."""
    if file is not None:
        try:
            mode = file.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise SecretError(f"{key}: {file} can be read by others (mode {stat.S_IMODE(mode):o}); chmod 600 it")
            text = file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise SecretError(f"{key}: cannot read {file}: {error.strerror}") from None
    elif env is not None:
        text = os.environ.get(env, "").strip()
        if not text:
            raise SecretError(f"{key}: the environment variable {env} is not set")
    else:
        raise SecretError(f"{key}: name a file or an environment variable that holds it")
    if not text or len(text) > 4096:
        raise SecretError(f"{key}: the secret is empty or longer than 4096 characters")
    return text


def mask(secret: str) -> str:
    """A secret as `server check` and logs may show it: its length and last two characters at most."""
    if len(secret) < 12:
        return f"({len(secret)} characters)"
    return f"…{secret[-2:]} ({len(secret)} characters)"
