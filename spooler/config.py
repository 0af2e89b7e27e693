"""Configuration: the embedded defaults, the TOML file that overrides them, and their validation.

Every key is declared once, as a field of its section's class, with its default and the parser that
turns a TOML value into it (or raises ConfigError naming the key, which stops the spooler with one
line and exit status 2):

    @section("limits")
    class LimitsConfig:
        idle_timeout: float = setting(300.0, _positive_duration)

The section's known keys, its "unknown key" error, the parsing of each value and the default all
come from those declarations (`load_section`). To add a key: add its field with
`setting(default, parser)` (or `path_setting()` for a file path, resolved against the config file's
folder) to its section class; show it with its default in samples/spooler.toml (a test checks that
every declared key is there); use it. If the running daemon can take a new value on a reload
(SIGHUP) without a restart, say `live=True` and hand it over in SpoolerService._hand_over
(spooler.reload). A check that involves several keys goes in the section's
`checked` method. A new table: a class decorated with `@section("name")` (which makes "name" a known
top-level key), a field of Config (`name: NewConfig = NewConfig()`) and its `load("name")` in
`config_from_mapping`. No I/O here besides reading the file.
"""

from __future__ import annotations

import ipaddress
import os
from importlib.util import find_spec
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import attrs

from spooler.model import ConfigError

SUPPORTED_DEVICE_SCHEMES = ("file", "socket", "ipp", "ipps", "lpd")
DEFAULT_PORTS = {"ipp": 631, "ipps": 631, "lpd": 515}
LOG_LEVELS = ("debug", "info", "warn", "error")
SERVER_KINDS = ("generic", "papercut", "myq")
# sun_path holds 108 bytes including the terminating NUL.
MAX_UNIX_SOCKET_PATH = 107
MAX_ACCOUNTING_BATCH = 1000
QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4,
}  # fmt: skip
_DURATION_UNITS = {"": 1, "ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

#: A parser: (the dotted key, the TOML value) -> the value, or ConfigError naming the key.
Parser = Callable[[str, Any], Any]


# -- parsers ---------------------------------------------------------------------------------------


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

def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > 127 or not value.isprintable():
        raise ConfigError(key, f"expected a printable text of at most 127 characters, got {value!r}")
    return value

def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {value!r}")
    return value

def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, f"expected a whole number of at least 1, got {value!r}")
    return value

def _positive_duration(key: str, value: Any) -> float:
    seconds = parse_duration(key, value)
    if seconds <= 0:
        raise ConfigError(key, "must be longer than zero")
    return seconds

def _inline_size(key: str, value: Any) -> int:
    size = parse_size(key, value)
    if size > 1024**2:
        raise ConfigError(key, "must be at most 1MiB (larger documents belong in spool files)")
    return size

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


def _lpd_aliases(key: str, value: Any) -> tuple[str, ...]:
    names = _names(key, value)
    for name in names:
        if not QUEUE_NAME.match(name):
            raise ConfigError(key, f"{name!r} is not a queue name (1-64 letters, digits, '.', '_' or '-')")
    return names


def _signing_key(key: str, value: Any) -> str:
    from spooler.signing import SignatureError, canonical_key

    try:
        return canonical_key(value)
    except SignatureError as error:
        raise ConfigError(key, f"{error} (the central API's key: `spooler-refserver key`, or GET signing-key)") from None


