"""The spool log: every job and device event as one JSON object a line (for `tail -f` and the CLI),
a readable text form on stderr, and the reader behind `spooler log`.

Code emits events with `twisted.logger` and a `spool_event` key; the observers here decide where
they go. Nothing secret is ever passed to a log call, and values are sanitised before they are written.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer

#: Keys of a spool-log line besides the event's own structured fields.
BASE_KEYS = ("time", "level", "event", "message")
_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def event_to_record(event: dict[str, Any]) -> dict[str, Any]:
    """The JSON object written for one twisted.logger event that carries a `spool_event` key."""
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", time.time()), timezone.utc).isoformat(
            timespec="milliseconds"
        ),
        "level": event["log_level"].name if "log_level" in event else "info",
        "event": event["spool_event"],
        "message": formatEvent(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in record or key == "spool_event":
            continue
        record[key] = _plain(value)
    if "log_failure" in event:
        record["error"] = event["log_failure"].getErrorMessage()
    return record


@implementer(ILogObserver)
class SpoolLogObserver:
    """Writes spool events as JSON lines to a size-rotated file in the state folder."""

    def __init__(self, path: Path, *, max_size: int, keep: int) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._file = LogFile(
            path.name, str(path.parent), rotateLength=max_size, maxRotatedFiles=keep, defaultMode=0o640
        )

    def __call__(self, event: dict[str, Any]) -> None:
        if "spool_event" not in event:
            return
        line = json.dumps(event_to_record(event), ensure_ascii=False, sort_keys=False) + "\n"
        self._file.write(line)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


#: syslog priorities of the levels, as the "<N>" prefix journald reads (sd-daemon(3)).
JOURNAL_PRIORITY = {"debug": 7, "info": 6, "warn": 4, "error": 3, "critical": 2}


def on_journal(stream: IO[str], environ: Any = None) -> bool:
    """Whether `stream` is systemd's journal ($JOURNAL_STREAM names its device and inode)."""
    expected = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        stat = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return bool(expected) and expected == f"{stat.st_dev}:{stat.st_ino}"


@implementer(ILogObserver)
class TextObserver:
    """A readable one-line form of every event on a stream (stderr), for the admin's terminal. On the
    journal (`journal`), without the time (the journal has it) and with the level's syslog priority,
    so that `journalctl -u spooler -p warning` shows the warnings and worse."""

    def __init__(self, stream: IO[str] = sys.stderr, *, journal: bool = False) -> None:
        self._stream = stream
        self._journal = journal

    def __call__(self, event: dict[str, Any]) -> None:
        level = event["log_level"].name if "log_level" in event else "info"
        if self._journal:
            stamp = f"<{JOURNAL_PRIORITY.get(level, 6)}>"
        else:
            stamp = datetime.fromtimestamp(event.get("log_time", time.time())).strftime("%Y-%m-%d %H:%M:%S ")
        text = formatEvent(event)
        if "log_failure" in event:
            text += f" ({event['log_failure'].getErrorMessage()})"
            if event.get("log_level") in (LogLevel.critical,):
                text += "\n" + event["log_failure"].getTraceback()
        namespace = event.get("log_namespace", "?")
        self._stream.write(f"{stamp}[{level}] {namespace}: {text}\n")
        self._stream.flush()


LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn, "error": LogLevel.error}

#: Twisted's own per-connection lines: every outgoing connection (a probe of the server, an API call,
#: a delivery) starts and stops a client factory, two info lines each. They are debug lines here.
CHATTER_FORMATS = frozenset({"Starting factory {factory!r}", "Stopping factory {factory!r}"})


def is_chatter(event: dict[str, Any]) -> bool:
    return event.get("log_format") in CHATTER_FORMATS and event.get("log_level") == LogLevel.info


def demote_chatter(observer: ILogObserver) -> ILogObserver:
    """`observer`, to which Twisted's per-connection chatter arrives at debug level, not info."""

    @implementer(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        observer(dict(event, log_level=LogLevel.debug) if is_chatter(event) else event)

    return observe


class LevelFilter:
    """The text log's level, which a reload may change (`set`)."""

    def __init__(self, level: str) -> None:
        self.predicate = LogLevelFilterPredicate(defaultLogLevel=LEVELS[level])
        self.level = level

    def set(self, level: str) -> None:
        self.predicate.setLogLevelForNamespace("", LEVELS[level])  # the default: every namespace
        self.level = level

    def wrap(self, observer: ILogObserver) -> ILogObserver:
        return demote_chatter(FilteringLogObserver(observer, [self.predicate]))


def level_filtered(observer: ILogObserver, level: str) -> ILogObserver:
    """`observer` behind a fixed level filter (Twisted's connection chatter counted as debug)."""
    return LevelFilter(level).wrap(observer)


# -- reading the log back -----------------------------------------------------------------------------


def log_files(path: Path) -> list[Path]:
    """The current log and its rotated predecessors, oldest first."""
    rotated = []
    for candidate in path.parent.glob(path.name + ".*"):
        suffix = candidate.name[len(path.name) + 1 :]
        if suffix.isascii() and suffix.isdigit():
            rotated.append((int(suffix), candidate))
    ordered = [p for _, p in sorted(rotated, reverse=True)]
    if path.exists():
        ordered.append(path)
    return ordered


def parse_line(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "event" in record else None


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    for file_path in log_files(path):
        with open(file_path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if (record := parse_line(line)) is not None:
                    yield record


def follow_records(
    path: Path, *, sleep: Callable[[float], None] = time.sleep, stop: Callable[[], bool] = lambda: False
) -> Iterator[dict[str, Any]]:
    """New records as they are appended, across rotation (like `tail -F`)."""
    handle = None
    inode = None
    while not stop():
        if handle is None:
            try:
                handle = open(path, encoding="utf-8", errors="replace")
                inode = os.fstat(handle.fileno()).st_ino
                handle.seek(0, os.SEEK_END)
            except FileNotFoundError:
                sleep(0.5)
                continue
        line = handle.readline()
        if line.endswith("\n"):
            if (record := parse_line(line)) is not None:
                yield record
            continue
        if line:
            handle.seek(handle.tell() - len(line.encode("utf-8")))
        try:
            rotated = os.stat(path).st_ino != inode
        except FileNotFoundError:
            rotated = True
        if rotated:
            for rest in handle:
                if rest.endswith("\n") and (record := parse_line(rest)) is not None:
                    yield record
            handle.close()
            handle = None
            inode = None
            # The new file is read from its beginning.
            try:
                handle = open(path, encoding="utf-8", errors="replace")
                inode = os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                handle = None
            continue
        sleep(0.25)
    if handle is not None:
        handle.close()


def matches(record: dict[str, Any], *, job_id: int | None = None, user: str | None = None) -> bool:
    if job_id is not None and record.get("job_id") != job_id:
        return False
    if user is not None and record.get("user") != user:
        return False
    return True


def format_record(record: dict[str, Any]) -> str:
    """One aligned human line: time, level, event, job, user, message."""
    stamp = str(record.get("time", ""))[:19].replace("T", " ")
    job = record.get("job_id")
    job_text = f"job {job}" if job is not None else ""
    user = record.get("user") or ""
    return f"{stamp}  {record.get('level', 'info'):<5} {record.get('event', ''):<20} {job_text:<10} {user:<12} {record.get('message', '')}".rstrip()


def filter_records(
    records: Iterable[dict[str, Any]], *, job_id: int | None = None, user: str | None = None
) -> Iterator[dict[str, Any]]:
    return (r for r in records if matches(r, job_id=job_id, user=user))
