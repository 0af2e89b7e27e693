"""The central HTTP JSON API (`/api/v1/...`, documented in docs/central-api.md) and the control API
of the reference server (served on DIR/control.sock, working in every failure mode)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from spooler import __version__
from spooler.refserver.modes import ModeController
from spooler.refserver.store import CentralStore, iso, parse_iso
from spooler.refserver.users import MAX_USERS_PER_DEVICE, METHODS, REVOCATION_KINDS, Credential, User, UserDirectory

log = Logger(namespace="spooler.refserver.api")

API_VERSION = 1
MAX_BODY = 10 * 1024 * 1024
MAX_RECORDS_PER_UPLOAD = 1000
MAX_RECORD_ID = 200
MAX_SECRET = 256


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class CentralApi:
    """What the endpoints do, without HTTP: users, logins, revocations and accounting."""

    def __init__(self, directory: UserDirectory, store: CentralStore, clock: IReactorTime,
                 file_revocations: list[dict[str, Any]] | None = None) -> None:  # fmt: skip
        self.directory = directory
        self.store = store
        self.clock = clock
        for index, entry in enumerate(file_revocations or []):
            user, kind, credential = _revocation_fields(entry, f"revocations[{index}]")
            try:
                at = parse_iso(entry["revoked_at"]) if entry.get("revoked_at") else clock.seconds()
            except (TypeError, ValueError):
                raise ValueError(f"revocations[{index}]: \"revoked_at\" is not an ISO 8601 time") from None
            store.add_revocation(user, kind, credential, at)

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "server_time": iso(self.clock.seconds()), "api_version": API_VERSION,
                "version": __version__}  # fmt: skip

    def _revoked(self, user: User, credential: Credential | None = None) -> bool:
        for entry in self.store.revocations():
            if entry["user"] != user.name:
                continue
            if entry["kind"] == "user":
                return True
            if credential is not None and entry["kind"] == credential.kind \
                    and entry["credential"] in (None, credential.id):
                return True
        return False

    def login(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "expected a JSON object")
        device, method, secret, user = body.get("device"), body.get("method"), body.get("secret"), body.get("user")
        if not isinstance(device, str) or not device:
            raise ApiError(400, "\"device\" must be a non-empty text")
        if method not in METHODS:
            raise ApiError(400, f"\"method\" must be one of {', '.join(METHODS)}")
        if not isinstance(secret, str) or not secret or len(secret) > MAX_SECRET:
            raise ApiError(400, f"\"secret\" must be a text of 1 to {MAX_SECRET} characters")
        if user is not None and (not isinstance(user, str) or not user):
            raise ApiError(400, "\"user\", when given, must be a non-empty text")
        if method == "password" and user is None:
            raise ApiError(400, "a password login needs \"user\"")
        for owner, credential in self.directory.candidates(method, secret, user):
            if owner.allowed_on(device) and not self._revoked(owner, credential):
                log.info("Login of {user} on {device} by {method}: accepted", refserver_event="login_ok",
                         user=owner.name, device=device, method=method)  # fmt: skip
                return {"user": owner.profile(), "method": method, "credential": credential.id,
                        "server_time": iso(self.clock.seconds())}  # fmt: skip
        log.info("Login on {device} by {method}: refused", refserver_event="login_refused", device=device,
                 method=method, user=user)  # fmt: skip
        raise ApiError(401, "invalid credentials")

    def users(self, device: str) -> dict[str, Any]:
        if not device:
            raise ApiError(404, "no such device")
        eligible = [user for user in self.directory.for_device(device) if not self._revoked(user)]
        listed = []
        for user in eligible[:MAX_USERS_PER_DEVICE]:
            live = [c for c in user.credentials if not self._revoked(user, c)]
            password = next((c for c in live if c.kind == "password"), None)
            listed.append(dict(user.profile(),
                               cards=[c.as_dict() for c in live if c.kind == "card"],
                               pins=[c.as_dict() for c in live if c.kind == "pin"],
                               password=password.as_dict() if password else None))  # fmt: skip
        return {"device": device, "users": listed, "truncated": len(eligible) > MAX_USERS_PER_DEVICE,
                "total": len(eligible),
                "server_time": iso(self.clock.seconds())}  # fmt: skip

    def revocations(self, since: str | None) -> dict[str, Any]:
        now = self.clock.seconds()
        threshold = float("-inf")
        if since:
            try:
                threshold = parse_iso(since)
            except ValueError:
                raise ApiError(400, "\"since\" must be an ISO 8601 time such as 2026-11-25T00:00:00Z") from None
        found = [_public(entry) for entry in self.store.revocations() if entry["_at"] >= threshold]
        return {"revocations": found, "server_time": iso(now)}

    def revoke(self, body: Any) -> dict[str, Any]:
        """Control API: revoke a user or one of their credentials now."""
        if not isinstance(body, dict):
            raise ApiError(400, "expected a JSON object")
        try:
            user, kind, credential = _revocation_fields(body, "revocation")
        except ValueError as error:
            raise ApiError(400, str(error)) from None
        entry = self.store.add_revocation(user, kind, credential, self.clock.seconds())
        log.info("Revoked {kind} {credential} of {user}", refserver_event="revoked", user=user, kind=kind,
                 credential=credential)  # fmt: skip
        return _public(entry)

    def upload_accounting(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise ApiError(400, "expected {\"records\": [...]}")
        records = body["records"]
        if len(records) > MAX_RECORDS_PER_UPLOAD:
            raise ApiError(413, f"at most {MAX_RECORDS_PER_UPLOAD} records per upload")
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise ApiError(400, f"records[{index}] is not an object")
            record_id = record.get("record_id")
            if not isinstance(record_id, str) or not record_id or len(record_id) > MAX_RECORD_ID:
                raise ApiError(400, f"records[{index}].record_id must be a text of 1 to {MAX_RECORD_ID} characters")
        accepted, duplicates = self.store.add_records(records, self.clock.seconds())
        log.info("Accounting upload: {accepted} accepted, {duplicates} duplicates",
                 refserver_event="accounting_received", accepted=accepted, duplicates=duplicates)  # fmt: skip
        return {"accepted": accepted, "duplicates": duplicates}

    def accounting(self) -> dict[str, Any]:
        return {"records": self.store.records()}


def _revocation_fields(entry: Any, where: str) -> tuple[str, str, str | None]:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object")
    user, kind, credential = entry.get("user"), entry.get("kind", "user"), entry.get("credential")
    if not isinstance(user, str) or not user:
        raise ValueError(f"{where}: \"user\" must be a non-empty text")
    if kind not in REVOCATION_KINDS:
        raise ValueError(f"{where}: \"kind\" must be one of {', '.join(REVOCATION_KINDS)}")
    if credential is not None and (not isinstance(credential, str) or not credential):
        raise ValueError(f"{where}: \"credential\", when given, must be a credential id such as \"card-1\"")
    return user, kind, credential


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if not key.startswith("_")}


# -- HTTP ------------------------------------------------------------------------------------------


def write_json(request: Request, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, ensure_ascii=False).encode("utf-8") + b"\n"


def read_json(request: Request) -> Any:
    assert request.content is not None
    data = request.content.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise ApiError(413, "request body too large")
    try:
        return json.loads(data or b"null")
    except ValueError:
        raise ApiError(400, "the request body is not JSON") from None


Route = Callable[[Request, list[str]], Any]


class JsonResource(Resource):
    """A leaf that routes `METHOD /segments...` to handlers returning JSON (or raising ApiError)."""

    isLeaf = True
    prefix: tuple[bytes, ...] = ()

    def routes(self, method: str, segments: list[str]) -> Callable[[Request], Any] | None:
        raise NotImplementedError

    def render(self, request: Request) -> bytes | int:
        path = [unquote(part.decode("utf-8", "replace")) for part in request.path.split(b"/") if part]
        prefix = [part.decode() for part in self.prefix]
        if path[: len(prefix)] != prefix:
            return write_json(request, 404, {"error": "not found"})
        method = request.method.decode("ascii", "replace")
        try:
            early = self.before(request)
            if early is not None:
                return early
            handler = self.routes(method, path[len(prefix) :])
            if handler is None:
                return write_json(request, 404, {"error": "not found"})
            return write_json(request, 200, handler(request))
        except ApiError as error:
            return write_json(request, error.status, {"error": str(error)})
        except Exception:
            log.failure("API request {method} {path} failed", Failure(), method=method, path=request.path.decode())
            return write_json(request, 500, {"error": "internal error"})

    def before(self, request: Request) -> bytes | None:
        return None


class ApiResource(JsonResource):
    """`/api/v1/...`: the central server's API, answering 503 in error mode."""

    prefix = (b"api", b"v1")

    def __init__(self, api: CentralApi, controller: ModeController) -> None:
        super().__init__()
        self.api = api
        self.controller = controller

    def before(self, request: Request) -> bytes | None:
        if self.controller.mode == "error":
            request.setHeader(b"retry-after", b"5")
            return write_json(request, 503, {"error": "service unavailable (reference server in error mode)"})
        return None

    def routes(self, method: str, segments: list[str]) -> Callable[[Request], Any] | None:
        api = self.api
        match method, segments:
            case "GET", ["health"]:
                return lambda request: api.health()
            case "POST", ["login"]:
                return lambda request: api.login(read_json(request))
            case "GET", ["devices", device, "users"]:
                return lambda request: api.users(device)
            case "GET", ["revocations"]:
                return lambda request: api.revocations(_query(request, "since"))
            case "POST", ["accounting"]:
                return lambda request: api.upload_accounting(read_json(request))
            case "GET", ["accounting"]:
                return lambda request: api.accounting()
        return None


