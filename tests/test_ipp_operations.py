"""The IPP printer in process: raw HTTP bytes into the twisted.web site over a StringTransport, the
job service behind it; status codes, job lifecycle, streaming, compression and printer state."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from inprocess import Rig, http_responses
from spooler.ipp.codec import Attribute, IppMessage, decode, encode_message
from spooler.ipp.server.resource import IppSite
from spooler.ipp.tags import Operation, Status, Tag
from spooler.model import JobState

PRINTER_URI = "ipp://localhost:8631/ipp/print"
PDF = b"%PDF-1.7\n" + b"0123456789" * 2000 + b"\n%%EOF\n"


# -- helpers -------------------------------------------------------------------------------------


def ipp_request(
    operation: int,
    *attributes: Attribute,
    job: list[Attribute] | None = None,
    user: str | None = "alice",
    version: tuple[int, int] = (2, 0),
    request_id: int = 7,
    printer_uri: bool = True,
    uri: str = PRINTER_URI,
) -> IppMessage:
    message = IppMessage(version, operation, request_id)
    group = message.add_group(Tag.OPERATION, Attribute.charset("attributes-charset", "utf-8"),
                              Attribute.language("attributes-natural-language", "en"))  # fmt: skip
    if printer_uri:
        group.add(Attribute.uri("printer-uri", uri))
    if user is not None:
        group.add(Attribute.name("requesting-user-name", user))
    group.add(*attributes)
    if job:
        message.add_group(Tag.JOB, *job)
    return message


def http_post(body: bytes, *, chunked: bool = False, expect: bool = False, path: str = "/ipp/print",
              content_type: str = "application/ipp") -> bytes:  # fmt: skip
    headers = [f"POST {path} HTTP/1.1", "Host: localhost:8631", f"Content-Type: {content_type}"]
    if expect:
        headers.append("Expect: 100-continue")
    if chunked:
        headers.append("Transfer-Encoding: chunked")
        payload = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 4096]), body[i:i + 4096])
                           for i in range(0, len(body), 4096)) + b"0\r\n\r\n"  # fmt: skip
    else:
        headers.append(f"Content-Length: {len(body)}")
        payload = body
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + payload


class Client:
    """One HTTP connection to the site over a StringTransport."""

    def __init__(self, site: IppSite) -> None:
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        self.channel = site.buildProtocol(address)
        self.transport = StringTransport(peerAddress=address)
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def responses(self) -> list[tuple[int, bytes]]:
        """(HTTP status, body) of every response so far, interim ones included (body b"")."""
        return http_responses(self.transport.value())

    def call(self, message: IppMessage, data: bytes = b"", **post: Any) -> IppMessage:
        before = len(self.responses())
        self.send(http_post(encode_message(message) + data, **post))
        status, body = self.responses()[-1]
        assert len(self.responses()) > before and status == 200, self.transport.value()[-500:]
        return decode(body)


def status_of(response: IppMessage) -> Status:
    return Status(response.code)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    rig = Rig(tmp_path, ipp={"admin_users": ["root"]})
    rig.dispatcher.start()
    return rig


@pytest.fixture
def site(rig: Rig) -> IppSite:
    return rig.ipp_site()


@pytest.fixture
def client(site: IppSite) -> Client:
    return Client(site)


def print_job(client: Client, data: bytes = PDF, *extra: Attribute, user: str = "alice", chunked: bool = False,
              **kwargs: Any) -> IppMessage:  # fmt: skip
    return client.call(ipp_request(Operation.PRINT_JOB, Attribute.name("job-name", "Quarterly report"),
                                   Attribute.mime("document-format", "application/pdf"), *extra, user=user,
                                   **kwargs), data, chunked=chunked)  # fmt: skip


def job_id_of(response: IppMessage) -> int:
    job = response.job_attributes
    assert job is not None
    return int(job["job-id"].first)  # type: ignore[arg-type]


# -- request checks (RFC 8011 4.1) ---------------------------------------------------------------


def _raw(version: bytes, operation: int, request_id: int, groups: bytes) -> bytes:
    return version + operation.to_bytes(2, "big") + request_id.to_bytes(4, "big") + groups


CHARSET = b"\x47\x00\x12attributes-charset\x00\x05utf-8"
LANGUAGE = b"\x48\x00\x1battributes-natural-language\x00\x02en"
URI = b"\x45\x00\x0bprinter-uri\x00" + bytes([len(PRINTER_URI)]) + PRINTER_URI.encode()

BAD_REQUESTS = [
    ("request-id 0", _raw(b"\x02\x00", 0x0B, 0, b"\x01" + CHARSET + LANGUAGE + URI + b"\x03"),
     Status.CLIENT_ERROR_BAD_REQUEST),
    ("version 0.0", _raw(b"\x00\x00", 0x0B, 1, b"\x01" + CHARSET + LANGUAGE + URI + b"\x03"),
     Status.SERVER_ERROR_VERSION_NOT_SUPPORTED),
    ("version 3.0", _raw(b"\x03\x00", 0x0B, 1, b"\x01" + CHARSET + LANGUAGE + URI + b"\x03"),
     Status.SERVER_ERROR_VERSION_NOT_SUPPORTED),
    ("no operation attributes", _raw(b"\x01\x01", 0x0B, 1, b"\x01\x03"), Status.CLIENT_ERROR_BAD_REQUEST),
    ("charset only", _raw(b"\x01\x01", 0x0B, 1, b"\x01" + CHARSET + b"\x03"), Status.CLIENT_ERROR_BAD_REQUEST),
    ("language before charset", _raw(b"\x01\x01", 0x0B, 1, b"\x01" + LANGUAGE + CHARSET + URI + b"\x03"),
     Status.CLIENT_ERROR_BAD_REQUEST),
    ("no printer-uri", _raw(b"\x01\x01", 0x0B, 1, b"\x01" + CHARSET + LANGUAGE + b"\x03"),
     Status.CLIENT_ERROR_BAD_REQUEST),
    ("truncated attribute", _raw(b"\x01\x01", 0x0B, 1, b"\x01" + CHARSET + LANGUAGE[:-3]),
     Status.CLIENT_ERROR_BAD_REQUEST),
    ("garbage", b"hello, printer", Status.CLIENT_ERROR_BAD_REQUEST),
    ("boolean of length 2", _raw(b"\x01\x01", 0x0B, 1, b"\x01" + CHARSET + LANGUAGE + URI
                                 + b"\x22\x00\x06my-jobs\x00\x02\x00\x01\x03"), Status.CLIENT_ERROR_BAD_REQUEST),
    ("unknown operation", _raw(b"\x02\x00", 0x0040, 1, b"\x01" + CHARSET + LANGUAGE + URI + b"\x03"),
     Status.SERVER_ERROR_OPERATION_NOT_SUPPORTED),
    ("Print-URI is not offered", _raw(b"\x02\x00", 0x0003, 1, b"\x01" + CHARSET + LANGUAGE + URI + b"\x03"),
     Status.SERVER_ERROR_OPERATION_NOT_SUPPORTED),
    ("charset latin-2", _raw(b"\x02\x00", 0x0B, 1, b"\x01" + CHARSET.replace(b"\x00\x05utf-8", b"\x00\x0aiso-8859-2")
                             + LANGUAGE + URI + b"\x03"), Status.CLIENT_ERROR_CHARSET_NOT_SUPPORTED),
]  # fmt: skip


@pytest.mark.parametrize("body,expected", [case[1:] for case in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_malformed_requests_get_the_right_status_never_a_traceback(client: Client, body: bytes,
                                                                   expected: Status) -> None:  # fmt: skip
    client.send(http_post(body))
    [(http_status, answer)] = client.responses()
    assert http_status == 200
    response = decode(answer)
    assert status_of(response) == expected
    assert response.operation_attributes is not None
    assert response.operation_attributes["attributes-charset"].first == "utf-8"


def test_the_request_id_is_echoed_and_the_version_answered_in_kind(client: Client) -> None:
    for version in ((1, 0), (1, 1), (2, 0), (2, 1), (2, 2)):
        response = client.call(ipp_request(Operation.GET_PRINTER_ATTRIBUTES, version=version, request_id=4242))
        assert (response.version, response.request_id, response.code) == (version, 4242, 0)


def test_not_ipp_is_an_http_error_and_ipp_is_answered_wherever_it_is_posted(client: Client) -> None:
    client.send(http_post(b"x", content_type="text/plain"))
    client.send(http_post(encode_message(ipp_request(Operation.GET_JOBS)), path="/admin/"))  # as cupsdisable does
    [(text, _), (ipp, answer)] = client.responses()
    assert (text, ipp) == (400, 200) and status_of(decode(answer)) == Status.SUCCESSFUL_OK


# -- Print-Job and friends -------------------------------------------------------------------------


def test_print_job_is_answered_after_the_job_is_durable(client: Client, rig: Rig) -> None:
    response = print_job(client, PDF, job=[Attribute.integer("copies", 2),
                                           Attribute.keyword("sides", "two-sided-long-edge")])  # fmt: skip
    assert status_of(response) == Status.SUCCESSFUL_OK
    job_group = response.job_attributes
    assert job_group is not None
    job_id = job_id_of(response)
    assert job_group["job-uri"].first == f"{PRINTER_URI}/{job_id}"
    assert job_group["job-state"].first in (3, 5, 9)
    assert job_group["job-state-reasons"].tag == Tag.KEYWORD
    job = rig.store.get(job_id)
    assert (job.user, job.name, job.protocol, job.copies, job.sides) == ("alice", "Quarterly report", "ipp", 2,
                                                                           "two-sided-long-edge")  # fmt: skip
    assert job.document_format == "application/pdf" and job.size == len(PDF)
    [document] = rig.store.documents(job_id)
    assert (rig.config.spool_dir / document.file_name).read_bytes() == PDF
    assert list(rig.config.incoming_dir.iterdir()) == []


@pytest.mark.parametrize("compression,packed", [
    ("gzip", gzip.compress(PDF)),
    ("deflate", zlib.compress(PDF)),
    ("deflate", zlib.compress(PDF)[2:-4]),  # raw deflate, as some clients send it
    ("none", PDF),
])  # fmt: skip
def test_compressed_documents_are_stored_decompressed(client: Client, rig: Rig, compression: str,
                                                      packed: bytes) -> None:  # fmt: skip
    response = print_job(client, packed, Attribute.keyword("compression", compression))
    assert status_of(response) == Status.SUCCESSFUL_OK
    [document] = rig.store.documents(job_id_of(response))
    assert (rig.config.spool_dir / document.file_name).read_bytes() == PDF


REFUSALS = [
    ("unknown format", [Attribute.mime("document-format", "application/x-doc")], [],
     Status.CLIENT_ERROR_DOCUMENT_FORMAT_NOT_SUPPORTED, "document-format"),
    ("unknown compression", [Attribute.keyword("compression", "compress")], [],
     Status.CLIENT_ERROR_COMPRESSION_NOT_SUPPORTED, "compression"),
    ("fidelity and bad sides", [Attribute.boolean("ipp-attribute-fidelity", True)],
     [Attribute.keyword("sides", "three-sided")], Status.CLIENT_ERROR_ATTRIBUTES_OR_VALUES_NOT_SUPPORTED, "sides"),
    ("fidelity and too many copies", [Attribute.boolean("ipp-attribute-fidelity", True)],
     [Attribute.integer("copies", 5000)], Status.CLIENT_ERROR_ATTRIBUTES_OR_VALUES_NOT_SUPPORTED, "copies"),
]  # fmt: skip


@pytest.mark.parametrize("operation", [Operation.PRINT_JOB, Operation.VALIDATE_JOB])
@pytest.mark.parametrize("operation_attributes,job,expected,unsupported", [c[1:] for c in REFUSALS],
                         ids=[c[0] for c in REFUSALS])  # fmt: skip
def test_refused_jobs_name_what_is_unsupported_and_leave_nothing(
    client: Client, rig: Rig, operation: int, operation_attributes: list[Attribute], job: list[Attribute],
    expected: Status, unsupported: str,
) -> None:
    response = client.call(ipp_request(operation, *operation_attributes, job=job), PDF)
    assert status_of(response) == expected
    group = response.group(Tag.UNSUPPORTED_GROUP)
    assert group is not None and unsupported in group
    assert rig.store.list_jobs() == []
    assert list(rig.config.incoming_dir.iterdir()) == []


def test_without_fidelity_unsupported_values_are_ignored_and_reported(client: Client, rig: Rig) -> None:
    response = print_job(client, PDF, job=[Attribute.keyword("sides", "three-sided"),
                                           Attribute.integer("x-vendor-thing", 1)])  # fmt: skip
    assert status_of(response) == Status.SUCCESSFUL_OK_IGNORED_OR_SUBSTITUTED_ATTRIBUTES
    group = response.group(Tag.UNSUPPORTED_GROUP)
    assert group is not None and group["x-vendor-thing"].tag == Tag.UNSUPPORTED and "sides" in group
    assert rig.store.get(job_id_of(response)).sides is None


def test_validate_job_accepts_a_good_job_and_creates_nothing(client: Client, rig: Rig) -> None:
    response = client.call(ipp_request(Operation.VALIDATE_JOB, Attribute.mime("document-format", "image/pwg-raster")))
    assert status_of(response) == Status.SUCCESSFUL_OK
    assert rig.store.list_jobs() == []


def test_a_broken_compressed_document_is_a_compression_error(client: Client, rig: Rig) -> None:
    response = print_job(client, b"\x1f\x8b\x08\x00garbage-not-gzip" * 10, Attribute.keyword("compression", "gzip"))
    assert status_of(response) == Status.CLIENT_ERROR_COMPRESSION_ERROR
    truncated = print_job(client, gzip.compress(PDF)[:-20], Attribute.keyword("compression", "gzip"))
    assert status_of(truncated) == Status.CLIENT_ERROR_COMPRESSION_ERROR
    assert rig.store.list_jobs() == [] and list(rig.config.incoming_dir.iterdir()) == []


def test_print_job_without_data_is_a_bad_request(client: Client, rig: Rig) -> None:
    assert status_of(print_job(client, b"")) == Status.CLIENT_ERROR_BAD_REQUEST
    assert rig.store.list_jobs() == []


def test_a_request_over_the_size_limit_is_refused_without_a_job(tmp_path: Path) -> None:
    rig = Rig(tmp_path, ipp={"max_request_size": 10_000})
    client = Client(rig.ipp_site())
    for chunked in (False, True):
        response = print_job(client, b"%PDF" + b"x" * 50_000, chunked=chunked)
        assert status_of(response) == Status.CLIENT_ERROR_REQUEST_ENTITY_TOO_LARGE
    assert rig.store.list_jobs() == [] and list(rig.config.incoming_dir.iterdir()) == []
    small = Rig(tmp_path / "small", limits={"max_job_size": 1000})
    client = Client(small.ipp_site())
    response = print_job(client, gzip.compress(b"A" * 100_000), Attribute.keyword("compression", "gzip"))
    assert status_of(response) == Status.CLIENT_ERROR_REQUEST_ENTITY_TOO_LARGE  # a decompression bomb is capped
    assert small.store.list_jobs() == []


def test_below_the_free_space_floor_new_jobs_get_busy(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spool={"min_free_space": "1000TiB"})
    client = Client(rig.ipp_site())
    for operation in (Operation.PRINT_JOB, Operation.CREATE_JOB, Operation.VALIDATE_JOB):
        assert status_of(client.call(ipp_request(operation), PDF)) == Status.SERVER_ERROR_BUSY
    printer = client.call(ipp_request(Operation.GET_PRINTER_ATTRIBUTES)).printer_attributes
    assert printer is not None
    assert "spool-area-full" in printer["printer-state-reasons"].all
    assert printer["printer-is-accepting-jobs"].first is False


# -- streaming ----------------------------------------------------------------------------------------


def test_the_document_streams_to_the_spool_file_not_to_memory(client: Client, rig: Rig) -> None:
    big = b"%PDF-1.7\n" + bytes(range(256)) * 12_000  # ~3 MiB, in 4 KiB chunks
    request = encode_message(ipp_request(Operation.PRINT_JOB)) + big
    wire = http_post(request, chunked=True, expect=True)
    client.send(wire[: len(wire) // 2])
    [(interim, _)] = client.responses()
    assert interim == 100  # Expect: 100-continue is answered at once
    [partial] = list(rig.config.incoming_dir.iterdir())
    assert partial.stat().st_size > 1024 * 1024  # half the document is on disk before the body ends
    http_request = client.channel.requests[-1]
    assert http_request.content.getvalue() == b""  # and none of it is buffered by twisted.web
    assert rig.store.list_jobs() == []
    client.send(wire[len(wire) // 2:])
    statuses = [status for status, _ in client.responses()]
    assert statuses == [100, 200]
    [job] = rig.store.list_jobs()
    [document] = rig.store.documents(job.job_id)
    assert (rig.config.spool_dir / document.file_name).read_bytes() == big


def test_a_connection_cut_mid_document_leaves_no_job(client: Client, rig: Rig) -> None:
    wire = http_post(encode_message(ipp_request(Operation.PRINT_JOB)) + PDF * 100, chunked=True)
    client.send(wire[: len(wire) // 2])
    client.channel.connectionLost(Failure(ConnectionLost("reset")))
    assert rig.store.list_jobs() == [] and list(rig.config.incoming_dir.iterdir()) == []


def test_keep_alive_serves_several_requests_on_one_connection(client: Client) -> None:
    for _ in range(3):
        assert status_of(print_job(client)) == Status.SUCCESSFUL_OK
    assert status_of(client.call(ipp_request(Operation.GET_JOBS))) == Status.SUCCESSFUL_OK
    assert [status for status, _ in client.responses()] == [200] * 4
    assert not client.transport.disconnecting


# -- job lifecycle -------------------------------------------------------------------------------------


def job_call(client: Client, operation: int, job_id: int, *extra: Attribute, user: str | None = "alice") -> IppMessage:
    return client.call(ipp_request(operation, Attribute.integer("job-id", job_id), *extra, user=user))


def test_only_the_owner_or_an_admin_may_cancel_hold_or_release(client: Client, rig: Rig) -> None:
    job_id = job_id_of(print_job(client))
    for operation in (Operation.CANCEL_JOB, Operation.HOLD_JOB, Operation.RELEASE_JOB):
        assert status_of(job_call(client, operation, job_id, user="mallory")) == Status.CLIENT_ERROR_NOT_AUTHORIZED
        assert status_of(job_call(client, operation, job_id, user=None)) == Status.CLIENT_ERROR_NOT_AUTHORIZED
    assert status_of(job_call(client, Operation.HOLD_JOB, job_id)) == Status.SUCCESSFUL_OK
    assert rig.store.get(job_id).state == JobState.PENDING_HELD
    assert status_of(job_call(client, Operation.RELEASE_JOB, job_id, user="root")) == Status.SUCCESSFUL_OK
    assert rig.store.get(job_id).state in (JobState.PENDING, JobState.PROCESSING)
    assert status_of(job_call(client, Operation.CANCEL_JOB, job_id, user="root")) == Status.SUCCESSFUL_OK
    assert rig.store.get(job_id).state == JobState.CANCELED
    assert status_of(job_call(client, Operation.CANCEL_JOB, job_id)) == Status.CLIENT_ERROR_NOT_POSSIBLE
    assert status_of(job_call(client, Operation.CANCEL_JOB, 999)) == Status.CLIENT_ERROR_NOT_FOUND


def test_a_job_can_be_named_by_its_job_uri(client: Client) -> None:
    job_id = job_id_of(print_job(client))
    message = ipp_request(Operation.GET_JOB_ATTRIBUTES, Attribute.uri("job-uri", f"{PRINTER_URI}/{job_id}"),
                          printer_uri=False)  # fmt: skip
    response = client.call(message)
    assert status_of(response) == Status.SUCCESSFUL_OK
    assert response.job_attributes is not None and response.job_attributes["job-id"].first == job_id


def test_create_job_then_send_document_makes_one_job_of_several_documents(client: Client, rig: Rig) -> None:
    created = client.call(ipp_request(Operation.CREATE_JOB, Attribute.name("job-name", "two parts")))
    assert status_of(created) == Status.SUCCESSFUL_OK
    job_id = job_id_of(created)
    job = rig.store.get(job_id)
    assert (job.state, job.reason) == (JobState.PENDING_HELD, "job-incoming")  # not dispatched yet
    assert status_of(job_call(client, Operation.RELEASE_JOB, job_id)) == Status.CLIENT_ERROR_NOT_POSSIBLE
    first = client.call(ipp_request(Operation.SEND_DOCUMENT, Attribute.integer("job-id", job_id),
                                    Attribute.boolean("last-document", False)), PDF)  # fmt: skip
    assert status_of(first) == Status.SUCCESSFUL_OK
    assert rig.store.get(job_id).state == JobState.PENDING_HELD
    mallory = client.call(ipp_request(Operation.SEND_DOCUMENT, Attribute.integer("job-id", job_id),
                                      Attribute.boolean("last-document", True), user="mallory"), b"evil")  # fmt: skip
    assert status_of(mallory) == Status.CLIENT_ERROR_NOT_AUTHORIZED
    last = client.call(ipp_request(Operation.SEND_DOCUMENT, Attribute.integer("job-id", job_id),
                                   Attribute.keyword("compression", "gzip"),
                                   Attribute.boolean("last-document", True)), gzip.compress(b"second"))  # fmt: skip
    assert status_of(last) == Status.SUCCESSFUL_OK
    job = rig.store.get(job_id)
    assert job.state in (JobState.PENDING, JobState.PROCESSING) and job.size == len(PDF) + len(b"second")
    documents = rig.store.documents(job_id)
    assert [(rig.config.spool_dir / d.file_name).read_bytes() for d in documents] == [PDF, b"second"]
    again = client.call(ipp_request(Operation.SEND_DOCUMENT, Attribute.integer("job-id", job_id),
                                    Attribute.boolean("last-document", True)), PDF)  # fmt: skip
    assert status_of(again) == Status.CLIENT_ERROR_NOT_POSSIBLE
    assert list(rig.config.incoming_dir.iterdir()) == []
    rig.clock.advance(0)
    assert rig.backend.attempts and rig.backend.attempts[0] == (job_id, PDF + b"second")


def test_send_document_needs_last_document(client: Client, rig: Rig) -> None:
    job_id = job_id_of(client.call(ipp_request(Operation.CREATE_JOB)))
    response = client.call(ipp_request(Operation.SEND_DOCUMENT, Attribute.integer("job-id", job_id)), PDF)
    assert status_of(response) == Status.CLIENT_ERROR_BAD_REQUEST


def test_close_job_queues_the_job_or_aborts_an_empty_one(client: Client, rig: Rig) -> None:
    empty = job_id_of(client.call(ipp_request(Operation.CREATE_JOB)))
    assert status_of(job_call(client, Operation.CLOSE_JOB, empty)) == Status.SUCCESSFUL_OK
    assert rig.store.get(empty).state == JobState.ABORTED
    job_id = job_id_of(client.call(ipp_request(Operation.CREATE_JOB)))
    client.call(ipp_request(Operation.SEND_DOCUMENT, Attribute.integer("job-id", job_id),
                            Attribute.boolean("last-document", False)), PDF)  # fmt: skip
    assert status_of(job_call(client, Operation.CLOSE_JOB, job_id)) == Status.SUCCESSFUL_OK
    assert rig.store.get(job_id).state in (JobState.PENDING, JobState.PROCESSING)


def test_a_create_job_whose_client_went_away_is_aborted(client: Client, rig: Rig) -> None:
    job_id = job_id_of(client.call(ipp_request(Operation.CREATE_JOB)))
    rig.clock.advance(rig.config.ipp.multiple_operation_timeout + 1)
    assert rig.service.expire_incoming() == [job_id]
    assert rig.store.get(job_id).state == JobState.ABORTED


def test_job_hold_until_indefinite_holds_the_job(client: Client, rig: Rig) -> None:
    response = print_job(client, job=[Attribute.keyword("job-hold-until", "indefinite")])
    job = rig.store.get(job_id_of(response))
    assert job.state == JobState.PENDING_HELD and rig.backend.attempts == []


def test_cancel_my_jobs_cancels_only_mine(client: Client, rig: Rig) -> None:
    rig.service.pause_printer(by="test")  # keep every job waiting
    mine = [job_id_of(print_job(client)) for _ in range(2)]
    theirs = job_id_of(print_job(client, user="bob"))
    assert status_of(client.call(ipp_request(Operation.CANCEL_MY_JOBS))) == Status.SUCCESSFUL_OK
    assert [rig.store.get(job_id).state for job_id in mine] == [JobState.CANCELED] * 2
    assert rig.store.get(theirs).state == JobState.PENDING


def test_get_jobs_filters_by_state_owner_and_limit(client: Client, rig: Rig) -> None:
    done = job_id_of(print_job(client))
    rig.clock.advance(0)
    rig.backend.succeed()
    rig.service.pause_printer(by="test")
    waiting = [job_id_of(print_job(client, user=user)) for user in ("alice", "bob", "alice")]

    def ids(*attributes: Attribute, user: str = "alice") -> list[int]:
        response = client.call(ipp_request(Operation.GET_JOBS, *attributes, user=user))
        assert status_of(response) == Status.SUCCESSFUL_OK
        return [int(group["job-id"].first) for group in response.groups_of(Tag.JOB)]  # type: ignore[arg-type]

    assert ids() == waiting
    assert ids(Attribute.keyword("which-jobs", "completed")) == [done]
    assert ids(Attribute.keyword("which-jobs", "all")) == [done, *waiting]
    assert ids(Attribute.boolean("my-jobs", True), user="bob") == [waiting[1]]
    assert ids(Attribute.integer("limit", 2)) == waiting[:2]
    # Paging: first-index (from 1) then limit.
    assert ids(Attribute.integer("first-index", 2), Attribute.integer("limit", 1)) == [waiting[1]]
    assert ids(Attribute.integer("first-index", 3), Attribute.integer("limit", 5)) == [waiting[2]]
    assert ids(Attribute.integer("first-index", 4)) == []
    below = client.call(ipp_request(Operation.GET_JOBS, Attribute.integer("first-index", 0)))
    assert status_of(below) == Status.CLIENT_ERROR_ATTRIBUTES_OR_VALUES_NOT_SUPPORTED
    response = client.call(ipp_request(Operation.GET_JOBS, Attribute.keyword("requested-attributes", "job-name",
                                                                              "job-originating-user-name")))
    first = response.groups_of(Tag.JOB)[0]
    assert [a.name for a in first.attributes] == ["job-name", "job-originating-user-name"]
    bad = client.call(ipp_request(Operation.GET_JOBS, Attribute.keyword("which-jobs", "yesterday")))
    assert status_of(bad) == Status.CLIENT_ERROR_ATTRIBUTES_OR_VALUES_NOT_SUPPORTED


def test_get_job_attributes_tells_the_whole_story(client: Client, rig: Rig) -> None:
    job_id = job_id_of(print_job(client))
    rig.clock.advance(5)
    rig.backend.succeed()
    rig.clock.advance(0)
    job = job_call(client, Operation.GET_JOB_ATTRIBUTES, job_id).job_attributes
    assert job is not None
    assert job["job-state"].first == 9 and job["job-state-reasons"].first == "job-completed-successfully"
    assert job["job-originating-user-name"].first == "alice" and job["job-name"].first == "Quarterly report"
    assert job["job-printer-uri"].first == PRINTER_URI and str(job["job-uuid"].first).startswith("urn:uuid:")
    assert job["time-at-completed"].first == int(rig.clock.seconds())
    assert job["job-k-octets"].first == (len(PDF) + 1023) // 1024 and job["job-impressions-completed"].first == 0
    assert job["date-time-at-creation"].tag == Tag.DATETIME


# -- the printer -----------------------------------------------------------------------------------------


def printer_attributes(client: Client, *requested: str) -> Any:
    extra = [Attribute.keyword("requested-attributes", *requested)] if requested else []
    response = client.call(ipp_request(Operation.GET_PRINTER_ATTRIBUTES, *extra))
    assert status_of(response) == Status.SUCCESSFUL_OK
    return response.printer_attributes


def test_printer_state_tells_the_truth_about_the_device(client: Client, rig: Rig) -> None:
    printer = printer_attributes(client, "printer-state", "printer-state-reasons", "printer-state-message")
    assert (printer["printer-state"].first, printer["printer-state-reasons"].all) == (3, ["none"])
    print_job(client)
    rig.clock.advance(0)
    printer = printer_attributes(client, "printer-state", "printer-state-reasons")
    assert printer["printer-state"].first == 4 and "connecting-to-device" in printer["printer-state-reasons"].all
    from spooler.model import DeliveryError

    rig.backend.fail(DeliveryError("connection refused by 192.0.2.9:9100", retryable=True))
    printer = printer_attributes(client, "printer-state", "printer-state-reasons", "printer-state-message")
    assert "offline-report" in printer["printer-state-reasons"].all
    assert "connection refused by 192.0.2.9:9100" in printer["printer-state-message"].first


def test_pause_and_resume_are_for_admins(client: Client, rig: Rig) -> None:
    for operation in (Operation.PAUSE_PRINTER, Operation.RESUME_PRINTER):
        assert status_of(client.call(ipp_request(operation))) == Status.CLIENT_ERROR_NOT_AUTHORIZED
    assert status_of(client.call(ipp_request(Operation.PAUSE_PRINTER, user="root"))) == Status.SUCCESSFUL_OK
    printer = printer_attributes(client, "printer-state", "printer-state-reasons")
    assert printer["printer-state"].first == 5 and printer["printer-state-reasons"].all == ["paused"]
    job_id = job_id_of(print_job(client))
    assert rig.backend.attempts == []  # nothing leaves while paused
    assert status_of(client.call(ipp_request(Operation.RESUME_PRINTER, user="root"))) == Status.SUCCESSFUL_OK
    rig.clock.advance(0)
    assert [attempt[0] for attempt in rig.backend.attempts] == [job_id]


def test_identify_printer_is_logged_and_answered(client: Client) -> None:
    response = client.call(ipp_request(Operation.IDENTIFY_PRINTER, Attribute.keyword("identify-actions", "sound")))
    assert status_of(response) == Status.SUCCESSFUL_OK


@pytest.mark.parametrize("requested,present,absent", [
    (("printer-description",), "printer-name", "media-col-database"),
    (("job-template",), "copies-supported", "printer-name"),
    (("all",), "document-format-supported", "media-col-database"),
    (("all", "media-col-database"), "media-col-database", None),
    (("printer-state", "queued-job-count"), "queued-job-count", "printer-name"),
])  # fmt: skip
def test_requested_attributes_groups(client: Client, requested: tuple[str, ...], present: str,
                                     absent: str | None) -> None:  # fmt: skip
    printer = printer_attributes(client, *requested)
    assert present in printer
    if absent is not None:
        assert absent not in printer


def test_stopping_cuts_uploads_in_progress_and_keeps_finished_jobs(site: IppSite, rig: Rig) -> None:
    done = Client(site)
    assert status_of(print_job(done)) == Status.SUCCESSFUL_OK
    uploading = Client(site)
    wire = http_post(encode_message(ipp_request(Operation.PRINT_JOB)) + PDF, chunked=True)
    uploading.send(wire[: len(wire) // 2])
    assert len(site.connections) == 2
    finished: list[object] = []
    site.close_all().addBoth(finished.append)
    assert finished and uploading.transport.disconnecting and not done.transport.disconnecting
    uploading.channel.connectionLost(Failure(ConnectionLost("aborted")))
    assert len(rig.store.list_jobs()) == 1 and list(rig.config.incoming_dir.iterdir()) == []


def test_over_the_limit_an_idle_connection_makes_room(tmp_path: Path) -> None:
    rig = Rig(tmp_path, limits={"max_connections": 1})
    site = rig.ipp_site()
    idle = Client(site)
    rig.clock.advance(5)
    assert site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001)) is not None  # spooler.intake.limits
    assert idle.transport.disconnecting and idle.channel not in site.connections


def test_pause_lets_the_delivery_under_way_finish(client: Client, rig: Rig) -> None:
    first = job_id_of(print_job(client))
    rig.clock.advance(0)
    assert status_of(client.call(ipp_request(Operation.PAUSE_PRINTER, user="root"))) == Status.SUCCESSFUL_OK
    job_id_of(print_job(client))
    printer = printer_attributes(client, "printer-state", "printer-state-reasons")
    assert printer["printer-state"].first == 5 and "moving-to-paused" in printer["printer-state-reasons"].all
    rig.backend.succeed()
    rig.clock.advance(10)
    assert rig.store.get(first).state == JobState.COMPLETED
    assert [attempt[0] for attempt in rig.backend.attempts] == [first]  # not cut, not sent twice, nothing new
    assert printer_attributes(client, "printer-state-reasons")["printer-state-reasons"].all == ["paused"]


def test_arbitrary_bytes_never_break_the_printer(tmp_path: Path) -> None:
    from hypothesis import HealthCheck, given, settings, strategies as st

    rig = Rig(tmp_path)
    site = rig.ipp_site()
    valid = encode_message(ipp_request(Operation.PRINT_JOB, Attribute.keyword("compression", "gzip"),
                                       job=[Attribute.collection("media-col", [Attribute.integer("x", 1)])]))

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(
        st.binary(max_size=300),
        st.tuples(st.integers(0, len(valid)), st.binary(max_size=40)).map(lambda cut: valid[: cut[0]] + cut[1]),
        st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)).map(
            lambda flip: valid[: flip[0]] + bytes([flip[1]]) + valid[flip[0] + 1:]),
    ), st.booleans())  # fmt: skip
    def check(body: bytes, chunked: bool) -> None:
        client = Client(site)
        client.send(http_post(body, chunked=chunked))
        [(http_status, answer)] = client.responses()
        assert http_status == 200
        response = decode(answer)
        assert response.code in {s.value for s in Status}
        assert Status(response.code) != Status.SERVER_ERROR_INTERNAL_ERROR
        client.channel.connectionLost(Failure(ConnectionLost("done")))

    check()
    assert list(rig.config.incoming_dir.iterdir()) == []


def test_each_configured_queue_is_a_printer_of_its_own(tmp_path: Path) -> None:
    rig = Rig(tmp_path, queues={"default": {}, "color": {}}, ipp={"name": "Branch printer"})
    client = Client(rig.ipp_site())
    for path, queue in (("/ipp/print", "default"), ("/ipp/print/color", "color"), ("/printers/color", "color")):
        uri = f"ipp://localhost:8631{path}"
        response = client.call(ipp_request(Operation.PRINT_JOB, uri=uri), PDF, path=path)
        job_id = job_id_of(response)
        assert rig.store.get(job_id).queue == queue
        assert response.job_attributes["job-uri"].first == f"{uri}/{job_id}"  # type: ignore
    listed = client.call(ipp_request(Operation.GET_JOBS, uri="ipp://localhost:8631/ipp/print/color"),
                         path="/ipp/print/color")  # fmt: skip
    assert [group["job-id"].first for group in listed.groups_of(Tag.JOB)] == [2, 3]
    printer = client.call(ipp_request(Operation.GET_PRINTER_ATTRIBUTES, uri="ipp://localhost:8631/printers/color"),
                          path="/printers/color").printer_attributes  # fmt: skip
    assert printer["printer-uri-supported"].first == "ipp://localhost:8631/printers/color"  # type: ignore
    assert printer["printer-name"].first == "color"  # type: ignore
    default = client.call(ipp_request(Operation.GET_PRINTER_ATTRIBUTES)).printer_attributes
    assert default["printer-name"].first == "Branch printer"  # type: ignore
    nowhere = ipp_request(Operation.PRINT_JOB, uri="ipp://localhost:8631/ipp/fax")
    assert status_of(client.call(nowhere, PDF, path="/admin/")) == Status.CLIENT_ERROR_NOT_FOUND
    assert list(rig.config.incoming_dir.iterdir()) == [] and len(rig.store.list_jobs()) == 3
    client.send(b"GET /somewhere/else HTTP/1.1\r\nHost: localhost:8631\r\n\r\n")
    assert client.responses()[-1][0] == 404


def test_the_queue_is_the_one_printer_uri_names_wherever_the_request_is_posted(tmp_path: Path) -> None:
    """What `lp -h HOST -d QUEUE` does (captured): every request is posted to `/` (or to the URI the
    printer reported) with printer-uri `/printers/QUEUE` in its body. Each request reaches QUEUE; the
    printer reports QUEUE's URI, so the Send-Document that follows goes there too; an unknown queue is
    refused before any job or data exists."""
    rig = Rig(tmp_path, queues={"default": {}, "front": {"offline_policy": "hold"}})
    client = Client(rig.ipp_site())
    front = "ipp://localhost:8631/printers/front"
    printer = client.call(ipp_request(Operation.GET_PRINTER_ATTRIBUTES, uri=front), path="/").printer_attributes
    assert printer["printer-uri-supported"].first == front and printer["printer-name"].first == "front"  # type: ignore
    created = client.call(ipp_request(Operation.CREATE_JOB, uri=front), path="/")
    job_id = job_id_of(created)
    assert rig.store.get(job_id).queue == "front"
    assert created.job_attributes["job-uri"].first == f"{front}/{job_id}"  # type: ignore
    sent = client.call(ipp_request(Operation.SEND_DOCUMENT, Attribute.integer("job-id", job_id),
                                   Attribute.boolean("last-document", True), uri=front), PDF,
                       path="/printers/front")  # fmt: skip
    assert status_of(sent) == Status.SUCCESSFUL_OK
    assert rig.store.get(job_id).state in (JobState.PENDING, JobState.PROCESSING)
    for operation in (Operation.PRINT_JOB, Operation.CREATE_JOB, Operation.GET_PRINTER_ATTRIBUTES):
        refused = client.call(ipp_request(operation, uri="ipp://localhost:8631/printers/nope"),
                              PDF if operation == Operation.PRINT_JOB else b"", path="/")  # fmt: skip
        assert status_of(refused) == Status.CLIENT_ERROR_NOT_FOUND
    assert len(rig.store.list_jobs()) == 1 and list(rig.config.incoming_dir.iterdir()) == []


# -- issue 14: private print, job privacy, decompression amplification ------------------------------


def test_a_job_password_holds_the_job_until_release_job_gives_it(client: Client, rig: Rig) -> None:
    """PWG 5100.11 job-password: the job is held; Release-Job needs the same job-password."""
    password = [Attribute.octets("job-password", b"7391"), Attribute.keyword("job-password-encryption", "none")]
    job_id = job_id_of(print_job(client, PDF, *password))
    job = rig.store.get(job_id)
    assert (job.state, job.reason) == (JobState.PENDING_HELD, "job-password-wait") and job.hold_key_verifier
    assert status_of(job_call(client, Operation.RELEASE_JOB, job_id)) == Status.CLIENT_ERROR_NOT_AUTHORIZED
    assert status_of(job_call(client, Operation.RELEASE_JOB, job_id, user="root")) == Status.CLIENT_ERROR_NOT_AUTHORIZED
    wrong = job_call(client, Operation.RELEASE_JOB, job_id, Attribute.octets("job-password", b"0000"))
    assert status_of(wrong) == Status.CLIENT_ERROR_NOT_AUTHORIZED
    theirs = job_call(client, Operation.RELEASE_JOB, job_id, Attribute.octets("job-password", b"7391"), user="bob")
    assert status_of(theirs) == Status.CLIENT_ERROR_NOT_AUTHORIZED
    assert rig.store.get(job_id).state == JobState.PENDING_HELD
    right = job_call(client, Operation.RELEASE_JOB, job_id, Attribute.octets("job-password", b"7391"))
    assert status_of(right) == Status.SUCCESSFUL_OK
    assert rig.store.get(job_id).state in (JobState.PENDING, JobState.PROCESSING)
    for path in rig.config.state_dir.rglob("*"):
        assert not path.is_file() or b"7391" not in path.read_bytes(), path


def test_a_pjl_private_job_over_ipp_is_released_with_its_key_as_job_password(client: Client, rig: Rig) -> None:
    data = (b'\x1b%-12345X@PJL SET HOLD=ON HOLDTYPE=PRIVATE HOLDKEY="7391"\r\n'
            b"@PJL ENTER LANGUAGE=PDF\r\n" + PDF)  # fmt: skip
    response = client.call(ipp_request(Operation.PRINT_JOB, Attribute.mime("document-format", "application/octet-stream")),
                           data)  # fmt: skip
    job_id = job_id_of(response)
    [document] = rig.store.documents(job_id)
    stored = (rig.config.spool_dir / document.file_name).read_bytes()
    assert stored == b"\x1b%-12345X\r\n@PJL ENTER LANGUAGE=PDF\r\n" + PDF
    assert status_of(job_call(client, Operation.RELEASE_JOB, job_id)) == Status.CLIENT_ERROR_NOT_AUTHORIZED
    right = job_call(client, Operation.RELEASE_JOB, job_id, Attribute.octets("job-password", b"7391"))
    assert status_of(right) == Status.SUCCESSFUL_OK


def test_create_job_with_a_job_password_is_held_once_closed(client: Client, rig: Rig) -> None:
    created = client.call(ipp_request(Operation.CREATE_JOB, Attribute.octets("job-password", b"55aa")))
    job_id = job_id_of(created)
    sent = client.call(ipp_request(Operation.SEND_DOCUMENT, Attribute.integer("job-id", job_id),
                                   Attribute.boolean("last-document", True)), PDF)  # fmt: skip
    assert status_of(sent) == Status.SUCCESSFUL_OK
    job = rig.store.get(job_id)
    assert (job.state, job.reason) == (JobState.PENDING_HELD, "job-password-wait")


@pytest.mark.parametrize("attributes, status", [
    ([Attribute.octets("job-password", b"1234"), Attribute.keyword("job-password-encryption", "md5")],
     Status.CLIENT_ERROR_ATTRIBUTES_OR_VALUES_NOT_SUPPORTED),
    ([Attribute.octets("job-password", b"")], Status.CLIENT_ERROR_BAD_REQUEST),
    ([Attribute.octets("job-password", b"\xff\xfe")], Status.CLIENT_ERROR_BAD_REQUEST),
    ([Attribute.text("job-password", "1234")], Status.CLIENT_ERROR_BAD_REQUEST),
])  # fmt: skip
def test_a_job_password_we_cannot_use_is_refused_without_a_job(client: Client, rig: Rig, attributes: list[Attribute],
                                                                status: Status) -> None:  # fmt: skip
    assert status_of(print_job(client, PDF, *attributes)) == status
    assert rig.store.list_jobs() == [] and list(rig.config.incoming_dir.iterdir()) == []


def test_the_printer_says_it_takes_job_passwords(client: Client) -> None:
    attributes = printer_attributes(client, "job-password-supported", "job-password-encryption-supported")
    assert attributes["job-password-supported"].first == 255
    assert attributes["job-password-encryption-supported"].all == ["none"]


def test_a_decompression_bomb_is_refused_and_leaves_nothing(client: Client, rig: Rig) -> None:
    """Finding 10: 48 MiB of zeros in 48 KiB of gzip; past the 16 MiB allowance the ratio (100) stops it."""
    bomb = gzip.compress(b"\0" * (48 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 100_000
    response = print_job(client, bomb, Attribute.keyword("compression", "gzip"), chunked=True)
    assert status_of(response) == Status.CLIENT_ERROR_REQUEST_ENTITY_TOO_LARGE
    assert "expands more than 100 times" in str(response.operation_attributes["status-message"].first)
    assert rig.store.list_jobs() == []
    assert list(rig.config.incoming_dir.iterdir()) == [] and list(rig.config.spool_dir.iterdir()) == []
    # A document that compresses well but not absurdly is taken whole.
    text = b"".join(b"line %06d of a long listing\n" % n for n in range(400_000))  # ~11 MiB, ratio ~5
    assert status_of(print_job(client, gzip.compress(text), Attribute.keyword("compression", "gzip"))) \
        == Status.SUCCESSFUL_OK  # fmt: skip


def test_other_users_jobs_hide_their_private_values_when_authentication_is_on(tmp_path: Path) -> None:
    """Finding 8: as CUPS's JobPrivateValues and JobPrivateAccess defaults (the owner and admins see them)."""
    from spooler.ipp.server.operations import PrinterOperations, RequestContext

    rig = Rig(tmp_path, ipp={"admin_users": ["root"]})
    site = rig.ipp_site()
    own = Client(site)
    job_id = job_id_of(print_job(own, PDF, user="alice"))
    operations = PrinterOperations(rig.service, site.operations.printer, admin_users=("root",), up_since=0,
                                   clock_seconds=rig.clock.seconds, job_privacy=True)  # fmt: skip

    def seen(operation: int, claimed: str | None) -> dict[str, Any]:
        # (with authentication, the resource puts the authenticated user in requesting-user-name)
        message = ipp_request(operation, Attribute.integer("job-id", job_id),
                              Attribute.keyword("requested-attributes", "all"), user=claimed)  # fmt: skip
        answers: list[IppMessage] = []
        operations.respond(message, RequestContext(PRINTER_URI, "127.0.0.1")).addCallback(answers.append)
        [group] = answers[0].groups_of(Tag.JOB)
        return {attribute.name: attribute.first for attribute in group.attributes}

    for operation in (Operation.GET_JOBS, Operation.GET_JOB_ATTRIBUTES):
        for other in (None, "bob"):
            hidden = seen(operation, other)
            assert "job-name" not in hidden and "job-originating-user-name" not in hidden
            assert hidden["job-id"] == job_id and "job-state" in hidden
        assert seen(operation, "alice")["job-name"] == "Quarterly report"
        assert seen(operation, "root")["job-originating-user-name"] == "alice"


