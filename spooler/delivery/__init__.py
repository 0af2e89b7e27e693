"""Delivery backends: how a job's data reaches a device or a server queue, chosen by URI scheme."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from twisted.internet.interfaces import IReactorTCP, IReactorTime

from spooler.delivery.base import DeliveryBackend, DeliveryReceipt
from spooler.delivery.filesink import FileSinkBackend
from spooler.delivery.socket import SocketBackend
from spooler.spoolfiles import RunInThread

__all__ = ["DeliveryBackend", "DeliveryReceipt", "backend_for_uri"]


def backend_for_uri(
    uri: str, *, reactor: Any, run_in_thread: RunInThread, connect_timeout: float, io_timeout: float
) -> DeliveryBackend:
    """The backend for a validated device URI (see spooler.config.validate_device_uri)."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return FileSinkBackend(Path(unquote(parts.path)), run_in_thread)
    if parts.scheme == "socket":
        assert parts.hostname is not None and parts.port is not None
        clock: IReactorTime = reactor
        tcp: IReactorTCP = reactor
        return SocketBackend(
            parts.hostname, parts.port, reactor=tcp, clock=clock,
            connect_timeout=connect_timeout, io_timeout=io_timeout,
        )  # fmt: skip
    raise ValueError(f"no delivery backend for {uri!r}")
