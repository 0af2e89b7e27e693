"""Plain text: pages by form feeds and 66 lines a page; always monochrome, paper from the job."""

from __future__ import annotations

from drivers._io import Source, opened
from drivers.stats import DocumentStats, Limits, PageInfo

FORMAT = "text/plain"
LINES_PER_PAGE = 66
_CHUNK = 1 << 20


def analyze(source: Source, limits: Limits = Limits(), *, offset: int = 0) -> DocumentStats:
    """Count pages: every form feed ends a page, and a page holds at most 66 lines."""
    pages = 0
    lines = 0        # complete lines on the current page
    partial = False  # the current line has characters
    with opened(source) as handle:
        handle.seek(offset)
        while chunk := handle.read(_CHUNK):
            chunk = chunk.replace(b"\r\n", b"\n")
            parts = chunk.split(b"\f")
            for index, part in enumerate(parts):
                if index:  # a form feed ends the page (an empty page too)
                    pages += 1 + (lines + partial - 1) // LINES_PER_PAGE if lines + partial else 1
                    lines, partial = 0, False
                newlines = part.count(b"\n")
                if newlines:
                    lines += newlines
                    partial = not part.endswith(b"\n")
                elif part:
                    partial = True
            if pages > limits.page_cap:
                return DocumentStats(FORMAT, "unknown", f"more pages than the cap of {limits.page_cap}")
    if lines + partial:
        pages += 1 + (lines + partial - 1) // LINES_PER_PAGE
    if pages > limits.page_cap:
        return DocumentStats(FORMAT, "unknown", f"more pages than the cap of {limits.page_cap}")
    return DocumentStats(FORMAT, pages=pages, page_info=(PageInfo(0, 0, None, False),) * pages)
