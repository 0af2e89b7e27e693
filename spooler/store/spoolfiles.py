"""Spool files on disk: streaming incoming data to a temporary file off the reactor thread (or
keeping a small document in memory, to be stored inline with its job's row), the durable commit
(fsync, rename, fsync of the folder), copies of inline documents, free-space checks and removal.

Names are always ours (a random token while a document arrives, `d{job:06d}-{doc:03d}` once it is a
job's); nothing a client sends becomes part of a path.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from spooler.config import Config
from spooler.model import JobTooLarge, SpoolFull

RunInThread = Callable[..., Deferred[Any]]

INCOMING_SUFFIX = ".part"
#: Data is handed to the writer thread in chunks of this size.
CHUNK_SIZE = 1024 * 1024
#: Above this many bytes waiting for the writer thread the producer (the client's socket) is paused ...
HIGH_WATER = 8 * CHUNK_SIZE
#: ... and below this it is resumed. Memory per incoming job stays under HIGH_WATER + one read.
LOW_WATER = 2 * CHUNK_SIZE
#: Buffers per writev call (the kernel's limit is 1024).
IOV_MAX = 1024


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def free_space(directory: Path) -> int:
    return shutil.disk_usage(directory).free


@dataclass(frozen=True)
class SpoolRoom:
    """The free space of the spool's file system, measured once, against the configured floor."""

    free_bytes: int
    floor_bytes: int

    @property
    def accepting(self) -> bool:
        """Whether new data may come in at all (below the floor new jobs are refused)."""
        return self.free_bytes >= self.floor_bytes

    def fits(self, size: int) -> bool:
        """Whether `size` more bytes may be written without going below the floor."""
        return self.free_bytes - size >= self.floor_bytes

    def as_dict(self) -> dict[str, Any]:
        return {"free_bytes": self.free_bytes, "floor_bytes": self.floor_bytes, "accepting": self.accepting}


@dataclass(frozen=True)
class SpoolFloor:
    """The one measure of room in the spool: the spool folder's file system (incoming/ is on the
    same one, as the rename into the spool needs) against `spool.min_free_space`."""

    folder: Path
    floor: int

    def room(self) -> SpoolRoom:
        return SpoolRoom(free_space(self.folder), self.floor)


def spool_floor(config: Config) -> SpoolFloor:
    return SpoolFloor(config.spool_dir, config.spool.min_free_space)