def _hours(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(key, f"expected a number of hours above zero, got {value!r}")
    return float(value)

def _batch_size(key: str, value: Any) -> int:
    number = _positive_int(key, value)
    if number > MAX_ACCOUNTING_BATCH:
        raise ConfigError(key, f"at most {MAX_ACCOUNTING_BATCH} (the API takes no more records per upload)")
    return number

def _default_device_name() -> str:
    """The machine's host name (first label), when it makes a valid device name."""
    host = socket.gethostname().split(".")[0]
    return host if QUEUE_NAME.match(host) else "spooler"

#: Packages a feature needs that a plain install leaves out, and the extra that brings them.
EXTRAS = {"zeroconf": "dnssd", "reportlab": "report"}


def missing_package(module: str) -> str | None:
    """What to say when the optional package `module` is not installed (None: it is)."""
    if find_spec(module) is not None:
        return None
    return f"needs the {module} package: pip install 'branch-spooler[{EXTRAS[module]}]'"


def require_package(module: str, key: str) -> None:
    """Raises ConfigError naming `key` when the optional package `module` is not installed."""
    if (problem := missing_package(module)) is not None:
        raise ConfigError(key, problem)


def default_state_dir() -> Path:
    """$SPOOLER_STATE_DIR, else $XDG_STATE_HOME/spooler, else ~/.local/state/spooler."""
    if explicit := os.environ.get("SPOOLER_STATE_DIR"):
        return Path(explicit).expanduser().absolute()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser().absolute() / "spooler"


def _choice(*allowed: str) -> Parser:
    """One of the keywords `allowed`."""

    def parse(key: str, value: Any) -> str:
        if value not in allowed:
            raise ConfigError(key, f"expected {', '.join(allowed[:-1])} or {allowed[-1]}, got {value!r}")
        return str(value)

    return parse


# -- declarations ------------------------------------------------------------------------------------

C = TypeVar("C")


def setting(default: Any, parse: Parser, *, live: bool | str = False) -> Any:
    """A key of a section: its default, the parser of its TOML value, and whether a reload (SIGHUP)
    applies a new value at once (`live=True`; "while_on": while it stays on, e.g. a listener that
    moves; False: it waits for a restart, see spooler.reload)."""
    return attrs.field(default=default, metadata={"parse": parse, "live": live})


def path_setting(default: Path | None = None, *, live: bool = False) -> Any:
    """A file or folder path: relative paths are relative to the config file's folder."""
    return attrs.field(default=default, metadata={"parse": "path", "live": live})


def reload_rule(key: str) -> bool | str:
    """How a reload treats a change of the dotted `key` ("limits.idle_timeout"): its declaration's
    `live` (False, a restart, for a key that is not declared)."""
    section_name, _, name = key.partition(".")
    cls = SECTIONS.get(section_name)
    field = next((f for f in attrs.fields(cls) if f.name == name), None) if cls is not None else None
    return field.metadata.get("live", False) if field is not None else False


FLEET_KEY_GONE = (
    "is no longer used: login sharing is no longer authenticated by a shared fleet key (whoever held it could "
    "impersonate anyone). Each spooler now has its own key pair: run `spooler peers self` on each spooler, "
    "`spooler peers add NAME KEY` on the others, set `share = true`, and remove fleet_key_file (and the key file)"
)
#: Keys that were once known, and what to do instead: refused with this message, not as unknown.
RETIRED_KEYS = {"login.fleet_key_file": FLEET_KEY_GONE}
#: The tables of the config file, by name, as `section` declares them.
SECTIONS: dict[str, type] = {}


def section(name: str) -> Callable[[type[C]], type[C]]:
    """A table of the config file, `[name]`: an attrs class (frozen) whose fields are its keys."""

    def declare(cls: type[C]) -> type[C]:
        made = attrs.frozen(slots=False)(cls)
        made.section_name = name  # type: ignore[attr-defined]
        SECTIONS[name] = made
        return made

    return declare


def keys_of(cls: type) -> tuple[str, ...]:
    """The keys a section's table may have, in declaration order."""
    return tuple(field.name for field in attrs.fields(cls) if "parse" in field.metadata)


def load_section(cls: type[C], raw: Any, *, prefix: str | None = None, base: Path,
                 defaults: Mapping[str, Any] | None = None) -> C:  # fmt: skip
    """The section `cls` from its TOML table `raw` (a dict; {} when absent): every key parsed by its
    declared parser and named in its error as "prefix.key"; `defaults` replace declared defaults
    that depend on other settings; then the section's own `checked` cross-key rules."""
    prefix = prefix or cls.section_name  # type: ignore[attr-defined]
    if not isinstance(raw, dict):
        raise ConfigError(prefix, "must be a table ([" + prefix + "])")
    known = keys_of(cls)
    for key in raw:
        if f"{prefix}.{key}" in RETIRED_KEYS:
            raise ConfigError(f"{prefix}.{key}", RETIRED_KEYS[f"{prefix}.{key}"])
        if key not in known:
            raise ConfigError(f"{prefix}.{key}", f"unknown key (known keys: {', '.join(known)})")
    values: dict[str, Any] = dict(defaults or {})
    for field in attrs.fields(cls):
        if field.name not in raw:
            continue
        key, value = f"{prefix}.{field.name}", raw[field.name]
        parse = field.metadata["parse"]
        values[field.name] = resolve_path(key, value, base) if parse == "path" else parse(key, value)
    loaded = cls(**values)
    checked = getattr(loaded, "checked", None)
    return checked() if checked is not None else loaded


def resolve_path(key: str, value: Any, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"expected a path, got {value!r}")
    return (base / Path(value).expanduser()).absolute()


# -- the sections ------------------------------------------------------------------------------------


@section("listen")
class ListenConfig:
    """The office-facing listeners (Twisted endpoint strings; "" turns one off)."""

    raw: str | None = setting("tcp:9100:interface=127.0.0.1", _endpoint, live=True)
    lpd: str | None = setting("tcp:8515:interface=127.0.0.1", _endpoint, live=True)
    ipp: str | None = setting("tcp:8631:interface=127.0.0.1", _endpoint, live="while_on")
    #: IPP over TLS (a tcp: endpoint; the TLS comes from [ipp] tls_certificate)
    ipps: str | None = setting(None, _tcp_endpoint, live="while_on")


@section("limits")
class LimitsConfig:
    max_job_size: int = setting(2 * 1024**3, parse_size, live=True)
    idle_timeout: float = setting(300.0, _positive_duration, live=True)
    max_connections: int = setting(100, _positive_int, live=True)
    #: on the HTTP listeners (IPP, IPPS, terminal, login sharing)
    max_connections_per_address: int = setting(32, _positive_int, live=True)
    #: an HTTP request's head must arrive within this, whatever trickles in
    header_timeout: float = setting(20.0, _positive_duration, live=True)
    #: a gzip/deflate IPP document expands at most this much; 0: no limit
    max_compression_ratio: float = setting(100.0, _ratio, live=True)


@section("lpd")
class LpdConfig:
    """The LPD front-end (RFC 1179). Agent and user names in LPD are client-asserted."""

    admin_agents: tuple[str, ...] = setting((), _names, live=True)
    allow: tuple[str, ...] = setting((), _networks, live=True)  # source networks allowed to connect; empty: every address
    max_control_file_size: int = setting(64 * 1024, parse_size, live=True)
    max_line_length: int = setting(1024, _positive_int, live=True)
    max_data_files: int = setting(100, _positive_int, live=True)
    #: Queue names that reach the default queue, matched without regard to case: the names clients
    #: default to (as a JetDirect printer answers them). Default: COMMON_LPD_QUEUES when no
    #: [queues.*] is configured (one queue), none when the administrator names queues.
    aliases: tuple[str, ...] = setting((), _lpd_aliases, live=True)


#: What an LPD client usually names when it was told nothing (lpr -P lp, Windows' LPR port, JetDirect).
COMMON_LPD_QUEUES = ("lp", "raw", "auto", "PASSTHRU")


@section("ipp")
class IppConfig:
    """The IPP Everywhere printer (`/ipp/print` on listen.ipp) and what it says about itself."""

    name: str = setting("Spooler", _text)
    info: str = setting("", _text)
    location: str = setting("", _text)
    make_and_model: str = setting("Spooler IPP Everywhere", _text)
    color: bool = setting(True, _boolean)
    #: users allowed to pause, resume, cancel any job (authenticated with basic)
    admin_users: tuple[str, ...] = setting((), _names, live=True)
    max_request_size: int = setting(2 * 1024**3, parse_size, live=True)
    multiple_operation_timeout: float = setting(60.0, _positive_duration)
    authentication: str = setting("none", _choice("none", "basic"))  # HTTP Basic against users_file
    users_file: Path | None = path_setting()  # NAME:scrypt-verifier lines; default STATE/ipp-users
    allow_basic_without_tls: bool = setting(False, _boolean)  # Basic on plain http too
    tls_certificate: Path | None = path_setting()  # PEM files for listen.ipps; None: self-signed in STATE/keys
    tls_key: Path | None = path_setting()

    def checked(self) -> IppConfig:
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise ConfigError("ipp.tls_certificate" if self.tls_certificate is None else "ipp.tls_key",
                              "tls_certificate and tls_key go together")  # fmt: skip
        return self


@section("dnssd")
class DnssdConfig:
    """DNS-SD (mDNS) advertisement of the IPP printer as `_ipp._tcp` with the `_print` subtype."""

    enabled: bool = setting(False, _boolean)
    name: str = setting("Spooler", _instance_name)  # the service instance name; default: ipp.name
    interfaces: tuple[str, ...] = setting((), _addresses)  # addresses to advertise on; empty: the listener's or all
    host: str | None = setting(None, _mdns_host)  # the mDNS host name ("NAME.local."); None: this machine's


@section("spool")
class SpoolConfig:
    min_free_space: int = setting(256 * 1024**2, parse_size, live=True)
    keep_files: float = setting(86400.0, parse_duration, live=True)
    keep_history: float = setting(7 * 86400.0, parse_duration, live=True)
    #: Documents up to this size are stored in the job's SQLite row (one WAL fsync makes data and
    #: row durable together); larger ones go to their own spool file. 0: always a spool file.
    inline_max: int = setting(64 * 1024, _inline_size, live=True)


@section("device")
class DeviceConfig:
    uri: str = setting(None, validate_device_uri, live=True)  # default: the file sink STATE/device
    name: str = setting("spooler", _device_name)  # this device's name at the central server; default: host name
    connect_timeout: float = setting(10.0, _positive_duration, live=True)
    io_timeout: float = setting(120.0, _positive_duration, live=True)
    retry_initial: float = setting(5.0, _positive_duration, live=True)
    retry_max: float = setting(300.0, _positive_duration, live=True)

    def checked(self) -> DeviceConfig:
        if self.retry_max < self.retry_initial:
            raise ConfigError("device.retry_max", "must not be shorter than device.retry_initial")
        return self


@section("queues")
class QueueConfig:
    """A print queue clients can name (LPD queue, IPP printer), and what it does while the central
    server is down: "print" on the device now, "hold" until the owner releases the job at the
    device, or "queue" the jobs, in order, until the server is back."""

    name: str = attrs.field()
    offline_policy: str = setting("print", _choice("print", "hold", "queue"), live=True)


@section("server")
class ServerConfig:
    """The central print-management server: its print queue (where jobs are forwarded) and health."""

    queue_uri: str = setting(None, validate_device_uri, live=True)  # required when [server] is present
    probe_interval: float = setting(1.0, _positive_duration, live=True)
    probe_timeout: float = setting(1.0, _positive_duration, live=True)
    down_after: int = setting(2, _positive_int, live=True)
    up_after: int = setting(2, _positive_int, live=True)
    connect_timeout: float = setting(2.0, _positive_duration, live=True)
    io_timeout: float = setting(30.0, _positive_duration, live=True)
    #: the HTTP JSON API (docs/central-api.md): logins, user sync, accounting
    api_url: str | None = setting(None, _api_url)
    #: Which product api_url is (spooler.central): "generic" (docs/central-api.md), "papercut" (its
    #: base URL, http://HOST:9191/), "myq" (its base URL, https://HOST:8093/).
    kind: str = setting("generic", _choice(*SERVER_KINDS))
    auth_token_file: Path | None = path_setting()  # papercut: the web services auth token
    auth_token_env: str | None = setting(None, _text)  # ... or the environment variable that holds it
    health_key_file: Path | None = path_setting()  # papercut: the System Health API key (health.api.key)
    health_key_env: str | None = setting(None, _text)
    client_id: str | None = setting(None, _text)  # myq: the REST API application's client id
    client_secret_file: Path | None = path_setting()  # myq: its client secret
    client_secret_env: str | None = setting(None, _text)
    scope: str = setting("users", _text)  # myq: the scopes asked for with client credentials
    papercut_server: str | None = setting(None, _text)  # papercut: "server" of imported jobs (default: device name)
    papercut_printer: str | None = setting(None, _text)  # papercut: "printer" of imported jobs (default: device name)
    #: The API's grant-signing public key ("ed25519:BASE64", `spooler-refserver key`), pinned here: logins are
    #: cached only with a valid server grant, and a peer's entry or revocation counts only when the server signed it.
    signing_key: str | None = setting(None, _signing_key)

    def checked(self) -> ServerConfig:
        if self.queue_uri is None:
            raise ConfigError("server.queue_uri", "required when [server] is present (where jobs are forwarded)")
        if self.api_url and self.kind == "papercut" and not (self.auth_token_file or self.auth_token_env):
            raise ConfigError("server.auth_token_file", "kind papercut needs the web services auth token: "
                              "auth_token_file or auth_token_env")  # fmt: skip
        if self.api_url and self.kind == "myq" and not (self.client_id and (self.client_secret_file
                                                                            or self.client_secret_env)):
            raise ConfigError("server.client_id", "kind myq needs client_id and client_secret_file or client_secret_env")
        if self.signing_key and self.kind != "generic":
            raise ConfigError("server.signing_key", f"kind {self.kind} does not sign its logins: only the generic API "
                                                    "(docs/central-api.md, \"Signatures\") has a key to pin")  # fmt: skip
        return self


@section("analysis")
class AnalysisConfig:
    """Page statistics of every job, in child processes with limits (see spooler.jobs.analysis)."""

    enabled: bool = setting(True, _boolean)
    workers: int = setting(1, _positive_int, live=True)
    memory_limit: int = setting(1024**3, parse_size, live=True)
    page_cap: int = setting(100_000, _positive_int, live=True)


@section("accounting")
class AccountingConfig:
    """The outbox of accounting records (spooler.accounting.outbox): how they go up to [server] api_url."""

    batch_size: int = setting(1000, _batch_size, live=True)  # records per upload, at most 1000 (the API's limit)
    max_age: float = setting(30 * 86400.0, _positive_duration, live=True)  # unsent records older than this are never sent
    interval: float = setting(10.0, _positive_duration, live=True)  # how often to look for new records while all is sent
    retry_initial: float = setting(5.0, _positive_duration, live=True)  # after a failed upload: wait this, then twice ...
    retry_max: float = setting(300.0, _positive_duration, live=True)  # ... as long each time, up to this
    analysis_wait: float = setting(600.0, parse_duration, live=True)  # a record without page figures after this: "unknown"

    def checked(self) -> AccountingConfig:
        if self.retry_max < self.retry_initial:
            raise ConfigError("accounting.retry_max", "must not be shorter than accounting.retry_initial")
        return self


@section("terminal")
class TerminalConfig:
    """The device terminal (spooler.terminal): the login and pull-print web page and its JSON API."""

    enabled: bool = setting(False, _boolean)
    listen: str | None = setting("tcp:8633:interface=127.0.0.1", _endpoint, live=True)
    session_idle: float = setting(120.0, _positive_duration, live=True)  # a session unused this long ends (the user left)
    name: str | None = setting(None, _device_name)  # the terminal's id for login throttling; None: each client's address

    def checked(self) -> TerminalConfig:
        if self.enabled and not self.listen:
            raise ConfigError("terminal.listen", "the terminal is enabled but has no endpoint to listen on")
        return self if self.listen else attrs.evolve(self, listen=attrs.fields(TerminalConfig).listen.default)


@section("login")
class LoginConfig:
    """Logins at the device: the offline credential cache, user sync, brute-force limits, sharing."""

    #: a cache entry lets its user log in offline this long after a login or sync
    validity_hours: float = setting(24.0, _hours, live=True)
    offline_enabled: bool = setting(True, _boolean, live=True)  # false: no login at all while the server is unreachable
    #: pull the device's users and the revocations this often; 0: only on demand
    sync_interval: float = setting(3600.0, parse_duration)
    #: failures that lock a user or a terminal (they are forgotten one per max_lockout) ...
    max_failures: int = setting(5, _positive_int, live=True)
    lockout: float = setting(300.0, _positive_duration, live=True)  # ... for this long, doubled by each further failure ...
    max_lockout: float = setting(900.0, _positive_duration, live=True)  # ... up to this
    #: PIN or card failures (no user named) that lock that method on this device
    device_max_failures: int = setting(10, _positive_int, live=True)
    share: bool = setting(False, _boolean)  # share entries with the enrolled peers (spooler peers add)
    #: "host:port" of other spoolers' share endpoints (their keys must be enrolled)
    peers: tuple[str, ...] = setting((), _peer_address, live=True)
    share_listen: str | None = setting("tcp:8640:interface=127.0.0.1", _endpoint, live="while_on")  # served only with share = true
    share_interval: float = setting(300.0, _positive_duration)  # pull the peers' entries this often
    discover: bool = setting(False, _boolean)  # also find peers by DNS-SD (_spooler-login._tcp)

    def checked(self) -> LoginConfig:
        if self.max_lockout < self.lockout:
            raise ConfigError("login.max_lockout", "must not be shorter than login.lockout")
        return self


@section("log")
class LogConfig:
    level: str = setting("info", _log_level, live=True)
    spool_log_max_size: int = setting(10 * 1024**2, parse_size)
    spool_log_keep: int = setting(5, _positive_int)


@section("admin")
class AdminConfig:
    """The admin API's UNIX socket (mode 0600): the CLI talks to the daemon through it; and the admin
    web listener (spooler.adminweb): /healthz, Prometheus /metrics and the status page."""

    socket: Path | None = path_setting()  # default: STATE/admin.sock
    listen: str | None = setting(None, _endpoint, live=True)  # off by default; e.g. "tcp:9631:interface=127.0.0.1"
    #: NAME:scrypt-verifier lines (`spooler admin-user add`) of the admin web listener; default: STATE/admin-users
    users_file: Path | None = path_setting()

    def checked(self) -> AdminConfig:
        if self.socket is not None and len(os.fsencode(str(self.socket))) > MAX_UNIX_SOCKET_PATH:
            raise ConfigError(
                "admin.socket",
                f"the path {self.socket} is longer than {MAX_UNIX_SOCKET_PATH} bytes, the limit of a UNIX socket;"
                " set admin.socket to a shorter path",
            )
        return self


@attrs.frozen(slots=False)
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


#: Keys the top level of a config file may have: the state folder and the tables.
TOP_LEVEL_KEYS = ("state_dir", *SECTIONS)


def declared_keys() -> list[str]:
    """Every key a config file may set, dotted ("limits.idle_timeout", "queues.NAME.offline_policy")."""
    return ["state_dir"] + [f"{name}.{key}" if name != "queues" else f"queues.NAME.{key}"
                            for name, cls in SECTIONS.items() for key in keys_of(cls)]  # fmt: skip


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
    """The configuration from a parsed TOML document over the embedded defaults; relative paths are
    relative to `base`; `state_dir` overrides the file's."""
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(key, f"unknown key (known top-level keys: {', '.join(TOP_LEVEL_KEYS)})")
    if state_dir is None:
        state_dir = resolve_path("state_dir", raw["state_dir"], base) if "state_dir" in raw else default_state_dir()
    state_dir = state_dir.absolute()

    def load(name: str, defaults: Mapping[str, Any] | None = None) -> Any:
        return load_section(SECTIONS[name], raw.get(name, {}), base=base, defaults=defaults)

    listen = load("listen")
    ipp = load("ipp", {"users_file": state_dir / "ipp-users"})
    dnssd = load("dnssd", {"name": ipp.name.encode()[:63].decode("utf-8", "ignore") or DnssdConfig().name})
    if dnssd.enabled and not listen.ipp:
        raise ConfigError("dnssd.enabled", "advertises the IPP printer, but listen.ipp is off")
    if dnssd.enabled:
        require_package("zeroconf", "dnssd.enabled")
    server = load("server") if raw.get("server", {}) != {} else None
    queues = _queues(raw.get("queues", {"default": {}}), base)
    lpd = load("lpd", {"aliases": () if "queues" in raw else COMMON_LPD_QUEUES})
    for alias in lpd.aliases:
        if any(alias.lower() == queue.name.lower() for queue in queues):
            raise ConfigError("lpd.aliases", f"{alias!r} is the name of a configured queue")
    admin = load("admin", {"socket": state_dir / "admin.sock", "users_file": state_dir / "admin-users"})
    return Config(
        state_dir=state_dir,
        admin_socket=admin.socket,
        admin=admin,
        device=load("device", {"uri": (state_dir / "device").as_uri(), "name": _default_device_name()}),
        listen=listen,
        limits=load("limits"),
        lpd=lpd,
        ipp=ipp,
        dnssd=dnssd,
        spool=load("spool"),
        log=load("log"),
        analysis=load("analysis"),
        accounting=load("accounting"),
        terminal=load("terminal"),
        queues=queues,
        server=server,
        login=_login(load("login")),
        source=source,
    )


def _login(login: LoginConfig) -> LoginConfig:
    if login.discover and login.share:
        require_package("zeroconf", "login.discover")
    return login


def _queues(raw: Any, base: Path) -> tuple[QueueConfig, ...]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("queues", "must be a table of queues, e.g. [queues.default]")
    queues = []
    for name, settings in raw.items():
        if not QUEUE_NAME.match(name):
            raise ConfigError(f"queues.{name}", "a queue name is 1-64 letters, digits, '.', '_' or '-'")
        queues.append(load_section(QueueConfig, settings, prefix=f"queues.{name}", base=base, defaults={"name": name}))
    return tuple(queues)
