"""The login part of the running spooler: opens the key file, the credential cache, this spooler's key
pair and its enrolled peers, builds the LoginService, the user sync (with its timer) and the sharing
with peers, and answers the admin API's login routes (`/v1/login`, `/v1/users`, `/v1/users/sync`,
`/v1/keys/rotate`, `/v1/peers`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.logger import Logger

from spooler.central.base import CentralBackend
from spooler.centralapi import CentralApi, CentralApiError
from spooler.config import Config
from spooler.login.budget import FailureBudgets
from spooler.login.cache import CredentialCache
from spooler.login.entries import is_revoked
from spooler.login.keys import LoginKeys
from spooler.login.peers import EnrolledPeers, PeerError, PeerIdentity, make_peer
from spooler.login.service import LoginOutcome, LoginRefused, LoginService
from spooler.login.sync import SyncError, UserSync
from spooler.login.trust import Trust
from spooler.signing import SignatureError, parse_public_key
from spooler.store.spoolfiles import RunInThread
from spooler.web import ApiError

log = Logger(namespace="spooler.login")


class RouteError(ApiError):
    """An admin request the login part refuses: HTTP status, code, message, extra fields of the answer."""

    def __init__(self, status: int, code: str, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(status, code, message, **(extra or {}))


def open_cache(config: Config) -> CredentialCache:
    keys = LoginKeys.open_or_create(config.login_key_path)
    cache = CredentialCache.open(config.login_cache_path, keys)
    if cache.unreadable:
        log.error("{count} credential cache rows do not open with the key file {path}; they are ignored",
                  spool_event="login_cache_unreadable", count=cache.unreadable, path=str(config.login_key_path))
    return cache


def open_trust(config: Config) -> Trust:
    """This spooler's key pair (made on first start), its enrolled peers and the server's signing key."""
    identity = PeerIdentity.open_or_create(config.peer_key_path)
    server = config.server.signing_key if config.server is not None else None
    return Trust(config.device.name, EnrolledPeers.load(config.peers_path), identity=identity,
                 server_key=parse_public_key(server) if server else None)  # fmt: skip


def user_rows(cache: CredentialCache, now: float, trust: Trust, validity: float) -> list[dict[str, Any]]:
    """Who can log in offline here and until when (`spooler users list`): only credentials that count on
    this device (spooler.login.trust), under the validity configured now; `indexed`: the PINs and cards
    found by one lookup (the others cost a scan of the verifiers not in the index)."""
    rows = []
    revocations = trust.counting(cache.revocations)
    for name in sorted(cache.entries):
        entry = cache.entries[name]
        counting = [c for c in entry.credentials.values() if trust.usable(c)]
        if not counting:
            continue
        live = [c for c in counting if not is_revoked(name, c, revocations)]
        kinds = sorted({c.kind for c in live})
        valid_until = entry.valid_until(validity)
        state = "revoked" if not live else "expired" if valid_until <= now else "ok"
        indexed = sum(1 for c in live if c.kind != "password" and cache.is_indexed(c))
        rows.append({"user": name, "full_name": entry.profile.get("full_name", ""), "state": state,
                     "valid_until": valid_until, "methods": kinds, "credentials": len(live),
                     "indexed": indexed, "source": entry.source, "updated_at": entry.updated_at})  # fmt: skip
    return rows


def peer_rows(trust: Trust) -> dict[str, Any]:
    """This spooler's key and the enrolled peers (`spooler peers list`)."""
    return {"self": trust.own_key, "device": trust.device, "peers": [peer.to_dict() for peer in trust.peers]}


def expiring_window(validity: float) -> float:
    """An entry that ends within this many seconds is "expiring": a quarter of its validity (a user who
    has not logged in or been synced for three quarters of it), at most 6 hours."""
    return min(validity / 4, 6 * 3600.0)


