"""Failover routing in process: a Clock, a scripted central server and a scripted device. Online jobs
go to the server; when it is down, each queue's offline policy decides; order is kept throughout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inprocess import Rig
from spooler.delivery.base import DeliveryReceipt, RemoteCopy
from spooler.model import DeliveryError, JobState, Mode, Route

SERVER = {"queue_uri": "ipp://server.test/ipp/print", "probe_interval": 1, "probe_timeout": 1,
          "down_after": 2, "up_after": 2}  # fmt: skip
REFUSED = DeliveryError("connection refused", retryable=True)


def rig(tmp_path: Path, policy: str = "print", server: dict[str, Any] | None = None, **extra: Any) -> Rig:
    made = Rig(tmp_path, server=SERVER | (server or {}), queues={"default": {"offline_policy": policy}}, **extra)
    made.dispatcher.start()
    return made


def tick(r: Rig, seconds: float = 0) -> None:
    r.clock.advance(seconds)


def take_down(r: Rig) -> None:
    """Two failed probes in a row: the server is down."""
    r.server.probe_results[:] = [False, False]  # type: ignore[union-attr]
    tick(r, 0)
    tick(r, 1)
    assert r.dispatcher.server_health is not None and r.dispatcher.server_health.state == "down"


def bring_up(r: Rig) -> None:
    r.server.probe_results[:] = [True, True]  # type: ignore[union-attr]
    tick(r, 1)
    tick(r, 1)
    assert r.dispatcher.server_health is not None and r.dispatcher.server_health.state == "up"


def test_online_jobs_are_forwarded_in_order(tmp_path: Path) -> None:
    r = rig(tmp_path)
    for n in range(3):
        r.submit(f"job {n}".encode(), user="ann")
    tick(r)
    for expected in (1, 2, 3):
        assert r.server.attempts[-1][0] == expected  # type: ignore[union-attr]
        r.server.succeed(remote_job_id=f"r{expected}")  # type: ignore[union-attr]
        tick(r)
    jobs = r.store.list_jobs()
    assert [(j.state, j.route, j.mode) for j in jobs] == [(JobState.COMPLETED, Route.SERVER, Mode.ONLINE)] * 3
    assert jobs[0].attributes["delivery"]["remote_job_id"] == "r1"
    assert r.backend.attempts == []
    assert r.dispatcher.mode is Mode.ONLINE


def test_failed_forwards_fail_over_to_the_device_in_order(tmp_path: Path) -> None:
    r = rig(tmp_path, policy="print", server={"probe_interval": 3600})  # only real forwards count
    r.submit(b"one")
    r.submit(b"two")
    tick(r)
    r.server.fail(REFUSED)  # type: ignore[union-attr]
    assert r.store.get(1).state == JobState.PENDING and "did not take it" in r.store.get(1).message
    tick(r, 5)  # retried after a short delay
    r.server.fail(REFUSED)  # second failure in a row: the server is down  # type: ignore[union-attr]
    tick(r)
    assert r.dispatcher.mode is Mode.OFFLINE
    assert [a[0] for a in r.backend.attempts] == [1]  # at once, to the device, job 1 first
    r.backend.succeed()
    tick(r)
    r.backend.succeed()
    jobs = r.store.list_jobs()
    assert [(j.job_id, j.route, j.mode, j.state) for j in jobs] == [
        (1, Route.DEVICE, Mode.OFFLINE, JobState.COMPLETED), (2, Route.DEVICE, Mode.OFFLINE, JobState.COMPLETED)]


def test_probes_detect_a_refusing_server_within_two_intervals(tmp_path: Path) -> None:
    r = rig(tmp_path)
    take_down(r)  # probes at t=0 and t=1
    r.submit(b"offline job")
    tick(r)
    assert r.backend.attempts[-1][0] == 1 and r.server.attempts == []  # type: ignore[union-attr]


def test_a_server_that_accepts_but_never_answers_is_down_and_its_forward_is_cut_off(tmp_path: Path) -> None:
    r = rig(tmp_path)
    r.server.probe_results[:] = [True]  # type: ignore[union-attr]
    tick(r)
    r.submit(b"stuck")
    tick(r)
    assert len(r.server.pending) == 1  # the forward hangs  # type: ignore[union-attr]
    r.server.probe_results[:] = [None, None, None]  # type: ignore[union-attr]
    tick(r, 1)  # probe 2 hangs ...
    tick(r, 1)  # ... times out after 1 s; probe 3 hangs
    tick(r, 1)  # second timeout: down
    assert r.dispatcher.server_health.state == "down"  # type: ignore[union-attr]
    assert r.server.canceled == 1  # type: ignore[union-attr]
    tick(r)
    assert r.backend.attempts[-1][0] == 1


def test_failback_sends_new_jobs_to_the_server_again(tmp_path: Path) -> None:
    r = rig(tmp_path)
    take_down(r)
    r.submit(b"offline")
    tick(r)
    r.backend.succeed()
    bring_up(r)
    r.submit(b"online again")
    tick(r)
    assert r.server.attempts[-1][0] == 2  # type: ignore[union-attr]
    assert r.dispatcher.mode is Mode.ONLINE


def test_queue_policy_waits_in_order_and_drains_when_the_server_returns(tmp_path: Path) -> None:
    r = rig(tmp_path, policy="queue")
    take_down(r)
    for n in range(3):
        r.submit(f"q{n}".encode())
    tick(r, 5)
    assert r.backend.attempts == [] and r.server.attempts == []  # type: ignore[union-attr]
    assert [j.message for j in r.store.list_jobs()][0].startswith("waiting for the central server")
    assert all(j.state == JobState.PENDING and j.route == Route.SERVER for j in r.store.list_jobs())
    bring_up(r)
    tick(r)
    drained = []
    while r.server.pending:  # type: ignore[union-attr]
        drained.append(r.server.attempts[-1][0])  # type: ignore[union-attr]
        r.server.succeed()  # type: ignore[union-attr]
        tick(r)
    assert drained == [1, 2, 3]


def test_hold_policy_holds_jobs_and_a_release_prints_on_the_device(tmp_path: Path) -> None:
    r = rig(tmp_path, policy="hold")
    take_down(r)
    r.submit(b"held 1", user="ann")
    r.submit(b"held 2", user="bob")
    tick(r)
    assert [j.state for j in r.store.list_jobs()] == [JobState.PENDING_HELD] * 2
    assert r.store.get(1).attributes["held_offline"] is True
    r.service.release(2, requester="bob")
    tick(r)
    assert [a[0] for a in r.backend.attempts] == [2]
    bring_up(r)
    r.service.release(1, requester="ann")  # released at the device after the server came back: still the device
    r.backend.succeed()
    tick(r)
    assert [a[0] for a in r.backend.attempts] == [2, 1]


def test_a_cut_off_forward_asks_the_server_before_sending_again(tmp_path: Path) -> None:
    r = rig(tmp_path)
    r.submit(b"once")
    tick(r)
    [journal] = r.server.journals  # type: ignore[union-attr]
    journal("remote-42")  # the server gave it an id, then the connection broke
    r.server.fail(DeliveryError("connection reset", retryable=True))  # type: ignore[union-attr]
    assert r.store.get(1).attributes["delivery"]["remote_job_id"] == "remote-42"
    [doubt] = r.store.forwards_of_job(1)  # kept in doubt with the journal
    assert (doubt.remote_job_id, doubt.outcome) == ("remote-42", None)
    r.server.copies["remote-42"] = RemoteCopy("remote-42", 4, ("job-hold-until-specified",), 1)  # type: ignore
    tick(r, 1)
    assert r.server.asked == [(1, "remote-42", doubt.forward_uuid)]  # type: ignore[union-attr]
    assert len(r.server.attempts) == 1  # not sent again  # type: ignore[union-attr]
    job = r.store.get(1)
    assert job.state == JobState.COMPLETED and job.attributes["delivery"]["remote_job_id"] == "remote-42"
    assert r.store.forwards_of_job(1)[0].outcome == "delivered"


def test_the_servers_job_id_is_remembered_across_attempts_at_the_device(tmp_path: Path) -> None:
    # Found by bench/chaos.py: a forward cut after the server had the whole job, then attempts at the
    # (unreachable) device, then the server back: the server must be asked, not sent the job again.
    r = rig(tmp_path, server={"probe_interval": 3600}, device={"retry_initial": "1s", "retry_max": "1s"})
    r.submit(b"once")
    tick(r)
    [journal] = r.server.journals  # type: ignore[union-attr]
    journal("remote-7")  # the server has it; its answer to Send-Document never came
    r.server.fail(DeliveryError("connection lost", retryable=True, sent=True))  # type: ignore[union-attr]
    r.dispatcher._server_outcome(False, r.clock.seconds(), "refused")  # the second failure: down
    tick(r, 5)
    assert [a[0] for a in r.backend.attempts] == [1]  # offline: tried at the device
    r.backend.fail(REFUSED)
    assert "remote_job_id" not in r.store.get(1).attributes["delivery"]  # the device attempt's own entry
    r.server.copies["remote-7"] = RemoteCopy("remote-7", 9, ("job-completed-successfully",), 1)  # type: ignore
    r.dispatcher._server_outcome(True, r.clock.seconds())
    r.dispatcher._server_outcome(True, r.clock.seconds())  # back up
    tick(r, 1)
    assert [asked[1] for asked in r.server.asked] == ["remote-7"]  # type: ignore[union-attr]
    assert len(r.server.attempts) == 1  # never sent to the server twice  # type: ignore[union-attr]
    assert r.store.get(1).state == JobState.COMPLETED


def test_a_device_that_answers_probes_again_gets_its_jobs_at_once(tmp_path: Path) -> None:
    r = rig(tmp_path, device={"retry_initial": "10m", "retry_max": "1h"})
    take_down(r)
    r.submit(b"x")
    tick(r)
    r.backend.fail(REFUSED)
    assert r.dispatcher.device.state == "unreachable"
    r.server.probe_results[:] = [False] * 5  # type: ignore[union-attr]
    tick(r, 1)  # the device is probed with the server and answers
    tick(r)
    assert len(r.backend.pending) == 1


def test_status_and_printer_state_tell_the_mode(tmp_path: Path) -> None:
    r = rig(tmp_path, policy="queue")
    take_down(r)
    status = r.dispatcher.status()
    assert status["mode"] == "offline" and status["server"]["state"] == "down"
    condition = r.service.printer_condition()
    assert "other-report" in condition.reasons
    assert "central print server is unreachable" in condition.message and "wait here" in condition.message


def test_each_queue_tells_its_own_policy_and_state(tmp_path: Path) -> None:
    """Two queues while the server is down: each one's printer-state-message names its own offline
    policy; a queue an administrator disabled says so, the other still takes jobs."""
    from spooler.jobs.queue_admin import QueueAdministration

    r = Rig(tmp_path, server=SERVER, queues={"default": {"offline_policy": "print"}, "front": {"offline_policy": "hold"}})
    r.dispatcher.start()
    take_down(r)
    default, front = r.service.printer_condition("default"), r.service.printer_condition("front")
    assert "print directly on this device" in default.message and "held" not in default.message
    assert "held until their owner releases them" in front.message and "directly" not in front.message
    QueueAdministration(r.service).set_accepting("front", False, by="root", reason="Toner change")
    front = r.service.printer_condition("front")
    assert not front.accepting and "Not accepting jobs: Toner change." in front.message
    assert r.service.printer_condition("default").accepting
