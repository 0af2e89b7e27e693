"""PostScript through Ghostscript (drivers.ghostscript): the pure pairing of gs's output, and real gs
runs -- grey drawn in RGB is mono on gs's own output, pages from procedures, copypage and copies are
counted, the limits hold (time, memory, page cap, SAFER), and a missing gs is an honest "unknown"."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from drivers import Limits, analyze_file
from drivers.ghostscript import RESOLUTION, UNSET_SIZE, read_render
from drivers.sandbox import analyze_isolated
from drivers.stats import AnalysisError
from spooler_harness import require_tool

CORPUS = Path(__file__).resolve().parent.parent / "samples" / "corpus"
TOKEN = "%%PAGE-0123456789abcdef"


def ink(*pages: tuple[float, float, float, float]) -> str:
    return "".join(f"{c:8.5f} {m:8.5f} {y:8.5f} {k:8.5f} CMYK OK\n" for c, m, y, k in pages)


MONO = (0.0, 0.0, 0.0, 2.5)
RED = (0.0, 4.1, 4.1, 0.0)


# -- pairing gs's ink lines with our EndPage lines (pure) ----------------------------------------------


@pytest.mark.parametrize(("inks", "marks", "pages", "copies", "colors", "sizes_known"), [
    # one line each: two pages
    (ink(MONO, RED), f"{TOKEN} 595.0 842.0 1\n{TOKEN} 612 792 1\n", 2, [1, 1], [False, True], True),
    # /NumCopies 3: three ink lines per page, one EndPage line
    (ink(MONO, MONO, MONO, RED, RED, RED), f"{TOKEN} 595 842 3\n{TOKEN} 595 842 3\n", 2, [3, 3],
     [False, True], True),
    # gs's own messages and lines of the document on stderr are ignored
    (ink(RED), f"GPL Ghostscript warning\n{TOKEN} 595 842 1\n%%PAGE-forged 1 1 1\n", 1, [1], [True], True),
    # the document replaced EndPage: our lines are missing, every ink line is a page
    (ink(MONO, RED, MONO), "", 3, [1, 1, 1], [False, True, False], False),
    # lines that do not add up (a forged extra line): the ink lines decide
    (ink(MONO), f"{TOKEN} 595 842 1\n{TOKEN} 595 842 1\n", 1, [1], [False], False),
    # a document that prints nothing
    ("", "", 0, [], [], True),
])  # fmt: skip
def test_read_render_pairs_pages_with_their_ink(inks: str, marks: str, pages: int, copies: list[int],
                                                colors: list[bool], sizes_known: bool) -> None:  # fmt: skip
    render = read_render(inks, marks, TOKEN, page_cap=100)
    assert len(render.pages) == pages
    assert [page.copies for page in render.pages] == copies
    assert [page.color for page in render.pages] == colors
    assert render.sizes_known is sizes_known


def test_read_render_size_unset_means_no_size_and_refuses_what_gs_never_writes() -> None:
    unset = f"{TOKEN} {UNSET_SIZE[0]:g} {UNSET_SIZE[1]:g} 1\n"
    [page] = read_render(ink(MONO), unset, TOKEN, page_cap=10).pages
    assert (page.width_pt, page.height_pt) == (0.0, 0.0)
    with pytest.raises(AnalysisError, match="unexpected ink_cov output"):
        read_render("0.1 0.2 0.3 CMYK OK\n", "", TOKEN, page_cap=10)
    with pytest.raises(AnalysisError, match="EndPage"):
        read_render(ink(MONO), f"{TOKEN} 595 (x) 1\n", TOKEN, page_cap=10)
    with pytest.raises(AnalysisError, match="cap of 2"):
        read_render(ink(MONO, MONO, MONO), "", TOKEN, page_cap=2)


# -- real Ghostscript ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gs() -> str:
    return require_tool("gs")


GREY_RGB_PAGE = (b"%!PS\n<< /PageSize [612 792] >> setpagedevice\n0.5 0.5 0.5 setrgbcolor 72 600 200 100 rectfill\n"
                 b"0 0 0 setrgbcolor /Helvetica findfont 24 scalefont setfont 72 400 moveto (black) show showpage\n")


def test_gs_default_colour_conversion_makes_rgb_grey_rich_black_ours_makes_it_k_only(gs: str, tmp_path: Path) -> None:
    """Why the prologue exists, on real gs output: gs's default (ICC) conversion puts C, M and Y ink
    on a page drawn in RGB grey and black, so "any CMY ink = colour" would bill it as colour."""
    path = tmp_path / "grey.ps"
    path.write_bytes(GREY_RGB_PAGE)
    default = subprocess.run([gs, "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", f"-r{RESOLUTION}", "-sDEVICE=ink_cov",
                              "-o", "-", str(path)], capture_output=True, text=True, timeout=60, check=True)
    c, m, y, k = (float(value) for value in default.stdout.split()[:4])
    assert c > 0 and m > 0 and y > 0 and k > 0
    stats = analyze_file(path)
    assert (stats.status, stats.pages, stats.mono_pages, stats.color_pages) == ("ok", 1, 1, 0)


@pytest.mark.parametrize(("program", "colors"), [
    (b"0.2 0.2 0.2 setrgbcolor 0 0 100 100 rectfill showpage", [False]),
    (b"0 0 0 0.5 setcmykcolor 0 0 100 100 rectfill showpage", [False]),
    (b"0.7 setgray 0 0 100 100 rectfill showpage", [False]),
    (b"0.2 0.2 0.2 0 setcmykcolor 0 0 100 100 rectfill showpage", [True]),  # process grey uses colour ink
    (b"0.5 0.5 0.52 setrgbcolor 0 0 100 100 rectfill showpage", [True]),
    (b"/DeviceRGB setcolorspace 0.4 0.4 0.4 setcolor 0 0 100 100 rectfill showpage", [False]),
    (b"0 0 1 sethsbcolor 0 0 100 100 rectfill showpage", [False]),
    (b"0.5 1 1 sethsbcolor 0 0 100 100 rectfill showpage", [True]),
    # grey set, then a red page after a setpagedevice (which must not undo our conversion)
    (b"0.5 0.5 0.5 setrgbcolor 0 0 9 9 rectfill showpage << /PageSize [595 842] >> setpagedevice"
     b" 0.3 0.3 0.3 setrgbcolor 0 0 9 9 rectfill showpage 1 0 0 setrgbcolor 0 0 9 9 rectfill showpage",
     [False, False, True]),
    # a 1 pt red mark on a white page still leaves ink at the render's resolution
    (b"1 0 0 setrgbcolor 300 400 1 1 rectfill showpage", [True]),
])  # fmt: skip
def test_colour_per_page_on_real_gs_output(gs: str, tmp_path: Path, program: bytes, colors: list[bool]) -> None:
    path = tmp_path / "page.ps"
    path.write_bytes(b"%!PS\n" + program + b"\n")
    stats = analyze_file(path)
    assert stats.status == "ok", stats.reason
    assert [page.color for page in stats.page_info] == colors


@pytest.mark.parametrize(("program", "pages", "copies"), [
    (b"/p { showpage } def 1 1 12 { pop p } for", 12, None),
    (b"/a { showpage } def /b { a a } def /c { b b b } def c", 6, None),
    (b"0 0 moveto (x) show copypage copypage showpage", 3, None),
    (b"<< /NumCopies 4 >> setpagedevice showpage showpage", 2, 4),
    (b"/#copies 2 def showpage", 1, 2),
    (b"1 1 5 { pop } for", 0, None),  # draws nothing, prints nothing: 0 pages, counted
    (b"false { showpage } if showpage", 1, None),
])  # fmt: skip
def test_pages_and_copies_counted_by_gs(gs: str, tmp_path: Path, program: bytes, pages: int,
                                         copies: int | None) -> None:  # fmt: skip
    path = tmp_path / "doc.ps"
    path.write_bytes(b"%!PS\n/Helvetica findfont 12 scalefont setfont\n" + program + b"\n")
    stats = analyze_file(path)
    assert (stats.status, stats.pages, stats.copies) == ("ok", pages, copies), stats.reason


def test_pages_with_different_copies_count_each_copy(gs: str, tmp_path: Path) -> None:
    path = tmp_path / "doc.ps"
    path.write_bytes(b"%!PS\n<< /NumCopies 2 >> setpagedevice showpage << /NumCopies 1 >> setpagedevice showpage\n")
    stats = analyze_file(path)
    assert (stats.status, stats.pages, stats.copies) == ("ok", 3, None)
    assert "each copy counted" in stats.reason


def test_a_document_replacing_endpage_is_still_counted_page_by_page(gs: str, tmp_path: Path) -> None:
    path = tmp_path / "doc.ps"
    path.write_bytes(b"%!PS\n<< /EndPage { exch pop 2 ne } >> setpagedevice showpage"
                     b" 1 0 0 setrgbcolor 0 0 9 9 rectfill showpage\n")
    stats = analyze_file(path)
    assert (stats.status, stats.pages, [p.color for p in stats.page_info]) == ("ok", 2, [False, True])
    assert "EndPage" in stats.reason and stats.size_counts() == {"job-media": 2}


def test_ps_after_a_pjl_header_is_run_from_its_start(gs: str, tmp_path: Path) -> None:
    path = tmp_path / "job.prn"
    path.write_bytes(b"\x1b%-12345X@PJL JOB\r\n@PJL ENTER LANGUAGE=POSTSCRIPT\r\n"
                     + (CORPUS / "colour_and_grey_5p.ps").read_bytes() + b"\x1b%-12345X@PJL EOJ\r\n")
    stats = analyze_file(path)
    assert (stats.status, stats.pages, stats.color_pages) == ("ok", 5, 2)


# -- limits and safety ---------------------------------------------------------------------------------


def test_safer_refuses_reading_other_files(gs: str, tmp_path: Path) -> None:
    path = tmp_path / "doc.ps"
    path.write_bytes(b"%!PS\n(/etc/passwd) (r) file 100 string readstring pop print showpage\n")
    stats = analyze_file(path)
    assert stats.status == "unknown" and "invalidfileaccess" in stats.reason


def test_safer_refuses_writing_files(gs: str, tmp_path: Path) -> None:
    target = tmp_path / "written.txt"
    path = tmp_path / "doc.ps"
    path.write_bytes(b"%!PS\n(" + str(target).encode() + b") (w) file (x) writestring showpage\n")
    stats = analyze_file(path)
    assert stats.status == "unknown" and "invalidfileaccess" in stats.reason
    assert not target.exists()


def test_an_endless_program_stops_at_its_time_limit(gs: str, tmp_path: Path) -> None:
    path = tmp_path / "loop.ps"
    path.write_bytes(b"%!PS\n{ } loop\n")
    started = time.monotonic()
    stats = analyze_file(path, limits=Limits(render_seconds=1))
    assert (stats.status, stats.reason) == ("unknown", "time limit (gs)")
    assert time.monotonic() - started < 10


def test_too_many_pages_is_unknown_not_a_partial_count(gs: str, tmp_path: Path) -> None:
    path = tmp_path / "many.ps"
    path.write_bytes(b"%!PS\n1 1 30 { pop showpage } for\n")
    stats = analyze_file(path, limits=Limits(page_cap=20))
    assert stats.status == "unknown" and "cap of 20" in stats.reason and stats.pages == 0


def test_memory_is_bounded_by_the_worker_limit(gs: str, tmp_path: Path) -> None:
    path = tmp_path / "hog.ps"
    path.write_bytes(b"%!PS\n[ 1 1 100000000 { 65535 string } for ] pop showpage\n")
    stats = analyze_isolated(path, memory_limit=512 << 20, timeout=60)
    assert stats.status == "unknown" and "memory limit" in stats.reason, stats.reason


def test_a_postscript_error_is_unknown_with_its_name(gs: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.ps"
    path.write_bytes(b"%!PS\nshowpage nosuchoperator showpage\n")
    stats = analyze_file(path)
    assert (stats.status, stats.pages) == ("unknown", 0)
    assert "/undefined" in stats.reason


def test_gs_missing_is_unknown_gs_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs everywhere (gs or not): with no gs on the PATH, PostScript is never guessed."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    stats = analyze_file(CORPUS / "showpage_in_procs_12p.ps")
    assert (stats.status, stats.reason, stats.pages) == ("unknown", "gs not installed", 0)
    isolated = analyze_isolated(CORPUS / "mixed_4p.ps", timeout=30)  # the child the CLI runs, same PATH
    assert (isolated.status, isolated.reason) == ("unknown", "gs not installed")


def test_environment_options_cannot_turn_safer_off(gs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GS_OPTIONS", "-dNOSAFER")
    test_safer_refuses_reading_other_files(gs, tmp_path)


def test_gs_does_not_outlive_a_killed_worker(gs: str, tmp_path: Path) -> None:
    """The worker's gs dies with it (PR_SET_PDEATHSIG): a worker killed for its time limit leaves
    no Ghostscript running."""
    from drivers.sandbox import worker_command, worker_request

    path = tmp_path / "loop.ps"
    path.write_bytes(b"%!PS\n{ } loop\n")
    command, env = worker_command()
    worker = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert worker.stdout is not None and worker.stdin is not None
        assert b"ready" in worker.stdout.readline()
        line, _ = worker_request(path, timeout=60)
        worker.stdin.write(line)
        worker.stdin.flush()
        children = _wait(lambda: _children(worker.pid), "gs to start")
    finally:
        worker.kill()
        worker.wait()
    _wait(lambda: not any(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" for pid in children),
          "gs to die with its worker")


def _children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry))
    return found


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _wait(condition, what: str, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