def cache_status(cache: CredentialCache, now: float, *, trust: Trust, validity: float,
                 last_sync: dict[str, Any] | None, sharing: dict[str, Any] | None,
                 offline_enabled: bool) -> dict[str, Any]:  # fmt: skip
    """The login cache for `spooler status` and the admin page: users by state (as `users list` counts
    them here), who expires soon, the last sync, and the sharing peers with their last exchange."""
    rows = user_rows(cache, now, trust, validity)
    window = expiring_window(validity)
    states = {"ok": 0, "expired": 0, "revoked": 0}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    live = [row["valid_until"] for row in rows if row["state"] == "ok"]
    return {"users": len(rows), "by_state": states, "offline_enabled": offline_enabled,
            "expiring": sum(1 for until in live if until - now < window), "expiring_within": window,
            "next_expiry": min(live) if live else None, "last_sync": last_sync, "unreadable": cache.unreadable,
            "synced_until": cache.sync_since, "sharing": sharing}  # fmt: skip


def stored_login_status(config: Config, now: float) -> dict[str, Any] | None:
    """The login cache as stored, for the status while the daemon is down: users and who expires soon
    (no sync or sharing news); None when there is no cache yet, or its key file does not open."""
    from spooler.login.keys import KeyFileError

    if not config.login_key_path.exists() or not config.login_cache_path.exists():
        return None
    try:
        cache = CredentialCache.open(config.login_cache_path, LoginKeys.load(config.login_key_path))
    except KeyFileError:
        return None
    try:
        return cache_status(cache, now, trust=open_trust(config), validity=config.login.validity_hours * 3600.0,
                            last_sync=None, sharing=None, offline_enabled=config.login.offline_enabled)  # fmt: skip
    finally:
        cache.close()


def outcome_dict(outcome: LoginOutcome) -> dict[str, Any]:
    return {"user": outcome.user, "profile": outcome.profile, "mode": outcome.mode, "notice": outcome.notice,
            "valid_until": outcome.valid_until}  # fmt: skip


