"""Pure, strict IPP message codec (RFC 8010 section 3): bytes <-> IppMessage, keeping every value's tag.

Wire layout (RFC 8010 3.1)::

    version-number(2) operation-id|status-code(2) request-id(4)
    { begin-attribute-group-tag(1)
      { value-tag(1) name-length(2) name value-length(2) value }* }*
    end-of-attributes-tag(1) data

An attribute's first value carries its name; each further value of a 1setOf is
an "additional value" record with an empty name.  A collection value is a
begCollection record, then per member a memberAttrName record (the member name
is its value) followed by the member's value records, then endCollection.

Decoded values, by tag:

=====================================  ==========================================
integer, enum                          int (signed 32-bit)
boolean                                bool (wire octet must be 0 or 1)
octetString, unknown or extended tag   bytes (the tag is kept, so it round-trips)
dateTime                               timezone-aware datetime (deciseconds)
resolution                             (x, y, units) -- units 3 dpi, 4 dpcm
rangeOfInteger                         (lower, upper)
textWithLanguage, nameWithLanguage     (language, text)
text, name, keyword, uri, ...          str (UTF-8)
begCollection                          Collection (a list of member Attributes)
out-of-band (0x10-0x1F)                None (value-length must be 0)
=====================================  ==========================================

Decoding never raises anything but IppParseError (a ValueError) on bad input;
the server maps it to client-error-bad-request.  The decode limits are keyword
arguments, and their defaults are sized for *requests*:

* ``max_value_length=8192`` octets for every value and name, except octetString
  and unrecognised tags, which may use the whole wire maximum of 32767 octets.
  (RFC 8011 caps text at 1023 octets and name at 255; the codec is lenient and
  leaves those semantic limits to the server.)
* ``max_attributes=1000`` attributes, counting collection members.
* ``max_values=4096`` values, counting additional values and member values.
* ``max_collection_depth=8`` nested collections.
* ``max_groups=100`` attribute groups.

Raise them to decode large responses (say Get-Jobs from another server).
Encoding raises ValueError for values that cannot be put on the wire.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime as DateTime, timedelta, timezone
from typing import NamedTuple

from .tags import OUT_OF_BAND_TAGS, Tag

__all__ = [
    "Attribute",
    "AttributeGroup",
    "Collection",
    "IppMessage",
    "IppParseError",
    "Value",
    "decode",
    "decode_message",
    "encode_message",
    "find_data_offset",
]

WIRE_MAX_LENGTH = 0x7FFF  # lengths are SIGNED-SHORT on the wire


class IppParseError(ValueError):
    """The bytes are not a well-formed IPP message (or exceed a decode limit)."""


# -- data model ---------------------------------------------------------------


@dataclass
class Value:
    """One attribute value and its value tag (see the module docstring for the Python types)."""

    tag: int
    value: object = None


class Collection(list["Attribute"]):
    """The value of a begCollection value: its member attributes, in wire order."""

    def get(self, name: str) -> Attribute | None:
        return _find(self, name)


class Attribute:
    """A named attribute and its values (several values make a 1setOf).

    A plain class rather than a dataclass because the ``name`` builder below
    shares its name with the ``name`` instance attribute (the instance wins).
    """

    def __init__(self, name: str, values: list[Value] | None = None) -> None:
        self.name = name
        self.values: list[Value] = [] if values is None else values

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Attribute):
            return NotImplemented
        return (self.name, self.values) == (other.name, other.values)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclasses

    def __repr__(self) -> str:
        return f"Attribute({self.name!r}, {self.values!r})"

    @property
    def first(self) -> object:
        """The first value's Python value (None if there are no values)."""
        return self.values[0].value if self.values else None

    @property
    def tag(self) -> int | None:
        """The first value's tag (None if there are no values)."""
        return self.values[0].tag if self.values else None

    @property
    def all(self) -> list[object]:
        """Every value's Python value, in order."""
        return [v.value for v in self.values]

    # Builders: Attribute.keyword("printer-state-reasons", "none", "media-low").

    @classmethod
    def of(cls, name: str, tag: int, *values: object) -> Attribute:
        """An attribute whose values all share one tag; at least one value is required."""
        if not values:
            raise ValueError(f"attribute {name!r} needs at least one value")
        return cls(name, [Value(tag, v) for v in values])

    @classmethod
    def integer(cls, name: str, *values: int) -> Attribute:
        return cls.of(name, Tag.INTEGER, *values)

    @classmethod
    def boolean(cls, name: str, *values: bool) -> Attribute:
        return cls.of(name, Tag.BOOLEAN, *values)

    @classmethod
    def enum(cls, name: str, *values: int) -> Attribute:
        return cls.of(name, Tag.ENUM, *values)

    @classmethod
    def octets(cls, name: str, *values: bytes) -> Attribute:
        return cls.of(name, Tag.OCTET_STRING, *values)

    @classmethod
    def datetime(cls, name: str, *values: DateTime) -> Attribute:
        return cls.of(name, Tag.DATETIME, *values)

    @classmethod
    def resolution(cls, name: str, *values: tuple[int, int, int]) -> Attribute:
        return cls.of(name, Tag.RESOLUTION, *values)

    @classmethod
    def range(cls, name: str, *values: tuple[int, int]) -> Attribute:
        return cls.of(name, Tag.RANGE, *values)

    @classmethod
    def text(cls, name: str, *values: str, language: str | None = None) -> Attribute:
        """textWithoutLanguage values, or textWithLanguage ones when language is given."""
        if language is None:
            return cls.of(name, Tag.TEXT, *values)
        return cls.of(name, Tag.TEXT_WITH_LANGUAGE, *((language, v) for v in values))

    @classmethod
    def name(cls, name: str, *values: str, language: str | None = None) -> Attribute:
        """nameWithoutLanguage values, or nameWithLanguage ones when language is given."""
        if language is None:
            return cls.of(name, Tag.NAME, *values)
        return cls.of(name, Tag.NAME_WITH_LANGUAGE, *((language, v) for v in values))

    @classmethod
    def keyword(cls, name: str, *values: str) -> Attribute:
        return cls.of(name, Tag.KEYWORD, *values)

    @classmethod
    def uri(cls, name: str, *values: str) -> Attribute:
        return cls.of(name, Tag.URI, *values)

    @classmethod
    def uri_scheme(cls, name: str, *values: str) -> Attribute:
        return cls.of(name, Tag.URI_SCHEME, *values)

    @classmethod
    def charset(cls, name: str, *values: str) -> Attribute:
        return cls.of(name, Tag.CHARSET, *values)

    @classmethod
    def language(cls, name: str, *values: str) -> Attribute:
        return cls.of(name, Tag.NATURAL_LANGUAGE, *values)

    @classmethod
    def mime(cls, name: str, *values: str) -> Attribute:
        return cls.of(name, Tag.MIME_MEDIA_TYPE, *values)

    @classmethod
    def collection(cls, name: str, *values: Iterable[Attribute]) -> Attribute:
        """One collection value per argument, each an iterable of member attributes."""
        return cls.of(name, Tag.BEGIN_COLLECTION, *(Collection(v) for v in values))

    @classmethod
    def out_of_band(cls, name: str, tag: int = Tag.NO_VALUE) -> Attribute:
        """A single out-of-band value such as Tag.UNSUPPORTED, Tag.UNKNOWN or Tag.NO_VALUE."""
        if tag not in OUT_OF_BAND_TAGS:
            raise ValueError(f"{tag:#x} is not an out-of-band tag")
        return cls(name, [Value(tag, None)])


