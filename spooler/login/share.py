"""Sharing of login cache entries between the spoolers of a subnet: the messages (what is sealed, signed,
verified and accepted), the endpoint (`POST /v1/share/hello|push|pull`) and its client.

Trust comes from each spooler's own key pair (spooler.login.peers), never from a shared secret:
- every credential and revocation that travels is a record signed by the spooler that issued it, and
  counts at the receiver only while that issuer is enrolled there (spooler.login.trust decides);
- every request and answer is sealed with AES-GCM under a key only the two spoolers share (X25519
  between their sealing keys, each certified by its Ed25519 key): verifiers stay secret in transit, and
  only an enrolled peer can make a request that opens. `hello` (in the clear) tells a client which key
  an address has; the client goes on only if that key is enrolled.
A request carries its time and a random nonce in the associated data with the path and both keys; a
receiver refuses a time more than WINDOW seconds away from its clock and a nonce it has seen within
the window (replay). An answer is bound to the request's nonce.

The HTTP layer (`build_share_site`, spooler.web) comes first: a connection from an address that
`Sharing.is_peer` does not accept (not the address of a configured, enrolled or discovered peer) is
closed before a byte is read, a body over MAX_BODY is refused with 413 before it is read, and
connections are capped per listener and per address with the header deadline of every HTTP listener.
A request names its sender's key in the X-Spooler-Peer header (`ShareExchange.is_enrolled_peer`).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
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
from spooler.login.entries import Revocation, UserEntry
from spooler.login.peers import EnrolledPeers, PeerIdentity, open_certificate
from spooler.login.trust import NotHere, OwnRecord, Refused, Trust, merge_shared
from spooler.model import SpoolerError
from spooler.signing import SignatureError
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
PATHS = ("hello", "push", "pull")
#: The request header naming the sender's key, so that a stranger can be refused before its body is read.
PEER_HEADER = b"x-spooler-peer"


class PeerAuthError(SpoolerError):
    """A message that does not open between these two spoolers, from a peer not enrolled, stale, or replayed."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class PeerContact:
    """Another spooler as its `hello` showed it: its key (enrolled here) and its sealing key."""

    key: str
    exchange: bytes


