"""IPP authentication: HTTP Basic against a file of scrypt verifiers, throttled, and the ipps certificate.

The users file holds one `NAME:VERIFIER` line per user (the verifier from
`spooler.verifiers.make_verifier`, never the password); `spooler ipp-user add NAME` writes it with
mode 0600. A check runs scrypt in a thread (the injected `run_in_thread`); a successful check is
remembered for a few minutes under HMAC(random per-process key, user and password), so a client
that sends its credentials with every request costs one scrypt, not one per request. Failed checks
are counted per client address: after `MAX_FAILURES` the address is refused for `LOCKOUT` seconds
without any check, so a password cannot be guessed through the printer.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import ipaddress
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from spooler.store.spoolfiles import RunInThread, ensure_private_dir
from spooler.verifiers import check_verifier, make_verifier

log = Logger(namespace="spooler.ipp.auth")

MAX_FAILURES = 10  # failed checks from one address ...
FAILURE_WINDOW = 300.0  # ... within this many seconds ...
LOCKOUT = 60.0  # ... refuse it for this long
CACHE_TTL = 300.0  # a successful check is remembered this long
MAX_PENDING_PER_HOST = 4  # scrypt checks running at once for one address
MAX_TRACKED = 10_000  # addresses and cache entries kept at most
MAX_HEADER = 1024  # a longer Authorization header is refused unread
USER_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")


class AuthRefused(Exception):
    """A request that may not proceed: `code` is the HTTP status (401 challenge, 429 throttled)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def valid_user_name(name: str) -> bool:
    return 0 < len(name) <= 64 and set(name) <= USER_NAME_CHARS


# -- the users file ----------------------------------------------------------------------------------


def read_users(path: Path) -> dict[str, str]:
    """user -> verifier; a missing file is no users; malformed lines are skipped."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    users: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, verifier = line.strip().partition(":")
        if sep and valid_user_name(name) and verifier.startswith("scrypt$"):
            users[name] = verifier
    return users


def write_user(path: Path, name: str, password: str | None) -> None:
    """Add or replace `name` (password None: remove it); the file is rewritten atomically, mode 0600."""
    if not valid_user_name(name):
        raise ValueError(f"not a valid user name: {name!r} (letters, digits, . _ - @; at most 64)")
    users = read_users(path)
    if password is None:
        if users.pop(name, None) is None:
            raise KeyError(name)
    else:
        users[name] = make_verifier(password)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{user}:{verifier}\n" for user, verifier in sorted(users.items())))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# -- Basic authentication ------------------------------------------------------------------------------


def parse_basic(header: bytes | None) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic ...` header, or None."""
    if not header or len(header) > MAX_HEADER:
        return None
    scheme, _, token = header.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep or not valid_user_name(user):
        return None
    return user, password


@dataclass
class _Host:
    failures: int = 0
    first_failure: float = 0.0
    locked_until: float = 0.0
    pending: int = 0


