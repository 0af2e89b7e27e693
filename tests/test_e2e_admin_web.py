"""The admin web listener with real processes: /healthz (no login) says ok or degraded with reasons,
/metrics (HTTP Basic against the admin users file) is scraped and parsed with the prometheus client's
own parser through an outage of the central server and of the device, and the read-only status page
is driven in headless Chromium (Playwright with the system browser), with a screenshot for docs/."""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from spooler_harness import RawDevice, RefServer, Spooler, free_port, pjl_job, require_tool, send_raw, wait_for
from test_e2e_login import central, login  # noqa: F401 - the reference server with test_e2e_login's users
from test_e2e_terminal import launch, open_page, playwright_api

pytestmark = pytest.mark.e2e

ADMIN_USER, ADMIN_PASSWORD = "monitor", "Scrape-Key-4f7a"
ALICE_PIN = "735194"  # test_e2e_login's USERS


def get(port: int, path: str, credentials: tuple[str, str] | None = (ADMIN_USER, ADMIN_PASSWORD),
        method: str = "GET") -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {}
    if credentials is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by prometheus_client's parser: (name, sorted labels) -> value."""
    status, headers, body = get(port, "/metrics")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def healthz(port: int) -> dict[str, Any]:
    status, headers, body = get(port, "/healthz", credentials=None)
    assert status == 200 and headers["content-type"] == "application/json"
    return dict(json.loads(body))


@pytest.fixture
def device() -> Iterator[RawDevice]:
    printer = RawDevice()
    yield printer
    printer.close()


def branch(spooler_factory: Any, central: RefServer, device_port: int) -> tuple[Spooler, int]:
    port = free_port()
    spooler = spooler_factory(**{
        "server__queue_uri": central.ipp_uri, "server__api_url": central.api_url, "device__name": "branch-7",
        "server__probe_interval": "250ms", "server__probe_timeout": "500ms", "accounting__interval": "1s",
        "accounting__retry_initial": "250ms", "accounting__retry_max": "1s",
        "device__uri": f"socket://127.0.0.1:{device_port}", "device__connect_timeout": "1s",
        "device__retry_initial": "250ms", "device__retry_max": "1s",
        "login__share_listen": "", "login__sync_interval": 0, "admin__listen": f"tcp:{port}:interface=127.0.0.1",
    })  # fmt: skip
    added = subprocess.run([sys.executable, "-m", "spooler", "admin-user", "add", ADMIN_USER, "--stdin",
                            "--config", str(spooler.config_path)], input=ADMIN_PASSWORD + "\n", text=True,
                           capture_output=True, timeout=60)  # fmt: skip
    assert added.returncode == 0, added.stderr
    return spooler.start(), port


def test_health_and_metrics_through_an_outage(spooler_factory: Any, central: RefServer, device: RawDevice) -> None:
    spooler, port = branch(spooler_factory, central, device.port)
    wait_for(lambda: healthz(port)["mode"] == "online", timeout=20, what="online")
    assert healthz(port) == {"status": "ok", "reasons": [], "mode": "online", "version": healthz(port)["version"]}

    # /metrics and the page need the admin's credentials; /healthz does not. Nothing but GET.
    status, headers, _ = get(port, "/metrics", credentials=None)
    assert status == 401 and headers["www-authenticate"].startswith("Basic realm=")
    assert get(port, "/metrics", credentials=(ADMIN_USER, "wrong-password"))[0] == 401
    assert get(port, "/api/v1/status", credentials=None)[0] == 401
    assert get(port, "/metrics", method="POST")[0] == 405
    assert get(port, "/nothing-here")[0] == 404
    samples = scrape(port)
    assert value(samples, "spooler_mode", spooler_mode="online") == 1
    assert value(samples, "spooler_server_health", spooler_server_health="up") == 1
    assert value(samples, "spooler_info", device="branch-7", version=healthz(port)["version"]) == 1

    # Online: jobs go to the central server; logins are counted by outcome.
    for number in (1, 2):
        send_raw(spooler.raw_port, pjl_job("alice", f"online {number}", b"%!PS\n% online\n"))
    central.wait_received(2)
    assert login(spooler, ALICE_PIN)[0] == 200
    assert login(spooler, "000000")[0] == 403
    samples = wait_for(lambda: s if value(s := scrape(port), "spooler_jobs", queue="default", state="completed",
                                          route="server", mode="online") == 2 else None, what="2 jobs online")
    assert value(samples, "spooler_logins_total", outcome="online") == 1
    assert value(samples, "spooler_logins_total", outcome="invalid") == 1
    assert value(samples, "spooler_queue_depth", queue="default") == 0

    # The central server goes: offline, degraded, jobs printed on the device and counted since the outage.
    central.mode("refuse")
    wait_for(lambda: healthz(port)["mode"] == "offline", timeout=20, what="offline")
    health = healthz(port)
    assert health["status"] == "degraded" and "the central server is down" in health["reasons"][0]
    for number in (1, 2):
        send_raw(spooler.raw_port, pjl_job("alice", f"offline {number}", b"%!PS\n% offline\n"))
    wait_for(lambda: len(device.jobs) == 2, timeout=20, what="2 jobs on the device")
    samples = wait_for(lambda: s if value(s := scrape(port), "spooler_offline_printed_jobs") == 2 else None,
                       what="2 jobs printed offline")  # fmt: skip
    assert value(samples, "spooler_mode", spooler_mode="offline") == 1
    assert value(samples, "spooler_server_health", spooler_server_health="down") == 1
    assert value(samples, "spooler_offline_seconds") > 0
    assert value(samples, "spooler_jobs", queue="default", state="completed", route="device", mode="offline") == 2
    assert value(samples, "spooler_accounting_records", status="waiting") >= 2  # the API is down too
    assert value(samples, "spooler_server_probes_total", outcome="failed") >= 2
    status = spooler.cli("status").stdout  # the same outage, as `spooler status` says it
    assert "job(s) printed on the device since the outage began" in status and "\noffline     since" in status
    assert "2 job(s) printed on the device" in status, status
    assert "login cache 1 user(s): 1 usable, 0 expired, 0 revoked" in status, status

    # The device goes too: the job waits, the failures are counted, both reasons are given.
    device.close()
    send_raw(spooler.raw_port, pjl_job("alice", "waits", b"%!PS\n% waits\n"))
    samples = wait_for(lambda: s if value(s := scrape(port), "spooler_device_health",
                                          spooler_device_health="unreachable") == 1 else None, what="device down")
    assert value(samples, "spooler_delivery_failures_total", route="device", retried="true") >= 1
    assert value(samples, "spooler_queue_depth", queue="default") == 1
    assert value(samples, "spooler_health", spooler_health="degraded") == 1
    reasons = healthz(port)["reasons"]
    assert len(reasons) == 2 and "the device is unreachable" in reasons[1], reasons

    # The server is back: online again, the waiting job and the accounting records go up to it.
    central.mode("normal")
    wait_for(lambda: healthz(port)["mode"] == "online", timeout=20, what="online again")
    samples = wait_for(lambda: s if value(s := scrape(port), "spooler_accounting_records", status="waiting") == 0
                       and value(s, "spooler_queue_depth", queue="default") == 0 else None, timeout=30,
                       what="the backlog sent")  # fmt: skip
    assert value(samples, "spooler_accounting_records", status="sent") == 5
    assert value(samples, "spooler_offline_printed_jobs") == 0
    assert len(central.accounting()) == 5


