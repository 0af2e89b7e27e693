"""In-doubt forwards (spooler.dispatch.reconcile): the pure decision table, then the dispatcher and reconciler
in process with a Clock, a scripted central server that can be asked (as an IPP queue) and a scripted
device. The copies the server holds are scripted per test; real servers are in test_e2e_in_doubt.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.logger import capturedLogs

from inprocess import Rig, ScriptedBackend
from spooler.delivery.base import RemoteCopy
from spooler.model import DeliveryError, JobState, Route
from spooler.dispatch.reconcile import (
    ABORTED_HERE,
    CANCEL,
    CANCELED,
    DELIVERED,
    FINISHED_HERE,
    FORWARDING,
    GONE,
    HELD_HERE,
    INCOMING,
    KEPT,
    LATER,
    NOT_AT_SERVER,
    NOTHING,
    PRINTED,
    PRINTED_AT_SERVER,
    PRINTING,
    TAKE,
    UNKNOWN,
    UNRESOLVED,
    WAITING,
    copy_stage,
    decide,
)
from test_failover import SERVER, bring_up, take_down, tick

HELD = ("job-hold-until-specified",)


@pytest.mark.parametrize(("state", "reasons", "stage"), [
    (3, ("job-queued",), WAITING), (4, HELD, WAITING), (4, ("job-incoming",), INCOMING),
    (3, ("job-data-insufficient",), INCOMING), (5, ("job-printing",), PRINTING), (6, (), PRINTING),
    (9, ("job-completed-successfully",), PRINTED), (7, ("job-canceled-by-user",), GONE), (8, (), GONE),
    (0, (), UNKNOWN),
])  # fmt: skip
def test_the_stage_of_a_copy_comes_from_its_ipp_state_and_reasons(state: int, reasons: tuple[str, ...],
                                                                    stage: str) -> None:  # fmt: skip
    assert copy_stage(RemoteCopy("1", state, reasons, 1)) == stage


def test_no_copy_is_gone() -> None:
    assert copy_stage(None) == GONE


@pytest.mark.parametrize(("documents_there", "documents", "stage"), [
    (0, 1, INCOMING), (1, 2, INCOMING), (2, 2, WAITING), (None, 2, WAITING), (3, 2, WAITING),
])  # fmt: skip
def test_a_held_copy_with_fewer_documents_than_the_job_is_not_whole(documents_there: int | None, documents: int,
                                                                    stage: str) -> None:  # fmt: skip
    # cupsd holding every job (job-hold-until-default=indefinite) says job-hold-until-specified of an
    # empty Create-Job too: only number-of-documents tells it from a whole job.
    assert copy_stage(RemoteCopy("1", 4, HELD, documents_there), documents) == stage


@pytest.mark.parametrize(("stage", "here", "expected"), [
    # printed here (or canceled by its owner): the server's copy must not print too
    (INCOMING, FINISHED_HERE, (CANCEL, CANCELED)), (WAITING, FINISHED_HERE, (CANCEL, CANCELED)),
    (PRINTING, FINISHED_HERE, (NOTHING, PRINTED_AT_SERVER)), (PRINTED, FINISHED_HERE, (NOTHING, PRINTED_AT_SERVER)),
    (GONE, FINISHED_HERE, (NOTHING, NOT_AT_SERVER)), (UNKNOWN, FINISHED_HERE, (LATER, None)),
    # aborted here: a whole copy at the server is the only one, never canceled
    (INCOMING, ABORTED_HERE, (CANCEL, CANCELED)), (WAITING, ABORTED_HERE, (NOTHING, KEPT)),
    (PRINTED, ABORTED_HERE, (NOTHING, PRINTED_AT_SERVER)), (GONE, ABORTED_HERE, (NOTHING, NOT_AT_SERVER)),
    # about to be forwarded again: a whole copy is the delivery, an empty one is canceled
    (INCOMING, FORWARDING, (CANCEL, CANCELED)), (WAITING, FORWARDING, (TAKE, DELIVERED)),
    (PRINTING, FORWARDING, (TAKE, DELIVERED)), (PRINTED, FORWARDING, (TAKE, DELIVERED)),
    (GONE, FORWARDING, (NOTHING, NOT_AT_SERVER)), (UNKNOWN, FORWARDING, (LATER, None)),
    # held here for its owner: an empty copy goes, a whole one is watched; printed there, it is done
    (INCOMING, HELD_HERE, (CANCEL, CANCELED)), (WAITING, HELD_HERE, (LATER, None)),
    (PRINTING, HELD_HERE, (TAKE, PRINTED_AT_SERVER)), (PRINTED, HELD_HERE, (TAKE, PRINTED_AT_SERVER)),
    (GONE, HELD_HERE, (NOTHING, NOT_AT_SERVER)),
])  # fmt: skip
def test_what_is_done_with_a_copy(stage: str, here: str, expected: tuple[str, str | None]) -> None:
    assert decide(stage, here) == expected


# -- in process ----------------------------------------------------------------------------------------


def rig(tmp_path: Path, **extra: Any) -> Rig:
    extra.setdefault("queues", {"default": {"offline_policy": "print"}})
    made = Rig(tmp_path, server=SERVER, **extra)
    made.dispatcher.start()
    tick(made)
    return made


def server(r: Rig) -> ScriptedBackend:
    assert r.server is not None
    return r.server


def lose_a_forward(r: Rig, message: str = "Send-Document: no answer within 5s", *,
                   remote_job_id: str | None = None) -> str:  # fmt: skip
    """A new job 1 is forwarded, and the forward's answer never comes (with the server's job id or
    without). Returns the job-uuid the forward carried."""
    r.submit(b"once", user="ann")
    tick(r)
    forward_uuid = r.store.get(1).attributes["delivery"]["forward_uuid"]
    if remote_job_id is not None:
        server(r).journals[0](remote_job_id)
    server(r).fail(DeliveryError(message, retryable=True, sent=True))
    return str(forward_uuid)


def forward_lost_then_printed_on_the_device(r: Rig, *, remote_job_id: str | None = None) -> str:
    """Job 1's forward is lost (lose_a_forward); the server goes down and the job prints on the
    device. Returns the job-uuid the forward carried."""
    forward_uuid = lose_a_forward(r, remote_job_id=remote_job_id)
    take_down(r)
    tick(r, 1)
    r.backend.succeed()
    assert r.store.get(1).state == JobState.COMPLETED and r.store.get(1).route is Route.DEVICE
    [doubt] = r.store.forwards_of_job(1)
    assert (doubt.outcome, doubt.forward_uuid, doubt.remote_job_id) == (None, forward_uuid, remote_job_id)
    return forward_uuid


def test_a_held_copy_of_a_job_printed_on_the_device_is_canceled_when_the_server_returns(tmp_path: Path) -> None:
    r = rig(tmp_path)
    forward_uuid = forward_lost_then_printed_on_the_device(r)
    server(r).copies[forward_uuid] = RemoteCopy("31", 4, HELD, 1)  # found by the forward's job-uuid
    assert server(r).asked == []  # not while the server is down
    with capturedLogs() as events:
        bring_up(r)
        tick(r)
    assert server(r).asked == [(1, None, forward_uuid)]
    assert server(r).canceled_copies == ["31"]
    [doubt] = r.store.forwards_of_job(1)
    assert doubt.outcome == CANCELED and "job 31" in doubt.detail and "canceled" in doubt.detail
    [event] = [e for e in events if e.get("spool_event") == "forward_reconciled"]
    assert (event["job_id"], event["outcome"], event["remote_job_id"], event["stage"]) == (1, CANCELED, "31", WAITING)
    assert r.dispatcher.status()["forwards_in_doubt"]["canceled"] == 1
    assert len(server(r).attempts) == 1  # and the job is not sent to the server again


def test_a_copy_the_server_printed_meanwhile_is_reported_not_canceled(tmp_path: Path) -> None:
    r = rig(tmp_path)
    forward_lost_then_printed_on_the_device(r, remote_job_id="31")
    server(r).copies["31"] = RemoteCopy("31", 9, ("job-completed-successfully",), 1)
    with capturedLogs() as events:
        bring_up(r)
        tick(r)
    assert server(r).asked[0][1] == "31" and server(r).canceled_copies == []
    assert r.store.forwards_of_job(1)[0].outcome == PRINTED_AT_SERVER
    assert [e["log_level"].name for e in events if e.get("spool_event") == "forward_reconciled"] == ["warn"]


def test_an_empty_copy_in_a_queue_that_holds_every_job_is_not_taken_for_the_delivery(tmp_path: Path) -> None:
    r = rig(tmp_path, queues={"default": {"offline_policy": "queue"}})
    first_uuid = lose_a_forward(r, "Create-Job: no answer within 5s")
    server(r).copies[first_uuid] = RemoteCopy("47", 4, HELD, 0)  # held, but without its document
    tick(r, 5)
    assert server(r).canceled_copies == ["47"] and len(server(r).attempts) == 2  # canceled, and sent again


def test_an_empty_create_job_left_at_the_server_is_canceled(tmp_path: Path) -> None:
    r = rig(tmp_path)
    forward_uuid = forward_lost_then_printed_on_the_device(r)
    server(r).copies[forward_uuid] = RemoteCopy("32", 4, ("job-incoming",), 0)
    bring_up(r)
    tick(r)
    assert server(r).canceled_copies == ["32"]
    assert r.store.forwards_of_job(1)[0].outcome == CANCELED


def test_nothing_at_the_server_is_nothing_to_do(tmp_path: Path) -> None:
    r = rig(tmp_path)
    forward_lost_then_printed_on_the_device(r)
    bring_up(r)
    tick(r)
    assert server(r).canceled_copies == [] and r.store.forwards_of_job(1)[0].outcome == NOT_AT_SERVER


def test_a_server_that_cannot_be_asked_yet_is_asked_again_later(tmp_path: Path) -> None:
    r = rig(tmp_path)
    forward_uuid = forward_lost_then_printed_on_the_device(r)
    server(r).ask_error = DeliveryError("Get-Jobs: no answer within 30s", retryable=True, sent=True)
    bring_up(r)
    tick(r)
    [doubt] = r.store.forwards_of_job(1)
    assert doubt.outcome is None and doubt.checks == 1 and doubt.next_check_at is not None
    assert "no answer" in doubt.detail
    server(r).ask_error = None
    server(r).copies[forward_uuid] = RemoteCopy("33", 4, HELD, 1)
    tick(r, doubt.next_check_at - r.clock.seconds() - 0.01)
    assert len(server(r).asked) == 1  # not before its time
    tick(r, 0.01)
    assert server(r).canceled_copies == ["33"] and r.store.forwards_of_job(1)[0].outcome == CANCELED


class LpdQueue:
    """A server queue as the lpd:// backend sees it: nothing to ask it with."""

    uri = "lpd://server.test/q"


