"""PJL job headers: owns extracting accounting facts from a raw job's head.

A raw print job (port 9100, or the data file of an LPD job) usually starts with
an HP Printer Job Language block::

    <ESC>%-12345X@PJL
    @PJL JOB NAME = "PJL PDF title" DISPLAY = "2 root PJL PDF title"
    @PJL SET USERNAME = "root"
    @PJL SET RENDERMODE=COLOR
    @PJL ENTER LANGUAGE = PDF
    %PDF-1.5 ...

:func:`parse_pjl_header` turns the first bytes of such a job into a frozen
:class:`PjlHeader`.  It is pure (bytes in, value out, no I/O) and never raises:
every value in a job is client-supplied and untrusted, so anything odd is
skipped and described in :attr:`PjlHeader.problems` instead.

:func:`strip_hold_key` rewrites the head of a private-print job so that its
release key (``HOLDKEY``, ``JOBPASSWORD``) is gone before the bytes are
stored or sent anywhere, and so is the hold itself (the spooler holds the
job; the device must not hold it a second time).

Rules worth knowing:

* The header may start with one or more UELs (``ESC%-12345X``, optionally
  followed by line ends) or directly with ``@PJL``; otherwise the input is
  not PJL and the result is ``None``.
* Lines end with LF or CRLF; keywords are case-insensitive; ``=`` may have
  blanks around it; values are quoted or bare; a line may hold several
  ``KEY=VALUE`` pairs.  Blank lines and further UELs inside the block are
  skipped.
* The block ends just after the ``ENTER LANGUAGE`` line, or at the first line
  that does not start with ``@PJL`` (after any UELs in front of it); that
  position is :attr:`PjlHeader.pdl_offset`.
* Within one source a later ``SET`` overrides an earlier one, as it does on a
  printer (but the first ``JOB``/``EOJ`` command names the job); between
  sources the priority order documented on each field applies.
* Strings are UTF-8 when the job says ``SET STRINGCODESET=UTF8``, latin-1 when
  it names another code set, and otherwise UTF-8 when they decode as such,
  else latin-1.  Control and invisible formatting characters are removed,
  surrounding blanks stripped and the result capped at
  :data:`MAX_STRING_LENGTH` characters; an empty result counts as absent.
* Only the first :data:`PJL_HEADER_LIMIT` bytes are looked at.  If the input
  ends while still inside the PJL block, what was found is returned together
  with the problem ``"header truncated"``; a last line without a line end is
  still used unless the input reached the limit (then it was probably cut).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

__all__ = [
    "MAX_STRING_LENGTH",
    "PJL_HEADER_LIMIT",
    "UEL",
    "PjlHeader",
    "parse_pjl_header",
    "strip_hold_key",
]

PJL_HEADER_LIMIT: int = 64 * 1024
"""Bytes of a job's head the caller should pass (more is ignored)."""

MAX_STRING_LENGTH: int = 255
"""Cap, in characters, for every string extracted from a job."""

MAX_PROBLEMS: int = 32
"""At most this many problems are kept (plus a note that more were dropped)."""

UEL: bytes = b"\x1b%-12345X"
"""Universal Exit Language: ESC % - 1 2 3 4 5 X."""

_COPIES_MIN = 1
_COPIES_MAX = 9999
_HOLD_VALUES = frozenset({"ON", "STORE", "PROOF", "OFF"})
_HOLDING_VALUES = frozenset({"ON", "STORE", "PROOF"})
_HOLD_TYPE_VALUES = frozenset({"PRIVATE", "PUBLIC"})
_BINDING_VALUES = frozenset({"LONGEDGE", "SHORTEDGE"})
_UTF8_CODESETS = frozenset({"UTF8", "UTF-8"})
# Zero-width (non-)joiners are formatting characters that real names need.
_KEPT_FORMAT_CHARS = frozenset({"\u200c", "\u200d"})
_REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_PROBLEM_VALUE_LENGTH = 32

