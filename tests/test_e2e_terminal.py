"""The device terminal and pull print end to end with real processes: the reference central server
(its print queue and its login API), a `spooler serve` with a hold-policy queue and the terminal
enabled, its file-sink device, and HTTP clients at the terminal — then the same with the web page
driven in headless Chromium (Playwright with the system browser)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spooler_harness import IN_CI, RefServer, refserver, Spooler, free_port, pjl_job, require_tool, send_raw, wait_for

pytestmark = pytest.mark.e2e

CORPUS = Path(__file__).parent.parent / "samples" / "corpus"
# Secrets of this test only (unusual, so that a search of the state folder for them means something).
ALICE_PIN, BOB_PIN, ALICE_PASSWORD = "418273", "562940", "tulip-Orbit-93"
USERS = {"users": [
    {"name": "alice", "full_name": "Alice Martin", "password": ALICE_PASSWORD, "pins": [ALICE_PIN], "cards": []},
    {"name": "bob", "full_name": "Bob Dupont", "password": "bob-Saffron-17", "pins": [BOB_PIN], "cards": []},
], "revocations": []}  # fmt: skip
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
                 "--metrics-recording-only", "--disable-features=Translate,MediaRouter,OptimizationHints"]  # fmt: skip


class TerminalClient:
    """One browser-like client of the terminal API, from one source address: keeps its session cookie."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.port, self.source = port, source
        self.cookie: str | None = None

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30, source_address=(self.source, 0))
        headers = {"Content-Type": "application/json"} if method == "POST" else {}
        if self.cookie:
            headers["Cookie"] = f"spooler_terminal={self.cookie}"
        try:
            connection.request(method, "/api/v1/" + path, body=json.dumps(body or {}) if method == "POST" else None,
                               headers=headers)  # fmt: skip
            response = connection.getresponse()
            data = response.read()
            for name, value in response.getheaders():
                if name.lower() == "set-cookie" and value.startswith("spooler_terminal="):
                    self.cookie = value.split(";")[0].split("=", 1)[1] or None
        finally:
            connection.close()
        return response.status, json.loads(data)

    def login(self, secret: str, method: str = "pin", user: str | None = None) -> tuple[int, Any]:
        body: dict[str, Any] = {"method": method, "secret": secret}
        if user is not None:
            body["user"] = user
        return self.call("POST", "login", body)

    def jobs(self) -> list[dict[str, Any]]:
        status, body = self.call("GET", "jobs")
        assert status == 200, body
        return list(body["jobs"])


@pytest.fixture
def central() -> Iterator[RefServer]:
    with refserver(start=False, users=USERS) as server:
        yield server


def start_branch(spooler_factory: Any, central: RefServer) -> tuple[Spooler, int]:
    port = free_port()
    spooler = spooler_factory(**{
        "server__queue_uri": central.ipp_uri, "server__api_url": central.api_url,
        "server__probe_interval": "250ms", "server__probe_timeout": "500ms", "server__connect_timeout": "1s",
        "queues.default__offline_policy": "hold", "device__name": "branch-1",
        "terminal__enabled": True, "terminal__listen": f"tcp:{port}:interface=127.0.0.1",
        "terminal__session_idle": "10m",
    })  # fmt: skip
    spooler.start()
    return spooler, port


def held(spooler: Spooler, count: int) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]] | None:
        jobs = [job for job in spooler.jobs() if job["state"] == "pending-held"]
        return jobs if len(jobs) >= count else None

    return wait_for(found, timeout=20, what=f"{count} held jobs")


def go_offline(spooler: Spooler, central: RefServer) -> None:
    central.stop()  # the central server is gone: its queue and its API
    wait_for(lambda: spooler.status()["mode"] == "offline", timeout=20, what="the spooler to see the server down")


def assert_no_secret_on_disk(spooler: Spooler, secrets: list[str]) -> None:
    for path in [*spooler.state_dir.rglob("*"), spooler.stderr_path]:
        if path.is_file() and not path.is_socket():
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, f"{secret!r} found in {path}"


