"""Issue 14, findings 1, 3 and 12, end to end: real `spooler serve` processes sharing their login caches
over loopback HTTP, the reference central server (spooler-refserver), and an attacker who holds one
spooler's key file and speaks the share protocol to the others.

1. Device rules survive sharing: a user the server allows elsewhere only is left out by a peer, and an
   online refusal removes the cached credential.
3. A stolen spooler's key cannot make up a PIN or a revocation when the server signs; when it cannot
   sign, removing the stolen spooler (`spooler peers remove`) takes its entries out at once.
12. A shortened validity_hours applies to entries already cached and shared.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spooler.login.peers import EnrolledPeers, PeerIdentity, make_peer
from spooler.login.share import PeerSealer
from spooler.signing import PEER_RECORD, as_json, sign
from spooler.verifiers import make_verifier
from spooler_harness import (RefServer, Spooler, enroll, free_port, login, share_address, short_tempdir, users_of,
                             wait_for)  # fmt: skip

pytestmark = pytest.mark.e2e

ALICE_PIN, BOB_PIN, FAKE_PIN = "735194", "628403", "000000"


def users_file(root: Path, *, alice_devices: list[str] | None = None, bob_devices: list[str] | None = None) -> Path:
    path = root / f"users-{time.monotonic_ns()}.json"
    path.write_text(json.dumps({"users": [
        {"name": "alice", "full_name": "Alice Martin", "pins": [ALICE_PIN], "devices": alice_devices or []},
        {"name": "bob", "full_name": "Bob Dupont", "pins": [BOB_PIN], "devices": bob_devices or []},
    ]}))  # fmt: skip
    return path


@pytest.fixture
def made() -> Iterator[list[Any]]:
    """Everything a test starts (spoolers, servers), stopped and removed at the end."""
    started: list[Any] = []
    yield started
    for process in reversed(started):
        process.cleanup()


def central_server(made: list[Any], users: Path, *, sign: bool = True) -> RefServer:
    server = RefServer(short_tempdir("rs"), users=users, sign=sign)
    made.append(server)
    return server.start()


def sharing_spooler(made: list[Any], central: RefServer, device: str, *, pinned: bool = True,
                    **settings: Any) -> Spooler:  # fmt: skip
    """A spooler of branch `device` that shares its logins; the server's key pinned unless told otherwise."""
    config = {"server__queue_uri": central.ipp_uri, "server__api_url": central.api_url, "device__name": device,
              "login__sync_interval": 0, "login__share": True,
              "login__share_listen": f"tcp:{free_port()}:interface=127.0.0.1", **settings}  # fmt: skip
    if pinned:
        config["server__signing_key"] = central.signing_key()
    spooler = Spooler(short_tempdir(), **config)
    made.append(spooler)
    return spooler


def events(spooler: Spooler, name: str) -> list[dict[str, Any]]:
    return spooler.events(name)


class WallClock:
    @staticmethod
    def seconds() -> float:
        return time.time()


class StolenKey:
    """Someone with a copy of a spooler's key file (a stolen spooler, or its disk): signs records as that
    spooler and talks to another spooler's share endpoint over HTTP, as a spooler would."""

    def __init__(self, key_file: Path) -> None:
        self.identity = PeerIdentity.load(key_file)
        self.sealer = PeerSealer(self.identity, EnrolledPeers([]), WallClock())

    def record(self, user: str, credential: str, secret: str, *, grant: Any = None) -> dict[str, str]:
        payload = {"type": "credential", "issuer": self.identity.key, "user": user,
                   "profile": {"full_name": user, "email": "", "groups": []},
                   "credential": {"id": credential, "kind": "pin", "verifier": make_verifier(secret, n=1024),
                                  "verified_at": time.time(), "devices": ["*"]}, "grant": grant}  # fmt: skip
        return as_json(sign(self.identity.signing, PEER_RECORD, payload))

    def revocation(self, user: str) -> dict[str, str]:
        payload = {"type": "revocation", "issuer": self.identity.key, "user": user, "kind": "user",
                   "credential": None, "revoked_at": time.time(), "signed": None}  # fmt: skip
        return as_json(sign(self.identity.signing, PEER_RECORD, payload))

    def push(self, target: Spooler, payload: dict[str, Any]) -> tuple[int, Any]:
        host, port = share_address(target).split(":")
        status, hello = self._post(host, int(port), "hello", b"{}")
        assert status == 200, hello
        certificate = json.loads(hello)
        self.sealer.peers.add(make_peer("target", certificate["key"]))
        body, nonce, aead = self.sealer.seal_request(self.sealer.contact(certificate), "push", payload)
        status, answer = self._post(host, int(port), "push", body)
        return status, self.sealer.open_answer(aead, nonce, answer) if status == 200 else json.loads(answer)

    def _post(self, host: str, port: int, path: str, body: bytes) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(host, port, timeout=10)
        try:
            connection.request("POST", f"/v1/share/{path}", body=body,
                               headers={"content-type": "application/json",
                                        "x-spooler-peer": self.identity.key})  # fmt: skip
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


