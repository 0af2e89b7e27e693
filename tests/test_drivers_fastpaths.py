"""The speed paths of the analysers give exactly what their reference paths give.

- PCL XL: the regex skipping runs of plain operators against the token loop alone;
- PDF: the pre-scan proving a content stream grey against the full operator walk;
- PWG Raster: the table-driven, two-packets-a-turn 1-byte skipper against a plain reference.
"""

from __future__ import annotations

import hypothesis
import json
import random
import re
from pathlib import Path

import pytest

from drivers import pclxl, pdf, raster
from drivers.stats import AnalysisError, Limits

CORPUS = Path(__file__).resolve().parent.parent / "samples" / "corpus"
PXL_SAMPLES = sorted(name for name in json.loads((CORPUS / "expected.json").read_text())
                     if name.endswith(".pxl"))


# -- PCL XL ----------------------------------------------------------------------------------------


def _pxl_walk(data: bytes, fast: bool, monkeypatch: pytest.MonkeyPatch) -> object:
    offset = max(data.find(b") HP-PCL XL"), data.find(b"( HP-PCL XL"))
    with monkeypatch.context() as patch:
        if not fast:
            nothing = re.compile(b"").match
            patch.setattr(pclxl, "_plain_run", lambda: nothing)
        try:
            return pclxl._walk(data, offset, Limits())
        except AnalysisError as error:
            return ("unknown", str(error))


def _pxl(body: bytes) -> bytes:
    return b") HP-PCL XL;2;0\n" + body + b"\x1b%-12345X"


_BEGIN = b"\xc0\x02\xf8\x25\x43"  # MediaSize A4, BeginPage
_RGB_SPACE = b"\xc0\x02\xf8\x03\x6a"  # ColorSpace RGB, SetColorSpace
_GLYPHS = b"\xd3\x10\x00\x20\x00\xf8\x4c\x6b\xc8\xc0\x01A\xf8\xab\xa8" * 50  # SetCursor, Text