# A token of a PJL command line: a quoted string (possibly unterminated),
# an equals sign, or a bare word.
_TOKEN_RE = re.compile(rb'"([^"]*)("?)|(=)|([^\s="]+)')
_COMMAND_RE = re.compile(rb'[ \t]*([^\s="]*)')
_DIGITS_RE = re.compile(r"[0-9]{1,9}")

# Which raw value feeds which field, in priority order (first present wins);
# COMMENT "Username: ..." comes after all the user sources.
_USER_SOURCES = ("USERNAME", "JOBACCT1", "USERID", "HOSTLOGINNAME")
_JOB_NAME_SOURCES = ("JOB NAME", "JOBNAME", "EOJ NAME")
_HOST_SOURCES = ("JOBACCT2", "PCHOSTNAME")
_HOLD_KEY_SOURCES = ("HOLDKEY", "JOBPASSWORD")
# SET variables kept as raw bytes, decoded once the code set is known.
_RAW_STRING_VARIABLES = frozenset(
    {"USERNAME", "USERID", "HOSTLOGINNAME", "PCHOSTNAME", "JOBNAME",
     "PAPER", "HOLDKEY", "JOBPASSWORD"}
)
_JOBATTR_KEYS = {b"JOBACCT1": "JOBACCT1", b"JOBACCT2": "JOBACCT2",
                 b"JOBACCT3": "JOBACCT3"}
# What strip_hold_key takes out of SET/DEFAULT lines: always the keys, and
# the hold itself from a private job.
_KEY_VARIABLES = frozenset(_HOLD_KEY_SOURCES)
_HOLD_VARIABLES = frozenset({"HOLD", "HOLDTYPE"})


@dataclass(frozen=True)
class PjlHeader:
    """Accounting facts found in the PJL header of one job.

    Every field is ``None`` (or its default) when the job did not say, or
    said something unusable; see :attr:`problems` for the latter.
    """

    user: str | None = None
    """From SET USERNAME, else JOBATTR JobAcct1, SET USERID, SET
    HOSTLOGINNAME, and last ``COMMENT "Username: X; ..."``."""
    job_name: str | None = None
    """From the first JOB NAME, else SET JOBNAME, else EOJ NAME."""
    host: str | None = None
    """From JOBATTR JobAcct2, else SET PCHOSTNAME."""
    domain: str | None = None
    """From JOBATTR JobAcct3."""
    copies: int | None = None
    """SET QTY times SET COPIES (each must be 1..9999, so the product may
    exceed 9999), or either alone when only one is given."""
    duplex: bool | None = None
    """SET DUPLEX=ON/OFF."""
    binding: str | None = None
    """SET BINDING, ``"longedge"`` or ``"shortedge"``."""
    color: bool | None = None
    """False for SET RENDERMODE=GRAYSCALE or SET PLANESINUSE=1 (monochrome
    wins), True for SET RENDERMODE=COLOR."""
    paper: str | None = None
    """SET PAPER as given, upper-cased."""
    hold: str | None = None
    """SET HOLD: ``"ON"``, ``"STORE"``, ``"PROOF"`` or ``"OFF"``."""
    hold_type: str | None = None
    """SET HOLDTYPE: ``"PRIVATE"`` or ``"PUBLIC"``."""
    hold_key: str | None = field(default=None, repr=False)
    """SET HOLDKEY, else Ricoh SET JOBPASSWORD.  A secret: kept out of
    ``repr()``/``str()``; :attr:`problems` quote values only of enumerated
    and numeric variables, never of free text."""
    language: str | None = None
    """ENTER LANGUAGE, upper-cased (``"PDF"``, ``"POSTSCRIPT"``, ...)."""
    pdl_offset: int = 0
    """Offset in the input where the page-description data starts."""
    problems: tuple[str, ...] = ()
    """Short notes on what was ignored or malformed."""

    @property
    def private(self) -> bool:
        """Whether the job asks to be held for private release.

        True when the job is not explicitly ``HOLD=OFF`` and either carries
        a release key (``HOLDKEY`` / ``JOBPASSWORD``), or asks to be held
        (``HOLD=ON``, ``STORE`` or ``PROOF``) with ``HOLDTYPE=PRIVATE``.
        A public hold (``HOLD=ON`` without ``HOLDTYPE=PRIVATE``) is not
        private.
        """
        if self.hold == "OFF":
            return False
        if self.hold_key is not None:
            return True
        return self.hold in _HOLDING_VALUES and self.hold_type == "PRIVATE"


