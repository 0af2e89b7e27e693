"""The accounting outbox: sends the stored accounting records to the central server (`POST accounting`,
docs/central-api.md) in batches, oldest first, and keeps the audit of every upload.

Exactly once at the server: a record's id is stable (spooler.accounting.record_id) and the server
stores each id once, so a batch cut off (crash, timeout, reset) is simply sent again; a record is
marked sent only in the transaction that records the server's 200. Records older than
`[accounting] max_age` that were never sent stay local (reported by `spooler status` and
`spooler outbox`) and are never sent. A record whose page figures are still being counted waits,
at most `analysis_wait`, then goes with its figures "unknown".

It never slows printing down: it runs on the reactor with one upload at a time, short SQLite
transactions (a select of one batch, one update per answer), and backs off while the API fails (it
does not wait for the print queue's health: the API may be up while the queue is not; when the
dispatcher sees the server come back, `kick` forgets the backoff and tries at once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from spooler.central.base import capabilities_of
from spooler.centralapi import ACCOUNTING, CentralApiDown, CentralApiInDoubt, CentralApiRefused
from spooler.config import AccountingConfig
from spooler.store.database import JobStore

log = Logger(namespace="spooler.outbox")


class _Api(Protocol):
    """What the outbox needs of spooler.centralapi.CentralApi."""

    def call(self, method: str, path: str, body: Any = None, *, deadline: Any) -> Deferred[Any]:
        """`body` is JSON already encoded (bytes); answers the decoded JSON of a 2xx."""
        ...


def retry_delay(failures: int, *, initial: float, maximum: float) -> float:
    """Seconds before the next upload after `failures` failed ones in a row: initial, 2x, ... capped."""
    if failures <= 0:
        return 0.0
    return min(maximum, initial * 2 ** min(failures - 1, 32))


def _count(answer: Any, key: str) -> int | None:
    value = answer.get(key) if isinstance(answer, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class Outbox:
    def __init__(
        self,
        *,
        store: JobStore,
        api: _Api,
        clock: IReactorTime,
        config: AccountingConfig,
        server_usable: Callable[[], bool] = lambda: True,
    ) -> None:
        self._store = store
        self._api = api
        self._clock = clock
        self._config = config
        self._server_usable = server_usable
        self._idempotent = capabilities_of(api).accounting_import == "idempotent"
        # A server that does not deduplicate gets one record per call: a lost answer leaves one record in doubt.
        self._batch = config.batch_size if self._idempotent else 1
        self._limit = self._batch
        self._timer: IDelayedCall | None = None
        self._inflight: Deferred[Any] | None = None
        self._running = False
        self.failures = 0  # failed uploads in a row
        self.last_error = ""
        self.sent_since_start = 0

    # -- control ---------------------------------------------------------------------------------

    def start(self) -> None:
        now = self._clock.seconds()
        interrupted = self._store.interrupted_uploads(now)
        self._running = True
        counts = self._store.outbox_counts(not_before=now - self._config.max_age)
        log.info(
            "Accounting outbox: {waiting} record(s) to send, {expired} too old to send (kept locally),"
            " {interrupted} upload(s) cut off by the last stop",
            spool_event="outbox_started", interrupted=interrupted, **counts,
        )  # fmt: skip
        self._schedule(0)

    def stop(self) -> None:
        """Stop uploading; an upload under way is cut off (its records stay unsent and go again)."""
        self._running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._inflight is not None:
            self._inflight.cancel()

    def reconfigure(self, config: AccountingConfig) -> None:
        """A reload: the new batch size, age limit, intervals and backoff apply from the next upload."""
        self._config = config
        self._limit = config.batch_size

    def kick(self) -> None:
        """Try now (the server just came back): forget the backoff."""
        self.failures = 0
        if self._running and self._inflight is None:
            self._schedule(0)

    # -- the loop ----------------------------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if not self._running:
            return
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= self._clock.seconds() + delay:
                return
            self._timer.cancel()
        self._timer = self._clock.callLater(delay, self._run)

    def _run(self) -> None:
        self._timer = None
        if not self._running or self._inflight is not None:
            return
        try:
            self._next_upload()
        except Exception:  # noqa: BLE001 - a store error (disk full, ...) must not end the loop
            log.failure("Accounting outbox: cannot prepare an upload", spool_event="replication_error")
            self._schedule(self._config.retry_max)

    def _next_upload(self) -> None:
        now = self._clock.seconds()
        wait = self._config.analysis_wait
        self._store.give_up_pending(now - wait, f"the page figures were not in {wait:.0f}s after the job ended")
        rows = self._store.records_to_send(self._limit, not_before=now - self._config.max_age)
        if not rows:
            self._schedule(self._config.interval)
            return
        job_ids = [job_id for job_id, _ in rows]
        # The stored bodies are JSON objects already: joined as they are (no decoding and encoding again).
        payload = b'{"records": [' + ",".join(body for _, body in rows).encode() + b"]}"
        upload = self._store.begin_upload(job_ids, now)
        attempt = maybeDeferred(self._api.call, "POST", "accounting", payload, deadline=ACCOUNTING)
        self._inflight = attempt
        attempt.addCallbacks(self._sent, self._failed, callbackArgs=(upload, job_ids, now),
                             errbackArgs=(upload, job_ids))  # fmt: skip
        attempt.addErrback(self._bug, upload)
        attempt.addBoth(self._over)

    def _over(self, _: object) -> None:
        self._inflight = None

    def _sent(self, answer: Any, upload: int, job_ids: list[int], started: float) -> None:
        now = self._clock.seconds()
        accepted, duplicates = _count(answer, "accepted"), _count(answer, "duplicates")
        if accepted is None or duplicates is None or accepted + duplicates != len(job_ids):
            # A 200 that does not account for the batch: not a proof the records are stored.
            self._retry(upload, f"the answer {str(answer)[:200]} does not account for {len(job_ids)} records")
            return
        self._store.finish_upload(upload, job_ids, now, accepted=accepted, duplicates=duplicates)
        self.failures, self.last_error = 0, ""
        self.sent_since_start += len(job_ids)
        log.info(
            "Accounting: {records} record(s) replicated in upload {upload} ({accepted} new, {duplicates} already"
            " at the server)",
            spool_event="records_replicated", upload=upload, records=len(job_ids), accepted=accepted,
            duplicates=duplicates, first_job_id=job_ids[0], last_job_id=job_ids[-1],
            seconds=round(now - started, 3),
        )  # fmt: skip
        self._schedule(0)  # more may be waiting

    def _failed(self, failure: Failure, upload: int, job_ids: list[int]) -> None:
        now = self._clock.seconds()
        if failure.check(CancelledError) or not self._running:
            self._store.fail_upload(upload, now, "interrupted", "the spooler stopped during the upload")
            return
        if failure.check(CentralApiRefused):
            error: CentralApiRefused = failure.value  # type: ignore[assignment]
            if error.status == 413 and len(job_ids) > 1:
                self._limit = max(1, len(job_ids) // 2)
                self._store.fail_upload(upload, now, "refused", f"413 {error.message}; batches of {self._limit} now")
                self._schedule(0)
                return
            # A 400 that names a record ("records[0]...") refuses that record: the batch is halved until
            # it is alone, then it is set aside. Any other 400 is our bug: retried later, nothing set aside.
            if error.status == 400 and (len(job_ids) > 1 or error.message.startswith("records[")):
                self._store.fail_upload(upload, now, "refused", f"400 {error.message}")
                if len(job_ids) > 1:
                    self._limit = max(1, len(job_ids) // 2)  # find the record it refuses
                else:
                    self._store.reject_record(job_ids[0], error.message)
                    self._limit = self._batch
                    log.error(
                        "Accounting: the server refuses the record of job {job_id}: {error}; it is kept locally",
                        spool_event="record_rejected", job_id=job_ids[0], error=error.message,
                    )  # fmt: skip
                self._schedule(0)
                return
        if failure.check(CentralApiInDoubt) and not self._idempotent:
            # Sent, no answer, and the server does not deduplicate: sending it again could count the job
            # twice. It waits for an admin (`spooler outbox --resolve`); the others go on.
            detail = failure.getErrorMessage()
            for job_id in job_ids:
                self._store.mark_in_doubt(job_id, detail)
            log.error(
                "Accounting: the upload of job {job_id}'s record got no answer and the server does not"
                " deduplicate; it is kept in doubt for reconciliation (spooler outbox)",
                spool_event="record_in_doubt", job_id=job_ids[0], error=detail,
            )  # fmt: skip
            self._retry(upload, detail, outcome="in doubt")
            return
        failure.trap(CentralApiDown, CentralApiRefused)
        self._retry(upload, failure.getErrorMessage())

    def _retry(self, upload: int, detail: str, outcome: str = "failed") -> None:
        self.failures += 1
        self.last_error = detail
        delay = retry_delay(self.failures, initial=self._config.retry_initial, maximum=self._config.retry_max)
        self._store.fail_upload(upload, self._clock.seconds(), outcome, detail)
        log.warn(
            "Accounting upload {upload} failed: {error}; next attempt in {delay:.0f}s",
            spool_event="replication_failed", upload=upload, error=detail, delay=delay, failures=self.failures,
        )  # fmt: skip
        self._schedule(delay)

    def _bug(self, failure: Failure, upload: int) -> None:
        log.failure("Accounting upload {upload}: unexpected error", failure, spool_event="replication_error",
                    upload=upload)  # fmt: skip
        self._store.fail_upload(upload, self._clock.seconds(), "failed", f"internal error: {failure.getErrorMessage()}")
        self._schedule(self._config.retry_max)

    # -- what status shows ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = self._clock.seconds()
        counts = self._store.outbox_counts(not_before=now - self._config.max_age)
        last = self._store.uploads(1)
        if self._inflight is not None:
            state = "sending"
        elif self.failures:
            state = "retrying" if self._server_usable() else "waiting for the server"
        else:
            state = "idle"
        return {
            **counts,
            "state": state,
            "failures_in_a_row": self.failures,
            "last_error": self.last_error,
            "next_attempt_at": self._timer.getTime() if self._timer is not None and self._timer.active() else None,
            "batch_size": self._limit,
            "max_age": self._config.max_age,
            "last_upload": last[0] if last else None,
        }