class PeerSealer:
    """Seals and opens the messages between this spooler and each enrolled peer; remembers recent
    request nonces. Pure but for the clock (`seconds()`)."""

    def __init__(self, identity: PeerIdentity, peers: EnrolledPeers, clock: Any, window: float = WINDOW) -> None:
        self.identity = identity
        self.peers = peers
        self._clock = clock
        self.window = window
        self._seen: dict[bytes, float] = {}
        self._pairs: dict[tuple[str, bytes], AESGCM] = {}

    def hello(self) -> dict[str, str]:
        return self.identity.certificate()

    def contact(self, certificate: Any) -> PeerContact:
        """The peer behind a `hello` answer or a request's sender; PeerAuthError unless its key is enrolled."""
        try:
            key, _, exchange = open_certificate(certificate)
        except SignatureError as error:
            raise PeerAuthError(str(error)) from None
        if key == self.identity.key:
            raise PeerAuthError("that is this spooler itself")
        if not self.peers.is_enrolled(key):
            raise PeerAuthError(f"{key} is not an enrolled peer (spooler peers add NAME KEY)")
        return PeerContact(key, exchange)

    def _pair(self, contact: PeerContact) -> AESGCM:
        aead = self._pairs.get((contact.key, contact.exchange))
        if aead is None:
            shared = self.identity.exchange.exchange(X25519PublicKey.from_public_bytes(contact.exchange))
            low, high = sorted([self.identity.key, contact.key])
            info = f"spooler-share/v2 pair\0{low}\0{high}".encode()
            aead = AESGCM(HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(shared))
            if len(self._pairs) > 4 * 256:
                self._pairs.clear()
            self._pairs[(contact.key, contact.exchange)] = aead
        return aead

    @staticmethod
    def _request_aad(path: str, ts: float, sender: str, receiver: str) -> bytes:
        return f"spooler-share/v2\0request\0{path}\0{ts!r}\0{sender}\0{receiver}".encode()

    @staticmethod
    def _answer_aad(request_nonce: bytes) -> bytes:
        return b"spooler-share/v2\0answer\0" + request_nonce

    @staticmethod
    def _seal(aead: AESGCM, payload: Any, aad: bytes) -> tuple[bytes, bytes]:
        nonce = secrets.token_bytes(12)
        return nonce, aead.encrypt(nonce, json.dumps(payload, separators=(",", ":")).encode(), aad)

    @staticmethod
    def _open(aead: AESGCM, nonce: bytes, sealed: bytes, aad: bytes) -> Any:
        try:
            return json.loads(aead.decrypt(nonce, sealed, aad))
        except InvalidTag:
            raise PeerAuthError("the message does not open between these two spoolers (altered, or other keys)") from None
        except ValueError:
            raise PeerAuthError("the message is not JSON") from None

    @staticmethod
    def _envelope(body: bytes) -> tuple[dict[str, Any], bytes, bytes]:
        try:
            envelope = json.loads(body)
            nonce = base64.b64decode(envelope["nonce"], validate=True)
            sealed = base64.b64decode(envelope["ct"], validate=True)
        except (ValueError, KeyError, TypeError):
            raise PeerAuthError("not a sealed share message") from None
        if not isinstance(envelope, dict) or envelope.get("v") != 2 or len(nonce) != 12:
            raise PeerAuthError("not a sealed share message (version 2)")
        return envelope, nonce, sealed

    def seal_request(self, contact: PeerContact, path: str, payload: Any) -> tuple[bytes, bytes, AESGCM]:
        """The request body, its nonce and the pair's cipher (to open the answer with)."""
        ts = self._clock.seconds()
        aead = self._pair(contact)
        nonce, sealed = self._seal(aead, payload, self._request_aad(path, ts, self.identity.key, contact.key))
        envelope = {"v": 2, "from": self.identity.certificate(), "to": contact.key, "ts": ts,
                    "nonce": _b64(nonce), "ct": _b64(sealed)}  # fmt: skip
        return json.dumps(envelope).encode(), nonce, aead

    def open_request(self, path: str, body: bytes) -> tuple[Any, bytes, AESGCM, str]:
        """(payload, request nonce, the pair's cipher, the sender's key); PeerAuthError if the sender is
        not enrolled, or the message is altered, stale or replayed."""
        envelope, nonce, sealed = self._envelope(body)
        ts = envelope.get("ts")
        if isinstance(ts, bool) or not isinstance(ts, (int, float)):
            raise PeerAuthError("the message has no time")
        if envelope.get("to") != self.identity.key:
            raise PeerAuthError("the message is sealed for another spooler")
        sender = self.contact(envelope.get("from"))
        aead = self._pair(sender)
        payload = self._open(aead, nonce, sealed, self._request_aad(path, float(ts), sender.key, self.identity.key))
        now = self._clock.seconds()
        if abs(now - ts) > self.window:
            raise PeerAuthError(f"the message is stale ({now - ts:+.0f}s from this clock)")
        for seen, at in list(self._seen.items()):
            if at < now - 2 * self.window:
                del self._seen[seen]
        if nonce in self._seen:
            raise PeerAuthError("the message was seen before (replay)")
        self._seen[nonce] = now
        return payload, nonce, aead, sender.key

    def seal_answer(self, aead: AESGCM, request_nonce: bytes, payload: Any) -> bytes:
        nonce, sealed = self._seal(aead, payload, self._answer_aad(request_nonce))
        return json.dumps({"v": 2, "nonce": _b64(nonce), "ct": _b64(sealed)}).encode()

    def open_answer(self, aead: AESGCM, request_nonce: bytes, body: bytes) -> Any:
        _, nonce, sealed = self._envelope(body)
        return self._open(aead, nonce, sealed, self._answer_aad(request_nonce))


# -- what is exchanged -----------------------------------------------------------------------------


def shared_payload(cache: CredentialCache, trust: Trust) -> dict[str, Any]:
    """Everything this spooler shares: signed records of its credentials and revocations."""
    return {"entries": trust.outgoing_credentials(cache.entries.values())[:MAX_ENTRIES],
            "revocations": trust.outgoing_revocations(cache.revocations)[-MAX_REVOCATIONS:]}  # fmt: skip


