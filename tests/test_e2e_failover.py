"""Failover end to end with real processes: a spooler whose central server queue is a raw socket
peer we start and stop, and whose device is its file sink. Jobs go to the server while it is up, to
the device (or wait, per policy) while it is down, and to the server again when it returns — each
exactly once, in order."""

from __future__ import annotations

import os
from typing import Callable

import pytest

from spooler_harness import RawDevice, Spooler, free_port, pjl_job, send_raw, wait_for

pytestmark = pytest.mark.e2e
SpoolerFactory = Callable[..., Spooler]


def make(spooler_factory: SpoolerFactory, port: int, policy: str) -> Spooler:
    return spooler_factory(**{
        "server__queue_uri": f"socket://127.0.0.1:{port}", "server__probe_interval": "250ms",
        "server__probe_timeout": "500ms", "server__connect_timeout": "1s",
        "queues.default__offline_policy": policy,
    })  # fmt: skip


def test_fail_over_to_the_device_and_back(spooler_factory: SpoolerFactory) -> None:
    server = RawDevice()
    spooler = make(spooler_factory, server.port, "print").start()
    wait_for(lambda: spooler.status()["mode"] == "online", what="online")
    online = [pjl_job("ann", f"online {n}", os.urandom(2000)) for n in range(3)]
    for payload in online:
        send_raw(spooler.raw_port, payload)
    wait_for(lambda: len(server.jobs) == 3, what="3 jobs at the server")
    assert server.jobs == online

    server.close()  # the central server is gone
    offline = [pjl_job("bob", f"offline {n}", os.urandom(2000)) for n in range(3)]
    for payload in offline:
        send_raw(spooler.raw_port, payload)
    delivered = spooler.wait_delivered(3, timeout=20)
    assert [f.read_bytes() for f in delivered] == offline  # at the device, in order
    assert spooler.status()["mode"] == "offline"
    assert [e["mode"] for e in spooler.events("mode_changed")] == ["online", "offline"]
    human = spooler.cli("status").stdout
    assert "mode        offline" in human and "server      socket://127.0.0.1" in human and "down" in human

    back = RawDevice(server.port)  # the server returns
    try:
        wait_for(lambda: spooler.status()["mode"] == "online", timeout=15, what="failback")
        again = [pjl_job("cid", f"back {n}", os.urandom(2000)) for n in range(2)]
        for payload in again:
            send_raw(spooler.raw_port, payload)
        wait_for(lambda: len(back.jobs) == 2, what="jobs at the server again")
        assert back.jobs == again
        assert len(spooler.deliveries()) == 3  # nothing more at the device
        jobs = spooler.jobs()
        assert [(j["route"], j["mode"]) for j in jobs] == [("server", "online")] * 3 + [("device", "offline")] * 3 + [
            ("server", "online")] * 2  # fmt: skip
        assert [e["mode"] for e in spooler.events("mode_changed")] == ["online", "offline", "online"]
    finally:
        back.close()


def test_queue_policy_keeps_jobs_until_the_server_returns(spooler_factory: SpoolerFactory) -> None:
    port = free_port()  # nothing listens: the server is down from the start
    spooler = make(spooler_factory, port, "queue").start()
    payloads = [pjl_job("dee", f"queued {n}", os.urandom(3000)) for n in range(4)]
    for payload in payloads:
        send_raw(spooler.raw_port, payload)
    wait_for(lambda: spooler.status()["mode"] == "offline", what="offline")
    wait_for(lambda: spooler.status()["waiting_for_server"] == 4, what="4 jobs waiting for the server")
    assert spooler.deliveries() == []
    assert "4 waiting for the server" in spooler.cli("status").stdout
    server = RawDevice(port)
    try:
        wait_for(lambda: len(server.jobs) == 4, timeout=20, what="the queue to drain")
        assert server.jobs == payloads
        assert spooler.deliveries() == []
    finally:
        server.close()


def test_hold_policy_holds_until_released_then_prints_on_the_device(spooler_factory: SpoolerFactory) -> None:
    spooler = make(spooler_factory, free_port(), "hold").start()
    wait_for(lambda: spooler.status()["mode"] == "offline", what="offline")
    send_raw(spooler.raw_port, pjl_job("eve", "pull me", b"%PDF-1.4 pull print"))
    wait_for(lambda: spooler.jobs() and spooler.jobs()[0]["state"] == "pending-held", what="held")
    assert "release it at the device" in spooler.jobs()[0]["message"]
    spooler.cli("release", "1")
    [delivered] = spooler.wait_delivered(1)
    assert spooler.sink_sidecar(delivered)["user"] == "eve"


def test_restart_while_offline_loses_nothing_and_prints_nothing_twice(spooler_factory: SpoolerFactory) -> None:
    server = RawDevice()
    spooler = make(spooler_factory, server.port, "queue").start()
    wait_for(lambda: spooler.status()["mode"] == "online", what="online")
    server.close()
    wait_for(lambda: spooler.status()["mode"] == "offline", what="offline")
    payloads = [pjl_job("fay", f"kept {n}", os.urandom(1000)) for n in range(3)]
    for payload in payloads:
        send_raw(spooler.raw_port, payload)
    spooler.kill9()
    back = RawDevice(server.port)
    try:
        spooler.start()
        wait_for(lambda: len(back.jobs) == 3, timeout=20, what="the jobs after the restart")
        assert back.jobs == payloads
    finally:
        back.close()
