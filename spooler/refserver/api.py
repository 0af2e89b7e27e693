"""The central HTTP JSON API (`/api/v1/...`, documented in docs/central-api.md) and the control API
of the reference server (served on DIR/control.sock, working in every failure mode)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from spooler import __version__
from spooler.refserver.modes import ModeController
from spooler.refserver.store import CentralStore, iso, parse_iso
from spooler.refserver.users import MAX_USERS_PER_DEVICE, METHODS, REVOCATION_KINDS, Credential, User, UserDirectory
from spooler.signing import GRANT, REVOCATION, as_json, public_key_text, sign
from spooler.web import ApiError, HttpLimits, JsonResource, LimitedSite, read_json

__all__ = ["ApiError", "CentralApi", "build_api_site", "build_control_site"]

log = Logger(namespace="spooler.refserver.api")

API_VERSION = 1
MAX_BODY = 10 * 1024 * 1024
MAX_RECORDS_PER_UPLOAD = 1000
MAX_RECORD_ID = 200
MAX_SECRET = 256
#: How long a signed login grant lets spoolers accept the login offline (and from each other), at most.
DEFAULT_GRANT_VALIDITY = 30 * 86400.0


class CentralApi:
    """What the endpoints do, without HTTP: users, logins, revocations and accounting. With a `signer`,
    login answers carry a signed grant and revocations a signature (docs/central-api.md, "Signatures")."""

    def __init__(self, directory: UserDirectory, store: CentralStore, clock: IReactorTime,
                 file_revocations: list[dict[str, Any]] | None = None, *, signer: Ed25519PrivateKey | None = None,
                 grant_validity: float = DEFAULT_GRANT_VALIDITY) -> None:  # fmt: skip
        self.directory = directory
        self.store = store
        self.clock = clock
        self.signer = signer
        self.grant_validity = grant_validity
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
            raise ApiError(400, "bad-request", "expected a JSON object")
        device, method, secret, user = body.get("device"), body.get("method"), body.get("secret"), body.get("user")
        if not isinstance(device, str) or not device:
            raise ApiError(400, "bad-request", "\"device\" must be a non-empty text")
        if method not in METHODS:
            raise ApiError(400, "bad-request", f"\"method\" must be one of {', '.join(METHODS)}")
        if not isinstance(secret, str) or not secret or len(secret) > MAX_SECRET:
            raise ApiError(400, "bad-request", f"\"secret\" must be a text of 1 to {MAX_SECRET} characters")
        if user is not None and (not isinstance(user, str) or not user):
            raise ApiError(400, "bad-request", "\"user\", when given, must be a non-empty text")
        if method == "password" and user is None:
            raise ApiError(400, "bad-request", "a password login needs \"user\"")
        for owner, credential in self.directory.candidates(method, secret, user):
            if owner.allowed_on(device) and not self._revoked(owner, credential):
                log.info("Login of {user} on {device} by {method}: accepted", refserver_event="login_ok",
                         user=owner.name, device=device, method=method)  # fmt: skip
                now = self.clock.seconds()
                answer = {"user": owner.profile(), "method": method, "credential": credential.id,
                          "devices": owner.devices or ["*"], "server_time": iso(now)}  # fmt: skip
                if self.signer is not None:
                    answer["grant"] = as_json(sign(self.signer, GRANT, {
                        "user": owner.name, "credential": credential.id, "kind": credential.kind,
                        "verifier": credential.verifier, "devices": answer["devices"], "issued_at": iso(now),
                        "expires_at": iso(now + self.grant_validity)}))  # fmt: skip
                return answer
        log.info("Login on {device} by {method}: refused", refserver_event="login_refused", device=device,
                 method=method, user=user)  # fmt: skip
        raise ApiError(401, "invalid-credentials", "invalid credentials")

    def users(self, device: str) -> dict[str, Any]:
        if not device:
            raise ApiError(404, "not-found", "no such device")
        eligible = [user for user in self.directory.for_device(device) if not self._revoked(user)]
        listed = []
        for user in eligible[:MAX_USERS_PER_DEVICE]:
            live = [c for c in user.credentials if not self._revoked(user, c)]
            password = next((c for c in live if c.kind == "password"), None)
            listed.append(dict(user.profile(), devices=user.devices or ["*"],
                               cards=[c.as_dict() for c in live if c.kind == "card"],
                               pins=[c.as_dict() for c in live if c.kind == "pin"],
                               password=password.as_dict() if password else None))  # fmt: skip
        return {"device": device, "users": listed, "truncated": len(eligible) > MAX_USERS_PER_DEVICE,
                "total": len(eligible), "lookup_kdf": self.directory.lookup_kdf,
                "server_time": iso(self.clock.seconds())}  # fmt: skip

    def revocations(self, since: str | None) -> dict[str, Any]:
        now = self.clock.seconds()
        threshold = float("-inf")
        if since:
            try:
                threshold = parse_iso(since)
            except ValueError:
                raise ApiError(400, "bad-request", "\"since\" must be an ISO 8601 time such as 2026-11-25T00:00:00Z") from None
        found = [self._signed(_public(entry)) for entry in self.store.revocations() if entry["_at"] >= threshold]
        return {"revocations": found, "server_time": iso(now)}

    def _signed(self, revocation: dict[str, Any]) -> dict[str, Any]:
        if self.signer is None:
            return revocation
        fields = {key: revocation[key] for key in ("user", "kind", "credential", "revoked_at")}
        return dict(revocation, signed=as_json(sign(self.signer, REVOCATION, fields)))

    def signing_key(self) -> dict[str, Any]:
        if self.signer is None:
            raise ApiError(404, "not-signing", "this server does not sign")
        return {"algorithm": "ed25519", "key": public_key_text(self.signer)}

    def revoke(self, body: Any) -> dict[str, Any]:
        """Control API: revoke a user or one of their credentials now."""
        if not isinstance(body, dict):
            raise ApiError(400, "bad-request", "expected a JSON object")
        try:
            user, kind, credential = _revocation_fields(body, "revocation")
        except ValueError as error:
            raise ApiError(400, "bad-request", str(error)) from None
        entry = self.store.add_revocation(user, kind, credential, self.clock.seconds())
        log.info("Revoked {kind} {credential} of {user}", refserver_event="revoked", user=user, kind=kind,
                 credential=credential)  # fmt: skip
        return _public(entry)

    def upload_accounting(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise ApiError(400, "bad-request", "expected {\"records\": [...]}")
        records = body["records"]
        if len(records) > MAX_RECORDS_PER_UPLOAD:
            raise ApiError(413, "too-large", f"at most {MAX_RECORDS_PER_UPLOAD} records per upload")
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise ApiError(400, "bad-request", f"records[{index}] is not an object")
            record_id = record.get("record_id")
            if not isinstance(record_id, str) or not record_id or len(record_id) > MAX_RECORD_ID:
                raise ApiError(400, "bad-request", f"records[{index}].record_id must be a text of 1 to {MAX_RECORD_ID} characters")
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


def read_body(request: Request) -> Any:
    """The request body as JSON (null when empty); the site refused it already if it was too large."""
    return read_json(request, object_only=False)


Route = Callable[[Request], Any]


class PrefixedResource(JsonResource):
    """A leaf that routes `METHOD /prefix/segments...` to handlers returning JSON (or raising ApiError)."""

    prefix: tuple[bytes, ...] = ()

    def routes(self, method: str, segments: list[str]) -> Route | None:
        raise NotImplementedError

    def dispatch(self, request: Request) -> Any:
        path = [unquote(part.decode("utf-8", "replace")) for part in request.path.split(b"/") if part]
        prefix = [part.decode() for part in self.prefix]
        if path[: len(prefix)] != prefix:
            raise ApiError(404, "not-found", "not found")
        self.before(request)
        handler = self.routes(request.method.decode("ascii", "replace"), path[len(prefix) :])
        if handler is None:
            raise ApiError(404, "not-found", "not found")
        return handler(request)

    def before(self, request: Request) -> None:
        """Raise ApiError to answer every request so (the error mode)."""


class ApiResource(PrefixedResource):
    """`/api/v1/...`: the central server's API, answering 503 in error mode."""

    name = "central API"
    prefix = (b"api", b"v1")

    def __init__(self, api: CentralApi, controller: ModeController) -> None:
        super().__init__()
        self.api = api
        self.controller = controller

    def before(self, request: Request) -> None:
        if self.controller.mode == "error":
            request.setHeader(b"retry-after", b"5")
            raise ApiError(503, "unavailable", "service unavailable (reference server in error mode)")

    def routes(self, method: str, segments: list[str]) -> Route | None:
        api = self.api
        match method, segments:
            case "GET", ["health"]:
                return lambda request: api.health()
            case "GET", ["signing-key"]:
                return lambda request: api.signing_key()
            case "POST", ["login"]:
                return lambda request: api.login(read_body(request))
            case "GET", ["devices", device, "users"]:
                return lambda request: api.users(device)
            case "GET", ["revocations"]:
                return lambda request: api.revocations(_query(request, "since"))
            case "POST", ["accounting"]:
                return lambda request: api.upload_accounting(read_body(request))
            case "GET", ["accounting"]:
                return lambda request: api.accounting()
        return None