def _query(request: Request, name: str) -> str | None:
    args: dict[bytes, list[bytes]] = request.args or {}
    values = args.get(name.encode())
    return values[0].decode("utf-8", "replace") if values else None


class ControlResource(JsonResource):
    """`/v1/status`, `POST /v1/mode` {"mode", "delay"}, `POST /v1/revocations` {"user", "kind", "credential"}."""

    prefix = (b"v1",)

    def __init__(self, controller: ModeController, status: Callable[[], dict[str, Any]], api: CentralApi) -> None:
        super().__init__()
        self.controller = controller
        self.status = status
        self.api = api

    def routes(self, method: str, segments: list[str]) -> Callable[[Request], Any] | None:
        match method, segments:
            case "GET", ["status"]:
                return lambda request: self.status()
            case "POST", ["revocations"]:
                return lambda request: self.api.revoke(read_json(request))
        return None

    def render(self, request: Request) -> bytes | int:
        if request.method == b"POST" and request.path == b"/v1/mode":
            return self._set_mode(request)
        return super().render(request)

    def _set_mode(self, request: Request) -> bytes | int:
        try:
            body = read_json(request)
            if not isinstance(body, dict):
                raise ApiError(400, "expected {\"mode\": ..., \"delay\": ...}")
            changed: Deferred[None] = self.controller.set(body.get("mode"), body.get("delay"))  # type: ignore[arg-type]
        except ApiError as error:
            return write_json(request, error.status, {"error": str(error)})
        except ValueError as error:
            return write_json(request, 400, {"error": str(error)})

        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def done(_: object) -> None:
            if not gone:
                request.write(write_json(request, 200, self.status()))
                request.finish()

        def failed(failure: Failure) -> None:
            log.failure("Switching the failure mode failed", failure)
            if not gone:
                request.write(write_json(request, 500, {"error": f"the mode changed, but: {failure.getErrorMessage()}",
                                                        "status": self.status()}))  # fmt: skip
                request.finish()

        changed.addCallbacks(done, failed)
        return NOT_DONE_YET


class QuietSite(Site):
    noisy = False

    def log(self, request: object) -> None:
        pass


def build_api_site(api: CentralApi, controller: ModeController) -> Site:
    site = QuietSite(ApiResource(api, controller))
    site.displayTracebacks = False
    return site


def build_control_site(controller: ModeController, status: Callable[[], dict[str, Any]], api: CentralApi) -> Site:
    site = QuietSite(ControlResource(controller, status, api))
    site.displayTracebacks = False
    return site
