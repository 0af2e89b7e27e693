"""Sharing of login cache entries, the message layer: the sealing between two enrolled spoolers (not
enrolled, another receiver, bad MAC, replay, stale time, answers bound to their request) and what a
peer's payload does to the cache (signed records only, removed issuers, device rules, server grants)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet.task import Clock

from spooler.login.cache import CredentialCache
from spooler.login.entries import Credential, Revocation, UserEntry, is_revoked
from spooler.login.keys import LoginKeys
from spooler.login.peers import EnrolledPeers, PeerIdentity, make_peer
from spooler.login.share import PeerAuthError, PeerContact, PeerSealer, ShareExchange, receive, shared_payload
from spooler.login.trust import Trust
from spooler.signing import GRANT, REVOCATION, as_json, sign
from spooler.verifiers import make_verifier


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(1_800_000_000)
    return clock


class Spooler:
    """One spooler's keys, enrolled peers and sealer, in memory."""

    def __init__(self, clock: Clock, name: str) -> None:
        self.name = name
        self.identity = PeerIdentity.generate()
        self.peers = EnrolledPeers([])
        self.sealer = PeerSealer(self.identity, self.peers, clock)

    def enroll(self, other: Spooler) -> None:
        self.peers.add(make_peer(other.name, other.identity.key))

    def contact_of(self, other: Spooler) -> PeerContact:
        return self.sealer.contact(other.sealer.hello())


def pair(clock: Clock) -> tuple[Spooler, Spooler]:
    a, b = Spooler(clock, "a"), Spooler(clock, "b")
    a.enroll(b)
    b.enroll(a)
    return a, b


def test_a_sealed_request_and_its_answer_open(clock: Clock) -> None:
    a, b = pair(clock)
    body, nonce, aead = a.sealer.seal_request(a.contact_of(b), "push", {"entries": [1]})
    assert b"entries" not in body  # encrypted in transit
    payload, seen_nonce, their_aead, sender = b.sealer.open_request("push", body)
    assert payload == {"entries": [1]} and seen_nonce == nonce and sender == a.identity.key
    answer = b.sealer.seal_answer(their_aead, seen_nonce, {"ok": True})
    assert a.sealer.open_answer(aead, nonce, answer) == {"ok": True}


def test_a_spooler_not_enrolled_is_refused_both_ways(clock: Clock) -> None:
    a, b = pair(clock)
    stranger = Spooler(clock, "stranger")
    stranger.enroll(b)  # the stranger enrolled b, but b never enrolled the stranger
    body, _, _ = stranger.sealer.seal_request(stranger.contact_of(b), "push", {"entries": []})
    with pytest.raises(PeerAuthError, match="not an enrolled peer"):
        b.sealer.open_request("push", body)
    with pytest.raises(PeerAuthError, match="not an enrolled peer"):
        b.sealer.contact(stranger.sealer.hello())  # a client does not talk to a key it did not enroll


def test_a_message_for_another_spooler_or_a_forged_sealing_key_is_refused(clock: Clock) -> None:
    a, b = pair(clock)
    c = Spooler(clock, "c")
    c.enroll(a)
    a.enroll(c)
    body, _, _ = a.sealer.seal_request(a.contact_of(c), "push", {"entries": []})
    with pytest.raises(PeerAuthError, match="another spooler"):
        b.sealer.open_request("push", body)
    # Someone puts their own sealing key under a's name: the certificate does not verify.
    forged = a.sealer.hello()
    forged["kx"] = base64.b64encode(bytes(32)).decode()
    with pytest.raises(PeerAuthError, match="not signed"):
        b.sealer.contact(forged)


def test_an_altered_message_is_refused(clock: Clock) -> None:
    a, b = pair(clock)
    body, _, _ = a.sealer.seal_request(a.contact_of(b), "push", {"entries": []})
    envelope = json.loads(body)
    sealed = bytearray(base64.b64decode(envelope["ct"]))
    sealed[0] ^= 1
    envelope["ct"] = base64.b64encode(bytes(sealed)).decode()
    with pytest.raises(PeerAuthError, match="does not open"):
        b.sealer.open_request("push", json.dumps(envelope).encode())


