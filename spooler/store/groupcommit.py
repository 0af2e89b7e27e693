"""Group commit of new jobs: the rows (and inline document data) of jobs that become ready while
another commit is under way share the next transaction, so one WAL fsync makes many jobs durable.

A job's Deferred fires only once its own transaction has committed (SQLite WAL, synchronous=FULL):
the acknowledgement contract (DESIGN 3) is unchanged, only the fsync is shared. Commits run one at a
time, in the order the jobs were handed in (so job ids, given in that order, follow commit order), on
a thread of their own with a connection of their own: the reactor keeps parsing requests during the
fsync, and those requests form the next group.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from spooler.model import Document, Job
from spooler.store.spoolfiles import RunInThread
from spooler.store.database import JobStore

log = Logger(namespace="spooler.groupcommit")

Entry = tuple[Job, list[Document], dict[int, bytes]]


class CommitThread:
    """A `run_in_thread` backed by one thread of its own: calls run one after the other, and their
    results come back on the reactor thread (callFromThread). Leaner than the reactor's thread pool
    for the one call per group commit, and never queued behind big-file work in that pool."""

    def __init__(self, reactor: Any, name: str = "spooler-commit") -> None:
        self._reactor = reactor
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._name = name

    def __call__(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()
        done: Deferred[Any] = Deferred()
        self._calls.put((done, function, args, kwargs))
        return done

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            done, function, args, kwargs = call
            try:
                result = function(*args, **kwargs)
            except BaseException:  # noqa: BLE001 - handed to the caller on the reactor thread
                self._reactor.callFromThread(done.errback, Failure())
            else:
                self._reactor.callFromThread(done.callback, result)

    def stop(self) -> None:
        """Let the thread end once the calls already handed in are done."""
        if self._thread is not None:
            self._calls.put(None)
            self._thread = None


class GroupCommit:
    """Insert new jobs in shared transactions. `connect` opens the committing connection (lazily)."""

    def __init__(self, connect: Callable[[], JobStore], run_in_thread: RunInThread) -> None:
        self._connect = connect
        self._run_in_thread = run_in_thread
        self._store: JobStore | None = None
        self._waiting: list[tuple[Entry, Deferred[None]]] = []
        self._busy = False
        #: Sizes of the groups committed so far (for tests and the bench): count and largest.
        self.commits = 0
        self.largest_group = 0

    def insert(self, job: Job, documents: Iterable[Document], inline: dict[int, bytes]) -> Deferred[None]:
        """Fires once the job's row, documents and inline data are durable; fails with the store's error."""
        done: Deferred[None] = Deferred()
        self._waiting.append(((job, list(documents), inline), done))
        if not self._busy:
            self._next()
        return done

    def _next(self) -> None:
        if not self._waiting:
            return
        group, self._waiting = self._waiting, []
        self._busy = True
        self.commits += 1
        self.largest_group = max(self.largest_group, len(group))
        outcome = self._run_in_thread(self._commit, [entry for entry, _ in group])
        outcome.addBoth(self._committed, group)

    def _commit(self, entries: list[Entry]) -> list[BaseException | None]:
        """On the committing thread: one transaction for all; if it fails, each job alone, so that
        one bad job does not fail the others."""
        if self._store is None:
            self._store = self._connect()
        try:
            self._store.insert_jobs(entries)
            return [None] * len(entries)
        except Exception as error:  # noqa: BLE001 - reported per job below
            if len(entries) == 1:
                return [error]
        outcomes: list[BaseException | None] = []
        for entry in entries:
            try:
                self._store.insert_jobs([entry])
                outcomes.append(None)
            except Exception as error:  # noqa: BLE001 - handed to that job's caller
                outcomes.append(error)
        return outcomes

    def _committed(self, outcomes: Any, group: list[tuple[Entry, Deferred[None]]]) -> None:
        if isinstance(outcomes, Failure):
            outcomes = [outcomes] * len(group)
        # Still busy while the callbacks run: jobs handed in meanwhile queue behind those waiting.
        for (_, done), outcome in zip(group, outcomes):
            if outcome is None:
                done.callback(None)
            else:
                done.errback(outcome if isinstance(outcome, Failure) else Failure(outcome))
        self._busy = False
        self._next()

    def close(self) -> None:
        if self._store is not None and not self._busy:
            self._store.close()
            self._store = None
