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

from importlib import resources
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from spooler.ipp.server.auth import AuthRefused, BasicAuthenticator
from spooler.metrics import exposition, health, registry_for
from spooler.model import FINAL_STATES, JobState
from spooler.terminal.resource import SECURITY_HEADERS
from spooler.web import ApiError, HttpLimits, JsonResource, LimitedSite, address_host

log = Logger(namespace="spooler.adminweb")

STATIC = {
    "/": ("index.html", b"text/html; charset=utf-8"),
    "/index.html": ("index.html", b"text/html; charset=utf-8"),
    "/admin.js": ("admin.js", b"text/javascript; charset=utf-8"),
    "/admin.css": ("admin.css", b"text/css; charset=utf-8"),
}
#: Requests are GETs: a body larger than this is refused unread.
MAX_BODY = 4096
IDLE_TIMEOUT = 60.0
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


class Page:
    """An answer that is not JSON: its content type and bytes."""

    def __init__(self, content_type: bytes, body: bytes) -> None:
        self.content_type = content_type
        self.body = body


class AdminWebResource(JsonResource):
    name = "admin web"
    headers = {**SECURITY_HEADERS, b"server": b"spooler-admin"}

    def __init__(self, service: Any, authenticator: BasicAuthenticator) -> None:
        super().__init__()
        self._service = service
        self._authenticator = authenticator
        self._registry = registry_for(service)
        self._static = {path: Page(kind, resources.files("spooler.adminweb").joinpath("static", name).read_bytes())
                        for path, (name, kind) in STATIC.items()}  # fmt: skip

    def dispatch(self, request: Request) -> Any:
        path = request.path.decode("utf-8", "replace")
        method = request.method.decode("ascii", "replace")
        if method not in ("GET", "HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            raise ApiError(405, "method-not-allowed", f"{method} is not allowed: this listener is read-only")
        if path == "/healthz":
            return health(self._service)
        if path not in self._static and path not in ("/metrics", "/api/v1/status"):
            raise ApiError(404, "not-found", "no such page")
        checking = self._authenticator.check(request.getHeader(b"authorization"), address_host(request.getClientAddress()))
        return checking.addCallbacks(lambda user: self._page(path), self._refused, errbackArgs=(request,))

    def _page(self, path: str) -> Any:
        if path == "/metrics":
            body, kind = exposition(self._registry)
            return Page(kind.encode(), body)
        if path == "/api/v1/status":
            return status_page_data(self._service)
        return self._static[path]

    def _refused(self, failure: Failure, request: Request) -> None:
        failure.trap(AuthRefused)
        refusal: AuthRefused = failure.value  # type: ignore[assignment]
        if refusal.code == 401:
            request.setHeader(b"www-authenticate", self._authenticator.challenge())
        if refusal.code == 429:
            request.setHeader(b"retry-after", b"60")
        if refusal.code != 401 or request.getHeader(b"authorization"):
            log.warn("Admin web request from {host} refused: {why}", spool_event="admin_web_refused",
                     host=address_host(request.getClientAddress()), why=refusal.reason)  # fmt: skip
        raise ApiError(refusal.code, "unauthorized" if refusal.code == 401 else "too-many-attempts", refusal.reason)

    def encode(self, request: Request, status: int, body: Any) -> bytes:
        if isinstance(body, Page):
            request.setResponseCode(status)
            request.setHeader(b"content-type", body.content_type)
            return body.body
        return super().encode(request, status, body)


def build_admin_web_site(resource: AdminWebResource, reactor: Any, limits: Any) -> LimitedSite:
    """The admin web listener's site (spooler.web): GET only, so small bodies; `[limits]` connection,
    per-address and header limits; idle connections closed after a minute."""
    return LimitedSite(resource, reactor=reactor, name="admin web", max_body=MAX_BODY,
                       limits=HttpLimits.from_config(limits, idle_timeout=IDLE_TIMEOUT))  # fmt: skip
