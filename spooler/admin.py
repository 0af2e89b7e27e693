"""The local admin API: JSON over HTTP on a UNIX socket that only the spooler's user can open.

Whoever can connect is an admin (the socket is mode 0600 in a 0700 state folder). The CLI is its
client. Routes:

    GET  /v1/status                     daemon, listeners, device, queue depth, free space
    GET  /v1/jobs?all=1&state=pending   jobs in arrival order
    GET  /v1/jobs/ID                    one job with its documents
    POST /v1/jobs/ID/cancel|hold|release
    POST /v1/flush                      body {"job_ids": [..]} or {} for every waiting job
    POST /v1/login                      body {"method", "secret", "user", "terminal"} (spooler.login)
    GET  /v1/users                      who can log in offline; POST /v1/users/sync; POST /v1/keys/rotate
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from spooler.jobs.service import JobService
from spooler.model import IllegalTransition, JobNotFound, JobState, NotAuthorized, SpoolerError

log = Logger(namespace="spooler.admin")

MAX_BODY = 64 * 1024


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def job_detail(service: JobService, job_id: int) -> dict[str, Any]:
    job = service.get(job_id)
    detail = job.summary()
    detail["documents"] = [
        {"number": d.number, "file": str(service.spool_path(d)), "size": d.size, "document_format": d.document_format}
        for d in service.documents(job_id)
    ]
    return detail


class AdminResource(Resource):
    isLeaf = True

    def __init__(self, service: JobService, status: Callable[[], dict[str, Any]], login: Any = None) -> None:
        super().__init__()
        self._service = service
        self._status = status
        self._login = login  # spooler.login.runtime.LoginRuntime: its routes answer with Deferreds

    def render(self, request: Request) -> bytes | int:  # type: ignore[override]
        request.setHeader(b"content-type", b"application/json")
        try:
            result = self._route(request)
            if isinstance(result, Deferred):
                return self._later(request, result)
            request.setResponseCode(200)
            return json.dumps(result).encode("utf-8")
        except ApiError as error:
            request.setResponseCode(error.status)
            return json.dumps({"error": str(error), "code": error.code}).encode("utf-8")
        except Exception as error:  # noqa: BLE001 - an admin request must never take the daemon down
            log.failure("Admin request failed")
            request.setResponseCode(500)
            return json.dumps({"error": f"internal error: {error}", "code": "internal"}).encode("utf-8")

    def _later(self, request: Request, result: Deferred[Any]) -> int:
        """Answer when the Deferred fires (a login, a sync); a RouteError becomes its status."""
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def answer(value: Any) -> None:
            if not gone:
                request.setResponseCode(200)
                request.write(json.dumps(value).encode("utf-8"))
                request.finish()

        def failed(failure: Failure) -> None:
            status = getattr(failure.value, "status", None)
            code = getattr(failure.value, "code", None)
            if isinstance(status, int) and isinstance(code, str):
                body = {"error": str(failure.value), "code": code, **getattr(failure.value, "extra", {})}
            else:
                log.failure("Admin request failed", failure)
                status, body = 500, {"error": f"internal error: {failure.getErrorMessage()}", "code": "internal"}
            if not gone:
                request.setResponseCode(status)
                request.write(json.dumps(body).encode("utf-8"))
                request.finish()

        result.addCallbacks(answer, failed)
        return NOT_DONE_YET

    def _route(self, request: Request) -> Any:
        method = request.method.decode("ascii", "replace")
        path = [segment.decode("utf-8", "replace") for segment in request.postpath if segment]
        if path[:1] != ["v1"]:
            raise ApiError(404, "not-found", "unknown path")
        path = path[1:]
        try:
            if method == "GET" and path == ["status"]:
                return self._status()
            if method == "GET" and path == ["jobs"]:
                return self._jobs(request)
            if method == "GET" and len(path) == 2 and path[0] == "jobs":
                return job_detail(self._service, self._job_id(path[1]))
            if method == "POST" and len(path) == 3 and path[0] == "jobs":
                action = {"cancel": self._service.cancel, "hold": self._service.hold,
                          "release": self._service.release}.get(path[2])  # fmt: skip
                if action is None:
                    raise ApiError(404, "not-found", f"unknown action {path[2]!r}")
                return action(self._job_id(path[1]), admin=True).summary()
            if method == "POST" and path == ["flush"]:
                body = self._body(request)
                job_ids = body.get("job_ids")
                if job_ids is not None and not (isinstance(job_ids, list) and all(type(i) is int for i in job_ids)):
                    raise ApiError(400, "bad-request", "job_ids must be a list of job numbers")
                return {"flushed": self._service.flush(job_ids or None)}
            if self._login is not None:
                answer = self._login.route(method, path, lambda: self._body(request))
                if answer is not None:
                    return answer
        except JobNotFound as error:
            raise ApiError(404, "not-found", str(error)) from None
        except IllegalTransition as error:
            raise ApiError(409, "conflict", str(error)) from None
        except NotAuthorized as error:
            raise ApiError(403, "forbidden", str(error)) from None
        except SpoolerError as error:
            raise ApiError(400, "bad-request", str(error)) from None
        raise ApiError(404, "not-found", f"no route for {method} /v1/{'/'.join(path)}")

    @staticmethod
    def _job_id(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or len(text) > 12:
            raise ApiError(400, "bad-request", f"not a job number: {text!r}")
        return int(text)

    def _jobs(self, request: Request) -> list[dict[str, Any]]:
        args = request.args or {}
        include_all = args.get(b"all", [b"0"])[0] in (b"1", b"true")
        state = None
        if b"state" in args:
            try:
                state = JobState.from_keyword(args[b"state"][0].decode("utf-8", "replace"))
            except ValueError as error:
                raise ApiError(400, "bad-request", str(error)) from None
        return [job.summary() for job in self._service.list_jobs(include_finished=include_all, state=state)]

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        raw = request.content.read(MAX_BODY + 1) if request.content else b""
        if len(raw) > MAX_BODY:
            raise ApiError(413, "too-large", "request body too large")
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "bad-request", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "bad-request", "the body must be a JSON object")
        return body
