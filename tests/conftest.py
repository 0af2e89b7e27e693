"""Shared fixtures: real spooler processes (cleaned up after each test) and in-process building blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from twisted.internet.defer import Deferred, maybeDeferred

from spooler_harness import Spooler, short_tempdir


def run_synchronously(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
    """A `run_in_thread` that runs on the caller's thread (Buildbot's NonThreadPool idea)."""
    return maybeDeferred(function, *args, **kwargs)


@pytest.fixture
def reactor() -> Any:
    """The global reactor pytest-twisted runs (for tests against real loopback sockets)."""
    from twisted.internet import reactor as global_reactor

    return global_reactor


@pytest.fixture
def spooler_factory() -> Iterator[Callable[..., Spooler]]:
    started: list[Spooler] = []

    def make(**settings: Any) -> Spooler:
        spooler = Spooler(short_tempdir(), **settings)
        started.append(spooler)
        return spooler

    yield make
    for spooler in started:
        spooler.cleanup()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    import shutil

    path = short_tempdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)