def ensure_private_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def write_private_file(path: Path, data: bytes) -> None:
    """Replace `path` atomically with `data`, readable by this user only: a 0600 temporary file,
    fsync, rename, fsync of the folder (key files, the enrolled peers)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def commit_file(source: Path, destination: Path) -> None:
    """Rename a fully written, fsynced file into place and make the rename durable."""
    os.replace(source, destination)
    fsync_directory(destination.parent)


def write_copy(incoming_dir: Path, destination: Path, data: bytes) -> None:
    """Write a spool file from data that is already durable elsewhere (a document stored inline in
    the database): written and renamed into place, not fsynced. A crash may leave it incomplete,
    so recovery removes such copies and they are written again when needed."""
    temporary = incoming_dir / (secrets.token_hex(12) + INCOMING_SUFFIX)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(temporary, destination)


def remove_quietly(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


class IncomingFile:
    """One document arriving from a client, streamed to `incoming/<token>.part`.

    `write` is called on the reactor thread with whatever the socket delivered; bytes are gathered
    into CHUNK_SIZE pieces and written, in order, by the injected `run_in_thread`. `on_pressure(True)`
    asks the caller to pause its producer, `on_pressure(False)` to resume it. `finish` fsyncs and
    closes the file; `discard` removes it. The first `head_limit` bytes are kept in memory for the
    job's header (PJL) and format sniffing.

    `head_filter` (if given) rewrites the head once before any byte leaves memory (the first chunk
    handed to the writer thread is at least CHUNK_SIZE > head_limit bytes, or the document ends
    first): it returns the head to store instead and what it learned from the original head
    (`head_facts`). The private-print key is taken out this way (spooler.pjl.strip_hold_key), so
    that it never reaches a file, the database or its WAL.
    """

    def __init__(
        self,
        incoming_dir: Path,
        run_in_thread: RunInThread,
        *,
        max_size: int,
        floor: SpoolFloor,
        on_pressure: Callable[[bool], None] = lambda paused: None,
        head_limit: int = 64 * 1024,
        inline_max: int = 0,
        head_filter: Callable[[bytes], tuple[bytes, Any]] | None = None,
    ) -> None:
        self.path = incoming_dir / (secrets.token_hex(12) + INCOMING_SUFFIX)
        self._fd: int | None = None
        self._run_in_thread = run_in_thread
        self._max_size = max_size
        self._floor = floor
        self._on_pressure = on_pressure
        self._head_limit = head_limit
        self.head = bytearray()
        self.size = 0
        self._head_filter = head_filter
        self.head_facts: Any = None
        # Received pieces, handed to the writer thread as they are (os.writev): no copy on this thread.
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._in_flight = 0
        self._paused = False
        self._failure: Failure | None = None
        self._closed = False
        self._inline_max = inline_max
        # With inline_max, nothing touches the disk until the document outgrows it: a small document
        # stays in memory and is stored in the job's row (see `inline`).
        self._tail: Deferred[None] | None = None
        if inline_max <= 0:
            self._start_file()

    def _start_file(self) -> None:
        self._tail = self._run_in_thread(self._open)
        self._tail.addErrback(self._record_failure)

    @property
    def inline(self) -> bytes | None:
        """The whole document, if it never outgrew `inline_max` (then there is no file); else None."""
        if self._tail is not None:
            return None
        self._filter_head()
        return b"".join(self._pieces)

    def _filter_head(self) -> None:
        """Run the head filter, once, on the data still in memory (all of it, the first time)."""
        if self._head_filter is None:
            return
        head_filter, self._head_filter = self._head_filter, None
        original = bytes(self.head)
        replacement, self.head_facts = head_filter(original)
        if replacement == original:
            return
        data = replacement + b"".join(self._pieces)[len(original):]
        self._pieces, self._buffered = [data], len(data)
        self.size = len(data)
        self.head = bytearray(data[: self._head_limit])

    # -- reactor side ------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Take more bytes. Raises JobTooLarge past the limit, or the writer thread's error."""
        if self._failure is not None:
            self._failure.raiseException()
        if self.size + len(data) > self._max_size:
            raise JobTooLarge(f"the job is larger than the limit of {self._max_size} bytes")
        self.size += len(data)
        if len(self.head) < self._head_limit:
            self.head += data[: self._head_limit - len(self.head)]
        self._pieces.append(data)
        self._buffered += len(data)
        if self._tail is None:
            if self.size <= self._inline_max:
                return
            self._start_file()
        if self._buffered >= CHUNK_SIZE:
            self._filter_head()
            self._hand_over()

    def _hand_over(self) -> None:
        assert self._tail is not None
        pieces, size = self._pieces, self._buffered
        self._pieces, self._buffered = [], 0
        self._in_flight += size
        if self._in_flight > HIGH_WATER and not self._paused:
            self._paused = True
            self._on_pressure(True)
        self._tail.addCallback(lambda _: self._run_in_thread(self._write_pieces, pieces, size))
        self._tail.addErrback(self._record_failure)
        self._tail.addCallback(self._chunk_done, size)

    def _record_failure(self, failure: Failure) -> None:
        if self._failure is None:
            self._failure = failure

    def _chunk_done(self, _: object, size: int) -> None:
        self._in_flight -= size
        if self._paused and self._in_flight < LOW_WATER:
            self._paused = False
            self._on_pressure(False)

    def finish(self, *, inline_ok: bool = True) -> Deferred[int]:
        """Write what is left, fsync and close. Fires with the size, or fails with the write error.
        A document kept inline fires at once (it is made durable with the job's row), unless
        `inline_ok` is false: then it is written to its file now."""
        self._filter_head()
        if self._tail is None:
            if inline_ok:
                return succeed(self.size)
            self._start_file()
        if self._pieces:
            self._hand_over()
        self._tail.addCallback(lambda _: self._run_in_thread(self._sync_and_close))

        def result(_: object) -> int:
            if self._failure is not None:
                self._failure.raiseException()
            return self.size

        return self._tail.addCallback(result)

    def discard(self) -> Deferred[None]:
        """Drop the partial document (a cut connection, a refused job)."""
        self._pieces.clear()
        if self._tail is None:
            return succeed(None)

        def remove() -> None:
            self._close()
            remove_quietly(self.path)

        return self._tail.addBoth(lambda _: self._run_in_thread(remove))

    # -- writer-thread side --------------------------------------------------------------------------

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)

    def _write_pieces(self, pieces: list[bytes], size: int) -> None:
        if self._failure is not None or self._fd is None:
            return
        if not self._floor.room().fits(size):
            raise SpoolFull("free space in the spool folder fell below the configured floor")
        views = [memoryview(piece) for piece in pieces]
        while views:
            written = os.writev(self._fd, views[:IOV_MAX])
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]

    def _sync_and_close(self) -> None:
        if self._failure is not None or self._fd is None:
            return
        os.fsync(self._fd)
        self._close()

    def _close(self) -> None:
        if not self._closed and self._fd is not None:
            self._closed = True
            os.close(self._fd)