def test_a_queue_that_cannot_be_asked_is_left_unresolved_and_said_so(tmp_path: Path) -> None:
    r = rig(tmp_path)
    assert r.dispatcher.reconciler is not None
    r.dispatcher.reconciler._server = LpdQueue()
    forward_lost_then_printed_on_the_device(r)
    bring_up(r)
    tick(r)
    [doubt] = r.store.forwards_of_job(1)
    assert doubt.outcome == UNRESOLVED and "lpd:// queues cannot be asked" in doubt.detail


def test_a_whole_copy_is_the_delivery_when_the_job_has_not_printed_yet(tmp_path: Path) -> None:
    # The device is down too: the job waits; when the server is back it is asked before the job is
    # sent again, and its held copy is taken as the delivery.
    r = rig(tmp_path, device={"retry_initial": "1s", "retry_max": "1s"})
    forward_uuid = lose_a_forward(r, "Send-Document: the answer was cut off")
    take_down(r)
    tick(r, 1)
    r.backend.fail(DeliveryError("connection refused", retryable=True))
    server(r).copies[forward_uuid] = RemoteCopy("40", 4, HELD, 1)
    bring_up(r)
    while r.backend.pending:  # attempts at the device meanwhile fail too
        r.backend.fail(DeliveryError("connection refused", retryable=True))
    tick(r, 1)
    job = r.store.get(1)
    assert job.state == JobState.COMPLETED and job.route is Route.SERVER
    assert job.attributes["delivery"]["remote_job_id"] == "40" and "not sent again" in job.message
    assert len(server(r).attempts) == 1 and server(r).canceled_copies == []
    assert r.store.forwards_of_job(1)[0].outcome == DELIVERED


