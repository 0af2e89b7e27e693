"""JPEG and PNG: one page each; colour from the JPEG components or the PNG colour type and palette."""

from __future__ import annotations

import struct

from drivers._io import Source, opened
from drivers.stats import AnalysisError, DocumentStats, Limits, PageInfo

JPEG = "image/jpeg"
PNG = "image/png"
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_MAX_SCAN = 16 * 1024 * 1024


def _one_page(fmt: str, color: bool) -> DocumentStats:
    # An image is printed on the job's media, scaled: the paper size comes from the job.
    return DocumentStats(fmt, pages=1, page_info=(PageInfo(0, 0, None, color),))


def analyze_jpeg(source: Source, limits: Limits = Limits(), *, offset: int = 0) -> DocumentStats:
    """One page; mono when the frame has one component (greyscale), colour with 3 or 4."""
    with opened(source) as handle:
        handle.seek(offset)
        if handle.read(2) != b"\xff\xd8":
            raise AnalysisError("not a JPEG (no SOI marker)")
        scanned = 2
        while scanned < _MAX_SCAN:
            byte = handle.read(1)
            if not byte:
                break
            if byte != b"\xff":
                scanned += 1
                continue
            marker = handle.read(1)
            while marker == b"\xff":
                marker = handle.read(1)
            if not marker:
                break
            code = marker[0]
            if code in (0xD8, 0x01) or 0xD0 <= code <= 0xD7:
                continue
            length_bytes = handle.read(2)
            if len(length_bytes) < 2:
                break
            (length,) = struct.unpack(">H", length_bytes)
            if length < 2:
                raise AnalysisError("corrupt JPEG segment length")
            body = handle.read(length - 2)
            if code in _SOF:
                if len(body) < 6:
                    break
                components = body[5]
                if components not in (1, 3, 4):
                    raise AnalysisError(f"JPEG with {components} components")
                return _one_page(JPEG, components != 1)
            scanned += length + 2
    raise AnalysisError("JPEG without a frame header (truncated?)")


def analyze_png(source: Source, limits: Limits = Limits(), *, offset: int = 0) -> DocumentStats:
    """One page; mono for grey colour types, colour for RGB, palettes by their entries."""
    with opened(source) as handle:
        handle.seek(offset)
        if handle.read(8) != b"\x89PNG\r\n\x1a\n":
            raise AnalysisError("not a PNG (bad signature)")
        color_type: int | None = None
        while True:
            head = handle.read(8)
            if len(head) < 8:
                break
            length, kind = struct.unpack(">I4s", head)
            if length > 0x7FFFFFFF:
                raise AnalysisError("corrupt PNG chunk length")
            if kind == b"IHDR":
                body = handle.read(length)
                if len(body) < 13:
                    break
                color_type = body[9]
                if color_type in (0, 4):
                    return _one_page(PNG, False)
                if color_type in (2, 6):
                    return _one_page(PNG, True)
                if color_type != 3:
                    raise AnalysisError(f"PNG colour type {color_type}")
            elif kind == b"PLTE" and color_type == 3:
                body = handle.read(length)
                entries = [body[i:i + 3] for i in range(0, len(body) - 2, 3)]
                neutral = all(e[0] == e[1] == e[2] for e in entries)
                return _one_page(PNG, not neutral)
            elif kind in (b"IDAT", b"IEND"):
                break
            else:
                handle.seek(length, 1)
            handle.seek(4, 1)  # CRC
    raise AnalysisError("PNG without a usable header (truncated?)")
