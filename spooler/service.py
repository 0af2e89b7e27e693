"""The running spooler: the service tree that opens the state folder, recovers the spool, starts the
listeners, the dispatcher and the retention timer, and stops them all cleanly."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import UNIXServerEndpoint, serverFromString
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from spooler import __version__
from spooler.accounting.records import RecordMaker
from spooler.admin import AdminResource, build_admin_site
from spooler.jobs.analysis import AnalysisRunner
from spooler.config import Config
from spooler.delivery import backend_for_uri
from spooler.dispatch.dispatcher import Dispatcher
from spooler.ipp.server.resource import build_ipp_site
from spooler.jobs.figures import JobFigures
from spooler.jobs.service import JobService
from spooler.jobs.upkeep import SpoolUpkeep
from spooler.intake.lpd import LpdFactory
from spooler.model import ConfigError, StateDirLocked
from spooler.intake.raw import RawJobFactory
from spooler.store.spoolfiles import RunInThread, ensure_private_dir
from spooler.store.groupcommit import CommitThread
from spooler.listeners import ListenerService
from spooler.status import spooler_status
from spooler.store.database import JobStore
from spooler.store.documents import SpoolDocuments
from spooler.dispatch.health import DOWN
from spooler.reload import plan, with_old_values
from spooler.spoollog import LevelFilter
from spooler.systemd import Notifier
from spooler.web import HttpLimits, LimitedSite

log = Logger(namespace="spooler.service")

RETENTION_INTERVAL = 60.0


class StateDirLock:
    """An exclusive lock on the state folder, so that two spoolers never share one spool."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        #: What the lock file said when it was taken: "PID ROLE" of a holder that did not release it
        #: (killed, crashed), "" after a clean release.
        self.previous = ""

    def acquire(self, role: str = "") -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.read(fd, 32).decode("ascii", "replace").split(" ")[0].strip() or "unknown"
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateDirLocked(
                    f"the state folder {self.path.parent} is in use by another spooler (pid {holder})"
                ) from None
            raise
        self.previous = os.read(fd, 64).decode("ascii", "replace").strip()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {role}".strip().encode() + b"\n", 0)
        self._fd = fd

    def release(self) -> None:
        """Let go of the folder, leaving the file empty: the next holder sees a clean release."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def is_held(path: Path) -> bool:
        """Whether some process holds the lock (the daemon runs), without taking it for long."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False


#: The listeners a reload can move: configuration key -> service name.
LISTENER_SERVICES = {"listen.raw": "raw", "listen.lpd": "lpd", "listen.ipp": "ipp", "listen.ipps": "ipps",
                     "terminal.listen": "terminal", "admin.listen": "admin-http", "login.share_listen": "share"}


def listener_endpoints(config: Config) -> dict[str, str | None]:
    """Every listener's endpoint string by configuration key ("" or None: off)."""
    return {"listen.raw": config.listen.raw, "listen.lpd": config.listen.lpd, "listen.ipp": config.listen.ipp,
            "listen.ipps": config.listen.ipps, "terminal.listen": config.terminal.listen,
            "login.share_listen": config.login.share_listen, "admin.listen": config.admin.listen}


#: Signals that stop the daemon cleanly (SIGHUP reloads the configuration instead).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def handle_signals(reactor: Any, service: SpoolerService) -> None:
    """SIGTERM, SIGINT, SIGQUIT stop the daemon (the reason goes to the spooler_stopped line);
    SIGHUP reloads the configuration. Called again once the reactor runs, over its own handlers."""

    def stop(number: int, frame: object) -> None:
        if service.stop_reason == "stopped":
            service.stop_reason = f"signal {signal.Signals(number).name}"
        reactor.callFromThread(_stop_reactor, reactor)

    def reload(number: int, frame: object) -> None:
        reactor.callFromThread(service.reload)

    for number in STOP_SIGNALS:
        signal.signal(number, stop)
    signal.signal(signal.SIGHUP, reload)


