"""Page statistics values, paper-size naming and the one place job options combine with a document."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Status = Literal["ok", "unknown"]
Sides = Literal["one-sided", "two-sided-long-edge", "two-sided-short-edge"]
SIDES: tuple[str, ...] = ("one-sided", "two-sided-long-edge", "two-sided-short-edge")

MM_PER_PT = 25.4 / 72

#: Rendered rasters: a pixel whose R, G, B lie within this many levels (of 255) of each other, or
#: whose C, M, Y are at most this, is grey (colour management tints a pure grey by a few levels).
NEUTRAL_TOLERANCE = 8


class AnalysisError(Exception):
    """A document cannot be analysed; the message is the `reason` reported with status "unknown"."""


@dataclass(frozen=True)
class Limits:
    """Bounds every analyser respects (pages, pages per byte, decoded bytes, image pixels)."""

    page_cap: int = 100_000
    """More pages than this in one document: "unknown"."""
    min_bytes_per_page: int = 8
    """A document claiming more than size/min_bytes_per_page pages is lying: "unknown"."""
    max_decoded_bytes: int = 64 * 1024 * 1024
    """Cap on any one decompressed stream (PDF content, images)."""
    max_image_pixels: int = 16_000_000
    """Images larger than this are not decoded for a neutrality check (their colour space decides)."""
    max_raster_pixels: int = 1_000_000_000
    """A raster page header claiming more pixels than this is hostile: "unknown"."""
    color: bool = True
    """Detect colour (PDF content streams and images); False counts pages and sizes only."""
    render_seconds: float = 60.0
    """Time (CPU and wall clock) a document may take in an interpreter we run (Ghostscript)."""


@dataclass(frozen=True)
class PageInfo:
    """One page: its size in points, PWG size name (or None) and colour (None when unknown)."""

    width_pt: float
    height_pt: float
    size_name: str | None = None
    color: bool | None = None


@dataclass(frozen=True)
class DocumentStats:
    """What one document says about itself; `copies`/`sides` are None unless the document encodes them."""

    format: str
    status: Status = "ok"
    reason: str = ""
    pages: int = 0
    page_info: tuple[PageInfo, ...] = ()
    copies: int | None = None
    sides: str | None = None

    @property
    def color_pages(self) -> int:
        """Pages known to use colour."""
        return sum(1 for page in self.page_info if page.color is True)

    @property
    def mono_pages(self) -> int:
        """Pages known to be monochrome (black, white and grey only)."""
        return sum(1 for page in self.page_info if page.color is False)

    @property
    def color_known(self) -> bool:
        """Whether every page's colour is known."""
        return len(self.page_info) == self.pages and all(p.color is not None for p in self.page_info)

    @property
    def duplex(self) -> bool | None:
        """True/False when the document encodes sides, else None."""
        return None if self.sides is None else self.sides != "one-sided"

    def size_counts(self) -> dict[str, int]:
        """Pages per paper size name (``custom_WxHmm`` for others, ``job-media`` when the job decides)."""
        return dict(Counter(
            page.size_name or (custom_name(page.width_pt, page.height_pt) if page.width_pt
                               else "job-media")
            for page in self.page_info))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (round-trips through :meth:`from_dict`)."""
        data = asdict(self)
        data["page_info"] = [asdict(page) for page in self.page_info]
        data["color_pages"] = self.color_pages
        data["mono_pages"] = self.mono_pages
        data["sizes"] = self.size_counts()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DocumentStats:
        """The inverse of :meth:`to_dict`."""
        pages = tuple(PageInfo(**page) for page in data.get("page_info", ()))
        names = ("format", "status", "reason", "pages", "copies", "sides")
        return cls(page_info=pages, **{name: data[name] for name in names if name in data})


MAX_COPIES = 9999


def plausible_copies(value: object) -> int | None:
    """A copies count a document encodes, or None when absent or outside 1..MAX_COPIES."""
    return value if isinstance(value, int) and 1 <= value <= MAX_COPIES else None


def unknown(format: str, reason: str, **known: Any) -> DocumentStats:
    """A DocumentStats with status "unknown" and its reason (page counts are zero)."""
    return DocumentStats(format=format, status="unknown", reason=reason, **known)


# -- paper sizes -----------------------------------------------------------------------------------

#: PWG 5101.1 self-describing names and their portrait size in millimetres.
PWG_SIZES: tuple[tuple[str, float, float], ...] = (
    ("iso_a3_297x420mm", 297, 420),
    ("iso_a4_210x297mm", 210, 297),
    ("iso_a5_148x210mm", 148, 210),
    ("iso_a6_105x148mm", 105, 148),
    ("iso_b4_250x353mm", 250, 353),
    ("iso_b5_176x250mm", 176, 250),
    ("jis_b4_257x364mm", 257, 364),
    ("jis_b5_182x257mm", 182, 257),
    ("iso_c5_162x229mm", 162, 229),
    ("iso_dl_110x220mm", 110, 220),
    ("na_letter_8.5x11in", 215.9, 279.4),
    ("na_legal_8.5x14in", 215.9, 355.6),
    ("na_ledger_11x17in", 279.4, 431.8),
    ("na_executive_7.25x10.5in", 184.15, 266.7),
    ("na_invoice_5.5x8.5in", 139.7, 215.9),
    ("na_number-10_4.125x9.5in", 104.775, 241.3),
    ("na_index-4x6_4x6in", 101.6, 152.4),
)

#: Tolerance in millimetres when matching a size (raster pixel rounding, driver rounding).
SIZE_TOLERANCE_MM = 2.0


def paper_name(width_pt: float, height_pt: float) -> str | None:
    """The PWG name of a paper size in points (either orientation), or None when not a known size."""
    short, long = sorted((width_pt * MM_PER_PT, height_pt * MM_PER_PT))
    for name, w, h in PWG_SIZES:
        if abs(short - w) <= SIZE_TOLERANCE_MM and abs(long - h) <= SIZE_TOLERANCE_MM:
            return name
    return None


def custom_name(width_pt: float, height_pt: float) -> str:
    """A PWG-style name for a size with no standard name: ``custom_WxHmm`` (rounded mm)."""
    return f"custom_{round(width_pt * MM_PER_PT)}x{round(height_pt * MM_PER_PT)}mm"


def page(width_pt: float, height_pt: float, color: bool | None = None) -> PageInfo:
    """A PageInfo with its size name looked up."""
    w, h = round(width_pt, 2), round(height_pt, 2)
    return PageInfo(w, h, paper_name(w, h), color)


# -- combining with the job ------------------------------------------------------------------------


@dataclass(frozen=True)
class JobOptions:
    """What the job (IPP attributes, LPD control file, PJL header) asks for; None = not said."""

    copies: int | None = None
    sides: str | None = None
    number_up: int = 1


@dataclass(frozen=True)
class JobStats:
    """Accounting figures of one document as printed (copies included unless named per copy)."""

    pages: int
    copies: int
    sides: str
    number_up: int
    impressions_per_copy: int
    impressions: int
    sheets: int
    color_impressions: int | None
    """Impressions with colour on them; None when the colour of any impression is unknown."""
    mono_impressions: int | None
    """Impressions in black, white and grey only; None when the colour of any impression is unknown."""
    copies_source: str
    sides_source: str
    status: Status = "ok"
    reason: str = ""
    sizes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def combine(document: DocumentStats, job: JobOptions = JobOptions()) -> JobStats:
    """The accounting rules, in one place.

    * copies: the document's own copies when it encodes more than one (PCL ``ESC&l#X``, PCL XL
      PageCopies, PostScript ``/NumCopies``, PWG NumCopies, PJL COPIES/QTY) -- drivers write an
      explicit 1 routinely, which does not override; else the job's copies; else 1.
    * sides: the document's when it encodes them (PCL ``ESC&l#S``, PCL XL duplex mode, PostScript
      ``/Duplex``, raster headers, PJL DUPLEX); else the job's; else one-sided.
    * number-up (job only): impressions per copy = ceil(pages / number_up); an impression is colour
      when any page on it is colour, mono when every page on it is mono; when any impression's colour
      is unknown, the colour and mono counts are None (unknown colour is never counted as mono).
    * sheets per copy = ceil(impressions per copy / 2) when two-sided, else impressions per copy;
      each copy starts on a new sheet. Totals are per copy times copies.
    """
    if document.copies is not None and document.copies > 1:
        copies, copies_source = document.copies, "document"
    elif job.copies is not None and job.copies >= 1:
        copies, copies_source = job.copies, "job"
    else:
        copies, copies_source = 1, "default"
    if document.sides is not None:
        sides, sides_source = document.sides, "document"
    elif job.sides in SIDES:
        sides, sides_source = str(job.sides), "job"
    else:
        sides, sides_source = "one-sided", "default"
    number_up = max(1, job.number_up or 1)
    pages = document.pages
    per_copy = math.ceil(pages / number_up)
    color_per_copy, mono_per_copy = impression_colours(document, number_up)
    sheets_per_copy = math.ceil(per_copy / 2) if sides != "one-sided" else per_copy
    return JobStats(
        pages=pages, copies=copies, sides=sides, number_up=number_up,
        impressions_per_copy=per_copy, impressions=per_copy * copies,
        sheets=sheets_per_copy * copies,
        color_impressions=None if color_per_copy is None else color_per_copy * copies,
        mono_impressions=None if mono_per_copy is None else mono_per_copy * copies,
        copies_source=copies_source, sides_source=sides_source,
        status=document.status, reason=document.reason, sizes=document.size_counts(),
    )


def impression_colours(document: DocumentStats, number_up: int = 1) -> tuple[int | None, int | None]:
    """Colour and mono impressions of one copy of `document`, or (None, None) when the colour of
    any impression is unknown (a page without colour, or fewer page details than pages)."""
    if len(document.page_info) != document.pages:
        return (None, None) if document.pages else (0, 0)
    color = mono = 0
    for start in range(0, document.pages, max(1, number_up)):
        sheet = [p.color for p in document.page_info[start:start + max(1, number_up)]]
        if any(value is True for value in sheet):
            color += 1
        elif all(value is False for value in sheet):
            mono += 1
        else:
            return None, None
    return color, mono


def with_pjl(document: DocumentStats, copies: int | None, duplex: bool | None,
             binding: str | None, color: bool | None = None) -> DocumentStats:
    """Apply a PJL wrapper where the PDL inside did not say: COPIES/QTY, DUPLEX/BINDING; and
    RENDERMODE=GRAYSCALE (or PLANESINUSE=1): the device prints every page in grey, so every page
    is mono, whatever colour the PDL inside draws with."""
    changes: dict[str, Any] = {}
    if copies is not None and (document.copies is None or document.copies <= 1):
        changes["copies"] = copies
    if duplex is not None and document.sides is None:
        changes["sides"] = ("one-sided" if not duplex else
                            "two-sided-short-edge" if binding == "shortedge" else "two-sided-long-edge")
    if color is False and any(p.color is not False for p in document.page_info):
        changes["page_info"] = tuple(replace(p, color=False) for p in document.page_info)
    return replace(document, **changes) if changes else document