class BasicAuthenticator:
    """Checks `Authorization: Basic` headers against the users file; `check` fires with the user name
    or fails with AuthRefused."""

    def __init__(self, users_file: Path, *, realm: str, run_in_thread: RunInThread,
                 seconds: Callable[[], float], service: str = "ipp") -> None:  # fmt: skip
        self.users_file = users_file
        self.realm = realm
        self.service = service  # names the log lines: "ipp" (the printer), "admin" (the admin web listener)
        self._run_in_thread = run_in_thread
        self._seconds = seconds
        self._key = secrets.token_bytes(32)  # per process: the cache means nothing outside it
        self._cache: dict[bytes, tuple[str, float]] = {}
        self._hosts: dict[str, _Host] = {}
        self._users: dict[str, str] = {}
        self._users_stamp: tuple[int, int, int] | None = None

    def challenge(self) -> bytes:
        realm = self.realm.replace("\\", "").replace('"', "")
        return f'Basic realm="{realm}", charset="UTF-8"'.encode()

    def _load_users(self) -> dict[str, str]:
        """The users file, re-read when it changed (`spooler ipp-user add` while the spooler runs)."""
        try:
            stat = self.users_file.stat()
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._users_stamp:
            self._users = read_users(self.users_file)
            self._users_stamp = stamp
            self._cache.clear()  # a password changed or a user went: check again
        return self._users

    def check(self, header: bytes | None, host: str) -> Deferred[str]:
        now = self._seconds()
        state = self._hosts.get(host)
        if state is not None and state.locked_until > now:
            return fail(AuthRefused(429, "too many failed logins from this address; try again later"))
        credentials = parse_basic(header)
        if credentials is None:
            return fail(AuthRefused(401, "authentication required"))
        user, password = credentials
        users = self._load_users()
        tag = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        cached = self._cache.get(tag)
        if cached is not None and cached[1] > now and cached[0] in users:
            return succeed(user)
        verifier = users.get(user)
        if state is None:
            if len(self._hosts) >= MAX_TRACKED:
                self._forget_old(now)
            state = self._hosts.setdefault(host, _Host())
        if state.pending >= MAX_PENDING_PER_HOST:
            return fail(AuthRefused(429, "too many logins at once from this address"))
        state.pending += 1
        # An unknown user costs an scrypt too, so that timing does not tell which names exist.
        checked = self._run_in_thread(check_verifier, password, verifier or _DUMMY_VERIFIER)

        def decided(ok: bool) -> str:
            state.pending -= 1
            moment = self._seconds()
            if ok and verifier is not None:
                # The failure count is not reset: a known account's logins must not wipe another's guesses.
                if len(self._cache) >= MAX_TRACKED:
                    self._cache.clear()
                self._cache[tag] = (user, moment + CACHE_TTL)
                return user
            if moment - state.first_failure > FAILURE_WINDOW:
                state.failures, state.first_failure = 0, moment
            state.failures += 1
            log.warn("{service} login failed for {user} from {host}", spool_event=f"{self.service}_auth_failed",
                     service=self.service.upper(), user=user, host=host, failures=state.failures)  # fmt: skip
            if state.failures >= MAX_FAILURES:
                state.locked_until = moment + LOCKOUT
                state.failures = 0
                log.warn("{service} logins from {host} refused for {seconds:.0f} s after {count} failures",
                         spool_event=f"{self.service}_auth_throttled", service=self.service.upper(), host=host,
                         seconds=LOCKOUT, count=MAX_FAILURES)  # fmt: skip
            raise AuthRefused(401, "wrong user name or password")

        def broke(failure: Any) -> Any:
            state.pending = max(0, state.pending - 1)
            return failure

        return checked.addCallbacks(decided, broke)

    def _forget_old(self, now: float) -> None:
        for host in [h for h, s in self._hosts.items() if s.locked_until <= now and s.pending == 0]:
            del self._hosts[host]


#: Checked against when the user is unknown: same cost, never matches (the hash is no scrypt output anyone knows).
_DUMMY_VERIFIER = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + base64.b64encode(bytes(32)).decode()


# -- the ipps certificate ------------------------------------------------------------------------------


def ensure_self_signed(directory: Path, host_names: list[str] | None = None) -> tuple[Path, Path]:
    """(certificate, key) in `directory`, made on first use: a self-signed EC P-256 certificate for this
    host (as CUPS makes one for its own ipps), valid ten years. The key file is 0600."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    certificate_path, key_path = directory / "ipps.crt", directory / "ipps.key"
    if certificate_path.exists() and key_path.exists():
        return certificate_path, key_path
    ensure_private_dir(directory)
    host = socket.gethostname() or "localhost"
    names = list(dict.fromkeys([host, "localhost", *(host_names or [])]))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])])
    now = datetime.datetime.now(datetime.timezone.utc)
    alternatives: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    alternatives += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    _write_private(key_path, key_pem)
    _write_private(certificate_path, certificate.public_bytes(serialization.Encoding.PEM))
    log.info("Made a self-signed certificate for ipps: {path}", spool_event="ipps_certificate_created",
             path=str(certificate_path))  # fmt: skip
    return certificate_path, key_path


def _write_private(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def tls_options(certificate_path: Path, key_path: Path) -> Any:
    """A Twisted TLS context factory for the server side of ipps (TLS 1.2)."""
    from twisted.internet import ssl

    certificate = ssl.PrivateCertificate.loadPEM(certificate_path.read_bytes() + b"\n" + key_path.read_bytes())
    # TLS 1.2 only: CUPS 2.4's GnuTLS client (ipptool, the ipp backend) gives up on a TLS 1.3
    # connection to Twisted/OpenSSL as soon as a response follows the request at once (seen here:
    # it reads one record, sends close_notify and retries forever). With TLS 1.2 it works.
    return ssl.CertificateOptions(privateKey=certificate.privateKey.original, certificate=certificate.original,
                                  raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
                                  lowerMaximumSecurityTo=ssl.TLSVersion.TLSv1_2)  # fmt: skip
