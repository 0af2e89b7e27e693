"""The MyQ X backend: the generic API's calls translated into MyQ X's REST API. Sources and the points
where MyQ's public documentation stops: docs/backends/myq.md.

- the application's token: OAuth2 client credentials (`POST /api/auth/token`, JSON body), kept until
  shortly before `expires_in`;
- login: the `login_info` grant of the same endpoint (type 1 card, 2 PIN, 3 user name and password,
  4 card and PIN, 5 card and password); a token means the credential is valid. The user is then
  found with `GET /v3/users/find` (by card, also for types 4 and 5, or by user name) with the
  application's token; for a PIN alone, which `find` cannot search by, with
  the user's own token at `GET /v3/users/current` (an assumption: see the doc);
- revocations: users MyQ lists as inactive (`GET /v3/users/find?isActive=0`) or no longer lists
  (`GET /v3/users`, compared with the last listing) lose their offline login;
- what the public API does not offer is said, not faked: no credential export (offline logins come
  only from online logins at this device) and no accounting import (records stay local, exportable
  with `spooler stats --csv`).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from twisted.internet.defer import Deferred, inlineCallbacks, succeed

from spooler.central.base import Capabilities, Unsupported
from spooler.centralapi import CentralApiDown, CentralApiRefused, Deadline, http_request, iso_time, json_answer

CAPABILITIES = Capabilities(
    login_methods=frozenset({"card", "pin", "password", "card+pin", "card+password"}),
    credential_presync=False,
    revocation_feed=True,
    accounting_import="none",
    health=False,
    limits=("no credential pre-sync: the public API exports no card or PIN, so offline logins come only from "
            "earlier online logins at this device",
            "no accounting import in the public API: records stay local (spooler stats --csv exports them)",
            "no health endpoint: the client-credentials token request stands in"),
)  # fmt: skip

#: login_info "type" per login method and its properties, each taken from a field of the login's body
#: (MyQ X REST API, "Authentication methods", 2.1.1 to 2.1.5).
LOGIN_INFO: dict[str, tuple[int, dict[str, str]]] = {
    "card": (1, {"card": "secret"}),
    "pin": (2, {"pin": "secret"}),
    "password": (3, {"user": "user", "pwd": "secret"}),
    "card+pin": (4, {"card": "card", "pin": "secret"}),
    "card+password": (5, {"card": "card", "pwd": "secret"}),
}
TOKEN = Deadline(2.0, 5.0)
LIST = Deadline(5.0, 15.0)
MAX_USERS = 1000


class MyQBackend:
    kind = "myq"
    capabilities = CAPABILITIES

    def __init__(self, reactor: Any, base_url: str, *, client_id: str, client_secret: str, scope: str,
                 device: str) -> None:  # fmt: skip
        self._reactor = reactor
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._client_id = client_id
        self._secret = client_secret
        self._scope = scope
        self._device = device
        self._token: tuple[str, float] | None = None  # the application's token, until when
        self._listed: set[str] | None = None
        self._inactive: set[str] = set()  # reported inactive already (a revocation is sent once)

    # -- HTTP -------------------------------------------------------------------------------------------

    @inlineCallbacks
    def _json(self, method: str, path: str, body: Any = None, *, token: str | None, deadline: Deadline,
              query: dict[str, Any] | None = None) -> Any:  # fmt: skip
        headers = {b"Accept": [b"application/json"]}
        if token is not None:
            headers[b"Authorization"] = [b"Bearer " + token.encode()]
        encoded = None
        if body is not None:
            headers[b"Content-Type"] = [b"application/json"]
            encoded = json.dumps(body).encode()
        url = self.base_url + path + ("?" + urlencode(query) if query else "")
        code, data = yield http_request(self._reactor, method, url, headers, encoded, deadline=deadline,
                                        what=f"{method} /{path}")  # fmt: skip
        return json_answer(f"{method} /{path}", code, data)

    def _grant(self, grant: dict[str, Any], deadline: Deadline) -> Deferred[Any]:
        body = {"scope": self._scope, "client_id": self._client_id, "client_secret": self._secret} | grant
        return self._json("POST", "api/auth/token", body, token=None, deadline=deadline)

    @inlineCallbacks
    def app_token(self) -> Any:
        """The application's access token (client credentials), asked for again shortly before it expires."""
        now = self._reactor.seconds()
        if self._token is not None and self._token[1] > now:
            return self._token[0]
        answer = yield self._grant({"grant_type": "client_credentials"}, TOKEN)
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise CentralApiDown("POST /api/auth/token: no access_token in the answer")
        lifetime = answer.get("expires_in") if isinstance(answer.get("expires_in"), int) else 300
        self._token = (token, now + max(0, lifetime - 30))
        return token

    @inlineCallbacks
    def _app(self, method: str, path: str, *, deadline: Deadline, query: dict[str, Any] | None = None) -> Any:
        token = yield self.app_token()
        try:
            answer = yield self._json(method, path, token=token, deadline=deadline, query=query)
        except CentralApiRefused as refused:
            if refused.status != 401:
                raise
            self._token = None  # revoked or expired early: one new token, one more try
            token = yield self.app_token()
            answer = yield self._json(method, path, token=token, deadline=deadline, query=query)
        return answer

    # -- the generic API's calls ----------------------------------------------------------------------

    def call(self, method: str, path: str | tuple[str, ...], body: Any = None, *, deadline: Deadline,
             query: dict[str, str] | None = None) -> Deferred[Any]:  # fmt: skip
        if method == "POST" and path == "login":
            return self._login(body, deadline)
        if method == "GET" and isinstance(path, tuple) and len(path) == 3 and path[0] == "devices":
            return self._users()
        if method == "GET" and path == "revocations":
            return self._revocations()
        if method == "GET" and path == "health":
            return self._health()
        if method == "POST" and path == "accounting":
            raise Unsupported("MyQ X's public API has no accounting import: records stay local")
        raise Unsupported(f"MyQ X has no equivalent of {method} {path}")

    def _now(self) -> str:
        return str(iso_time(self._reactor.seconds()))

    @staticmethod
    def login_info(body: dict[str, Any]) -> dict[str, Any]:
        """The `login_info` object of a login (the documented properties of its type); Unsupported if none."""
        method = body.get("method")
        if method not in LOGIN_INFO:
            raise Unsupported(f"MyQ X has no login type for {method}")
        login_type, properties = LOGIN_INFO[method]
        return {"type": login_type} | {name: str(body.get(field) or "") for name, field in properties.items()}

    @inlineCallbacks
    def _login(self, body: dict[str, Any], deadline: Deadline) -> Any:
        info = self.login_info(body)
        method, user = body["method"], body.get("user")
        try:
            granted = yield self._grant({"grant_type": "login_info", "login_info": info}, deadline)
        except CentralApiRefused as refused:
            if refused.status in (400, 401):  # OAuth: invalid_grant is a 400
                raise CentralApiRefused(401, "invalid credentials") from None
            raise
        user_token = granted.get("access_token") if isinstance(granted, dict) else None
        if not isinstance(user_token, str) or not user_token:
            raise CentralApiDown("POST /api/auth/token (login_info): no access_token in the answer")
        if method == "pin":
            found = yield self._json("GET", "v3/users/current", token=user_token, deadline=deadline)
            record = found
        else:
            query = {"username": user} if method == "password" else {"card": info["card"]}
            found = yield self._app("GET", "v3/users/find", deadline=deadline, query=query)
            users = found.get("users") if isinstance(found, dict) else None
            record = users[0] if isinstance(users, list) and len(users) == 1 else None
        if not isinstance(record, dict) or not record.get("username"):
            raise CentralApiDown("MyQ accepted the login but the user could not be read back")
        return {"user": {"name": str(record["username"]), "full_name": str(record.get("fullname") or ""),
                         "email": str(record.get("email") or ""), "groups": [], "credit": None},
                "method": method, "credential": method, "server_time": self._now()}  # fmt: skip

    def _users(self) -> Deferred[Any]:
        # No credential export in the public API: nothing to pre-load; the revocations follow.
        return succeed({"device": self._device, "users": [], "truncated": False, "server_time": self._now(),
                        "unsupported": "credential pre-sync"})  # fmt: skip

    @inlineCallbacks
    def _names(self, query: dict[str, Any], path: str = "v3/users") -> Any:
        names: list[str] = []
        start = 0
        while len(names) < MAX_USERS:
            answer = yield self._app("GET", path, deadline=LIST, query=query | {"limit": 100, "start": start})
            page = answer.get("users") if isinstance(answer, dict) else None
            if not isinstance(page, list):
                raise CentralApiDown(f"GET /{path}: no \"users\" list in the answer")
            names += [str(u["username"]) for u in page if isinstance(u, dict) and u.get("username")]
            if len(page) < 100:
                return names
            start += 100
        return names

    @inlineCallbacks
    def _revocations(self) -> Any:
        revoked_at = str(iso_time(self._reactor.seconds() - 0.001))
        listed = set((yield self._names({})))
        inactive = set((yield self._names({"isActive": 0}, "v3/users/find")))
        gone = (self._listed - listed) if self._listed is not None else set()
        newly_inactive, self._listed, self._inactive = inactive - self._inactive, listed, inactive
        found = [{"user": name, "kind": "user", "credential": None, "revoked_at": revoked_at}
                 for name in sorted(gone | newly_inactive)]  # fmt: skip
        return {"revocations": found, "server_time": self._now()}

    @inlineCallbacks
    def _health(self) -> Any:
        self._token = None  # a fresh token request is the health check
        yield self.app_token()
        return {"status": "ok", "server_time": self._now(), "source": "POST /api/auth/token"}
