"""Configuration: the embedded defaults, the TOML file that overrides them, and their validation."""

from __future__ import annotations

import ipaddress
import os
import socket
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from spooler.model import ConfigError

SUPPORTED_DEVICE_SCHEMES = ("file", "socket", "ipp", "ipps", "lpd")
DEFAULT_PORTS = {"ipp": 631, "ipps": 631, "lpd": 515}
LOG_LEVELS = ("debug", "info", "warn", "error")
# sun_path holds 108 bytes including the terminating NUL.
MAX_UNIX_SOCKET_PATH = 107

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4,
}  # fmt: skip
_DURATION_UNITS = {"": 1, "ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(key: str, value: Any) -> int:
    """Bytes from an integer or a string such as "512MiB" or "2GB"."""
    if isinstance(value, bool):
        raise ConfigError(key, "expected a size such as 1048576 or \"512MiB\"")
    if isinstance(value, int):
        number, unit = float(value), ""
    elif isinstance(value, str) and (match := _QUANTITY.match(value)):
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise ConfigError(key, f"expected a size such as 1048576 or \"512MiB\", got {value!r}")
    if unit not in _SIZE_UNITS:
        raise ConfigError(key, f"unknown size unit {unit!r} (use B, KiB, MiB, GiB, KB, MB, GB)")
    if number < 0:
        raise ConfigError(key, "must not be negative")
    return int(number * _SIZE_UNITS[unit])


def parse_duration(key: str, value: Any) -> float:
    """Seconds from a number or a string such as "30s", "5m", "1h", "7d"."""
    if isinstance(value, bool):
        raise ConfigError(key, "expected a duration such as 30 or \"5m\"")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    elif isinstance(value, str) and (match := _QUANTITY.match(value)):
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise ConfigError(key, f"expected a duration such as 30 or \"5m\", got {value!r}")
    if unit not in _DURATION_UNITS:
        raise ConfigError(key, f"unknown duration unit {unit!r} (use ms, s, m, h, d)")
    if number < 0:
        raise ConfigError(key, "must not be negative")
    return number * _DURATION_UNITS[unit]


def default_state_dir() -> Path:
    """$SPOOLER_STATE_DIR, else $XDG_STATE_HOME/spooler, else ~/.local/state/spooler."""
    if explicit := os.environ.get("SPOOLER_STATE_DIR"):
        return Path(explicit).expanduser().absolute()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser().absolute() / "spooler"


@dataclass(frozen=True)
class ListenConfig:
    raw: str | None = "tcp:9100:interface=127.0.0.1"
    lpd: str | None = "tcp:8515:interface=127.0.0.1"
    ipp: str | None = "tcp:8631:interface=127.0.0.1"
    ipps: str | None = None  # IPP over TLS (a tcp: endpoint; the TLS comes from [ipp] tls_certificate)


@dataclass(frozen=True)
class LimitsConfig:
    max_job_size: int = 2 * 1024**3
    idle_timeout: float = 300.0
    max_connections: int = 100
    max_connections_per_address: int = 32  # on the HTTP listeners (IPP, IPPS, terminal, login sharing)
    header_timeout: float = 20.0  # an HTTP request's head must arrive within this, whatever trickles in
    max_compression_ratio: float = 100.0  # a gzip/deflate IPP document expands at most this much; 0: no limit


@dataclass(frozen=True)
class LpdConfig:
    """The LPD front-end (RFC 1179). Agent and user names in LPD are client-asserted."""

    admin_agents: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()  # source networks allowed to connect; empty: every address
    max_control_file_size: int = 64 * 1024
    max_line_length: int = 1024
    max_data_files: int = 100
    #: Queue names that reach the default queue, matched without regard to case: the names clients
    #: default to (as a JetDirect printer answers them). Default: these four when no [queues.*] is
    #: configured (one queue), none when the administrator names queues.
    aliases: tuple[str, ...] = ()


#: What an LPD client usually names when it was told nothing (lpr -P lp, Windows' LPR port, JetDirect).
COMMON_LPD_QUEUES = ("lp", "raw", "auto", "PASSTHRU")


@dataclass(frozen=True)
class IppConfig:
    """The IPP Everywhere printer (`/ipp/print` on listen.ipp) and what it says about itself."""

    name: str = "Spooler"
    info: str = ""
    location: str = ""
    make_and_model: str = "Spooler IPP Everywhere"
    color: bool = True
    admin_users: tuple[str, ...] = ()  # users allowed to pause, resume, cancel any job (authenticated with basic)
    max_request_size: int = 2 * 1024**3
    multiple_operation_timeout: float = 60.0
    authentication: str = "none"  # "none" | "basic" (HTTP Basic against users_file)
    users_file: Path | None = None  # NAME:scrypt-verifier lines; None: STATE/ipp-users
    allow_basic_without_tls: bool = False  # Basic on plain http too; else plain http is refused with basic
    tls_certificate: Path | None = None  # PEM files for listen.ipps; None: a self-signed one in STATE/keys
    tls_key: Path | None = None


@dataclass(frozen=True)
class DnssdConfig:
    """DNS-SD (mDNS) advertisement of the IPP printer as `_ipp._tcp` with the `_print` subtype."""

    enabled: bool = False
    name: str = "Spooler"  # the service instance name; default: ipp.name
    interfaces: tuple[str, ...] = ()  # addresses to advertise on; empty: the IPP listener's or all
    host: str | None = None  # the mDNS host name ("NAME.local."); None: this machine's host name


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > 127 or not value.isprintable():
        raise ConfigError(key, f"expected a printable text of at most 127 characters, got {value!r}")
    return value


def _inline_size(key: str, value: Any) -> int:
    size = parse_size(key, value)
    if size > 1024**2:
        raise ConfigError(key, "must be at most 1MiB (larger documents belong in spool files)")
    return size


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {value!r}")
    return value


@dataclass(frozen=True)
class SpoolConfig:
    min_free_space: int = 256 * 1024**2
    keep_files: float = 86400.0
    keep_history: float = 7 * 86400.0
    #: Documents up to this size are stored in the job's SQLite row (one WAL fsync makes data and
    #: row durable together); larger ones go to their own spool file. 0: always a spool file.
    inline_max: int = 64 * 1024


@dataclass(frozen=True)
class DeviceConfig:
    uri: str
    name: str = "spooler"  # this device's name at the central server (API calls, accounting records)
    connect_timeout: float = 10.0
    io_timeout: float = 120.0
    retry_initial: float = 5.0
    retry_max: float = 300.0


QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class QueueConfig:
    """A print queue clients can name (LPD queue, IPP printer), and what it does while the central
    server is down: "print" on the device now, "hold" until the owner releases the job at the
    device, or "queue" the jobs, in order, until the server is back."""

    name: str
    offline_policy: str = "print"


@dataclass(frozen=True)
class ServerConfig:
    """The central print-management server: its print queue (where jobs are forwarded) and health."""

    queue_uri: str
    probe_interval: float = 1.0
    probe_timeout: float = 1.0
    down_after: int = 2
    up_after: int = 2
    connect_timeout: float = 2.0
    io_timeout: float = 30.0
    api_url: str | None = None  # the HTTP JSON API (docs/central-api.md): logins, user sync, accounting
    #: Which product api_url is (spooler.central): "generic" (docs/central-api.md), "papercut" (its
    #: base URL, http://HOST:9191/), "myq" (its base URL, https://HOST:8093/).
    kind: str = "generic"
    auth_token_file: Path | None = None  # papercut: the web services auth token (auth.webservices.auth-token)
    auth_token_env: str | None = None  # ... or the environment variable that holds it
    health_key_file: Path | None = None  # papercut: the System Health API key (health.api.key)
    health_key_env: str | None = None
    client_id: str | None = None  # myq: the REST API application's client id
    client_secret_file: Path | None = None  # myq: its client secret
    client_secret_env: str | None = None
    scope: str = "users"  # myq: the scopes asked for with client credentials
    papercut_server: str | None = None  # papercut: "server" of imported jobs (default: [device] name)
    papercut_printer: str | None = None  # papercut: "printer" of imported jobs (default: [device] name)
    #: The API's grant-signing public key ("ed25519:BASE64", `spooler-refserver key`), pinned here: logins are
    #: cached only with a valid server grant, and a peer's entry or revocation counts only when the server signed it.
    signing_key: str | None = None


@dataclass(frozen=True)
class AnalysisConfig:
    """Page statistics of every job, in child processes with limits (see spooler.analysis)."""

    enabled: bool = True
    workers: int = 1
    memory_limit: int = 1024**3
    page_cap: int = 100_000


@dataclass(frozen=True)
class AccountingConfig:
    """The outbox of accounting records (spooler.outbox): how they go up to [server] api_url."""

    batch_size: int = 1000  # records per upload, at most 1000 (the API's limit)
    max_age: float = 30 * 86400.0  # unsent records older than this stay local and are never sent
    interval: float = 10.0  # how often to look for new records while all is sent
    retry_initial: float = 5.0  # after a failed upload: wait this, then twice as long each time ...
    retry_max: float = 300.0  # ... up to this
    analysis_wait: float = 600.0  # a record whose page figures are not in after this goes as "unknown"


MAX_ACCOUNTING_BATCH = 1000


def _batch_size(key: str, value: Any) -> int:
    number = _positive_int(key, value)
    if number > MAX_ACCOUNTING_BATCH:
        raise ConfigError(key, f"at most {MAX_ACCOUNTING_BATCH} (the API takes no more records per upload)")
    return number


def _accounting(section: dict[str, Any]) -> AccountingConfig:
    d = AccountingConfig()
    config = AccountingConfig(
        batch_size=_get(section, "accounting", "batch_size", _batch_size, d.batch_size),
        max_age=_get(section, "accounting", "max_age", _positive_duration, d.max_age),
        interval=_get(section, "accounting", "interval", _positive_duration, d.interval),
        retry_initial=_get(section, "accounting", "retry_initial", _positive_duration, d.retry_initial),
        retry_max=_get(section, "accounting", "retry_max", _positive_duration, d.retry_max),
        analysis_wait=_get(section, "accounting", "analysis_wait", parse_duration, d.analysis_wait),
    )
    if config.retry_max < config.retry_initial:
        raise ConfigError("accounting.retry_max", "must not be shorter than accounting.retry_initial")
    return config


@dataclass(frozen=True)
class TerminalConfig:
    """The device terminal (spooler.terminal): the login and pull-print web page and its JSON API."""

    enabled: bool = False
    listen: str = "tcp:8633:interface=127.0.0.1"
    session_idle: float = 120.0  # a session unused for this long ends (the user walked away)
    name: str | None = None  # the terminal's id for login throttling; None: each client's address


@dataclass(frozen=True)
class LoginConfig:
    """Logins at the device: the offline credential cache, user sync, brute-force limits, sharing."""

    validity_hours: float = 24.0  # a cache entry lets its user log in offline this long after a login or sync
    offline_enabled: bool = True  # false: no login at all while the central server is unreachable
    sync_interval: float = 3600.0  # pull the device's users and the revocations this often; 0: only on demand
    max_failures: int = 5  # failures that lock a user or a terminal (they are forgotten one per max_lockout) ...
    lockout: float = 300.0  # ... for this long, doubled by each further failure ...
    max_lockout: float = 900.0  # ... up to this
    device_max_failures: int = 10  # PIN or card failures (no user named) that lock that method on this device
    share: bool = False  # share entries with the enrolled peers (spooler peers add)
    peers: tuple[str, ...] = ()  # "host:port" of other spoolers' share endpoints (their keys must be enrolled)
    share_listen: str | None = "tcp:8640:interface=127.0.0.1"  # served only with share = true
    share_interval: float = 300.0  # pull the peers' entries this often
    discover: bool = False  # also find peers by DNS-SD (_spooler-login._tcp)


@dataclass(frozen=True)
class AdminConfig:
    """The admin web listener (spooler.adminweb): /healthz, Prometheus /metrics and the status page."""

    listen: str | None = None  # off by default; e.g. "tcp:9631:interface=127.0.0.1"
    users_file: Path | None = None  # NAME:scrypt-verifier lines (`spooler admin-user add`); None: STATE/admin-users


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    spool_log_max_size: int = 10 * 1024**2
    spool_log_keep: int = 5


@dataclass(frozen=True)
class Config:
    state_dir: Path
    admin_socket: Path
    device: DeviceConfig
    listen: ListenConfig = ListenConfig()
    limits: LimitsConfig = LimitsConfig()
    lpd: LpdConfig = LpdConfig()
    ipp: IppConfig = IppConfig()
    dnssd: DnssdConfig = DnssdConfig()
    spool: SpoolConfig = SpoolConfig()
    log: LogConfig = LogConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    accounting: AccountingConfig = AccountingConfig()
    terminal: TerminalConfig = TerminalConfig()
    queues: tuple[QueueConfig, ...] = (QueueConfig("default"),)
    server: ServerConfig | None = None  # None: standalone, every job goes to the device
    login: LoginConfig = LoginConfig()
    admin: AdminConfig = AdminConfig()
    source: Path | None = None  # the file it was read from, if any

    def queue(self, name: str) -> QueueConfig | None:
        return next((queue for queue in self.queues if queue.name == name), None)

    @property
    def default_queue(self) -> str:
        """The queue of `/ipp/print`, of raw jobs and of the LPD aliases: "default", else the first one."""
        names = [queue.name for queue in self.queues]
        return "default" if "default" in names else names[0]

    @property
    def database_path(self) -> Path:
        return self.state_dir / "spooler.db"

    @property
    def spool_dir(self) -> Path:
        return self.state_dir / "spool"

    @property
    def incoming_dir(self) -> Path:
        return self.state_dir / "incoming"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def spool_log_path(self) -> Path:
        return self.log_dir / "spool.jsonl"

    @property
    def login_cache_path(self) -> Path:
        return self.state_dir / "login.db"

    @property
    def login_key_path(self) -> Path:
        return self.state_dir / "keys" / "login.key"

    @property
    def peer_key_path(self) -> Path:
        """This spooler's own key pair (spooler.login.peers)."""
        return self.state_dir / "keys" / "peer.key"

    @property
    def peers_path(self) -> Path:
        """The peers enrolled by public key (`spooler peers add`)."""
        return self.state_dir / "keys" / "peers.json"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "lock"

    @property
    def default_sink_dir(self) -> Path:
        return self.state_dir / "device"


def _section(raw: dict[str, Any], name: str, known: tuple[str, ...]) -> dict[str, Any]:
    section = raw.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(name, "must be a table ([" + name + "])")
    for key in section:
        if key not in known:
            raise ConfigError(f"{name}.{key}", f"unknown key (known keys: {', '.join(known)})")
    return section


def _get(section: dict[str, Any], prefix: str, key: str, convert: Callable[[str, Any], Any], default: Any) -> Any:
    if key not in section:
        return default
    return convert(f"{prefix}.{key}", section[key])


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, f"expected a whole number of at least 1, got {value!r}")
    return value