@dataclass
class AttributeGroup:
    """One attribute group: its delimiter tag and its attributes, in wire order."""

    tag: int
    attributes: list[Attribute] = field(default_factory=list)

    def get(self, name: str) -> Attribute | None:
        """The first attribute called name, or None."""
        return _find(self.attributes, name)

    def __getitem__(self, name: str) -> Attribute:
        """The first attribute called name; KeyError if there is none."""
        if (attribute := _find(self.attributes, name)) is None:
            raise KeyError(name)
        return attribute

    def __contains__(self, name: object) -> bool:
        return any(a.name == name for a in self.attributes)

    def add(self, *attributes: Attribute) -> AttributeGroup:
        """Append attributes; returns the group, for chaining."""
        self.attributes.extend(attributes)
        return self


@dataclass
class IppMessage:
    """A request (code is the operation-id) or response (code is the status-code)."""

    version: tuple[int, int]
    code: int
    request_id: int
    groups: list[AttributeGroup] = field(default_factory=list)
    data: bytes = b""

    def group(self, tag: int) -> AttributeGroup | None:
        """The first group with this delimiter tag, or None."""
        return next((g for g in self.groups if g.tag == tag), None)

    def groups_of(self, tag: int) -> list[AttributeGroup]:
        """Every group with this delimiter tag, in order (one per job in Get-Jobs)."""
        return [g for g in self.groups if g.tag == tag]

    def add_group(self, tag: int, *attributes: Attribute) -> AttributeGroup:
        """Append a new group and return it."""
        group = AttributeGroup(tag, list(attributes))
        self.groups.append(group)
        return group

    @property
    def operation_attributes(self) -> AttributeGroup | None:
        return self.group(Tag.OPERATION)

    @property
    def job_attributes(self) -> AttributeGroup | None:
        return self.group(Tag.JOB)

    @property
    def printer_attributes(self) -> AttributeGroup | None:
        return self.group(Tag.PRINTER)


