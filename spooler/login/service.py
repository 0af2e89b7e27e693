"""Logins at the device: online the central server decides and the cache learns a verifier; offline
(the server unreachable, or known to be down) the cache alone decides. Every refusal is a
LoginRefused with a machine reason and a sentence for the terminal.

Guessing is bounded by failure budgets (spooler.login.budget), charged before a secret is checked:
per terminal, per user for a login that names one, and per device for every PIN or card login (one
that names no user can only be counted by the device as a whole; one that names a user is counted
there too, or guessers would name each user in turn). A success gives back only its
own charge; a password login's success also clears its user's count.

Finding the credential: a password is checked against its user's one verifier (or a dummy one of the
same cost, so that a user who does not exist costs the same scrypt); a PIN or card costs one scrypt
of the lookup KDF, looked up in the cache's keyed index, and the verifier found is checked. Only
credentials not in the index (learned from a peer, or before the lookup KDF changed) are scanned.

Combined logins (`card+pin`, `card+password`: a card and its PIN or password together) are checked
online by the server with both factors; offline, the cache holds one verifier and one index key of
the pair (spooler.login.entries.pair_secret), so the card alone or the PIN alone never matches it.
They name no user, so a wrong second factor is charged to the terminal and to the device's count of
that method, as a wrong PIN is.

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
from spooler.login.budget import BudgetPolicy, Charge, FailureBudgets
from spooler.login.cache import CredentialCache
from spooler.login.entries import (COMBINED, METHODS, Credential, Revocation, UserEntry, clean_profile, is_revoked,
                                   method_name, pair_secret, parse_devices, parse_server_time)  # fmt: skip
from spooler.login.trust import Trust
from spooler.model import SpoolerError
from spooler.signing import SignatureError
from spooler.store.spoolfiles import RunInThread
from spooler.verifiers import check_verifier, dummy_verifier, make_verifier, verifier_parameters

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
                 server_known_down: Callable[[], bool] | None = None,
                 budgets: FailureBudgets | None = None, trust: Trust | None = None) -> None:  # fmt: skip
        """`budgets`: where failures are counted (STATE/login.db in the daemon; in memory if None);
        `trust`: what counts here (this device, the enrolled peers, the server's signing key)."""
        self._reactor = reactor
        self.reconfigure(config)
        self.cache = cache
        self.device = device
        self.api = api
        self._run = run_in_thread
        self._server_known_down = server_known_down or (lambda: False)
        self.trust = trust if trust is not None else Trust(device)
        self.budgets = budgets or FailureBudgets.open(":memory:", reactor)
        self._dummies: dict[tuple[int, int, int], str] = {}
        self._scans = DeferredSemaphore(SCANS_AT_ONCE)
        self.on_renewed: list[Callable[[UserEntry], None]] = []  # e.g. the push to peers
        #: Logins since the start by outcome: "online", "offline", or the refusal's reason (metrics).
        self.outcomes: collections.Counter[str] = collections.Counter()

    def reconfigure(self, config: LoginConfig) -> None:
        """The [login] settings and the failure budgets' policies made of them (at start, and when a
        reload changes them: the counts so far are kept)."""
        self.config = config
        self.user_policy = BudgetPolicy(config.max_failures, config.lockout, max(config.lockout, config.max_lockout))
        self.device_policy = BudgetPolicy(config.device_max_failures, config.lockout,
                                          max(config.lockout, config.max_lockout))  # fmt: skip

    @property
    def validity(self) -> float:
        return self.config.validity_hours * 3600.0

    # -- the one entry point ---------------------------------------------------------------------

    def login(self, *, method: str, secret: str, user: str | None, terminal: str,
              card: str | None = None) -> Deferred[LoginOutcome]:  # fmt: skip
        """The outcome of a login, or a LoginRefused failure. A combined method (`card+pin`,
        `card+password`) takes the card in `card` and the PIN or password in `secret`, and no user."""
        attempt = self._login(method, secret, user or None, terminal, card)

        def counted(result: Any) -> Any:
            outcome = result.mode if isinstance(result, LoginOutcome) else getattr(
                getattr(result, "value", None), "reason", "error")
            self.outcomes[outcome] += 1
            return result

        return attempt.addBoth(counted)

    def scopes(self, method: str, user: str | None, terminal: str) -> list[tuple[str, BudgetPolicy]]:
        """The failure budgets an attempt is charged to: its terminal; its user if it names one; and
        for a PIN or card the device (per method: guessing PINs does not lock card logins), also when
        a user is named, or naming each user in turn would give every user's budget to PIN guesses."""
        scopes = [(f"terminal:{terminal}", self.user_policy)]
        if user:
            scopes.append((f"user:{user}", self.user_policy))
        if method != "password":
            scopes.append((f"device:{method}", self.device_policy))
        return scopes

    def methods(self) -> list[str]:
        """The login methods a terminal may offer: those the configured server can check."""
        return [method for method in METHODS if method in capabilities_of(self.api).login_methods]

    @inlineCallbacks
    def _login(self, method: str, secret: str, user: str | None, terminal: str, card: str | None) -> Any:
        if method not in METHODS:
            raise LoginRefused("invalid", f"Login failed: unknown login method {method!r}.")
        if method not in capabilities_of(self.api).login_methods:
            # The server cannot check it online, so no offline entry can come from it either
            # (PaperCut cannot check a PIN): refused both ways, and said so.
            raise LoginRefused("unsupported", MESSAGES["unsupported"].format(method=method_name(method)))
        if method == "password" and not user:
            raise LoginRefused("invalid", "Login failed: a password login needs the user name.")
        if method in COMBINED:
            if not isinstance(card, str) or not card or len(card) > MAX_SECRET:
                raise LoginRefused("invalid", f"Login failed: a {method_name(method)} login needs the card too.")
            if user:
                raise LoginRefused("invalid", f"Login failed: a {method_name(method)} login names no user.")
        elif card is not None:
            raise LoginRefused("invalid", "Login failed: only a card and PIN or card and password login takes a card.")
        if not isinstance(secret, str) or not secret or len(secret) > MAX_SECRET or (user and len(user) > MAX_USER):
            raise LoginRefused("invalid")
        scopes = self.scopes(method, user, terminal)
        waits = [wait for scope, policy in scopes if (wait := self.budgets.wait(scope, policy)) is not None]
        if waits:
            log.warn("Login at {terminal} refused: locked for {wait:.0f}s more", spool_event="login_refused",
                     reason="locked", user=user, terminal=terminal, method=method, wait=max(waits))  # fmt: skip
            raise LoginRefused("locked", retry_after=max(waits))
        charges = [self.budgets.charge(scope, policy) for scope, policy in scopes]
        try:
            outcome = yield self._decide(method, secret, user, card)
        except LoginRefused as refused:
            if refused.reason in ("invalid", "expired", "revoked"):
                self._report_locks(charges)
            else:
                self._refund(charges)  # offline login off, or unavailable: not a guess
            log.warn("Login at {terminal} by {method} refused: {reason}", spool_event="login_refused",
                     reason=refused.reason, user=user, terminal=terminal, method=method)  # fmt: skip
            raise
        except Exception:  # a bug or a broken cache: the terminal says "not available", the log has the rest
            self._refund(charges)
            log.failure("Login at {terminal} failed", terminal=terminal, spool_event="login_error")
            raise LoginRefused("unavailable") from None
        self._refund(charges)
        if method == "password" and user:
            # A password's owner typed it: the guesses at this user's password are moot. (A PIN or card
            # success clears nothing: a short secret's count must outlive its owner's logins.)
            self.budgets.clear(f"user:{user}")
        log.info("Login of {user} at {terminal} by {method} ({mode})", spool_event="login_ok", user=outcome.user,
                 terminal=terminal, method=method, mode=outcome.mode, valid_until=outcome.valid_until)  # fmt: skip
        return outcome

    def _refund(self, charges: list[Charge]) -> None:
        for charge in charges:
            self.budgets.refund(charge)

    def _report_locks(self, charges: list[Charge]) -> None:
        now = self._reactor.seconds()
        for charge in charges:
            if charge.locked_until_after > now and charge.locked_until_after != charge.locked_until_before:
                failures = self.budgets.failures(charge.scope, charge.policy)
                log.warn("Logins by {scope} locked for {wait:.0f}s after {failures:.1f} recent failures",
                         spool_event="login_locked", scope=charge.scope, wait=charge.locked_until_after - now,
                         failures=failures)  # fmt: skip

    @inlineCallbacks
    def _decide(self, method: str, secret: str, user: str | None, card: str | None) -> Any:
        checked = pair_secret(card, secret) if card is not None else secret  # what the cache's verifiers are of
        if self.api is not None and not self._server_known_down():
            body = {"device": self.device, "method": method, "secret": secret}
            if user:
                body["user"] = user
            if card is not None:
                body["card"] = card
            try:
                answer = yield self.api.call("POST", "login", body, deadline=LOGIN)
            except CentralApiRefused as refused:
                if refused.status in (401, 403):
                    yield self._forget_refused(method, checked, user)
                    raise LoginRefused("invalid") from None
                log.warn("The central server refused a login request with {status}: {detail}; checking offline",
                         spool_event="login_api_error", status=refused.status, detail=refused.message)  # fmt: skip
            except CentralApiDown as down:
                log.info("The central server did not answer a login ({detail}); checking offline",
                         spool_event="login_offline", detail=str(down))  # fmt: skip
            else:
                outcome = yield self._learn(method, checked, answer)
                return outcome
        if not self.config.offline_enabled:
            raise LoginRefused("offline-disabled")
        outcome = yield self._offline(method, checked, user)
        return outcome

    # -- online ------------------------------------------------------------------------------------

    @inlineCallbacks
    def _learn(self, method: str, secret: str, answer: Any) -> Any:
        """Cache a verifier of the secret that the server accepted, with the profile and the devices the
        server allows the user on; renew the entry. When the server signs (`[server] signing_key`), the
        verifier is the one of its grant, which must verify; without a valid grant the login stands but
        nothing is cached."""
        try:
            profile_raw = answer["user"]
            name = str(profile_raw["name"])
            credential_id = str(answer.get("credential") or method)
            verified_at = _server_time(answer, self._reactor.seconds())
            devices = parse_devices(answer["devices"]) if "devices" in answer else (self.device,)
        except (KeyError, TypeError, ValueError):
            log.warn("The central server's login answer is not as documented", spool_event="login_api_error")
            raise LoginRefused("unavailable") from None
        grant = None
        if self.trust.server_key is not None:
            try:
                grant = self.trust.learned_grant(answer, name, credential_id, method)
                if not (yield self._run(check_verifier, secret, grant.verifier)):
                    raise SignatureError("the grant's verifier does not match what the user typed")
            except SignatureError as error:
                log.error("Login of {user} accepted by the central server, but not cached: {detail} (is "
                          "[server] signing_key the server's key?)", spool_event="login_grant_invalid", user=name,
                          detail=str(error))  # fmt: skip
                now = self._reactor.seconds()
                return LoginOutcome(name, dict(clean_profile(profile_raw), credit=profile_raw.get("credit")), "online",
                                    None, now + self.validity)  # fmt: skip
            verifier, devices, verified_at = grant.verifier, grant.devices, grant.issued_at
        else:
            verifier = yield self._run(make_verifier, secret)
        fp = None
        if method != "password":
            digest = yield self._run(self.cache.lookup, secret)
            fp = self.cache.fingerprint(method, digest, verifier)
        now = self._reactor.seconds()
        local = self.cache.entries.get(name)
        credentials = dict(local.credentials) if local is not None else {}
        credentials[credential_id] = Credential(credential_id, method, verifier, verified_at, "login", "login", fp,
                                                devices, grant=grant.statement if grant else None,
                                                grant_until=grant.expires_at if grant else None)  # fmt: skip
        entry = UserEntry(name, clean_profile(profile_raw), credentials, now, now, "login")
        self.cache.put(entry)
        self._renewed(entry)
        profile = dict(entry.profile, credit=profile_raw.get("credit"))
        return LoginOutcome(name, profile, "online", None, self._valid_until(entry, credentials[credential_id]))

    def _valid_until(self, entry: UserEntry, credential: Credential) -> float:
        """Until when this credential lets its user in offline: the entry's validity under the setting
        of now, and never past the server's grant."""
        until = entry.valid_until(self.validity)
        return min(until, credential.grant_until) if credential.grant_until is not None else until

    @inlineCallbacks
    def _forget_refused(self, method: str, secret: str, user: str | None) -> Any:
        """The server refused this secret: a cached credential that would let it in offline goes, and a
        local revocation keeps a peer's older copy of it from coming back. Never fails the refusal."""
        try:
            found = yield self._find(method, secret, user, self._reactor.seconds())
        except Exception:  # noqa: BLE001 - busy scans or a broken row: the refusal stands all the same
            log.failure("Could not look for a cached credential the server refused")
            return
        if found is None:
            return
        name, credential = found[0], found[1]
        entry = self.cache.entries.get(name)
        if entry is None or credential.id not in entry.credentials:
            return
        now = self._reactor.seconds()
        refused_at = max(now, credential.verified_at)  # covers this copy and every older one, whatever the clocks
        self.cache.add_revocations([Revocation(name, credential.kind, credential.id, refused_at, refusal=True)])
        kept = {cid: c for cid, c in entry.credentials.items() if cid != credential.id}
        if kept:
            self.cache.put(replace(entry, credentials=kept, updated_at=now))
        else:
            self.cache.remove(name)
        log.info("The central server refused a credential of {user} that the cache held: removed",
                 spool_event="login_cache_refused", user=name, credential=credential.id)  # fmt: skip

    # -- offline -----------------------------------------------------------------------------------

    @inlineCallbacks
    def _offline(self, method: str, secret: str, user: str | None) -> Any:
        now = self._reactor.seconds()
        found = yield self._find(method, secret, user, now)
        if found is None:
            raise LoginRefused("invalid")
        name, credential, digest = found
        entry = self.cache.entries.get(name)
        if entry is None or credential.id not in entry.credentials:
            raise LoginRefused("invalid")  # removed while the check ran
        current = entry.credentials[credential.id]
        if not self.trust.usable(current) or not self.trust.grant_holds(name, current):
            raise LoginRefused("invalid")  # its peer was removed while the check ran, or a bad grant
        if is_revoked(name, current, self.trust.counting(self.cache.revocations)):
            raise LoginRefused("revoked")
        if self._valid_until(entry, current) <= now:
            raise LoginRefused("expired")
        if digest is not None and not self.cache.is_indexed(current):
            current = replace(current, fingerprint=self.cache.fingerprint(method, digest, current.verifier))
        renewed = replace(entry, credentials={**entry.credentials, credential.id: current}, renewed_at=now,
                          updated_at=now)  # fmt: skip
        self.cache.put(renewed)
        self._renewed(renewed)
        return LoginOutcome(name, dict(renewed.profile, credit=None), "offline", OFFLINE_NOTICE,
                            self._valid_until(renewed, current))  # fmt: skip

    def _candidates(self, method: str, user: str | None, now: float) -> list[tuple[str, Credential]]:
        """Credentials to try: only those that may count on this device (spooler.login.trust), unexpired
        and unrevoked ones first (so the first match is the best one), the most recently used users first."""
        if user:
            entry = self.cache.entries.get(user)
            pairs = [(user, c) for c in entry.credentials.values() if c.kind == method] if entry else []
        else:
            pairs = self.cache.credentials_of(method)
        pairs = [pair for pair in pairs if self.trust.usable(pair[1])]
        revocations = self.trust.counting(self.cache.revocations)

        def rank(pair: tuple[str, Credential]) -> tuple[int, float]:
            entry = self.cache.entries[pair[0]]
            usable = self._valid_until(entry, pair[1]) > now and not is_revoked(pair[0], pair[1], revocations)
            return (0 if usable else 1, -entry.updated_at)

        return sorted(pairs, key=rank)

    @inlineCallbacks
    def _find(self, method: str, secret: str, user: str | None, now: float) -> Any:
        """(user, credential, lookup digest or None) whose verifier the secret matches, or None; only
        credentials that may count on this device (spooler.login.trust) are tried.

        A password: one scrypt, against the named user's verifier or a dummy of the same cost. A PIN,
        a card or a card's pair with its PIN or password: one scrypt of the lookup KDF, then the
        verifiers the index points to; then a scan of the credentials of that kind that are not in
        the index (in SCAN_THREADS threads, one scan at a time), if there are any."""
        if method == "password":
            entry = self.cache.entries.get(user or "")
            mine = [c for c in entry.credentials.values()
                    if c.kind == "password" and self.trust.usable(c)] if entry else []  # fmt: skip
            target = mine[0].verifier if mine else self._dummy_verifier()
            matched = yield self._run(check_verifier, secret, target)
            return (entry.user, mine[0], None) if matched and mine and entry else None
        digest = yield self._run(self.cache.lookup, secret)
        hinted = []
        for owner, credential_id in self.cache.indexed(self.cache.lookup_key(method, digest)):
            entry = self.cache.entries.get(owner)
            credential = entry.credentials.get(credential_id) if entry is not None else None
            if credential is not None and credential.kind == method and (not user or owner == user) \
                    and self.trust.usable(credential):  # fmt: skip
                hinted.append((owner, credential))
        if hinted:
            match = yield self._scan(secret, hinted)
            if match is not None:
                return (*match, digest)
        candidates = [pair for pair in self._candidates(method, user, now) if not self.cache.is_indexed(pair[1])]
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
        return (*match, digest) if match is not None else None

    def _dummy_verifier(self) -> str:
        """A verifier nobody matches, at the cost of this cache's password verifiers."""
        parameters = next((found for _, c in self.cache.credentials_of("password")
                           if (found := verifier_parameters(c.verifier)) is not None), None)  # fmt: skip
        parameters = parameters or verifier_parameters(dummy_verifier())
        assert parameters is not None
        if parameters not in self._dummies:
            self._dummies[parameters] = dummy_verifier(*parameters)
        return self._dummies[parameters]

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
