"""Issue 16 end to end, with clients and devices nobody here wrote: `lp -h HOST -d QUEUE` (CUPS' lp,
no cupsd) and ipptool reaching named queues; ippeveprinter as an IPP device without multiple-document
jobs (a job of several documents prints, as one device job per document, also across kill -9 in the
middle of document 2 of 3); `nc -l` as a socket device taking a job of mixed formats."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from spooler.ipp.codec import Attribute
from spooler.ipp.tags import Operation, Status
from spooler_harness import IppEvePrinter, LoopbackListener, Spooler, free_port, require_tool, short_tempdir, \
    wait_for
from test_e2e_ipp import ipp_call, operation_message

pytestmark = pytest.mark.e2e
SpoolerFactory = Callable[..., Spooler]
TEST_PAGE = Path("/usr/share/cups/data/default-testpage.pdf")


def with_queues(spooler: Spooler, **policies: str) -> Spooler:
    """Adds [queues.NAME] tables (offline_policy) to the spooler's configuration."""
    extra = "".join(f'[queues.{name}]\noffline_policy = "{policy}"\n' for name, policy in policies.items())
    spooler.config_path.write_text(spooler.config_path.read_text() + extra)
    return spooler


def lp(port: int, queue: str, *files: Path, title: str | None = None) -> subprocess.CompletedProcess[str]:
    """CUPS' lp talking straight to the spooler (no cupsd): `lp -h 127.0.0.1:PORT -d QUEUE FILE...`."""
    command = [require_tool("lp"), "-h", f"127.0.0.1:{port}", "-d", queue, *(["-t", title] if title else []),
               *map(str, files)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def pdf_page(folder: Path, name: str, text: str) -> Path:
    """A small PDF of its own (the test page with a marker after %%EOF, so that each is told apart)."""
    path = folder / name
    path.write_bytes(TEST_PAGE.read_bytes() + f"\n% {text}\n".encode())
    return path


@pytest.fixture
def eve() -> Iterator[IppEvePrinter]:
    """ippeveprinter keeping every job's document: a device that takes one document per job."""
    IppEvePrinter.require()
    printer = IppEvePrinter(short_tempdir("eve"), name="Eve", keep=True,
                            formats="application/pdf,application/postscript,image/pwg-raster,text/plain")
    printer.start()
    yield printer
    printer.stop()
    shutil.rmtree(printer.root, ignore_errors=True)


def eve_jobs(printer: IppEvePrinter) -> list[dict[str, object]]:
    """The device's own view: every job it has, with its id, name, state and user."""
    message = operation_message(printer.port, Operation.GET_JOBS, "test",
                                Attribute.keyword("which-jobs", "all"),
                                Attribute.keyword("requested-attributes", "job-id", "job-name", "job-state",
                                                  "job-originating-user-name"))  # fmt: skip
    answer = ipp_call(printer.port, message)
    assert Status(answer.code) == Status.SUCCESSFUL_OK
    jobs = [{attribute.name: attribute.first for attribute in group.attributes}
            for group in answer.groups if group.tag == 0x02]  # fmt: skip
    return sorted(jobs, key=lambda job: int(job["job-id"]))  # type: ignore[call-overload]


def eve_documents(printer: IppEvePrinter) -> list[bytes]:
    """The documents the device kept (-k), in the order of its job ids."""
    def job_id(path: Path) -> int:
        return int(path.name.split("-", 1)[0])

    files = [path for path in printer.spool.rglob("*") if path.is_file() and path.name[:1].isdigit()]
    return [path.read_bytes() for path in sorted(files, key=job_id)]


# -- item 3: lp -h HOST -d QUEUE, ipptool with a /printers/ URI ---------------------------------------------


def test_lp_h_reaches_the_queue_it_names(spooler_factory: SpoolerFactory, tmp_path: Path) -> None:
    """`lp -h` posts every request to `/` with printer-uri /printers/QUEUE (captured): the job is made on
    QUEUE, its documents follow it there, and a queue that does not exist is refused with no job made."""
    spooler = with_queues(spooler_factory(spool__min_free_space=0), default="print", front="hold").start()
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("first document\n")
    second.write_text("second document\n")
    printed = lp(spooler.ipp_port, "front", first, second, title="Two for front")
    assert printed.returncode == 0, printed.stderr
    assert "request id is front-1 (2 file(s))" in printed.stdout
    [delivered] = spooler.wait_delivered(1)
    [job] = spooler.jobs()
    assert (job["queue"], job["name"], job["user"], job["state"]) == ("front", "Two for front", getpass.getuser(),
                                                                      "completed")  # fmt: skip
    assert job["attributes"]["documents"] == 2
    assert delivered.read_bytes() == b"first document\nsecond document\n"

    refused = lp(spooler.ipp_port, "nosuch", first)
    assert refused.returncode != 0 and "does not exist" in refused.stderr
    assert len(spooler.jobs()) == 1

    ipptool = require_tool("ipptool")
    done = subprocess.run([ipptool, "-tf", str(first), f"ipp://127.0.0.1:{spooler.ipp_port}/printers/front",
                           "/usr/share/cups/ipptool/print-job.test"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:]
    spooler.wait_delivered(2)
    assert [job["queue"] for job in spooler.jobs()] == ["front", "front"]


def test_each_queue_reports_its_own_name_and_state(spooler_factory: SpoolerFactory) -> None:
    """ipptool asks each queue's printer about itself, at /printers/QUEUE and at /ipp/print."""
    spooler = with_queues(spooler_factory(spool__min_free_space=0, ipp__name="Branch printer"),
                          default="print", front="hold").start()  # fmt: skip
    ipptool = require_tool("ipptool")

    def printer(path: str) -> dict[str, str]:
        shown = subprocess.run([ipptool, "-tv", f"ipp://127.0.0.1:{spooler.ipp_port}{path}",
                                "/usr/share/cups/ipptool/get-printer-attributes.test"],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
        assert shown.returncode == 0, shown.stdout[-2000:]
        found = {}
        for line in shown.stdout.splitlines():
            name, _, value = line.strip().partition(" = ")
            if value:
                found[name.split(" (", 1)[0]] = value
        return found

    front, default = printer("/printers/front"), printer("/ipp/print")
    assert (front["printer-name"], default["printer-name"]) == ("front", "Branch printer")
    assert front["printer-uri-supported"].endswith("/printers/front")
    assert front["printer-state-message"] == default["printer-state-message"] == "Idle."
    disabled = subprocess.run([ipptool, "-t", f"ipp://127.0.0.1:{spooler.ipp_port}/printers/nosuch",
                               "/usr/share/cups/ipptool/get-printer-attributes.test"],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
    assert disabled.returncode != 0 and "client-error-not-found" in disabled.stdout


# -- item 1: a device without multiple-document jobs --------------------------------------------------------


def test_a_job_of_several_documents_prints_on_ippeveprinter(spooler_factory: SpoolerFactory, eve: IppEvePrinter,
                                                            tmp_path: Path) -> None:  # fmt: skip
    """ippeveprinter answers a second Send-Document with server-error-multiple-document-jobs-not-supported:
    the spooler sends each document as a device job of its own, in order, and keeps one job (one
    accounting record) of its own."""
    spooler = spooler_factory(spool__min_free_space=0, device__uri=eve.uri).start()
    documents = [pdf_page(tmp_path, f"part{n}.pdf", f"part {n}") for n in (1, 2, 3)]
    printed = lp(spooler.ipp_port, "default", *documents, title="Three parts")
    assert printed.returncode == 0, printed.stderr
    wait_for(lambda: spooler.jobs() and spooler.jobs()[0]["state"] in ("completed", "aborted"), timeout=90,
             what=f"the job to finish (stderr: {spooler.stderr_path})")  # fmt: skip
    [job] = spooler.jobs()
    assert job["state"] == "completed", job
    assert job["attributes"]["delivery"]["remote_job_id"] == "jobs:1,2,3"
    device_jobs = eve_jobs(eve)
    assert [(j["job-id"], j["job-name"], j["job-state"]) for j in device_jobs] == [
        (n, "Three parts", 9) for n in (1, 2, 3)]  # fmt: skip
    assert eve_documents(eve) == [path.read_bytes() for path in documents]
    assert accounting_records(spooler) == [job["job_id"]]  # one job for accounting


def accounting_records(spooler: Spooler) -> list[int]:
    """The job ids of the spooler's accounting records (read-only, from its database)."""
    import sqlite3

    database = sqlite3.connect(f"{(spooler.state_dir / 'spooler.db').as_uri()}?mode=ro", uri=True)
    try:
        return [row[0] for row in database.execute("SELECT job_id FROM accounting ORDER BY job_id")]
    finally:
        database.close()


class TrappingProxy(LoopbackListener):
    """A loopback TCP proxy to a device that holds the Nth IPP request of one operation: it never
    forwards it (the device never sees it) and sets `trapped`; every other connection is passed
    through both ways. The spooler's IPP client makes one connection per request."""

    def __init__(self, target_port: int, operation: int, nth: int) -> None:
        self.target_port = target_port
        self.operation = operation
        self.nth = nth
        self.seen = 0
        self.trapped = threading.Event()
        self.held: list[socket.socket] = []
        super().__init__()

    def accepted(self, connection: socket.socket) -> None:
        threading.Thread(target=self._connection, args=(connection,), daemon=True).start()

    def _connection(self, client: socket.socket) -> None:
        client.settimeout(30)
        head = b""
        try:
            while b"\r\n\r\n" not in head or len(head) < head.index(b"\r\n\r\n") + 8:
                chunk = client.recv(65536)
                if not chunk:
                    client.close()
                    return
                head += chunk
        except OSError:
            client.close()
            return
        body = head.index(b"\r\n\r\n") + 4
        if int.from_bytes(head[body + 2:body + 4], "big") == self.operation:
            self.seen += 1
            if self.seen == self.nth:
                self.held.append(client)  # never forwarded
                self.trapped.set()
                return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        upstream.sendall(head)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        super().close()
        for held in self.held:
            held.close()


def test_kill_9_while_document_2_of_3_goes_to_ippeveprinter_prints_each_document_once(
        spooler_factory: SpoolerFactory, eve: IppEvePrinter, tmp_path: Path) -> None:  # fmt: skip
    """The device has document 1 (its job 1, completed) and has just made job 2 for document 2 when the
    spooler is killed. After the restart the spooler asks the device about job 2 (still waiting for its
    document: canceled), and sends documents 2 and 3 only: document 1 is printed once."""
    proxy = TrappingProxy(eve.port, Operation.SEND_DOCUMENT, nth=2)
    try:
        spooler = spooler_factory(spool__min_free_space=0, device__uri=f"ipp://127.0.0.1:{proxy.port}/ipp/print")
        spooler.start()
        documents = [pdf_page(tmp_path, f"part{n}.pdf", f"part {n}") for n in (1, 2, 3)]
        printed = lp(spooler.ipp_port, "default", *documents, title="Cut in the middle")
        assert printed.returncode == 0, printed.stderr
        assert proxy.trapped.wait(60), f"document 2 never went out (stderr: {spooler.stderr()[-2000:]})"
        [job] = spooler.jobs()
        assert job["attributes"]["delivery"]["remote_job_id"] == "jobs:1,2"  # journaled before the document
        spooler.kill9()
        for held in proxy.held:
            held.close()

        spooler.start()
        wait_for(lambda: spooler.jobs()[0]["state"] in ("completed", "aborted"), timeout=90,
                 what=f"the job to finish after the restart (stderr: {spooler.stderr_path})")  # fmt: skip
        [job] = spooler.jobs()
        assert job["state"] == "completed", job
        assert job["attributes"]["delivery"]["remote_job_id"] == "jobs:1,3,4"
        states = {j["job-id"]: j["job-state"] for j in eve_jobs(eve)}
        assert states == {1: 9, 2: 7, 3: 9, 4: 9}  # job 2 (no document yet) canceled, never printed
        assert eve_documents(eve) == [path.read_bytes() for path in documents]  # each document once
        assert accounting_records(spooler) == [job["job_id"]]
    finally:
        proxy.close()


# -- item 2: mixed formats on a socket device -----------------------------------------------------------------


def nc_listen(port: int, capture: Path) -> subprocess.Popen[bytes]:
    """`nc -l` as a raw printer: takes one connection, writes what it got, closes when the sender does."""
    nc = require_tool("nc")
    with open(capture, "wb") as out:
        process = subprocess.Popen([nc, "-l", "127.0.0.1", str(port)], stdin=subprocess.DEVNULL, stdout=out)
    wait_for(lambda: _serving(port) or process.poll() is not None, timeout=10, what="nc to listen")
    return process


def _serving(port: int) -> bool:
    """Whether something listens on the port, or has already accepted its connection (nc stops listening)."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return any(row[1].endswith(f":{port:04X}") and row[3] in ("0A", "01", "08") for row in rows)


def mixed_documents(tmp_path: Path) -> list[Path]:
    postscript = tmp_path / "notes.ps"
    postscript.write_bytes(b"%!PS-Adobe-3.0\n/Helvetica findfont 12 scalefont setfont 72 720 moveto (notes) show "
                           b"showpage\n%%EOF\n")  # fmt: skip
    return [pdf_page(tmp_path, "report.pdf", "report"), postscript]


def test_mixed_formats_on_a_pjl_socket_device_get_a_section_each(spooler_factory: SpoolerFactory,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    port = free_port()
    capture = tmp_path / "device.bin"
    nc = nc_listen(port, capture)
    try:
        spooler = spooler_factory(spool__min_free_space=0, device__uri=f"socket://127.0.0.1:{port}?pjl=1").start()
        pdf, postscript = mixed_documents(tmp_path)
        printed = lp(spooler.ipp_port, "default", pdf, postscript, title="Mixed")
        assert printed.returncode == 0, printed.stderr
        assert nc.wait(60) == 0
        wait_for(lambda: spooler.jobs()[0]["state"] == "completed", timeout=30, what="the job to complete")
    finally:
        if nc.poll() is None:
            nc.kill()
    stream = capture.read_bytes()
    uel = b"\x1b%-12345X"
    user = getpass.getuser().encode()
    assert stream == (uel + b'@PJL\r\n@PJL JOB NAME="Mixed"\r\n@PJL SET USERNAME="' + user + b'"\r\n'
                      + b"@PJL ENTER LANGUAGE=PDF\r\n" + pdf.read_bytes()
                      + uel + b"@PJL\r\n@PJL ENTER LANGUAGE=POSTSCRIPT\r\n" + postscript.read_bytes()
                      + uel + b'@PJL EOJ NAME="Mixed"\r\n' + uel)  # fmt: skip


def test_mixed_formats_on_a_plain_socket_device_go_one_connection_each(spooler_factory: SpoolerFactory,
                                                                       tmp_path: Path) -> None:  # fmt: skip
    port = free_port()
    pdf, postscript = mixed_documents(tmp_path)
    first = nc_listen(port, tmp_path / "first.bin")
    spooler = spooler_factory(spool__min_free_space=0, device__uri=f"socket://127.0.0.1:{port}",
                              device__retry_initial="1s", device__retry_max="1s").start()  # fmt: skip
    second = None
    try:
        printed = lp(spooler.ipp_port, "default", pdf, postscript, title="Mixed")
        assert printed.returncode == 0, printed.stderr
        assert first.wait(60) == 0
        second = nc_listen(port, tmp_path / "second.bin")  # if the spooler came too early, it retries document 2
        assert second.wait(60) == 0
        wait_for(lambda: spooler.jobs()[0]["state"] == "completed", timeout=30, what="the job to complete")
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
    assert (tmp_path / "first.bin").read_bytes() == pdf.read_bytes()
    assert (tmp_path / "second.bin").read_bytes() == postscript.read_bytes()
    assert spooler.jobs()[0]["attributes"]["delivery"]["remote_job_id"] == "sent:2"


# -- item 4: IPP 2.1/2.2 with real clients ------------------------------------------------------------------


def test_ipptool_follows_a_job_through_event_notifications(spooler_factory: SpoolerFactory, tmp_path: Path) -> None:
    """tests/notifications.test: Create-Printer-Subscriptions (ippget), a job printed, its job-created and
    job-completed events with Get-Notifications, another user refused, Get-Subscriptions, Renew, Cancel."""
    ipptool = require_tool("ipptool")
    spooler = spooler_factory(spool__min_free_space=0).start()
    document = tmp_path / "watched.txt"
    document.write_text("watched\n")
    suite = Path(__file__).resolve().parent / "notifications.test"
    for path in ("/ipp/print", "/printers/default"):
        result = subprocess.run([ipptool, "-t", "-f", str(document), f"ipp://127.0.0.1:{spooler.ipp_port}{path}",
                                 str(suite)], capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stdout[-4000:]
        print(f"notifications.test at {path}: {result.stdout.strip().splitlines()[-2]}")


def test_cups_tools_administer_the_queue_and_its_jobs(spooler_factory: SpoolerFactory, tmp_path: Path) -> None:
    """CUPS' own commands, talking straight to the spooler (-h, no cupsd): cupsdisable and cupsenable
    (Pause-/Resume-Printer), cupsreject and cupsaccept, `lp -i ID -H hold|resume` and `lp -i ID -n 3`
    (Set-Job-Attributes, with CUPS' /jobs/ID job URI)."""
    user = getpass.getuser()
    spooler = spooler_factory(spool__min_free_space=0, ipp__admin_users=[user]).start()
    host = f"127.0.0.1:{spooler.ipp_port}"

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([require_tool(command[0]), *command[1:]], capture_output=True, text=True, timeout=60)

    def printer(*names: str) -> dict[str, object]:
        message = operation_message(spooler.ipp_port, Operation.GET_PRINTER_ATTRIBUTES, user,
                                    Attribute.keyword("requested-attributes", *names))  # fmt: skip
        answer = ipp_call(spooler.ipp_port, message).printer_attributes
        assert answer is not None
        return {attribute.name: attribute.first for attribute in answer.attributes}

    assert run("cupsdisable", "-h", host, "default").returncode == 0
    assert printer("printer-state")["printer-state"] == 5
    document = tmp_path / "report.txt"
    document.write_text("quarterly figures\n")
    assert lp(spooler.ipp_port, "default", document).returncode == 0
    assert run("lp", "-h", host, "-i", "default-1", "-H", "hold").returncode == 0
    assert spooler.job(1)["state"] == "pending-held"
    assert run("lp", "-h", host, "-i", "default-1", "-n", "3").returncode == 0
    assert run("lp", "-h", host, "-i", "default-1", "-H", "resume").returncode == 0
    assert (spooler.job(1)["state"], spooler.job(1)["copies"]) == ("pending", 3)

    rejected = run("cupsreject", "-h", host, "-r", "Toner change", "default")
    assert rejected.returncode == 0, rejected.stderr
    shown = printer("printer-is-accepting-jobs", "printer-state-message")
    assert shown["printer-is-accepting-jobs"] is False and "Toner change" in str(shown["printer-state-message"])
    refused = lp(spooler.ipp_port, "default", document)
    assert refused.returncode != 0 and "not accept" in refused.stderr.lower()
    assert run("cupsaccept", "-h", host, "default").returncode == 0
    assert run("cupsenable", "-h", host, "default").returncode == 0
    [delivered] = spooler.wait_delivered(1)
    assert spooler.sink_sidecar(delivered)["copies"] == 3 and len(spooler.jobs()) == 1
