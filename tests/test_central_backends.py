"""The PaperCut and MyQ backends (spooler.central) against test doubles of the products' documented
interfaces (tests/central_doubles.py) on loopback: logins, user sync and revocations, accounting
import (and a lost answer kept in doubt), health; plus the pure job-details string and the secrets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from central_doubles import MyQDouble, PaperCutDouble, parse_job_details
from spooler.accounting.records import RecordMaker
from spooler.central.base import SecretError, Unsupported, mask, read_secret
from spooler.central.myq import MyQBackend
from spooler.central.papercut import PaperCutBackend, job_details
from spooler.centralapi import ACCOUNTING, HEALTH, LOGIN, USERS, CentralApiDown, CentralApiInDoubt, CentralApiRefused
from spooler.config import AccountingConfig
from spooler.accounting.outbox import Outbox
from spooler.store.database import JobStore
from spooler.verifiers import check_verifier

TOKEN, HEALTH_KEY = "pc-token-5d1e", "pc-health-9a7b"


def run_now(function: Any, *args: Any) -> Any:
    return succeed(function(*args))


# -- the job-details string (pure) --------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [
    ("report.pdf", "document-name=report.pdf"),
    ("Library, rear", '"document-name=Library, rear"'),  # a comma: the pair is quoted
    ('"John Smith" Library', 'document-name=""John Smith"" Library'),  # quotes doubled (the manual's example)
    ('a "b", c', '"document-name=a ""b"", c"'),
    ("tab\there", "document-name=tabhere"),  # control characters dropped
])  # fmt: skip
def test_job_details_quote_as_the_manual_says(name: str, expected: str) -> None:
    record = {"record_id": "s:7", "user": "alice", "job_name": name, "printed_at": "2026-11-25T00:20:05.000Z",
              "impressions": 4, "color_pages": 1, "copies": 2, "duplex": True, "bytes": 5000}  # fmt: skip
    text = job_details(record, server="branch-1", printer="Floor 2, east")
    assert expected in text
    fields = parse_job_details(text)
    assert fields["document-name"] == name.replace("\t", "")
    assert fields == fields | {"user": "alice", "server": "branch-1", "printer": "Floor 2, east",
                               "time": "20261125T002005", "total-pages": "4", "total-color-pages": "1",
                               "grayscale": "FALSE", "copies": "2", "duplex": "TRUE", "document-size-kb": "4",
                               "comment": "branch-spooler record s:7"}  # fmt: skip


def test_unknown_figures_are_left_out_not_made_up() -> None:
    fields = parse_job_details(job_details({"record_id": "s:8", "user": "bob", "impressions": None,
                                            "color_pages": None}, server="s", printer="p"))  # fmt: skip
    assert set(fields) == {"user", "server", "printer", "comment"}


# -- secrets ------------------------------------------------------------------------------------------------


def test_secrets_come_from_a_private_file_or_the_environment(tmp_path: Path, monkeypatch: Any) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cr3t-value-123\n")
    secret.chmod(0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        read_secret("server.auth_token", file=secret, env=None)
    secret.chmod(0o600)
    assert read_secret("server.auth_token", file=secret, env=None) == "s3cr3t-value-123"
    monkeypatch.setenv("PC_TOKEN", "from-env")
    assert read_secret("k", file=None, env="PC_TOKEN") == "from-env"
    with pytest.raises(SecretError, match="NOPE is not set"):
        read_secret("k", file=None, env="NOPE")
    assert "s3cr3t" not in mask("s3cr3t-value-123") and mask("short") == "(5 characters)"


# -- PaperCut -------------------------------------------------------------------------------------------------


def papercut_users() -> dict[str, dict[str, Any]]:
    return {
        "alice": {"full-name": "Alice Martin", "email": "alice@example.com", "primary-card-number": "04C0FFEE5A17",
                  "secondary-card-number": "7351", "disabled-print": False, "balance": 25.5},
        "bob": {"full-name": "Bob Dupont", "primary-card-number": "0AB1C2D3E4", "disabled-print": True, "balance": 1},
        "carol": {"full-name": "Carol Novak", "primary-card-number": "C0FFEE0142", "disabled-print": False},
    }  # fmt: skip


@pytest.fixture
def papercut() -> Any:
    double = PaperCutDouble(auth_token=TOKEN, health_key=HEALTH_KEY, users=papercut_users()).start()
    backend = PaperCutBackend(reactor, double.url, auth_token=TOKEN, health_key=HEALTH_KEY, device="branch-1",
                              server_name=None, printer_name="Floor 2", run_in_thread=run_now)  # fmt: skip
    yield double, backend
    double.stop()


@pytest_twisted.ensureDeferred
async def test_papercut_card_and_id_number_logins(papercut: Any) -> None:
    double, backend = papercut
    answer = await backend.call("POST", "login", {"device": "b", "method": "card", "secret": "04C0FFEE5A17"},
                                deadline=LOGIN)  # fmt: skip
    assert answer["user"] == {"name": "alice", "full_name": "Alice Martin", "email": "alice@example.com",
                              "groups": [], "credit": 25.5}  # fmt: skip
    assert answer["credential"] == "card-1"
    second = await backend.call("POST", "login", {"method": "card", "secret": "7351"}, deadline=LOGIN)
    assert (second["user"]["name"], second["credential"]) == ("alice", "card-2")
    for secret in ("nope", "0AB1C2D3E4"):  # unknown; bob's printing is disabled
        with pytest.raises(CentralApiRefused) as refused:
            await backend.call("POST", "login", {"method": "card", "secret": secret}, deadline=LOGIN)
        assert refused.value.status == 401
    with pytest.raises(Unsupported, match="cannot check a pin"):
        await backend.call("POST", "login", {"method": "pin", "secret": "1234"}, deadline=LOGIN)
    assert "pin" not in backend.capabilities.login_methods
    assert double.calls[:2] == ["api.lookUpUserNameByCardNo", "api.getUserProperties"]


@pytest_twisted.ensureDeferred
async def test_papercut_refuses_a_wrong_token_and_a_stopped_server_is_down(papercut: Any) -> None:
    double, backend = papercut
    wrong = PaperCutBackend(reactor, double.url, auth_token="wrong", health_key=None, device="b", server_name=None,
                            printer_name=None, run_in_thread=run_now)  # fmt: skip
    with pytest.raises(CentralApiRefused, match="Invalid authentication token"):
        await wrong.call("GET", "health", deadline=HEALTH)
    double.stop()
    with pytest.raises(CentralApiDown) as down:
        await backend.call("POST", "login", {"method": "card", "secret": "04C0FFEE5A17"}, deadline=LOGIN)
    assert not isinstance(down.value, CentralApiInDoubt)  # refused at connect: it never reached the server


@pytest_twisted.ensureDeferred
async def test_papercut_sync_makes_verifiers_and_revocations_come_from_comparing_snapshots(papercut: Any) -> None:
    double, backend = papercut
    answer = await backend.call("GET", ("devices", "branch-1", "users"), deadline=USERS)
    users = {user["name"]: user for user in answer["users"]}
    assert set(users) == {"alice", "carol"} and answer["truncated"] is False  # bob: printing disabled
    cards = {card["id"]: card["verifier"] for card in users["alice"]["cards"]}
    assert check_verifier("04C0FFEE5A17", cards["card-1"]) and check_verifier("7351", cards["card-2"])
    assert "04C0FFEE5A17" not in json.dumps(answer)
    first = await backend.call("GET", "revocations", deadline=USERS)
    assert [(r["user"], r["kind"]) for r in first["revocations"]] == [("bob", "user")]
    # Changes at the server: carol's printing disabled, alice's second card replaced, a user removed.
    double.users["carol"]["disabled-print"] = True
    double.users["alice"]["secondary-card-number"] = "9999"
    double.users["dave"] = {"full-name": "Dave", "primary-card-number": "D4", "disabled-print": False}
    await backend.call("GET", ("devices", "branch-1", "users"), deadline=USERS)
    del double.users["dave"]
    await backend.call("GET", ("devices", "branch-1", "users"), deadline=USERS)
    found = (await backend.call("GET", "revocations", deadline=USERS))["revocations"]
    assert sorted((r["user"], r["kind"], r["credential"]) for r in found) == [
        ("alice", "card", "card-2"), ("carol", "user", None), ("dave", "user", None)]
    assert (await backend.call("GET", "revocations", deadline=USERS))["revocations"] == []  # each once


@pytest_twisted.ensureDeferred
async def test_papercut_health_uses_the_key_and_reports_an_unhealthy_server(papercut: Any) -> None:
    double, backend = papercut
    assert (await backend.call("GET", "health", deadline=HEALTH))["source"] == "/api/health/status"
    double.healthy = False
    with pytest.raises(CentralApiDown, match="cannot connect to the database"):
        await backend.call("GET", "health", deadline=HEALTH)
    wrong_key = PaperCutBackend(reactor, double.url, auth_token=TOKEN, health_key="wrong", device="b",
                                server_name=None, printer_name=None, run_in_thread=run_now)  # fmt: skip
    with pytest.raises(CentralApiRefused) as refused:
        await wrong_key.call("GET", "health", deadline=HEALTH)
    assert refused.value.status == 401


@pytest_twisted.ensureDeferred
async def test_papercut_imports_one_job_per_call_and_a_lost_answer_stays_in_doubt(papercut: Any,
                                                                                 tmp_path: Path) -> None:
    double, backend = papercut
    from test_accounting import T0, finished

    store = JobStore.open(tmp_path / "spooler.db", record_maker=RecordMaker(device="branch-1"))
    for job_id in (1, 2, 3):
        finished(store, job_id, completed_at=T0 + job_id)
    records = [body for _, body in store.records_to_send(10, not_before=0)]
    with pytest.raises(CentralApiRefused) as batch:  # a batch: the outbox halves it down to one
        await backend.call("POST", "accounting", ('{"records": [' + ",".join(records) + "]}").encode(),
                           deadline=ACCOUNTING)  # fmt: skip
    assert batch.value.status == 413 and double.jobs == []

    clock = Clock()
    clock.advance(T0 + 100)
    done: list[Any] = []

    class Recorder:
        """The real backend, with the outbox's clock turned after each answer."""

        kind, capabilities = backend.kind, backend.capabilities

        def call(self, *args: Any, **kwargs: Any) -> Any:
            return backend.call(*args, **kwargs).addBoth(lambda result: (done.append(result), result)[1])

    outbox = Outbox(store=store, api=Recorder(), clock=clock, config=AccountingConfig(retry_initial=1.0, retry_max=1.0))
    double.lose_answers = 1  # the first processJob is stored, its answer lost
    outbox.start()
    clock.advance(0)
    while len(done) < 3:
        await _tick()
        clock.advance(1.0)
    counts = store.outbox_counts(not_before=0)
    assert (counts["sent"], counts["in_doubt"]) == (2, 1), counts
    # Oldest first; the in-doubt one reached PaperCut once and was not sent again.
    assert [job["comment"] for job in double.jobs] == [f"branch-spooler record {store.spool_id}:{n}" for n in (1, 2, 3)]
    outbox.stop()
    in_doubt = [r for r in store.unsent_records() if r["_rejected"]]
    assert len(in_doubt) == 1 and in_doubt[0]["_rejected"].startswith("in doubt: ")
    assert store.resolve_in_doubt(in_doubt[0]["job_id"], imported=True, now=T0 + 200)
    assert store.outbox_counts(not_before=0)["sent"] == 3
    store.close()


