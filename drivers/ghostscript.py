"""Ghostscript as the interpreter of documents our own parsers cannot settle (PostScript): exact page
counts, page sizes, copies and per-page colour from a low-resolution ``ink_cov`` render.

``gs -dSAFER`` runs the document (named on its command line, the one file SAFER lets it read besides
its own resources) on the ``ink_cov`` device at :data:`RESOLUTION` dpi, which writes one line of C, M, Y, K ink
(percent) per printed sheet side, copies included, to a private file. A prologue of ours:

* converts colours with ``-dUseFastColor`` and identity black generation and undercolour removal,
  so that any neutral colour (grey or black in RGB, grey, K-only CMYK) becomes K alone and a page is
  colour exactly when C, M or Y ink is on it (gs's default ICC conversion turns RGB grey into
  "rich black", C=M=Y=K, and a neutral page would look colour: tests/test_ghostscript.py shows both
  on real gs output);
* installs an ``EndPage`` procedure that writes, for each page, a line with a random token, the page
  size and its copies (``/NumCopies``, else ``#copies``) on stderr.

:func:`read_render` (pure) matches the two: a page is each token line, its colour the ink of its
first copy; the copies must add up to the ink lines, else the document replaced our EndPage and each
ink line counts as one page. A document that stops with a PostScript error, a render over its time
or memory, or a missing ``gs`` gives :class:`~drivers.stats.AnalysisError` (status "unknown"), never
a guessed figure. Limits: RLIMIT_CPU and the wall clock from ``Limits.render_seconds``, RLIMIT_AS
inherited from the analysis worker, RLIMIT_FSIZE on what gs writes, the page cap; the environment is
emptied (no GS_OPTIONS, no GS_LIB) and the temporary folder is private.
"""

from __future__ import annotations

import math
import os
import re
import resource
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from drivers.sandbox import die_with_parent
from drivers.stats import AnalysisError, Limits

#: Dots per inch of the ink render: enough for a 1 pt coloured mark to leave ink, cheap per page.
RESOLUTION = 75
#: Bytes gs may write to any file (the ink lines, its messages): far above what the page cap needs.
MAX_OUTPUT = 32 << 20
#: The page size (points) gs starts with: no paper anyone prints on, so a page that still has it is a
#: page whose document chose no size (the job's media decides), whatever gs's own default paper is. It
#: holds both A4 and Letter (a device prints such a page on one of them) and no more: the render costs
#: in proportion to its area (a 1001 x 1001 pt placeholder made gs 2x slower).
UNSET_SIZE = (613.0, 843.0)
#: The ink line of the ink_cov device: C, M, Y, K in percent of the page.
_INK_LINE = re.compile(r"^\s*(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)\s+CMYK OK\s*$")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

#: The prologue run before the document (``{token}`` is filled in per run). EndPage: reason 2 is the
#: device being deactivated (no page); for 0 (showpage) and 1 (copypage) the page is written out.
PROLOGUE = """
{{}} setblackgeneration {{}} setundercolorremoval
<< /EndPage {{
  exch pop dup 2 ne {{
    (%stderr) (w) file dup ({token} ) writestring
    currentpagedevice /PageSize get
    dup 0 get 2 index exch 32 string cvs writestring
    1 index ( ) writestring
    1 get 1 index exch 32 string cvs writestring
    dup ( ) writestring
    currentpagedevice /NumCopies get
    dup type /integertype ne {{ pop /#copies where {{ /#copies get }} {{ 1 }} ifelse }} if
    dup type /integertype ne {{ pop 1 }} if
    1 index exch 32 string cvs writestring
    dup (\\n) writestring flushfile
  }} if 2 ne
}} bind executeonly >> setpagedevice
"""


class GhostscriptMissing(AnalysisError):
    """``gs`` is not on the PATH: the document cannot be counted here."""

    def __init__(self) -> None:
        super().__init__("gs not installed")


@dataclass(frozen=True)
class RenderedPage:
    """One page as gs printed it: size in points (0 x 0 when the document chose none), copies, and
    its C, M, Y, K ink in percent."""

    width_pt: float
    height_pt: float
    copies: int
    ink: tuple[float, float, float, float]

    @property
    def color(self) -> bool:
        """Whether any C, M or Y ink is on the page (neutral colours render as K alone)."""
        return any(value > 0 for value in self.ink[:3])


@dataclass(frozen=True)
class Render:
    """What gs printed: its pages and whether their sizes and copies could be followed."""

    pages: tuple[RenderedPage, ...]
    sizes_known: bool = True


def command(gs: str, ink_file: str | os.PathLike[str], token: str, resolution: int = RESOLUTION,
            document: str | os.PathLike[str] = "-") -> list[str]:
    """gs's argv: SAFER, no pause, the ink_cov device writing to `ink_file`, our prologue, then the
    document (a file SAFER lets gs read because it is named here)."""
    return [gs, "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-dNOPROMPT", "-dNOINTERPOLATE", f"-r{resolution}",
            "-dUseFastColor", "-sDEVICE=ink_cov",
            f"-dDEVICEWIDTHPOINTS={UNSET_SIZE[0]:g}", f"-dDEVICEHEIGHTPOINTS={UNSET_SIZE[1]:g}", f"-sOutputFile={os.fspath(ink_file)}",
            "-c", PROLOGUE.format(token=token), "-f", os.fspath(document)]  # fmt: skip


