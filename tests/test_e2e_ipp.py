"""End to end over IPP: a real `spooler serve`, ipptool's conformance suites (ipp-1.1, ipp-2.0,
ipp-everywhere), a CUPS driverless queue (`lpadmin -m everywhere`) in a scratch cupsd, kill -9 right
after a Print-Job's success, and the daemon's memory while a large document streams in."""

from __future__ import annotations

import getpass
import gzip
import http.client
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from spooler.ipp.codec import Attribute, IppMessage, decode, encode_message
from spooler.ipp.tags import Operation, Status, Tag
from spooler_harness import ScratchCups, Spooler, require_tool, short_tempdir, wait_for

pytestmark = pytest.mark.e2e
SpoolerFactory = Callable[..., Spooler]

SUITES = Path("/usr/share/cups/ipptool")
TEST_PAGE = Path("/usr/share/cups/data/default-testpage.pdf")
#: The raster samples the printer advertises (pwg-raster-document-resolution/type-supported).
RASTER_RESOLUTIONS = (300, 600)
RASTER_TYPES = {"black-1": (3, 1), "sgray-8": (18, 8), "srgb-8": (19, 8)}
RASTER_DOCUMENTS = {"document-a4": "a4", "document-letter": "letter", "onepage-a4": "a4",
                    "onepage-letter": "letter", "color.jpg-4x6": None, "gray.jpg-4x6": None}  # fmt: skip