async def _tick() -> None:
    from twisted.internet.task import deferLater

    await deferLater(reactor, 0.05, lambda: None)


# -- MyQ X ------------------------------------------------------------------------------------------------------


def myq_users() -> list[dict[str, Any]]:
    return [
        {"id": 1, "username": "alice", "fullname": "Alice Martin", "email": "alice@example.com",
         "cards": ["04C0FFEE5A17"], "pins": ["735194"], "password": "Alice-Pass"},
        {"id": 2, "username": "bob", "fullname": "Bob Dupont", "cards": ["0AB1"], "pins": ["628403"], "isActive": 0},
        {"id": 3, "username": "carol", "fullname": "Carol Novak", "pins": ["951862"], "password": "Carol-Pass"},
    ]  # fmt: skip


@pytest.fixture
def myq() -> Any:
    double = MyQDouble(client_id="app-1", client_secret="myq-secret-42", users=myq_users()).start()
    backend = MyQBackend(reactor, double.url, client_id="app-1", client_secret="myq-secret-42", scope="users",
                         device="branch-1")  # fmt: skip
    yield double, backend
    double.stop()


@pytest_twisted.ensureDeferred
async def test_myq_logins_through_the_login_info_grant(myq: Any) -> None:
    double, backend = myq
    for body, expected in [({"method": "card", "secret": "04C0FFEE5A17"}, "alice"),
                           ({"method": "pin", "secret": "951862"}, "carol"),
                           ({"method": "password", "secret": "Alice-Pass", "user": "alice"}, "alice")]:  # fmt: skip
        answer = await backend.call("POST", "login", body, deadline=LOGIN)
        assert (answer["user"]["name"], answer["method"]) == (expected, body["method"])
    for body in [{"method": "pin", "secret": "000000"}, {"method": "card", "secret": "0AB1"},  # bob is inactive
                 {"method": "password", "secret": "wrong", "user": "alice"}]:  # fmt: skip
        with pytest.raises(CentralApiRefused) as refused:
            await backend.call("POST", "login", body, deadline=LOGIN)
        assert refused.value.status == 401
    # One client-credentials token served every lookup (kept until shortly before expires_in).
    assert double.calls.count("POST /api/auth/token") == 6 + 1


