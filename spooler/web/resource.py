"""The JSON resource every JSON-over-HTTP API of the spooler is built on: a handler returns a value (or a
Deferred of one) that is answered 200 as JSON, or raises `ApiError`, answered with its status and
`{"error": sentence, "code": keyword, ...}`; anything else is logged and answered 500 without a
traceback. Request bodies are read here only after the site (spooler.web.channel) capped them."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

log = Logger(namespace="spooler.web")


class ApiError(Exception):
    """An answer other than 200: the HTTP status, a keyword for programs, a sentence for people, and
    extra fields of the answer (`retry_after`, ...)."""

    def __init__(self, status: int, code: str, message: str, /, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.extra = extra

    def answer(self) -> dict[str, Any]:
        return {"error": str(self), "code": self.code, **self.extra}


def json_bytes(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8") + b"\n"


def request_body(request: Request) -> bytes:
    """The request's body, as the site's body cap let it in."""
    if request.content is None:
        return b""
    request.content.seek(0)
    return request.content.read()


def read_json(request: Request, *, empty: Any = None, object_only: bool = True) -> Any:
    """The request body as JSON: `empty` for an empty body; a JSON object unless `object_only` is false;
    ApiError 400 otherwise."""
    raw = request_body(request)
    if not raw.strip():
        return empty
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "bad-request", "the body is not valid JSON") from None
    if object_only and not isinstance(body, dict):
        raise ApiError(400, "bad-request", "the body must be a JSON object")
    return body


class JsonResource(Resource):
    """A leaf resource answering JSON: subclasses implement `dispatch(request)`, which returns the answer
    (a JSON-able value, bytes already encoded as JSON, or a Deferred of either) or raises ApiError.
    `headers` are set on every answer; `name` appears in the log."""

    isLeaf = True
    name = "api"
    headers: dict[bytes, bytes] = {b"cache-control": b"no-store"}

    def dispatch(self, request: Request) -> Any:
        raise NotImplementedError

    def render(self, request: Request) -> bytes | int:  # type: ignore[override]
        for header, value in self.headers.items():
            request.setHeader(header, value)
        try:
            result = self.dispatch(request)
        except ApiError as error:
            return self.encode(request, error.status, error.answer())
        except Exception:  # noqa: BLE001 - a request must never be answered with a traceback
            log.failure("{name} request {method} {path} failed", Failure(), name=self.name,
                        method=request.method.decode("ascii", "replace"),
                        path=request.path.decode("utf-8", "replace"))  # fmt: skip
            return self.encode(request, 500, {"error": "internal error", "code": "internal"})
        if isinstance(result, Deferred):
            self.answer_later(request, result)
            return NOT_DONE_YET
        return self.encode(request, 200, result)

    def encode(self, request: Request, status: int, body: Any) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        return body if isinstance(body, bytes) else json_bytes(body)

    def answer_later(self, request: Request, result: Deferred[Any]) -> None:
        """Answer when `result` fires (an ApiError failure becomes its status); nothing if the client left."""
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def write(status: int, body: Any) -> None:
            if gone:
                return
            data = self.encode(request, status, body)
            request.setHeader(b"content-length", str(len(data)).encode("ascii"))
            request.write(data)
            request.finish()

        def failed(failure: Failure) -> None:
            if failure.check(ApiError):
                error: ApiError = failure.value  # type: ignore[assignment]
                write(error.status, error.answer())
                return
            log.failure("{name} request failed", failure, name=self.name)
            write(500, {"error": "internal error", "code": "internal"})

        result.addCallbacks(lambda value: write(200, value), failed)
