"""LPD intake (RFC 1179): the daemon's five commands, jobs of one control file and its data files, queue state.

What a client can do:

* 01 ``queue`` — print waiting jobs: acknowledged with 0x00, the dispatcher looks at the queue again.
* 02 ``queue`` — receive a job: subcommands 01 (abort the files received so far), 02 (control file),
  03 (data file), in any order, each file followed by 0x00 and acknowledged with 0x00.
* 03 / 04 ``queue [list]`` — short / long queue state, as lpq shows it, in plain text; then close.
* 05 ``queue agent [list]`` — remove jobs: only the job's owner (the agent) or an admin agent.

An unknown queue, an unknown command and every refused step are answered with 0x01 and the
connection is closed.

When a job becomes a job (the acknowledgement rule): a job is the control file plus every data file
it names (print lines and U lines). The moment that set is complete (whichever file completes it:
the control file when it comes last, the last data file when the control file came first) the
spooler commits the job (data fsynced, renamed, row committed: JobService.submit) and only then
sends the 0x00 that acknowledges that last file. RFC 1179 lets a receiver answer a file with its
acknowledgement whenever it likes, and clients wait for each one (the CUPS lpd backend does; it
closes the connection only after the last), so the last acknowledgement a client waits for means
"durable". Waiting for the connection's clean end instead would not work with those clients: they
close only after the last acknowledgement, which would then have to be sent before the job is safe.
Earlier files are acknowledged at once: they are only in incoming/ and worthless without the file
that completes the set. A data file sent with a byte count of 0 (or a huge fake count, as Windows
sends with "LPR Byte Counting" off) runs until the client ends the connection, and so does a counted
last data file whose trailing 0x00 never comes (the CUPS lpd backend's mode=stream): there the clean
end of the stream ends the file, the job is committed then, and the spooler's clean close (not a
byte) is the acknowledgement, as in raw.py. A job whose set is incomplete when the connection ends
(a data file without a control file, a control file naming files never sent) is discarded and
logged, never printed; so is everything on a connection that is reset or times out.

Copies: a file named by N print lines is printed N times (RFC 1179 section 7); the job's copies is
the largest such count, each document's own count is kept in attributes.lpd.documents.

As in raw.py, every connection is held at SO_LINGER {on, 0} while it carries data that is not yet a
job, so that a crash or a kill -9 resets the connection instead of closing it cleanly; linger is
turned off once everything received is committed (and before answering queue state, whose text
must not be cut off).

Hardening: client file names (``cfA123host``, ``dfA123host``) are checked against the RFC shape and
never used as paths (spool files are named by IncomingFile and the store); print and U lines may
only name files received on the same connection, and nothing is ever unlinked or read by name; M
lines (mail) are ignored; command lines, control-file lines, the control file, the number of data
files and the job's total size are capped; idle clients are cut off; connections are counted and,
with ``lpd.allow``, restricted by source address. No privileged source port is required (RFC 1179
asks for 721-731, which proves nothing on today's networks).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from spooler.config import QUEUE_NAME, Config
from spooler.intake.base import RECEIVE_SIZE, IntakeFactory, JobRequest, JobSink, peer_host, set_reset_on_close
from spooler.model import (
    Document, IllegalTransition, Job, JobNotFound, JobState, JobTooLarge, NotAuthorized, SpoolerError, SpoolFull,
)  # fmt: skip
from spooler.store.spoolfiles import IncomingFile

log = Logger(namespace="spooler.lpd")

ACK = b"\x00"
REFUSE = b"\x01"

#: A data-file byte count at or above this is a fake (Windows sends 125899906843000 with "LPR Byte
#: Counting" off): like a count of 0, the file runs until the connection ends. Below it, a count
#: larger than the job may still grow is refused at once.
STREAM_COUNT = 10**14
MAX_COUNT_DIGITS = 20
#: Bytes a client may send while its job is being committed before the spooler stops reading.
BACKLOG_LIMIT = 64 * 1024

#: ``cfA123host`` / ``dfA123host``: RFC 1179 says three digits; real clients send 1-6 digits and
#: host names with dots, dashes and underscores. Never a path: no '/', no control characters.
FILE_NAME = re.compile(r"^(?P<kind>cf|df)[A-Za-z][0-9]{1,6}[A-Za-z0-9._-]{0,255}\Z")

#: Print-file lines of a control file: letter -> declared document format. The format is kept as
#: declared (attributes.declared_format); the job's document_format is still sniffed from its data.
PRINT_FORMATS: dict[str, str] = {
    "f": "text/plain",  # formatted text: print as text
    "l": "application/vnd.cups-raw",  # leave control characters: raw, passed through
    "o": "application/postscript",
    "p": "text/x-lpd-pr",  # text to be paginated by pr(1)
    "r": "text/x-lpd-fortran",  # text with FORTRAN carriage control
    "t": "application/x-troff",
    "n": "application/x-ditroff",
    "d": "application/x-dvi",
    "g": "application/x-lpd-plot",  # Berkeley Unix plot library output
    "c": "application/x-lpd-cifplot",
    "v": "image/x-sun-raster",
    "k": "application/octet-stream",  # reserved for Kerberized clients
    "z": "application/octet-stream",  # reserved for Palladium
}


class LpdProtocolError(SpoolerError):
    """What a client sent breaks RFC 1179 or one of the spooler's limits; answered with 0x01."""


