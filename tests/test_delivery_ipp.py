"""The ipp:// backend against a real `spooler serve` (an IPP Everywhere printer) and edge peers written here."""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.web.resource import Resource
from twisted.web.server import Site

from spooler.delivery import backend_for_uri
from spooler.delivery.base import PartialDelivery
from spooler.delivery.ipp import IppBackend
from spooler.ipp.codec import Attribute, IppMessage, decode, encode_message
from spooler.ipp.tags import Operation, Status, Tag
from spooler.model import DeliveryError, JobState
from factories import delivery_files, job_factory
from spooler_harness import Spooler

SpoolerFactory = Callable[..., Spooler]


make_job = job_factory(protocol="ipp", name="quarterly report", state=JobState.PROCESSING, copies=2)
files = delivery_files


def pdf(marker: bytes, size: int = 200_000) -> bytes:
    return b"%PDF-1.4\n%" + marker + b"\n" + os.urandom(size) + b"\n%%EOF\n"


def ipp_backend(reactor: Any, port: int, path: str = "/ipp/print", **options: Any) -> IppBackend:
    settings: dict[str, Any] = {"connect_timeout": 2, "io_timeout": 5, "follow_timeout": 10, "poll_interval": 0.1}
    settings.update(options)
    return IppBackend(f"ipp://127.0.0.1:{port}{path}", reactor=reactor, clock=reactor, **settings)




# -- a real spooler as the peer ---------------------------------------------------------------------


def forwarded(job: Job, forward_uuid: str) -> Job:
    """`job` as the dispatcher hands it over for a forward: its journal names the forward's job-uuid."""
    return job.evolve(attributes={"delivery": {"route": "server", "forward_uuid": forward_uuid}})


@pytest_twisted.ensureDeferred
async def test_lost_answers_leave_copies_found_by_job_id_or_job_uuid(reactor: Any, tmp_path: Path) -> None:
    """Against the reference server holding its jobs (nothing prints before the test looks)."""
    import shutil
    import uuid

    from spooler_harness import AnswerLosingProxy, RefServer, short_tempdir

    central = RefServer(short_tempdir("rs"), hold=True).start()
    proxy = AnswerLosingProxy(central.ipp_port)
    try:
        backend = ipp_backend(reactor, proxy.port, connect_timeout=1, io_timeout=2)
        direct = ipp_backend(reactor, central.ipp_port)
        # The Create-Job's answer is lost: the peer has an empty job, the backend no id for it.
        first = forwarded(make_job(), str(uuid.uuid4()))
        proxy.lose_answer_to = {int(Operation.CREATE_JOB)}
        journaled: list[str] = []
        with pytest.raises(DeliveryError) as raised:
            await backend.deliver(first, files(tmp_path, b"lost"), journaled.append)
        assert raised.value.sent is True and raised.value.retryable and journaled == []
        copy = await direct.find_forward(first, None, first.attributes["delivery"]["forward_uuid"])
        assert copy is not None and (copy.state, copy.reasons, copy.documents) == (4, ("job-incoming",), 0)
        [there] = [job for job in central.queue_jobs() if str(job["job_id"]) == copy.remote_job_id]
        assert there["attributes"]["client_job_uuid"] == first.attributes["delivery"]["forward_uuid"]
        assert await direct.cancel_forward(first, copy.remote_job_id) is True
        gone = await direct.find_forward(first, copy.remote_job_id, None)
        assert gone is not None and gone.state == 7
        assert await direct.cancel_forward(first, copy.remote_job_id) is False  # no longer cancelable
        assert await direct.find_forward(first, None, str(uuid.uuid4())) is None  # no such job-uuid

        # The Send-Document's answer is lost, then the peer refuses connections: the cleanup cancel
        # cannot reach it either, so the whole job may be there, under the id already journaled.
        proxy.up()
        second = forwarded(make_job(), str(uuid.uuid4()))
        proxy.lose_answer_to = {int(Operation.SEND_DOCUMENT)}
        with pytest.raises(DeliveryError) as raised:
            await backend.deliver(second, files(tmp_path, b"whole"), journaled.append)
        assert raised.value.sent is True and len(journaled) == 1
        copy = await direct.find_forward(second, journaled[0], None)
        assert copy is not None and (copy.state, copy.reasons, copy.documents) == (4, ("job-held-on-create",), 1)

        # An answer lost while the peer stays up: the backend cancels what it left, nothing is in doubt.
        proxy.up()
        proxy.stay_up = True
        third = forwarded(make_job(), str(uuid.uuid4()))
        proxy.lose_answer_to = {int(Operation.SEND_DOCUMENT)}
        with pytest.raises(DeliveryError) as raised:
            await backend.deliver(third, files(tmp_path, b"third"), journaled.append)
        assert raised.value.sent is False and len(journaled) == 2
        copy = await direct.find_forward(third, journaled[-1], None)
        assert copy is not None and copy.state == 7  # canceled by the backend itself
    finally:
        proxy.close()
        central.cleanup()
        shutil.rmtree(central.root, ignore_errors=True)


