"""The chaos run, small: IPP, LPD and raw clients send numbered jobs while the spooler is killed with
`kill -9` and restarted and the central server and the device go down and up; every acknowledged job
arrives exactly once, in order per queue, nothing partial is delivered as if whole (bench/chaos.py is
the long version). The checker itself is tested first, on made-up deliveries, so that it can fail."""

from __future__ import annotations

import random
import shutil

import pytest

from chaos_harness import ChaosRun, Copy, Submission, check, find_copies, make_payload, summary
from spooler_harness import short_tempdir

# -- the checker, on made-up runs ---------------------------------------------------------------------------


def submission(token: str, started: float, ended: float, acked: bool = True, queue: str = "default") -> Submission:
    return Submission(token, "raw", "raw0", queue, 100, started, ended, acked, "closed" if acked else "reset")


def jobs_for(*tokens: str) -> list[dict[str, object]]:
    return [{"name": token, "job_id": number, "state": "completed"} for number, token in enumerate(tokens, 1)]


def test_payloads_are_recognised_whole_or_not() -> None:
    payload = make_payload("r1.raw0.1", 5000, random.Random(1))
    [whole] = find_copies(b"\x1b%-12345X@PJL\r\n" + payload + b"\x1b%-12345X", "device", 1.0, 2.0)
    assert (whole.token, whole.whole) == ("r1.raw0.1", True)
    [cut] = find_copies(payload[:3000], "device", 1.0, 2.0)
    assert not cut.whole
    [flipped] = find_copies(payload[:100] + bytes([payload[100] ^ 1]) + payload[101:], "server", 1.0, 2.0)
    assert not flipped.whole


def test_a_clean_run_has_no_failures() -> None:
    subs = [submission("a", 0, 1), submission("b", 2, 3), submission("c", 4, 5, acked=False)]
    copies = [Copy("a", True, "server", 1.5, 1.6), Copy("b", True, "device", 3.5, 3.6)]
    report = check(subs, copies, [], jobs_for("a", "b"), [])
    assert report["failures"] == 0 and report["delivered"] == 2 and report["lost"] == []
    assert report["not_acknowledged"]["absent"] == 1


def test_lost_duplicated_and_out_of_order_jobs_are_failures() -> None:
    subs = [submission("a", 0, 1), submission("b", 2, 3), submission("c", 4, 5)]
    copies = [Copy("b", True, "server", 3.5, 3.6), Copy("b", True, "server", 3.7, 3.8),  # twice at the server
              Copy("c", True, "device", 3.4, 3.45)]  # c leaves before b, acknowledged before c was sent; a is lost
    report = check(subs, copies, [], jobs_for("a", "b", "c"), [])
    assert report["lost"] == ["a"]
    assert report["duplicates"]["bug"] == 1
    assert report["out_of_order"] == 1
    assert report["failures"] == 3


def test_a_raw_duplicate_across_a_kill_is_unavoidable_unless_the_delivery_was_recorded() -> None:
    subs = [submission("a", 0, 1)]
    copies = [Copy("a", True, "device", 2.0, 2.1), Copy("a", True, "device", 4.0, 4.1)]
    killed = [(2.05, "spooler killed")]
    report = check(subs, copies, killed, jobs_for("a"), [])
    assert report["duplicates"] == {"raw_kill_unavoidable": 1, "raw_device_off_unavoidable": 0,
                                    "server_died_mid_forward": 0, "held_copy_not_canceled": 0,
                                    "server_cannot_be_asked": 0, "bug": 0}  # fmt: skip
    assert report["failures"] == 0
    recorded = [{"job_id": 1, "time": "1970-01-01T00:00:02.080+00:00"}]  # completed, then sent again
    assert check(subs, copies, [(2.5, "spooler killed")], jobs_for("a"), recorded)["duplicates"]["bug"] == 1
    assert check(subs, copies, [], jobs_for("a"), [])["duplicates"]["bug"] == 1  # no kill: no excuse
    then_server = [copies[0], Copy("a", True, "server", 4.0, 4.1)]  # after the restart the server was back
    assert check(subs, then_server, killed, jobs_for("a"), [])["duplicates"]["raw_kill_unavoidable"] == 1


def test_a_server_copy_then_a_device_copy_is_a_failure_only_where_the_server_holds_jobs() -> None:
    """A forward whose answer was lost as the server died, then printed on the device: the server's held
    copy is canceled when it returns ("ipp-held"); a server that prints at once, or an LPD or raw queue
    nobody can ask, makes it unavoidable."""
    subs = [submission("a", 0, 1)]
    copies = [Copy("a", True, "server", 2.0, 2.1), Copy("a", True, "device", 4.0, 4.1)]
    died = [(2.05, "server down (killed)")]
    held = check(subs, copies, died, jobs_for("a"), [], server_queue="ipp-held")
    assert held["duplicates"]["held_copy_not_canceled"] == 1 and held["failures"] == 1
    for queue in ("ipp", "lpd", "raw"):
        report = check(subs, copies, died, jobs_for("a"), [], server_queue=queue)
        assert report["duplicates"]["server_died_mid_forward"] == 1 and report["failures"] == 0