class JobTooLargeRefusal(LpdProtocolError):
    """A data file's byte count is larger than what the job may still grow by."""


@dataclass
class ControlFile:
    """What the spooler uses of a control file (RFC 1179 section 7). All values are client-asserted."""

    host: str | None = None
    user: str | None = None
    job_name: str | None = None
    title: str | None = None
    job_class: str | None = None
    banner_user: str | None = None
    source_names: list[str] = field(default_factory=list)
    prints: list[tuple[str, str]] = field(default_factory=list)  # (format letter, data file name)
    unlinks: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # letters of lines not acted on (M, S, W, 1-4, ...)

    @property
    def referenced(self) -> set[str]:
        """Every data file the control file names: all of them must arrive on the same connection."""
        return {name for _, name in self.prints} | set(self.unlinks)

    def documents(self) -> list[tuple[str, str, int]]:
        """(data file name, format letter, copies) in the order the print lines first name them."""
        order: list[str] = []
        letters: dict[str, str] = {}
        copies: dict[str, int] = {}
        for letter, name in self.prints:
            if name not in copies:
                order.append(name)
                letters[name] = letter
                copies[name] = 0
            copies[name] += 1
        return [(name, letters[name], copies[name]) for name in order]


def check_file_name(raw: bytes, kind: str) -> str:
    """A client's file name if it has the RFC shape (kind 'cf' or 'df'); it is a label, never a path."""
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        raise LpdProtocolError(f"file name {raw[:64]!r} is not ASCII") from None
    match = FILE_NAME.match(name)
    if match is None or match.group("kind") != kind:
        raise LpdProtocolError(f"file name {name[:64]!r} does not have the RFC 1179 shape {kind}A###host")
    return name


def parse_control_file(data: bytes, *, max_line_length: int) -> ControlFile:
    """The control file's lines; raises LpdProtocolError for an over-long line or a bad file name."""
    control = ControlFile()
    for raw_line in data.split(b"\n"):
        line = raw_line.rstrip(b"\r")
        if not line:
            continue
        if len(line) > max_line_length:
            raise LpdProtocolError(f"a control file line is longer than {max_line_length} bytes")
        letter = chr(line[0])
        operand = line[1:]
        text = operand.decode("utf-8", "replace")
        if letter in PRINT_FORMATS:
            control.prints.append((letter, check_file_name(operand, "df")))
        elif letter == "U":
            control.unlinks.append(check_file_name(operand, "df"))
        elif letter == "H":
            control.host = text
        elif letter == "P":
            control.user = text
        elif letter == "J":
            control.job_name = text
        elif letter == "T":
            control.title = text
        elif letter == "C":
            control.job_class = text
        elif letter == "L":
            control.banner_user = text
        elif letter == "N":
            control.source_names.append(text)
        else:
            control.ignored.append(letter)  # M (mail: never), S, W, I, 1-4 fonts, LPRng's A/D/Q ...
    if not control.prints:
        raise LpdProtocolError("the control file names no data file to print")
    return control