def test_an_empty_copy_is_canceled_before_the_job_is_sent_again(tmp_path: Path) -> None:
    r = rig(tmp_path, queues={"default": {"offline_policy": "queue"}})
    first_uuid = lose_a_forward(r, "Create-Job: no answer within 5s")
    server(r).copies[first_uuid] = RemoteCopy("41", 4, ("job-incoming",), 0)
    tick(r, 5)  # the server is still usable: the job is retried there, the empty copy canceled first
    assert server(r).canceled_copies == ["41"] and len(server(r).attempts) == 2
    second_uuid = r.store.get(1).attributes["delivery"]["forward_uuid"]
    assert second_uuid != first_uuid  # each forward has a job-uuid of its own
    server(r).succeed(remote_job_id="42")
    assert r.store.get(1).state == JobState.COMPLETED
    assert [(f.forward_uuid, f.outcome) for f in r.store.forwards_of_job(1)] == [(first_uuid, CANCELED)]


def test_a_whole_copy_left_by_a_job_aborted_here_is_kept(tmp_path: Path) -> None:
    r = rig(tmp_path)
    forward_uuid = lose_a_forward(r, "no answer")
    take_down(r)
    tick(r, 1)
    r.backend.fail(DeliveryError("the device refused the document", retryable=False))
    assert r.store.get(1).state == JobState.ABORTED
    server(r).copies[forward_uuid] = RemoteCopy("43", 4, HELD, 1)
    bring_up(r)
    tick(r)
    assert server(r).canceled_copies == [] and r.store.forwards_of_job(1)[0].outcome == KEPT


