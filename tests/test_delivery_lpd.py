"""The lpd:// backend against a real `spooler serve` (an RFC 1179 server) and edge peers written here."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.protocol import Factory, Protocol

from spooler.delivery import backend_for_uri
from spooler.delivery.lpd import LpdBackend, control_file
from spooler.model import DeliveryError, JobState
from factories import delivery_files, job_factory
from spooler_harness import Spooler

SpoolerFactory = Callable[..., Spooler]


make_job = job_factory(job_id=1234, protocol="ipp", name="quarterly report", state=JobState.PROCESSING, copies=2)
files = partial(delivery_files, job_id=1234)


def lpd_backend(reactor: Any, port: int, queue: str = "default", **options: Any) -> LpdBackend:
    settings: dict[str, Any] = {"connect_timeout": 2, "io_timeout": 5, "host_name": "branch1"}
    settings.update(options)
    return LpdBackend(f"lpd://127.0.0.1:{port}/{queue}", reactor=reactor, clock=reactor, **settings)


def test_the_control_file() -> None:
    job = make_job(name='a "quoted"\nname\x07', copies=2)
    text = control_file(job, ["dfA234branch1", "dfB234branch1"], "branch1").decode()
    assert text == (
        "Hbranch1\nPalice\nJa \"quoted\"name\nCbranch1\n"
        "ldfA234branch1\nldfA234branch1\nUdfA234branch1\nNa \"quoted\"name\n"
        "ldfB234branch1\nldfB234branch1\nUdfB234branch1\nNa \"quoted\"name\n"
    )
    assert "\nLalice\n" in control_file(job, ["dfA234branch1"], "branch1", banner=True).decode()
    long_user = control_file(make_job(user="ü" * 40), ["dfA234branch1"], "branch1").decode().splitlines()[1]
    assert len(long_user.encode()) <= 32


@pytest_twisted.ensureDeferred
async def test_a_job_reaches_a_real_spooler_whole(reactor: Any, spooler_factory: SpoolerFactory,
                                                  tmp_path: Path) -> None:  # fmt: skip
    spooler = spooler_factory().start()
    parts = [b"%PDF-1.4\n" + os.urandom(300_000), os.urandom(5000)]
    backend = lpd_backend(reactor, spooler.lpd_port)
    await backend.probe()
    journaled: list[str] = []
    receipt = await backend.deliver(make_job(), files(tmp_path, *parts), journaled.append)
    assert "cfA234branch1" in receipt.detail and journaled == [] and receipt.remote_job_id is None
    [data] = spooler.wait_delivered(1)
    assert data.read_bytes() == b"".join(parts)
    sidecar = spooler.sink_sidecar(data)
    assert (sidecar["user"], sidecar["name"], sidecar["copies"]) == ("alice", "quarterly report", 2)
    assert sidecar["documents"] == [len(part) for part in parts]
    assert await backend.recover(make_job(), None) is None


@pytest_twisted.ensureDeferred
async def test_an_unknown_queue_is_refused_retryably(reactor: Any, spooler_factory: SpoolerFactory,
                                                     tmp_path: Path) -> None:  # fmt: skip
    spooler = spooler_factory().start()
    backend = lpd_backend(reactor, spooler.lpd_port, queue="nosuchqueue")
    with pytest.raises(DeliveryError) as raised:
        await backend.probe()
    assert raised.value.retryable
    with pytest.raises(DeliveryError) as raised:
        await backend.deliver(make_job(), files(tmp_path, b"x"))
    assert raised.value.retryable and "refused the receive-job command" in str(raised.value)


class ScriptedLpd(Protocol):
    """Answers each command line / file with the factory's next answer byte (None: stay silent)."""

    def __init__(self, owner: ScriptedFactory) -> None:
        self.owner = owner

    def dataReceived(self, data: bytes) -> None:
        self.owner.received += data
        if self.owner.answers:
            answer = self.owner.answers.pop(0)
            if answer is not None:
                self.transport.write(answer)  # type: ignore[union-attr]


class ScriptedFactory(Factory):
    def __init__(self, answers: list[bytes | None]) -> None:
        self.answers = answers
        self.received = b""

    def buildProtocol(self, addr: Any) -> Protocol:
        return ScriptedLpd(self)


@pytest_twisted.ensureDeferred
async def test_a_negative_acknowledgement_is_retryable(reactor: Any, tmp_path: Path) -> None:
    factory = ScriptedFactory([b"\x00", b"\x01"])  # takes the queue, refuses the control file
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        with pytest.raises(DeliveryError) as raised:
            await lpd_backend(reactor, port.getHost().port).deliver(make_job(), files(tmp_path, b"x"))
        assert raised.value.retryable and "acknowledgement 0x01" in str(raised.value)
        assert factory.received.startswith(b"\x02default\n\x02")
    finally:
        port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_silent_peer_fails_within_the_timeout(reactor: Any, tmp_path: Path) -> None:
    factory = ScriptedFactory([None] * 10)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        backend = lpd_backend(reactor, port.getHost().port, io_timeout=0.5, probe_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(DeliveryError) as raised:
            await backend.probe()
        assert raised.value.retryable and time.monotonic() - started < 1.5
        started = time.monotonic()
        with pytest.raises(DeliveryError) as raised:
            await backend.deliver(make_job(), files(tmp_path, b"x"))
        assert raised.value.retryable and "did not answer" in str(raised.value)
        assert time.monotonic() - started < 1.5
    finally:
        port.stopListening()


@pytest_twisted.ensureDeferred
async def test_refused_connection_is_retryable(reactor: Any, tmp_path: Path) -> None:
    port = reactor.listenTCP(0, ScriptedFactory([]), interface="127.0.0.1")
    number = port.getHost().port
    await port.stopListening()
    with pytest.raises(DeliveryError) as raised:
        await lpd_backend(reactor, number).deliver(make_job(), files(tmp_path, b"x"))
    assert raised.value.retryable and "cannot connect" in str(raised.value)


def test_uri_forms() -> None:
    backend = backend_for_uri("lpd://server.example/hall?banner=1", reactor=None, run_in_thread=None,  # type: ignore
                              connect_timeout=1, io_timeout=1)  # fmt: skip
    assert isinstance(backend, LpdBackend)
    assert (backend.host, backend.port, backend.queue, backend.banner) == ("server.example", 515, "hall", True)
    with pytest.raises(ValueError):
        LpdBackend("lpd://server.example/", reactor=None, clock=None, connect_timeout=1,  # type: ignore[arg-type]
                   io_timeout=1)  # fmt: skip