def entry_payload(entry: UserEntry, trust: Trust) -> dict[str, Any]:
    """One user's records (pushed after a login)."""
    return {"entries": trust.outgoing_credentials([entry]), "revocations": []}


def receive(cache: CredentialCache, payload: Any, trust: Trust, *, now: float) -> dict[str, Any]:
    """Take in what a peer sends: each record is checked on its own (spooler.login.trust); those that
    may count here are merged; those of users the server does not allow on this device are counted in
    "not_here", the others by reason in "refused" (both left out). A revocation
    beats any entry verified before it (applied when a login is checked)."""
    if not isinstance(payload, dict):
        raise ValueError("expected an object")
    entries, revocations = payload.get("entries", []), payload.get("revocations", [])
    if not isinstance(entries, list) or not isinstance(revocations, list):
        raise ValueError("entries and revocations must be lists")
    if len(entries) > MAX_ENTRIES or len(revocations) > MAX_REVOCATIONS:
        raise ValueError("too many entries or revocations")
    with cache.transaction():
        return _receive(cache, entries, revocations, trust, now)


def _receive(cache: CredentialCache, entries: list[Any], revocations: list[Any], trust: Trust,
             now: float) -> dict[str, Any]:  # fmt: skip
    refused: dict[str, int] = {}
    changed = not_here = 0
    for raw in entries:
        try:
            shared = trust.accept_credential(raw, now)
        except OwnRecord:
            continue
        except NotHere:
            not_here += 1
            continue
        except Refused as refusal:
            refused[refusal.reason] = refused.get(refusal.reason, 0) + 1
            continue
        merged = merge_shared(cache.entries.get(shared.user), shared, now=now, usable=trust.usable)
        if merged is not None:
            cache.put(merged)
            changed += 1
    accepted = []
    for raw in revocations:
        try:
            accepted.append(trust.accept_revocation(raw, now))
        except OwnRecord:
            continue
        except Refused as refusal:
            refused[refusal.reason] = refused.get(refusal.reason, 0) + 1
    return {"entries": changed, "revocations": cache.add_revocations(accepted), "not_here": not_here,
            "refused": refused}


class ShareExchange:
    """The answer to one share request, HTTP aside: (status, body). What the endpoint calls."""

    def __init__(self, sealer: PeerSealer, cache: CredentialCache, trust: Trust, clock: Any) -> None:
        self.sealer = sealer
        self.cache = cache
        self.trust = trust
        self._clock = clock

    def is_enrolled_peer(self, key: str) -> bool:
        """Whether `key` (the X-Spooler-Peer header of a request) is an enrolled peer's: a request
        naming any other key can be refused before its body is read."""
        return self.trust.peers.is_enrolled(key)

    def answer(self, path: str, body: bytes, peer: str) -> tuple[int, bytes]:
        if path == "hello":
            return 200, json.dumps(self.sealer.hello()).encode()
        try:
            payload, nonce, aead, sender = self.sealer.open_request(path, body)
        except PeerAuthError as error:
            log.warn("Refused a share request from {peer}: {detail}", spool_event="share_refused", peer=peer,
                     detail=str(error))  # fmt: skip
            return 401, _error(str(error))
        name = _peer_name(self.trust, sender)
        if path == "push":
            try:
                counts = receive(self.cache, payload, self.trust, now=self._clock.seconds())
            except ValueError as error:
                return 400, _error(str(error))
            _log_received(True, name, counts)
            answer: Any = counts
        else:
            answer = shared_payload(self.cache, self.trust)
        return 200, self.sealer.seal_answer(aead, nonce, answer)


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def _peer_name(trust: Trust, key: str) -> str:
    peer = trust.peers.by_key(key)
    return peer.name if peer is not None else key


