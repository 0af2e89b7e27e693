"""Fuzz targets: one function per parser that reads client bytes, each ``target(data: bytes) -> None``.

A target returns normally when the parser accepted the input or refused it with its own typed error
(the codec's IppParseError, LpdProtocolError, an analyser's AnalysisError, ...). Anything else that
escapes (an exception, a failed invariant: ``Finding``) is a finding. The targets need no atheris:
``fuzz/run.py`` drives them with atheris, ``tests/test_fuzz_regressions.py`` replays the seeds and
the regression inputs through the same functions.

Targets that need a job service (the IPP request path, the LPD daemon) run the real JobService and
store of ``tests/inprocess.Rig`` on a temporary folder, driven over twisted's StringTransport.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SEEDS = Path(__file__).resolve().parent / "seeds"
SAMPLES = ROOT / "samples" / "corpus"


#: Seconds spent building services (not parsing): the runner leaves them out of an input's time.
setup_seconds = [0.0]


class Finding(AssertionError):
    """An input broke a parser's contract without raising (a wrong result, a leftover file...)."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise Finding(what)


# -- IPP ---------------------------------------------------------------------------------------------


def ipp_codec(data: bytes) -> None:
    """decode(); a decoded message re-encodes, decodes to the same message, and find_data_offset
    (the streaming intake's header walk) agrees with the decoder on where the data starts."""
    from spooler.ipp.codec import IppParseError, decode_message, encode_message, find_data_offset

    try:
        message, offset = decode_message(data)
    except IppParseError:
        return
    check(find_data_offset(data) == offset, f"find_data_offset {find_data_offset(data)} != decoder's {offset}")
    message.data = data[offset:]
    again, again_offset = decode_message(encode_message(message))
    again.data = message.data
    check(again == message, "encode(decode(x)) does not decode to the same message")


class _Services:
    """One in-process JobService (tests/inprocess.Rig) on a scratch folder, renewed every `renew` uses
    so that the store and the spool do not grow without bound while fuzzing."""

    def __init__(self, renew: int = 400, **config: Any) -> None:
        self.renew = renew
        self.config = config
        self.uses = 0
        self.rig: Any = None
        self.folder: Path | None = None
        self.extra: Any = None
        self.failures: list[dict[str, Any]] = []
        atexit.register(self.close)

    def get(self, build_extra: Callable[[Any], Any] | None = None) -> Any:
        if self.rig is None or self.uses >= self.renew:
            started = time.monotonic()
            self.close()
            if str(ROOT / "tests") not in sys.path:
                sys.path.insert(0, str(ROOT / "tests"))
            from inprocess import Rig

            base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
            self.folder = Path(tempfile.mkdtemp(prefix="fuzz-", dir=base))
            self.rig = Rig(self.folder, **self.config)
            self.extra = build_extra(self.rig) if build_extra else None
            self.uses = 0
            _watch_failures(self.failures)
            setup_seconds[0] += time.monotonic() - started
        self.uses += 1
        return self.rig

    def close(self) -> None:
        if self.rig is not None:
            self.rig.store.close()
            self.rig = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


_observed: list[list[dict[str, Any]]] = []


def _watch_failures(sink: list[dict[str, Any]]) -> None:
    """Collect every log event that carries a failure (log.failure: an unexpected exception somewhere)."""
    if sink in _observed:
        return
    from twisted.logger import globalLogPublisher

    def observer(event: dict[str, Any]) -> None:
        if "log_failure" in event:
            sink.append(event)

    globalLogPublisher.addObserver(observer)
    _observed.append(sink)


def _logged_failures(sink: list[dict[str, Any]]) -> None:
    if sink:
        event = sink[0]
        sink.clear()
        failure = event["log_failure"]
        raise Finding(f"logged failure: {event.get('log_format')}: {failure.getTraceback()}")


def _no_leftovers(rig: Any) -> None:
    """No incoming (not yet committed) spool file may outlive the request that brought it. The files
    are removed before the finding is raised, so that one finding does not repeat for every input."""
    leftovers = sorted(rig.config.incoming_dir.iterdir()) if rig.config.incoming_dir.exists() else []
    for path in leftovers:
        path.unlink(missing_ok=True)
    check(not leftovers, f"incoming files left behind: {[p.name for p in leftovers]}")


_ipp = _Services(ipp={"admin_users": ["root"]})


