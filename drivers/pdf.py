"""PDF with pypdf through a file handle: page tree walk, page sizes, and colour per page.

Colour comes from the content streams (``rg``/``k``/``sc``/``scn`` values in their colour spaces,
where grey drawn in RGB (R=G=B), CMYK (C=M=Y=0), Lab (a=b=0) or an all-grey palette is mono),
shadings and patterns by their colour space, forms recursively, and images by colour space.
8-bit RGB and CMYK images are checked pixel by pixel: plain Flate ones of any size are inflated in
slices (bounded memory, stops at the first colour pixel), others (JPEG: within a small tolerance)
up to ``Limits.max_image_pixels``; larger ones count as colour by their colour space.
A colour set but never painted with still counts (operators are not tied to painting).
Before the operator walk, a pre-scan in C proves the common grey-only content (its only colour
operators ``X X X rg``/``RG``) mono without it (see _provably_grey).
Streams are capped at ``Limits.max_decoded_bytes``; pypdf's object cache is dropped between pages.
"""

from __future__ import annotations

import errno
import io
import logging
import re
from dataclasses import dataclass
from typing import Any, BinaryIO

from drivers._io import Source, opened, size_of
from drivers.stats import AnalysisError, DocumentStats, Limits, PageInfo, page

FORMAT = "application/pdf"
_MAX_DEPTH = 12
_JPEG_TOLERANCE = 12  # lossy JPEG of a grey image stored as RGB drifts a few levels

logging.getLogger("pypdf").setLevel(logging.ERROR)


class _Window(io.RawIOBase):
    """A read-only view of `handle` from `offset` on (a PDF after a PJL header)."""

    def __init__(self, handle: BinaryIO, offset: int) -> None:
        super().__init__()
        self._handle, self._offset = handle, offset

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, position: int, whence: int = 0) -> int:
        if whence == 0:
            position += self._offset
        return self._handle.seek(position, whence) - self._offset

    def tell(self) -> int:
        return self._handle.tell() - self._offset

    def readinto(self, buffer: Any) -> int:
        data = self._handle.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def analyze(source: Source, limits: Limits = Limits(), *, offset: int = 0) -> DocumentStats:
    """Pages (by walking the page tree), their sizes and colour; "unknown" via AnalysisError."""
    import pypdf
    from pypdf.errors import (DependencyError, DeprecationError, FileNotDecryptedError, LimitReachedError,
                              PyPdfError)

    with opened(source) as handle:
        size = size_of(handle) - offset
        stream: Any = _Window(handle, offset) if offset else handle
        stream.seek(0)
        overrides = dict(
            zlib_maximum_output_length=limits.max_decoded_bytes,
            lzw_maximum_output_length=limits.max_decoded_bytes,
            run_length_maximum_output_length=limits.max_decoded_bytes,
            array_based_stream_maximum_output_length=limits.max_decoded_bytes,
            page_tree_maximum_page_entries=max(limits.page_cap * 2, 1000),
        )
        try:
            with pypdf.apply_configuration(**overrides):
                return _analyze(pypdf.PdfReader(stream, strict=False), size, limits)
        except FileNotDecryptedError as error:
            raise AnalysisError(f"encrypted: {error}") from None
        except LimitReachedError as error:
            raise AnalysisError(f"limit reached: {error}") from None
        except RecursionError:
            raise AnalysisError("PDF objects nested too deeply") from None
        except (NotImplementedError, DependencyError) as error:
            # pypdf: an unknown stream filter or encryption scheme, or one whose decoder is not
            # installed (brotli, jbig2dec)
            raise AnalysisError(f"unsupported PDF feature: {error}"[:300]) from None
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise  # a real read error
            # pypdf seeks back from an object's offset: before the start of the file when it is bogus.
            raise AnalysisError("unreadable PDF: an offset before the start of the file") from None
        except (PyPdfError, KeyError, ValueError, TypeError, AttributeError, IndexError,
                ZeroDivisionError, OverflowError, AssertionError,
                DeprecationError) as error:  # pypdf 7: an abbreviated filter name (/Fl) outside an inline image
            raise AnalysisError(f"unreadable PDF: {type(error).__name__}: {error}"[:300]) from None


