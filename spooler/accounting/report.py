"""Usage reports from the accounting records: the sums behind `spooler stats` (by user, day, route,
mode; table, CSV, JSON) and the PDF of `spooler report --pdf` (reportlab, with charts).

`summarize` is pure. Figures are summed over completed jobs whose figures are known; completed jobs
with unknown figures are counted apart ("unknown"), never estimated; pages printed whose colour is
unknown are counted apart too ("colour unknown"), never as mono; canceled and aborted jobs are
counted, not their pages. Days are local calendar days of the job's end.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time as day_time, timedelta
from pathlib import Path
from typing import Any

GROUPS = ("user", "day", "route", "mode")
FIGURES = ("pages", "impressions", "sheets", "color_pages", "mono_pages", "color_unknown_pages")
COUNTS = ("jobs", "completed", "canceled", "aborted", "unknown")
COLUMNS = (*COUNTS, *FIGURES)


class BadPeriod(ValueError):
    """A --since/--until that is not a date (YYYY-MM-DD) or an ISO 8601 time."""


def parse_moment(text: str, *, end: bool = False) -> float:
    """Seconds since the epoch from "YYYY-MM-DD" (local midnight; with `end`, the midnight after, so
    that --until includes the day) or from an ISO 8601 time (local when it has no offset)."""
    value = text.strip()
    try:
        day = date.fromisoformat(value)
    except ValueError:
        pass
    else:
        moment = datetime.combine(day + timedelta(days=1) if end else day, day_time())
        return moment.timestamp()
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise BadPeriod(f"not a date (YYYY-MM-DD) or an ISO 8601 time: {text!r}") from None


def day_of(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).date().isoformat()


def group_key(record: dict[str, Any], group: str) -> str:
    if group == "day":
        return day_of(float(record["_finished_at"]))
    return str(record.get(group) or "-")


@dataclass
class Row:
    key: tuple[str, ...]
    jobs: int = 0
    completed: int = 0
    canceled: int = 0
    aborted: int = 0
    unknown: int = 0
    pages: int = 0
    impressions: int = 0
    sheets: int = 0
    color_pages: int = 0
    mono_pages: int = 0
    color_unknown_pages: int = 0
    """Pages printed (impressions) of counted jobs whose colour is unknown: in neither colour nor mono."""

    def add(self, record: dict[str, Any]) -> None:
        self.jobs += 1
        outcome = record.get("outcome")
        if outcome == "canceled":
            self.canceled += 1
        elif outcome == "aborted":
            self.aborted += 1
        elif outcome == "completed":
            self.completed += 1
            if record.get("analysis") == "ok":
                for name in ("pages", "impressions", "sheets", "color_pages", "mono_pages"):
                    setattr(self, name, getattr(self, name) + int(record.get(name) or 0))
                if record.get("color_pages") is None or record.get("mono_pages") is None:
                    self.color_unknown_pages += int(record.get("impressions") or 0)
            else:
                self.unknown += 1

    def as_dict(self, by: Sequence[str]) -> dict[str, Any]:
        return dict(zip(by, self.key)) | {name: getattr(self, name) for name in COLUMNS}


def summarize(records: Iterable[dict[str, Any]], by: Sequence[str]) -> tuple[list[Row], Row]:
    """Rows grouped by `by` (sorted by key) and the total row."""
    for group in by:
        if group not in GROUPS:
            raise ValueError(f"cannot group by {group!r} (one of {', '.join(GROUPS)})")
    rows: dict[tuple[str, ...], Row] = {}
    total = Row(("total",))
    for record in records:
        key = tuple(group_key(record, group) for group in by)
        rows.setdefault(key, Row(key)).add(record)
        total.add(record)
    return [rows[key] for key in sorted(rows)], total


def as_table(rows: list[Row], total: Row, by: Sequence[str]) -> list[list[str]]:
    lines = [[*row.key, *(str(getattr(row, name)) for name in COLUMNS)] for row in rows]
    if rows:
        label = ["TOTAL"] + [""] * (len(by) - 1)
        lines.append([*label, *(str(getattr(total, name)) for name in COLUMNS)])
    return lines


def headers(by: Sequence[str]) -> list[str]:
    names = {"color_pages": "COLOUR", "mono_pages": "MONO", "color_unknown_pages": "COLOUR?", "unknown": "UNKNOWN"}
    return [group.upper() for group in by] + [names.get(name, name.upper()) for name in COLUMNS]


def as_csv(rows: list[Row], by: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*by, *COLUMNS])
    for row in rows:
        writer.writerow([*row.key, *(getattr(row, name) for name in COLUMNS)])
    return buffer.getvalue()


# -- the PDF -----------------------------------------------------------------------------------------

PALETTE = ("#2f6db5", "#e0812f", "#3f9a4a", "#c0392b", "#8e6bbf", "#7f8c8d", "#d4ac0d", "#16a085")


def _bar_chart(title: str, labels: list[str], series: list[list[int]], names: list[str],
               width: float, height: float = 190, stacked: bool = False) -> Any:  # fmt: skip
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.charts.legends import Legend
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors

    drawing = Drawing(width, height + 40)
    drawing.add(String(0, height + 26, title, fontName="Helvetica-Bold", fontSize=11))
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 40, 45, width - 60 - (90 if len(series) > 1 else 0), height - 40
    chart.data = series
    chart.valueAxis.valueMin = 0
    if stacked:
        chart.categoryAxis.style = "stacked"
        top = max((sum(column) for column in zip(*series)), default=0)
    else:
        top = max((max(values) for values in series if values), default=0)
    chart.valueAxis.valueMax = max(1, top * 1.1)
    chart.valueAxis.labels.fontSize = 7
    chart.categoryAxis.categoryNames = labels
    chart.categoryAxis.labels.fontSize = 7
    chart.categoryAxis.labels.angle = 30 if len(labels) > 6 else 0
    chart.categoryAxis.labels.boxAnchor = "ne" if len(labels) > 6 else "n"
    chart.barSpacing = 1
    chart.groupSpacing = 6
    for index in range(len(series)):
        chart.bars[index].fillColor = colors.HexColor(PALETTE[index % len(PALETTE)])
        chart.bars[index].strokeColor = None
    drawing.add(chart)
    if len(series) > 1:
        legend = Legend()
        legend.x, legend.y = width - 85, height - 10
        legend.fontSize = 8
        legend.alignment = "right"
        legend.colorNamePairs = [(colors.HexColor(PALETTE[i % len(PALETTE)]), name) for i, name in enumerate(names)]
        drawing.add(legend)
    return drawing


def _pie_chart(title: str, parts: list[tuple[str, int]], width: float, height: float = 170) -> Any:
    from reportlab.graphics.charts.legends import Legend
    from reportlab.graphics.charts.piecharts import Pie
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors

    drawing = Drawing(width, height + 30)
    drawing.add(String(0, height + 16, title, fontName="Helvetica-Bold", fontSize=11))
    shown = [(name, value) for name, value in parts if value > 0]
    total = sum(value for _, value in shown)
    if not shown:
        drawing.add(String(10, height / 2, "no pages in this period", fontName="Helvetica", fontSize=9))
        return drawing
    pie = Pie()
    pie.x, pie.y, pie.width, pie.height = 10, 20, height - 50, height - 50
    pie.data = [value for _, value in shown]
    pie.labels = None
    pie.slices.strokeColor = colors.white
    for index in range(len(shown)):
        pie.slices[index].fillColor = colors.HexColor(PALETTE[index % len(PALETTE)])
    drawing.add(pie)
    legend = Legend()
    legend.x, legend.y = height - 25, height - 40
    legend.fontSize = 9
    legend.alignment = "right"
    legend.dy = 12
    legend.colorNamePairs = [(colors.HexColor(PALETTE[i % len(PALETTE)]),
                              f"{name}: {value} ({100 * value / total:.0f} %)") for i, (name, value) in enumerate(shown)]
    drawing.add(legend)
    return drawing


def render_pdf(records: list[dict[str, Any]], path: Path, *, title: str, period: str, device: str,
               top_users: int = 15, generated: datetime | None = None) -> int:  # fmt: skip
    """Write the usage report to `path`; returns its number of pages. Blocking (call it off a reactor)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    width = A4[0] - 36 * mm
    pages_written = [0]

    def footer(canvas: Any, document: Any) -> None:
        pages_written[0] = document.page
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.drawString(18 * mm, 10 * mm, f"{title} - {device} - {period}")
        canvas.drawRightString(A4[0] - 18 * mm, 10 * mm, f"page {document.page}")
        canvas.restoreState()

    by_user, total = summarize(records, ["user"])
    by_day, _ = summarize(records, ["day"])
    by_mode, _ = summarize(records, ["mode"])
    by_route, _ = summarize(records, ["route"])
    when = (generated or datetime.now()).strftime("%Y-%m-%d %H:%M")
    story: list[Any] = [
        Paragraph(_escape(title), styles["Title"]),
        Paragraph(f"Device <b>{_escape(device)}</b>; period: {_escape(period)}; generated {when}.", styles["Normal"]),
        Spacer(1, 4 * mm),
    ]
    summary = [
        ["Jobs", "Completed", "Canceled", "Aborted", "Doc. pages", "Pages printed", "Sheets", "Colour", "Mono",
         "Colour unknown", "Unknown"],
        [str(total.jobs), str(total.completed), str(total.canceled), str(total.aborted), str(total.pages),
         str(total.impressions), str(total.sheets), str(total.color_pages), str(total.mono_pages),
         str(total.color_unknown_pages), str(total.unknown)],
    ]  # fmt: skip
    story.append(_table(summary, Table, TableStyle, colors))
    document = SimpleDocTemplate(str(path), pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm,
                                 topMargin=16 * mm, bottomMargin=18 * mm, title=title, author="spooler")  # fmt: skip
    if not records:
        story += [Spacer(1, 6 * mm), Paragraph("No accounting records in this period.", styles["Normal"])]
        document.build(story, onFirstPage=footer, onLaterPages=footer)
        return pages_written[0]
    story.append(Paragraph(
        "Pages printed are impressions (printed sides, copies included) of completed jobs whose pages were "
        "counted; doc. pages are the documents' own pages. "
        "\"Unknown\" counts completed jobs whose figures could not be established; they are not estimated. "
        "\"Colour unknown\" counts pages printed whose colour could not be told: neither colour nor mono.",
        styles["Italic"]))  # fmt: skip
    story.append(Spacer(1, 6 * mm))
    ranked = sorted(by_user, key=lambda row: (-row.impressions, row.key))[:top_users]
    story.append(_bar_chart(
        f"Pages printed per user (top {len(ranked)})" if len(by_user) > top_users else "Pages printed per user",
        [row.key[0][:14] for row in ranked],
        [[row.color_pages for row in ranked], [row.mono_pages for row in ranked],
         [row.color_unknown_pages for row in ranked]],
        ["colour", "mono", "colour unknown"], width, stacked=True,
    ))  # fmt: skip
    story.append(Spacer(1, 6 * mm))
    pies = Table([[
        _pie_chart("Colour vs mono (pages printed)", [("colour", total.color_pages), ("mono", total.mono_pages),
                                                          ("colour unknown", total.color_unknown_pages)], width / 2),
        _pie_chart("Online vs offline (pages printed)", [(row.key[0], row.impressions) for row in by_mode],
                   width / 2),
    ]], colWidths=[width / 2, width / 2])  # fmt: skip
    story.append(pies)
    story.append(PageBreak())
    story.append(_bar_chart("Pages printed per day", [row.key[0][5:] for row in by_day],
                            [[row.impressions for row in by_day]], ["pages"], width, height=210))  # fmt: skip
    story.append(Spacer(1, 6 * mm))
    story.append(Paragraph("By route and mode", styles["Heading2"]))
    rows = [["", "Jobs", "Pages printed", "Sheets", "Colour", "Mono", "Colour unknown", "Unknown"]]
    for label, group in (("route", by_route), ("mode", by_mode)):
        rows += [[f"{label}: {row.key[0]}", str(row.jobs), str(row.impressions), str(row.sheets),
                  str(row.color_pages), str(row.mono_pages), str(row.color_unknown_pages), str(row.unknown)]
                 for row in group]  # fmt: skip
    story.append(_table(rows, Table, TableStyle, colors))
    story.append(Spacer(1, 6 * mm))
    story.append(Paragraph("By user", styles["Heading2"]))
    rows = [["User", "Jobs", "Pages printed", "Sheets", "Colour", "Mono", "Colour unknown", "Canceled", "Aborted",
             "Unknown"]]
    rows += [[row.key[0], str(row.jobs), str(row.impressions), str(row.sheets), str(row.color_pages),
              str(row.mono_pages), str(row.color_unknown_pages), str(row.canceled), str(row.aborted),
              str(row.unknown)] for row in by_user]  # fmt: skip
    story.append(_table(rows, Table, TableStyle, colors))
    document.build(story, onFirstPage=footer, onLaterPages=footer)
    return pages_written[0]


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _table(rows: list[list[str]], table: Any, table_style: Any, colors: Any) -> Any:
    result = table(rows, repeatRows=1, hAlign="LEFT")
    result.setStyle(table_style([
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8),
        ("FONT", (0, 1), (-1, -1), "Helvetica", 8),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dfe7f2")),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f5f5f5")]),
        ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#b0b0b0")),
    ]))  # fmt: skip
    return result
