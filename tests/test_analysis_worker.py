"""The long-lived analysis workers (spooler.jobs.analysis.AnalysisRunner, drivers.worker) with real
worker processes: the same figures as the one-shot child, per-document time limits, crashes that
cost only the document under way, recycling, and a stop that leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import zlib
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater

from drivers import analyze_file
from drivers.sandbox import analyze_isolated
from drivers.stats import DocumentStats
from spooler.jobs.analysis import AnalysisRunner
from test_drivers_hostile import PAGE, build_pdf

CORPUS = Path(__file__).resolve().parent.parent / "samples" / "corpus"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())


def slow_ps(folder: Path) -> Path:
    """A PostScript file whose DSC scan takes seconds (as in test_drivers_hostile)."""
    path = folder / "slow.ps"
    with open(path, "wb") as handle:
        handle.write(b"%!PS\n")
        line = b"{ showpage } { showpage } (x) (y) showpage\n" * 20000
        for _ in range(80):
            handle.write(line)
    return path


def gone(pid: int) -> bool:
    """True once `pid` has ended and been reaped (a zombie still answers signal 0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def eventually(predicate: Any, what: str, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


@pytest.fixture
def runners() -> Any:
    made: list[AnalysisRunner] = []

    def make(**kwargs: Any) -> AnalysisRunner:
        runner = AnalysisRunner(reactor, **kwargs)
        made.append(runner)
        return runner

    yield make
    for runner in made:
        pytest_twisted.blockon(runner.stop())


def check_expected(name: str, stats: DocumentStats) -> None:
    expected = EXPECTED[name]
    assert (stats.format, stats.status, stats.pages) == (expected["format"], expected["status"], expected["pages"])
    if expected["status"] == "ok":
        assert [page.color for page in stats.page_info] == expected["colors"]


@pytest_twisted.ensureDeferred
async def test_corpus_through_two_workers_equals_the_one_shot_path(runners: Any) -> None:
    runner = runners(workers=2)
    names = sorted(EXPECTED)
    results = await gatherResults([runner.analyze(CORPUS / name) for name in names])
    for name, stats in zip(names, results):
        check_expected(name, stats)
        assert stats == analyze_file(CORPUS / name), name
    assert runner.spawned == 2  # two processes served all 23 documents
    for name in ("mixed_letter_4p.pdf", "duplex_copies_1p.ps", "colour.png"):  # the one-shot child itself
        assert results[names.index(name)] == analyze_isolated(CORPUS / name, timeout=60)


@pytest_twisted.ensureDeferred
async def test_hostile_documents_through_a_worker(runners: Any, tmp_path: Path) -> None:
    lie = tmp_path / "count_lie.pdf"
    lie.write_bytes(build_pdf({1: b"<< /Type /Catalog /Pages 2 0 R >>",
                               2: b"<< /Type /Pages /Kids [3 0 R] /Count 1000000000 >>", 3: PAGE}))
    garbage = tmp_path / "garbage.pdf"
    garbage.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40)
    runner = runners(page_cap=2)
    lied, junk, capped, fine = await gatherResults([
        runner.analyze(lie), runner.analyze(garbage, "application/pdf"),
        runner.analyze(CORPUS / "text_a4_3p.pdf"), runner.analyze(CORPUS / "grey.jpg")])
    assert lied.status == "unknown" and "1000000000" in lied.reason
    assert junk.status == "unknown" and junk.reason
    assert capped.status == "unknown" and "cap" in capped.reason
    check_expected("grey.jpg", fine)
    assert runner.spawned == 1


@pytest_twisted.ensureDeferred
async def test_a_big_image_under_the_memory_limit_then_the_next_document(runners: Any, tmp_path: Path) -> None:
    width = height = 4000  # 48 MB of pixels, inflated in slices (test_drivers_hostile)
    body = zlib.compress(b"\x80" * (width * height * 3), 9)
    path = tmp_path / "bigimage.pdf"
    path.write_bytes(build_pdf({
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 5 0 R"
           b" /Resources << /XObject << /I 4 0 R >> >> >>",
        4: b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB"
           b" /BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n" % (width, height, len(body))
           + body + b"\nendstream",
        5: b"<< /Length 5 >>\nstream\n/I Do\nendstream"}))
    runner = runners(memory_limit=400 << 20)
    big, after = await gatherResults([runner.analyze(path), runner.analyze(CORPUS / "colour.jpg")])
    assert (big.status, big.mono_pages) == ("ok", 1), big.reason
    check_expected("colour.jpg", after)


@pytest_twisted.ensureDeferred
async def test_memory_limit_in_a_worker(runners: Any) -> None:
    runner = runners(memory_limit=8 << 20)
    stats = await runner.analyze(CORPUS / "images_3p.pdf")  # its images are inflated: memory is needed
    assert (stats.status, stats.reason) == ("unknown", "memory limit")


@pytest_twisted.ensureDeferred
async def test_overrun_is_killed_and_the_next_document_analysed(runners: Any, tmp_path: Path) -> None:
    slow = slow_ps(tmp_path)
    runner = runners(timeout=lambda path: 0.3 if path == slow else 120.0)
    first = runner.analyze(CORPUS / "grey.jpg")
    overrun = runner.analyze(slow)
    after = runner.analyze(CORPUS / "mixed_4p.ps")
    check_expected("grey.jpg", await first)
    [pid] = runner.pids()
    assert ((await overrun).status, (await overrun).reason) == ("unknown", "time limit")
    check_expected("mixed_4p.ps", await after)
    assert runner.spawned == 2 and pid not in runner.pids()
    await eventually(lambda: gone(pid), "the killed worker to be reaped")


@pytest_twisted.ensureDeferred
async def test_worker_killed_mid_document_costs_only_that_document(runners: Any, tmp_path: Path) -> None:
    slow = slow_ps(tmp_path)
    runner = runners()
    warm = await runner.analyze(CORPUS / "grey.jpg")  # the worker is up and idle
    check_expected("grey.jpg", warm)
    victim = runner.analyze(slow)
    queued = [runner.analyze(CORPUS / name) for name in ("text_a4_3p.pdf", "colour.png")]
    [pid] = runner.pids()
    await sleep(0.2)  # (the kill lands whether the worker has started the document or not)
    os.kill(pid, signal.SIGKILL)
    stats = await victim
    assert (stats.status, stats.reason) == ("unknown", "crashed (signal 9)")
    for name, result in zip(("text_a4_3p.pdf", "colour.png"), await gatherResults(queued)):
        check_expected(name, result)
    assert runner.spawned == 2
    assert gone(pid)


@pytest_twisted.ensureDeferred
async def test_workers_recycled_after_n_documents(runners: Any) -> None:
    runner = runners(max_documents=2)
    seen: set[int] = set()
    for name in ("grey.jpg", "colour.png", "text_a4_3p.pdf", "mixed_4p.ps", "grey_palette.png"):
        check_expected(name, await runner.analyze(CORPUS / name))
        seen.update(runner.pids())
    assert runner.spawned == 3
    await eventually(lambda: len(runner.pids()) <= 1, "the retired workers to exit")
    assert all(gone(pid) for pid in seen - set(runner.pids()))


@pytest_twisted.ensureDeferred
async def test_workers_recycled_when_their_memory_grows(runners: Any) -> None:
    runner = runners(max_rss=1)  # every worker is over the bound after its first document
    for name in ("grey.jpg", "colour.png", "text_a4_3p.pdf"):
        check_expected(name, await runner.analyze(CORPUS / name))
    assert runner.spawned == 3


@pytest_twisted.ensureDeferred
async def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    slow = slow_ps(tmp_path)
    runner = AnalysisRunner(reactor, workers=2)
    check_expected("grey.jpg", await runner.analyze(CORPUS / "grey.jpg"))
    busy = runner.analyze(slow)
    other = runner.analyze(CORPUS / "colour.png")
    queued = runner.analyze(CORPUS / "text_a4_3p.pdf")
    await eventually(lambda: len(runner.pids()) == 2, "a second worker")
    pids = runner.pids()
    await runner.stop()
    assert all(gone(pid) for pid in pids)  # ended and reaped: no zombie
    assert (await busy).reason == "the spooler stopped during the analysis"
    assert (await queued).status in ("ok", "unknown")  # analysed, or "stopped before the analysis"
    await other
    late = await runner.analyze(CORPUS / "grey.jpg")
    assert (late.status, late.reason) == ("unknown", "the spooler stopped before the analysis")
    assert runner.pids() == []


@pytest_twisted.ensureDeferred
async def test_a_worker_that_cannot_start(runners: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("drivers.sandbox.sys.executable", "/bin/false")
    runner = runners()
    first, second = await gatherResults([runner.analyze(CORPUS / "grey.jpg"), runner.analyze(CORPUS / "colour.png")])
    assert first.status == second.status == "unknown"
    assert first.reason.startswith("crashed") and second.reason.startswith("crashed")


def worker_pids_of(pid: int) -> list[int]:
    """The drivers.worker processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in status and b"drivers.worker" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["stop", "kill -9"])
def test_a_spooler_leaves_no_worker_behind(spooler_factory: Any, how: str) -> None:
    from spooler_harness import send_raw, wait_for

    spooler = spooler_factory(analysis__workers=2).start()
    for name in ("text_a4_3p.pdf", "colour.png"):
        send_raw(spooler.raw_port, (CORPUS / name).read_bytes())
    wait_for(lambda: len(spooler.events("job_analyzed")) == 2, timeout=60, what="the analyses")
    assert spooler.process is not None
    workers = worker_pids_of(spooler.process.pid)
    assert workers  # idle workers wait for the next document
    if how == "stop":
        assert spooler.stop() == 0
    else:
        spooler.kill9()
    wait_for(lambda: all(gone(pid) for pid in workers), timeout=30, what="the workers to end")