def _analyze(reader: Any, size: int, limits: Limits) -> DocumentStats:
    if reader.is_encrypted and not reader.decrypt(""):
        raise AnalysisError("encrypted: a password is required to open it")
    root = reader.trailer["/Root"].get_object()
    declared = root["/Pages"].get_object().get("/Count", 0)
    declared = int(declared) if isinstance(declared, (int, float)) else 0
    _check_count(declared, size, limits, "page tree claims")
    count = len(reader.pages)
    _check_count(count, size, limits, "page tree holds")
    if count == 0:
        raise AnalysisError("PDF without pages")
    colors = _Colors(limits)
    infos: list[PageInfo] = []
    for index in range(count):
        pdf_page = reader.pages[index]
        box = pdf_page.cropbox
        media = pdf_page.mediabox
        width = max(0.0, min(float(box.right), float(media.right)) - max(float(box.left), float(media.left)))
        height = max(0.0, min(float(box.top), float(media.top)) - max(float(box.bottom), float(media.bottom)))
        unit = pdf_page.get("/UserUnit", 1)
        unit = float(unit) if isinstance(unit, (int, float)) and 0 < float(unit) < 100 else 1.0
        if int(pdf_page.get("/Rotate", 0) or 0) % 180:
            width, height = height, width
        color = colors.page(pdf_page) if limits.color else None
        if len(reader.resolved_objects) > 2000 or colors.decoded > 16 << 20:
            # pypdf keeps every object it read, stream data included: drop them between pages
            # so memory stays bounded on big files (they are re-read if needed again).
            reader.resolved_objects.clear()
            colors.decoded = 0
        infos.append(page(width * unit, height * unit, color))
    return DocumentStats(FORMAT, pages=count, page_info=tuple(infos))


def _check_count(count: int, size: int, limits: Limits, what: str) -> None:
    if count > limits.page_cap:
        raise AnalysisError(f"{what} {count} pages, more than the cap of {limits.page_cap}")
    if count * limits.min_bytes_per_page > max(size, 0) + 1024:
        raise AnalysisError(f"{what} {count} pages in {size} bytes: implausible")


# -- colour ----------------------------------------------------------------------------------------

_NUM = rb"[-+]?(?:\d+\.?\d*|\.\d+)"
_DELIM = rb"(?![^\s\[\]<>/(){}%])"
_NAME = rb"/([^\s/\[\]<>(){}%]*)"
_OPS = re.compile(rb"(?:rg|RG|k|K|scn|SCN|sc|SC|cs|CS|Do|sh)" + _DELIM)
# Operands read backwards: the window before an operator, reversed, matched at its start.
_OPERANDS_REVERSED = re.compile(
    rb"\s*(?:([^\s/\[\]<>(){}%]*)/\s*)?((?:[0-9.]+[-+]?(?:\s+|(?=[\[\]<>(){}/%])|$)){0,4})")
