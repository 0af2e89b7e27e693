"""The `file://` backend: a folder that stands in for a printer (the default device), written durably.

Each job becomes `job-{id:06d}-{uuid8}.prn` (its documents concatenated) beside a `.json` sidecar
with the job's user, name and options, and one line in `deliveries.log`. The data file's rename is
the commit point: a retry that finds it in place reports the job as already delivered, so a restart
never delivers a job twice.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from twisted.internet.defer import Deferred

from spooler.delivery.base import DeliveryFile, DeliveryReceipt, Journal
from spooler.model import DeliveryError, Job
from spooler.store.spoolfiles import RunInThread, commit_file, fsync_directory

COPY_CHUNK = 1024 * 1024


class FileSinkBackend:
    def __init__(self, directory: Path, run_in_thread: RunInThread) -> None:
        self.directory = directory
        self.uri = directory.as_uri()
        self._run_in_thread = run_in_thread

    @staticmethod
    def stem(job: Job) -> str:
        return f"job-{job.job_id:06d}-{job.uuid[:8]}"

    def deliver(self, job: Job, files: list[DeliveryFile], journal: Journal | None = None) -> Deferred[DeliveryReceipt]:
        return self._run_in_thread(self._deliver, job, files)

    def probe(self) -> Deferred[None]:
        return self._run_in_thread(self._probe)

    def _probe(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DeliveryError(f"cannot use {self.directory}: {error.strerror}", retryable=True) from None
        if not os.access(self.directory, os.W_OK):
            raise DeliveryError(f"cannot write to {self.directory}", retryable=True)

    def recover(self, job: Job, remote_job_id: str | None) -> Deferred[DeliveryReceipt | None]:
        def look() -> DeliveryReceipt | None:
            data_path = self.directory / (self.stem(job) + ".prn")
            return DeliveryReceipt(f"already in {data_path}", already_delivered=True) if data_path.exists() else None

        return self._run_in_thread(look)

    def _deliver(self, job: Job, files: list[DeliveryFile]) -> DeliveryReceipt:
        try:
            return self._write(job, files)
        except FileNotFoundError as error:
            if error.filename and str(error.filename).startswith(str(self.directory)):
                raise DeliveryError(f"cannot write to {self.directory}: {error.strerror}", retryable=True) from None
            raise DeliveryError(f"a spool file of the job is missing: {error.filename}", retryable=False) from None
        except OSError as error:
            raise DeliveryError(f"cannot write to {self.directory}: {error.strerror}", retryable=True) from None

    def _write(self, job: Job, files: list[DeliveryFile]) -> DeliveryReceipt:
        self.directory.mkdir(parents=True, exist_ok=True)
        data_path = self.directory / (self.stem(job) + ".prn")
        if data_path.exists():
            return DeliveryReceipt(f"already in {data_path}", already_delivered=True)
        sidecar = {
            "job_id": job.job_id,
            "uuid": job.uuid,
            "user": job.user,
            "host": job.host,
            "name": job.name,
            "protocol": job.protocol,
            "document_format": job.document_format,
            "copies": job.copies,
            "sides": job.sides,
            "size": job.size,
            "documents": [f.document.size for f in files],
            "created_at": job.created_at,
            "delivered_at": time.time(),
        }
        sidecar_tmp = self.directory / (self.stem(job) + ".json.tmp")
        with open(sidecar_tmp, "w", encoding="utf-8") as handle:
            json.dump(sidecar, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(sidecar_tmp, self.directory / (self.stem(job) + ".json"))

        data_tmp = self.directory / (self.stem(job) + ".prn.tmp")
        with open(data_tmp, "wb") as out:
            for delivery_file in files:
                with open(delivery_file.path, "rb") as source:
                    while chunk := source.read(COPY_CHUNK):
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        commit_file(data_tmp, data_path)

        with open(self.directory / "deliveries.log", "a", encoding="utf-8") as journal:
            journal.write(json.dumps({"job_id": job.job_id, "uuid": job.uuid, "file": data_path.name}) + "\n")
            journal.flush()
            os.fsync(journal.fileno())
        fsync_directory(self.directory)
        return DeliveryReceipt(f"written to {data_path}")
