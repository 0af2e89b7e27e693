"""PCL XL (PCL 6): tokenize the binary stream, skipping embedded data, counting EndPage operators.

Runs of operators that change nothing kept here (most of a page: cursor moves, text, paths) are
skipped by one regex match in C; the token loop handles everything else (see _plain_run).

Per page: MediaSize (enum or name), SimplexPageMode/DuplexPageMode, PageCopies, and colour: a page
that never selects the RGB colour space is mono; one that does is colour when it sets a
non-neutral RGB colour, else unknown (images are not decoded).
"""

from __future__ import annotations

import functools
import mmap
import re
import struct
from collections.abc import Callable
from typing import cast

from drivers._io import Source, mapped, release
from drivers.stats import (NEUTRAL_TOLERANCE, AnalysisError, DocumentStats, Limits, PageInfo, page,
                           plausible_copies)

FORMAT = "application/vnd.hp-pclxl"

#: MediaSize enumeration -> size in points.
MEDIA_SIZES: dict[int, tuple[float, float]] = {
    0: (612, 792), 1: (612, 1008), 2: (595, 842), 3: (522, 756), 4: (792, 1224),
    5: (842, 1191), 6: (297, 684), 7: (279, 540), 8: (459, 649), 9: (312, 624),
    10: (729, 1032), 11: (516, 729), 12: (499, 709), 13: (499, 709), 16: (420, 595),
    17: (298, 420),
}
MEDIA_NAMES: dict[bytes, tuple[float, float]] = {
    b"LETTER": (612, 792), b"LEGAL": (612, 1008), b"A4": (595, 842), b"EXEC": (522, 756),
    b"LEDGER": (792, 1224), b"A3": (842, 1191), b"A5": (420, 595), b"A6": (298, 420),
    b"COM10": (297, 684), b"DL": (312, 624), b"C5": (459, 649), b"JB4": (729, 1032),
    b"JB5": (516, 729), b"B5": (499, 709),
}

# Sizes of the scalar data types 0xc0-0xc5, xy 0xd0-0xd5 and box 0xe0-0xe5 (by low nibble).
_SCALAR = (1, 2, 4, 2, 4, 4)
_ELEMENT = {0xC8: 1, 0xC9: 2, 0xCA: 4, 0xCB: 2, 0xCC: 4, 0xCD: 4}
_BEGIN_PAGE, _END_PAGE, _SET_COLOR_SPACE = 0x43, 0x44, 0x6A
_ATTR_COLOR_SPACE, _ATTR_RGB_COLOR, _ATTR_MEDIA_SIZE = 3, 11, 37
_ATTR_PAGE_COPIES, _ATTR_SIMPLEX, _ATTR_DUPLEX = 49, 52, 53
_RGB = 2


def analyze(source: Source, limits: Limits = Limits(), *, offset: int = 0) -> DocumentStats:
    """Count the pages of a PCL XL stream and read copies, duplex, paper and colour."""
    with mapped(source) as data:
        return _walk(data, offset, limits)


# Token kinds, looked up by tag byte.
_BAD, _VALUE, _ARRAY, _ATTR8, _ATTR16, _DATA32, _DATA8, _OPERATOR, _SPACE, _UEL = range(10)
_KIND = [_BAD] * 256
_SIZE = [0] * 256
for _tag in range(0xC0, 0xC6):
    _KIND[_tag], _SIZE[_tag] = _VALUE, 1 + _SCALAR[_tag - 0xC0]
for _tag in range(0xD0, 0xD6):
    _KIND[_tag], _SIZE[_tag] = _VALUE, 1 + 2 * _SCALAR[_tag - 0xD0]
for _tag in range(0xE0, 0xE6):
    _KIND[_tag], _SIZE[_tag] = _VALUE, 1 + 4 * _SCALAR[_tag - 0xE0]
for _tag in _ELEMENT:
    _KIND[_tag] = _ARRAY
for _tag in range(0x41, 0xC0):
    _KIND[_tag] = _OPERATOR
for _tag in (0x00, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20):
    _KIND[_tag] = _SPACE
_KIND[0xF8], _KIND[0xF9], _KIND[0xFA], _KIND[0xFB], _KIND[0x1B] = _ATTR8, _ATTR16, _DATA32, _DATA8, _UEL
_WANTED = frozenset({_ATTR_COLOR_SPACE, _ATTR_RGB_COLOR, _ATTR_MEDIA_SIZE, _ATTR_PAGE_COPIES,
                     _ATTR_SIMPLEX, _ATTR_DUPLEX})

