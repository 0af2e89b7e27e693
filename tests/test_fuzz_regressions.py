"""What fuzzing found, replayed through the public parser APIs; and every fuzz target over its seed
corpus, so that the targets in fuzz/ (run with atheris by fuzz/run.py) keep working without atheris."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.targets import TARGETS  # noqa: E402

# -- the targets over their seeds ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_accepts_its_seed_corpus(name: str) -> None:
    target = TARGETS[name]
    seeds = target.seed_files()
    assert seeds, f"no seeds for {name}"
    for seed in seeds:
        target.run(seed.read_bytes())  # raises on a finding


def test_seed_corpora_stay_small() -> None:
    total = sum(p.stat().st_size for p in (ROOT / "fuzz" / "seeds").rglob("*") if p.is_file())
    assert total < 2 * 1024 * 1024


def test_targets_report_what_they_are_meant_to() -> None:
    """A target is only useful if a broken invariant surfaces: a PDF analyser fed a PDF-looking
    input gives its typed refusal (returns), while a raised non-typed error propagates."""
    TARGETS["pdf"].run(b"%PDF-1.7\ngarbage")  # AnalysisError: the analyser's refusal, not a finding
    with pytest.raises(TypeError):
        TARGETS["pdf"].run(None)  # type: ignore[arg-type]


# -- IPP request path -------------------------------------------------------------------------------------


def _ipp_client(tmp_path: Path):  # type: ignore[no-untyped-def]
    from inprocess import Rig
    from test_ipp_operations import Client

    rig = Rig(tmp_path)
    return rig, Client(rig.ipp_site())


@pytest.mark.parametrize("bad", ["requesting-user-name", "job-name", "copies"])
def test_print_job_with_a_badly_typed_attribute_leaves_no_incoming_file(tmp_path: Path, bad: str) -> None:
    """Found by ipp_request: a Print-Job whose requesting-user-name had an unknown value tag (0x6e) was
    answered client-error-bad-request, but its document stayed open in incoming/ (a leaked file and
    file handle per request): the check ran inside print_job's generator, whose exception fails the
    Deferred instead of reaching respond()'s discard."""
    from spooler.ipp.codec import Attribute, Value, decode
    from spooler.ipp.tags import Operation, Status
    from test_ipp_operations import http_post, ipp_request

    rig, client = _ipp_client(tmp_path)
    wrong = Attribute(bad, [Value(0x6E, b"root")])
    if bad == "copies":
        message = ipp_request(Operation.PRINT_JOB, job=[wrong])
    else:
        message = ipp_request(Operation.PRINT_JOB, wrong, user=None)
    response = client.call(message, b"%PDF-1.7\n" + b"x" * 5000)
    assert response.code == Status.CLIENT_ERROR_BAD_REQUEST
    assert list(rig.config.incoming_dir.iterdir()) == []
    assert rig.store.list_jobs() == []
    # The fuzzer's own input (an ipptool capture, mutated) gives the same answer.
    raw = (ROOT / "fuzz" / "seeds" / "ipp" / "regress-print-job-bad-user-tag.ipp").read_bytes()
    client.send(http_post(raw))
    assert decode(client.responses()[-1][1]).code == Status.CLIENT_ERROR_BAD_REQUEST
    assert list(rig.config.incoming_dir.iterdir()) == []



@pytest.mark.parametrize("tail", ["\u00b2", "9" * 23, "9" * 5000, "2147483648"],
                         ids=["superscript-two", "23-digits", "5000-digits", "2**31"])
def test_job_uri_that_is_no_job_id_is_not_found(tmp_path: Path, tail: str) -> None:
    """A job-uri whose last segment is not a job-id: "²" passes str.isdigit() but not int() (a
    ValueError), 23 digits reached SQLite (OverflowError), 5000 digits broke int()'s 4300-digit
    limit; each was server-error-internal-error with a logged traceback. Now: client-error-not-found."""
    from spooler.ipp.codec import Attribute
    from spooler.ipp.tags import Operation, Status
    from test_ipp_operations import ipp_request

    _, client = _ipp_client(tmp_path)
    for operation in (Operation.CANCEL_JOB, Operation.GET_JOB_ATTRIBUTES, Operation.HOLD_JOB):
        message = ipp_request(operation, Attribute.uri("job-uri", f"ipp://localhost/ipp/print/{tail}"),
                              printer_uri=False)  # fmt: skip
        assert client.call(message).code == Status.CLIENT_ERROR_NOT_FOUND