def _log_received(pushed: bool, peer: str, counts: dict[str, Any]) -> None:
    """What a push (`share_received`) or a pull (`share_pulled`) brought. Credentials for other devices
    are said at info level when pushed (once per login elsewhere), at debug level when pulled (every
    share_interval)."""
    if counts["entries"] or counts["revocations"]:
        log.info(("Received" if pushed else "Pulled") + " {entries} entries and {revocations} revocations from {peer}",
                 spool_event="share_received" if pushed else "share_pulled", peer=peer, entries=counts["entries"],
                 revocations=counts["revocations"])  # fmt: skip
    if counts["not_here"]:
        (log.info if pushed else log.debug)(
            "Left out {count} credential(s) from {peer}: the server does not allow their users on this device",
            spool_event="share_not_here", peer=peer, count=counts["not_here"])  # fmt: skip
    for reason, count in sorted(counts.get("refused", {}).items()):
        log.warn("Refused {count} record(s) from {peer}: {reason}", spool_event="share_record_refused", peer=peer,
                 count=count, reason=reason)  # fmt: skip


# -- the endpoint ----------------------------------------------------------------------------------


class ShareResource(JsonResource):
    """`POST /v1/share/hello|push|pull` (its site, `build_share_site`, admits only peers and caps bodies)."""

    name = "share"

    def __init__(self, exchange: ShareExchange) -> None:
        super().__init__()
        self.exchange = exchange

    def dispatch(self, request: Request) -> Any:
        if request.method != b"POST":
            raise ApiError(405, "method-not-allowed", "use POST")
        path = [part.decode("utf-8", "replace") for part in request.postpath or []]
        if len(path) != 3 or path[:2] != ["v1", "share"] or path[2] not in PATHS:
            raise ApiError(404, "not-found", "not found")
        peer = request.getClientAddress()
        status, answer = self.exchange.answer(path[2], request_body(request), str(getattr(peer, "host", peer)))
        if status != 200:
            raise ApiError(status, _ERROR_CODES.get(status, "bad-request"), json.loads(answer)["error"])
        return answer


_ERROR_CODES = {400: "bad-request", 401: "not-authenticated"}


def build_share_site(resource: ShareResource, reactor: Any, limits: Any,
                     peer_allowed: Callable[[str], bool]) -> LimitedSite:  # fmt: skip
    """The share endpoint's site (spooler.web): a client that `peer_allowed` refuses is closed before
    anything is read; bodies over MAX_BODY are refused with 413 before they are read; `[limits]`
    connection, per-address and header limits; idle connections closed after IDLE_TIMEOUT."""
    return LimitedSite(resource, reactor=reactor, name="share", max_body=MAX_BODY, peer_allowed=peer_allowed,
                       limits=HttpLimits.from_config(limits, idle_timeout=IDLE_TIMEOUT))  # fmt: skip


# -- the client and the service ----------------------------------------------------------------------


