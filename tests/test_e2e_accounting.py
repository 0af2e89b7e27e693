"""Accounting end to end with real processes: a `spooler serve` whose central server is a real
`spooler-refserver` (print queue and API). Jobs printed on the device while the server is down leave
records that reach the server exactly once when it returns, with the right figures; a spooler killed
(-9) in the middle of an upload sends again after its restart and the server still holds each record
once; records older than the age limit stay local, are reported, and are never sent."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spooler_harness import RefServer, refserver, Spooler, pjl_job, send_raw, wait_for

pytestmark = pytest.mark.e2e
SpoolerFactory = Callable[..., Spooler]
CORPUS = Path(__file__).parent.parent / "samples" / "corpus"


@pytest.fixture
def central() -> Iterator[RefServer]:
    """A reference server that starts down (its ports refuse connections)."""
    with refserver(mode="refuse") as server:
        yield server


def offline_spooler(spooler_factory: SpoolerFactory, central: RefServer, **settings: Any) -> Spooler:
    return spooler_factory(**{
        "server__queue_uri": central.ipp_uri, "server__api_url": central.api_url,
        "server__probe_interval": "250ms", "server__probe_timeout": "1s", "server__connect_timeout": "1s",
        "queues.default__offline_policy": "print", "device__name": "branch-7",
        "accounting__interval": "250ms", "accounting__retry_initial": "250ms", "accounting__retry_max": "1s",
        **settings,
    })  # fmt: skip


def outbox(spooler: Spooler) -> dict[str, Any]:
    return json.loads(spooler.cli("outbox", "--json").stdout)


def local(spooler: Spooler, query: str) -> Any:
    """One value from the spooler's database, read-only (cheaper to poll than the CLI)."""
    db = sqlite3.connect(f"file:{spooler.state_dir / 'spooler.db'}?mode=ro", uri=True)
    try:
        return db.execute(query).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return None
    finally:
        db.close()


def records_ready(spooler: Spooler, count: int) -> bool:
    """`count` records written, none still waiting for its page figures."""
    return local(spooler, "SELECT COUNT(*) FROM accounting WHERE analysis_pending = 0") == count


def sent(spooler: Spooler) -> int:
    return int(local(spooler, "SELECT COUNT(*) FROM accounting WHERE sent_at IS NOT NULL") or 0)


def wait_offline(spooler: Spooler) -> None:
    wait_for(lambda: any(e.get("mode") == "offline" for e in spooler.events("mode_changed")),
             what="the spooler to see the server down")  # fmt: skip


def spool_id(spooler: Spooler) -> str:
    return str(local(spooler, "SELECT value FROM meta WHERE key = 'spool_id'"))


def central_count(central: RefServer) -> int:
    return int(central.status()["accounting_records"])  # over the control socket: works in every mode


def test_offline_records_reach_the_server_once_with_the_right_figures(
    spooler_factory: SpoolerFactory, central: RefServer
) -> None:
    spooler = offline_spooler(spooler_factory, central).start()
    wait_offline(spooler)
    jobs = [
        ("alice", "duplex copies", (CORPUS / "text_a4_3p.pdf").read_bytes(), "@PJL SET COPIES=2\r\n@PJL SET DUPLEX=ON\r\n"),
        ("bob", "mixed", (CORPUS / "mixed_letter_4p.pdf").read_bytes(), ""),
        ("carol", "images", (CORPUS / "images_3p.pdf").read_bytes(), ""),
        ("dave", "garbage", b"%PDF-1.7\n" + bytes(range(256)) * 40, ""),
    ]  # fmt: skip
    for user, name, body, extra in jobs:
        send_raw(spooler.raw_port, pjl_job(user, name, body, extra=extra))
    spooler.wait_delivered(len(jobs), timeout=30)
    wait_for(lambda: records_ready(spooler, len(jobs)), timeout=60, what="4 records with their figures")
    assert central_count(central) == 0 and outbox(spooler)["sent"] == 0
    assert spooler.status()["accounting"]["waiting"] == 4

    central.mode("normal")
    wait_for(lambda: sent(spooler) == len(jobs), timeout=30, what="the records to be sent")
    records = central.accounting()
    ids = [record["record_id"] for record in records]
    assert sorted(ids) == sorted(f"{spool_id(spooler)}:{job_id}" for job_id in range(1, 5)) and len(set(ids)) == 4
    by_user = {record["user"]: record for record in records}
    figures = {user: (r["pages"], r["copies"], r["impressions"], r["sheets"], r["color_pages"], r["mono_pages"])
               for user, r in by_user.items()}  # fmt: skip
    assert figures == {"alice": (3, 2, 6, 4, 0, 6), "bob": (4, 1, 4, 4, 2, 2), "carol": (3, 1, 3, 3, 1, 2),
                       "dave": (None, 1, None, None, None, None)}  # fmt: skip
    assert by_user["dave"]["analysis"] == "unknown" and by_user["alice"]["duplex"] is True
    for record in records:
        assert (record["device"], record["route"], record["mode"], record["outcome"]) == (
            "branch-7", "device", "offline", "completed")
        assert record["offline_limits"] == ["credit", "quota", "projects", "policies"]
        assert record["printed_at"] and record["submitted_at"] <= record["printed_at"] <= record["received_at"]
    assert by_user["bob"]["job_name"] == "mixed" and by_user["bob"]["paper_sizes"] == {"na_letter_8.5x11in": 4}
    replicated = spooler.events("records_replicated")
    assert sum(event["accepted"] for event in replicated) == 4 and sum(e["duplicates"] for e in replicated) == 0
    # Back online, a job goes to the server's queue and its record follows, without offline limits.
    wait_for(lambda: any(e.get("mode") == "online" for e in spooler.events("mode_changed")), what="online")
    send_raw(spooler.raw_port, pjl_job("erin", "online", (CORPUS / "text_a4_3p.pdf").read_bytes()))
    central.wait_received(1)
    wait_for(lambda: sent(spooler) == 5, timeout=30, what="the online job's record sent")
    online = [r for r in central.accounting() if r["user"] == "erin"]
    assert len(online) == 1 and (online[0]["route"], online[0]["mode"], online[0]["offline_limits"]) == (
        "server", "online", [])
    assert online[0]["pages"] == 3 and central_count(central) == 5
    # The usage report agrees, with the daemon up or down.
    spooler.stop()
    stats = json.loads(spooler.cli("stats", "--by", "mode", "--json").stdout)
    assert stats["rows"][0] == {"mode": "offline", "jobs": 4, "completed": 4, "canceled": 0, "aborted": 0,
                                "unknown": 1, "pages": 10, "impressions": 13, "sheets": 11, "color_pages": 3,
                                "mono_pages": 10, "color_unknown_pages": 0}  # fmt: skip
    assert stats["rows"][1]["mode"] == "online" and stats["rows"][1]["impressions"] == 3
    assert central_count(central) == 5