@pytest.mark.parametrize("body, login_info", [
    ({"method": "card", "secret": "04C0FFEE5A17"}, {"type": 1, "card": "04C0FFEE5A17"}),
    ({"method": "pin", "secret": "735194"}, {"type": 2, "pin": "735194"}),
    ({"method": "password", "secret": "Alice-Pass", "user": "alice"},
     {"type": 3, "user": "alice", "pwd": "Alice-Pass"}),
    ({"method": "card+pin", "secret": "735194", "card": "04C0FFEE5A17"},
     {"type": 4, "card": "04C0FFEE5A17", "pin": "735194"}),
    ({"method": "card+password", "secret": "Alice-Pass", "card": "04C0FFEE5A17"},
     {"type": 5, "card": "04C0FFEE5A17", "pwd": "Alice-Pass"}),
])  # fmt: skip
def test_myq_login_info_has_the_documented_properties_of_each_type(body: dict[str, Any],
                                                                   login_info: dict[str, Any]) -> None:  # fmt: skip
    assert MyQBackend.login_info(body) == login_info
    assert MyQDouble.LOGIN_INFO[login_info["type"]] == tuple(k for k in login_info if k != "type")


@pytest_twisted.ensureDeferred
async def test_myq_card_and_pin_and_card_and_password_logins(myq: Any) -> None:
    double, backend = myq
    card = "04C0FFEE5A17"
    for body, expected in [({"method": "card+pin", "secret": "735194", "card": card}, 200),
                           ({"method": "card+password", "secret": "Alice-Pass", "card": card}, 200),
                           ({"method": "card+pin", "secret": "951862", "card": card}, 401),  # carol's PIN
                           ({"method": "card+pin", "secret": "735194", "card": "0FF1CE"}, 401),  # no such card
                           ({"method": "card+password", "secret": "Carol-Pass", "card": card}, 401),
                           ({"method": "card+pin", "secret": "628403", "card": "0AB1"}, 401)]:  # bob: inactive
        if expected == 200:
            answer = await backend.call("POST", "login", body, deadline=LOGIN)
            assert (answer["user"]["name"], answer["method"], answer["credential"]) == (
                "alice", body["method"], body["method"])
            continue
        with pytest.raises(CentralApiRefused) as refused:
            await backend.call("POST", "login", body, deadline=LOGIN)
        assert refused.value.status == 401, body
    # The user of a combined login is found by the card (GET /v3/users/find?card=), never by the PIN.
    assert double.calls.count("GET /v3/users/find") == 2 and "GET /v3/users/current" not in double.calls