class Sharing(MultiService):
    """The share endpoint, the push after each login, and the periodic pull from every peer address:
    `[login] peers`, the addresses of enrolled peers, and those found by DNS-SD."""

    def __init__(self, config: Config, reactor: Any, cache: CredentialCache, login: Any, trust: Trust,
                 peers: Callable[[], list[str]] | None = None, run_in_thread: Any = None) -> None:  # fmt: skip
        super().__init__()
        self.setName("login-share")
        assert trust.identity is not None
        self._reactor = reactor
        self.config = config
        self.cache = cache
        self.trust = trust
        self.sealer = PeerSealer(trust.identity, trust.peers, reactor)
        self.exchange = ShareExchange(self.sealer, cache, trust, reactor)
        self.discovered: set[str] = set()
        self._contacts: dict[str, PeerContact] = {}  # by address, from its hello
        #: The last exchange with each peer: what, when, its error (None: it worked), the last that worked.
        self.exchanges: dict[str, dict[str, Any]] = {}
        self._peers = peers
        self._resolved: dict[str, set[str]] = {}  # peer names -> their addresses (is_peer)
        self.listener: Any = None
        if config.login.share_listen:
            from twisted.internet.endpoints import serverFromString

            from spooler.listeners import ListenerService

            site = build_share_site(ShareResource(self.exchange), reactor, config.limits, self.is_peer)
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
        """A reload: new `[login] peers` (the endpoint's being on, its address and the keys need a restart)."""
        self.config = config

    def status(self) -> dict[str, Any]:
        """The peers and the last exchange with each (what, when, whether it worked)."""
        listening = self.listener.address if self.listener is not None else None
        return {"listening": listening,
                "peers": [self.exchanges.get(peer, {"peer": peer, "what": None, "at": None, "error": None,
                                                    "last_ok": None}) for peer in self.peers()]}  # fmt: skip

    def peers(self) -> list[str]:
        configured = list(self.config.login.peers) + self.trust.peers.addresses() + sorted(self.discovered)
        if self._peers is not None:
            configured += self._peers()
        return list(dict.fromkeys(configured))

    def is_peer(self, host: str) -> bool:
        """Whether a connection from `host` may reach the share endpoint at all, asked by the HTTP layer
        before anything is read: the address of a configured, enrolled or discovered peer (a peer
        configured by name counts by the address the name last resolved to). Every message is still
        authenticated; this keeps everyone else from costing the endpoint a byte of buffer."""
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

    def _post(self, peer: str, path: str, body: bytes) -> Deferred[Any]:
        agent = Agent(self._reactor, connectTimeout=PEER_TIMEOUT)
        headers = Headers({b"content-type": [b"application/json"], PEER_HEADER: [self.sealer.identity.key.encode()]})
        request = agent.request(b"POST", f"http://{peer}/v1/share/{path}".encode(), headers, BytesProducer(body))
        request.addTimeout(PEER_TIMEOUT, self._reactor)
        return request

    @inlineCallbacks
    def _read(self, peer: str, response: Any) -> Any:
        reading = read_capped(response, MAX_BODY)
        reading.addTimeout(PEER_TIMEOUT, self._reactor)
        try:
            data = yield reading
        except AnswerTooLarge:
            raise PeerAuthError(f"the answer of {peer} is too large") from None
        if response.code != 200:
            raise PeerAuthError(f"{peer} answered {response.code}: {data[:200]!r}")
        return data

    @inlineCallbacks
    def _contact(self, peer: str) -> Any:
        """Who listens at `peer` (its hello, remembered until an exchange with it fails)."""
        contact = self._contacts.get(peer)
        if contact is None:
            response = yield self._post(peer, "hello", b"{}")
            data = yield self._read(peer, response)
            try:
                certificate = json.loads(data)
            except ValueError:
                raise PeerAuthError(f"the hello of {peer} is not JSON") from None
            contact = self.sealer.contact(certificate)
            self._contacts[peer] = contact
        return contact

    @inlineCallbacks
    def _call(self, peer: str, path: str, payload: Any) -> Any:
        try:
            contact = yield self._contact(peer)
            body, nonce, aead = self.sealer.seal_request(contact, path, payload)
            response = yield self._post(peer, path, body)
            data = yield self._read(peer, response)
            return self.sealer.open_answer(aead, nonce, data)
        except Exception:
            self._contacts.pop(peer, None)  # ask who it is again next time (a new key, another spooler)
            raise

    def push(self, entry: UserEntry) -> None:
        """Send one user's records to every peer (after a login); failures are logged, not raised."""
        payload = entry_payload(entry, self.trust)
        if not payload["entries"]:
            return
        for peer in self.peers():
            self._call(peer, "push", payload).addCallbacks(lambda _, peer=peer: self._exchanged(peer, "push", None),
                                                           self._failed, errbackArgs=(peer, "push"))  # fmt: skip

    def push_revocations(self, revocations: list[Revocation]) -> None:
        """Send revocations the server just gave us to every peer (they win there too)."""
        records = self.trust.outgoing_revocations(revocations)[:MAX_REVOCATIONS]
        if not records:
            return
        payload = {"entries": [], "revocations": records}
        for peer in self.peers():
            self._call(peer, "push", payload).addCallbacks(lambda _, peer=peer: self._exchanged(peer, "push", None),
                                                           self._failed, errbackArgs=(peer, "push"))  # fmt: skip

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

    def _pulled(self, answer: Any, peer: str) -> dict[str, Any]:
        counts = receive(self.cache, answer, self.trust, now=self._reactor.seconds())
        self._exchanged(peer, "pull", None)
        _log_received(False, peer, counts)
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
