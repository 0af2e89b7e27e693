"""PDF colour detection on hand-built content streams: colour spaces, grey traps, forms, images."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers import analyze_file
from test_drivers_hostile import build_pdf


def one_page(tmp_path: Path, content: bytes, resources: bytes = b"<< >>",
             extra: dict[int, bytes] | None = None) -> bool | None:
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources "
           + resources + b" >>",
        4: b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    }
    objects.update(extra or {})
    path = tmp_path / "page.pdf"
    path.write_bytes(build_pdf(objects))
    stats = analyze_file(path)
    assert stats.status == "ok", stats.reason
    return stats.page_info[0].color


ICC_GREY = {9: b"<< /N 1 /Length 4 >>\nstream\nxxxx\nendstream"}
CASES = [
    ("grey in RGB", b"0.5 0.5 0.5 rg 0 0 10 10 re f", b"<< >>", None, False),
    ("red stroke", b"1 0 0 RG 0 0 m 10 10 l S", b"<< >>", None, True),
    ("K only", b"0 0 0 1 k 0 0 10 10 re f", b"<< >>", None, False),
    ("cyan tint", b".1 0 0 0 k 0 0 10 10 re f", b"<< >>", None, True),
    ("grey setgray", b"0.3 g 0 0 10 10 re f", b"<< >>", None, False),
    ("sc in RGB space grey", b"/C0 cs 0.2 0.2 0.2 sc", b"<< /ColorSpace << /C0 /DeviceRGB >> >>", None, False),
    ("sc in RGB space red", b"/C0 cs 1 0 0 sc", b"<< /ColorSpace << /C0 /DeviceRGB >> >>", None, True),
    ("ICC N=1", b"/C1 cs 0.3 scn", b"<< /ColorSpace << /C1 [/ICCBased 9 0 R] >> >>", ICC_GREY, False),
    ("indexed grey palette", b"/C2 cs 1 sc",
     b"<< /ColorSpace << /C2 [/Indexed /DeviceRGB 1 <000000808080>] >> >>", None, False),
    ("indexed red entry", b"/C2 cs 1 sc",
     b"<< /ColorSpace << /C2 [/Indexed /DeviceRGB 1 <000000FF0000>] >> >>", None, True),
    ("indexed grey entry of a colour palette", b"/C2 cs 0 sc",
     b"<< /ColorSpace << /C2 [/Indexed /DeviceRGB 1 <000000FF0000>] >> >>", None, False),
    ("separation black", b"/S cs 1 scn", b"<< /ColorSpace << /S [/Separation /Black /DeviceCMYK 9 0 R] >> >>",
     ICC_GREY, False),
    ("separation spot", b"/S cs 1 scn", b"<< /ColorSpace << /S [/Separation /PANTONE#20123 /DeviceCMYK 9 0 R] >> >>",
     ICC_GREY, True),
    ("Lab neutral", b"/L cs 50 0 0 sc", b"<< /ColorSpace << /L [/Lab << /WhitePoint [1 1 1] >>] >> >>", None, False),
    ("Lab colour", b"/L cs 50 20 0 sc", b"<< /ColorSpace << /L [/Lab << /WhitePoint [1 1 1] >>] >> >>", None, True),
    ("shading pattern RGB", b"/Pattern cs /P0 scn 0 0 10 10 re f", b"<< /Pattern << /P0 9 0 R >> >>",
     {9: b"<< /PatternType 2 /Shading << /ShadingType 2 /ColorSpace /DeviceRGB /Coords [0 0 1 1]"
         b" /Function << /FunctionType 2 /Domain [0 1] /C0 [1 0 0] /C1 [0 0 1] /N 1 >> >> >>"}, True),
    ("sh with grey shading", b"/Sh0 sh", b"<< /Shading << /Sh0 << /ShadingType 2 /ColorSpace /DeviceGray"
     b" /Coords [0 0 1 1] /Function << /FunctionType 2 /Domain [0 1] /C0 [0] /C1 [1] /N 1 >> >> >> >>", None, False),
    ("form with red inside", b"/F0 Do", b"<< /XObject << /F0 9 0 R >> >>",
     {9: b"<< /Type /XObject /Subtype /Form /BBox [0 0 10 10] /Length 8 >>\nstream\n1 0 0 rg\nendstream"}, True),
    ("form with grey inside", b"/F0 Do", b"<< /XObject << /F0 9 0 R >> >>",
     {9: b"<< /Type /XObject /Subtype /Form /BBox [0 0 10 10] /Length 14 >>\nstream\n.5 .5 .5 rg f\nendstream"},
     False),
    ("colour operators inside a text string", b"BT /F1 12 Tf (1 0 0 rg \\( 0 1 0 RG) Tj ET", b"<< >>", None, False),
    ("inline grey RGB image", b"q BI /W 2 /H 1 /CS /RGB /BPC 8 ID \x80\x80\x80\x10\x10\x10 EI Q", b"<< >>", None, False),
    ("inline colour RGB image", b"q BI /W 2 /H 1 /CS /RGB /BPC 8 ID \xff\x00\x00\x10\x10\x10 EI Q", b"<< >>", None, True),
    ("inline grey image", b"q BI /W 2 /H 1 /CS /G /BPC 8 ID \xff\x00 EI Q 1 0 0 rg", b"<< >>", None, True),
    ("image mask", b"/M Do", b"<< /XObject << /M 9 0 R >> >>",
     {9: b"<< /Type /XObject /Subtype /Image /Width 8 /Height 1 /ImageMask true /Length 1 >>\nstream\n\xff\nendstream"},
     False),
    ("CMYK image with K only", b"/I Do", b"<< /XObject << /I 9 0 R >> >>",
     {9: b"<< /Type /XObject /Subtype /Image /Width 2 /Height 1 /ColorSpace /DeviceCMYK /BitsPerComponent 8"
         b" /Length 8 >>\nstream\n\x00\x00\x00\x80\x00\x00\x00\xff\nendstream"}, False),
    ("CMYK image with magenta", b"/I Do", b"<< /XObject << /I 9 0 R >> >>",
     {9: b"<< /Type /XObject /Subtype /Image /Width 2 /Height 1 /ColorSpace /DeviceCMYK /BitsPerComponent 8"
         b" /Length 8 >>\nstream\n\x00\x40\x00\x80\x00\x00\x00\xff\nendstream"}, True),
]


@pytest.mark.parametrize("label,content,resources,extra,expected", CASES, ids=[c[0] for c in CASES])
def test_colour(tmp_path: Path, label: str, content: bytes, resources: bytes,
                extra: dict[int, bytes] | None, expected: bool) -> None:
    assert one_page(tmp_path, content, resources, extra) is expected


def test_page_size_uses_cropbox_rotate_and_userunit(tmp_path: Path) -> None:
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 /MediaBox [0 0 1000 1000] >>",
        3: b"<< /Type /Page /Parent 2 0 R /CropBox [10 10 605.28 851.89] /Rotate 90 >>",
        4: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 306 396] /UserUnit 2 >>",
    }
    path = tmp_path / "sizes.pdf"
    path.write_bytes(build_pdf(objects))
    stats = analyze_file(path)
    assert [p.size_name for p in stats.page_info] == ["iso_a4_210x297mm", "na_letter_8.5x11in"]
    assert stats.page_info[0].width_pt > stats.page_info[0].height_pt  # rotated: landscape
