"""systemd's service notification protocol (sd_notify): one datagram per state change to the socket
named by $NOTIFY_SOCKET (READY=1, RELOADING=1, STOPPING=1, STATUS=..., WATCHDOG=1), and the watchdog
keep-alive while the reactor runs. Without $NOTIFY_SOCKET (not under systemd) every call does nothing.

The protocol is a few lines of the standard library (see sd_notify(3)), so no dependency is added.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from twisted.application.internet import TimerService
from twisted.logger import Logger

log = Logger(namespace="spooler.systemd")


def notify_socket_address(environ: Mapping[str, str]) -> str | bytes | None:
    """The address of $NOTIFY_SOCKET: a path, or an abstract socket (leading "@" becomes NUL)."""
    name = environ.get("NOTIFY_SOCKET", "")
    if not name or not (name.startswith("/") or name.startswith("@")):
        return None
    return b"\0" + os.fsencode(name[1:]) if name.startswith("@") else name


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between keep-alives (half of $WATCHDOG_USEC), if systemd asks this process for them."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0 or (owner and owner != str(pid)):
        return None
    return int(usec) / 2_000_000


class Notifier:
    """Sends sd_notify messages; quiet and harmless when not started by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.address = notify_socket_address(os.environ if environ is None else environ)
        self.sent: list[str] = []  # every message, for the log and the tests

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: Any) -> bool:
        """One notification (`ready=1, status="..."` becomes "READY=1\\nSTATUS=..."); whether it went."""
        if self.address is None:
            return False
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sender:
                sender.sendto(message.encode("utf-8"), self.address)
        except OSError as error:
            log.warn("Cannot notify systemd at {address}: {error}", address=str(self.address), error=str(error))
            return False
        self.sent.append(message)
        return True

    def ready(self, status: str) -> bool:
        return self.send(ready=1, status=status, mainpid=os.getpid())

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd (253+) match the reload with its request; older ones ignore it.
        return self.send(reloading=1, monotonic_usec=int(time.monotonic() * 1_000_000))

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(stopping=1, status=status)

    def status(self, status: str) -> bool:
        return self.send(status=status)

    def watchdog(self, reactor: Any, environ: Mapping[str, str] | None = None) -> TimerService | None:
        """A timer that sends WATCHDOG=1 every half watchdog period while the reactor turns (a stuck
        reactor sends none, and systemd restarts the service), if systemd asks for it."""
        interval = watchdog_interval(os.environ if environ is None else environ, os.getpid())
        if interval is None or not self.enabled:
            return None
        timer = TimerService(interval, self.send, watchdog=1)
        timer.clock = reactor
        timer.setName("systemd-watchdog")
        return timer