def _find(attributes: Iterable[Attribute], name: str) -> Attribute | None:
    return next((a for a in attributes if a.name == name), None)


# -- value syntaxes: one table drives both directions ------------------------

_I32 = struct.Struct(">i")
_RANGE = struct.Struct(">ii")
_RESOLUTION = struct.Struct(">iib")
_DATETIME = struct.Struct(">HBBBBBBcBB")
_U16 = struct.Struct(">H")
_HEADER = struct.Struct(">BBHi")


def _decode_bool(raw: bytes) -> bool:
    if raw[0] > 1:
        raise IppParseError(f"boolean value must be 0 or 1, not {raw[0]}")
    return raw[0] == 1


def _encode_bool(value: object) -> bytes:
    if not isinstance(value, bool):
        raise ValueError(f"boolean value must be a bool, not {value!r}")
    return b"\x01" if value else b"\x00"


def _decode_datetime(raw: bytes) -> DateTime:
    year, month, day, hour, minute, second, deci, sign, tz_h, tz_m = _DATETIME.unpack(raw)
    if sign not in (b"+", b"-") or deci > 9 or tz_h > 23 or tz_m > 59:
        raise IppParseError(f"malformed dateTime value {raw.hex()}")
    offset = timedelta(hours=tz_h, minutes=tz_m) * (-1 if sign == b"-" else 1)
    return DateTime(year, month, day, hour, minute, second, deci * 100_000, timezone(offset))


def _encode_datetime(value: object) -> bytes:
    """Sub-decisecond precision is dropped; the datetime must be timezone-aware."""
    if not isinstance(value, DateTime) or value.utcoffset() is None:
        raise ValueError(f"dateTime value must be a timezone-aware datetime, not {value!r}")
    offset = value.utcoffset()
    assert offset is not None
    minutes, rest = divmod(abs(int(offset.total_seconds())), 60)
    if rest:
        raise ValueError(f"dateTime UTC offset {offset} is not whole minutes")
    sign = b"-" if offset < timedelta(0) else b"+"
    return _DATETIME.pack(
        value.year, value.month, value.day, value.hour, value.minute, value.second,
        value.microsecond // 100_000, sign, minutes // 60, minutes % 60,
    )


def _decode_with_language(raw: bytes) -> tuple[str, str]:
    reader = _Reader(raw)
    language = _utf8(reader.take(reader.u16(), "language"))
    text = _utf8(reader.take(reader.u16(), "text"))
    if reader.pos != len(raw):
        raise IppParseError("trailing octets after a with-language value")
    return language, text


def _encode_with_language(value: object) -> bytes:
    if not (isinstance(value, tuple) and len(value) == 2 and all(isinstance(s, str) for s in value)):
        raise ValueError(f"with-language value must be a (language, text) tuple, not {value!r}")
    language, text = (_counted(s.encode("utf-8")) for s in value)
    return language + text


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IppParseError(f"invalid UTF-8 in {raw[:40]!r}") from exc


def _encode_str(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"string value must be a str, not {value!r}")
    return value.encode("utf-8")


def _encode_bytes(value: object) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ValueError(f"octetString value must be bytes, not {value!r}")
    return bytes(value)


def _counted(raw: bytes) -> bytes:
    if len(raw) > WIRE_MAX_LENGTH:
        raise ValueError(f"{len(raw)} octets exceed the wire maximum of {WIRE_MAX_LENGTH}")
    return _U16.pack(len(raw)) + raw


