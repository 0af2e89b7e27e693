"""The data of a job's documents: where each one's spool file is, and the one way to have them all
as files (`files`): a document stored inline in the database gets its spool file, a copy written off
the reactor thread, when delivery or page analysis first needs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks

from spooler.model import Document
from spooler.store.database import JobStore
from spooler.store.spoolfiles import RunInThread, write_copy


class SpoolDocuments:
    def __init__(self, store: JobStore, spool_dir: Path, incoming_dir: Path, run_in_thread: RunInThread) -> None:
        self._store = store
        self._spool_dir = spool_dir
        self._incoming_dir = incoming_dir
        self._run_in_thread = run_in_thread

    def path(self, document: Document) -> Path:
        return self._spool_dir / document.file_name

    @inlineCallbacks
    def files(self, job_id: int) -> Any:
        """Fires with the spool file paths of the job's documents, once each exists. A document
        stored inline gets its file now; a document whose data is gone keeps its missing path
        (delivery reports it)."""
        paths = []
        for document in self._store.documents(job_id):
            path = self.path(document)
            if not path.exists():
                data = self._store.inline_data(job_id, document.number)
                if data is not None:
                    yield self._run_in_thread(write_copy, self._incoming_dir, path, data)
            paths.append(path)
        return paths