class _Problems:
    """Collects problem notes, bounded in number."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.dropped = 0

    def add(self, note: str) -> None:
        if len(self.notes) < MAX_PROBLEMS:
            self.notes.append(note)
        else:
            self.dropped += 1

    def as_tuple(self, *always: str) -> tuple[str, ...]:
        """Kept notes, a count of dropped ones, then `always` (uncapped)."""
        if self.dropped:
            more = f"{self.dropped} more problems not listed"
            return (*self.notes, more, *always)
        return (*self.notes, *always)


@dataclass
class _Token:
    kind: str  # "word", "string" or "eq"
    value: bytes = b""


def _shown(raw: bytes) -> str:
    """A short, safe rendering of an untrusted value for a problem note."""
    text = _clean(raw.decode("latin-1"))
    if len(text) > _PROBLEM_VALUE_LENGTH:
        text = text[:_PROBLEM_VALUE_LENGTH] + "..."
    return repr(text)


def _clean(text: str) -> str:
    """Remove control/invisible characters, strip blanks, cap the length."""
    kept = "".join(
        ch for ch in text
        if ch in _KEPT_FORMAT_CHARS
        or unicodedata.category(ch) not in _REMOVED_CATEGORIES
    )
    return kept.strip()[:MAX_STRING_LENGTH].strip()


def _decode(raw: bytes, codeset: str | None) -> str:
    if codeset is None:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    if codeset in _UTF8_CODESETS:
        return raw.decode("utf-8", errors="replace")
    return raw.decode("latin-1")


def _keyword(raw: bytes) -> str:
    """A keyword or enumerated value, upper-cased (ASCII case only)."""
    return raw.decode("latin-1").upper()


def _tokenize(body: bytes, problems: _Problems) -> list[_Token]:
    tokens: list[_Token] = []
    for match in _TOKEN_RE.finditer(body):
        string, closing, equals, word = match.groups()
        if string is not None:
            if not closing:
                problems.add("unterminated quoted value")
            tokens.append(_Token("string", string))
        elif equals is not None:
            tokens.append(_Token("eq"))
        else:
            tokens.append(_Token("word", word))
    return tokens


def _pairs(tokens: list[_Token],
           problems: _Problems) -> list[tuple[str, bytes | None]]:
    """``KEY = VALUE`` pairs (and bare words, with value None) of a line."""
    result: list[tuple[str, bytes | None]] = []
    i = 0
    count = len(tokens)
    while i < count:
        token = tokens[i]
        if token.kind == "word":
            if i + 1 < count and tokens[i + 1].kind == "eq":
                if i + 2 < count and tokens[i + 2].kind != "eq":
                    result.append((_keyword(token.value), tokens[i + 2].value))
                    i += 3
                else:
                    # The name is not quoted back: it might be a misplaced
                    # secret (SET HOLDKEY 1234 =).
                    problems.add("no value after '='")
                    i += 2
            else:
                result.append((_keyword(token.value), None))
                i += 1
        elif token.kind == "eq":
            problems.add("'=' without a name")
            i += 1
            if i < count and tokens[i].kind != "eq":
                i += 1
        else:
            problems.add("stray quoted text ignored")
            i += 1
    return result


class _Collector:
    """Raw facts gathered line by line, turned into a PjlHeader at the end."""

    def __init__(self) -> None:
        self.problems = _Problems()
        self.raw: dict[str, bytes] = {}
        self.comment_users: list[bytes] = []
        self.copies: int | None = None
        self.qty: int | None = None
        self.duplex: bool | None = None
        self.binding: str | None = None
        self.rendermode: bool | None = None
        self.mono_planes = False
        self.hold: str | None = None
        self.hold_type: str | None = None
        self.codeset: str | None = None
        self.language: bytes | None = None

    # -- commands ---------------------------------------------------------

    def command(self, body: bytes) -> bool:
        """Handle the text after ``@PJL``; True for ENTER (it ends PJL)."""
        match = _COMMAND_RE.match(body)
        command = _keyword(match.group(1)) if match else ""
        rest = body[match.end():] if match else body
        if command == "COMMENT":
            self.comment(rest)
            return False
        if command not in {"SET", "JOB", "EOJ", "ENTER"}:
            return False  # DEFAULT, INFO, USTATUS, ... carry no job facts
        pairs = _pairs(_tokenize(rest, self.problems), self.problems)
        if command == "ENTER":
            self.enter(pairs)
            return True
        if command == "SET":
            self.set(pairs)
        else:
            for key, value in pairs:
                if key == "NAME" and value is not None:
                    self.raw.setdefault(f"{command} NAME", value)
        return False

    def enter(self, pairs: list[tuple[str, bytes | None]]) -> None:
        for key, value in pairs:
            if key == "LANGUAGE" and value is not None:
                self.language = value
                return
        self.problems.add("ENTER without LANGUAGE")

    def comment(self, rest: bytes) -> None:
        text = rest.strip()
        if text.startswith(b'"'):
            text = text[1:]
            if text.endswith(b'"'):
                text = text[:-1]
        for part in text.split(b";"):
            name, colon, value = part.partition(b":")
            if colon and name.strip().upper() == b"USERNAME":
                self.comment_users.append(value)

    def set(self, pairs: list[tuple[str, bytes | None]]) -> None:
        if pairs and pairs[0][0].startswith(("LPARM", "IPARM")):
            return  # personality-specific settings (SYMSET, PRTPSERRS, ...)
        for key, value in pairs:
            if value is None:
                continue
            if key in _RAW_STRING_VARIABLES:
                self.raw[key] = value
            elif key == "JOBATTR":
                self.jobattr(value)
            elif key in {"COPIES", "QTY"}:
                number = self.number(key, value)
                if number is not None:
                    setattr(self, key.lower(), number)
            else:
                self.setting(key, value)

    def jobattr(self, value: bytes) -> None:
        name, equals, attr = value.partition(b"=")
        key = _JOBATTR_KEYS.get(name.strip().upper())
        if equals and key is not None:
            self.raw[key] = attr

    def number(self, key: str, value: bytes) -> int | None:
        text = value.decode("latin-1").strip()
        if not _DIGITS_RE.fullmatch(text):
            self.problems.add(
                f"{key}={_shown(value)} is not a number; ignored"
            )
            return None
        number = int(text)
        if not _COPIES_MIN <= number <= _COPIES_MAX:
            self.problems.add(
                f"{key}={number} outside {_COPIES_MIN}..{_COPIES_MAX}; ignored"
            )
            return None
        return number

    def setting(self, key: str, value: bytes) -> None:
        word = _keyword(value).strip()
        if key == "DUPLEX":
            if word in {"ON", "OFF"}:
                self.duplex = word == "ON"
            else:
                self.bad(key, value)
        elif key == "BINDING":
            if word in _BINDING_VALUES:
                self.binding = word.lower()
            else:
                self.bad(key, value)
        elif key == "RENDERMODE":
            if word in {"COLOR", "GRAYSCALE"}:
                self.rendermode = word == "COLOR"
            else:
                self.bad(key, value)
        elif key == "PLANESINUSE":
            self.mono_planes = word == "1"
        elif key == "HOLD":
            if word in _HOLD_VALUES:
                self.hold = word
            else:
                self.bad(key, value)
        elif key == "HOLDTYPE":
            if word in _HOLD_TYPE_VALUES:
                self.hold_type = word
            else:
                self.bad(key, value)
        elif key == "STRINGCODESET":
            self.codeset = word

    def bad(self, key: str, value: bytes) -> None:
        self.problems.add(f"unknown {key} value {_shown(value)}; ignored")

    # -- result -------------------------------------------------------------

    def text(self, key: str) -> str | None:
        raw = self.raw.get(key)
        if raw is None:
            return None
        return _clean(_decode(raw, self.codeset)) or None

    def first(self, keys: tuple[str, ...]) -> str | None:
        for key in keys:
            value = self.text(key)
            if value is not None:
                return value
        return None

    def comment_user(self) -> str | None:
        for raw in reversed(self.comment_users):
            value = _clean(_decode(raw, self.codeset))
            if value:
                return value
        return None

    def header(self, pdl_offset: int, truncated: bool = False) -> PjlHeader:
        user = self.first(_USER_SOURCES) or self.comment_user()
        if self.qty is not None and self.copies is not None:
            copies: int | None = self.qty * self.copies
        else:
            copies = self.qty if self.qty is not None else self.copies
        color = False if self.mono_planes else self.rendermode
        paper = self.text("PAPER")
        language = None
        if self.language is not None:
            language = _clean(_decode(self.language, self.codeset)).upper()
        return PjlHeader(
            user=user,
            job_name=self.first(_JOB_NAME_SOURCES),
            host=self.first(_HOST_SOURCES),
            domain=self.text("JOBACCT3"),
            copies=copies,
            duplex=self.duplex,
            binding=self.binding,
            color=color,
            paper=paper.upper() if paper else None,
            hold=self.hold,
            hold_type=self.hold_type,
            hold_key=self.first(_HOLD_KEY_SOURCES),
            language=language or None,
            pdl_offset=pdl_offset,
            problems=self.problems.as_tuple(
                *(["header truncated"] if truncated else [])
            ),
        )


def _skip_uels(data: bytes, pos: int) -> int:
    while data.startswith(UEL, pos):
        pos += len(UEL)
    return pos


def _is_pjl_line(data: bytes, pos: int) -> bool:
    """Whether a PJL command line (``@PJL``, blank or line end) starts here."""
    if data[pos:pos + 4].upper() != b"@PJL":
        return False
    following = data[pos + 4:pos + 5]
    return following in {b"", b" ", b"\t", b"\r", b"\n"}


def _pjl_start(data: bytes) -> int | None:
    """Where the first ``@PJL`` line starts, or None when this is not PJL.

    Either the input starts with ``@PJL`` or with one or more UELs, after
    which line ends (blank lines) may come before the first ``@PJL``.
    """
    pos = _skip_uels(data, 0)
    if pos:
        while data[pos:pos + 1] in {b"\r", b"\n"}:
            pos = _skip_uels(data, pos + 1)
    return pos if _is_pjl_line(data, pos) else None


def _parse(data: bytes, at_limit: bool) -> PjlHeader | None:
    length = len(data)
    pos = _pjl_start(data)
    if pos is None:
        return None
    collector = _Collector()
    while True:
        pos = _skip_uels(data, pos)
        if pos >= length:
            break
        end = data.find(b"\n", pos)
        if end < 0:
            end = length
        line = data[pos:end]
        if not line.strip():
            if end == length:
                break  # trailing blanks without a line end: still PJL
            pos = end + 1
            continue
        if not _is_pjl_line(data, pos):
            return collector.header(pdl_offset=pos)
        if end == length:
            # The last line has no line end: the input stopped inside PJL.
            if not at_limit:
                collector.command(line[4:].rstrip(b"\r"))
            break
        if collector.command(line[4:].rstrip(b"\r")):
            return collector.header(pdl_offset=end + 1)
        pos = end + 1
    return collector.header(pdl_offset=length, truncated=True)


def parse_pjl_header(head: bytes) -> PjlHeader | None:
    """Parse the PJL header at the start of a raw print job.

    ``head`` is the first bytes of the job; only the first
    :data:`PJL_HEADER_LIMIT` bytes are looked at.  Returns ``None`` when
    ``head`` does not start with a PJL header (optionally after one or more
    UELs), else a :class:`PjlHeader`.  Never raises.
    """
    try:
        data = bytes(head[:PJL_HEADER_LIMIT])
    except Exception:
        return None  # not bytes-like
    at_limit = len(data) >= PJL_HEADER_LIMIT
    try:
        return _parse(data, at_limit)
    except Exception:  # defensive: the parser is meant to be total
        try:
            if _pjl_start(data) is not None:
                return PjlHeader(problems=("internal error while parsing",))
        except Exception:
            pass
        return None


# -- taking the release key out ---------------------------------------------


def _strip_line(line: bytes, remove: frozenset[str]) -> bytes | None:
    """A ``@PJL`` line (without its line end) with the ``KEY=VALUE`` pairs of
    the `remove` variables cut out; None when the line must go entirely (it
    had nothing else, or still names a key in a way that is not a pair)."""
    match = _COMMAND_RE.match(line, 4)
    if match is None or _keyword(match.group(1)) not in {"SET", "DEFAULT"}:
        return line
    tokens = list(_TOKEN_RE.finditer(line, match.end()))
    cuts: list[tuple[int, int]] = []
    kept_words: list[str] = []
    i = 0
    while i < len(tokens):
        word = tokens[i].group(4)
        if word is not None:
            if (i + 2 < len(tokens) and tokens[i + 1].group(3) is not None
                    and tokens[i + 2].group(3) is None):
                if _keyword(word) in remove:
                    cuts.append((tokens[i].start(), tokens[i + 2].end()))
                else:
                    kept_words.append(_keyword(word))
                i += 3
                continue
            kept_words.append(_keyword(word))
        i += 1
    if not cuts:
        return None if _KEY_VARIABLES & set(kept_words) else line
    if _KEY_VARIABLES & set(kept_words):
        return None
    out = bytearray()
    last = 0
    for start, end in cuts:
        out += line[last:start].rstrip(b" \t")
        last = end
    out += line[last:]
    if not out[match.end():].strip():
        return None
    return bytes(out)


def strip_hold_key(head: bytes) -> tuple[bytes, PjlHeader | None]:
    """The head of a job without its release key, and the header as parsed
    *before* (with the key, for the verifier).

    In the PJL block, ``SET``/``DEFAULT`` pairs of ``HOLDKEY`` and
    ``JOBPASSWORD`` are cut out, and of a private job ``HOLD`` and
    ``HOLDTYPE`` too; a line left with nothing (or naming a key in a
    malformed way) is removed with its line end.  Everything else is kept
    byte for byte.  A head that is not PJL, or has no key and no private
    hold, is returned as it is.  Pure; never raises.
    """
    data = bytes(head)
    header = parse_pjl_header(data)
    if header is None:
        return data, None
    try:
        block = data[:header.pdl_offset]
        upper = block.upper()
        if not header.private and b"HOLDKEY" not in upper \
                and b"JOBPASSWORD" not in upper:
            return data, header
        remove = _KEY_VARIABLES | (_HOLD_VARIABLES if header.private else frozenset())
        out = bytearray()
        pos = 0
        while pos < len(block):
            end = block.find(b"\n", pos)
            end = len(block) if end < 0 else end + 1
            raw_line = block[pos:end]
            content = raw_line.rstrip(b"\r\n")
            ending = raw_line[len(content):]
            start = _skip_uels(content, 0)
            if _is_pjl_line(content, start):
                stripped = _strip_line(content[start:], remove)
                if stripped is None:
                    raw_line = content[:start] + (ending if start else b"")
                else:
                    raw_line = content[:start] + stripped + ending
            out += raw_line
            pos = end
        return bytes(out) + data[header.pdl_offset:], header
    except Exception:  # defensive: this must never fail an intake
        return data, header


def username_insertion(head: bytes, user_line: bytes) -> tuple[bytes, int] | None:
    """How to give a PJL-framed job a user when it has none (pure): `(prefix, skip)` means "send
    `prefix`, then the job from byte `skip`"; None when `head` is not PJL (the caller wraps the job
    whole) and `(b"", 0)` when the job already names its user (left as it is).

    The line goes where the job's own PJL starts (just after its UEL), so it belongs to the job's
    PJL environment and is not reset by that UEL; `user_line` is a whole ``@PJL SET USERNAME="..."``
    line with its line end."""
    header = parse_pjl_header(head)
    if header is None:
        return None
    if header.user is not None:
        return b"", 0
    start = _pjl_start(head)
    assert start is not None  # parse_pjl_header found PJL there
    return head[:start] + user_line, start
