"""Tests for drivers.pjl: PJL job-header parsing for accounting."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import drivers.pjl as pjl_module
from drivers.pjl import (
    MAX_STRING_LENGTH,
    PJL_HEADER_LIMIT,
    UEL,
    PjlHeader,
    parse_pjl_header,
    strip_hold_key,
)

CUPS_CAPTURE = (
    b"\x1b%-12345X@PJL\n"
    b'@PJL JOB NAME = "PJL PDF title" DISPLAY = "2 root PJL PDF title"\n'
    b'@PJL SET USERNAME = "root"\n'
    b"@PJL SET RENDERMODE=COLOR\n"
    b"@PJL SET DUPLEX=OFF\n"
    b"@PJL SET PAPER=LETTER\n"
    b"@PJL ENTER LANGUAGE = PDF\n"
)
PDF_BODY = b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"

PXL_BODY = (
    b") HP-PCL XL;2;0;\r\n"
    b"\xd1\x58\x02\x58\x02\xf8\x89\xc0\x00\xf8\x86\x43"
)
PXLMONO_HEADER = (
    b"\x1b%-12345X@PJL SET RENDERMODE=GRAYSCALE\r\n"
    b"@PJL SET RESOLUTION=600\r\n"
    b"@PJL ENTER LANGUAGE = PCLXL\r\n"
)

HP_HEADER = (
    b"\x1b%-12345X@PJL\r\n"
    b'@PJL SET JOBATTR="JobAcct1=alice"\r\n'
    b'@PJL SET JOBATTR="JobAcct2=ALICE-PC"\r\n'
    b'@PJL SET JOBATTR="JobAcct3=CORP"\r\n'
    b'@PJL SET JOBATTR="JobAcct4=20261124101500"\r\n'
    b'@PJL COMMENT "Username: alice; App Filename: doc.pdf; 11/24/2026"\r\n'
    b'@PJL JOB NAME="doc.pdf"\r\n'
    b"@PJL SET QTY=2\r\n"
    b"@PJL SET DUPLEX=ON\r\n"
    b"@PJL SET BINDING=SHORTEDGE\r\n"
    b"@PJL SET HOLD=STORE\r\n"
    b"@PJL SET HOLDTYPE=PRIVATE\r\n"
    b'@PJL SET HOLDKEY="4321"\r\n'
    b"@PJL ENTER LANGUAGE=PCLXL\r\n"
)

RICOH_HEADER = (
    b"\x1b%-12345X@PJL\r\n"
    b'@PJL SET USERID="bob"\r\n'
    b'@PJL SET HOSTLOGINNAME="bob.login"\r\n'
    b'@PJL SET PCHOSTNAME="BOB-PC"\r\n'
    b'@PJL SET JOBNAME="report.xlsx"\r\n'
    b"@PJL SET COPIES=3\r\n"
    b'@PJL SET JOBPASSWORD="0000"\r\n'
    b"@PJL ENTER LANGUAGE=POSTSCRIPT\r\n"
)


def pjl(*lines: str, end: str = "\n", enter: str | None = "PDF") -> bytes:
    """A UEL-prefixed PJL header made of `lines` (without the @PJL)."""
    body = [f"@PJL {line}" for line in lines]
    if enter is not None:
        body.append(f"@PJL ENTER LANGUAGE={enter}")
    return UEL + b"@PJL" + end.encode() + "".join(
        line + end for line in body
    ).encode("utf-8")


# -- real captures ------------------------------------------------------------

CAPTURES: list[tuple[str, bytes, bytes, dict[str, Any]]] = [
    (
        "cups",
        CUPS_CAPTURE,
        PDF_BODY,
        dict(user="root", job_name="PJL PDF title", color=True, duplex=False,
             paper="LETTER", language="PDF", copies=None, host=None,
             hold=None, private=False),
    ),
    (
        "hp-jobattr",
        HP_HEADER,
        PXL_BODY,
        dict(user="alice", host="ALICE-PC", domain="CORP", job_name="doc.pdf",
             copies=2, duplex=True, binding="shortedge", hold="STORE",
             hold_type="PRIVATE", hold_key="4321", language="PCLXL",
             private=True),
    ),
    (
        "ricoh",
        RICOH_HEADER,
        b"%!PS-Adobe-3.0\n",
        dict(user="bob", host="BOB-PC", job_name="report.xlsx", copies=3,
             hold_key="0000", language="POSTSCRIPT", private=True),
    ),
    (
        "ghostscript-pxlmono",
        PXLMONO_HEADER,
        PXL_BODY,
        dict(user=None, job_name=None, color=False, language="PCLXL",
             copies=None, private=False),
    ),
]


@pytest.mark.parametrize(
    "header, body, expected",
    [case[1:] for case in CAPTURES],
    ids=[case[0] for case in CAPTURES],
)
def test_real_captures(header: bytes, body: bytes,
                       expected: dict[str, Any]) -> None:
    head = header + body
    result = parse_pjl_header(head)
    assert isinstance(result, PjlHeader)
    for name, value in expected.items():
        assert getattr(result, name) == value, name
    assert result.pdl_offset == len(header)
    assert head[result.pdl_offset:] == body
    assert result.problems == ()


# -- not PJL ------------------------------------------------------------------

@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
        b"%!PS-Adobe-3.0\n%%Title: x\n",
        b"\x1bE\x1b&l0O",  # bare PCL
        b") HP-PCL XL;2;0\r\n",
        UEL,
        UEL + b"%!PS-Adobe-3.0\n",
        UEL + b"\r\n%PDF-1.4\n",
        b" @PJL SET USERNAME=x\n",
        b"@PJLX\n",
        b"\n@PJL SET USERNAME=x\n",
    ],
)
def test_not_pjl_gives_none(head: bytes) -> None:
    assert parse_pjl_header(head) is None


@pytest.mark.parametrize("head", ["@PJL\n", None, 42, [1, 2]])
def test_non_bytes_input_gives_none(head: Any) -> None:
    assert parse_pjl_header(head) is None


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytes_like_input_accepted(kind: type) -> None:
    result = parse_pjl_header(kind(CUPS_CAPTURE))
    assert result is not None and result.user == "root"


# -- where the page description starts ----------------------------------------

PDL_OFFSETS = [
    ("no-uel", b"@PJL SET USERNAME=a\n@PJL ENTER LANGUAGE=PDF\n", b"%PDF"),
    ("uel-own-line", UEL + b"\n@PJL ENTER LANGUAGE=PDF\r\n", b"%PDF"),
    ("several-uels",
     UEL + UEL + b"@PJL\n" + UEL + b"@PJL ENTER LANGUAGE=PCL\n", b"\x1bE"),
    ("blank-lines", UEL + b"@PJL\r\n\r\n@PJL SET X=1\n  \n"
     b"@PJL ENTER LANGUAGE=PDF\n", b"%PDF"),
    ("no-enter", UEL + b"@PJL\n@PJL SET USERNAME=a\n", b"%!PS-Adobe\n"),
    ("no-enter-crlf",
     UEL + b"@PJL\r\n@PJL SET USERNAME=a\r\n", b"\x1bE\x1b&l"),
    ("uel-before-pdl", UEL + b"@PJL\n@PJL SET USERNAME=a\n" + UEL, b"%!PS\n"),
    ("pjl-after-enter-is-data", UEL + b"@PJL ENTER LANGUAGE=PCL\n",
     b"@PJL SET USERNAME=mallory\n"),
]


@pytest.mark.parametrize(
    "header, body",
    [case[1:] for case in PDL_OFFSETS],
    ids=[case[0] for case in PDL_OFFSETS],
)
def test_pdl_offset(header: bytes, body: bytes) -> None:
    head = header + body
    result = parse_pjl_header(head)
    assert result is not None
    assert result.pdl_offset == len(header)
    assert head[result.pdl_offset:] == body
    assert result.user != "mallory"
    assert "header truncated" not in result.problems


def test_enter_without_language_ends_block() -> None:
    head = UEL + b"@PJL\n@PJL ENTER\n%PDF"
    result = parse_pjl_header(head)
    assert result is not None
    assert result.language is None
    assert head[result.pdl_offset:] == b"%PDF"
    assert "ENTER without LANGUAGE" in result.problems


# -- truncation ---------------------------------------------------------------

@pytest.mark.parametrize(
    "head, user",
    [
        (UEL + b"@PJL", None),
        (UEL + b"@PJL\n@PJL SET USERNAME=alice\n", "alice"),
        (UEL + b"@PJL\n@PJL SET USERNAME=alice\n\n  ", "alice"),
        # A short input's last line is used even without a line end.
        (UEL + b"@PJL\n@PJL SET USERNAME=alice", "alice"),
    ],
)
def test_input_ending_inside_pjl_is_truncated(head: bytes,
                                              user: str | None) -> None:
    result = parse_pjl_header(head)
    assert result is not None
    assert result.user == user
    assert result.pdl_offset == len(head)
    assert "header truncated" in result.problems


def test_cut_last_line_at_limit_is_ignored() -> None:
    padding = b"@PJL COMMENT " + b"x" * 100 + b"\n"
    head = UEL + b"@PJL\n@PJL SET USERNAME=alice\n"
    while len(head) < PJL_HEADER_LIMIT - 100:
        head += padding
    head += b'@PJL SET JOBNAME="' + b"y" * PJL_HEADER_LIMIT
    result = parse_pjl_header(head)
    assert result is not None
    assert result.user == "alice"
    assert result.job_name is None
    assert result.pdl_offset == PJL_HEADER_LIMIT
    assert "header truncated" in result.problems


def test_bytes_beyond_limit_are_not_looked_at() -> None:
    head = UEL + b"@PJL\n" + b"@PJL\n" * (PJL_HEADER_LIMIT // 5)
    head += b"@PJL SET USERNAME=late\n@PJL ENTER LANGUAGE=PDF\n"
    result = parse_pjl_header(head)
    assert result is not None
    assert result.user is None
    assert result.pdl_offset <= PJL_HEADER_LIMIT


# -- user priority ------------------------------------------------------------

USER_SOURCES = [
    'SET USERNAME="u-username"',
    'SET JOBATTR="JobAcct1=u-jobacct1"',
    'SET USERID="u-userid"',
    'SET HOSTLOGINNAME="u-hostlogin"',
    'COMMENT "Username: u-comment; App Filename: a.doc"',
]
USER_NAMES = ["u-username", "u-jobacct1", "u-userid", "u-hostlogin",
              "u-comment"]


@pytest.mark.parametrize("first", range(len(USER_SOURCES)))
@pytest.mark.parametrize("reverse", [False, True], ids=["ordered", "reversed"])
def test_user_priority(first: int, reverse: bool) -> None:
    lines = USER_SOURCES[first:]
    if reverse:
        lines = lines[::-1]
    result = parse_pjl_header(pjl(*lines))
    assert result is not None
    assert result.user == USER_NAMES[first]


@pytest.mark.parametrize(
    "lines, user",
    [
        (['SET USERNAME=""', 'SET USERID="bob"'], "bob"),
        (['SET USERNAME="  "', 'SET USERID="bob"'], "bob"),
        (['SET USERNAME="\x01\x02"', 'SET USERID="bob"'], "bob"),
        (['SET USERNAME="a"', 'SET USERNAME="b"'], "b"),  # later SET wins
        (['SET JOBATTR="JobAcct1="', 'SET USERID="bob"'], "bob"),
        (['SET JOBATTR="jobacct1 = carol"'], "carol"),
        (["COMMENT Username: dave"], "dave"),
        (['COMMENT "App Filename: x; USERNAME:  erin ;"'], "erin"),
        (['COMMENT "no user here"'], None),
        (['COMMENT "Username:"'], None),
    ],
)
def test_user_sources(lines: list[str], user: str | None) -> None:
    result = parse_pjl_header(pjl(*lines))
    assert result is not None
    assert result.user == user


# -- other fields -------------------------------------------------------------

FIELDS: list[tuple[list[str], str, Any]] = [
    (['JOB NAME="a" DISPLAY="b"', 'SET JOBNAME="c"'], "job_name", "a"),
    (['SET JOBNAME="c"', 'EOJ NAME="d"'], "job_name", "c"),
    (['EOJ NAME="d"'], "job_name", "d"),
    (['JOB NAME="first"', 'JOB NAME="second"'], "job_name", "first"),
    (['SET PCHOSTNAME="pc"', 'SET JOBATTR="JobAcct2=acct"'], "host", "acct"),
    (['SET PCHOSTNAME="pc"'], "host", "pc"),
    (['SET JOBATTR="JobAcct3=DOM"'], "domain", "DOM"),
    (['SET JOBATTR="JobAcct9=x"'], "domain", None),
    (["SET DUPLEX=ON"], "duplex", True),
    (["SET DUPLEX=off"], "duplex", False),
    (["SET BINDING=LONGEDGE"], "binding", "longedge"),
    (["SET BINDING=shortedge"], "binding", "shortedge"),
    (["SET RENDERMODE=GRAYSCALE"], "color", False),
    (["SET RENDERMODE=COLOR"], "color", True),
    (["SET PLANESINUSE=1"], "color", False),
    (["SET RENDERMODE=COLOR", "SET PLANESINUSE=1"], "color", False),
    (["SET PLANESINUSE=3"], "color", None),
    (["SET PAPER=a4"], "paper", "A4"),
    (['SET PAPER="Letter"'], "paper", "LETTER"),
    (["SET HOLD=proof"], "hold", "PROOF"),
    (["SET HOLDTYPE=public"], "hold_type", "PUBLIC"),
    (['SET JOBPASSWORD="9"', 'SET HOLDKEY="1"'], "hold_key", "1"),
    (["SET STRINGCODESET=UTF8"], "user", None),
]


@pytest.mark.parametrize("lines, name, value", FIELDS)
def test_fields(lines: list[str], name: str, value: Any) -> None:
    result = parse_pjl_header(pjl(*lines))
    assert result is not None
    assert getattr(result, name) == value
    assert result.problems == ()


@pytest.mark.parametrize(
    "enter, language",
    [("PDF", "PDF"), ("postscript", "POSTSCRIPT"), ("PCL", "PCL"),
     ("PCLXL", "PCLXL"), ('"pdf"', "PDF")],
)
def test_language(enter: str, language: str) -> None:
    result = parse_pjl_header(pjl(enter=enter))
    assert result is not None
    assert result.language == language


# -- copies -------------------------------------------------------------------

@pytest.mark.parametrize(
    "lines, copies, problem",
    [
        (["SET COPIES=1"], 1, None),
        (["SET COPIES=9999"], 9999, None),
        (["SET QTY=7"], 7, None),
        (["SET QTY = 0012"], 12, None),
        (["SET COPIES=0"], None, "COPIES=0 outside 1..9999; ignored"),
        (["SET COPIES=10000"], None, "COPIES=10000 outside 1..9999; ignored"),
        (["SET QTY=-1"], None, "QTY='-1' is not a number; ignored"),
        (["SET COPIES=two"], None, "COPIES='two' is not a number; ignored"),
        (["SET COPIES=" + "9" * 5000], None, "is not a number"),
        (["SET COPIES=\u0663"], None, "is not a number"),  # Arabic-Indic 3
        (["SET COPIES=3", "SET COPIES=0"], 3, "outside"),
        (["SET QTY=2", "SET COPIES=3"], 6, None),
    ],
)
def test_copies(lines: list[str], copies: int | None,
                problem: str | None) -> None:
    result = parse_pjl_header(pjl(*lines))
    assert result is not None
    assert result.copies == copies
    if problem is None:
        assert result.problems == ()
    else:
        assert any(problem in note for note in result.problems)


# -- syntax variations --------------------------------------------------------

SYNTAX = [
    ("lf", b'@PJL SET USERNAME="alice"\n@PJL ENTER LANGUAGE=PDF\n'),
    ("crlf", b'@PJL SET USERNAME="alice"\r\n@PJL ENTER LANGUAGE=PDF\r\n'),
    ("mixed", b'@PJL SET USERNAME="alice"\r\n@PJL ENTER LANGUAGE=PDF\n'),
    ("lower-case", b'@pjl set username="alice"\n@pjl enter language=pdf\n'),
    ("spaces", b'@PJL  SET   USERNAME  =  "alice"  \n'
     b"@PJL ENTER LANGUAGE  =  PDF\n"),
    ("tabs", b'@PJL\tSET\tUSERNAME\t=\t"alice"\n@PJL ENTER LANGUAGE=PDF\n'),
    ("bare", b"@PJL SET USERNAME=alice\n@PJL ENTER LANGUAGE=PDF\n"),
    ("several-pairs", b'@PJL SET DUPLEX=ON USERNAME="alice" PAPER=A4\n'
     b"@PJL ENTER LANGUAGE=PDF\n"),
]


@pytest.mark.parametrize("body", [c[1] for c in SYNTAX],
                         ids=[c[0] for c in SYNTAX])
@pytest.mark.parametrize("uel", [b"", UEL], ids=["no-uel", "uel"])
def test_syntax_variations(uel: bytes, body: bytes) -> None:
    head = uel + body + b"%PDF-1.4"
    result = parse_pjl_header(head)
    assert result is not None
    assert result.user == "alice"
    assert result.language == "PDF"
    assert head[result.pdl_offset:] == b"%PDF-1.4"
    assert result.problems == ()


def test_several_pairs_on_job_line() -> None:
    result = parse_pjl_header(pjl('JOB NAME = "x y" DISPLAY = "1 bob x y"'))
    assert result is not None
    assert result.job_name == "x y"


def test_personality_settings_ignored() -> None:
    result = parse_pjl_header(pjl("SET LPARM:PCL PAPER=A3",
                                  "SET LPARM : POSTSCRIPT COPIES=4",
                                  "DEFAULT COPIES=5"))
    assert result is not None
    assert result.paper is None
    assert result.copies is None


@pytest.mark.parametrize(
    "line, problem",
    [
        ('SET USERNAME="alice', "unterminated quoted value"),
        ("SET USERNAME=", "no value after '='"),
        ("SET = x", "'=' without a name"),
        ('SET "alice"', "stray quoted text ignored"),
        ("SET DUPLEX=MAYBE", "unknown DUPLEX value 'MAYBE'; ignored"),
        ("SET BINDING=TOP", "unknown BINDING value 'TOP'; ignored"),
        ("SET RENDERMODE=SEPIA", "unknown RENDERMODE value 'SEPIA'; ignored"),
        ("SET HOLD=MAYBE", "unknown HOLD value 'MAYBE'; ignored"),
        ("SET HOLDTYPE=SECRET", "unknown HOLDTYPE value 'SECRET'; ignored"),
    ],
)
def test_malformed_values_are_problems(line: str, problem: str) -> None:
    result = parse_pjl_header(pjl(line))
    assert result is not None
    assert problem in result.problems
    assert result.language == "PDF"


def test_unterminated_quote_keeps_value() -> None:
    result = parse_pjl_header(pjl('SET USERNAME="alice'))
    assert result is not None
    assert result.user == "alice"


def test_problem_list_is_bounded() -> None:
    result = parse_pjl_header(pjl(*["SET DUPLEX=X"] * 500))
    assert result is not None
    assert len(result.problems) == 33
    assert result.problems[-1] == "468 more problems not listed"


def test_truncation_is_noted_even_with_many_problems() -> None:
    result = parse_pjl_header(pjl(*["SET DUPLEX=X"] * 500, enter=None))
    assert result is not None
    assert result.problems[-2:] == ("468 more problems not listed",
                                    "header truncated")


# -- strings: encoding, control characters, length ----------------------------

@pytest.mark.parametrize(
    "head, user",
    [
        (UEL + b"@PJL SET STRINGCODESET=UTF8\n"
         b'@PJL SET USERNAME="J\xc3\xb6rg"\n@PJL ENTER LANGUAGE=PDF\n',
         "Jörg"),
        # Code set given after the value still applies.
        (UEL + b'@PJL SET USERNAME="J\xc3\xb6rg"\n'
         b"@PJL SET STRINGCODESET=UTF8\n@PJL ENTER LANGUAGE=PDF\n", "Jörg"),
        (UEL + b"@PJL SET STRINGCODESET=UTF8\n"
         b'@PJL SET USERNAME="\xe6\x9d\x8e"\n@PJL ENTER LANGUAGE=PDF\n',
         "李"),
        # Invalid UTF-8 despite UTF8: replacement character, no exception.
        (UEL + b'@PJL SET STRINGCODESET=UTF8\n@PJL SET USERNAME="J\xf6rg"\n'
         b"@PJL ENTER LANGUAGE=PDF\n", "J\ufffdrg"),
        # No code set: UTF-8 when it decodes, else latin-1.
        (UEL + b'@PJL SET USERNAME="J\xc3\xb6rg"\n@PJL ENTER LANGUAGE=PDF\n',
         "Jörg"),
        (UEL + b'@PJL SET USERNAME="J\xf6rg"\n@PJL ENTER LANGUAGE=PDF\n',
         "Jörg"),
        # Another code set named: latin-1.
        (UEL + b'@PJL SET STRINGCODESET=ISOLATIN1\n'
         b'@PJL SET USERNAME="J\xc3\xb6rg"\n@PJL ENTER LANGUAGE=PDF\n',
         "J\xc3\xb6rg"),
    ],
)
def test_string_encoding(head: bytes, user: str) -> None:
    result = parse_pjl_header(head)
    assert result is not None
    assert result.user == user


PERSIAN_WITH_ZWNJ = "\u0645\u06cc\u200c\u0631\u0648\u06cc"


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("al\x00ice", "alice"),
        ("al\x1b[31mice", "al[31mice"),
        ("alice\x7f\x85", "alice"),
        ("ali\tce", "alice"),
        ("  alice  ", "alice"),
        ("\u202eecila", "ecila"),  # right-to-left override
        ("a\u2028b", "ab"),  # line separator
        (PERSIAN_WITH_ZWNJ, PERSIAN_WITH_ZWNJ),  # zero-width non-joiner kept
    ],
)
def test_control_characters_stripped(raw: str, cleaned: str) -> None:
    result = parse_pjl_header(pjl("SET STRINGCODESET=UTF8",
                                  f'SET USERNAME="{raw}"',
                                  f'JOB NAME="{raw}"'))
    assert result is not None
    assert result.user == cleaned
    assert result.job_name == cleaned


def test_carriage_return_inside_value_stripped() -> None:
    head = UEL + b'@PJL SET USERNAME="al\rice"\r\n@PJL ENTER LANGUAGE=PDF\r\n'
    result = parse_pjl_header(head)
    assert result is not None
    assert result.user == "alice"


@pytest.mark.parametrize("name", ["user", "job_name", "host", "domain",
                                  "paper", "hold_key", "language"])
def test_strings_capped(name: str) -> None:
    long = "x" * 5000
    head = pjl(f'SET USERNAME="{long}"', f'JOB NAME="{long}"',
               f'SET PCHOSTNAME="{long}"', f'SET JOBATTR="JobAcct3={long}"',
               f"SET PAPER={long}", f'SET HOLDKEY="{long}"', enter=long)
    result = parse_pjl_header(head)
    assert result is not None
    value = getattr(result, name)
    assert value is not None
    assert len(value) == MAX_STRING_LENGTH


def test_problem_notes_are_short_and_clean() -> None:
    result = parse_pjl_header(pjl("SET DUPLEX=" + "\x07" + "Y" * 1000))
    assert result is not None
    (note,) = result.problems
    assert len(note) < 100
    assert "\x07" not in note


# -- secrets and the private rule ---------------------------------------------

@pytest.mark.parametrize(
    "line", ['SET HOLDKEY="s3cr3t-pin"', 'SET JOBPASSWORD="s3cr3t-pin"',
             "SET HOLDKEY=s3cr3t-pin", 'SET HOLDKEY = "s3cr3t-pin'],
)
def test_hold_key_never_shown(line: str) -> None:
    result = parse_pjl_header(pjl("SET HOLD=ON", "SET HOLDTYPE=PRIVATE", line,
                                  "SET DUPLEX=bogus"))
    assert result is not None
    assert result.hold_key == "s3cr3t-pin"
    assert "s3cr3t" not in repr(result)
    assert "s3cr3t" not in str(result)
    assert "s3cr3t" not in f"{result}"
    assert not any("s3cr3t" in note for note in result.problems)


@pytest.mark.parametrize(
    "line", ['SET HOLDKEY "s3cr3t-pin"', "SET HOLDKEY s3cr3t-pin =",
             'SET HOLDKEY="s3cr3t-pin" = =', 'SET = "s3cr3t-pin"'],
)
def test_malformed_hold_key_never_shown(line: str) -> None:
    result = parse_pjl_header(pjl(line))
    assert result is not None
    assert result.problems
    assert "s3cr3t" not in repr(result)
    assert "s3cr3t" not in str(result)
    assert "s3cr3t" not in f"{result}"
    assert not any("s3cr3t" in note for note in result.problems)


@pytest.mark.parametrize(
    "lines, private",
    [
        ([], False),
        (["SET HOLD=ON"], False),
        (["SET HOLD=ON", "SET HOLDTYPE=PUBLIC"], False),
        (["SET HOLD=ON", "SET HOLDTYPE=PRIVATE"], True),
        (["SET HOLD=STORE", "SET HOLDTYPE=PRIVATE"], True),
        (["SET HOLD=PROOF", "SET HOLDTYPE=PRIVATE"], True),
        (["SET HOLD=OFF", "SET HOLDTYPE=PRIVATE"], False),
        (["SET HOLDTYPE=PRIVATE"], False),
        (['SET HOLDKEY="1234"'], True),
        (['SET JOBPASSWORD="1234"'], True),
        (["SET HOLD=ON", 'SET HOLDKEY="1234"'], True),
        (["SET HOLD=OFF", 'SET HOLDKEY="1234"'], False),
        (['SET HOLDKEY=""'], False),
    ],
)
def test_private(lines: list[str], private: bool) -> None:
    result = parse_pjl_header(pjl(*lines))
    assert result is not None
    assert result.private is private


def test_header_is_frozen() -> None:
    result = parse_pjl_header(CUPS_CAPTURE)
    assert result is not None
    with pytest.raises(AttributeError):
        result.user = "mallory"  # type: ignore[misc]


# -- never raises -------------------------------------------------------------

PJL_WORDS = [b"@PJL", b"@PJL ", b"SET ", b"JOB ", b"EOJ ", b"ENTER ",
             b"COMMENT ", b"LANGUAGE", b"USERNAME", b"JOBATTR", b"COPIES",
             b"QTY", b"HOLDKEY", b"STRINGCODESET", b"UTF8", b"JobAcct1=",
             b"Username:", b"=", b'"', b";", b":", b" ", b"\r", b"\n", b"\r\n",
             UEL, b"\x00", b"\xff", b"\xc3", b"9999", b"0", b"PDF"]
pjlish = st.lists(
    st.one_of(st.sampled_from(PJL_WORDS), st.binary(max_size=8)),
    max_size=40,
).map(b"".join)


def check_total(head: bytes) -> None:
    result = parse_pjl_header(head)
    if result is not None:
        assert isinstance(result, PjlHeader)
        assert 0 <= result.pdl_offset <= len(head)
        repr(result)
        result.private
        for value in (result.user, result.job_name, result.host,
                      result.domain, result.paper, result.hold_key,
                      result.language):
            assert value is None or 0 < len(value) <= MAX_STRING_LENGTH


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(head: bytes) -> None:
    check_total(head)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_pjl_never_raise(tail: bytes) -> None:
    head = UEL + b"@PJL " + tail
    check_total(head)
    assert parse_pjl_header(head) is not None


@settings(max_examples=200, deadline=None)
@given(pjlish)
def test_pjl_like_bytes_never_raise(tail: bytes) -> None:
    check_total(UEL + b"@PJL\n" + tail)
    check_total(tail)


@pytest.mark.parametrize(
    "head, expected",
    [
        (CUPS_CAPTURE, PjlHeader(problems=("internal error while parsing",))),
        (b"%PDF-1.4", None),
    ],
)
def test_internal_error_is_contained(monkeypatch: pytest.MonkeyPatch,
                                     head: bytes,
                                     expected: PjlHeader | None) -> None:
    def broken(data: bytes, at_limit: bool) -> PjlHeader | None:
        raise RuntimeError("bug")

    monkeypatch.setattr(pjl_module, "_parse", broken)
    assert parse_pjl_header(head) == expected


# -- taking the release key out (issue 14, finding 4) --------------------------


@pytest.mark.parametrize(
    "lines, kept",
    [
        # The job: key and hold go, the rest stays byte for byte.
        (['SET HOLD=ON HOLDTYPE=PRIVATE HOLDKEY="7777"', 'SET USERNAME="alice"'], ['SET USERNAME="alice"']),
        (["SET HOLD=ON", "SET HOLDTYPE=PRIVATE", 'SET HOLDKEY="7777"', "SET COPIES=2"], ["SET COPIES=2"]),
        (['SET JOBPASSWORD="7777"', "SET DUPLEX=ON"], ["SET DUPLEX=ON"]),
        (['SET COPIES=2 HOLDKEY = "7777" DUPLEX=ON'], ["SET COPIES=2 DUPLEX=ON"]),
        (['DEFAULT HOLDKEY="7777"', 'SET HOLDKEY="7777"'], []),
        # Malformed key lines are dropped whole (the parser does not take them as keys, but they
        # still carry the secret).
        (['SET HOLDKEY "7777"', 'SET HOLDKEY 7777 =', "SET COPIES=3"], ["SET COPIES=3"]),
        # HOLD=OFF with a key: not private, the hold stays, the key goes.
        (["SET HOLD=OFF", 'SET HOLDKEY="7777"'], ["SET HOLD=OFF"]),
        # A public hold is the device's business: untouched.
        (["SET HOLD=ON", "SET HOLDTYPE=PUBLIC"], ["SET HOLD=ON", "SET HOLDTYPE=PUBLIC"]),
    ],
)
def test_strip_hold_key(lines: list[str], kept: list[str]) -> None:
    head = pjl(*lines) + PDF_BODY
    stripped, header = strip_hold_key(head)
    assert b"7777" not in stripped
    assert stripped == pjl(*kept) + PDF_BODY
    assert header == parse_pjl_header(head)  # the facts as received (the key included)
    after = parse_pjl_header(stripped)
    assert after is not None and after.hold_key is None and not after.private
    assert after.language == "PDF" and stripped[after.pdl_offset:] == PDF_BODY


@pytest.mark.parametrize("head", [CUPS_CAPTURE + PDF_BODY, PDF_BODY + b'@PJL SET HOLDKEY="7777"\n', b"",
                                  pjl("COMMENT HOLDKEY") + PDF_BODY])
def test_strip_hold_key_leaves_other_jobs_alone(head: bytes) -> None:
    assert strip_hold_key(head)[0] == head


def test_strip_hold_key_keeps_crlf_and_uels() -> None:
    head = UEL + b'@PJL SET HOLDKEY="7777"\r\n' + UEL + b'@PJL SET USERNAME="bob"\r\n@PJL ENTER LANGUAGE=PCL\r\nE'
    stripped, header = strip_hold_key(head)
    assert header is not None and header.hold_key == "7777" and header.user == "bob"
    assert stripped == UEL + b"\r\n" + UEL + b'@PJL SET USERNAME="bob"\r\n@PJL ENTER LANGUAGE=PCL\r\nE'
    assert parse_pjl_header(stripped).user == "bob"  # type: ignore[union-attr]


@settings(max_examples=200, deadline=None)
@given(pjlish)
def test_strip_hold_key_never_raises_and_never_keeps_a_parsed_key(tail: bytes) -> None:
    head = UEL + b"@PJL\n" + tail
    stripped, header = strip_hold_key(head)
    after = parse_pjl_header(stripped)
    if header is not None and header.hold_key is not None:
        assert after is None or after.hold_key is None