def test_the_status_page_in_headless_chromium(spooler_factory: Any, central: RefServer, device: RawDevice,
                                              tmp_path: Path) -> None:  # fmt: skip
    chromium = require_tool("chromium")
    sync_playwright = playwright_api()
    spooler, port = branch(spooler_factory, central, device.port)
    wait_for(lambda: healthz(port)["mode"] == "online", timeout=20, what="online")
    send_raw(spooler.raw_port, pjl_job("alice", "Budget 2027.pdf", b"%!PS\n% budget\n"))
    central.wait_received(1)
    assert login(spooler, ALICE_PIN)[0] == 200  # the login cache learns alice
    central.mode("refuse")
    wait_for(lambda: healthz(port)["mode"] == "offline", timeout=20, what="offline")
    send_raw(spooler.raw_port, pjl_job("bob", "Minutes.pdf", b"%!PS\n% minutes\n"))
    wait_for(lambda: len(device.jobs) == 1, timeout=20, what="a job printed offline")
    device.close()
    hostile = "<img src=x onerror=document.title=1>"  # a job name is whatever a client says
    send_raw(spooler.raw_port, pjl_job("carol", hostile, b"%!PS\n% waits\n"))
    wait_for(lambda: healthz(port)["status"] == "degraded" and len(healthz(port)["reasons"]) == 2, timeout=30,
             what="the device seen down")  # fmt: skip

    with sync_playwright() as playwright:
        browser = launch(playwright, chromium, tmp_path, viewport={"width": 1280, "height": 900},
                         http_credentials={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        try:
            page, outside = open_page(browser, port)
            page.wait_for_selector("#waiting tbody tr")
            assert page.inner_text("#device") == "branch-7"
            assert page.inner_text("#health") == "degraded"
            assert page.inner_text("#mode").lower() == "offline"
            mode_facts = page.inner_text("#mode-facts")
            assert "1 job(s) since the outage began" in mode_facts and "offline for" in mode_facts
            assert "unreachable" in page.inner_text("#device-facts")
            assert page.locator("#reasons li").count() == 2
            waiting = page.locator("#waiting tbody tr").all_inner_texts()
            assert len(waiting) == 1 and hostile in waiting[0]  # shown as text, never as markup
            assert page.locator("#waiting img").count() == 0 and page.title() != "1"
            finished = page.locator("#finished tbody tr").all_inner_texts()
            assert len(finished) == 2 and "Minutes.pdf" in finished[0] and "Budget 2027.pdf" in finished[1]
            assert "waiting" in page.inner_text("#outbox-facts")
            assert "1 (1 usable, 0 expired, 0 revoked)" in page.inner_text("#login-facts")
            page.screenshot(path=str(tmp_path / "admin-status.png"), full_page=True)
            assert outside == []  # nothing fetched from anywhere else
        finally:
            browser.close()
    # The same page without credentials: refused.
    assert get(port, "/", credentials=None)[0] == 401
    if target := os.environ.get("SPOOLER_ADMIN_SCREENSHOTS"):  # for docs/: copy what the test saw
        shutil.copy(tmp_path / "admin-status.png", Path(target) / "admin-status.png")
