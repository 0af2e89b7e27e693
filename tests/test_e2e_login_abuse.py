"""Issue 14 end to end, login side, with real processes: a `spooler serve` with its terminal, the
reference central server (user sync with lookups, then stopped), and HTTP clients of the terminal
from many loopback addresses (127.0.0.x, as an attacker on the office LAN rotates addresses).

- finding 2: PIN guessing is bounded per device: an own PIN between guesses and new addresses do not
  reset it, the lock survives kill -9, card logins go on meanwhile;
- finding 7: a wrong password answers the same for a user who exists and one who does not;
- finding 9: one user's logins end only that user's sessions;
- finding 11: synced PINs and cards are indexed by the lookup the server sent (`users list`).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from spooler_harness import RefServer, refserver, Spooler, free_port, wait_for
from test_e2e_login import find_secrets
from test_e2e_terminal import TerminalClient as Terminal

pytestmark = pytest.mark.e2e

ALICE_PIN, BOB_PIN, CAROL_CARD = "418273", "562940", "C0FFEE4242"
USERS = {"users": [
    {"name": "alice", "full_name": "Alice Martin", "password": "tulip-Orbit-93", "pins": [ALICE_PIN]},
    {"name": "bob", "full_name": "Bob Dupont", "password": "bob-Saffron-17", "pins": [BOB_PIN]},
    {"name": "carol", "full_name": "Carol Novak", "password": "carol-Quartz-55", "cards": [CAROL_CARD]},
], "revocations": []}  # fmt: skip


@pytest.fixture
def central() -> Iterator[RefServer]:
    with refserver(users=USERS) as server:
        yield server


@pytest.fixture
def offline_branch(spooler_factory: Any, central: RefServer) -> tuple[Spooler, int]:
    """A spooler that synced its users (with their lookups) from the central server, which is then gone."""
    port = free_port()
    spooler = spooler_factory(**{
        "server__queue_uri": central.ipp_uri, "server__api_url": central.api_url, "device__name": "branch-1",
        "server__probe_interval": "250ms", "server__probe_timeout": "500ms", "server__connect_timeout": "1s",
        "login__sync_interval": 0, "login__share_listen": "",
        "terminal__enabled": True, "terminal__listen": f"tcp:{port}:interface=127.0.0.1", "terminal__session_idle": "10m",
    })  # fmt: skip
    spooler.start()
    assert json.loads(spooler.cli("users", "sync", "--json").stdout)["users"] == 3
    central.stop()
    wait_for(lambda: json.loads(spooler.cli("status", "--json").stdout)["mode"] == "offline", timeout=20,
             what="the spooler to see the server down")  # fmt: skip
    return spooler, port


def test_synced_pins_and_cards_are_indexed_by_the_servers_lookup(offline_branch: tuple[Spooler, int]) -> None:
    """Finding 11: a PIN or card nobody typed here yet is found by one lookup, not a scan."""
    spooler, port = offline_branch
    listed = {row["user"]: row for row in json.loads(spooler.cli("users", "list", "--json").stdout)}
    assert {user: row["indexed"] for user, row in listed.items()} == {"alice": 1, "bob": 1, "carol": 1}
    status, session = Terminal(port).login(BOB_PIN)
    assert status == 200 and (session["user"], session["mode"]) == ("bob", "offline")
    status, session = Terminal(port).login(CAROL_CARD, method="card")
    assert status == 200 and session["user"] == "carol"


def test_pin_guessing_is_bounded_per_device(offline_branch: tuple[Spooler, int]) -> None:
    """Finding 2, (a) and (b), through the terminal's HTTP API."""
    spooler, port = offline_branch
    # (a) One address: four wrong PINs and the guesser's own PIN, again and again. The own PIN
    # used to clear the terminal's count (24 guesses, then the victim's PIN worked); now the fifth
    # failure, right after the own PIN, locks this terminal for 5 minutes.
    mallory = Terminal(port, "127.0.0.2")
    answers = []
    for round_ in range(3):
        for guess in range(4):
            answers.append(mallory.login(f"{round_}{guess}0000")[1].get("code"))
        answers.append(mallory.login(ALICE_PIN)[1].get("code", "ok"))
    assert answers[:7] == ["invalid"] * 4 + ["ok", "invalid", "locked"]
    assert set(answers[7:]) == {"locked"}
    # (b) A new address for every guess: the device counts them all. 5 failures so far (from (a));
    # five more from five new addresses, then the device locks PIN logins from anywhere.
    for number in range(5):
        status, body = Terminal(port, f"127.0.1.{number + 1}").login(f"9{number}9999")
        assert (status, body["code"]) == (401, "invalid")
    status, body = Terminal(port, "127.0.2.1").login(BOB_PIN)  # the victim's right PIN, from a new address
    assert (status, body["code"]) == (429, "locked") and body["retry_after"] > 0
    locked = spooler.events("login_locked")
    assert {event["scope"] for event in locked} >= {"terminal:127.0.0.2", "device:pin"}
    # Card logins have their own count: carol's card works while PINs are locked.
    assert Terminal(port, "127.0.2.2").login(CAROL_CARD, method="card")[0] == 200

    # kill -9 and a new start: the lock is still there (login.db), for a guess and for the right PIN.
    spooler.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    spooler.process.wait()  # type: ignore[union-attr]
    spooler.start()
    status, body = Terminal(port, "127.0.3.1").login(BOB_PIN)
    assert (status, body["code"]) == (429, "locked") and 0 < body["retry_after"] <= 300
    spooler.stop()
    assert find_secrets([spooler.state_dir, spooler.stderr_path], [ALICE_PIN, BOB_PIN, CAROL_CARD]) == []


def test_a_wrong_password_answers_alike_for_known_and_unknown_users(offline_branch: tuple[Spooler, int]) -> None:
    """Finding 7: the same answer, and (unit-tested, timed in bench/login_scan.py) the same scrypt."""
    _, port = offline_branch
    known = Terminal(port, "127.0.4.1").login("not-her-password", method="password", user="alice")
    unknown = Terminal(port, "127.0.4.2").login("not-her-password", method="password", user="alicia")
    assert known == unknown == (401, {"error": "Wrong user name or password.", "code": "invalid"})


def test_one_users_logins_do_not_log_everyone_else_out(offline_branch: tuple[Spooler, int]) -> None:
    """Finding 9: 260 logins by one user (more than the session table holds) end only their own."""
    _, port = offline_branch
    alice = Terminal(port, "127.0.5.1")
    assert alice.login(ALICE_PIN)[0] == 200
    bob = Terminal(port, "127.0.5.2")
    assert bob.login(BOB_PIN)[0] == 200
    sessions = []
    for _ in range(260):
        mallory = Terminal(port, "127.0.5.3")
        status, _ = mallory.login("carol-Quartz-55", method="password", user="carol")
        assert status == 200
        sessions.append(mallory)
    assert alice.call("GET", "session")[1]["user"] == "alice"
    assert bob.call("GET", "session")[1]["user"] == "bob"
    assert sessions[-1].call("GET", "session")[0] == 200
    assert sessions[0].call("GET", "session")[0] == 401  # carol's oldest sessions made room for her newest
