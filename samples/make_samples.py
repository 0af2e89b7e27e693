"""Generate samples/corpus/ (documents with known statistics) and samples/corpus/expected.json.

Needs reportlab, Pillow and Ghostscript (``gs``). Run: ``python samples/make_samples.py``.
The expected values are written here by hand from what each document is built to contain; they
are never taken from the analysers.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from PIL import Image
from reportlab.lib.pagesizes import A4, A5, landscape, legal, letter
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas

CORPUS = Path(__file__).resolve().parent / "corpus"
A4N, LETTERN = "iso_a4_210x297mm", "na_letter_8.5x11in"
A5N, LEGALN = "iso_a5_148x210mm", "na_legal_8.5x14in"
UEL = b"\x1b%-12345X"


def _text_pdf(path: Path, pages: int, size: tuple[float, float] = A4, **kw: Any) -> None:
    c = canvas.Canvas(str(path), pagesize=size, **kw)
    for n in range(pages):
        c.drawString(72, 720, f"Page {n + 1}: black text only")
        c.showPage()
    c.save()


def _mixed_pdf(path: Path) -> list[bool]:
    """Letter, 4 pages: black text; red text; grey traps (grey in RGB and CMYK); a blue box."""
    c = canvas.Canvas(str(path), pagesize=letter)
    c.drawString(72, 720, "Page 1: black")
    c.showPage()
    c.setFillColorRGB(1, 0, 0)
    c.drawString(72, 720, "Page 2: red")
    c.showPage()
    c.setFillColorRGB(0.5, 0.5, 0.5)
    c.rect(72, 500, 200, 100, fill=1)
    c.setFillColorCMYK(0, 0, 0, 0.7)
    c.rect(72, 300, 200, 100, fill=1)
    c.setStrokeColorRGB(0.2, 0.2, 0.2)
    c.line(72, 200, 300, 200)
    c.showPage()
    c.setFillColorRGB(0, 0, 1)
    c.rect(72, 500, 50, 50, fill=1)
    c.showPage()
    c.save()
    return [False, True, False, True]


def _sizes_pdf(path: Path) -> list[str]:
    c = canvas.Canvas(str(path))
    names = []
    for size, name in ((A4, A4N), (letter, LETTERN), (landscape(A5), A5N), (legal, LEGALN)):
        c.setPageSize(size)
        c.drawString(36, 36, name)
        c.showPage()
        names.append(name)
    c.save()
    return names


def _gradient(mode: str, color: bool) -> Image.Image:
    image = Image.new("RGB", (64, 48))
    for x in range(64):
        for y in range(48):
            v = (x * 4) % 256
            image.putpixel((x, y), (v, (y * 5) % 256, 255 - v) if color else (v, v, v))
    return image.convert(mode)


def _images_pdf(path: Path) -> list[bool]:
    """Grey pixels stored as RGB (mono), a colour RGB image, a DeviceGray image, grey CMYK image."""
    c = canvas.Canvas(str(path), pagesize=A4)
    for image in (_gradient("RGB", False), _gradient("RGB", True), _gradient("L", False)):
        c.drawImage(ImageReader(image), 72, 500, 256, 192)
        c.showPage()
    c.save()
    return [False, True, False]


def _gs(device: str, source: Path, target: Path, *options: str) -> None:
    subprocess.run(["gs", "-q", "-dBATCH", "-dNOPAUSE", "-dSAFER", f"-sDEVICE={device}",
                    *options, "-o", str(target), str(source)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _entry(fmt: str, pages: int, colors: list[bool | None] | None, sizes: list[str],
           copies: int | None = None, sides: str | None = None, status: str = "ok") -> dict[str, Any]:
    return {"format": fmt, "status": status, "pages": pages, "colors": colors, "sizes": sizes,
            "copies": copies, "sides": sides}


def main(argv: list[str] | None = None) -> int:
    """Regenerate the corpus (into --out DIR instead of samples/corpus/ when given)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CORPUS, help="folder to write (default: %(default)s)")
    out = parser.parse_args(argv).out
    if shutil.which("gs") is None:
        print("make_samples: ghostscript (gs) is needed", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.is_file():
            old.unlink()
    expected: dict[str, dict[str, Any]] = {}
    pdf = "application/pdf"

    _text_pdf(out / "text_a4_3p.pdf", 3)
    expected["text_a4_3p.pdf"] = _entry(pdf, 3, [False] * 3, [A4N] * 3)
    mixed = _mixed_pdf(out / "mixed_letter_4p.pdf")
    expected["mixed_letter_4p.pdf"] = _entry(pdf, 4, mixed, [LETTERN] * 4)
    names = _sizes_pdf(out / "sizes_4p.pdf")
    expected["sizes_4p.pdf"] = _entry(pdf, 4, [False] * 4, names)
    images = _images_pdf(out / "images_3p.pdf")
    expected["images_3p.pdf"] = _entry(pdf, 3, images, [A4N] * 3)
    from reportlab.lib.pdfencrypt import StandardEncryption
    _text_pdf(out / "encrypted_owner_only.pdf", 2,
              encrypt=StandardEncryption("", ownerPassword="owner", canPrint=1))
    expected["encrypted_owner_only.pdf"] = _entry(pdf, 2, [False] * 2, [A4N] * 2)
    _text_pdf(out / "encrypted_user.pdf", 2, encrypt=StandardEncryption("secret", "owner"))
    expected["encrypted_user.pdf"] = _entry(pdf, 0, None, [], status="unknown")
    _gs("pdfwrite", out / "mixed_letter_4p.pdf", out / "mixed_gs_4p.pdf")
    expected["mixed_gs_4p.pdf"] = _entry(pdf, 4, mixed, [LETTERN] * 4)

    ps = "application/postscript"
    _gs("ps2write", out / "mixed_letter_4p.pdf", out / "mixed_4p.ps")
    # PostScript is run in Ghostscript: its colour is known page by page.
    expected["mixed_4p.ps"] = _entry(ps, 4, mixed, [LETTERN] * 4)
    (out / "nodsc_proc_3p.ps").write_bytes(
        b"%!PS\n/p { showpage } def\n/Helvetica findfont 12 scalefont setfont\n"
        b"72 720 moveto (one) show showpage\n72 720 moveto (two) show p\n"
        b"72 720 moveto (three) show showpage\n")
    # `p` is a procedure calling showpage; no page size set: the job's media decides.
    expected["nodsc_proc_3p.ps"] = _entry(ps, 3, [False] * 3, ["job-media"] * 3)
    (out / "showpage_in_procs_12p.ps").write_bytes(
        b"%!PS\n<< /PageSize [595 842] >> setpagedevice\n/Helvetica findfont 12 scalefont setfont\n"
        b"/page { 72 720 moveto 0.3 0.3 0.3 setrgbcolor (grey in RGB) show showpage } bind def\n"
        b"/twice { page page } def\n1 1 6 { pop twice } for\n")
    # No DSC comment at all, every showpage inside a procedure called from a loop: 12 pages.
    expected["showpage_in_procs_12p.ps"] = _entry(ps, 12, [False] * 12, [A4N] * 12)
    (out / "copypage_numcopies_2p.ps").write_bytes(
        b"%!PS\n<< /PageSize [612 792] /NumCopies 3 >> setpagedevice\n"
        b"/Helvetica findfont 12 scalefont setfont\n72 720 moveto (first) show copypage\n"
        b"72 700 moveto (second, on top of the first) show showpage\n")
    # copypage prints a page (and keeps its marks); /NumCopies 3 prints each page three times.
    expected["copypage_numcopies_2p.ps"] = _entry(ps, 2, [False] * 2, [LETTERN] * 2, copies=3)
    grey_image = bytes(v for v in range(0, 256, 16) for _ in range(3)) * 16
    colour_image = bytes(b for v in range(0, 256, 16) for b in (v, 255 - v, 128)) * 16
    (out / "colour_and_grey_5p.ps").write_bytes(
        b"%!PS-Adobe-3.0\n%%Pages: 5\n%%EndComments\n<< /PageSize [612 792] >> setpagedevice\n"
        b"/Helvetica findfont 24 scalefont setfont\n"
        b"%%Page: 1 1\n0.5 0.5 0.5 setrgbcolor 72 600 200 100 rectfill\n"
        b"0 0 0 setrgbcolor 72 500 moveto (black drawn in RGB) show showpage\n"
        b"%%Page: 2 2\n1 0 0 setrgbcolor 72 500 moveto (red text) show showpage\n"
        b"%%Page: 3 3\n0 0 0 0.7 setcmykcolor 72 600 200 100 rectfill 0.4 setgray 72 400 200 100 rectfill"
        b" showpage\n"
        b"%%Page: 4 4\ngsave 72 400 translate 256 256 scale 16 16 8 [16 0 0 16 0 0] <"
        + grey_image.hex().encode() + b"> false 3 colorimage grestore showpage\n"
        b"%%Page: 5 5\ngsave 72 400 translate 256 256 scale 16 16 8 [16 0 0 16 0 0] <"
        + colour_image.hex().encode() + b"> false 3 colorimage grestore showpage\n%%EOF\n")
    # Grey and black drawn in RGB, K-only CMYK, setgray and an RGB image of grey pixels are mono.
    expected["colour_and_grey_5p.ps"] = _entry(ps, 5, [False, True, False, False, True], [LETTERN] * 5)
    (out / "duplex_copies_1p.ps").write_bytes(
        b"%!PS-Adobe-3.0\n%%Pages: 1\n%%DocumentMedia: A4 595 842 0 () ()\n%%EndComments\n"
        b"<< /Duplex true /NumCopies 3 >> setpagedevice\n%%Page: 1 1\nshowpage\n%%EOF\n")
    expected["duplex_copies_1p.ps"] = _entry(ps, 1, [False], [A4N], copies=3,
                                             sides="two-sided-long-edge")

    pcl = "application/vnd.hp-pcl"
    _gs("ljet4", out / "text_a4_3p.pdf", out / "text_a4_3p.pcl", "-r150", "-dNumCopies=2")
    expected["text_a4_3p.pcl"] = _entry(pcl, 3, [False] * 3, [A4N] * 3, copies=2)
    pxl = "application/vnd.hp-pclxl"
    _gs("pxlmono", out / "text_a4_3p.pdf", out / "text_duplex_3p.pxl", "-r150", "-dDuplex")
    expected["text_duplex_3p.pxl"] = _entry(pxl, 3, [False] * 3, [A4N] * 3, copies=1,
                                            sides="two-sided-long-edge")
    _gs("pxlcolor", out / "mixed_letter_4p.pdf", out / "mixed_4p.pxl", "-r75")
    expected["mixed_4p.pxl"] = None  # filled below: colour of pxlcolor pages depends on gs

    pwg = "image/pwg-raster"
    _gs("pwgraster", out / "mixed_letter_4p.pdf", out / "mixed_4p.pwg", "-r50",
        "-dcupsColorSpace=19", "-dcupsBitsPerColor=8")
    expected["mixed_4p.pwg"] = _entry(pwg, 4, mixed, [LETTERN] * 4, copies=1, sides="one-sided")
    _gs("pwgraster", out / "sizes_4p.pdf", out / "sizes_mono_4p.pwg", "-r50")
    expected["sizes_mono_4p.pwg"] = _entry(pwg, 4, [False] * 4, names, copies=1, sides="one-sided")
    urf = "image/urf"
    _gs("urf", out / "mixed_letter_4p.pdf", out / "mixed_4p.urf", "-r50",
        "-dcupsColorSpace=1", "-dcupsBitsPerColor=8")
    expected["mixed_4p.urf"] = _entry(urf, 4, mixed, [LETTERN] * 4, sides="one-sided")
    _gs("urf", out / "text_a4_3p.pdf", out / "text_3p.urf", "-r50")
    expected["text_3p.urf"] = _entry(urf, 3, [False] * 3, [A4N] * 3, sides="one-sided")

    # PJL wrappers: a PDF inside PJL (copies and duplex from PJL), PCL XL inside PJL.
    inner = (out / "text_a4_3p.pdf").read_bytes()
    (out / "pjl_pdf_3p.prn").write_bytes(
        UEL + b"@PJL JOB NAME=\"t\"\r\n@PJL SET COPIES=2\r\n@PJL SET DUPLEX=ON\r\n"
        b"@PJL SET BINDING=SHORTEDGE\r\n@PJL ENTER LANGUAGE=PDF\r\n" + inner + UEL + b"@PJL EOJ\r\n")
    expected["pjl_pdf_3p.prn"] = _entry(pdf, 3, [False] * 3, [A4N] * 3, copies=2,
                                        sides="two-sided-short-edge")

    for name, image, kind, colour in (
            ("grey.jpg", _gradient("L", False), "JPEG", False),
            ("colour.jpg", _gradient("RGB", True), "JPEG", True),
            ("grey_palette.png", _gradient("L", False).convert("P"), "PNG", False),
            ("colour.png", _gradient("RGB", True), "PNG", True)):
        buffer = io.BytesIO()
        image.save(buffer, kind)
        (out / name).write_bytes(buffer.getvalue())
        expected[name] = _entry("image/jpeg" if kind == "JPEG" else "image/png", 1, [colour],
                                ["job-media"])

    lines = [f"line {n}" for n in range(70)]
    (out / "text_70lines_ff.txt").write_text("\n".join(lines) + "\n\fafter the form feed\n")
    expected["text_70lines_ff.txt"] = _entry("text/plain", 3, [False] * 3, ["job-media"] * 3)

    # pxlcolor: red and blue are non-neutral RGB brushes (colour); the black page never selects
    # RGB (mono); the grey page draws in RGB without a colour brush, which the walker cannot
    # decide without decoding images: unknown (None). PageCopies 1 and simplex are encoded.
    expected["mixed_4p.pxl"] = _entry(pxl, 4, [False, True, None, True], [LETTERN] * 4,
                                      copies=1, sides="one-sided")
    (out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
