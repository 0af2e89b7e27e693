"""Logins at the device: online the central server decides and the cache learns a verifier; offline
(the server unreachable, or known to be down) the cache alone decides. Throttled per user and per
terminal; every refusal is a LoginRefused with a machine reason and a sentence for the terminal.

Secrets (PIN, card number, password) exist only in the arguments of `login` and in the request to
the server: they are never logged, stored, or put in an error.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet.defer import Deferred, DeferredSemaphore, inlineCallbacks
from twisted.logger import Logger

from spooler.central.base import CentralBackend, capabilities_of
from spooler.centralapi import LOGIN, CentralApiDown, CentralApiRefused
from spooler.config import LoginConfig
from spooler.login.cache import CredentialCache
from spooler.login.entries import METHODS, Credential, UserEntry, clean_profile, is_revoked, parse_server_time
from spooler.login.throttle import Throttle
from spooler.model import SpoolerError
from spooler.spoolfiles import RunInThread
from spooler.verifiers import check_verifier, make_verifier

log = Logger(namespace="spooler.login")

OFFLINE_NOTICE = "Offline: credit, quota, projects and print policies are not available."
#: What an offline login cannot know, by name (for the job's accounting record, beside mode "offline").
UNAVAILABLE_OFFLINE = ("credit", "quota", "projects", "policies")
MAX_SECRET = 256
MAX_USER = 256
#: Threads that check verifiers at once during a scan (scrypt releases the GIL).
SCAN_THREADS = max(1, min(4, os.cpu_count() or 1))
#: Scans at once: a burst of wrong PINs at several terminals queues up instead of starving the machine.
SCANS_AT_ONCE = 1
#: Scans waiting for their turn at most; one more is refused as "unavailable" at once.
MAX_WAITING_SCANS = 4

MESSAGES = {
    "invalid": "Login failed: the PIN, card or password is not valid.",
    "expired": "Login failed: your offline login has expired. Log in again once the print server is back.",
    "revoked": "Login failed: this card, PIN or password has been withdrawn.",
    "locked": "Too many failed attempts. Try again in {minutes} minute(s).",
    "offline-disabled": "The print server cannot be reached and offline login is switched off.",
    "unavailable": "Login is not available right now. Try again later.",
    "unsupported": "Login failed: this print server cannot check a {method}; use a card or another method.",
}


@dataclass(frozen=True)
class LoginOutcome:
    user: str
    profile: dict[str, Any]  # full_name, email, groups, credit (None offline)
    mode: str  # "online" or "offline"
    notice: str | None  # said on the terminal when offline
    valid_until: float  # when the cache entry expires (epoch seconds)


class LoginRefused(SpoolerError):
    """A login that did not succeed: `reason` for machines, `message` for the person at the device."""

    def __init__(self, reason: str, message: str | None = None, retry_after: float | None = None) -> None:
        if message is None:
            minutes = max(1, int(((retry_after or 0) + 59) // 60))
            message = MESSAGES[reason].format(minutes=minutes)
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


def _check_many(secret: str, candidates: list[tuple[str, Credential]], stop: threading.Event) -> int | None:
    """The index of the first candidate whose verifier the secret matches (runs in a thread)."""
    for index, (_, credential) in enumerate(candidates):
        if stop.is_set():
            return None
        if check_verifier(secret, credential.verifier):
            stop.set()
            return index
    return None


class LoginService:
    def __init__(self, reactor: Any, config: LoginConfig, cache: CredentialCache, *, device: str,
                 api: CentralBackend | None, run_in_thread: RunInThread,
                 server_known_down: Callable[[], bool] | None = None) -> None:  # fmt: skip
        self._reactor = reactor
        self.config = config
        self.cache = cache
        self.device = device
        self.api = api
        self._run = run_in_thread
        self._server_known_down = server_known_down or (lambda: False)
        self.throttle = Throttle(reactor, max_failures=config.max_failures, lockout=config.lockout)
        self._scans = DeferredSemaphore(SCANS_AT_ONCE)
        self.on_renewed: list[Callable[[UserEntry], None]] = []  # e.g. the push to peers
        #: Logins since the start by outcome: "online", "offline", or the refusal's reason (metrics).
        self.outcomes: collections.Counter[str] = collections.Counter()

    @property
    def validity(self) -> float:
        return self.config.validity_hours * 3600.0

    # -- the one entry point ---------------------------------------------------------------------

    def login(self, *, method: str, secret: str, user: str | None, terminal: str) -> Deferred[LoginOutcome]:
        """The outcome of a login, or a LoginRefused failure."""
        attempt = self._login(method, secret, user or None, terminal)

        def counted(result: Any) -> Any:
            outcome = result.mode if isinstance(result, LoginOutcome) else getattr(
                getattr(result, "value", None), "reason", "error")
            self.outcomes[outcome] += 1
            return result

        return attempt.addBoth(counted)

    @inlineCallbacks
    def _login(self, method: str, secret: str, user: str | None, terminal: str) -> Any:
        if method not in METHODS:
            raise LoginRefused("invalid", f"Login failed: unknown login method {method!r}.")
        if method not in capabilities_of(self.api).login_methods:
            # The server cannot check it online, so no offline entry can come from it either
            # (PaperCut cannot check a PIN): refused both ways, and said so.
            raise LoginRefused("unsupported", MESSAGES["unsupported"].format(method=method))
        if method == "password" and not user:
            raise LoginRefused("invalid", "Login failed: a password login needs the user name.")
        if not isinstance(secret, str) or not secret or len(secret) > MAX_SECRET or (user and len(user) > MAX_USER):
            raise LoginRefused("invalid")
        wait = self.throttle.locked(user, terminal)
        if wait is not None:
            log.warn("Login at {terminal} refused: locked for {wait:.0f}s more", spool_event="login_refused",
                     reason="locked", user=user, terminal=terminal, method=method, wait=wait)  # fmt: skip
            raise LoginRefused("locked", retry_after=wait)
        try:
            outcome = yield self._decide(method, secret, user, terminal)
        except LoginRefused as refused:
            if refused.reason in ("invalid", "expired", "revoked"):
                self.throttle.failed(user, terminal)
            log.warn("Login at {terminal} by {method} refused: {reason}", spool_event="login_refused",
                     reason=refused.reason, user=user, terminal=terminal, method=method)  # fmt: skip
            raise
        except Exception:  # a bug or a broken cache: the terminal says "not available", the log has the rest
            log.failure("Login at {terminal} failed", terminal=terminal, spool_event="login_error")
            raise LoginRefused("unavailable") from None
        self.throttle.succeeded(user, terminal)
        self.throttle.succeeded(outcome.user, terminal)
        log.info("Login of {user} at {terminal} by {method} ({mode})", spool_event="login_ok", user=outcome.user,
                 terminal=terminal, method=method, mode=outcome.mode, valid_until=outcome.valid_until)  # fmt: skip
        return outcome

    @inlineCallbacks
    def _decide(self, method: str, secret: str, user: str | None, terminal: str) -> Any:
        if self.api is not None and not self._server_known_down():
            body = {"device": self.device, "method": method, "secret": secret}
            if user:
                body["user"] = user
            try:
                answer = yield self.api.call("POST", "login", body, deadline=LOGIN)
            except CentralApiRefused as refused:
                if refused.status == 401:
                    raise LoginRefused("invalid") from None
                log.warn("The central server refused a login request with {status}: {detail}; checking offline",
                         spool_event="login_api_error", status=refused.status, detail=refused.message)  # fmt: skip
            except CentralApiDown as down:
                log.info("The central server did not answer a login ({detail}); checking offline",
                         spool_event="login_offline", detail=str(down))  # fmt: skip
            else:
                outcome = yield self._learn(method, secret, answer)
                return outcome
        if not self.config.offline_enabled:
            raise LoginRefused("offline-disabled")
        outcome = yield self._offline(method, secret, user)
        return outcome

    # -- online ------------------------------------------------------------------------------------

    @inlineCallbacks
    def _learn(self, method: str, secret: str, answer: Any) -> Any:
        """Cache a verifier of the secret that the server accepted, with the profile; renew the entry."""
        try:
            profile_raw = answer["user"]
            name = str(profile_raw["name"])
            credential_id = str(answer.get("credential") or method)
            verified_at = _server_time(answer, self._reactor.seconds())
        except (KeyError, TypeError, ValueError):
            log.warn("The central server's login answer is not as documented", spool_event="login_api_error")
            raise LoginRefused("unavailable") from None
        verifier = yield self._run(make_verifier, secret)
        fp = self.cache.fingerprint(method, secret) if method != "password" else None
        now = self._reactor.seconds()
        local = self.cache.entries.get(name)
        credentials = dict(local.credentials) if local is not None else {}
        credentials[credential_id] = Credential(credential_id, method, verifier, verified_at, "login", "login", fp)
        entry = UserEntry(name, clean_profile(profile_raw), credentials, now + self.validity, now, "login")
        self.cache.put(entry)
        self._renewed(entry)
        profile = dict(entry.profile, credit=profile_raw.get("credit"))
        return LoginOutcome(name, profile, "online", None, entry.expires_at)

    # -- offline -----------------------------------------------------------------------------------

    @inlineCallbacks
    def _offline(self, method: str, secret: str, user: str | None) -> Any:
        now = self._reactor.seconds()
        found = yield self._find(method, secret, user, now)
        if found is None:
            raise LoginRefused("invalid")
        name, credential = found
        entry = self.cache.entries.get(name)
        if entry is None or credential.id not in entry.credentials:
            raise LoginRefused("invalid")  # removed while the check ran
        if is_revoked(name, entry.credentials[credential.id], self.cache.revocations):
            raise LoginRefused("revoked")
        if entry.expires_at <= now:
            raise LoginRefused("expired")
        current = entry.credentials[credential.id]
        if method != "password" and current.fingerprint is None:
            current = replace(current, fingerprint=self.cache.fingerprint(method, secret))
        renewed = replace(entry, credentials={**entry.credentials, credential.id: current},
                          expires_at=now + self.validity, updated_at=now)  # fmt: skip
        self.cache.put(renewed)
        self._renewed(renewed)
        return LoginOutcome(name, dict(renewed.profile, credit=None), "offline", OFFLINE_NOTICE, renewed.expires_at)

    def _candidates(self, method: str, user: str | None, now: float) -> list[tuple[str, Credential]]:
        """Credentials to try, usable ones first (so the first match is the best one), the most
        recently used users first."""
        if user:
            entry = self.cache.entries.get(user)
            pairs = [(user, c) for c in entry.credentials.values() if c.kind == method] if entry else []
        else:
            pairs = self.cache.credentials_of(method)

        def rank(pair: tuple[str, Credential]) -> tuple[int, float]:
            entry = self.cache.entries[pair[0]]
            usable = entry.expires_at > now and not is_revoked(pair[0], pair[1], self.cache.revocations)
            return (0 if usable else 1, -entry.updated_at)

        return sorted(pairs, key=rank)

    @inlineCallbacks
    def _find(self, method: str, secret: str, user: str | None, now: float) -> Any:
        """(user, credential) whose verifier the secret matches, or None. A PIN or card seen here
        before is found by its fingerprint (one scrypt check); otherwise the verifiers are scanned
        in SCAN_THREADS threads, one scan at a time."""
        if method != "password":
            fp = self.cache.fingerprint(method, secret)
            hinted = []
            for owner, credential_id in self.cache.indexed(fp):
                entry = self.cache.entries.get(owner)
                if entry is not None and credential_id in entry.credentials and (not user or owner == user):
                    hinted.append((owner, entry.credentials[credential_id]))
            if hinted:
                match = yield self._scan(secret, hinted)
                if match is not None:
                    return match
        candidates = self._candidates(method, user, now)
        if not candidates:
            return None
        if len(self._scans.waiting) >= MAX_WAITING_SCANS:
            log.warn("Login refused: {waiting} verifier scans are waiting already", spool_event="login_busy",
                     waiting=len(self._scans.waiting))  # fmt: skip
            raise LoginRefused("unavailable")
        yield self._scans.acquire()
        try:
            match = yield self._scan(secret, candidates)
        finally:
            self._scans.release()
        return match

    @inlineCallbacks
    def _scan(self, secret: str, candidates: list[tuple[str, Credential]]) -> Any:
        stop = threading.Event()
        threads = min(SCAN_THREADS, len(candidates))
        # Interleaved slices keep the "best first" order within each thread.
        slices = [candidates[start::threads] for start in range(threads)]
        results = yield _gather([self._run(_check_many, secret, part, stop) for part in slices])
        matches = [slices[i][found] for i, found in enumerate(results) if found is not None]
        if not matches:
            return None
        return min(matches, key=candidates.index)

    def _renewed(self, entry: UserEntry) -> None:
        for listener in list(self.on_renewed):
            try:
                listener(entry)
            except Exception:  # noqa: BLE001 - a listener's bug must not fail the login
                log.failure("A login listener failed")


def _server_time(answer: dict[str, Any], default: float) -> float:
    return parse_server_time(answer.get("server_time"), default)


def _gather(deferreds: list[Deferred[Any]]) -> Deferred[list[Any]]:
    from twisted.internet.defer import gatherResults

    return gatherResults(deferreds, consumeErrors=True)
