"""Sharing of login cache entries between the spoolers of a subnet (verifiers only, never fingerprints
or synced users): an HTTP endpoint (`POST /v1/share/push`, `POST /v1/share/pull`) and its client.

Every request and answer is sealed with AES-GCM under the fleet key (a file every spooler of the fleet
holds): encrypted in transit and authenticated. A request carries its time and a random nonce (the
GCM nonce) in the associated data with the path; a receiver refuses a time more than WINDOW seconds
away from its clock and a nonce it has seen within the window (replay). An answer is bound to the
request's nonce, so an old answer cannot be played back either. Merging follows spooler.login.entries:
the newest credential wins, a revocation beats any entry verified before it.

The HTTP layer (`build_share_site`, spooler.web) comes first: a connection from an address that
`Sharing.is_peer` does not accept is closed before a byte is read (that predicate is where an
enrollment list plugs in), a body over MAX_BODY is refused with 413 before it is read, and
connections are capped per listener and per address with the header deadline of every HTTP listener.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.web.client import Agent
from twisted.web.http_headers import Headers
from twisted.web.server import Request

from spooler.centralapi import BytesProducer
from spooler.config import Config
from spooler.login.cache import CredentialCache
from spooler.login.entries import Revocation, UserEntry, merge_entries
from spooler.login.keys import read_fleet_key
from spooler.model import SpoolerError
from spooler.web import AnswerTooLarge, ApiError, HttpLimits, JsonResource, LimitedSite, read_capped, request_body
from spooler.web.channel import is_address, normal_host

log = Logger(namespace="spooler.login.share")

#: Largest request or answer body, most entries and revocations in one message.
MAX_BODY = 4 * 1024 * 1024
MAX_ENTRIES = 1000
MAX_REVOCATIONS = 10_000
#: A request's time may differ from the receiver's clock by this much (and its nonce is remembered as long).
WINDOW = 60.0
PEER_TIMEOUT = 5.0
#: An idle peer connection is closed after this many seconds.
IDLE_TIMEOUT = 30.0
PATHS = ("push", "pull")


class FleetAuthError(SpoolerError):
    """A message that does not open under the fleet key, is stale, or was seen before."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class FleetSealer:
    """Seals and opens the messages of the fleet; remembers recent request nonces. Pure but for the
    clock (`seconds()`)."""

    def __init__(self, key: bytes, clock: Any, window: float = WINDOW) -> None:
        self._aead = AESGCM(key)
        self._clock = clock
        self.window = window
        self._seen: dict[bytes, float] = {}

    @staticmethod
    def _request_aad(path: str, ts: float) -> bytes:
        return f"spooler-share/v1\0request\0{path}\0{ts!r}".encode()

    @staticmethod
    def _answer_aad(request_nonce: bytes) -> bytes:
        return b"spooler-share/v1\0answer\0" + request_nonce

    def _seal(self, payload: Any, aad: bytes, extra: dict[str, Any]) -> bytes:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, json.dumps(payload, separators=(",", ":")).encode(), aad)
        return json.dumps({"v": 1, **extra, "nonce": _b64(nonce), "ct": _b64(sealed)}).encode()

    @staticmethod
    def _envelope(body: bytes) -> tuple[dict[str, Any], bytes, bytes]:
        try:
            envelope = json.loads(body)
            nonce = base64.b64decode(envelope["nonce"], validate=True)
            sealed = base64.b64decode(envelope["ct"], validate=True)
        except (ValueError, KeyError, TypeError):
            raise FleetAuthError("not a sealed fleet message") from None
        if not isinstance(envelope, dict) or envelope.get("v") != 1 or len(nonce) != 12:
            raise FleetAuthError("not a sealed fleet message")
        return envelope, nonce, sealed

    def _open(self, nonce: bytes, sealed: bytes, aad: bytes) -> Any:
        try:
            return json.loads(self._aead.decrypt(nonce, sealed, aad))
        except InvalidTag:
            raise FleetAuthError("the message does not open under the fleet key (altered, or another key)") from None
        except ValueError:
            raise FleetAuthError("the message is not JSON") from None

    def seal_request(self, path: str, payload: Any) -> tuple[bytes, bytes]:
        """The request body and its nonce (to open the answer with)."""
        ts = self._clock.seconds()
        body = self._seal(payload, self._request_aad(path, ts), {"ts": ts})
        return body, base64.b64decode(json.loads(body)["nonce"])

    def open_request(self, path: str, body: bytes) -> tuple[Any, bytes]:
        """The payload and the request nonce; FleetAuthError if altered, stale or replayed."""
        envelope, nonce, sealed = self._envelope(body)
        ts = envelope.get("ts")
        if isinstance(ts, bool) or not isinstance(ts, (int, float)):
            raise FleetAuthError("the message has no time")
        payload = self._open(nonce, sealed, self._request_aad(path, float(ts)))
        now = self._clock.seconds()
        if abs(now - ts) > self.window:
            raise FleetAuthError(f"the message is stale ({now - ts:+.0f}s from this clock)")
        for seen, at in list(self._seen.items()):
            if at < now - 2 * self.window:
                del self._seen[seen]
        if nonce in self._seen:
            raise FleetAuthError("the message was seen before (replay)")
        self._seen[nonce] = now
        return payload, nonce

    def seal_answer(self, request_nonce: bytes, payload: Any) -> bytes:
        return self._seal(payload, self._answer_aad(request_nonce), {})

    def open_answer(self, request_nonce: bytes, body: bytes) -> Any:
        _, nonce, sealed = self._envelope(body)
        return self._open(nonce, sealed, self._answer_aad(request_nonce))


