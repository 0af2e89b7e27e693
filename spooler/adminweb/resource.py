"""The admin web listener's routes (twisted.web), all GET (or HEAD), all read-only:

    GET /healthz          no login: {"status": "ok" | "degraded", "reasons": [...], "mode", "version"}
    GET /metrics          Prometheus text exposition (spooler.metrics)
    GET /                 the status page (static HTML, CSS and JS, nothing fetched from elsewhere)
    GET /api/v1/status    what the page shows: the daemon's status, its health, recent jobs

Everything but /healthz needs HTTP Basic credentials of a user in the admin users file
([admin] users_file, written by `spooler admin-user add NAME`), checked by the same throttled scrypt
authenticator as the IPP printer's. Errors are JSON `{"error", "code"}` with a 4xx status.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from spooler.ipp.auth import AuthRefused, BasicAuthenticator
from spooler.metrics import exposition, health, registry_for
from spooler.model import FINAL_STATES, JobState
from spooler.terminal.resource import SECURITY_HEADERS

log = Logger(namespace="spooler.adminweb")

STATIC = {
    "/": ("index.html", b"text/html; charset=utf-8"),
    "/index.html": ("index.html", b"text/html; charset=utf-8"),
    "/admin.js": ("admin.js", b"text/javascript; charset=utf-8"),
    "/admin.css": ("admin.css", b"text/css; charset=utf-8"),
}
#: Jobs the page lists: every waiting one up to this many, and this many of the latest finished ones.
WAITING_SHOWN, FINISHED_SHOWN = 200, 30
WAITING = [state for state in JobState if state not in FINAL_STATES]


def _job_row(job: Any) -> dict[str, Any]:
    analysis = job.attributes.get("analysis") or {}
    return {"job_id": job.job_id, "state": job.state.keyword, "user": job.user, "name": job.name,
            "queue": job.queue, "protocol": job.protocol, "size": job.size, "route": job.route.value,
            "mode": job.mode.value, "created_at": job.created_at, "completed_at": job.completed_at,
            "message": job.message or job.reason, "attempts": job.attempts,
            "pages": analysis.get("pages") if analysis.get("status") == "ok" else None}  # fmt: skip


def status_page_data(service: Any) -> dict[str, Any]:
    """What the status page shows: the status (as `spooler status --json`), the health, the jobs."""
    store = service.store
    waiting = store.list_jobs(WAITING, limit=WAITING_SHOWN)
    finished = store.list_jobs(FINAL_STATES, limit=FINISHED_SHOWN, newest_first=True)
    return {"status": service.status(), "health": health(service), "device_name": service.config.device.name,
            "now": service.reactor.seconds(), "waiting_jobs": [_job_row(job) for job in waiting],
            "finished_jobs": [_job_row(job) for job in finished]}  # fmt: skip


class AdminWebResource(Resource):
    isLeaf = True

    def __init__(self, service: Any, authenticator: BasicAuthenticator) -> None:
        super().__init__()
        self._service = service
        self._authenticator = authenticator
        self._registry = registry_for(service)
        self._static = {path: (resources.files("spooler.adminweb").joinpath("static", name).read_bytes(), kind)
                        for path, (name, kind) in STATIC.items()}  # fmt: skip

    def render(self, request: Request) -> bytes | int:  # type: ignore[override]
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        request.setHeader(b"server", b"spooler-admin")
        path = request.path.decode("utf-8", "replace")
        method = request.method.decode("ascii", "replace")
        if method not in ("GET", "HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return self._json(request, 405, {"error": f"{method} is not allowed: this listener is read-only",
                                             "code": "method-not-allowed"})  # fmt: skip
        if path == "/healthz":
            return self._json(request, 200, health(self._service))
        if path not in self._static and path not in ("/metrics", "/api/v1/status"):
            return self._json(request, 404, {"error": "no such page", "code": "not-found"})
        host = str(getattr(request.getClientAddress(), "host", "") or "local")
        checking = self._authenticator.check(request.getHeader(b"authorization"), host)
        checking.addCallbacks(lambda user: self._serve(request, path), lambda failure: self._refuse(request, failure))
        checking.addErrback(self._broken, request)
        return NOT_DONE_YET

    def _serve(self, request: Request, path: str) -> None:
        if self._gone(request):
            return
        if path == "/metrics":
            body, kind = exposition(self._registry)
            request.setHeader(b"content-type", kind.encode())
        elif path == "/api/v1/status":
            body = json.dumps(status_page_data(self._service)).encode()
            request.setHeader(b"content-type", b"application/json")
        else:
            body, content_type = self._static[path]
            request.setHeader(b"content-type", content_type)
        self._finish(request, 200, body)

    def _refuse(self, request: Request, failure: Failure) -> None:
        failure.trap(AuthRefused)
        refusal: AuthRefused = failure.value  # type: ignore[assignment]
        if self._gone(request):
            return
        if refusal.code == 401:
            request.setHeader(b"www-authenticate", self._authenticator.challenge())
        if refusal.code == 429:
            request.setHeader(b"retry-after", b"60")
        if refusal.code != 401 or request.getHeader(b"authorization"):
            log.warn("Admin web request from {host} refused: {why}", spool_event="admin_web_refused",
                     host=str(getattr(request.getClientAddress(), "host", "")), why=refusal.reason)  # fmt: skip
        request.setHeader(b"content-type", b"application/json")
        self._finish(request, refusal.code, json.dumps({"error": refusal.reason, "code": "unauthorized"}).encode())

    def _broken(self, failure: Failure, request: Request) -> None:
        log.failure("Admin web request failed", failure)
        if not self._gone(request):
            request.setHeader(b"content-type", b"application/json")
            self._finish(request, 500, b'{"error": "internal error", "code": "internal"}')

    @staticmethod
    def _gone(request: Request) -> bool:
        return bool(getattr(request, "_disconnected", False) or request.finished)

    @staticmethod
    def _finish(request: Request, status: int, body: bytes) -> None:
        request.setResponseCode(status)
        request.setHeader(b"content-length", str(len(body)).encode())
        if request.method != b"HEAD":
            request.write(body)
        request.finish()

    @staticmethod
    def _json(request: Request, status: int, body: Any) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(body).encode("utf-8")