def ipp_request(data: bytes) -> None:
    """The request-level path: the bytes as the body of an HTTP POST to /ipp/print, through the real
    site (streaming header parse, request checks, the operation on a real JobService). The answer
    must be one HTTP 200 whose body is an IPP response other than server-error-internal-error, no
    failure may be logged, and no incoming spool file may be left behind."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    from spooler.ipp.codec import decode
    from spooler.ipp.tags import Status

    rig = _ipp.get(lambda rig: rig.ipp_site())
    site = _ipp.extra
    address = IPv4Address("TCP", "127.0.0.1", 40000)
    channel = site.buildProtocol(address)
    transport = StringTransport(peerAddress=address)
    channel.makeConnection(transport)
    head = (b"POST /ipp/print HTTP/1.1\r\nHost: localhost:631\r\nContent-Type: application/ipp\r\n"
            b"Content-Length: %d\r\n\r\n" % len(data))  # fmt: skip
    channel.dataReceived(head + data)
    rig.clock.advance(0)
    try:
        from inprocess import http_responses

        responses = [r for r in http_responses(transport.value()) if r[0] != 100]
        check(len(responses) == 1, f"{len(responses)} HTTP responses: {transport.value()[:300]!r}")
        [(status, body)] = responses
        check(status == 200, f"HTTP {status}: {body[:300]!r}")
        answer = decode(body)
        check(answer.code != Status.SERVER_ERROR_INTERNAL_ERROR, f"internal error: {answer}")
        _logged_failures(_ipp.failures)
    finally:
        channel.connectionLost(None)  # type: ignore[arg-type]
    _no_leftovers(rig)


# -- LPD ---------------------------------------------------------------------------------------------


def lpd_control(data: bytes) -> None:
    """parse_control_file, then job_request on what it accepted (what the protocol does with it)."""
    from spooler.intake.lpd import LpdProtocolError, job_request, parse_control_file

    try:
        control = parse_control_file(data, max_line_length=1024)
    except LpdProtocolError:
        return
    request = job_request(control, queue="default", peer="127.0.0.1", control_name="cfA001host")
    check(request.copies is not None and request.copies >= 1, f"copies {request.copies}")
    for name in control.referenced:
        check("/" not in name and "\x00" not in name, f"data file name {name!r} could be a path")


_lpd = _Services(queues={"default": {}, "other": {}}, lpd={"admin_agents": ["root"]})


def lpd_session(data: bytes) -> None:
    """A whole client conversation with the LPD daemon (commands, subcommands, control and data
    files) over a StringTransport, then the end of the connection.
    The first byte picks how the rest is cut into reads (its bits 0-2: 0 at once, n: n bytes at a
    time) and how the connection ends (bits 3-4: 0 the client's clean end of stream, 1 idle until
    the timeout, 2 or 3 a reset); the rest is the client's stream. No exception may escape, no failure
    may be logged, and no incoming file may outlive the connection."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    from twisted.internet.error import ConnectionLost
    from twisted.internet.protocol import connectionDone
    from twisted.python.failure import Failure

    from spooler.intake.lpd import LpdFactory, LpdProtocol

    rig = _lpd.get(lambda rig: LpdFactory(rig.service, rig.clock, config=rig.config, idle_timeout=30,
                                          max_connections=10))  # fmt: skip
    factory = _lpd.extra
    step, end, stream = (data[0] % 8, (data[0] >> 3) % 4, data[1:]) if data else (0, 0, b"")
    address = IPv4Address("TCP", "127.0.0.1", 40000)
    protocol = factory.buildProtocol(address)
    assert isinstance(protocol, LpdProtocol)
    transport = StringTransport(peerAddress=address)
    protocol.makeConnection(transport)
    try:
        if step == 0:
            protocol.dataReceived(stream)
        else:
            for offset in range(0, len(stream), step):
                protocol.dataReceived(stream[offset:offset + step])
        if end == 0:
            protocol.readConnectionLost()
        elif end == 1:
            rig.clock.advance(factory.idle_timeout + 1)
        rig.clock.advance(0)
        _logged_failures(_lpd.failures)
    finally:
        protocol.connectionLost(Failure(ConnectionLost()) if end >= 2 else connectionDone)
    _logged_failures(_lpd.failures)
    _no_leftovers(rig)


# -- PJL and format detection --------------------------------------------------------------------------