def _packer(fmt: struct.Struct, star: bool) -> Callable[[object], bytes]:
    """Encode an int (star=False) or a tuple of ints (star=True) with fmt; bools are refused."""

    def encode(value: object) -> bytes:
        try:
            args = tuple(value) if star else (value,)  # type: ignore[call-overload]
            if any(isinstance(a, bool) for a in args):
                raise TypeError("bool is not an integer")
            return fmt.pack(*args)
        except (struct.error, TypeError) as exc:
            raise ValueError(f"cannot encode {value!r}: {exc}") from exc

    return encode


def _unpacker(fmt: struct.Struct) -> Callable[[bytes], object]:
    return lambda raw: fmt.unpack(raw)


class _Syntax(NamedTuple):
    length: int | None  # the fixed value length, or None
    decode: Callable[[bytes], object]
    encode: Callable[[object], bytes]


_INTEGER = _Syntax(4, lambda raw: _I32.unpack(raw)[0], _packer(_I32, star=False))
_STRING = _Syntax(None, _utf8, _encode_str)
_WITH_LANGUAGE = _Syntax(None, _decode_with_language, _encode_with_language)

_SYNTAXES: dict[int, _Syntax] = {
    Tag.INTEGER: _INTEGER,
    Tag.ENUM: _INTEGER,
    Tag.BOOLEAN: _Syntax(1, _decode_bool, _encode_bool),
    Tag.OCTET_STRING: _Syntax(None, bytes, _encode_bytes),
    Tag.DATETIME: _Syntax(11, _decode_datetime, _encode_datetime),
    Tag.RESOLUTION: _Syntax(9, _unpacker(_RESOLUTION), _packer(_RESOLUTION, star=True)),
    Tag.RANGE: _Syntax(8, _unpacker(_RANGE), _packer(_RANGE, star=True)),
    Tag.TEXT_WITH_LANGUAGE: _WITH_LANGUAGE,
    Tag.NAME_WITH_LANGUAGE: _WITH_LANGUAGE,
    **{
        tag: _STRING
        for tag in (
            Tag.TEXT, Tag.NAME, Tag.KEYWORD, Tag.URI, Tag.URI_SCHEME,
            Tag.CHARSET, Tag.NATURAL_LANGUAGE, Tag.MIME_MEDIA_TYPE,
        )
    },
}

#: Tags whose values are capped by max_value_length (the rest only by the wire maximum).
_CAPPED_TAGS = (set(_SYNTAXES) - {Tag.OCTET_STRING}) | set(OUT_OF_BAND_TAGS) | {
    Tag.BEGIN_COLLECTION, Tag.END_COLLECTION, Tag.MEMBER_NAME,
}
_KNOWN_TAGS: dict[int, Tag] = {t.value: t for t in Tag}


# -- decoding -----------------------------------------------------------------


class _Reader:
    """A bounds-checked cursor over a buffer."""

    def __init__(self, buf: bytes | bytearray | memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise IppParseError(f"truncated {what}: need {n} octets at offset {self.pos}")
        chunk = bytes(self.buf[self.pos:end])
        self.pos = end
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str = "length") -> int:
        return _U16.unpack(self.take(2, what))[0]