def _positive_duration(key: str, value: Any) -> float:
    seconds = parse_duration(key, value)
    if seconds <= 0:
        raise ConfigError(key, "must be longer than zero")
    return seconds


def _endpoint(key: str, value: Any) -> str | None:
    if value is False or value == "":
        return None
    if not isinstance(value, str) or not re.match(r"^[a-z0-9]+:", value):
        raise ConfigError(key, f"expected a Twisted endpoint such as \"tcp:9100:interface=127.0.0.1\", got {value!r}")
    return value


def _tcp_endpoint(key: str, value: Any) -> str | None:
    endpoint = _endpoint(key, value)
    if endpoint is not None and not endpoint.startswith("tcp:"):
        raise ConfigError(key, f"expected a tcp: endpoint such as \"tcp:8632:interface=127.0.0.1\" (TLS is added "
                               f"from [ipp] tls_certificate and tls_key), got {value!r}")
    return endpoint


def _ipp_security(section: dict[str, Any], resolve: Any, state_dir: Path) -> dict[str, Any]:
    """[ipp] authentication, users_file, allow_basic_without_tls, tls_certificate, tls_key."""
    authentication = section.get("authentication", IppConfig.authentication)
    if authentication not in ("none", "basic"):
        raise ConfigError("ipp.authentication", f"expected \"none\" or \"basic\", got {authentication!r}")
    certificate = _get(section, "ipp", "tls_certificate", resolve, None)
    key = _get(section, "ipp", "tls_key", resolve, None)
    if (certificate is None) != (key is None):
        raise ConfigError("ipp.tls_certificate" if certificate is None else "ipp.tls_key",
                          "tls_certificate and tls_key go together")  # fmt: skip
    return {
        "authentication": authentication,
        "users_file": _get(section, "ipp", "users_file", resolve, state_dir / "ipp-users"),
        "allow_basic_without_tls": _get(section, "ipp", "allow_basic_without_tls", _boolean,
                                        IppConfig.allow_basic_without_tls),
        "tls_certificate": certificate,
        "tls_key": key,
    }