@pytest.mark.parametrize(("given", "kept"), [
    ("urn:uuid:6F1C1F3E-9A44-4E0B-9B36-5C2F4D8E7A10", "urn:uuid:6f1c1f3e-9a44-4e0b-9b36-5c2f4d8e7a10"),
    ("urn:uuid:not-a-uuid", None), ("http://example.com/job", None),
])  # fmt: skip
def test_a_clients_job_uuid_is_kept_as_cups_does(client: Client, rig: Rig, given: str, kept: str | None) -> None:
    """A forwarding client finds a job whose answer it lost by the job-uuid it gave (spooler.dispatch.reconcile);
    a malformed one is ignored, never an error."""
    response = print_job(client, PDF, Attribute.uri("job-uuid", given))
    assert status_of(response) == Status.SUCCESSFUL_OK
    job_id = job_id_of(response)
    answered = response.job_attributes
    assert answered is not None
    own = f"urn:uuid:{rig.store.get(job_id).uuid}"
    assert answered["job-uuid"].first == (kept or own)
    listed = client.call(ipp_request(Operation.GET_JOBS, Attribute.keyword("requested-attributes", "job-id", "job-uuid"),
                                     user="alice"))  # fmt: skip
    [group] = [g for g in listed.groups_of(Tag.JOB) if g["job-id"].first == job_id]
    assert group["job-uuid"].first == (kept or own)
