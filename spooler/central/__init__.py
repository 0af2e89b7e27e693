"""The central server's channel, one backend per product (`[server] kind`): "generic" (the project's
own JSON API, docs/central-api.md, spooler.centralapi), "papercut" (PaperCut NG/MF's XML-RPC web
services and System Health API) and "myq" (MyQ X's REST API). `make_backend` builds the configured
one with its secrets read from the files or environment variables the configuration names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spooler.central.base import KINDS, Capabilities, CentralBackend, SecretError, capabilities_of, read_secret
from spooler.config import Config

__all__ = ["KINDS", "Capabilities", "CentralBackend", "SecretError", "capabilities_of", "make_backend"]


def make_backend(config: Config, reactor: Any, run_in_thread: Callable[..., Any]) -> CentralBackend | None:
    """The backend of `[server]`, or None without `api_url`. Raises SecretError if a secret is missing."""
    server = config.server
    if server is None or not server.api_url:
        return None
    if server.kind == "papercut":
        from spooler.central.papercut import PaperCutBackend

        token = read_secret("server.auth_token", file=server.auth_token_file, env=server.auth_token_env)
        health_key = None
        if server.health_key_file is not None or server.health_key_env is not None:
            health_key = read_secret("server.health_key", file=server.health_key_file, env=server.health_key_env)
        return PaperCutBackend(reactor, server.api_url, auth_token=token, health_key=health_key,
                               device=config.device.name, server_name=server.papercut_server,
                               printer_name=server.papercut_printer, run_in_thread=run_in_thread)  # fmt: skip
    if server.kind == "myq":
        from spooler.central.myq import MyQBackend

        secret = read_secret("server.client_secret", file=server.client_secret_file, env=server.client_secret_env)
        return MyQBackend(reactor, server.api_url, client_id=str(server.client_id), client_secret=secret,
                          scope=server.scope, device=config.device.name)  # fmt: skip
    from spooler.centralapi import CentralApi

    return CentralApi(reactor, server.api_url)
