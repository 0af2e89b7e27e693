"""The central API client against a real HTTP server on loopback: answers, refusals, outages, deadlines."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from spooler.centralapi import CentralApi, CentralApiDown, CentralApiRefused, Deadline

QUICK = Deadline(1.0, 1.0)


class Answers(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bytes, bytes, Any]] = []
        self.hung: list[Any] = []

    def render(self, request: Any) -> Any:
        body = request.content.read()
        self.seen.append((request.method, request.uri, json.loads(body) if body else None))
        path = request.postpath[-1] if request.postpath else b""
        if path == b"hang":
            self.hung.append(request)
            return NOT_DONE_YET
        if path in (b"endless-chunked", b"declared-huge"):
            return self.stream(request, declared=path == b"declared-huge")
        status, answer = {
            b"ok": (200, b'{"status": "ok"}'),
            b"refused": (401, b'{"error": "invalid credentials"}'),
            b"broken": (503, b'{"error": "service unavailable"}'),
            b"html": (200, b"<html>not json</html>"),
        }[path]
        request.setResponseCode(status)
        return answer

    def stream(self, request: Any, *, declared: bool) -> Any:
        """An answer that never ends (chunked, no Content-Length) or that declares 1 GiB, written 16 KiB
        at a time while the client reads; `streamed` counts what went out, `cut` fires when the client
        hangs up."""
        from twisted.internet.task import LoopingCall

        self.streamed = 0
        self.cut: Any = request.notifyFinish()
        if declared:
            request.setHeader(b"content-length", str(1 << 30).encode())
        request.setHeader(b"content-type", b"application/json")
        request.write(b'{"users": [')
        writer = LoopingCall(self._more, request)
        self.cut.addBoth(lambda _: writer.stop())
        writer.start(0.001)
        return NOT_DONE_YET

    def _more(self, request: Any) -> None:
        chunk = b'"' + b"x" * 16382 + b'",'
        self.streamed += len(chunk)
        request.write(chunk)


@pytest.fixture
def server() -> Any:
    answers = Answers()
    port = reactor.listenTCP(0, Site(answers), interface="127.0.0.1")
    yield answers, CentralApi(reactor, f"http://127.0.0.1:{port.getHost().port}/api/v1")
    for request in answers.hung:
        request.finish()
    port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_2xx_answer_is_decoded_and_the_body_and_query_are_sent(server: Any) -> None:
    answers, api = server
    answer = await api.call("POST", "ok", {"user": "alice"}, deadline=QUICK, query={"since": "2026-11-25T00:00:00Z"})
    assert answer == {"status": "ok"}
    method, uri, body = answers.seen[-1]
    assert (method, body) == (b"POST", {"user": "alice"})
    assert uri == b"/api/v1/ok?since=2026-11-25T00%3A00%3A00Z"


@pytest_twisted.ensureDeferred
async def test_a_4xx_is_a_refusal_with_the_servers_reason(server: Any) -> None:
    _answers, api = server
    with pytest.raises(CentralApiRefused) as raised:
        await api.call("POST", "refused", {}, deadline=QUICK)
    assert (raised.value.status, raised.value.message) == (401, "invalid credentials")


@pytest.mark.parametrize("path", ["broken", "html", "hang"])
@pytest_twisted.ensureDeferred
async def test_5xx_non_json_and_no_answer_within_the_deadline_mean_down(server: Any, path: str) -> None:
    _answers, api = server
    with pytest.raises(CentralApiDown):
        await api.call("GET", path, deadline=Deadline(1.0, 0.5))


@pytest_twisted.ensureDeferred
async def test_a_refused_connection_means_down() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    with pytest.raises(CentralApiDown):
        await CentralApi(reactor, f"http://127.0.0.1:{free_port}/api/v1/").call("GET", "health", deadline=QUICK)


def test_path_segments_are_quoted_so_a_name_cannot_leave_the_api() -> None:
    api = CentralApi(reactor, "http://central.example/api/v1/")
    assert api.url(("devices", "a/../../x", "users")) == "http://central.example/api/v1/devices/a%2F..%2F..%2Fx/users"
    with pytest.raises(ValueError):
        api.url(("devices", "..", "users"))


@pytest.mark.parametrize("path", ["endless-chunked", "declared-huge"])
@pytest_twisted.ensureDeferred
async def test_an_answer_over_the_cap_is_cut_off_as_it_arrives_chunked_or_not(server: Any, path: str,
                                                                              monkeypatch: Any) -> None:  # fmt: skip
    from spooler import centralapi

    monkeypatch.setattr(centralapi, "MAX_ANSWER", 256 * 1024)
    answers, api = server
    with pytest.raises(CentralApiDown, match="larger than 262144 bytes"):
        await api.call("GET", path, deadline=Deadline(5.0, 30.0))  # long deadline: the cap ends it, not the clock
    await answers.cut.addErrback(lambda _: None)  # the server sees the connection cut
    assert answers.streamed < 8 * 1024 * 1024  # the client stopped reading; it did not collect the stream
