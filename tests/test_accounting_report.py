"""Usage reports: the pure sums (table-tested), `spooler stats` (table, CSV, JSON, date ranges, the
daemon down, a spool from before accounting) and `spooler report --pdf`, rendered with pdftoppm."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from spooler.accounting.records import RecordMaker
from spooler.cli import main
from spooler.model import Document, Job, JobState, Mode, Route
from spooler.accounting.report import BadPeriod, parse_moment, summarize
from spooler.store.database import JobStore
from spooler_harness import require_tool

DAY1 = datetime(2026, 3, 2, 10, 0).timestamp()
DAY2 = datetime(2026, 3, 3, 15, 30).timestamp()


def record(user: str, when: float, *, outcome: str = "completed", mode: str = "offline", route: str = "device",
           pages: int | None = 2, color: int = 1, copies: int = 1) -> dict[str, Any]:  # fmt: skip
    known = pages is not None
    return {
        "user": user, "outcome": outcome, "mode": mode, "route": route, "_finished_at": when,
        "analysis": "ok" if known else "unknown", "pages": pages, "impressions": pages * copies if known else None,
        "sheets": pages * copies if known else None, "color_pages": color * copies if known else None,
        "mono_pages": (pages - color) * copies if known else None,
    }  # fmt: skip


RECORDS = [
    record("alice", DAY1),
    record("alice", DAY2, copies=3, mode="online", route="server"),
    record("bob", DAY1, pages=None),
    record("bob", DAY2, outcome="canceled"),
    record("carol", DAY2, outcome="aborted", pages=5, color=0),
]

SUMMARY_CASES = [
    (["user"], {
        ("alice",): dict(jobs=2, completed=2, pages=4, impressions=8, sheets=8, color_pages=4, mono_pages=4),
        ("bob",): dict(jobs=2, completed=1, canceled=1, unknown=1, pages=0),
        ("carol",): dict(jobs=1, aborted=1, pages=0, impressions=0),
    }),
    (["mode"], {
        ("offline",): dict(jobs=4, completed=2, unknown=1, pages=2, impressions=2, color_pages=1),
        ("online",): dict(jobs=1, completed=1, pages=2, impressions=6, color_pages=3, mono_pages=3),
    }),
    (["day", "route"], {
        ("2026-03-02", "device"): dict(jobs=2, impressions=2),
        ("2026-03-03", "device"): dict(jobs=2, impressions=0),
        ("2026-03-03", "server"): dict(jobs=1, impressions=6),
    }),
]  # fmt: skip


@pytest.mark.parametrize("by,expected", SUMMARY_CASES, ids=[",".join(c[0]) for c in SUMMARY_CASES])
def test_summarize(by: list[str], expected: dict[tuple[str, ...], dict[str, int]]) -> None:
    rows, total = summarize(RECORDS, by)
    assert [row.key for row in rows] == sorted(expected)
    for row in rows:
        for name, value in expected[row.key].items():
            assert getattr(row, name) == value, (row.key, name)
    assert (total.jobs, total.completed, total.impressions, total.unknown) == (5, 3, 8, 1)


def test_pages_of_unknown_colour_are_counted_apart_never_as_mono() -> None:
    unknown_colour = {**record("dora", DAY1, pages=4, copies=2), "color_pages": None, "mono_pages": None}
    rows, total = summarize([record("dora", DAY1), unknown_colour], ["user"])
    assert (total.impressions, total.color_pages, total.mono_pages, total.color_unknown_pages) == (10, 1, 1, 8)
    assert rows[0].as_dict(["user"])["color_unknown_pages"] == 8


def test_only_known_groups() -> None:
    with pytest.raises(ValueError):
        summarize(RECORDS, ["printer"])


@pytest.mark.parametrize("text,end,expected", [
    ("2026-03-02", False, datetime(2026, 3, 2).timestamp()),
    ("2026-03-02", True, datetime(2026, 3, 3).timestamp()),
    ("2026-03-02T10:00:00", False, DAY1),
])  # fmt: skip
def test_parse_moment(text: str, end: bool, expected: float) -> None:
    assert parse_moment(text, end=end) == expected


def test_parse_moment_refuses_nonsense() -> None:
    with pytest.raises(BadPeriod):
        parse_moment("last tuesday")


# -- the CLI, on a real store (the daemon is down) ---------------------------------------------------


def populate(state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore.open(state_dir / "spooler.db", record_maker=RecordMaker(device="branch-1"))
    for job_id, (user, when, pages, color, mode, state) in enumerate([
        ("alice", DAY1, 3, 1, Mode.OFFLINE, JobState.COMPLETED),
        ("alice", DAY2, 10, 0, Mode.ONLINE, JobState.COMPLETED),
        ("bob", DAY2, 4, 4, Mode.OFFLINE, JobState.COMPLETED),
        ("bob", DAY2, 1, 0, Mode.OFFLINE, JobState.CANCELED),
        ("carol", DAY2, 6, None, Mode.OFFLINE, JobState.COMPLETED),  # colour unknown
    ], start=1):  # fmt: skip
        analysis = {"status": "ok", "reason": "", "pages": pages, "copies": 1, "sides": "one-sided",
                    "impressions": pages, "sheets": pages, "color_impressions": color,
                    "mono_impressions": None if color is None else pages - color,
                    "sizes": {"iso_a4_210x297mm": pages}}  # fmt: skip
        job = Job(job_id=job_id, uuid=f"u{job_id}", queue="default", protocol="ipp", user=user, host="ws",
                  name=f"doc {job_id}", document_format="application/pdf", size=100, state=JobState.PENDING,
                  reason="job-queued", created_at=when - 10, mode=mode,
                  route=Route.DEVICE if mode == Mode.OFFLINE else Route.SERVER, attributes={"analysis": analysis})
        store.insert_job(job, [Document(job_id, 1, f"d{job_id:06d}-001", 100, "application/pdf")])
        store.update_job(job.evolve(state=state, completed_at=when))
    store.close()


def cli(state_dir: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "--state-dir", str(state_dir)], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_stats_table_csv_json_and_ranges(tmp_path: Path) -> None:
    state = tmp_path / "state"
    populate(state)
    code, out, _ = cli(state, "stats")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:4] == ["USER", "JOBS", "COMPLETED", "CANCELED"]
    assert lines[1].split()[:2] == ["alice", "2"] and lines[-1].split()[:2] == ["TOTAL", "5"]
    carol = lines[3].split()
    assert carol[0] == "carol" and carol[lines[0].split().index("COLOUR?")] == "6"
    code, out, _ = cli(state, "stats", "--by", "user,mode", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["user"], r["mode"], r["impressions"], r["color_pages"], r["color_unknown_pages"]) for r in rows] == [
        ("alice", "offline", "3", "1", "0"), ("alice", "online", "10", "0", "0"), ("bob", "offline", "4", "4", "0"),
        ("carol", "offline", "6", "0", "6")]
    code, out, _ = cli(state, "stats", "--by", "day", "--json", "--since", "2026-03-03", "--until", "2026-03-03")
    result = json.loads(out)
    assert [(r["day"], r["jobs"], r["impressions"]) for r in result["rows"]] == [("2026-03-03", 4, 20)]
    assert (result["total"]["mono_pages"], result["total"]["color_unknown_pages"]) == (10, 6)
    code, out, _ = cli(state, "stats", "--until", "2026-03-02", "--json")
    assert json.loads(out)["total"]["impressions"] == 3
    code, out, _ = cli(state, "stats", "--since", "2030-01-01")
    assert code == 0 and "no accounting records" in out


@pytest.mark.parametrize("args,message", [
    (["--by", "colour"], "--by takes"),
    (["--since", "yesterday"], "not a date"),
    (["--since", "2026-03-03", "--until", "2026-03-01"], "after --since"),
])  # fmt: skip
def test_stats_bad_usage(tmp_path: Path, args: list[str], message: str) -> None:
    populate(tmp_path / "state")
    code, _, err = cli(tmp_path / "state", "stats", *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_stats_without_a_spool_or_from_before_accounting(tmp_path: Path) -> None:
    code, _, err = cli(tmp_path / "nothing", "stats")
    assert code == 1 and "no spool database" in err
    import sqlite3

    from spooler.store.database import _SCHEMA

    (tmp_path / "old").mkdir()
    old = sqlite3.connect(tmp_path / "old" / "spooler.db")
    old.executescript(_SCHEMA[0] + "; PRAGMA user_version=1;")
    old.close()
    code, _, err = cli(tmp_path / "old", "stats")
    assert code == 1 and "no accounting records" in err


def test_pdf_report_renders_with_its_charts(tmp_path: Path) -> None:
    pdftoppm = require_tool("pdftoppm")
    pdftotext = require_tool("pdftotext")
    state = tmp_path / "state"
    populate(state)
    target = tmp_path / "report.pdf"
    code, out, _ = cli(state, "report", "--pdf", str(target), "--title", "Branch 1 usage <&>")
    assert code == 0 and target.read_bytes().startswith(b"%PDF") and "2 page(s), 5 record(s)" in out
    subprocess.run([pdftoppm, "-r", "40", "-png", str(target), str(tmp_path / "page")], check=True, timeout=60)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == 2
    from PIL import Image

    for page in pages:
        image = Image.open(page).convert("RGB")
        colours = image.getcolors(maxcolors=1 << 16) or []
        assert len(colours) > 8  # not a blank page
    first = Image.open(pages[0]).convert("RGB")
    # The charts' colour and mono bars and pie slices are drawn in the palette's first two colours.
    seen = {colour for _, colour in first.getcolors(maxcolors=1 << 16) or []}
    assert (0x2F, 0x6D, 0xB5) in seen and (0xE0, 0x81, 0x2F) in seen
    text = subprocess.run([pdftotext, "-layout", str(target), "-"], capture_output=True, text=True, check=True,
                          timeout=60).stdout  # fmt: skip
    for expected in ("Branch 1 usage <&>", "Pages printed per user", "Colour vs mono", "Online vs offline",
                     "Pages printed per day", "alice", "bob", "colour: 5 (22 %)", "online: 10 (43 %)",
                     "colour unknown: 6 (26 %)", "Colour unknown"):  # fmt: skip
        assert expected in text, expected


def test_pdf_report_bad_target(tmp_path: Path) -> None:
    populate(tmp_path / "state")
    code, _, err = cli(tmp_path / "state", "report", "--pdf", str(tmp_path))
    assert code == 2 and "folder" in err
    code, _, err = cli(tmp_path / "state", "report", "--pdf", str(tmp_path / "missing" / "r.pdf"))
    assert code == 1 and "cannot write" in err


def test_pdf_report_without_reportlab_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """reportlab is an extra ([report]): without it the report is refused with one line, no traceback."""
    import spooler.config

    real = spooler.config.find_spec
    monkeypatch.setattr(spooler.config, "find_spec", lambda name: None if name == "reportlab" else real(name))
    populate(tmp_path / "state")
    code, _, err = cli(tmp_path / "state", "report", "--pdf", str(tmp_path / "r.pdf"))
    assert code == 1 and "pip install 'branch-spooler[report]'" in err and err.count("\n") == 1
    assert not (tmp_path / "r.pdf").exists()


def test_pdf_report_of_an_empty_period(tmp_path: Path) -> None:
    pdftotext = require_tool("pdftotext")
    populate(tmp_path / "state")
    target = tmp_path / "empty.pdf"
    code, out, _ = cli(tmp_path / "state", "report", "--pdf", str(target), "--since", "2030-01-01")
    assert code == 0 and "1 page(s), 0 record(s)" in out
    text = subprocess.run([pdftotext, str(target), "-"], capture_output=True, text=True, check=True).stdout
    assert "No accounting records in this period." in text
