"""Page statistics of every job: each document is analysed by drivers/ in long-lived worker
processes (``python -m drivers.worker``) that the reactor spawns with the memory limit and page cap,
one document at a time per worker, while the job goes on printing. A document that overruns its time
limit gets "unknown" ("time limit") and its worker is killed; a worker that crashes or runs out of
memory gives "unknown" to the document it was on, never to the others; workers are replaced after a
number of documents or when their memory grows, and stopped with the spooler. A document that
cannot be analysed gives "unknown" with a reason; analysis never delays, blocks or fails a job."""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ProcessTerminated
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from drivers import JobOptions, combine
from drivers.sandbox import reply_from, worker_command, worker_request
from drivers.stats import DocumentStats, unknown

log = Logger(namespace="spooler.analysis")

#: Bytes of one reply line kept (a reply is one JSON line with every page's details).
MAX_OUTPUT = 32 * 1024 * 1024
#: Bytes of a worker's stderr kept (its last words tell a memory exhaustion from a crash).
MAX_STDERR = 64 * 1024
#: Seconds a new worker has to load its code before it is killed.
STARTUP = 60.0
#: Seconds a worker told to finish (end of its input) has before it is killed.
GRACE = 5.0


@dataclass
class _Request:
    path: Path
    declared_format: str | None
    done: Deferred[DocumentStats] = field(default_factory=Deferred)
    sent: int = 0  # times sent to a worker

    @property
    def fmt(self) -> str:
        return self.declared_format or "application/octet-stream"


class _Worker(ProcessProtocol):
    """One worker process: sends it one request at a time, reads its reply lines, times it."""

    def __init__(self, runner: AnalysisRunner) -> None:
        self.runner = runner
        self.buffer = bytearray()
        self.stderr = bytearray()
        self.current: _Request | None = None
        self.timer: IDelayedCall | None = None
        self.documents = 0
        self.rss = 0
        self.kill_reason = ""  # set when the parent kills the worker: what its document gets
        self.retiring = False
        self.ready = False  # its first line ("ready") came
        self.timeout = 0.0  # the current document's time limit
        self.ended: Deferred[None] = Deferred()

    @property
    def pid(self) -> int | None:
        return getattr(self.transport, "pid", None)

    def send(self, request: _Request) -> None:
        timeout = self.runner.timeout(request.path) if self.runner.timeout is not None else None
        line, self.timeout = worker_request(request.path, declared_format=request.declared_format,
                                            timeout=timeout, page_cap=self.runner.page_cap)  # fmt: skip
        self.current = request
        request.sent += 1
        self.stderr.clear()
        self._start_clock()
        self.transport.write(line)  # type: ignore[union-attr]

    def _start_clock(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if self.ready:
            self.timer = self.runner.reactor.callLater(self.timeout, self.kill, "time limit")
        else:
            self.timer = self.runner.reactor.callLater(STARTUP, self.kill, "crashed: the analyser did not start")

    def finish(self) -> None:
        """No more documents: the worker exits at the end of its input (killed after GRACE)."""
        self.retiring = True
        try:
            self.transport.closeStdin()  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - already gone
            pass
        if self.timer is None or not self.timer.active():
            self.timer = self.runner.reactor.callLater(GRACE, self.kill, "")

    def kill(self, reason: str) -> None:
        self.kill_reason = self.kill_reason or reason
        try:
            self.transport.signalProcess("KILL")  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - already gone
            pass

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        while not self.ready or self.current is not None:
            end = self.buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self.buffer[:end])
            del self.buffer[:end + 1]
            if self.ready:
                self._replied(line)
            else:
                self.ready = True
                if self.current is not None:
                    self._start_clock()
        if len(self.buffer) > MAX_OUTPUT or (self.buffer and self.ready and self.current is None):
            self.kill("crashed: result too large" if self.current is not None else "crashed: unexpected output")
            self.buffer.clear()

    def errReceived(self, data: bytes) -> None:
        self.stderr += data
        if len(self.stderr) > MAX_STDERR:
            del self.stderr[:-MAX_STDERR]

    def _replied(self, line: bytes) -> None:
        request, self.current = self.current, None
        assert request is not None
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        stats, self.rss = reply_from(line, declared_format=request.declared_format)
        self.documents += 1
        self.runner._done(self, request, stats)

    def processEnded(self, reason: Failure) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        request, self.current = self.current, None
        stats = None
        if request is not None and self._exited_cleanly(reason) and request.sent < 2 and not self.runner.stopping:
            self.runner._queue.appendleft(request)  # the worker left before reading it: send it again
            request = None
        elif request is not None:
            stats = self._failed(request, reason)
            if not self.runner.stopping:
                log.warn("Analysis worker {pid} ended on {path}: {reason}", pid=self.pid, path=str(request.path),
                         reason=stats.reason)  # fmt: skip
        self.runner._ended(self, request, stats)
        self.ended.callback(None)

    def _exited_cleanly(self, reason: Failure) -> bool:
        return not self.kill_reason and not (isinstance(reason.value, ProcessTerminated)
                                             and (reason.value.signal or reason.value.exitCode))

    def _failed(self, request: _Request, reason: Failure) -> DocumentStats:
        if self.kill_reason:
            return unknown(request.fmt, self.kill_reason)
        value = reason.value
        code = 0
        if isinstance(value, ProcessTerminated):
            code = -value.signal if value.signal else (value.exitCode or 0)
        if code == -signal.SIGXCPU:
            return unknown(request.fmt, "time limit")
        if b"MemoryError" in self.stderr:
            return unknown(request.fmt, "memory limit")
        if code < 0:
            return unknown(request.fmt, f"crashed (signal {-code})")
        return unknown(request.fmt, f"crashed (exit {code})")


