"""PWG Raster and Apple URF: walk the page headers, skipping each bitmap by its compressed length.

Both encode a page as lines, each a line-repeat byte then PackBits-like packets of whole pixels:
0..127 repeat the next pixel c+1 times, 129..255 (and 128 in PWG) give 257-c literal pixels; in URF
128 fills the rest of the line with white. Pixels are not expanded: for 8-bit RGB and CMYK pages the
packets are checked for neutrality (R=G=B, C=M=Y=0) with byte slicing until a colour pixel is seen.
"""

from __future__ import annotations

import mmap
import re
import struct
from bisect import bisect_left
from collections.abc import Callable
from itertools import accumulate

from drivers._io import Source, mapped, release
from drivers.stats import (NEUTRAL_TOLERANCE, AnalysisError, DocumentStats, Limits, PageInfo, page,
                           plausible_copies)

PWG = "image/pwg-raster"
URF = "image/urf"
PWG_HEADER = 1796
URF_HEADER = 32

# PWG ColorSpace values: 1 Rgb, 3 Black, 6 Cmyk, 18 Sgray, 19 Srgb, 20 AdobeRgb, 48-62 Device1-15.
_PWG_GREY = frozenset({3, 18, 48})
_PWG_RGB = frozenset({1, 19, 20})
_PWG_CMYK = frozenset({6})
# URF ColorSpace: 0 sGray, 1 sRGB, 2 CIELab, 3 AdobeRGB, 4 Gray, 5 RGB, 6 CMYK.
_URF_GREY = frozenset({0, 4})
_URF_RGB = frozenset({1, 3, 5})
_URF_CMYK = frozenset({6})


def _neutral_rgb(pixels: bytes) -> bool:
    if pixels[0::3] == pixels[1::3] == pixels[2::3]:
        return True
    return _near_neutral(pixels, 3)


def _neutral_cmyk(pixels: bytes) -> bool:
    if not pixels[0::4].strip(b"\0") and not pixels[1::4].strip(b"\0") and not pixels[2::4].strip(b"\0"):
        return True
    return _near_neutral(pixels, 4)


def _near_neutral(pixels: bytes, n: int) -> bool:
    """Within NEUTRAL_TOLERANCE: R, G, B equal (n=3) or C, M, Y zero (n=4); colour management
    turns a pure grey or K-only colour into values a few levels apart."""
    tolerance = NEUTRAL_TOLERANCE
    for i in range(0, len(pixels) - n + 1, n):
        if n == 3:
            r, g, b = pixels[i], pixels[i + 1], pixels[i + 2]
            if max(r, g, b) - min(r, g, b) > tolerance:
                return False
        elif max(pixels[i], pixels[i + 1], pixels[i + 2]) > tolerance:
            return False
    return True


def walk_bitmap(data: bytes | mmap.mmap, pos: int, height: int, bytes_per_line: int, unit: int,
                urf: bool, check: str | None) -> tuple[int, bool]:
    """Skip one page's compressed bitmap starting at `pos`; (end position, saw a colour pixel).

    `check` is "rgb" or "cmyk" to test 8-bit pixels for neutrality, None to only skip; once a
    colour pixel is seen the rest of the page is only skipped. Runs of repeat packets (most of a
    rendered page) are handled with slices in C: a regex finds the run, the pixel counts are
    summed with itertools.accumulate and the line end found with bisect.
    Raises AnalysisError when the data ends early or a packet overruns its line.
    """
    per_line = bytes_per_line // unit if unit > 1 else bytes_per_line
    if check is None and unit == 1:
        return _skip_bytes(data, pos, height, per_line, urf), False
    run = _repeat_run(unit)
    step = unit + 1
    neutral_run = _neutral_rgb_run if check == "rgb" else _neutral_cmyk_run if check == "cmyk" else None
    neutral_literal = _neutral_rgb if check == "rgb" else _neutral_cmyk
    color = False
    end = len(data)
    y = 0
    try:
        while y < height:
            y += data[pos] + 1
            pos += 1
            x = 0
            while x < per_line:
                code = data[pos]
                if code < 128 and (pos + 4 * step >= end or data[pos + step] >= 128
                                   or data[pos + 2 * step] >= 128 or data[pos + 3 * step] >= 128):
                    # fewer than 4 repeat packets in a row: cheaper here than through the run path
                    if neutral_run is not None and not neutral_run(data, pos, pos + step):
                        color, neutral_run = True, None
                    pos += step
                    x += code + 1
                    continue
                match = run(data, pos) if code < 128 else None
                if match is not None:
                    stop = match.end()
                    counts = list(accumulate(data[pos:stop:step].translate(_PLUS_ONE)))
                    need = per_line - x
                    k = bisect_left(counts, need)
                    if k < len(counts):
                        if counts[k] != need:
                            raise AnalysisError("raster packet overruns its line")
                        stop = pos + (k + 1) * step
                        x = per_line
                    else:
                        x += counts[-1]
                    if neutral_run is not None and not neutral_run(data, pos, stop):
                        color, neutral_run = True, None
                    pos = stop
                    continue
                if code == 128 and urf:
                    pos += 1
                    x = per_line
                    continue
                count = 257 - code
                stop = pos + 1 + count * unit
                if neutral_run is not None and not neutral_literal(data[pos + 1:stop]):
                    color, neutral_run = True, None
                pos = stop
                x += count
            if x != per_line:
                raise AnalysisError("raster packet overruns its line")
    except IndexError:
        raise AnalysisError("raster data truncated") from None
    if pos > end:
        raise AnalysisError("raster data truncated")
    return pos, color