def _log_level(key: str, value: Any) -> str:
    if value not in LOG_LEVELS:
        raise ConfigError(key, f"expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return str(value)


def validate_device_uri(key: str, value: Any) -> str:
    """A printer or print-queue URI: socket://host:port, ipp(s)://host[:port]/path, lpd://host[:port]/queue,
    file:///folder."""
    if not isinstance(value, str) or not value:
        raise ConfigError(key, "expected a URI such as \"socket://printer:9100\", \"ipp://printer/ipp/print\" or "
                               "\"file:///var/spool/out\"")  # fmt: skip
    parts = urlsplit(value)
    if parts.scheme not in SUPPORTED_DEVICE_SCHEMES:
        raise ConfigError(
            key, f"unsupported scheme {parts.scheme!r} (supported: {', '.join(SUPPORTED_DEVICE_SCHEMES)})"
        )
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(key, "a file URI needs an absolute folder path: file:///path/to/folder")
        return value
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(key, "the port is not a number between 0 and 65535") from None
    if not parts.hostname:
        raise ConfigError(key, f"a {parts.scheme} URI needs a host")
    if parts.scheme == "socket" and port is None:
        raise ConfigError(key, "a socket URI needs a host and a port: socket://host:9100")
    if parts.scheme == "lpd" and not parts.path.strip("/"):
        raise ConfigError(key, "an lpd URI names the queue: lpd://host/queue")
    return value


def _names(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ConfigError(key, f"expected a list of names such as [\"root\"], got {value!r}")
    return tuple(value)


def _networks(key: str, value: Any) -> tuple[str, ...]:
    """Addresses or networks ("10.0.0.0/8"), checked here and kept as written."""
    names = _names(key, value)
    for name in names:
        try:
            ipaddress.ip_network(name, strict=False)
        except ValueError:
            raise ConfigError(key, f"not an address or network: {name!r}") from None
    return names


_HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _instance_name(key: str, value: Any) -> str:
    """A DNS-SD instance name: printable text of 1 to 63 bytes (UTF-8)."""
    if not isinstance(value, str) or not value or not value.isprintable() or len(value.encode()) > 63:
        raise ConfigError(key, f"expected a printable name of 1 to 63 bytes, got {value!r}")
    return value


def _addresses(key: str, value: Any) -> tuple[str, ...]:
    """IP addresses (not networks), normalised."""
    names = _names(key, value)
    try:
        return tuple(str(ipaddress.ip_address(name)) for name in names)
    except ValueError as error:
        raise ConfigError(key, f"not an IP address: {error}") from None


def _mdns_host(key: str, value: Any) -> str:
    """An mDNS host name: one label, optionally followed by ".local" or ".local."; kept as "LABEL.local."."""
    label = value.removesuffix(".").removesuffix(".local") if isinstance(value, str) else value
    if not isinstance(label, str) or not _HOST_LABEL.match(label):
        raise ConfigError(key, f"expected a host name such as \"printer\" or \"printer.local\", got {value!r}")
    return f"{label}.local."


def _dnssd(section: dict[str, Any], ipp_name: str, ipp_listener: str | None) -> DnssdConfig:
    default_name = ipp_name.encode()[:63].decode("utf-8", "ignore") or DnssdConfig.name
    enabled = _get(section, "dnssd", "enabled", _boolean, DnssdConfig.enabled)
    if enabled and not ipp_listener:
        raise ConfigError("dnssd.enabled", "advertises the IPP printer, but listen.ipp is off")
    return DnssdConfig(
        enabled=enabled,
        name=_get(section, "dnssd", "name", _instance_name, default_name),
        interfaces=_get(section, "dnssd", "interfaces", _addresses, DnssdConfig.interfaces),
        host=_get(section, "dnssd", "host", _mdns_host, DnssdConfig.host),
    )


def _lpd_aliases(key: str, value: Any) -> tuple[str, ...]:
    names = _names(key, value)
    for name in names:
        if not QUEUE_NAME.match(name):
            raise ConfigError(key, f"{name!r} is not a queue name (1-64 letters, digits, '.', '_' or '-')")
    return names


def _queues(raw: Any) -> tuple[QueueConfig, ...]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("queues", "must be a table of queues, e.g. [queues.default]")
    queues = []
    for name, settings in raw.items():
        if not QUEUE_NAME.match(name):
            raise ConfigError(f"queues.{name}", "a queue name is 1-64 letters, digits, '.', '_' or '-'")
        if not isinstance(settings, dict):
            raise ConfigError(f"queues.{name}", "must be a table ([queues." + name + "])")
        for key in settings:
            if key != "offline_policy":
                raise ConfigError(f"queues.{name}.{key}", "unknown key (known keys: offline_policy)")
        policy = settings.get("offline_policy", "print")
        if policy not in ("print", "hold", "queue"):
            raise ConfigError(f"queues.{name}.offline_policy", f"expected print, hold or queue, got {policy!r}")
        queues.append(QueueConfig(name, policy))
    return tuple(queues)


def _default_device_name() -> str:
    """The machine's host name (first label), when it makes a valid device name."""
    host = socket.gethostname().split(".")[0]
    return host if QUEUE_NAME.match(host) else "spooler"


SERVER_KEYS = ("queue_uri", "probe_interval", "probe_timeout", "down_after", "up_after", "connect_timeout",
               "io_timeout", "api_url", "kind", "auth_token_file", "auth_token_env", "health_key_file",
               "health_key_env", "client_id", "client_secret_file", "client_secret_env", "scope", "papercut_server",
               "papercut_printer", "signing_key")  # fmt: skip


def _server(section: dict[str, Any], resolve: Callable[[str, Any], Path]) -> ServerConfig | None:
    if not section:
        return None
    if "queue_uri" not in section:
        raise ConfigError("server.queue_uri", "required when [server] is present (where jobs are forwarded)")
    defaults = ServerConfig(queue_uri="")
    kind = _get(section, "server", "kind", _text, defaults.kind)
    if kind not in ("generic", "papercut", "myq"):
        raise ConfigError("server.kind", f"expected generic, papercut or myq, got {kind!r}")
    config = ServerConfig(
        queue_uri=validate_device_uri("server.queue_uri", section["queue_uri"]),
        probe_interval=_get(section, "server", "probe_interval", _positive_duration, defaults.probe_interval),
        probe_timeout=_get(section, "server", "probe_timeout", _positive_duration, defaults.probe_timeout),
        down_after=_get(section, "server", "down_after", _positive_int, defaults.down_after),
        up_after=_get(section, "server", "up_after", _positive_int, defaults.up_after),
        connect_timeout=_get(section, "server", "connect_timeout", _positive_duration, defaults.connect_timeout),
        io_timeout=_get(section, "server", "io_timeout", _positive_duration, defaults.io_timeout),
        api_url=_get(section, "server", "api_url", _api_url, defaults.api_url),
        kind=kind,
        auth_token_file=_get(section, "server", "auth_token_file", resolve, None),
        auth_token_env=_get(section, "server", "auth_token_env", _text, None),
        health_key_file=_get(section, "server", "health_key_file", resolve, None),
        health_key_env=_get(section, "server", "health_key_env", _text, None),
        client_id=_get(section, "server", "client_id", _text, None),
        client_secret_file=_get(section, "server", "client_secret_file", resolve, None),
        client_secret_env=_get(section, "server", "client_secret_env", _text, None),
        scope=_get(section, "server", "scope", _text, defaults.scope),
        papercut_server=_get(section, "server", "papercut_server", _text, None),
        papercut_printer=_get(section, "server", "papercut_printer", _text, None),
        signing_key=_get(section, "server", "signing_key", _signing_key, defaults.signing_key),
    )
    if config.api_url and kind == "papercut" and not (config.auth_token_file or config.auth_token_env):
        raise ConfigError("server.auth_token_file", "kind papercut needs the web services auth token: "
                          "auth_token_file or auth_token_env")  # fmt: skip
    if config.api_url and kind == "myq" and not (config.client_id and (config.client_secret_file
                                                                       or config.client_secret_env)):
        raise ConfigError("server.client_id", "kind myq needs client_id and client_secret_file or client_secret_env")
    if config.signing_key and kind != "generic":
        raise ConfigError("server.signing_key", f"kind {kind} does not sign its logins: only the generic API "
                                                "(docs/central-api.md, \"Signatures\") has a key to pin")  # fmt: skip
    return config


def _signing_key(key: str, value: Any) -> str:
    from spooler.signing import SignatureError, canonical_key

    try:
        return canonical_key(value)
    except SignatureError as error:
        raise ConfigError(key, f"{error} (the central API's key: `spooler-refserver key`, or GET signing-key)") from None


def _api_url(key: str, value: Any) -> str:
    text = _text(key, value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f"expected an http:// or https:// URL such as http://central.example/api/v1/, got {text!r}")
    return text if text.endswith("/") else text + "/"


def _device_name(key: str, value: Any) -> str:
    text = _text(key, value)
    if not QUEUE_NAME.match(text):
        raise ConfigError(key, f"expected 1-64 letters, digits, '.', '_' or '-', got {text!r}")
    return text


def _terminal(section: dict[str, Any]) -> TerminalConfig:
    listen = _get(section, "terminal", "listen", _endpoint, TerminalConfig.listen)
    enabled = _get(section, "terminal", "enabled", _boolean, TerminalConfig.enabled)
    if enabled and not listen:
        raise ConfigError("terminal.listen", "the terminal is enabled but has no endpoint to listen on")
    return TerminalConfig(
        enabled=enabled,
        listen=listen or TerminalConfig.listen,
        session_idle=_get(section, "terminal", "session_idle", _positive_duration, TerminalConfig.session_idle),
        name=_get(section, "terminal", "name", _device_name, TerminalConfig.name),
    )


def _peer_address(key: str, value: Any) -> tuple[str, ...]:
    names = _names(key, value)
    for name in names:
        host, _, port = name.rpartition(":")
        if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ConfigError(key, f"expected \"host:port\" peers such as \"192.0.2.11:8640\", got {name!r}")
    return names


def _ratio(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value == 0 or value >= 2):
        raise ConfigError(key, f"expected a ratio of 2 or more (0: no limit), got {value!r}")
    return float(value)


def _hours(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(key, f"expected a number of hours above zero, got {value!r}")
    return float(value)


FLEET_KEY_GONE = (
    "is no longer used: login sharing is no longer authenticated by a shared fleet key (whoever held it could "
    "impersonate anyone). Each spooler now has its own key pair: run `spooler peers self` on each spooler, "
    "`spooler peers add NAME KEY` on the others, set `share = true`, and remove fleet_key_file (and the key file)"
)


def _login(section: dict[str, Any]) -> LoginConfig:
    d = LoginConfig()
    if "fleet_key_file" in section:
        raise ConfigError("login.fleet_key_file", FLEET_KEY_GONE)
    config = LoginConfig(
        validity_hours=_get(section, "login", "validity_hours", _hours, d.validity_hours),
        offline_enabled=_get(section, "login", "offline_enabled", _boolean, d.offline_enabled),
        sync_interval=_get(section, "login", "sync_interval", parse_duration, d.sync_interval),
        max_failures=_get(section, "login", "max_failures", _positive_int, d.max_failures),
        lockout=_get(section, "login", "lockout", _positive_duration, d.lockout),
        max_lockout=_get(section, "login", "max_lockout", _positive_duration, d.max_lockout),
        device_max_failures=_get(section, "login", "device_max_failures", _positive_int, d.device_max_failures),
        share=_get(section, "login", "share", _boolean, d.share),
        peers=_get(section, "login", "peers", _peer_address, d.peers),
        share_listen=_get(section, "login", "share_listen", _endpoint, d.share_listen),
        share_interval=_get(section, "login", "share_interval", _positive_duration, d.share_interval),
        discover=_get(section, "login", "discover", _boolean, d.discover),
    )
    if config.max_lockout < config.lockout:
        raise ConfigError("login.max_lockout", "must not be shorter than login.lockout")
    return config


def load_config(path: Path | None = None, *, state_dir: Path | None = None) -> Config:
    """The configuration from `path` (TOML) over the embedded defaults; `state_dir` overrides both."""
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        try:
            with open(path, "rb") as handle:
                raw = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError("--config", f"no such file: {path}") from None
        except OSError as error:
            raise ConfigError("--config", f"cannot read {path}: {error.strerror}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError("--config", f"{path} is not valid TOML: {error}") from None
        base = Path(path).absolute().parent
    return config_from_mapping(raw, base=base, state_dir=state_dir, source=path)


def config_from_mapping(
    raw: dict[str, Any], *, base: Path, state_dir: Path | None = None, source: Path | None = None
) -> Config:
    top_level = ("state_dir", "listen", "limits", "lpd", "ipp", "spool", "device", "server", "admin", "log",
                 "queues", "analysis", "dnssd", "accounting", "terminal", "login")  # fmt: skip
    for key in raw:
        if key not in top_level:
            raise ConfigError(key, f"unknown key (known top-level keys: {', '.join(top_level)})")

    def resolve(key: str, value: Any) -> Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(key, f"expected a path, got {value!r}")
        return (base / Path(value).expanduser()).absolute()

    if state_dir is None:
        state_dir = resolve("state_dir", raw["state_dir"]) if "state_dir" in raw else default_state_dir()
    state_dir = state_dir.absolute()

    listen = _section(raw, "listen", ("raw", "lpd", "ipp", "ipps"))
    ipp = _section(raw, "ipp", ("name", "info", "location", "make_and_model", "color", "admin_users",
                                "max_request_size", "multiple_operation_timeout", "authentication", "users_file",
                                "allow_basic_without_tls", "tls_certificate", "tls_key"))  # fmt: skip
    dnssd = _section(raw, "dnssd", ("enabled", "name", "interfaces", "host"))
    limits = _section(raw, "limits", ("max_job_size", "idle_timeout", "max_connections", "max_connections_per_address",
                                      "header_timeout", "max_compression_ratio"))
    spool = _section(raw, "spool", ("min_free_space", "keep_files", "keep_history", "inline_max"))
    device = _section(raw, "device", ("uri", "name", "connect_timeout", "io_timeout", "retry_initial", "retry_max"))
    admin = _section(raw, "admin", ("socket", "listen", "users_file"))
    log = _section(raw, "log", ("level", "spool_log_max_size", "spool_log_keep"))
    lpd = _section(raw, "lpd", ("admin_agents", "allow", "max_control_file_size", "max_line_length",
                                "max_data_files", "aliases"))  # fmt: skip

    default_device_uri = (state_dir / "device").as_uri()
    device_config = DeviceConfig(
        uri=_get(device, "device", "uri", validate_device_uri, default_device_uri),
        name=_get(device, "device", "name", _device_name, _default_device_name()),
        connect_timeout=_get(device, "device", "connect_timeout", _positive_duration, 10.0),
        io_timeout=_get(device, "device", "io_timeout", _positive_duration, 120.0),
        retry_initial=_get(device, "device", "retry_initial", _positive_duration, 5.0),
        retry_max=_get(device, "device", "retry_max", _positive_duration, 300.0),
    )
    if device_config.retry_max < device_config.retry_initial:
        raise ConfigError("device.retry_max", "must not be shorter than device.retry_initial")

    admin_socket = _get(admin, "admin", "socket", resolve, state_dir / "admin.sock")
    if len(os.fsencode(str(admin_socket))) > MAX_UNIX_SOCKET_PATH:
        raise ConfigError(
            "admin.socket",
            f"the path {admin_socket} is longer than {MAX_UNIX_SOCKET_PATH} bytes, the limit of a UNIX socket;"
            " set admin.socket to a shorter path",
        )

    queues = _queues(raw.get("queues", {"default": {}}))
    aliases = _get(lpd, "lpd", "aliases", _lpd_aliases,
                   () if "queues" in raw else COMMON_LPD_QUEUES)  # fmt: skip
    for alias in aliases:
        if any(alias.lower() == queue.name.lower() for queue in queues):
            raise ConfigError("lpd.aliases", f"{alias!r} is the name of a configured queue")
    analysis = _section(raw, "analysis", ("enabled", "workers", "memory_limit", "page_cap"))
    analysis_config = AnalysisConfig(
        enabled=_get(analysis, "analysis", "enabled", _boolean, AnalysisConfig.enabled),
        workers=_get(analysis, "analysis", "workers", _positive_int, AnalysisConfig.workers),
        memory_limit=_get(analysis, "analysis", "memory_limit", parse_size, AnalysisConfig.memory_limit),
        page_cap=_get(analysis, "analysis", "page_cap", _positive_int, AnalysisConfig.page_cap),
    )
    server_config = _server(_section(raw, "server", SERVER_KEYS), resolve)

    accounting = _accounting(_section(raw, "accounting", ("batch_size", "max_age", "interval", "retry_initial",
                                                          "retry_max", "analysis_wait")))  # fmt: skip

    login = _section(raw, "login", ("validity_hours", "offline_enabled", "sync_interval", "max_failures", "lockout",
                                    "max_lockout", "device_max_failures", "share", "peers", "share_listen",
                                    "fleet_key_file", "share_interval", "discover"))  # fmt: skip
    return Config(
        state_dir=state_dir,
        accounting=accounting,
        login=_login(login),
        queues=queues,
        server=server_config,
        analysis=analysis_config,
        terminal=_terminal(_section(raw, "terminal", ("enabled", "listen", "session_idle", "name"))),
        admin_socket=admin_socket,
        admin=AdminConfig(
            listen=_get(admin, "admin", "listen", _endpoint, AdminConfig.listen) or None,
            users_file=_get(admin, "admin", "users_file", resolve, state_dir / "admin-users"),
        ),
        device=device_config,
        listen=ListenConfig(
            raw=_get(listen, "listen", "raw", _endpoint, ListenConfig.raw),
            lpd=_get(listen, "listen", "lpd", _endpoint, ListenConfig.lpd),
            ipp=_get(listen, "listen", "ipp", _endpoint, ListenConfig.ipp),
            ipps=_get(listen, "listen", "ipps", _tcp_endpoint, ListenConfig.ipps),
        ),
        ipp=IppConfig(
            name=(ipp_name := _get(ipp, "ipp", "name", _text, IppConfig.name)),
            info=_get(ipp, "ipp", "info", _text, IppConfig.info),
            location=_get(ipp, "ipp", "location", _text, IppConfig.location),
            make_and_model=_get(ipp, "ipp", "make_and_model", _text, IppConfig.make_and_model),
            color=_get(ipp, "ipp", "color", _boolean, IppConfig.color),
            admin_users=_get(ipp, "ipp", "admin_users", _names, IppConfig.admin_users),
            max_request_size=_get(ipp, "ipp", "max_request_size", parse_size, IppConfig.max_request_size),
            multiple_operation_timeout=_get(ipp, "ipp", "multiple_operation_timeout", _positive_duration,
                                            IppConfig.multiple_operation_timeout),
            **_ipp_security(ipp, resolve, state_dir),
        ),
        dnssd=_dnssd(dnssd, ipp_name, _get(listen, "listen", "ipp", _endpoint, ListenConfig.ipp)),
        lpd=LpdConfig(
            admin_agents=_get(lpd, "lpd", "admin_agents", _names, LpdConfig.admin_agents),
            allow=_get(lpd, "lpd", "allow", _networks, LpdConfig.allow),
            max_control_file_size=_get(lpd, "lpd", "max_control_file_size", parse_size,
                                       LpdConfig.max_control_file_size),
            max_line_length=_get(lpd, "lpd", "max_line_length", _positive_int, LpdConfig.max_line_length),
            max_data_files=_get(lpd, "lpd", "max_data_files", _positive_int, LpdConfig.max_data_files),
            aliases=aliases,
        ),
        limits=LimitsConfig(
            max_job_size=_get(limits, "limits", "max_job_size", parse_size, LimitsConfig.max_job_size),
            idle_timeout=_get(limits, "limits", "idle_timeout", _positive_duration, LimitsConfig.idle_timeout),
            max_connections=_get(limits, "limits", "max_connections", _positive_int, LimitsConfig.max_connections),
            max_connections_per_address=_get(limits, "limits", "max_connections_per_address", _positive_int,
                                             LimitsConfig.max_connections_per_address),
            header_timeout=_get(limits, "limits", "header_timeout", _positive_duration, LimitsConfig.header_timeout),
            max_compression_ratio=_get(limits, "limits", "max_compression_ratio", _ratio,
                                       LimitsConfig.max_compression_ratio),
        ),
        spool=SpoolConfig(
            min_free_space=_get(spool, "spool", "min_free_space", parse_size, SpoolConfig.min_free_space),
            keep_files=_get(spool, "spool", "keep_files", parse_duration, SpoolConfig.keep_files),
            keep_history=_get(spool, "spool", "keep_history", parse_duration, SpoolConfig.keep_history),
            inline_max=_get(spool, "spool", "inline_max", _inline_size, SpoolConfig.inline_max),
        ),
        log=LogConfig(
            level=_get(log, "log", "level", _log_level, LogConfig.level),
            spool_log_max_size=_get(log, "log", "spool_log_max_size", parse_size, LogConfig.spool_log_max_size),
            spool_log_keep=_get(log, "log", "spool_log_keep", _positive_int, LogConfig.spool_log_keep),
        ),
        source=source,
    )
