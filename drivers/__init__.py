"""Page-description-language analysers (page counts, colour, duplex, paper size) live here.

Public API::

    analyze_file(path, *, declared_format=None, limits=Limits()) -> DocumentStats   # never raises
    combine(document_stats, JobOptions(copies=, sides=, number_up=)) -> JobStats
    drivers.sandbox.analyze_isolated(path, ...) -> DocumentStats                    # child process
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from drivers.detect import HEAD_SIZE, OCTET_STREAM, Detected, detect
from drivers.stats import (AnalysisError, DocumentStats, JobOptions, JobStats, Limits, PageInfo,
                           combine, unknown, with_pjl)

__all__ = ["ANALYSERS", "AnalysisError", "DocumentStats", "JobOptions", "JobStats", "Limits",
           "PageInfo", "analyze_file", "combine"]

Analyser = Callable[..., DocumentStats]


def _analysers() -> dict[str, Analyser]:
    from drivers import image, pcl5, pclxl, pdf, postscript, raster, text

    return {
        "application/pdf": pdf.analyze,
        "application/postscript": postscript.analyze,
        "application/vnd.hp-pcl": pcl5.analyze,
        "application/vnd.hp-pclxl": pclxl.analyze,
        "image/pwg-raster": raster.analyze_pwg,
        "image/urf": raster.analyze_urf,
        "image/jpeg": image.analyze_jpeg,
        "image/png": image.analyze_png,
        "text/plain": text.analyze,
    }


ANALYSERS: dict[str, Analyser] = _analysers()
"""MIME type -> analyser(source, limits, *, offset) -> DocumentStats (raises AnalysisError)."""


def analyze_file(path: str | os.PathLike[str], *, declared_format: str | None = None,
                 limits: Limits = Limits()) -> DocumentStats:
    """Statistics of the document at `path`, detected from its bytes; never raises.

    `declared_format` (what the client claimed) is used only when the bytes say nothing
    (application/octet-stream). Problems give status "unknown" with the reason.
    """
    fmt = declared_format or OCTET_STREAM
    try:
        with open(Path(path), "rb") as handle:
            found = detect(handle.read(HEAD_SIZE))
            fmt = found.format
            if fmt == OCTET_STREAM and declared_format in ANALYSERS:
                fmt = declared_format
                found = Detected(fmt, found.offset, found.pjl)
            analyser = ANALYSERS.get(fmt)
            if analyser is None:
                return unknown(fmt, "format not recognised" if fmt == OCTET_STREAM
                               else f"no analyser for {fmt}")
            handle.seek(0)
            stats = analyser(handle, limits, offset=found.offset)
        if found.pjl is not None:
            stats = with_pjl(stats, found.pjl.copies, found.pjl.duplex, found.pjl.binding,
                             found.pjl.color)
        return stats
    except AnalysisError as error:
        return unknown(fmt, str(error) or "cannot analyse")
    except OSError as error:
        return unknown(fmt, f"cannot read: {error.strerror or error}")
    except MemoryError:
        return unknown(fmt, "memory limit")
    except RecursionError:
        return unknown(fmt, "nesting too deep")
    except Exception as error:  # an analyser bug must not take the spooler down
        return unknown(fmt, f"analyser failed: {type(error).__name__}: {error}"[:300])