class AnalysisRunner:
    """Analyses documents in at most `workers` worker processes, in the order they were asked for.

    A worker is replaced after `max_documents` documents, or when its resident memory after a
    document passes `max_rss` bytes, so that what one document leaves behind (caches, leaks) stays
    bounded. `timeout` gives a document's time limit (default: drivers.sandbox.default_timeout of
    its size)."""

    def __init__(self, reactor: Any, *, workers: int = 1, memory_limit: int = 1 << 30, page_cap: int = 100_000,
                 max_documents: int = 200, max_rss: int = 256 << 20,
                 timeout: Callable[[Path], float] | None = None) -> None:  # fmt: skip
        self.reactor = reactor
        self.workers = max(1, workers)
        self.memory_limit = memory_limit
        self.page_cap = page_cap
        self.max_documents = max_documents
        self.max_rss = max_rss
        self.timeout = timeout
        self._queue: deque[_Request] = deque()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._processes: set[_Worker] = set()  # every live worker, retiring ones included
        self.stopping = False
        self.spawned = 0  # workers started so far (for tests and the log)

    def analyze(self, path: Path, declared_format: str | None = None) -> Deferred[DocumentStats]:
        request = _Request(Path(path), declared_format)
        if self.stopping:
            request.done.callback(unknown(request.fmt, "the spooler stopped before the analysis"))
            return request.done
        self._queue.append(request)
        self._pump()
        return request.done

    @property
    def backlog(self) -> int:
        """Documents waiting for a worker."""
        return len(self._queue)

    @property
    def busy(self) -> int:
        """Documents being analysed now."""
        return len(self._busy)

    def pids(self) -> list[int]:
        """The process ids of the live workers."""
        return [pid for pid in (worker.pid for worker in self._processes) if pid is not None]

    def _pump(self) -> None:
        while self._queue and not self.stopping:
            if self._idle:
                worker = self._idle.pop()
            elif len(self._idle) + len(self._busy) < self.workers:
                worker = self._spawn()
                if worker is None:
                    return
            else:
                return
            self._busy.add(worker)
            worker.send(self._queue.popleft())

    def _spawn(self) -> _Worker | None:
        command, env = worker_command(memory_limit=self.memory_limit)
        worker = _Worker(self)
        try:
            self.reactor.spawnProcess(worker, command[0], command, env=env)
        except OSError as error:
            request = self._queue.popleft()
            request.done.callback(unknown(request.fmt, f"crashed: cannot start the analyser: {error}"))
            self.reactor.callLater(0, self._pump)  # the next document tries again
            return None
        self.spawned += 1
        self._processes.add(worker)
        log.debug("Analysis worker {pid} started", pid=worker.pid)  # (not a spool-log event)
        return worker

    def _done(self, worker: _Worker, request: _Request, stats: DocumentStats) -> None:
        self._busy.discard(worker)
        if self.stopping:
            worker.finish()
        elif stats.reason == "memory limit":
            worker.finish()  # it leaves by itself: its heap may be damaged
        elif worker.documents >= self.max_documents or worker.rss > self.max_rss:
            log.info("Analysis worker {pid} replaced after {documents} document(s), RSS {rss} bytes",
                     pid=worker.pid, documents=worker.documents, rss=worker.rss)  # fmt: skip
            worker.finish()
        else:
            self._idle.append(worker)
        request.done.callback(stats)
        self._pump()

    def _ended(self, worker: _Worker, request: _Request | None, stats: DocumentStats | None) -> None:
        self._busy.discard(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        self._processes.discard(worker)
        if request is not None and stats is not None:
            request.done.callback(stats)
        self._pump()

    def stop(self) -> Deferred[None]:
        """Stop the workers: idle ones at the end of their input, busy ones killed (their documents
        get "unknown"). Fires once every worker process has ended and been reaped."""
        self.stopping = True
        while self._queue:
            request = self._queue.popleft()
            request.done.callback(unknown(request.fmt, "the spooler stopped before the analysis"))
        ended = [worker.ended for worker in self._processes]
        for worker in list(self._processes):
            if worker.current is not None:
                worker.kill("the spooler stopped during the analysis")
            else:
                worker.finish()
        self._idle.clear()
        return gatherResults(ended).addCallback(lambda _: None)


def _sum_known(values: list[int | None]) -> int | None:
    return None if any(value is None for value in values) else sum(v for v in values if v is not None)


def job_analysis(documents: list[DocumentStats], *, copies: int | None, sides: str | None,
                 number_up: int = 1) -> dict[str, Any]:
    """The job's figures from its documents' statistics and its own options (copies, sides): the
    rules live in drivers.combine; this only adds the documents up. The job's record and
    `spooler analyze` both take their figures from here."""
    options = JobOptions(copies=copies, sides=sides, number_up=number_up)
    per_document = [combine(document, options) for document in documents]
    ok = all(document.status == "ok" for document in documents)
    sizes: dict[str, int] = {}
    for stats in per_document:
        for name, count in stats.sizes.items():
            sizes[name] = sizes.get(name, 0) + count
    reasons = [f"{document.format}: {document.reason}" for document in documents if document.reason]
    return {
        "status": "ok" if ok else "unknown",
        "reason": "; ".join(reasons),
        "pages": sum(s.pages for s in per_document),
        "copies": max((s.copies for s in per_document), default=copies or 1),
        "sides": per_document[0].sides if per_document else (sides or "one-sided"),
        "impressions": sum(s.impressions for s in per_document),
        "sheets": sum(s.sheets for s in per_document),
        # None (unknown) as soon as one document's colour is unknown: never counted as mono.
        "color_impressions": _sum_known([s.color_impressions for s in per_document]),
        "mono_impressions": _sum_known([s.mono_impressions for s in per_document]),
        "sizes": sizes,
        # Per-page details stay out of the job's record (a 1000-page job would bloat it).
        "documents": [{k: v for k, v in document.to_dict().items() if k != "page_info"} for document in documents],
    }
