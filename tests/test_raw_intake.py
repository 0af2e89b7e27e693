"""Raw 9100 intake in process: the protocol over a StringTransport, the job service behind it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.internet.error import ConnectionLost

from inprocess import Rig
from spooler.model import HoldKeyRefused, JobState, NotAuthorized, SpoolFull
from spooler.intake.raw import RawJobFactory, RawJobProtocol
from spooler.store.spoolfiles import CHUNK_SIZE
from spooler.verifiers import check_verifier
from spooler_harness import pjl_job


def connect(rig: Rig, *, idle: float = 30, max_connections: int = 10) -> tuple[RawJobProtocol, StringTransport]:
    factory = RawJobFactory(rig.service, rig.clock, idle_timeout=idle, max_connections=max_connections)
    return connect_to(factory)


def connect_to(factory: RawJobFactory) -> tuple[RawJobProtocol, StringTransport]:
    address = IPv4Address("TCP", "127.0.0.1", 40000)
    protocol = factory.buildProtocol(address)
    assert isinstance(protocol, RawJobProtocol)
    transport = StringTransport(peerAddress=address)
    protocol.makeConnection(transport)
    return protocol, transport


def test_a_job_is_acknowledged_by_closing_only_after_it_is_durable(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    data = pjl_job("alice", "Quarterly report", b"%PDF-1.7\n...", extra="@PJL SET COPIES=2\r\n@PJL SET DUPLEX=ON\r\n")
    for offset in range(0, len(data), 7):
        protocol.dataReceived(data[offset : offset + 7])
    assert not transport.disconnecting
    assert rig.store.list_jobs() == []
    protocol.readConnectionLost()
    assert transport.disconnecting  # the close is the acknowledgement
    [job] = rig.store.list_jobs()
    assert (job.user, job.name, job.copies, job.sides) == ("alice", "Quarterly report", 2, "two-sided-long-edge")
    assert (job.document_format, job.protocol, job.host, job.size) == ("application/pdf", "raw", "127.0.0.1", len(data))
    [document] = rig.store.documents(job.job_id)
    assert (rig.config.spool_dir / document.file_name).read_bytes() == data
    assert list(rig.config.incoming_dir.iterdir()) == []


def test_a_cut_connection_leaves_no_job_and_no_file(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    protocol.dataReceived(b"x" * (CHUNK_SIZE + 10))
    protocol.connectionLost(Failure(ConnectionLost("reset")))
    assert rig.store.list_jobs() == []
    assert list(rig.config.incoming_dir.iterdir()) == []
    assert list(rig.config.spool_dir.iterdir()) == []


def test_an_idle_client_is_disconnected_and_its_data_discarded(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig, idle=30)
    protocol.dataReceived(b"some")
    rig.clock.advance(29)
    protocol.dataReceived(b"more")
    rig.clock.advance(29)
    assert not transport.disconnecting
    rig.clock.advance(2)
    assert transport.disconnecting
    protocol.connectionLost(Failure(ConnectionLost()))
    assert rig.store.list_jobs() == [] and list(rig.config.incoming_dir.iterdir()) == []


def test_an_oversize_job_is_cut_off(tmp_path: Path) -> None:
    rig = Rig(tmp_path, limits={"max_job_size": 100})
    protocol, transport = connect(rig)
    protocol.dataReceived(b"a" * 60)
    assert not transport.disconnecting
    protocol.dataReceived(b"a" * 60)
    assert transport.disconnecting
    protocol.readConnectionLost()
    protocol.connectionLost(Failure(ConnectionLost()))
    assert rig.store.list_jobs() == [] and list(rig.config.incoming_dir.iterdir()) == []


def test_below_the_free_space_floor_new_jobs_are_refused(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spool={"min_free_space": "1000TB"})
    with pytest.raises(SpoolFull):
        rig.service.open_incoming()
    protocol, transport = connect(rig)
    assert transport.disconnecting and protocol.incoming is None


def test_over_the_limit_a_newcomer_takes_the_slot_of_the_idlest_connection(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    factory = RawJobFactory(rig.service, rig.clock, idle_timeout=30, max_connections=2)
    silent, silent_transport = connect_to(factory)
    rig.clock.advance(5)
    sending, sending_transport = connect_to(factory)
    sending.dataReceived(b"part of a job")
    rig.clock.advance(5)
    # Full: the connection that never sent a byte makes room (spooler.intake.limits).
    third, third_transport = connect_to(factory)
    assert silent_transport.disconnecting and not sending_transport.disconnecting
    assert factory.connections == {sending, third}
    # Then the one silent the longest among those that sent something; one committing its job never.
    rig.clock.advance(5)
    third.dataReceived(b"x")
    rig.clock.advance(5)
    connect_to(factory)
    assert sending_transport.disconnecting and not third_transport.disconnecting


def test_over_the_limit_with_every_job_committing_a_newcomer_is_refused(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    factory = RawJobFactory(rig.service, rig.clock, idle_timeout=30, max_connections=2)
    committing = [connect_to(factory)[0] for _ in range(2)]
    for protocol in committing:
        protocol.submitted = True  # as between the client's end of stream and the durable commit
    assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1)) is None
    committing[0].connectionLost(Failure(ConnectionLost()))
    assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1)) is not None


def test_an_empty_connection_is_not_a_job(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    protocol.readConnectionLost()
    assert transport.disconnecting and rig.store.list_jobs() == []


@pytest.mark.parametrize(
    ("data", "user", "name", "document_format"),
    [
        (b"%!PS-Adobe-3.0\n%%Pages: 1\n", "anonymous", "Untitled", "application/postscript"),
        (b"plain text\n", "anonymous", "Untitled", "text/plain"),
        (b"\x1b%-12345X@PJL SET USERNAME=\xff\xfe\x00\x01garbage\r\n@PJL ENTER LANGUAGE=PCLXL\r\n) HP-PCL XL;",
         None, "Untitled", "application/vnd.hp-pclxl"),
        (b"\x1b%-12345X@PJL \x00\x00\x00 = = \"\r\n\x1bE\x1b&l1X", "anonymous", "Untitled",
         "application/vnd.hp-pcl"),
        (b'\x1b%-12345X@PJL SET JOBATTR="JobAcct1=bob"\r\n@PJL COMMENT "x"\r\n@PJL ENTER LANGUAGE=POSTSCRIPT\r\n%!',
         "bob", "Untitled", "application/postscript"),
    ],
)  # fmt: skip
def test_users_names_and_formats_from_the_job_itself(tmp_path: Path, data: bytes, user: str | None, name: str,
                                                     document_format: str) -> None:  # fmt: skip
    rig = Rig(tmp_path)
    job = rig.submit(data)
    if user is not None:
        assert job.user == user
    assert job.user.isprintable() and job.user
    assert (job.name, job.document_format) == (name, document_format)


PRIVATE = '@PJL SET HOLD=ON\r\n@PJL SET HOLDTYPE=PRIVATE\r\n@PJL SET HOLDKEY="4711"\r\n'


def outcome(deferred: Any) -> Any:
    results: list[Any] = []
    deferred.addBoth(results.append)
    assert results, "did not finish synchronously"
    return results[0].value if isinstance(results[0], Failure) else results[0]


@pytest.mark.parametrize("inline_max, body", [(0, b"%PDF-1.4"), (65536, b"%PDF-1.4"),
                                              (0, b"%PDF-1.4" + b"x" * (3 * CHUNK_SIZE))])
def test_a_private_print_job_is_held_and_its_key_never_stored(tmp_path: Path, inline_max: int, body: bytes) -> None:
    """The key leaves the job's head before any byte is written: not in the spool file (small,
    inline in the database, or streamed in chunks), the database or its WAL; only its verifier is."""
    rig = Rig(tmp_path, spool={"inline_max": inline_max})
    data = pjl_job("carol", "payslips", body, extra=PRIVATE)
    job = rig.submit(data)
    assert (job.state, job.reason) == (JobState.PENDING_HELD, "job-password-wait")
    assert job.hold_key_verifier and "4711" not in job.hold_key_verifier
    assert check_verifier("4711", job.hold_key_verifier) and not check_verifier("4712", job.hold_key_verifier)
    assert job.attributes["pjl"]["hold"] == "ON" and job.user == "carol"
    for path in rig.config.state_dir.rglob("*"):
        if path.is_file():
            assert b"4711" not in path.read_bytes(), path
    [stored] = outcome(rig.documents.files(job.job_id))
    assert stored.read_bytes() == pjl_job("carol", "payslips", body)  # the hold and its key are gone
    assert job.size == len(stored.read_bytes())


def test_a_private_job_is_released_only_with_its_key(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    job = rig.submit(pjl_job("carol", "payslips", b"%PDF-1.4", extra=PRIVATE))
    with pytest.raises(HoldKeyRefused) as refused:
        rig.service.release(job.job_id, requester="carol")
    assert refused.value.reason == "key-required"
    theirs = outcome(rig.service.release_with_key(job.job_id, "4711", requester="mallory"))
    assert type(theirs) is NotAuthorized  # the owner rule comes first: the key is not even tried
    wrong = outcome(rig.service.release_with_key(job.job_id, "0000", requester="carol"))
    assert isinstance(wrong, HoldKeyRefused) and wrong.reason == "wrong-key"
    assert rig.store.get(job.job_id).state == JobState.PENDING_HELD
    released = outcome(rig.service.release_with_key(job.job_id, "4711", requester="carol", to_device=True))
    assert released.state == JobState.PENDING and released.attributes["release_to_device"] is True
    assert rig.store.get(job.job_id).attributes["release_to_device"] is True


def test_wrong_keys_lock_the_job_and_a_restart_does_not_lift_it(tmp_path: Path) -> None:
    from spooler.login.budget import FailureBudgets

    rig = Rig(tmp_path, budgets=lambda clock: FailureBudgets.open(tmp_path / "login.db", clock))
    job = rig.submit(pjl_job("carol", "payslips", b"%PDF-1.4", extra=PRIVATE))
    for key in ("1", "2", "3", "4", "5"):
        assert outcome(rig.service.release_with_key(job.job_id, key, requester="carol")).reason == "wrong-key"
    locked = outcome(rig.service.release_with_key(job.job_id, "4711", requester="carol"))
    assert isinstance(locked, HoldKeyRefused) and locked.reason == "locked" and locked.retry_after == 300
    rig.service.key_budgets.close()
    # A restart: a new job service on the same state folder, its budgets read from the same file.
    restarted = Rig(tmp_path, budgets=lambda clock: FailureBudgets.open(tmp_path / "login.db", clock))
    assert restarted.clock.seconds() == rig.clock.seconds()
    assert outcome(restarted.service.release_with_key(job.job_id, "4711", requester="carol")).reason == "locked"
    restarted.clock.advance(300)
    assert outcome(restarted.service.release_with_key(job.job_id, "4711", requester="carol")).state == JobState.PENDING


def test_only_an_admin_releases_a_private_job_without_its_key(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    job = rig.submit(pjl_job("carol", "payslips", b"%PDF-1.4", extra=PRIVATE))
    with pytest.raises(NotAuthorized):
        rig.service.release(job.job_id, requester="carol", without_key=True)
    assert rig.service.release(job.job_id, admin=True, without_key=True).state == JobState.PENDING


def test_only_the_owner_or_an_admin_may_change_a_job(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    job = rig.submit(pjl_job("alice", "mine", b"%PDF"))
    with pytest.raises(NotAuthorized):
        rig.service.cancel(job.job_id, requester="mallory")
    with pytest.raises(NotAuthorized):
        rig.service.hold(job.job_id)
    assert rig.service.hold(job.job_id, requester="alice").state == JobState.PENDING_HELD
    assert rig.service.cancel(job.job_id, admin=True).state == JobState.CANCELED


def test_back_pressure_pauses_the_client_while_the_writer_thread_is_behind(tmp_path: Path) -> None:
    """With a writer thread that has not run yet, the socket is paused past the high-water mark."""
    from twisted.internet.defer import Deferred

    queued: list[tuple[Deferred[object], object]] = []

    def slow_thread(function, *args):  # type: ignore[no-untyped-def]
        d: Deferred[object] = Deferred()
        queued.append((d, lambda: function(*args)))
        return d

    rig = Rig(tmp_path, run_in_thread=slow_thread)
    protocol, transport = connect(rig)
    for _ in range(12):
        protocol.dataReceived(b"z" * CHUNK_SIZE)
    assert transport.producerState == "paused"
    while queued:
        d, work = queued.pop(0)
        d.callback(work())
    assert transport.producerState == "producing"
    assert protocol.incoming is not None and protocol.incoming.size == 12 * CHUNK_SIZE


def test_a_job_of_several_documents(tmp_path: Path) -> None:
    """LPD (several data files per control file) and IPP (Send-Document) make such jobs."""
    from spooler.intake.base import JobRequest

    rig = Rig(tmp_path)
    documents = []
    for content in (b"%PDF-1.4 first", b"%!PS second", b"third, plain text"):
        incoming = rig.service.open_incoming()
        incoming.write(content)
        documents.append(incoming)
    results: list[object] = []
    rig.service.submit(documents, JobRequest(protocol="lpd", host="ws1", user="ann", name="three")).addBoth(
        results.append
    )
    [job] = results
    assert (job.size, job.document_format, job.user) == (14 + 11 + 17, "application/pdf", "ann")  # type: ignore[attr-defined]
    stored = rig.store.documents(1)
    assert [d.document_format for d in stored] == ["application/pdf", "application/postscript", "text/plain"]
    assert [(rig.config.spool_dir / d.file_name).read_bytes()[:5] for d in stored] == [b"%PDF-", b"%!PS ", b"third"]
    rig.dispatcher.start()
    rig.clock.advance(0)
    assert rig.backend.attempts == [(1, b"%PDF-1.4 first%!PS secondthird, plain text")]