def test_a_spooler_killed_during_an_upload_still_gives_each_record_once(
    spooler_factory: SpoolerFactory, central: RefServer
) -> None:
    spooler = offline_spooler(spooler_factory, central, accounting__batch_size=2, analysis__enabled=False).start()
    wait_offline(spooler)
    for number in range(5):
        send_raw(spooler.raw_port, pjl_job(f"user{number}", f"job {number}", b"hello\f" * (number + 1),
                                           language="PCL"))  # fmt: skip
    spooler.wait_delivered(5, timeout=30)
    wait_for(lambda: records_ready(spooler, 5), timeout=60, what="5 records")

    # The server stores the first batch at once but holds its answer back: the spooler dies waiting.
    central.mode("slow", delay=20)
    wait_for(lambda: central_count(central) == 2, timeout=30, interval=0.2, what="the first batch stored at the server")
    spooler.kill9()
    audit = sqlite3.connect(f"file:{spooler.state_dir / 'spooler.db'}?mode=ro", uri=True)
    uploads = audit.execute("SELECT outcome FROM accounting_uploads ORDER BY upload").fetchall()
    unsent = audit.execute("SELECT COUNT(*) FROM accounting WHERE sent_at IS NULL").fetchone()[0]
    audit.close()
    assert uploads[-1] == ("sending",) and unsent == 5  # cut off before the 200: nothing marked sent

    central.mode("normal")
    spooler.start()
    wait_for(lambda: sent(spooler) == 5, timeout=30, what="every record sent after the restart")
    records = central.accounting()
    assert len(records) == 5 and len({record["record_id"] for record in records}) == 5
    assert sorted(record["user"] for record in records) == [f"user{n}" for n in range(5)]
    state = outbox(spooler)
    outcomes = [(u["outcome"], u["accepted"], u["duplicates"]) for u in reversed(state["uploads"])]
    assert ("interrupted", None, None) in outcomes
    assert sum(u[2] or 0 for u in outcomes if u[0] == "sent") == 2  # the batch stored before the kill
    assert sum(u[1] or 0 for u in outcomes if u[0] == "sent") == 3


def test_records_past_the_age_limit_stay_local_reported_and_unsent(
    spooler_factory: SpoolerFactory, central: RefServer
) -> None:
    spooler = offline_spooler(spooler_factory, central, accounting__max_age="1d", analysis__enabled=False).start()
    wait_offline(spooler)
    for number in range(3):
        send_raw(spooler.raw_port, pjl_job("erin", f"job {number}", b"x", language="PCL"))
    spooler.wait_delivered(3, timeout=30)
    wait_for(lambda: local(spooler, "SELECT COUNT(*) FROM accounting") == 3, what="3 records")
    spooler.stop()
    # Two days pass for the first two records (as if the server had been away that long).
    with sqlite3.connect(spooler.state_dir / "spooler.db") as db:
        db.execute("UPDATE accounting SET finished_at = finished_at - 2 * 86400 WHERE job_id IN (1, 2)")
    central.mode("normal")
    spooler.start()
    wait_for(lambda: sent(spooler) == 1, timeout=30, what="the fresh record sent")
    state = outbox(spooler)
    assert (state["waiting"], state["expired"]) == (0, 2)
    assert [record["job_id"] for record in state["expired_records"]] == [1, 2]
    assert [record["job_id"] for record in central.accounting()] == [3]
    assert spooler.status()["accounting"]["expired"] == 2
    text = spooler.cli("outbox").stdout
    assert "2 too old to send (kept locally)" in text and "too old to send:" in text
    # They stay in the local reports.
    stats = json.loads(spooler.cli("stats", "--json").stdout)
    assert stats["total"]["jobs"] == 3
