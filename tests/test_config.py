"""Configuration: embedded defaults, TOML overrides, and errors that name the key (exit status 2)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from spooler.cli import main
from spooler.config import config_from_mapping, load_config, parse_duration, parse_size
from spooler.model import ConfigError
from spooler.login.peers import PeerIdentity


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


def test_sample_config_is_valid_and_shows_every_key(tmp_path: Path) -> None:
    sample = Path(__file__).parent.parent / "samples" / "spooler.toml"
    config = load_config(sample, state_dir=tmp_path)
    assert config.listen.raw == "tcp:9100:interface=127.0.0.1"
    text = sample.read_text()
    for dotted in ("state_dir", "listen.raw", "limits.max_job_size", "limits.idle_timeout", "limits.max_connections",
                   "limits.max_compression_ratio", "login.max_lockout", "login.device_max_failures",
                   "spool.min_free_space", "spool.keep_files", "spool.keep_history", "device.uri",
                   "device.connect_timeout", "device.io_timeout", "device.retry_initial", "device.retry_max",
                   "admin.socket", "log.level", "log.spool_log_max_size", "log.spool_log_keep", "server.queue_uri",
                   "server.probe_interval", "server.probe_timeout", "server.down_after", "server.up_after",
                   "server.connect_timeout", "server.io_timeout", "queues.default.offline_policy", "analysis.enabled",
                   "analysis.workers", "analysis.memory_limit", "analysis.page_cap", "login.validity_hours",
                   "login.offline_enabled", "login.sync_interval", "login.max_failures", "login.lockout",
                   "login.peers", "login.share_listen", "login.share", "login.share_interval", "server.signing_key",
                   "login.discover", "listen.ipps", "ipp.authentication", "ipp.users_file",
                   "ipp.allow_basic_without_tls", "ipp.tls_certificate", "ipp.tls_key"):  # fmt: skip
        key = dotted.split(".")[-1]
        assert f"\n{key} =" in text or f"\n# {key} =" in text, f"{dotted} is not shown in samples/spooler.toml"


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