def reason(answer: tuple[int, dict[str, Any]]) -> str | None:
    status, body = answer
    return "ok" if status == 200 else body.get("reason")


# -- finding 1 -------------------------------------------------------------------------------------


def test_a_user_allowed_on_other_devices_only_is_left_out_by_a_peer(made: list[Any], tmp_path: Path) -> None:
    central = central_server(made, users_file(tmp_path, alice_devices=["branch-1", "branch-3"]))
    a = sharing_spooler(made, central, "branch-1")
    b = sharing_spooler(made, central, "branch-2")
    enroll(a, b, with_address=True)
    a.start()
    b.start()

    assert login(a, ALICE_PIN)[1]["mode"] == "online"  # the server allows alice on branch-1 (and branch-3)
    assert login(a, BOB_PIN)[1]["mode"] == "online"  # bob everywhere
    wait_for(lambda: events(b, "share_not_here"), timeout=20, what="branch-2 to leave alice's entry out")
    wait_for(lambda: users_of(b) == {"bob": "ok"}, timeout=20, what="branch-2 to take bob's entry")
    assert reason(login(b, ALICE_PIN, terminal="t1")) == "invalid"  # online, the server refuses her here

    central.stop()
    assert reason(login(b, ALICE_PIN, terminal="t2")) == "invalid"  # offline, branch-2 must not allow more
    assert login(b, BOB_PIN, terminal="t3")[1]["mode"] == "offline"
    assert login(a, ALICE_PIN, terminal="t4")[1]["mode"] == "offline"  # where she is allowed, she gets in


def test_an_online_refusal_removes_the_cached_credential(made: list[Any], tmp_path: Path) -> None:
    central = central_server(made, users_file(tmp_path))
    a = sharing_spooler(made, central, "branch-1")
    b = sharing_spooler(made, central, "branch-2", login__share_interval="1s")
    enroll(a, b, with_address=True)
    a.start()
    b.start()
    assert login(b, BOB_PIN)[1]["mode"] == "online"  # branch-2 learns bob's PIN itself
    assert login(a, BOB_PIN)[1]["mode"] == "online"  # branch-1 too, and shares its entry

    # The admin restricts bob to branch-1 (the server restarts with the new users file).
    central.stop()
    central.users = users_file(tmp_path, bob_devices=["branch-1"])
    central.start()
    wait_for(lambda: json.loads(b.cli("status", "--json").stdout)["mode"] == "online", timeout=20,
             what="branch-2 to see the server back")  # fmt: skip
    assert reason(login(b, BOB_PIN, terminal="t1")) == "invalid"  # online: refused at branch-2 now
    assert events(b, "login_cache_refused") and "bob" not in users_of(b)  # ... and gone from its cache
    # branch-1 still shares its (older) entry of bob: branch-2 takes it in at its next pull, but the
    # refusal it saw covers it.
    pulled = len(events(b, "share_pulled"))
    wait_for(lambda: len(events(b, "share_pulled")) > pulled, timeout=20, what="branch-2 to pull bob again")
    assert users_of(b).get("bob") == "revoked"

    central.stop()
    assert reason(login(b, BOB_PIN, terminal="t2")) == "revoked"  # offline too, whatever peers say
    assert login(a, BOB_PIN, terminal="t3")[1]["mode"] == "offline"


