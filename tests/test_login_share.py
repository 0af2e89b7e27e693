"""Sharing of login cache entries: the fleet authentication (bad MAC, other key, replay, stale time,
answers bound to their request) and the merge of what a peer sends (newest wins, revocation wins)."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
import pytest
from twisted.internet.task import Clock

from spooler.login.cache import CredentialCache
from spooler.login.entries import Credential, Revocation, UserEntry, is_revoked
from spooler.login.keys import LoginKeys
from spooler.login.share import FleetAuthError, FleetSealer, receive, shared_payload
from spooler.verifiers import make_verifier


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(1_800_000_000)
    return clock


def sealers(clock: Clock) -> tuple[FleetSealer, FleetSealer]:
    key = secrets.token_bytes(32)
    return FleetSealer(key, clock), FleetSealer(key, clock)


def test_a_sealed_request_and_its_answer_open(clock: Clock) -> None:
    sender, receiver = sealers(clock)
    body, nonce = sender.seal_request("push", {"entries": [1]})
    assert b"entries" not in body  # encrypted in transit
    payload, seen_nonce = receiver.open_request("push", body)
    assert payload == {"entries": [1]} and seen_nonce == nonce
    answer = receiver.seal_answer(seen_nonce, {"ok": True})
    assert sender.open_answer(nonce, answer) == {"ok": True}


def test_an_altered_message_is_refused(clock: Clock) -> None:
    sender, receiver = sealers(clock)
    body, _ = sender.seal_request("push", {"entries": []})
    envelope = json.loads(body)
    sealed = bytearray(base64.b64decode(envelope["ct"]))
    sealed[0] ^= 1
    envelope["ct"] = base64.b64encode(bytes(sealed)).decode()
    with pytest.raises(FleetAuthError, match="does not open"):
        receiver.open_request("push", json.dumps(envelope).encode())


@pytest.mark.parametrize("change", ["ts", "path"])
def test_the_time_and_path_are_authenticated(clock: Clock, change: str) -> None:
    sender, receiver = sealers(clock)
    body, _ = sender.seal_request("push", {"entries": []})
    if change == "ts":
        envelope = json.loads(body)
        envelope["ts"] += 1
        with pytest.raises(FleetAuthError, match="does not open"):
            receiver.open_request("push", json.dumps(envelope).encode())
    else:
        with pytest.raises(FleetAuthError, match="does not open"):
            receiver.open_request("pull", body)


def test_another_fleet_key_is_refused(clock: Clock) -> None:
    body, _ = FleetSealer(secrets.token_bytes(32), clock).seal_request("pull", {})
    with pytest.raises(FleetAuthError, match="does not open"):
        FleetSealer(secrets.token_bytes(32), clock).open_request("pull", body)


def test_a_replay_is_refused(clock: Clock) -> None:
    sender, receiver = sealers(clock)
    body, _ = sender.seal_request("push", {"entries": []})
    receiver.open_request("push", body)
    clock.advance(5)
    with pytest.raises(FleetAuthError, match="replay"):
        receiver.open_request("push", body)


@pytest.mark.parametrize("skew", [-61.0, 61.0, -59.0, 59.0])
def test_a_stale_or_future_time_is_refused(clock: Clock, skew: float) -> None:
    key = secrets.token_bytes(32)
    sender_clock = Clock()
    sender_clock.advance(clock.seconds() + skew)
    body, _ = FleetSealer(key, sender_clock).seal_request("push", {"entries": []})
    receiver = FleetSealer(key, clock)
    if abs(skew) <= 60:
        assert receiver.open_request("push", body)[0] == {"entries": []}
    else:
        with pytest.raises(FleetAuthError, match="stale"):
            receiver.open_request("push", body)


def test_an_answer_for_another_request_is_refused(clock: Clock) -> None:
    sender, receiver = sealers(clock)
    first, _ = sender.seal_request("pull", {})
    second, second_nonce = sender.seal_request("pull", {})
    _, nonce = receiver.open_request("pull", first)
    old_answer = receiver.seal_answer(nonce, {"entries": []})
    with pytest.raises(FleetAuthError):
        sender.open_answer(second_nonce, old_answer)
    with pytest.raises(FleetAuthError, match="not a sealed"):
        receiver.open_request("pull", b"{\"v\": 1}")


# -- merging what a peer sends ---------------------------------------------------------------------


def cache_at(tmp_path: Path) -> CredentialCache:
    return CredentialCache.open(tmp_path / "login.db", LoginKeys.open_or_create(tmp_path / "keys" / "k"))


def user_entry(user: str, verified_at: float, updated_at: float, *, origin: str = "login",
               expires: float = 2_000_000_000.0) -> UserEntry:  # fmt: skip
    credential = Credential("pin-1", "pin", make_verifier("1234", n=16), verified_at, origin, origin, "fp-local")
    return UserEntry(user, {"full_name": user, "email": "", "groups": []}, {"pin-1": credential}, expires,
                     updated_at, origin)  # fmt: skip


def test_peer_entries_merge_newest_wins_and_revocations_win(tmp_path: Path, clock: Clock) -> None:
    sender, receiver = cache_at(tmp_path / "a"), cache_at(tmp_path / "b")
    now = clock.seconds()
    sender.put(user_entry("alice", now - 10, now - 10))
    sender.put(user_entry("synced", now - 10, now - 10, origin="sync"))
    sender.add_revocations([Revocation("bob", "user", None, now - 5)])
    receiver.put(user_entry("alice", now - 100, now - 100))
    receiver.put(user_entry("bob", now - 50, now - 50))
    payload = json.loads(json.dumps(shared_payload(sender)))
    assert "fingerprint" not in json.dumps(payload) and [e["user"] for e in payload["entries"]] == ["alice"]
    counts = receive(receiver, payload, now=now, validity=3600)
    assert counts == {"entries": 1, "revocations": 1}
    alice = receiver.entries["alice"]
    assert alice.credentials["pin-1"].verified_at == now - 10 and alice.source == "peer"
    assert alice.credentials["pin-1"].fingerprint is None  # another spooler's key: useless here
    assert "synced" not in receiver.entries  # synced users stay with their device
    assert is_revoked("bob", receiver.entries["bob"].credentials["pin-1"], receiver.revocations)
    assert receive(receiver, payload, now=now, validity=3600) == {"entries": 0, "revocations": 0}
    older = {"entries": [user_entry("alice", now - 500, now - 500).to_dict(shared=True)], "revocations": []}
    receive(receiver, older, now=now, validity=3600)
    assert receiver.entries["alice"].credentials["pin-1"].verified_at == now - 10  # the older one lost


def test_peer_expiry_is_capped_and_bad_entries_skipped(tmp_path: Path, clock: Clock) -> None:
    receiver = cache_at(tmp_path)
    now = clock.seconds()
    far = user_entry("alice", now, now + 10**6, expires=now + 10**9).to_dict(shared=True)
    counts = receive(receiver, {"entries": [far, {"user": ""}, "junk"], "revocations": [{"x": 1}]}, now=now,
                     validity=3600)  # fmt: skip
    assert counts == {"entries": 1, "revocations": 0}
    assert receiver.entries["alice"].expires_at == now + 3600 and receiver.entries["alice"].updated_at == now
    with pytest.raises(ValueError):
        receive(receiver, {"entries": [far] * 1001}, now=now, validity=3600)