def test_twice_at_an_lpd_or_raw_server_queue_is_unavoidable_only_across_an_outage_or_a_kill() -> None:
    subs = [submission("a", 0, 1)]
    copies = [Copy("a", True, "server", 2.0, 2.1), Copy("a", True, "server", 4.0, 4.1)]
    for queue in ("lpd", "raw"):
        cut = check(subs, copies, [(2.05, "server down (killed)")], jobs_for("a"), [], server_queue=queue)
        assert cut["duplicates"]["server_cannot_be_asked"] == 1 and cut["failures"] == 0
        assert "sent again to a server queue that cannot be asked 1" in summary(cut, 60)
        calm = check(subs, copies, [], jobs_for("a"), [], server_queue=queue)
        assert calm["duplicates"]["bug"] == 1 and calm["failures"] == 1
    ipp = check(subs, copies, [(2.05, "server down (killed)")], jobs_for("a"), [], server_queue="ipp-held")
    assert ipp["duplicates"]["bug"] == 1  # an IPP server is asked: never twice there


def test_the_in_doubt_line_and_empty_jobs_left_at_a_holding_server() -> None:
    subs = [submission("a", 0, 1)]
    copies = [Copy("a", True, "device", 4.0, 4.1)]
    doubt = {"open": 0, "canceled": 3, "printed_at_server": 0, "delivered": 1, "not_at_server": 2, "kept": 0,
             "unresolved": 0, "empty_jobs_left_at_server": 0}  # fmt: skip
    report = check(subs, copies, [], jobs_for("a"), [], in_doubt=doubt)
    line = summary(report, 60).splitlines()[5]
    assert line.startswith("in-doubt forwards 6 (the server holds its jobs for release): reconciled by cancel 3,")
    assert report["failures"] == 0
    left = check(subs, copies, [], jobs_for("a"), [], in_doubt=doubt | {"empty_jobs_left_at_server": 1})
    assert left["failures"] == 1  # an empty Create-Job reconciliation should have canceled
    lpd = check(subs, copies, [], jobs_for("a"), [], in_doubt={"unresolved": 2}, server_queue="lpd")
    assert "the server's lpd queue cannot be asked what it kept, so 2 were left unresolved" in summary(lpd, 60)


def test_a_partial_copy_is_a_failure_unless_a_kill_or_the_device_cut_it() -> None:
    subs = [submission("a", 0, 1)]
    whole = Copy("a", True, "device", 5.0, 5.1)
    assert check(subs, [Copy("a", False, "device", 2.0, 2.1), whole], [(2.05, "spooler killed")],
                 jobs_for("a"), [])["failures"] == 0  # fmt: skip
    assert check(subs, [Copy("a", False, "device-cut", 2.0, 2.1), whole], [], jobs_for("a"), [])["failures"] == 0
    assert check(subs, [Copy("a", False, "server", 2.0, 2.1), whole], [], jobs_for("a"), [])["failures"] == 1


# -- the real thing, small ----------------------------------------------------------------------------------


@pytest.mark.e2e
def test_each_acknowledged_job_needs_exactly_one_accounting_record_at_the_server() -> None:
    subs = [submission("a", 0, 1), submission("b", 2, 3)]
    copies = [Copy("a", True, "server", 1.5, 1.6), Copy("b", True, "device", 3.5, 3.6)]
    one_each = [{"record_id": "s:1", "job_id": 1}, {"record_id": "s:2", "job_id": 2}]
    assert check(subs, copies, [], jobs_for("a", "b"), [], one_each)["failures"] == 0
    missing = check(subs, copies, [], jobs_for("a", "b"), [], one_each[:1])
    assert (missing["failures"], missing["accounting_missing"]) == (1, [2])
    doubled = check(subs, copies, [], jobs_for("a", "b"), [], one_each + [{"record_id": "s:2b", "job_id": 2}])
    assert (doubled["failures"], doubled["accounting_duplicated"]) == (1, [2])
    stray = check(subs, copies, [], jobs_for("a", "b"), [], one_each + [{"record_id": "s:9", "job_id": 9}])
    assert (stray["failures"], stray["accounting_unknown_jobs"]) == (1, [9])


def test_chaos_small() -> None:
    root = short_tempdir("chaos")
    lines: list[str] = []
    # Every kind of trouble, in an order that makes each count: the server goes first (jobs go to the
    # device), the spooler is killed while it is offline, the device is switched off too (jobs wait),
    # the server and the device come back (failback), the spooler is killed again, and so on.
    script = ["server", "spooler", "device", "server", "device", "spooler", "server", "spooler", "device", "spooler"]
    run = ChaosRun(root, 12.0, seed=11, pace=1.0, think=0.25, script=script, log=lines.append)
    try:
        report = run.run()
        text = summary(report, 12.0)
        assert report["failures"] == 0, text + "\n" + "\n".join(lines) + f"\n{report}"
        assert report["kills"] == script.count("spooler"), text
        assert report["delivered_at_server"] > 0 and report["delivered_at_device"] > 0, text
        assert all(v["acknowledged"] > 0 for v in report["by_protocol"].values()), text
        assert report["lost"] == [] and report["out_of_order"] == 0
        assert report["accounting_records_at_server"] >= report["acknowledged"], text
        assert report["server_queue"] == "ipp-held" and report["in_doubt"]["open"] == 0, text
    finally:
        shutil.rmtree(root, ignore_errors=True)
