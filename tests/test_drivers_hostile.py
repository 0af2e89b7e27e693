"""Truncated, corrupt and hostile inputs: every analyser answers "unknown" in bounded time, never raises."""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers import ANALYSERS, Limits, analyze_file
from drivers.sandbox import analyze_isolated

CORPUS = Path(__file__).resolve().parent.parent / "samples" / "corpus"
SAMPLES = sorted(name for name in json.loads((CORPUS / "expected.json").read_text()))


def build_pdf(objects: dict[int, bytes], root: int = 1) -> bytes:
    """A PDF with a correct xref table from numbered object bodies."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    size = max(objects) + 1
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        out += b"%010d 00000 n \n" % offsets[number] if number in offsets else b"0000000000 65535 f \n"
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, root, xref)
    return bytes(out)


PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>"


def _assert_unknown(path: Path, seconds: float = 5.0, **kwargs) -> str:
    started = time.monotonic()
    stats = analyze_file(path, **kwargs)
    assert time.monotonic() - started < seconds
    assert stats.status == "unknown", stats
    assert stats.reason
    return stats.reason


def test_pdf_page_tree_claiming_a_billion_pages(tmp_path: Path) -> None:
    path = tmp_path / "count_lie.pdf"
    path.write_bytes(build_pdf({1: b"<< /Type /Catalog /Pages 2 0 R >>",
                                2: b"<< /Type /Pages /Kids [3 0 R] /Count 1000000000 >>", 3: PAGE}))
    assert "1000000000" in _assert_unknown(path)


@pytest.mark.parametrize("declared", [10**9, 1])
def test_pdf_fan_out_of_a_billion_leaves(tmp_path: Path, declared: int) -> None:
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    for level in range(9):
        number = 2 + level
        kids = b" ".join([b"%d 0 R" % (number + 1)] * 10)
        objects[number] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, declared)
    objects[11] = b"<< /Type /Page /Parent 10 0 R /MediaBox [0 0 595 842] >>"
    path = tmp_path / "fanout.pdf"
    path.write_bytes(build_pdf(objects))
    assert len(path.read_bytes()) < 3000
    _assert_unknown(path)


def test_pdf_deep_and_cyclic_page_trees(tmp_path: Path) -> None:
    depth = 2000
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    for number in range(2, 2 + depth):
        objects[number] = b"<< /Type /Pages /Kids [%d 0 R] /Count 1 >>" % (number + 1)
    objects[2 + depth] = PAGE
    deep = tmp_path / "deep.pdf"
    deep.write_bytes(build_pdf(objects))
    _assert_unknown(deep)
    cyclic = tmp_path / "cyclic.pdf"
    cyclic.write_bytes(build_pdf({1: b"<< /Type /Catalog /Pages 2 0 R >>",
                                  2: b"<< /Type /Pages /Kids [3 0 R 2 0 R] /Count 2 >>", 3: PAGE}))
    _assert_unknown(cyclic)


def test_pdf_decompression_bomb(tmp_path: Path) -> None:
    compressor = zlib.compressobj(9)
    chunk = b"\0" * (1 << 20)
    body = b"".join(compressor.compress(chunk) for _ in range(96)) + compressor.flush()
    path = tmp_path / "bomb.pdf"
    path.write_bytes(build_pdf({
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
        4: b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(body) + body + b"\nendstream"}))
    assert "limit" in _assert_unknown(path, limits=Limits(max_decoded_bytes=32 << 20))


def test_pdf_huge_grey_rgb_image_checked_in_bounded_memory(tmp_path: Path) -> None:
    width = height = 4000  # 48 MB of pixels, inflated in slices
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
    stats = analyze_isolated(path, memory_limit=400 << 20, timeout=20)
    assert (stats.status, stats.mono_pages) == ("ok", 1), stats.reason


def test_pdf_deeply_nested_arrays_in_resources(tmp_path: Path) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    path = tmp_path / "nested.pdf"
    path.write_bytes(build_pdf({
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /X " + nested + b" >> >>"}))
    stats = analyze_file(path)  # either read (the array is never used) or unknown; never raises
    assert stats.status in ("ok", "unknown")


def test_pdf_cyclic_forms_do_not_loop(tmp_path: Path) -> None:
    form = (b"<< /Type /XObject /Subtype /Form /BBox [0 0 10 10] /Resources << /XObject << /F 4 0 R >> >>"
            b" /Length 8 >>\nstream\n/F Do   \nendstream")
    path = tmp_path / "forms.pdf"
    path.write_bytes(build_pdf({
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 5 0 R"
           b" /Resources << /XObject << /F 4 0 R >> >> >>",
        4: form,
        5: b"<< /Length 5 >>\nstream\n/F Do\nendstream"}))
    _assert_unknown(path)


def test_pwg_header_claiming_a_trillion_pixels(tmp_path: Path) -> None:
    header = bytearray(1796)
    header[0:9] = b"PwgRaster"
    for offset, value in ((372, 10**6), (376, 10**6), (384, 8), (388, 24), (392, 3 * 10**6), (400, 19)):
        struct.pack_into(">I", header, offset, value)
    path = tmp_path / "huge.pwg"
    path.write_bytes(b"RaS2" + bytes(header) + b"\x00\x7f\xff\xff\xff")
    assert "pixels" in _assert_unknown(path)
    urf = tmp_path / "huge.urf"
    urf.write_bytes(b"UNIRAST\0" + struct.pack(">I", 1) + bytes([24, 1, 1, 0]) + bytes(8)
                    + struct.pack(">III", 10**6, 10**6, 300) + bytes(8) + b"\x00")
    assert "pixels" in _assert_unknown(urf)


def test_huge_pcl_binary_counts_and_page_cap(tmp_path: Path) -> None:
    path = tmp_path / "lie.pcl"
    path.write_bytes(b"\x1bE\x1b*b999999999W" + b"\0" * 10)
    _assert_unknown(path)
    ff = tmp_path / "ff.pcl"
    ff.write_bytes(b"\x1bE" + b"\f" * 5000)
    assert "cap" in _assert_unknown(ff, limits=Limits(page_cap=1000))
    pxl = tmp_path / "lie.pxl"
    pxl.write_bytes(b") HP-PCL XL;2;0\n\xfa\xff\xff\xff\x7f\x00")
    _assert_unknown(pxl)


@pytest.mark.parametrize("name", SAMPLES)
def test_truncated_samples_never_raise(name: str, tmp_path: Path) -> None:
    data = (CORPUS / name).read_bytes()
    for cut in sorted({1, 7, 64, len(data) // 3, len(data) // 2, len(data) - 9}):
        if 0 < cut < len(data):
            path = tmp_path / f"cut{cut}"
            path.write_bytes(data[:cut])
            stats = analyze_file(path)
            assert stats.status in ("ok", "unknown")
            if stats.status == "unknown":
                assert stats.reason


@pytest.mark.parametrize("name", SAMPLES)
def test_corrupted_samples_never_raise(name: str, tmp_path: Path) -> None:
    data = bytearray((CORPUS / name).read_bytes())
    for seed in range(5):
        corrupted = bytearray(data)
        for index in range(seed * 7 + 3, len(corrupted), max(1, len(corrupted) // 40)):
            corrupted[index] ^= 0x5A + seed
        path = tmp_path / f"bad{seed}"
        path.write_bytes(bytes(corrupted))
        assert analyze_file(path).status in ("ok", "unknown")


def test_unreadable_and_unknown_inputs(tmp_path: Path) -> None:
    assert "cannot read" in analyze_file(tmp_path / "missing").reason
    binary = tmp_path / "junk"
    binary.write_bytes(bytes(range(256)) * 4)
    assert analyze_file(binary).reason == "format not recognised"
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert analyze_file(empty).status == "unknown"


_MAGICS = [b"%PDF-1.4\n", b"%!PS-Adobe-3.0\n", b"\x1bE", b") HP-PCL XL;2;0\n", b"RaS2", b"UNIRAST\0",
           b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"\x1b%-12345X@PJL ENTER LANGUAGE=PCL\r\n", b""]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(magic=st.sampled_from(_MAGICS), body=st.binary(max_size=4096))
def test_random_bytes_never_raise(tmp_path: Path, magic: bytes, body: bytes) -> None:
    path = tmp_path / "random"
    path.write_bytes(magic + body)
    stats = analyze_file(path)
    assert stats.status in ("ok", "unknown")
    assert stats.pages >= 0


@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from(sorted(ANALYSERS)), body=st.binary(max_size=2048))
def test_each_analyser_behind_analyze_file_never_raises(fmt: str, body: bytes) -> None:
    import tempfile

    with tempfile.NamedTemporaryFile() as handle:
        handle.write(body)
        handle.flush()
        assert analyze_file(handle.name, declared_format=fmt).status in ("ok", "unknown")


def test_sandbox_matches_in_process() -> None:
    path = CORPUS / "mixed_letter_4p.pdf"
    assert analyze_isolated(path, timeout=20) == analyze_file(path)


def test_sandbox_time_limit(tmp_path: Path) -> None:
    # A slow PostScript file: ~60 MB of one long line pattern makes the DSC scan run for long;
    # with a 0.3 s limit the child is killed.
    path = tmp_path / "slow.ps"
    with open(path, "wb") as handle:
        handle.write(b"%!PS\n")
        line = b"{ showpage } { showpage } (x) (y) showpage\n" * 20000
        for _ in range(80):
            handle.write(line)
    started = time.monotonic()
    stats = analyze_isolated(path, timeout=0.3)
    assert time.monotonic() - started < 5
    assert (stats.status, stats.reason) == ("unknown", "time limit")


def test_sandbox_memory_limit_and_page_cap(tmp_path: Path) -> None:
    stats = analyze_isolated(CORPUS / "images_3p.pdf", memory_limit=8 << 20, timeout=20)
    assert (stats.status, stats.reason) == ("unknown", "memory limit")
    capped = analyze_isolated(CORPUS / "text_a4_3p.pdf", page_cap=2, timeout=20)
    assert capped.status == "unknown" and "cap" in capped.reason


def test_sandbox_crash_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("drivers.sandbox.sys.executable", "/bin/false")
    stats = analyze_isolated(CORPUS / "grey.jpg", timeout=5)
    assert stats.status == "unknown" and stats.reason.startswith("crashed")
