"""Offline login core: the encrypted cache (tamper, wrong key, rotation), the failure budgets (Clock),
the revocation and sync rules, the lookup index, and the login decisions with a scripted central API
(validity computed at the check, devices, online refusals, the server's signed grants)."""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock

from conftest import run_synchronously
from spooler.centralapi import CentralApiDown, CentralApiRefused
from spooler.config import LoginConfig
from spooler.login.cache import CacheError, CredentialCache
from spooler.central.myq import CAPABILITIES as MYQ_CAPABILITIES
from spooler.login.entries import Credential, Revocation, UserEntry, apply_sync, is_revoked, pair_secret
from spooler.login.keys import KeyFileError, LoginKeys
from spooler.login.service import OFFLINE_NOTICE, LoginOutcome, LoginRefused, LoginService
from spooler.login.budget import BudgetPolicy, FailureBudgets
from spooler.verifiers import check_verifier, make_verifier


def cheap(secret: str) -> str:
    return make_verifier(secret, n=16)


def cred(cid: str, kind: str = "pin", secret: str = "1234", at: float = 100.0, **kw: Any) -> Credential:
    return Credential(cid, kind, cheap(secret), at, **kw)


def entry(user: str = "alice", *creds: Credential, renewed: float = 100.0, updated: float = 100.0,
          source: str = "login") -> UserEntry:  # fmt: skip
    return UserEntry(user, {"full_name": user.title(), "email": "", "groups": []},
                     {c.id: c for c in creds or (cred("pin-1"),)}, renewed, updated, source)  # fmt: skip


# -- the cache at rest -----------------------------------------------------------------------------


def open_cache(tmp_path: Path) -> CredentialCache:
    keys = LoginKeys.open_or_create(tmp_path / "keys" / "login.key")
    return CredentialCache.open(tmp_path / "login.db", keys, lookup_cost=16)


