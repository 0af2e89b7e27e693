"""The spool log: JSON lines from twisted.logger events, rotation, reading back, following, filtering."""

from __future__ import annotations

import io
import json
from pathlib import Path

from twisted.logger import Logger, LogLevel, LogPublisher

from spooler.spoollog import (
    SpoolLogObserver,
    TextObserver,
    event_to_record,
    filter_records,
    follow_records,
    format_record,
    log_files,
    read_records,
)


def publish(observer: object, *events: tuple[str, dict[str, object]]) -> None:
    publisher = LogPublisher(observer)  # type: ignore[arg-type]
    log = Logger(namespace="spooler.test", observer=publisher)
    for message, fields in events:
        log.info(message, **fields)


def test_only_spool_events_are_written_one_json_object_a_line(tmp_path: Path) -> None:
    path = tmp_path / "log" / "spool.jsonl"
    observer = SpoolLogObserver(path, max_size=10_000, keep=3)
    publish(
        observer,
        ("Job {job_id} received from {user}", {"spool_event": "job_received", "job_id": 1, "user": "alice",
                                               "size": 10, "tags": ("a", "b")}),  # fmt: skip
        ("not a spool event {x}", {"x": 1}),
        ("Job {job_id} done", {"spool_event": "job_completed", "job_id": 1, "user": "alice", "obj": object()}),
    )
    observer.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["event"] == "job_received" and first["message"] == "Job 1 received from alice"
    assert (first["job_id"], first["user"], first["size"], first["tags"], first["level"]) == (1, "alice", 10,
                                                                                              ["a", "b"], "info")
    assert first["time"].endswith("+00:00")
    assert isinstance(json.loads(lines[1])["obj"], str)  # anything else is written as its text
    assert not any(key.startswith("log_") for key in first)


def test_rotation_and_reading_back_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    observer = SpoolLogObserver(path, max_size=300, keep=10)
    for n in range(20):
        publish(observer, ("event {n}", {"spool_event": "tick", "n": n}))
    observer.close()
    assert len(log_files(path)) > 2
    assert [r["n"] for r in read_records(path)] == list(range(20))


def test_follow_picks_up_new_lines_and_survives_rotation(tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    path.write_text(json.dumps({"event": "old"}) + "\n")
    script = [
        lambda: path.open("a").write(json.dumps({"event": "new1"}) + "\n" + '{"event": "par'),
        lambda: path.open("a").write('tial"}\n'),
        lambda: (path.rename(tmp_path / "spool.jsonl.1"), path.write_text(json.dumps({"event": "rotated"}) + "\n")),
    ]
    steps = iter(script)
    seen: list[str] = []

    def sleep(_: float) -> None:
        step = next(steps, None)
        if step is not None:
            step()

    for record in follow_records(path, sleep=sleep, stop=lambda: len(seen) >= 3):
        seen.append(record["event"])
    assert seen == ["new1", "partial", "rotated"]  # "old" was there before following began


def test_filter_and_format() -> None:
    records = [
        {"time": "2026-11-24T10:00:00.000+00:00", "level": "info", "event": "job_received", "job_id": 1,
         "user": "alice", "message": "Job 1 received"},
        {"time": "2026-11-24T10:00:01.000+00:00", "level": "warn", "event": "device_down", "message": "down"},
        {"time": "2026-11-24T10:00:02.000+00:00", "level": "info", "event": "job_received", "job_id": 2,
         "user": "bob", "message": "Job 2 received"},
    ]  # fmt: skip
    assert [r.get("job_id") for r in filter_records(records, user="alice")] == [1]
    assert [r.get("job_id") for r in filter_records(records, job_id=2)] == [2]
    line = format_record(records[0])
    assert line.startswith("2026-11-24 10:00:00  info  job_received") and "alice" in line and "job 1" in line


def test_text_observer_writes_a_readable_line() -> None:
    stream = io.StringIO()
    event = {"log_format": "Job {job_id} received", "job_id": 3, "log_level": LogLevel.warn,
             "log_namespace": "spooler.jobs", "log_time": 0.0}  # fmt: skip
    TextObserver(stream)(event)
    assert stream.getvalue().endswith("[warn] spooler.jobs: Job 3 received\n")
    assert event_to_record({**event, "spool_event": "x"})["message"] == "Job 3 received"
