"""Each product backend end to end: a real `spooler serve` with `[server] kind = "papercut"` or
`"myq"`, the product's test double (tests/central_doubles.py) as its API and the reference server's
IPP queue as its print queue: online login, `spooler server check`, user sync, the server down, offline
login, a job printed offline whose accounting record reaches PaperCut (api.processJob) when it
returns; MyQ's card and PIN / card and password logins at the terminal (its API and its page in
headless Chromium), online and offline; and no secret anywhere in the state folder or the logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central_doubles import MyQDouble, PaperCutDouble
from spooler_harness import (RefServer, refserver, Spooler, free_port, pjl_job, require_tool, send_raw, short_tempdir,
                             wait_for)  # fmt: skip
from test_e2e_login import find_secrets, login, spoolers  # noqa: F401 - spoolers is a fixture
from test_e2e_terminal import TerminalClient, launch, open_page, playwright_api

pytestmark = pytest.mark.e2e

PC_TOKEN, PC_HEALTH_KEY, MYQ_SECRET = "pc-token-e2e-41f9c2", "pc-health-e2e-77d1a0", "myq-secret-e2e-3b8e55"
CARDS = ["04C0FFEE5A17", "735184290163", "C0FFEE0142"]  # long enough never to turn up by chance in a log


@pytest.fixture
def queue() -> Iterator[RefServer]:
    with refserver() as server:
        yield server


def secret_file(root: Path, name: str, value: str) -> Path:
    path = root / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def make_spooler(spoolers: list[Spooler], queue: RefServer, **settings: Any) -> Spooler:
    root = short_tempdir()
    defaults = {"server__queue_uri": queue.ipp_uri, "server__probe_interval": "250ms", "device__name": "branch-1",
                "login__sync_interval": 0, "login__share_listen": "", "accounting__interval": "200ms",
                "accounting__retry_initial": "200ms", "accounting__retry_max": "500ms",
                "queues.default__offline_policy": "print"}  # fmt: skip
    spooler = Spooler(root, **{**defaults, **{k: (v(root) if callable(v) else v) for k, v in settings.items()}})
    spoolers.append(spooler)
    return spooler


def take_down(spooler: Spooler, queue: RefServer, double: Any) -> None:
    double.stop()
    queue.stop()
    wait_for(lambda: spooler.status()["mode"] == "offline", timeout=20, what="the spooler to see the server down")


def bring_back(spooler: Spooler, queue: RefServer, double: Any) -> None:
    double.start()
    queue.start()
    wait_for(lambda: spooler.status()["mode"] == "online", timeout=20, what="the spooler to see the server back")


def test_papercut_end_to_end(queue: RefServer, spoolers: list[Spooler]) -> None:
    double = PaperCutDouble(auth_token=PC_TOKEN, health_key=PC_HEALTH_KEY, users={
        "alice": {"full-name": "Alice Martin", "email": "alice@example.com", "primary-card-number": CARDS[0],
                  "secondary-card-number": CARDS[1], "disabled-print": False, "balance": 12.5},
        "carol": {"full-name": "Carol Novak", "primary-card-number": CARDS[2], "disabled-print": False},
    }).start()  # fmt: skip
    try:
        spooler = make_spooler(spoolers, queue, server__kind="papercut", server__api_url=double.url,
                               server__auth_token_file=lambda root: str(secret_file(root, "pc.token", PC_TOKEN)),
                               server__health_key_file=lambda root: str(secret_file(root, "pc.key", PC_HEALTH_KEY)),
                               server__papercut_printer="Branch 1, floor 2").start()  # fmt: skip

        checked = spooler.cli("server", "check")
        assert "ok   health" in checked.stdout and "ok   read call" in checked.stdout, checked.stdout
        assert "cannot check a PIN" in checked.stdout and PC_TOKEN not in checked.stdout

        status, online = login(spooler, CARDS[0], method="card")
        assert status == 200 and (online["user"], online["mode"]) == ("alice", "online"), online
        assert online["profile"]["credit"] == 12.5
        status, pin = login(spooler, "1234", method="pin", terminal="panel-2")
        assert (status, pin["reason"]) == (403, "unsupported") and "cannot check a pin" in pin["error"]

        synced = json.loads(spooler.cli("users", "sync", "--json").stdout)
        assert synced["users"] == 2
        users = {row["user"]: row for row in json.loads(spooler.cli("users", "list", "--json").stdout)}
        assert users["carol"]["methods"] == ["card"] and users["alice"]["state"] == "ok"

        take_down(spooler, queue, double)
        status, offline = login(spooler, CARDS[2], method="card")  # carol never logged in: from the sync
        assert status == 200 and (offline["user"], offline["mode"]) == ("carol", "offline"), offline
        status, pin = login(spooler, "1234", method="pin", terminal="panel-3")
        assert (status, pin["reason"]) == (403, "unsupported")  # offline too: no PIN path for PaperCut

        # A job printed on the device while PaperCut is away; its record goes up when PaperCut is back.
        send_raw(spooler.raw_port, pjl_job("alice", "budget, final.pdf", b"%PDF-1.4\n%%EOF\n"))
        spooler.wait_delivered(1)
        wait_for(lambda: json.loads(spooler.cli("outbox", "--json").stdout)["waiting"] == 1, timeout=20,
                 what="the record to wait for the server")  # fmt: skip
        assert double.jobs == []
        bring_back(spooler, queue, double)
        wait_for(lambda: double.jobs, timeout=20, what="api.processJob at the PaperCut double")
        [job] = double.jobs
        assert (job["user"], job["server"], job["printer"], job["document-name"]) == (
            "alice", "branch-1", "Branch 1, floor 2", "budget, final.pdf")
        assert job["comment"].startswith("branch-spooler record ")
        outbox = json.loads(spooler.cli("outbox", "--json").stdout)
        assert (outbox["sent"], outbox["in_doubt"], outbox["waiting"]) == (1, 0, 0)

        spooler.stop()
        leaks = find_secrets([spooler.state_dir, spooler.stderr_path], [PC_TOKEN, PC_HEALTH_KEY, *CARDS])
        assert leaks == []
    finally:
        double.stop()


def test_myq_end_to_end(queue: RefServer, spoolers: list[Spooler]) -> None:
    double = MyQDouble(client_id="branch-app", client_secret=MYQ_SECRET, users=[
        {"id": 1, "username": "alice", "fullname": "Alice Martin", "email": "alice@example.com",
         "cards": [CARDS[0]], "pins": ["735194"], "password": "Alice-Pass-8e41"},
        {"id": 2, "username": "bob", "fullname": "Bob Dupont", "pins": ["628403"]},
    ]).start()  # fmt: skip
    try:
        spooler = make_spooler(spoolers, queue, server__kind="myq", server__api_url=double.url,
                               server__client_id="branch-app", server__client_secret_env="BRANCH_MYQ_SECRET")
        spooler.process_env = {"BRANCH_MYQ_SECRET": MYQ_SECRET}
        start_with_env(spooler)

        checked = check_with_env(spooler)
        assert "ok   health" in checked and "ok   read call" in checked and MYQ_SECRET not in checked, checked
        assert "no accounting import" in checked

        for secret, method, user in [("735194", "pin", None), (CARDS[0], "card", None),
                                     ("628403", "pin", None)]:  # fmt: skip
            status, online = login(spooler, secret, method=method, user=user)
            assert status == 200 and online["mode"] == "online", online
        status, refused = login(spooler, "000000", terminal="panel-2")
        assert (status, refused["reason"]) == (403, "invalid")

        # MyQ deactivates bob; the sync's revocation feed takes his offline login away.
        double.users[1]["isActive"] = 0
        synced = json.loads(spooler.cli("users", "sync", "--json").stdout)
        assert (synced["users"], synced["revocations"]) == (0, 1)

        take_down(spooler, queue, double)
        status, offline = login(spooler, "735194")
        assert status == 200 and (offline["user"], offline["mode"]) == ("alice", "offline"), offline
        status, revoked = login(spooler, "628403", terminal="panel-4")
        assert (status, revoked["reason"]) == (403, "revoked")

        # Accounting stays local with MyQ (no import in its public API) and is exportable.
        send_raw(spooler.raw_port, pjl_job("alice", "notes.pdf", b"%PDF-1.4\n%%EOF\n"))
        spooler.wait_delivered(1)
        status_text = spooler.cli("status").stdout
        assert "myq server has no accounting import" in status_text, status_text
        bring_back(spooler, queue, double)
        csv_text = spooler.cli("stats", "--csv", "--by", "user,mode").stdout
        assert any(line.startswith("alice,offline,1,1,") for line in csv_text.splitlines()), csv_text
        assert not any(call.startswith("POST /api/accounting") for call in double.calls)

        spooler.stop()
        assert find_secrets([spooler.state_dir, spooler.stderr_path], [MYQ_SECRET, "735194", CARDS[0]]) == []
    finally:
        double.stop()


def test_myq_card_and_pin_at_the_terminal_end_to_end(queue: RefServer, spoolers: list[Spooler], tmp_path: Path) -> None:
    chromium = require_tool("chromium")
    sync_playwright = playwright_api()
    card, pin, password = "04D1CE7A55B3", "48152093", "Card-Pass-5c21"
    wrong_pins = ["90817265", "27364519", "56473829"]
    double = MyQDouble(client_id="branch-app", client_secret=MYQ_SECRET, users=[
        {"id": 1, "username": "alice", "fullname": "Alice Martin", "cards": [card], "pins": [pin],
         "password": password},
    ]).start()  # fmt: skip
    try:
        port = free_port()
        spooler = make_spooler(spoolers, queue, server__kind="myq", server__api_url=double.url,
                               server__client_id="branch-app", server__client_secret_env="BRANCH_MYQ_SECRET",
                               terminal__enabled=True, terminal__listen=f"tcp:{port}:interface=127.0.0.1",
                               login__max_failures=3)  # fmt: skip
        spooler.process_env = {"BRANCH_MYQ_SECRET": MYQ_SECRET}
        start_with_env(spooler)
        checked = check_with_env(spooler)
        assert "logins checked online   card, card+password, card+pin, password, pin" in checked, checked

        panel = TerminalClient(port)
        offered = ["pin", "card", "password", "card+pin", "card+password"]
        assert panel.call("GET", "login") == (200, {"methods": offered})
        for half in ({"method": "card+pin", "card": card}, {"method": "card+pin", "secret": pin},
                     {"method": "card+password", "secret": password}):  # fmt: skip
            status, refused = panel.call("POST", "login", half)
            assert (status, refused["code"]) == (400, "bad-request"), refused
        for second, method in ((pin, "card+pin"), (password, "card+password")):
            status, online = panel.call("POST", "login", {"method": method, "card": card, "secret": second})
            assert status == 200 and (online["user"], online["mode"]) == ("alice", "online"), online
        assert double.calls.count("GET /v3/users/find") == 2  # alice found by her card each time

        take_down(spooler, queue, double)
        with sync_playwright() as playwright:  # the page, offline: the card, then the PIN on the keypad
            browser = launch(playwright, chromium, tmp_path)
            try:
                page, outside = open_page(browser, port)
                page.click('.tab[data-method="card+pin"]')  # shown once the page learnt the server can check it
                page.fill("#pair-card", card)
                page.click("#pair-entry button.primary")
                page.wait_for_selector("#keypad", state="visible")
                assert page.inner_text("#pin-prompt") == "Card read. Now enter your PIN"
                for digit in pin:
                    page.click(f'#keypad button[data-key="{digit}"]')
                page.click('#keypad button[data-key="ok"]')
                page.wait_for_selector("#jobs", state="visible")
                assert page.inner_text("#hello") == "Hello, Alice Martin"
                assert "not available" in page.inner_text("#notice")
                assert outside == []
            finally:
                browser.close()
        status, offline = TerminalClient(port).call("POST", "login", {"method": "card+password", "card": card,
                                                                      "secret": password})  # fmt: skip
        assert status == 200 and (offline["user"], offline["mode"]) == ("alice", "offline"), offline

        # Neither factor alone logs in (alice only ever logged in with both).
        alone = TerminalClient(port, "127.0.0.2")
        for body in ({"method": "pin", "secret": pin}, {"method": "card", "secret": card},
                     {"method": "password", "user": "alice", "secret": password}):  # fmt: skip
            status, refused = alone.call("POST", "login", body)
            assert (status, refused["code"]) == (401, "invalid"), (body["method"], refused)
        # The right card with wrong PINs: refused, and counted: the right pair is then locked at that terminal.
        guesser = TerminalClient(port, "127.0.0.3")
        for wrong in wrong_pins:
            status, refused = guesser.call("POST", "login", {"method": "card+pin", "card": card, "secret": wrong})
            assert (status, refused["code"], refused["error"]) == (401, "invalid", "Wrong card or PIN."), refused
        status, locked = guesser.call("POST", "login", {"method": "card+pin", "card": card, "secret": pin})
        assert (status, locked["code"]) == (429, "locked") and locked["retry_after"] > 0, locked

        spooler.stop()
        leaks = find_secrets([spooler.state_dir, spooler.stderr_path], [MYQ_SECRET, card, pin, password, *wrong_pins])
        assert leaks == []
    finally:
        double.stop()


def start_with_env(spooler: Spooler) -> None:
    import os
    import subprocess

    stderr = open(spooler.stderr_path, "ab")
    spooler.process = subprocess.Popen(spooler.command(), stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                       env=os.environ | spooler.process_env)  # fmt: skip
    stderr.close()
    wait_for(spooler._ready, timeout=20, what="the spooler to listen")


def check_with_env(spooler: Spooler) -> str:
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "spooler", "server", "check", "--config", str(spooler.config_path)],
                            capture_output=True, text=True, timeout=60, env=os.environ | spooler.process_env)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