@pytest.mark.parametrize("change", ["ts", "path"])
def test_the_time_and_path_are_authenticated(clock: Clock, change: str) -> None:
    a, b = pair(clock)
    body, _, _ = a.sealer.seal_request(a.contact_of(b), "push", {"entries": []})
    if change == "ts":
        envelope = json.loads(body)
        envelope["ts"] += 1
        with pytest.raises(PeerAuthError, match="does not open"):
            b.sealer.open_request("push", json.dumps(envelope).encode())
    else:
        with pytest.raises(PeerAuthError, match="does not open"):
            b.sealer.open_request("pull", body)


def test_a_replay_is_refused(clock: Clock) -> None:
    a, b = pair(clock)
    body, _, _ = a.sealer.seal_request(a.contact_of(b), "push", {"entries": []})
    b.sealer.open_request("push", body)
    clock.advance(5)
    with pytest.raises(PeerAuthError, match="replay"):
        b.sealer.open_request("push", body)


@pytest.mark.parametrize("skew", [-61.0, 61.0, -59.0, 59.0])
def test_a_stale_or_future_time_is_refused(clock: Clock, skew: float) -> None:
    a, b = pair(clock)
    sender_clock = Clock()
    sender_clock.advance(clock.seconds() + skew)
    sender = PeerSealer(a.identity, a.peers, sender_clock)
    body, _, _ = sender.seal_request(a.contact_of(b), "push", {"entries": []})
    if abs(skew) <= 60:
        assert b.sealer.open_request("push", body)[0] == {"entries": []}
    else:
        with pytest.raises(PeerAuthError, match="stale"):
            b.sealer.open_request("push", body)


def test_an_answer_for_another_request_is_refused(clock: Clock) -> None:
    a, b = pair(clock)
    contact = a.contact_of(b)
    first, _, _ = a.sealer.seal_request(contact, "pull", {})
    _, second_nonce, aead = a.sealer.seal_request(contact, "pull", {})
    _, nonce, their_aead, _ = b.sealer.open_request("pull", first)
    old_answer = b.sealer.seal_answer(their_aead, nonce, {"entries": []})
    with pytest.raises(PeerAuthError):
        a.sealer.open_answer(aead, second_nonce, old_answer)
    with pytest.raises(PeerAuthError, match="not a sealed"):
        b.sealer.open_request("pull", b"{\"v\": 2}")


# -- what a peer's payload does to the cache -------------------------------------------------------


def cache_at(tmp_path: Path) -> CredentialCache:
    return CredentialCache.open(tmp_path / "login.db", LoginKeys.open_or_create(tmp_path / "keys" / "k"))


def learned(user: str, verified_at: float, *, secret: str = "1234", devices: tuple[str, ...] = ("*",),
            origin: str = "login", grant: Any = None) -> UserEntry:  # fmt: skip
    """An entry as an online login (or a sync) leaves it at the spooler that learned it."""
    verifier = grant[1] if grant else make_verifier(secret, n=16)
    credential = Credential("pin-1", "pin", verifier, verified_at, origin, origin, "fp-local", devices,
                            grant=grant[0] if grant else None, grant_until=grant[2] if grant else None)  # fmt: skip
    return UserEntry(user, {"full_name": user, "email": "", "groups": []}, {"pin-1": credential}, verified_at,
                     verified_at, origin)  # fmt: skip


def server_grant(server: Ed25519PrivateKey, user: str, at: float, *, secret: str = "1234",
                 devices: list[str] | None = None, until: float | None = None) -> tuple[Any, str, float]:  # fmt: skip
    from spooler.refserver.store import iso

    verifier = make_verifier(secret, n=16)
    until = until if until is not None else at + 86400
    statement = sign(server, GRANT, {"user": user, "credential": "pin-1", "kind": "pin", "verifier": verifier,
                                     "devices": devices or ["*"], "issued_at": iso(at), "expires_at": iso(until)})
    return statement, verifier, until