# -- what is exchanged -----------------------------------------------------------------------------


def shared_payload(cache: CredentialCache) -> dict[str, Any]:
    entries = [shared.to_dict(shared=True) for entry in cache.entries.values()
               if (shared := entry.shareable()) is not None]  # fmt: skip
    return {"entries": entries[:MAX_ENTRIES], "revocations": [r.to_dict() for r in cache.revocations]}


def receive(cache: CredentialCache, payload: Any, *, now: float, validity: float) -> dict[str, int]:
    """Merge a peer's entries and revocations into the cache: newest wins, a revocation beats any entry
    verified before it (revocations are applied when a login is checked). A peer's expiry is capped at
    this spooler's validity, its times at this clock."""
    if not isinstance(payload, dict):
        raise ValueError("expected an object")
    entries, revocations = payload.get("entries", []), payload.get("revocations", [])
    if not isinstance(entries, list) or not isinstance(revocations, list):
        raise ValueError("entries and revocations must be lists")
    if len(entries) > MAX_ENTRIES or len(revocations) > MAX_REVOCATIONS:
        raise ValueError("too many entries or revocations")
    changed = 0
    for raw in entries:
        try:
            incoming = UserEntry.from_dict(raw)
        except (ValueError, TypeError, KeyError):
            continue
        credentials = {cid: replace(c, verified_at=min(c.verified_at, now), origin="login", source="peer",
                                    fingerprint=None) for cid, c in incoming.credentials.items()}  # fmt: skip
        if not credentials:
            continue
        incoming = UserEntry(incoming.user, incoming.profile, credentials,
                             min(incoming.expires_at, now + validity), min(incoming.updated_at, now), "peer")  # fmt: skip
        local = cache.entries.get(incoming.user)
        merged = merge_entries(local, incoming)
        if local is None or merged.to_dict() != local.to_dict():
            cache.put(merged)
            changed += 1
    parsed = []
    for raw in revocations:
        try:
            parsed.append(Revocation.from_dict(raw))
        except (ValueError, TypeError, KeyError):
            continue
    return {"entries": changed, "revocations": cache.add_revocations(parsed)}


# -- the endpoint ----------------------------------------------------------------------------------


class ShareResource(JsonResource):
    """`POST /v1/share/push|pull` (its site, `build_share_site`, admits only peers and caps bodies)."""

    name = "share"

    def __init__(self, sealer: FleetSealer, cache: CredentialCache, clock: Any, validity: float) -> None:
        super().__init__()
        self._sealer = sealer
        self._cache = cache
        self._clock = clock
        self.validity = validity

    def dispatch(self, request: Request) -> Any:
        if request.method != b"POST":
            raise ApiError(405, "method-not-allowed", "use POST")
        path = [part.decode("utf-8", "replace") for part in request.postpath or []]
        if len(path) != 3 or path[:2] != ["v1", "share"] or path[2] not in PATHS:
            raise ApiError(404, "not-found", "not found")
        body = request_body(request)
        peer = request.getClientAddress()
        try:
            payload, nonce = self._sealer.open_request(path[2], body)
        except FleetAuthError as error:
            log.warn("Refused a share request from {peer}: {detail}", spool_event="share_refused",
                     peer=str(getattr(peer, "host", peer)), detail=str(error))  # fmt: skip
            raise ApiError(401, "not-authenticated", str(error)) from None
        now = self._clock.seconds()
        if path[2] == "push":
            try:
                counts = receive(self._cache, payload, now=now, validity=self.validity)
            except ValueError as error:
                raise ApiError(400, "bad-request", str(error)) from None
            if counts["entries"] or counts["revocations"]:
                log.info("Received {entries} entries and {revocations} revocations from a peer",
                         spool_event="share_received", **counts)  # fmt: skip
            answer: Any = counts
        else:
            answer = shared_payload(self._cache)
        return self._sealer.seal_answer(nonce, answer)


