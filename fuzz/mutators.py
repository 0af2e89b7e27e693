"""Structure-aware mutation for the IPP request target, and libFuzzer dictionaries for the others.

Byte-level mutation of an IPP message mostly breaks its length fields, so the request checks and
operations behind the codec are rarely reached with odd *values*. ``ipp_mutator`` decodes the
input, changes it the way a confused or hostile client would (another operation, a renamed
attribute, a value of another syntax or an edge value, an extra or missing attribute or group),
and encodes it again; half of the time, and whenever the input does not decode, it leaves the
work to libFuzzer's own byte mutations.

The names and keywords come from the code itself (every quoted lower-case keyword in spooler/ipp/),
so new attributes are fuzzed without editing this file.
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def _keywords() -> list[str]:
    found: set[str] = set()
    for path in (ROOT / "spooler" / "ipp").glob("*.py"):
        found |= set(re.findall(r'"([a-z][a-z0-9-]{1,60})"', path.read_text()))
    return sorted(found)


_INTS = [0, 1, -1, 2, 3, 7, 100, 999, 1000, 2**31 - 1, -(2**31), 65535, 65536]
_TAILS = ["1", "2", "0", "-1", "\u00b2", "\u0663", "9" * 23, "9" * 400, "", "abc", "1/", "%31", "01", "1 "]


def _values() -> list[tuple[int, Any]]:
    from spooler.ipp.tags import Tag

    words = _keywords()
    pool: list[tuple[int, Any]] = [(Tag.INTEGER, i) for i in _INTS] + [(Tag.ENUM, i) for i in _INTS]
    pool += [(Tag.BOOLEAN, True), (Tag.BOOLEAN, False), (Tag.RANGE, (1, 2)), (Tag.RANGE, (5, 1)),
             (Tag.RANGE, (-(2**31), 2**31 - 1)), (Tag.RESOLUTION, (300, 300, 3)), (Tag.RESOLUTION, (0, -1, 9)),
             (Tag.DATETIME, datetime(2026, 1, 1, tzinfo=timezone.utc)), (Tag.OCTET_STRING, b"\x00\xff"),
             (Tag.NO_VALUE, None), (Tag.UNKNOWN, None), (Tag.UNSUPPORTED, None), (Tag.DELETE_ATTRIBUTE, None),
             (0x6E, b"root"), (0x7F, b"")]  # fmt: skip
    for tag in (Tag.KEYWORD, Tag.NAME, Tag.TEXT, Tag.MIME_MEDIA_TYPE, Tag.CHARSET, Tag.NATURAL_LANGUAGE):
        pool += [(tag, w) for w in random.sample(words, min(8, len(words)))]
        pool += [(tag, ""), (tag, "x" * 300), (tag, "\u00e9\u0000\u202e"), (tag, "root")]
    pool += [(Tag.NAME_WITH_LANGUAGE, ("en", "root")), (Tag.TEXT_WITH_LANGUAGE, ("", ""))]
    pool += [(Tag.MIME_MEDIA_TYPE, m) for m in ("application/pdf", "application/octet-stream", "image/pwg-raster",
                                                 "text/plain", "APPLICATION/PDF", "image/urf")]  # fmt: skip
    pool += [(Tag.KEYWORD, k) for k in ("gzip", "deflate", "none", "compress", "indefinite", "no-hold",
                                        "two-sided-long-edge", "all", "completed", "not-completed")]  # fmt: skip
    pool += [(Tag.CHARSET, "utf-8"), (Tag.CHARSET, "us-ascii"), (Tag.CHARSET, "iso-8859-1")]
    pool += [(Tag.URI, f"ipp://localhost/ipp/print/{tail}") for tail in _TAILS]
    pool += [(Tag.URI, "ipp://localhost/ipp/print"), (Tag.URI, "ipp://localhost/printers/other")]
    return pool


_pool: list[tuple[int, Any]] = []


def _random_value(rng: random.Random) -> Any:
    from spooler.ipp.codec import Attribute, Value
    from spooler.ipp.tags import Tag

    if not _pool:
        _pool.extend(_values())
    if rng.random() < 0.05:  # a collection
        members = [Attribute(rng.choice(_keywords()), [_random_value(rng)]) for _ in range(rng.randint(0, 3))]
        return Value(Tag.BEGIN_COLLECTION, members)
    tag, value = rng.choice(_pool)
    if tag == Tag.KEYWORD and rng.random() < 0.3:
        value = rng.choice(_keywords())
    return Value(tag, value)


def _all_attributes(message: Any) -> list[tuple[Any, int]]:
    return [(group, index) for group in message.groups for index in range(len(group.attributes))]


def _mutate_message(message: Any, rng: random.Random) -> None:
    from spooler.ipp.codec import Attribute
    from spooler.ipp.tags import Operation, Tag

    attributes = _all_attributes(message)
    choice = rng.randrange(12)
    if choice == 0:
        message.code = rng.choice([int(op) for op in Operation] + [0, 0xFFFF, 0x4001])
    elif choice == 1:
        message.request_id = rng.choice(_INTS)
    elif choice == 2:
        message.version = rng.choice([(1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (0, 0), (9, 9)])
    elif choice == 3 and attributes:
        group, index = rng.choice(attributes)
        group.attributes[index].name = rng.choice(_keywords())
    elif choice in (4, 5) and attributes:
        group, index = rng.choice(attributes)
        values = group.attributes[index].values
        values[rng.randrange(len(values))] = _random_value(rng)
    elif choice == 6 and message.groups:
        group = rng.choice(message.groups)
        group.attributes.insert(rng.randint(0, len(group.attributes)),
                                Attribute(rng.choice(_keywords()), [_random_value(rng)]))  # fmt: skip
    elif choice == 7 and attributes:
        group, index = rng.choice(attributes)
        del group.attributes[index]
    elif choice == 8 and attributes:
        group, index = rng.choice(attributes)
        group.attributes[index].values.append(_random_value(rng))
    elif choice == 9:
        tag = rng.choice([Tag.OPERATION, Tag.JOB, Tag.PRINTER, Tag.UNSUPPORTED_GROUP, 0x07, 0x0F])
        message.groups.insert(rng.randint(0, len(message.groups)),
                              type(message.groups[0])(tag) if message.groups else _group(tag))  # fmt: skip
    elif choice == 10:
        message.data = rng.choice([b"", b"%PDF-1.7\n", b"\x1f\x8b\x08\x00garbage", b"x" * 100, message.data[:10]])
    elif attributes:
        group, index = rng.choice(attributes)
        group.attributes.insert(index, group.attributes[index])  # the same attribute twice


def _group(tag: int) -> Any:
    from spooler.ipp.codec import AttributeGroup

    return AttributeGroup(tag)


def ipp_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    import atheris

    from spooler.ipp.codec import IppParseError, decode, encode_message

    rng = random.Random(seed)
    if rng.random() < 0.5:
        return atheris.Mutate(data, max_size)
    try:
        message = decode(data, max_attributes=10_000, max_values=10_000, max_groups=1000)
    except IppParseError:
        return atheris.Mutate(data, max_size)
    for _ in range(rng.randint(1, 3)):
        _mutate_message(message, rng)
    try:
        return encode_message(message)[:max_size]
    except ValueError:
        return atheris.Mutate(data, max_size)


#: Custom mutators by target name.
MUTATORS: dict[str, Callable[[bytes, int, int], bytes]] = {"ipp_request": ipp_mutator}


# -- dictionaries ---------------------------------------------------------------------------------------

_LPD = [b"\x01default\n", b"\x02default\n", b"\x03default ", b"\x04default ", b"\x05default root ",
        b"\x05default alice ", b"\x02other\n", b"\x02", b"\x03", b"\x01", b" cfA001host\n", b" dfA001host\n",
        b"cfA001host", b"dfA001host", b"dfB002host", b"\nHhost", b"\nPalice", b"\nJname", b"\nNname", b"\nT",
        b"\nCA", b"\nLalice", b"\nldfA001host", b"\nodfA001host", b"\nfdfA001host", b"\nUdfA001host",
        b"\nMalice", b"\x00", b"\n", b"0 ", b"125899906843000 ", b"99999999999999999999 ", b"\xc2\xb2"]  # fmt: skip


def _pjl_words() -> list[bytes]:
    text = (ROOT / "spooler" / "pjl.py").read_text()
    words = {w.encode() for w in re.findall(r'"([A-Z][A-Z0-9_]{1,30})"', text)}
    words |= {w.encode() for w in re.findall(r'b"([A-Z][A-Z0-9]{1,30})"', text)}
    return sorted(words) + [b"\x1b%-12345X", b"@PJL ", b"@PJL SET ", b"@PJL JOB NAME=\"", b"@PJL ENTER LANGUAGE=",
                            b"@PJL COMMENT ", b"@PJL JOBATTR=\"", b" = ", b"=", b"\"", b"\r\n", b"\n", b"@PJL EOJ"]


_PDF = [b"%PDF-1.7\n", b"obj", b"endobj", b"stream\n", b"\nendstream", b"xref", b"trailer", b"startxref",
        b"%%EOF", b"<<", b">>", b"/Type", b"/Page", b"/Pages", b"/Kids", b"/Count", b"/Parent", b"/MediaBox",
        b"/Resources", b"/Contents", b"/Root", b"/Length", b"/Filter", b"/FlateDecode", b"/ASCII85Decode",
        b"/XObject", b"/Subtype", b"/Image", b"/Form", b"/ColorSpace", b"/DeviceRGB", b"/DeviceGray",
        b"/DeviceCMYK", b"/Indexed", b"/ICCBased", b"/Separation", b"/Pattern", b"/Shading", b" rg", b" RG",
        b" k", b" K", b" g", b" G", b" sc", b" scn", b" cs", b" Do", b"BI", b"ID", b"EI", b" 0 R", b"/Rotate",
        b"/Encrypt", b"/ObjStm", b"/XRef", b"/W", b"/Index", b"/Size", b"/Prev", b"/BBox", b"/Decode",
        b"/BitsPerComponent", b"/Width", b"/Height", b"/DCTDecode", b"/ExtGState", b"/Group"]  # fmt: skip
_PS = [b"%!PS-Adobe-3.0\n", b"%%Pages: ", b"%%Page: ", b"%%BoundingBox: ", b"%%DocumentMedia: ", b"showpage",
       b"%%EOF", b"%%Trailer", b"%%BeginFeature", b"/NumCopies", b"/Duplex", b"/Tumble", b"setpagedevice",
       b"/PageSize", b"%%EndComments", b"%%BeginSetup", b"%%EndSetup", b"%%BeginBinary: ", b"%%BeginData: ",
       b"%%EndBinary", b"%%EndData", b"(atend)", b"\xc5\xd0\xd3\xc6", b"setrgbcolor", b"setcmykcolor",
       b"setgray", b"%%DocumentProcessColors: "]  # fmt: skip
_PCL = [b"\x1bE", b"\x1b&l", b"\x1b*", b"\x1b&", b"\x1b%", b"X", b"A", b"S", b"H", b"O", b"x", b"W", b"V",
        b"\x1b*r", b"\x1b*b", b"\x1b&l26A", b"\x1b&l1S", b"\x1b&l3X", b"\x1b*r1U", b"\x1b*r-3U", b"\x0c",
        b"\x1b%-1B", b"\x1b%1A", b"\x1b%0B", b"IN;", b"PG;", b"\x1b)s", b"\x1b(s", b"W"]  # fmt: skip
_PCLXL = [b") HP-PCL XL;2;0\n", b"( HP-PCL XL;2;0\n", b"\x41", b"\x43", b"\x44", b"\xc0", b"\xc1", b"\xc2",
          b"\xc3", b"\xc5", b"\xc8", b"\xca", b"\xf8", b"\xf9", b"\xfa", b"\xfb", b"\x42", b"\x48",
          b"\x4f", b"\x6a", b"\x87"]  # fmt: skip

DICTIONARIES: dict[str, Callable[[], list[bytes]]] = {
    "lpd_session": lambda: _LPD,
    "lpd_control": lambda: [w.lstrip(b"\n") if w.startswith(b"\n") else w for w in _LPD],
    "pjl": _pjl_words,
    "detect": lambda: _pjl_words() + [b"%PDF-", b"%!", b"RaS2", b"UNIRAST\x00", b"\xff\xd8\xff",
                                      b"\x89PNG\r\n\x1a\n", b") HP-PCL XL", b"\x1bE"],  # fmt: skip
    "pdf": lambda: _PDF,
    "postscript": lambda: _PS,
    "pcl5": lambda: _PCL,
    "pclxl": lambda: _PCLXL,
    "pwg": lambda: [b"RaS2", b"PwgRaster\x00"],
    "urf": lambda: [b"UNIRAST\x00"],
}


def write_dictionary(name: str, path: Path) -> Path | None:
    """The target's dictionary in libFuzzer's format, or None if it has none."""
    words = DICTIONARIES.get(name)
    if words is None:
        return None
    lines = ['"' + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\x{b:02x}" for b in word) + '"'
             for word in words() if word]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path