# The fast path: a run of "plain" operators, each preceded by zero to four (value or ubyte array,
# then 8-bit attribute id the walker does not keep) pairs, and white space between them. Plain
# operators are all but BeginPage, EndPage and SetColorSpace; values are the scalar, xy and box
# tokens; arrays are ubyte arrays with a ubyte count. Starting with no pending attributes (after an
# operator), such a run changes nothing the walker keeps (each operator ends with no attributes and
# no value), so it is skipped in C by one regex match. Every item is decided by its first bytes and
# ends just after an operator, so the possessive repeat never backtracks (bounded memory whatever
# the run length). Anything else (data blocks, 16-bit attribute ids, other arrays, a bare value,
# wanted attributes, truncation) stops the run and goes through the token loop below, which stays
# the reference.
_RUN_VALUE = (rb"[\xc0][\s\S]|[\xc1\xc3][\s\S]{2}|[\xc2\xc4\xc5][\s\S]{4}|\xd0[\s\S]{2}"
              rb"|[\xd1\xd3][\s\S]{4}|[\xd2\xd4\xd5][\s\S]{8}|\xe0[\s\S]{4}|[\xe1\xe3][\s\S]{8}"
              rb"|[\xe2\xe4\xe5][\s\S]{16}")
_RUN_ARRAY = rb"\xc8\xc0(?:" + b"|".join(re.escape(bytes([n])) + (rb"[\s\S]{%d}" % n if n else b"")
                                         for n in range(256)) + rb")"
_RUN_ATTR = (rb"\xf8[^" + b"".join(re.escape(bytes([a])) for a in sorted(_WANTED)) + rb"]")
_RUN_SPACE = rb"[" + b"".join(re.escape(bytes([t])) for t in range(256) if _KIND[t] == _SPACE) + rb"]"
_RUN_OPERATOR = rb"[" + b"".join(re.escape(bytes([t])) for t in range(256) if _KIND[t] == _OPERATOR
                                 and t not in (_BEGIN_PAGE, _END_PAGE, _SET_COLOR_SPACE)) + rb"]"
_RUN_PAIR = rb"(?:" + _RUN_VALUE + rb"|" + _RUN_ARRAY + rb")" + _RUN_ATTR


@functools.cache
def _plain_run() -> Callable[..., re.Match[bytes]]:
    """The compiled fast-path matcher (compiled on first use: ~30 ms, not paid by other formats);
    it always matches, possibly the empty string."""
    items = [_RUN_PAIR + _RUN_OPERATOR, _RUN_OPERATOR, _RUN_PAIR * 2 + _RUN_OPERATOR,
             _RUN_PAIR * 3 + _RUN_OPERATOR, _RUN_PAIR * 4 + _RUN_OPERATOR, _RUN_SPACE]
    return cast(Callable[..., "re.Match[bytes]"], re.compile(rb"(?:" + rb"|".join(items) + rb")*+").match)


