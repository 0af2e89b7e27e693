"""PCL 5: walk the escape sequences, skipping binary payloads by their byte counts, counting page ejects.

A page ends at a form feed outside HP-GL/2, or at a reset (``ESC E``) or the end of the data when
something was marked since the last eject. Copies ``ESC&l#X``, sides ``ESC&l#S``, paper ``ESC&l#A``;
pages drawn in a colour palette (``ESC*r#U`` other than 1, ``ESC*v#W``) report colour None (unknown),
the others mono.
"""

from __future__ import annotations

import mmap
import re

from drivers._io import Source, mapped, release
from drivers.stats import AnalysisError, DocumentStats, Limits, PageInfo, page, plausible_copies

FORMAT = "application/vnd.hp-pcl"

#: ESC&l#A page size codes -> size in points.
PAGE_SIZES: dict[int, tuple[float, float]] = {
    1: (522, 756), 2: (612, 792), 3: (612, 1008), 6: (792, 1224), 25: (420, 595), 26: (595, 842),
    27: (842, 1191), 45: (516, 729), 46: (729, 1032), 80: (279, 540), 81: (297, 684),
    90: (312, 624), 91: (459, 649), 100: (499, 709), 101: (312, 624),
}

# (parameter char, group char, terminator) of sequences followed by `value` bytes of binary data.
_BINARY = frozenset({
    (b"*", b"b", b"W"), (b"*", b"b", b"V"), (b"*", b"v", b"W"), (b"(", b"s", b"W"),
    (b")", b"s", b"W"), (b"(", b"f", b"W"), (b"&", b"p", b"X"), (b"*", b"c", b"W"),
    (b"*", b"m", b"W"), (b"*", b"l", b"W"), (b"*", b"o", b"W"), (b"&", b"b", b"W"),
    (b"*", b"i", b"W"), (b"&", b"n", b"W"),
})
_VALUE = re.compile(rb"([-+]?[0-9]*(?:\.[0-9]*)?)([\x40-\x7e])")
_ROW = re.compile(rb"\x1b\*b([0-9]{1,9})[WV]")
_SPECIAL = re.compile(rb"[\x1b\x0c]")
_MARKS = re.compile(rb"[^\x00-\x20\x7f]")


def analyze(source: Source, limits: Limits = Limits(), *, offset: int = 0) -> DocumentStats:
    """Count the pages of a PCL 5 stream and read copies, sides, paper and colour mode."""
    with mapped(source) as data:
        return _walk(data, offset, limits)


def _walk(data: bytes | mmap.mmap, pos: int, limits: Limits) -> DocumentStats:
    end = len(data)
    pages: list[PageInfo] = []
    size = (612.0, 792.0)
    size_set = False
    copies: int | None = None
    sides: str | None = None
    color_mode = False
    page_color = False
    marked = False
    hpgl = False
    released = 0

    def eject() -> None:
        nonlocal released
        released = release(data, pos, released)
        pages.append(page(*size, None if page_color else False) if size_set
                     else PageInfo(0, 0, None, None if page_color else False))
        if len(pages) > limits.page_cap:
            raise AnalysisError(f"more pages than the cap of {limits.page_cap}")

    row = _ROW.match
    while pos < end:
        if not hpgl:
            match = row(data, pos)
            if match is not None:  # fast path: raster rows back to back
                while match is not None:
                    pos = match.end() + int(match.group(1))
                    match = row(data, pos)
                if pos > end:
                    raise AnalysisError("PCL binary data truncated")
                marked = True
                continue
        found = _SPECIAL.search(data, pos)
        if found is None:
            if not hpgl and _MARKS.search(data, pos):
                marked = True
            break
        start = found.start()
        if not hpgl and not marked and start > pos and _MARKS.search(data, pos, start):
            marked = True
        if data[start] == 0x0C:
            pos = start + 1
            if not hpgl:
                eject()
                marked, page_color = False, color_mode
            continue
        # ESC
        pos = start + 1
        if pos >= end:
            break
        first = data[pos:pos + 1]
        pos += 1
        if first == b"E":
            if marked:
                eject()
            marked, hpgl, color_mode, page_color = False, False, False, False
            continue
        if not (0x21 <= first[0] <= 0x2F):
            continue  # two-character sequence
        group = data[pos:pos + 1]
        if group and 0x60 <= group[0] <= 0x7E:
            pos += 1
        else:
            group = b""
        while pos < end:
            match = _VALUE.match(data, pos)
            if match is None:
                pos += 1
                break
            pos = match.end()
            text, char = match.group(1), match.group(2)
            terminal = char.upper()
            try:
                value = float(text) if text not in (b"", b"+", b"-", b".") else 0.0
            except ValueError:
                value = 0.0
            number = int(value)
            key = (first, group, terminal)
            if key in _BINARY:
                if number < 0:
                    raise AnalysisError("negative binary data length")
                if number > end - pos:
                    raise AnalysisError("PCL binary data truncated")
                pos += number
                if group in (b"b", b"v") and number:
                    marked = True
                if key == (b"*", b"v", b"W"):  # configure image data: a colour palette
                    color_mode = page_color = True
            elif first == b"&" and group == b"l":
                if terminal == b"X" and plausible_copies(number):
                    copies = number
                elif terminal == b"S":
                    sides = {0: "one-sided", 1: "two-sided-long-edge",
                             2: "two-sided-short-edge"}.get(number, sides)
                elif terminal == b"A" and number in PAGE_SIZES:
                    size, size_set = PAGE_SIZES[number], True
            elif first == b"*" and group == b"r" and terminal == b"U":
                color_mode = number != 1
                page_color = page_color or color_mode
            elif first == b"%" and terminal == b"B":
                hpgl = True
            elif first == b"%" and terminal == b"A":
                hpgl = False
            elif first == b"%" and terminal == b"X":
                # UEL: leave PCL (a following PJL/other language is not ours)
                if marked:
                    eject()
                return _result(pages, copies, sides)
            if char == terminal:
                break
    if marked:
        eject()
    return _result(pages, copies, sides)


def _result(pages: list[PageInfo], copies: int | None, sides: str | None) -> DocumentStats:
    if not pages:
        raise AnalysisError("no pages in the PCL stream")
    return DocumentStats(FORMAT, pages=len(pages), page_info=tuple(pages), copies=copies,
                         sides=sides)
