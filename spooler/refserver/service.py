"""The reference server's service tree: the print queue (a `SpoolerService` whose device is DIR/received,
holding its jobs for release with --hold: spooler.refserver.hold), the central API listener and the
control socket, all steered by one `ModeController`."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, maybeDeferred, succeed
from twisted.internet.endpoints import UNIXServerEndpoint, serverFromString
from twisted.logger import Logger

from spooler import __version__
from spooler.config import Config, config_from_mapping
from spooler.model import ConfigError, JobNotFound
from spooler.refserver.api import DEFAULT_GRANT_VALIDITY, ApiError, CentralApi, build_api_site, build_control_site
from spooler.refserver.hold import HeldQueue, hold_new_jobs
from spooler.refserver.modes import (
    DEFAULT_DELAY,
    FailureModeFactory,
    ModeController,
    ipp_error_factory,
    lpd_error_factory,
    raw_error_factory,
)
from spooler.refserver.store import CentralStore
from spooler.refserver.users import UserDirectory
from spooler.listeners import ListenerService
from spooler.service import SpoolerService
from spooler.signing import public_key_text
from spooler.store.spoolfiles import ensure_private_dir, write_private_file
from spooler.verifiers import SCRYPT_N

log = Logger(namespace="spooler.refserver")

DEFAULT_API = "tcp:8080:interface=127.0.0.1"
DEFAULT_IPP = "tcp:8632:interface=127.0.0.1"
DEFAULT_LPD = "tcp:8516:interface=127.0.0.1"
SAMPLE_USERS = Path(__file__).with_name("sample-users.json")


@dataclass(frozen=True)
class RefServerOptions:
    state: Path
    api: str = DEFAULT_API
    ipp: str | None = DEFAULT_IPP
    lpd: str | None = DEFAULT_LPD
    raw: str | None = None
    users: Path = SAMPLE_USERS
    mode: str = "normal"
    delay: float = DEFAULT_DELAY
    verifier_cost: int = SCRYPT_N
    #: Hold every received job until released (pull print), and release it on its own this many
    #: seconds after it arrived (None: only `ctl release` does).
    hold: bool = False
    release_after: float | None = None
    sign: bool = True  # sign login grants and revocations (False: an API that cannot, as some products)
    grant_validity: float = DEFAULT_GRANT_VALIDITY

    @property
    def signing_key_path(self) -> Path:
        return self.state / "signing.key"

    @property
    def queue_dir(self) -> Path:
        return self.state / "queue"

    @property
    def received_dir(self) -> Path:
        return self.state / "received"

    @property
    def control_socket(self) -> Path:
        return self.state / "control.sock"

    @property
    def database(self) -> Path:
        return self.state / "central.db"


def open_signing_key(path: Path) -> Ed25519PrivateKey:
    """The server's Ed25519 signing key (PEM, mode 0600), made the first time: spoolers pin its public half."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        ensure_private_dir(path.parent)
        key = Ed25519PrivateKey.generate()
        write_private_file(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))  # fmt: skip
        return key
    except (OSError, ValueError) as error:
        raise ConfigError("--state", f"cannot read the signing key {path}: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("--state", f"{path} is not an Ed25519 key")
    return key


def queue_config(options: RefServerOptions) -> Config:
    """The print queue: a spooler with IPP and LPD intake (raw only if asked), delivering into DIR/received."""
    return config_from_mapping(
        {
            "listen": {"raw": options.raw or False, "ipp": options.ipp or False, "lpd": options.lpd or False},
            "device": {"uri": options.received_dir.absolute().as_uri(), "retry_initial": "1s", "retry_max": "10s"},
            "ipp": {"name": "Central", "info": "Reference central server queue"},
            "spool": {"min_free_space": "16MiB"},
        },
        base=options.state,
        state_dir=options.queue_dir,
    )


class QueueService(SpoolerService):
    """The spooler that serves as the central print queue: its IPP and LPD factories obey the failure mode."""

    def __init__(self, config: Config, reactor: Any, controller: ModeController) -> None:
        super().__init__(config, reactor)
        self.controller = controller

    def _intake_factories(self) -> dict[str, tuple[str, Any]]:
        errors: dict[str, Callable[[], Any]] = {"ipp": ipp_error_factory, "lpd": lpd_error_factory,
                                                "raw": raw_error_factory}  # fmt: skip
        return {
            name: (description, FailureModeFactory(name, factory, self.controller, self.reactor,
                                                   error=errors[name]() if name in errors else None))  # fmt: skip
            for name, (description, factory) in super()._intake_factories().items()
        }


class ControlListener(ListenerService):
    """The control socket: a stale socket file is removed first (the queue's state lock is held)."""

    def __init__(self, path: Path, reactor: Any, factory: Any) -> None:
        super().__init__("control", UNIXServerEndpoint(reactor, str(path), mode=0o600, wantPID=False), factory)
        self.path = path

    def startService(self) -> None:
        if self.path.is_socket():
            self.path.unlink()
        super().startService()


class RefServerService(MultiService):
    """The whole reference server. Build it, `startService()` (raises if a port is taken), run the reactor."""

    def __init__(self, options: RefServerOptions, reactor: Any) -> None:
        super().__init__()
        self.options = options
        self.reactor = reactor
        self.controller = ModeController(options.mode, options.delay)
        self.store: CentralStore | None = None
        self.api: CentralApi | None = None
        self.queue: QueueService | None = None
        self.api_listener: ListenerService | None = None
        self.hold: HeldQueue | None = None

    def startService(self) -> None:
        options = self.options
        ensure_private_dir(options.state)
        directory, file_revocations = UserDirectory.load(options.users, cost=options.verifier_cost)
        self.store = CentralStore.open(options.database)
        try:
            signer = open_signing_key(options.signing_key_path) if options.sign else None
            self.api = CentralApi(directory, self.store, self.reactor, file_revocations, signer=signer,
                                  grant_validity=options.grant_validity)  # fmt: skip
        except ValueError as error:
            raise ConfigError("--users", str(error)) from None
        self.queue = QueueService(queue_config(options), self.reactor, self.controller)
        self.queue.setServiceParent(self)
        try:
            endpoint = serverFromString(self.reactor, options.api)
        except (ValueError, TypeError, KeyError) as error:
            raise ConfigError("--api", f"not a valid endpoint {options.api!r}: {error}") from None
        api_site = build_api_site(self.api, self.controller, self.reactor)
        api_factory = FailureModeFactory("api", api_site, self.controller, self.reactor)
        self.api_listener = ListenerService("api", endpoint, api_factory)
        self.api_listener.setServiceParent(self)
        ControlListener(options.control_socket, self.reactor,
                        build_control_site(self.controller, self.status, self.api, self.reactor,
                                           self.release)).setServiceParent(self)  # fmt: skip
        self.controller.on_listening.append(self._listen)
        super().startService()
        assert self.queue.jobs is not None
        queues = [queue.name for queue in self.queue.config.queues]
        if options.hold:
            self.hold = HeldQueue(self.queue.jobs, self.controller, self.reactor, options.release_after, queues)
            self.hold.start()
        else:
            hold_new_jobs(self.queue.jobs, queues, False)
        if self.controller.mode == "refuse":
            self._listen(False)
        log.info("Reference central server {version} started: state {state}, mode {mode}, listening {listeners}",
                 refserver_event="refserver_started", version=__version__, state=str(options.state),
                 mode=self.controller.mode, listeners=self.listeners(), pid=os.getpid())  # fmt: skip

    def _port_services(self) -> list[ListenerService]:
        services: list[ListenerService] = [self.api_listener] if self.api_listener is not None else []
        if self.queue is not None:
            services += [s for s in self.queue if isinstance(s, ListenerService) and s.name in ("ipp", "lpd", "raw")]
        return services

    def _listen(self, wanted: bool) -> Deferred[Any]:
        """Start or stop listening on the API, IPP and LPD ports (the refuse mode)."""
        waits: list[Deferred[Any]] = []
        for service in self._port_services():
            if wanted and not service.running:
                service.startService()
            elif not wanted and service.running:
                waits.append(maybeDeferred(service.stopService))
        return gatherResults(waits, consumeErrors=True) if waits else succeed(None)

    def listeners(self) -> dict[str, str]:
        return {str(service.name): service.address for service in self._port_services() if service.running}

    def status(self) -> dict[str, Any]:
        received = self.options.received_dir
        return dict(
            self.controller.as_dict(),
            pid=os.getpid(),
            version=__version__,
            state=str(self.options.state),
            listeners=self.listeners(),
            received_jobs=len(list(received.glob("job-*.prn"))) if received.is_dir() else 0,
            accounting_records=self.store.record_count() if self.store is not None else 0,
            hold=self.hold.status() if self.hold is not None else {"hold": False},
            signing_key=public_key_text(self.api.signer) if self.api is not None and self.api.signer else None,
        )

    def release(self, body: Any) -> dict[str, Any]:
        """`POST /v1/release` {"job_ids": [...]} (all held jobs when absent): the jobs released."""
        if self.hold is None:
            raise ApiError(409, "not-held", "the queue does not hold jobs (start it with --hold)")
        job_ids = body.get("job_ids") if isinstance(body, dict) else None
        if job_ids is not None and (not isinstance(job_ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in job_ids)):  # fmt: skip
            raise ApiError(400, "bad-request", "job_ids must be a list of job ids")
        try:
            return {"released": self.hold.release(job_ids)}
        except JobNotFound as error:
            raise ApiError(404, "not-found", str(error)) from None

    @inlineCallbacks
    def stopService(self) -> Any:
        if self.hold is not None:
            self.hold.stop()
        yield super().stopService()
        if self.store is not None:
            self.store.close()
            self.store = None
        log.info("Reference central server stopped", refserver_event="refserver_stopped")