def build_share_site(resource: ShareResource, reactor: Any, limits: Any,
                     peer_allowed: Callable[[str], bool]) -> LimitedSite:  # fmt: skip
    """The share endpoint's site (spooler.web): a client that `peer_allowed` refuses is closed before
    anything is read; bodies over MAX_BODY are refused with 413 before they are read; `[limits]`
    connection, per-address and header limits; idle connections closed after IDLE_TIMEOUT."""
    return LimitedSite(resource, reactor=reactor, name="share", max_body=MAX_BODY, peer_allowed=peer_allowed,
                       limits=HttpLimits.from_config(limits, idle_timeout=IDLE_TIMEOUT))  # fmt: skip


# -- the client and the service ----------------------------------------------------------------------


class Sharing(MultiService):
    """The share endpoint, the push after each login, and the periodic pull from every peer."""

    def __init__(self, config: Config, reactor: Any, cache: CredentialCache, login: Any,
                 peers: Callable[[], list[str]] | None = None, run_in_thread: Any = None) -> None:  # fmt: skip
        super().__init__()
        self.setName("login-share")
        assert config.login.fleet_key_file is not None
        self._reactor = reactor
        self.config = config
        self.cache = cache
        self.validity = config.login.validity_hours * 3600.0
        self.sealer = FleetSealer(read_fleet_key(config.login.fleet_key_file), reactor)
        self.discovered: set[str] = set()
        #: The last exchange with each peer: what, when, its error (None: it worked), the last that worked.
        self.exchanges: dict[str, dict[str, Any]] = {}
        self._peers = peers
        self._resolved: dict[str, set[str]] = {}  # peer names -> their addresses (is_peer)
        self.listener: Any = None
        self.resource: ShareResource | None = None
        if config.login.share_listen:
            from twisted.internet.endpoints import serverFromString

            from spooler.service import ListenerService

            self.resource = ShareResource(self.sealer, cache, reactor, self.validity)
            site = build_share_site(self.resource, reactor, config.limits, self.is_peer)
            self.listener = ListenerService("share", serverFromString(reactor, config.login.share_listen), site)
            self.listener.setServiceParent(self)
        if config.login.discover and self.listener is not None and run_in_thread is not None:
            from spooler.login.discovery import PeerDiscovery

            def listening() -> tuple[str, int]:
                address = self.listener.port.getHost()
                return str(getattr(address, "host", "")), int(getattr(address, "port", 0))

            PeerDiscovery(reactor, config.device.name, listening, self.discovered,
                          run_in_thread).setServiceParent(self)  # fmt: skip
        timer = TimerService(config.login.share_interval, self.pull_all)
        timer.clock = reactor
        timer.setServiceParent(self)
        login.on_renewed.append(self.push)

    def reconfigure(self, config: Config) -> None:
        """A reload: new peers and validity (the fleet key and the endpoint's being on need a restart)."""
        self.config = config
        self.validity = config.login.validity_hours * 3600.0
        if self.resource is not None:
            self.resource.validity = self.validity

    def status(self) -> dict[str, Any]:
        """The peers and the last exchange with each (what, when, whether it worked)."""
        listening = self.listener.address if self.listener is not None else None
        return {"listening": listening,
                "peers": [self.exchanges.get(peer, {"peer": peer, "what": None, "at": None, "error": None,
                                                    "last_ok": None}) for peer in self.peers()]}  # fmt: skip

    def peers(self) -> list[str]:
        configured = list(self.config.login.peers) + sorted(self.discovered)
        if self._peers is not None:
            configured += self._peers()
        return list(dict.fromkeys(configured))

    def is_peer(self, host: str) -> bool:
        """Whether a connection from `host` may reach the share endpoint at all, asked by the HTTP layer
        before anything is read: the address of a configured or discovered peer (a peer configured by
        name counts by the address the name last resolved to). Every message is still authenticated;
        this keeps everyone else from costing the endpoint a byte of buffer."""
        return host in self.peer_hosts()

    def peer_hosts(self) -> set[str]:
        hosts: set[str] = set()
        for peer in self.peers():
            host = normal_host(peer.rpartition(":")[0])
            hosts.update(self._resolved.get(host, {host}))
        return hosts

    def startService(self) -> None:
        super().startService()
        self._resolve_peer_names()

    def _resolve_peer_names(self) -> None:
        """Look up the peers configured by name (at start and before each pull), for `is_peer`."""
        resolve = getattr(self._reactor, "resolve", None)
        if resolve is None:
            return
        for peer in self.peers():
            host = normal_host(peer.rpartition(":")[0])
            if is_address(host):
                continue

            def resolved(address: str, host: str = host) -> None:
                self._resolved[host] = {normal_host(address)}

            resolve(host).addCallbacks(resolved, lambda failure, host=host: log.info(
                "Cannot resolve the peer {peer}: {detail}", spool_event="share_failed", what="resolve", peer=host,
                detail=failure.getErrorMessage()))  # fmt: skip

    @inlineCallbacks
    def _call(self, peer: str, path: str, payload: Any) -> Any:
        body, nonce = self.sealer.seal_request(path, payload)
        agent = Agent(self._reactor, connectTimeout=PEER_TIMEOUT)
        request = agent.request(b"POST", f"http://{peer}/v1/share/{path}".encode(),
                                Headers({b"content-type": [b"application/json"]}), BytesProducer(body))  # fmt: skip
        request.addTimeout(PEER_TIMEOUT, self._reactor)
        response = yield request
        reading = read_capped(response, MAX_BODY)
        reading.addTimeout(PEER_TIMEOUT, self._reactor)
        try:
            data = yield reading
        except AnswerTooLarge:
            raise FleetAuthError(f"the answer of {peer} is too large") from None
        if response.code != 200:
            raise FleetAuthError(f"{peer} answered {response.code}: {data[:200]!r}")
        return self.sealer.open_answer(nonce, data)

    def push(self, entry: UserEntry) -> None:
        """Send one renewed entry to every peer (after a login); failures are logged, not raised."""
        shared = entry.shareable()
        if shared is None:
            return
        payload = {"entries": [shared.to_dict(shared=True)], "revocations": []}
        for peer in self.peers():
            self._call(peer, "push", payload).addCallbacks(lambda _, peer=peer: self._exchanged(peer, "push", None),
                                                           self._failed, errbackArgs=(peer, "push"))  # fmt: skip

    def push_revocations(self, revocations: list[Revocation]) -> None:
        """Send revocations the server just gave us to every peer (they win there too)."""
        payload = {"entries": [], "revocations": [r.to_dict() for r in revocations][:MAX_REVOCATIONS]}
        for peer in self.peers():
            self._call(peer, "push", payload).addErrback(self._failed, peer, "push")

    def pull_all(self) -> Deferred[Any]:
        from twisted.internet.defer import DeferredList

        self._resolve_peer_names()
        calls = []
        for peer in self.peers():
            call = self._call(peer, "pull", {})
            call.addCallback(self._pulled, peer)
            call.addErrback(self._failed, peer, "pull")
            calls.append(call)
        return DeferredList(calls)

    def _pulled(self, answer: Any, peer: str) -> dict[str, int]:
        counts = receive(self.cache, answer, now=self._reactor.seconds(), validity=self.validity)
        self._exchanged(peer, "pull", None)
        if counts["entries"] or counts["revocations"]:
            log.info("Pulled {entries} entries and {revocations} revocations from {peer}",
                     spool_event="share_pulled", peer=peer, **counts)  # fmt: skip
        return counts

    def _failed(self, failure: Any, peer: str, what: str) -> None:
        """A failed exchange: a warning when a peer stops answering, debug while it stays so (a peer
        that is off must not fill the log every share_interval), info when it answers again."""
        detail = failure.getErrorMessage()
        before = self.exchanges.get(peer)
        self._exchanged(peer, what, detail)
        if before is None or before["error"] is None:
            log.warn("Share {what} with {peer} failed: {detail}", spool_event="share_failed", what=what, peer=peer,
                     detail=detail)  # fmt: skip
        else:
            log.debug("Share {what} with {peer} failed again: {detail}", what=what, peer=peer, detail=detail)

    def _exchanged(self, peer: str, what: str, error: str | None) -> None:
        before = self.exchanges.get(peer)
        now = self._reactor.seconds()
        if error is None and before is not None and before["error"] is not None:
            log.info("Share with {peer} works again", spool_event="share_recovered", peer=peer)
        self.exchanges[peer] = {"peer": peer, "what": what, "at": now, "error": error,
                                "last_ok": now if error is None else (before or {}).get("last_ok")}  # fmt: skip