def _query(request: Request, name: str) -> str | None:
    args: dict[bytes, list[bytes]] = request.args or {}
    values = args.get(name.encode())
    return values[0].decode("utf-8", "replace") if values else None


class ControlResource(PrefixedResource):
    """`/v1/status`, `POST /v1/mode` {"mode", "delay"}, `POST /v1/revocations` {"user", "kind", "credential"},
    `POST /v1/release` {"job_ids"} (the held queue's jobs)."""

    name = "refserver control"
    prefix = (b"v1",)

    def __init__(self, controller: ModeController, status: Callable[[], dict[str, Any]], api: CentralApi,
                 release: Callable[[Any], dict[str, Any]] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.controller = controller
        self.status = status
        self.api = api
        self.release = release

    def routes(self, method: str, segments: list[str]) -> Route | None:
        match method, segments:
            case "GET", ["status"]:
                return lambda request: self.status()
            case "POST", ["revocations"]:
                return lambda request: self.api.revoke(read_body(request))
            case "POST", ["release"] if self.release is not None:
                release = self.release
                return lambda request: release(read_body(request))
        return None

    def dispatch(self, request: Request) -> Any:
        if request.method == b"POST" and request.path == b"/v1/mode":
            return self._set_mode(request)
        return super().dispatch(request)

    def _set_mode(self, request: Request) -> Deferred[dict[str, Any]]:
        body = read_body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "bad-request", "expected {\"mode\": ..., \"delay\": ...}")
        try:
            changed: Deferred[None] = self.controller.set(body.get("mode"), body.get("delay"))  # type: ignore[arg-type]
        except ValueError as error:
            raise ApiError(400, "bad-request", str(error)) from None

        def failed(failure: Failure) -> Any:
            log.failure("Switching the failure mode failed", failure)
            raise ApiError(500, "internal", f"the mode changed, but: {failure.getErrorMessage()}",
                           status=self.status())  # fmt: skip

        return changed.addCallbacks(lambda _: self.status(), failed)


#: The reference server's HTTP limits: many spoolers (in tests and demos all from one address, so no
#: per-address limit).
API_LIMITS = HttpLimits(max_connections=1000, header_timeout=20.0, idle_timeout=60.0)
CONTROL_LIMITS = HttpLimits(max_connections=64, header_timeout=20.0, idle_timeout=60.0)


def build_api_site(api: CentralApi, controller: ModeController, reactor: Any) -> LimitedSite:
    return LimitedSite(ApiResource(api, controller), reactor=reactor, name="central API", limits=API_LIMITS,
                       max_body=MAX_BODY)  # fmt: skip


def build_control_site(controller: ModeController, status: Callable[[], dict[str, Any]], api: CentralApi,
                       reactor: Any, release: Callable[[Any], dict[str, Any]] | None = None) -> LimitedSite:  # fmt: skip
    return LimitedSite(ControlResource(controller, status, api, release), reactor=reactor, name="refserver control",
                       limits=CONTROL_LIMITS, max_body=MAX_BODY)  # fmt: skip