def trust_of(spooler: Spooler, device: str, server: Ed25519PrivateKey | None = None) -> Trust:
    return Trust(device, spooler.peers, identity=spooler.identity,
                 server_key=server.public_key() if server is not None else None)  # fmt: skip


def test_signed_entries_travel_and_a_removed_issuer_stops_counting_at_once(tmp_path: Path, clock: Clock) -> None:
    a, b = pair(clock)
    c = Spooler(clock, "c")
    for x, y in ((b, c), (c, b), (c, a)):
        x.enroll(y)
    now = clock.seconds()
    at_a, at_b, at_c = cache_at(tmp_path / "a"), cache_at(tmp_path / "b"), cache_at(tmp_path / "c")
    at_a.put(learned("alice", now - 10))
    at_a.put(learned("synced", now - 10, origin="sync"))
    at_a.put(learned("only-a", now - 10, devices=("branch-1",)))
    at_a.add_revocations([Revocation("bob", "user", None, now - 5)])
    payload = json.loads(json.dumps(shared_payload(at_a, trust_of(a, "branch-1"))))
    assert "fingerprint" not in json.dumps(payload) and "fp-local" not in json.dumps(payload)
    assert len(payload["entries"]) == 1  # synced users stay with their device; only-a is for branch-1 only
    trust_b = trust_of(b, "branch-2")
    assert receive(at_b, payload, trust_b, now=now) == {"entries": 1, "revocations": 1, "not_here": 0, "refused": {}}
    alice = at_b.entries["alice"].credentials["pin-1"]
    assert (alice.source, alice.issuer, alice.fingerprint) == ("peer", a.identity.key, None)
    assert at_b.entries["alice"].renewed_at == now - 10  # counts from the login it came from
    assert receive(at_b, payload, trust_b, now=now)["entries"] == 0  # nothing new the second time
    # b passes a's records on to c as a signed them.
    trust_c = trust_of(c, "branch-3")
    relayed = json.loads(json.dumps(shared_payload(at_b, trust_b)))
    assert relayed["entries"] == payload["entries"]
    receive(at_c, relayed, trust_c, now=now)
    assert trust_c.usable(at_c.entries["alice"].credentials["pin-1"])
    assert len(trust_c.counting(at_c.revocations)) == 1
    # c removes a: a's entry and revocation stop counting, without any cleanup.
    c.peers.remove("a")
    assert not trust_c.usable(at_c.entries["alice"].credentials["pin-1"])
    assert trust_c.counting(at_c.revocations) == []
    # ... and nobody can bring them back through c: b's relay of a's records is refused now.
    assert receive(at_c, relayed, trust_c, now=now)["refused"] == {"its issuer is not an enrolled peer": 2}
    assert shared_payload(at_c, trust_c) == {"entries": [], "revocations": []}
    # a's own records come back to a as nothing new.
    assert receive(at_a, relayed, trust_of(a, "branch-1"), now=now)["entries"] == 0


def test_a_record_altered_or_signed_by_someone_else_is_refused(tmp_path: Path, clock: Clock) -> None:
    a, b = pair(clock)
    mallory = PeerIdentity.generate()
    now = clock.seconds()
    at_a, at_b = cache_at(tmp_path / "a"), cache_at(tmp_path / "b")
    at_a.put(learned("alice", now - 10))
    record = shared_payload(at_a, trust_of(a, "branch-1"))["entries"][0]
    body = json.loads(base64.b64decode(record["payload"]))
    body["credential"]["verifier"] = make_verifier("0000", n=16)
    altered = {"payload": base64.b64encode(json.dumps(body).encode()).decode(), "signature": record["signature"]}
    from spooler.signing import PEER_RECORD

    resigned = as_json(sign(mallory.signing, PEER_RECORD, body))  # mallory's key, a's name as issuer
    counts = receive(at_b, {"entries": [altered, resigned, {"payload": "!!", "signature": "x"}, "junk"]},
                     trust_of(b, "branch-2"), now=now)  # fmt: skip
    assert counts["entries"] == 0 and sum(counts["refused"].values()) == 4
    assert counts["refused"]["its issuer's signature does not verify"] == 2
    assert "alice" not in at_b.entries


