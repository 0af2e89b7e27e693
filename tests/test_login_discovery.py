"""DNS-SD discovery of login-sharing peers, with a fake zeroconf (no multicast is sent)."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import pytest
import zeroconf
from twisted.internet.task import Clock

from conftest import run_synchronously
from spooler.login.discovery import SERVICE_TYPE, PeerDiscovery, instance_name, peer_addresses


@pytest.fixture(autouse=True)
def no_real_zeroconf(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a test opened a real Zeroconf or ServiceBrowser")

    monkeypatch.setattr(zeroconf, "Zeroconf", refuse)
    monkeypatch.setattr(zeroconf, "ServiceBrowser", refuse)


class FakeZeroconf:
    def __init__(self) -> None:
        self.registered: list[Any] = []
        self.unregistered: list[Any] = []
        self.infos: dict[str, Any] = {}
        self.closed = False

    def register_service(self, info: Any, allow_name_change: bool = False) -> None:
        self.registered.append(info)

    def unregister_service(self, info: Any) -> None:
        self.unregistered.append(info)

    def get_service_info(self, service_type: str, name: str, timeout: int = 3000) -> Any:
        return self.infos.get(name)

    def close(self) -> None:
        self.closed = True


class FakeBrowser:
    def __init__(self, zc: Any, service_type: str, handlers: list[Any]) -> None:
        self.zc, self.service_type, self.handlers = zc, service_type, handlers
        self.canceled = False

    def cancel(self) -> None:
        self.canceled = True


class ThreadlessReactor(Clock):
    def callFromThread(self, function: Any, *args: Any) -> None:
        function(*args)


def info(name: str, address: str, port: int) -> Any:
    return SimpleNamespace(name=name, port=port, addresses=[socket.inet_aton(address)])


@pytest.mark.parametrize(
    ("found", "expected"),
    [(info("b." + SERVICE_TYPE, "192.0.2.11", 8640), ["192.0.2.11:8640"]),
     (info(instance_name("me"), "192.0.2.10", 8640), []),  # our own advertisement
     (None, []), (info("c." + SERVICE_TYPE, "192.0.2.12", 0), [])],
)  # fmt: skip
def test_peer_addresses(found: Any, expected: list[str]) -> None:
    assert peer_addresses(found, instance_name("me")) == expected


def test_discovery_advertises_and_tracks_peers() -> None:
    made: list[Any] = []
    browsers: list[FakeBrowser] = []
    found: set[str] = {"10.0.0.9:1"}

    def zc_factory() -> FakeZeroconf:
        made.append(FakeZeroconf())
        return made[-1]

    def browser_factory(*args: Any, **kwargs: Any) -> FakeBrowser:
        browsers.append(FakeBrowser(*args, **kwargs))
        return browsers[-1]

    discovery = PeerDiscovery(ThreadlessReactor(), "me", lambda: ("192.0.2.10", 8640), found, run_synchronously,
                              zeroconf_factory=zc_factory, browser_factory=browser_factory)  # fmt: skip
    discovery.startService()
    (zc,) = made
    (advertised,) = zc.registered
    assert advertised.type == SERVICE_TYPE and advertised.port == 8640
    assert advertised.parsed_addresses() == ["192.0.2.10"] and advertised.properties[b"device"] == b"me"
    (browser,) = browsers
    handler = browser.handlers[0]
    zc.infos["b." + SERVICE_TYPE] = info("b." + SERVICE_TYPE, "192.0.2.11", 8640)
    handler(zc, SERVICE_TYPE, "b." + SERVICE_TYPE, zeroconf.ServiceStateChange.Added)
    handler(zc, SERVICE_TYPE, instance_name("me"), zeroconf.ServiceStateChange.Added)
    assert found == {"10.0.0.9:1", "192.0.2.11:8640"}
    handler(zc, SERVICE_TYPE, "b." + SERVICE_TYPE, zeroconf.ServiceStateChange.Removed)
    assert found == {"10.0.0.9:1"}
    discovery.stopService()
    assert browser.canceled and zc.unregistered == [advertised] and zc.closed