def test_pull_print_online_then_offline_at_the_terminal(spooler_factory: Any, central: RefServer) -> None:
    central.start()
    spooler, port = start_branch(spooler_factory, central)
    wait_for(lambda: spooler.status()["mode"] == "online", timeout=20, what="online")
    assert spooler.status()["listeners"]["terminal"] == f"127.0.0.1:{port}"

    alice, bob = TerminalClient(port), TerminalClient(port)
    status, session = alice.login(ALICE_PIN)  # online: the central server checks the PIN
    assert status == 200 and (session["user"], session["mode"], session["notice"]) == ("alice", "online", None)
    assert session["full_name"] == "Alice Martin"
    assert bob.login(BOB_PIN)[1]["mode"] == "online"
    send_raw(spooler.raw_port, pjl_job("alice", "online job", b"%PDF-1.4 online"))
    central.wait_received(1)  # online, pull print is the server's: the job was forwarded
    assert alice.jobs() == []

    go_offline(spooler, central)
    data = (CORPUS / "mixed_letter_4p.pdf").read_bytes()
    send_raw(spooler.raw_port, pjl_job("alice", "Quarterly report", data))
    send_raw(spooler.raw_port, pjl_job("bob", "Bob's plans", b"%PDF-1.4 bob"))
    held(spooler, 2)
    assert spooler.deliveries() == []  # held: nothing printed before its owner releases it

    alice_offline = TerminalClient(port)
    status, body = alice_offline.login("999999")
    assert (status, body["code"], body["error"]) == (401, "invalid", "Wrong PIN.")
    status, session = alice_offline.login(ALICE_PIN)  # offline: against the cache
    assert status == 200 and session["mode"] == "offline", session
    assert "credit, quota, projects and print policies are not available" in session["notice"]
    [mine] = alice_offline.jobs()
    assert mine["name"] == "Quarterly report"
    bobs_id = next(j["job_id"] for j in spooler.jobs() if j["user"] == "bob")
    assert alice_offline.call("POST", f"jobs/{bobs_id}/release")[0] == 404  # not hers
    assert alice_offline.call("POST", f"jobs/{bobs_id}/delete")[0] == 404

    status, body = alice_offline.call("POST", f"jobs/{mine['id']}/release")
    assert status == 200, body
    [printed] = spooler.wait_delivered(1)
    assert printed.read_bytes() == pjl_job("alice", "Quarterly report", data)
    assert spooler.sink_sidecar(printed)["user"] == "alice"
    assert spooler.job(bobs_id)["state"] == "pending-held"  # bob's job waits for bob

    bob_offline = TerminalClient(port)
    assert bob_offline.login(BOB_PIN)[1]["mode"] == "offline"
    assert [j["id"] for j in bob_offline.jobs()] == [bobs_id]  # his only: not alice's, printed or not
    assert bob_offline.call("POST", f"jobs/{mine['id']}/delete")[0] == 404
    assert alice_offline.call("POST", "logout")[1] == {"logged_out": True}
    assert alice_offline.call("GET", "jobs")[0] == 401
    events = [e["event"] for e in spooler.log_records()]
    assert events.count("terminal_login") == 4 and "job_released" in events
    assert_no_secret_on_disk(spooler, [ALICE_PIN, BOB_PIN, "999999"])


# -- the web page in headless Chromium ----------------------------------------------------------


def playwright_api() -> Any:
    """Playwright's sync API (the [test] extra); missing: skipped on a developer machine, failed in CI."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = "the playwright package is not installed (pip install -e '.[test]')"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return sync_playwright


def launch(playwright: Any, chromium: str, tmp_path: Path, **options: Any) -> Any:
    """Headless Chromium (the system's) with a fresh profile, British English, UTC, an 800x480 panel
    unless `options` say otherwise (a Playwright persistent context: close it at the end)."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp_path))
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=chromium, args=CHROMIUM_ARGS, headless=True, locale="en-GB",
        timezone_id="UTC", **{"viewport": {"width": 800, "height": 480}, **options},
    )  # fmt: skip


def open_page(browser: Any, port: int) -> tuple[Any, list[str]]:
    """A page of `browser` at http://127.0.0.1:PORT/, and the list that collects every request it makes
    anywhere else (a test wants it empty: nothing fetched from elsewhere)."""
    page = browser.new_page()
    outside: list[str] = []
    page.on("request", lambda request: None if request.url.startswith(f"http://127.0.0.1:{port}/")
            else outside.append(request.url))  # fmt: skip
    page.goto(f"http://127.0.0.1:{port}/")
    return page, outside