def test_a_peer_entry_not_valid_on_this_device_is_left_out(tmp_path: Path, clock: Clock) -> None:
    a, b = pair(clock)
    now = clock.seconds()
    at_a, at_b = cache_at(tmp_path / "a"), cache_at(tmp_path / "b")
    at_a.put(learned("alice", now - 10, devices=("branch-1", "branch-3")))
    counts = receive(at_b, shared_payload(at_a, trust_of(a, "branch-1")), trust_of(b, "branch-2"), now=now)
    assert (counts["entries"], counts["not_here"]) == (0, 1) and "alice" not in at_b.entries
    counts = receive(at_b, shared_payload(at_a, trust_of(a, "branch-1")), trust_of(b, "branch-3"), now=now)
    assert counts["entries"] == 1


def test_with_a_server_key_a_peer_entry_needs_the_servers_grant(tmp_path: Path, clock: Clock) -> None:
    a, b = pair(clock)
    server = Ed25519PrivateKey.generate()
    now = clock.seconds()
    at_a, at_b = cache_at(tmp_path / "a"), cache_at(tmp_path / "b")
    at_a.put(learned("alice", now - 10, grant=server_grant(server, "alice", now - 10)))
    at_a.put(learned("mallory-made", now - 10))  # no grant: what a stolen spooler could make up
    other = Ed25519PrivateKey.generate()
    at_a.put(learned("wrong-server", now - 10, grant=server_grant(other, "wrong-server", now - 10)))
    at_a.put(learned("lapsed", now - 10, grant=server_grant(server, "lapsed", now - 100, until=now - 1)))
    statement, _, until = server_grant(server, "swapped", now - 10, secret="9999")
    at_a.put(learned("swapped", now - 10, grant=(statement, make_verifier("0000", n=16), until)))
    at_a.add_revocations([Revocation("bob", "user", None, now - 5)])  # a revocation the server did not sign
    signed = sign(server, REVOCATION, {"user": "carol", "kind": "pin", "credential": None,
                                       "revoked_at": "2027-01-15T08:00:00.000Z"})  # fmt: skip
    at_a.add_revocations([Revocation("carol", "pin", None, now - 5, signed=signed)])
    trust_b = trust_of(b, "branch-2", server)
    counts = receive(at_b, shared_payload(at_a, trust_of(a, "branch-1")), trust_b, now=now)
    assert counts["entries"] == 1 and set(at_b.entries) == {"alice"}
    unsigned = "no valid server signature (expected a signed statement {\"payload\": ..., \"signature\": ...})"
    assert counts["refused"] == {
        unsigned: 2,  # mallory-made, and bob's revocation
        "no valid server signature (the signature does not verify (spooler-grant/v1))": 1,  # another key
        "the server's grant has expired": 1,
        "the server's grant is for another credential": 1,  # a real grant, another verifier
    }
    assert [r.user for r in at_b.revocations] == ["carol"] and at_b.revocations[0].signed == signed
    assert trust_b.grant_holds("alice", at_b.entries["alice"].credentials["pin-1"])


def test_a_peer_never_replaces_what_the_server_told_this_spooler(tmp_path: Path, clock: Clock) -> None:
    a, b = pair(clock)
    now = clock.seconds()
    at_a, at_b = cache_at(tmp_path / "a"), cache_at(tmp_path / "b")
    at_b.put(learned("alice", now - 100, secret="1234"))  # b saw alice log in, online
    at_a.put(learned("alice", now - 10, secret="0000"))  # a (stolen?) says alice's pin-1 is now 0000
    assert receive(at_b, shared_payload(at_a, trust_of(a, "branch-1")), trust_of(b, "branch-2"), now=now)["entries"] == 0
    assert at_b.entries["alice"].credentials["pin-1"].source == "login"


