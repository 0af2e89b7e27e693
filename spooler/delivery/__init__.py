"""Delivery backends: how a job's data reaches a device or a server queue, chosen by URI scheme."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from twisted.internet.interfaces import IReactorTCP, IReactorTime

from spooler.delivery.base import DeliveryBackend, DeliveryReceipt
from spooler.delivery.filesink import FileSinkBackend
from spooler.delivery.socket import SocketBackend
from spooler.store.spoolfiles import RunInThread

__all__ = ["DeliveryBackend", "DeliveryReceipt", "backend_for_uri"]


def _flag(query: str, name: str) -> bool:
    values = parse_qs(query).get(name) or [""]
    return values[-1].lower() in ("1", "yes", "true", "on")


def backend_for_uri(
    uri: str, *, reactor: Any, run_in_thread: RunInThread, connect_timeout: float, io_timeout: float,
    follow_timeout: float = 300.0, poll_interval: float = 5.0, probe_timeout: float = 5.0, username: bool = False,
) -> DeliveryBackend:
    """The backend for a validated device URI (see spooler.config.validate_device_uri):

    * ``file:///folder`` -- FileSinkBackend
    * ``socket://host:port[?pjl=1]`` -- SocketBackend (raw, optionally wrapped in a PJL job)
    * ``ipp://host[:631]/path``, ``ipps://host[:631]/path`` -- IppBackend; follow_timeout and
      poll_interval say how long and how often the remote job is followed
    * ``lpd://host[:515]/queue[?banner=1]`` -- LpdBackend

    probe_timeout bounds the wait for the answer to an IPP or LPD probe (after connecting). With
    `username` (the central server's queue) a raw job always names its user in PJL.
    """
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return FileSinkBackend(Path(unquote(parts.path)), run_in_thread)
    if parts.scheme == "socket":
        assert parts.hostname is not None and parts.port is not None
        clock: IReactorTime = reactor
        tcp: IReactorTCP = reactor
        return SocketBackend(
            parts.hostname, parts.port, reactor=tcp, clock=clock,
            connect_timeout=connect_timeout, io_timeout=io_timeout, pjl=_flag(parts.query, "pjl"), username=username,
        )  # fmt: skip
    if parts.scheme in ("ipp", "ipps"):
        from spooler.delivery.ipp import IppBackend  # the HTTP client and TLS: loaded only when used

        return IppBackend(uri, reactor=reactor, clock=reactor, connect_timeout=connect_timeout, io_timeout=io_timeout,
                          follow_timeout=follow_timeout, poll_interval=poll_interval,
                          probe_timeout=probe_timeout)  # fmt: skip
    if parts.scheme == "lpd":
        from spooler.delivery.lpd import LpdBackend

        return LpdBackend(uri, reactor=reactor, clock=reactor, connect_timeout=connect_timeout, io_timeout=io_timeout,
                          probe_timeout=probe_timeout)  # fmt: skip
    raise ValueError(f"no delivery backend for {uri!r}")
