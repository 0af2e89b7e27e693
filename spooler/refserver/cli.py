"""The `spooler-refserver` command: `serve` runs the reference central server; `ctl` steers a running one.

    spooler-refserver serve --state DIR [--api tcp:8080:interface=127.0.0.1] [--ipp ...] [--lpd ...] [--raw ...]
                            [--users FILE.json] [--mode normal|refuse|hang|slow|error] [--delay SECONDS]
                            [--hold [--release-after SECONDS]]
    spooler-refserver ctl --state DIR status
    spooler-refserver ctl --state DIR mode hang [--delay 2]
    spooler-refserver ctl --state DIR release [JOB_ID ...]
    spooler-refserver ctl --state DIR revoke USER [--kind card --credential card-1]
    spooler-refserver key --state DIR        (the public key spoolers pin as [server] signing_key)

Errors are one line on stderr and a non-zero exit: 1 for a failed request, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from spooler import __version__
from spooler.cli import CommandError, socket_request
from spooler.model import ConfigError, SpoolerError
from spooler.refserver.modes import DEFAULT_DELAY, MODES
from spooler.refserver.users import REVOCATION_KINDS, UsersFileError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def control_request(state: Path, method: str, path: str, body: dict[str, Any] | None = None,
                    timeout: float = 30.0) -> Any:  # fmt: skip
    """One request to the control socket DIR/control.sock; the decoded JSON answer."""
    return socket_request(state / "control.sock", method, path, body, peer="the reference server", timeout=timeout)


def cmd_serve(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from twisted.internet import reactor
    from twisted.internet.error import CannotListenError
    from twisted.logger import globalLogBeginner

    from spooler.refserver.service import RefServerOptions, RefServerService, queue_config

    if args.release_after is not None and not args.hold:
        raise CommandError("--release-after needs --hold", EXIT_USAGE)
    from spooler.spoollog import SpoolLogObserver, TextObserver, level_filtered

    options = RefServerOptions(state=args.state.absolute(), api=args.api, ipp=args.ipp or None, lpd=args.lpd or None,
                               raw=args.raw or None, users=args.users, mode=args.mode, delay=args.delay,
                               verifier_cost=args.verifier_cost, hold=args.hold,
                               release_after=args.release_after, sign=not args.no_sign,
                               grant_validity=args.grant_validity * 3600.0)  # fmt: skip
    os.umask(0o077)
    config = queue_config(options)
    try:
        config.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        spool_log = SpoolLogObserver(config.spool_log_path, max_size=config.log.spool_log_max_size,
                                     keep=config.log.spool_log_keep)  # fmt: skip
    except OSError as error:
        raise CommandError(f"cannot open the queue's spool log in {config.log_dir}: {error.strerror}") from None
    globalLogBeginner.beginLoggingTo([spool_log, level_filtered(TextObserver(err), args.log_level)],
                                     redirectStandardIO=False)  # fmt: skip
    service = RefServerService(options, reactor)
    try:
        service.startService()
    except CannotListenError as error:
        raise CommandError(f"cannot listen on {error.interface or '*'}:{error.port}: {error.socketError}") from None
    except UsersFileError as error:
        raise CommandError(str(error), EXIT_USAGE) from None
    except OSError as error:
        raise CommandError(f"cannot start: {error}") from None
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    spool_log.close()
    return EXIT_OK


def cmd_ctl(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    state = args.state.absolute()
    if args.action == "release":
        released = control_request(state, "POST", "/v1/release", {"job_ids": args.job_ids} if args.job_ids else {})
        if args.json:
            out.write(json.dumps(released, indent=2) + "\n")
        else:
            ids = released["released"]
            out.write(f"released {len(ids)} job(s)" + (f": {', '.join(map(str, ids))}" if ids else "") + "\n")
        return EXIT_OK
    if args.action == "status":
        status = control_request(state, "GET", "/v1/status")
    elif args.action == "mode":
        body: dict[str, Any] = {"mode": args.mode}
        if args.delay is not None:
            body["delay"] = args.delay
        status = control_request(state, "POST", "/v1/mode", body)
    else:
        revoked = control_request(state, "POST", "/v1/revocations",
                                  {"user": args.user, "kind": args.kind, "credential": args.credential})  # fmt: skip
        if args.json:
            out.write(json.dumps(revoked, indent=2) + "\n")
        else:
            what = args.user if args.kind == "user" else f"{args.kind} {args.credential or '(all)'} of {args.user}"
            out.write(f"revoked {what} at {revoked['revoked_at']}\n")
        return EXIT_OK
    if args.json:
        out.write(json.dumps(status, indent=2) + "\n")
        return EXIT_OK
    delay = f" (delay {status['delay']:g}s)" if status["mode"] == "slow" else ""
    lines = [f"mode        {status['mode']}{delay}", f"pid         {status['pid']}"]
    lines += [f"listening   {name} on {address}" for name, address in sorted(status["listeners"].items())]
    if not status["listeners"]:
        lines.append("listening   nothing (refusing connections)")
    lines.append(f"received    {status['received_jobs']} jobs, {status['accounting_records']} accounting records")
    hold = status.get("hold") or {}
    if hold.get("hold"):
        after = hold.get("release_after")
        lines.append(f"held        {hold['held_jobs']} jobs, released "
                     + (f"{after:g}s after arrival or by ctl release" if after is not None else "by ctl release"))
    out.write("\n".join(lines) + "\n")
    return EXIT_OK


def cmd_key(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Print the public half of the server's signing key (made now if the server never ran)."""
    from spooler.refserver.service import RefServerOptions, open_signing_key
    from spooler.signing import public_key_text

    os.umask(0o077)
    options = RefServerOptions(state=args.state.absolute())
    try:
        key = open_signing_key(options.signing_key_path)
    except OSError as error:
        raise CommandError(f"cannot make the signing key in {options.state}: {error.strerror or error}") from None
    out.write(public_key_text(key) + "\n")
    return EXIT_OK