def _gs(gs: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([gs, "-q", "-dNOPAUSE", "-dBATCH", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


@pytest.fixture(scope="module")
def ipptool_dir() -> Iterator[Path]:
    """ipptool's suites and the documents they print (Debian ships neither the PDFs nor the PWG raster
    samples): copied and generated with Ghostscript, placeholders for raster combinations the printer
    does not advertise (ipptool 2.4 checks every FILE path when it parses a suite)."""
    gs = require_tool("gs")
    if not (SUITES / "ipp-1.1.test").exists() or not TEST_PAGE.exists():
        require_tool("/usr/share/cups/ipptool/ipp-1.1.test (cups-ipp-utils) and cups' default-testpage.pdf")
    work = short_tempdir("ippt")
    for suite in SUITES.glob("*.test"):
        shutil.copy(suite, work)
    jobs = []
    for paper in ("a4", "letter"):
        common = [f"-sPAPERSIZE={paper}", "-dFIXEDMEDIA", "-dPDFFitPage"]
        jobs.append(_gs(gs, "-sDEVICE=pdfwrite", *common, "-o", str(work / f"document-{paper}.pdf"), str(TEST_PAGE)))
        jobs.append(_gs(gs, "-sDEVICE=ps2write", *common, "-o", str(work / f"document-{paper}.ps"), str(TEST_PAGE)))
    jobs.append(_gs(gs, "-sDEVICE=jpeg", "-r50", "-o", str(work / "color.jpg"), str(TEST_PAGE)))
    jobs.append(_gs(gs, "-sDEVICE=jpeggray", "-r50", "-o", str(work / "gray.jpg"), str(TEST_PAGE)))
    for resolution in RASTER_RESOLUTIONS:
        for kind, (color_space, bits) in RASTER_TYPES.items():
            folder = work / f"pwg-raster-samples-{resolution}dpi" / kind
            folder.mkdir(parents=True)
            for document, paper in RASTER_DOCUMENTS.items():
                size = [f"-sPAPERSIZE={paper}"] if paper else ["-dDEVICEWIDTHPOINTS=288", "-dDEVICEHEIGHTPOINTS=432"]
                jobs.append(_gs(gs, "-sDEVICE=pwgraster", f"-r{resolution}", f"-dcupsColorSpace={color_space}",
                                f"-dcupsBitsPerColor={bits}", *size, "-dFIXEDMEDIA", "-dPDFFitPage", "-o",
                                str(folder / f"{document}-{kind}-{resolution}dpi.pwg"), str(TEST_PAGE)))  # fmt: skip
    for job in jobs:
        assert job.wait(120) == 0, job.args
    referenced = re.findall(r"^\s*FILE\s+(\S+)", (work / "ipp-everywhere.test").read_text(), re.MULTILINE)
    for name in referenced:
        placeholder = work / name
        if not placeholder.exists():
            placeholder.parent.mkdir(parents=True, exist_ok=True)
            placeholder.touch()
    yield work
    shutil.rmtree(work, ignore_errors=True)


def run_suite(ipptool_dir: Path, spooler: Spooler | str, suite: str, *options: str,
              log_dir: Path | None = None) -> tuple[str, list[str]]:  # fmt: skip
    """Run one ipptool suite against the spooler (or any printer URI); (output, names of failed tests)."""
    ipptool = require_tool("ipptool")
    uri = spooler if isinstance(spooler, str) else f"ipp://127.0.0.1:{spooler.ipp_port}/ipp/print"
    result = subprocess.run(
        [ipptool, "-I", "-T", "30", *options, "-tv", "-f", "document-a4.pdf", uri, suite],
        cwd=ipptool_dir, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = result.stdout + result.stderr
    log_dir = log_dir if log_dir is not None else spooler.root  # type: ignore[union-attr]
    (log_dir / f"{suite}.log").write_text(output)
    failed = re.findall(r"^\s*(.+?)\s+\[FAIL\]", output, re.MULTILINE)
    assert "[PASS]" in output, output[-3000:]
    return output, failed


def suite_summary(output: str) -> tuple[int, int, int]:
    """(passed, failed, skipped) of an ipptool -t run."""
    return tuple(len(re.findall(rf"\[{word}\]", output)) for word in ("PASS", "FAIL", "SKIP"))  # type: ignore


def test_ipp_2_1_and_2_2_the_spooler_passes_where_ippeveprinter_fails(ipptool_dir: Path,
                                                                      spooler_factory: SpoolerFactory) -> None:
    """The comparison, in one run and with the same command line (ipptool's default request version,
    as ippeveprinter answers IPP 2.1/2.2 requests with server-error-version-not-supported): ipptool's
    ipp-2.1 and ipp-2.2 suites against the spooler and against ippeveprinter, CUPS' reference IPP
    Everywhere printer (no notifications, no 5100.11 operations). The summaries are printed (pytest -s);
    test_ipptool_conformance_suite runs the spooler's with -V 2.1 and -V 2.2."""
    from spooler_harness import IppEvePrinter

    IppEvePrinter.require()
    spooler = spooler_factory(spool__min_free_space=0).start()
    eve = IppEvePrinter(short_tempdir("eve"), name="Reference").start()
    try:
        rows = []
        for suite in ("ipp-2.1.test", "ipp-2.2.test"):
            ours, ours_failed = run_suite(ipptool_dir, spooler, suite, "-R")
            theirs, eve_failed = run_suite(ipptool_dir, eve.uri, suite, "-R", log_dir=eve.root)
            rows.append((suite, suite_summary(ours), suite_summary(theirs)))
            assert ours_failed == [], f"{suite}: {ours_failed}\n{ours[-3000:]}"
            required = ["PWG 5100.12 section 6.3 - Required Printer Description Attributes"]
            if suite == "ipp-2.2.test":
                required.append("PWG 5100.12 section 6.4 - Required Printer Description Attributes")
            assert set(required) <= set(eve_failed), eve_failed  # what ippeveprinter lacks
        print("\nipptool suite    spooler (pass/fail/skip)    ippeveprinter (pass/fail/skip)")
        for suite, ours_row, eve_row in rows:
            print(f"{suite:<16} {'/'.join(map(str, ours_row)):<27} {'/'.join(map(str, eve_row))}")
    finally:
        eve.stop()
        shutil.rmtree(eve.root, ignore_errors=True)


@pytest.mark.parametrize("suite,options", [
    ("ipp-1.1.test", ()),
    ("ipp-2.0.test", ()),
    ("ipp-2.1.test", ("-V", "2.1")),
    ("ipp-2.2.test", ("-V", "2.2")),
    ("ipp-everywhere.test", ("-V", "2.0")),
])  # fmt: skip
def test_ipptool_conformance_suite(ipptool_dir: Path, spooler_factory: SpoolerFactory, suite: str,
                                   options: tuple[str, ...]) -> None:  # fmt: skip
    spooler = spooler_factory(spool__min_free_space=0).start()
    output, failed = run_suite(ipptool_dir, spooler, suite, *options)
    assert failed == [], f"{suite}: {failed}\n{output[-4000:]}"
    passed = len(re.findall(r"\[PASS\]", output))
    print(f"{suite}: {passed} passed, {len(failed)} failed")  # the summary, with pytest -s
    assert passed >= {"ipp-1.1.test": 50, "ipp-2.0.test": 51, "ipp-2.1.test": 52, "ipp-2.2.test": 53,
                      "ipp-everywhere.test": 150}[suite]  # fmt: skip
    assert "Traceback" not in spooler.stderr()
    if suite == "ipp-everywhere.test":
        # Every raster sample went through none/deflate/gzip and arrived exactly as generated.
        samples = {p.read_bytes() for p in ipptool_dir.glob("pwg-raster-samples-*/*/*.pwg") if p.stat().st_size}
        spooler.wait_idle()
        rasters = [f for f in spooler.sink_files() if spooler.sink_sidecar(f)["document_format"] == "image/pwg-raster"]
        assert len(rasters) >= 3 * len(samples) - 6
        assert all(f.read_bytes() in samples for f in rasters)


def test_cups_adds_a_driverless_queue_and_prints_to_it(spooler_factory: SpoolerFactory, tmp_path: Path) -> None:
    require_tool("lpadmin")
    require_tool("lp")
    require_tool("lpr")
    spooler = spooler_factory(spool__min_free_space=0).start()
    cups = ScratchCups(short_tempdir("cups"))
    try:
        cups.start()
        uri = f"ipp://127.0.0.1:{spooler.ipp_port}/ipp/print"
        added = cups.run("lpadmin", "-p", "ev", "-E", "-v", uri, "-m", "everywhere")
        assert added.returncode == 0, added.stderr + cups.error_log()[-3000:]
        ppd_path = cups.root / "ppd" / "ev.ppd"
        wait_for(ppd_path.exists, timeout=30, what=f"CUPS to build the PPD: {cups.error_log()[-2000:]}")
        ppd = ppd_path.read_text(errors="replace")
        assert '*Manufacturer: "Spooler"' in ppd and "application/pdf" in ppd
        document = tmp_path / "report.pdf"
        shutil.copy(TEST_PAGE, document)
        printed = cups.run("lp", "-d", "ev", "-t", "Quarterly report", str(document))
        assert printed.returncode == 0, printed.stderr
        [delivered] = spooler.wait_delivered(1, timeout=60)
        sidecar = spooler.sink_sidecar(delivered)
        assert (sidecar["user"], sidecar["name"], sidecar["protocol"]) == (getpass.getuser(), "Quarterly report",
                                                                             "ipp")  # fmt: skip
        data = delivered.read_bytes()
        assert data.startswith(b"%PDF") and data.rstrip().endswith(b"%%EOF")  # a whole document
        wait_for(lambda: "ev-1" in cups.run("lpstat", "-W", "completed", "-o", "ev").stdout, timeout=60,
                 what=f"CUPS to see the job completed: {cups.error_log()[-2000:]}")  # fmt: skip

        notes = tmp_path / "notes.txt"
        notes.write_text("Minutes of the branch meeting\n" * 20)
        queued = cups.run("lpr", "-P", "ev", "-T", "Branch notes", str(notes))  # BSD lpr, text CUPS converts
        assert queued.returncode == 0, queued.stderr
        delivered_files = spooler.wait_delivered(2, timeout=60)
        second = spooler.sink_sidecar(delivered_files[1])
        assert (second["user"], second["name"]) == (getpass.getuser(), "Branch notes")
        text_job = delivered_files[1].read_bytes()
        # CUPS either sends the text as it is (the printer lists text/plain) or converts it to PDF.
        assert b"Minutes of the branch meeting" in text_job or (
            text_job.startswith(b"%PDF") and text_job.rstrip().endswith(b"%%EOF"))  # fmt: skip
        wait_for(lambda: "ev-2" in cups.run("lpstat", "-W", "completed", "-o", "ev").stdout, timeout=60,
                 what=f"CUPS to see the lpr job completed: {cups.error_log()[-2000:]}")  # fmt: skip
    finally:
        cups.stop()
        shutil.rmtree(cups.root, ignore_errors=True)


# -- durability and memory ----------------------------------------------------------------------------


def ipp_call(port: int, message: IppMessage, body: bytes | Iterator[bytes] = b"", timeout: float = 60) -> IppMessage:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        header = encode_message(message)
        if isinstance(body, bytes):
            connection.request("POST", "/ipp/print", header + body, {"Content-Type": "application/ipp"})
        else:
            def chunks() -> Iterator[bytes]:
                yield header
                yield from body

            connection.request("POST", "/ipp/print", chunks(), {"Content-Type": "application/ipp"},
                               encode_chunked=True)  # fmt: skip
        response = connection.getresponse()
        assert response.status == 200
        return decode(response.read())
    finally:
        connection.close()


def print_job_message(port: int, user: str, name: str, *extra: Attribute) -> IppMessage:
    message = IppMessage((2, 0), Operation.PRINT_JOB, 1)
    message.add_group(
        Tag.OPERATION, Attribute.charset("attributes-charset", "utf-8"),
        Attribute.language("attributes-natural-language", "en"),
        Attribute.uri("printer-uri", f"ipp://127.0.0.1:{port}/ipp/print"),
        Attribute.name("requesting-user-name", user), Attribute.name("job-name", name), *extra,
    )  # fmt: skip
    return message


def test_a_print_job_answered_just_before_kill_9_is_delivered_once(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory(device__uri="socket://127.0.0.1:9", device__retry_initial="1h", device__retry_max="1h",
                              spool__min_free_space=0)  # fmt: skip
    spooler.start()
    documents = [b"%PDF-1.7\n" + os.urandom(30_000 + n) for n in range(3)]
    for number, document in enumerate(documents):
        packed = gzip.compress(document) if number == 1 else document
        extra = [Attribute.keyword("compression", "gzip")] if number == 1 else []
        response = ipp_call(spooler.ipp_port, print_job_message(spooler.ipp_port, "kim", f"crash {number}", *extra),
                            packed)  # fmt: skip
        assert Status(response.code) == Status.SUCCESSFUL_OK
    spooler.kill9()  # right after the last success

    spooler.write_config(device__uri=spooler.sink.as_uri())
    spooler.start()
    spooler.wait_delivered(3)
    spooler.wait_idle()  # every delivery made: a duplicate would be in the sink now
    assert [f.read_bytes() for f in spooler.sink_files()] == documents
    assert [d["job_id"] for d in spooler.deliveries()] == [1, 2, 3]
    assert [spooler.sink_sidecar(f)["user"] for f in spooler.sink_files()] == ["kim"] * 3


def test_concurrent_print_jobs_acknowledged_before_kill_9_all_survive(spooler_factory: SpoolerFactory) -> None:
    """Four clients at once (their jobs share group commits), small documents stored inline and
    larger ones in spool files: every job acknowledged before kill -9 prints once, byte for byte."""
    from concurrent.futures import ThreadPoolExecutor

    spooler = spooler_factory(device__uri="socket://127.0.0.1:9", device__retry_initial="1h", device__retry_max="1h",
                              spool__min_free_space=0, analysis__enabled=False)  # fmt: skip
    spooler.start()
    sizes = [500, 10_000, 64 * 1024, 64 * 1024 + 1, 200_000]
    documents = {f"c{client}-{n}": b"%PDF-1.7\n" + os.urandom(sizes[(client + n) % len(sizes)])
                 for client in range(4) for n in range(6)}  # fmt: skip

    def client(number: int) -> list[str]:
        acknowledged = []
        for name, document in documents.items():
            if name.startswith(f"c{number}-"):
                response = ipp_call(spooler.ipp_port, print_job_message(spooler.ipp_port, "kim", name), document)
                assert Status(response.code) == Status.SUCCESSFUL_OK
                acknowledged.append(name)
        return acknowledged

    with ThreadPoolExecutor(4) as pool:
        acknowledged = [name for names in pool.map(client, range(4)) for name in names]
    spooler.kill9()  # right after the last success

    spooler.write_config(device__uri=spooler.sink.as_uri())
    spooler.start()
    spooler.wait_delivered(len(acknowledged))
    spooler.wait_idle()  # every delivery made: a duplicate would be in the sink now
    delivered = {spooler.sink_sidecar(f)["name"]: f.read_bytes() for f in spooler.sink_files()}
    assert len(spooler.sink_files()) == len(acknowledged) == len(documents)
    assert delivered == documents
    job_ids = [d["job_id"] for d in spooler.deliveries()]
    assert job_ids == sorted(set(job_ids))


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_memory_does_not_grow_with_the_document(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory(spool__min_free_space=0, device__uri="socket://127.0.0.1:9",
                              device__retry_initial="1h", device__retry_max="1h").start()  # fmt: skip
    assert spooler.process is not None
    before = peak_rss_kib(spooler.process.pid)
    block = os.urandom(256 * 1024)
    total = 512 * 1024 * 1024

    def document() -> Iterator[bytes]:
        yield b"%PDF-1.7\n"
        for _ in range(total // len(block)):
            yield block

    response = ipp_call(spooler.ipp_port, print_job_message(spooler.ipp_port, "lee", "big"), document(), timeout=300)
    assert Status(response.code) == Status.SUCCESSFUL_OK
    after = peak_rss_kib(spooler.process.pid)
    [job] = spooler.jobs()
    assert job["size"] == total + len(b"%PDF-1.7\n")
    assert after - before < 64 * 1024, f"peak RSS grew by {(after - before) // 1024} MiB for a 512 MiB document"


def operation_message(port: int, operation: int, user: str, *extra: Attribute) -> IppMessage:
    message = IppMessage((2, 0), operation, 1)
    message.add_group(
        Tag.OPERATION, Attribute.charset("attributes-charset", "utf-8"),
        Attribute.language("attributes-natural-language", "en"),
        Attribute.uri("printer-uri", f"ipp://127.0.0.1:{port}/ipp/print"),
        Attribute.name("requesting-user-name", user), *extra,
    )  # fmt: skip
    return message


def test_create_job_after_kill_9_closed_jobs_print_once_open_ones_are_aborted(
    spooler_factory: SpoolerFactory,
) -> None:
    spooler = spooler_factory(device__uri="socket://127.0.0.1:9", device__retry_initial="1h", device__retry_max="1h",
                              spool__min_free_space=0)  # fmt: skip
    spooler.start()
    port = spooler.ipp_port
    parts = [b"%PDF-1.7\n" + os.urandom(20_000), os.urandom(5_000)]
    job_ids = []
    for name in ("closed", "open"):
        created = ipp_call(port, operation_message(port, Operation.CREATE_JOB, "ann", Attribute.name("job-name", name)))
        assert Status(created.code) == Status.SUCCESSFUL_OK and created.job_attributes is not None
        job_ids.append(int(created.job_attributes["job-id"].first))  # type: ignore[arg-type]
        for number, part in enumerate(parts):
            last = name == "closed" and number == len(parts) - 1
            sent = ipp_call(port, operation_message(port, Operation.SEND_DOCUMENT, "ann",
                                                    Attribute.integer("job-id", job_ids[-1]),
                                                    Attribute.boolean("last-document", last)), part)  # fmt: skip
            assert Status(sent.code) == Status.SUCCESSFUL_OK
    spooler.kill9()

    spooler.write_config(device__uri=spooler.sink.as_uri())
    spooler.start()
    [delivered] = spooler.wait_delivered(1)
    spooler.wait_idle()  # every delivery made: a second one would be in the sink now
    assert delivered.read_bytes() == b"".join(parts) and len(spooler.deliveries()) == 1
    assert spooler.sink_sidecar(delivered)["name"] == "closed"
    assert spooler.job(job_ids[1])["state"] == "aborted"  # its client never closed it


def test_an_ipp_device_is_described_by_its_own_answer(spooler_factory: SpoolerFactory) -> None:
    """The device is a second `spooler serve`, monochrome and taking only what it is configured to:
    the front spooler's Get-Printer-Attributes says what the device says, and a job asking for colour
    is told it is not supported."""
    device = spooler_factory(ipp__color=False, spool__min_free_space=0).start()
    front = spooler_factory(device__uri=f"ipp://127.0.0.1:{device.ipp_port}/ipp/print", spool__min_free_space=0)
    front.start()

    def printer(*names: str) -> dict[str, list[object]]:
        request = operation_message(front.ipp_port, Operation.GET_PRINTER_ATTRIBUTES, "kim",
                                    Attribute.keyword("requested-attributes", *names))  # fmt: skip
        answer = ipp_call(front.ipp_port, request).printer_attributes
        assert answer is not None
        return {attribute.name: attribute.all for attribute in answer.attributes}

    wait_for(lambda: printer("color-supported")["color-supported"] == [False], timeout=30,
             what="the front spooler to take the device's description")  # fmt: skip
    assert printer("print-color-mode-supported")["print-color-mode-supported"] == ["auto", "monochrome"]
    response = ipp_call(front.ipp_port, print_job_message(front.ipp_port, "kim", "colour?",
                                                          Attribute.boolean("ipp-attribute-fidelity", True)),
                        b"%PDF-1.7\n")  # fmt: skip
    assert Status(response.code) == Status.SUCCESSFUL_OK  # nothing unsupported asked
    message = print_job_message(front.ipp_port, "kim", "colour", Attribute.boolean("ipp-attribute-fidelity", True))
    message.add_group(Tag.JOB, Attribute.keyword("print-color-mode", "color"))
    refused = ipp_call(front.ipp_port, message, b"%PDF-1.7\n")
    assert Status(refused.code) == Status.CLIENT_ERROR_ATTRIBUTES_OR_VALUES_NOT_SUPPORTED
    assert front.events("device_described")


def test_ipp_everywhere_suite_passes_with_a_described_device(ipptool_dir: Path, spooler_factory: SpoolerFactory) -> None:
    """The attributes taken from an IPP device (a second spooler, monochrome) keep the printer conformant."""
    device = spooler_factory(ipp__color=False, spool__min_free_space=0).start()
    front = spooler_factory(device__uri=f"ipp://127.0.0.1:{device.ipp_port}/ipp/print", spool__min_free_space=0)
    front.start()
    wait_for(lambda: front.events("device_described"), timeout=30, what="the device's description")
    output, failed = run_suite(ipptool_dir, front, "ipp-everywhere.test", "-V", "2.0")
    assert failed == [], f"{failed}\n{output[-4000:]}"


def test_a_gzip_bomb_from_ipptool_is_refused_and_leaves_nothing(spooler_factory: SpoolerFactory, tmp_path: Path) -> None:
    """Issue 14, finding 10: ipptool compresses 64 MiB of zeros (print-job-gzip.test: COMPRESSION gzip)
    into ~64 KiB; the spooler refuses it past its allowance with request-entity-too-large, keeps no
    job and no partial file, and goes on taking jobs."""
    tool = require_tool("ipptool")
    spooler = spooler_factory(spool__min_free_space=0).start()
    zeros = tmp_path / "zeros.prn"
    with open(zeros, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    uri = f"ipp://127.0.0.1:{spooler.ipp_port}/ipp/print"
    suite = "/usr/share/cups/ipptool/print-job-gzip.test"
    result = subprocess.run([tool, "-T", "60", "-tv", "-f", str(zeros), "-d", "filetype=application/octet-stream",
                             uri, suite], capture_output=True, text=True, timeout=180)  # fmt: skip
    output = result.stdout + result.stderr
    assert "client-error-request-entity-too-large" in output and "expands more than 100 times" in output, output[-2000:]
    assert spooler.jobs() == []
    assert list((spooler.state_dir / "incoming").iterdir()) == []
    assert not any((spooler.state_dir / "spool").iterdir())
    text = tmp_path / "listing.txt"
    text.write_bytes(b"".join(b"line %06d of a listing\n" % n for n in range(200_000)))  # ~4.6 MiB, ratio ~5
    result = subprocess.run([tool, "-T", "60", "-t", "-f", str(text), "-d", "filetype=text/plain", uri, suite],
                            capture_output=True, text=True, timeout=180)  # fmt: skip
    assert "[PASS]" in result.stdout, result.stdout[-2000:]
    [job] = wait_for(lambda: spooler.jobs(), what="the compressed text job")
    assert job["size"] == text.stat().st_size
