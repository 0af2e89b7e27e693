"""In-doubt forwards with real processes: a branch spooler forwards to a central queue that holds its
jobs for release (the reference server with --hold, or cupsd with job-hold-until-default=indefinite)
through a proxy that loses the answer to one request and then refuses connections, as a server that
died just after it took the request. The job prints on the branch's device; when the server returns,
reconciliation finds the copy the lost answer left there (by job-id, or by job-uuid when even the
Create-Job's answer was lost) and cancels it — checked with the server's own tools (its job list,
lpstat, ipptool), not with the spooler's word alone."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from spooler.ipp.tags import Operation
from spooler_harness import (
    AnswerLosingProxy,
    RefServer,
    ScratchCups,
    Spooler,
    ipptool_get_jobs,
    pjl_job,
    require_tool,
    send_raw,
    short_tempdir,
    wait_for,
)

pytestmark = pytest.mark.e2e
SpoolerFactory = Callable[..., Spooler]


@pytest.fixture
def held_central() -> Iterator[RefServer]:
    server = RefServer(short_tempdir("rs"), hold=True)
    try:
        yield server.start()
    finally:
        server.cleanup()
        shutil.rmtree(server.root, ignore_errors=True)


def branch(spooler_factory: SpoolerFactory, queue_uri: str) -> Spooler:
    return spooler_factory(**{
        "server__queue_uri": queue_uri, "server__probe_interval": "250ms", "server__probe_timeout": "750ms",
        "server__connect_timeout": "1s", "server__io_timeout": "3s", "queues.default__offline_policy": "print",
    }).start()  # fmt: skip


def mode_of(spooler: Spooler) -> str:
    return str(json.loads(spooler.cli("status", "--json").stdout)["mode"])


def forwards_of(spooler: Spooler, job_id: int) -> list[dict[str, Any]]:
    return list(json.loads(spooler.cli("show", str(job_id), "--json").stdout)["forwards_in_doubt"])


def print_while_the_answer_is_lost(spooler: Spooler, proxy: AnswerLosingProxy, operation: Operation,
                                   name: str) -> dict[str, Any]:  # fmt: skip
    """One job whose forward loses the answer to `operation`; it prints on the device meanwhile.
    Returns its in-doubt forward as `spooler show` tells it."""
    wait_for(lambda: mode_of(spooler) == "online", timeout=20, what="online")
    printed = len(spooler.sink_files())
    proxy.lose_answer_to = {int(operation)}
    send_raw(spooler.raw_port, pjl_job("alice", name, b"%PDF-1.4\n" + name.encode() * 500 + b"\n%%EOF\n"))
    wait_for(lambda: len(spooler.sink_files()) == printed + 1, timeout=30, what="the job printed on the device")
    assert proxy.lost[-1] == int(operation) and not proxy.is_up
    [job] = [job for job in spooler.jobs() if job["name"] == name]
    assert (job["state"], job["route"]) == ("completed", "device")
    [forward] = forwards_of(spooler, job["job_id"])
    assert forward["outcome"] is None, forward
    return forward | {"job": job}


def test_a_held_whole_copy_and_an_empty_create_job_at_the_reference_server_are_canceled(
        spooler_factory: SpoolerFactory, held_central: RefServer) -> None:  # fmt: skip
    proxy = AnswerLosingProxy(held_central.ipp_port)
    try:
        spooler = branch(spooler_factory, f"ipp://127.0.0.1:{proxy.port}/ipp/print")

        # The server took the whole job (Send-Document) and held it; its answer was lost.
        whole = print_while_the_answer_is_lost(spooler, proxy, Operation.SEND_DOCUMENT, "whole, answer lost")
        assert whole["remote_job_id"] is not None
        [held] = [job for job in held_central.queue_jobs() if str(job["job_id"]) == whole["remote_job_id"]]
        assert (held["state"], held["reason"], held["user"]) == ("pending-held", "job-held-on-create", "alice")
        assert held["attributes"]["client_job_uuid"] == whole["forward_uuid"]  # the forward's own job-uuid
        proxy.up()
        wait_for(lambda: forwards_of(spooler, whole["job"]["job_id"])[0]["outcome"] == "canceled", timeout=30,
                 what="the held copy canceled")  # fmt: skip
        [after] = [job for job in held_central.queue_jobs() if job["job_id"] == held["job_id"]]
        assert after["state"] == "canceled" and after["reason"] == "job-canceled-by-user"

        # Even the Create-Job's answer was lost: an empty job, found by the job-uuid the forward carried.
        empty = print_while_the_answer_is_lost(spooler, proxy, Operation.CREATE_JOB, "empty, answer lost")
        assert empty["remote_job_id"] is None
        [incoming] = [job for job in held_central.queue_jobs()
                      if job["attributes"].get("client_job_uuid") == empty["forward_uuid"]]  # fmt: skip
        assert (incoming["state"], incoming["reason"]) == ("pending-held", "job-incoming")
        proxy.up()
        wait_for(lambda: forwards_of(spooler, empty["job"]["job_id"])[0]["outcome"] == "canceled", timeout=30,
                 what="the empty copy canceled")  # fmt: skip
        [after] = [job for job in held_central.queue_jobs() if job["job_id"] == incoming["job_id"]]
        assert after["state"] == "canceled"

        held_central.release()  # whatever the server still holds prints now: none of these two
        assert held_central.received_files() == []
        reconciled = spooler.events("forward_reconciled")
        assert [(e["job_id"], e["outcome"]) for e in reconciled] == [(whole["job"]["job_id"], "canceled"),
                                                                     (empty["job"]["job_id"], "canceled")]  # fmt: skip
        shown = spooler.cli("show", str(whole["job"]["job_id"])).stdout
        assert "in doubt" in shown and "canceled" in shown
        status = json.loads(spooler.cli("status", "--json").stdout)["forwards_in_doubt"]
        assert (status["open"], status["canceled"]) == (0, 2)
    finally:
        proxy.close()


def test_a_forward_whose_answer_was_lost_is_not_sent_twice_when_the_server_returns_first(
        spooler_factory: SpoolerFactory, held_central: RefServer) -> None:  # fmt: skip
    """The device is down too, so the job waits; when the server is back its held copy is the delivery."""
    proxy = AnswerLosingProxy(held_central.ipp_port)
    try:
        spooler = spooler_factory(**{
            "server__queue_uri": f"ipp://127.0.0.1:{proxy.port}/ipp/print", "server__probe_interval": "250ms",
            "server__probe_timeout": "750ms", "server__connect_timeout": "1s", "server__io_timeout": "3s",
            "queues.default__offline_policy": "print", "device__uri": "socket://127.0.0.1:9",  # nothing there
            "device__connect_timeout": "500ms", "device__retry_initial": "500ms", "device__retry_max": "1s",
        }).start()  # fmt: skip
        wait_for(lambda: mode_of(spooler) == "online", timeout=20, what="online")
        proxy.lose_answer_to = {int(Operation.SEND_DOCUMENT)}
        send_raw(spooler.raw_port, pjl_job("alice", "waits", b"%PDF-1.4\nwaits\n%%EOF\n"))
        wait_for(lambda: proxy.lost, timeout=20, what="the answer lost")
        wait_for(lambda: spooler.events("delivery_failed") and spooler.jobs()[0]["route"] == "device", timeout=20,
                 what="an attempt at the (dead) device")  # fmt: skip
        proxy.up()
        wait_for(lambda: spooler.jobs()[0]["state"] == "completed", timeout=30, what="the job delivered")
        [job] = spooler.jobs()
        assert job["route"] == "server" and "not sent again" in job["message"]
        [forward] = forwards_of(spooler, job["job_id"])
        assert forward["outcome"] == "delivered"
        queue = held_central.queue_jobs()
        assert [(j["state"], j["name"]) for j in queue] == [("pending-held", "waits")]  # one copy, still held
        assert held_central.release() == [queue[0]["job_id"]]
        held_central.wait_received(1)
    finally:
        proxy.close()


# -- cupsd as the central server's queue ----------------------------------------------------------------

def cups_jobs(uri: str, work: Path) -> dict[str, dict[str, str]]:
    """Every job of the queue, by job-uuid, as ipptool reads them from cupsd."""
    jobs = ipptool_get_jobs(uri, work, ["job-id", "job-uuid", "job-state", "job-state-reasons"])
    return {job["job-uuid"].strip('"'): job for job in jobs}


def test_cupsd_holding_jobs_gets_its_copies_canceled(spooler_factory: SpoolerFactory) -> None:
    require_tool("ipptool")
    cups = ScratchCups(short_tempdir("cups"))
    work = short_tempdir("ipt")
    proxy: AnswerLosingProxy | None = None
    try:
        cups.start()
        cups.run("lpadmin", "-p", "held", "-E", "-v", "file:///dev/null", "-o", "job-hold-until-default=indefinite",
                 check=True)  # fmt: skip
        direct = f"ipp://127.0.0.1:{cups.port}/printers/held"
        proxy = AnswerLosingProxy(cups.port)
        spooler = branch(spooler_factory, f"ipp://127.0.0.1:{proxy.port}/printers/held")

        whole = print_while_the_answer_is_lost(spooler, proxy, Operation.SEND_DOCUMENT, "cups whole")
        empty_forward: dict[str, Any] | None = None
        at_cups = cups_jobs(direct, work)
        held = at_cups[f"urn:uuid:{whole['forward_uuid']}"]  # cupsd kept the job-uuid the forward gave
        assert held["job-id"] == whole["remote_job_id"]
        assert (held["job-state"], held["job-state-reasons"]) == ("pending-held", "job-hold-until-specified")
        assert f"held-{held['job-id']}" in cups.run("lpstat", "-o", "held").stdout  # lpstat agrees: not done
        proxy.up()
        wait_for(lambda: forwards_of(spooler, whole["job"]["job_id"])[0]["outcome"] == "canceled", timeout=30,
                 what=f"the held copy canceled: {cups.error_log()[-2000:]}")  # fmt: skip
        assert cups_jobs(direct, work)[f"urn:uuid:{whole['forward_uuid']}"]["job-state"] == "canceled"
        assert f"held-{held['job-id']}" not in cups.run("lpstat", "-o", "held").stdout

        # A Create-Job whose answer was lost: cupsd keeps an empty pending-held job until its
        # MultipleOperationTimeout (15 min by default) aborts it; reconciliation cancels it first.
        empty_forward = print_while_the_answer_is_lost(spooler, proxy, Operation.CREATE_JOB, "cups empty")
        incoming = cups_jobs(direct, work)[f"urn:uuid:{empty_forward['forward_uuid']}"]
        # (held like every job of this queue: only its number-of-documents, 0, says it is empty)
        assert (incoming["job-state"], incoming["job-state-reasons"]) == ("pending-held", "job-hold-until-specified")
        proxy.up()
        wait_for(lambda: forwards_of(spooler, empty_forward["job"]["job_id"])[0]["outcome"] == "canceled",
                 timeout=30, what="the empty copy canceled")  # fmt: skip
        assert cups_jobs(direct, work)[f"urn:uuid:{empty_forward['forward_uuid']}"]["job-state"] == "canceled"
        assert cups.run("lpstat", "-o", "held").stdout.strip() == ""  # nothing left to print at the server
    finally:
        if proxy is not None:
            proxy.close()
        cups.stop()
        shutil.rmtree(cups.root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
