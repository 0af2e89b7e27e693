"""Reloading the configuration (SIGHUP, `systemctl reload`): which keys changed, which of them the
running spooler applies at once and which wait for a restart, and the configuration that then runs
(the new one, with the old value of every key that waits). Pure: no I/O, no services.

Each key's declaration in spooler.config says whether it applies live (`setting(..., live=True)`):
the running pieces read it at use time or are handed the new value without dropping anything
(listener endpoints: a moved listener opens its new port, then closes the old one, open connections
stay; queues and their offline policies; the device and the central server's queue and health
settings; limits; spool settings; the LPD settings; IPP admin users; login limits and validity;
accounting upload settings; analysis worker settings; the log level). Anything else (the state
folder, the admin socket, [server] added or removed, its API, the device name, TLS and
authentication, DNS-SD, turning the IPP or terminal listeners on or off, ...) needs a restart, and so
does a key added later until its declaration says `live`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from spooler.config import reload_rule

#: Keys that are not in a section's table (spooler.config declares the others' `live`).
LIVE_TOP_LEVEL = {"queues": True}
#: Not configuration (where the file was read from).
IGNORED = ("source",)
MISSING = object()


def _is_record(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type) or hasattr(type(value), "__attrs_attrs__")


def _fields(value: Any) -> list[str]:
    if dataclasses.is_dataclass(value):
        return [field.name for field in dataclasses.fields(value)]
    return [attribute.name for attribute in type(value).__attrs_attrs__]


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every key of a configuration as "section.key" -> value (a list of tables, such as queues, is
    one value)."""
    keys: dict[str, Any] = {}
    for name in _fields(config):
        if not prefix and name in IGNORED:
            continue
        value = getattr(config, name)
        if _is_record(value):
            keys.update(flatten(value, f"{prefix}{name}."))
        else:
            keys[f"{prefix}{name}"] = value
    return keys


def changed_keys(old: Any, new: Any) -> dict[str, tuple[Any, Any]]:
    """key -> (old value, new value) for every key that differs (MISSING where a section is absent)."""
    before, after = flatten(old), flatten(new)
    return {key: (before.get(key, MISSING), after.get(key, MISSING))
            for key in sorted(set(before) | set(after))
            if before.get(key, MISSING) != after.get(key, MISSING)}  # fmt: skip


def _on(value: Any) -> bool:
    return value is not MISSING and value not in (None, "")


def applies_live(key: str, old: Any, new: Any) -> bool:
    """Whether a change of `key` from `old` to `new` applies without a restart: as its declaration in
    spooler.config says (`setting(..., live=...)`); a key nobody declared live waits for a restart."""
    if old is MISSING or new is MISSING:
        return False  # a section appeared or went (e.g. [server]): the pieces it wires are built at start
    rule = LIVE_TOP_LEVEL.get(key, False) if "." not in key else reload_rule(key)
    if rule == "while_on":
        return _on(old) and _on(new)
    return rule is True


@dataclass(frozen=True)
class ReloadPlan:
    live: dict[str, tuple[Any, Any]]  # applied now
    restart: dict[str, tuple[Any, Any]]  # wait for a restart (the old value keeps running)

    @property
    def changed(self) -> list[str]:
        return sorted(set(self.live) | set(self.restart))


def plan(old: Any, new: Any, *, pinned: Iterable[str] = ()) -> ReloadPlan:
    """The changes from `old` to `new`, split into live and restart; keys in `pinned` need a restart
    whatever their rule says (the running configuration makes them so, e.g. an advertised listener)."""
    changes = changed_keys(old, new)
    held = set(pinned)
    live = {key: values for key, values in changes.items() if key not in held and applies_live(key, *values)}
    return ReloadPlan(live, {key: values for key, values in changes.items() if key not in live})


def _replace(record: Any, **changes: Any) -> Any:
    if dataclasses.is_dataclass(record):
        return dataclasses.replace(record, **changes)
    import attrs

    return attrs.evolve(record, **changes)


def with_old_values(old: Any, new: Any, keys: Iterable[str]) -> Any:
    """`new`, but with `old`'s value at every key of `keys` (a key whose section is absent on one side
    brings back the whole section)."""
    result = new
    for key in keys:
        parts = key.split(".")
        # The deepest part both sides have as records: a section present on one side only is taken whole.
        depth = len(parts)
        for index in range(1, len(parts)):
            if not (_is_record(_get(old, parts[:index])) and _is_record(_get(result, parts[:index]))):
                depth = index
                break
        result = _set(result, parts[:depth], _get(old, parts[:depth]))
    return result


def _get(record: Any, parts: list[str]) -> Any:
    for part in parts:
        record = getattr(record, part)
    return record


def _set(record: Any, parts: list[str], value: Any) -> Any:
    if len(parts) == 1:
        return _replace(record, **{parts[0]: value})
    return _replace(record, **{parts[0]: _set(getattr(record, parts[0]), parts[1:], value)})
