"""The PaperCut NG/MF backend: the generic API's calls translated into PaperCut's XML-RPC web services
API (`/rpc/api/xmlrpc`, the auth token as every call's first argument) and its System Health API
(`/api/health/status`, the key in the `Authorization` header). Sources: docs/backends/papercut.md.

- login: card or ID number only (`api.lookUpUserNameByCardNo`, then `api.lookUpUserNameByIDNo`);
  PaperCut's API has no call that checks a PIN or a password, so those are `Unsupported`;
- user sync: `api.listUserAccounts` and `api.getUserProperties` (primary/secondary card numbers);
  PaperCut gives card numbers, not verifiers: this spooler makes the verifiers itself, off the
  reactor thread, and the numbers never leave memory;
- revocations: by comparing this sync's snapshot with the last one (users gone or with
  `disabled-print`, cards removed or changed);
- accounting: `api.processJob`, one record per call, the record id in `comment`. processJob is not
  idempotent: a call whose answer was lost raises CentralApiInDoubt and the outbox keeps the record
  "in doubt" for an admin to reconcile instead of sending it again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import xmlrpc.client
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.logger import Logger

from spooler.central.base import Capabilities, Unsupported
from spooler.centralapi import (CentralApiDown, CentralApiInDoubt, CentralApiRefused, Deadline,
                                http_request, iso_time, json_answer)  # fmt: skip
from spooler.verifiers import make_verifier

log = Logger(namespace="spooler.central.papercut")

CAPABILITIES = Capabilities(
    login_methods=frozenset({"card"}),
    credential_presync=True,
    revocation_feed=True,
    accounting_import="not idempotent",
    health=True,
    limits=("cannot check a PIN, a password, or a card with a PIN or password (its web services API has no such "
            "call): card and ID-number logins only",
            "api.processJob is not idempotent: an upload whose answer was lost stays 'in doubt' for reconciliation",
            "revocations are found by comparing user lists: changes made while this spooler was stopped are seen "
            "only for users it has listed since it started"),
)  # fmt: skip

#: The user properties read for a login or a sync (api.getUserProperties), in this order.
PROPERTIES = ("full-name", "email", "primary-card-number", "secondary-card-number", "disabled-print", "balance")
MAX_USERS = 100
#: Per XML-RPC call of a sync (one listing, one call per user).
SYNC_CALL = Deadline(5.0, 15.0)


# -- api.processJob's job details (pure) ----------------------------------------------------------------


def _pair(name: str, value: str) -> str:
    """One name=value field: quotes doubled, the pair quoted when it holds a comma (the manual's rule)."""
    text = f"{name}={value}".replace('"', '""')
    return f'"{text}"' if "," in text else text


def job_details(record: dict[str, Any], *, server: str, printer: str) -> str:
    """The job-details string of api.processJob for one accounting record (docs/backends/papercut.md)."""
    printed = record.get("printed_at") or record.get("finished_at")
    fields: list[tuple[str, Any]] = [("user", record.get("user") or "unknown"), ("server", server), ("printer", printer)]
    if isinstance(printed, str):
        from datetime import datetime, timezone

        moment = datetime.fromisoformat(printed.replace("Z", "+00:00")).astimezone(timezone.utc)
        fields.append(("time", moment.strftime("%Y%m%dT%H%M%S")))
    impressions, color = record.get("impressions"), record.get("color_pages")
    if isinstance(impressions, int):
        fields.append(("total-pages", impressions))
    if isinstance(color, int):
        fields.append(("total-color-pages", color))
        fields.append(("grayscale", "FALSE" if color else "TRUE"))
    if isinstance(record.get("copies"), int):
        fields.append(("copies", record["copies"]))
    if record.get("job_name"):
        fields.append(("document-name", str(record["job_name"])[:255]))
    if isinstance(record.get("duplex"), bool):
        fields.append(("duplex", "TRUE" if record["duplex"] else "FALSE"))
    if isinstance(record.get("bytes"), int):
        fields.append(("document-size-kb", max(1, record["bytes"] // 1024)))
    fields.append(("comment", f"branch-spooler record {record.get('record_id')}"))
    return ",".join(_pair(name, _clean(str(value))) for name, value in fields)


def _clean(text: str) -> str:
    return "".join(c for c in text if c >= " ")[:255]


# -- the backend ----------------------------------------------------------------------------------------------


class PaperCutBackend:
    kind = "papercut"
    capabilities = CAPABILITIES

    def __init__(self, reactor: Any, base_url: str, *, auth_token: str, health_key: str | None, device: str,
                 server_name: str | None, printer_name: str | None,
                 run_in_thread: Callable[..., Deferred[Any]]) -> None:  # fmt: skip
        self._reactor = reactor
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.rpc_url = self.base_url + "rpc/api/xmlrpc"
        self.health_url = self.base_url + "api/health/status"
        self._token = auth_token
        self._health_key = health_key
        self._device = device
        self._server_name = server_name or device
        self._printer_name = printer_name or device
        self._run = run_in_thread
        self._snapshot_key = os.urandom(32)  # card digests of the last sync: in memory only
        self._snapshot: dict[str, dict[str, bytes]] | None = None
        self._pending_revocations: list[dict[str, Any]] = []

    # -- XML-RPC --------------------------------------------------------------------------------

    @inlineCallbacks
    def rpc(self, method: str, *params: Any, deadline: Deadline) -> Any:
        """One XML-RPC call with the auth token first; a fault is CentralApiRefused(400, faultString)."""
        body = xmlrpc.client.dumps((self._token, *params), method, encoding="utf-8").encode("utf-8")
        code, data = yield http_request(self._reactor, "POST", self.rpc_url, {b"Content-Type": [b"text/xml"]}, body,
                                        deadline=deadline, what=method)  # fmt: skip
        if code == 503:
            raise CentralApiDown(f"{method}: 503 service unavailable")  # refused before it was processed
        if code >= 500:
            raise CentralApiInDoubt(f"{method}: HTTP {code}")
        if code != 200:
            raise CentralApiRefused(code, f"{method}: HTTP {code}")
        try:
            (result,), _ = xmlrpc.client.loads(data, use_builtin_types=True)
        except xmlrpc.client.Fault as fault:
            raise CentralApiRefused(400, f"{method}: {str(fault.faultString)[:200]}") from None
        except Exception:  # noqa: BLE001 - not XML-RPC: not PaperCut, or cut off
            raise CentralApiDown(f"{method}: the answer is not an XML-RPC response") from None
        return result

    # -- the generic API's calls ------------------------------------------------------------------

    def call(self, method: str, path: str | tuple[str, ...], body: Any = None, *, deadline: Deadline,
             query: dict[str, str] | None = None) -> Deferred[Any]:  # fmt: skip
        if method == "POST" and path == "login":
            return self._within(self._login(body), deadline)
        if method == "GET" and isinstance(path, tuple) and len(path) == 3 and path[0] == "devices":
            return self._users()
        if method == "GET" and path == "revocations":
            return self._revocations()
        if method == "POST" and path == "accounting":
            return self._accounting(body, deadline)
        if method == "GET" and path == "health":
            return self._health(deadline)
        raise Unsupported(f"PaperCut has no equivalent of {method} {path}")

    def _within(self, work: Deferred[Any], deadline: Deadline) -> Deferred[Any]:
        def late(failure: Any) -> Any:
            from twisted.internet.defer import TimeoutError as DeferredTimeout

            if failure.check(DeferredTimeout):
                raise CentralApiDown(f"no answer within {deadline.total:.0f}s")
            return failure

        return work.addTimeout(deadline.total, self._reactor).addErrback(late)

    def _now(self) -> str:
        return str(iso_time(self._reactor.seconds()))

    @inlineCallbacks
    def _properties(self, user: str, deadline: Deadline) -> Any:
        values = yield self.rpc("api.getUserProperties", user, list(PROPERTIES), deadline=deadline)
        if not isinstance(values, list) or len(values) != len(PROPERTIES):
            raise CentralApiDown("api.getUserProperties: the answer is not one value per property")
        return dict(zip(PROPERTIES, (str(v) for v in values)))

    @inlineCallbacks
    def _login(self, body: dict[str, Any]) -> Any:
        method, secret = body.get("method"), str(body.get("secret") or "")
        if method != "card":
            raise Unsupported(f"PaperCut cannot check a {method} (its web services API has no such call)")
        deadline = Deadline(2.0, 5.0)
        name = yield self.rpc("api.lookUpUserNameByCardNo", secret, deadline=deadline)
        if not name:  # an ID number typed at the keypad shares the card/ID field
            name = yield self.rpc("api.lookUpUserNameByIDNo", secret, deadline=deadline)
        if not isinstance(name, str) or not name:
            raise CentralApiRefused(401, "invalid credentials")
        props = yield self._properties(name, deadline)
        if props["disabled-print"].lower() == "true":
            raise CentralApiRefused(401, "invalid credentials")
        credential = ("card-1" if secret == props["primary-card-number"] else
                      "card-2" if secret == props["secondary-card-number"] else "card-id")  # fmt: skip
        try:
            credit: float | None = float(props["balance"])
        except ValueError:
            credit = None
        return {"user": {"name": name, "full_name": props["full-name"], "email": props["email"], "groups": [],
                         "credit": credit},
                "method": "card", "credential": credential, "server_time": self._now()}  # fmt: skip

    @inlineCallbacks
    def _users(self) -> Any:
        names = yield self.rpc("api.listUserAccounts", 0, MAX_USERS + 1, deadline=SYNC_CALL)
        if not isinstance(names, list):
            raise CentralApiDown("api.listUserAccounts: the answer is not a list")
        now = self._now()
        snapshot: dict[str, dict[str, bytes]] = {}
        disabled: set[str] = set()
        users = []
        for name in [str(n) for n in names[:MAX_USERS]]:
            props = yield self._properties(name, SYNC_CALL)
            if props["disabled-print"].lower() == "true":
                disabled.add(name)
                continue
            cards = [(cid, props[key]) for cid, key in (("card-1", "primary-card-number"),
                                                         ("card-2", "secondary-card-number")) if props[key]]  # fmt: skip
            snapshot[name] = {cid: self._digest(number) for cid, number in cards}
            verifiers = yield gatherResults([self._run(make_verifier, number) for _, number in cards],
                                            consumeErrors=True)  # fmt: skip
            users.append({"name": name, "full_name": props["full-name"], "email": props["email"], "groups": [],
                          "cards": [{"id": cid, "verifier": v} for (cid, _), v in zip(cards, verifiers)],
                          "pins": [], "password": None})  # fmt: skip
        self._pending_revocations += self._compare(snapshot, disabled)
        self._snapshot = snapshot
        return {"device": self._device, "users": users, "truncated": len(names) > MAX_USERS, "server_time": now}

    def _digest(self, number: str) -> bytes:
        return hmac.new(self._snapshot_key, number.encode(), hashlib.sha256).digest()

    def _compare(self, snapshot: dict[str, dict[str, bytes]], disabled: set[str]) -> list[dict[str, Any]]:
        """Revocations from the last snapshot to this one (the first sync knows only the disabled users)."""
        # Just before this sync's time: what it lists now (verified at its time) is not covered.
        revoked_at = str(iso_time(self._reactor.seconds() - 0.001))
        previous = self._snapshot
        found = [{"user": name, "kind": "user", "credential": None, "revoked_at": revoked_at}
                 for name in sorted(disabled) if previous is None or name in previous]  # fmt: skip
        for name, cards in sorted((previous or {}).items()):
            if name in disabled:
                continue
            if name not in snapshot:
                found.append({"user": name, "kind": "user", "credential": None, "revoked_at": revoked_at})
                continue
            for cid, digest in cards.items():
                if snapshot[name].get(cid) != digest:
                    found.append({"user": name, "kind": "card", "credential": cid, "revoked_at": revoked_at})
        return found

    def _revocations(self) -> Deferred[Any]:
        found, self._pending_revocations = self._pending_revocations, []
        return succeed({"revocations": found, "server_time": self._now()})

    @inlineCallbacks
    def _accounting(self, body: Any, deadline: Deadline) -> Any:
        records = json.loads(body)["records"] if isinstance(body, bytes) else body["records"]
        if len(records) != 1:
            # One call per record: a batch cut off half way could not tell which ones were imported.
            raise CentralApiRefused(413, "PaperCut imports one job per api.processJob call")
        details = job_details(records[0], server=self._server_name, printer=self._printer_name)
        try:
            yield self.rpc("api.processJob", details, deadline=deadline)
        except CentralApiRefused as refused:
            if refused.status == 400:  # a fault: PaperCut refused this job (unknown user, ...)
                raise CentralApiRefused(400, f"records[0]: {refused.message}") from None
            raise
        return {"accepted": 1, "duplicates": 0}

    @inlineCallbacks
    def _health(self, deadline: Deadline) -> Any:
        if self._health_key is None:  # no key configured: one cheap read call stands in
            yield self.rpc("api.listUserAccounts", 0, 1, deadline=deadline)
            return {"status": "ok", "server_time": self._now(), "source": "api.listUserAccounts"}
        code, data = yield http_request(self._reactor, "GET", self.health_url,
                                        {b"Authorization": [self._health_key.encode()]}, None, deadline=deadline,
                                        what="GET /api/health/status")  # fmt: skip
        if code == 500:
            detail = _health_message(data)
            raise CentralApiDown(f"PaperCut system health: {detail}")
        answer = json_answer("GET /api/health/status", code, data)
        if not isinstance(answer, dict) or str(answer.get("status", "")).upper() != "OK":
            raise CentralApiDown(f"PaperCut system health: {str(answer)[:200]}")
        return {"status": "ok", "server_time": self._now(), "source": "/api/health/status"}


def _health_message(data: bytes) -> str:
    try:
        answer = json.loads(data)
        return str(answer.get("message") or answer.get("status"))[:200]
    except (ValueError, AttributeError):
        return "500"

