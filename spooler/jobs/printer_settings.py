"""What administrators set on the printer over IPP and what must outlive a restart: per queue, whether
it accepts jobs (Enable-/Disable-Printer), whether it holds new jobs (Hold-New-Jobs), its texts
(Set-Printer-Attributes: printer-info, -location, -organization, -organizational-unit,
-message-from-operator); for the printer as a whole, whether its output is paused (Pause-Printer,
Shutdown-Printer). Kept as one JSON value in the store's meta table, written at each change, as CUPS
keeps its printers.conf. Pure apart from that one store call."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

#: The printer texts an administrator may set, and the most characters each may have (RFC 8011:
#: printer-info, -location and -message-from-operator are text(127), the organization ones text(MAX)).
SETTABLE_TEXTS: dict[str, int] = {
    "printer-info": 127,
    "printer-location": 127,
    "printer-message-from-operator": 127,
    "printer-organization": 255,
    "printer-organizational-unit": 255,
}
SETTINGS_KEY = "printer_settings"


class SettingsStore(Protocol):
    def setting(self, key: str) -> str | None: ...

    def set_setting(self, key: str, value: str) -> None: ...


@dataclass
class QueueSettings:
    """One queue (an IPP printer) as its administrators left it."""

    accepting: bool = True
    holding_new_jobs: bool = False
    texts: dict[str, str] = field(default_factory=dict)
    #: When an administrator last changed this queue's description or state (seconds since the epoch).
    config_changed_at: float = 0.0
    reason: str = ""  # why it does not accept jobs, as the administrator said (printer-state-message)


@dataclass
class PrinterSettings:
    """Every queue's settings and the printer-wide output switches; `save()` after each change."""

    store: SettingsStore
    queues: dict[str, QueueSettings] = field(default_factory=dict)
    paused: bool = False
    shut_down: bool = False

    @classmethod
    def load(cls, store: SettingsStore) -> PrinterSettings:
        raw = store.setting(SETTINGS_KEY)
        settings = cls(store)
        if not raw:
            return settings
        try:
            data: dict[str, Any] = json.loads(raw)
        except ValueError:
            return settings  # unreadable: the defaults (everything enabled) rather than no printer
        settings.paused = bool(data.get("paused", False))
        settings.shut_down = bool(data.get("shut_down", False))
        for name, queue in (data.get("queues") or {}).items():
            if not isinstance(queue, dict):
                continue
            texts = {key: str(value)[:limit] for key, limit in SETTABLE_TEXTS.items()
                     if isinstance(value := (queue.get("texts") or {}).get(key), str)}  # fmt: skip
            settings.queues[str(name)] = QueueSettings(
                accepting=bool(queue.get("accepting", True)), holding_new_jobs=bool(queue.get("holding_new_jobs")),
                texts=texts, config_changed_at=float(queue.get("config_changed_at") or 0.0),
                reason=str(queue.get("reason") or "")[:255],
            )  # fmt: skip
        return settings

    def queue(self, name: str) -> QueueSettings:
        return self.queues.setdefault(name, QueueSettings())

    def save(self) -> None:
        data = {"paused": self.paused, "shut_down": self.shut_down,
                "queues": {name: asdict(queue) for name, queue in sorted(self.queues.items())}}  # fmt: skip
        self.store.set_setting(SETTINGS_KEY, json.dumps(data, sort_keys=True))
