"""Opening an analyser's input: a path or an already open binary file handle."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Union

Source = Union[str, Path, BinaryIO]


@contextmanager
def opened(source: Source) -> Iterator[BinaryIO]:
    """A binary handle for `source`; a handle passed in is not closed (nor rewound)."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as handle:
            yield handle
    else:
        yield source


@contextmanager
def mapped(source: Source) -> Iterator[bytes | mmap.mmap]:
    """The whole of `source` as a read-only memory map (pages read on demand, nothing copied), or
    as bytes where it cannot be mapped (a pipe, an in-memory handle, an empty file)."""
    with opened(source) as handle:
        try:
            data: bytes | mmap.mmap = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (AttributeError, OSError, ValueError):
            handle.seek(0)
            data = handle.read()
        try:
            yield data
        finally:
            if isinstance(data, mmap.mmap):
                data.close()


def size_of(handle: BinaryIO) -> int:
    """The total size of the file behind `handle` (its position is kept)."""
    try:
        return os.fstat(handle.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        position = handle.tell()
        end = handle.seek(0, os.SEEK_END)
        handle.seek(position)
        return end


_RELEASE_STEP = 16 << 20


def release(data: object, upto: int, released: int) -> int:
    """Drop already-read pages of a read-only mmap from this process's memory (they stay in the
    page cache); returns the new released offset. Other buffers: nothing to do."""
    import mmap

    if upto - released < _RELEASE_STEP or not isinstance(data, mmap.mmap):
        return released
    end = upto - upto % mmap.PAGESIZE
    try:
        data.madvise(mmap.MADV_DONTNEED, 0, end)
    except (AttributeError, OSError, ValueError):
        return upto
    return end
