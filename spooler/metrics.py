"""Health and Prometheus metrics of the running spooler, read from the live services at each scrape
(the store, the dispatcher's health trackers, the listeners, the outbox, the analysis workers, the
login cache): nothing is counted twice beside what the services keep, so nothing can drift.

`health(service)` is what `/healthz` answers: "ok", or "degraded" with the reasons (the central
server down, the device unreachable, the spool disk below its floor, accounting uploads failing, a
long analysis backlog, login cache rows that do not open).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

from spooler import __version__
from spooler.model import JobState, Mode
from spooler.status import local_accounting

#: An analysis backlog above this many documents makes the spooler "degraded".
ANALYSIS_BACKLOG_WARNING = 100
#: Failed accounting uploads in a row (with the server up) that make it "degraded".
OUTBOX_FAILURES_WARNING = 3
WAITING_STATES = (JobState.PENDING, JobState.PENDING_HELD, JobState.PROCESSING, JobState.PROCESSING_STOPPED)


def offline_period(service: Any) -> tuple[float, int] | None:
    """(when the outage began, jobs printed offline since) while the central server is down, else None."""
    offline = service.offline_status()
    return (offline["since"], offline["printed_offline"]) if offline is not None else None


def health(service: Any) -> dict[str, Any]:
    """{"status": "ok" | "degraded", "reasons": [...], "mode": ...} of a running SpoolerService."""
    reasons: list[str] = []
    dispatcher = service.dispatcher
    if not service.jobs.accepting():
        reasons.append("the spool disk is below its free-space floor: new jobs are refused")
    outage = offline_period(service)
    if outage is not None:
        since, printed = outage
        detail = dispatcher.server_health.detail
        reasons.append(f"the central server is down since {_iso(since)} ({detail or 'no answer'}): offline, "
                       f"{printed} job(s) printed offline since")  # fmt: skip
    if dispatcher.device.state == "unreachable":
        reasons.append(f"the device is unreachable since {_iso(dispatcher.device.since)}: {dispatcher.device.detail}")
    if dispatcher.paused:
        reasons.append("the printer is paused by an administrator")
    outbox = service.outbox
    if outbox is not None and outbox.failures >= OUTBOX_FAILURES_WARNING and outage is None:
        reasons.append(f"accounting uploads fail ({outbox.failures} in a row): {outbox.last_error}")
    analysis = service.analysis
    if analysis is not None and analysis.backlog > ANALYSIS_BACKLOG_WARNING:
        reasons.append(f"{analysis.backlog} documents wait for their page analysis")
    login = service.login_runtime
    if login is not None and login.cache.unreadable:
        reasons.append(f"{login.cache.unreadable} login cache row(s) do not open with the key file")
    return {"status": "degraded" if reasons else "ok", "reasons": reasons, "mode": dispatcher.mode.value,
            "version": __version__}  # fmt: skip


def _iso(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)) if stamp else "?"


class SpoolerCollector(Collector):
    """Every metric of one running SpoolerService, computed when Prometheus scrapes."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service = self.service
        if service.jobs is None or service.dispatcher is None or service.store is None:
            return
        yield from self._daemon(service)
        yield from self._jobs(service)
        yield from self._health(service)
        yield from self._login(service)
        yield from self._accounting(service)
        yield from self._analysis(service)

    @staticmethod
    def _daemon(service: Any) -> Iterator[Metric]:
        info = InfoMetricFamily("spooler", "The spooler's version and device name")
        info.add_metric([], {"version": __version__, "device": service.config.device.name})
        yield info
        yield GaugeMetricFamily("spooler_start_time_seconds", "When the daemon started (Unix time)",
                                value=service.started_at or 0.0)  # fmt: skip
        connections = GaugeMetricFamily("spooler_connections", "Open client connections by listener",
                                        labels=["listener"])  # fmt: skip
        for name, factory in sorted(service.intake.items()):
            connections.add_metric([name], len(factory.connections))
        yield connections
        room = service.jobs.floor.room()  # the spool's one measure of room (spooler.store.spoolfiles)
        yield GaugeMetricFamily("spooler_spool_free_bytes", "Free space on the spool's disk", value=room.free_bytes)
        yield GaugeMetricFamily("spooler_spool_floor_bytes", "Free space below which new jobs are refused",
                                value=room.floor_bytes)  # fmt: skip
        yield GaugeMetricFamily("spooler_accepting_jobs", "1 while new jobs are accepted (free space above the floor)",
                                value=1.0 if room.accepting else 0.0)  # fmt: skip
        status = health(service)["status"]
        state = StateSetMetricFamily("spooler_health", "ok, or degraded (see /healthz for the reasons)")
        state.add_metric([], {"ok": status == "ok", "degraded": status != "ok"})
        yield state

    @staticmethod
    def _jobs(service: Any) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("spooler_jobs", "Jobs kept in the spool (waiting and, within retention, finished) "
                                 "by queue, state, route and mode", labels=["queue", "state", "route", "mode"])
        depth: dict[str, int] = {queue.name: 0 for queue in service.config.queues}
        for queue, state, route, mode, count in service.store.count_jobs():
            jobs.add_metric([queue, state.keyword, route, mode], count)
            if state in WAITING_STATES:
                depth[queue] = depth.get(queue, 0) + count
        yield jobs
        queue_depth = GaugeMetricFamily("spooler_queue_depth", "Jobs not finished (pending, held, processing) "
                                        "by queue", labels=["queue"])  # fmt: skip
        for queue, count in sorted(depth.items()):
            queue_depth.add_metric([queue], count)
        yield queue_depth
        failures = CounterMetricFamily("spooler_delivery_failures", "Failed delivery attempts since the start, by "
                                       "route, and whether the job is tried again", labels=["route", "retried"])
        attempts = service.dispatcher.failed_attempts
        for route in ("server", "device"):
            for retried in (True, False):
                failures.add_metric([route, "true" if retried else "false"], attempts[(route, retried)])
        yield failures

    @staticmethod
    def _health(service: Any) -> Iterator[Metric]:
        dispatcher = service.dispatcher
        mode = StateSetMetricFamily("spooler_mode", "How jobs are routed: standalone (no central server), online, "
                                    "offline (the central server is down)")  # fmt: skip
        mode.add_metric([], {value.value: dispatcher.mode is value for value in Mode})
        yield mode
        outage = offline_period(service)
        now = service.reactor.seconds()
        yield GaugeMetricFamily("spooler_offline_seconds", "How long the current outage of the central server has "
                                "lasted (0 while online)", value=now - outage[0] if outage else 0.0)  # fmt: skip
        yield GaugeMetricFamily("spooler_offline_printed_jobs", "Jobs printed on the device since the current "
                                "outage began (0 while online)", value=outage[1] if outage else 0)  # fmt: skip
        server = dispatcher.server_health
        if server is not None:
            states = StateSetMetricFamily("spooler_server_health", "The central server's health as the spooler sees it")
            states.add_metric([], {value: server.state == value for value in ("unknown", "up", "down")})
            yield states
            yield GaugeMetricFamily("spooler_server_failures_in_a_row", "Failed probes or forwards of the central "
                                    "server in a row", value=server.failures)  # fmt: skip
            if server.since is not None:
                yield GaugeMetricFamily("spooler_server_health_since_timestamp_seconds", "When the central server's "
                                        "health last changed (Unix time)", value=server.since)  # fmt: skip
            probes = CounterMetricFamily("spooler_server_probes", "Probes of the central server since the start",
                                         labels=["outcome"])  # fmt: skip
            for outcome in ("ok", "failed"):
                probes.add_metric([outcome], dispatcher.probes[outcome])
            yield probes
        device = StateSetMetricFamily("spooler_device_health", "The device's health as the last delivery or probe saw it")
        device.add_metric([], {value: dispatcher.device.state == value for value in ("unknown", "ok", "unreachable")})
        yield device
        yield GaugeMetricFamily("spooler_device_failures_in_a_row", "Failed deliveries to the device in a row",
                                value=dispatcher.device.consecutive_failures)  # fmt: skip

    @staticmethod
    def _login(service: Any) -> Iterator[Metric]:
        runtime = service.login_runtime
        if runtime is None:
            return
        logins = CounterMetricFamily("spooler_logins", "Logins at the device since the start, by outcome: online, "
                                     "offline, or why it was refused", labels=["outcome"])  # fmt: skip
        for outcome, count in sorted(runtime.service.outcomes.items()):
            logins.add_metric([outcome], count)
        yield logins
        status = runtime.status()
        users = GaugeMetricFamily("spooler_login_cache_users", "Users in the offline login cache by state",
                                  labels=["state"])  # fmt: skip
        for state, count in sorted(status["by_state"].items()):
            users.add_metric([state], count)
        yield users
        last = status["last_sync"]
        if last is not None:
            yield GaugeMetricFamily("spooler_login_last_sync_timestamp_seconds", "When the last user sync succeeded "
                                    "(Unix time)", value=last["at"])  # fmt: skip
            yield GaugeMetricFamily("spooler_login_sync_truncated", "1 if the last user sync kept only part of the "
                                    "users assigned to this device", value=1.0 if last["truncated"] else 0.0)
        sharing = status["sharing"]
        if sharing is not None:
            peers = sharing["peers"]
            yield GaugeMetricFamily("spooler_share_peers", "Peers this spooler shares login entries with",
                                    value=len(peers))  # fmt: skip
            exchange = GaugeMetricFamily("spooler_share_last_exchange_timestamp_seconds", "When the last exchange "
                                         "with a peer worked (Unix time)", labels=["peer"])  # fmt: skip
            reachable = GaugeMetricFamily("spooler_share_peer_up", "1 if the last exchange with a peer worked",
                                          labels=["peer"])  # fmt: skip
            for record in peers:
                if record["at"] is not None:  # an exchange was tried
                    if record["last_ok"] is not None:
                        exchange.add_metric([record["peer"]], record["last_ok"])
                    reachable.add_metric([record["peer"]], 1.0 if record["error"] is None else 0.0)
            yield exchange
            yield reachable

    @staticmethod
    def _accounting(service: Any) -> Iterator[Metric]:
        outbox = service.outbox
        status = dict(outbox.status()) if outbox is not None else \
            local_accounting(service.config, service.store, daemon_running=True) or {}  # fmt: skip
        records = GaugeMetricFamily("spooler_accounting_records", "Accounting records by where they stand: sent, "
                                    "waiting (the outbox backlog), pending_analysis, expired, rejected",
                                    labels=["status"])  # fmt: skip
        for key in ("sent", "waiting", "pending_analysis", "expired", "rejected"):
            records.add_metric([key], status.get(key, 0))
        yield records
        if service.outbox is not None:
            yield GaugeMetricFamily("spooler_accounting_upload_failures_in_a_row", "Failed accounting uploads in a "
                                    "row", value=service.outbox.failures)  # fmt: skip

    @staticmethod
    def _analysis(service: Any) -> Iterator[Metric]:
        analysis = service.analysis
        if analysis is None:
            return
        yield GaugeMetricFamily("spooler_analysis_backlog", "Documents waiting for their page analysis",
                                value=analysis.backlog)  # fmt: skip
        yield GaugeMetricFamily("spooler_analysis_busy", "Documents being analysed now", value=analysis.busy)


def registry_for(service: Any) -> CollectorRegistry:
    """A registry of its own (not the process-wide default) with the spooler's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SpoolerCollector(service))
    return registry


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of every metric and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
