"""Private print end to end (issue 14, finding 4) with real processes and real peers: a `spooler serve`
forwarding to the reference central server, raw jobs with `@PJL SET HOLD=ON HOLDTYPE=PRIVATE
HOLDKEY=...` sent with `nc`-style sockets, ipptool (the CUPS suite print-job-password.test, and
Release-Job with job-password), the terminal's HTTP API and `spooler release`.

Every release path wants the key; the key is nowhere on disk (state folder: spool files, database,
WAL, logs), not in what the device printed, not in the copy forwarded to the central server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spooler_harness import RefServer, refserver, Spooler, free_port, pjl_job, require_tool, send_raw, wait_for
from test_e2e_login import find_secrets
from test_e2e_terminal import TerminalClient as Terminal

pytestmark = pytest.mark.e2e

ALICE_PIN = "418273"
USERS = {"users": [{"name": "alice", "full_name": "Alice Martin", "pins": [ALICE_PIN]}], "revocations": []}
# Distinctive keys, so that a search of the disk cannot meet them by chance.
KEYS = {"ipp": "73915824", "terminal": "66021937", "cli": "48120573", "password": "90417736"}
SUITES = Path("/usr/share/cups/ipptool")


def private_job(name: str, key: str) -> bytes:
    return pjl_job("alice", name, b"%PDF-1.4 " + name.encode(), extra=f'@PJL SET HOLD=ON HOLDTYPE=PRIVATE HOLDKEY="{key}"\r\n')


def release_test(job_id: int, user: str, password: str | None) -> str:
    """An ipptool test: Release-Job, with the key as job-password (PWG 5100.11) if given."""
    key = f"ATTR octetString job-password {password}\nATTR keyword job-password-encryption none\n" if password else ""
    return ("{\nNAME \"Release-Job\"\nOPERATION Release-Job\nGROUP operation-attributes-tag\n"
            "ATTR charset attributes-charset utf-8\nATTR language attributes-natural-language en\n"
            f"ATTR uri printer-uri $uri\nATTR integer job-id {job_id}\nATTR name requesting-user-name {user}\n"
            f"{key}STATUS successful-ok\n}}\n")  # fmt: skip


def ipptool(spooler: Spooler, test: Path, *options: str) -> str:
    tool = require_tool("ipptool")
    result = subprocess.run([tool, "-T", "30", "-tv", *options, f"ipp://127.0.0.1:{spooler.ipp_port}/ipp/print",
                             str(test)], capture_output=True, text=True, timeout=120)  # fmt: skip
    return result.stdout + result.stderr


def release_over_ipp(spooler: Spooler, tmp_path: Path, job_id: int, user: str, password: str | None) -> str:
    test = tmp_path / f"release-{job_id}.test"
    test.write_text(release_test(job_id, user, password))
    output = ipptool(spooler, test)
    test.unlink()
    return output


@pytest.fixture
def central() -> Iterator[RefServer]:
    with refserver(users=USERS) as server:
        yield server


def held(spooler: Spooler, job_id: int) -> dict[str, Any]:
    return wait_for(lambda: (job := spooler.job(job_id))["state"] == "pending-held" and job, what=f"job {job_id} held")


def test_every_release_path_wants_the_key_and_the_key_is_nowhere(spooler_factory: Any, central: RefServer,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    port = free_port()
    spooler = spooler_factory(**{
        "server__queue_uri": central.ipp_uri, "server__api_url": central.api_url, "device__name": "branch-1",
        "login__sync_interval": 0, "login__share_listen": "", "spool__min_free_space": 0,
        "terminal__enabled": True, "terminal__listen": f"tcp:{port}:interface=127.0.0.1", "terminal__session_idle": "10m",
    })  # fmt: skip
    spooler.start()
    wait_for(lambda: json.loads(spooler.cli("status", "--json").stdout)["mode"] == "online", what="online")

    # 1. IPP Release-Job (ipptool), anonymous as CUPS's default policy allows: the key is wanted.
    send_raw(spooler.raw_port, private_job("via-ipp", KEYS["ipp"]))
    job = held(spooler, 1)
    assert job["private"] and job["reason"] == "job-password-wait" and job["user"] == "alice"
    refused = release_over_ipp(spooler, tmp_path, 1, "alice", None)
    assert "client-error-not-authorized" in refused and "[FAIL]" in refused, refused
    wrong = release_over_ipp(spooler, tmp_path, 1, "alice", "11111111")
    assert "client-error-not-authorized" in wrong, wrong
    assert spooler.job(1)["state"] == "pending-held"
    right = release_over_ipp(spooler, tmp_path, 1, "alice", KEYS["ipp"])
    assert "[PASS]" in right and "[FAIL]" not in right, right
    [forwarded] = central.wait_received(1)  # online: released to the central server's queue
    assert forwarded.read_bytes() == pjl_job("alice", "via-ipp", b"%PDF-1.4 via-ipp")  # no hold, no key

    # 2. The terminal: the owner, logged in, still needs the key (typed on the keypad).
    send_raw(spooler.raw_port, private_job("via-terminal", KEYS["terminal"]))
    held(spooler, 2)
    alice = Terminal(port)
    assert alice.login(ALICE_PIN)[0] == 200
    [listed] = alice.call("GET", "jobs")[1]["jobs"]
    assert listed["private"] is True
    assert alice.call("POST", "jobs/2/release")[1]["code"] == "key-required"
    status, body = alice.call("POST", "jobs/2/release", {"key": "00000000"})
    assert (status, body["code"]) == (403, "wrong-key")
    status, body = alice.call("POST", "jobs/2/release", {"key": KEYS["terminal"]})
    assert status == 200, body
    [printed] = spooler.wait_delivered(1)  # released at the device: printed on the device
    assert printed.read_bytes() == pjl_job("alice", "via-terminal", b"%PDF-1.4 via-terminal")

    # 3. `spooler release`: the key from a prompt or stdin, never from the command line.
    send_raw(spooler.raw_port, private_job("via-cli", KEYS["cli"]))
    held(spooler, 3)
    command = [sys.executable, "-m", "spooler", "release", "3", "--config", str(spooler.config_path)]
    no_tty = subprocess.run(command, input="", capture_output=True, text=True, timeout=60)
    assert no_tty.returncode == 2 and "--key-stdin" in no_tty.stderr
    wrong_cli = subprocess.run([*command, "--key-stdin"], input="00000000\n", capture_output=True, text=True,
                               timeout=60)  # fmt: skip
    assert wrong_cli.returncode == 1 and "wrong key" in wrong_cli.stderr
    right_cli = subprocess.run([*command, "--key-stdin"], input=KEYS["cli"] + "\n", capture_output=True, text=True,
                               timeout=60)  # fmt: skip
    assert right_cli.returncode == 0, right_cli.stderr
    central.wait_received(2)

    # 4. IPP job-password at creation (CUPS's own print-job-password.test), then Release-Job with it.
    suite = tmp_path / "print-job-password.test"
    suite.write_text((SUITES / "print-job-password.test").read_text().replace("1234", KEYS["password"]))
    document = tmp_path / "doc.pdf"
    document.write_bytes(b"%PDF-1.4 job-password\n%%EOF\n")
    created = ipptool(spooler, suite, "-f", str(document))
    assert "[PASS]" in created, created
    job = held(spooler, 4)
    assert job["private"] and job["reason"] == "job-password-wait"
    assert "client-error-not-authorized" in release_over_ipp(spooler, tmp_path, 4, job["user"], None)
    assert "[PASS]" in release_over_ipp(spooler, tmp_path, 4, job["user"], KEYS["password"])
    central.wait_received(3)

    # The admin may release a private job without its key, and it is logged as such.
    send_raw(spooler.raw_port, private_job("override", "55555555"))
    held(spooler, 5)
    assert spooler.cli("release", "5", "--without-key").returncode == 0
    assert spooler.events("job_key_override")[0]["job_id"] == 5
    assert [e["job_id"] for e in spooler.events("job_key_refused")] == [1, 2, 3]
    central.wait_received(4)
    spooler.stop()

    # No key anywhere: the state folder (spool files, spooler.db and its WAL, login.db, the spool log),
    # the device, the central server's received copies and state, the daemon's stderr.
    where = [spooler.state_dir, spooler.stderr_path, central.root]
    assert find_secrets(where, [*KEYS.values(), "55555555"]) == []
    assert not re.search(rb"HOLDKEY", b"".join(p.read_bytes() for p in central.received_files()))
