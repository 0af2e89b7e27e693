"""`spooler server check`: tries the configured central backend (its secrets, its health call, one
read call) and says in one screen what works and what this kind of server cannot do. Secrets are
shown masked; nothing is changed at the server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import inlineCallbacks

from spooler.central.base import SecretError, capabilities_of, mask, read_secret
from spooler.centralapi import HEALTH, REVOCATIONS, CentralApiError, Deadline
from spooler.config import Config

READ = Deadline(5.0, 15.0)


@dataclass
class Step:
    name: str
    ok: bool | None  # None: not tried (an earlier step failed, or not applicable)
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def secret_steps(config: Config) -> list[Step]:
    """Whether each secret the kind needs can be read (shown masked)."""
    server = config.server
    assert server is not None
    wanted: list[tuple[str, Any, Any]] = []
    if server.kind == "papercut":
        wanted = [("auth token", server.auth_token_file, server.auth_token_env)]
        if server.health_key_file is not None or server.health_key_env is not None:
            wanted.append(("health key", server.health_key_file, server.health_key_env))
    elif server.kind == "myq":
        wanted = [("client secret", server.client_secret_file, server.client_secret_env)]
    steps = []
    for name, file, env in wanted:
        source = f"file {file}" if file is not None else f"environment variable {env}"
        try:
            steps.append(Step(name, True, f"{mask(read_secret(name, file=file, env=env))} from {source}"))
        except SecretError as error:
            steps.append(Step(name, False, str(error)))
    return steps


@inlineCallbacks
def run_checks(config: Config, backend: Any) -> Any:
    """The steps after the secrets: health, then one read call of the kind."""
    steps = []
    try:
        answer = yield backend.call("GET", "health", deadline=HEALTH)
        steps.append(Step("health", True, f"ok ({answer.get('source', 'GET health')})"))
    except CentralApiError as error:
        steps.append(Step("health", False, str(error)))
    try:
        if backend.kind == "papercut":
            names = yield backend.rpc("api.listUserAccounts", 0, 5, deadline=READ)
            detail = f"api.listUserAccounts: {len(names)} user(s) in the first 5"
        elif backend.kind == "myq":
            listed = yield backend._app("GET", "v3/users", deadline=READ, query={"limit": 5})
            detail = f"GET /v3/users: {len(listed.get('users') or [])} user(s) in the first 5"
        else:
            answer = yield backend.call("GET", "revocations", deadline=REVOCATIONS)
            detail = f"GET revocations: {len(answer.get('revocations') or [])} revocation(s)"
        steps.append(Step("read call", True, detail))
    except CentralApiError as error:
        steps.append(Step("read call", False, str(error)))
    return steps


def render(config: Config, steps: list[Step]) -> str:
    """The one screen: what was tried, then what this kind can and cannot do."""
    server = config.server
    assert server is not None
    mark = {True: "ok  ", False: "FAIL", None: "-   "}
    lines = [f"central server  {server.kind} at {server.api_url}"]
    lines += [f"  {mark[step.ok]} {step.name:<14} {step.detail}" for step in steps]
    from spooler.central import KINDS

    capabilities = _capabilities(server.kind) if server.kind in KINDS else None
    if capabilities is not None:
        lines.append(f"logins checked online   {', '.join(sorted(capabilities.login_methods))}")
        lines.append(f"credential pre-sync     {'yes' if capabilities.credential_presync else 'no'}")
        lines.append(f"revocation feed         {'yes' if capabilities.revocation_feed else 'no'}")
        lines.append(f"accounting import       {capabilities.accounting_import}")
        lines += [f"cannot                  {limit}" for limit in capabilities.limits]
    return "\n".join(lines) + "\n"


def _capabilities(kind: str) -> Any:
    if kind == "papercut":
        from spooler.central.papercut import CAPABILITIES

        return CAPABILITIES
    if kind == "myq":
        from spooler.central.myq import CAPABILITIES as MYQ

        return MYQ
    return capabilities_of(None)
