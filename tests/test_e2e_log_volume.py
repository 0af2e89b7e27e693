"""The log volume of one idle hour, with a real `spooler serve` and the reference central server, on a
clock sped up 120 times: every periodic activity is scaled by the same factor (3600 probes of the
central server, one user sync, twelve pulls from a sharing peer that is off, 360 looks at the
accounting outbox), so the lines it writes are those of one idle hour. Before the quiet-log work an
idle hour wrote some 7,500 lines at the default info level ("Starting/Stopping factory" for every
connection); now only what changed is said."""

from __future__ import annotations

import base64
import http.client
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from spooler_harness import RefServer, free_port, short_tempdir, wait_for
from test_e2e_login import central  # noqa: F401 - the reference server with test_e2e_login's users

pytestmark = pytest.mark.e2e

HOUR = 3600.0
SPEED = 120  # one simulated hour in 30 seconds
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[(\w+)\] ")


def probes(port: int) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": "Basic " + base64.b64encode(b"m:metrics-pass-1").decode()})
        body = connection.getresponse().read().decode()
    finally:
        connection.close()
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "spooler_server_probes_total" and sample.labels == {"outcome": "ok"}:
                return sample.value
    return 0.0


def test_one_idle_hour_writes_a_handful_of_lines(spooler_factory: Any, central: RefServer) -> None:
    admin_port = free_port()
    spooler = spooler_factory(**{
        "server__queue_uri": central.ipp_uri, "server__api_url": central.api_url, "device__name": "branch-1",
        "server__probe_interval": f"{1000 / SPEED:.3f}ms", "login__sync_interval": f"{HOUR / SPEED}s",
        "accounting__interval": f"{10 * 1000 / SPEED:.1f}ms", "login__share_interval": f"{300 / SPEED}s",
        "login__peers": [f"127.0.0.1:{free_port()}"], "login__share_listen": f"tcp:{free_port()}:interface=127.0.0.1",
        "login__share": True, "admin__listen": f"tcp:{admin_port}:interface=127.0.0.1",
    })  # fmt: skip
    subprocess.run([sys.executable, "-m", "spooler", "admin-user", "add", "m", "--stdin", "--config",
                    str(spooler.config_path)], input="metrics-pass-1\n", text=True, check=True, timeout=60)  # fmt: skip
    spooler.start()
    wait_for(lambda: "started: state" in spooler.stderr(), what="the start line")
    begin = probes(admin_port)
    wait_for(lambda: probes(admin_port) >= begin + HOUR, timeout=HOUR / SPEED * 4, interval=0.5,
             what="3600 probes of the central server")  # fmt: skip
    lines = spooler.stderr().splitlines()
    hour = lines[next(n for n, line in enumerate(lines) if "started: state" in line) + 1:]  # after the start

    status = spooler.cli("status").stdout  # the peer that does not answer, as the admin sees it
    assert re.search(r"sharing     127\.0\.0\.1:\d+: pull FAILED .*: Connection was refused", status), status
    assert "login cache 3 user(s): 3 usable" in status and "user sync   " in status, status
    levels = Counter(match.group(1) for line in hour if (match := LINE.match(line)))
    text = "\n".join(hour)
    assert not [line for line in hour if "factory" in line.lower()], "Twisted's per-connection lines are back"
    # What an idle hour says: the mode change at the start (the server found up), the user sync (it
    # runs at the start and once an hour; the first one may bring the server's lookup KDF), and one
    # warning that the sharing peer does not answer (not one per pull). Nothing per probe.
    expected = {"is up; now online": (1, 1), "User sync: 3 users": (1, 2), "Share pull with": (1, 1),
                "brought a new lookup KDF": (0, 1)}
    for words, (least, most) in expected.items():
        assert least <= sum(words in line for line in hour) <= most, f"{words!r}:\n{text}"
    assert len(hour) == sum(any(words in line for words in expected) for line in hour), text
    assert levels["error"] == 0 and levels["critical"] == 0
    spooler.stop()
    print(f"\none idle hour (x{SPEED}): {len(hour)} lines, {dict(levels)}")


def test_a_truncated_user_sync_is_one_warning(spooler_factory: Any, tmp_path: Path) -> None:
    """101 users assigned to the device at the reference server: the sync keeps 100 and says so."""
    users = {"users": [{"name": f"user{n:03d}", "pins": [f"{100000 + n}"]} for n in range(101)]}
    (tmp_path / "users.json").write_text(json.dumps(users))
    server = RefServer(short_tempdir("rs"), users=tmp_path / "users.json").start()
    try:
        spooler = spooler_factory(**{"server__queue_uri": server.ipp_uri, "server__api_url": server.api_url,
                                     "login__sync_interval": 0, "login__share_listen": ""})  # fmt: skip
        spooler.start()
        synced = json.loads(spooler.cli("users", "sync", "--json").stdout)
        assert (synced["users"], synced["truncated"], synced["assigned"]) == (100, True, 101)
        warnings = [line for line in spooler.stderr().splitlines() if "[warn]" in line and "User sync" in line]
        assert len(warnings) == 1 and "synced 100 of 101 users assigned to this device" in warnings[0], warnings
        [event] = spooler.events("users_synced")
        assert (event["level"], event["users"], event["assigned"]) == ("warn", 100, 101)
        assert "100 user(s) of 101 assigned: TRUNCATED" in spooler.cli("status").stdout
    finally:
        server.cleanup()