class _Decoder(_Reader):
    """Reads attribute groups, enforcing the decode limits."""

    def __init__(
        self,
        buf: bytes | bytearray | memoryview,
        *,
        max_attributes: int,
        max_values: int,
        max_value_length: int,
        max_collection_depth: int,
        max_groups: int,
    ) -> None:
        super().__init__(buf)
        self.max_value_length = max_value_length
        self.max_collection_depth = max_collection_depth
        self.budget = {"attributes": max_attributes, "values": max_values, "groups": max_groups}

    def spend(self, what: str) -> None:
        self.budget[what] -= 1
        if self.budget[what] < 0:
            raise IppParseError(f"too many {what}")

    def length(self, what: str, cap: int) -> int:
        n = self.u16(what)
        if n > WIRE_MAX_LENGTH:
            raise IppParseError(f"{what} {n} has the sign bit set")
        if n > cap:
            raise IppParseError(f"{what} {n} exceeds the limit of {cap}")
        return n

    def record(self, tag: int) -> tuple[int, str, bytes]:
        """The rest of a value record whose tag was just read: (tag, name, raw value)."""
        name = _utf8(self.take(self.length("name-length", self.max_value_length), "name"))
        cap = self.max_value_length if tag in _CAPPED_TAGS else WIRE_MAX_LENGTH
        raw = self.take(self.length("value-length", cap), "value")
        if tag == Tag.EXTENSION:
            if len(raw) < 4:
                raise IppParseError("extended tag value shorter than its 4-octet tag")
            tag = int.from_bytes(raw[:4], "big")
            if not 0xFF < tag <= 0x7FFFFFFF:
                raise IppParseError(f"invalid extended tag {tag:#x}")
            raw = raw[4:]
        return tag, name, raw

    def value(self, tag: int, raw: bytes, depth: int) -> Value:
        self.spend("values")
        if tag == Tag.BEGIN_COLLECTION:
            if raw:
                raise IppParseError("begCollection value must be empty")
            return Value(Tag.BEGIN_COLLECTION, self.collection(depth + 1))
        if tag in (Tag.END_COLLECTION, Tag.MEMBER_NAME):
            raise IppParseError(f"{_KNOWN_TAGS[tag].name} outside a collection")
        if tag in OUT_OF_BAND_TAGS:
            if raw:
                raise IppParseError(f"out-of-band value {tag:#x} must have value-length 0")
            return Value(_KNOWN_TAGS.get(tag, tag), None)
        syntax = _SYNTAXES.get(tag)
        if syntax is None:
            return Value(tag, raw)
        if syntax.length is not None and len(raw) != syntax.length:
            name = _KNOWN_TAGS[tag].name
            raise IppParseError(f"{name} value must be {syntax.length} octets, not {len(raw)}")
        try:
            return Value(_KNOWN_TAGS[tag], syntax.decode(raw))
        except IppParseError:
            raise
        except ValueError as exc:  # e.g. datetime(month=13)
            raise IppParseError(f"bad {_KNOWN_TAGS[tag].name} value {raw.hex()}: {exc}") from exc

    def collection(self, depth: int) -> Collection:
        if depth > self.max_collection_depth:
            raise IppParseError(f"collections nested deeper than {self.max_collection_depth}")
        members = Collection()
        while True:
            tag = self.u8("collection member tag")
            if tag < 0x10:
                raise IppParseError(f"delimiter tag {tag:#x} inside a collection")
            tag, name, raw = self.record(tag)
            if name:
                raise IppParseError(f"named attribute {name!r} inside a collection")
            if tag in (Tag.MEMBER_NAME, Tag.END_COLLECTION) and members and not members[-1].values:
                raise IppParseError(f"collection member {members[-1].name!r} has no value")
            if tag == Tag.END_COLLECTION:
                if raw:
                    raise IppParseError("endCollection value must be empty")
                return members
            if tag == Tag.MEMBER_NAME:
                if not raw:
                    raise IppParseError("empty collection member name")
                self.spend("attributes")
                members.append(Attribute(_utf8(raw)))
            elif not members:
                raise IppParseError("collection value before any memberAttrName")
            else:
                members[-1].values.append(self.value(tag, raw, depth))

    def groups(self) -> list[AttributeGroup]:
        groups: list[AttributeGroup] = []
        while (tag := self.u8("tag (missing end-of-attributes-tag)")) != Tag.END:
            if tag < 0x10:
                if tag == 0:
                    raise IppParseError("reserved delimiter tag 0x00")
                self.spend("groups")
                groups.append(AttributeGroup(_KNOWN_TAGS.get(tag, tag)))
                continue
            if not groups:
                raise IppParseError("attribute before the first group tag")
            tag, name, raw = self.record(tag)
            attributes = groups[-1].attributes
            if name:
                self.spend("attributes")
                attributes.append(Attribute(name))
            elif not attributes:
                raise IppParseError("additional value without a preceding attribute")
            attributes[-1].values.append(self.value(tag, raw, 0))
        return groups


def decode_message(
    buf: bytes | bytearray | memoryview,
    *,
    max_attributes: int = 1000,
    max_values: int = 4096,
    max_value_length: int = 8192,
    max_collection_depth: int = 8,
    max_groups: int = 100,
) -> tuple[IppMessage, int]:
    """Decode the header and attribute groups; return the message (data left empty) and the data offset.

    buf[offset:] is the document data that follows the end-of-attributes tag.
    Raises IppParseError for malformed input or a broken limit.
    """
    decoder = _Decoder(
        buf,
        max_attributes=max_attributes,
        max_values=max_values,
        max_value_length=max_value_length,
        max_collection_depth=max_collection_depth,
        max_groups=max_groups,
    )
    major, minor, code, request_id = _HEADER.unpack(decoder.take(_HEADER.size, "header"))
    message = IppMessage((major, minor), code, request_id, decoder.groups())
    return message, decoder.pos