def _skip_bytes(data: bytes | mmap.mmap, pos: int, height: int, per_line: int, urf: bool) -> int:
    """Skip a bitmap of 1-byte pixel units (1-bit, 8-bit grey) packet by packet: such pages
    alternate short repeat and literal packets, where the plain loop is the fastest.

    PWG: each packet adds a fixed number of pixels and bytes given by its code, read from two
    tables instead of branching. While more than the largest packet (129 pixels) is left on the
    line, two packets are taken per turn (the first cannot end the line). URF, where code 128 ends
    the line, keeps the branching loop."""
    if urf:
        return _skip_bytes_urf(data, pos, height, per_line)
    end = len(data)
    pixels, advance = _PIXELS, _ADVANCE
    safe = per_line - 129
    y = 0
    try:
        while y < height:
            y += data[pos] + 1
            pos += 1
            x = 0
            while x < safe:
                code = data[pos]
                x += pixels[code]
                pos += advance[code]
                code = data[pos]
                x += pixels[code]
                pos += advance[code]
            while x < per_line:
                code = data[pos]
                x += pixels[code]
                pos += advance[code]
            if x != per_line:
                raise AnalysisError("raster packet overruns its line")
    except IndexError:
        raise AnalysisError("raster data truncated") from None
    if pos > end:
        raise AnalysisError("raster data truncated")
    return pos


# PWG packet code -> pixels covered and bytes taken (1-byte pixels): 0..127 repeat the next byte
# code+1 times (2 bytes), 128..255 give 257-code literal bytes (1 + 257-code bytes).
_PIXELS = [code + 1 for code in range(128)] + [257 - code for code in range(128, 256)]
_ADVANCE = [2] * 128 + [258 - code for code in range(128, 256)]


def _skip_bytes_urf(data: bytes | mmap.mmap, pos: int, height: int, per_line: int) -> int:
    """_skip_bytes for URF (code 128 fills the rest of the line)."""
    end = len(data)
    y = 0
    try:
        while y < height:
            y += data[pos] + 1
            pos += 1
            x = 0
            while x < per_line:
                code = data[pos]
                if code < 128:
                    pos += 2
                    x += code + 1
                elif code == 128:
                    pos += 1
                    x = per_line
                else:
                    pos += 258 - code
                    x += 257 - code
            if x != per_line:
                raise AnalysisError("raster packet overruns its line")
    except IndexError:
        raise AnalysisError("raster data truncated") from None
    if pos > end:
        raise AnalysisError("raster data truncated")
    return pos


_PLUS_ONE = bytes(range(1, 129)) + bytes(128)  # repeat code c covers c+1 pixels (c < 128)
_RUNS: dict[int, Callable[..., re.Match[bytes] | None]] = {}


def _repeat_run(unit: int) -> Callable[..., re.Match[bytes] | None]:
    """`match(data, pos)` of a run of repeat packets (code < 128, then one pixel of `unit` bytes)."""
    if unit not in _RUNS:
        _RUNS[unit] = re.compile(rb"(?:[\x00-\x7f][\x00-\xff]{%d})+" % unit).match
    return _RUNS[unit]


def _neutral_rgb_run(data: bytes | mmap.mmap, start: int, stop: int) -> bool:
    """Whether every pixel of the repeat packets in [start, stop) (1 code + 3 bytes) is grey."""
    red, green, blue = data[start + 1:stop:4], data[start + 2:stop:4], data[start + 3:stop:4]
    if red == green == blue:
        return True
    return all(max(r, g, b) - min(r, g, b) <= NEUTRAL_TOLERANCE for r, g, b in zip(red, green, blue))


def _neutral_cmyk_run(data: bytes | mmap.mmap, start: int, stop: int) -> bool:
    """Whether no repeat packet in [start, stop) (1 code + 4 bytes) has C, M or Y ink."""
    inks = (data[start + 1:stop:5], data[start + 2:stop:5], data[start + 3:stop:5])
    if not any(ink.strip(b"\0") for ink in inks):
        return True
    return max(max(ink) for ink in inks) <= NEUTRAL_TOLERANCE


