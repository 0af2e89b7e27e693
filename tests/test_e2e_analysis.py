"""Page statistics of real jobs, end to end: the figures land in the job's record, the spool log and
`spooler show`, while the job prints; a document that cannot be analysed still prints."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import pytest

from spooler_harness import Spooler, send_raw, wait_for

pytestmark = pytest.mark.e2e
SpoolerFactory = Callable[..., Spooler]
CORPUS = Path(__file__).parent.parent / "samples" / "corpus"


def analysis_of(spooler: Spooler, job_id: int) -> dict[str, object] | None:
    return spooler.job(job_id)["attributes"].get("analysis")


def test_every_job_gets_its_page_figures(spooler_factory: SpoolerFactory) -> None:
    expected = json.loads((CORPUS / "expected.json").read_text())["mixed_letter_4p.pdf"]
    spooler = spooler_factory().start()
    data = (CORPUS / "mixed_letter_4p.pdf").read_bytes()
    send_raw(spooler.raw_port, data)
    [delivered] = spooler.wait_delivered(1)
    assert delivered.read_bytes() == data
    figures = wait_for(lambda: analysis_of(spooler, 1), timeout=30, what="the analysis")
    colour = sum(1 for page in expected["colors"] if page)
    assert (figures["status"], figures["pages"], figures["color_impressions"]) == ("ok", expected["pages"], colour)
    assert figures["mono_impressions"] == expected["pages"] - colour
    [event] = spooler.events("job_analyzed")
    assert (event["job_id"], event["pages"], event["status"]) == (1, expected["pages"], "ok")
    assert f"{expected['pages']} page(s)" in spooler.cli("show", "1").stdout


def test_copies_and_sides_from_the_job_combine_with_the_document(spooler_factory: SpoolerFactory) -> None:
    from spooler_harness import pjl_job

    spooler = spooler_factory().start()
    body = (CORPUS / "text_a4_3p.pdf").read_bytes()
    send_raw(spooler.raw_port, pjl_job("lia", "two copies", body, extra="@PJL SET COPIES=2\r\n@PJL SET DUPLEX=ON\r\n"))
    figures = wait_for(lambda: analysis_of(spooler, 1), timeout=30, what="the analysis")
    assert (figures["pages"], figures["copies"], figures["impressions"], figures["sheets"]) == (3, 2, 6, 4)


def test_a_document_that_cannot_be_analysed_still_prints(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory().start()
    garbage = b"%PDF-1.7\n" + os.urandom(20_000)  # claims PDF, is not one
    send_raw(spooler.raw_port, garbage)
    [delivered] = spooler.wait_delivered(1)
    assert delivered.read_bytes() == garbage
    figures = wait_for(lambda: analysis_of(spooler, 1), timeout=30, what="the analysis")
    assert figures["status"] == "unknown" and figures["reason"]
    assert "unknown" in spooler.cli("show", "1").stdout


def test_spooler_analyze_and_the_job_record_agree_on_every_figure(spooler_factory: SpoolerFactory) -> None:
    """One code path: the figures `spooler analyze` prints are the job's record's, for PostScript
    counted by gs in the daemon's worker, a PDF, and PCL XL whose colour is partly unknown (null in
    the record, "?" in analyze, "colour unknown" in `show` and apart in `stats`, never mono)."""
    import sqlite3

    from spooler_harness import pjl_job, require_tool

    require_tool("gs")
    spooler = spooler_factory().start()
    names = ["showpage_in_procs_12p.ps", "colour_and_grey_5p.ps", "mixed_letter_4p.pdf", "mixed_4p.pxl"]
    for name in names:
        send_raw(spooler.raw_port, pjl_job("ana", name, (CORPUS / name).read_bytes(), language="POSTSCRIPT",
                                           extra="@PJL SET COPIES=2\r\n") if name.endswith(".ps")
                 else (CORPUS / name).read_bytes())
    spooler.wait_delivered(len(names))

    def records() -> list[dict[str, object]] | None:
        db = sqlite3.connect(f"file:{spooler.state_dir / 'spooler.db'}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT body FROM accounting WHERE analysis_pending = 0 ORDER BY job_id").fetchall()
        except sqlite3.OperationalError:
            return None
        finally:
            db.close()
        return [json.loads(row[0]) for row in rows] if len(rows) == len(names) else None

    bodies = wait_for(records, timeout=60, what="the accounting records")
    for job_id, (name, body) in enumerate(zip(names, bodies), start=1):
        copies = ["--copies", "2"] if name.endswith(".ps") else []
        [analysed] = json.loads(spooler.cli("analyze", "--json", *copies, str(CORPUS / name)).stdout)
        figures = analysed["job"]
        assert body["analysis"] == figures["status"] == "ok", (name, body["analysis_reason"])
        assert (body["pages"], body["impressions"], body["sheets"], body["color_pages"], body["mono_pages"],
                body["paper_sizes"]) == (figures["pages"], figures["impressions"], figures["sheets"],
                                         figures["color_impressions"], figures["mono_impressions"],
                                         figures["sizes"]), name  # fmt: skip
        assert spooler.job(job_id)["attributes"]["analysis"]["mono_impressions"] == figures["mono_impressions"]
    assert (bodies[0]["pages"], bodies[0]["impressions"], bodies[0]["mono_pages"]) == (12, 24, 24)
    assert (bodies[1]["color_pages"], bodies[1]["mono_pages"]) == (4, 6)
    assert (bodies[3]["pages"], bodies[3]["color_pages"], bodies[3]["mono_pages"]) == (4, None, None)
    table = spooler.cli("analyze", str(CORPUS / "mixed_4p.pxl")).stdout.splitlines()
    assert table[1].split()[1:7] == ["pclxl", "4", "4", "?", "?", "4"]
    assert "colour unknown" in spooler.cli("show", "4").stdout
    total = json.loads(spooler.cli("stats", "--json").stdout)["total"]
    assert (total["color_pages"], total["mono_pages"], total["color_unknown_pages"]) == (6, 32, 4)
