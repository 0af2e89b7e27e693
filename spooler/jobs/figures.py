"""The page figures of every job: each job's documents are analysed in the background
(spooler.jobs.analysis, in worker processes) while it prints, and the figures that land together
are written to the jobs' records in one transaction (not one fsync per job), then told to the spool
log (`job_analyzed`). Printing never waits for this."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from spooler.jobs.analysis import AnalysisRunner, job_analysis
from spooler.model import Job, JobNotFound
from spooler.store.database import JobStore
from spooler.store.documents import SpoolDocuments

log = Logger(namespace="spooler.jobs")

#: Page figures that land within this many seconds are written in one transaction.
FIGURES_WRITE_DELAY = 0.05


class JobFigures:
    def __init__(self, store: JobStore, documents: SpoolDocuments, analysis: AnalysisRunner,
                 clock: IReactorTime) -> None:  # fmt: skip
        self._store = store
        self._documents = documents
        self._analysis = analysis
        self._clock = clock
        #: Page figures that have landed and wait to be written, by job id, with who waits for them:
        #: written together, one transaction per FIGURES_WRITE_DELAY (not one fsync per job).
        self._figures: dict[int, tuple[dict[str, Any], list[Deferred[Any]]]] = {}
        self._figures_write: IDelayedCall | None = None

    def analyze_later(self, job_id: int) -> None:
        """Count the job's pages in the background; the figures land in its record (attributes
        "analysis") and the spool log. Printing never waits for this."""
        self._analyze(job_id).addErrback(
            lambda failure: log.failure("Job {job_id}: analysis failed", failure, job_id=job_id)
        )

    @inlineCallbacks
    def _analyze(self, job_id: int) -> Any:
        documents = []
        yield self._documents.files(job_id)
        for document in self._store.documents(job_id):
            documents.append((yield self._analysis.analyze(self._documents.path(document),
                                                           document.document_format)))  # fmt: skip
        try:
            current = self._store.get(job_id)
        except JobNotFound:
            return None  # purged meanwhile
        figures = job_analysis(documents, copies=current.copies, sides=current.sides)
        written: Deferred[Any] = Deferred()
        _older, waiting = self._figures.get(job_id, (figures, []))
        waiting.append(written)
        self._figures[job_id] = (figures, waiting)
        if self._figures_write is None:
            self._figures_write = self._clock.callLater(FIGURES_WRITE_DELAY, self.write_figures)
        yield written
        return figures

    def write_figures(self) -> None:
        """Write the page figures that have landed, all in one transaction (each job read and written
        in this one reactor turn, so no other change of the job is overwritten), then tell the spool
        log and whoever waits for them."""
        if self._figures_write is not None and self._figures_write.active():
            self._figures_write.cancel()
        self._figures_write = None
        landed, self._figures = self._figures, {}
        if not landed:
            return
        updated: list[tuple[Job, dict[str, Any]]] = []
        try:
            for job_id, (figures, _waiting) in landed.items():
                try:
                    current = self._store.get(job_id)
                except JobNotFound:
                    continue  # purged meanwhile
                updated.append((current.evolve(attributes=current.attributes | {"analysis": figures}), figures))
            self._store.update_jobs([job for job, _ in updated])
        except Exception:
            failure = Failure()
            for _figures, waiting in landed.values():
                for deferred in waiting:
                    deferred.errback(failure)
            return
        for job, figures in updated:
            log.info(
                "Job {job_id}: {pages} page(s), {impressions} impression(s) ({color} colour, {mono} mono), "
                "{sheets} sheet(s){note}",
                spool_event="job_analyzed", job_id=job.job_id, user=job.user, status=figures["status"],
                pages=figures["pages"], impressions=figures["impressions"], color=figures["color_impressions"],
                mono=figures["mono_impressions"], sheets=figures["sheets"], sizes=figures["sizes"],
                note=f"; unknown: {figures['reason']}" if figures["status"] != "ok" else "",
            )  # fmt: skip
        for _figures, waiting in landed.values():
            for deferred in waiting:
                deferred.callback(None)