def _stop_reactor(reactor: Any) -> None:
    from twisted.internet.error import ReactorNotRunning

    try:
        reactor.stop()
    except ReactorNotRunning:
        pass  # a second signal while stopping


def thread_runner(reactor: Any) -> RunInThread:
    def run_in_thread(function: Any, *args: Any, **kwargs: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args, **kwargs)

    return run_in_thread


class SpoolerService(MultiService):
    def __init__(self, config: Config, reactor: Any, *, run_in_thread: RunInThread | None = None,
                 notifier: Notifier | None = None, log_levels: LevelFilter | None = None,
                 load_config: Callable[[], Config] | None = None) -> None:  # fmt: skip
        super().__init__()
        self._load_config = load_config  # reads the configuration again (SIGHUP); None: no reload
        self.notifier = notifier or Notifier({})  # systemd's notifications (nothing outside systemd)
        self.log_levels = log_levels  # the text log's level filter, which a reload may change
        #: Why the daemon stops, for the spooler_stopped line (set by whoever stops it: a signal, ...).
        self.stop_reason = "stopped"
        self.config = config
        self.reactor = reactor
        self.run_in_thread = run_in_thread or thread_runner(reactor)
        # New jobs' group commits get a thread of their own (in tests: the injected runner).
        self.commit_thread: RunInThread = run_in_thread or CommitThread(reactor)
        self.lock = StateDirLock(config.lock_path)
        self.store: JobStore | None = None
        self.jobs: JobService | None = None
        self.upkeep: SpoolUpkeep | None = None
        self.dispatcher: Dispatcher | None = None
        self.device_backend: Any = None  # the dispatcher's device backend (spooler.delivery)
        self.intake: dict[str, Any] = {}
        self.analysis: AnalysisRunner | None = None
        self.outbox: Any = None  # spooler.accounting.outbox.Outbox, with [server] api_url
        self.login: Any = None  # spooler.login.service.LoginService (the device terminal logs in through it)
        self.login_runtime: Any = None
        self.budgets: Any = None  # spooler.login.budget.FailureBudgets: wrong PINs, passwords, private-job keys
        self.central: Any = None  # spooler.central backend of [server] api_url (kind generic, papercut, myq)
        self.started_at: float | None = None

    def startService(self) -> None:
        config = self.config
        ensure_private_dir(config.state_dir)
        os.chmod(config.state_dir, 0o700)
        self.lock.acquire("serve")
        if self.lock.previous.endswith(" serve"):
            log.warn("The previous spooler (pid {pid}) ended without a clean stop: killed or crashed",
                     spool_event="spooler_stopped", reason="killed or crashed (found at the next start)",
                     pid=int(self.lock.previous.split()[0]) if self.lock.previous.split()[0].isdigit() else None,
                     detected_at_start=True)  # fmt: skip
        try:
            self._start()
        except BaseException as error:
            log.error("Spooler stopped: could not start: {detail}", spool_event="spooler_stopped",
                      reason="could not start", detail=str(error) or type(error).__name__)  # fmt: skip
            self._close_store()
            self.lock.release()
            raise

    def _start(self) -> None:
        config = self.config
        # Every job's final state is written with its accounting record, in one transaction.
        self.store = JobStore.open(config.database_path, record_maker=RecordMaker(
            device=config.device.name, analysis_enabled=config.analysis.enabled))  # fmt: skip
        for _ in range(10_000):  # jobs finished before accounting existed get theirs (1000 at a time)
            if not self.store.record_missing():
                break
        backend = self.device_backend = self._device_backend(config)
        server = self._server_backend(config)
        documents = SpoolDocuments(self.store, config.spool_dir, config.incoming_dir, self.run_in_thread)
        self.dispatcher = Dispatcher(
            store=self.store, backend=backend, clock=self.reactor, documents=documents,
            retry_initial=config.device.retry_initial, retry_max=config.device.retry_max,
            queues=config.queues, server=server, server_config=config.server,
        )  # fmt: skip
        figures = None
        if config.analysis.enabled:
            self.analysis = AnalysisRunner(self.reactor, workers=config.analysis.workers,
                                           memory_limit=config.analysis.memory_limit,
                                           page_cap=config.analysis.page_cap)  # fmt: skip
            figures = JobFigures(self.store, documents, self.analysis, self.reactor)
        from spooler.login.budget import FailureBudgets

        self.budgets = FailureBudgets.open(config.login_cache_path, self.reactor)
        self.jobs = JobService(
            config=config, store=self.store, dispatcher=self.dispatcher, clock=self.reactor,
            run_in_thread=self.run_in_thread, figures=figures, commit_thread=self.commit_thread,
            budgets=self.budgets,
        )  # fmt: skip
        self.upkeep = SpoolUpkeep(config=config, store=self.store, clock=self.reactor, run_in_thread=self.run_in_thread,
                                  analyze_later=figures.analyze_later if figures is not None else None)  # fmt: skip
        self.upkeep.recover()  # retention runs from the timer below, at start and every minute

        for name, (description, factory) in self._intake_factories().items():
            self.intake[name] = factory
            ListenerService(name, self._endpoint(f"listen.{name}", description), factory).setServiceParent(self)
        if config.terminal.enabled:
            self._terminal().setServiceParent(self)
        if config.dnssd.enabled and "ipp" in self.intake:
            self._advertiser().setServiceParent(self)  # after the IPP listener: started after, stopped before
        if config.admin_socket.is_socket():
            config.admin_socket.unlink()  # stale: we hold the state folder's lock
        from spooler.central import make_backend

        self.central = make_backend(config, self.reactor, self.run_in_thread)  # a missing secret stops the start
        self._start_login()
        admin_site = build_admin_site(AdminResource(self.jobs, self.status, login=self.login_runtime), self.reactor,
                                      max_connections=config.limits.max_connections)  # fmt: skip
        admin_endpoint = UNIXServerEndpoint(self.reactor, str(config.admin_socket), mode=0o600, wantPID=False)
        ListenerService("admin", admin_endpoint, admin_site).setServiceParent(self)
        if config.admin.listen:
            self._admin_web(config.admin.listen).setServiceParent(self)
        retention = TimerService(RETENTION_INTERVAL, self._retention)
        retention.clock = self.reactor
        retention.setName("retention")
        retention.setServiceParent(self)

        watchdog = self.notifier.watchdog(self.reactor)
        if watchdog is not None:
            watchdog.setServiceParent(self)

        super().startService()
        self.started_at = time.time()
        self.dispatcher.start()
        self._start_outbox()
        log.info(
            "Spooler {version} started: state {state_dir}, device {device}, listening {listeners}",
            spool_event="spooler_started", version=__version__, state_dir=str(config.state_dir),
            device=config.device.uri, listeners=self.listeners(), pid=os.getpid(),
        )  # fmt: skip
        self.notifier.ready(f"listening on {', '.join(f'{k} {v}' for k, v in self.listeners().items()) or 'nothing'}")

    def _retention(self) -> Deferred[Any]:
        """Every minute: abort the Create-Job jobs whose client went away, apply the retention times."""
        assert self.jobs is not None and self.upkeep is not None
        self.jobs.expire_incoming()
        return self.upkeep.purge()

    def _start_outbox(self) -> None:
        """Replicate the accounting records to the central server's API, if one is configured."""
        config = self.config
        if config.server is None or not config.server.api_url or self.store is None or self.dispatcher is None:
            return
        from spooler.accounting.outbox import Outbox
        from spooler.central import capabilities_of

        if self.central is None or capabilities_of(self.central).accounting_import == "none":
            log.info("Accounting records stay local: the central server ({kind}) has no accounting import",
                     spool_event="outbox_not_started", kind=config.server.kind)  # fmt: skip
            return
        dispatcher = self.dispatcher  # its server health is replaced when a reload changes the server
        self.outbox = Outbox(store=self.store, api=self.central, clock=self.reactor, config=config.accounting,
                             server_usable=lambda: dispatcher.server_health is None or dispatcher.server_health.usable)
        outbox = self.outbox
        self.dispatcher.server_listeners.append(lambda state: outbox.kick() if state == "up" else None)
        outbox.start()

    def _start_login(self) -> None:
        """The credential cache, the login service, user sync and sharing (spooler.login)."""
        from spooler.login.runtime import LoginRuntime

        def server_known_down() -> bool:
            health = self.dispatcher.server_health if self.dispatcher is not None else None
            return health is not None and health.state == DOWN

        self.login_runtime = LoginRuntime(self.config, self.reactor, self.run_in_thread, server_known_down,
                                          backend=self.central, budgets=self.budgets)  # fmt: skip
        self.login_runtime.setServiceParent(self)
        self.login = self.login_runtime.service

    def _intake_factories(self) -> dict[str, tuple[str, Any]]:
        """Every enabled front-end: its endpoint string and its protocol factory. Each factory keeps
        `connections` and has `close_all()`, which cuts unfinished uploads and waits for jobs being
        committed. A new protocol registers here."""
        assert self.jobs is not None
        config = self.config
        factories: dict[str, tuple[str, Any]] = {}
        if config.listen.raw:
            factories["raw"] = (config.listen.raw, self._intake_factory("raw"))
        if config.listen.ipp:
            factories["ipp"] = (config.listen.ipp, build_ipp_site(
                self.jobs, config, self.reactor, spool_id=self.store.spool_id, authenticator=self._ipp_authenticator(),
                sibling=lambda: self._ipp_listener("ipps"), ask_device=self._ask_device()))  # fmt: skip
        if config.listen.ipps:
            factories["ipps"] = (config.listen.ipps, self._ipps_factory(factories.get("ipp", (None, None))[1]))
        if config.listen.lpd:
            factories["lpd"] = (config.listen.lpd, self._intake_factory("lpd"))
        return factories

    def _intake_factory(self, name: str) -> Any:
        """The raw or LPD front-end's factory (the one already made if it listened before)."""
        if name in self.intake:
            return self.intake[name]
        config = self.config
        limits = config.limits
        if name == "raw":
            return RawJobFactory(self.jobs, self.reactor, idle_timeout=limits.idle_timeout,
                                 max_connections=limits.max_connections, queue=config.default_queue)  # fmt: skip
        return LpdFactory(self.jobs, self.reactor, config=config, idle_timeout=limits.idle_timeout,
                          max_connections=limits.max_connections)  # fmt: skip

    def _ipp_authenticator(self) -> Any:
        """The one Basic authenticator of the IPP listeners (shared throttling and cache), if configured."""
        if self.config.ipp.authentication != "basic":
            return None
        if getattr(self, "_authenticator", None) is None:
            from spooler.ipp.server.auth import BasicAuthenticator

            assert self.config.ipp.users_file is not None
            self._authenticator = BasicAuthenticator(self.config.ipp.users_file, realm=self.config.ipp.name,
                                                     run_in_thread=self.run_in_thread, seconds=self.reactor.seconds)
        return self._authenticator

    def _ipps_factory(self, plain: Any) -> Any:
        """listen.ipps: the IPP printer (the same operations as listen.ipp's) behind TLS, with the
        configured certificate or a self-signed one made in STATE/keys on first start."""
        from spooler.ipp.server.auth import ensure_self_signed, tls_options
        from spooler.ipp.server.resource import TlsIppFactory

        assert self.jobs is not None
        config = self.config
        if config.ipp.tls_certificate is not None and config.ipp.tls_key is not None:
            certificate, key = config.ipp.tls_certificate, config.ipp.tls_key
        else:
            certificate, key = ensure_self_signed(config.state_dir / "keys")
        try:
            options = tls_options(certificate, key)
        except Exception as error:
            raise ConfigError("ipp.tls_certificate", f"cannot use {certificate} with {key}: {error}") from None
        assert self.store is not None
        site = build_ipp_site(self.jobs, config, self.reactor, spool_id=self.store.spool_id, secure=True,
                              operations=plain.operations if plain is not None else None,
                              authenticator=self._ipp_authenticator(), sibling=lambda: self._ipp_listener("ipp"),
                              ask_device=self._ask_device() if plain is None else None)  # fmt: skip
        return TlsIppFactory(options, site)

    def _ipp_listener(self, name: str) -> Any:
        """(site, port) of the IPP listener `name` ("ipp" or "ipps"; port None until it listens), or None."""
        factory = self.intake.get(name)
        if factory is None:
            return None
        return getattr(factory, "site", factory), self._listening_port(name)

    def _ask_device(self) -> Any:
        """The device backend's Get-Printer-Attributes, when the device is an IPP printer (the IPP
        printer then describes the device's paper path as the device does); else None."""
        from spooler.ipp.server.device import ASK_TIMEOUT

        printer_attributes = getattr(self.device_backend, "printer_attributes", None)
        if printer_attributes is None:
            return None
        return lambda names: printer_attributes(names, timeout=ASK_TIMEOUT)

    def _listening_port(self, name: str) -> int | None:
        try:
            listener = self.getServiceNamed(name)
        except KeyError:
            return None
        port = getattr(listener, "port", None)
        return int(getattr(port.getHost(), "port", 0)) or None if port is not None else None

    def _terminal(self) -> ListenerService:
        """The device terminal (login and pull print, spooler.terminal) on terminal.listen. It asks
        `self.login` (the LoginService) at each login, so it works whatever starts first."""
        from spooler.terminal import TerminalResource, TerminalSite

        assert self.jobs is not None
        settings = self.config.terminal
        resource = TerminalResource(self.jobs, lambda: getattr(self, "login", None), self.reactor,
                                    session_idle=settings.session_idle, terminal_name=settings.name)  # fmt: skip
        site = TerminalSite(resource, clock=self.reactor, limits=HttpLimits.from_config(self.config.limits, idle_timeout=60.0))
        return ListenerService("terminal", self._endpoint("terminal.listen", settings.listen), site)

    def _admin_web(self, listen: str) -> ListenerService:
        """[admin] listen: /healthz, /metrics and the status page (spooler.adminweb), behind HTTP Basic
        against the admin users file."""
        from spooler.adminweb import AdminWebResource, build_admin_web_site
        from spooler.ipp.server.auth import BasicAuthenticator, read_users

        users_file = self.config.admin.users_file
        assert users_file is not None
        authenticator = BasicAuthenticator(users_file, realm=f"spooler {self.config.device.name} admin",
                                           run_in_thread=self.run_in_thread, seconds=self.reactor.seconds,
                                           service="admin")  # fmt: skip
        if not read_users(users_file):
            log.warn("[admin] listen is on but {path} has no users: only /healthz answers until `spooler "
                     "admin-user add NAME`", spool_event="admin_web_no_users", path=str(users_file))  # fmt: skip
        site = build_admin_web_site(AdminWebResource(self, authenticator), self.reactor, self.config.limits)
        return ListenerService("admin-http", self._endpoint("admin.listen", listen), site)

    def _advertiser(self) -> Any:
        """The DNS-SD advertisement of the IPP printer, on the IPP listener's actual port."""
        from spooler.ipp.server.dnssd import DnssdAdvertiser  # zeroconf is loaded only when advertising is on

        listener = self.getServiceNamed("ipp")

        def listening() -> tuple[str, int]:
            assert isinstance(listener, ListenerService) and listener.port is not None
            address = listener.port.getHost()
            return str(getattr(address, "host", "")), int(getattr(address, "port", 0))

        return DnssdAdvertiser(self.config.dnssd, self.intake["ipp"].operations.printer, listening,
                               self.run_in_thread, secure_port=lambda: self._listening_port("ipps"))  # fmt: skip

    def _endpoint(self, key: str, description: str) -> Any:
        try:
            return serverFromString(self.reactor, description)
        except (ValueError, TypeError, KeyError) as error:
            raise ConfigError(key, f"not a valid endpoint {description!r}: {error}") from None

    def listeners(self) -> dict[str, str]:
        return {
            service.name: service.address
            for service in self
            if isinstance(service, ListenerService) and service.name != "admin"
        }

    # -- reloading the configuration (SIGHUP) --------------------------------------------------------

    def reload(self) -> None:
        """Read the configuration again and apply what can change live (spooler.reload); nothing
        accepted is dropped. A file that does not load changes nothing: one warning, the running
        configuration stays. What waits for a restart is said in the one line that reports the reload."""
        if self._load_config is None or not self.running or self.jobs is None:
            return
        self.notifier.reloading()
        source = str(self.config.source or "the embedded defaults")
        old = self.config
        try:
            new = self._load_config()
            for key, description in listener_endpoints(new).items():
                if description:
                    self._endpoint(key, description)  # a malformed endpoint is caught before anything moves
        except ConfigError as error:
            log.warn("Configuration {source} not reloaded: {error}; the running configuration stays",
                     spool_event="config_reload_failed", source=source, error=str(error))  # fmt: skip
            self.notifier.ready("running (the last reload failed: see the log)")
            return
        # DNS-SD advertises the IPP listeners' ports as they were at the start.
        changes = plan(old, new, pinned=("listen.ipp", "listen.ipps") if old.dnssd.enabled else ())
        effective = with_old_values(old, new, changes.restart)
        failed = self._move_listeners(changes.live)
        effective = with_old_values(old, effective, failed)
        self._hand_over(effective, {key for key in changes.live if key not in failed})
        applied = sorted(key for key in changes.live if key not in failed)
        problems = [f"{key} ({why})" for key, why in sorted(failed.items())]
        waiting = sorted(changes.restart)
        message = f"Configuration {source} reloaded: " + ("; ".join(filter(None, [
            f"applied {', '.join(applied)}" if applied else "",
            f"not applied {', '.join(problems)}, the old value stays" if problems else "",
            f"needs a restart to take effect: {', '.join(waiting)}" if waiting else "",
        ])) or "nothing changed")  # fmt: skip
        emit = log.warn if waiting or problems else log.info
        emit("{message}", message=message, spool_event="config_reloaded", source=source, applied=applied,
             failed=failed, restart_needed=waiting)  # fmt: skip
        self.notifier.ready(f"running (reloaded; {len(applied)} change(s) applied, {len(waiting)} wait for a restart)")

    def _move_listeners(self, live: dict[str, tuple[Any, Any]]) -> dict[str, str]:
        """Open moved listeners on their new endpoints (then close the old ones), raw and LPD turned on
        or off; the keys that could not move, with why (their old endpoint stays)."""
        failed: dict[str, str] = {}
        for key, name in LISTENER_SERVICES.items():
            if key not in live:
                continue
            before, after = live[key]
            try:
                if name == "share":
                    sharing = getattr(self.login_runtime, "sharing", None)
                    listener = getattr(sharing, "listener", None)
                else:
                    listener = self.namedServices.get(name)
                if not after:
                    if listener is not None:
                        listener.disownServiceParent()
                elif listener is not None:
                    listener.rebind(self._endpoint(key, after))
                elif name in ("raw", "lpd", "admin-http"):
                    if name == "admin-http":
                        added = self._admin_web(after)
                    else:
                        added = ListenerService(name, self._endpoint(key, after), self._intake_factory(name))
                    try:
                        added.setServiceParent(self)  # starts it: raises if it cannot listen
                    except Exception:
                        self.removeService(added)
                        raise
                    if name != "admin-http":
                        self.intake[name] = added.factory
            except Exception as error:  # noqa: BLE001 - a port in use keeps the old listener, says why
                failed[key] = str(error) or type(error).__name__
        return failed

    def _hand_over(self, config: Config, live: set[str]) -> None:
        """Give every running piece the reloaded configuration (the keys in `live` changed)."""
        assert self.jobs is not None and self.dispatcher is not None
        self.config = config
        self.jobs.reconfigure(config)
        if self.upkeep is not None:
            self.upkeep.reconfigure(config)
        limits = config.limits
        for factory in self.intake.values():
            site = getattr(factory, "site", factory)  # ipps: the IPP site behind TLS
            if isinstance(site, LimitedSite):  # IPP (spooler.web): the idle timeout is limits.idle_timeout
                self._new_limits(site, limits, idle_timeout=limits.idle_timeout)
            else:  # raw, LPD
                site.max_connections, site.idle_timeout = limits.max_connections, limits.idle_timeout
            if isinstance(site, RawJobFactory):
                site.queue = config.default_queue
            elif isinstance(site, LpdFactory):
                site.reconfigure(config)
            else:  # IPP
                site.max_connections = limits.max_connections
                site.max_request_size = config.ipp.max_request_size
                site.max_compression_ratio = limits.max_compression_ratio
                site.queues = tuple(queue.name for queue in config.queues)
                site.default_queue = config.default_queue
                site.operations.admin_users = frozenset(config.ipp.admin_users)
        if any(key == "queues" or key.startswith(("device.", "server.")) for key in live):
            self._reconfigure_dispatcher(config, live)
        sharing = getattr(self.login_runtime, "sharing", None)
        webs = [self.namedServices.get("terminal"), self.namedServices.get("admin-http"),
                getattr(sharing, "listener", None)]  # fmt: skip
        for listener in webs:
            if listener is not None:  # their own idle timeouts stay
                self._new_limits(listener.factory, limits, idle_timeout=listener.factory.limits.idle_timeout)
        if (terminal := self.namedServices.get("terminal")) is not None:
            terminal.factory.resource.sessions.idle_timeout = config.terminal.session_idle
        if self.login_runtime is not None:
            self.login_runtime.reconfigure(config)
        if self.outbox is not None:
            self.outbox.reconfigure(config.accounting)
        if self.analysis is not None:
            self.analysis.workers = config.analysis.workers
            self.analysis.memory_limit = config.analysis.memory_limit
            self.analysis.page_cap = config.analysis.page_cap
        if self.log_levels is not None:
            self.log_levels.set(config.log.level)

    @staticmethod
    def _new_limits(site: LimitedSite, limits: Any, *, idle_timeout: float | None) -> None:
        """A reload's `[limits]` on an HTTP listener (spooler.web): for its next connections."""
        site.limits = HttpLimits.from_config(limits, idle_timeout=idle_timeout)
        site.timeOut = idle_timeout

    def _device_backend(self, config: Config) -> Any:
        return backend_for_uri(config.device.uri, reactor=self.reactor, run_in_thread=self.run_in_thread,
                               connect_timeout=config.device.connect_timeout,
                               io_timeout=config.device.io_timeout)  # fmt: skip

    def _server_backend(self, config: Config) -> Any:
        """The central server's print queue, if one is configured. It has the job once it has accepted
        it (a pull-print queue may hold it for hours): it is not followed to completion, or one job
        would block the queue."""
        if config.server is None:
            return None
        return backend_for_uri(
            config.server.queue_uri, reactor=self.reactor, run_in_thread=self.run_in_thread,
            connect_timeout=config.server.connect_timeout, io_timeout=config.server.io_timeout,
            follow_timeout=0, probe_timeout=config.server.probe_timeout,
            username=True,  # a raw queue learns the user from PJL, as IPP and LPD name it in the request
        )  # fmt: skip

    def _reconfigure_dispatcher(self, config: Config, live: set[str]) -> None:
        assert self.dispatcher is not None
        device = None
        if live & {"device.uri", "device.connect_timeout", "device.io_timeout"}:
            device = self.device_backend = self._device_backend(config)
            self._describe_device(config)
        server = None
        if live & {"server.queue_uri", "server.connect_timeout", "server.io_timeout", "server.probe_timeout"}:
            server = self._server_backend(config)
        self.dispatcher.reconfigure(queues=config.queues, backend=device, retry_initial=config.device.retry_initial,
                                    retry_max=config.device.retry_max, server=server,
                                    server_config=config.server)  # fmt: skip

    def _describe_device(self, config: Config) -> None:
        """A reload changed the device: the IPP printer stops describing the old one and, when the new
        one is an IPP printer, describes it instead."""
        from spooler.ipp.server.device import DeviceDescriber

        # The plain IPP site describes the device (ipps shares its printer), or ipps when it is alone.
        sites = [getattr(factory, "site", factory) for factory in (self.intake.get("ipp"), self.intake.get("ipps"))
                 if factory is not None]  # fmt: skip
        for site in sites:
            if site.describer is not None:
                site.describer.stop()
                site.describer = None
        ask = self._ask_device()
        if sites and ask is not None:
            sites[0].describer = DeviceDescriber(sites[0].operations.printer, ask, self.reactor, config.device.uri)
            sites[0].describer.start()

    @inlineCallbacks
    def stopService(self) -> Any:
        log.info("Spooler stopping ({reason})", spool_event="spooler_stopping", reason=self.stop_reason)
        self.notifier.stopping(self.stop_reason)
        yield super().stopService()  # listeners close first: no new connections
        for factory in self.intake.values():
            yield factory.close_all()
        if self.analysis is not None:
            yield self.analysis.stop()  # the workers ended and reaped
        if self.outbox is not None:
            self.outbox.stop()
        if self.dispatcher is not None:
            yield self.dispatcher.stop()
        log.info("Spooler stopped ({reason})", spool_event="spooler_stopped", reason=self.stop_reason,
                 ran_seconds=round(time.time() - self.started_at, 3) if self.started_at else None)  # fmt: skip
        self._close_store()
        self.lock.release()

    def _close_store(self) -> None:
        if getattr(self, "jobs", None) is not None:
            self.jobs.close()
        if isinstance(self.commit_thread, CommitThread):
            self.commit_thread.stop()
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.budgets is not None:
            self.budgets.close()
            self.budgets = None

    def status(self) -> dict[str, Any]:
        """`spooler status` of the running daemon (spooler.status, with what only the daemon knows)."""
        assert self.store is not None and self.dispatcher is not None
        daemon = {"running": True, "pid": os.getpid(), "version": __version__, "started_at": self.started_at,
                  "state_dir": str(self.config.state_dir)}  # fmt: skip
        live = {
            **self.dispatcher.status(),
            "listeners": self.listeners(),
            "connections": {name: len(factory.connections) for name, factory in self.intake.items()},
            "delivering": self.dispatcher.busy_with,
            "central": self.central_status(),
            "offline": self.offline_status(),
            "login": self.login_runtime.status() if self.login_runtime is not None else None,
        }
        if self.outbox is not None:
            live["accounting"] = dict(self.outbox.status())
        return spooler_status(self.config, self.store, daemon=daemon, live=live)

    def offline_status(self) -> dict[str, Any] | None:
        """While the central server is down: when the outage began and how many jobs were printed on
        the device since; None otherwise."""
        health = self.dispatcher.server_health if self.dispatcher is not None else None
        if health is None or health.state != DOWN or health.since is None or self.store is None:
            return None
        return {"since": health.since, "printed_offline": self.store.count_printed_offline(health.since)}

    def central_status(self) -> dict[str, Any] | None:
        """The central API's kind and what it can and cannot do (no secret)."""
        server = self.config.server
        if self.central is None or server is None:
            return None
        from spooler.central import capabilities_of

        return {"kind": server.kind, "api_url": server.api_url, "capabilities": capabilities_of(self.central).as_dict()}