def _walk(data: bytes | mmap.mmap, pos: int, limits: Limits) -> DocumentStats:
    end = len(data)
    newline = data.find(b"\n", pos, pos + 256)
    if newline < 0 or b"HP-PCL XL" not in data[pos:newline]:
        raise AnalysisError("no PCL XL stream header")
    binding = data[pos]
    if binding not in (0x28, 0x29):
        raise AnalysisError("unsupported PCL XL binding")
    fmt = "<" if binding == 0x29 else ">"
    pos = newline + 1
    pages: list[PageInfo] = []
    attrs: dict[int, object] = {}
    value_at = -1
    released = 0
    size: tuple[float, float] | None = None
    copies: int | None = None
    sides: str | None = None
    rgb_space = page_rgb = page_color = in_page = False
    kinds, sizes, wanted, plain_run = _KIND, _SIZE, _WANTED, _plain_run()
    try:
        pos = plain_run(data, pos).end()
        while pos < end:
            tag = data[pos]
            kind = kinds[tag]
            if kind == _VALUE:
                value_at = pos
                pos += sizes[tag]
            elif kind == _ATTR8:
                attr = data[pos + 1]
                if attr in wanted:
                    attrs[attr] = _value(data, value_at, fmt)
                pos += 2
            elif kind == _OPERATOR:
                pos += 1
                if tag == _BEGIN_PAGE:
                    in_page, page_rgb, page_color = True, rgb_space, False
                    media = attrs.get(_ATTR_MEDIA_SIZE)
                    if isinstance(media, int):
                        size = MEDIA_SIZES.get(media, size)
                    elif isinstance(media, bytes):
                        size = MEDIA_NAMES.get(media.rstrip(b"\0").upper(), size)
                    if _ATTR_DUPLEX in attrs:
                        sides = ("two-sided-short-edge" if attrs[_ATTR_DUPLEX] == 0
                                 else "two-sided-long-edge")
                    elif _ATTR_SIMPLEX in attrs and sides is None:
                        sides = "one-sided"
                elif tag == _SET_COLOR_SPACE:
                    rgb_space = attrs.get(_ATTR_COLOR_SPACE) == _RGB
                    page_rgb = page_rgb or rgb_space
                elif tag == _END_PAGE:
                    count = attrs.get(_ATTR_PAGE_COPIES)
                    if plausible_copies(count):
                        copies = plausible_copies(count)
                    color = True if page_color else (None if page_rgb else False)
                    pages.append(page(*size, color) if size else PageInfo(0, 0, None, color))
                    in_page = False
                    released = release(data, pos, released)
                    if len(pages) > limits.page_cap:
                        raise AnalysisError(f"more pages than the cap of {limits.page_cap}")
                if attrs:
                    rgb = attrs.get(_ATTR_RGB_COLOR)
                    if (in_page and rgb_space and isinstance(rgb, bytes) and len(rgb) >= 3
                            and max(rgb[:3]) - min(rgb[:3]) > NEUTRAL_TOLERANCE):
                        page_color = True
                    attrs = {}
                value_at = -1
                pos = plain_run(data, pos).end()
            elif kind == _DATA32:
                length, = struct.unpack_from(fmt + "I", data, pos + 1)
                pos += 5 + length
            elif kind == _DATA8:
                pos += 2 + data[pos + 1]
            elif kind == _ARRAY:
                value_at = pos
                pos = _array_end(data, pos, fmt)
            elif kind == _SPACE:
                pos += 1
            elif kind == _ATTR16:
                attr, = struct.unpack_from(fmt + "H", data, pos + 1)
                if attr in wanted:
                    attrs[attr] = _value(data, value_at, fmt)
                pos += 3
            elif kind == _UEL:
                break  # UEL: end of the PCL XL stream
            else:
                raise AnalysisError(f"unknown PCL XL tag 0x{tag:02x}")
    except (IndexError, struct.error):
        raise AnalysisError("PCL XL data truncated") from None
    if pos > end:
        raise AnalysisError("PCL XL data truncated")
    if not pages:
        raise AnalysisError("no pages in the PCL XL stream")
    return DocumentStats(FORMAT, pages=len(pages), page_info=tuple(pages), copies=copies, sides=sides)


def _array_end(data: bytes | mmap.mmap, pos: int, fmt: str) -> int:
    """The position after the array token at `pos`."""
    length_tag = data[pos + 1]
    if length_tag == 0xC0:
        count, start = data[pos + 2], pos + 3
    elif length_tag == 0xC1:
        count, = struct.unpack_from(fmt + "H", data, pos + 2)
        start = pos + 4
    elif length_tag == 0xC2:
        count, = struct.unpack_from(fmt + "I", data, pos + 2)
        start = pos + 6
    else:
        raise AnalysisError("bad PCL XL array length")
    return start + count * _ELEMENT[data[pos]]


def _value(data: bytes | mmap.mmap, at: int, fmt: str) -> int | float | bytes | None:
    """The value token at `at`: a scalar as a number, a ubyte array as (up to 64) bytes."""
    if at < 0:
        return None
    tag = data[at]
    if 0xC0 <= tag <= 0xC5:
        return struct.unpack_from(fmt + "BHIhif"[tag - 0xC0], data, at + 1)[0]
    if tag == 0xC8:
        end = _array_end(data, at, fmt)
        start = end - (end - at - 3 if data[at + 1] == 0xC0 else 0)
        length_bytes = {0xC0: 1, 0xC1: 2, 0xC2: 4}[data[at + 1]]
        start = at + 2 + length_bytes
        return bytes(data[start:min(end, start + 64)])
    return None