_BEFORE_OP = frozenset(b" \t\r\n\f\x00])>")
_STRING = re.compile(rb"\((?:[^()\\]|\\.)*\)", re.S)
_COMMENT = re.compile(rb"%[^\r\n]*")
_INLINE = re.compile(rb"(?:^|(?<=[\s\]>)]))BI(?=[\s/])(.*?)(?<=\s)ID\s", re.S)
_INLINE_END = re.compile(rb"\sEI(?=\s|$)")
_INLINE_CS = re.compile(rb"/(?:CS|ColorSpace)\s*/([^\s/\[\]<>(){}%]+)")
_INLINE_FILTERED = re.compile(rb"/(?:F|Filter)\b")
_BLACK_NAMES = frozenset({"/Black", "/All", "/None"})
# Pre-scan proving "no colour" in C before the operator walk. An operator the walk looks at is a
# whole token (a delimiter or the start before it, as the walk checks; a delimiter or the end after
# it, as _OPS requires), so the walk sees exactly the whole-token occurrences of each operator name:
# each name is searched on its own, with a literal prefix (fast). When the only ones are rg/RG and
# each is grey ``X X X rg`` (three identical plain numbers separated and preceded by white space,
# whatever else precedes them), the walk would find nothing: the page is mono. Grey ones are counted
# on the reversed data so that the pattern starts with the literal operator. Number and space
# lengths are bounded so the three operands sit inside the walk's 160-byte operand window; the
# region matched holds no string, comment or inline-image delimiter, so stripping those (the walk
# does it first) leaves it as it is. Only used when the data holds no comment nor inline image.
_OP_NAMES = (b"rg", b"RG", b"k", b"K", b"scn", b"SCN", b"sc", b"SC", b"cs", b"CS", b"Do", b"sh")
_WALKED = {name: re.compile(re.escape(name) + rb"(?<![^ \t\r\n\f\x00\])>]" + re.escape(name) + rb")"
                            + _DELIM) for name in _OP_NAMES}
_SPACES = rb"[ \t\r\n\f]{1,20}"
_GREY_REVERSED = {name: re.compile(name[::-1] + rb"(?<![^\s\[\]<>/(){}%]" + name[::-1] + rb")" + _SPACES
                                   + rb"((?:\d{0,12}\.)?\d{1,12}|\d{1,12}\.)" + _SPACES + rb"\1" + _SPACES
                                   + rb"\1(?![^ \t\r\n\f])") for name in (b"rg", b"RG")}


def _provably_grey(data: bytes) -> bool:
    """Whether the walk would find no colour in `data` (no comments, no inline images): its only
    colour operators are grey rg/RG. False means "do the walk", not "colour"."""
    for name in _OP_NAMES[2:]:
        if name in data and _WALKED[name].search(data):
            return False
    reversed_data = None
    for name in (b"rg", b"RG"):
        if name in data:
            if reversed_data is None:
                reversed_data = data[::-1]
            if len(_WALKED[name].findall(data)) != len(_GREY_REVERSED[name].findall(reversed_data)):
                return False
    return True


@dataclass(frozen=True)
class _Space:
    """A colour space as far as colour detection cares."""

    kind: str  # gray, rgb, cmyk, lab, indexed, spot (tint>0 is colour), pattern, color
    palette: bytes = b""
    base: str = "gray"
    ncomp: int = 1


_GRAY = _Space("gray")
_RGB = _Space("rgb", ncomp=3)
_CMYK = _Space("cmyk", ncomp=4)
_DEVICE = {"/DeviceGray": _GRAY, "/G": _GRAY, "/CalGray": _GRAY, "/DeviceRGB": _RGB, "/RGB": _RGB,
           "/CalRGB": _RGB, "/DeviceCMYK": _CMYK, "/CMYK": _CMYK, "/Pattern": _Space("pattern"),
           "/Lab": _Space("lab", ncomp=3)}


def _neutral(space: _Space, values: list[float]) -> bool:
    """Whether `values` in `space` are black, white or grey."""
    kind = space.kind
    if kind == "gray" or not values:
        return True
    if kind == "rgb":
        return len(values) < 3 or values[-3] == values[-2] == values[-1]
    if kind == "cmyk":
        return len(values) < 4 or values[-4] == values[-3] == values[-2] == 0
    if kind == "lab":
        return len(values) < 3 or values[-2] == values[-1] == 0
    if kind == "indexed":
        index = int(values[-1])
        n = 3 if space.base == "rgb" else 4 if space.base == "cmyk" else 1
        entry = space.palette[index * n:(index + 1) * n]
        if len(entry) < n or n == 1:
            return True
        return entry[0] == entry[1] == entry[2] if n == 3 else entry[0] == entry[1] == entry[2] == 0
    if kind == "spot":
        return all(v == 0 for v in values)
    return False  # "color": a colour space we do not look into


