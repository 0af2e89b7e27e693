"""IPP authentication without a network: Basic header parsing, the authenticator (scrypt in the injected
thread runner, the cache of successful checks, throttling per address), the users file, the ipps
certificate, the [ipp] security configuration, printer-uri-supported per listener, and `_ipps._tcp`."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from conftest import run_synchronously
from spooler.cli import main
from spooler.config import DnssdConfig, config_from_mapping
from spooler.ipp.server import auth
from spooler.ipp.server.attributes import PrinterAttributes, PrinterIdentity, PrinterStatus
from spooler.ipp.server.auth import AuthRefused, BasicAuthenticator, ensure_self_signed, parse_basic, read_users, write_user
from spooler.model import ConfigError


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


@pytest.mark.parametrize(("header", "expected"), [
    (basic("alice", "pw:with:colons"), ("alice", "pw:with:colons")),
    (basic("alice", ""), ("alice", "")),
    (b"basic " + base64.b64encode(b"bob@example.org:x"), ("bob@example.org", "x")),
    (None, None),
    (b"", None),
    (b"Bearer abc", None),
    (b"Basic !!!notbase64", None),
    (b"Basic " + base64.b64encode(b"no-colon"), None),
    (b"Basic " + base64.b64encode(b"../etc:x"), None),  # a name that is no user name
    (b"Basic " + base64.b64encode(b"\xff\xfe:x"), None),
    (b"Basic " + b"A" * 2000, None),
])  # fmt: skip
def test_parse_basic(header: bytes | None, expected: tuple[str, str] | None) -> None:
    assert parse_basic(header) == expected


class CountingRunner:
    """run_in_thread that runs at once and counts the scrypt checks."""

    def __init__(self) -> None:
        self.calls = 0
        self.pending: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = []
        self.hold = False

    def __call__(self, function: Any, *args: Any) -> Deferred[Any]:
        self.calls += 1
        if self.hold:
            waiting: Deferred[Any] = Deferred()
            self.pending.append((waiting, function, args))
            return waiting
        return run_synchronously(function, *args)


def outcome(deferred: Deferred[str]) -> str | int:
    results: list[Any] = []
    deferred.addCallbacks(results.append, lambda f: results.append(f.trap(AuthRefused) and f.value.code))
    assert results, "the check did not finish"
    return results[0]


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "ipp-users"
    write_user(path, "alice", "alice-secret-1")
    write_user(path, "bob", "bob-secret-22")
    return path


def make(users: Path) -> tuple[BasicAuthenticator, CountingRunner, Clock]:
    runner, clock = CountingRunner(), Clock()
    return BasicAuthenticator(users, realm='Front "Desk"', run_in_thread=runner, seconds=clock.seconds), runner, clock


def test_the_users_file_holds_verifiers_only_with_mode_0600(users: Path) -> None:
    text = users.read_text()
    assert "alice-secret-1" not in text and "bob-secret-22" not in text
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    assert set(read_users(users)) == {"alice", "bob"}
    write_user(users, "alice", None)
    assert set(read_users(users)) == {"bob"}
    with pytest.raises(KeyError):
        write_user(users, "alice", None)
    with pytest.raises(ValueError):
        write_user(users, "../x", "whatever-long")


def test_a_good_password_passes_and_is_then_cached(users: Path) -> None:
    authenticator, runner, clock = make(users)
    assert outcome(authenticator.check(basic("alice", "alice-secret-1"), "10.0.0.1")) == "alice"
    assert runner.calls == 1
    for _ in range(5):  # a client sending Basic with every request: no more scrypt
        assert outcome(authenticator.check(basic("alice", "alice-secret-1"), "10.0.0.1")) == "alice"
    assert runner.calls == 1
    clock.advance(auth.CACHE_TTL + 1)
    assert outcome(authenticator.check(basic("alice", "alice-secret-1"), "10.0.0.1")) == "alice"
    assert runner.calls == 2
    assert authenticator.challenge() == b'Basic realm="Front Desk", charset="UTF-8"'


def test_the_cache_never_holds_the_password(users: Path) -> None:
    authenticator, _, _ = make(users)
    outcome(authenticator.check(basic("alice", "alice-secret-1"), "10.0.0.1"))
    assert all(b"alice-secret-1" not in key for key in authenticator._cache)
    assert "alice-secret-1" not in repr(authenticator.__dict__)


@pytest.mark.parametrize("header", [None, basic("alice", "wrong"), basic("mallory", "alice-secret-1"),
                                    basic("bob", "alice-secret-1"), b"Digest x"])  # fmt: skip
def test_bad_or_missing_credentials_are_401(users: Path, header: bytes | None) -> None:
    authenticator, _, _ = make(users)
    assert outcome(authenticator.check(header, "10.0.0.1")) == 401


def test_an_unknown_user_costs_an_scrypt_too(users: Path) -> None:
    authenticator, runner, _ = make(users)
    assert outcome(authenticator.check(basic("mallory", "x"), "10.0.0.1")) == 401
    assert runner.calls == 1


def test_a_changed_password_invalidates_the_cache(users: Path) -> None:
    authenticator, _, _ = make(users)
    assert outcome(authenticator.check(basic("alice", "alice-secret-1"), "h")) == "alice"
    write_user(users, "alice", "another-secret")
    os.utime(users, ns=(1, 1))  # a different mtime even on a coarse clock
    assert outcome(authenticator.check(basic("alice", "alice-secret-1"), "h")) == 401
    assert outcome(authenticator.check(basic("alice", "another-secret"), "h")) == "alice"


def test_ten_failures_lock_the_address_out_for_a_minute(users: Path) -> None:
    authenticator, runner, clock = make(users)
    for _ in range(auth.MAX_FAILURES):
        assert outcome(authenticator.check(basic("alice", "guess"), "10.0.0.9")) == 401
    calls = runner.calls
    # Locked: even the right password is refused, without an scrypt.
    assert outcome(authenticator.check(basic("alice", "alice-secret-1"), "10.0.0.9")) == 429
    assert runner.calls == calls
    # Another address is not affected.
    assert outcome(authenticator.check(basic("alice", "alice-secret-1"), "10.0.0.10")) == "alice"
    clock.advance(auth.LOCKOUT + 1)
    assert outcome(authenticator.check(basic("alice", "alice-secret-1"), "10.0.0.9")) == "alice"


def test_failures_spread_over_time_do_not_lock(users: Path) -> None:
    authenticator, _, clock = make(users)
    for _ in range(3 * auth.MAX_FAILURES):
        assert outcome(authenticator.check(basic("alice", "guess"), "10.0.0.9")) == 401
        clock.advance(auth.FAILURE_WINDOW / (auth.MAX_FAILURES - 1) + 1)


def test_concurrent_checks_per_address_are_bounded(users: Path) -> None:
    authenticator, runner, _ = make(users)
    runner.hold = True
    waiting = [authenticator.check(basic("alice", f"guess{i}"), "10.0.0.9") for i in range(auth.MAX_PENDING_PER_HOST)]
    assert outcome(authenticator.check(basic("alice", "guess"), "10.0.0.9")) == 429
    assert runner.calls == auth.MAX_PENDING_PER_HOST
    for deferred, (waiter, function, args) in zip(waiting, runner.pending):
        waiter.callback(function(*args))
        assert outcome(deferred) == 401


def test_self_signed_certificate_is_made_once_with_private_modes(tmp_path: Path) -> None:
    from cryptography import x509

    certificate, key = ensure_self_signed(tmp_path / "keys")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    parsed = x509.load_pem_x509_certificate(certificate.read_bytes())
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    first = certificate.read_bytes()
    assert ensure_self_signed(tmp_path / "keys") == (certificate, key)
    assert certificate.read_bytes() == first  # not made again
    auth.tls_options(certificate, key).getContext()  # Twisted accepts the pair


def build(raw: dict[str, Any], tmp_path: Path) -> Any:
    return config_from_mapping(raw, base=tmp_path, state_dir=tmp_path / "s")


def test_ipp_security_configuration(tmp_path: Path) -> None:
    config = build({}, tmp_path)
    assert config.ipp.authentication == "none" and config.listen.ipps is None
    assert config.ipp.users_file == tmp_path / "s" / "ipp-users" and config.ipp.allow_basic_without_tls is False
    config = build({"listen": {"ipps": "tcp:8632:interface=127.0.0.1"},
                    "ipp": {"authentication": "basic", "users_file": "u.txt", "tls_certificate": "c.pem",
                            "tls_key": "k.pem", "allow_basic_without_tls": True}}, tmp_path)  # fmt: skip
    assert config.listen.ipps == "tcp:8632:interface=127.0.0.1"
    assert config.ipp.users_file == tmp_path / "u.txt" and config.ipp.tls_key == tmp_path / "k.pem"
    assert config.ipp.allow_basic_without_tls is True


@pytest.mark.parametrize(("raw", "key"), [
    ({"ipp": {"authentication": "digest"}}, "ipp.authentication"),
    ({"ipp": {"tls_certificate": "c.pem"}}, "ipp.tls_key"),
    ({"ipp": {"tls_key": "k.pem"}}, "ipp.tls_certificate"),
    ({"ipp": {"allow_basic_without_tls": "yes"}}, "ipp.allow_basic_without_tls"),
    ({"listen": {"ipps": "ssl:8632"}}, "listen.ipps"),
    ({"listen": {"ipps": 8632}}, "listen.ipps"),
])  # fmt: skip
def test_bad_ipp_security_values_name_the_key(raw: dict[str, Any], key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        build(raw, tmp_path)
    assert error.value.key == key


def test_printer_uri_supported_lists_each_listener_with_its_security() -> None:
    printer = PrinterAttributes(PrinterIdentity(name="P", info="P", location="", make_and_model="M x", color=True,
                                                uuid="0f6b1d5e-3c1a-5b7e-9d2f-4a8c6e1b2d3f"))  # fmt: skip
    status = PrinterStatus(state="idle", reasons=(), message="", accepting=True, state_changed_at=1.0,
                           queued_jobs=0, now=2.0, up_since=1.0)  # fmt: skip
    rendered = {a.name: a.all for a in printer.render(status, "ipps://h:2/ipp/print", None, uris=[
        ("ipps://h:2/ipp/print", "tls", "basic"), ("ipp://h:1/ipp/print", "none", "requesting-user-name")])}
    assert rendered["printer-uri-supported"] == ["ipps://h:2/ipp/print", "ipp://h:1/ipp/print"]
    assert rendered["uri-security-supported"] == ["tls", "none"]
    assert rendered["uri-authentication-supported"] == ["basic", "requesting-user-name"]
    plain = {a.name: a.all for a in printer.render(status, "ipp://h:1/ipp/print", None)}
    assert plain["uri-security-supported"] == ["none"] and plain["printer-uri-supported"] == ["ipp://h:1/ipp/print"]


def test_ipps_is_advertised_as_ipps_tcp_with_its_subtype() -> None:
    from spooler.ipp.server import dnssd
    from test_dnssd import FakeZeroconf, identity

    made: list[FakeZeroconf] = []

    def factory(interfaces: list[str] | None) -> FakeZeroconf:
        made.append(FakeZeroconf(interfaces))
        return made[-1]

    service = dnssd.DnssdAdvertiser(DnssdConfig(enabled=True, name="Desk", interfaces=("192.0.2.10",)),
                                    PrinterAttributes(identity()), lambda: ("0.0.0.0", 8631), run_synchronously,
                                    zeroconf_factory=factory, host="box.local.", secure_port=lambda: 8632)  # fmt: skip
    service.startService()
    [fake] = made
    plain, secure = fake.registered
    assert (plain.type, plain.port) == (dnssd.SERVICE_TYPE, 8631) and "TLS" not in plain.decoded_properties
    assert (secure.type, secure.port, secure.name) == (dnssd.SECURE_SERVICE_TYPE, 8632, "Desk._ipps._tcp.local.")
    assert secure.decoded_properties["TLS"] == "1.2"
    assert secure.decoded_properties["UUID"] == plain.decoded_properties["UUID"]
    assert set(fake.types) >= {dnssd.SUBTYPE, dnssd.SECURE_SUBTYPE}
    assert service.stopService().called
    assert fake.unregistered == [secure, plain]
    assert dnssd.SECURE_SUBTYPE not in fake.types and fake.closed


def test_cli_ipp_user_add_reads_stdin_and_writes_only_a_verifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert main(["--state-dir", str(tmp_path), "ipp-user", "add", "carol", "--stdin"]) == 0
    text = (tmp_path / "ipp-users").read_text()
    assert text.startswith("carol:scrypt$") and "correct horse" not in text
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["--state-dir", str(tmp_path), "ipp-user", "add", "dave", "--stdin"]) == 2
    assert main(["--state-dir", str(tmp_path), "ipp-user", "add", "a/b", "--stdin"]) == 2
    assert main(["--state-dir", str(tmp_path), "ipp-user", "remove", "nobody"]) == 1
    assert main(["--state-dir", str(tmp_path), "ipp-user", "remove", "carol"]) == 0
    assert read_users(tmp_path / "ipp-users") == {}
    assert "correct horse" not in capsys.readouterr().out
