"""The device terminal over HTTP (twisted.web): the static web page and its JSON API.

Routes (JSON in and out; every error is `{"error": text, "code": keyword}` with a 4xx/5xx status):

    GET  /                               the terminal page (static HTML, CSS and JS, no external asset)
    GET  /api/v1/login                   {"methods": [...]}: the login methods the central server can check
    POST /api/v1/login                   {"method": "pin"|"card"|"password", "secret": "...", "user": "..."?}
                                         or {"method": "card+pin"|"card+password", "card": "...", "secret":
                                         PIN or password}
                                         -> the session; the token in an HttpOnly, SameSite=Strict cookie (Secure over TLS)
                                         (and in the body when the client asks with "token": true, for
                                         an `Authorization: Bearer` client such as a printer panel)
    GET  /api/v1/session                 who is logged in here, mode (online/offline), the offline notice
    GET  /api/v1/jobs                    my held jobs: id, name, pages, colour, time, private
    POST /api/v1/jobs/ID/release         print one of my held jobs on this device ({"key": "..."} for a
                                         private one: 403 key-required / wrong-key, 429 when locked)
    POST /api/v1/jobs/ID/delete          delete (cancel) one of my jobs
    POST /api/v1/logout                  end the session

Every POST must say `Content-Type: application/json` (a cross-site form cannot, without a CORS
preflight that this server never grants) and, when the browser sends an Origin, come from this
server's own origin. Bodies are capped at MAX_BODY bytes: a larger one is refused with 413 before it
is read, and the connection closed (spooler.web, which also holds the connection limits). The login itself (cache, server, throttling) is the LoginService's; this module only
asks it, with the terminal's id: the configured terminal name, or else the client's address.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from importlib import resources
from typing import Any, Protocol

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from spooler.jobs.service import JobService
from spooler.login.entries import COMBINED, METHODS
from spooler.login.service import LoginOutcome, LoginRefused
from spooler.model import HoldKeyRefused, IllegalTransition, NotAuthorized
from spooler.terminal.pullprint import JobNotHeld, NotYourJob, PullPrint, job_view
from spooler.terminal.sessions import Session, SessionStore
from spooler.web import ApiError, HttpLimits, JsonResource, LimitedSite, read_json

log = Logger(namespace="spooler.terminal")

MAX_BODY = 4096
MAX_SECRET = 256
MAX_USER = 127
MAX_KEY = 255
COOKIE = b"spooler_terminal"
#: How long an idle HTTP connection to the terminal stays open.
CONNECTION_TIMEOUT = 60

SECURITY_HEADERS = {
    b"content-security-policy": b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
    b"cache-control": b"no-store",
}  # fmt: skip

STATIC = {
    "/": ("index.html", b"text/html; charset=utf-8"),
    "/index.html": ("index.html", b"text/html; charset=utf-8"),
    "/terminal.js": ("terminal.js", b"text/javascript; charset=utf-8"),
    "/terminal.css": ("terminal.css", b"text/css; charset=utf-8"),
}

#: HTTP status of each refusal reason of the LoginService.
REFUSAL_STATUS = {"invalid": 401, "expired": 401, "revoked": 403, "locked": 429, "offline-disabled": 503,
                  "unavailable": 503}  # fmt: skip

_JOB_PATH = re.compile(r"^/api/v1/jobs/(\d{1,12})/(release|delete)$")


class LoginProvider(Protocol):
    """What the terminal needs of spooler.login.LoginService."""

    def login(self, *, method: str, secret: str, user: str | None, terminal: str,
              card: str | None = None) -> Deferred[LoginOutcome]: ...

    def methods(self) -> list[str]: ...


def refusal_text(reason: str, method: str, retry_after: float | None, detail: str) -> str:
    """The sentence the terminal shows for a refused login (what happened and what to do)."""
    if reason == "invalid":
        return {"pin": "Wrong PIN.", "card": "This card is not known.", "password": "Wrong user name or password.",
                "card+pin": "Wrong card or PIN.", "card+password": "Wrong card or password."}.get(
            method, "Wrong credentials.")  # fmt: skip
    if reason == "expired":
        return ("Your offline login has expired. Log in once while the print server is reachable to "
                "renew it.")  # fmt: skip
    if reason == "revoked":
        return "This login has been revoked. Please contact your administrator."
    if reason == "locked":
        return f"Too many failed attempts. Try again in {wait_text(retry_after)}."
    if reason == "offline-disabled":
        return "The print server cannot be reached and offline login is switched off on this printer."
    if reason == "unavailable":
        return "Login is not possible right now. Please try again in a moment."
    return detail or "Login refused."


def wait_text(seconds: float | None) -> str:
    if seconds is None or seconds <= 0:
        return "a moment"
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    if minutes and rest:
        return f"{minutes} min {rest} s"
    return f"{minutes} min" if minutes else f"{rest} s"


class TerminalResource(JsonResource):
    name = "terminal"
    headers = {**SECURITY_HEADERS, b"server": b"spooler-terminal"}

    def __init__(self, jobs: JobService, login: Callable[[], LoginProvider | None], clock: IReactorTime, *,
                 session_idle: float, terminal_name: str | None = None) -> None:  # fmt: skip
        super().__init__()
        self._login = login
        self.pull = PullPrint(jobs)
        self.sessions = SessionStore(clock, idle_timeout=session_idle)
        self._terminal_name = terminal_name
        self._static = {path: (resources.files("spooler.terminal").joinpath("static", name).read_bytes(), kind)
                        for path, (name, kind) in STATIC.items()}  # fmt: skip

    # -- plumbing ----------------------------------------------------------------------------------

    def render(self, request: Request) -> bytes | int:  # type: ignore[override]
        path = request.path.decode("utf-8", "replace")
        if path not in self._static:
            return super().render(request)  # the API: JSON answers (spooler.web.JsonResource)
        for name, value in self.headers.items():
            request.setHeader(name, value)
        method = request.method.decode("ascii", "replace")
        if method not in ("GET", "HEAD"):
            refusal = ApiError(405, "method-not-allowed", f"{method} is not allowed here")
            return self.encode(request, 405, refusal.answer())
        body, kind = self._static[path]
        request.setHeader(b"content-type", kind)
        request.setHeader(b"cache-control", b"no-cache")
        return body

    def dispatch(self, request: Request) -> Any:
        path = request.path.decode("utf-8", "replace")
        if not path.startswith("/api/"):
            raise ApiError(404, "not-found", "no such page")
        return self._api(request, request.method.decode("ascii", "replace"), path)

    def peer(self, request: Request) -> str:
        address = request.getClientAddress()
        return str(getattr(address, "host", "") or "local")

    def terminal_id(self, request: Request) -> str:
        return self._terminal_name or self.peer(request)

    @staticmethod
    def _token(request: Request) -> str | None:
        authorization = request.getHeader(b"authorization")
        if authorization and authorization[:7].lower() == b"bearer ":
            return authorization[7:].strip().decode("ascii", "replace")
        cookie = request.getCookie(COOKIE)
        return cookie.decode("ascii", "replace") if cookie else None

    def _session(self, request: Request) -> Session:
        session = self.sessions.find(self._token(request), self.peer(request))
        if session is None:
            raise ApiError(401, "not-logged-in", "Not logged in, or the session has ended. Please log in.")
        return session

    def _check_post(self, request: Request) -> None:
        content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if content_type != b"application/json":
            raise ApiError(415, "unsupported-media-type", "send JSON with Content-Type: application/json")
        origin = request.getHeader(b"origin")
        host = request.getHeader(b"host")
        if origin is not None and origin not in (b"http://" + (host or b""), b"https://" + (host or b"")):
            raise ApiError(403, "forbidden", "cross-origin requests are not accepted")

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        body: dict[str, Any] = read_json(request, empty={})
        return body

    # -- the API -----------------------------------------------------------------------------------

    def _api(self, request: Request, method: str, path: str) -> Any:
        if method == "POST":
            self._check_post(request)
        if path == "/api/v1/login" and method == "POST":
            return self._do_login(request, self._body(request))
        if path == "/api/v1/login" and method == "GET":
            service = self._login()
            return {"methods": service.methods() if service is not None else []}
        if path == "/api/v1/logout" and method == "POST":
            return self._do_logout(request)
        if path == "/api/v1/session" and method == "GET":
            return self._session(request).public(self.sessions.idle_timeout)
        if path == "/api/v1/jobs" and method == "GET":
            session = self._session(request)
            return {**session.public(self.sessions.idle_timeout),
                    "jobs": [job_view(job) for job in self.pull.held_jobs(session.user)]}  # fmt: skip
        if match := _JOB_PATH.match(path):
            if method != "POST":
                raise ApiError(405, "method-not-allowed", f"use POST for {match.group(2)}")
            return self._job_action(request, int(match.group(1)), match.group(2))
        known = path in ("/api/v1/login", "/api/v1/logout", "/api/v1/session", "/api/v1/jobs")
        if known:
            raise ApiError(405, "method-not-allowed", f"{method} is not allowed on {path}")
        raise ApiError(404, "not-found", "no such API path")

    def _do_login(self, request: Request, body: dict[str, Any]) -> Deferred[dict[str, Any]]:
        method, secret, user, card = body.get("method"), body.get("secret"), body.get("user"), body.get("card")
        if method not in METHODS:
            raise ApiError(400, "bad-request", f"\"method\" must be one of {', '.join(METHODS)}")
        if not isinstance(secret, str) or not secret or len(secret) > MAX_SECRET:
            raise ApiError(400, "bad-request", f"\"secret\" must be a text of 1 to {MAX_SECRET} characters")
        if method in COMBINED:
            if not isinstance(card, str) or not card or len(card) > MAX_SECRET:
                raise ApiError(400, "bad-request", f"a {method} login needs \"card\" (a text of 1 to {MAX_SECRET} "
                                                   f"characters) and the {COMBINED[method]} in \"secret\"")  # fmt: skip
            if user is not None:
                raise ApiError(400, "bad-request", f"a {method} login names no \"user\": the card does")
        elif card is not None:
            raise ApiError(400, "bad-request", "\"card\" goes only with card+pin or card+password")
        if user is not None and (not isinstance(user, str) or not user.strip() or len(user) > MAX_USER
                                 or not user.isprintable()):  # fmt: skip
            raise ApiError(400, "bad-request", f"\"user\", when given, must be a printable name of 1 to {MAX_USER} "
                                               "characters")  # fmt: skip
        if method == "password" and user is None:
            raise ApiError(400, "bad-request", "a password login needs \"user\"")
        if COMBINED.get(method, method) == "pin" and not secret.isdigit():
            raise ApiError(400, "bad-request", "a PIN is made of digits")
        service = self._login()
        if service is None:
            raise ApiError(503, "unavailable", "Login is not available on this printer.")
        terminal, peer = self.terminal_id(request), self.peer(request)
        user = user.strip() if isinstance(user, str) else None
        want_token = body.get("token") is True
        attempt = maybeDeferred(service.login, method=method, secret=secret, user=user, terminal=terminal, card=card)
        del secret, card, body  # the secrets go to the login service and nowhere else

        def logged_in(outcome: LoginOutcome) -> dict[str, Any]:
            token, session = self.sessions.open(
                user=outcome.user, mode=outcome.mode, notice=outcome.notice, profile=dict(outcome.profile or {}),
                peer=peer, valid_until=outcome.valid_until,
            )  # fmt: skip
            request.addCookie(COOKIE, token.encode("ascii"), path=b"/", httpOnly=True, sameSite="strict",
                              secure=request.isSecure() or None)  # served over TLS: never sent back in clear
            log.info("Terminal login of {user} ({mode}) at {terminal} by {method}", spool_event="terminal_login",
                     user=outcome.user, mode=outcome.mode, terminal=terminal, method=method)  # fmt: skip
            answer = session.public(self.sessions.idle_timeout)
            if want_token:
                answer["token"] = token
            return answer

        def refused(failure: Failure) -> Failure:
            if not failure.check(LoginRefused):
                return failure
            error = failure.value
            reason, retry_after, detail = error.reason, error.retry_after, error.message  # logged by the service
            if reason not in REFUSAL_STATUS:
                return failure
            extra: dict[str, Any] = {}
            if retry_after is not None:
                extra["retry_after"] = math.ceil(retry_after)
                request.setHeader(b"retry-after", str(math.ceil(retry_after)).encode())
            raise ApiError(REFUSAL_STATUS[reason], reason, refusal_text(reason, method, retry_after, detail), **extra)

        return attempt.addCallbacks(logged_in, refused)

    def _do_logout(self, request: Request) -> dict[str, Any]:
        session = self.sessions.close(self._token(request))
        request.addCookie(COOKIE, b"", path=b"/", httpOnly=True, sameSite="strict", max_age="0",
                          secure=request.isSecure() or None)
        if session is not None:
            log.info("Terminal logout of {user}", spool_event="terminal_logout", user=session.user)
        return {"logged_out": session is not None}

    def _job_action(self, request: Request, job_id: int, action: str) -> Deferred[dict[str, Any]]:
        session = self._session(request)
        key = self._body(request).get("key") if action == "release" else None
        if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_KEY):
            raise ApiError(400, "bad-request", f"\"key\", when given, must be a text of 1 to {MAX_KEY} characters")
        if action == "release":
            done = maybeDeferred(self.pull.release, session.user, job_id, key)
        else:
            done = maybeDeferred(self.pull.delete, session.user, job_id)
        del key  # the key goes to the job service and nowhere else

        def refused(failure: Failure) -> Failure:
            if failure.check(HoldKeyRefused):
                error = failure.value
                if error.reason == "locked":
                    wait = math.ceil(error.retry_after or 0)
                    request.setHeader(b"retry-after", str(wait).encode())
                    raise ApiError(429, "locked", f"Too many wrong keys. Try again in {wait_text(wait)}.",
                                   retry_after=wait)  # fmt: skip
                if error.reason == "wrong-key":
                    raise ApiError(403, "wrong-key", "Wrong key for this private job.")
                raise ApiError(403, "key-required", "This job is private: type its key to print it.")
            if failure.check(NotYourJob, NotAuthorized):
                raise ApiError(404, "not-found", f"You have no job {job_id}.")
            if failure.check(JobNotHeld, IllegalTransition):
                raise ApiError(409, "conflict", str(failure.value))
            return failure

        return done.addCallbacks(lambda job: {"job": job_view(job)}, refused)


class TerminalSite(LimitedSite):
    """The terminal's site (spooler.web): bodies over MAX_BODY refused before they are read, the
    connection and per-address limits with idle-first eviction, the header deadline, idle connections
    closed, no access log (the spool log records logins, releases and deletions)."""

    def __init__(self, resource: TerminalResource, *, clock: IReactorTime, limits: HttpLimits | None = None) -> None:
        super().__init__(resource, reactor=clock, name="terminal", max_body=MAX_BODY,
                         limits=limits or HttpLimits(max_per_address=32, idle_timeout=CONNECTION_TIMEOUT))  # fmt: skip