def pjl(data: bytes) -> None:
    """The PJL header parser without its defensive catch-all (parse_pjl_header hides internal errors
    as the problem "internal error while parsing"; here they surface)."""
    from drivers import pjl as module

    head = data[:module.PJL_HEADER_LIMIT]
    header = module._parse(head, len(head) >= module.PJL_HEADER_LIMIT)
    if header is None:
        return
    check(0 <= header.pdl_offset <= len(head), f"pdl_offset {header.pdl_offset} outside 0..{len(head)}")
    check(header.copies is None or 1 <= header.copies <= 9999 * 9999, f"copies {header.copies}")
    for value in (header.job_name, header.user, header.language):
        check(value is None or (0 < len(value) <= module.MAX_STRING_LENGTH), f"string {value!r}")


def detect(data: bytes) -> None:
    """Format detection from a job's head (PJL wrapper included)."""
    from drivers.detect import HEAD_SIZE, detect as run

    found = run(data[:HEAD_SIZE])
    check(0 <= found.offset <= len(data[:HEAD_SIZE]), f"offset {found.offset}")


# -- page analysers ---------------------------------------------------------------------------------

_scratch: Path | None = None


def _scratch_file(data: bytes) -> Path:
    """The input as a real file (the analysers memory-map files in production; an in-memory handle
    would take another path through drivers._io.mapped)."""
    global _scratch
    if _scratch is None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        handle, name = tempfile.mkstemp(prefix="fuzz-doc-", dir=base)
        os.close(handle)
        _scratch = Path(name)
        atexit.register(lambda: _scratch.unlink(missing_ok=True) if _scratch else None)
    _scratch.write_bytes(data)
    return _scratch


def _analyser(mime: str) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        from drivers import ANALYSERS, AnalysisError, DocumentStats

        try:
            stats = ANALYSERS[mime](_scratch_file(data), offset=0)
        except AnalysisError:
            return
        check(isinstance(stats, DocumentStats), f"result {stats!r}")
        check(stats.pages >= 0 and len(stats.page_info) <= max(stats.pages, 0) or stats.status != "ok",
              f"pages {stats.pages} with {len(stats.page_info)} page infos")

    target.__name__ = target.__qualname__ = f"analyse_{mime}"
    target.__doc__ = f"The {mime} analyser on the input as a file; AnalysisError is its refusal."
    return target


# -- the registry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    seeds: tuple[str, ...]  # folders under fuzz/seeds, and "samples:*.ext" globs of samples/corpus
    max_len: int = 4096
    main: bool = False  # given the longer budget by run.py

    def seed_files(self) -> list[Path]:
        files: list[Path] = []
        for seed in self.seeds:
            if seed.startswith("samples:"):
                files += sorted(SAMPLES.glob(seed.split(":", 1)[1]))
            else:
                files += sorted(p for p in (SEEDS / seed).glob("*") if p.is_file())
        return files


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("ipp_codec", ipp_codec, ("ipp",), 16384, main=True),
    Target("ipp_request", ipp_request, ("ipp",), 16384, main=True),
    Target("lpd_control", lpd_control, ("lpd_control",), 4096, main=True),
    Target("lpd_session", lpd_session, ("lpd_session",), 8192, main=True),
    Target("pjl", pjl, ("pjl", "samples:*.prn"), 4096, main=True),
    Target("detect", detect, ("pjl", "samples:*.*"), 4096),
    Target("pdf", _analyser("application/pdf"), ("pdf", "samples:*.pdf"), 32768, main=True),
    Target("postscript", _analyser("application/postscript"), ("postscript", "samples:*.ps"), 16384),
    Target("pcl5", _analyser("application/vnd.hp-pcl"), ("pcl5", "samples:*.pcl"), 8192),
    Target("pclxl", _analyser("application/vnd.hp-pclxl"), ("pclxl", "samples:*.pxl"), 8192),
    Target("pwg", _analyser("image/pwg-raster"), ("pwg", "samples:*.pwg"), 16384),
    Target("urf", _analyser("image/urf"), ("urf", "samples:*.urf"), 8192),
    Target("jpeg", _analyser("image/jpeg"), ("jpeg", "samples:*.jpg"), 4096),
    Target("png", _analyser("image/png"), ("png", "samples:*.png"), 4096),
    Target("text", _analyser("text/plain"), ("text", "samples:*.txt"), 4096),
]}
"""Every fuzz target by name."""

__all__ = ["Finding", "TARGETS", "Target"]
