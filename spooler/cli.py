"""The `spooler` command: `serve` runs the daemon; the other commands inspect and steer it.

`jobs`, `show`, `status` and `log` also work while the daemon is stopped (they read the store and
the spool log and say the daemon is down), as do `stats`, `report` and `outbox`, which always read the
accounting records from the store, read-only; `cancel`, `hold`, `release` and `flush` go through the
daemon's admin socket. Errors are one line on stderr and a non-zero exit: 1 for a failed request,
2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

from spooler import __version__
from spooler.config import Config, load_config
from spooler.model import ConfigError, JobNotFound, JobState, SpoolerError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class DaemonDown(CommandError):
    pass


# -- talking to the daemon -------------------------------------------------------------------------


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self._path))
        self.sock = sock


def socket_request(socket_path: Path, method: str, path: str, body: dict[str, Any] | None = None, *,
                   peer: str = "the spooler", timeout: float = 30.0) -> Any:  # fmt: skip
    """One JSON request over HTTP on a UNIX socket (the admin socket, the reference server's control
    socket); the decoded answer. Raises DaemonDown when nothing listens there, CommandError otherwise."""
    connection = _UnixHTTPConnection(socket_path, timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"content-type": "application/json"} if payload is not None else {}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        data = response.read()
    except (FileNotFoundError, ConnectionRefusedError):
        raise DaemonDown(f"{peer} is not running (no socket at {socket_path})") from None
    except PermissionError:
        raise CommandError(f"permission denied on {socket_path}: this needs the user {peer} runs as") from None
    except (OSError, http.client.HTTPException) as error:
        raise CommandError(f"cannot talk to {peer} at {socket_path}: {error}") from None
    finally:
        connection.close()
    try:
        decoded = json.loads(data)
    except ValueError:
        raise CommandError(f"{peer} sent a response that is not JSON (HTTP {response.status})") from None
    if response.status != 200:
        raise CommandError(decoded.get("error", f"HTTP {response.status}"))
    return decoded


def admin_request(config: Config, method: str, path: str, body: dict[str, Any] | None = None,
                  timeout: float = 30.0) -> Any:  # fmt: skip
    return socket_request(config.admin_socket, method, path, body, peer="the spooler", timeout=timeout)


def open_store(config: Config) -> Any:
    from spooler.store.database import JobStore

    try:
        return JobStore.open_readonly(config.database_path)
    except FileNotFoundError:
        raise CommandError(f"no spool database in {config.state_dir} (has `spooler serve` ever run there?)") from None


def daemon_running(config: Config) -> bool:
    from spooler.service import StateDirLock

    return StateDirLock.is_held(config.lock_path)


# -- output ----------------------------------------------------------------------------------------


def _when(stamp: float | None) -> str:
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S") if stamp else "-"


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in [headers, *rows]]  # fmt: skip
    return "\n".join(lines)


def _print_json(out: IO[str], value: Any) -> None:
    out.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def _job_rows(jobs: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [str(j["job_id"]), j["state"], j["user"], j["name"][:40], _size(j["size"]), j["document_format"],
         j["protocol"], _when(j["created_at"]), (j["message"] or j["reason"])[:60]]  # fmt: skip
        for j in jobs
    ]


# -- commands --------------------------------------------------------------------------------------


def cmd_serve(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from twisted.internet import reactor
    from twisted.internet.error import CannotListenError
    from twisted.logger import globalLogBeginner

    from spooler.service import SpoolerService, handle_signals
    from spooler.spoollog import LevelFilter, SpoolLogObserver, TextObserver, on_journal
    from spooler.systemd import Notifier

    os.umask(0o077)  # spool data, the database and logs are for the spooler's user only
    try:
        spool_log = SpoolLogObserver(config.spool_log_path, max_size=config.log.spool_log_max_size,
                                     keep=config.log.spool_log_keep)  # fmt: skip
    except OSError as error:
        raise CommandError(f"cannot open the spool log in {config.log_dir}: {error.strerror}") from None
    levels = LevelFilter(config.log.level)
    text = TextObserver(err, journal=on_journal(err))  # under systemd: priorities for journalctl -p
    globalLogBeginner.beginLoggingTo([spool_log, levels.wrap(text)], redirectStandardIO=False)
    service = SpoolerService(config, reactor, notifier=Notifier(), log_levels=levels,
                             load_config=lambda: load_config(args.config, state_dir=args.state_dir))  # fmt: skip
    handle_signals(reactor, service)  # before the start: a SIGHUP while starting must not kill it
    try:
        service.startService()
    except CannotListenError as error:
        raise CommandError(f"cannot listen on {error.interface or '*'}:{error.port}: {error.socketError}") from None
    except OSError as error:
        raise CommandError(f"cannot start: {error}") from None
    reactor.callWhenRunning(handle_signals, reactor, service)  # over the reactor's own SIGINT/SIGTERM handlers
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    spool_log.close()
    return EXIT_OK


def cmd_jobs(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    state = None
    if args.state:
        try:
            state = JobState.from_keyword(args.state)
        except ValueError:
            raise CommandError(
                f"unknown state {args.state!r} (one of: {', '.join(s.keyword for s in JobState)})", EXIT_USAGE
            ) from None
    try:
        query = {"all": "1"} if args.all else {}
        if state is not None:
            query["state"] = state.keyword
        jobs = admin_request(config, "GET", "/v1/jobs" + ("?" + urlencode(query) if query else ""))
    except DaemonDown as down:
        err.write(f"note: {down}; showing the stored jobs\n")
        store = open_store(config)
        try:
            if state is not None:
                found = store.list_jobs([state])
            elif args.all:
                found = store.list_jobs()
            else:
                found = store.list_jobs([s for s in JobState if not s.is_final])
            jobs = [job.summary() for job in found]
        finally:
            store.close()
    if args.json:
        _print_json(out, jobs)
    elif not jobs:
        out.write("no jobs\n" if args.all else "no jobs waiting (use --all for finished ones)\n")
    else:
        headers = ["ID", "STATE", "USER", "NAME", "SIZE", "FORMAT", "VIA", "RECEIVED", "STATUS"]
        out.write(table(_job_rows(jobs), headers) + "\n")
    return EXIT_OK


def cmd_show(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    try:
        job = admin_request(config, "GET", f"/v1/jobs/{args.job_id}")
    except DaemonDown as down:
        err.write(f"note: {down}; showing the stored job\n")
        store = open_store(config)
        try:
            job = store.get(args.job_id).summary()
            job["documents"] = [
                {"number": d.number, "file": str(config.spool_dir / d.file_name), "size": d.size,
                 "document_format": d.document_format}  # fmt: skip
                for d in store.documents(args.job_id)
            ]
            job["forwards_in_doubt"] = [forward.summary() for forward in store.forwards_of_job(args.job_id)]
        except JobNotFound as error:
            raise CommandError(str(error)) from None
        finally:
            store.close()
    if args.json:
        _print_json(out, job)
        return EXIT_OK
    fields = [
        ("job", job["job_id"]), ("state", f"{job['state']} ({job['reason']})"), ("message", job["message"] or "-"),
        ("user", job["user"]), ("host", job["host"] or "-"), ("name", job["name"]), ("queue", job["queue"]),
        ("protocol", job["protocol"]), ("format", job["document_format"]), ("size", f"{job['size']} bytes"),
        ("copies", job["copies"]), ("sides", job["sides"] or "-"), ("route", f"{job['route']} ({job['mode']})"),
        ("private", "yes" if job["private"] else "no"), ("attempts", job["attempts"]),
        ("next attempt", _when(job["next_attempt_at"])), ("received", _when(job["created_at"])),
        ("processing", _when(job["processing_at"])), ("finished", _when(job["completed_at"])),
        ("uuid", job["uuid"]),
    ]  # fmt: skip
    analysis = job.get("attributes", {}).get("analysis")
    if analysis is None:
        fields.append(("pages", "not analysed (yet)"))
    elif analysis["status"] != "ok":
        fields.append(("pages", f"unknown: {analysis['reason']}"))
    else:
        sizes = ", ".join(f"{name} x{count}" for name, count in analysis["sizes"].items())
        colour = ("colour unknown" if analysis.get("color_impressions") is None or analysis.get("mono_impressions") is None
                  else f"{analysis['color_impressions']} colour, {analysis['mono_impressions']} mono")
        fields.append(("pages", f"{analysis['pages']} page(s), {analysis['impressions']} impression(s) "
                                f"({colour}), "
                                f"{analysis['sheets']} sheet(s) {analysis['sides']}; {sizes}"))  # fmt: skip
    for document in job.get("documents", []):
        note = " (removed)" if job["files_removed"] else ""
        fields.append((f"document {document['number']}", f"{document['file']}{note}, {document['size']} bytes"))
    for forward in job.get("forwards_in_doubt", []):
        remote = f", its job {forward['remote_job_id']}" if forward["remote_job_id"] else ""
        told = (f"{forward['outcome'].replace('_', ' ')} {_when(forward['resolved_at'])}: {forward['detail']}"
                if forward["outcome"] else f"open, {forward['checks']} check(s)" + (f": {forward['detail']}"
                                                                                    if forward["detail"] else ""))  # fmt: skip
        fields.append((f"in doubt {forward['forward_id']}", f"forward to {forward['uri']} {_when(forward['started_at'])}"
                                                            f"{remote} ({forward['cause']}); {told}"))  # fmt: skip
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        out.write(f"{name.ljust(width)}  {value}\n")
    return EXIT_OK


def _release_body(config: Config, args: argparse.Namespace) -> dict[str, Any] | None:
    """What `release` sends: nothing for an ordinary job; for a private one its key (typed at a
    prompt, or one line on stdin with --key-stdin: never on the command line, where `ps` shows it),
    or the admin's --without-key."""
    if args.key_stdin and args.without_key:
        raise CommandError("--key-stdin and --without-key exclude each other", EXIT_USAGE)
    if args.without_key:
        return {"without_key": True}
    if args.key_stdin:
        key = sys.stdin.readline().rstrip("\r\n")
    else:
        job = admin_request(config, "GET", f"/v1/jobs/{args.job_id}")
        if not job.get("private"):
            return None
        if not sys.stdin.isatty():
            raise CommandError(f"job {args.job_id} is private: give its key on standard input with --key-stdin, "
                               "or release it without with --without-key", EXIT_USAGE)  # fmt: skip
        import getpass

        key = getpass.getpass(f"Key of the private job {args.job_id}: ")
    if not key:
        raise CommandError("no key given", EXIT_USAGE)
    return {"key": key}