# -- LPD --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [b"\x03default \xc2\xb2\n", b"\x04default alice \xc2\xb2\n",
                                     b"\x05default root 1 \xc2\xb2\n"])  # fmt: skip
def test_lpq_lprm_list_with_a_non_ascii_digit(tmp_path: Path, command: bytes) -> None:
    """An lpq/lprm list item "²" (UTF-8 c2 b2) passed str.isdigit() and int() raised ValueError out of
    dataReceived: the connection was dropped without an answer. Now it is a user name."""
    from inprocess import Rig
    from test_lpd import connect

    rig = Rig(tmp_path)
    job = rig.submit(b"hello\n", protocol="lpd", user="alice", queue="default")
    protocol, transport = connect(rig)
    protocol.dataReceived(command)
    answer = transport.value().decode()
    assert transport.disconnecting
    if command[0] == 5:  # "root" is no admin agent here: its removal of alice's job is refused
        assert f"job {job.job_id}: permission denied" in answer
    else:
        assert answer.startswith("default is ready")


def test_select_jobs_reads_only_ascii_numbers() -> None:
    from spooler.intake.lpd import job_number, select_jobs

    assert [job_number(item) for item in ("12", "\u00b2", "\u0663", "alice", "0")] == [12, None, None, None, 0]
    assert select_jobs([], ["\u00b2", "7"]) == []


# -- page analysers ---------------------------------------------------------------------------------------

PDF_SEEDS = ROOT / "fuzz" / "seeds" / "pdf"
SAMPLES = ROOT / "samples" / "corpus"


@pytest.mark.parametrize(("source", "old", "new", "reason"), [
    ("text_a4_3p.pdf", b"/FlateDecode", b"/FlateDecodX", "unsupported PDF feature: Unsupported filter /FlateDecodX"),
    ("encrypted_owner_only.pdf", b"/V 1", b"/V 0", "unsupported PDF feature: Encryption V=0 NOT supported"),
])  # fmt: skip
def test_pdf_pypdf_not_implemented_is_the_analysers_refusal(tmp_path: Path, source: str, old: bytes, new: bytes,
                                                             reason: str) -> None:  # fmt: skip
    """pypdf raises NotImplementedError for a stream filter or an encryption version it does not know;
    the PDF analyser let it out (analyze_file then said "analyser failed: NotImplementedError")."""
    from drivers import AnalysisError, analyze_file
    from drivers.pdf import analyze

    path = tmp_path / "doc.pdf"
    path.write_bytes((SAMPLES / source).read_bytes().replace(old, new))
    with pytest.raises(AnalysisError, match="unsupported PDF feature"):
        analyze(path)
    stats = analyze_file(path)
    assert (stats.status, stats.reason) == ("unknown", reason)


@pytest.mark.parametrize("name", ["regress-content-filter-unsupported.pdf", "regress-encryption-v0.pdf"])
def test_pdf_fuzz_inputs_with_unsupported_features_are_unknown(name: str) -> None:
    from drivers import AnalysisError
    from drivers.pdf import analyze

    with pytest.raises(AnalysisError, match="unsupported PDF feature"):
        analyze(PDF_SEEDS / name)


def test_pdf_image_with_an_unsupported_filter_is_colour_by_its_colour_space() -> None:
    """The fuzz input: an RGB image XObject whose filter was mutated to an unknown name. The page is
    still counted; the image's colour is judged by its colour space (as for an image too big to
    decode), not by its pixels."""
    from drivers.pdf import analyze

    stats = analyze(PDF_SEEDS / "regress-image-filter-unsupported.pdf")
    assert (stats.status, stats.pages, stats.color_pages) == ("ok", 1, 1)


def test_pdf_object_offset_before_the_start_of_the_file_is_unreadable_not_a_read_error() -> None:
    """The fuzz input: a trailer whose /Encrypt object sits at a bogus xref offset, where pypdf seeks
    20 bytes back from a position near the start: the OSError (EINVAL) escaped the analyser and
    analyze_file reported "cannot read: Invalid argument", as if the disk had failed."""
    from drivers import AnalysisError, analyze_file
    from drivers.detect import detect
    from drivers.pdf import analyze

    path = PDF_SEEDS / "regress-seek-before-start.pdf"
    assert detect(path.read_bytes()).format == "application/pdf"
    with pytest.raises(AnalysisError, match="offset before the start"):
        analyze(path)
    assert analyze_file(path).reason == "unreadable PDF: an offset before the start of the file"