# -- finding 3 -------------------------------------------------------------------------------------


def test_a_stolen_spoolers_key_cannot_make_up_a_pin_when_the_server_signs(made: list[Any], tmp_path: Path) -> None:
    central = central_server(made, users_file(tmp_path))
    a, b, c = (sharing_spooler(made, central, f"branch-{n}") for n in (1, 2, 3))
    enroll(a, b, c, with_address=True)
    for spooler in (a, b, c):
        spooler.start()
    assert login(a, ALICE_PIN)[1]["mode"] == "online"
    wait_for(lambda: users_of(b).get("alice") == "ok" and users_of(c).get("alice") == "ok", timeout=20,
             what="alice's entry to reach branch-2 and branch-3")  # fmt: skip

    # The thief holds branch-1's key file, and alice's genuine grant (branch-1 has it in its cache).
    stolen = StolenKey(a.state_dir / "keys" / "peer.key")
    status, genuine = central.api("POST", "login", {"device": "branch-1", "method": "pin", "secret": ALICE_PIN})
    assert status == 200 and genuine["grant"]
    attack = {"entries": [stolen.record("alice", "pin-1", FAKE_PIN),  # made up, no grant
                          stolen.record("alice", "pin-1", FAKE_PIN, grant=genuine["grant"]),  # grant of another verifier
                          stolen.record("alice", "pin-2", FAKE_PIN, grant=genuine["grant"])],  # ... of another PIN
              "revocations": [stolen.revocation("alice")]}  # fmt: skip
    for target in (b, c):
        status, answer = stolen.push(target, attack)
        assert status == 200 and (answer["entries"], answer["revocations"]) == (0, 0)
        assert sum(answer["refused"].values()) == 4, answer
        assert events(target, "share_record_refused")

    # A key nobody enrolled does not even get a message through.
    outsider_key = tmp_path / "outsider.key"
    PeerIdentity.open_or_create(outsider_key)
    status, refused = StolenKey(outsider_key).push(b, {"entries": [], "revocations": []})
    assert status == 401 and "not an enrolled peer" in refused["error"]

    central.stop()
    for target in (b, c):  # nothing spread, nobody is locked out
        assert reason(login(target, FAKE_PIN, terminal="t1")) == "invalid"
        assert login(target, ALICE_PIN, terminal="t2")[1]["user"] == "alice"


def test_without_server_signatures_removing_the_stolen_peer_takes_its_entries_out_at_once(
        made: list[Any], tmp_path: Path) -> None:  # fmt: skip
    central = central_server(made, users_file(tmp_path), sign=False)  # an API that cannot sign
    a, b, c = (sharing_spooler(made, central, f"branch-{n}", pinned=False, login__share_interval="1s")
               for n in (1, 2, 3))  # fmt: skip
    enroll(a, b, c, with_address=True)
    for spooler in (a, b, c):
        spooler.start()
    assert login(b, ALICE_PIN)[1]["mode"] == "online"  # alice at branch-2; branch-3 learns her from it
    wait_for(lambda: users_of(c).get("alice") == "ok", timeout=20, what="alice's entry to reach branch-3")

    # What a stolen, still enrolled spooler can do when the server does not sign: make up a PIN.
    stolen = StolenKey(a.state_dir / "keys" / "peer.key")
    assert stolen.push(b, {"entries": [stolen.record("alice", "pin-9", FAKE_PIN)]})[1]["entries"] == 1
    assert stolen.push(c, {"entries": [stolen.record("alice", "pin-1", FAKE_PIN)]})[1]["entries"] == 1
    central.stop()
    assert login(b, FAKE_PIN, terminal="t1")[1]["user"] == "alice"
    assert login(c, FAKE_PIN, terminal="t1")[1]["user"] == "alice"
    assert reason(login(c, ALICE_PIN, terminal="t2")) == "invalid"  # her own PIN was replaced at branch-3

    # The admins remove branch-1: its entries stop counting at the next login, with no restart.
    for target in (b, c):
        target.cli("peers", "remove", "branch-1")
        assert reason(login(target, FAKE_PIN, terminal="t3")) == "invalid"
    assert login(b, ALICE_PIN, terminal="t4")[1]["user"] == "alice"  # what branch-2 learned itself stays
    # branch-3 takes alice's genuine entry from branch-2 again at its next pull.
    wait_for(lambda: users_of(c).get("alice") == "ok", timeout=20, what="branch-3 to pull alice's entry again")
    assert login(c, ALICE_PIN, terminal="t4")[1]["user"] == "alice"
    assert reason(login(c, FAKE_PIN, terminal="t5")) == "invalid"