@pytest_twisted.ensureDeferred
async def test_myq_token_is_renewed_after_a_401(myq: Any) -> None:
    double, backend = myq
    await backend.call("POST", "login", {"method": "card", "secret": "04C0FFEE5A17"}, deadline=LOGIN)
    double.tokens.clear()  # the server forgot every token (restart)
    answer = await backend.call("POST", "login", {"method": "card", "secret": "04C0FFEE5A17"}, deadline=LOGIN)
    assert answer["user"]["name"] == "alice"


@pytest_twisted.ensureDeferred
async def test_myq_says_what_it_cannot_do_and_feeds_revocations(myq: Any) -> None:
    double, backend = myq
    users = await backend.call("GET", ("devices", "branch-1", "users"), deadline=USERS)
    assert users["users"] == [] and users["unsupported"] == "credential pre-sync"
    with pytest.raises(Unsupported, match="no accounting import"):
        backend.call("POST", "accounting", b'{"records": []}', deadline=ACCOUNTING)
    first = await backend.call("GET", "revocations", deadline=USERS)
    assert [(r["user"], r["kind"]) for r in first["revocations"]] == [("bob", "user")]  # inactive
    double.users = [u for u in double.users if u["username"] != "carol"]  # removed at the server
    second = await backend.call("GET", "revocations", deadline=USERS)
    assert [(r["user"], r["kind"]) for r in second["revocations"]] == [("carol", "user")]
    assert (await backend.call("GET", "health", deadline=HEALTH))["status"] == "ok"
    wrong = MyQBackend(reactor, double.url, client_id="app-1", client_secret="wrong", scope="users", device="b")
    with pytest.raises(CentralApiRefused) as refused:
        await wrong.call("GET", "health", deadline=HEALTH)
    assert refused.value.status == 401


def test_the_spooler_refuses_a_method_the_server_cannot_check_online_and_offline(tmp_path: Path) -> None:
    from test_login import login, open_cache, run_synchronously

    from spooler.config import LoginConfig
    from spooler.login.service import LoginRefused, LoginService

    backend = PaperCutBackend(Clock(), "http://127.0.0.1:9/", auth_token="t", health_key=None, device="b",
                              server_name=None, printer_name=None, run_in_thread=run_now)  # fmt: skip
    for down in (False, True):
        service = LoginService(Clock(), LoginConfig(), open_cache(tmp_path), device="b", api=backend,
                               run_in_thread=run_synchronously, server_known_down=lambda: down)  # fmt: skip
        refused = login(service, "1234", method="pin")
        assert isinstance(refused, LoginRefused) and refused.reason == "unsupported"
        assert "cannot check a pin" in refused.message
        refused = login(service, "1234", method="card+pin", card="04C0FFEE5A17")
        assert isinstance(refused, LoginRefused) and refused.reason == "unsupported"
        assert "cannot check a card and PIN" in refused.message
