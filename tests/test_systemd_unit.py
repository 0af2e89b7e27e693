"""samples/systemd/spooler.service checked by systemd's own tools: `systemd-analyze verify` (syntax, every
key known, the command executable) with no warning at all, and `systemd-analyze security --offline` for
the exposure of its sandbox; plus what the README promises of it (notify, its own user, low ports)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from spooler_harness import require_tool

UNIT = Path(__file__).parent.parent / "samples" / "systemd" / "spooler.service"
INSTALLED_COMMAND = "/opt/spooler/bin/spooler"
#: systemd-analyze security's exposure scale: 0 (locked down) to 10 (unprotected); "OK" is below 4.
MAX_EXPOSURE = 2.5


def unit_here(tmp_path: Path) -> Path:
    """The unit with its ExecStart pointing at this venv's `spooler` (verify checks that it exists)."""
    spooler = shutil.which("spooler") or str(Path(sys.executable).parent / "spooler")
    assert Path(spooler).exists(), "the spooler command is not installed (pip install -e .)"
    text = UNIT.read_text()
    assert INSTALLED_COMMAND in text
    copy = tmp_path / "spooler.service"
    copy.write_text(text.replace(INSTALLED_COMMAND, spooler))
    return copy


def settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    analyze = require_tool("/usr/bin/systemd-analyze")
    result = subprocess.run([analyze, "verify", str(unit_here(tmp_path))], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # unknown keys and bad values are only warnings: none
    broken = tmp_path / "broken.service"
    broken.write_text(unit_here(tmp_path).read_text().replace("Type=notify", "Type=notifyy"))
    checked = subprocess.run([analyze, "verify", str(broken)], capture_output=True, text=True, timeout=120)
    assert "Failed to parse service type" in checked.stderr  # the check above would have seen it


def test_the_sandbox_exposure_is_low(tmp_path: Path) -> None:
    analyze = require_tool("/usr/bin/systemd-analyze")
    result = subprocess.run([analyze, "security", "--offline=yes", f"--threshold={MAX_EXPOSURE * 10:.0f}",
                             "--no-pager", str(unit_here(tmp_path))], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "Overall exposure level" in result.stdout


def test_the_unit_is_what_the_readme_says() -> None:
    unit = settings()
    assert unit["Type"] == ["notify"] and unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["ExecStart"] == [f"{INSTALLED_COMMAND} serve --config /etc/spooler/spooler.toml"]
    assert unit["User"] == ["spooler"] and unit["StateDirectory"] == ["spooler"]
    assert unit["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"] == unit["CapabilityBoundingSet"]
    assert unit["RestartPreventExitStatus"] == ["2"]  # a configuration error is not retried
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
