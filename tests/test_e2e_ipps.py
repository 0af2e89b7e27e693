"""End to end over ipps (IPP over TLS) with HTTP Basic authentication: a real `spooler serve`, ipptool
over ipps (self-signed certificate made at first start) with and without credentials, job ownership
by the authenticated user whatever requesting-user-name says, 401 with a Basic challenge, plain http
refused with Basic configured (or allowed when configured), throttling, ipptool's ipp-2.0 suite over
ipps with credentials, and no password anywhere in the state folder or the logs."""

from __future__ import annotations

import base64
import http.client
import re
import shutil
import ssl
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from spooler.ipp.codec import Attribute, IppMessage, decode, encode_message
from spooler.ipp.tags import Operation, Status, Tag
from spooler_harness import Spooler, free_port, require_tool, short_tempdir, wait_for
from test_e2e_login import find_secrets

pytestmark = pytest.mark.e2e
SpoolerFactory = Callable[..., Spooler]

SUITES = Path("/usr/share/cups/ipptool")
TEST_PAGE = Path("/usr/share/cups/data/default-testpage.pdf")
# Distinctive passwords, so that a search of the disk cannot meet them by chance.
PASSWORDS = {"alice": "Al1ce-Ipps-7f3e", "bob": "B0b-Ipps-c41d"}
WRONG = "Wr0ng-Ipps-9a2b"


