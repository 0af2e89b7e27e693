"""Unit tests of the reference central server: the API's logic on a clock, and its HTTP face and failure
modes in process on a real reactor (loopback ports)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock, deferLater
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from spooler.refserver.api import ApiError, CentralApi
from spooler.refserver.modes import ModeController
from spooler.refserver.service import SAMPLE_USERS, RefServerOptions, RefServerService
from spooler.refserver.store import CentralStore, iso, parse_iso
from spooler.refserver.users import UserDirectory, UsersFileError
from spooler.verifiers import check_verifier
from spooler_harness import free_port

pytestmark = pytest.mark.filterwarnings("ignore:Using readBody:DeprecationWarning")  # Agent's own transport

COST = 1024  # scrypt N for tests: the format is the same, the hashing is fast

USERS: dict[str, Any] = {
    "users": [
        {"name": "alice", "full_name": "Alice Martin", "email": "alice@example.com", "groups": ["staff"],
         "credit": 10, "password": "alice-pw", "pins": ["1234"], "cards": ["CARD-A1", "CARD-A2"]},
        {"name": "bob", "password": "bob-pw", "pins": ["4321", "1111"], "cards": ["CARD-B1"]},
        {"name": "carol", "password": "carol-pw", "pins": ["2468"], "devices": ["branch-1"]},
    ],
    "revocations": [{"user": "bob", "kind": "pin", "credential": "pin-2", "revoked_at": "2026-01-01T00:00:00Z"}],
}  # fmt: skip
SECRETS = ("alice-pw", "1234", "CARD-A1", "CARD-A2", "bob-pw", "4321", "1111", "CARD-B1", "carol-pw", "2468")


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(parse_iso("2026-06-01T12:00:00Z"))
    return clock


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CentralStore]:
    store = CentralStore.open(tmp_path / "central.db")
    yield store
    store.close()


@pytest.fixture
def api(store: CentralStore, clock: Clock) -> CentralApi:
    directory, revocations = UserDirectory.from_mapping(USERS, cost=COST)
    return CentralApi(directory, store, clock, revocations)


# -- logic -----------------------------------------------------------------------------------------


def test_health_says_ok_with_the_server_time(api: CentralApi) -> None:
    health = api.health()
    assert health["status"] == "ok"
    assert health["server_time"] == "2026-06-01T12:00:00.000Z"


@pytest.mark.parametrize(("method", "user", "secret", "expected"), [
    ("pin", None, "1234", "alice"), ("card", None, "CARD-A2", "alice"), ("password", "alice", "alice-pw", "alice"),
    ("pin", "bob", "4321", "bob"), ("card", None, "CARD-B1", "bob"),
])  # fmt: skip
def test_login_with_a_good_secret_returns_the_profile(api: CentralApi, method: str, user: str | None, secret: str,
                                                      expected: str) -> None:  # fmt: skip
    answer = api.login({"device": "branch-2", "method": method, "user": user, "secret": secret})
    assert answer["user"]["name"] == expected
    assert set(answer["user"]) == {"name", "full_name", "email", "groups", "credit"}
    assert answer["method"] == method


@pytest.mark.parametrize("body", [
    {"device": "d", "method": "pin", "secret": "0000"},
    {"device": "d", "method": "password", "user": "alice", "secret": "bob-pw"},
    {"device": "d", "method": "pin", "user": "bob", "secret": "1234"},  # alice's PIN, bob's name
    {"device": "d", "method": "card", "secret": "1234"},  # a PIN is not a card
    {"device": "d", "method": "password", "user": "nobody", "secret": "x"},
    {"device": "branch-2", "method": "pin", "secret": "2468"},  # carol is only on branch-1
    {"device": "d", "method": "pin", "secret": "1111"},  # bob's pin-2 is revoked in the users file
])  # fmt: skip
def test_login_with_a_bad_secret_is_401(api: CentralApi, body: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as refused:
        api.login(body)
    assert refused.value.status == 401


@pytest.mark.parametrize("body", [
    None, [], {"method": "pin", "secret": "1"}, {"device": "d", "method": "face", "secret": "1"},
    {"device": "d", "method": "pin", "secret": ""}, {"device": "d", "method": "password", "secret": "alice-pw"},
])  # fmt: skip
def test_a_malformed_login_is_400(api: CentralApi, body: Any) -> None:
    with pytest.raises(ApiError) as refused:
        api.login(body)
    assert refused.value.status == 400


def test_user_sync_sends_verifiers_never_secrets(api: CentralApi) -> None:
    answer = api.users("branch-1")
    text = json.dumps(answer)
    for secret in SECRETS:
        assert f'"{secret}"' not in text
    users = {user["name"]: user for user in answer["users"]}
    assert sorted(users) == ["alice", "bob", "carol"] and answer["truncated"] is False
    alice = users["alice"]
    assert [card["id"] for card in alice["cards"]] == ["card-1", "card-2"]
    assert check_verifier("CARD-A2", alice["cards"][1]["verifier"])
    assert check_verifier("1234", alice["pins"][0]["verifier"])
    assert check_verifier("alice-pw", alice["password"]["verifier"])
    assert not check_verifier("CARD-A1", alice["cards"][1]["verifier"])
    assert [pin["id"] for pin in users["bob"]["pins"]] == ["pin-1"]  # pin-2 revoked
    assert "carol" not in {user["name"] for user in api.users("branch-2")["users"]}


def test_user_sync_is_capped_at_100_users(store: CentralStore, clock: Clock) -> None:
    many = {"users": [{"name": f"user{i:03d}"} for i in range(105)]}
    directory, _ = UserDirectory.from_mapping(many, cost=COST)
    answer = CentralApi(directory, store, clock).users("d")
    assert len(answer["users"]) == 100 and answer["truncated"] is True


def test_users_file_limits(store: CentralStore) -> None:
    with pytest.raises(UsersFileError, match="at most 3 cards"):
        UserDirectory.from_mapping({"users": [{"name": "x", "cards": ["1", "2", "3", "4"]}]}, cost=COST)
    with pytest.raises(UsersFileError, match="listed twice"):
        UserDirectory.from_mapping({"users": [{"name": "x"}, {"name": "x"}]}, cost=COST)


def test_the_sample_users_file_loads() -> None:
    directory, revocations = UserDirectory.load(SAMPLE_USERS, cost=COST)
    assert len(directory.users) == 3 and revocations == []


def test_revocations_since(api: CentralApi, clock: Clock) -> None:
    everything = api.revocations(None)
    assert everything["revocations"] == [{"user": "bob", "kind": "pin", "credential": "pin-2",
                                          "revoked_at": "2026-01-01T00:00:00.000Z"}]  # fmt: skip
    since = everything["server_time"]
    assert api.revocations(since)["revocations"] == []
    clock.advance(5)
    api.revoke({"user": "alice", "kind": "card", "credential": "card-1"})
    assert [r["user"] for r in api.revocations(since)["revocations"]] == ["alice"]
    with pytest.raises(ApiError):
        api.revocations("yesterday")
    # the revoked card no longer logs in; the other one does
    with pytest.raises(ApiError):
        api.login({"device": "d", "method": "card", "secret": "CARD-A1"})
    assert api.login({"device": "d", "method": "card", "secret": "CARD-A2"})["credential"] == "card-2"
    assert [card["id"] for card in api.users("d")["users"][0]["cards"]] == ["card-2"]


def test_revoking_a_user_blocks_every_login_and_the_sync(api: CentralApi) -> None:
    api.revoke({"user": "alice"})
    with pytest.raises(ApiError):
        api.login({"device": "d", "method": "pin", "secret": "1234"})
    assert "alice" not in {user["name"] for user in api.users("d")["users"]}


def test_accounting_is_idempotent_by_record_id_across_restarts(tmp_path: Path, clock: Clock) -> None:
    directory, _ = UserDirectory.from_mapping({"users": []}, cost=COST)
    store = CentralStore.open(tmp_path / "central.db")
    api = CentralApi(directory, store, clock)
    first = {"record_id": "r1", "user": "alice", "pages": 3}
    assert api.upload_accounting({"records": [first, {"record_id": "r2"}]}) == {"accepted": 2, "duplicates": 0}
    assert api.upload_accounting({"records": [first, first, {"record_id": "r3"}]}) == {"accepted": 1,
                                                                                        "duplicates": 2}  # fmt: skip
    store.close()
    store = CentralStore.open(tmp_path / "central.db")
    api = CentralApi(directory, store, clock)
    assert api.upload_accounting({"records": [first]}) == {"accepted": 0, "duplicates": 1}
    records = api.accounting()["records"]
    assert [r["record_id"] for r in records] == ["r1", "r2", "r3"]
    assert records[0]["pages"] == 3 and records[0]["received_at"] == iso(clock.seconds())
    store.close()


@pytest.mark.parametrize("body", [None, {}, {"records": {}}, {"records": [{"pages": 1}]},
                                  {"records": [{"record_id": ""}]}, {"records": ["r1"]}])  # fmt: skip
def test_a_malformed_upload_is_400_and_stores_nothing(api: CentralApi, body: Any) -> None:
    with pytest.raises(ApiError) as refused:
        api.upload_accounting(body)
    assert refused.value.status == 400
    assert api.accounting()["records"] == []


def test_mode_controller_checks_its_input() -> None:
    controller = ModeController()
    with pytest.raises(ValueError):
        controller.set("broken")
    with pytest.raises(ValueError):
        controller.set("slow", -1)


# -- over HTTP, in process ---------------------------------------------------------------------------


@pytest.fixture
def reactor() -> Any:
    from twisted.internet import reactor as global_reactor

    return global_reactor


@pytest.fixture
def server(reactor: Any, short_tmp: Path) -> Iterator[RefServerService]:
    users = short_tmp / "users.json"
    users.write_text(json.dumps(USERS))
    options = RefServerOptions(state=short_tmp / "state", api=f"tcp:{free_port()}:interface=127.0.0.1",
                               ipp=f"tcp:{free_port()}:interface=127.0.0.1", lpd=None, users=users,
                               verifier_cost=COST)  # fmt: skip
    service = RefServerService(options, reactor)
    service.startService()
    yield service
    pytest_twisted.blockon(service.stopService())


def port_of(server: RefServerService, name: str) -> int:
    return int(server.listeners()[name].rsplit(":", 1)[1])


async def request(reactor: Any, server: RefServerService, method: str, path: str, body: Any = None,
                  port: int | None = None) -> tuple[int, Any]:  # fmt: skip
    url = f"http://127.0.0.1:{port or port_of(server, 'api')}/api/v1/{path}".encode()
    producer = FileBodyProducer(BytesIO(json.dumps(body).encode())) if body is not None else None
    response = await Agent(reactor).request(method.encode(), url, Headers({b"content-type": [b"application/json"]}),
                                            producer)  # fmt: skip
    data = await readBody(response)
    return response.code, json.loads(data)


@pytest_twisted.ensureDeferred
async def test_api_endpoints_over_http(reactor: Any, server: RefServerService) -> None:
    code, health = await request(reactor, server, "GET", "health")
    assert code == 200 and health["status"] == "ok"
    code, login = await request(reactor, server, "POST", "login", {"device": "d", "method": "pin", "secret": "1234"})
    assert code == 200 and login["user"]["name"] == "alice"
    code, refused = await request(reactor, server, "POST", "login", {"device": "d", "method": "pin", "secret": "9"})
    assert code == 401 and refused == {"error": "invalid credentials", "code": "invalid-credentials"}
    code, users = await request(reactor, server, "GET", "devices/branch-1/users")
    assert code == 200 and len(users["users"]) == 3
    code, revocations = await request(reactor, server, "GET", "revocations?since=2025-12-31T00:00:00Z")
    assert code == 200 and len(revocations["revocations"]) == 1
    upload = {"records": [{"record_id": "x1"}, {"record_id": "x1"}]}
    assert await request(reactor, server, "POST", "accounting", upload) == (200, {"accepted": 1, "duplicates": 1})
    code, stored = await request(reactor, server, "GET", "accounting")
    assert [r["record_id"] for r in stored["records"]] == ["x1"]
    assert (await request(reactor, server, "GET", "nowhere"))[0] == 404
    assert (await request(reactor, server, "POST", "login", None))[0] == 400


@pytest_twisted.ensureDeferred
async def test_error_and_slow_modes_over_http(reactor: Any, server: RefServerService) -> None:
    await server.controller.set("error")
    code, body = await request(reactor, server, "GET", "health")
    assert code == 503 and "error" in body
    await server.controller.set("slow", 0.4)
    started = time.monotonic()
    code, _ = await request(reactor, server, "GET", "health")
    assert code == 200 and time.monotonic() - started >= 0.4
    await server.controller.set("normal")
    started = time.monotonic()
    assert (await request(reactor, server, "GET", "health"))[0] == 200
    assert time.monotonic() - started < 0.4


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    sock.setblocking(False)
    return sock


@pytest_twisted.ensureDeferred
async def test_refuse_and_hang_modes_in_process(reactor: Any, server: RefServerService) -> None:
    api_port, ipp_port = port_of(server, "api"), port_of(server, "ipp")
    await server.controller.set("refuse")
    assert server.listeners() == {}
    for port in (api_port, ipp_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    await server.controller.set("hang")
    hung = _connect(api_port)
    hung.send(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    await deferLater(reactor, 0.3, lambda: None)
    with pytest.raises(BlockingIOError):
        hung.recv(100)  # accepted, never answered
    assert server.controller.as_dict()["connections"]["api"] == 1
    await server.controller.set("normal")
    await deferLater(reactor, 0.1, lambda: None)
    try:
        assert hung.recv(100) == b""  # cut when the mode changed
    except ConnectionResetError:
        pass
    hung.close()
    code, _ = await request(reactor, server, "GET", "health", port=api_port)
    assert code == 200


def test_status_of_the_control_api(server: RefServerService) -> None:
    status = server.status()
    assert status["mode"] == "normal" and set(status["listeners"]) == {"api", "ipp"}
    assert status["accounting_records"] == 0 and status["received_jobs"] == 0



# -- the held queue (--hold), on a clock -------------------------------------------------------------------


def test_the_held_queue_holds_every_job_and_releases_after_working_time_only(tmp_path: Path) -> None:
    from inprocess import Rig
    from spooler.intake.base import JobRequest
    from spooler.model import JobState
    from spooler.refserver.hold import HeldQueue

    rig = Rig(tmp_path)
    controller = ModeController()
    hold = HeldQueue(rig.service, controller, rig.clock, release_after=10)
    hold.start()
    first = rig.submit(b"first", user="ann")
    created = rig.service.create_job(JobRequest(protocol="ipp", host="h", user="ann", name="documents to come"))
    assert (first.state, first.reason) == (JobState.PENDING_HELD, "job-held-on-create")
    assert [job.job_id for job in hold.held()] == [first.job_id]  # an incoming job is not whole yet
    rig.clock.pump([1] * 6)
    controller.set("hang")  # nobody can release anything while the server fails
    rig.clock.pump([1] * 20)
    assert rig.store.get(first.job_id).state == JobState.PENDING_HELD
    controller.set("normal")
    rig.clock.pump([1] * 9)
    assert rig.store.get(first.job_id).state == JobState.PENDING_HELD  # the count started again
    rig.clock.pump([1] * 2)
    assert rig.store.get(first.job_id).state == JobState.PENDING
    assert rig.store.get(created.job_id).state == JobState.PENDING_HELD  # still waiting for its documents
    assert hold.status() == {"hold": True, "release_after": 10, "held_jobs": 0}


def test_ctl_release_releases_the_named_jobs_or_all(tmp_path: Path) -> None:
    from inprocess import Rig
    from spooler.model import JobNotFound, JobState
    from spooler.refserver.hold import HeldQueue

    rig = Rig(tmp_path)
    hold = HeldQueue(rig.service, ModeController(), rig.clock, release_after=None)
    hold.start()
    jobs = [rig.submit(b"job", user="ann") for _ in range(3)]
    rig.service.cancel(jobs[0].job_id, requester="ann")  # its owner canceled it (IPP Cancel-Job)
    assert hold.release([jobs[1].job_id]) == [jobs[1].job_id]
    with pytest.raises(JobNotFound):
        hold.release([99])
    rig.clock.advance(3600)
    assert rig.store.get(jobs[2].job_id).state == JobState.PENDING_HELD  # no release on its own
    assert hold.release() == [jobs[2].job_id]
    assert [rig.store.get(job.job_id).state for job in jobs] == [JobState.CANCELED, JobState.PENDING, JobState.PENDING]
