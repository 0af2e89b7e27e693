"""Configuration: embedded defaults, TOML overrides, and errors that name the key (exit status 2)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import attrs
import pytest

from spooler.cli import main
from spooler.config import config_from_mapping, declared_keys, load_config, parse_duration, parse_size
from spooler.login.peers import PeerIdentity
from spooler.model import ConfigError


def build(raw: dict[str, Any], tmp_path: Path) -> Any:
    return config_from_mapping(raw, base=tmp_path, state_dir=tmp_path / "state")


def test_embedded_defaults(tmp_path: Path) -> None:
    config = build({}, tmp_path)
    assert config.listen.raw == "tcp:9100:interface=127.0.0.1"
    assert config.device.uri == (tmp_path / "state" / "device").as_uri()
    assert config.database_path == tmp_path / "state" / "spooler.db"
    assert config.admin_socket == tmp_path / "state" / "admin.sock"
    assert config.limits.idle_timeout == 300 and config.limits.max_job_size == 2 * 1024**3


def test_default_state_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPOOLER_STATE_DIR", str(tmp_path / "x"))
    assert load_config(None).state_dir == tmp_path / "x"
    monkeypatch.delenv("SPOOLER_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert load_config(None).state_dir == tmp_path / "xdg" / "spooler"


@pytest.mark.parametrize(
    ("text", "expected"),
    [(0, 0), (1024, 1024), ("10", 10), ("1KiB", 1024), ("1kb", 1000), ("512MiB", 512 * 1024**2),
     ("2GB", 2 * 10**9), ("1.5 GiB", int(1.5 * 1024**3))],
)  # fmt: skip
def test_sizes(text: Any, expected: int) -> None:
    assert parse_size("k", text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [(30, 30), (1.5, 1.5), ("30s", 30), ("5m", 300), ("2h", 7200), ("7d", 604800), ("250ms", 0.25)],
)
def test_durations(text: Any, expected: float) -> None:
    assert parse_duration("k", text) == expected


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "spooler.toml"
    path.write_text('state_dir = "state"\n[admin]\nsocket = "a.sock"\n')
    config = load_config(path)
    assert config.state_dir == tmp_path / "conf" / "state"
    assert config.admin_socket == tmp_path / "conf" / "a.sock"


def sample_sections(text: str) -> dict[str, str]:
    """The sample's text by table ("" before the first), commented-out tables ("# [server]") included."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        header = re.match(r"^#?\s*\[([a-z_.]+)\]\s*$", line)
        if header:
            current = header.group(1).split(".")[0]
            sections.setdefault(current, [])
        sections[current].append(line)
    return {name: "\n".join(lines) + "\n" for name, lines in sections.items()}


def test_sample_config_is_valid_and_shows_every_key_in_its_table(tmp_path: Path) -> None:
    sample = Path(__file__).parent.parent / "samples" / "spooler.toml"
    config = load_config(sample, state_dir=tmp_path)
    assert config.listen.raw == "tcp:9100:interface=127.0.0.1"
    sections = sample_sections(sample.read_text())
    keys = declared_keys()
    assert {"limits.idle_timeout", "server.queue_uri", "queues.NAME.offline_policy", "ipp.tls_key"} <= set(keys)
    for dotted in keys:
        table, _, key = dotted.rpartition(".")
        shown = sections.get(table.split(".")[0], "")
        assert re.search(rf"^(# )?{key} =", shown, re.M), f"{dotted} is not shown in samples/spooler.toml"


def test_the_sample_shows_every_default(tmp_path: Path) -> None:
    """Each key set (not commented out) in the sample has its embedded default: the sample runs on
    exactly the defaults, as it says."""
    sample = Path(__file__).parent.parent / "samples" / "spooler.toml"
    from_sample = load_config(sample, state_dir=tmp_path)
    assert from_sample.source == sample
    assert attrs.evolve(from_sample, source=None) == config_from_mapping({}, base=tmp_path, state_dir=tmp_path)


