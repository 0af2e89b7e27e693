"""Document format detection from a job's first bytes (not from what the client claims)."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.pjl import PjlHeader, parse_pjl_header

UEL = b"\x1b%-12345X"

#: PJL `ENTER LANGUAGE` values and the MIME types they switch to.
PJL_LANGUAGES = {
    "PDF": "application/pdf",
    "POSTSCRIPT": "application/postscript",
    "PCL": "application/vnd.hp-pcl",
    "PCLXL": "application/vnd.hp-pclxl",
}

OCTET_STREAM = "application/octet-stream"

#: How many bytes of a file :func:`detect` wants to see.
HEAD_SIZE = 64 * 1024


@dataclass(frozen=True)
class Detected:
    """A format found from the bytes: the MIME type, and the PJL wrapper (if any) before it."""

    format: str
    offset: int = 0
    """Where the page description starts (after a PJL header)."""
    pjl: PjlHeader | None = None


def detect(head: bytes) -> Detected:
    """The format of a job that starts with `head` (up to HEAD_SIZE bytes), looking inside PJL.

    A PJL header is parsed and the language it enters (or, without ENTER LANGUAGE, the bytes
    after it) decides; the bytes win when they clearly say otherwise.
    """
    pjl = parse_pjl_header(head)
    if pjl is None:
        return Detected(sniff(head))
    inner = head[pjl.pdl_offset:]
    found = sniff(inner) if inner else OCTET_STREAM
    if found in (OCTET_STREAM, "text/plain") and pjl.language in PJL_LANGUAGES:
        found = PJL_LANGUAGES[pjl.language]
    return Detected(found, pjl.pdl_offset, pjl)


def sniff(head: bytes) -> str:
    """The MIME type of a page description that starts with `head` (no PJL wrapper)."""
    stripped = head.lstrip(b"\x04\r\n\t ")
    if stripped.startswith(b"%PDF-"):
        return "application/pdf"
    if stripped.startswith(b"%!") or head.startswith(b"\xc5\xd0\xd3\xc6"):
        return "application/postscript"
    if head.startswith(b"RaS2"):
        return "image/pwg-raster"
    if head.startswith(b"UNIRAST\x00"):
        return "image/urf"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:1] in (b")", b"(") and b"HP-PCL XL" in head[:64]:
        return "application/vnd.hp-pclxl"
    if head.startswith(b"\x1bE") or head.startswith(b"\x1b&") or head.startswith(b"\x1b*"):
        return "application/vnd.hp-pcl"
    if head and _looks_like_text(head[:4096]):
        return "text/plain"
    return OCTET_STREAM


#: The ASCII bytes of text: printable characters and the few controls text files use.
_TEXT_ASCII = bytes(range(0x20, 0x7F)) + b"\n\r\t\f\x1b"


def _looks_like_text(sample: bytes) -> bool:
    if sample.isascii():  # the common case, without a Python loop over every character
        return not sample.translate(None, _TEXT_ASCII)
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as error:
        # A multi-byte character cut at the end of the sample is still text.
        if error.start < len(sample) - 4:
            return False
        text = sample[: error.start].decode("utf-8")
    allowed = {"\n", "\r", "\t", "\f", "\x1b"}
    return all(ch.isprintable() or ch in allowed for ch in text)