def _job_action(action: str) -> Any:
    def command(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
        body = _release_body(config, args) if action == "release" else None
        job = admin_request(config, "POST", f"/v1/jobs/{args.job_id}/{action}", body)
        if args.json:
            _print_json(out, job)
        else:
            out.write(f"job {job['job_id']}: {job['state']}\n")
        return EXIT_OK

    return command


def cmd_flush(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    result = admin_request(config, "POST", "/v1/flush", {"job_ids": args.job_ids} if args.job_ids else {})
    if args.json:
        _print_json(out, result)
    elif result["flushed"]:
        out.write(f"retrying now: {', '.join(str(i) for i in result['flushed'])}\n")
    else:
        out.write("no jobs waiting for delivery\n")
    return EXIT_OK


def cmd_status(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    try:
        status = admin_request(config, "GET", "/v1/status")
    except DaemonDown as down:
        status = _offline_status(config, str(down))
    if args.json:
        _print_json(out, status)
        return EXIT_OK
    daemon = status["daemon"]
    lines = []
    if daemon["running"]:
        lines.append(f"spooler     running (pid {daemon['pid']}, version {daemon['version']},"
                     f" since {_when(daemon['started_at'])})")  # fmt: skip
    else:
        lines.append(f"spooler     NOT RUNNING: {daemon['detail']}")
    lines.append(f"state       {daemon['state_dir']}")
    server = status.get("server")
    if server is None:
        lines.append(f"mode        {status['mode']} (no central server configured)")
    else:
        since = f" since {_when(status['mode_since'])}" if status.get("mode_since") else ""
        lines.append(f"mode        {status['mode']}{since}")
        why = f": {server['detail']}" if server.get("detail") else ""
        lines.append(f"server      {server['uri']} {server['state']}{why}")
    central = status.get("central")
    if central:
        lines.append(f"central api {central['kind']} at {central['api_url']}")
        lines += [f"            cannot: {limit}" for limit in central["capabilities"]["limits"]]
    offline = status.get("offline")
    if offline:
        lines.append(f"offline     since {_when(offline['since'])} ({_duration(time.time() - offline['since'])}): "
                     f"{offline['printed_offline']} job(s) printed on the device since the outage began")  # fmt: skip
    for name, address in sorted(status.get("listeners", {}).items()):
        lines.append(f"listening   {name} on {address}")
    device = status.get("device")
    if device:
        detail = f" since {_when(device['since'])}" if device["since"] else ""
        why = f": {device['detail']}" if device["detail"] else ""
        lines.append(f"device      {device['uri']} {device['state']}{detail}{why}")
    queue = status["queue"]
    waiting_server = f"{status['waiting_for_server']} waiting for the server, " if server is not None else ""
    lines.append(f"jobs        {waiting_server}{status['waiting_for_device']} waiting for the device, {status['held']} held, "
                 f"{queue['completed']} completed, {queue['canceled']} canceled, {queue['aborted']} aborted")  # fmt: skip
    doubts = status.get("forwards_in_doubt")
    if doubts and any(doubts.values()):
        lines.append(f"in doubt    {doubts['open']} forward(s) to settle with the server; settled: {doubts['canceled']}"
                     f" canceled there, {doubts['printed_at_server']} printed there too, {doubts['delivered']} found"
                     f" delivered, {doubts['not_at_server']} not there, {doubts['kept']} kept there,"
                     f" {doubts['unresolved']} cannot be asked")  # fmt: skip
    accounting = status.get("accounting")
    if accounting and accounting["state"].startswith("local only"):
        lines.append(f"accounting  {accounting['records']} record(s), kept locally {accounting['state'][len('local only '):]}")
    elif accounting:
        lines.append(f"accounting  {accounting['sent']} sent, {accounting['waiting']} waiting, {accounting['expired']} too old"
                     f" to send (kept locally), {accounting['rejected']} refused; {accounting['state']}"
                     + (f": {accounting['last_error']}" if accounting.get("last_error") else ""))  # fmt: skip
    lines += _login_lines(status.get("login"))
    spool = status["spool"]
    lines.append(f"spool disk  {_size(spool['free_bytes'])} free (floor {_size(spool['floor_bytes'])})"
                 + ("" if spool["accepting"] else "  REFUSING NEW JOBS"))  # fmt: skip
    out.write("\n".join(lines) + "\n")
    return EXIT_OK


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _login_lines(login: dict[str, Any] | None) -> list[str]:
    """The login cache (users, sync, who expires soon) and the sharing peers, for `spooler status`."""
    if not login:
        return []
    states = login["by_state"]
    expiring = (f"; {login['expiring']} expire within {_duration(login['expiring_within'])} (next "
                f"{_when(login['next_expiry'])})" if login["expiring"] else "")  # fmt: skip
    lines = [f"login cache {login['users']} user(s): {states['ok']} usable, {states['expired']} expired, "
             f"{states['revoked']} revoked{expiring}" + ("" if login["offline_enabled"] else "; offline login OFF")]
    sync = login.get("last_sync")
    if sync:
        truncated = f" of {sync['assigned']} assigned: TRUNCATED" if sync.get("truncated") else ""
        lines.append(f"user sync   {_when(sync['at'])}: {sync['users']} user(s){truncated}, {sync['revocations']} "
                     "new revocation(s)")  # fmt: skip
    elif login.get("synced_until"):
        lines.append(f"user sync   revocations known up to {login['synced_until']} (server time)")
    else:
        lines.append("user sync   none since the start")
    if login.get("unreadable"):
        lines.append(f"            {login['unreadable']} cache row(s) do not open with the key file")
    sharing = login.get("sharing")
    if sharing is not None:
        peers = sharing["peers"]
        if not peers:
            lines.append(f"sharing     no peers (listening on {sharing['listening'] or 'nothing'})")
        for peer in peers:
            if peer["at"] is None:
                state = "no exchange yet"
            elif peer["error"]:
                ok = f", last worked {_when(peer['last_ok'])}" if peer["last_ok"] else ""
                state = f"{peer['what']} FAILED {_when(peer['at'])}: {peer['error']}{ok}"
            else:
                state = f"{peer['what']} ok {_when(peer['at'])}"
            lines.append(f"sharing     {peer['peer']}: {state}")
    return lines


def _offline_status(config: Config, why: str) -> dict[str, Any]:
    """The status while the daemon is down: what the store and the spool folder say (spooler.status)."""
    from spooler.status import spooler_status

    running = daemon_running(config)
    daemon = {"running": False, "detail": why + (" (but the state folder is locked)" if running else ""),
              "state_dir": str(config.state_dir)}  # fmt: skip
    store = open_store(config)
    try:
        return spooler_status(config, store, daemon=daemon)
    finally:
        store.close()


def cmd_log(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from spooler.spoollog import filter_records, follow_records, format_record, read_records

    path = config.spool_log_path
    if not path.exists() and not args.follow:
        raise CommandError(f"no spool log at {path} (has `spooler serve` ever run there?)")

    def show(records: Any) -> None:
        for record in filter_records(records, job_id=args.job, user=args.user):
            out.write((json.dumps(record, ensure_ascii=False) if args.json else format_record(record)) + "\n")
            out.flush()

    records = list(read_records(path))
    if args.lines is not None:
        records = records[-args.lines :] if args.lines else []
    show(records)
    if args.follow:
        try:
            show(follow_records(path))
        except KeyboardInterrupt:
            pass
    return EXIT_OK


def _accounting_store(config: Config) -> Any:
    """The store, read-only, with its accounting tables (a spool from before accounting has none)."""
    store = open_store(config)
    try:
        store.uploads(1)
    except sqlite3.OperationalError:
        store.close()
        raise CommandError(f"no accounting records in {config.state_dir} yet (the spooler there predates "
                           "accounting; they appear once it has run)") from None  # fmt: skip
    return store


def _period(args: argparse.Namespace) -> tuple[float | None, float | None, str]:
    from spooler.accounting.report import BadPeriod, parse_moment

    try:
        since = parse_moment(args.since) if args.since else None
        until = parse_moment(args.until, end=True) if args.until else None
    except BadPeriod as error:
        raise CommandError(f"{error}", EXIT_USAGE) from None
    if since is not None and until is not None and until <= since:
        raise CommandError("--until must be after --since", EXIT_USAGE)
    text = f"{args.since or 'the beginning'} to {args.until or 'now'}"
    return since, until, text


def _records(config: Config, args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    since, until, period = _period(args)
    store = _accounting_store(config)
    try:
        return store.accounting_records(since=since, until=until), period
    finally:
        store.close()


def cmd_stats(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Usage from the accounting records (works with the daemon down: read-only)."""
    from spooler.accounting.report import GROUPS, as_csv, as_table, headers, summarize

    by = [group.strip() for group in args.by.split(",") if group.strip()]
    unknown = [group for group in by if group not in GROUPS]
    if not by or unknown or len(set(by)) != len(by):
        raise CommandError(f"--by takes one or more of {', '.join(GROUPS)}, comma-separated", EXIT_USAGE)
    records, period = _records(config, args)
    rows, total = summarize(records, by)
    if args.json:
        _print_json(out, {"by": by, "period": period, "rows": [row.as_dict(by) for row in rows],
                          "total": total.as_dict([])})  # fmt: skip
    elif args.csv:
        out.write(as_csv(rows, by))
    elif not rows:
        out.write(f"no accounting records from {period}\n")
    else:
        out.write(table(as_table(rows, total, by), headers(by)) + "\n")
        if total.unknown:
            out.write(f"note: {total.unknown} completed job(s) with unknown page figures are not in the sums\n")
    return EXIT_OK


def cmd_report(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from spooler.accounting.report import render_pdf
    from spooler.config import missing_package

    if (problem := missing_package("reportlab")) is not None:
        raise CommandError(f"report --pdf {problem}")

    records, period = _records(config, args)
    target = args.pdf
    if target.exists() and target.is_dir():
        raise CommandError(f"{target} is a folder; give a file name", EXIT_USAGE)
    try:
        pages = render_pdf(records, target, title=args.title, period=period, device=config.device.name)
    except OSError as error:
        raise CommandError(f"cannot write {target}: {error.strerror or error}") from None
    out.write(f"{target}: {pages} page(s), {len(records)} record(s) from {period}\n")
    return EXIT_OK


def cmd_outbox(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """What waits to go to the central server, what is too old to go, and the audit of the uploads."""
    from spooler.store.database import IN_DOUBT

    store = _accounting_store(config)
    try:
        if args.resolve is not None:
            job_text, verdict = args.resolve
            if not job_text.isdigit() or verdict not in ("imported", "resend"):
                raise CommandError("--resolve takes a job number and imported or resend")
            job_id = int(job_text)
            if not store.resolve_in_doubt(job_id, imported=verdict == "imported", now=time.time()):
                raise CommandError(f"job {job_id} has no accounting record in doubt")
            out.write(f"job {job_id}: " + ("marked as imported by the server\n" if verdict == "imported" else
                                           "will be sent again\n"))  # fmt: skip
            return EXIT_OK
        cutoff = time.time() - config.accounting.max_age
        counts = store.outbox_counts(not_before=cutoff)
        expired = store.unsent_records(before=cutoff, limit=args.limit)
        unsent = [r for r in store.unsent_records(limit=None) if r["_rejected"]]
        rejected = [r for r in unsent if not r["_rejected"].startswith(IN_DOUBT)][: args.limit]
        in_doubt = [r for r in unsent if r["_rejected"].startswith(IN_DOUBT)][: args.limit]
        uploads = store.uploads(args.limit)
    finally:
        store.close()
    api = config.server.api_url if config.server is not None else None
    if args.json:
        public = [{k: v for k, v in r.items() if not k.startswith("_")} | {"rejected": r["_rejected"]}
                  for r in expired + rejected + in_doubt]  # fmt: skip
        _print_json(out, {"api_url": api, "max_age": config.accounting.max_age, **counts,
                          "expired_records": public[: len(expired)],
                          "rejected_records": public[len(expired): len(expired) + len(rejected)],
                          "in_doubt_records": public[len(expired) + len(rejected):], "uploads": uploads})  # fmt: skip
        return EXIT_OK
    out.write(f"records     {counts['records']}: {counts['sent']} sent, {counts['waiting']} waiting"
              f" ({counts['pending_analysis']} for their page figures), {counts['expired']} too old to send"
              f" (kept locally), {counts['rejected']} refused by the server, {counts['in_doubt']} in doubt\n")  # fmt: skip
    out.write(f"server      {api or 'none configured ([server] api_url): records stay local'}\n")
    doubt_title = ("in doubt (sent, no answer; the server does not deduplicate): check it, then"
                   " spooler outbox --resolve JOB imported|resend")  # fmt: skip
    for title, listed in (("too old to send", expired), ("refused by the server", rejected), (doubt_title, in_doubt)):
        if listed:
            out.write(f"\n{title}:\n")
            rows = [[str(r["job_id"]), r["record_id"], r["user"], r["outcome"], _when(r["_finished_at"]),
                     r["_rejected"] or ""] for r in listed]  # fmt: skip
            out.write(table(rows, ["JOB", "RECORD", "USER", "OUTCOME", "FINISHED", "DETAIL"]) + "\n")
    if uploads:
        out.write("\nlatest uploads:\n")
        rows = [[str(u["upload"]), _when(u["started_at"]), str(u["records"]), u["outcome"],
                 "" if u["accepted"] is None else str(u["accepted"]),
                 "" if u["duplicates"] is None else str(u["duplicates"]), u["detail"][:60]] for u in uploads]  # fmt: skip
        out.write(table(rows, ["UPLOAD", "STARTED", "RECORDS", "OUTCOME", "ACCEPTED", "DUPLICATES", "DETAIL"]) + "\n")
    return EXIT_OK


def cmd_server_check(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Try the configured central backend: its secrets, its health, one read call; say what works."""
    from spooler.central import make_backend
    from spooler.central.base import SecretError
    from spooler.central.check import Step, render, run_checks, secret_steps

    server = config.server
    if server is None or not server.api_url:
        raise CommandError("no central server API is configured ([server] api_url)")
    steps = secret_steps(config)
    if all(step.ok for step in steps):
        from twisted.internet import reactor
        from twisted.internet.defer import ensureDeferred

        results: list[Any] = []

        def go() -> None:
            try:
                backend = make_backend(config, reactor, lambda f, *a: ensureDeferred(_now(f, *a)))
            except SecretError as error:
                results.append([Step("secrets", False, str(error))])
                reactor.stop()
                return
            run_checks(config, backend).addBoth(results.append).addBoth(lambda _: reactor.stop())

        reactor.callWhenRunning(go)
        reactor.run(installSignalHandlers=False)
        steps += results[0] if results and isinstance(results[0], list) else [Step("checks", False, str(results))]
    else:
        steps += [Step("health", None, "not tried: a secret is missing"), Step("read call", None, "not tried")]
    if args.json:
        _print_json(out, {"kind": server.kind, "api_url": server.api_url, "steps": [s.as_dict() for s in steps]})
    else:
        out.write(render(config, steps))
    return EXIT_OK if all(step.ok for step in steps) else EXIT_FAILED


async def _now(function: Any, *args: Any) -> Any:
    return function(*args)


# -- offline login: users and keys ----------------------------------------------------------------


def _open_login_cache(config: Config) -> Any:
    """The credential cache read directly (the daemon is down); CommandError if there is none yet."""
    from spooler.login.cache import CredentialCache
    from spooler.login.keys import KeyFileError, LoginKeys

    if not config.login_key_path.exists() or not config.login_cache_path.exists():
        raise CommandError(f"no login cache in {config.state_dir} yet (nobody has logged in or been synced)")
    try:
        return CredentialCache.open(config.login_cache_path, LoginKeys.load(config.login_key_path))
    except KeyFileError as error:
        raise CommandError(str(error)) from None


def cmd_users_sync(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    result = admin_request(config, "POST", "/v1/users/sync", {}, timeout=90)
    if args.json:
        _print_json(out, result)
    else:
        more = " (the server has more: only the first 100 are kept)" if result.get("truncated") else ""
        out.write(f"synced {result['users']} user(s){more}, {result['removed']} no longer listed, "
                  f"{result['revocations']} new revocation(s)\n")  # fmt: skip
    return EXIT_OK


def cmd_users_list(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    try:
        users = admin_request(config, "GET", "/v1/users")["users"]
    except DaemonDown as down:
        from spooler.login.runtime import open_trust, user_rows

        if daemon_running(config):
            raise CommandError(f"{down}, but the state folder is locked") from None
        err.write(f"note: {down}; showing the stored login cache\n")
        cache = _open_login_cache(config)
        try:
            users = user_rows(cache, time.time(), open_trust(config), config.login.validity_hours * 3600.0)
        finally:
            cache.close()
    if args.json:
        _print_json(out, users)
    elif not users:
        out.write("nobody can log in offline (no logins or syncs cached)\n")
    else:
        rows = [[u["user"], u["full_name"][:30], u["state"], _when(u["valid_until"]), ",".join(u["methods"]) or "-",
                 u["source"], _when(u["updated_at"])] for u in users]  # fmt: skip
        out.write(table(rows, ["USER", "NAME", "STATE", "VALID UNTIL", "METHODS", "SOURCE", "UPDATED"]) + "\n")
    return EXIT_OK


def cmd_keys_rotate(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    try:
        result = admin_request(config, "POST", "/v1/keys/rotate", {})
    except DaemonDown:
        from spooler.model import StateDirLocked
        from spooler.service import StateDirLock

        lock = StateDirLock(config.lock_path)
        try:
            lock.acquire()  # the daemon must not start while the rows are re-encrypted
        except StateDirLocked as error:
            raise CommandError(str(error)) from None
        try:
            cache = _open_login_cache(config)
            try:
                result = {"key_id": cache.rotate(), "entries": len(cache.entries)}
            finally:
                cache.close()
        finally:
            lock.release()
    if args.json:
        _print_json(out, result)
    else:
        out.write(f"the login cache is now encrypted under key {result['key_id']} ({result['entries']} user(s))\n")
    return EXIT_OK


def cmd_keys_fleet(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from spooler.config import FLEET_KEY_GONE

    raise CommandError(f"there is no fleet key any more: [login] fleet_key_file {FLEET_KEY_GONE}", EXIT_USAGE)


def _offline_peers(config: Config, change: Callable[[Any, Any], Any]) -> Any:
    """Run `change(trust, peers)` on the files directly, the daemon being down (its state lock held meanwhile)."""
    from spooler.login.runtime import open_trust
    from spooler.model import StateDirLocked
    from spooler.service import StateDirLock

    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = StateDirLock(config.lock_path)
    try:
        lock.acquire()  # the daemon must not start while the peers file changes
    except StateDirLocked as error:
        raise CommandError(str(error)) from None
    try:
        trust = open_trust(config)
        return change(trust, trust.peers)
    finally:
        lock.release()


def cmd_peers(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """`peers self|list|add|remove`: this spooler's public key and the peers whose login entries count
    here. Through the daemon when it runs (a change counts at the next login), else on the files."""
    from spooler.login.peers import PeerError, make_peer
    from spooler.login.runtime import peer_rows
    from spooler.signing import SignatureError

    action = args.peers_command
    try:
        if action in ("self", "list"):
            try:
                result = admin_request(config, "GET", "/v1/peers")
            except DaemonDown:
                result = _offline_peers(config, lambda trust, peers: peer_rows(trust))
        elif action == "add":
            body = {"name": args.name, "key": args.key, "address": args.address}
            try:
                result = admin_request(config, "POST", "/v1/peers", body)
            except DaemonDown:
                def add(trust: Any, peers: Any) -> Any:
                    peer = make_peer(args.name, args.key, args.address)
                    peers.add(peer, own_key=trust.own_key)
                    return peer.to_dict()

                result = _offline_peers(config, add)
        else:
            try:
                result = admin_request(config, "POST", "/v1/peers/remove", {"name": args.name})
            except DaemonDown:
                result = _offline_peers(config, lambda trust, peers: peers.remove(args.name).to_dict())
    except (PeerError, SignatureError) as error:
        raise CommandError(str(error), EXIT_USAGE) from None
    if args.json:
        _print_json(out, result)
    elif action == "self":
        out.write(f"{result['self']}\n")
    elif action == "list":
        out.write(f"this spooler ({result['device']}): {result['self']}\n")
        if not result["peers"]:
            out.write("no peers enrolled (spooler peers add NAME KEY [--address HOST:PORT])\n")
        else:
            rows = [[p["name"], p["key"], p["address"] or "-"] for p in result["peers"]]
            out.write(table(rows, ["NAME", "KEY", "ADDRESS"]) + "\n")
    elif action == "add":
        out.write(f"enrolled {result['name']} ({result['key']}): its login entries count here\n")
    else:
        out.write(f"removed {result['name']}: its login entries no longer count here\n")
    return EXIT_OK


def cmd_ipp_user(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """`ipp-user add NAME` (password prompted twice, or one line on stdin with --stdin) and
    `ipp-user remove NAME`: the users file of [ipp] authentication = "basic" holds verifiers only.
    `admin-user add|remove NAME` does the same for the admin web listener's users file."""
    from spooler.ipp.server.auth import valid_user_name, write_user

    admin = args.command == "admin-user"
    path = config.admin.users_file if admin else config.ipp.users_file
    assert path is not None
    if not valid_user_name(args.name):
        raise CommandError(f"not a valid user name: {args.name!r} (letters, digits, . _ - @; at most 64)", EXIT_USAGE)
    password: str | None = None
    if args.user_command == "add":
        if args.stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            import getpass

            password = getpass.getpass(f"Password for {args.name}: ")
            if getpass.getpass("Again: ") != password:
                raise CommandError("the passwords differ; nothing was changed")
        if len(password) < 8:
            raise CommandError("the password is shorter than 8 characters; nothing was changed", EXIT_USAGE)
    try:
        write_user(path, args.name, password)
    except KeyError:
        raise CommandError(f"no user {args.name} in {path}") from None
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror or error}") from None
    done = "added (or changed)" if password is not None else "removed"
    out.write(f"{args.name} {done} in {path} (mode 0600, scrypt verifier only)\n")
    if admin and not config.admin.listen:
        out.write("note: [admin] listen is not set: the admin web listener (/metrics, the status page) is off\n")
    elif not admin and config.ipp.authentication != "basic":
        out.write("note: [ipp] authentication is not \"basic\": the IPP printer does not ask for passwords yet\n")
    return EXIT_OK


def cmd_backup(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """A backup of the state folder (databases copied online, keys, spool files), while running or not."""
    from spooler.backup import BackupError, write_backup

    try:
        manifest = write_backup(config.state_dir, args.file)
    except BackupError as error:
        raise CommandError(str(error)) from None
    if args.json:
        _print_json(out, {key: value for key, value in manifest.items() if key != "files"}
                    | {"file": str(args.file.absolute()), "members": len(manifest["files"])})  # fmt: skip
        return EXIT_OK
    jobs = manifest["databases"].get("spooler.db", {}).get("jobs", 0)
    users = manifest["databases"].get("login.db", {}).get("users", 0)
    out.write(f"{args.file}: {len(manifest['files'])} file(s), {_size(manifest['size'])}: {jobs} job(s), "
              f"{users} login cache user(s), keys (mode 0600: it holds the login cache's key; store it like the key)\n")
    if manifest["missing_spool_files"]:
        out.write(f"note: {len(manifest['missing_spool_files'])} spool file(s) of finished jobs were removed by "
                  "retention while the backup ran\n")  # fmt: skip
    return EXIT_OK


def cmd_restore(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Restore a backup into the state folder (the daemon must be stopped)."""
    from spooler.backup import BackupError, restore_backup

    try:
        manifest = restore_backup(config.state_dir, args.file, force=args.force, hold_waiting=not args.deliver_waiting)
    except BackupError as error:
        raise CommandError(str(error)) from None
    store = open_store(config)
    try:
        counts = store.count_by_state()
    finally:
        store.close()
    waiting = sum(count for state, count in counts.items() if not state.is_final)
    summary = {"file": str(args.file.absolute()), "state_dir": str(config.state_dir),
               "created_at": manifest["created_at"], "host": manifest.get("host"),
               "jobs": sum(counts.values()), "jobs_waiting": waiting, "jobs_held": manifest["held_job_ids"],
               "users": manifest["databases"].get("login.db", {}).get("users", 0),
               "members": len(manifest["files"])}  # fmt: skip
    if args.json:
        _print_json(out, summary)
        return EXIT_OK
    out.write(f"restored {args.file} (made {_when(manifest['created_at'])} on {manifest.get('host') or '?'}) into "
              f"{config.state_dir}: {summary['jobs']} job(s), {summary['users']} login cache user(s)\n")
    held = manifest["held_job_ids"]
    if held:
        out.write(f"held: {len(held)} job(s) that were waiting when the backup was made, as they may have printed "
                  f"since: {_id_list(held)}\n"
                  "  release the ones that did not print once the spooler runs (`spooler release ID`), cancel the "
                  "others; or restore with --deliver-waiting to deliver them all\n")  # fmt: skip
    elif waiting:
        out.write(f"note: {waiting} job(s) were waiting when the backup was made; they are delivered when the "
                  "spooler starts (see `spooler jobs`)\n")  # fmt: skip
    return EXIT_OK


def _id_list(job_ids: list[int], most: int = 20) -> str:
    """Job ids as a line says them: the first `most`, then how many more."""
    shown = ", ".join(str(job_id) for job_id in job_ids[:most])
    return shown + (f" and {len(job_ids) - most} more" if len(job_ids) > most else "")


# -- argument parsing ------------------------------------------------------------------------------


def _job_id(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a job number: {text!r}")
    return int(text)


_SHORT_FORMATS = {
    "application/pdf": "pdf", "application/postscript": "ps", "application/vnd.hp-pcl": "pcl5",
    "application/vnd.hp-pclxl": "pclxl", "image/pwg-raster": "pwg", "image/urf": "urf",
    "image/jpeg": "jpeg", "image/png": "png", "text/plain": "text",
}


def cmd_analyze(config: Config, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Page statistics of documents (no daemon needed): a table, or JSON with --json. Each document
    is analysed as the daemon analyses a job's (the same child code, memory limit and page cap) and
    its figures come from the same function as a job's record (spooler.analysis.job_analysis)."""
    from drivers.sandbox import analyze_isolated
    from spooler.jobs.analysis import job_analysis

    for path in args.files:
        try:
            with open(path, "rb"):
                pass
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror or error}") from None
    results = []
    for path in args.files:
        document = analyze_isolated(path, memory_limit=config.analysis.memory_limit,
                                    page_cap=config.analysis.page_cap)  # fmt: skip
        figures = job_analysis([document], copies=args.copies, sides=args.sides, number_up=args.number_up)
        results.append((str(path), document, figures))
    if args.json:
        out.write(json.dumps([{"file": name, "document": document.to_dict(), "job": figures}
                              for name, document, figures in results], indent=2) + "\n")
        return EXIT_OK
    header = ("FILE", "FORMAT", "PAGES", "PRINTED", "COLOUR", "MONO", "SHEETS", "SIZES", "STATUS")
    rows = [header]
    for name, document, figures in results:
        known = figures["status"] == "ok"

        def figure(key: str) -> str:
            value = figures[key]
            return str(value) if known and value is not None else "?"

        sizes = ",".join(f"{size}:{count}" for size, count in figures["sizes"].items()) or "-"
        status = document.status + (f" ({document.reason})" if document.reason else "")
        rows.append((name, _SHORT_FORMATS.get(document.format, document.format), figure("pages"),
                     figure("impressions"), figure("color_impressions"), figure("mono_impressions"),
                     figure("sheets"), sizes, status))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        cells = [cell.rjust(width) if 2 <= i <= 6 else cell.ljust(width)
                 for i, (cell, width) in enumerate(zip(row, widths))]
        out.write("  ".join(cells + [row[-1]]) + "\n")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    def location_options(suppress: bool) -> argparse.ArgumentParser:
        # Sub-commands must not reset what was given before the command name, hence SUPPRESS there.
        options = argparse.ArgumentParser(add_help=False)
        default = argparse.SUPPRESS if suppress else None
        options.add_argument("--config", "-c", type=Path, metavar="FILE", default=default,
                             help="TOML configuration (default: the embedded defaults)")
        options.add_argument("--state-dir", type=Path, metavar="DIR", default=default,
                             help="state folder (overrides the configuration)")
        return options

    common = location_options(True)
    json_option = argparse.ArgumentParser(add_help=False)
    json_option.add_argument("--json", action="store_true", help="machine-readable output")

    parser = argparse.ArgumentParser(prog="spooler", description="A print spooler that keeps printing when the "
                                     "central print server is down.", parents=[location_options(False)])  # fmt: skip
    parser.add_argument("--version", action="version", version=f"spooler {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", parents=[common], help="run the spooler")
    serve.set_defaults(handler=cmd_serve)

    jobs = commands.add_parser("jobs", parents=[common, json_option], help="list jobs")
    jobs.add_argument("--all", "-a", action="store_true", help="include completed, canceled and aborted jobs")
    jobs.add_argument("--state", help="only jobs in this state (pending, pending-held, processing, completed, ...)")
    jobs.set_defaults(handler=cmd_jobs)

    show = commands.add_parser("show", parents=[common, json_option], help="show one job")
    show.add_argument("job_id", type=_job_id, metavar="ID")
    show.set_defaults(handler=cmd_show)

    for action, text in (("cancel", "cancel a job"), ("hold", "hold a pending job"), ("release", "release a held job")):
        sub = commands.add_parser(action, parents=[common, json_option], help=text)
        sub.add_argument("job_id", type=_job_id, metavar="ID")
        sub.set_defaults(handler=_job_action(action))
        if action == "release":
            sub.add_argument("--key-stdin", action="store_true",
                             help="a private job's key, from the first line of stdin (else it is asked for)")
            sub.add_argument("--without-key", action="store_true",
                             help="release a private job without its key (the admin's override; logged)")

    flush = commands.add_parser("flush", parents=[common, json_option],
                                help="retry now every job waiting for delivery, in order")  # fmt: skip
    flush.add_argument("job_ids", type=_job_id, nargs="*", metavar="ID")
    flush.set_defaults(handler=cmd_flush)

    status = commands.add_parser("status", parents=[common, json_option], help="daemon, device and queue status")
    status.set_defaults(handler=cmd_status)

    log_command = commands.add_parser("log", parents=[common, json_option], help="show the spool log")
    log_command.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    log_command.add_argument("--job", type=_job_id, metavar="ID", help="only events of this job")
    log_command.add_argument("--user", metavar="USER", help="only events of this user")
    log_command.add_argument("--lines", "-n", type=int, metavar="N", help="only the last N events")
    log_command.set_defaults(handler=cmd_log)

    analyze = commands.add_parser("analyze", parents=[common, json_option],
                                  help="page statistics of documents (pages, colour, sheets, sizes)")  # fmt: skip
    analyze.add_argument("files", type=Path, nargs="+", metavar="FILE")
    analyze.add_argument("--copies", type=int, metavar="N", help="copies the job asks for")
    analyze.add_argument("--sides", choices=("one-sided", "two-sided-long-edge", "two-sided-short-edge"),
                         help="sides the job asks for")  # fmt: skip
    analyze.add_argument("--number-up", type=int, default=1, metavar="N", help="pages per side")
    analyze.set_defaults(handler=cmd_analyze)

    period = argparse.ArgumentParser(add_help=False)
    period.add_argument("--since", metavar="DATE", help="from this day (YYYY-MM-DD) or time (ISO 8601)")
    period.add_argument("--until", metavar="DATE", help="up to this day, included (YYYY-MM-DD), or time")
    stats = commands.add_parser("stats", parents=[common, period],
                                help="usage from the accounting records: pages, sheets, colour/mono by user, day, ...")
    stats.add_argument("--by", default="user", metavar="GROUPS",
                       help="group by user, day, route, mode, comma-separated (default: user)")
    output = stats.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="machine-readable output")
    output.add_argument("--csv", action="store_true", help="CSV output")
    stats.set_defaults(handler=cmd_stats)

    report = commands.add_parser("report", parents=[common, period], help="a PDF usage report with charts")
    report.add_argument("--pdf", type=Path, required=True, metavar="FILE", help="the PDF file to write")
    report.add_argument("--title", default="Print usage report", help="the report's title")
    report.set_defaults(handler=cmd_report)

    outbox = commands.add_parser("outbox", parents=[common, json_option],
                                 help="accounting records waiting for the central server, too old to send, uploads")
    outbox.add_argument("--limit", type=_job_id, default=20, metavar="N", help="list at most N of each (default 20)")
    outbox.add_argument("--resolve", nargs=2, metavar=("JOB", "imported|resend"), type=str, default=None,
                        help="settle a record in doubt: the server has it (imported) or not (resend)")
    outbox.set_defaults(handler=cmd_outbox)

    server = commands.add_parser("server", help="the central server")
    server_commands = server.add_subparsers(dest="server_command", metavar="ACTION", required=True)
    server_check = server_commands.add_parser("check", parents=[common, json_option],
                                              help="try the configured central backend and say what works")
    server_check.set_defaults(handler=cmd_server_check)

    users = commands.add_parser("users", help="offline login: the users this device knows")
    users_commands = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    users_sync = users_commands.add_parser("sync", parents=[common, json_option],
                                           help="pull this device's users and the revocations from the server now")
    users_sync.set_defaults(handler=cmd_users_sync)
    users_list = users_commands.add_parser("list", parents=[common, json_option],
                                           help="who can log in offline, and until when")
    users_list.set_defaults(handler=cmd_users_list)

    keys = commands.add_parser("keys", help="the login cache's encryption key")
    keys_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    keys_rotate = keys_commands.add_parser("rotate", parents=[common, json_option],
                                           help="re-encrypt the login cache under a new key")
    keys_rotate.set_defaults(handler=cmd_keys_rotate)
    keys_fleet = keys_commands.add_parser("new-fleet-key", parents=[common],
                                          help="gone: peers are enrolled by key (spooler peers)")
    keys_fleet.add_argument("file", type=Path, metavar="FILE", nargs="?")
    keys_fleet.set_defaults(handler=cmd_keys_fleet)

    backup = commands.add_parser("backup", parents=[common, json_option],
                                 help="back up the databases, keys and spool files into FILE (while running or not)")
    backup.add_argument("file", type=Path, metavar="FILE")
    backup.set_defaults(handler=cmd_backup)
    restore = commands.add_parser("restore", parents=[common, json_option],
                                  help="restore a backup into the state folder (the spooler must be stopped)")
    restore.add_argument("file", type=Path, metavar="FILE")
    restore.add_argument("--force", action="store_true",
                         help="replace the databases, keys and spool files the state folder has already")
    restore.add_argument("--deliver-waiting", action="store_true",
                         help="deliver the jobs that were waiting when the backup was made (by default they are "
                              "held, as they may have printed since)")  # fmt: skip
    restore.set_defaults(handler=cmd_restore)

    for command, text in (("ipp-user", "IPP Basic authentication: the users file ([ipp] users_file)"),
                          ("admin-user", "the admin web listener's users ([admin] users_file): /metrics, status page")):
        user_parser = commands.add_parser(command, help=text)
        user_commands = user_parser.add_subparsers(dest="user_command", metavar="ACTION", required=True)
        user_add = user_commands.add_parser("add", parents=[common], help="add a user or change its password (prompted)")
        user_add.add_argument("name", metavar="NAME")
        user_add.add_argument("--stdin", action="store_true", help="read the password from the first line of stdin")
        user_add.set_defaults(handler=cmd_ipp_user)
        user_remove = user_commands.add_parser("remove", parents=[common], help="remove a user")
        user_remove.add_argument("name", metavar="NAME")
        user_remove.set_defaults(handler=cmd_ipp_user)

    peers = commands.add_parser("peers", help="login sharing: this spooler's key and the peers it trusts")
    peers_commands = peers.add_subparsers(dest="peers_command", metavar="ACTION", required=True)
    peers_self = peers_commands.add_parser("self", parents=[common, json_option],
                                           help="print this spooler's public key (to enroll it on the others)")
    peers_self.set_defaults(handler=cmd_peers)
    peers_list = peers_commands.add_parser("list", parents=[common, json_option], help="the enrolled peers")
    peers_list.set_defaults(handler=cmd_peers)
    peers_add = peers_commands.add_parser("add", parents=[common, json_option],
                                          help="enroll a peer by its public key (`spooler peers self` there)")
    peers_add.add_argument("name", metavar="NAME", help="a name for it (letters, digits, . _ -)")
    peers_add.add_argument("key", metavar="KEY", help="its public key, ed25519:BASE64")
    peers_add.add_argument("--address", metavar="HOST:PORT", help="its share endpoint, to push to and pull from")
    peers_add.set_defaults(handler=cmd_peers)
    peers_remove = peers_commands.add_parser("remove", parents=[common, json_option],
                                             help="remove a peer: its entries stop counting at once")
    peers_remove.add_argument("name", metavar="NAME", help="its name (or its key)")
    peers_remove.set_defaults(handler=cmd_peers)
    return parser


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        config = load_config(args.config, state_dir=args.state_dir)
        return int(args.handler(config, args, out, err))
    except ConfigError as error:
        err.write(f"spooler: configuration error: {error}\n")
        return EXIT_USAGE
    except CommandError as error:
        err.write(f"spooler: {error}\n")
        return error.code
    except SpoolerError as error:
        err.write(f"spooler: {error}\n")
        return EXIT_FAILED
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