BAD = [
    ({"colour": 1}, "colour", "unknown key"),
    ({"login": {"validity_hours": 0}}, "login.validity_hours", "hours above zero"),
    ({"login": {"peers": ["nohost"]}}, "login.peers", "host:port"),
    ({"login": {"peers": ["10.0.0.1:70000"]}}, "login.peers", "host:port"),
    ({"login": {"offline_enabled": "no"}}, "login.offline_enabled", "true or false"),
    ({"login": {"max_failures": 0}}, "login.max_failures", "at least 1"),
    ({"login": {"device_max_failures": 0}}, "login.device_max_failures", "at least 1"),
    ({"login": {"lockout": "10m", "max_lockout": "5m"}}, "login.max_lockout", "not be shorter"),
    ({"limits": {"max_compression_ratio": 1}}, "limits.max_compression_ratio", "ratio of 2 or more"),
    ({"login": {"pin": 1}}, "login.pin", "unknown key"),
    ({"login": {"fleet_key_file": "fleet.key"}}, "login.fleet_key_file", "spooler peers add NAME KEY"),
    ({"login": {"share": "yes"}}, "login.share", "true or false"),
    ({"server": {"queue_uri": "ipp://h/p", "signing_key": "ed25519:AAAA"}}, "server.signing_key", "32 bytes"),
    ({"server": {"queue_uri": "ipp://h/p", "signing_key": "rsa:AAAA"}}, "server.signing_key", "ed25519:BASE64"),
    ({"server": {"queue_uri": "ipp://h/p", "api_url": "http://h:9191/", "kind": "papercut", "auth_token_env": "T",
                 "signing_key": PeerIdentity.generate().key}}, "server.signing_key", "does not sign"),
    ({"listen": {"ipp6": "tcp:1"}}, "listen.ipp6", "unknown key"),
    ({"listen": "tcp:9100"}, "listen", "must be a table"),
    ({"listen": {"raw": "9100"}}, "listen.raw", "endpoint"),
    ({"limits": {"max_job_size": "lots"}}, "limits.max_job_size", "expected a size"),
    ({"limits": {"max_job_size": "10 parsecs"}}, "limits.max_job_size", "unknown size unit"),
    ({"limits": {"max_job_size": -1}}, "limits.max_job_size", "negative"),
    ({"limits": {"idle_timeout": 0}}, "limits.idle_timeout", "longer than zero"),
    ({"limits": {"idle_timeout": True}}, "limits.idle_timeout", "duration"),
    ({"limits": {"max_connections": 0}}, "limits.max_connections", "at least 1"),
    ({"spool": {"keep_files": "soon"}}, "spool.keep_files", "duration"),
    ({"device": {"uri": "lpt1:"}}, "device.uri", "unsupported scheme"),
    ({"device": {"uri": "ftp://printer/"}}, "device.uri", "unsupported scheme"),
    ({"device": {"uri": "socket://printer"}}, "device.uri", "host and a port"),
    ({"device": {"uri": "socket://printer:99999"}}, "device.uri", "port"),
    ({"device": {"uri": "file:relative/dir"}}, "device.uri", "absolute"),
    ({"device": {"retry_initial": "10m", "retry_max": "1m"}}, "device.retry_max", "retry_initial"),
    ({"admin": {"socket": "/tmp/" + "x" * 120}}, "admin.socket", "107 bytes"),
    ({"log": {"level": "loud"}}, "log.level", "one of"),
    ({"server": {"probe_interval": "1s"}}, "server.queue_uri", "required"),
    ({"server": {"queue_uri": "gopher://x"}}, "server.queue_uri", "unsupported scheme"),
    ({"server": {"queue_uri": "lpd://host"}}, "server.queue_uri", "names the queue"),
    ({"server": {"queue_uri": "ipp://h/p", "down_after": 0}}, "server.down_after", "at least 1"),
    ({"queues": {"default": {"offline_policy": "pray"}}}, "queues.default.offline_policy", "print, hold or queue"),
    ({"ipp": {"authentication": "digest"}}, "ipp.authentication", "none or basic"),
    ({"ipp": {"tls_key": "k.pem"}}, "ipp.tls_certificate", "go together"),
    ({"ipp": {"users_file": ""}}, "ipp.users_file", "expected a path"),
    ({"server": {"queue_uri": "ipp://h/p", "kind": "cups"}}, "server.kind", "generic, papercut or myq"),
    ({"server": {"queue_uri": "ipp://h/p", "api_url": "http://pc:9191/", "kind": "papercut"}},
     "server.auth_token_file", "auth token"),
    ({"accounting": {"retry_initial": "10m", "retry_max": "1m"}}, "accounting.retry_max", "retry_initial"),
    ({"accounting": {"batch_size": 5000}}, "accounting.batch_size", "at most 1000"),
    ({"terminal": {"enabled": True, "listen": ""}}, "terminal.listen", "no endpoint"),
    ({"dnssd": {"enabled": True}, "listen": {"ipp": ""}}, "dnssd.enabled", "listen.ipp is off"),
    ({"analysis": {"workers": 0}}, "analysis.workers", "at least 1"),
    ({"spool": {"inline_max": "2MiB"}}, "spool.inline_max", "at most 1MiB"),
]