def job_request(control: ControlFile, *, queue: str, peer: str, control_name: str) -> JobRequest:
    """What the control file says about the job, in JobService's terms.

    Job name: J, else the first N, else T. User: P, else L. Host: H, else the peer's address.
    Copies: how often the print lines repeat a file (the largest count when documents differ; each
    document's own count is in attributes.lpd.documents).
    """
    documents = control.documents()
    names = control.source_names
    return JobRequest(
        protocol="lpd",
        host=control.host or peer,
        queue=queue,
        user=control.user or control.banner_user,
        name=control.job_name or (names[0] if names else None) or control.title,
        copies=max(copies for _, _, copies in documents),
        document_format=PRINT_FORMATS[documents[0][1]],
        attributes={
            "lpd": {
                "peer": peer,
                "control_file": control_name,
                "title": control.title,
                "class": control.job_class,
                "banner": control.banner_user is not None,
                "documents": [
                    {"data_file": name, "format": letter, "declared_format": PRINT_FORMATS[letter],
                     "copies": copies, "name": names[index] if index < len(names) else None}
                    for index, (name, letter, copies) in enumerate(documents)
                ],  # fmt: skip
            }
        },
    )


# -- queue state (commands 03 and 04) ------------------------------------------------------------------


def ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def job_number(item: str) -> int | None:
    """A job number of an lpq/lprm list, or None for a user name. ASCII digits only: "²".isdigit()
    is true but int("²") fails."""
    return int(item) if item.isascii() and item.isdigit() else None


def select_jobs(jobs: Iterable[Job], items: list[str]) -> list[Job]:
    """The jobs an lpq/lprm list names: job numbers and user names; no list: all of them."""
    if not items:
        return list(jobs)
    numbers = {n for n in map(job_number, items) if n is not None}
    users = {item for item in items if job_number(item) is None}
    return [job for job in jobs if job.job_id in numbers or job.user in users]


def format_queue_state(queue: str, jobs: list[Job], *, long: bool,
                       document_sizes: Callable[[Job], list[tuple[str, int]]]) -> str:  # fmt: skip
    """The text lpq users know (BSD layout): a status line, then one line (short) or block (long) a job."""
    lines = [f"{queue} is ready and printing" if any(j.state == JobState.PROCESSING for j in jobs) else
             f"{queue} is ready"]  # fmt: skip
    if not jobs:
        return "\n".join(lines + ["no entries"]) + "\n"
    if not long:
        lines.append(f"{'Rank':<7}{'Owner':<11}{'Job':<5}{'File(s)':<38}Total Size")
    waiting = 0
    for job in jobs:
        if job.state == JobState.PROCESSING:
            rank = "active"
        elif job.state == JobState.PENDING_HELD:
            rank = "held"
        else:
            waiting += 1
            rank = ordinal(waiting)
        if long:
            lines.append("")
            lines.append(f"{job.user + ': ' + rank:<40}[job {job.job_id:03d}{job.host}]")
            for name, size in document_sizes(job):
                lines.append(f"        {name[:31]:<32}{size} bytes")
        else:
            lines.append(f"{rank:<7}{job.user[:10]:<11}{job.job_id:<5}{job.name[:37]:<38}{job.size} bytes")
    return "\n".join(lines) + "\n"


# -- the protocol ----------------------------------------------------------------------------------------

COMMAND, SUBCOMMAND, CONTROL, DATA, TRAILER, STREAM, COMMITTING, CLOSED = (
    "command", "subcommand", "control", "data", "trailer", "stream", "committing", "closed")  # fmt: skip