def _number(text: str, unit: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of {unit}: {text!r}") from None


def _hours(text: str) -> float:
    if not 0 < (value := _number(text, "hours")) <= 24 * 3650:
        raise argparse.ArgumentTypeError("expected a number of hours above zero")
    return value


def _delay(text: str) -> float:
    if not 0 <= (value := _number(text, "seconds")) <= 3600:
        raise argparse.ArgumentTypeError("the delay must be between 0 and 3600 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    from spooler.refserver.api import DEFAULT_GRANT_VALIDITY
    from spooler.refserver.service import DEFAULT_API, DEFAULT_IPP, DEFAULT_LPD, SAMPLE_USERS
    from spooler.verifiers import SCRYPT_N

    parser = argparse.ArgumentParser(prog="spooler-refserver",
                                     description="The reference central print server (API + print queue), "
                                                 "able to fail on purpose.")  # fmt: skip
    parser.add_argument("--version", action="version", version=f"spooler-refserver {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the reference server")
    serve.add_argument("--state", type=Path, required=True, metavar="DIR",
                       help="state folder: received jobs in DIR/received, accounting in DIR/central.db")  # fmt: skip
    serve.add_argument("--api", default=DEFAULT_API, metavar="ENDPOINT", help=f"HTTP API endpoint ({DEFAULT_API})")
    serve.add_argument("--ipp", default=DEFAULT_IPP, metavar="ENDPOINT",
                       help=f"IPP print queue endpoint ({DEFAULT_IPP}; \"\" for none)")  # fmt: skip
    serve.add_argument("--lpd", default=DEFAULT_LPD, metavar="ENDPOINT",
                       help=f"LPD print queue endpoint ({DEFAULT_LPD}; \"\" for none)")  # fmt: skip
    serve.add_argument("--raw", default="", metavar="ENDPOINT",
                       help="raw (port 9100 style) print queue endpoint (default: none)")  # fmt: skip
    serve.add_argument("--users", type=Path, default=SAMPLE_USERS, metavar="FILE",
                       help="users file (JSON, plain secrets; default: the 3 sample users)")  # fmt: skip
    serve.add_argument("--mode", choices=MODES, default="normal", help="failure mode at start (normal)")
    serve.add_argument("--delay", type=_delay, default=DEFAULT_DELAY, metavar="SECONDS",
                       help=f"delay of the slow mode ({DEFAULT_DELAY:g})")  # fmt: skip
    serve.add_argument("--hold", action="store_true",
                       help="hold every received job until released, as a pull-print queue (MyQ, PaperCut)")  # fmt: skip
    serve.add_argument("--release-after", type=_delay, metavar="SECONDS",
                       help="with --hold: release a held job on its own this long after it arrived, counting only"
                            " time the server works (default: only ctl release does)")  # fmt: skip
    serve.add_argument("--verifier-cost", type=int, default=SCRYPT_N, metavar="N",
                       help=f"scrypt N of the verifiers (power of 2; default {SCRYPT_N}, tests use less)")  # fmt: skip
    serve.add_argument("--no-sign", action="store_true",
                       help="do not sign login grants and revocations (play an API that cannot)")  # fmt: skip
    serve.add_argument("--grant-validity", type=_hours, default=DEFAULT_GRANT_VALIDITY / 3600, metavar="HOURS",
                       help=f"how long a signed login grant holds ({DEFAULT_GRANT_VALIDITY / 3600:g})")  # fmt: skip
    serve.add_argument("--log-level", choices=("debug", "info", "warn", "error"), default="info")
    serve.set_defaults(handler=cmd_serve)

    key = commands.add_parser("key", help="print the public key spoolers pin ([server] signing_key)")
    key.add_argument("--state", type=Path, required=True, metavar="DIR")
    key.set_defaults(handler=cmd_key)

    ctl = commands.add_parser("ctl", help="steer a running reference server through DIR/control.sock")
    ctl.add_argument("--state", type=Path, required=True, metavar="DIR")
    ctl.add_argument("--json", action="store_true", help="machine-readable output")
    actions = ctl.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("status", help="mode, listeners, received jobs")
    mode = actions.add_parser("mode", help="switch the failure mode")
    mode.add_argument("mode", choices=MODES)
    mode.add_argument("--delay", type=_delay, metavar="SECONDS", help="delay of the slow mode")
    release = actions.add_parser("release", help="release held jobs of a --hold queue (all if none is named)")
    release.add_argument("job_ids", nargs="*", type=int, metavar="JOB_ID")
    revoke = actions.add_parser("revoke", help="revoke a user, or one of their credentials, now")
    revoke.add_argument("user")
    revoke.add_argument("--kind", choices=REVOCATION_KINDS, default="user")
    revoke.add_argument("--credential", metavar="ID",
                        help="credential id such as card-1 (default: all of that kind)")  # fmt: skip
    ctl.set_defaults(handler=cmd_ctl)
    return parser


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        return int(args.handler(args, out, err))
    except ConfigError as error:
        err.write(f"spooler-refserver: configuration error: {error}\n")
        return EXIT_USAGE
    except CommandError as error:
        err.write(f"spooler-refserver: {error}\n")
        return error.code
    except (SpoolerError, UsersFileError) as error:
        err.write(f"spooler-refserver: {error}\n")
        return EXIT_FAILED
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