def _check_geometry(width: int, height: int, bpp: int, bytes_per_line: int, limits: Limits) -> int:
    if width <= 0 or height <= 0:
        raise AnalysisError("raster page with no pixels")
    if width * height > limits.max_raster_pixels:
        raise AnalysisError(f"raster page of {width}x{height} pixels exceeds the limit")
    if bpp not in (1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64):
        raise AnalysisError(f"unsupported raster bits per pixel {bpp}")
    if bytes_per_line != (width * bpp + 7) // 8:
        raise AnalysisError("raster bytes per line does not match width and depth")
    return max(1, bpp // 8)


def _color_mode(space: int, bpp: int, grey: frozenset[int], rgb: frozenset[int],
                cmyk: frozenset[int]) -> tuple[bool | None, str | None]:
    """(colour if decided by the space alone, else None; the neutrality check to run)."""
    if space in grey:
        return False, None
    if space in rgb and bpp == 24:
        return None, "rgb"
    if space in cmyk and bpp == 32:
        return None, "cmyk"
    return True, None  # other colour spaces or depths: colour by intent


def analyze_pwg(source: Source, limits: Limits = Limits(), *, offset: int = 0) -> DocumentStats:
    """Pages, sizes, copies, duplex and colour of a PWG Raster document."""
    with mapped(source) as data:
        if data[offset:offset + 4] != b"RaS2":
            raise AnalysisError("not PWG Raster (no RaS2 sync word)")
        pos = offset + 4
        released = 0
        pages: list[PageInfo] = []
        copies: int | None = None
        sides: str | None = None
        while pos < len(data):
            header = data[pos:pos + PWG_HEADER]
            if len(header) < PWG_HEADER:
                raise AnalysisError("PWG page header truncated")
            if header[:9] != b"PwgRaster":
                raise AnalysisError("bad PWG page header")
            duplex, = struct.unpack_from(">I", header, 272)
            num_copies, = struct.unpack_from(">I", header, 340)
            pw, ph = struct.unpack_from(">II", header, 352)
            tumble, = struct.unpack_from(">I", header, 368)
            width, height = struct.unpack_from(">II", header, 372)
            bpp, bpl, _order, space = struct.unpack_from(">IIII", header, 388)
            unit = _check_geometry(width, height, bpp, bpl, limits)
            decided, check = _color_mode(space, bpp, _PWG_GREY, _PWG_RGB, _PWG_CMYK)
            pos, colored = walk_bitmap(data, pos + PWG_HEADER, height, bpl, unit, False,
                                       check if limits.color else None)
            color = decided if decided is not None else (colored if limits.color else True)
            pages.append(page(pw, ph, color))
            released = release(data, pos, released)
            if not pages[1:]:
                copies = plausible_copies(num_copies)
                sides = ("one-sided" if not duplex else
                         "two-sided-short-edge" if tumble else "two-sided-long-edge")
            if len(pages) > limits.page_cap:
                raise AnalysisError(f"more pages than the cap of {limits.page_cap}")
        if not pages:
            raise AnalysisError("PWG Raster without pages")
        return DocumentStats(PWG, pages=len(pages), page_info=tuple(pages),
                             copies=copies, sides=sides)


def analyze_urf(source: Source, limits: Limits = Limits(), *, offset: int = 0) -> DocumentStats:
    """Pages, sizes (pixels / dpi), duplex and colour of an Apple URF document."""
    with mapped(source) as data:
        if data[offset:offset + 8] != b"UNIRAST\0":
            raise AnalysisError("not URF (no UNIRAST magic)")
        pos = offset + 12
        released = 0
        pages: list[PageInfo] = []
        sides: str | None = None
        while pos < len(data):
            header = data[pos:pos + URF_HEADER]
            if len(header) < URF_HEADER:
                raise AnalysisError("URF page header truncated")
            bpp, space, duplex = header[0], header[1], header[2]
            width, height, dpi = struct.unpack_from(">III", header, 12)
            if not 1 <= dpi <= 10_000:
                raise AnalysisError(f"URF resolution {dpi} dpi")
            unit = _check_geometry(width, height, bpp, (width * bpp + 7) // 8, limits)
            decided, check = _color_mode(space, bpp, _URF_GREY, _URF_RGB, _URF_CMYK)
            pos, colored = walk_bitmap(data, pos + URF_HEADER, height, (width * bpp + 7) // 8,
                                       unit, True, check if limits.color else None)
            color = decided if decided is not None else (colored if limits.color else True)
            pages.append(page(width * 72 / dpi, height * 72 / dpi, color))
            released = release(data, pos, released)
            if not pages[1:]:
                sides = {2: "two-sided-short-edge", 3: "two-sided-long-edge"}.get(
                    duplex, "one-sided")
            if len(pages) > limits.page_cap:
                raise AnalysisError(f"more pages than the cap of {limits.page_cap}")
        if not pages:
            raise AnalysisError("URF without pages")
        return DocumentStats(URF, pages=len(pages), page_info=tuple(pages), sides=sides)