class _Colors:
    """Per-page colour detection with caches for shared forms and images."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.cache: dict[int, bool] = {}
        self.decoded = 0  # stream bytes read since the reader's object cache was last cleared

    def page(self, pdf_page: Any) -> bool:
        resources = _resolve(pdf_page.get("/Resources")) or {}
        contents = _resolve(pdf_page.get("/Contents"))
        if contents is None:
            return False
        streams = contents if isinstance(contents, list) else [contents]
        data = b"\n".join(self.content(_resolve(s)) for s in streams if _resolve(s) is not None)
        return self.scan(data, resources, 0)

    def content(self, stream: Any) -> bytes:
        """A content stream's decoded bytes: ASCII85 and Flate decoded here (fast, bounded),
        anything else by pypdf."""
        filters = _resolve(stream.get("/Filter"))
        names = [str(_resolve(f)) for f in filters] if isinstance(filters, list) else \
            [str(filters)] if filters else []
        raw = getattr(stream, "_data", None)
        if (not isinstance(raw, bytes) or stream.get("/DecodeParms")
                or not all(name in _OWN_FILTERS for name in names)):
            return stream.get_data()
        for name in names:
            raw = _a85(raw) if name in ("/ASCII85Decode", "/A85") else \
                _inflate(raw, self.limits.max_decoded_bytes)
        return raw

    def scan(self, data: bytes, resources: Any, depth: int) -> bool:
        """Whether content `data` (with `resources`) paints in colour."""
        if depth > _MAX_DEPTH:
            raise AnalysisError("forms nested too deeply")
        if b"BI" in data:
            data, inline_color = self._strip_inline(data, resources)
            if inline_color:
                return True
        if b"%" not in data and _provably_grey(data):
            return False
        if b"(" in data:
            for _ in range(32):
                data, count = _STRING.subn(b" ", data)
                if not count or b"(" not in data:
                    break
        if b"%" in data:
            data = _COMMENT.sub(b"", data)
        fill = stroke = _GRAY
        for match in _OPS.finditer(data):
            start = match.start()
            if start and data[start - 1] not in _BEFORE_OP:
                continue
            op = match.group()
            operands = _OPERANDS_REVERSED.match(data[max(0, start - 160):start][::-1])
            name_bytes = operands.group(1)[::-1] if operands.group(1) is not None else None
            try:
                values = [float(v[::-1]) for v in operands.group(2).split()][::-1]
            except ValueError:
                continue  # a malformed number: not a colour operand
            if op in (b"rg", b"RG"):
                if not _neutral(_RGB, values):
                    return True
            elif op in (b"k", b"K"):
                if not _neutral(_CMYK, values):
                    return True
            elif op in (b"sc", b"SC") or (op in (b"scn", b"SCN") and name_bytes is None):
                if not _neutral(fill if op in (b"sc", b"scn") else stroke, values):
                    return True
            elif name_bytes is None:
                continue
            else:
                name = "/" + name_bytes.decode("latin-1")
                if op in (b"cs", b"CS"):
                    space = self.space(name, resources, depth)
                    if space.kind == "color":
                        return True
                    if op == b"cs":
                        fill = space
                    else:
                        stroke = space
                elif op in (b"scn", b"SCN"):
                    space = fill if op == b"scn" else stroke
                    if space.kind == "pattern" and self.pattern(name, values, resources, depth):
                        return True
                elif op == b"Do":
                    if self.xobject(name, resources, depth):
                        return True
                elif op == b"sh":
                    shading = _lookup(resources, "/Shading", name)
                    if shading is not None and self.space_of(
                            shading.get("/ColorSpace"), resources, depth).kind != "gray":
                        return True
        return False

    def _strip_inline(self, data: bytes, resources: Any) -> tuple[bytes, bool]:
        pieces: list[bytes] = []
        pos = 0
        while True:
            match = _INLINE.search(data, pos)
            if match is None:
                break
            end = _INLINE_END.search(data, match.end())
            if end is None:
                raise AnalysisError("inline image without EI")
            pieces.append(data[pos:match.start()])
            head = match.group(1)
            name = _INLINE_CS.search(head)
            space = self.space("/" + name.group(1).decode("latin-1"), resources, 0) if name else _GRAY
            if b"/IM true" in head or b"/ImageMask true" in head:
                space = _GRAY
            if space.kind not in ("gray",):
                raw = data[match.end():end.start()]
                if _INLINE_FILTERED.search(head) or space.kind not in ("rgb", "cmyk"):
                    return data, True
                if not _pixels_neutral(space.kind, raw):
                    return data, True
            pos = end.end()
        pieces.append(data[pos:])
        return b"".join(pieces), False

    def space(self, name: str, resources: Any, depth: int) -> _Space:
        if name in _DEVICE:
            return _DEVICE[name]
        return self.space_of(_lookup(resources, "/ColorSpace", name), resources, depth)

    def space_of(self, obj: Any, resources: Any, depth: int) -> _Space:
        """Classify a colour space object (a name or an array)."""
        obj = _resolve(obj)
        if obj is None:
            return _GRAY
        if isinstance(obj, str):
            return self.space(str(obj), resources, depth + 1) if depth < _MAX_DEPTH else _Space("color")
        if not isinstance(obj, list) or not obj:
            return _Space("color")
        family = str(_resolve(obj[0]))
        if family in ("/ICCBased",) and len(obj) > 1:
            stream = _resolve(obj[1])
            n = int(stream.get("/N", 3)) if stream is not None else 3
            return {1: _GRAY, 3: _RGB, 4: _CMYK}.get(n, _Space("color"))
        if family in ("/CalGray",):
            return _GRAY
        if family in ("/CalRGB",):
            return _RGB
        if family == "/Lab":
            return _DEVICE["/Lab"]
        if family in ("/Indexed", "/I") and len(obj) >= 4:
            base = self.space_of(obj[1], resources, depth + 1)
            lookup = _resolve(obj[3])
            if hasattr(lookup, "get_data"):
                palette = lookup.get_data()
            elif hasattr(lookup, "original_bytes"):  # a string: TextStringObject or ByteStringObject
                palette = lookup.original_bytes
            else:
                palette = bytes(lookup) if isinstance(lookup, bytes) else b""
            if base.kind == "gray":
                return _GRAY
            if base.kind not in ("rgb", "cmyk"):
                return _Space("color")
            return _Space("indexed", palette=bytes(palette), base=base.kind)
        if family == "/Separation" and len(obj) >= 2:
            return _GRAY if str(_resolve(obj[1])) in _BLACK_NAMES else _Space("spot")
        if family == "/DeviceN" and len(obj) >= 2:
            names = _resolve(obj[1]) or []
            if all(str(_resolve(n)) in _BLACK_NAMES for n in names):
                return _GRAY
            return _Space("spot")
        if family == "/Pattern":
            return _Space("pattern")
        return _Space("color")

    def pattern(self, name: str, values: list[float], resources: Any, depth: int) -> bool:
        pattern = _lookup(resources, "/Pattern", name)
        if pattern is None:
            return False
        if int(pattern.get("/PatternType", 1)) == 2:
            shading = _resolve(pattern.get("/Shading"))
            if shading is None:
                return False
            return self.space_of(shading.get("/ColorSpace"), resources, depth).kind != "gray"
        if int(pattern.get("/PaintType", 1)) == 2:  # uncoloured: the colour comes with scn
            space = _RGB if len(values) == 3 else _CMYK if len(values) == 4 else _GRAY
            return bool(values) and not _neutral(space, values)
        return self.form(pattern, resources, depth)

    def xobject(self, name: str, resources: Any, depth: int) -> bool:
        xobject = _lookup(resources, "/XObject", name)
        if xobject is None:
            return False
        key = id(xobject)
        ref = getattr(xobject, "indirect_reference", None)
        if ref is not None:
            key = ref.idnum
            if key in self.cache:
                return self.cache[key]
        subtype = xobject.get("/Subtype")
        if subtype == "/Image":
            result = self.image(xobject, resources, depth)
        elif subtype == "/Form":
            result = self.form(xobject, resources, depth)
        else:
            result = False
        if ref is not None:
            self.cache[key] = result
        return result

    def form(self, form: Any, resources: Any, depth: int) -> bool:
        own = _resolve(form.get("/Resources"))
        return self.scan(form.get_data(), own if own is not None else resources, depth + 1)

    def image(self, image: Any, resources: Any, depth: int) -> bool:
        if image.get("/ImageMask"):
            return False
        space = self.space_of(image.get("/ColorSpace"), resources, depth)
        if space.kind == "gray":
            return False
        if space.kind == "indexed":
            n = 3 if space.base == "rgb" else 4
            return not _pixels_neutral(space.base, space.palette[:len(space.palette) // n * n])
        if space.kind not in ("rgb", "cmyk"):
            return True
        width, height = int(image.get("/Width", 0)), int(image.get("/Height", 0))
        if width <= 0 or height <= 0:
            return True
        filters = _resolve(image.get("/Filter"))
        filters = ([str(f) for f in filters] if isinstance(filters, list)
                   else [str(filters)] if filters else [])
        bits = int(image.get("/BitsPerComponent", 8))
        if filters in (["/FlateDecode"], ["/Fl"]) and bits == 8 and not image.get("/DecodeParms"):
            # Inflate in slices: exact for any size, in bounded memory (stops at the first colour).
            self.decoded += len(image._data)
            return not _flate_neutral(image._data, space.kind, width * height * space.ncomp,
                                      self.limits.max_decoded_bytes * 4)
        if width * height > self.limits.max_image_pixels:
            return True  # too big to decode here: colour by its colour space
        try:
            data = image.get_data()
        except NotImplementedError:  # pypdf has no decoder for this filter: colour by its colour space
            return True
        self.decoded += len(data)
        if filters and filters[-1] in ("/DCTDecode", "/DCT", "/JPXDecode"):
            return not _jpeg_neutral(data)
        if int(image.get("/BitsPerComponent", 8)) != 8:
            return True
        return not _pixels_neutral(space.kind, data)


_OWN_FILTERS = frozenset({"/ASCII85Decode", "/A85", "/FlateDecode", "/Fl"})
_WHITESPACE = b" \t\r\n\f\x00"


def _a85_body(data: bytes) -> bytes:
    """The ASCII85 digits of a content stream: white space dropped, the optional ``<~`` and
    everything from the ``~>`` end marker on cut off (PDF streams end with ``~>``)."""
    data = data.translate(None, _WHITESPACE)
    if data.startswith(b"<~"):
        data = data[2:]
    end = data.find(b"~>")
    return data[:end] if end >= 0 else data


def _a85_stdlib(data: bytes) -> bytes:
    """ASCII85 decoding with the standard library (about 6 MB/s)."""
    import base64

    try:
        return base64.a85decode(_a85_body(data), adobe=False)
    except ValueError:
        raise AnalysisError("bad ASCII85 data in a content stream") from None


def _a85_numpy(data: bytes) -> bytes:
    """ASCII85 decoding vectorised with numpy (some 20 times faster); the same results and the same
    errors as :func:`_a85_stdlib` (tests/test_drivers_units.py runs both on one table)."""
    import numpy

    body = _a85_body(data)
    if b"z" in body:
        groups = body.split(b"z")
        if any(len(group) % 5 for group in groups[:-1]):  # "z" only between whole groups
            raise AnalysisError("bad ASCII85 data in a content stream")
        body = b"!!!!!".join(groups)
    pad = -len(body) % 5
    digits = numpy.frombuffer(body + b"u" * pad, numpy.uint8).astype(numpy.int64) - 33
    if digits.size and (digits.min() < 0 or digits.max() > 84):
        raise AnalysisError("bad ASCII85 data in a content stream")
    words = digits.reshape(-1, 5) @ numpy.array([85**4, 85**3, 85**2, 85, 1], numpy.int64)
    if words.size and words.max() > 0xFFFFFFFF:
        raise AnalysisError("bad ASCII85 data in a content stream")
    out = words.astype(">u4").tobytes()
    return out[:len(out) - pad] if pad else out


def _a85(data: bytes) -> bytes:
    """ASCII85 decoding: numpy (a declared dependency) when it imports, else the standard library."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        return _a85_stdlib(data)
    return _a85_numpy(data)


