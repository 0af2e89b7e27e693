"""Failover over IPP with real processes: a branch spooler, the reference central server
(spooler-refserver) as its server queue, and a second `spooler serve` reached over IPP as its device.
The server is killed while jobs flow, brought back, hung; the device goes down too; every job arrives
exactly once, at the server before and at the device after, in arrival order."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Callable

import pytest

from spooler_harness import RefServer, refserver, Spooler, pjl_job, send_raw, wait_for

pytestmark = pytest.mark.e2e
SpoolerFactory = Callable[..., Spooler]


@pytest.fixture
def central() -> Iterator[RefServer]:
    with refserver() as server:
        yield server


def branch(spooler_factory: SpoolerFactory, central: RefServer, device: Spooler, policy: str = "print") -> Spooler:
    return spooler_factory(**{
        "server__queue_uri": central.ipp_uri, "server__probe_interval": "250ms", "server__probe_timeout": "750ms",
        "device__uri": f"ipp://127.0.0.1:{device.ipp_port}/ipp/print", "device__retry_initial": "500ms",
        "device__retry_max": "2s", "queues.default__offline_policy": policy,
    }).start()  # fmt: skip


def names_at_server(central: RefServer) -> list[str]:
    return [json.loads(p.with_suffix(".json").read_text())["name"] for p in sorted(central.received_dir.glob("job-*.prn"))]


def names_at_device(device: Spooler) -> list[str]:
    return [device.sink_sidecar(p)["name"] for p in device.sink_files()]


def test_server_killed_while_jobs_flow_then_back(spooler_factory: SpoolerFactory, central: RefServer) -> None:
    device = spooler_factory().start()
    spooler = branch(spooler_factory, central, device)
    wait_for(lambda: spooler.status()["mode"] == "online", what="online")
    names = [f"job {n:02d}" for n in range(10)]
    for number, name in enumerate(names):
        send_raw(spooler.raw_port, pjl_job("gus", name, os.urandom(4000)))
        if number == 4:
            wait_for(lambda: len(names_at_server(central)) == 5, what="5 jobs at the server")
            central.kill9()  # the central server dies; jobs keep coming
    wait_for(lambda: len(names_at_device(device)) == 5, timeout=30, what="5 jobs at the device")
    assert names_at_server(central) == names[:5] and names_at_device(device) == names[5:]
    sidecars = [device.sink_sidecar(p) for p in device.sink_files()]
    assert {s["user"] for s in sidecars} == {"gus"}  # the original user, carried over IPP

    central.start()  # it comes back
    wait_for(lambda: spooler.status()["mode"] == "online", timeout=15, what="failback")
    send_raw(spooler.raw_port, pjl_job("gus", "after the return", b"%PDF-1.4 back"))
    wait_for(lambda: len(names_at_server(central)) == 6, timeout=20, what="the new job at the server")
    assert names_at_server(central) == names[:5] + ["after the return"]
    assert len(names_at_device(device)) == 5
    assert [e["mode"] for e in spooler.events("mode_changed")] == ["online", "offline", "online"]


def test_a_hung_server_is_detected(spooler_factory: SpoolerFactory, central: RefServer) -> None:
    device = spooler_factory().start()
    spooler = branch(spooler_factory, central, device)
    wait_for(lambda: spooler.status()["mode"] == "online", what="online")
    central.mode("hang")  # accepts connections, never answers
    wait_for(lambda: spooler.status()["mode"] == "offline", timeout=10, what="the hang to be detected")
    [change] = [e for e in spooler.events("mode_changed") if e["mode"] == "offline"]
    assert "no answer" in change["detail"] or "timed out" in change["detail"].lower()
    send_raw(spooler.raw_port, pjl_job("hal", "while hung", b"%PDF-1.4 x"))
    wait_for(lambda: names_at_device(device) == ["while hung"], timeout=20, what="the job at the device")
    central.mode("normal")
    wait_for(lambda: spooler.status()["mode"] == "online", timeout=10, what="back online")


def test_device_down_too_jobs_wait_then_arrive(spooler_factory: SpoolerFactory, central: RefServer) -> None:
    device = spooler_factory()
    spooler = branch(spooler_factory, central, device)  # the device has not started: it is down
    central.mode("refuse")
    wait_for(lambda: spooler.status()["mode"] == "offline", what="offline")
    for n in range(3):
        send_raw(spooler.raw_port, pjl_job("ivy", f"waits {n}", os.urandom(500)))
    wait_for(lambda: spooler.events("device_down"), what="the device to be seen down")
    status = spooler.status()
    assert status["device"]["state"] == "unreachable" and status["waiting_for_device"] == 3
    device.start()
    wait_for(lambda: len(names_at_device(device)) == 3, timeout=30, what="the jobs after the device returns")
    assert names_at_device(device) == ["waits 0", "waits 1", "waits 2"]
    assert names_at_server(central) == []


def test_queue_policy_drains_to_the_returning_server_in_order(spooler_factory: SpoolerFactory,
                                                              central: RefServer) -> None:  # fmt: skip
    device = spooler_factory().start()
    spooler = branch(spooler_factory, central, device, policy="queue")
    central.mode("error")  # answers, but 503 / server-error-service-unavailable
    wait_for(lambda: spooler.status()["mode"] == "offline", what="offline")
    names = [f"queued {n}" for n in range(4)]
    for name in names:
        send_raw(spooler.raw_port, pjl_job("jan", name, os.urandom(800)))
    wait_for(lambda: spooler.status()["waiting_for_server"] == 4, what="4 waiting")
    central.mode("normal")
    wait_for(lambda: len(names_at_server(central)) == 4, timeout=30, what="the queue to drain")
    assert names_at_server(central) == names and names_at_device(device) == []


def test_a_raw_socket_device_takes_over_when_the_server_goes(spooler_factory: SpoolerFactory,
                                                             central: RefServer) -> None:  # fmt: skip
    from spooler_harness import RawDevice

    printer = RawDevice()
    try:
        spooler = spooler_factory(**{
            "server__queue_uri": central.ipp_uri, "server__probe_interval": "250ms",
            "server__probe_timeout": "750ms", "device__uri": f"socket://127.0.0.1:{printer.port}?pjl=1",
        }).start()  # fmt: skip
        wait_for(lambda: spooler.status()["mode"] == "online", what="online")
        send_raw(spooler.raw_port, pjl_job("kai", "to the server", b"%PDF-1.4 a"))
        wait_for(lambda: names_at_server(central) == ["to the server"], what="the job at the server")
        central.mode("refuse")
        wait_for(lambda: spooler.status()["mode"] == "offline", what="offline")
        plain = b"plain text job without a PJL header\n"
        send_raw(spooler.raw_port, plain)
        wait_for(lambda: len(printer.jobs) == 1, timeout=20, what="the job at the raw printer")
        [printed] = printer.jobs
        # socket://...?pjl=1 wraps a bare job in a PJL header that names its user and job for the printer.
        assert printed.startswith(b"\x1b%-12345X@PJL") and b'SET USERNAME="anonymous"' in printed
        assert plain in printed
    finally:
        printer.close()
