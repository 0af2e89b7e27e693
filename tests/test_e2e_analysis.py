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
