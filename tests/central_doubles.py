"""Test doubles of the two products' documented interfaces, each a real HTTP server on 127.0.0.1 in a
thread (used by tests/test_central_backends.py and the end-to-end tests). Every behaviour follows the
source cited for it in docs/backends/papercut.md and docs/backends/myq.md; where the public
documentation stops, the double does what the doc's "assumed" lines say, and nothing more.

- `PaperCutDouble`: the XML-RPC web services API at /rpc/api/xmlrpc (auth token first argument;
  lookUpUserNameByCardNo/ByIDNo, listUserAccounts, getUserProperties, getUserAccountBalance,
  processJob with the job-details string parsed by the manual's quoting rule) and the System Health
  API at /api/health/status (key in the Authorization header, 200 OK / 500 error).
- `MyQDouble`: POST /api/auth/token (client_credentials and login_info grants, JSON bodies, bearer
  tokens with expires_in), GET /v3/users, /v3/users/find (card, username, isActive filters) and
  /v3/users/current (the assumed "who am I" of a user token).

Both can be stopped and started again on the same port (`stop`, `start`), and can lose an answer
on purpose (`lose_answers`: the request is processed, then the connection is closed unanswered).
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
import xmlrpc.client
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: api.processJob's fields (PaperCut manual, "Import print job details"): required first.
PROCESS_JOB_REQUIRED = ("user", "server", "printer")
PROCESS_JOB_FIELDS = PROCESS_JOB_REQUIRED + (
    "time", "cost", "total-pages", "total-color-pages", "copies", "document-name", "duplex", "grayscale",
    "paper-size-name", "paper-width-mm", "paper-height-mm", "document-size-kb", "invoice", "comment",
    "client-ip", "shared-account")  # fmt: skip


def parse_job_details(text: str) -> dict[str, str]:
    """The manual's format: comma-separated name=value pairs; a pair holding a comma is quoted, and a
    quote inside a value is doubled, quoted pair or not (its example: printer=""John Smith"" Library)."""
    row, current, quoted, i = [], [], False, 0
    while i < len(text):
        char = text[i]
        if char == '"' and text[i + 1: i + 2] == '"':
            current.append('"')
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            row.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    if quoted:
        raise ValueError("an unterminated quoted field")
    row.append("".join(current))
    fields: dict[str, str] = {}
    for pair in row:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"not a name=value pair: {pair!r}")
        fields[name] = value
    return fields


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Double:
    """A threaded HTTP server on 127.0.0.1 that can stop and start again on the same port."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.lock = threading.Lock()
        self.calls: list[str] = []
        self.lose_answers = 0  # process the next N requests, then close without answering
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Any:
        self._server = _Server(("127.0.0.1", self.port), self.handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _lose_this_answer(self) -> bool:
        with self.lock:
            if self.lose_answers > 0:
                self.lose_answers -= 1
                return True
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Handler(BaseHTTPRequestHandler):
    double: Any

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _drop(self) -> None:
        """Processed, then the connection closes with no answer (a server that died after the work)."""
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


# -- PaperCut NG/MF ---------------------------------------------------------------------------------------


class PaperCutDouble(_Double):
    def __init__(self, *, auth_token: str, health_key: str, users: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.auth_token = auth_token
        self.health_key = health_key
        #: name -> properties as getUserProperties names them ("full-name", "primary-card-number", ...)
        self.users = users
        self.jobs: list[dict[str, str]] = []  # every api.processJob, as parsed (not deduplicated: like PaperCut)
        self.healthy = True

    def handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(_Handler):
            def do_GET(self) -> None:  # noqa: N802
                path = urlsplit(self.path).path
                if path != "/api/health/status":
                    self._json(404, {"error": "not found"})
                elif self.headers.get("Authorization") != double.health_key:
                    self._json(401, {"error": "unauthorized"})
                elif double.healthy:
                    self._json(200, {"status": "OK", "message": "System status"})
                else:
                    self._json(500, {"status": "ERROR", "message": "Application server cannot connect to the database"})

            def do_POST(self) -> None:  # noqa: N802
                if urlsplit(self.path).path != "/rpc/api/xmlrpc":
                    self._json(404, {"error": "not found"})
                    return
                params, method = xmlrpc.client.loads(self._body(), use_builtin_types=True)
                with double.lock:
                    double.calls.append(str(method))
                try:
                    result = double.dispatch(str(method), list(params))
                    body = xmlrpc.client.dumps((result,), methodresponse=True, allow_none=False)
                except xmlrpc.client.Fault as fault:
                    body = xmlrpc.client.dumps(fault)
                if double._lose_this_answer():
                    self._drop()
                    return
                self._send(200, body.encode(), "text/xml")

        return Handler

    def _user(self, name: str) -> dict[str, Any]:
        if name not in self.users:
            raise xmlrpc.client.Fault(1, f"The user does not exist : {name}")
        return self.users[name]

    def dispatch(self, method: str, params: list[Any]) -> Any:
        if not params or params[0] != self.auth_token:
            raise xmlrpc.client.Fault(1, "Invalid authentication token")  # every call: the token comes first
        args = params[1:]
        with self.lock:
            if method in ("api.lookUpUserNameByCardNo", "api.lookUpUserNameByIDNo"):
                (number,) = args  # card and ID numbers share one field (manual, "User card and ID numbers")
                return next((name for name, p in self.users.items()
                             if number and number in (p.get("primary-card-number"), p.get("secondary-card-number"))),
                            "")  # fmt: skip
            if method == "api.listUserAccounts":
                offset, limit = args
                return sorted(self.users)[int(offset): int(offset) + int(limit)]
            if method == "api.getUserProperties":
                name, names = args
                user = self._user(name)
                return [str(user.get(prop, "")) if not isinstance(user.get(prop), bool) else str(user[prop]).lower()
                        for prop in names]  # fmt: skip
            if method == "api.getUserAccountBalance":
                return float(self._user(args[0]).get("balance", 0.0))
            if method == "api.processJob":
                (details,) = args
                try:
                    fields = parse_job_details(details)
                except ValueError as error:
                    raise xmlrpc.client.Fault(1, str(error)) from None
                missing = [name for name in PROCESS_JOB_REQUIRED if not fields.get(name)]
                unknown = [name for name in fields if name not in PROCESS_JOB_FIELDS]
                if missing or unknown:
                    raise xmlrpc.client.Fault(1, f"missing {missing}, unknown {unknown}")
                self._user(fields["user"])
                self.jobs.append(fields)
                return True
        raise xmlrpc.client.Fault(1, f"No such handler: {method}")


# -- MyQ X ---------------------------------------------------------------------------------------------


class MyQDouble(_Double):
    #: login_info "type" -> the properties it must carry (MyQ X REST API, "Additional Grant Types").
    LOGIN_INFO = {1: ("card",), 2: ("pin",), 3: ("user", "pwd"), 4: ("card", "pin"), 5: ("card", "pwd")}

    def __init__(self, *, client_id: str, client_secret: str, users: list[dict[str, Any]],
                 expires_in: int = 1800) -> None:  # fmt: skip
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        #: {"id", "username", "fullname", "email", "cards": [...], "pins": [...], "password", "isActive"}
        self.users = users
        self.expires_in = expires_in
        self.tokens: dict[str, tuple[str, Any, float]] = {}  # token -> ("client" | "user", user id, until)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(_Handler):
            def do_POST(self) -> None:  # noqa: N802
                with double.lock:
                    double.calls.append("POST " + urlsplit(self.path).path)
                if urlsplit(self.path).path != "/api/auth/token":
                    self._json(404, {"error": "not found"})
                    return
                try:
                    body = json.loads(self._body())
                except ValueError:
                    self._json(400, {"error": "invalid_request"})
                    return
                status, answer = double.token(body)
                if double._lose_this_answer():
                    self._drop()
                    return
                self._json(status, answer)

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                with double.lock:
                    double.calls.append("GET " + parts.path)
                bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                status, answer = double.get(parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}, bearer)
                self._json(status, answer)

        return Handler

    def _issue(self, kind: str, user_id: Any) -> dict[str, Any]:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = (kind, user_id, time.time() + self.expires_in)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in,
                "scope": "users", "refresh_token": secrets.token_urlsafe(24)}  # fmt: skip

    def token(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("client_id") != self.client_id or body.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client"}
        with self.lock:
            if body.get("grant_type") == "client_credentials":
                return 200, self._issue("client", None)
            if body.get("grant_type") == "login_info":
                info = body.get("login_info")
                needed = self.LOGIN_INFO.get(info.get("type")) if isinstance(info, dict) else None
                if needed is None or any(not isinstance(info.get(k), str) or not info[k] for k in needed):
                    return 400, {"error": "invalid_request"}
                user = next((u for u in self.users if u.get("isActive", 1) and self._matches(u, info)), None)
                if user is None:
                    return 400, {"error": "invalid_grant"}
                return 200, self._issue("user", user["id"])
        return 400, {"error": "unsupported_grant_type"}

    @staticmethod
    def _matches(user: dict[str, Any], info: dict[str, Any]) -> bool:
        checks = {"card": info.get("card") in user.get("cards", []), "pin": info.get("pin") in user.get("pins", []),
                  "user": info.get("user") == user["username"], "pwd": info.get("pwd") == user.get("password")}
        return all(checks[key] for key in MyQDouble.LOGIN_INFO[info["type"]])

    @staticmethod
    def _public(user: dict[str, Any]) -> dict[str, Any]:
        return {key: user.get(key, "") for key in ("id", "username", "fullname", "email", "code", "syncSource")}

    def get(self, path: str, query: dict[str, str], bearer: str) -> tuple[int, Any]:
        with self.lock:
            token = self.tokens.get(bearer)
            if token is None or token[2] < time.time():
                return 401, {"error": "invalid_token"}
            kind, user_id, _ = token
            if path == "/v3/users/current":  # assumed (docs/backends/myq.md): the user token's own record
                if kind != "user":
                    return 403, {"error": "forbidden"}
                return 200, self._public(next(u for u in self.users if u["id"] == user_id))
            if kind != "client":
                return 403, {"error": "forbidden"}
            start, limit = int(query.get("start", 0)), int(query.get("limit", 100))
            if path == "/v3/users":
                listed = [self._public(u) for u in self.users if u.get("isActive", 1)]
            elif path == "/v3/users/find":
                filters = {k: query[k] for k in ("card", "username", "email", "isActive") if k in query}
                if not filters:
                    return 200, {"users": [], "count": 0}  # "MUST contain at least one of required filter"
                active = int(filters.get("isActive", 1))
                listed = [self._public(u) for u in self.users if int(u.get("isActive", 1)) == active
                          and ("card" not in filters or filters["card"] in u.get("cards", []))
                          and ("username" not in filters or filters["username"] == u["username"])
                          and ("email" not in filters or filters["email"] == u.get("email"))]  # fmt: skip
            else:
                return 404, {"error": "not found"}
            page = listed[start: start + limit]
            return 200, {"users": page, "count": len(page)}
