"""Offline login end to end: a real `spooler serve` and the reference central server (spooler-refserver):
online login, user sync, the server stopped, offline logins (same PIN, wrong PIN, synced user never seen,
revoked user, expired entry, lockout), `spooler users list|sync`, `spooler keys rotate`; then no PIN,
card number or password anywhere in the state folder or the logs."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spooler_harness import (RefServer, Spooler, admin, enroll, free_port, login, refserver, short_tempdir, users_of,
                             wait_for)  # fmt: skip

pytestmark = pytest.mark.e2e

# Distinctive secrets, so that a search of the disk cannot meet them by chance.
USERS = {
    "users": [
        {"name": "alice", "full_name": "Alice Martin", "email": "alice@example.com", "groups": ["staff"],
         "credit": 25.0, "password": "Alice-Pass-8e41", "pins": ["735194"], "cards": ["04C0FFEE5A17"]},
        {"name": "bob", "full_name": "Bob Dupont", "groups": ["staff"], "credit": 3.5,
         "password": "Bob-Pass-1f93", "pins": ["628403"], "cards": ["0AB1C2D3E4"]},
        {"name": "carol", "full_name": "Carol Novak", "groups": ["it"], "credit": None,
         "password": "Carol-Pass-77d2", "pins": ["951862", "408317"], "cards": ["C0FFEE0142"]},
        {"name": "dave", "full_name": "Dave Elsewhere", "password": "Dave-Pass-3c0a", "pins": ["264951"],
         "devices": ["branch-9"]},
    ]
}
SECRETS = [secret for user in USERS["users"] for secret in [user["password"], *user["pins"], *user.get("cards", [])]]
WRONG = ["111111", "222222", "333333", "444444", "555555", "666666", "777777"]


def find_secrets(roots: list[Path], secrets: list[str]) -> list[str]:
    """Every (file, secret) where a secret appears as bytes (UTF-8, and UTF-16 for good measure)."""
    found = []
    for root in roots:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            data = path.read_bytes()
            for secret in secrets:
                if secret.encode() in data or secret.encode("utf-16-le") in data:
                    found.append(f"{path}: {secret}")
    return found


@pytest.fixture
def central() -> Iterator[RefServer]:
    with refserver(users=USERS) as server:
        yield server


@pytest.fixture
def spoolers() -> Iterator[list[Spooler]]:
    made: list[Spooler] = []
    yield made
    for spooler in made:
        spooler.cleanup()


def make_spooler(spoolers: list[Spooler], central: RefServer, **settings: Any) -> Spooler:
    defaults = {"server__queue_uri": central.ipp_uri, "server__api_url": central.api_url,
                "server__signing_key": central.signing_key(), "device__name": "branch-1", "login__sync_interval": 0,
                "login__share_listen": ""}  # fmt: skip
    spooler = Spooler(short_tempdir(), **{**defaults, **settings})
    spoolers.append(spooler)
    return spooler


def test_offline_login_end_to_end(central: RefServer, spoolers: list[Spooler]) -> None:
    spooler = make_spooler(spoolers, central).start()

    # Online: the server decides; the spooler learns a verifier.
    status, online = login(spooler, "735194")
    assert status == 200, online
    assert (online["user"], online["mode"], online["notice"]) == ("alice", "online", None)
    assert online["profile"]["credit"] == 25.0 and online["profile"]["full_name"] == "Alice Martin"
    status, refused = login(spooler, "000000", terminal="panel-9")
    assert (status, refused["reason"]) == (403, "invalid")
    status, bob = login(spooler, "0AB1C2D3E4", method="card")
    assert status == 200 and bob["user"] == "bob"
    # Bad requests get a JSON 4xx, never a traceback.
    assert admin(spooler, "POST", "/v1/login", {"method": "pin"})[0] == 400
    status, bad = login(spooler, "x" * 300)
    assert (status, bad["reason"]) == (403, "invalid")
    status, bad = login(spooler, "Alice-Pass-8e41", method="password")  # no user name
    assert (status, bad["reason"]) == (403, "invalid")
    assert admin(spooler, "POST", "/v1/users/nothing", {})[0] == 404

    # Sync: the users of this device (dave is another device's), then a revocation.
    synced = spooler.cli("users", "sync", "--json")
    assert json.loads(synced.stdout)["users"] == 3
    listed = {row["user"]: row for row in json.loads(spooler.cli("users", "list", "--json").stdout)}
    assert set(listed) == {"alice", "bob", "carol"} and all(row["state"] == "ok" for row in listed.values())
    central.revoke("bob")
    spooler.cli("users", "sync")
    assert {row["user"]: row["state"] for row in json.loads(spooler.cli("users", "list", "--json").stdout)} == {
        "alice": "ok", "bob": "revoked", "carol": "ok"}  # bob left the sync; the card he used here is revoked

    # The server goes away.
    central.stop()
    status, offline = login(spooler, "735194")
    assert status == 200, offline
    assert offline["mode"] == "offline" and offline["user"] == "alice"
    assert offline["notice"] == "Offline: credit, quota, projects and print policies are not available."
    assert offline["profile"]["credit"] is None
    assert offline["valid_until"] >= online["valid_until"]  # renewed

    status, wrong = login(spooler, "735195")
    assert (status, wrong["reason"]) == (403, "invalid")
    assert "not valid" in wrong["error"]

    # A synced user who never logged in here: found by a scan of the synced verifiers.
    status, carol = login(spooler, "408317", terminal="panel-2")
    assert status == 200 and (carol["user"], carol["mode"]) == ("carol", "offline")
    status, carol_pw = login(spooler, "Carol-Pass-77d2", method="password", user="carol", terminal="panel-2")
    assert status == 200 and carol_pw["user"] == "carol"
    status, alice_card = login(spooler, "04C0FFEE5A17", method="card", terminal="panel-2")
    assert status == 200 and alice_card["user"] == "alice"

    # A revoked user fails, with the reason.
    status, revoked = login(spooler, "0AB1C2D3E4", method="card", terminal="panel-3")
    assert (status, revoked["reason"]) == (403, "revoked")
    # A user of another device was never synced here.
    status, dave = login(spooler, "264951", terminal="panel-3")
    assert (status, dave["reason"]) == (403, "invalid")

    # Brute force: five wrong PINs in a row at one terminal, then the right one is refused too.
    for wrong_pin in WRONG[:5]:
        status, answer = login(spooler, wrong_pin, terminal="panel-4")
        assert (status, answer["reason"]) == (403, "invalid")
    status, locked = login(spooler, "735194", terminal="panel-4")
    assert (status, locked["reason"]) == (403, "locked") and locked["retry_after"] > 0
    status, elsewhere = login(spooler, "735194", terminal="panel-5")
    assert status == 200

    # The key rotates under the running daemon; logins go on.
    rotated = json.loads(spooler.cli("keys", "rotate", "--json").stdout)
    assert rotated["entries"] == 3
    status, again = login(spooler, "735194", terminal="panel-5")
    assert status == 200 and again["mode"] == "offline"

    # `users list` and `keys rotate` with the daemon down read the files directly.
    spooler.stop()
    down = spooler.cli("users", "list")
    assert "alice" in down.stdout and "carol" in down.stdout and "not running" in down.stderr
    key_before = json.loads((spooler.state_dir / "keys" / "login.key").read_text())["current"]
    spooler.cli("keys", "rotate")
    assert json.loads((spooler.state_dir / "keys" / "login.key").read_text())["current"] != key_before
    spooler.start()
    status, restarted = login(spooler, "951862", terminal="panel-6")
    assert status == 200 and restarted["user"] == "carol"
    spooler.stop()

    # Nothing typed at the terminal is on disk or in a log: state folder (SQLite db, WAL, spool log,
    # keys) and the daemon's stderr.
    assert find_secrets([spooler.state_dir, spooler.stderr_path], SECRETS + WRONG) == []
    assert (spooler.state_dir / "login.db").exists() and spooler.events("login_ok")


def test_an_entry_past_its_validity_is_refused(central: RefServer, spoolers: list[Spooler]) -> None:
    spooler = make_spooler(spoolers, central, login__validity_hours=0.0005).start()  # 1.8 s
    status, online = login(spooler, "951862")
    assert status == 200 and online["mode"] == "online"
    central.stop()
    wait_for(lambda: time.time() > online["valid_until"] + 0.2, timeout=10, what="the entry to expire")
    status, expired = login(spooler, "951862")
    assert (status, expired["reason"]) == (403, "expired")
    assert "expired" in expired["error"]
    spooler.stop()
    assert find_secrets([spooler.state_dir, spooler.stderr_path], SECRETS) == []


def test_offline_login_switched_off(central: RefServer, spoolers: list[Spooler]) -> None:
    spooler = make_spooler(spoolers, central, login__offline_enabled=False).start()
    assert login(spooler, "735194")[0] == 200
    listed = spooler.cli("users", "list")
    assert "alice" in listed.stdout and "ok" in listed.stdout
    central.stop()
    status, refused = login(spooler, "735194")
    assert (status, refused["reason"]) == (403, "offline-disabled")


def test_users_sync_without_a_server_api(spoolers: list[Spooler]) -> None:
    spooler = Spooler(short_tempdir(), login__share_listen="")
    spoolers.append(spooler)
    spooler.start()
    result = spooler.cli("users", "sync", check=False)
    assert result.returncode == 1 and "api_url" in result.stderr
    status, refused = login(spooler, "735194")  # offline only, and nobody is cached
    assert (status, refused["reason"]) == (403, "invalid")


def test_a_login_at_one_spooler_works_offline_at_the_next(central: RefServer, spoolers: list[Spooler]) -> None:
    port_a, port_b = free_port(), free_port()
    a = make_spooler(spoolers, central, device__name="branch-1", login__share=True,
                     login__share_listen=f"tcp:{port_a}:interface=127.0.0.1", login__peers=[f"127.0.0.1:{port_b}"])
    b = make_spooler(spoolers, central, device__name="branch-2", login__share=True,
                     login__share_listen=f"tcp:{port_b}:interface=127.0.0.1", login__peers=[f"127.0.0.1:{port_a}"])
    enroll(a, b)
    a.start()

    # Pull: logins at A while B is down (A's push fails); B pulls A's entries when it starts.
    assert login(a, "735194")[0] == 200  # alice, online
    assert login(a, "0AB1C2D3E4", method="card")[0] == 200  # bob
    b.start()
    wait_for(lambda: users_of(b) == {"alice": "ok", "bob": "ok"}, timeout=20, what="B to pull alice and bob")
    for body in (b"{}", b"not json", json.dumps({"v": 2, "ts": time.time(), "nonce": "AAAAAAAAAAAAAAAA",
                                                 "ct": "AAAAAAAAAAAAAAAAAAAAAAAA"}).encode()):  # fmt: skip
        connection = http.client.HTTPConnection("127.0.0.1", port_b, timeout=10)
        connection.request("POST", "/v1/share/push", body=body)
        response = connection.getresponse()
        assert response.status == 401 and "error" in json.loads(response.read())
        connection.close()

    # Push: a login at A, and a revocation A syncs, reach B at once.
    assert login(a, "C0FFEE0142", method="card")[0] == 200  # carol
    wait_for(lambda: "carol" in users_of(b), timeout=20, what="A's push of carol to B")
    central.revoke("bob")
    a.cli("users", "sync")
    wait_for(lambda: users_of(b).get("bob") == "revoked", timeout=20, what="A's push of bob's revocation to B")

    central.stop()
    status, offline = login(b, "735194")
    assert status == 200 and (offline["user"], offline["mode"]) == ("alice", "offline")
    status, revoked = login(b, "0AB1C2D3E4", method="card")
    assert (status, revoked["reason"]) == (403, "revoked")
    status, carol = login(b, "C0FFEE0142", method="card")
    assert status == 200 and carol["user"] == "carol"
    status, unknown = login(b, "951862")  # carol's PIN was never used anywhere, and B never synced
    assert (status, unknown["reason"]) == (403, "invalid")
    a.stop()
    b.stop()
    assert find_secrets([a.state_dir, a.stderr_path, b.state_dir, b.stderr_path], SECRETS) == []


def test_the_secret_search_finds_a_planted_secret(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "db-wal").write_bytes(b"\x00\x01" + "735194".encode("utf-16-le") + b"\x00")
    (tmp_path / "log.jsonl").write_text('{"pin": "Alice-Pass-8e41"}\n')
    assert sorted(find_secrets([tmp_path], SECRETS)) == [f"{tmp_path}/log.jsonl: Alice-Pass-8e41",
                                                         f"{tmp_path}/sub/db-wal: 735194"]