def read_render(ink_text: str, page_text: str, token: str, *, page_cap: int) -> Render:
    """Pair the ink lines with our EndPage lines (pure). Raises AnalysisError for output that is not
    gs's (a line it never writes) or more pages than `page_cap`."""
    inks: list[tuple[float, float, float, float]] = []
    for line in ink_text.splitlines():
        if not line.strip():
            continue
        match = _INK_LINE.match(line)
        if match is None:
            raise AnalysisError(f"unexpected ink_cov output: {line[:80]!r}")
        c, m, y, k = (float(value) for value in match.groups())
        inks.append((c, m, y, k))
    if len(inks) > page_cap:
        raise AnalysisError(f"more pages than the cap of {page_cap}")
    marks: list[tuple[float, float, int]] = []
    prefix = token + " "
    for line in page_text.splitlines():
        if not line.startswith(prefix):
            continue
        parts = line[len(prefix):].split()
        if len(parts) != 3 or not all(re.fullmatch(_NUMBER, part) for part in parts):
            raise AnalysisError("unexpected page line from the EndPage procedure")
        width, height, copies = float(parts[0]), float(parts[1]), float(parts[2])
        if not (math.isfinite(width) and math.isfinite(height)) or copies < 0:
            raise AnalysisError("unexpected page line from the EndPage procedure")
        marks.append((width, height, int(copies)))
        if len(marks) > page_cap:
            raise AnalysisError(f"more pages than the cap of {page_cap}")
    if sum(max(1, copies) for _, _, copies in marks) == len(inks) and len(marks) <= len(inks):
        pages: list[RenderedPage] = []
        position = 0
        for width, height, copies in marks:
            copies = max(1, copies)
            if (abs(width), abs(height)) == UNSET_SIZE:
                width = height = 0.0  # the document chose no size
            pages.append(RenderedPage(abs(width), abs(height), copies, inks[position]))
            position += copies
        return Render(tuple(pages))
    # The document installed its own EndPage (ours is gone): every ink line is one printed page.
    return Render(tuple(RenderedPage(0.0, 0.0, 1, ink) for ink in inks), sizes_known=False)


def _child_limits(cpu_seconds: int) -> Callable[[], None]:
    def apply() -> None:
        die_with_parent()
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_OUTPUT, MAX_OUTPUT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def render(handle: BinaryIO, limits: Limits, *, offset: int = 0) -> Render:
    """Run gs on the document in `handle` from `offset` on, under the limits; its pages."""
    gs = shutil.which("gs")
    if gs is None:
        raise GhostscriptMissing()
    token = "%%PAGE-" + secrets.token_hex(8)
    seconds = max(1.0, float(limits.render_seconds))
    with tempfile.TemporaryDirectory(prefix="spooler-gs-") as folder:
        ink_file = Path(folder) / "ink.txt"
        messages = Path(folder) / "messages.txt"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": folder, "TMPDIR": folder, "LC_ALL": "C"}
        document = _document_path(handle, offset, Path(folder))
        with open(messages, "wb") as log:
            try:
                done = subprocess.run(command(gs, ink_file, token, document=document), stdin=subprocess.DEVNULL,
                                      stdout=log, stderr=log, cwd=folder, env=env, timeout=seconds,
                                      preexec_fn=_child_limits(math.ceil(seconds) + 1), check=False)
            except subprocess.TimeoutExpired:
                raise AnalysisError("time limit (gs)") from None
            except OSError as error:
                raise AnalysisError(f"cannot run gs: {error.strerror or error}") from None
        output = messages.read_bytes().decode("latin-1")
        ink_text = ink_file.read_text("latin-1") if ink_file.exists() else ""
    if done.returncode != 0:
        raise AnalysisError(_failure(done.returncode, output))
    return read_render(ink_text, output, token, page_cap=limits.page_cap)  # no page: it prints nothing


def _document_path(handle: BinaryIO, offset: int, folder: Path) -> Path:
    """A file gs can read the document from: the document's own file when it starts at its first byte,
    else a copy of its bytes from `offset` on in the private `folder` (gs reading a pipe on its stdin
    costs it as much again as the render: it reads such a stream in small pieces)."""
    name = getattr(handle, "name", None)
    if offset == 0 and isinstance(name, str) and os.path.isfile(name):
        return Path(name)
    copy = folder / "document"
    handle.seek(offset)
    with open(copy, "wb") as out:
        shutil.copyfileobj(handle, out, 1 << 20)
    return copy


def _failure(returncode: int, output: str) -> str:
    """Why gs failed, in a few words: its PostScript error, or the limit that stopped it."""
    import signal

    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return "time limit (gs)"
    if returncode == -signal.SIGXFSZ:
        return "gs wrote too much output"
    lowered = output.lower()
    if any(sign in lowered for sign in ("vmerror", "cannot allocate", "out of memory", "failed to map segment")):
        return "memory limit (gs)"
    error = re.search(r"Error: (/\w+) in (\S+)", output)
    if error:
        return f"PostScript error {error.group(1)} in {error.group(2)}"[:200]
    if returncode < 0:
        return f"gs crashed (signal {-returncode})"
    return f"gs failed (exit {returncode})"
