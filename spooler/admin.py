"""The local admin API: JSON over HTTP on a UNIX socket that only the spooler's user can open.

Whoever can connect is an admin (the socket is mode 0600 in a 0700 state folder). The CLI is its
client. Routes:

    GET  /v1/status                     daemon, listeners, device, queue depth, free space
    GET  /v1/jobs?all=1&state=pending   jobs in arrival order
    GET  /v1/jobs/ID                    one job with its documents
    POST /v1/jobs/ID/cancel|hold|release  release of a private job: body {"key": "..."} or
                                        {"without_key": true} (the admin's override, logged)
    POST /v1/flush                      body {"job_ids": [..]} or {} for every waiting job
    POST /v1/login                      body {"method", "secret", "user", "card", "terminal"} (spooler.login)
    GET  /v1/users                      who can log in offline; POST /v1/users/sync; POST /v1/keys/rotate
    GET  /v1/peers                      this spooler's key and the enrolled peers; POST /v1/peers
                                        {"name", "key", "address"}; POST /v1/peers/remove {"name"}

Errors are `{"error", "code"}` with a 4xx/5xx status (spooler.web); a body over MAX_BODY is refused
with 413 before it is read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from spooler.jobs.service import JobService
from spooler.model import HoldKeyRefused, IllegalTransition, JobNotFound, JobState, NotAuthorized, SpoolerError
from spooler.web import ApiError, HttpLimits, JsonResource, LimitedSite, read_json

log = Logger(namespace="spooler.admin")

MAX_BODY = 64 * 1024


def job_detail(service: JobService, job_id: int) -> dict[str, Any]:
    job = service.get(job_id)
    detail = job.summary()
    detail["documents"] = [
        {"number": d.number, "file": str(service.spool_path(d)), "size": d.size, "document_format": d.document_format}
        for d in service.documents(job_id)
    ]
    detail["forwards_in_doubt"] = [forward.summary() for forward in service.store.forwards_of_job(job_id)]
    return detail


class AdminResource(JsonResource):
    name = "admin"

    def __init__(self, service: JobService, status: Callable[[], dict[str, Any]], login: Any = None) -> None:
        super().__init__()
        self._service = service
        self._status = status
        self._login = login  # spooler.login.runtime.LoginRuntime: its routes answer with Deferreds

    def dispatch(self, request: Request) -> Any:
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
            if method == "POST" and path[:1] == ["jobs"] and path[2:] == ["release"]:
                return self._release(self._job_id(path[1]), self._body(request))
            if method == "POST" and len(path) == 3 and path[0] == "jobs":
                action = {"cancel": self._service.cancel, "hold": self._service.hold}.get(path[2])
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
        except HoldKeyRefused as error:
            raise ApiError(403, error.reason, str(error)) from None
        except JobNotFound as error:
            raise ApiError(404, "not-found", str(error)) from None
        except IllegalTransition as error:
            raise ApiError(409, "conflict", str(error)) from None
        except NotAuthorized as error:
            raise ApiError(403, "forbidden", str(error)) from None
        except SpoolerError as error:
            raise ApiError(400, "bad-request", str(error)) from None
        raise ApiError(404, "not-found", f"no route for {method} /v1/{'/'.join(path)}")

    def _release(self, job_id: int, body: dict[str, Any]) -> Any:
        """Release a held job; a private one with {"key"}, or {"without_key": true}."""
        key, without_key = body.get("key"), body.get("without_key", False)
        if (key is not None and not isinstance(key, str)) or not isinstance(without_key, bool):
            raise ApiError(400, "bad-request", "expected {\"key\": \"...\"} or {\"without_key\": true}")
        if key is None:
            return self._service.release(job_id, admin=True, without_key=without_key).summary()

        def refused(failure: Failure) -> Any:
            error = failure.value
            if isinstance(error, HoldKeyRefused):
                raise ApiError(429 if error.reason == "locked" else 403, error.reason, str(error))
            for kind, status, code in ((JobNotFound, 404, "not-found"), (IllegalTransition, 409, "conflict")):
                if isinstance(error, kind):
                    raise ApiError(status, code, str(error))
            return failure

        return self._service.release_with_key(job_id, key, admin=True).addCallbacks(lambda job: job.summary(), refused)

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
        body: dict[str, Any] = read_json(request, empty={})
        return body


def build_admin_site(resource: AdminResource, reactor: Any, max_connections: int) -> LimitedSite:
    """The admin API's site (on the UNIX socket: no per-address limit, every client is the admin)."""
    return LimitedSite(resource, reactor=reactor, name="admin", max_body=MAX_BODY,
                       limits=HttpLimits(max_connections=max_connections, idle_timeout=60.0))