def _inflate(data: bytes, limit: int) -> bytes:
    """zlib inflate of at most `limit` bytes (a truncated stream gives what it has)."""
    import zlib

    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        try:
            out = zlib.decompressobj(-15).decompress(data[2:], limit + 1)
        except zlib.error:
            raise AnalysisError("corrupt Flate data in a content stream") from None
    if len(out) > limit:
        raise AnalysisError(f"limit reached: content stream inflates beyond {limit} bytes")
    return out


def _pixels_neutral(kind: str, data: bytes) -> bool:
    if kind == "rgb":
        return data[0::3] == data[1::3] == data[2::3]
    if kind == "cmyk":
        return not data[0::4].strip(b"\0") and not data[1::4].strip(b"\0") and not data[2::4].strip(b"\0")
    return True


def _flate_neutral(encoded: bytes, kind: str, expected: int, cap: int) -> bool:
    """Inflate `encoded` piece by piece, checking each whole-pixel piece for neutrality."""
    import zlib

    n = 3 if kind == "rgb" else 4
    inflater = zlib.decompressobj()
    pending = b""
    total = 0
    view = memoryview(encoded)
    for start in range(0, len(view), 1 << 16):
        chunk = pending + inflater.decompress(view[start:start + (1 << 16)], 1 << 22)
        while True:
            total += len(chunk) - len(pending)
            if total > min(expected, cap) + n:
                break
            whole = len(chunk) // n * n
            if not _pixels_neutral(kind, chunk[:whole]):
                return False
            pending = chunk[whole:]
            if not inflater.unconsumed_tail:
                break
            chunk = pending + inflater.decompress(inflater.unconsumed_tail, 1 << 22)
        if total > min(expected, cap) + n:
            break
    return True


def _jpeg_neutral(data: bytes) -> bool:
    try:
        from PIL import Image, ImageChops
    except ImportError:
        return False  # cannot decode: colour by its colour space

    with Image.open(io.BytesIO(data)) as image:
        if image.mode in ("L", "1", "LA", "I", "F"):
            return True
        rgb = image.convert("RGB")
    r, g, b = rgb.split()
    worst = max(ImageChops.difference(r, g).getextrema()[1], ImageChops.difference(g, b).getextrema()[1])
    return worst <= _JPEG_TOLERANCE


def _resolve(obj: Any) -> Any:
    for _ in range(8):
        if obj is None or not hasattr(obj, "get_object"):
            return obj
        resolved = obj.get_object()
        if resolved is obj:
            return obj
        obj = resolved
    return obj


def _lookup(resources: Any, category: str, name: str) -> Any:
    resources = _resolve(resources)
    if not hasattr(resources, "get"):
        return None
    table = _resolve(resources.get(category))
    if not hasattr(table, "get"):
        return None
    return _resolve(table.get(name))