def test_a_job_held_here_is_completed_when_the_server_prints_its_copy(tmp_path: Path) -> None:
    """Queue policy hold: the job waits here for its owner; the server's whole copy is watched, and once
    the server prints it the held job is completed here, never printed at the device as well."""
    r = rig(tmp_path, queues={"default": {"offline_policy": "hold"}})
    forward_uuid = lose_a_forward(r, "Send-Document: no answer within 5s")
    take_down(r)
    tick(r, 1)
    assert r.store.get(1).state == JobState.PENDING_HELD and r.backend.attempts == []
    server(r).copies[forward_uuid] = RemoteCopy("50", 4, HELD, 1)
    bring_up(r)
    tick(r)
    [doubt] = r.store.forwards_of_job(1)
    assert doubt.outcome is None and doubt.next_check_at is not None and server(r).canceled_copies == []
    server(r).copies[forward_uuid] = RemoteCopy("50", 9, ("job-completed-successfully",), 1)  # released there
    tick(r, doubt.next_check_at - r.clock.seconds())
    job = r.store.get(1)
    assert (job.state, job.route) == (JobState.COMPLETED, Route.SERVER) and "not printed again" in job.message
    assert job.attributes["delivery"]["remote_job_id"] == "50"
    assert r.store.forwards_of_job(1)[0].outcome == PRINTED_AT_SERVER
    assert r.backend.attempts == []  # never at the device


def test_an_empty_copy_of_a_held_job_is_canceled_and_the_job_stays_held(tmp_path: Path) -> None:
    r = rig(tmp_path, queues={"default": {"offline_policy": "hold"}})
    forward_uuid = lose_a_forward(r, "Create-Job: no answer within 5s")
    take_down(r)
    tick(r, 1)
    server(r).copies[forward_uuid] = RemoteCopy("51", 4, ("job-incoming",), 0)
    bring_up(r)
    tick(r)
    assert server(r).canceled_copies == ["51"] and r.store.forwards_of_job(1)[0].outcome == CANCELED
    assert r.store.get(1).state == JobState.PENDING_HELD  # still its owner's to release at the device


