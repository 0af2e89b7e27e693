"""Failover benchmark: how fast the spooler notices that the central server is gone, how fast an
offline job reaches the device, and how fast it fails back — with the default [server] settings.

    python bench/failover.py [--runs 5] [--json]

One `spooler serve` (raw intake, device = its file sink) forwards to a central server queue that
this script plays itself: a raw socket:// peer on 127.0.0.1 that it starts and stops. Per run:

* failover latency: the server's listener is closed at T0 and a job is sent at once; the figure is
  T0 -> the job's file in the device sink (this includes detecting the loss: refused probes at the
  default 1 s interval, down after 2 in a row);
* offline job latency: with the server down, the time from the spooler's acknowledgement of a job
  (its close) to the job's file in the sink;
* failback latency: the server listens again at T1 and a job is sent every 200 ms; the figure is
  T1 -> the first job arriving at the server (default: up after 2 successful probes).

Targets (the issue): loss detected within 3 s, an offline job on the device within 0.5 s of its
acceptance, failback within 5 s. Medians, min and max over the runs. Everything on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

POLL = 0.005


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FakeServerQueue:
    """The central server's raw print queue: records every non-empty connection's bytes and time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.arrivals: list[tuple[float, bytes]] = []
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", port))
        self._server.listen(64)
        self._server.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            with connection:
                data = b""
                while chunk := connection.recv(65536):
                    data += chunk
                if data:
                    self.arrivals.append((time.monotonic(), data))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()


def send_job(port: int, payload: bytes) -> float:
    """Send one raw job; returns the time of the spooler's acknowledgement (its close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    return time.monotonic()


def wait(condition: Any, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(POLL)
    raise TimeoutError("timed out")


def sink_count(sink: Path) -> int:
    return len(list(sink.glob("job-*.prn"))) if sink.exists() else 0


def mode(state: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "spooler", "status", "--json", "--state-dir", str(state)],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    try:
        return str(json.loads(result.stdout)["mode"])
    except (ValueError, KeyError):
        return "?"


def one_run(root: Path) -> dict[str, float]:
    state = root / "state"
    raw_port, server_port = free_port(), free_port()
    config = root / "spooler.toml"
    config.write_text(
        f'state_dir = "{state}"\n[listen]\nraw = "tcp:{raw_port}:interface=127.0.0.1"\nlpd = ""\nipp = ""\n'
        f'[server]\nqueue_uri = "socket://127.0.0.1:{server_port}"\n'
    )
    server = FakeServerQueue(server_port)
    daemon = subprocess.Popen([sys.executable, "-m", "spooler", "serve", "--config", str(config)],
                              stdout=subprocess.DEVNULL, stderr=open(root / "stderr.log", "wb"))  # fmt: skip
    sink = state / "device"
    try:
        wait(lambda: (state / "admin.sock").exists(), 20)
        wait(lambda: mode(state) == "online", 20)
        send_job(raw_port, b"warm-up job\n")
        wait(lambda: len(server.arrivals) == 1)

        server.close()  # the central server is gone
        killed = time.monotonic()
        send_job(raw_port, b"first job after the loss\n")
        failover = wait(lambda: sink_count(sink) == 1) - killed

        acknowledged = send_job(raw_port, b"an offline job\n")
        offline = wait(lambda: sink_count(sink) == 2) - acknowledged

        server = FakeServerQueue(server_port)  # it is back
        returned = time.monotonic()
        # Until the spooler has seen the server up again (up_after probes), jobs still print on the
        # device: send one every 200 ms; the figure is the first arrival at the server.
        deadline = returned + 30
        while not server.arrivals and time.monotonic() < deadline:
            send_job(raw_port, b"a job after the return\n")
            time.sleep(0.2)
        failback = wait(lambda: len(server.arrivals) >= 1) - returned
        return {"failover_s": failover, "offline_job_s": offline, "failback_s": failback}
    finally:
        server.close()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)


def summarize(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    for run in range(args.runs):
        root = Path(tempfile.mkdtemp(prefix="fob", dir="/tmp"))
        try:
            results.append(one_run(root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(f"run {run + 1}/{args.runs}: " + ", ".join(f"{k} {v:.3f}" for k, v in results[-1].items()),
              file=sys.stderr)  # fmt: skip
    summary = {key: summarize([r[key] for r in results]) for key in results[0]}
    targets = {"failover_s": 3.0, "offline_job_s": 0.5, "failback_s": 5.0}
    if args.json:
        print(json.dumps({"runs": results, "summary": summary, "targets": targets}, indent=2))
        return 0
    print(f"Failover with the default [server] settings, {args.runs} runs (seconds)")
    print(f"  {'':36}{'median':>8}{'min':>8}{'max':>8}  target")
    labels = {"failover_s": "server killed -> job on the device", "offline_job_s": "offline job accepted -> device",
              "failback_s": "server back -> job at the server"}  # fmt: skip
    for key, label in labels.items():
        s = summary[key]
        verdict = "ok" if s["max"] <= targets[key] else "MISSED"
        print(f"  {label:36}{s['median']:8.3f}{s['min']:8.3f}{s['max']:8.3f}  <= {targets[key]} {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