class LoginRuntime(MultiService):
    def __init__(self, config: Config, reactor: Any, run_in_thread: RunInThread,
                 server_known_down: Callable[[], bool] | None = None, *, backend: Any = None,
                 budgets: FailureBudgets | None = None) -> None:  # fmt: skip
        """`backend`: the central server's (spooler.central.make_backend); by default the generic API of
        [server] api_url. `budgets`: the failure counts (opened on STATE/login.db here if not given)."""
        super().__init__()
        self.setName("login")
        self.config = config
        self.reactor = reactor
        self.cache = open_cache(config)
        self.trust = open_trust(config)
        self.cache.purge(reactor.seconds(), config.login.validity_hours * 3600.0)
        self._own_budgets = budgets is None
        self.budgets = budgets or FailureBudgets.open(config.login_cache_path, reactor)
        api_url = config.server.api_url if config.server is not None else None
        self.api: CentralBackend | None = backend if backend is not None else CentralApi(reactor, api_url) if api_url else None
        self.service = LoginService(reactor, config.login, self.cache, device=config.device.name, api=self.api,
                                    run_in_thread=run_in_thread, server_known_down=server_known_down,
                                    budgets=self.budgets, trust=self.trust)  # fmt: skip
        self.sync: UserSync | None = None
        if self.api is not None:
            self.sync = UserSync(reactor, self.cache, self.api, device=config.device.name,
                                 validity=self.service.validity, trust=self.trust)  # fmt: skip
            if config.login.sync_interval > 0:
                timer = TimerService(config.login.sync_interval, self.sync.scheduled)
                timer.clock = reactor
                timer.setName("login-sync")
                timer.setServiceParent(self)
        self.sharing: Any = None
        if config.login.share:
            from spooler.login.share import Sharing

            if self.trust.server_key is None and self.api is not None:
                log.warn("Sharing login entries without [server] signing_key: an enrolled spooler, if stolen, can "
                         "make up credentials for any user until it is removed (spooler peers remove)",
                         spool_event="share_unsigned")  # fmt: skip
            self.sharing = Sharing(config, reactor, self.cache, self.service, self.trust, run_in_thread=run_in_thread)
            if self.sync is not None:
                self.sync.on_revocations.append(self.sharing.push_revocations)
            self.sharing.setServiceParent(self)

    def status(self) -> dict[str, Any]:
        """The login cache (users by state, who expires within a day, the last sync) and the sharing
        peers with their last exchange, for `spooler status` and the admin page."""
        now = self.reactor.seconds()
        return cache_status(self.cache, now, trust=self.trust, validity=self.service.validity,
                            last_sync=self.sync.last if self.sync is not None else None,
                            sharing=self.sharing.status() if self.sharing is not None else None,
                            offline_enabled=self.config.login.offline_enabled)  # fmt: skip

    def reconfigure(self, config: Config) -> None:
        """A reload changed [login] keys that apply live: validity, offline logins, limits, peers."""
        self.config = config
        self.service.reconfigure(config.login)
        if self.sync is not None:
            self.sync.validity = self.service.validity
        if self.sharing is not None:
            self.sharing.reconfigure(config)

    def stopService(self) -> Any:
        result = super().stopService()

        def close(passthrough: object) -> object:
            self.cache.close()
            if self._own_budgets:
                self.budgets.close()
            return passthrough

        return maybeDeferred(lambda: result).addBoth(close)

    # -- the admin API ---------------------------------------------------------------------------

    def route(self, method: str, path: list[str], body: Callable[[], dict[str, Any]]) -> Deferred[Any] | None:
        """The answer to a login admin route (a Deferred, failing with RouteError), or None if not ours."""
        if method == "POST" and path == ["login"]:
            return self._login(body())
        if method == "GET" and path == ["users"]:
            return succeed({"users": user_rows(self.cache, self.reactor.seconds(), self.trust, self.service.validity),
                            "last_sync": self.sync.last if self.sync else None})  # fmt: skip
        if method == "GET" and path == ["peers"]:
            return succeed(peer_rows(self.trust))
        if method == "POST" and path == ["peers"]:
            return maybeDeferred(self._enroll, body())
        if method == "POST" and path == ["peers", "remove"]:
            return maybeDeferred(self._unenroll, body())
        if method == "POST" and path == ["users", "sync"]:
            if self.sync is None:
                return fail(RouteError(409, "no-server", "no central server API is configured ([server] api_url)"))
            return self.sync.sync().addErrback(self._sync_failed)
        if method == "POST" and path == ["keys", "rotate"]:
            return maybeDeferred(self._rotate)
        return None

    def _enroll(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            peer = make_peer(body.get("name"), body.get("key"), body.get("address"))
            self.trust.peers.add(peer, own_key=self.trust.own_key)
        except (PeerError, SignatureError) as error:
            raise RouteError(400, "bad-peer", str(error)) from None
        log.info("Enrolled the login peer {name} ({key})", spool_event="peer_enrolled", name=peer.name, key=peer.key,
                 address=peer.address)  # fmt: skip
        return peer.to_dict()

    def _unenroll(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            peer = self.trust.peers.remove(str(body.get("name")))
        except PeerError as error:
            raise RouteError(404, "no-such-peer", str(error)) from None
        log.info("Removed the login peer {name} ({key}): its entries no longer count", spool_event="peer_removed",
                 name=peer.name, key=peer.key)  # fmt: skip
        return peer.to_dict()

    def _rotate(self) -> dict[str, Any]:
        key_id = self.cache.rotate()
        log.info("Login cache key rotated", spool_event="login_key_rotated", key_id=key_id)
        if self.sync is not None:
            self.sync.scheduled()  # the synced PINs and cards get their index (made under the old key) back
        return {"key_id": key_id, "entries": len(self.cache.entries)}

    @staticmethod
    def _sync_failed(failure: Any) -> Any:
        error = failure.value
        if isinstance(error, (CentralApiError, SyncError)):
            raise RouteError(502, "sync-failed", f"the user sync failed: {error}")
        return failure

    def _login(self, body: dict[str, Any]) -> Deferred[Any]:
        method, secret, user, terminal = body.get("method"), body.get("secret"), body.get("user"), body.get("terminal")
        card = body.get("card")
        if not isinstance(method, str) or not isinstance(secret, str) or any(
                value is not None and not isinstance(value, str) for value in (user, card)):  # fmt: skip
            return fail(RouteError(400, "bad-request", "expected {\"method\", \"secret\", \"user\", \"terminal\"} "
                                                       "(and \"card\" for card+pin and card+password)"))
        terminal = terminal if isinstance(terminal, str) and terminal else "admin"

        def refused(failure: Any) -> Any:
            failure.trap(LoginRefused)
            error = failure.value
            raise RouteError(403, error.reason, error.message, {"reason": error.reason, "retry_after": error.retry_after})

        return self.service.login(method=method, secret=secret, user=user, terminal=terminal, card=card).addCallbacks(
            outcome_dict, refused)

