"""Crash tests: `kill -9` of the daemon. Every job acknowledged to a client is delivered exactly once,
in arrival order, after a restart; a job whose stream was cut is never delivered as if complete."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from typing import Callable

import pytest

from spooler_harness import Spooler, pjl_job, send_raw, wait_for

pytestmark = pytest.mark.e2e
SpoolerFactory = Callable[..., Spooler]


def test_jobs_acknowledged_just_before_kill_9_are_delivered_once_after_restart(
    spooler_factory: SpoolerFactory,
) -> None:
    # The device is down, so every job is still spooled when the daemon dies.
    spooler = spooler_factory(device__uri="socket://127.0.0.1:9", device__retry_initial="1h", device__retry_max="1h")
    spooler.start()
    payloads = [pjl_job("kim", f"crash {n}", os.urandom(20_000 + n)) for n in range(5)]
    for payload in payloads:
        send_raw(spooler.raw_port, payload)  # returns when the spooler closed: the acknowledgement
    spooler.kill9()

    spooler.write_config(device__uri=spooler.sink.as_uri())
    spooler.start()
    delivered = spooler.wait_delivered(5)
    spooler.wait_idle()  # every delivery made: a duplicate would be in the sink now
    assert [f.read_bytes() for f in spooler.sink_files()] == payloads
    assert [d["job_id"] for d in spooler.deliveries()] == [1, 2, 3, 4, 5]  # once each, in order
    assert len(delivered) == 5
    assert {e["job_id"] for e in spooler.events("job_requeued")} <= {1, 2, 3, 4, 5}


def test_a_job_cut_mid_stream_by_a_crash_is_not_delivered(spooler_factory: SpoolerFactory) -> None:
    spooler = spooler_factory().start()
    send_raw(spooler.raw_port, pjl_job("lee", "whole", b"complete job"))
    spooler.wait_delivered(1)
    client = socket.create_connection(("127.0.0.1", spooler.raw_port))
    client.sendall(b"A" * 3_000_000)  # half a job, never ended
    wait_for(lambda: any((spooler.state_dir / "incoming").iterdir()), what="partial data on disk")
    spooler.kill9()
    client.close()

    spooler.start()
    send_raw(spooler.raw_port, pjl_job("lee", "after", b"next job"))
    spooler.wait_delivered(2)
    spooler.wait_idle()  # the cut job, had it become one, would be delivered by now
    assert [spooler.sink_sidecar(f)["name"] for f in spooler.sink_files()] == ["whole", "after"]
    assert list((spooler.state_dir / "incoming").iterdir()) == []
    assert spooler.events("incoming_discarded")


def test_kill_9_in_the_middle_of_intake_and_delivery(spooler_factory: SpoolerFactory) -> None:
    """Clients send continuously; the daemon is killed at a random moment, twice, and restarted."""
    spooler = spooler_factory().start()
    acknowledged: list[bytes] = []
    sent: list[bytes] = []
    stop = threading.Event()

    def client(number: int) -> None:
        sequence = 0
        while not stop.is_set():
            payload = pjl_job(f"client{number}", f"c{number}-{sequence}", os.urandom(random.randint(100, 300_000)))
            sequence += 1
            sent.append(payload)
            try:
                send_raw(spooler.raw_port, payload, timeout=10)
            except OSError:
                time.sleep(0.05)  # the daemon is down: not acknowledged
                continue
            acknowledged.append(payload)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(3)]
    for thread in clients:
        thread.start()
    try:
        for _ in range(2):
            time.sleep(random.uniform(0.8, 1.6))
            spooler.kill9()
            time.sleep(0.2)
            spooler.start()
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in clients:
            thread.join(30)

    wait_for(lambda: len(spooler.sink_files()) >= len(acknowledged), timeout=60,
             what=f"every acknowledged job ({len(acknowledged)}); stderr {spooler.stderr_path}")
    spooler.wait_idle()
    delivered = [f.read_bytes() for f in spooler.sink_files()]
    journal = [d["uuid"] for d in spooler.deliveries()]
    assert len(journal) == len(set(journal)), "a job was delivered twice"
    # The journal line follows the sink's rename, so a kill between the two leaves a file without a line.
    assert len(delivered) >= len(journal)
    assert set(acknowledged) <= set(delivered), "an acknowledged job was lost"
    assert set(delivered) <= set(sent), "something was delivered that no client sent whole"
    job_ids = [d["job_id"] for d in spooler.deliveries()]
    assert job_ids == sorted(job_ids), "delivered out of arrival order"
    assert len(acknowledged) >= 5