@pytest.mark.parametrize(("raw", "key", "problem"), BAD)
def test_bad_configuration_names_the_key(raw: dict[str, Any], key: str, problem: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        build(raw, tmp_path)
    assert raised.value.key == key
    assert problem in raised.value.problem


@pytest.mark.parametrize(
    ("content", "needle"),
    [("[limits]\nmax_job_size = 'lots'\n", "limits.max_job_size"),
     ("this is = = not toml", "not valid TOML"),
     ("[device]\nuri = 'gopher://x'\n", "device.uri")],
)  # fmt: skip
def test_cli_reports_a_bad_configuration_with_exit_status_2(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    err = io.StringIO()
    assert main(["serve", "--config", str(path)], out=io.StringIO(), err=err) == 2
    assert needle in err.getvalue()
    assert err.getvalue().count("\n") == 1  # one clear line, no traceback


def test_missing_config_file(tmp_path: Path) -> None:
    err = io.StringIO()
    assert main(["status", "--config", str(tmp_path / "nope.toml")], out=io.StringIO(), err=err) == 2
    assert "no such file" in err.getvalue()


def test_paths_resolve_against_the_config_files_folder_and_defaults_follow_the_state_folder(tmp_path: Path) -> None:
    config = build({"ipp": {"tls_certificate": "certs/c.pem", "tls_key": "~/k.pem"}}, tmp_path)
    assert config.ipp.tls_certificate == tmp_path / "certs" / "c.pem" and config.ipp.tls_key == Path.home() / "k.pem"
    assert config.ipp.users_file == tmp_path / "state" / "ipp-users"
    assert config.dnssd.name == config.ipp.name
    assert build({"ipp": {"name": "Front desk"}}, tmp_path).dnssd.name == "Front desk"
    assert config.terminal.listen == "tcp:8633:interface=127.0.0.1"
    assert build({"terminal": {"listen": ""}}, tmp_path).terminal.listen == "tcp:8633:interface=127.0.0.1"
    assert build({"server": {}}, tmp_path).server is None


@pytest.mark.parametrize(("raw", "key"), [({"dnssd": {"enabled": True}}, "dnssd.enabled"),
                                         ({"login": {"discover": True, "share": True}},
                                          "login.discover")])  # fmt: skip
def test_a_feature_whose_extra_is_not_installed_is_a_configuration_error(
    raw: dict[str, Any], key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """zeroconf is an extra ([dnssd]): only a configuration that uses it needs it."""
    import spooler.config

    real = spooler.config.find_spec
    monkeypatch.setattr(spooler.config, "find_spec", lambda name: None if name == "zeroconf" else real(name))
    build({}, tmp_path)  # the defaults do without it
    with pytest.raises(ConfigError) as raised:
        build(raw, tmp_path)
    assert raised.value.key == key and "pip install 'branch-spooler[dnssd]'" in raised.value.problem


def test_lpd_aliases_only_when_no_queue_is_named(tmp_path: Path) -> None:
    assert build({}, tmp_path).lpd.aliases == ("lp", "raw", "auto", "PASSTHRU")
    assert build({"queues": {"default": {}}}, tmp_path).lpd.aliases == ()
    assert build({"queues": {"office": {}}, "lpd": {"aliases": ["lp"]}}, tmp_path).lpd.aliases == ("lp",)
    assert build({"queues": {"office": {}}}, tmp_path).default_queue == "office"
    for raw in ({"lpd": {"aliases": ["../x"]}}, {"queues": {"lp": {}}, "lpd": {"aliases": ["LP"]}}):
        with pytest.raises(ConfigError) as raised:
            build(raw, tmp_path)
        assert raised.value.key == "lpd.aliases"


def test_queues(tmp_path: Path) -> None:
    assert [q.name for q in build({}, tmp_path).queues] == ["default"]
    config = build({"queues": {"lp": {}, "colour-A4": {}}}, tmp_path)
    assert [q.name for q in config.queues] == ["lp", "colour-A4"]
    assert config.queue("lp") is not None and config.queue("default") is None
    for raw, key in (({"queues": {"../x": {}}}, "queues.../x"), ({"queues": {"lp": {"policy": 1}}}, "queues.lp.policy"),
                     ({"queues": {}}, "queues"), ({"queues": {"lp": 3}}, "queues.lp")):  # fmt: skip
        with pytest.raises(ConfigError) as raised:
            build(raw, tmp_path)
        assert raised.value.key == key
