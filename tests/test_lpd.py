"""LPD intake (RFC 1179) in process: the protocol over a StringTransport and a Clock, the job service behind it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from inprocess import Rig
from spooler.config import config_from_mapping
from spooler.intake.lpd import (
    STREAM_COUNT, LpdFactory, LpdProtocol, LpdProtocolError, check_file_name, format_queue_state, parse_control_file,
)  # fmt: skip
from spooler.model import ConfigError, Job, JobState
from spooler.store.spoolfiles import CHUNK_SIZE
from spooler.store.database import JobStore

CUPS_CONTROL = b"Hvm\nPalice\nJMy Title\nldfA185vm\nUdfA185vm\nNMy Title\n"


def factory_for(rig: Rig, *, idle: float = 30, max_connections: int = 10) -> LpdFactory:
    return LpdFactory(rig.service, rig.clock, config=rig.config, idle_timeout=idle, max_connections=max_connections)


def connect(rig: Rig, factory: LpdFactory | None = None,
            host: str = "127.0.0.1") -> tuple[LpdProtocol, StringTransport]:  # fmt: skip
    factory = factory or factory_for(rig)
    address = IPv4Address("TCP", host, 40000)
    protocol = factory.buildProtocol(address)
    assert isinstance(protocol, LpdProtocol)
    transport = StringTransport(peerAddress=address)
    protocol.makeConnection(transport)
    return protocol, transport


def control_file(name: str, data: bytes) -> bytes:
    return b"\x02%d %s\n" % (len(data), name.encode()) + data + b"\x00"


def data_file(name: str, data: bytes) -> bytes:
    return b"\x03%d %s\n" % (len(data), name.encode()) + data + b"\x00"


def send(protocol: LpdProtocol, data: bytes, step: int = 0) -> None:
    if not step:
        protocol.dataReceived(data)
        return
    for offset in range(0, len(data), step):
        protocol.dataReceived(data[offset : offset + step])


def spool_bytes(rig: Rig, job: Job) -> list[bytes]:
    return [(rig.config.spool_dir / d.file_name).read_bytes() for d in rig.store.documents(job.job_id)]


def assert_nothing_left(rig: Rig) -> None:
    assert rig.store.list_jobs() == []
    assert list(rig.config.incoming_dir.iterdir()) == []
    assert list(rig.config.spool_dir.iterdir()) == []


# -- receiving jobs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [0, 1, 7])
def test_cups_default_order_control_then_data(tmp_path: Path, step: int) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    payload = b"hello\x00world\n" * 100
    send(protocol, b"\x02default\n" + control_file("cfA185vm", CUPS_CONTROL) + data_file("dfA185vm", payload), step)
    assert transport.value() == b"\x00" * 5
    [job] = rig.store.list_jobs()
    assert (job.user, job.name, job.host, job.protocol, job.queue, job.copies) == (
        "alice", "My Title", "vm", "lpd", "default", 1)  # fmt: skip
    assert job.attributes["declared_format"] == "application/vnd.cups-raw"
    assert job.attributes["lpd"]["peer"] == "127.0.0.1"
    assert spool_bytes(rig, job) == [payload]
    protocol.readConnectionLost()
    assert transport.disconnecting and list(rig.config.incoming_dir.iterdir()) == []


def test_data_first_several_documents_in_control_file_order_with_copies(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    control = (b"Hws1\nPbob\nNsecond.txt\nNfirst.ps\nJjob name\nTtitle\nCA\nLbob\nMbob@example.com\n"
               b"fdfB002ws1\nfdfB002ws1\nodfA001ws1\nodfA001ws1\nUdfA001ws1\nUdfB002ws1\n")  # fmt: skip
    send(protocol, b"\x02default\n" + data_file("dfA001ws1", b"%!PS-Adobe-3.0\nfirst") +
         data_file("dfB002ws1", b"second text\n"))  # fmt: skip
    assert transport.value() == b"\x00" * 5 and rig.store.list_jobs() == []
    send(protocol, control_file("cfA001ws1", control))
    assert transport.value() == b"\x00" * 7
    [job] = rig.store.list_jobs()
    assert (job.user, job.name, job.copies) == ("bob", "job name", 2)  # J wins over N
    assert spool_bytes(rig, job) == [b"second text\n", b"%!PS-Adobe-3.0\nfirst"]  # the control file's order
    assert job.attributes["declared_format"] == "text/plain"
    lpd = job.attributes["lpd"]
    assert [(d["data_file"], d["format"], d["copies"], d["name"]) for d in lpd["documents"]] == [
        ("dfB002ws1", "f", 2, "second.txt"), ("dfA001ws1", "o", 2, "first.ps")]  # fmt: skip
    assert (lpd["title"], lpd["class"], lpd["banner"]) == ("title", "A", True)


def test_name_falls_back_to_n_then_t_and_user_to_l(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    for number, (lines, user, name) in enumerate([
        (b"Lcarol\nNsource.c\n", "carol", "source.c"),
        (b"Ttitle only\n", "anonymous", "title only"),
    ], start=1):  # fmt: skip
        protocol, _ = connect(rig)
        name_df = f"dfA00{number}h"
        send(protocol, b"\x02default\n" + data_file(name_df, b"x") +
             control_file(f"cfA00{number}h", lines + b"p" + name_df.encode() + b"\n"))  # fmt: skip
        job = rig.store.list_jobs()[-1]
        assert (job.user, job.name, job.attributes["declared_format"]) == (user, name, "text/x-lpd-pr")


def test_the_last_ack_waits_until_the_job_is_durable(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    factory = factory_for(rig)
    real_submit = rig.service.submit
    held: list[Deferred[Any]] = []

    def slow_submit(*args: Any) -> Deferred[Any]:
        later: Deferred[Any] = Deferred()
        held.append(later)
        later.addCallback(lambda _: real_submit(*args))
        return later

    rig.service.submit = slow_submit  # type: ignore[method-assign]
    protocol, transport = connect(rig, factory)
    send(protocol, b"\x02default\n" + control_file("cfA185vm", CUPS_CONTROL) + data_file("dfA185vm", b"data"))
    assert transport.value() == b"\x00" * 4  # the data file's ack is the last one: withheld
    assert rig.store.list_jobs() == []
    send(protocol, data_file("dfA200h", b"y" * 70_000))  # a client that does not wait: kept, then not read
    assert transport.producerState == "paused" and transport.value() == b"\x00" * 4
    held[0].callback(None)
    assert transport.value() == b"\x00" * 7 and len(rig.store.list_jobs()) == 1  # the next file was taken
    assert transport.producerState == "producing"


def test_a_failed_commit_is_refused_with_a_nonzero_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(tmp_path)
    # New jobs are committed by the group committer, on a connection of its own: fail every insert.
    monkeypatch.setattr(JobStore, "insert_jobs", lambda *a: (_ for _ in ()).throw(OSError("disk on fire")))
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n" + control_file("cfA185vm", CUPS_CONTROL) + data_file("dfA185vm", b"data"))
    assert transport.value() == b"\x00" * 4 + b"\x01" and transport.disconnecting
    assert list(rig.config.incoming_dir.iterdir()) == [] and list(rig.config.spool_dir.iterdir()) == []


def test_two_jobs_on_one_connection(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n" + control_file("cfA001h", b"Pa\nldfA001h\n") + data_file("dfA001h", b"one")
         + control_file("cfA002h", b"Pb\nldfA002h\n") + data_file("dfA002h", b"two"))  # fmt: skip
    assert transport.value() == b"\x00" * 9
    assert [(j.user, spool_bytes(rig, j)) for j in rig.store.list_jobs()] == [("a", [b"one"]), ("b", [b"two"])]


@pytest.mark.parametrize("count", [0, STREAM_COUNT, 125899906843000])
def test_a_zero_or_fake_count_streams_until_the_connection_ends(tmp_path: Path, count: int) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    payload = b"\x00stream\x00" * (CHUNK_SIZE // 4)
    send(protocol, b"\x02default\n" + control_file("cfA185vm", CUPS_CONTROL) + b"\x03%d dfA185vm\n" % count)
    send(protocol, payload, step=65536)
    assert transport.value() == b"\x00" * 4 and rig.store.list_jobs() == []
    protocol.readConnectionLost()
    [job] = rig.store.list_jobs()
    assert spool_bytes(rig, job) == [payload]
    assert transport.disconnecting and transport.value() == b"\x00" * 4  # the clean close is the ack


def test_a_counted_last_file_without_its_zero_byte_ends_with_the_connection(tmp_path: Path) -> None:
    rig = Rig(tmp_path)  # what the CUPS lpd backend sends with mode=stream
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n" + control_file("cfA185vm", CUPS_CONTROL) + b"\x0312 dfA185vm\nhello world\n")
    assert rig.store.list_jobs() == []
    protocol.readConnectionLost()
    [job] = rig.store.list_jobs()
    assert spool_bytes(rig, job) == [b"hello world\n"] and transport.disconnecting
    protocol, transport = connect(rig)  # but a counted file cut short is not a file
    send(protocol, b"\x02default\n" + control_file("cfA185vm", CUPS_CONTROL) + b"\x0312 dfA185vm\nhello")
    protocol.readConnectionLost()
    assert len(rig.store.list_jobs()) == 1 and list(rig.config.incoming_dir.iterdir()) == []


def test_a_stream_without_control_file_is_discarded(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n\x030 dfA185vm\nsome data")
    protocol.readConnectionLost()
    assert transport.disconnecting
    assert_nothing_left(rig)


def test_print_all_waiting_jobs_is_acknowledged(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    woken: list[float] = []
    rig.dispatcher.wake = lambda delay=0.0: woken.append(delay)  # type: ignore[method-assign]
    protocol, transport = connect(rig)
    send(protocol, b"\x01default\n")
    assert transport.value() == b"\x00" and transport.disconnecting and woken == [0.0]


def test_the_abort_subcommand_drops_what_was_received(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n" + data_file("dfA001h", b"x" * 100) + b"\x01\n")
    assert transport.value() == b"\x00" * 4
    send(protocol, control_file("cfA002h", b"Pz\nldfA002h\n") + data_file("dfA002h", b"kept"))
    [job] = rig.store.list_jobs()
    assert spool_bytes(rig, job) == [b"kept"] and len(list(rig.config.incoming_dir.iterdir())) == 0


# -- hostile and broken input ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dfA001../../etc/x", "dfA001/etc/passwd", "../cfA001h", "dfA", "dfA001h\x00x",
                                  "dfA001\xe9", "xfA001h", "dfA001" + "h" * 256, "cfA001h"])  # fmt: skip
def test_hostile_data_file_names_are_refused(tmp_path: Path, name: str) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n\x033 " + name.encode("latin-1") + b"\nabc\x00")
    assert transport.value() == b"\x00\x01" and transport.disconnecting
    assert_nothing_left(rig)


@pytest.mark.parametrize("line", [b"U/etc/passwd", b"f/etc/shadow", b"ldfA001../../x", b"odfA001h x"])
def test_control_lines_naming_paths_are_refused(tmp_path: Path, line: bytes) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n" + data_file("dfA001h", b"data") + control_file("cfA001h",
         b"Pmallory\nldfA001h\n" + line + b"\n"))  # fmt: skip
    assert transport.value() == b"\x00" * 4 + b"\x01" and transport.disconnecting
    assert_nothing_left(rig)


def test_lines_naming_files_not_received_on_the_connection_make_no_job(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n" + data_file("dfA001h", b"data") + control_file("cfA001h",
         b"Pmallory\nldfA001h\nUdfA999other\n"))  # fmt: skip
    assert transport.value() == b"\x00" * 5  # the control file is fine; the job waits for dfA999other
    protocol.readConnectionLost()
    assert transport.disconnecting
    assert_nothing_left(rig)


def test_a_control_file_without_data_is_not_a_job(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n" + control_file("cfA001h", b"Palice\nldfA001h\n"))
    protocol.readConnectionLost()
    assert_nothing_left(rig)
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n" + control_file("cfA002h", b"Palice\nJno print lines\n"))
    assert transport.value() == b"\x00\x00\x01"


def test_data_without_control_file_is_discarded(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n" + data_file("dfA001h", b"x" * (CHUNK_SIZE + 5)))
    assert transport.value() == b"\x00" * 3
    protocol.readConnectionLost()
    assert_nothing_left(rig)


def test_a_huge_count_is_refused_cleanly(tmp_path: Path) -> None:
    rig = Rig(tmp_path, limits={"max_job_size": "1MiB"})
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n\x03" + b"%d" % 10**12 + b" dfA001h\n")
    assert transport.value() == b"\x00\x01" and transport.disconnecting
    assert_nothing_left(rig)


def test_the_total_job_size_is_capped_across_data_files(tmp_path: Path) -> None:
    rig = Rig(tmp_path, limits={"max_job_size": 1000})
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n" + data_file("dfA001h", b"x" * 600))
    send(protocol, b"\x03600 dfA002h\n")
    assert transport.value() == b"\x00\x00\x00\x01"
    protocol, transport = connect(rig)  # a stream has no count: it is cut off when it passes the limit
    send(protocol, b"\x02default\n\x030 dfA001h\n" + b"y" * 900)
    assert not transport.disconnecting
    send(protocol, b"y" * 200)
    assert transport.disconnecting
    protocol.connectionLost(Failure(ConnectionLost()))
    assert_nothing_left(rig)


def test_too_many_data_files_are_refused(tmp_path: Path) -> None:
    rig = Rig(tmp_path, lpd={"max_data_files": 2})
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n" + data_file("dfA001h", b"1") + data_file("dfB001h", b"2")
         + data_file("dfC001h", b"3"))  # fmt: skip
    assert transport.value() == b"\x00" * 5 + b"\x01"
    assert_nothing_left(rig)


def test_the_same_data_file_twice_and_a_second_control_file_are_refused(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n" + data_file("dfA001h", b"1") + data_file("dfA001h", b"2"))
    assert transport.value() == b"\x00\x00\x00\x01"
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n" + control_file("cfA001h", b"ldfA001h\n") + control_file("cfA002h", b"ldfA001h\n"))
    assert transport.value() == b"\x00\x00\x00\x01"
    assert_nothing_left(rig)


def test_over_long_lines_and_control_files_are_refused(tmp_path: Path) -> None:
    rig = Rig(tmp_path, lpd={"max_line_length": 100, "max_control_file_size": 1000})
    protocol, transport = connect(rig)
    send(protocol, b"\x02" + b"q" * 200)  # no LF yet: refused as soon as it is too long
    assert transport.value() == b"\x01" and transport.disconnecting
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n" + control_file("cfA001h", b"J" + b"n" * 150 + b"\nldfA001h\n"))
    assert transport.value() == b"\x00\x00\x01"
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n\x021001 cfA001h\n")
    assert transport.value() == b"\x00\x01"
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n\x020 cfA001h\n")
    assert transport.value() == b"\x00\x01"
    assert_nothing_left(rig)


@pytest.mark.parametrize("request_line", [b"\x02nosuchqueue\n", b"\x02../etc\n", b"\x03\xff\xfe\n",
                                          b"\x05nosuch root 1\n", b"\x01\n", b"\x09default\n", b"\x02\n"])  # fmt: skip
def test_unknown_queues_and_commands_get_the_refusal_byte(tmp_path: Path, request_line: bytes) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    send(protocol, request_line + control_file("cfA001h", b"ldfA001h\n"))
    assert transport.value() == b"\x01" and transport.disconnecting
    assert_nothing_left(rig)


def test_a_named_queue_is_selected(tmp_path: Path) -> None:
    rig = Rig(tmp_path, queues={"default": {}, "color": {}})
    protocol, transport = connect(rig)
    send(protocol, b"\x02color\n" + control_file("cfA001h", b"Pa\nldfA001h\n") + data_file("dfA001h", b"c"))
    assert [job.queue for job in rig.store.list_jobs()] == ["color"]


def test_a_file_not_followed_by_a_zero_byte_resets_the_connection(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n\x033 dfA001h\nabcX")
    assert transport.disconnecting and transport.value() == b"\x00\x00"
    protocol.connectionLost(Failure(ConnectionLost()))
    assert_nothing_left(rig)


def test_an_idle_client_is_cut_off_and_its_files_dropped(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig, factory_for(rig, idle=30))
    send(protocol, b"\x02default\n\x03100 dfA001h\nhalf")
    rig.clock.advance(29)
    send(protocol, b"more")
    rig.clock.advance(29)
    assert not transport.disconnecting
    rig.clock.advance(2)
    assert transport.disconnecting
    protocol.connectionLost(Failure(ConnectionLost()))
    assert_nothing_left(rig)
    silent, silent_transport = connect(rig, factory_for(rig, idle=5))
    rig.clock.advance(6)
    assert silent_transport.disconnecting


def test_a_reset_mid_job_leaves_nothing(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    protocol, transport = connect(rig)
    send(protocol, b"\x02default\n" + control_file("cfA185vm", CUPS_CONTROL) + b"\x03300000 dfA185vm\n")
    send(protocol, b"x" * 200_000)
    protocol.connectionLost(Failure(ConnectionLost("reset")))
    assert_nothing_left(rig)


def test_connections_are_capped_and_the_allow_list_applies(tmp_path: Path) -> None:
    rig = Rig(tmp_path, lpd={"allow": ["10.0.0.0/8", "127.0.0.1"]})
    factory = factory_for(rig, max_connections=2)
    assert factory.buildProtocol(IPv4Address("TCP", "192.168.1.5", 721)) is None
    assert factory.buildProtocol(IPv4Address("TCP", "10.1.2.3", 50000)) is not None
    first, first_transport = connect(rig, factory)
    first.dataReceived(b"\x02def")  # it has sent something; the 10.1.2.3 connection never did
    # Full: a newcomer takes the slot of the connection that never sent a byte (spooler.intake.limits).
    assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1)) is not None
    assert first in factory.connections and not first_transport.disconnecting
    assert len(factory.connections) == 2


def test_file_names_and_control_files_parse_as_the_rfc_says() -> None:
    assert check_file_name(b"dfA123host.example.com", "df") == "dfA123host.example.com"
    assert check_file_name(b"cfA1_WIN-PC", "cf") == "cfA1_WIN-PC"
    with pytest.raises(LpdProtocolError):
        check_file_name(b"cfA123host", "df")
    control = parse_control_file(b"Hh\r\nPu\n\nS1 2\nW80\nI4\n1dfA001h\nvdfA001h\n", max_line_length=100)
    assert control.prints == [("v", "dfA001h")] and control.ignored == ["S", "W", "I", "1"]


# -- queue state and removal -------------------------------------------------------------------------


def queue_with_jobs(rig: Rig) -> None:
    for user, name, data in [("alice", "report", b"%PDF-1.4 x"), ("bob", "notes", b"text"), ("alice", "more", b"zz")]:
        protocol, _ = connect(rig)
        control = f"Hws1\nP{user}\nJ{name}\nN{name}.txt\nldfA001h\n".encode()
        send(protocol, b"\x02default\n" + control_file("cfA001h", control) + data_file("dfA001h", data))


def ask(rig: Rig, line: bytes, factory: LpdFactory | None = None) -> str:
    protocol, transport = connect(rig, factory)
    send(protocol, line)
    assert transport.disconnecting
    return transport.value().decode()


def test_short_and_long_queue_state(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    assert ask(rig, b"\x03default\n") == "default is ready\nno entries\n"
    queue_with_jobs(rig)
    rig.store.update_job(rig.store.get(1).evolve(state=JobState.PROCESSING))
    short = ask(rig, b"\x03default\n").splitlines()
    assert short[0] == "default is ready and printing"
    assert short[1].split() == ["Rank", "Owner", "Job", "File(s)", "Total", "Size"]
    assert [line.split() for line in short[2:]] == [
        ["active", "alice", "1", "report", "10", "bytes"],
        ["1st", "bob", "2", "notes", "4", "bytes"],
        ["2nd", "alice", "3", "more", "2", "bytes"]]  # fmt: skip
    assert [line.split()[2] for line in ask(rig, b"\x03default alice\n").splitlines()[2:]] == ["1", "3"]
    assert [line.split()[2] for line in ask(rig, b"\x03default 2\n").splitlines()[2:]] == ["2"]
    long = ask(rig, b"\x04default bob\n")
    assert long.splitlines()[2:] == ["bob: 1st                                [job 002ws1]",
                                     "        notes.txt                       4 bytes"]  # fmt: skip


def test_queue_state_layout_with_held_jobs() -> None:
    job = Job(job_id=7, uuid="u", queue="q", protocol="lpd", user="u" * 20, host="h", name="n" * 60,
              document_format="text/plain", size=5, state=JobState.PENDING_HELD, reason="", created_at=0)  # fmt: skip
    text = format_queue_state("q", [job], long=False, document_sizes=lambda job: [])
    assert text.splitlines()[2].split() == ["held", "u" * 10, "7", "n" * 37, "5", "bytes"]


def test_only_the_owner_or_an_admin_agent_removes_jobs(tmp_path: Path) -> None:
    rig = Rig(tmp_path, lpd={"admin_agents": ["root"]})
    queue_with_jobs(rig)
    assert ask(rig, b"\x05default bob 1\n") == "job 1: permission denied\n"
    assert ask(rig, b"\x05default bob 2 99\n") == "job 99: no such job in default\njob 2 (notes) dequeued\n"
    assert ask(rig, b"\x05default mallory alice\n") == "job 1: permission denied\njob 3: permission denied\n"
    assert ask(rig, b"\x05default alice\n") == "job 1 (report) dequeued\n"  # no list: the agent's first job
    assert ask(rig, b"\x05default root 3\n") == "job 3 (more) dequeued\n"
    states = {job.job_id: (job.state, job.reason) for job in rig.store.list_jobs()}
    assert states == {1: (JobState.CANCELED, "job-canceled-by-user"), 2: (JobState.CANCELED, "job-canceled-by-user"),
                      3: (JobState.CANCELED, "job-canceled-by-operator")}  # fmt: skip
    assert ask(rig, b"\x05default\n") == "\x01"  # no agent


def test_lpd_config_keys(tmp_path: Path) -> None:
    config = config_from_mapping({"listen": {"lpd": "tcp:515"}, "lpd": {"admin_agents": ["root"], "allow": ["::1"],
                                  "max_control_file_size": "16KiB"}}, base=tmp_path, state_dir=tmp_path)  # fmt: skip
    assert (config.listen.lpd, config.lpd.admin_agents, config.lpd.max_control_file_size) == ("tcp:515", ("root",),
                                                                                               16384)  # fmt: skip
    assert config_from_mapping({"listen": {"lpd": ""}}, base=tmp_path, state_dir=tmp_path).listen.lpd is None
    for raw, key in [({"lpd": {"allow": ["10.0.0.300/8"]}}, "lpd.allow"), ({"lpd": {"admin_agents": "root"}},
                     "lpd.admin_agents"), ({"lpd": {"max_data_files": 0}}, "lpd.max_data_files"),
                     ({"lpd": {"bogus": 1}}, "lpd.bogus")]:  # fmt: skip
        with pytest.raises(ConfigError) as error:
            config_from_mapping(raw, base=tmp_path, state_dir=tmp_path)
        assert error.value.key == key


def test_the_sample_config_shows_every_lpd_key(tmp_path: Path) -> None:
    from spooler.config import load_config

    sample = Path(__file__).parent.parent / "samples" / "spooler.toml"
    config = load_config(sample, state_dir=tmp_path)
    assert config.listen.lpd == "tcp:8515:interface=127.0.0.1" and config.lpd.allow == ()
    text = sample.read_text()
    for key in ("lpd", "admin_agents", "allow", "max_control_file_size", "max_line_length", "max_data_files"):
        assert f"\n{key} =" in text, key