def test_peers_commands(made: list[Any], tmp_path: Path) -> None:
    central = central_server(made, users_file(tmp_path))
    a = sharing_spooler(made, central, "branch-1")
    key = a.cli("peers", "self").stdout.strip()  # made on first use, with the daemon down
    assert key.startswith("ed25519:") and a.cli("peers", "self").stdout.strip() == key
    assert (a.state_dir / "keys" / "peer.key").stat().st_mode & 0o777 == 0o600
    other = PeerIdentity.generate().key
    bad = a.cli("peers", "add", "x", "ed25519:notakey", check=False)
    assert bad.returncode == 2 and "ed25519" in bad.stderr
    own = a.cli("peers", "add", "me", key, check=False)
    assert own.returncode == 2 and "own key" in own.stderr
    a.cli("peers", "add", "branch-2", other, "--address", "127.0.0.1:9")
    a.start()
    listed = json.loads(a.cli("peers", "list", "--json").stdout)
    assert listed["self"] == key and listed["peers"] == [{"name": "branch-2", "key": other, "address": "127.0.0.1:9"}]
    assert "removed branch-2" in a.cli("peers", "remove", "branch-2").stdout
    missing = a.cli("peers", "remove", "branch-2", check=False)
    assert missing.returncode == 1 and "no enrolled peer" in missing.stderr
    gone = a.cli("keys", "new-fleet-key", "/tmp/x", check=False)
    assert gone.returncode == 2 and "spooler peers add" in gone.stderr
    a.stop()
    a.write_config(login__fleet_key_file="/etc/spooler/fleet.key")
    old = a.cli("status", check=False)
    assert old.returncode == 2 and "login.fleet_key_file" in old.stderr and "spooler peers add" in old.stderr
    assert (a.state_dir / "keys" / "peers.json").stat().st_mode & 0o777 == 0o600


# -- finding 12 ------------------------------------------------------------------------------------


def test_a_shortened_validity_applies_to_cached_and_shared_entries(made: list[Any], tmp_path: Path) -> None:
    central = central_server(made, users_file(tmp_path))
    a = sharing_spooler(made, central, "branch-1")
    b = sharing_spooler(made, central, "branch-2")
    enroll(a, b, with_address=True)
    a.start()
    b.start()
    assert login(a, ALICE_PIN)[1]["mode"] == "online"
    wait_for(lambda: users_of(b).get("alice") == "ok", timeout=20, what="alice's entry to reach branch-2")
    central.stop()
    assert login(a, ALICE_PIN)[1]["mode"] == "offline"  # valid for 24 hours from her last login
    assert login(b, ALICE_PIN)[1]["mode"] == "offline"

    for spooler in (a, b):  # the admin shortens the validity to 3.6 seconds
        spooler.stop()
        spooler.write_config(login__validity_hours=0.001)
        spooler.start()

    def valid_until(spooler: Spooler) -> float:
        rows = json.loads(spooler.cli("users", "list", "--json").stdout)
        return float(next(row["valid_until"] for row in rows if row["user"] == "alice"))

    for spooler in (a, b):
        assert valid_until(spooler) < time.time() + 3.7  # the new setting, not the one of the login
    wait_for(lambda: time.time() > max(valid_until(a), valid_until(b)) + 0.2, timeout=10, what="the entries to end")
    assert reason(login(a, ALICE_PIN, terminal="t2")) == "expired"
    assert reason(login(b, ALICE_PIN, terminal="t2")) == "expired"