def test_a_peer_revocation_cannot_reach_into_the_future(tmp_path: Path, clock: Clock) -> None:
    a, b = pair(clock)
    now = clock.seconds()
    at_a, at_b = cache_at(tmp_path / "a"), cache_at(tmp_path / "b")
    at_a.add_revocations([Revocation("alice", "user", None, now + 10**6)])
    receive(at_b, shared_payload(at_a, trust_of(a, "branch-1")), trust_of(b, "branch-2"), now=now)
    later = learned("alice", now + 60).credentials["pin-1"]
    assert not is_revoked("alice", later, at_b.revocations)  # capped at the time it arrived


def test_the_exchange_answers_hello_and_refuses_strangers(tmp_path: Path, clock: Clock) -> None:
    a, b = pair(clock)
    exchange = ShareExchange(b.sealer, cache_at(tmp_path), trust_of(b, "branch-2"), clock)
    status, hello = exchange.answer("hello", b"", "127.0.0.1")
    assert status == 200 and json.loads(hello)["key"] == b.identity.key
    assert exchange.is_enrolled_peer(a.identity.key) and not exchange.is_enrolled_peer(PeerIdentity.generate().key)
    stranger = Spooler(clock, "s")
    stranger.enroll(b)
    body, _, _ = stranger.sealer.seal_request(stranger.contact_of(b), "pull", {})
    status, answer = exchange.answer("pull", body, "127.0.0.1")
    assert status == 401 and "not an enrolled peer" in json.loads(answer)["error"]


# -- the key pair and the enrolled peers on disk ---------------------------------------------------


def test_the_key_pair_is_made_once_and_private(tmp_path: Path) -> None:
    import os
    import stat

    path = tmp_path / "keys" / "peer.key"
    first = PeerIdentity.open_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert PeerIdentity.open_or_create(path).key == first.key
    path.write_text("{}")
    with pytest.raises(Exception, match="not a usable peer key file"):
        PeerIdentity.open_or_create(path)


def test_enrolled_peers_persist_and_refuse_nonsense(tmp_path: Path) -> None:
    from spooler.login.peers import PeerError
    from spooler.signing import SignatureError

    path = tmp_path / "keys" / "peers.json"
    peers = EnrolledPeers.load(path)
    own, other = PeerIdentity.generate().key, PeerIdentity.generate().key
    peers.add(make_peer("branch-2", other, "192.0.2.11:8640"))
    assert [p.to_dict() for p in EnrolledPeers.load(path)] == [{"name": "branch-2", "key": other,
                                                                "address": "192.0.2.11:8640"}]  # fmt: skip
    with pytest.raises(PeerError, match="enrolled already, as branch-2"):
        peers.add(make_peer("again", other))
    with pytest.raises(PeerError, match="own key"):
        peers.add(make_peer("me", own), own_key=own)
    for name, key, address in (("../x", other, None), ("b3", other, "nohost"), ("b3", other, "h:70000")):
        with pytest.raises(PeerError):
            make_peer(name, key, address)
    with pytest.raises(SignatureError):
        make_peer("b3", "ed25519:" + "A" * 43)
    assert peers.remove(other).name == "branch-2"  # by key, too
    assert len(EnrolledPeers.load(path)) == 0
    path.write_text("[]")
    with pytest.raises(Exception, match="not a file of enrolled peers"):
        EnrolledPeers.load(path)


def test_with_a_server_key_only_granted_credentials_are_shared(tmp_path: Path, clock: Clock) -> None:
    a, _ = pair(clock)
    server = Ed25519PrivateKey.generate()
    now = clock.seconds()
    at_a = cache_at(tmp_path)
    at_a.put(learned("alice", now - 10, grant=server_grant(server, "alice", now - 10)))
    at_a.put(learned("before-the-key", now - 10))  # learned before [server] signing_key was set
    shared = shared_payload(at_a, trust_of(a, "branch-1", server))["entries"]
    assert [json.loads(base64.b64decode(r["payload"]))["user"] for r in shared] == ["alice"]