def test_pdf_abbreviated_filter_name_in_a_stream_is_unreadable(tmp_path: Path) -> None:
    """pypdf 7 raises its DeprecationError (not a PyPdfError) for /Fl in a stream's /Filter (the
    abbreviations belong to inline images only); it escaped the analyser. The fuzz input and a
    sample with the same change are both "unreadable PDF"."""
    from drivers import AnalysisError, analyze_file
    from drivers.pdf import analyze

    path = tmp_path / "doc.pdf"
    old, new = b"/ASCII85Decode /FlateDecode ]", b"/ASCII85Decode /Fl /Unknown ]"
    path.write_bytes((SAMPLES / "text_a4_3p.pdf").read_bytes().replace(old, new))
    for document in (path, PDF_SEEDS / "regress-abbreviated-filter.pdf"):
        with pytest.raises(AnalysisError, match="unreadable PDF: DeprecationError"):
            analyze(document)
    assert analyze_file(path).reason.startswith("unreadable PDF: DeprecationError: The filter name /Fl")


def test_pdf_filter_whose_decoder_is_not_installed_is_unsupported(tmp_path: Path) -> None:
    """Found by reading pypdf's errors after the findings above, confirmed with the pdf target:
    /BrotliDecode without the brotli package raises pypdf's DependencyError (not a PyPdfError)."""
    from drivers import AnalysisError, analyze_file
    from drivers.pdf import analyze

    path = tmp_path / "doc.pdf"
    old, new = b"/ASCII85Decode /FlateDecode ]", b"/ASCII85Decode /BrotliDecode]"
    path.write_bytes((SAMPLES / "text_a4_3p.pdf").read_bytes().replace(old, new))
    with pytest.raises(AnalysisError):
        analyze(path)
    assert analyze_file(path).status == "unknown"
    assert not analyze_file(path).reason.startswith("analyser failed")


@pytest.mark.parametrize(("document", "pages"), [
    (b"%!PS-Adobe-3.0\n%%Pages: -1\n%%EOF\n", 0),
    (b"%!PS-Adobe-3.0\n%%Pages: -3\n%%Page: 1 1\nshowpage\n%%EOF\n", 1),
])  # fmt: skip
def test_postscript_negative_pages_comment_is_no_page_count(tmp_path: Path, document: bytes, pages: int) -> None:
    """Found by the postscript target (its invariant pages >= 0): "%%Pages: -1" with no %%Page
    comments and no showpage was taken at its word, a document of -1 pages with status "ok" (a
    negative count for accounting). A negative %%Pages is now ignored like a missing one."""
    from drivers.postscript import analyze

    path = tmp_path / "doc.ps"
    path.write_bytes(document)
    stats = analyze(path)
    assert (stats.status, stats.pages, len(stats.page_info)) == ("ok", pages, pages)
    fuzzed = analyze(ROOT / "fuzz" / "seeds" / "postscript" / "regress-negative-pages.ps")
    assert fuzzed.pages >= 0 and len(fuzzed.page_info) == fuzzed.pages


@pytest.mark.parametrize("port", ["²", "٣٤", "8640²"])
def test_a_peer_port_of_non_ascii_digits_is_a_config_error_not_a_crash(port: str) -> None:
    from spooler.config import config_from_mapping
    from spooler.model import ConfigError

    with pytest.raises(ConfigError) as raised:
        config_from_mapping({"login": {"peers": [f"127.0.0.1:{port}"]}}, base=Path("."), state_dir=Path("/nonexistent"))
    assert raised.value.key == "login.peers"


@pytest.mark.parametrize("text", ["²", "١٢"])
def test_cli_and_admin_job_numbers_are_ascii_digits_only(text: str) -> None:
    import argparse

    from spooler.admin import AdminResource
    from spooler.cli import _job_id

    with pytest.raises(argparse.ArgumentTypeError):
        _job_id(text)
    with pytest.raises(Exception) as raised:
        AdminResource._job_id(text)
    assert getattr(raised.value, "status", None) == 400
