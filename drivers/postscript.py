"""PostScript: pages, media, copies and duplex from DSC comments, with a showpage estimate as fallback.

Colour needs an interpreter in general: pages report colour None, except in a file with no colour
operator, colour space name or way to build code at run time (filters, eexec, cvx, token, run,
binary tokens) anywhere, whose pages are all mono.
"""

from __future__ import annotations

import re

from drivers._io import Source, mapped, release
from drivers.stats import AnalysisError, DocumentStats, Limits, PageInfo, page, plausible_copies

FORMAT = "application/postscript"

_NUMBER = rb"[-+]?(?:\d+\.?\d*|\.\d+)"
_REQ_COPIES = re.compile(rb"numcopies\((\d+)\)")
_BBOX = re.compile(rb"(" + _NUMBER + rb")\s+(" + _NUMBER + rb")\s+(" + _NUMBER + rb")\s+(" + _NUMBER + rb")")
_MAYBE_COLOR = re.compile(
    rb"setrgbcolor|setcmykcolor|sethsbcolor|setcolorspace|setcolor|colorimage|setpattern|makepattern"
    rb"|shfill|DeviceRGB|DeviceCMYK|DeviceN|Separation|Indexed|CIEBased|Pattern|filter|eexec|cvx"
    rb"|token|\brun\b|BeginBinary|[\x80-\x9f]")
_SHOWPAGE_TOKENS = re.compile(rb"%[^\r\n]*|\((?:[^()\\]|\\.)*\)|[{}]|\bshowpage\b|\bcopypage\b")


def _size_from_bbox(value: bytes) -> tuple[float, float] | None:
    match = _BBOX.search(value)
    if not match:
        return None
    x0, y0, x1, y1 = (float(v) for v in match.groups())
    return (x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def _int(value: bytes) -> int | None:
    try:
        number = int(value.split()[0])
    except (ValueError, IndexError):
        return None
    return number


_DSC = re.compile(
    rb"^%%(Pages|PageMedia|PageBoundingBox|PageHiResBoundingBox|Page|DocumentMedia|BoundingBox"
    rb"|Requirements|\+)(?::|(?<=\+))[ \t]*([^\r\n]*)"
    rb"|/PageSize\s*\[\s*(" + _NUMBER + rb")\s+(" + _NUMBER + rb")\s*\]"
    rb"|/(Duplex|Tumble)\s+(true|false)"
    rb"|/NumCopies\s+(\d+)|/#copies\s+(\d+)\s+def",
    re.M)


def analyze(source: Source, limits: Limits = Limits(), *, offset: int = 0) -> DocumentStats:
    """Read the DSC structure; fall back to counting showpage when it is missing or contradictory."""
    with mapped(source) as data:
        return _analyze(data, offset, limits)


def _analyze(data: bytes, offset: int, limits: Limits) -> DocumentStats:
    size = len(data) - offset
    declared: int | None = None
    page_lines = 0
    last_ordinal = 0
    media: dict[bytes, tuple[float, float]] = {}
    default_media: tuple[float, float] | None = None
    doc_bbox: tuple[float, float] | None = None
    page_sizes: list[tuple[float, float] | None] = []
    current: tuple[float, float] | None = None
    copies: int | None = None
    duplex: bool | None = None
    tumble = False
    last_key = b""
    released = 0
    for match in _DSC.finditer(data, offset):
        key = match.group(1)
        if key is None:
            if match.group(3) is not None:
                current = (float(match.group(3)), float(match.group(4)))
                if page_lines == 0:
                    default_media = current
            elif match.group(5) == b"Duplex":
                duplex = match.group(6) == b"true"
            elif match.group(5) == b"Tumble":
                tumble = match.group(6) == b"true"
            else:
                copies = plausible_copies(int(match.group(7) or match.group(8))) or copies
            continue
        value = match.group(2).strip()
        if key == b"+":
            key = last_key
        else:
            last_key = key
        if key == b"Page":
            ordinals = value.split()
            ordinal = _int(ordinals[-1]) if ordinals else None
            if ordinal is None or ordinal > last_ordinal or page_lines == 0:
                if page_lines:
                    page_sizes.append(current)
                page_lines += 1
                current = None
                released = release(data, match.start(), released)
                if page_lines > limits.page_cap:
                    raise AnalysisError(f"more pages than the cap of {limits.page_cap}")
            last_ordinal = ordinal or last_ordinal
        elif key == b"Pages" and not value.startswith(b"(atend)"):
            number = _int(value)
            if number is not None and number >= 0:  # "%%Pages: -1" is no page count
                declared = number
        elif key == b"DocumentMedia":
            parts = value.split()
            if len(parts) >= 3:
                try:
                    dims = (float(parts[1]), float(parts[2]))
                except ValueError:
                    continue
                media[parts[0]] = dims
                default_media = default_media or dims
        elif key == b"PageMedia":
            current = media.get(value.split()[0]) if value else current
        elif key in (b"PageBoundingBox", b"PageHiResBoundingBox") and current is None and not media:
            current = _size_from_bbox(value)
        elif key == b"BoundingBox" and doc_bbox is None:
            doc_bbox = _size_from_bbox(value)
        elif key == b"Requirements":
            found = _REQ_COPIES.search(value)
            if found:
                copies = plausible_copies(int(found.group(1))) or copies
            if b"duplex" in value:
                duplex = True
                tumble = b"duplex(tumble)" in value
    if page_lines:
        page_sizes.append(current)
    reasons: list[str] = []
    estimated = False
    pages = page_lines
    if (declared is not None and declared != page_lines) or (declared is None and page_lines == 0):
        showpages = _count_showpage(data, offset, limits)
        if declared is not None and page_lines == 0 and showpages == 0 \
                and declared * limits.min_bytes_per_page <= size:
            pages = declared
        else:
            reasons.append("no DSC page comments" if declared is None else
                           f"%%Pages says {declared} but {page_lines} %%Page comments found")
            reasons.append("estimated from showpage operators outside procedures")
            pages, estimated = showpages, True
            page_sizes = []
    if pages > limits.page_cap:
        raise AnalysisError(f"more pages than the cap of {limits.page_cap}")
    fallback = default_media or doc_bbox
    color = None if _MAYBE_COLOR.search(data, offset) else False
    infos: list[PageInfo] = []
    for index in range(pages):
        dims = page_sizes[index] if index < len(page_sizes) and page_sizes[index] else fallback
        infos.append(page(*dims, color) if dims else PageInfo(0, 0, None, color))
    sides = None if duplex is None else (
        "one-sided" if not duplex else "two-sided-short-edge" if tumble else "two-sided-long-edge")
    return DocumentStats(FORMAT, reason="; ".join(reasons), pages=pages, page_info=tuple(infos),
                         copies=copies, sides=sides, estimated=estimated)


def _count_showpage(data: bytes, offset: int, limits: Limits) -> int:
    """showpage/copypage operators outside procedure bodies, strings and comments (an estimate:
    procedures that call showpage, loops and conditionals are not followed)."""
    depth = 0
    count = 0
    for match in _SHOWPAGE_TOKENS.finditer(data, offset):
        token = match.group()
        if token == b"{":
            depth += 1
        elif token == b"}":
            depth = max(0, depth - 1)
        elif token in (b"showpage", b"copypage") and depth == 0:
            count += 1
            if count > limits.page_cap:
                raise AnalysisError(f"more pages than the cap of {limits.page_cap}")
    return count
