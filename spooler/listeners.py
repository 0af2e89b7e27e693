"""Listening on a configured endpoint as a service of the tree: the one helper every listener of the
daemon, the login share endpoint and the reference server use. A leaf: it knows Twisted and nothing
of the spooler."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.python.failure import Failure


class ListenerService(Service):
    """Listens on one endpoint; fails at start-up (not later, in a log line) if it cannot."""

    def __init__(self, name: str, endpoint: Any, factory: IProtocolFactory) -> None:
        self.setName(name)
        self._endpoint = endpoint
        self._factory = factory
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        outcome: list[Any] = []
        self._endpoint.listen(self._factory).addBoth(outcome.append)
        if not outcome:
            raise RuntimeError(f"listener {self.name} did not start synchronously")
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        self.port = outcome[0]
        super().startService()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return maybeDeferred(port.stopListening)
        return None

    def rebind(self, endpoint: Any) -> None:
        """Listen on `endpoint` instead (a reload moved it): the new port opens first (raising, with
        the old one kept, if it cannot), then the old one closes; open connections stay."""
        outcome: list[Any] = []
        endpoint.listen(self._factory).addBoth(outcome.append)
        if not outcome:
            raise RuntimeError(f"listener {self.name} did not start synchronously")
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        old, self.port, self._endpoint = self.port, outcome[0], endpoint
        if old is not None:
            maybeDeferred(old.stopListening)

    @property
    def factory(self) -> IProtocolFactory:
        return self._factory

    @property
    def address(self) -> str:
        if self.port is None:
            return ""
        host = self.port.getHost()
        if hasattr(host, "port"):
            return f"{host.host}:{host.port}"
        return str(getattr(host, "name", host))
