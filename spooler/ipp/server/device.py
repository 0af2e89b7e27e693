"""The real device's own description: when the device URI is ipp:// or ipps://, its answer to
Get-Printer-Attributes (paper path, resolutions, finishings, formats it accepts; see
attributes.DEVICE_ATTRIBUTES), asked through the dispatcher's own device backend, replaces the
printer's defaults. Asked at start, again every
`refresh` seconds while it answers, and every `retry` seconds while it does not, so a device that
comes back (or was swapped for another model) is described anew within `retry` seconds. Until the
first answer, and for what the device does not say, the configured defaults stand."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from spooler.ipp.server.attributes import DEVICE_ATTRIBUTES, PrinterAttributes, device_description

log = Logger(namespace="spooler.ipp.device")

#: Asks the device for these printer attributes; fires with its printer attributes (iterable) or None.
AskDevice = Callable[[Sequence[str]], Deferred[Any]]

REFRESH = 600.0
RETRY = 15.0
#: How long one Get-Printer-Attributes to the device may take.
ASK_TIMEOUT = 30.0


class DeviceDescriber:
    """Keeps `printer` describing the device `uri` (ask: a Get-Printer-Attributes client)."""

    def __init__(self, printer: PrinterAttributes, ask: AskDevice, clock: IReactorTime, uri: str, *,
                 refresh: float = REFRESH, retry: float = RETRY) -> None:  # fmt: skip
        self._printer = printer
        self._ask = ask
        self._clock = clock
        self.uri = uri
        self._refresh = refresh
        self._retry = retry
        self._timer: IDelayedCall | None = None
        self._asking: Deferred[Any] | None = None
        self._stopped = False
        self.answered = False  # whether the description in use came from the device
        self.reachable: bool | None = None

    def start(self) -> None:
        self._stopped = False
        self._query()

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._asking is not None:
            self._asking.cancel()

    def _query(self) -> None:
        self._timer = None
        if self._stopped or self._asking is not None:
            return
        self._asking = self._ask(tuple(DEVICE_ATTRIBUTES))
        self._asking.addCallbacks(self._answered, self._failed)
        self._asking.addErrback(self._broken)

    def _schedule(self, delay: float) -> None:
        self._asking = None
        if not self._stopped:
            self._timer = self._clock.callLater(delay, self._query)

    def _answered(self, printer: Any) -> None:
        description = device_description(printer or ())
        changed = description != self._printer.device
        came_back = self.reachable is False
        self.reachable = True
        if changed:
            self._printer.describe_device(description)
            self.answered = bool(description)
        if changed or came_back:
            log.info("Device {device} describes itself: {count} attribute(s) taken ({names})",
                     spool_event="device_described", device=self.uri, count=len(description),
                     names=", ".join(sorted(description)) or "none")  # fmt: skip
        self._schedule(self._refresh)

    def _broken(self, failure: Failure) -> None:
        log.failure("Describing the device {device} failed", failure, device=self.uri)
        self._schedule(self._retry)

    def _failed(self, failure: Failure) -> None:
        if self._stopped:
            return None
        if self.reachable is not False:
            log.info("Device {device} did not describe itself ({why}); asking again in {retry:g}s",
                     spool_event="device_describe_failed", device=self.uri, why=failure.getErrorMessage(),
                     retry=self._retry)  # fmt: skip
        self.reachable = False
        self._schedule(self._retry)
        return None
