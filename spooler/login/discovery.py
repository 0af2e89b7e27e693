"""Opt-in DNS-SD discovery of login-sharing peers ([login] discover = true): advertises this spooler's
share endpoint as `_spooler-login._tcp` and browses for the others; found peers join the sharing's
peer list (discovery only says where to ask: a found spooler is exchanged with only if its key is
enrolled, and every record it sends is checked as any peer's).
zeroconf's blocking calls run in a thread; its callbacks come back to the reactor."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

from spooler.store.spoolfiles import RunInThread

log = Logger(namespace="spooler.login.discovery")

SERVICE_TYPE = "_spooler-login._tcp.local."


def instance_name(device: str) -> str:
    return f"{device}.{SERVICE_TYPE}"


def peer_addresses(info: Any, own_name: str) -> list[str]:
    """"host:port" of a resolved service info, none for our own advertisement (pure)."""
    if info is None or info.name == own_name or not info.port:
        return []
    found = []
    for raw in info.addresses:
        try:
            address = ipaddress.ip_address(raw)
        except ValueError:
            continue
        found.append(f"[{address}]:{info.port}" if address.version == 6 else f"{address}:{info.port}")
    return found


def advertised_addresses(listener_host: str) -> list[str]:
    """The listener's own address when it is a specific one, else every non-loopback IPv4 address."""
    try:
        if not ipaddress.ip_address(listener_host).is_unspecified:
            return [listener_host]
    except ValueError:
        pass
    from zeroconf import get_all_addresses

    return [a for a in get_all_addresses() if not ipaddress.ip_address(a).is_loopback]


class PeerDiscovery(Service):
    def __init__(self, reactor: Any, device: str, listening: Callable[[], tuple[str, int]],
                 found: set[str], run_in_thread: RunInThread, *,
                 zeroconf_factory: Callable[[], Any] | None = None,
                 browser_factory: Callable[..., Any] | None = None) -> None:  # fmt: skip
        self.setName("login-discovery")
        self._reactor = reactor
        self.device = device
        self._listening = listening
        self.found = found  # shared with Sharing.discovered
        self._by_name: dict[str, list[str]] = {}
        self._run = run_in_thread
        self._zeroconf_factory = zeroconf_factory
        self._browser_factory = browser_factory
        self._zeroconf: Any = None
        self._info: Any = None
        self._browser: Any = None

    def startService(self) -> None:
        super().startService()
        host, port = self._listening()
        self._run(self._start, host, port).addErrback(
            lambda failure: log.warn("DNS-SD discovery of login peers failed: {detail}",
                                     spool_event="login_discovery_failed", detail=failure.getErrorMessage()))

    def _start(self, host: str, port: int) -> None:
        from zeroconf import ServiceBrowser, ServiceInfo, Zeroconf

        addresses = advertised_addresses(host)
        info = ServiceInfo(SERVICE_TYPE, instance_name(self.device), port=port,
                           addresses=[socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a)
                                      for a in addresses],
                           properties={"device": self.device, "v": "1"})  # fmt: skip
        zeroconf = (self._zeroconf_factory or Zeroconf)()
        try:
            zeroconf.register_service(info, allow_name_change=True)
            self._browser = (self._browser_factory or ServiceBrowser)(zeroconf, SERVICE_TYPE,
                                                                      handlers=[self._changed])  # fmt: skip
        except BaseException:
            zeroconf.close()
            raise
        self._zeroconf, self._info = zeroconf, info
        log.info("DNS-SD: advertising the login share endpoint at {addresses} port {port}",
                 spool_event="login_discovery_started", addresses=addresses, port=port)  # fmt: skip

    def _changed(self, zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        """zeroconf's callback (its own thread): resolve the peer, then update the list on the reactor."""
        removed = getattr(state_change, "name", str(state_change)) == "Removed"
        addresses = [] if removed else peer_addresses(zeroconf.get_service_info(service_type, name, 3000),
                                                      instance_name(self.device))  # fmt: skip
        self._reactor.callFromThread(self._update, name, addresses)

    def _update(self, name: str, addresses: list[str]) -> None:
        for old in self._by_name.pop(name, []):
            self.found.discard(old)
        if addresses:
            self._by_name[name] = addresses
            self.found.update(addresses)
            log.info("DNS-SD: login peer {name} at {addresses}", spool_event="login_peer_found", name=name,
                     addresses=addresses)  # fmt: skip

    def stopService(self) -> Any:
        super().stopService()
        zeroconf, info, browser = self._zeroconf, self._info, self._browser
        self._zeroconf = self._info = self._browser = None
        if zeroconf is None:
            return None

        def stop() -> None:
            try:
                if browser is not None:
                    browser.cancel()
                zeroconf.unregister_service(info)
            finally:
                zeroconf.close()

        return self._run(stop).addErrback(lambda failure: None)
