"""Offline login core: the encrypted cache (tamper, wrong key, rotation), the throttle (Clock), the
revocation and sync rules, and the login decisions with a scripted central API (validity computed at
the check, devices, online refusals, the server's signed grants)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock

from conftest import run_synchronously
from spooler.centralapi import CentralApiDown, CentralApiRefused
from spooler.config import LoginConfig
from spooler.login.cache import CacheError, CredentialCache
from spooler.login.entries import Credential, Revocation, UserEntry, apply_sync, is_revoked
from spooler.login.keys import KeyFileError, LoginKeys
from spooler.login.service import OFFLINE_NOTICE, LoginOutcome, LoginRefused, LoginService
from spooler.login.throttle import Throttle
from spooler.verifiers import make_verifier


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
    return CredentialCache.open(tmp_path / "login.db", keys)


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


# -- the throttle ----------------------------------------------------------------------------------


def test_throttle_locks_after_max_failures_then_unlocks() -> None:
    clock = Clock()
    throttle = Throttle(clock, max_failures=3, lockout=60)
    for _ in range(2):
        throttle.failed(None, "t1")
    assert throttle.locked(None, "t1") is None
    throttle.failed(None, "t1")
    assert throttle.locked(None, "t1") == 60
    assert throttle.locked(None, "t2") is None
    clock.advance(59)
    assert throttle.locked(None, "t1") == 1
    clock.advance(1)
    assert throttle.locked(None, "t1") is None
    throttle.failed(None, "t1")  # a fresh count after the lock
    assert throttle.locked(None, "t1") is None


def test_throttle_per_user_across_terminals_and_success_resets() -> None:
    clock = Clock()
    throttle = Throttle(clock, max_failures=2, lockout=60)
    throttle.failed("alice", "t1")
    throttle.succeeded("alice", "t1")
    throttle.failed("alice", "t2")
    assert throttle.locked("alice", "t3") is None
    throttle.failed("alice", "t3")
    assert throttle.locked("alice", "t9") == 60
    assert throttle.locked("bob", "t9") is None


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
          terminal: str = "t1") -> LoginOutcome | LoginRefused:  # fmt: skip
    results: list[Any] = []
    service.login(method=method, secret=secret, user=user, terminal=terminal).addBoth(results.append)
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


def test_a_synced_user_never_seen_logs_in_by_scan_then_by_fingerprint(rig: Any) -> None:
    for number in range(20):
        rig.cache.put(entry(f"user{number}", cred("pin-1", secret=f"{number:04d}", origin="sync", source="sync"),
                            renewed=rig.clock.seconds()))
    service = rig.service()
    rig.down[0] = True
    outcome = login(service, "0017")
    assert isinstance(outcome, LoginOutcome) and outcome.user == "user17"
    assert rig.cache.entries["user17"].credentials["pin-1"].fingerprint is not None
    assert rig.cache.indexed(rig.cache.fingerprint("pin", "0017")) == [("user17", "pin-1")]
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
    assert len(results) == 1 and results[0].value.reason == "unavailable"  # the one over the bound
    while held:
        deferred, function, args = held.pop(0)
        deferred.callback(function(*args))
    assert [r.value.reason for r in results[1:]] == ["invalid"] * (MAX_WAITING_SCANS + 1)


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