def test_the_web_terminal_in_headless_chromium(spooler_factory: Any, central: RefServer, tmp_path: Path) -> None:
    chromium = require_tool("chromium")
    sync_playwright = playwright_api()
    central.start()
    spooler, port = start_branch(spooler_factory, central)
    wait_for(lambda: spooler.status()["mode"] == "online", timeout=20, what="online")
    assert TerminalClient(port).login(ALICE_PIN)[0] == 200  # seen online once: she may log in offline
    go_offline(spooler, central)
    report = pjl_job("alice", "Quarterly report.pdf", (CORPUS / "mixed_letter_4p.pdf").read_bytes())
    send_raw(spooler.raw_port, report)
    send_raw(spooler.raw_port, pjl_job("alice", "Minutes 24 Nov.pdf", (CORPUS / "text_a4_3p.pdf").read_bytes()))
    send_raw(spooler.raw_port, pjl_job("bob", "Not for alice", b"%PDF-1.4 bob"))
    # PCL XL whose third page's colour the walker cannot tell: shown as unknown, never as mono
    pxl = (CORPUS / "mixed_4p.pxl").read_bytes()
    send_raw(spooler.raw_port, pjl_job("alice", "Scan.pxl", pxl[pxl.index(b") HP-PCL XL"):], language="PCLXL"))
    held(spooler, 4)
    wait_for(lambda: all("analysis" in spooler.job(j)["attributes"] for j in (1, 2, 4)), timeout=30, what="analysis")

    with sync_playwright() as playwright:
        browser = launch(playwright, chromium, tmp_path)
        try:
            page, outside = open_page(browser, port)

            def type_pin(pin: str) -> None:
                for digit in pin:
                    page.click(f'#keypad button[data-key="{digit}"]')
                page.click('#keypad button[data-key="ok"]')

            type_pin("111111")
            page.wait_for_selector("#login-message.error")
            assert page.inner_text("#login-message") == "Wrong PIN."
            assert page.is_visible("#login") and not page.is_visible("#jobs")
            page.set_viewport_size({"width": 480, "height": 272})
            page.screenshot(path=str(tmp_path / "terminal-login-480x272.png"))
            page.set_viewport_size({"width": 800, "height": 480})

            type_pin(ALICE_PIN)
            page.wait_for_selector("#jobs .job")
            assert page.inner_text("#hello") == "Hello, Alice Martin"
            assert "credit, quota, projects and print policies are not available" in page.inner_text("#notice")
            names = page.locator("#job-list .name").all_inner_texts()
            assert [name.removeprefix("C").strip() for name in names] == ["Quarterly report.pdf", "Minutes 24 Nov.pdf",
                                                                          "Scan.pxl"]
            metas = page.locator("#job-list .meta").all_inner_texts()
            assert metas[0].startswith("4 pages · colour ·") and metas[1].startswith("3 pages · black & white"), metas
            assert metas[2].startswith("4 pages · colour unknown ·"), metas
            page.screenshot(path=str(tmp_path / "terminal-jobs-800x480.png"))
            page.set_viewport_size({"width": 480, "height": 272})
            page.screenshot(path=str(tmp_path / "terminal-jobs-480x272.png"))
            page.set_viewport_size({"width": 800, "height": 480})

            page.locator("#job-list .job").first.locator("button.primary").click()
            page.wait_for_selector("#jobs-message.ok")
            assert page.inner_text("#jobs-message") == "Printing: Quarterly report.pdf"
            [printed] = spooler.wait_delivered(1)
            assert printed.read_bytes() == report
            page.wait_for_function("document.querySelectorAll('#job-list .job').length === 2")
            page.screenshot(path=str(tmp_path / "terminal-released-800x480.png"))

            page.click("#logout")
            page.wait_for_selector("#login", state="visible")
            assert outside == []  # no request left the terminal's own origin
        finally:
            browser.close()
    assert spooler.job(3)["state"] == "pending-held"  # bob's job was never shown nor touched
    if target := os.environ.get("SPOOLER_TERMINAL_SCREENSHOTS"):  # for docs/: copy what the test saw
        for picture in tmp_path.glob("terminal-*.png"):
            shutil.copy(picture, Path(target) / picture.name)


def test_a_private_job_asks_for_its_key_on_the_page(spooler_factory: Any, central: RefServer, tmp_path: Path) -> None:
    """Issue 14, finding 4, in headless Chromium: "Print" on a private job opens a keypad for its key;
    a wrong key says so, the right one prints it (and the device gets the job without its key)."""
    chromium = require_tool("chromium")
    sync_playwright = playwright_api()
    central.start()
    spooler, port = start_branch(spooler_factory, central)
    wait_for(lambda: spooler.status()["mode"] == "online", timeout=20, what="online")
    key = "83016492"
    private = pjl_job("alice", "Payslip.pdf", b"%PDF-1.4 payslip", extra=f'@PJL SET HOLD=ON HOLDTYPE=PRIVATE HOLDKEY="{key}"\r\n')
    send_raw(spooler.raw_port, private)
    held(spooler, 1)
    with sync_playwright() as playwright:
        browser = launch(playwright, chromium, tmp_path)
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            for digit in ALICE_PIN:
                page.click(f'#keypad button[data-key="{digit}"]')
            page.click('#keypad button[data-key="ok"]')
            page.wait_for_selector("#jobs .job")
            assert page.inner_text("#job-list .name").startswith("Private")
            page.click("#release-all")  # "Print all" leaves a private job alone
            page.wait_for_selector("#jobs-message.ok")
            assert "1 private job needs its key" in page.inner_text("#jobs-message")
            assert spooler.job(1)["state"] == "pending-held"
            page.locator("#job-list .job").first.locator("button.primary").click()
            page.wait_for_selector("#key-screen", state="visible")
            for digit in "11111111":
                page.click(f'#key-keypad button[data-key="{digit}"]')
            page.click('#key-keypad button[data-key="ok"]')
            page.wait_for_selector("#key-message.error")
            assert page.inner_text("#key-message") == "Wrong key for this private job."
            page.screenshot(path=str(tmp_path / "terminal-key-800x480.png"))
            for digit in key:
                page.click(f'#key-keypad button[data-key="{digit}"]')
            page.click('#key-keypad button[data-key="ok"]')
            page.wait_for_selector("#jobs-message.ok")
            assert page.inner_text("#jobs-message") == "Printing: Payslip.pdf"
        finally:
            browser.close()
    [printed] = spooler.wait_delivered(1)
    assert printed.read_bytes() == pjl_job("alice", "Payslip.pdf", b"%PDF-1.4 payslip")
    spooler.stop()
    assert_no_secret_on_disk(spooler, [key, "11111111", ALICE_PIN])
