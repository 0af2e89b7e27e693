"""The user name on the way to the central server's raw queue: `@PJL SET USERNAME` is added, correctly
framed, only when the job has no user line (table of heads), and end to end through a real spooler
forwarding LPD and IPP jobs to the reference server's raw port, which reads the user back from PJL."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from chaos_harness import ipp_print_job, lpd_print
from drivers.pjl import UEL, parse_pjl_header, username_insertion
from spooler_harness import RefServer, Spooler, short_tempdir, wait_for

LINE = b'@PJL SET USERNAME="alice"\r\n'


@pytest.mark.parametrize(("head", "expected"), [
    # no user line: the line goes right after the job's UEL, before its own first @PJL line
    (UEL + b"@PJL\r\n@PJL JOB NAME=\"x\"\r\n@PJL ENTER LANGUAGE=PCL\r\n\x1bE",
     (UEL + LINE, len(UEL))),
    (UEL + UEL + b"\r\n@PJL ENTER LANGUAGE = POSTSCRIPT\n%!PS",  # two UELs, LF only, ENTER first
     (UEL + UEL + b"\r\n" + LINE, len(UEL) * 2 + 2)),
    (b"@PJL JOB\r\n@PJL ENTER LANGUAGE=PDF\r\n%PDF", (LINE, 0)),  # PJL without a UEL
    # a user line already there (any of the sources PJL parsing knows): left alone
    (UEL + b'@PJL\r\n@PJL SET USERNAME = "bob"\r\n@PJL ENTER LANGUAGE=PDF\r\n%PDF', (b"", 0)),
    (UEL + b'@PJL SET JOBATTR="JobAcct1=bob"\r\n@PJL ENTER LANGUAGE=PCL\r\n', (b"", 0)),
    (UEL + b'@PJL COMMENT "Username: bob; App Filename: x"\r\n@PJL ENTER LANGUAGE=PCL\r\n', (b"", 0)),
    # not PJL at all: None (the caller wraps the whole job in a PJL job of its own)
    (b"%PDF-1.7\n", None),
    (b"\x1bE\x1b&l1O", None),
])  # fmt: skip
def test_username_is_inserted_only_when_the_job_has_no_user(head: bytes, expected: object) -> None:
    result = username_insertion(head, LINE)
    assert result == expected
    if result and result[0]:
        prefix, skip = result
        rewritten = prefix + head[skip:]
        header = parse_pjl_header(rewritten)
        assert header is not None and header.user == "alice"
        assert rewritten.count(b"ENTER LANGUAGE") == head.count(b"ENTER LANGUAGE")  # the PDL data is untouched
        assert rewritten.endswith(head[skip:])


@pytest.fixture
def central() -> Iterator[RefServer]:
    server = RefServer(short_tempdir("rs"), raw=True)
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.mark.e2e
def test_raw_queue_gets_the_user_in_pjl(central: RefServer) -> None:
    spooler = Spooler(short_tempdir(), server__queue_uri=f"socket://127.0.0.1:{central.raw_port}",
                      server__probe_interval="250ms", login__share_listen="")  # fmt: skip
    try:
        spooler.start()
        no_user = UEL + b'@PJL\r\n@PJL JOB NAME="budget"\r\n@PJL ENTER LANGUAGE=PCL\r\n\x1bE(s0p12h0s3b4099T\x1bE'
        assert lpd_print(spooler.lpd_port, "default", "alice", "budget", no_user, 1)
        plain = b"%!PS-Adobe-3.0\nshowpage\n%%EOF\n"
        assert ipp_print_job(spooler.ipp_port, "default", "bob", "notes", plain) in (0, 1, 2)
        has_user = UEL + b'@PJL SET USERNAME="carol"\r\n@PJL ENTER LANGUAGE=PCL\r\n\x1bE'
        assert lpd_print(spooler.lpd_port, "default", "someone-else", "own", has_user, 2)
        received = central.wait_received(3, timeout=30)
        datas = [path.read_bytes() for path in received]
        users = {json.dumps(central.sidecar(p)["user"]) for p in received}
        assert users == {'"alice"', '"bob"', '"carol"'}, users
        alice = next(d for d in datas if b"budget" in d)
        assert alice == UEL + b'@PJL SET USERNAME="alice"\r\n' + no_user[len(UEL):]  # inserted, framed, rest intact
        bob = next(d for d in datas if b"showpage" in d)
        assert bob.startswith(UEL + b"@PJL\r\n") and b'@PJL SET USERNAME="bob"\r\n' in bob and bob.endswith(UEL)
        assert next(d for d in datas if b"carol" in d) == has_user  # had a user: sent as it was
    finally:
        spooler.cleanup()
