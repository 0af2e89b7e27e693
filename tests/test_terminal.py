"""The device terminal in process: raw HTTP bytes into its twisted.web site over a StringTransport, a
JobService on a Clock with a scripted central server and device, and a scripted login service (the
real one is exercised end to end in test_e2e_terminal.py)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher

from inprocess import Rig
from spooler.config import config_from_mapping, load_config
from spooler.login.service import LoginOutcome, LoginRefused
from spooler.model import ConfigError, JobState
from spooler.terminal.resource import MAX_BODY, TerminalResource, TerminalSite, refusal_text, wait_text
from spooler.terminal.sessions import SessionStore

SERVER = {"queue_uri": "ipp://server.test/ipp/print", "probe_interval": 1, "probe_timeout": 1,
          "down_after": 2, "up_after": 2}  # fmt: skip
NOTICE = "Offline: credit, quota, projects and print policies are not available."


@dataclass
class FakeLogin:
    """PIN "1234" is alice, "4321" is bob, card "C0FFEE" is carol (with PIN "2468": card+pin); `mode`
    says online or offline; `refusal`, when set, refuses every login; `calls` records (method, user,
    terminal); `offered` is what `methods` says the server can check."""

    clock: Any
    mode: str = "online"
    refusal: LoginRefused | None = None
    calls: list[tuple[str, str | None, str]] = field(default_factory=list)
    pending: Deferred[LoginOutcome] | None = None
    offered: tuple[str, ...] = ("pin", "card", "password")

    def methods(self) -> list[str]:
        return list(self.offered)

    def login(self, *, method: str, secret: str, user: str | None, terminal: str,
              card: str | None = None) -> Deferred[LoginOutcome]:  # fmt: skip
        self.calls.append((method, user, terminal))
        if self.pending is not None:
            return self.pending
        if self.refusal is not None:
            return fail(self.refusal)
        known = {("pin", None, "1234"): "alice", ("pin", None, "4321"): "bob", ("card", None, "C0FFEE"): "carol",
                 ("password", None, "alice-password"): "alice", ("card+pin", "C0FFEE", "2468"): "carol"}  # fmt: skip
        name = known.get((method, card, secret))
        if name is None or (user is not None and user != name):
            raise LoginRefused("invalid", "invalid credentials")
        return succeed(LoginOutcome(name, {"name": name, "full_name": name.title() + " Example"}, self.mode,
                               NOTICE if self.mode == "offline" else None, self.clock.seconds() + 86400))


class Client:
    """HTTP/1.1 requests to the terminal site, one connection each, from `address`; keeps its cookie."""

    def __init__(self, site: TerminalSite, address: str = "127.0.0.1") -> None:
        self.site = site
        self.address = address
        self.cookie: str | None = None

    def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                content_type: str | None = "application/json", headers: dict[str, str] | None = None,
                use_cookie: bool = True) -> tuple[int, dict[str, str], Any]:  # fmt: skip
        peer = IPv4Address("TCP", self.address, 40000)
        channel = self.site.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        channel.makeConnection(transport)
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        lines = [f"{method} {path} HTTP/1.1", "Host: terminal.test:8633", f"Content-Length: {len(payload)}"]
        if content_type and method == "POST":
            lines.append(f"Content-Type: {content_type}")
        if use_cookie and self.cookie:
            lines.append(f"Cookie: spooler_terminal={self.cookie}")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        return self.parse(transport.value())

    def parse(self, raw: bytes) -> tuple[int, dict[str, str], Any]:
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        headers: dict[str, str] = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.decode().partition(":")
            name = name.strip().lower()
            headers[name] = (headers[name] + "\n" if name in headers else "") + value.strip()
            if name == "set-cookie" and value.strip().startswith("spooler_terminal="):
                self.cookie = value.strip().split(";")[0].split("=", 1)[1] or None
        if headers.get("content-type") == "application/json":
            return status, headers, json.loads(body)
        return status, headers, body

    def login(self, secret: str = "1234", method: str = "pin", **extra: Any) -> tuple[int, dict[str, str], Any]:
        return self.request("POST", "/api/v1/login", {"method": method, "secret": secret, **extra})

    def jobs(self) -> list[dict[str, Any]]:
        status, _, body = self.request("GET", "/api/v1/jobs")
        assert status == 200, body
        return list(body["jobs"])


class Terminal:
    def __init__(self, tmp_path: Path, policy: str = "hold", **extra: Any) -> None:
        self.rig = Rig(tmp_path, server=SERVER, queues={"default": {"offline_policy": policy}}, **extra)
        self.rig.dispatcher.start()
        self.login = FakeLogin(self.rig.clock)
        self.resource = TerminalResource(self.rig.service, lambda: self.login, self.rig.clock,
                                         session_idle=120, terminal_name=None)  # fmt: skip
        self.site = TerminalSite(self.resource, clock=self.rig.clock)

    def tick(self, seconds: float = 0) -> None:
        self.rig.clock.advance(seconds)

    def take_down(self) -> None:
        self.rig.server.probe_results[:] = [False, False]  # type: ignore[union-attr]
        self.tick(0)
        self.tick(1)
        assert self.rig.dispatcher.mode.value == "offline"

    def bring_up(self) -> None:
        self.rig.server.probe_results[:] = [True, True]  # type: ignore[union-attr]
        self.tick(1)
        self.tick(1)
        assert self.rig.dispatcher.mode.value == "online"

    def held_job(self, user: str, name: str, analysis: dict[str, Any] | None = None) -> int:
        job = self.rig.submit(name.encode(), user=user, name=name)
        self.tick()
        stored = self.rig.store.get(job.job_id)
        assert stored.state is JobState.PENDING_HELD, stored
        if analysis is not None:
            self.rig.store.update_job(stored.evolve(attributes=stored.attributes | {"analysis": analysis}))
        return job.job_id

    def client(self, address: str = "127.0.0.1") -> Client:
        return Client(self.site, address)


@pytest.fixture
def terminal(tmp_path: Path) -> Terminal:
    made = Terminal(tmp_path)
    made.take_down()
    return made


ANALYSED = {"status": "ok", "pages": 3, "color_impressions": 1, "mono_impressions": 2, "sheets": 3}


# -- the page ---------------------------------------------------------------------------------------


def test_the_page_is_served_with_a_strict_policy_and_no_external_asset(terminal: Terminal) -> None:
    client = terminal.client()
    status, headers, page = client.request("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert b'src="terminal.js"' in page and b'href="terminal.css"' in page
    assert b"<script>" not in page and b"style=" not in page  # nothing inline: the CSP forbids it
    for asset, kind in (("/terminal.js", "text/javascript"), ("/terminal.css", "text/css")):
        status, headers, body = client.request("GET", asset)
        assert status == 200 and headers["content-type"].startswith(kind) and body
    for name in ("index.html", "terminal.js", "terminal.css"):
        text = (Path(__file__).parent.parent / "spooler" / "terminal" / "static" / name).read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), f"{name} names an external address"


def test_unknown_pages_and_wrong_methods_are_json_errors(terminal: Terminal) -> None:
    client = terminal.client()
    for method, path, expected in (("GET", "/../../etc/passwd", 404), ("GET", "/api/v1/nothing", 404),
                                   ("PUT", "/api/v1/login", 405), ("POST", "/", 405),
                                   ("GET", "/api/v1/jobs/1/release", 405), ("DELETE", "/api/v1/jobs", 405),
                                   ("GET", "/api/v1/jobs/x/release", 404)):  # fmt: skip
        status, headers, body = client.request(method, path, {} if method == "POST" else None)
        assert status == expected, (method, path, body)
        assert headers["content-type"] == "application/json" and isinstance(body["error"], str)


# -- logging in -------------------------------------------------------------------------------------


def test_a_pin_login_opens_a_session_in_an_http_only_strict_cookie(terminal: Terminal) -> None:
    client = terminal.client()
    status, headers, body = client.login("1234")
    assert status == 200, body
    assert body == {"user": "alice", "full_name": "Alice Example", "mode": "online", "notice": None,
                    "idle_timeout": 120}  # fmt: skip
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/" in cookie
    assert client.cookie and len(client.cookie) >= 40 and client.cookie not in json.dumps(body)
    assert terminal.login.calls == [("pin", None, "127.0.0.1")]  # the terminal id: the client's address
    status, _, session = client.request("GET", "/api/v1/session")
    assert status == 200 and session["user"] == "alice"


def test_a_card_and_pin_login_sends_both_factors_and_the_page_learns_the_offered_methods(terminal: Terminal) -> None:
    client = terminal.client()
    status, _, offered = client.request("GET", "/api/v1/login")
    assert (status, offered) == (200, {"methods": ["pin", "card", "password"]})
    terminal.login.offered = ("pin", "card", "password", "card+pin", "card+password")
    assert client.request("GET", "/api/v1/login")[2]["methods"][-2:] == ["card+pin", "card+password"]
    status, _, body = client.login("2468", method="card+pin", card="C0FFEE")
    assert status == 200 and body["user"] == "carol", body
    status, _, body = client.login("2468", method="card+pin", card="0FF1CE")  # the PIN with another card
    assert (status, body["error"]) == (401, "Wrong card or PIN.")
    assert [call[0] for call in terminal.login.calls] == ["card+pin", "card+pin"]


def test_a_bearer_client_gets_its_token_when_it_asks(terminal: Terminal) -> None:
    panel = terminal.client()
    status, _, body = panel.login("C0FFEE", method="card", token=True)
    assert status == 200 and body["user"] == "carol"
    status, _, session = panel.request("GET", "/api/v1/session", use_cookie=False,
                                       headers={"Authorization": f"Bearer {body['token']}"})  # fmt: skip
    assert status == 200 and session["user"] == "carol"
    status, _, _ = panel.request("GET", "/api/v1/session", use_cookie=False, headers={"Authorization": "Bearer nope"})
    assert status == 401


def test_a_configured_terminal_name_is_the_throttling_id(tmp_path: Path) -> None:
    made = Terminal(tmp_path)
    named = TerminalResource(made.rig.service, lambda: made.login, made.rig.clock, session_idle=60,
                             terminal_name="panel-1")  # fmt: skip
    status, _, _ = Client(TerminalSite(named, clock=made.rig.clock), "10.1.2.3").login("1234")
    assert status == 200 and made.login.calls[-1] == ("pin", None, "panel-1")


@pytest.mark.parametrize("reason, method, retry_after, status, words", [
    ("invalid", "pin", None, 401, "Wrong PIN."),
    ("invalid", "card", None, 401, "This card is not known."),
    ("invalid", "password", None, 401, "Wrong user name or password."),
    ("invalid", "card+pin", None, 401, "Wrong card or PIN."),
    ("invalid", "card+password", None, 401, "Wrong card or password."),
    ("expired", "pin", None, 401, "offline login has expired"),
    ("revoked", "pin", None, 403, "revoked"),
    ("locked", "pin", 299.2, 429, "Try again in 5 min."),
    ("locked", "pin", 61, 429, "Try again in 1 min 1 s."),
    ("offline-disabled", "pin", None, 503, "offline login is switched off"),
    ("unavailable", "pin", None, 503, "not possible right now"),
])  # fmt: skip
def test_refused_logins_say_why(terminal: Terminal, reason: str, method: str, retry_after: float | None,
                                status: int, words: str) -> None:  # fmt: skip
    terminal.login.refusal = LoginRefused(reason, "the core's own words", retry_after)
    user = "alice" if method == "password" else None
    card = {"card": "C0FFEE"} if "+" in method else {}
    code, headers, body = terminal.client().login("5555", method=method, user=user, **card)
    assert code == status and body["code"] == reason and words in body["error"], body
    if retry_after is not None:
        assert body["retry_after"] == int(-(-retry_after // 1)) and headers["retry-after"] == str(body["retry_after"])
    assert "set-cookie" not in headers


def test_the_real_wrong_pin_path_refuses_without_a_session(terminal: Terminal) -> None:
    client = terminal.client()
    status, _, body = client.login("0000")
    assert (status, body["code"], body["error"]) == (401, "invalid", "Wrong PIN.")
    assert client.request("GET", "/api/v1/jobs")[0] == 401


def test_the_texts_of_waits() -> None:
    assert [wait_text(s) for s in (None, 0, 0.2, 59, 60, 61, 300, 3599.5)] == [
        "a moment", "a moment", "1 s", "59 s", "1 min", "1 min 1 s", "5 min", "60 min"]  # fmt: skip
    assert refusal_text("something-new", "pin", None, "core text") == "core text"


BAD_LOGINS = [
    (b"not json", "application/json", 400, "not valid JSON"),
    (b"[1, 2]", "application/json", 400, "JSON object"),
    (json.dumps({"secret": "1234"}).encode(), "application/json", 400, "method"),
    (json.dumps({"method": "retina", "secret": "1234"}).encode(), "application/json", 400, "method"),
    (json.dumps({"method": "pin"}).encode(), "application/json", 400, "secret"),
    (json.dumps({"method": "pin", "secret": ""}).encode(), "application/json", 400, "secret"),
    (json.dumps({"method": "pin", "secret": 1234}).encode(), "application/json", 400, "secret"),
    (json.dumps({"method": "pin", "secret": "9" * 257}).encode(), "application/json", 400, "secret"),
    (json.dumps({"method": "pin", "secret": "12a4"}).encode(), "application/json", 400, "digits"),
    (json.dumps({"method": "password", "secret": "x"}).encode(), "application/json", 400, "needs \"user\""),
    (json.dumps({"method": "pin", "secret": "1234", "user": "a\nb"}).encode(), "application/json", 400, "user"),
    (json.dumps({"method": "pin", "secret": "1234", "user": ["x"]}).encode(), "application/json", 400, "user"),
    # A combined login given in half: the card without its PIN or password, or the PIN without its card.
    (json.dumps({"method": "card+pin", "card": "C0FFEE"}).encode(), "application/json", 400, "secret"),
    (json.dumps({"method": "card+pin", "secret": "2468"}).encode(), "application/json", 400, "needs \"card\""),
    (json.dumps({"method": "card+password", "secret": "pw", "card": ""}).encode(), "application/json", 400,
     "needs \"card\""),
    (json.dumps({"method": "card+pin", "card": "C0FFEE", "secret": "24a8"}).encode(), "application/json", 400,
     "digits"),
    (json.dumps({"method": "card+pin", "card": "C0FFEE", "secret": "2468", "user": "carol"}).encode(),
     "application/json", 400, "names no \"user\""),
    (json.dumps({"method": "pin", "card": "C0FFEE", "secret": "2468"}).encode(), "application/json", 400,
     "\"card\" goes only"),
    (b'{"method": "pin", "secret": "1234"}', "text/plain", 415, "Content-Type"),
    (b'{"method": "pin", "secret": "1234"}', "application/x-www-form-urlencoded", 415, "Content-Type"),
    (b'{"method": "pin", "secret": "' + b"1" * MAX_BODY + b'"}', "application/json", 413, "larger"),
    (b"\xff\xfe\x00garbage", "application/json", 400, "JSON"),
]


@pytest.mark.parametrize("raw, content_type, status, words", BAD_LOGINS)
def test_bad_logins_get_a_json_4xx_and_never_reach_the_login_service(terminal: Terminal, raw: bytes,
                                                                     content_type: str, status: int,
                                                                     words: str) -> None:  # fmt: skip
    code, headers, body = terminal.client().request("POST", "/api/v1/login", raw=raw, content_type=content_type)
    assert code == status and words in body["error"], body
    assert headers["content-type"] == "application/json"
    assert terminal.login.calls == []


def test_a_chunked_body_over_the_limit_is_refused(terminal: Terminal) -> None:
    site = terminal.site
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    channel = site.buildProtocol(peer)
    transport = StringTransport(peerAddress=peer)
    channel.makeConnection(transport)
    head = b"POST /api/v1/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"x" * 1000
    channel.dataReceived(head + b"".join(b"3e8\r\n" + chunk + b"\r\n" for _ in range(10)) + b"0\r\n\r\n")
    status, _, body = Client(site).parse(transport.value())
    assert status == 413 and body["code"] == "too-large"


def test_a_cross_origin_post_is_refused(terminal: Terminal) -> None:
    status, _, body = terminal.client().request("POST", "/api/v1/login", {"method": "pin", "secret": "1234"},
                                                headers={"Origin": "http://evil.example"})  # fmt: skip
    assert status == 403 and terminal.login.calls == []
    status, _, body = terminal.client().request("POST", "/api/v1/login", {"method": "pin", "secret": "1234"},
                                                headers={"Origin": "http://terminal.test:8633"})  # fmt: skip
    assert status == 200, body


def test_without_a_login_service_the_terminal_says_so(tmp_path: Path) -> None:
    made = Terminal(tmp_path)
    resource = TerminalResource(made.rig.service, lambda: None, made.rig.clock, session_idle=60)
    status, _, body = Client(TerminalSite(resource, clock=made.rig.clock)).login("1234")
    assert status == 503 and "not available" in body["error"]


def test_a_login_answered_later_is_answered_then(terminal: Terminal) -> None:
    terminal.login.pending = Deferred()
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    channel = terminal.site.buildProtocol(peer)
    transport = StringTransport(peerAddress=peer)
    channel.makeConnection(transport)
    body = json.dumps({"method": "pin", "secret": "1234"}).encode()
    channel.dataReceived(b"POST /api/v1/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
    assert transport.value() == b""
    terminal.login.pending.callback(LoginOutcome("alice", {}, "offline", NOTICE, 0))
    status, _, answer = Client(terminal.site).parse(transport.value())
    assert status == 200 and answer["mode"] == "offline" and answer["notice"] == NOTICE


def test_no_secret_reaches_the_log(terminal: Terminal) -> None:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        client = terminal.client()
        client.login("1234")
        client.login("8642")
        client.login("alice-password", method="password", user="alice")
        terminal.login.refusal = LoginRefused("locked", "locked", 30)
        client.login("97531")
    finally:
        globalLogPublisher.removeObserver(events.append)
    # Times and counts are left out: a float time such as 1700000675.912349 contains "1234".
    logged = repr([{key: value for key, value in event.items() if not isinstance(value, (int, float))}
                   for event in events])  # fmt: skip
    assert "terminal_login" in logged
    for secret in ("1234", "8642", "alice-password", "97531"):
        assert secret not in logged
    assert client.cookie is not None and client.cookie not in logged


# -- sessions ---------------------------------------------------------------------------------------


def test_an_idle_session_ends_and_use_keeps_it_alive(terminal: Terminal) -> None:
    client = terminal.client()
    client.login("1234")
    terminal.tick(100)
    assert client.request("GET", "/api/v1/jobs")[0] == 200
    terminal.tick(100)  # 100 s after the last request, 200 s after the login
    assert client.request("GET", "/api/v1/jobs")[0] == 200
    terminal.tick(121)
    status, _, body = client.request("GET", "/api/v1/jobs")
    assert status == 401 and body["code"] == "not-logged-in"


def test_logout_ends_the_session_and_clears_the_cookie(terminal: Terminal) -> None:
    client = terminal.client()
    client.login("1234")
    token = client.cookie
    status, headers, body = client.request("POST", "/api/v1/logout", {})
    assert status == 200 and body == {"logged_out": True}
    assert "Max-Age=0" in headers["set-cookie"] and client.cookie is None
    client.cookie = token  # the old token is dead, not just forgotten by the browser
    assert client.request("GET", "/api/v1/jobs")[0] == 401
    assert client.request("POST", "/api/v1/logout", {})[2] == {"logged_out": False}


def test_a_session_is_bound_to_the_address_it_was_opened_from(terminal: Terminal) -> None:
    client = terminal.client("10.0.0.5")
    client.login("1234")
    thief = terminal.client("10.0.0.6")
    thief.cookie = client.cookie
    assert thief.request("GET", "/api/v1/jobs")[0] == 401
    assert client.request("GET", "/api/v1/jobs")[0] == 200


def test_the_session_table_is_bounded_and_ends_at_the_logins_validity() -> None:
    from twisted.internet.task import Clock

    clock = Clock()
    store = SessionStore(clock, idle_timeout=60, max_sessions=3)
    tokens = []
    for n in range(4):
        clock.advance(1)
        token, _ = store.open(user=f"u{n}", mode="online", notice=None, profile={}, peer="p", valid_until=clock.seconds() + 1000)
        tokens.append(token)
    assert len(store) == 3 and store.find(tokens[0], "p") is None  # the least recently used went
    assert store.find(tokens[3], "p").user == "u3"  # type: ignore[union-attr]
    short, _ = store.open(user="brief", mode="offline", notice=None, profile={}, peer="p", valid_until=clock.seconds() + 5)
    clock.advance(6)
    assert store.find(short, "p") is None  # idle for 6 s only, but the login's validity ended
    assert store.find("", "p") is None and store.find(None, "p") is None


def test_one_users_logins_end_only_their_own_sessions() -> None:
    """Finding 9: 256 logins by one user used to push every other session out of the table."""
    from twisted.internet.task import Clock

    from spooler.terminal.sessions import MAX_SESSIONS, MAX_SESSIONS_PER_USER

    clock = Clock()
    store = SessionStore(clock, idle_timeout=600)
    others = [store.open(user=f"u{n}", mode="online", notice=None, profile={}, peer="p", valid_until=None)[0]
              for n in range(10)]  # fmt: skip
    mallory = []
    for _ in range(MAX_SESSIONS + 10):
        clock.advance(0.01)
        mallory.append(store.open(user="mallory", mode="online", notice=None, profile={}, peer="q",
                                  valid_until=None)[0])  # fmt: skip
    assert all(store.find(token, "p") is not None for token in others)
    alive = [token for token in mallory if store.find(token, "q") is not None]
    assert alive == mallory[-MAX_SESSIONS_PER_USER:]  # the newest of hers; the oldest ended
    assert len(store) == 10 + MAX_SESSIONS_PER_USER


# -- my jobs ----------------------------------------------------------------------------------------


def test_i_see_only_my_held_jobs_with_pages_colour_and_time(terminal: Terminal) -> None:
    mine = terminal.held_job("alice", "Quarterly report", ANALYSED)
    terminal.held_job("bob", "Bob's secret plans")
    unknown = terminal.held_job("alice", "Scan", {"status": "unknown", "pages": 0})
    no_colour = terminal.held_job("alice", "Fax", {"status": "ok", "pages": 2, "sheets": 2,
                                                   "color_impressions": None, "mono_impressions": None})
    client = terminal.client()
    client.login("1234")
    jobs = client.jobs()
    assert [job["id"] for job in jobs] == [mine, unknown, no_colour]
    first = jobs[0]
    assert (first["name"], first["pages"], first["color"], first["held_offline"]) == ("Quarterly report", 3, "color",
                                                                                       True)  # fmt: skip
    assert first["time"] == terminal.rig.store.get(mine).created_at
    assert (jobs[1]["pages"], jobs[1]["color"]) == (None, None)  # not known: not guessed
    assert (jobs[2]["pages"], jobs[2]["color"]) == (2, None)  # pages known, colour not: not "mono"
    status, _, body = client.request("GET", "/api/v1/jobs")
    assert body["user"] == "alice" and body["mode"] == "online"


def test_the_offline_notice_is_shown_with_the_jobs(terminal: Terminal) -> None:
    terminal.login.mode = "offline"
    client = terminal.client()
    status, _, body = client.login("1234")
    assert body["mode"] == "offline" and body["notice"] == NOTICE
    assert client.request("GET", "/api/v1/jobs")[2]["notice"] == NOTICE


def test_releasing_my_job_prints_it_on_the_device(terminal: Terminal) -> None:
    job_id = terminal.held_job("alice", "Quarterly report")
    client = terminal.client()
    client.login("1234")
    status, _, body = client.request("POST", f"/api/v1/jobs/{job_id}/release", {})
    assert status == 200 and body["job"]["state"] == "pending"
    terminal.tick()
    assert [attempt[0] for attempt in terminal.rig.backend.attempts] == [job_id]
    assert terminal.rig.server.attempts == []  # type: ignore[union-attr]
    assert client.jobs() == []
    terminal.rig.backend.succeed()
    assert terminal.rig.store.get(job_id).state is JobState.COMPLETED


def test_released_after_the_server_came_back_it_still_prints_here(terminal: Terminal) -> None:
    job_id = terminal.held_job("alice", "Held while offline")
    terminal.bring_up()
    assert terminal.rig.store.get(job_id).state is JobState.PENDING_HELD  # not pulled away to the server
    client = terminal.client()
    client.login("1234")
    assert client.request("POST", f"/api/v1/jobs/{job_id}/release", {})[0] == 200
    terminal.tick()
    assert [attempt[0] for attempt in terminal.rig.backend.attempts] == [job_id]
    assert terminal.rig.server.attempts == []  # type: ignore[union-attr]


def test_a_job_held_at_intake_released_here_prints_here_even_online(tmp_path: Path) -> None:
    made = Terminal(tmp_path)  # the server is up: jobs are forwarded, except held ones
    job = made.rig.submit(b"private", user="alice", name="Payslips", hold=True)
    made.tick()
    assert made.rig.store.get(job.job_id).state is JobState.PENDING_HELD
    client = made.client()
    client.login("1234")
    assert [j["id"] for j in client.jobs()] == [job.job_id]
    assert client.request("POST", f"/api/v1/jobs/{job.job_id}/release", {})[0] == 200
    made.tick()
    assert [attempt[0] for attempt in made.rig.backend.attempts] == [job.job_id]
    assert made.rig.server.attempts == []  # type: ignore[union-attr]


def test_i_cannot_see_release_or_delete_someone_elses_job(terminal: Terminal) -> None:
    bobs = terminal.held_job("bob", "Bob's job")
    client = terminal.client()
    client.login("1234")
    assert client.jobs() == []
    for action in ("release", "delete"):
        status, _, body = client.request("POST", f"/api/v1/jobs/{bobs}/{action}", {})
        assert status == 404 and body["error"] == f"You have no job {bobs}.", body
    status, _, body = client.request("POST", "/api/v1/jobs/999/release", {})
    assert status == 404 and body["error"] == "You have no job 999."  # same words: existence not revealed
    assert terminal.rig.store.get(bobs).state is JobState.PENDING_HELD
    assert "release_to_device" not in terminal.rig.store.get(bobs).attributes
    terminal.tick()
    assert terminal.rig.backend.attempts == []
    bob = terminal.client()
    bob.login("4321")
    assert [job["id"] for job in bob.jobs()] == [bobs]


def test_deleting_my_job_cancels_it_and_a_second_action_conflicts(terminal: Terminal) -> None:
    job_id = terminal.held_job("alice", "Draft")
    client = terminal.client()
    client.login("1234")
    status, _, body = client.request("POST", f"/api/v1/jobs/{job_id}/delete", {})
    assert status == 200 and body["job"]["state"] == "canceled"
    assert terminal.rig.store.get(job_id).state is JobState.CANCELED
    for action in ("release", "delete"):
        status, _, body = client.request("POST", f"/api/v1/jobs/{job_id}/{action}", {})
        assert status == 409 and "canceled" in body["error"]
    terminal.tick()
    assert terminal.rig.backend.attempts == []


def test_job_actions_need_a_session_and_json(terminal: Terminal) -> None:
    job_id = terminal.held_job("alice", "Draft")
    client = terminal.client()
    assert client.request("POST", f"/api/v1/jobs/{job_id}/release", {})[0] == 401
    client.login("1234")
    assert client.request("POST", f"/api/v1/jobs/{job_id}/release", raw=b"", content_type=None)[0] == 415
    assert terminal.rig.store.get(job_id).state is JobState.PENDING_HELD


# -- configuration ----------------------------------------------------------------------------------


def test_the_terminal_configuration_and_its_sample(tmp_path: Path) -> None:
    config = config_from_mapping({}, base=tmp_path, state_dir=tmp_path)
    assert (config.terminal.enabled, config.terminal.listen, config.terminal.session_idle,
            config.terminal.name) == (False, "tcp:8633:interface=127.0.0.1", 120.0, None)  # fmt: skip
    config = config_from_mapping({"terminal": {"enabled": True, "listen": "tcp:0:interface=127.0.0.1",
                                               "session_idle": "30s", "name": "panel-1"}},
                                 base=tmp_path, state_dir=tmp_path)  # fmt: skip
    assert (config.terminal.enabled, config.terminal.session_idle, config.terminal.name) == (True, 30.0, "panel-1")
    sample = Path(__file__).parent.parent / "samples" / "spooler.toml"
    load_config(sample, state_dir=tmp_path)
    text = sample.read_text()
    assert "\n[terminal]\n" in text
    for key in ("enabled", "listen", "session_idle", "name"):
        assert re.search(rf"\n\[terminal\]\n(?:.*\n)*?(# )?{key} =", text), f"terminal.{key} is not in the sample"


@pytest.mark.parametrize("section, key, words", [
    ({"enabled": "yes"}, "terminal.enabled", "true or false"),
    ({"listen": "8633"}, "terminal.listen", "endpoint"),
    ({"enabled": True, "listen": ""}, "terminal.listen", "no endpoint"),
    ({"session_idle": 0}, "terminal.session_idle", "longer than zero"),
    ({"name": "a b/c"}, "terminal.name", "letters"),
    ({"port": 1}, "terminal.port", "unknown key"),
])  # fmt: skip
def test_bad_terminal_settings_are_named(tmp_path: Path, section: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"terminal": section}, base=tmp_path, state_dir=tmp_path)
    assert caught.value.key == key and words in caught.value.problem


def test_a_full_terminal_makes_room_by_closing_its_most_silent_connection(tmp_path: Path) -> None:
    from spooler.web import HttpLimits

    made = Terminal(tmp_path)
    site = TerminalSite(made.resource, clock=made.rig.clock, limits=HttpLimits(max_connections=2))
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    channels, transports = [], []
    for _ in range(2):
        channels.append(site.buildProtocol(peer))
        transports.append(StringTransport(peerAddress=peer))
        channels[-1].makeConnection(transports[-1])
        made.tick(1)
    channels[1].dataReceived(b"GET /api/v1/sess")  # has sent something: goes after the silent one
    third = site.buildProtocol(peer)
    assert third is not None and len(site.connections) == 1
    assert transports[0].disconnected and not transports[1].disconnecting  # the silent one went
