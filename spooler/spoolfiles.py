"""Spool files on disk: streaming incoming data to a temporary file off the reactor thread, the
durable commit (fsync, rename, fsync of the folder), free-space checks and removal.

Names are always ours (a random token while a document arrives, `d{job:06d}-{doc:03d}` once it is a
job's); nothing a client sends becomes part of a path.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from spooler.model import JobTooLarge, SpoolFull

T = TypeVar("T")
RunInThread = Callable[..., "Deferred[Any]"]

INCOMING_SUFFIX = ".part"
#: Data is handed to the writer thread in chunks of this size.
CHUNK_SIZE = 1024 * 1024
#: Above this many bytes waiting for the writer thread the producer (the client's socket) is paused ...
HIGH_WATER = 8 * CHUNK_SIZE
#: ... and below this it is resumed. Memory per incoming job stays under HIGH_WATER + one read.
LOW_WATER = 2 * CHUNK_SIZE


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def free_space(directory: Path) -> int:
    return shutil.disk_usage(directory).free


def ensure_private_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def commit_file(source: Path, destination: Path) -> None:
    """Rename a fully written, fsynced file into place and make the rename durable."""
    os.replace(source, destination)
    fsync_directory(destination.parent)


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
    """

    def __init__(
        self,
        incoming_dir: Path,
        run_in_thread: RunInThread,
        *,
        max_size: int,
        min_free_space: int,
        on_pressure: Callable[[bool], None] = lambda paused: None,
        head_limit: int = 64 * 1024,
    ) -> None:
        self.path = incoming_dir / (secrets.token_hex(12) + INCOMING_SUFFIX)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._run_in_thread = run_in_thread
        self._max_size = max_size
        self._min_free_space = min_free_space
        self._on_pressure = on_pressure
        self._head_limit = head_limit
        self.head = bytearray()
        self.size = 0
        self._buffer = bytearray()
        self._in_flight = 0
        self._paused = False
        self._tail: Deferred[None] = succeed(None)
        self._failure: Failure | None = None
        self._closed = False

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
        self._buffer += data
        if len(self._buffer) >= CHUNK_SIZE:
            self._hand_over()

    def _hand_over(self) -> None:
        chunk = bytes(self._buffer)
        self._buffer.clear()
        self._in_flight += len(chunk)
        if self._in_flight > HIGH_WATER and not self._paused:
            self._paused = True
            self._on_pressure(True)
        self._tail.addCallback(lambda _: self._run_in_thread(self._write_chunk, chunk))
        self._tail.addBoth(self._chunk_done, len(chunk))

    def _chunk_done(self, result: object, size: int) -> None:
        self._in_flight -= size
        if isinstance(result, Failure) and self._failure is None:
            self._failure = result
        if self._paused and self._in_flight < LOW_WATER:
            self._paused = False
            self._on_pressure(False)
        return None

    def finish(self) -> Deferred[int]:
        """Write what is left, fsync and close. Fires with the size, or fails with the write error."""
        if self._buffer:
            self._hand_over()
        self._tail.addCallback(lambda _: self._run_in_thread(self._sync_and_close))

        def result(_: object) -> int:
            if self._failure is not None:
                self._failure.raiseException()
            return self.size

        return self._tail.addCallback(result)

    def discard(self) -> Deferred[None]:
        """Drop the partial document (a cut connection, a refused job)."""
        self._buffer.clear()

        def remove() -> None:
            self._close()
            remove_quietly(self.path)

        return self._tail.addBoth(lambda _: self._run_in_thread(remove))

    # -- writer-thread side --------------------------------------------------------------------------

    def _write_chunk(self, chunk: bytes) -> None:
        if self._failure is not None:
            return
        if free_space(self.path.parent) - len(chunk) < self._min_free_space:
            raise SpoolFull("free space in the spool folder fell below the configured floor")
        view = memoryview(chunk)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def _sync_and_close(self) -> None:
        if self._failure is not None:
            return
        os.fsync(self._fd)
        self._close()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)
