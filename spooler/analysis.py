"""Page statistics of every job: each document is analysed by drivers/ in a child process that the
reactor spawns (with time and memory limits, killed at the time limit or when the spooler stops), a
few at a time, while the job goes on printing. A document that cannot be analysed gives "unknown"
with a reason; analysis never delays, blocks or fails a job."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.error import ProcessTerminated
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from drivers import JobOptions, combine
from drivers.sandbox import analysis_command, result_from
from drivers.stats import DocumentStats, unknown

log = Logger(namespace="spooler.analysis")

#: Bytes of the child's output kept (its result is one JSON line).
MAX_OUTPUT = 4 * 1024 * 1024


class _Child(ProcessProtocol):
    def __init__(self, done: Deferred[DocumentStats], declared_format: str | None) -> None:
        self.done = done
        self.declared_format = declared_format
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.timer: IDelayedCall | None = None
        self.killed_for_time = False

    def outReceived(self, data: bytes) -> None:
        if len(self.stdout) < MAX_OUTPUT:
            self.stdout += data

    def errReceived(self, data: bytes) -> None:
        if len(self.stderr) < MAX_OUTPUT:
            self.stderr += data

    def kill(self) -> None:
        try:
            self.transport.signalProcess("KILL")  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - already gone
            pass

    def processEnded(self, reason: Failure) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        value = reason.value
        code = 0
        if isinstance(value, ProcessTerminated):
            code = -value.signal if value.signal else (value.exitCode or 0)
        fmt = self.declared_format or "application/octet-stream"
        if self.killed_for_time:
            stats = unknown(fmt, "time limit")
        else:
            stats = result_from(code, bytes(self.stdout), bytes(self.stderr), declared_format=self.declared_format)
        self.done.callback(stats)


class AnalysisRunner:
    """Runs at most `workers` analyses at once, in the order they were asked for."""

    def __init__(self, reactor: Any, *, workers: int = 1, memory_limit: int = 1 << 30, page_cap: int = 100_000) -> None:
        self._reactor = reactor
        self._semaphore = DeferredSemaphore(workers)
        self._memory_limit = memory_limit
        self._page_cap = page_cap
        self._children: set[_Child] = set()
        self._stopping = False

    def analyze(self, path: Path, declared_format: str | None = None) -> Deferred[DocumentStats]:
        return self._semaphore.run(self._spawn, path, declared_format)

    def _spawn(self, path: Path, declared_format: str | None) -> Deferred[DocumentStats]:
        done: Deferred[DocumentStats] = Deferred()
        fmt = declared_format or "application/octet-stream"
        if self._stopping:
            done.callback(unknown(fmt, "the spooler stopped before the analysis"))
            return done
        command, env, timeout = analysis_command(path, declared_format=declared_format,
                                                 memory_limit=self._memory_limit, page_cap=self._page_cap)  # fmt: skip
        child = _Child(done, declared_format)
        self._children.add(child)
        done.addBoth(lambda result: (self._children.discard(child), result)[1])
        try:
            self._reactor.spawnProcess(child, command[0], command, env=env, path=os.getcwd())
        except OSError as error:
            self._children.discard(child)
            done.callback(unknown(fmt, f"crashed: cannot start the analyser: {error}"))
            return done

        def out_of_time() -> None:
            child.killed_for_time = True
            child.kill()

        child.timer = self._reactor.callLater(timeout, out_of_time)
        return done

    def stop(self) -> None:
        """Kill the analyses under way (their jobs are analysed again at the next start)."""
        self._stopping = True
        for child in list(self._children):
            child.kill()


def job_analysis(documents: list[DocumentStats], *, copies: int, sides: str | None) -> dict[str, Any]:
    """The job's figures from its documents' statistics and its own options (copies, sides): the
    rules live in drivers.combine; this only adds the documents up."""
    options = JobOptions(copies=copies, sides=sides)
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
        "copies": max((s.copies for s in per_document), default=copies),
        "sides": per_document[0].sides if per_document else (sides or "one-sided"),
        "impressions": sum(s.impressions for s in per_document),
        "sheets": sum(s.sheets for s in per_document),
        "color_impressions": sum(s.color_impressions for s in per_document),
        "mono_impressions": sum(s.mono_impressions for s in per_document),
        "sizes": sizes,
        # Per-page details stay out of the job's record (a 1000-page job would bloat it).
        "documents": [{k: v for k, v in document.to_dict().items() if k != "page_info"} for document in documents],
    }