@pytest_twisted.ensureDeferred
async def test_create_job_and_send_document_to_a_real_spooler(reactor: Any, spooler_factory: SpoolerFactory,
                                                              tmp_path: Path) -> None:  # fmt: skip
    spooler = spooler_factory().start()
    parts = [pdf(b"one"), b"second document bytes " * 5000]
    journaled: list[str] = []
    backend = ipp_backend(reactor, spooler.ipp_port)
    await backend.probe()
    receipt = await backend.deliver(make_job(), files(tmp_path, *parts), journaled.append)
    assert receipt.remote_job_id is not None and journaled == [receipt.remote_job_id]
    assert "completed" in receipt.detail and not receipt.already_delivered
    [remote] = [job for job in spooler.jobs() if str(job["job_id"]) == receipt.remote_job_id]
    assert remote["state"] == "completed" and remote["user"] == "alice" and remote["name"] == "quarterly report"
    assert receipt.impressions == 0  # the spooler reports job-impressions-completed 0: it does not count pages
    [data] = spooler.sink_files()
    assert data.read_bytes() == b"".join(parts)
    sidecar = spooler.sink_sidecar(data)
    assert (sidecar["user"], sidecar["name"], sidecar["copies"]) == ("alice", "quarterly report", 2)
    assert sidecar["documents"] == [len(part) for part in parts]


@pytest_twisted.ensureDeferred
async def test_print_job_when_the_peer_has_no_create_job(reactor: Any, spooler_factory: SpoolerFactory,
                                                         tmp_path: Path) -> None:  # fmt: skip
    """A peer with Print-Job only takes one document per job: each document is a Print-Job of its own,
    in order, with the job's copies, user and name; the journal grows with each peer job."""
    spooler = spooler_factory().start()
    parts = [pdf(b"a", 50_000), b"tail" * 1000]
    backend = ipp_backend(reactor, spooler.ipp_port)
    # As if Get-Printer-Attributes had listed Print-Job only (a printer without multi-document jobs).
    backend._capabilities = (reactor.seconds(), frozenset({Operation.PRINT_JOB, Operation.GET_JOB_ATTRIBUTES}),
                             frozenset({"application/pdf"}), False)  # fmt: skip
    journaled: list[str] = []
    receipt = await backend.deliver(make_job(copies=3, name="one body"), files(tmp_path, *parts), journaled.append)
    assert journaled == ["jobs:1", "jobs:1,2"] and receipt.remote_job_id == "jobs:1,2"
    data = spooler.sink_files()
    assert [f.read_bytes() for f in data] == parts
    for delivered in data:
        sidecar = spooler.sink_sidecar(delivered)
        assert (sidecar["user"], sidecar["name"], sidecar["copies"]) == ("alice", "one body", 3)


def _ipp_post(port: int, message: IppMessage) -> IppMessage:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/ipp/print", encode_message(message), {"Content-Type": "application/ipp"})
        return decode(connection.getresponse().read())
    finally:
        connection.close()


def _create_job(port: int, user: str) -> int:
    request = IppMessage((1, 1), Operation.CREATE_JOB, 1)
    request.add_group(Tag.OPERATION, Attribute.charset("attributes-charset", "utf-8"),
                      Attribute.language("attributes-natural-language", "en"),
                      Attribute.uri("printer-uri", f"ipp://127.0.0.1:{port}/ipp/print"),
                      Attribute.name("requesting-user-name", user), Attribute.name("job-name", "half sent"))
    answer = _ipp_post(port, request)
    assert answer.code == Status.SUCCESSFUL_OK
    assert answer.job_attributes is not None
    job_id = answer.job_attributes["job-id"].first
    assert isinstance(job_id, int)
    return job_id


