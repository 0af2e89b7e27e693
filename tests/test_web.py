"""spooler.web in process: raw HTTP bytes into a LimitedSite over StringTransports on a Clock — the body
cap before buffering (declared and chunked), the header deadline against trickling clients, the
connection and per-address limits, peer admission, and JsonResource's answers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.server import Request

from inprocess import http_responses
from spooler.intake.limits import admit_from
from spooler.web import ApiError, HttpLimits, JsonResource, LimitedSite, address_host, read_json
from spooler.web.channel import LINGER


class Echo(JsonResource):
    """POST: the JSON body back; GET /fail: an ApiError; /crash: a bug; /later: a Deferred the test fires."""

    def __init__(self) -> None:
        super().__init__()
        self.rendered: list[bytes] = []
        self.later: list[Deferred[Any]] = []

    def dispatch(self, request: Request) -> Any:
        self.rendered.append(request.path)
        if request.path == b"/fail":
            raise ApiError(409, "conflict", "already done", job=7)
        if request.path == b"/crash":
            raise RuntimeError("a bug with a secret inside")
        if request.path == b"/later":
            self.later.append(Deferred())
            return self.later[-1]
        return {"echo": read_json(request, empty={})}


@dataclass
class Rig:
    clock: Clock
    resource: Echo
    site: LimitedSite

    def connect(self, host: str = "127.0.0.1") -> tuple[Any, StringTransport]:
        peer = IPv4Address("TCP", host, 40000)
        channel = self.site.buildProtocol(peer)
        assert channel is not None
        transport = StringTransport(peerAddress=peer)
        channel.makeConnection(transport)
        return channel, transport


def rig(max_body: int | None = 1024, peers: set[str] | None = None, **limits: Any) -> Rig:
    clock = Clock()
    resource = Echo()
    settings = {"max_connections": 10, "max_per_address": 4, "header_timeout": 10.0, "idle_timeout": 60.0} | limits
    site = LimitedSite(resource, reactor=clock, name="test", limits=HttpLimits(**settings), max_body=max_body,
                       peer_allowed=(lambda host: host in peers) if peers is not None else None)  # fmt: skip
    return Rig(clock, resource, site)


def post(path: bytes, body: bytes, *extra: bytes) -> bytes:
    head = [b"POST " + path + b" HTTP/1.1", b"Host: t", b"Content-Type: application/json",
            b"Content-Length: %d" % len(body), *extra]  # fmt: skip
    return b"\r\n".join(head) + b"\r\n\r\n" + body


# -- the body cap ---------------------------------------------------------------------------------------


def test_a_declared_body_over_the_cap_is_refused_before_any_of_it_is_read() -> None:
    test = rig(max_body=1024)
    channel, transport = test.connect()
    head = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 209715200\r\nExpect: 100-continue\r\n\r\n"
    channel.dataReceived(head)
    [(status, body)] = http_responses(transport.value())  # no "100 Continue" before the refusal
    assert status == 413 and json.loads(body) == {"error": "the request body is larger than 1024 bytes",
                                                  "code": "too-large"}  # fmt: skip
    assert b"Connection: close" in transport.value()
    request = channel.requests[0]
    assert request.content.getvalue() == b"" and test.resource.rendered == []
    channel.dataReceived(b"x" * 65536)  # what the client still sends is dropped, not stored
    assert request.content.getvalue() == b"" and test.resource.rendered == []
    assert transport.disconnecting and not transport.disconnected  # the answer, then the close (lingering)
    test.clock.advance(LINGER)
    assert transport.disconnected  # cut when the linger ends


def test_a_chunked_body_is_refused_the_moment_it_passes_the_cap() -> None:
    test = rig(max_body=1024)
    channel, transport = test.connect()
    channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    channel.dataReceived(b"200\r\n" + b"a" * 512 + b"\r\n")
    channel.dataReceived(b"200\r\n" + b"b" * 512 + b"\r\n")
    assert transport.value() == b""  # 1024 bytes: still within the cap
    channel.dataReceived(b"1\r\nc\r\n")
    [(status, body)] = http_responses(transport.value())
    assert status == 413 and json.loads(body)["code"] == "too-large"
    channel.dataReceived(b"200\r\n" + b"d" * 512 + b"\r\n0\r\n\r\n")  # even a proper end renders nothing
    assert test.resource.rendered == [] and len(http_responses(transport.value())) == 1


def test_a_body_within_the_cap_is_answered_and_the_connection_kept() -> None:
    test = rig(max_body=1024)
    channel, transport = test.connect()
    channel.dataReceived(post(b"/x", json.dumps({"a": "é" * 100}).encode()))
    channel.dataReceived(post(b"/x", b'{"b": 2}'))
    answers = http_responses(transport.value())
    assert [status for status, _ in answers] == [200, 200]
    assert json.loads(answers[1][1]) == {"echo": {"b": 2}} and not transport.disconnecting


# -- the header deadline ----------------------------------------------------------------------------------


def test_a_trickled_head_is_cut_at_the_deadline_however_often_a_byte_comes() -> None:
    test = rig(header_timeout=10.0, idle_timeout=3.0)
    channel, transport = test.connect()
    for byte in b"GET /slow HTTP/1.1\r\nHost:":
        channel.dataReceived(bytes([byte]))  # a byte a second or so: the idle timeout never fires
        test.clock.advance(0.4)
        if transport.value():
            break
    [(status, body)] = http_responses(transport.value())
    assert status == 408 and json.loads(body)["code"] == "request-timeout"
    assert test.clock.seconds() == pytest.approx(10.0, abs=0.5) and test.resource.rendered == []


def test_on_a_json_site_the_deadline_covers_the_body_too() -> None:
    test = rig(header_timeout=10.0)
    channel, transport = test.connect()
    channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n")
    for _ in range(20):
        channel.dataReceived(b"1")
        test.clock.advance(1)
    [(status, _)] = http_responses(transport.value())
    assert status == 408 and test.resource.rendered == []


def test_where_the_deadline_covers_the_head_only_a_slow_body_is_left_to_the_idle_timeout() -> None:
    test = rig(header_timeout=10.0, idle_timeout=5.0, max_body=None)
    test.site.deadline_covers_body = False  # as the IPP site: bodies are documents of any size
    channel, transport = test.connect()
    channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\n\r\n")
    for _ in range(30):
        channel.dataReceived(b"1")  # a byte a second: under the idle timeout, over the deadline in all
        test.clock.advance(1)
    assert transport.value() == b"" and not transport.disconnecting
    channel.dataReceived(b"{}" + b" " * 8)
    [(status, _)] = http_responses(transport.value())
    assert status == 400  # answered (the body is not JSON): it was never cut
    channel.dataReceived(b"GET /")  # the next request's head has its own deadline again
    test.clock.advance(4)
    channel.dataReceived(b"x")
    test.clock.advance(4)
    channel.dataReceived(b"x")
    test.clock.advance(2.5)
    assert http_responses(transport.value())[-1][0] == 408


def test_a_kept_alive_connection_waits_under_the_idle_timeout_not_the_deadline() -> None:
    test = rig(header_timeout=10.0, idle_timeout=60.0)
    channel, transport = test.connect()
    channel.dataReceived(post(b"/x", b"{}"))
    test.clock.advance(30)  # quiet between requests: longer than the deadline, shorter than the idle timeout
    assert not transport.disconnecting
    channel.dataReceived(post(b"/y", b"{}"))
    assert [status for status, _ in http_responses(transport.value())] == [200, 200]
    test.clock.advance(61)
    assert transport.disconnecting  # Twisted's own idle timeout


def test_a_request_being_answered_is_not_cut_by_the_deadline() -> None:
    test = rig(header_timeout=10.0)
    channel, transport = test.connect()
    channel.dataReceived(post(b"/later", b"{}"))
    test.clock.advance(100)
    assert transport.value() == b""
    test.resource.later[0].callback({"done": True})
    [(status, body)] = http_responses(transport.value())
    assert status == 200 and json.loads(body) == {"done": True}


# -- connection limits and peers ----------------------------------------------------------------------------


def test_one_address_competes_only_with_itself() -> None:
    test = rig(max_connections=10, max_per_address=3)
    flood = []
    for _ in range(3):
        flood.append(test.connect("192.0.2.66"))
        test.clock.advance(1)
    other = test.connect("192.0.2.7")
    flood[0][0].dataReceived(b"G")  # has sent something: goes after the silent ones, the oldest first
    newcomer = test.connect("192.0.2.66")
    assert len([c for c in test.site.connections if c.peer_host == "192.0.2.66"]) == 3
    assert flood[1][1].disconnected and not flood[0][1].disconnecting and not flood[2][1].disconnecting
    assert not other[1].disconnecting and newcomer[0] in test.site.connections


def test_a_connection_being_answered_is_never_evicted_the_newcomer_is_refused() -> None:
    test = rig(max_connections=10, max_per_address=1)
    channel, transport = test.connect()
    channel.dataReceived(post(b"/later", b"{}"))
    assert test.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001)) is None
    assert not transport.disconnecting


@pytest.mark.parametrize("rows", [
    # (per-address limit, open connections as (host, rank)), the new host -> admitted, evicted index
    (2, [("a", (False, 1.0)), ("a", (True, 0.0)), ("b", (False, 0.0))], "a", True, 0),
    (2, [("a", None), ("a", None), ("b", (False, 0.0))], "a", False, None),
    (2, [("a", None), ("a", None), ("b", (False, 0.0))], "c", True, 2),  # the listener is full: b makes room
    (None, [("a", (True, 5.0)), ("a", (True, 2.0)), ("b", (True, 3.0))], "a", True, 1),
])  # fmt: skip
def test_admission_table(rows: tuple[Any, ...]) -> None:
    per_address, connections, host, admitted, evicted = rows

    @dataclass(eq=False)
    class Open:
        peer_host: str
        rank: Any
        gone: bool = False

        def eviction_rank(self) -> Any:
            return self.rank

        def evict(self) -> None:
            self.gone = True

    opened = [Open(h, r) for h, r in connections]
    assert admit_from(opened, 3, per_address, 10.0, protocol="t", host=host) is admitted
    assert [index for index, c in enumerate(opened) if c.gone] == ([] if evicted is None else [evicted])


def test_a_client_that_is_not_a_peer_is_closed_before_anything_is_read() -> None:
    test = rig(peers={"192.0.2.11"})
    assert test.site.buildProtocol(IPv4Address("TCP", "192.0.2.99", 40000)) is None
    assert test.site.buildProtocol(IPv4Address("TCP", "192.0.2.11", 40000)) is not None
    assert test.site.buildProtocol(IPv6Address("TCP", "::ffff:192.0.2.11", 40000)) is not None


def test_addresses_are_counted_in_one_spelling() -> None:
    assert address_host(IPv6Address("TCP", "::ffff:192.0.2.11", 1)) == "192.0.2.11"
    assert address_host(IPv6Address("TCP", "2001:DB8::1", 1)) == "2001:db8::1"
    assert address_host(None) == ""


# -- JsonResource ------------------------------------------------------------------------------------------


def test_errors_are_typed_json_answers_and_a_bug_is_a_500_without_its_text() -> None:
    test = rig()
    channel, transport = test.connect()
    channel.dataReceived(b"GET /fail HTTP/1.1\r\nHost: t\r\n\r\n")
    channel.dataReceived(b"GET /crash HTTP/1.1\r\nHost: t\r\n\r\n")
    channel.dataReceived(post(b"/x", b"[1, 2]"))
    channel.dataReceived(post(b"/x", b"{not json"))
    answers = [(status, json.loads(body)) for status, body in http_responses(transport.value())]
    assert answers == [
        (409, {"error": "already done", "code": "conflict", "job": 7}),
        (500, {"error": "internal error", "code": "internal"}),
        (400, {"error": "the body must be a JSON object", "code": "bad-request"}),
        (400, {"error": "the body is not valid JSON", "code": "bad-request"}),
    ]
    assert b"secret" not in transport.value()


def test_a_deferred_answer_and_a_deferred_refusal() -> None:
    test = rig()
    channel, transport = test.connect()
    channel.dataReceived(post(b"/later", b"{}"))
    test.resource.later[0].errback(ApiError(429, "locked", "try later", retry_after=30))
    channel.dataReceived(post(b"/later", b"{}"))
    test.resource.later[1].errback(ValueError("boom"))
    answers = [(status, json.loads(body)) for status, body in http_responses(transport.value())]
    assert answers == [(429, {"error": "try later", "code": "locked", "retry_after": 30}),
                       (500, {"error": "internal error", "code": "internal"})]  # fmt: skip