@pytest.mark.parametrize("body, colour", [
    (_BEGIN + _GLYPHS + b"\xc0\x01\xf8\x31\x44", False),  # PageCopies then EndPage
    (_RGB_SPACE + _BEGIN + _GLYPHS + b"\xc8\xc0\x03\xff\x00\x00\xf8\x0b\x78" + _GLYPHS + b"\x44", True),
    (_RGB_SPACE + _BEGIN + _GLYPHS + b"\xc8\xc0\x03\x80\x80\x80\xf8\x0b\x78" + _GLYPHS + b"\x44", None),
    # a wanted attribute after plain pairs of the same operator (the run must stop before them)
    (_RGB_SPACE + _BEGIN + b"\xd3\x10\x00\x20\x00\xf8\x4c\xc8\xc0\x03\xff\x00\x00\xf8\x0b\x78\x44", True),
    # a value, an unwanted attribute, then a wanted one: the value still belongs to it
    (_RGB_SPACE + _BEGIN + b"\xc8\xc0\x03\xff\x00\x00\xf8\x4c\xf8\x0b\x78\x44", True),
    # white space inside an operator's attribute list, and a 16-bit attribute id
    (_RGB_SPACE + _BEGIN + b"\xc8\xc0\x03\xff\x00\x00 \xf9\x0b\x00\x78" + _GLYPHS + b"\x44", True),
])
def test_pclxl_fast_path_matches_token_loop(body: bytes, colour: bool | None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    data = _pxl(body)
    fast = _pxl_walk(data, True, monkeypatch)
    assert fast == _pxl_walk(data, False, monkeypatch)
    assert fast.page_info[0].color is colour


@pytest.mark.parametrize("name", PXL_SAMPLES)
def test_pclxl_fast_path_matches_token_loop_on_mutants(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    original = (CORPUS / name).read_bytes()
    assert _pxl_walk(original, True, monkeypatch) == _pxl_walk(original, False, monkeypatch)
    rng = random.Random(name)
    start = original.find(b"HP-PCL XL") + 16
    for _ in range(150):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(start, len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[:rng.randrange(start, len(data))]
        assert _pxl_walk(bytes(data), True, monkeypatch) == _pxl_walk(bytes(data), False, monkeypatch)


# -- PDF -------------------------------------------------------------------------------------------


def _walk_colour(data: bytes, prescan: bool, monkeypatch: pytest.MonkeyPatch) -> bool:
    with monkeypatch.context() as patch:
        if not prescan:
            patch.setattr(pdf, "_provably_grey", lambda data: False)
        return pdf._Colors(Limits()).scan(data, {}, 0)


@pytest.mark.parametrize("content", [
    b"0 0 0 rg BT (quick) Tj ET 0.5 0.5 0.5 RG",
    b"1 0 0 rg", b"0 0 0.5 rg", b"0 0 00 rg", b"-0 0 0 rg 1 rg", b"1 0 0 0 rg", b".5 .5 .5 rg",
    b"(a) 1 0 0 rg", b"(1 0 0 rg) 0 0 0 rg", b"1 0 (x) 0 0 rg", b"1 0 0(x)rg",
    b"1 % grey below\n0 0 rg",  # a comment joins operands: not for the pre-scan
    b"1" + b" " * 150 + b"0 0 rg", b"123456 " + b" " * 60 + b"123456 " + b" " * 60 + b"123456 rg",
    b"0 0 0 rg\x0b1 0 0 rg", b"0\x000\x000 rg", b"0 0 0 rgx 1 0 0 rg", b"1 0 0 k", b"0 0 0 1 k",
    b"/DeviceRGB cs 1 0 0 sc", b"/P1 scn", b"/Im1 Do 0 0 0 rg", b"]0 0 0 rg", b"0 0 0 rg]",
    b"1.2.3 0 0 0 rg", b"5. 5. 5. rg", b"0 0 0 RG 0 1 0 RG",
])
def test_pdf_prescan_matches_the_walk(content: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _walk_colour(content, True, monkeypatch) == _walk_colour(content, False, monkeypatch)


def test_pdf_prescan_matches_the_walk_on_random_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = [b"0", b"1", b"0.5", b".5", b"5.", b"00", b"-0", b"+1", b"1.2.3", b"rg", b"RG", b"k",
              b"K", b"sc", b"scn", b"cs", b"Do", b"sh", b"/DeviceRGB", b"/P1", b"(0 0 0 rg)", b"(x)",
              b"[", b"]", b"<", b">", b"BT", b"ET", b"Tj", b"quick", b"0 0 0 rg", b"1 1 1 rg",
              b"0.2 0.2 0.2 RG", b"\\", b"x" * 150]
    separators = [b" ", b"\n", b"\r\n", b"\t", b"\x0b", b"\x00", b"", b" " * 25, b"\f"]
    rng = random.Random(5)
    proved = 0
    for _ in range(3000):
        data = b"".join(rng.choice(tokens) + rng.choice(separators) for _ in range(rng.randint(1, 12)))
        if pdf._provably_grey(data):
            proved += 1
            assert _walk_colour(data, False, monkeypatch) is False, data
    assert proved > 300


# -- PWG Raster ------------------------------------------------------------------------------------


def _reference_skip(data: bytes, height: int, per_line: int, urf: bool) -> object:
    pos = y = 0
    try:
        while y < height:
            y += data[pos] + 1
            pos += 1
            x = 0
            while x < per_line:
                code = data[pos]
                if code < 128:
                    pos, x = pos + 2, x + code + 1
                elif code == 128 and urf:
                    pos, x = pos + 1, per_line
                else:
                    pos, x = pos + 258 - code, x + 257 - code
            if x != per_line:
                return "overrun"
    except IndexError:
        return "truncated"
    return "truncated" if pos > len(data) else pos


def _skip(data: bytes, height: int, per_line: int, urf: bool) -> object:
    try:
        return raster._skip_bytes(data, 0, height, per_line, urf)
    except AnalysisError as error:
        return "overrun" if "overruns" in str(error) else "truncated"


def test_pwg_one_byte_skipper_matches_reference() -> None:
    rng = random.Random(11)
    for _ in range(3000):
        per_line = rng.choice([1, 2, 5, 128, 129, 130, 258, 259, 300, 621])
        lines = rng.randint(1, 5)
        data = bytearray()
        for _ in range(lines):
            data.append(rng.choice([0, 0, 2]))
            x = 0
            while x < per_line:
                if per_line - x < 2 or rng.random() < 0.5:
                    n = min(rng.randint(1, 128), per_line - x)
                    data += bytes([n - 1, rng.randrange(256)])
                else:
                    n = min(rng.randint(2, 129), per_line - x)  # code 128: 129 literal pixels (PWG)
                    data += bytes([257 - n]) + rng.randbytes(n)
                x += n
        for _ in range(rng.choice([0, 0, 1, 3])):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[:rng.randrange(len(data))]
        for urf in (False, True):
            for h in (lines, lines * 3):
                assert _skip(bytes(data), h, per_line, urf) == _reference_skip(bytes(data), h, per_line, urf)



def _looks_like_text_by_characters(sample: bytes) -> bool:
    """The original check, one character at a time (the fast path must agree with it)."""
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(sample) - 4:
            return False
        text = sample[: error.start].decode("utf-8")
    return all(ch.isprintable() or ch in "\n\r\t\f\x1b" for ch in text)


@hypothesis.given(hypothesis.strategies.binary(max_size=64).map(lambda b: bytes(x & 0x7F for x in b)))
def test_text_detection_of_ascii_agrees_with_the_character_check(sample: bytes) -> None:
    from drivers.detect import _looks_like_text

    assert _looks_like_text(sample) == _looks_like_text_by_characters(sample)