def add_users(spooler: Spooler) -> None:
    for user, password in PASSWORDS.items():
        result = subprocess.run(
            ["python", "-m", "spooler", "ipp-user", "add", user, "--stdin", "--config", str(spooler.config_path)],
            input=password + "\n", capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert password not in result.stdout + result.stderr


def ipps_spooler(factory: SpoolerFactory, *, authentication: str = "basic", **settings: object) -> Spooler:
    spooler = factory(spool__min_free_space=0, ipp__authentication=authentication, **settings)
    spooler.ipps_port = free_port()  # type: ignore[attr-defined]
    spooler.write_config(listen__ipps=f"tcp:{spooler.ipps_port}:interface=127.0.0.1")  # type: ignore[attr-defined]
    if authentication == "basic":
        add_users(spooler)
    return spooler.start()


def message(port: int, operation: int, user: str, *extra: Attribute, scheme: str = "ipps") -> IppMessage:
    request = IppMessage((2, 0), operation, 1)
    request.add_group(
        Tag.OPERATION, Attribute.charset("attributes-charset", "utf-8"),
        Attribute.language("attributes-natural-language", "en"),
        Attribute.uri("printer-uri", f"{scheme}://127.0.0.1:{port}/ipp/print"),
        Attribute.name("requesting-user-name", user), *extra,
    )  # fmt: skip
    return request


def call(port: int, request: IppMessage, body: bytes = b"", *, credentials: tuple[str, str] | None = None,
         tls: bool = True) -> tuple[int, http.client.HTTPResponse, IppMessage | None]:  # fmt: skip
    """(HTTP status, response, IPP response or None) of one request."""
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the spooler's self-signed certificate
        connection: http.client.HTTPConnection = http.client.HTTPSConnection("127.0.0.1", port, timeout=60,
                                                                             context=context)  # fmt: skip
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/ipp"}
    if credentials is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
    try:
        connection.request("POST", "/ipp/print", encode_message(request) + body, headers)
        response = connection.getresponse()
        data = response.read()
        return response.status, response, decode(data) if response.status == 200 else None
    finally:
        connection.close()


def ipptool(uri: str, *args: str, cwd: Path | None = None, timeout: float = 120) -> str:
    """ipptool's output: `args` are its options, then the test file (last)."""
    tool = require_tool("ipptool")
    result = subprocess.run([tool, "-T", "30", *args[:-1], uri, args[-1]], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)  # fmt: skip
    return result.stdout + result.stderr


def test_ipps_without_authentication_serves_ipptool_with_a_self_signed_certificate(
    spooler_factory: SpoolerFactory,
) -> None:  # fmt: skip
    spooler = ipps_spooler(spooler_factory, authentication="none")
    port = spooler.ipps_port  # type: ignore[attr-defined]
    keys = spooler.state_dir / "keys"
    assert stat.S_IMODE((keys / "ipps.key").stat().st_mode) == 0o600
    output = ipptool(f"ipps://127.0.0.1:{port}/ipp/print", "-tv", str(SUITES / "get-printer-attributes.test"))
    assert "[PASS]" in output and "[FAIL]" not in output, output[-3000:]
    assert re.search(rf"printer-uri-supported \(1setOf uri\) = ipps://[^:]+:{port}/ipp/print,"
                     rf"ipp://[^:]+:{spooler.ipp_port}/ipp/print", output), output  # fmt: skip
    assert "uri-security-supported (1setOf keyword) = tls,none" in output
    assert "uri-authentication-supported (1setOf keyword) = requesting-user-name,requesting-user-name" in output
    # The same certificate after a restart (made once).
    first = (keys / "ipps.crt").read_bytes()
    spooler.stop()
    spooler.start()
    assert (keys / "ipps.crt").read_bytes() == first
    status, _, answer = call(port, message(port, Operation.GET_PRINTER_ATTRIBUTES, "kim"))
    assert status == 200 and answer is not None and Status(answer.code) == Status.SUCCESSFUL_OK


PRINT_AS = """{{
  NAME "Print-Job as {requester}"
  OPERATION Print-Job
  GROUP operation-attributes-tag
  ATTR charset attributes-charset utf-8
  ATTR naturalLanguage attributes-natural-language en
  ATTR uri printer-uri $uri
  ATTR name requesting-user-name "{requester}"
  ATTR name job-name "owned"
  ATTR mimeMediaType document-format text/plain
  FILE {file}
  STATUS successful-ok
  EXPECT job-id OF-TYPE integer
}}
"""

CANCEL_AS = """{{
  NAME "Cancel-Job {job} as {requester}"
  OPERATION Cancel-Job
  GROUP operation-attributes-tag
  ATTR charset attributes-charset utf-8
  ATTR naturalLanguage attributes-natural-language en
  ATTR uri printer-uri $uri
  ATTR integer job-id {job}
  ATTR name requesting-user-name "{requester}"
  STATUS {status}
}}
"""


def pending_spooler(factory: SpoolerFactory) -> Spooler:
    """An ipps spooler with Basic auth whose device is unreachable: its jobs stay pending."""
    return ipps_spooler(factory, device__uri="socket://127.0.0.1:9", device__retry_initial="1h",
                        device__retry_max="1h")  # fmt: skip


def print_test(tmp_path: Path, requester: str, job_name: str = "owned") -> Path:
    """An ipptool test that prints a small text file as `requester`, named `job_name`."""
    document = tmp_path / "page.txt"
    document.write_text("hello over ipps\n")
    tests = tmp_path / "print.test"
    tests.write_text(PRINT_AS.format(requester=requester, file=document).replace('"owned"', f'"{job_name}"'))
    return tests


def test_basic_authenticated_user_owns_the_job_and_only_it_may_cancel(
    spooler_factory: SpoolerFactory, tmp_path: Path,
) -> None:  # fmt: skip
    spooler = pending_spooler(spooler_factory)  # the job stays pending, so cancelling it is possible
    port = spooler.ipps_port  # type: ignore[attr-defined]
    tests = print_test(tmp_path, "bob")
    alice = f"ipps://alice:{PASSWORDS['alice']}@127.0.0.1:{port}/ipp/print"
    bob = f"ipps://bob:{PASSWORDS['bob']}@127.0.0.1:{port}/ipp/print"

    # ipptool without credentials: Print-Job gets the 401, which ends it (it has no password to answer
    # the challenge with); Get-Printer-Attributes is allowed anonymously, as CUPS allows it.
    output = ipptool(f"ipps://127.0.0.1:{port}/ipp/print", "-tv", str(tests))
    assert "[FAIL]" in output and "not-authenticated" in output, output[-2000:]
    output = ipptool(f"ipps://127.0.0.1:{port}/ipp/print", "-t", str(SUITES / "get-printer-attributes.test"))
    assert "[PASS]" in output and "[FAIL]" not in output, output[-2000:]
    # alice prints, claiming to be bob: the job is alice's.
    output = ipptool(alice, "-tv", str(tests))
    assert "[PASS]" in output and "[FAIL]" not in output, output[-3000:]
    job_id = int(re.search(r"job-id \(integer\) = (\d+)", output).group(1))  # type: ignore[union-attr]
    job = spooler.job(job_id)
    assert job["user"] == "alice", job

    # bob (authenticated) may not cancel it, even naming alice as requesting-user-name.
    cancel = tmp_path / "cancel.test"
    cancel.write_text(CANCEL_AS.format(job=job_id, requester="alice", status="client-error-not-authorized"))
    output = ipptool(bob, "-tv", str(cancel))
    assert "[PASS]" in output and "[FAIL]" not in output, output[-3000:]
    # not canceled (the dispatcher may be between two attempts on the unreachable device)
    assert spooler.job(job_id)["state"] in ("pending", "processing")
    # Get-Jobs my-jobs as bob: alice's job is not his.
    status, _, answer = call(port, message(port, Operation.GET_JOBS, "alice", Attribute.boolean("my-jobs", True)),
                             credentials=("bob", PASSWORDS["bob"]))  # fmt: skip
    assert status == 200 and answer is not None and Status(answer.code) == Status.SUCCESSFUL_OK
    assert not list(answer.groups_of(Tag.JOB))
    status, _, answer = call(port, message(port, Operation.GET_JOBS, "bob", Attribute.boolean("my-jobs", True)),
                             credentials=("alice", PASSWORDS["alice"]))  # fmt: skip
    assert answer is not None and [g["job-id"].all[0] for g in answer.groups_of(Tag.JOB)] == [job_id]
    # alice may, whatever name she gives.
    cancel.write_text(CANCEL_AS.format(job=job_id, requester="bob", status="successful-ok"))
    output = ipptool(alice, "-tv", str(cancel))
    assert "[PASS]" in output and "[FAIL]" not in output, output[-3000:]
    assert spooler.job(job_id)["state"] == "canceled"

    # Over plain http, Basic is not allowed by default: everything there is refused.
    status, response, _ = call(spooler.ipp_port, message(spooler.ipp_port, Operation.GET_PRINTER_ATTRIBUTES, "alice",
                                                         scheme="ipp"),
                               credentials=("alice", PASSWORDS["alice"]), tls=False)  # fmt: skip
    assert status == 403 and response.getheader("WWW-Authenticate") is None
    output = ipptool(f"ipp://alice:{PASSWORDS['alice']}@127.0.0.1:{spooler.ipp_port}/ipp/print", "-t",
                     str(SUITES / "get-printer-attributes.test"))  # fmt: skip
    assert "[FAIL]" in output and "forbidden" in output.lower(), output[-2000:]

    # printer-uri-supported: the ipps URI with tls and basic (the refusing plain URI is not offered).
    status, _, answer = call(port, message(port, Operation.GET_PRINTER_ATTRIBUTES, "x"),
                             credentials=("bob", PASSWORDS["bob"]))  # fmt: skip
    assert answer is not None
    printer = next(iter(answer.groups_of(Tag.PRINTER)))
    assert printer["printer-uri-supported"].all == [f"ipps://127.0.0.1:{port}/ipp/print"]
    assert printer["uri-security-supported"].all == ["tls"]
    assert printer["uri-authentication-supported"].all == ["basic"]

    assert "Traceback" not in spooler.stderr()
    assert find_secrets([spooler.state_dir, spooler.stderr_path], [*PASSWORDS.values(), WRONG]) == []


def test_other_users_do_not_see_my_jobs_names_or_owner(spooler_factory: SpoolerFactory, tmp_path: Path) -> None:
    """Issue 14, finding 8: CUPS's JobPrivateValues/JobPrivateAccess defaults, seen with CUPS's own
    get-jobs.test (anonymous) and with Basic credentials."""
    spooler = pending_spooler(spooler_factory)
    port = spooler.ipps_port  # type: ignore[attr-defined]
    tests = print_test(tmp_path, "alice", "Payslip-Nov-Alice")
    output = ipptool(f"ipps://alice:{PASSWORDS['alice']}@127.0.0.1:{port}/ipp/print", "-tv", str(tests))
    assert "[PASS]" in output, output[-2000:]

    # ipptool's Get-Jobs names nobody: the job is listed, its name and owner are not.
    anonymous = ipptool(f"ipps://127.0.0.1:{port}/ipp/print", "-tv", str(SUITES / "get-jobs.test"))
    assert "[PASS]" in anonymous and re.search(r"job-id \(integer\) = 1\b", anonymous), anonymous[-2000:]
    assert "job-state (enum)" in anonymous
    assert "Payslip-Nov-Alice" not in anonymous and "job-originating-user-name (" not in anonymous, anonymous[-2000:]

    def seen(operation: int, claimed: str, credentials: tuple[str, str] | None) -> dict[str, object]:
        extra = [Attribute.keyword("requested-attributes", "all")]
        if operation == Operation.GET_JOB_ATTRIBUTES:
            extra.append(Attribute.integer("job-id", 1))
        status, _, answer = call(port, message(port, operation, claimed, *extra), credentials=credentials)
        assert status == 200 and answer is not None
        [job] = answer.groups_of(Tag.JOB)
        return {attribute.name: attribute.first for attribute in job.attributes}

    for operation in (Operation.GET_JOBS, Operation.GET_JOB_ATTRIBUTES):
        bob = seen(operation, "alice", ("bob", PASSWORDS["bob"]))  # bob, authenticated, claiming to be alice
        assert bob["job-id"] == 1 and "job-name" not in bob and "job-originating-user-name" not in bob
        assert "job-name" not in seen(operation, "bob", None)
        alice = seen(operation, "alice", ("alice", PASSWORDS["alice"]))
        assert (alice["job-name"], alice["job-originating-user-name"]) == ("Payslip-Nov-Alice", "alice")


def test_no_or_wrong_credentials_get_401_with_a_challenge_and_guessing_is_throttled(
    spooler_factory: SpoolerFactory,
) -> None:  # fmt: skip
    spooler = ipps_spooler(spooler_factory)
    port = spooler.ipps_port  # type: ignore[attr-defined]
    document = b"%PDF-1.7\n" + b"x" * 200_000  # a body that is dropped, not spooled
    request = message(port, Operation.PRINT_JOB, "alice", Attribute.mime("document-format", "application/pdf"))
    status, response, _ = call(port, request, document)
    assert status == 401
    assert response.getheader("WWW-Authenticate") == 'Basic realm="Spooler", charset="UTF-8"'
    for _ in range(9):
        status, response, _ = call(port, request, document, credentials=("alice", WRONG))
        assert status == 401 and response.getheader("WWW-Authenticate", "").startswith("Basic ")
    assert spooler.jobs() == []
    status, _, answer = call(port, request, document, credentials=("alice", PASSWORDS["alice"]))
    assert status == 200 and answer is not None and Status(answer.code) == Status.SUCCESSFUL_OK
    # The tenth failure from this address locks it out: the right password is refused too, for a minute.
    status, _, _ = call(port, request, document, credentials=("mallory", WRONG))
    assert status == 401
    status, response, _ = call(port, request, document, credentials=("alice", PASSWORDS["alice"]))
    assert status == 429 and response.getheader("Retry-After") == "60"
    assert [job["user"] for job in spooler.jobs()] == ["alice"]
    assert spooler.events("ipp_auth_throttled")
    assert find_secrets([spooler.state_dir, spooler.stderr_path], [*PASSWORDS.values(), WRONG]) == []


def test_basic_over_plain_http_when_explicitly_allowed(spooler_factory: SpoolerFactory) -> None:
    spooler = ipps_spooler(spooler_factory, ipp__allow_basic_without_tls=True)
    port = spooler.ipp_port
    request = message(port, Operation.HOLD_JOB, "x", Attribute.integer("job-id", 1), scheme="ipp")
    status, response, _ = call(port, request, tls=False)
    assert status == 401 and response.getheader("WWW-Authenticate", "").startswith("Basic ")
    output = ipptool(f"ipp://alice:{PASSWORDS['alice']}@127.0.0.1:{port}/ipp/print", "-tv",
                     str(SUITES / "get-printer-attributes.test"))  # fmt: skip
    assert "[PASS]" in output and "[FAIL]" not in output, output[-3000:]
    # A wrong password is a 401 even for an operation allowed anonymously.
    status, _, _ = call(port, message(port, Operation.GET_PRINTER_ATTRIBUTES, "x", scheme="ipp"),
                        credentials=("alice", WRONG), tls=False)  # fmt: skip
    assert status == 401
    assert re.search(r"uri-authentication-supported \(1setOf keyword\) = basic,basic", output), output


@pytest.fixture(scope="module")
def suite_dir() -> Iterator[Path]:
    """ipptool's suites and the documents ipp-1.1.test prints (made with Ghostscript from CUPS's test page)."""
    gs = require_tool("gs")
    if not (SUITES / "ipp-2.0.test").exists() or not TEST_PAGE.exists():
        require_tool("/usr/share/cups/ipptool/ipp-2.0.test (cups-ipp-utils) and cups' default-testpage.pdf")
    work = short_tempdir("ipps")
    for suite in SUITES.glob("*.test"):
        shutil.copy(suite, work)
    jobs = []
    for paper in ("a4", "letter"):
        common = [gs, "-q", "-dNOPAUSE", "-dBATCH", f"-sPAPERSIZE={paper}", "-dFIXEDMEDIA", "-dPDFFitPage"]
        jobs.append([*common, "-sDEVICE=pdfwrite", "-o", str(work / f"document-{paper}.pdf"), str(TEST_PAGE)])
        jobs.append([*common, "-sDEVICE=ps2write", "-o", str(work / f"document-{paper}.ps"), str(TEST_PAGE)])
    jobs.append([gs, "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=jpeg", "-r50", "-o", str(work / "color.jpg"),
                 str(TEST_PAGE)])  # fmt: skip
    jobs.append([gs, "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=jpeggray", "-r50", "-o", str(work / "gray.jpg"),
                 str(TEST_PAGE)])  # fmt: skip
    running = [subprocess.Popen(job, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for job in jobs]
    for process in running:
        assert process.wait(120) == 0, process.args
    yield work
    shutil.rmtree(work, ignore_errors=True)


def test_ipptool_ipp_2_0_suite_over_ipps_with_credentials(suite_dir: Path, spooler_factory: SpoolerFactory) -> None:
    spooler = ipps_spooler(spooler_factory)
    port = spooler.ipps_port  # type: ignore[attr-defined]
    output = ipptool(f"ipps://alice:{PASSWORDS['alice']}@127.0.0.1:{port}/ipp/print", "-I", "-tv", "-f",
                     "document-a4.pdf", "ipp-2.0.test", cwd=suite_dir, timeout=300)  # fmt: skip
    (spooler.root / "ipp-2.0.log").write_text(output)
    failed = re.findall(r"^\s*(.+?)\s+\[FAIL\]", output, re.MULTILINE)
    assert failed == [], f"{failed}\n{output[-4000:]}"
    # 50 here (CUPS 2.4.2): one fewer than over plain ipp, as "Get-Jobs Operation (my-jobs different
    # user)" is skipped when the requester is the authenticated user.
    assert len(re.findall(r"\[PASS\]", output)) >= 50
    wait_for(lambda: spooler.jobs(), what="the suite's jobs")
    assert {job["user"] for job in spooler.jobs()} == {"alice"}
    assert "Traceback" not in spooler.stderr()
    assert find_secrets([spooler.state_dir, spooler.stderr_path], list(PASSWORDS.values())) == []


def test_cups_ipps_backend_prints_with_credentials_in_the_device_uri(spooler_factory: SpoolerFactory,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    """A CUPS queue on ipps://alice:PASSWORD@... (CUPS's ipps backend, self-signed certificate): a job
    bob submits to CUPS reaches the spooler as alice's, the authenticated user."""
    from spooler_harness import ScratchCups

    require_tool("lpadmin")
    require_tool("lp")
    spooler = ipps_spooler(spooler_factory)
    port = spooler.ipps_port  # type: ignore[attr-defined]
    cups = ScratchCups(short_tempdir("cups"))
    try:
        cups.start()
        uri = f"ipps://alice:{PASSWORDS['alice']}@127.0.0.1:{port}/ipp/print"
        cups.run("lpadmin", "-p", "sq", "-E", "-v", uri, "-m", "raw", check=True)
        document = tmp_path / "doc.txt"
        document.write_text("hello through CUPS over ipps\n")
        cups.run("lp", "-d", "sq", "-U", "bob", "-t", "cups over ipps", str(document), check=True)
        wait_for(lambda: spooler.jobs(), timeout=30, what=f"the job from CUPS: {cups.error_log()[-2000:]}")
        [job] = spooler.jobs()
        assert (job["user"], job["name"]) == ("alice", "cups over ipps")
        wait_for(lambda: cups.run("lpstat", "-W", "completed", "-o", "sq").stdout.strip(), timeout=30,
                 what="the CUPS job to complete")  # fmt: skip
    finally:
        cups.stop()
        shutil.rmtree(cups.root, ignore_errors=True)
    assert find_secrets([spooler.state_dir, spooler.stderr_path], list(PASSWORDS.values())) == []