@implementer(IHalfCloseableProtocol)
class LpdProtocol(Protocol, TimeoutMixin):
    factory: LpdFactory

    def __init__(self) -> None:
        self.peer = ""
        self.queue = ""
        self.mode = COMMAND
        self._line = bytearray()
        self._remaining = 0
        self._name = ""  # the file being received
        self._control_data = bytearray()
        self._receiving: IncomingFile | None = None
        # The job being assembled: received data files by client name, the control file, total bytes.
        self._files: dict[str, IncomingFile] = {}
        self._control: ControlFile | None = None
        self._control_name = ""
        self._total = 0
        self._holds: set[object] = set()
        self._backlog = b""
        self._eof = False
        self._reset_on_close = False
        self.jobs: list[int] = []  # jobs committed on this connection
        self.last_activity = 0.0
        self.received_any = False

    # -- connection ------------------------------------------------------------------------------

    def _linger_reset(self, reset: bool) -> None:
        """SO_LINGER {on, 0} while something received is not yet a job (see the module docstring)."""
        if reset != self._reset_on_close and self.transport is not None:
            self._reset_on_close = reset
            set_reset_on_close(self.transport, reset)

    def connectionMade(self) -> None:
        self.peer = peer_host(self.transport.getPeer())  # type: ignore[union-attr]
        self._linger_reset(True)
        if hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = RECEIVE_SIZE
        self.callLater = self.factory.clock.callLater  # TimeoutMixin uses the injected clock
        self.last_activity = self.factory.clock.seconds()
        self.setTimeout(self.factory.idle_timeout)

    def eviction_rank(self) -> tuple[bool, float] | None:
        """For the connection limit (spooler.intake.limits): a job being committed is never cut."""
        return None if self.mode in (COMMITTING, CLOSED) else (self.received_any, self.last_activity)

    def committing(self) -> bool:
        """For IntakeFactory.close_all: the job this connection completed is being made durable."""
        return self.mode == COMMITTING

    def evict(self) -> None:
        self.factory.connections.discard(self)
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[union-attr]

    @property
    def holds_uncommitted(self) -> bool:
        return bool(self._files or self._control is not None or self._receiving is not None)

    def dataReceived(self, data: bytes) -> None:
        if self.mode == CLOSED:
            return
        self.resetTimeout()
        self.last_activity = self.factory.clock.seconds()
        self.received_any = True
        if self.mode == COMMITTING:
            self._backlog += data  # a client should wait for its ack; keep what it sent anyway ...
            if len(self._backlog) > BACKLOG_LIMIT:
                self._hold("backlog", True)  # ... but stop reading until the commit is done
            return
        self._consume(data)

    def _consume(self, data: bytes) -> None:
        max_line = self.factory.settings.max_line_length
        while data and self.mode not in (COMMITTING, CLOSED):
            mode = self.mode
            if mode in (COMMAND, SUBCOMMAND):
                end = data.find(b"\n")
                if end < 0:
                    self._line += data
                    if len(self._line) > max_line:
                        self._refuse("job_refused", f"a command line is longer than {max_line} bytes")
                    return
                line = bytes(self._line) + data[:end] if self._line else data[:end]
                self._line.clear()
                data = data[end + 1 :]
                if len(line) > max_line:
                    self._refuse("job_refused", f"a command line is longer than {max_line} bytes")
                    return
                if not line:
                    continue  # a stray LF between subcommands
                try:
                    if mode == COMMAND:
                        self._command(line)
                    else:
                        self._subcommand(line)
                except LpdProtocolError as error:
                    self._refuse("job_refused", str(error))
                    return
            elif mode == CONTROL:
                piece = data[: self._remaining]
                self._control_data += piece
                self._remaining -= len(piece)
                data = data[len(piece) :]
                if self._remaining == 0:
                    self.mode = TRAILER
            elif mode == DATA:
                if len(data) <= self._remaining:
                    piece, data = data, b""
                else:
                    piece, data = data[: self._remaining], data[self._remaining :]
                self._remaining -= len(piece)
                if not self._write(piece):
                    return
                if self._remaining == 0:
                    self.mode = TRAILER
            elif mode == STREAM:
                self._write(data)
                return
            elif mode == TRAILER:
                if data[0] != 0:
                    self._refuse("job_refused", f"file {self._name} is not followed by a zero byte", answer=False)
                    return
                data = data[1:]
                self._file_received()
        if data and self.mode == COMMITTING:
            self._backlog += data

    def _write(self, piece: bytes) -> bool:
        assert self._receiving is not None
        limit = self.factory.config.limits.max_job_size
        try:
            if self._total + len(piece) > limit:
                raise JobTooLarge(f"the job is larger than the limit of {limit} bytes")
            self._receiving.write(piece)
        except (JobTooLarge, SpoolFull, OSError) as error:
            self._refuse("job_refused", str(error), answer=False)
            return False
        self._total += len(piece)
        return True

    # -- daemon commands ----------------------------------------------------------------------------

    def _command(self, line: bytes) -> None:
        code, operands = line[0], line[1:].split()
        if code not in (1, 2, 3, 4, 5):
            self._refuse("request_refused", f"unknown daemon command {code:#04x}")
            return
        if not operands:
            raise LpdProtocolError("the command names no queue")
        queue = self._queue_name(operands[0], "job_refused" if code == 2 else "request_refused")
        if queue is None:
            return
        self.queue = queue
        if code == 1:
            log.info("LPD: print waiting jobs of {queue} asked by {host}", spool_event="lpd_print_waiting",
                     queue=queue, host=self.peer)  # fmt: skip
            self.factory.jobs.wake()
            self._answer(ACK)
        elif code == 2:
            if not self.factory.jobs.accepting_jobs(queue):
                self._refuse("job_refused", f"queue {queue} does not accept jobs (an administrator disabled it)")
                return
            self.mode = SUBCOMMAND
            self.transport.write(ACK)  # type: ignore[union-attr]
        elif code in (3, 4):
            items = [item.decode("utf-8", "replace") for item in operands[1:]]
            self._answer(self.factory.queue_state(queue, items, long=code == 4).encode("utf-8", "replace"))
        else:
            if len(operands) < 2:
                raise LpdProtocolError("a remove command names no agent")
            agent = operands[1].decode("utf-8", "replace")
            items = [item.decode("utf-8", "replace") for item in operands[2:]]
            self._answer(self.factory.remove_jobs(queue, agent, items, host=self.peer).encode("utf-8", "replace"))

    def _queue_name(self, raw: bytes, event: str) -> str | None:
        """The configured queue the command names (an alias, lpd.aliases, names the default queue)."""
        name = raw.decode("ascii", "replace")
        config = self.factory.config
        if QUEUE_NAME.match(name) and config.queue(name) is not None:
            return name
        if QUEUE_NAME.match(name) and name.lower() in {alias.lower() for alias in config.lpd.aliases}:
            return config.default_queue
        self._refuse(event, f"unknown queue {name[:64]!r}", queue=name[:64])
        return None

    def _answer(self, text: bytes) -> None:
        """Answer a command that ends the conversation: nothing is uncommitted, so close cleanly."""
        self.mode = CLOSED
        self._linger_reset(False)
        self.transport.write(text)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    # -- receive job subcommands ----------------------------------------------------------------------

    def _subcommand(self, line: bytes) -> None:
        code = line[0]
        settings = self.factory.settings
        if code == 1:
            self._discard_job("the client aborted the job")
            self.transport.write(ACK)  # type: ignore[union-attr]
            return
        if code not in (2, 3):
            raise LpdProtocolError(f"unknown receive-job subcommand {code:#04x}")
        operands = line[1:].split()
        if len(operands) != 2 or not (operands[0].isascii() and operands[0].isdigit()) or len(operands[0]) > MAX_COUNT_DIGITS:
            raise LpdProtocolError(f"expected 'count name' after subcommand {code}, got {line[1:65]!r}")
        count = int(operands[0])
        if code == 2:
            self._name = check_file_name(operands[1], "cf")
            if self._control is not None:
                raise LpdProtocolError("a second control file for one job")
            if not 0 < count <= settings.max_control_file_size:
                raise LpdProtocolError(f"control file of {count} bytes (limit {settings.max_control_file_size})")
            self._control_data = bytearray()
            self._remaining = count
            self.mode = CONTROL
        else:
            self._name = check_file_name(operands[1], "df")
            if self._name in self._files:
                raise LpdProtocolError(f"data file {self._name} sent twice")
            if len(self._files) >= settings.max_data_files:
                raise LpdProtocolError(f"more than {settings.max_data_files} data files in one job")
            left = self.factory.config.limits.max_job_size - self._total
            stream = count == 0 or count >= STREAM_COUNT
            if not stream and count > left:
                raise JobTooLargeRefusal(f"a data file of {count} bytes; the job may only grow by {left} bytes")
            try:
                self._receiving = self.factory.jobs.open_incoming(
                    on_pressure=lambda paused, token=object(): self._hold(token, paused))
            except SpoolFull as error:
                self._refuse("spool_full", str(error))
                return
            self._remaining = count
            self.mode = STREAM if stream else DATA
        self._linger_reset(True)
        self.transport.write(ACK)  # type: ignore[union-attr]

    def _file_received(self) -> None:
        """A file and its trailing zero byte arrived: acknowledge it, or commit the job it completes."""
        if self._receiving is not None:
            self._files[self._name] = self._receiving
            self._receiving = None
        else:
            try:
                self._control = parse_control_file(bytes(self._control_data),
                                                   max_line_length=self.factory.settings.max_line_length)
            except LpdProtocolError as error:
                self._refuse("job_refused", f"control file {self._name}: {error}")
                return
            self._control_name = self._name
            self._control_data = bytearray()
        if self._complete():
            self._commit(stream=False)
        else:
            self.mode = SUBCOMMAND
            self.transport.write(ACK)  # type: ignore[union-attr]

    def _complete(self) -> bool:
        return self._control is not None and self._control.referenced <= self._files.keys()

    # -- making it a job ----------------------------------------------------------------------------

    def _commit(self, *, stream: bool) -> None:
        control = self._control
        assert control is not None
        self.mode = COMMITTING
        self.setTimeout(None)  # the client waits for its ack: the spooler, not the client, is idle now
        request = job_request(control, queue=self.queue, peer=self.peer, control_name=self._control_name)
        documents = [self._files.pop(name) for name, _, _ in control.documents()]
        for name, unused in self._files.items():
            log.info("LPD data file {file} from {host} is named by no print line: discarded",
                     spool_event="lpd_file_unused", file=name, host=self.peer, queue=self.queue)  # fmt: skip
            unused.discard()
        self._files, self._control, self._total = {}, None, 0
        d = self.factory.jobs.submit(documents, request)
        d.addCallbacks(self._committed, self._not_committed, callbackArgs=(stream,), errbackArgs=(stream,))
        self.factory.track_submission(d)

    def _committed(self, job: Job, stream: bool) -> None:
        self.jobs.append(job.job_id)
        if self.mode == CLOSED or self.transport is None:
            log.warn("LPD job {job_id} from {host} is spooled but the connection was lost before its ack: the"
                     " client may send it again", spool_event="ack_lost", job_id=job.job_id, host=self.peer,
                     queue=self.queue)  # fmt: skip
            return
        self._linger_reset(False)  # everything received is a job now
        if not stream:
            self.transport.write(ACK)
        if stream or self._eof:
            self.mode = CLOSED
            self.transport.loseConnection()  # after a stream, the clean close is the acknowledgement
            return
        self.mode = SUBCOMMAND
        self.setTimeout(self.factory.idle_timeout)
        backlog, self._backlog = self._backlog, b""
        self._hold("backlog", False)
        if backlog:
            self._consume(backlog)

    def _not_committed(self, failure: Failure, stream: bool) -> None:
        log.failure("LPD job from {host} could not be spooled", failure, spool_event="job_refused",
                    host=self.peer, queue=self.queue, protocol="lpd")  # fmt: skip
        if self.mode == CLOSED:
            return
        self.mode = CLOSED
        if stream or self._eof:
            self.transport.abortConnection()  # type: ignore[union-attr]
        else:
            self.transport.write(REFUSE)  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]

    # -- flow control, ends --------------------------------------------------------------------------

    def _hold(self, token: object, paused: bool) -> None:
        """Pause reading while any reason holds (a spool file's writer is behind, a commit runs)."""
        was_paused = bool(self._holds)
        if paused:
            self._holds.add(token)
        else:
            self._holds.discard(token)
        if self.transport is None or was_paused == bool(self._holds):
            return
        if self._holds:
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        else:
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def readConnectionLost(self) -> None:
        """The client ended its stream cleanly: the end of a streamed data file, or of the conversation."""
        self._eof = True
        self.setTimeout(None)
        if self.mode in (COMMITTING, CLOSED):
            return
        if self.mode == STREAM or (self.mode == TRAILER and self._receiving is not None):
            # A streamed data file, or a counted one whose bytes all arrived and whose trailing zero
            # never comes (the CUPS lpd backend's mode=stream sends the count, the data, and closes).
            self._files[self._name] = self._receiving  # type: ignore[assignment]
            self._receiving = None
            if self._complete():
                self._commit(stream=True)
                return
        if self.holds_uncommitted:
            self._give_up_incomplete("the connection ended")
            return
        self.mode = CLOSED
        self._linger_reset(False)
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass

    def _give_up_incomplete(self, how: str) -> None:
        """The connection ends before the job's files are complete: nothing of it is printed."""
        if self._control is None:
            why = f"{how} with {len(self._files)} data file(s) and no control file"
        else:
            missing = sorted(self._control.referenced - self._files.keys())
            why = f"{how}; the control file names data files never received: {', '.join(missing)[:200]}"
        event = "job_refused" if self._control is not None else "job_incomplete"
        log.warn("LPD job from {host} discarded: {why}", spool_event=event, host=self.peer, queue=self.queue,
                 why=why, size=self._total, protocol="lpd")  # fmt: skip
        self._discard_job(None)
        self.mode = CLOSED
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[union-attr]

    def timeoutConnection(self) -> None:
        if self.holds_uncommitted:
            self._refuse("job_refused", f"idle for {self.factory.idle_timeout:.0f}s after {self._total} bytes",
                         answer=False)  # fmt: skip
        else:
            log.info("LPD connection from {host} idle for {seconds:.0f}s: closed", spool_event="connection_idle",
                     host=self.peer, seconds=self.factory.idle_timeout)  # fmt: skip
            self.mode = CLOSED
            self.transport.abortConnection()  # type: ignore[union-attr]

    def _refuse(self, event: str, why: str, *, answer: bool = True, queue: str | None = None) -> None:
        """Refuse what the client asked: discard the job being received, answer 0x01 (when the client
        waits for an answer) or reset the connection (when it is sending data)."""
        log.warn("LPD request from {host} refused: {why}", spool_event=event, host=self.peer, why=why,
                 queue=queue or self.queue, size=self._total, protocol="lpd")  # fmt: skip
        self._discard_job(None)
        self.mode = CLOSED
        if answer:  # an explicit refusal: nothing is left uncommitted, so close cleanly after the byte
            self._linger_reset(False)
            self.transport.write(REFUSE)  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]
        else:
            self.transport.abortConnection()  # type: ignore[union-attr]

    def _discard_job(self, why: str | None) -> None:
        if why is not None and self.holds_uncommitted:
            log.info("LPD job from {host} aborted by the client", spool_event="job_aborted_by_client",
                     host=self.peer, queue=self.queue, size=self._total, protocol="lpd")  # fmt: skip
        for incoming in self._files.values():
            incoming.discard()
        if self._receiving is not None:
            self._receiving.discard()
        self._files, self._receiving, self._control, self._total = {}, None, None, 0
        self._control_data = bytearray()
        self._holds = {token for token in self._holds if token == "backlog"}

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.setTimeout(None)
        self.factory.connection_closed(self)
        if self.holds_uncommitted:
            log.warn("LPD connection from {host} cut after {size} bytes: no job", spool_event="job_incomplete",
                     host=self.peer, size=self._total, queue=self.queue, protocol="lpd",
                     why=reason.getErrorMessage())  # fmt: skip
            self._discard_job(None)
        self.mode = CLOSED


