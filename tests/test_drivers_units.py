"""Unit tests of the drivers' pure parts: combine rules, paper names, detection, text, CLI."""

from __future__ import annotations

import io
import json
import struct

import pytest
from pathlib import Path

from drivers import DocumentStats, JobOptions, PageInfo, analyze_file, combine
from drivers.detect import OCTET_STREAM, PJL_LANGUAGES, detect, sniff
from drivers.stats import custom_name, paper_name
from drivers import text
from spooler.cli import main

CORPUS = Path(__file__).resolve().parent.parent / "samples" / "corpus"


def _doc(colors: list[bool | None], copies: int | None = None, sides: str | None = None) -> DocumentStats:
    return DocumentStats("application/pdf", pages=len(colors),
                         page_info=tuple(PageInfo(595, 842, "iso_a4_210x297mm", c) for c in colors),
                         copies=copies, sides=sides)


def test_combine_job_options_apply_when_the_document_is_silent() -> None:
    stats = combine(_doc([False] * 5), JobOptions(copies=3, sides="two-sided-long-edge"))
    assert (stats.copies, stats.sides, stats.impressions, stats.sheets) == (3, "two-sided-long-edge", 15, 9)
    assert (stats.copies_source, stats.sides_source) == ("job", "job")


def test_combine_document_encoded_copies_and_sides_win_but_not_an_explicit_one() -> None:
    stats = combine(_doc([False] * 2, copies=4, sides="one-sided"), JobOptions(copies=2, sides="two-sided-long-edge"))
    assert (stats.copies, stats.sides, stats.sheets) == (4, "one-sided", 8)
    stats = combine(_doc([False] * 2, copies=1), JobOptions(copies=2))
    assert (stats.copies, stats.copies_source) == (2, "job")


def test_combine_number_up_and_colour_impressions() -> None:
    stats = combine(_doc([False, True, False, False, False]), JobOptions(number_up=2))
    assert (stats.impressions_per_copy, stats.color_impressions, stats.mono_impressions) == (3, 1, 2)
    assert combine(_doc([])).sheets == 0
    assert combine(_doc([False]), JobOptions(sides="bogus", number_up=0)).sides == "one-sided"


def test_paper_names() -> None:
    assert paper_name(595.28, 841.89) == "iso_a4_210x297mm"
    assert paper_name(842, 595) == "iso_a4_210x297mm"
    assert paper_name(612, 792) == "na_letter_8.5x11in"
    assert paper_name(100, 100) is None
    assert custom_name(283.46, 425.2) == "custom_100x150mm"


def test_detect_keeps_the_names_jobs_py_uses() -> None:
    assert PJL_LANGUAGES["PCLXL"] == "application/vnd.hp-pclxl"
    assert sniff(b"%PDF-1.7\n") == "application/pdf"
    assert sniff(b"\x00\x01\x02") == OCTET_STREAM
    assert detect(b"\x1b%-12345X@PJL ENTER LANGUAGE=POSTSCRIPT\r\n%!PS\n").format == "application/postscript"
    assert detect(b"\x1bE\x1b&l1X").format == "application/vnd.hp-pcl"


def test_text_pages_by_form_feed_and_66_lines() -> None:
    def pages(data: bytes) -> int:
        return text.analyze(io.BytesIO(data)).pages

    assert pages(b"") == 0
    assert pages(b"one line") == 1
    assert pages(b"x\n" * 66) == 1
    assert pages(b"x\n" * 67) == 2
    assert pages(b"a\fb\f") == 2
    assert pages(b"\f\f") == 2


def test_roundtrip_to_dict() -> None:
    stats = analyze_file(CORPUS / "mixed_letter_4p.pdf")
    assert DocumentStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats


