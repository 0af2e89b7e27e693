"""Every sample in samples/corpus/ analysed exactly as samples/corpus/expected.json says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drivers import JobOptions, analyze_file, combine
from drivers.detect import detect

CORPUS = Path(__file__).resolve().parent.parent / "samples" / "corpus"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())


def _sizes(stats) -> list[str]:
    return [p.size_name or ("job-media" if not p.width_pt else "custom") for p in stats.page_info]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_statistics_exact(name: str) -> None:
    expected = EXPECTED[name]
    stats = analyze_file(CORPUS / name)
    assert stats.format == expected["format"]
    assert stats.status == expected["status"], stats.reason
    assert stats.pages == expected["pages"]
    if expected["status"] == "ok":
        assert [p.color for p in stats.page_info] == expected["colors"]
        assert _sizes(stats) == expected["sizes"]
    else:
        assert stats.reason
    assert stats.copies == expected["copies"]
    assert stats.sides == expected["sides"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_detected_from_bytes_not_name(name: str, tmp_path: Path) -> None:
    anonymous = tmp_path / "job.bin"
    anonymous.write_bytes((CORPUS / name).read_bytes())
    assert analyze_file(anonymous, declared_format="text/plain").format == EXPECTED[name]["format"]


def test_pjl_header_parsed_and_language_inside() -> None:
    found = detect((CORPUS / "pjl_pdf_3p.prn").read_bytes()[:65536])
    assert found.format == "application/pdf"
    assert found.pjl is not None and found.pjl.copies == 2 and found.offset > 0


def test_colour_counts_on_the_mixed_documents() -> None:
    for name in ("mixed_letter_4p.pdf", "mixed_gs_4p.pdf", "mixed_4p.pwg", "mixed_4p.urf"):
        stats = analyze_file(CORPUS / name)
        assert (stats.color_pages, stats.mono_pages) == (2, 2), name


def test_combine_with_job_options_on_a_sample() -> None:
    stats = analyze_file(CORPUS / "text_a4_3p.pdf")
    job = combine(stats, JobOptions(copies=2, sides="two-sided-long-edge", number_up=2))
    assert (job.impressions_per_copy, job.impressions, job.sheets) == (2, 4, 2)
    pcl = combine(analyze_file(CORPUS / "text_a4_3p.pcl"), JobOptions(copies=5))
    assert (pcl.copies, pcl.copies_source, pcl.impressions) == (2, "document", 6)


def test_regenerated_corpus_matches_expected(tmp_path: Path) -> None:
    """samples/make_samples.py with this machine's Ghostscript gives the same statistics."""
    import subprocess
    import sys

    from spooler_harness import require_tool

    require_tool("gs")
    pytest.importorskip("reportlab")
    script = CORPUS.parent / "make_samples.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], check=True, timeout=120)
    regenerated = json.loads((tmp_path / "expected.json").read_text())
    assert regenerated == EXPECTED
    for name, expected in sorted(EXPECTED.items()):
        stats = analyze_file(tmp_path / name)
        assert (stats.status, stats.pages) == (expected["status"], expected["pages"]), name
        if expected["status"] == "ok":
            assert [p.color for p in stats.page_info] == expected["colors"], name
            assert _sizes(stats) == expected["sizes"], name
