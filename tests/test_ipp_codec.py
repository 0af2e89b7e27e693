"""Tests for spooler.ipp.codec: round trips, byte fixtures, strictness, limits, pyipp and properties."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from spooler.ipp.codec import (
    Attribute,
    AttributeGroup,
    Collection,
    IppMessage,
    IppParseError,
    Value,
    decode,
    decode_message,
    encode_message,
)
from spooler.ipp.tags import OUT_OF_BAND_TAGS, JobState, Operation, PrinterState, Status, Tag

# Limits generous enough for the generated and hand-built messages below.
BIG = {"max_attributes": 10**6, "max_values": 10**6, "max_collection_depth": 64, "max_groups": 10**6}


def hexbytes(text: str) -> bytes:
    """bytes.fromhex that also allows '#' comments and line breaks."""
    return bytes.fromhex("".join(line.split("#")[0] for line in text.splitlines()))


def record(tag: int, name: bytes, value: bytes) -> bytes:
    """One attribute record: tag, name-length, name, value-length, value."""
    return bytes([tag]) + len(name).to_bytes(2, "big") + name + len(value).to_bytes(2, "big") + value


def request(*groups: AttributeGroup, data: bytes = b"") -> IppMessage:
    return IppMessage((2, 0), Operation.PRINT_JOB, 1, list(groups), data)


def operation_group(*attributes: Attribute) -> AttributeGroup:
    return AttributeGroup(Tag.OPERATION, list(attributes))


# A message-prefix for the hand-built bad inputs: header and operation group tag.
HEAD = hexbytes("0200 0002 00000001 01")
END = b"\x03"

# -- fixtures -------------------------------------------------------------------

PRINT_JOB = hexbytes(
    """
    0200                                      # version-number 2.0
    0002                                      # operation-id Print-Job
    00000001                                  # request-id 1
    01                                        # operation-attributes-tag
    47 0012 617474726962757465732d63686172736574                      # charset attributes-charset
       0005 7574662d38                                                # utf-8
    48 001b 617474726962757465732d6e61747572616c2d6c616e6775616765    # naturalLanguage
                                                                      #   attributes-natural-language
       0002 656e                                                      # en
    45 000b 7072696e7465722d757269                                    # uri printer-uri
       001e 6970703a2f2f3132372e302e302e313a383633312f6970702f7072696e74  # ipp://127.0.0.1:8631/ipp/print
    42 0014 72657175657374696e672d757365722d6e616d65                  # nameWithoutLanguage
                                                                      #   requesting-user-name
       0005 616c696365                                                # alice
    42 0008 6a6f622d6e616d65                                          # nameWithoutLanguage job-name
       0007 696e766f696365                                            # invoice
    49 000f 646f63756d656e742d666f726d6174                            # mimeMediaType document-format
       000a 746578742f706c61696e                                      # text/plain
    03                                        # end-of-attributes-tag
    68656c6c6f0a                              # document data: "hello\\n"
    """
)

# media-col = {media-size = {x-dimension = 21000}, media-type = stationery}, in a job group.
MEDIA_COL_RECORDS = hexbytes(
    """
    34 0009 6d656469612d636f6c 0000           # begCollection media-col
    4a 0000 000a 6d656469612d73697a65         #   memberAttrName media-size
    34 0000 0000                              #   begCollection (the member's value)
    4a 0000 000b 782d64696d656e73696f6e       #     memberAttrName x-dimension
    21 0000 0004 00005208                     #     integer 21000
    37 0000 0000                              #   endCollection
    4a 0000 000a 6d656469612d74797065         #   memberAttrName media-type
    44 0000 000a 73746174696f6e657279         #   keyword stationery
    37 0000 0000                              # endCollection
    """
)

MEDIA_COL = Attribute.collection(
    "media-col",
    [
        Attribute.collection("media-size", [Attribute.integer("x-dimension", 21000)]),
        Attribute.keyword("media-type", "stationery"),
    ],
)


def test_print_job_fixture_decodes_with_data_offset() -> None:
    message, offset = decode_message(PRINT_JOB)
    assert message.version == (2, 0)
    assert message.code == Operation.PRINT_JOB
    assert message.request_id == 1
    assert message.data == b""
    assert PRINT_JOB[offset:] == b"hello\n"
    ops = message.operation_attributes
    assert ops is not None and [g.tag for g in message.groups] == [Tag.OPERATION]
    expected = [
        ("attributes-charset", Tag.CHARSET, "utf-8"),
        ("attributes-natural-language", Tag.NATURAL_LANGUAGE, "en"),
        ("printer-uri", Tag.URI, "ipp://127.0.0.1:8631/ipp/print"),
        ("requesting-user-name", Tag.NAME, "alice"),
        ("job-name", Tag.NAME, "invoice"),
        ("document-format", Tag.MIME_MEDIA_TYPE, "text/plain"),
    ]
    assert [(a.name, a.tag, a.first) for a in ops.attributes] == expected
    assert decode(PRINT_JOB).data == b"hello\n"


def test_print_job_fixture_is_what_the_encoder_writes() -> None:
    message = request(
        operation_group(
            Attribute.charset("attributes-charset", "utf-8"),
            Attribute.language("attributes-natural-language", "en"),
            Attribute.uri("printer-uri", "ipp://127.0.0.1:8631/ipp/print"),
            Attribute.name("requesting-user-name", "alice"),
            Attribute.name("job-name", "invoice"),
            Attribute.mime("document-format", "text/plain"),
        ),
        data=b"hello\n",
    )
    assert encode_message(message) == PRINT_JOB
    assert decode(PRINT_JOB) == message


def test_collection_fixture_matches_rfc_layout() -> None:
    wire = HEAD[:-1] + b"\x02" + MEDIA_COL_RECORDS + END
    assert encode_message(request(AttributeGroup(Tag.JOB, [MEDIA_COL]))) == wire
    job = decode(wire).job_attributes
    assert job is not None
    media_col = job.get("media-col")
    assert media_col is not None and media_col == MEDIA_COL
    size = media_col.first.get("media-size")  # type: ignore[union-attr]
    assert size.first.get("x-dimension").first == 21000
    assert media_col.first.get("media-type").values == [Value(Tag.KEYWORD, "stationery")]


def test_additional_values_have_empty_names_on_the_wire() -> None:
    reasons = Attribute.keyword("printer-state-reasons", "none", "media-low")
    wire = encode_message(request(operation_group(reasons)))
    assert wire == HEAD + hexbytes(
        """
        44 0015 7072696e7465722d73746174652d726561736f6e73   # keyword printer-state-reasons
           0004 6e6f6e65                                     #   none
        44 0000 0009 6d656469612d6c6f77                      # additional value: media-low
        03
        """
    )


# -- round trips ----------------------------------------------------------------

UTC_PLUS_0530 = timezone(timedelta(hours=5, minutes=30))

ROUND_TRIP = [
    pytest.param(Attribute.integer("copies", 1, 0, -(2**31), 2**31 - 1), id="integer"),
    pytest.param(Attribute.boolean("printer-is-accepting-jobs", True, False), id="boolean"),
    pytest.param(Attribute.enum("printer-state", PrinterState.IDLE, 7), id="enum"),
    pytest.param(Attribute.octets("printer-alert", b"", b"\x00\xffcode=other"), id="octetString"),
    pytest.param(
        Attribute.datetime(
            "printer-current-time",
            datetime(2024, 2, 29, 23, 59, 59, 900_000, timezone.utc),
            datetime(1999, 12, 31, 0, 0, 0, 0, UTC_PLUS_0530),
            datetime(2030, 1, 1, 12, 0, 0, 100_000, timezone(timedelta(hours=-8))),
        ),
        id="dateTime",
    ),
    pytest.param(Attribute.resolution("printer-resolution", (600, 600, 3), (300, 150, 4)), id="resolution"),
    pytest.param(Attribute.range("copies-supported", (1, 999), (-5, -1)), id="rangeOfInteger"),
    pytest.param(Attribute.text("printer-info", "Front desk", language="en-us"), id="textWithLanguage"),
    pytest.param(Attribute.name("job-name", "Grüße ✓", "", language="de"), id="nameWithLanguage"),
    pytest.param(Attribute.text("printer-info", "", "Grüße ✓"), id="textWithoutLanguage"),
    pytest.param(Attribute.name("job-name", "invoice"), id="nameWithoutLanguage"),
    pytest.param(Attribute.keyword("printer-state-reasons", "none"), id="keyword"),
    pytest.param(Attribute.uri("printer-uri-supported", "ipp://h/ipp/print", "ipps://h/ipp/print"), id="uri"),
    pytest.param(Attribute.uri_scheme("reference-uri-schemes-supported", "http"), id="uriScheme"),
    pytest.param(Attribute.charset("charset-supported", "utf-8"), id="charset"),
    pytest.param(Attribute.language("natural-language-supported", "en", "fr-ca"), id="naturalLanguage"),
    pytest.param(Attribute.mime("document-format", "application/pdf", "image/pwg-raster"), id="mime"),
    pytest.param(MEDIA_COL, id="nested-collection"),
    pytest.param(
        Attribute.collection(
            "media-col-database",
            [Attribute.keyword("media-type", "stationery")],
            [Attribute.keyword("media-type", "labels"), Attribute.keyword("media-source", "tray-1", "main")],
            [],
        ),
        id="1setOf-collection",
    ),
    pytest.param(
        Attribute("job-hold-until", [Value(Tag.KEYWORD, "indefinite"), Value(Tag.NAME, "night-shift")]),
        id="1setOf-mixed-syntaxes",
    ),
    *[pytest.param(Attribute.out_of_band("x", tag), id=f"out-of-band-{tag:#x}") for tag in OUT_OF_BAND_TAGS],
    pytest.param(Attribute("x-reserved", [Value(0x20, b"\x01\x02"), Value(0x4B, b"")]), id="unknown-tags"),
    pytest.param(Attribute("x-high", [Value(0x80, b"abc"), Value(0xFF, b"")]), id="high-one-octet-tags"),
    pytest.param(Attribute("x-ext", [Value(0x0100, b""), Value(0x7FFFFFFF, b"value")]), id="extended-tag"),
]


@pytest.mark.parametrize("attribute", ROUND_TRIP)
def test_round_trip_every_syntax(attribute: Attribute) -> None:
    message = request(operation_group(attribute), AttributeGroup(Tag.JOB, [attribute]), data=b"%PDF")
    assert decode(encode_message(message)) == message


def test_round_trip_repeated_job_groups() -> None:
    jobs = [
        AttributeGroup(Tag.JOB).add(Attribute.integer("job-id", n), Attribute.enum("job-state", 4))
        for n in range(1, 6)
    ]
    message = IppMessage((1, 1), Status.SUCCESSFUL_OK, 9, [operation_group(), *jobs, AttributeGroup(Tag.JOB)])
    decoded = decode(encode_message(message))
    assert decoded == message
    assert [g["job-id"].first for g in decoded.groups_of(Tag.JOB)[:5]] == [1, 2, 3, 4, 5]
    assert decoded.groups_of(Tag.JOB)[5].attributes == []


def test_every_group_tag_round_trips() -> None:
    groups = [AttributeGroup(tag, [Attribute.integer("n", tag)]) for tag in (*range(1, 3), *range(4, 16))]
    message = request(*groups)
    assert decode(encode_message(message)) == message


def test_extended_tag_wire_form() -> None:
    wire = encode_message(request(operation_group(Attribute("x", [Value(0x12345, b"ab")]))))
    assert wire == HEAD + hexbytes("7f 0001 78 0006 00012345 6162 03")  # 0x7F, then the tag inside the value


def test_datetime_wire_form_and_precision() -> None:
    value = datetime(2024, 5, 6, 7, 8, 9, 456_789, timezone(timedelta(hours=-3, minutes=-30)))
    wire = encode_message(request(operation_group(Attribute.datetime("t", value))))
    assert wire == HEAD + hexbytes("31 0001 74 000b 07e8 05 06 07 08 09 04 2d 03 1e 03")  # "-" 03:30
    assert decode(wire).groups[0]["t"].first == value.replace(microsecond=400_000)


# -- convenience API ------------------------------------------------------------


def test_convenience_accessors() -> None:
    message = request(
        operation_group(Attribute.charset("attributes-charset", "utf-8")),
        AttributeGroup(Tag.PRINTER).add(Attribute.keyword("printer-state-reasons", "none", "media-low")),
    )
    assert message.operation_attributes is message.groups[0]
    assert message.printer_attributes is message.groups[1]
    assert message.job_attributes is None and message.group(Tag.DOCUMENT) is None
    reasons = message.printer_attributes.get("printer-state-reasons")  # type: ignore[union-attr]
    assert reasons is not None and reasons.first == "none" and reasons.all == ["none", "media-low"]
    assert reasons.tag == Tag.KEYWORD
    assert "printer-state-reasons" in message.groups[1] and "nope" not in message.groups[1]
    assert message.groups[1].get("nope") is None
    assert message.groups[1]["printer-state-reasons"] is reasons
    with pytest.raises(KeyError):
        message.groups[1]["nope"]
    job = message.add_group(Tag.JOB, Attribute.integer("job-id", 7))
    assert message.groups[-1] is job and job.get("job-id").first == 7  # type: ignore[union-attr]
    assert Attribute("empty").first is None and Attribute("empty").tag is None
    assert isinstance(MEDIA_COL.first, Collection) and MEDIA_COL.first.get("absent") is None


def test_builders_validate() -> None:
    with pytest.raises(ValueError):
        Attribute.keyword("printer-state-reasons")
    with pytest.raises(ValueError):
        Attribute.out_of_band("x", Tag.KEYWORD)
    assert Attribute.text("t", "a", "b", language="en").values == [
        Value(Tag.TEXT_WITH_LANGUAGE, ("en", "a")),
        Value(Tag.TEXT_WITH_LANGUAGE, ("en", "b")),
    ]


def test_constants() -> None:
    assert (Operation.PRINT_JOB, Operation.VALIDATE_JOB, Operation.CREATE_JOB) == (0x0002, 0x0004, 0x0005)
    assert (Operation.GET_JOBS, Operation.GET_PRINTER_ATTRIBUTES, Operation.CLOSE_JOB) == (0x0A, 0x0B, 0x3B)
    assert (Operation.CANCEL_JOBS, Operation.CANCEL_MY_JOBS, Operation.IDENTIFY_PRINTER) == (0x38, 0x39, 0x3C)
    assert Operation.GET_PRINTER_SUPPORTED_VALUES == 0x0015 and Operation.SET_JOB_ATTRIBUTES == 0x0014
    assert Status.CLIENT_ERROR_BAD_REQUEST == 0x0400 and Status.CLIENT_ERROR_DOCUMENT_ACCESS_ERROR == 0x0412
    assert Status.SERVER_ERROR_MULTIPLE_DOCUMENT_JOBS_NOT_SUPPORTED == 0x0509
    assert Status.CLIENT_ERROR_BAD_REQUEST.keyword == "client-error-bad-request"
    assert Status.SUCCESSFUL_OK_CONFLICTING_ATTRIBUTES.is_successful
    assert not Status.SERVER_ERROR_BUSY.is_successful
    assert [s.value for s in JobState] == list(range(3, 10))
    assert JobState.PENDING_HELD.keyword == "pending-held"
    assert (PrinterState.IDLE, PrinterState.PROCESSING, PrinterState.STOPPED) == (3, 4, 5)


# -- strict decoding ------------------------------------------------------------


def one(tag: int, value: bytes, name: bytes = b"a") -> bytes:
    """A message holding one attribute record in the operation group."""
    return HEAD + record(tag, name, value) + END


def member(name: bytes) -> bytes:
    return record(Tag.MEMBER_NAME, b"", name)


BEG, COLL_END = record(Tag.BEGIN_COLLECTION, b"c", b""), record(Tag.END_COLLECTION, b"", b"")
INT = record(Tag.INTEGER, b"", b"\x00\x00\x00\x01")

BAD = [
    *[
        pytest.param(one(tag, b"\x00" * n), id=f"{Tag(tag).name}-length-{n}")
        for tag, lengths in {
            Tag.INTEGER: (0, 3, 5),
            Tag.ENUM: (2, 8),
            Tag.BOOLEAN: (0, 2),
            Tag.DATETIME: (10, 12),
            Tag.RESOLUTION: (8, 10),
            Tag.RANGE: (4, 7, 9),
        }.items()
        for n in lengths
    ],
    pytest.param(one(Tag.BOOLEAN, b"\x02"), id="boolean-2"),
    pytest.param(one(Tag.BOOLEAN, b"\xff"), id="boolean-255"),
    pytest.param(HEAD + record(Tag.KEYWORD, b"", b"none") + END, id="additional-value-first-in-group"),
    pytest.param(
        HEAD + record(Tag.KEYWORD, b"a", b"x") + b"\x04" + record(Tag.KEYWORD, b"", b"y") + END,
        id="additional-value-first-in-later-group",
    ),
    pytest.param(HEAD[:-1] + record(Tag.KEYWORD, b"a", b"x") + END, id="attribute-before-group"),
    pytest.param(HEAD + record(Tag.KEYWORD, b"a", b"x"), id="missing-end-tag"),
    pytest.param(hexbytes("0200 0002 00000001"), id="header-only"),
    pytest.param(HEAD + b"\x00" + END, id="reserved-delimiter-0x00"),
    pytest.param(one(Tag.NO_VALUE, b"x"), id="out-of-band-with-value"),
    pytest.param(one(0x1F, b"x"), id="reserved-out-of-band-with-value"),
    pytest.param(one(Tag.BEGIN_COLLECTION, b"x"), id="begCollection-with-value"),
    pytest.param(one(Tag.END_COLLECTION, b""), id="endCollection-outside-collection"),
    pytest.param(one(Tag.MEMBER_NAME, b"m"), id="memberAttrName-outside-collection"),
    pytest.param(HEAD + BEG + member(b"m") + COLL_END + END, id="member-without-value"),
    pytest.param(HEAD + BEG + member(b"m") + member(b"n") + INT + COLL_END + END, id="member-no-value-mid"),
    pytest.param(HEAD + BEG + INT + COLL_END + END, id="value-before-member-name"),
    pytest.param(HEAD + BEG + member(b"") + INT + COLL_END + END, id="empty-member-name"),
    pytest.param(HEAD + BEG + member(b"m") + record(Tag.INTEGER, b"n", b"1234") + COLL_END + END, id="named"),
    pytest.param(HEAD + BEG + member(b"m") + INT + END, id="unterminated-collection"),
    pytest.param(
        HEAD + BEG + member(b"m") + INT + record(Tag.END_COLLECTION, b"", b"x") + END, id="endCollection-val"
    ),
    pytest.param(one(Tag.EXTENSION, b"\x00\x01\x00"), id="extended-tag-short"),
    pytest.param(one(Tag.EXTENSION, b"\x80\x00\x00\x01"), id="extended-tag-sign-bit"),
    pytest.param(one(Tag.EXTENSION, b"\x00\x00\x00\x21\x00\x00\x00\x01"), id="extended-tag-below-0x100"),
    pytest.param(one(Tag.KEYWORD, b"\xff\xfe"), id="keyword-invalid-utf8"),
    pytest.param(one(Tag.NAME, b"ok", name=b"\xc3"), id="attribute-name-invalid-utf8"),
    pytest.param(one(Tag.DATETIME, hexbytes("07e8 0d 01 00 00 00 00 2b 00 00")), id="dateTime-month-13"),
    pytest.param(one(Tag.DATETIME, hexbytes("07e8 01 01 00 00 00 00 78 00 00")), id="dateTime-direction-x"),
    pytest.param(one(Tag.DATETIME, hexbytes("07e8 01 01 00 00 00 0a 2b 00 00")), id="dateTime-decisecond-10"),
    pytest.param(one(Tag.DATETIME, hexbytes("07e8 01 01 00 00 3c 00 2b 00 00")), id="dateTime-second-60"),
    pytest.param(one(Tag.DATETIME, hexbytes("07e8 01 01 00 00 00 00 2b 00 3c")), id="dateTime-tz-minutes-60"),
    pytest.param(one(Tag.TEXT_WITH_LANGUAGE, hexbytes("0002 656e 0005 6869")), id="with-language-short-text"),
    pytest.param(one(Tag.NAME_WITH_LANGUAGE, hexbytes("0002 656e 0002 6869 00")), id="with-lang-trailing"),
    pytest.param(one(Tag.NAME_WITH_LANGUAGE, hexbytes("0009 656e")), id="with-language-short-language"),
    pytest.param(HEAD + hexbytes("44 8000") + END, id="name-length-sign-bit"),
    pytest.param(HEAD + hexbytes("30 0001 61 ffff") + END, id="value-length-sign-bit"),
]


@pytest.mark.parametrize("wire", BAD)
def test_malformed_input_raises_parse_error(wire: bytes) -> None:
    with pytest.raises(IppParseError):
        decode(wire)


def test_parse_error_is_a_value_error() -> None:
    assert issubclass(IppParseError, ValueError)


def nested(depth: int) -> bytes:
    """A message with collections nested depth deep."""
    inner = INT
    for _ in range(depth - 1):
        inner = record(Tag.BEGIN_COLLECTION, b"", b"") + member(b"m") + inner + COLL_END
    return HEAD + BEG + member(b"m") + inner + COLL_END + END


def attributes(count: int) -> bytes:
    return HEAD + b"".join(record(Tag.INTEGER, b"a%d" % i, bytes(4)) for i in range(count)) + END


LIMITS = [
    # (wire, limits, the largest accepted wire under those limits)
    pytest.param(nested(9), {}, nested(8), id="collection-depth"),
    pytest.param(nested(3), {"max_collection_depth": 2}, nested(2), id="collection-depth-custom"),
    pytest.param(attributes(1001), {}, attributes(1000), id="attributes"),
    pytest.param(nested(3), {"max_attributes": 3}, nested(2), id="members-count-as-attributes"),
    pytest.param(
        HEAD + record(Tag.INTEGER, b"a", bytes(4)) + INT * 4 + END,
        {"max_values": 4},
        HEAD + record(Tag.INTEGER, b"a", bytes(4)) + INT * 3 + END,
        id="values",
    ),
    pytest.param(one(Tag.KEYWORD, b"k" * 8193), {}, one(Tag.KEYWORD, b"k" * 8192), id="value-length"),
    pytest.param(one(Tag.KEYWORD, b"a", b"n" * 8193), {}, one(Tag.KEYWORD, b"a", b"n" * 8192), id="name"),
    pytest.param(
        one(Tag.TEXT, b"t" * 11), {"max_value_length": 10}, one(Tag.TEXT, b"t" * 10), id="value-length-custom"
    ),
    pytest.param(HEAD + b"\x04" * 100 + END, {}, HEAD + b"\x04" * 99 + END, id="groups"),
]


@pytest.mark.parametrize(("wire", "limits", "accepted"), LIMITS)
def test_limits(wire: bytes, limits: dict[str, int], accepted: bytes) -> None:
    decode(accepted, **limits)
    with pytest.raises(IppParseError, match="too many|exceeds|deeper"):
        decode(wire, **limits)


def test_lengths_over_the_wire_maximum_are_rejected_whatever_the_limit() -> None:
    with pytest.raises(IppParseError, match="sign bit"):
        decode(one(Tag.TEXT, b"t" * 32768), max_value_length=10**6)


def test_octet_strings_may_use_the_wire_maximum() -> None:
    for tag in (Tag.OCTET_STRING, 0x4B):
        assert decode(one(tag, b"o" * 32767)).groups[0]["a"].first == b"o" * 32767


EVERYTHING = request(
    operation_group(*[p.values[0] for p in ROUND_TRIP]),
    AttributeGroup(Tag.PRINTER, [Attribute.keyword("a", "b")]),
    AttributeGroup(Tag.JOB),
    data=b"document",
)


@pytest.mark.parametrize("wire", [PRINT_JOB, encode_message(EVERYTHING)], ids=["print-job", "every-syntax"])
def test_every_truncation_raises_parse_error(wire: bytes) -> None:
    _, offset = decode_message(wire, **BIG)
    assert wire[offset - 1] == Tag.END
    for length in range(offset):
        with pytest.raises(IppParseError):
            decode(wire[:length], **BIG)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    for buf in (bytearray(PRINT_JOB), memoryview(PRINT_JOB)):
        assert decode(buf) == decode(PRINT_JOB)


# -- encoding errors ------------------------------------------------------------

ODD_TZ = timezone(timedelta(seconds=9))

UNENCODABLE = [
    pytest.param(Attribute.integer("i", "1"), id="integer-str"),  # type: ignore[arg-type]
    pytest.param(Attribute.integer("i", 2**31), id="integer-overflow"),
    pytest.param(Attribute.integer("i", True), id="integer-bool"),
    pytest.param(Attribute.boolean("b", 1), id="boolean-int"),  # type: ignore[arg-type]
    pytest.param(Attribute.datetime("d", datetime(2024, 1, 1)), id="naive-datetime"),
    pytest.param(Attribute.datetime("d", datetime(2024, 1, 1, tzinfo=ODD_TZ)), id="tz-seconds"),
    pytest.param(Attribute.range("r", (1,)), id="range-arity"),  # type: ignore[arg-type]
    pytest.param(Attribute.resolution("r", (600, 600, 300)), id="resolution-units-overflow"),
    pytest.param(Attribute.text("t", b"bytes"), id="text-bytes"),  # type: ignore[arg-type]
    pytest.param(Attribute("t", [Value(Tag.TEXT_WITH_LANGUAGE, "en")]), id="with-language-str"),
    pytest.param(Attribute.octets("o", "str"), id="octets-str"),  # type: ignore[arg-type]
    pytest.param(Attribute.octets("o", b"x" * 32768), id="too-long"),
    pytest.param(Attribute("o", [Value(Tag.NO_VALUE, b"")]), id="out-of-band-with-value"),
    pytest.param(Attribute("c", [Value(Tag.BEGIN_COLLECTION, {"a": 1})]), id="collection-dict"),
    pytest.param(Attribute.collection("c", [Attribute("m")]), id="member-without-values"),
    pytest.param(Attribute("empty"), id="attribute-without-values"),
    pytest.param(Attribute("", [Value(Tag.INTEGER, 1)]), id="attribute-without-name"),
    pytest.param(Attribute("x", [Value(Tag.END, None)]), id="delimiter-as-value-tag"),
    pytest.param(Attribute("x", [Value(Tag.EXTENSION, b"")]), id="bare-0x7f"),
    pytest.param(Attribute("x", [Value(Tag.END_COLLECTION, None)]), id="endCollection"),
    pytest.param(Attribute("x", [Value(Tag.MEMBER_NAME, "m")]), id="memberAttrName"),
    pytest.param(Attribute("x", [Value(0x80000000, b"")]), id="extended-tag-too-big"),
]


@pytest.mark.parametrize("attribute", UNENCODABLE)
def test_encoder_rejects_unencodable_values(attribute: Attribute) -> None:
    with pytest.raises(ValueError):
        encode_message(request(operation_group(attribute)))


@pytest.mark.parametrize(
    "message",
    [
        IppMessage((256, 0), 0, 1),
        IppMessage((2, 0), 0x10000, 1),
        IppMessage((2, 0), 0, 2**31),
        IppMessage((2, 0), 0, 1, [AttributeGroup(Tag.END)]),
        IppMessage((2, 0), 0, 1, [AttributeGroup(Tag.KEYWORD)]),
    ],
    ids=["version", "code", "request-id", "end-as-group", "value-tag-as-group"],
)
def test_encoder_rejects_bad_headers_and_groups(message: IppMessage) -> None:
    with pytest.raises(ValueError):
        encode_message(message)


# -- second opinion: pyipp decodes what we encode -------------------------------


def test_pyipp_decodes_our_response() -> None:
    from pyipp.parser import parse

    response = IppMessage(
        (2, 0),
        Status.SUCCESSFUL_OK,
        42,
        [
            operation_group(
                Attribute.charset("attributes-charset", "utf-8"),
                Attribute.language("attributes-natural-language", "en"),
                Attribute.text("status-message", "successful-ok"),
            ),
            AttributeGroup(
                Tag.PRINTER,
                [
                    Attribute.uri("printer-uri-supported", "ipp://127.0.0.1:8631/ipp/print"),
                    Attribute.name("printer-name", "branch-1"),
                    Attribute.text("printer-info", "Front desk"),
                    Attribute.enum("printer-state", PrinterState.IDLE),
                    Attribute.keyword("printer-state-reasons", "none", "media-low"),
                    Attribute.boolean("printer-is-accepting-jobs", True),
                    Attribute.integer("queued-job-count", 3),
                    Attribute.integer("copies-default", -1),
                    Attribute.range("copies-supported", (1, 999)),
                    Attribute.resolution("printer-resolution-default", (600, 600, 3)),
                ],
            ),
        ],
    )
    parsed = parse(encode_message(response))
    assert (parsed["version"], parsed["status-code"], parsed["request-id"]) == ((2, 0), 0, 42)
    assert parsed["operation-attributes"] == {
        "attributes-charset": "utf-8",
        "attributes-natural-language": "en",
        "status-message": "successful-ok",
    }
    assert parsed["printers"] == [
        {
            "printer-uri-supported": "ipp://127.0.0.1:8631/ipp/print",
            "printer-name": "branch-1",
            "printer-info": "Front desk",
            "printer-state": 3,
            "printer-state-reasons": ["none", "media-low"],
            "printer-is-accepting-jobs": True,
            "queued-job-count": 3,
            "copies-default": -1,
            "copies-supported": [1, 999],
            "printer-resolution-default": (600, 600, 3),
        }
    ]


# -- properties -------------------------------------------------------------------


def decodes_or_parse_error(wire: bytes) -> None:
    try:
        decode(wire)
    except IppParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_parse_error(wire: bytes) -> None:
    decodes_or_parse_error(wire)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_attribute_bytes_only_raise_parse_error(body: bytes) -> None:
    decodes_or_parse_error(HEAD + body)


VALID = encode_message(EVERYTHING)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_corrupted_messages_only_raise_parse_error(changes: list[tuple[int, int]]) -> None:
    wire = bytearray(VALID)
    for position, octet in changes:
        wire[position] = octet
    decodes_or_parse_error(bytes(wire))


INT32 = st.integers(-(2**31), 2**31 - 1)
TEXT = st.text(max_size=12)
NAMES = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
DATETIMES = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m))),
).map(lambda d: d.replace(microsecond=d.microsecond // 100_000 * 100_000))

SCALARS: dict[int, st.SearchStrategy[object]] = {
    Tag.INTEGER: INT32,
    Tag.ENUM: INT32,
    Tag.BOOLEAN: st.booleans(),
    Tag.OCTET_STRING: st.binary(max_size=12),
    Tag.DATETIME: DATETIMES,
    Tag.RESOLUTION: st.tuples(INT32, INT32, st.integers(-128, 127)),
    Tag.RANGE: st.tuples(INT32, INT32),
    Tag.TEXT_WITH_LANGUAGE: st.tuples(TEXT, TEXT),
    Tag.NAME_WITH_LANGUAGE: st.tuples(TEXT, TEXT),
    **{
        tag: TEXT
        for tag in (
            Tag.TEXT, Tag.NAME, Tag.KEYWORD, Tag.URI, Tag.URI_SCHEME,
            Tag.CHARSET, Tag.NATURAL_LANGUAGE, Tag.MIME_MEDIA_TYPE,
        )
    },
}

SCALAR_VALUES = st.one_of(
    *[strategy.map(lambda v, tag=tag: Value(tag, v)) for tag, strategy in SCALARS.items()],
    st.sampled_from(OUT_OF_BAND_TAGS).map(lambda tag: Value(tag, None)),
    st.builds(Value, st.sampled_from([0x20, 0x4B, 0x7E, 0x80, 0xFF, 0x100, 0x7FFFFFFF]), st.binary()),
)


def attributes_of(values: st.SearchStrategy[Value]) -> st.SearchStrategy[Attribute]:
    return st.builds(Attribute, NAMES, st.lists(values, min_size=1, max_size=3))


VALUES = st.recursive(
    SCALAR_VALUES,
    lambda children: st.lists(attributes_of(children), max_size=3).map(
        lambda members: Value(Tag.BEGIN_COLLECTION, Collection(members))
    ),
    max_leaves=12,
)
GROUPS = st.builds(
    AttributeGroup,
    st.sampled_from([t for t in range(1, 16) if t != Tag.END]),
    st.lists(attributes_of(VALUES), max_size=4),
)
MESSAGES = st.builds(
    IppMessage,
    st.tuples(st.integers(0, 255), st.integers(0, 255)),
    st.integers(0, 0xFFFF),
    INT32,
    st.lists(GROUPS, max_size=4),
    st.binary(max_size=8),
)


@settings(max_examples=200, deadline=None)
@given(MESSAGES)
def test_generated_messages_round_trip(message: IppMessage) -> None:
    wire = encode_message(message)
    assert decode(wire, **BIG) == message
    decoded, offset = decode_message(wire, **BIG)
    assert wire[offset:] == message.data