def test_cli_analyze_table_json_and_unreadable(capsys, tmp_path: Path) -> None:
    assert main(["analyze", str(CORPUS / "mixed_letter_4p.pdf"), str(CORPUS / "text_a4_3p.pcl"),
                 "--copies", "2", "--sides", "two-sided-long-edge"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:9] == ["FILE", "FORMAT", "PAGES", "PRINTED", "COLOUR", "MONO", "SHEETS", "SIZES",
                                    "STATUS"]
    # colour and mono are printed pages (impressions, copies included), as in the job's record
    assert lines[1].split()[1:8] == ["pdf", "4", "8", "4", "4", "4", "na_letter_8.5x11in:4"]
    assert lines[2].split()[1:7] == ["pcl5", "3", "6", "0", "6", "4"]
    assert main(["analyze", "--json", str(CORPUS / "grey.jpg")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["document"]["pages"] == 1 and data[0]["job"]["sheets"] == 1
    assert main(["analyze", str(tmp_path / "missing.pdf")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read" in err[0]


def test_pwg_header_fields(tmp_path: Path) -> None:
    header = bytearray(1796)
    header[0:9] = b"PwgRaster"
    for offset, value in ((272, 1), (340, 3), (352, 612), (356, 792), (368, 1), (372, 8), (376, 2),
                          (384, 8), (388, 8), (392, 8), (400, 18)):
        struct.pack_into(">I", header, offset, value)
    bitmap = b"\x01" + b"\x07\xff"  # two lines, one packet repeating white 8 times
    path = tmp_path / "p.pwg"
    path.write_bytes(b"RaS2" + bytes(header) + bitmap + bytes(header) + bitmap)
    stats = analyze_file(path)
    assert (stats.status, stats.pages, stats.copies, stats.sides) == ("ok", 2, 3, "two-sided-short-edge")
    assert stats.size_counts() == {"na_letter_8.5x11in": 2} and stats.mono_pages == 2


def test_pjl_grayscale_prints_the_colour_postscript_pages_mono(tmp_path: Path) -> None:
    body = (CORPUS / "mixed_4p.ps").read_bytes()
    path = tmp_path / "job.prn"
    path.write_bytes(b"\x1b%-12345X@PJL SET RENDERMODE=GRAYSCALE\r\n@PJL SET QTY=3\r\n"
                     b"@PJL ENTER LANGUAGE=POSTSCRIPT\r\n" + body)
    stats = analyze_file(path)
    assert (stats.format, stats.pages, stats.mono_pages, stats.copies) == ("application/postscript", 4, 4, 3)


# -- raster walker against a reference encoder -------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from drivers.raster import walk_bitmap  # noqa: E402
from drivers.stats import NEUTRAL_TOLERANCE  # noqa: E402


@st.composite
def raster_pages(draw):
    unit = draw(st.sampled_from([1, 3, 4]))
    width = draw(st.integers(1, 300))
    lines = draw(st.integers(1, 6))
    grey_only = draw(st.booleans())
    palette = [bytes([v] * unit) if unit == 3 else bytes([0, 0, 0, v]) if unit == 4 else bytes([v])
               for v in (0, 17, 128, 255)]
    colours = [bytes([200, 10, 10]), bytes([11, 12, 13])] if unit == 3 else \
        [bytes([40, 0, 0, 0]), bytes([0, 0, 5, 9])] if unit == 4 else []
    choices = palette + ([] if grey_only else colours)
    out = bytearray()
    pixels: list[bytes] = []
    for _ in range(lines):
        out.append(draw(st.integers(0, 3)))
        x = 0
        while x < width:
            n = draw(st.integers(1, min(128, width - x)))
            if n >= 2 and draw(st.booleans()):
                row = [draw(st.sampled_from(choices)) for _ in range(n)]
                out.append(257 - n)
                out += b"".join(row)
            else:
                pixel = draw(st.sampled_from(choices))
                row = [pixel] * n
                out.append(n - 1)
                out += pixel
            pixels += row
            x += n
    return unit, width, lines, bytes(out), pixels


def _is_colour(unit: int, pixel: bytes) -> bool:
    if unit == 3:
        return max(pixel) - min(pixel) > NEUTRAL_TOLERANCE
    if unit == 4:
        return max(pixel[:3]) > NEUTRAL_TOLERANCE
    return False


@settings(max_examples=120, deadline=None)
@given(page=raster_pages(), trailer=st.binary(max_size=8))
def test_walk_bitmap_matches_reference(page, trailer: bytes) -> None:
    unit, width, lines, data, pixels = page
    check = {1: None, 3: "rgb", 4: "cmyk"}[unit]
    # `lines` line records, each repeated (byte + 1) times: ask for exactly that many lines.
    height, pos = 0, 0
    for _ in range(lines):
        height += data[pos] + 1
        pos += 1
        x = 0
        while x < width:
            code = data[pos]
            count = code + 1 if code < 128 else 257 - code
            pos += 1 + (unit if code < 128 else count * unit)
            x += count
    end, colour = walk_bitmap(data + trailer, 0, height, width * unit, unit, False, check)
    assert end == len(data)
    assert colour == any(_is_colour(unit, p) for p in pixels)


# -- unknown colour is never mono ----------------------------------------------------------------------

from drivers.stats import impression_colours  # noqa: E402


def _colored(colors: list[bool | None], pages: int | None = None) -> DocumentStats:
    return DocumentStats("application/pdf", pages=len(colors) if pages is None else pages,
                         page_info=tuple(PageInfo(595, 842, "iso_a4_210x297mm", c) for c in colors))


@pytest.mark.parametrize(("colors", "pages", "number_up", "expected"), [
    ([False, True, False], None, 1, (1, 2)),
    ([False, None, False], None, 1, (None, None)),  # one page unknown: the counts are unknown
    ([True, None], None, 2, (1, 0)),  # a colour page on the sheet decides it
    ([False, None], None, 2, (None, None)),
    ([False, False, True, False], None, 2, (1, 1)),
    ([False, False], 3, 1, (None, None)),  # fewer page details than pages
    ([], 0, 1, (0, 0)),
])  # fmt: skip
def test_impression_colours(colors: list[bool | None], pages: int | None, number_up: int,
                            expected: tuple[int | None, int | None]) -> None:  # fmt: skip
    assert impression_colours(_colored(colors, pages), number_up) == expected


def test_combine_and_the_job_figures_keep_unknown_colour_unknown() -> None:
    from spooler.jobs.analysis import job_analysis

    unknown_colour = combine(_colored([False, None]), JobOptions(copies=3))
    assert (unknown_colour.impressions, unknown_colour.color_impressions, unknown_colour.mono_impressions) == (6, None, None)
    known = combine(_colored([False, True]), JobOptions(copies=3))
    assert (known.color_impressions, known.mono_impressions) == (3, 3)
    figures = job_analysis([_colored([False, True]), _colored([None])], copies=1, sides=None)
    assert (figures["status"], figures["pages"], figures["color_impressions"], figures["mono_impressions"]) == (
        "ok", 3, None, None)
    assert job_analysis([_colored([False, True])], copies=2, sides=None)["mono_impressions"] == 2


def test_pjl_grayscale_makes_every_page_mono() -> None:
    from drivers.stats import with_pjl

    stats = with_pjl(_colored([True, None, False]), None, None, None, color=False)
    assert [p.color for p in stats.page_info] == [False, False, False]
    assert with_pjl(_colored([True, None]), None, None, None, color=None).page_info == _colored([True, None]).page_info
