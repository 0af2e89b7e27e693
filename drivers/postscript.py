"""PostScript: pages, page sizes, copies and per-page colour by running the document in Ghostscript
(drivers.ghostscript: a PostScript program can print any number of pages, from procedures, loops,
``copypage`` or ``/NumCopies``; comments only claim them). Sides are read from the document
(``/Duplex``, ``/Tumble``, ``%%Requirements: duplex``), as the ink device ignores them.

Without ``gs``, or when the render fails or overruns its limits, the document is "unknown" with the
reason: never an estimate.
"""

from __future__ import annotations

import re

from drivers import ghostscript
from drivers._io import Source, mapped, opened
from drivers.stats import DocumentStats, Limits, PageInfo, page

FORMAT = "application/postscript"

_NUMBER = rb"[-+]?(?:\d+\.?\d*|\.\d+)"
_DOCUMENT_MEDIA = re.compile(rb"^%%DocumentMedia:[ \t]*\S+[ \t]+(" + _NUMBER + rb")[ \t]+(" + _NUMBER + rb")", re.M)
_SIDES = re.compile(rb"/(Duplex|Tumble)\s+(true|false)|^%%Requirements:[^\r\n]*?\b(duplex(?:\(tumble\))?)", re.M)


def analyze(source: Source, limits: Limits = Limits(), *, offset: int = 0) -> DocumentStats:
    """Render the document with gs (its pages, sizes, copies, colour); read its sides, and its DSC
    media for pages whose size the program does not set."""
    with opened(source) as handle:
        rendered = ghostscript.render(handle, limits, offset=offset)
        with mapped(handle) as data:
            sides = _sides(data, offset)
            media = _DOCUMENT_MEDIA.search(data, offset)
            default = (float(media.group(1)), float(media.group(2))) if media else None
    pages = rendered.pages
    copies = {rendered_page.copies for rendered_page in pages}
    reasons: list[str] = []
    document_copies: int | None = None
    if len(copies) == 1:
        document_copies = copies.pop()
    else:  # pages with different copies: each copy is a page of its own
        pages = tuple(rendered_page for rendered_page in pages for _ in range(rendered_page.copies))
        reasons.append("pages with different copies: each copy counted as a page")
    if not rendered.sizes_known:
        reasons.append("the document replaced the page device's EndPage: each printed page counted, sizes unknown")
    if default and not (default[0] > 0 and default[1] > 0):
        default = None
    infos = tuple(_page_info(rendered_page, default, limits.color) for rendered_page in pages)
    return DocumentStats(FORMAT, reason="; ".join(reasons), pages=len(infos), page_info=infos,
                         copies=document_copies if document_copies and document_copies > 1 else None,
                         sides=sides)


def _page_info(rendered: ghostscript.RenderedPage, default: tuple[float, float] | None,
               color: bool) -> PageInfo:
    """A rendered page's PageInfo: its own size, else the DSC media, else none (the job's media)."""
    known_color = rendered.color if color else None
    if rendered.width_pt:
        return page(rendered.width_pt, rendered.height_pt, known_color)
    if default:
        return page(*default, known_color)
    return PageInfo(0, 0, None, known_color)


def _sides(data: bytes, offset: int) -> str | None:
    """The sides the document asks for (setpagedevice /Duplex and /Tumble, DSC %%Requirements)."""
    duplex: bool | None = None
    tumble = False
    for match in _SIDES.finditer(data, offset):
        if match.group(1) == b"Duplex":
            duplex = match.group(2) == b"true"
        elif match.group(1) == b"Tumble":
            tumble = match.group(2) == b"true"
        elif match.group(3):
            duplex, tumble = True, match.group(3).endswith(b"(tumble)")
    if duplex is None:
        return None
    return "one-sided" if not duplex else "two-sided-short-edge" if tumble else "two-sided-long-edge"