def test_a_forward_cut_off_by_its_owners_cancel_is_settled_at_once(tmp_path: Path) -> None:
    r = rig(tmp_path)
    r.submit(b"once", user="ann")
    tick(r)
    forward_uuid = r.store.get(1).attributes["delivery"]["forward_uuid"]
    server(r).copies[forward_uuid] = RemoteCopy("44", 3, ("job-queued",), 1)
    r.service.cancel(1, requester="ann")
    tick(r)
    assert server(r).canceled == 1  # the attempt was cut off
    assert server(r).canceled_copies == ["44"] and r.store.forwards_of_job(1)[0].outcome == CANCELED


def test_a_refused_forward_is_not_in_doubt(tmp_path: Path) -> None:
    r = rig(tmp_path)
    r.submit(b"once", user="ann")
    tick(r)
    server(r).fail(DeliveryError("cannot connect: connection refused", retryable=True, sent=False))
    assert r.store.forwards_of_job(1) == []
    tick(r, 5)
    server(r).fail(DeliveryError("server-error-service-unavailable", retryable=True))  # an answer: nothing kept
    assert r.store.forwards_of_job(1) == []


def test_a_forward_under_way_at_a_crash_is_in_doubt_after_the_restart(tmp_path: Path) -> None:
    r = rig(tmp_path)
    r.submit(b"once", user="ann")
    tick(r)
    forward_uuid = r.store.get(1).attributes["delivery"]["forward_uuid"]
    r.store.close()  # kill -9: the job was processing, its forward journaled

    after = Rig(tmp_path, server=SERVER, queues={"default": {"offline_policy": "print"}})
    [doubt] = after.store.forwards_of_job(1)
    assert (doubt.forward_uuid, doubt.outcome) == (forward_uuid, None) and "stopped" in doubt.cause
    job = after.store.get(1)
    assert job.state == JobState.PENDING
    assert server(after).copies == {}
    server(after).copies[forward_uuid] = RemoteCopy("45", 4, HELD, 1)
    after.dispatcher.start()
    tick(after)
    assert after.store.get(1).state == JobState.COMPLETED and len(server(after).attempts) == 0
    assert after.store.forwards_of_job(1)[0].outcome == DELIVERED


def test_the_in_doubt_list_is_written_with_the_job_row(tmp_path: Path) -> None:
    """One transaction: a failure to write the job row leaves no in-doubt record either."""
    r = rig(tmp_path)
    r.submit(b"once", user="ann")
    tick(r)
    stored = r.store.get(1)
    from spooler.dispatch.reconcile import interrupted_forward

    doubt = interrupted_forward(stored, now=1.0, cause="test")
    assert doubt is not None
    with pytest.raises(Exception):
        r.store.record_forward_in_doubt(doubt, stored.evolve(job_id=999))  # no such row
    assert r.store.forwards_of_job(1) == []


def test_show_and_status_tell_the_in_doubt_forwards(tmp_path: Path) -> None:
    from spooler.admin import job_detail

    r = rig(tmp_path)
    forward_lost_then_printed_on_the_device(r, remote_job_id="46")
    detail = job_detail(r.service, 1)
    [forward] = detail["forwards_in_doubt"]
    assert (forward["remote_job_id"], forward["outcome"], forward["uri"]) == ("46", None, "test://server")
    assert r.dispatcher.status()["forwards_in_doubt"]["open"] == 1


def test_a_forward_sent_as_one_server_job_per_document_is_left_to_the_backends_recover(tmp_path: Path) -> None:
    """A server without multiple-document jobs gets one job per document (spooler.delivery.ipp); its
    journal ("jobs:12,13") says which documents it has, and the backend's recover resumes from there."""
    r = rig(tmp_path)
    r.submit(b"two documents", user="ann")
    tick(r)
    server(r).journals[0]("jobs:12,13")
    server(r).fail(DeliveryError("Send-Document: no answer within 5s", retryable=True))
    assert r.store.forwards_of_job(1) == []  # not kept in doubt
    tick(r, 5)
    assert server(r).recovered == [(1, "jobs:12,13")]  # asked by the backend's own journal
