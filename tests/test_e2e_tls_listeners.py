"""The admin web listener and the device terminal behind TLS, with real processes: given a Twisted
`ssl:` endpoint (the README's advice for a listener off loopback), each answers over HTTPS with the
configured certificate, a plain-HTTP client gets no answer in clear, the admin's credentials work
there, and the terminal's session cookie is marked Secure."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from spooler.ipp.server.auth import ensure_self_signed
from spooler_harness import RefServer, free_port, wait_for
from test_e2e_terminal import ALICE_PIN, central  # noqa: F401 - the reference server with the terminal's users

pytestmark = pytest.mark.e2e

ADMIN = ("monitor", "Scrape-Key-9c21")


def https(port: int, method: str, path: str, *, body: Any = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes, bytes]:  # fmt: skip
    """(status, headers, body, the server's certificate in DER) of one HTTPS request; the test's own
    self-signed certificate is not verified here, it is compared with the file instead."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
    try:
        connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers or {})
        response = connection.getresponse()
        assert connection.sock is not None
        certificate = connection.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read(), certificate
    finally:
        connection.close()


def plain_http_gets_no_answer(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/healthz")
        connection.getresponse().read()
    except (http.client.HTTPException, OSError):
        return True
    finally:
        connection.close()
    return False


def test_admin_web_and_terminal_over_tls(spooler_factory: Any, central: RefServer, tmp_path: Path) -> None:
    central.start()
    certificate, key = ensure_self_signed(tmp_path / "tls")
    expected = ssl.PEM_cert_to_DER_cert(certificate.read_text())
    admin_port, terminal_port = free_port(), free_port()
    tls = f"interface=127.0.0.1:privateKey={key}:certKey={certificate}"
    spooler = spooler_factory(**{
        "server__queue_uri": central.ipp_uri, "server__api_url": central.api_url, "device__name": "branch-1",
        "login__share_listen": "", "login__sync_interval": 0,
        "admin__listen": f"ssl:{admin_port}:{tls}",
        "terminal__enabled": True, "terminal__listen": f"ssl:{terminal_port}:{tls}",
    })  # fmt: skip
    added = subprocess.run([sys.executable, "-m", "spooler", "admin-user", "add", ADMIN[0], "--stdin",
                            "--config", str(spooler.config_path)], input=ADMIN[1] + "\n", text=True,
                           capture_output=True, timeout=60)  # fmt: skip
    assert added.returncode == 0, added.stderr
    spooler.start()

    # The admin listener: /healthz and /metrics over HTTPS, with the configured certificate.
    status, _, body, presented = https(admin_port, "GET", "/healthz")
    assert status == 200 and json.loads(body)["status"] in ("ok", "degraded") and presented == expected
    basic = "Basic " + base64.b64encode(":".join(ADMIN).encode()).decode()
    assert https(admin_port, "GET", "/metrics")[0] == 401
    status, headers, body, _ = https(admin_port, "GET", "/metrics", headers={"Authorization": basic})
    assert status == 200 and b"spooler_mode" in body, body[:200]
    assert plain_http_gets_no_answer(admin_port)

    # The terminal: the page, then a PIN login whose session cookie is Secure and HttpOnly.
    status, _, page, presented = https(terminal_port, "GET", "/")
    assert status == 200 and b"<html" in page.lower() and presented == expected
    wait_for(lambda: spooler.status()["mode"] == "online", timeout=20, what="online")
    status, headers, body, _ = https(terminal_port, "POST", "/api/v1/login", headers={"Content-Type": "application/json"},
                                     body={"method": "pin", "secret": ALICE_PIN})  # fmt: skip
    assert status == 200 and json.loads(body)["user"] == "alice", body
    cookie = [part.strip().lower() for part in headers["set-cookie"].split(";")]
    assert cookie[0].startswith("spooler_terminal=") and "secure" in cookie and "httponly" in cookie, cookie
    assert plain_http_gets_no_answer(terminal_port)