def test_key_file_is_private_and_created_once(tmp_path: Path) -> None:
    first = LoginKeys.open_or_create(tmp_path / "keys" / "login.key")
    assert stat.S_IMODE(os.stat(tmp_path / "keys" / "login.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700
    assert LoginKeys.open_or_create(tmp_path / "keys" / "login.key") == first


def test_entries_survive_reopening(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    cache.put(entry("alice"))
    cache.add_revocations([Revocation("bob", "user", None, 50.0)])
    cache.close()
    again = open_cache(tmp_path)
    assert again.entries["alice"].to_dict() == cache.entries["alice"].to_dict()
    assert again.revocations == [Revocation("bob", "user", None, 50.0)]


def test_nothing_readable_at_rest(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    cache.put(entry("alice"))
    verifier = cache.entries["alice"].credentials["pin-1"].verifier
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("login.db*"))
    assert raw and b"alice" not in raw and verifier.split("$")[-1].encode() not in raw and b"scrypt" not in raw
    cache.close()


def test_a_tampered_row_is_refused(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    cache.put(entry("alice"))
    cache.close()
    db = sqlite3.connect(tmp_path / "login.db")
    (blob,) = db.execute("SELECT blob FROM sealed WHERE kind = 'user'").fetchone()
    db.execute("UPDATE sealed SET blob = ? WHERE kind = 'user'", (blob[:-1] + bytes([blob[-1] ^ 1]),))
    db.commit()
    db.close()
    keys = LoginKeys.load(tmp_path / "keys" / "login.key")
    with pytest.raises(CacheError, match="altered"):
        CredentialCache.open(tmp_path / "login.db", keys, strict=True)
    lenient = CredentialCache.open(tmp_path / "login.db", keys)
    assert lenient.entries == {} and lenient.unreadable == 1


def test_a_row_moved_to_another_slot_is_refused(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    cache.put(entry("alice"))
    cache.close()
    db = sqlite3.connect(tmp_path / "login.db")
    db.execute("UPDATE sealed SET slot = 'elsewhere' WHERE kind = 'user'")
    db.commit()
    db.close()
    with pytest.raises(CacheError):
        CredentialCache.open(tmp_path / "login.db", LoginKeys.load(tmp_path / "keys" / "login.key"), strict=True)


def test_the_wrong_key_is_refused(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    cache.put(entry("alice"))
    cache.close()
    other = LoginKeys.generate()
    with pytest.raises(CacheError, match="key file does not hold"):
        CredentialCache.open(tmp_path / "login.db", other, strict=True)
    same_id = LoginKeys(LoginKeys.load(tmp_path / "keys" / "login.key").current, {}, other.fingerprint_key)
    same_id.keys[same_id.current] = other.current_key
    with pytest.raises(CacheError, match="altered"):
        CredentialCache.open(tmp_path / "login.db", same_id, strict=True)


def test_a_broken_key_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "login.key").write_text('{"version": 1, "keys": {"k1": "c2hvcnQ="}, "current": "k1"}')
    with pytest.raises(KeyFileError):
        LoginKeys.load(tmp_path / "login.key")


def test_rotation_reencrypts_everything_under_a_new_key(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    cache.put(entry("alice", cred("pin-1", fingerprint="abc")))
    cache.put(entry("bob"))
    cache.add_revocations([Revocation("carol", "user", None, 1.0)])
    cache.set_sync_since("2026-01-01T00:00:00Z")
    old = LoginKeys.load(tmp_path / "keys" / "login.key")
    new_id = cache.rotate()
    cache.close()
    keys = LoginKeys.load(tmp_path / "keys" / "login.key")
    assert keys.current == new_id != old.current and list(keys.keys) == [new_id]
    assert keys.fingerprint_key != old.fingerprint_key
    db = sqlite3.connect(tmp_path / "login.db")
    assert {row[0] for row in db.execute("SELECT key_id FROM sealed")} == {new_id}
    db.close()
    with pytest.raises(CacheError):
        CredentialCache.open(tmp_path / "login.db", old, strict=True)
    again = CredentialCache.open(tmp_path / "login.db", keys, strict=True)
    assert set(again.entries) == {"alice", "bob"} and again.sync_since == "2026-01-01T00:00:00Z"
    assert again.entries["alice"].credentials["pin-1"].fingerprint is None  # the old key's fingerprints went
    assert again.revocations == [Revocation("carol", "user", None, 1.0)]


def test_a_rotation_cut_short_leaves_an_openable_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = open_cache(tmp_path)
    cache.put(entry("alice"))

    def crash(*args: Any) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(CredentialCache, "_put_meta", crash)  # fails inside the transaction
    with pytest.raises(OSError):
        cache.rotate()
    cache.close()
    keys = LoginKeys.load(tmp_path / "keys" / "login.key")
    assert len(keys.keys) == 2  # the new key was added, the old one kept
    assert set(CredentialCache.open(tmp_path / "login.db", keys, strict=True).entries) == {"alice"}


# -- merge rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("revocation", "credential", "revoked"),
    [(Revocation("alice", "user", None, 150), cred("pin-1", at=100), True),
     (Revocation("alice", "user", None, 50), cred("pin-1", at=100), False),  # verified after: the newer entry wins
     (Revocation("alice", "pin", None, 150), cred("pin-1", at=100), True),
     (Revocation("alice", "pin", "pin-2", 150), cred("pin-1", at=100), False),
     (Revocation("alice", "card", None, 150), cred("pin-1", at=100), False),
     (Revocation("bob", "user", None, 150), cred("pin-1", at=100), False),
     (Revocation("alice", "pin", "pin-1", 100), cred("pin-1", at=100), True)],
)  # fmt: skip
def test_revocation_rules(revocation: Revocation, credential: Credential, revoked: bool) -> None:
    assert is_revoked("alice", credential, [revocation]) is revoked


def test_a_sync_replaces_synced_credentials_and_keeps_logins() -> None:
    local = entry("alice", cred("pin-1", origin="sync", source="sync", fingerprint="fp"),
                  cred("card-9", "card", origin="sync", source="sync"), cred("password", "password", "pw"))
    synced = entry("alice", cred("pin-1", at=900, origin="sync", source="sync"), updated=900, source="sync")
    result = apply_sync(local, synced)
    assert set(result.credentials) == {"pin-1", "password"}
    assert result.credentials["pin-1"].verified_at == 900 and result.credentials["pin-1"].fingerprint == "fp"


# -- failure budgets --------------------------------------------------------------------------------


def test_a_budget_locks_after_free_failures_with_doubling_delays() -> None:
    clock = Clock()
    budgets = FailureBudgets.open(":memory:", clock)
    policy = BudgetPolicy(free=3, first_delay=60, max_delay=200)
    for _ in range(2):
        budgets.charge("t1", policy)
    assert budgets.wait("t1", policy) is None
    budgets.charge("t1", policy)
    assert budgets.wait("t1", policy) == 60
    assert budgets.wait("t2", policy) is None
    clock.advance(59)
    assert budgets.wait("t1", policy) == 1
    clock.advance(1)
    assert budgets.wait("t1", policy) is None
    budgets.charge("t1", policy)  # the count outlived the lock: a longer one
    assert budgets.wait("t1", policy) == 120
    clock.advance(120)
    budgets.charge("t1", policy)
    assert budgets.wait("t1", policy) == 200  # capped
    clock.advance(200 * 10)  # one failure forgotten per max_delay: all of them, and no lock
    assert budgets.failures("t1", policy) == 0
    budgets.charge("t1", policy)
    assert budgets.wait("t1", policy) is None


def test_a_success_gives_back_only_its_own_charge() -> None:
    clock = Clock()
    budgets = FailureBudgets.open(":memory:", clock)
    policy = BudgetPolicy(free=5, first_delay=60, max_delay=600)
    for _ in range(4):
        budgets.charge("device:pin", policy)
    right = budgets.charge("device:pin", policy)  # the fifth attempt locks while it is checked ...
    assert budgets.wait("device:pin", policy) == 60
    budgets.refund(right)  # ... and it was right: its charge and its lock go, the four failures stay
    assert budgets.wait("device:pin", policy) is None and budgets.failures("device:pin", policy) == 4
    budgets.charge("device:pin", policy)
    assert budgets.wait("device:pin", policy) == 60


def test_a_clock_set_back_cannot_lock_for_longer_than_the_cap() -> None:
    clock = Clock()
    clock.advance(10_000)
    budgets = FailureBudgets.open(":memory:", clock)
    policy = BudgetPolicy(free=1, first_delay=60, max_delay=120)
    budgets.charge("t", policy)
    clock.rightNow -= 5_000
    assert budgets.wait("t", policy) == 120


@pytest.mark.parametrize("policy", [BudgetPolicy(10, 300, 900), BudgetPolicy(5, 300, 900), BudgetPolicy(5, 30, 900),
                                    BudgetPolicy(3, 60, 60), BudgetPolicy(1, 1, 3600)])
def test_the_guess_bound_holds_for_a_guesser_on_a_clock(policy: BudgetPolicy) -> None:
    """A guesser who tries the moment each lock ends, against FailureBudgets on a Clock for a day:
    the count is the pure simulation's, and never more than the documented bound at any hour."""
    clock = Clock()
    budgets = FailureBudgets.open(":memory:", clock)
    guesses, hours = 0, 24
    per_hour = []
    while clock.seconds() <= hours * 3600:
        wait = budgets.wait("device:pin", policy)
        if wait is not None:
            clock.advance(wait)
            continue
        budgets.charge("device:pin", policy)
        guesses += 1
        per_hour.append(clock.seconds())
    assert guesses == policy.greedy_guesses(hours * 3600)
    for hour in range(1, hours + 1):
        assert sum(1 for t in per_hour if t <= hour * 3600) <= policy.guess_bound(hour * 3600)


def test_budgets_survive_reopening_the_database(tmp_path: Path) -> None:
    clock = Clock()
    policy = BudgetPolicy(free=2, first_delay=60, max_delay=600)
    budgets = FailureBudgets.open(tmp_path / "login.db", clock)
    budgets.charge("device:pin", policy)
    budgets.charge("device:pin", policy)
    budgets.close()
    again = FailureBudgets.open(tmp_path / "login.db", clock)
    assert again.wait("device:pin", policy) == 60
    assert stat.S_IMODE(os.stat(tmp_path / "login.db").st_mode) == 0o600


def test_a_flood_of_new_scopes_does_not_push_out_a_count_under_attack(monkeypatch: pytest.MonkeyPatch) -> None:
    from spooler.login import budget

    monkeypatch.setattr(budget, "MAX_SCOPES", 50)
    clock = Clock()
    budgets = FailureBudgets.open(":memory:", clock)
    policy = BudgetPolicy(free=5, first_delay=60, max_delay=600)
    for _ in range(4):
        budgets.charge("user:alice", policy)
    for number in range(500):
        budgets.charge(f"user:made-up-{number}", policy)
    assert budgets.failures("user:alice", policy) == 4


# -- login decisions -------------------------------------------------------------------------------


class ScriptedApi:
    def __init__(self) -> None:
        self.answers: list[Any] = []
        self.calls: list[tuple[str, Any, Any]] = []

    def call(self, method: str, path: Any, body: Any = None, **kw: Any) -> Any:
        self.calls.append((method, path, body))
        answer = self.answers.pop(0)
        return fail(answer) if isinstance(answer, Exception) else succeed(answer)


def ok(name: str = "alice", credential: str = "pin-1") -> dict[str, Any]:
    return {"user": {"name": name, "full_name": "Alice Martin", "email": "a@x", "groups": ["staff"], "credit": 25.0},
            "method": "pin", "credential": credential, "server_time": "2026-11-25T00:00:00.000Z"}  # fmt: skip


@pytest.fixture
def rig(tmp_path: Path) -> Any:
    class Rig:
        clock = Clock()
        api = ScriptedApi()
        cache = open_cache(tmp_path)
        down = [False]
        config = LoginConfig(validity_hours=1.0, max_failures=5, lockout=300)

        def service(self, **changes: Any) -> LoginService:
            config = LoginConfig(**{**self.config.__dict__, **changes})
            return LoginService(self.clock, config, self.cache, device="branch-1", api=self.api,  # type: ignore[arg-type]
                                run_in_thread=run_synchronously, server_known_down=lambda: self.down[0])

    rig = Rig()
    rig.clock.advance(1_800_000_000)
    return rig


def login(service: LoginService, secret: str, user: str | None = None, method: str = "pin",
          terminal: str = "t1", card: str | None = None) -> LoginOutcome | LoginRefused:  # fmt: skip
    results: list[Any] = []
    service.login(method=method, secret=secret, user=user, terminal=terminal, card=card).addBoth(results.append)
    assert results, "the login did not finish synchronously"
    value = results[0]
    if hasattr(value, "value"):
        if isinstance(value.value, LoginRefused):
            return value.value
        value.raiseException()
    return value


def test_online_then_offline_with_the_same_pin(rig: Any) -> None:
    service = rig.service()
    rig.api.answers = [ok()]
    online = login(service, "1234")
    assert isinstance(online, LoginOutcome) and online.mode == "online" and online.notice is None
    assert online.profile["credit"] == 25.0 and online.valid_until == rig.clock.seconds() + 3600
    rig.api.answers = [CentralApiDown("refused")]
    rig.clock.advance(600)
    offline = login(service, "1234")
    assert isinstance(offline, LoginOutcome) and offline.mode == "offline" and offline.user == "alice"
    assert offline.notice == OFFLINE_NOTICE and offline.profile["credit"] is None
    assert offline.valid_until == rig.clock.seconds() + 3600  # renewed
    rig.api.answers = [CentralApiDown("refused")]
    wrong = login(service, "1111")
    assert isinstance(wrong, LoginRefused) and wrong.reason == "invalid"


def test_a_401_never_falls_back_to_the_cache(rig: Any) -> None:
    service = rig.service()
    rig.api.answers = [ok()]
    login(service, "1234")
    rig.api.answers = [CentralApiRefused(401, "invalid credentials")]
    refused = login(service, "1234")
    assert isinstance(refused, LoginRefused) and refused.reason == "invalid"


def test_a_server_known_down_is_not_asked(rig: Any) -> None:
    service = rig.service()
    rig.api.answers = [ok()]
    login(service, "1234")
    rig.down[0] = True
    outcome = login(service, "1234")
    assert isinstance(outcome, LoginOutcome) and outcome.mode == "offline"
    assert len(rig.api.calls) == 1


def test_expiry_and_revocation_offline(rig: Any) -> None:
    service = rig.service()
    rig.api.answers = [ok()]
    login(service, "1234")
    rig.down[0] = True
    rig.clock.advance(3601)
    expired = login(service, "1234")
    assert isinstance(expired, LoginRefused) and expired.reason == "expired"
    rig.cache.add_revocations([Revocation("alice", "user", None, 1_800_000_000 + 10**9)])
    revoked = login(service, "1234", terminal="t2")
    assert isinstance(revoked, LoginRefused) and revoked.reason == "revoked"


def test_offline_switched_off(rig: Any) -> None:
    service = rig.service(offline_enabled=False)
    rig.api.answers = [ok()]
    login(service, "1234")
    rig.api.answers = [CentralApiDown("refused")]
    refused = login(service, "1234")
    assert isinstance(refused, LoginRefused) and refused.reason == "offline-disabled"


def test_sixth_wrong_pin_is_locked_even_if_right(rig: Any) -> None:
    service = rig.service()
    rig.api.answers = [ok()]
    login(service, "1234")
    rig.down[0] = True
    for _ in range(5):
        assert login(service, "0000").reason == "invalid"  # type: ignore[union-attr]
    locked = login(service, "1234")
    assert isinstance(locked, LoginRefused) and locked.reason == "locked" and locked.retry_after == 300
    assert "5 minute" in locked.message
    other_terminal = login(service, "1234", terminal="t2")
    assert isinstance(other_terminal, LoginOutcome)
    rig.clock.advance(300)
    assert isinstance(login(service, "1234"), LoginOutcome)


class CombinedApi(ScriptedApi):
    """A scripted server that can check a card with its PIN or password (as MyQ X can)."""

    capabilities = MYQ_CAPABILITIES


CARD, PIN = "04C0FFEE5A17", "735194"


def test_a_card_and_pin_login_online_then_offline_needs_both_factors(rig: Any) -> None:
    rig.api = CombinedApi()
    service = rig.service()
    rig.api.answers = [ok(credential="card+pin")]
    online = login(service, PIN, method="card+pin", card=CARD)
    assert isinstance(online, LoginOutcome) and online.mode == "online", online
    assert rig.api.calls[-1][2] == {"device": "branch-1", "method": "card+pin", "secret": PIN, "card": CARD}
    [stored] = rig.cache.entries["alice"].credentials.values()
    assert (stored.id, stored.kind) == ("card+pin", "card+pin") and rig.cache.is_indexed(stored)
    # One verifier of the pair: neither factor alone, nor another split of the same characters, matches it.
    assert check_verifier(pair_secret(CARD, PIN), stored.verifier)
    assert not any(check_verifier(text, stored.verifier) for text in (PIN, CARD, CARD + PIN))
    rig.down[0] = True
    offline = login(service, PIN, method="card+pin", card=CARD)
    assert isinstance(offline, LoginOutcome) and (offline.user, offline.mode) == ("alice", "offline"), offline
    for secret, method, card in [(PIN, "pin", None), (CARD, "card", None), (PIN, "card+pin", "0FF1CE5A17"),
                                 (PIN[1:], "card+pin", CARD + PIN[0]), (PIN, "card+password", CARD)]:  # fmt: skip
        refused = login(service, secret, method=method, card=card, terminal=f"t-{method}-{card}")
        assert isinstance(refused, LoginRefused) and refused.reason == "invalid", (method, card, refused)


def test_a_wrong_second_factor_offline_counts_against_the_budgets(rig: Any) -> None:
    rig.api = CombinedApi()
    service = rig.service()
    rig.api.answers = [ok(credential="card+pin")]
    assert isinstance(login(service, PIN, method="card+pin", card=CARD), LoginOutcome)
    rig.down[0] = True
    for _ in range(5):
        wrong = login(service, "000000", method="card+pin", card=CARD)
        assert isinstance(wrong, LoginRefused) and wrong.reason == "invalid"
    assert service.budgets.failures("device:card+pin", service.device_policy) == 5
    assert service.budgets.failures("terminal:t1", service.user_policy) == 5
    locked = login(service, PIN, method="card+pin", card=CARD)  # the right pair, after the guesses
    assert isinstance(locked, LoginRefused) and locked.reason == "locked"


@pytest.mark.parametrize("method, card, user, words", [
    ("card+pin", None, None, "needs the card too"),
    ("card+password", "", None, "needs the card too"),
    ("card+pin", CARD, "alice", "names no user"),
    ("pin", CARD, None, "only a card and PIN or card and password login takes a card"),
])  # fmt: skip
def test_a_half_given_combined_login_is_refused_before_it_is_charged(rig: Any, method: str, card: str | None,
                                                                     user: str | None, words: str) -> None:  # fmt: skip
    rig.api = CombinedApi()
    service = rig.service()
    refused = login(service, PIN, user=user, method=method, card=card)
    assert isinstance(refused, LoginRefused) and refused.reason == "invalid" and words in refused.message
    assert rig.api.calls == [] and service.budgets.failures("terminal:t1", service.user_policy) == 0


def test_a_server_without_combined_logins_says_it_cannot_check_them(rig: Any) -> None:
    service = rig.service()  # the generic API's capabilities
    assert "card+pin" not in service.methods() and service.methods() == ["pin", "card", "password"]
    for method, words in (("card+pin", "card and PIN"), ("card+password", "card and password")):
        refused = login(service, PIN, method=method, card=CARD)
        assert isinstance(refused, LoginRefused) and refused.reason == "unsupported" and words in refused.message
    assert rig.api.calls == []


def test_a_synced_user_never_seen_logs_in_by_scan_then_by_fingerprint(rig: Any) -> None:
    for number in range(20):
        rig.cache.put(entry(f"user{number}", cred("pin-1", secret=f"{number:04d}", origin="sync", source="sync"),
                            renewed=rig.clock.seconds()))
    service = rig.service()
    rig.down[0] = True
    outcome = login(service, "0017")
    assert isinstance(outcome, LoginOutcome) and outcome.user == "user17"
    assert rig.cache.entries["user17"].credentials["pin-1"].fingerprint is not None
    assert rig.cache.indexed(rig.cache.lookup_key("pin", rig.cache.lookup("0017"))) == [("user17", "pin-1")]
    assert login(service, "0099").reason == "invalid"  # type: ignore[union-attr]


def test_password_needs_a_user_and_checks_only_that_user(rig: Any) -> None:
    rig.cache.put(entry("alice", cred("password", "password", "secret-a"), renewed=rig.clock.seconds()))
    service = rig.service()
    rig.down[0] = True
    assert login(service, "secret-a", method="password").reason == "invalid"  # type: ignore[union-attr]
    assert login(service, "secret-a", user="bob", method="password").reason == "invalid"  # type: ignore[union-attr]
    assert login(service, "secret-a", user="alice", method="password").user == "alice"  # type: ignore[union-attr]


def test_an_unexpected_error_is_refused_as_unavailable(rig: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    service = rig.service()
    rig.api.answers = [ok()]

    def broken(entry: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(rig.cache, "put", broken)
    refused = login(service, "1234")
    assert isinstance(refused, LoginRefused) and refused.reason == "unavailable"


def test_a_key_file_readable_by_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "login.key"
    LoginKeys.open_or_create(path)
    os.chmod(path, 0o644)
    LoginKeys.open_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_scans_queue_up_to_a_bound(rig: Any) -> None:
    from spooler.login.service import MAX_WAITING_SCANS

    rig.cache.put(entry("alice", cred("pin-1", secret="4321", origin="sync"), renewed=rig.clock.seconds()))
    held: list[Any] = []

    def parked(function: Any, *args: Any) -> Any:  # a run_in_thread whose work never ends (yet)
        from twisted.internet.defer import Deferred

        held.append((Deferred(), function, args))
        return held[-1][0]

    service = LoginService(rig.clock, rig.config, rig.cache, device="b", api=None, run_in_thread=parked)
    results: list[Any] = []
    for number in range(MAX_WAITING_SCANS + 2):
        service.login(method="pin", secret="0000", user=None, terminal=f"t{number}").addBoth(results.append)
    lookups = [item for item in held if getattr(item[1], "__name__", "") == "lookup"]
    assert len(lookups) == MAX_WAITING_SCANS + 2  # each attempt costs its lookup KDF first ...
    for item in lookups:
        held.remove(item)
        item[0].callback(item[1](*item[2]))
    # ... then the credential not in the index is scanned: one scan runs, the others wait, one is turned away.
    assert len(results) == 1 and results[0].value.reason == "unavailable"  # the one over the bound
    while held:
        deferred, function, args = held.pop(0)
        deferred.callback(function(*args))
    assert [r.value.reason for r in results[1:]] == ["invalid"] * (MAX_WAITING_SCANS + 1)


# -- issue 14: guessing, enumeration, the lookup index ---------------------------------------------


def test_own_pin_between_guesses_does_not_clear_the_count(rig: Any) -> None:
    """Finding 2a: 4 wrong PINs and the guesser's own PIN, again and again: the guesses add up."""
    rig.cache.put(entry("mallory", cred("pin-1", secret="1111"), renewed=rig.clock.seconds()))
    rig.cache.put(entry("victim", cred("pin-1", secret="7391"), renewed=rig.clock.seconds()))
    rig.down[0] = True
    service = rig.service()
    refused = []
    for _ in range(6):
        for wrong in ("0001", "0002", "0003", "0004"):
            refused.append(login(service, wrong).reason)  # type: ignore[union-attr]
        login(service, "1111")
    assert "locked" in refused  # by the terminal's count, then the device's: no clean slate per own login
    assert login(service, "7391").reason == "locked"  # type: ignore[union-attr]


def test_new_terminals_do_not_get_a_new_budget(rig: Any) -> None:
    """Finding 2b: one guess per address, many addresses: the device counts them all."""
    rig.cache.put(entry("victim", cred("pin-1", secret="7391"), renewed=rig.clock.seconds()))
    rig.down[0] = True
    service = rig.service()
    reasons = [login(service, f"{n:04d}", terminal=f"192.0.2.{n}").reason for n in range(12)]  # type: ignore[union-attr]
    assert reasons[:10] == ["invalid"] * 10 and reasons[10:] == ["locked", "locked"]
    assert login(service, "7391", terminal="198.51.100.1").reason == "locked"  # type: ignore[union-attr]
    # Card logins have their own count; a named password login only its user's and terminal's.
    rig.cache.put(entry("bob", cred("password", "password", "bob-pw"), renewed=rig.clock.seconds()))
    assert login(service, "bob-pw", user="bob", method="password", terminal="198.51.100.2").user == "bob"  # type: ignore[union-attr]
    rig.clock.advance(300)
    assert login(service, "7391", terminal="198.51.100.1").user == "victim"  # type: ignore[union-attr]


def test_the_device_budget_outlives_the_service(rig: Any, tmp_path: Path) -> None:
    """A restart (a new LoginService on the same database) keeps the lock."""
    rig.down[0] = True
    budgets = FailureBudgets.open(tmp_path / "login.db", rig.clock)
    service = LoginService(rig.clock, rig.config, rig.cache, device="b", api=None, run_in_thread=run_synchronously,
                           budgets=budgets)  # fmt: skip
    for n in range(10):
        login(service, f"{n:04d}", terminal=f"t{n}")
    budgets.close()
    again = LoginService(rig.clock, rig.config, rig.cache, device="b", api=None, run_in_thread=run_synchronously,
                         budgets=FailureBudgets.open(tmp_path / "login.db", rig.clock))  # fmt: skip
    locked = login(again, "1234", terminal="fresh")
    assert isinstance(locked, LoginRefused) and locked.reason == "locked" and locked.retry_after == 300


def test_an_unknown_user_costs_the_same_scrypt_as_a_known_one(rig: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 7: a wrong password of a known user and any password of an unknown one both run one
    scrypt check with the cached verifiers' parameters (the timing itself is in bench/login_scan.py)."""
    from spooler.login import service as service_module
    from spooler.verifiers import verifier_parameters

    rig.cache.put(entry("alice", cred("password", "password", "secret-a"), renewed=rig.clock.seconds()))
    rig.down[0] = True
    service = rig.service()
    checked: list[str] = []
    real = service_module.check_verifier

    def counting(secret: str, verifier: str) -> bool:
        checked.append(verifier)
        return real(secret, verifier)

    monkeypatch.setattr(service_module, "check_verifier", counting)
    known = login(service, "wrong", user="alice", method="password", terminal="t1")
    unknown = login(service, "wrong", user="nobody", method="password", terminal="t2")
    assert isinstance(known, LoginRefused) and isinstance(unknown, LoginRefused)
    assert (known.reason, known.message) == (unknown.reason, unknown.message)
    alice = rig.cache.entries["alice"].credentials["password"].verifier
    assert len(checked) == 2 and checked[0] == alice and checked[1] != alice
    assert verifier_parameters(checked[1]) == verifier_parameters(alice)


def test_synced_pins_with_lookups_cost_one_scrypt_per_attempt(rig: Any) -> None:
    """Finding 11: with the server's lookup KDF, a wrong PIN among 30 synced ones runs one scrypt
    (the lookup), a right one two (the lookup and its verifier): no scan."""
    from spooler.login.sync import synced_entry
    from spooler.verifiers import lookup_digest, make_lookup_kdf

    kdf = make_lookup_kdf(n=16)
    rig.cache.set_lookup_kdf(kdf, "server")
    for number in range(10):
        pins = [{"id": f"pin-{k}", "verifier": cheap(f"{number}{k}99"),
                 "lookup": base64.b64encode(lookup_digest(f"{number}{k}99", kdf)).decode()}
                for k in range(1, 4)]  # fmt: skip
        rig.cache.put(synced_entry({"name": f"user{number}", "pins": pins}, verified_at=1.0,
                                   now=rig.clock.seconds(), device="b", fingerprint=rig.cache.fingerprint))  # fmt: skip
    rig.down[0] = True
    calls: list[str] = []

    def counting(function: Any, *args: Any) -> Any:
        calls.append(getattr(function, "__name__", repr(function)))
        return run_synchronously(function, *args)

    service = LoginService(rig.clock, rig.config, rig.cache, device="b", api=None, run_in_thread=counting)
    assert login(service, "0000").reason == "invalid"  # type: ignore[union-attr]
    assert calls == ["lookup"]
    calls.clear()
    assert login(service, "7399", terminal="t2").user == "user7"  # type: ignore[union-attr]
    assert calls == ["lookup", "_check_many"]


def test_a_new_lookup_kdf_retires_the_old_fingerprints(rig: Any) -> None:
    from spooler.verifiers import make_lookup_kdf

    rig.api.answers = [ok()]
    service = rig.service()
    login(service, "1234")
    pin = rig.cache.entries["alice"].credentials["pin-1"]
    assert rig.cache.is_indexed(pin)
    rig.cache.set_lookup_kdf(make_lookup_kdf(n=16), "server")
    assert not rig.cache.is_indexed(pin)
    rig.down[0] = True
    assert login(service, "1234").user == "alice"  # type: ignore[union-attr]  # found by the scan ...
    assert rig.cache.is_indexed(rig.cache.entries["alice"].credentials["pin-1"])  # ... and indexed again


def test_a_fingerprint_counts_only_for_the_verifier_it_was_made_with(rig: Any) -> None:
    """A PIN changed at the server (same id, new verifier) is not found through the old PIN's index."""
    rig.api.answers = [ok()]
    service = rig.service()
    login(service, "1234")
    old = rig.cache.entries["alice"].credentials["pin-1"]
    changed = replace(old, verifier=cheap("5678"))
    rig.cache.put(replace(rig.cache.entries["alice"], credentials={"pin-1": changed}))
    rig.down[0] = True
    assert login(service, "1234").reason == "invalid"  # type: ignore[union-attr]
    assert login(service, "5678", terminal="t2").user == "alice"  # type: ignore[union-attr]


def test_naming_each_user_in_turn_does_not_multiply_pin_guesses(rig: Any) -> None:
    """A PIN login that names a user still counts for the device: 100 users named in turn would
    otherwise give 100 budgets to PIN guesses."""
    for number in range(12):
        rig.cache.put(entry(f"user{number}", cred("pin-1", secret=f"{number:04d}99"), renewed=rig.clock.seconds()))
    rig.down[0] = True
    service = rig.service()
    reasons = [login(service, "000000", user=f"user{n}", terminal=f"t{n}").reason for n in range(12)]  # type: ignore[union-attr]
    assert reasons[:10] == ["invalid"] * 10 and reasons[10:] == ["locked", "locked"]


# -- validity, devices, online refusals, server grants (issue 14: findings 1, 3, 12) -------------------


def test_validity_is_computed_at_the_check_so_a_shorter_setting_applies_at_once(rig: Any) -> None:
    rig.api.answers = [ok()]
    assert isinstance(login(rig.service(validity_hours=24.0), "1234"), LoginOutcome)
    rig.down[0] = True
    rig.clock.advance(2 * 3600)
    shortened = login(rig.service(validity_hours=1.0), "1234")  # the same cache, the setting shortened
    assert isinstance(shortened, LoginRefused) and shortened.reason == "expired"
    renewed = login(rig.service(validity_hours=3.0), "1234", terminal="t2")
    assert isinstance(renewed, LoginOutcome) and renewed.valid_until == rig.clock.seconds() + 3 * 3600


def test_devices_of_the_answer_are_cached_and_checked(rig: Any) -> None:
    rig.api.answers = [dict(ok(), devices=["branch-1", "branch-2"]), ok("bob", "pin-2")]
    login(rig.service(), "1234")
    login(rig.service(), "5678")
    assert rig.cache.entries["alice"].credentials["pin-1"].devices == ("branch-1", "branch-2")
    assert rig.cache.entries["bob"].credentials["pin-2"].devices == ("branch-1",)  # not said: this device only
    rig.down[0] = True
    assert isinstance(login(rig.service(), "1234"), LoginOutcome)
    restricted = entry("carol", cred("pin-1", secret="4444", source="peer", devices=("branch-9",), issuer="k"),
                       renewed=rig.clock.seconds())  # fmt: skip
    rig.cache.put(restricted)
    assert login(rig.service(), "4444").reason == "invalid"  # type: ignore[union-attr]


def test_an_online_refusal_removes_the_cached_credential(rig: Any) -> None:
    service = rig.service()
    rig.api.answers = [ok(), ok("alice", "card-1")]
    login(service, "1234")
    login(service, "CARD", method="card")
    rig.api.answers = [CentralApiRefused(401, "invalid credentials")]
    assert login(service, "1234").reason == "invalid"  # type: ignore[union-attr]
    assert set(rig.cache.entries["alice"].credentials) == {"card-1"}  # the PIN went, the card stays
    assert any(r.refusal and r.credential == "pin-1" for r in rig.cache.revocations)
    rig.down[0] = True
    assert login(service, "1234", terminal="t2").reason == "invalid"  # type: ignore[union-attr]
    assert isinstance(login(service, "CARD", method="card", terminal="t2"), LoginOutcome)


def grant_answer(server: Any, secret: str = "1234", **changes: Any) -> dict[str, Any]:
    from spooler.refserver.store import iso
    from spooler.signing import GRANT, as_json, sign

    fields = {"user": "alice", "credential": "pin-1", "kind": "pin", "verifier": cheap(secret), "devices": ["*"],
              "issued_at": "2026-11-25T00:00:00.000Z", "expires_at": iso(1_800_000_000 + 86400), **changes}
    return dict(ok(), devices=fields["devices"], grant=as_json(sign(server, GRANT, fields)))


def test_with_a_server_key_the_grant_is_cached_and_a_bad_one_is_not(rig: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from spooler.login.trust import Trust

    server = Ed25519PrivateKey.generate()
    trust = Trust("branch-1", server_key=server.public_key())
    config = LoginConfig(validity_hours=1000.0)
    service = LoginService(rig.clock, config, rig.cache, device="branch-1", api=rig.api,  # type: ignore[arg-type]
                           run_in_thread=run_synchronously, server_known_down=lambda: rig.down[0],
                           trust=trust)  # fmt: skip
    for bad in (ok(), grant_answer(Ed25519PrivateKey.generate()), grant_answer(server, user="bob"),
                grant_answer(server, secret="9999")):  # none, another key, another user, another secret
        rig.api.answers = [bad]
        outcome = login(service, "1234")
        assert isinstance(outcome, LoginOutcome) and outcome.mode == "online"  # the server said yes ...
        assert "alice" not in rig.cache.entries  # ... but nothing is cached without its valid grant
    rig.api.answers = [grant_answer(server)]
    online = login(service, "1234")
    credential = rig.cache.entries["alice"].credentials["pin-1"]
    assert credential.grant is not None and credential.devices == ("*",)
    assert isinstance(online, LoginOutcome) and online.valid_until == 1_800_000_000 + 86400  # capped by the grant
    rig.down[0] = True
    assert isinstance(login(service, "1234"), LoginOutcome)
    rig.clock.advance(86400)
    assert login(service, "1234").reason == "expired"  # type: ignore[union-attr]