@pytest_twisted.ensureDeferred
async def test_recover_cancels_a_job_still_waiting_for_its_documents(reactor: Any, spooler_factory: SpoolerFactory,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    spooler = spooler_factory().start()
    job_id = _create_job(spooler.ipp_port, "alice")
    assert spooler.job(job_id)["reason"] == "job-incoming"
    backend = ipp_backend(reactor, spooler.ipp_port)
    assert await backend.recover(make_job(), str(job_id)) is None
    assert spooler.job(job_id)["state"] == "canceled"
    assert await backend.recover(make_job(), str(job_id)) is None  # canceled: send it again
    assert await backend.recover(make_job(), "99999") is None  # unknown at the peer
    assert await backend.recover(make_job(), None) is None


@pytest_twisted.ensureDeferred
async def test_recover_finds_a_delivered_job(reactor: Any, spooler_factory: SpoolerFactory, tmp_path: Path) -> None:
    spooler = spooler_factory().start()
    backend = ipp_backend(reactor, spooler.ipp_port)
    receipt = await backend.deliver(make_job(), files(tmp_path, pdf(b"once", 1000)))
    recovered = await backend.recover(make_job(), receipt.remote_job_id)
    assert recovered is not None and recovered.already_delivered
    assert recovered.remote_job_id == receipt.remote_job_id
    assert len(spooler.sink_files()) == 1


@pytest_twisted.ensureDeferred
async def test_a_job_not_followed_to_the_end_is_still_delivered(reactor: Any, spooler_factory: SpoolerFactory,
                                                                tmp_path: Path) -> None:  # fmt: skip
    spooler = spooler_factory().start()
    backend = ipp_backend(reactor, spooler.ipp_port, follow_timeout=0)
    receipt = await backend.deliver(make_job(), files(tmp_path, pdf(b"x", 1000)))
    assert "not followed to completion" in receipt.detail and receipt.remote_job_id is not None
    spooler.wait_delivered(1)


# -- edge peers ---------------------------------------------------------------------------------------------


class Silent(Protocol):
    """Accepts the connection and never answers (`made`, if set, fires when the connection is made)."""

    made: Deferred[None] | None = None

    def connectionMade(self) -> None:
        if self.made is not None and not self.made.called:
            self.made.callback(None)


class FakePrinter(Resource):
    """An IPP printer whose answers the test chooses: handler(request) -> IppMessage or an HTTP status."""

    isLeaf = True

    def __init__(self, handler: Callable[[IppMessage], IppMessage | int]) -> None:
        super().__init__()
        self.handler = handler
        self.requests: list[IppMessage] = []
        self._waiting: list[tuple[int, Deferred[IppMessage]]] = []

    def first(self, operation: int) -> Deferred[IppMessage]:
        """Fires with the first request of `operation` (at once if it already came)."""
        came = next((r for r in self.requests if r.code == operation), None)
        if came is not None:
            return succeed(came)
        waiting: Deferred[IppMessage] = Deferred()
        self._waiting.append((operation, waiting))
        return waiting

    def render_POST(self, request: Any) -> bytes:
        message = decode(request.content.read())
        self.requests.append(message)
        for entry in [e for e in self._waiting if e[0] == message.code]:
            self._waiting.remove(entry)
            entry[1].callback(message)
        answer = self.handler(message)
        if isinstance(answer, int):
            request.setResponseCode(answer)
            return b"busy"
        request.setHeader(b"content-type", b"application/ipp")
        return encode_message(answer)


def answer(request: IppMessage, status: int = Status.SUCCESSFUL_OK) -> IppMessage:
    response = IppMessage((1, 1), int(status), request.request_id)
    response.add_group(Tag.OPERATION, Attribute.charset("attributes-charset", "utf-8"),
                       Attribute.language("attributes-natural-language", "en"))  # fmt: skip
    return response


def printer_answer(request: IppMessage, operations: tuple[int, ...] = (Operation.PRINT_JOB,),
                   multiple_documents: bool = True) -> IppMessage:  # fmt: skip
    response = answer(request)
    response.add_group(Tag.PRINTER, Attribute.enum("operations-supported", *operations),
                       Attribute.mime("document-format-supported", "application/octet-stream"),
                       Attribute.enum("printer-state", 3), Attribute.boolean("printer-is-accepting-jobs", True),
                       Attribute.boolean("multiple-document-jobs-supported", multiple_documents))  # fmt: skip
    return response


def job_answer(request: IppMessage, state: JobState, reasons: str = "none") -> IppMessage:
    response = answer(request)
    response.add_group(Tag.JOB, Attribute.integer("job-id", 42), Attribute.enum("job-state", int(state)),
                       Attribute.keyword("job-state-reasons", reasons))  # fmt: skip
    return response


@pytest.fixture
def fake_printer(reactor: Any) -> Any:
    ports: list[Any] = []

    def start(handler: Callable[[IppMessage], IppMessage | int]) -> tuple[FakePrinter, int]:
        resource = FakePrinter(handler)
        port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
        ports.append(port)
        return resource, port.getHost().port

    yield start
    for port in ports:
        port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_peer_that_accepts_and_never_answers_fails_within_the_timeout(reactor: Any, tmp_path: Path) -> None:
    port = reactor.listenTCP(0, Factory.forProtocol(Silent), interface="127.0.0.1")
    try:
        backend = ipp_backend(reactor, port.getHost().port, connect_timeout=0.5, io_timeout=0.5, probe_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(DeliveryError) as raised:
            await backend.probe()
        assert raised.value.retryable and "no answer within 0.5s" in str(raised.value)
        assert time.monotonic() - started < 1.5  # connect_timeout + probe_timeout, and some slack
        started = time.monotonic()
        with pytest.raises(DeliveryError) as raised:
            await backend.deliver(make_job(), files(tmp_path, b"x"))
        assert raised.value.retryable and time.monotonic() - started < 1.5
        assert raised.value.sent is False  # it never got past Get-Printer-Attributes: nothing of the job there
    finally:
        port.stopListening()


@pytest_twisted.ensureDeferred
async def test_refused_connection_is_retryable(reactor: Any, tmp_path: Path) -> None:
    port = reactor.listenTCP(0, Factory.forProtocol(Silent), interface="127.0.0.1")
    number = port.getHost().port
    await port.stopListening()
    backend = ipp_backend(reactor, number)
    for attempt in (backend.probe, lambda: backend.deliver(make_job(), files(tmp_path, b"x"))):
        with pytest.raises(DeliveryError) as raised:
            await attempt()
        assert raised.value.retryable and "cannot connect" in str(raised.value)
        assert not raised.value.sent


@pytest_twisted.ensureDeferred
async def test_http_errors_are_classified(reactor: Any, fake_printer: Any, tmp_path: Path) -> None:
    code = {"value": 503}
    _, port = fake_printer(lambda request: code["value"])
    backend = ipp_backend(reactor, port)
    with pytest.raises(DeliveryError) as raised:
        await backend.deliver(make_job(), files(tmp_path, b"x"))
    assert raised.value.retryable and "HTTP 503" in str(raised.value)
    with pytest.raises(DeliveryError):
        await backend.probe()
    code["value"] = 404  # a wrong printer path: the jobs wait for the configuration to be fixed
    with pytest.raises(DeliveryError) as raised:
        await backend.deliver(make_job(), files(tmp_path, b"x"))
    assert raised.value.retryable and "HTTP 404" in str(raised.value)
    code["value"] = 400
    with pytest.raises(DeliveryError) as raised:
        await backend.deliver(make_job(), files(tmp_path, b"x"))
    assert not raised.value.retryable


@pytest_twisted.ensureDeferred
async def test_a_printer_not_accepting_jobs_fails_the_probe(reactor: Any, fake_printer: Any) -> None:
    def handler(request: IppMessage) -> IppMessage:
        response = answer(request)
        response.add_group(Tag.PRINTER, Attribute.enum("printer-state", 5),
                           Attribute.boolean("printer-is-accepting-jobs", False))  # fmt: skip
        return response

    printer, port = fake_printer(handler)
    with pytest.raises(DeliveryError) as raised:
        await ipp_backend(reactor, port).probe()
    assert raised.value.retryable and "not accepting jobs" in str(raised.value)
    [request] = printer.requests
    assert request.operation_attributes is not None
    assert request.operation_attributes["requested-attributes"].all == ["printer-state", "printer-is-accepting-jobs"]


@pytest_twisted.ensureDeferred
async def test_ipp_statuses_are_classified(reactor: Any, fake_printer: Any, tmp_path: Path) -> None:
    status = {"value": Status.CLIENT_ERROR_DOCUMENT_FORMAT_NOT_SUPPORTED}

    def handler(request: IppMessage) -> IppMessage:
        if request.code == Operation.GET_PRINTER_ATTRIBUTES:
            return printer_answer(request)
        return answer(request, status["value"])

    printer, port = fake_printer(handler)
    backend = ipp_backend(reactor, port)
    with pytest.raises(DeliveryError) as raised:
        await backend.deliver(make_job(), files(tmp_path, b"x"))
    assert not raised.value.retryable and "client-error-document-format-not-supported" in str(raised.value)
    # The job's format is not in document-format-supported: sent as application/octet-stream.
    [_, print_job] = printer.requests
    assert print_job.code == Operation.PRINT_JOB
    assert print_job.operation_attributes is not None
    assert print_job.operation_attributes["document-format"].first == "application/octet-stream"
    assert print_job.operation_attributes["requesting-user-name"].first == "alice"
    assert print_job.job_attributes is not None and print_job.job_attributes["copies"].first == 2
    for retryable in (Status.SERVER_ERROR_BUSY, Status.SERVER_ERROR_NOT_ACCEPTING_JOBS,
                      Status.SERVER_ERROR_SERVICE_UNAVAILABLE):  # fmt: skip
        status["value"] = retryable
        with pytest.raises(DeliveryError) as raised:
            await backend.deliver(make_job(), files(tmp_path, b"x"))
        assert raised.value.retryable
    status["value"] = Status.CLIENT_ERROR_NOT_AUTHORIZED
    with pytest.raises(DeliveryError) as raised:
        await backend.deliver(make_job(), files(tmp_path, b"x"))
    assert not raised.value.retryable


@pytest_twisted.ensureDeferred
async def test_a_remote_job_aborted_is_a_permanent_failure(reactor: Any, fake_printer: Any, tmp_path: Path) -> None:
    def handler(request: IppMessage) -> IppMessage:
        if request.code == Operation.GET_PRINTER_ATTRIBUTES:
            return printer_answer(request, (Operation.CREATE_JOB, Operation.SEND_DOCUMENT))
        if request.code == Operation.GET_JOB_ATTRIBUTES:
            return job_answer(request, JobState.ABORTED, "document-format-error")
        return job_answer(request, JobState.PENDING_HELD, "job-incoming")

    printer, port = fake_printer(handler)
    journaled: list[str] = []
    with pytest.raises(DeliveryError) as raised:
        await ipp_backend(reactor, port).deliver(make_job(), files(tmp_path, b"a", b"b"), journaled.append)
    assert not raised.value.retryable and "aborted" in str(raised.value) and "document-format-error" in str(
        raised.value
    )
    assert journaled == ["42"]
    codes = [request.code for request in printer.requests]
    assert codes == [Operation.GET_PRINTER_ATTRIBUTES, Operation.CREATE_JOB, Operation.SEND_DOCUMENT,
                     Operation.SEND_DOCUMENT, Operation.GET_JOB_ATTRIBUTES]  # fmt: skip
    lasts = [r.operation_attributes["last-document"].first for r in printer.requests  # type: ignore[index]
             if r.code == Operation.SEND_DOCUMENT]
    assert lasts == [False, True]


@pytest_twisted.ensureDeferred
async def test_following_stops_at_the_follow_timeout(reactor: Any, fake_printer: Any, tmp_path: Path) -> None:
    def handler(request: IppMessage) -> IppMessage:
        if request.code == Operation.GET_PRINTER_ATTRIBUTES:
            return printer_answer(request)
        return job_answer(request, JobState.PROCESSING)

    printer, port = fake_printer(handler)
    receipt = await ipp_backend(reactor, port, follow_timeout=0.5).deliver(make_job(), files(tmp_path, b"x"))
    assert "not followed to completion" in receipt.detail and receipt.remote_job_id == "42"
    polls = [r for r in printer.requests if r.code == Operation.GET_JOB_ATTRIBUTES]
    assert 2 <= len(polls) <= 8


@pytest_twisted.ensureDeferred
async def test_cutting_off_the_following_keeps_the_job_delivered(reactor: Any, fake_printer: Any,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    # The peer accepted every document: a cancel while following (the server went down) must not make
    # the dispatcher send the job again elsewhere.
    def handler(request: IppMessage) -> IppMessage:
        if request.code == Operation.GET_PRINTER_ATTRIBUTES:
            return printer_answer(request)
        return job_answer(request, JobState.PROCESSING)

    printer, port = fake_printer(handler)
    attempt = ipp_backend(reactor, port, follow_timeout=60).deliver(make_job(), files(tmp_path, b"x"))
    await printer.first(Operation.GET_JOB_ATTRIBUTES).addTimeout(10, reactor)  # the backend follows the job
    attempt.cancel()
    receipt = await attempt
    assert receipt.remote_job_id == "42" and "not followed to completion" in receipt.detail


@pytest_twisted.ensureDeferred
async def test_recover_keeps_a_job_the_peer_has_whole(reactor: Any, fake_printer: Any, tmp_path: Path) -> None:
    state = {"value": JobState.PROCESSING}

    def handler(request: IppMessage) -> IppMessage:
        return job_answer(request, state["value"])

    printer, port = fake_printer(handler)
    recovered = await ipp_backend(reactor, port).recover(make_job(), "42")
    assert recovered is not None and recovered.already_delivered and recovered.remote_job_id == "42"
    state["value"] = JobState.ABORTED
    assert await ipp_backend(reactor, port).recover(make_job(), "42") is None


@pytest_twisted.ensureDeferred
async def test_cancelling_a_delivery_stops_it(reactor: Any, tmp_path: Path) -> None:
    made: Deferred[None] = Deferred()
    silent = type("SilentOnce", (Silent,), {"made": made})
    port = reactor.listenTCP(0, Factory.forProtocol(silent), interface="127.0.0.1")
    try:
        attempt = ipp_backend(reactor, port.getHost().port).deliver(make_job(), files(tmp_path, b"x"))
        await made.addTimeout(10, reactor)  # the request is under way; the peer never answers
        attempt.cancel()
        with pytest.raises(CancelledError):
            await attempt
    finally:
        port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_delivery_canceled_at_once_ends_canceled_not_failed(reactor: Any, tmp_path: Path) -> None:
    """Canceled while the peer's name is still being looked up: a cancel, not a failure of the peer
    (which would count against its health)."""
    port = reactor.listenTCP(0, Factory.forProtocol(Silent), interface="127.0.0.1")
    try:
        attempt = ipp_backend(reactor, port.getHost().port).deliver(make_job(), files(tmp_path, b"x"))
        attempt.cancel()
        with pytest.raises(CancelledError):
            await attempt
    finally:
        port.stopListening()


def self_signed_pem() -> tuple[bytes, bytes]:
    """A key and a certificate for 127.0.0.1 (subjectAltName IP), valid for a day."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


@pytest_twisted.ensureDeferred
async def test_ipps_checks_the_certificate_and_delivers(reactor: Any, tmp_path: Path) -> None:
    pytest.importorskip("OpenSSL", reason="pyOpenSSL (twisted[tls]) is not installed: ipps:// cannot be tested")
    from twisted.internet import ssl

    key_pem, certificate_pem = self_signed_pem()
    server_options = ssl.PrivateCertificate.loadPEM(key_pem + certificate_pem).options()
    received: list[bytes] = []

    def handler(request: IppMessage) -> IppMessage:
        if request.code == Operation.GET_PRINTER_ATTRIBUTES:
            return printer_answer(request)
        if request.code == Operation.PRINT_JOB:
            received.append(request.data)
        return job_answer(request, JobState.COMPLETED)

    port = reactor.listenSSL(0, Site(FakePrinter(handler)), server_options, interface="127.0.0.1")
    try:
        uri = f"ipps://127.0.0.1:{port.getHost().port}/ipp/print"
        trusted = IppBackend(uri, reactor=reactor, clock=reactor, connect_timeout=2, io_timeout=5, poll_interval=0.1,
                             tls_trust_root=ssl.Certificate.loadPEM(certificate_pem))  # fmt: skip
        receipt = await trusted.deliver(make_job(), files(tmp_path, b"over TLS"))
        assert receipt.remote_job_id == "42" and received == [b"over TLS"]
        untrusted = IppBackend(uri, reactor=reactor, clock=reactor, connect_timeout=2, io_timeout=5)
        with pytest.raises(DeliveryError) as raised:
            await untrusted.probe()
        assert raised.value.retryable
    finally:
        port.stopListening()


def test_uri_forms() -> None:
    backend = backend_for_uri("ipp://printer.example/ipp/print", reactor=None, run_in_thread=None,  # type: ignore
                              connect_timeout=1, io_timeout=1)  # fmt: skip
    assert isinstance(backend, IppBackend) and backend.port == 631 and not backend.tls
    assert backend.printer_uri == "ipp://printer.example:631/ipp/print"
    secure = backend_for_uri("ipps://server.example:8631/printers/hall", reactor=None,
                             run_in_thread=None, connect_timeout=1, io_timeout=1)  # type: ignore  # fmt: skip
    assert isinstance(secure, IppBackend) and secure.tls and secure.printer_uri.endswith(":8631/printers/hall")


# -- a printer that takes one document per job (as ippeveprinter) -------------------------------------------


class SingleDocumentPrinter:
    """A fake IPP printer without multiple-document jobs: Create-Job, one Send-Document, done. It
    keeps its jobs: the document each got (None while it waits for it) and whether it was canceled."""

    def __init__(self) -> None:
        self.jobs: dict[int, bytes | None] = {}
        self.canceled: set[int] = set()

    def __call__(self, request: IppMessage, data: bytes = b"") -> IppMessage:
        operation = request.operation_attributes
        assert operation is not None
        if request.code == Operation.GET_PRINTER_ATTRIBUTES:
            return printer_answer(request, (Operation.CREATE_JOB, Operation.SEND_DOCUMENT, Operation.PRINT_JOB),
                                  multiple_documents=False)  # fmt: skip
        if request.code == Operation.CREATE_JOB:
            job_id = len(self.jobs) + 1
            self.jobs[job_id] = None
            return self._job(request, job_id)
        job_id = operation["job-id"].first  # type: ignore[assignment]
        assert isinstance(job_id, int)
        if request.code == Operation.SEND_DOCUMENT:
            if self.jobs.get(job_id) is not None or operation["last-document"].first is not True:
                return answer(request, Status.SERVER_ERROR_MULTIPLE_DOCUMENT_JOBS_NOT_SUPPORTED)
            self.jobs[job_id] = data
        elif request.code == Operation.CANCEL_JOB:
            self.canceled.add(job_id)
        return self._job(request, job_id)

    def _job(self, request: IppMessage, job_id: int) -> IppMessage:
        if job_id not in self.jobs:
            return answer(request, Status.CLIENT_ERROR_NOT_FOUND)
        if job_id in self.canceled:
            return job_answer_for(request, job_id, JobState.CANCELED, "job-canceled-by-user")
        if self.jobs[job_id] is None:
            return job_answer_for(request, job_id, JobState.PENDING_HELD, "job-incoming")
        return job_answer_for(request, job_id, JobState.COMPLETED, "job-completed-successfully")

    def printed(self) -> list[bytes]:
        return [data for job_id, data in sorted(self.jobs.items()) if data is not None and job_id not in self.canceled]


def job_answer_for(request: IppMessage, job_id: int, state: JobState, reasons: str) -> IppMessage:
    response = answer(request)
    response.add_group(Tag.JOB, Attribute.integer("job-id", job_id), Attribute.enum("job-state", int(state)),
                       Attribute.keyword("job-state-reasons", reasons),
                       Attribute.integer("job-impressions-completed", 1))  # fmt: skip
    return response


class DocumentPrinterResource(FakePrinter):
    """FakePrinter for SingleDocumentPrinter: passes the document bytes after the IPP header too."""

    def render_POST(self, request: Any) -> bytes:
        from spooler.ipp.codec import find_data_offset

        body = request.content.read()
        offset = find_data_offset(body)
        message = decode(body[:offset])
        self.requests.append(message)
        request.setHeader(b"content-type", b"application/ipp")
        return encode_message(self.handler(message, body[offset:]))  # type: ignore[call-arg]


@pytest.fixture
def single_document_printer(reactor: Any) -> Any:
    printer = SingleDocumentPrinter()
    resource = DocumentPrinterResource(printer)  # type: ignore[arg-type]
    port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
    yield printer, resource, port.getHost().port
    port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_printer_without_multiple_document_jobs_gets_one_job_per_document(
        reactor: Any, single_document_printer: Any, tmp_path: Path) -> None:  # fmt: skip
    printer, resource, port = single_document_printer
    parts = [pdf(b"one", 5000), pdf(b"two", 6000), pdf(b"three", 7000)]
    journaled: list[str] = []
    receipt = await ipp_backend(reactor, port).deliver(make_job(), files(tmp_path, *parts), journaled.append)
    assert printer.printed() == parts
    assert journaled == ["jobs:1", "jobs:1,2", "jobs:1,2,3"] and receipt.remote_job_id == "jobs:1,2,3"
    assert receipt.impressions == 3 and "3 jobs" in receipt.detail
    sends = [r for r in resource.requests if r.code == Operation.SEND_DOCUMENT]
    assert [r.operation_attributes["last-document"].first for r in sends] == [True, True, True]  # type: ignore


@pytest_twisted.ensureDeferred
async def test_collated_copies_go_as_rounds_of_one_copy(reactor: Any, single_document_printer: Any,
                                                        tmp_path: Path) -> None:  # fmt: skip
    printer, resource, port = single_document_printer
    parts = [pdf(b"a", 100), pdf(b"b", 100)]
    job = make_job(copies=2)
    collated = job.evolve(attributes={"ipp": {"multiple-document-handling": "separate-documents-collated-copies"}})
    await ipp_backend(reactor, port).deliver(collated, files(tmp_path, *parts))
    assert printer.printed() == [parts[0], parts[1], parts[0], parts[1]]
    created = [r for r in resource.requests if r.code == Operation.CREATE_JOB]
    assert all(r.job_attributes is None or "copies" not in r.job_attributes for r in created)  # one copy each


@pytest_twisted.ensureDeferred
async def test_a_restart_while_document_2_of_3_was_sent_does_not_send_document_1_again(
        reactor: Any, single_document_printer: Any, tmp_path: Path) -> None:  # fmt: skip
    """The spooler was killed after the device had document 1 (its own job 1) and had created job 2,
    before document 2 arrived: recover cancels job 2, and only documents 2 and 3 are sent again."""
    printer, _, port = single_document_printer
    parts = [pdf(b"one", 5000), pdf(b"two", 6000), pdf(b"three", 7000)]
    printer.jobs.update({1: parts[0], 2: None})
    backend = ipp_backend(reactor, port)
    found = await backend.recover(make_job(), "jobs:1,2")
    assert isinstance(found, PartialDelivery) and (found.documents_done, found.remote_job_id) == (1, "jobs:1")
    assert printer.canceled == {2}
    journaled: list[str] = []
    receipt = await backend.deliver(make_job(), files(tmp_path, *parts), journaled.append, resume=found)
    assert printer.printed() == parts  # document 1 once, as job 1; documents 2 and 3 as jobs 3 and 4
    assert journaled == ["jobs:1,3", "jobs:1,3,4"] and not receipt.already_delivered

    # Killed once document 2 was whole at the device: only document 3 goes.
    printer.jobs.clear()
    printer.canceled.clear()
    printer.jobs.update({1: parts[0], 2: parts[1]})
    found = await backend.recover(make_job(), "jobs:1,2")
    assert isinstance(found, PartialDelivery) and found.documents_done == 2
    await backend.deliver(make_job(), files(tmp_path, *parts), resume=found)
    assert printer.printed() == parts

    # Killed after the last document was whole: nothing is sent again.
    found = await backend.recover(make_job(), "jobs:1,2,3")
    assert isinstance(found, PartialDelivery) and found.documents_done == 3
    receipt = await backend.deliver(make_job(), files(tmp_path, *parts), resume=found)
    assert receipt.already_delivered and printer.printed() == parts