class LpdJobs(JobSink, TypingProtocol):
    """The job service as LPD needs it: the sink of its jobs, and what the queue commands ask."""

    def wake(self) -> None:
        """Look at the queues again now (command 01)."""
        ...

    def list_jobs(self) -> list[Job]:
        """Unfinished jobs, in arrival order."""
        ...

    def documents(self, job_id: int) -> list[Document]:
        ...

    def cancel(self, job_id: int, *, requester: str | None = None, admin: bool = False) -> Job:
        ...


class LpdFactory(IntakeFactory):
    """RFC 1179 on one listener: the queues are the configured ones, `lpd.allow` restricts sources."""

    protocol = LpdProtocol
    protocol_name = "LPD"

    def __init__(self, jobs: LpdJobs, clock: IReactorTime, *, config: Config, idle_timeout: float,
                 max_connections: int) -> None:  # fmt: skip
        super().__init__(jobs, clock, idle_timeout=idle_timeout, max_connections=max_connections)
        self.jobs: LpdJobs = jobs
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """The configuration LPD reads ([lpd], the queues, the job size limit): at start, and when a
        reload changes it."""
        self.config = config
        self.settings = config.lpd
        self.allow = [ipaddress.ip_network(network, strict=False) for network in self.settings.allow]

    def allowed(self, host: str) -> bool:
        if not self.allow:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allow)

    def buildProtocol(self, addr: IAddress) -> Protocol | None:
        host = peer_host(addr)
        if not self.allowed(host):
            log.warn("LPD connection from {host} refused: not in lpd.allow", spool_event="connection_refused",
                     host=host, why="source address not allowed", protocol="lpd")  # fmt: skip
            return None
        return super().buildProtocol(addr)

    # -- what the queue commands ask of the job service ------------------------------------------------

    def queue_jobs(self, queue: str) -> list[Job]:
        return [job for job in self.jobs.list_jobs() if job.queue == queue]

    def queue_state(self, queue: str, items: list[str], *, long: bool) -> str:
        jobs = select_jobs(self.queue_jobs(queue), items)

        def document_sizes(job: Job) -> list[tuple[str, int]]:
            described = job.attributes.get("lpd", {}).get("documents", [])
            sizes = []
            for index, document in enumerate(self.jobs.documents(job.job_id)):
                name = described[index].get("name") if index < len(described) else None
                sizes.append((name or job.name, document.size))
            return sizes

        return format_queue_state(queue, jobs, long=long, document_sizes=document_sizes)

    def remove_jobs(self, queue: str, agent: str, items: list[str], *, host: str) -> str:
        """Command 05. The agent name is client-asserted, as in every LPD: anyone who can reach the
        port can claim to be anyone. Restrict who can connect (lpd.allow) where that matters."""
        admin = agent in self.settings.admin_agents
        jobs = self.queue_jobs(queue)
        if items:
            targets = select_jobs(jobs, items)
        else:  # no list: the agent's first job in the queue (the active one, for an admin)
            targets = [next((job for job in jobs if admin or job.user == agent), None)]
            targets = [job for job in targets if job is not None]
        lines = []
        for number in sorted({n for n in map(job_number, items) if n is not None} - {job.job_id for job in jobs}):
            lines.append(f"job {number}: no such job in {queue}")
        for job in targets:
            try:
                self.jobs.cancel(job.job_id, requester=agent, admin=admin)
                lines.append(f"job {job.job_id} ({job.name}) dequeued")
            except NotAuthorized:
                log.warn("LPD remove of job {job_id} by {agent} from {host} refused: not the owner",
                         spool_event="remove_refused", job_id=job.job_id, agent=agent, host=host,
                         user=job.user, queue=queue)  # fmt: skip
                lines.append(f"job {job.job_id}: permission denied")
            except (IllegalTransition, JobNotFound) as error:
                lines.append(f"job {job.job_id}: {error}")
        return "".join(line + "\n" for line in lines)