def find_data_offset(buf: bytes | bytearray | memoryview, start: int = 8) -> int | None:
    """Where the document data begins (just past the end-of-attributes tag), or None if buf does
    not yet hold the whole header. For incremental parsing from a stream: it only walks the record
    lengths, so a later decode_message(buf[:offset]) still does the validation. ``start`` lets a
    caller resume the walk at a record boundary it found before; pass 8 (after the fixed header)
    the first time.
    """
    view = memoryview(buf)
    pos = start
    end = len(view)
    while pos < end:
        tag = view[pos]
        if tag == Tag.END:
            return pos + 1
        if tag < 0x10:
            pos += 1
            continue
        if pos + 3 > end:
            return None
        name_length = int.from_bytes(view[pos + 1 : pos + 3], "big")
        value_at = pos + 3 + name_length
        if value_at + 2 > end:
            return None
        value_length = int.from_bytes(view[value_at : value_at + 2], "big")
        pos = value_at + 2 + value_length
    return None


def decode(buf: bytes | bytearray | memoryview, **limits: int) -> IppMessage:
    """Decode a whole message; the octets after the end-of-attributes tag become message.data."""
    message, offset = decode_message(buf, **limits)
    message.data = bytes(buf[offset:])
    return message


# -- encoding -----------------------------------------------------------------


def _record(tag: int, name: str, raw: bytes) -> bytes:
    if tag > 0xFF:
        raw = tag.to_bytes(4, "big") + raw
        tag = Tag.EXTENSION
    return bytes([tag]) + _counted(name.encode("utf-8")) + _counted(raw)


def _encode_value(out: list[bytes], name: str, value: Value) -> None:
    tag = value.tag
    if not isinstance(tag, int) or not 0x10 <= tag <= 0x7FFFFFFF or tag == Tag.EXTENSION:
        raise ValueError(f"{tag!r} is not a value tag (use the real tag for extended ones)")
    if tag in (Tag.END_COLLECTION, Tag.MEMBER_NAME):
        raise ValueError(f"{tag:#x} cannot be encoded as a value tag")
    if tag == Tag.BEGIN_COLLECTION:
        if not isinstance(value.value, list):
            raise ValueError(f"collection value must be a list of Attribute, not {value.value!r}")
        out.append(_record(tag, name, b""))
        for member in value.value:
            if not isinstance(member, Attribute) or not member.name or not member.values:
                raise ValueError(f"collection member must be a named Attribute with values: {member!r}")
            out.append(_record(Tag.MEMBER_NAME, "", member.name.encode("utf-8")))
            for member_value in member.values:
                _encode_value(out, "", member_value)
        out.append(_record(Tag.END_COLLECTION, "", b""))
    elif tag in OUT_OF_BAND_TAGS:
        if value.value is not None:
            raise ValueError(f"out-of-band value {tag:#x} must be None")
        out.append(_record(tag, name, b""))
    elif (syntax := _SYNTAXES.get(tag)) is not None:
        out.append(_record(tag, name, syntax.encode(value.value)))
    else:
        out.append(_record(tag, name, _encode_bytes(value.value)))


def encode_message(message: IppMessage) -> bytes:
    """The RFC 8010 encoding of message followed by message.data; ValueError for unencodable content."""
    try:
        out = [_HEADER.pack(*message.version, message.code, message.request_id)]
    except (struct.error, TypeError) as exc:
        raise ValueError(f"bad version, code or request-id: {exc}") from exc
    for group in message.groups:
        if not 0x01 <= group.tag <= 0x0F or group.tag == Tag.END:
            raise ValueError(f"{group.tag:#x} is not a group tag")
        out.append(bytes([group.tag]))
        for attribute in group.attributes:
            if not attribute.name or not attribute.values:
                raise ValueError(f"attribute needs a name and at least one value: {attribute!r}")
            for i, value in enumerate(attribute.values):
                _encode_value(out, attribute.name if i == 0 else "", value)
    out.append(bytes([Tag.END]))
    out.append(bytes(message.data))
    return b"".join(out)
