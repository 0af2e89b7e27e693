"""The chaos run: IPP, LPD and raw clients submit numbered jobs while the spooler is killed with
`kill -9` and restarted and the central server and the device go down and up; then every delivery is
matched to its job and checked (used by bench/chaos.py and tests/test_chaos.py).

Each job's payload carries a unique id and a hash of its body (`CHAOS id=... len=... sha=...`), so a
copy found at the central server (the reference server's received/ folder) or at the device (a raw
socket printer, `ChaosDevice`, that records every connection) is matched to its job and known to be
whole or not. What the checker reports (`check`):

* sent / acknowledged (the client saw the protocol's success: IPP successful-ok, LPD's final 0 byte,
  raw's clean close) / delivered (whole copies at the server, at the device);
* lost: acknowledged, no whole copy anywhere;
* duplicates, classified: a raw device cannot be asked what it printed, so a job whose copy reached
  the device while the spooler was killed before it recorded the delivery is sent again after the
  restart (DESIGN.md 3 allows it: "unavoidable, raw"), as is one whose device reset the connection
  after reading it whole (switched off before it closed: the spooler cannot tell that from a device
  that lost the job, and sends it again rather than risk a loss). A forward whose answer was lost when
  the central server died, after which the job printed on the device, is in doubt (spooler.dispatch.reconcile):
  where the server's queue holds its jobs for release (`server_queue` "ipp-held", the default: the
  reference server with --hold, as MyQ and PaperCut pull print) and can be asked (IPP), the spooler
  cancels the held copy when the server returns, so such a duplicate is a failure; where the server
  prints at once ("ipp") or cannot be asked ("lpd", "raw") it stays "unavoidable, server died
  mid-forward"; and an LPD or raw queue, which cannot be asked, may also get a forward twice when the
  first one's end was lost to an outage or a kill ("sent again to a server queue that cannot be
  asked", unavoidable there). Only copies the server released (printed into its received/ folder)
  count. Every other duplicate is a bug (the spooler had recorded the delivery, or the peer could be
  asked);
* in-doubt forwards: how many, and what reconciliation did (canceled at the server, found printed
  there, found delivered, not there, left unresolved), from the spooler's own record;
* out of order, per queue: if job A was acknowledged before job B's client started sending B, and
  both went to the same queue, A must leave (the start of its first whole delivery, at the server or
  the device) before B — across failover and failback;
* not acknowledged but delivered: allowed only whole; a partial copy is a bug unless it is a raw
  delivery cut by a kill of the spooler (the device saw the stream end early: unavoidable, reported);
* per-job accounting: see ACCOUNTING_HOOK in `check`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import re
import socket
import struct
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from spooler_harness import LoopbackListener, RefServer, Spooler, pjl_job, wait_for

# -- payloads ---------------------------------------------------------------------------------------

MARK = re.compile(rb"CHAOS id=(?P<id>[A-Za-z0-9_.-]+) len=(?P<len>\d+) sha=(?P<sha>[0-9a-f]{16})\n")


def make_payload(token: str, size: int, rng: random.Random) -> bytes:
    body = rng.randbytes(size)
    head = b"CHAOS id=%s len=%d sha=%s\n" % (token.encode(), size, hashlib.sha256(body).hexdigest()[:16].encode())
    return head + body + b"\nCHAOS-END id=%s\n" % token.encode()


@dataclass(frozen=True)
class Copy:
    token: str
    whole: bool
    where: str  # server | device
    at: float  # when it left the spooler: the server's job creation, the device's connection start
    ended: float


def find_copies(data: bytes, where: str, at: float, ended: float) -> list[Copy]:
    """The job copies in one delivered byte stream (one normally; the PJL wrapper is ignored)."""
    copies = []
    for match in MARK.finditer(data):
        token, size = match["id"].decode(), int(match["len"])
        start = match.end()
        body = data[start:start + size]
        end_mark = b"\nCHAOS-END id=%s\n" % match["id"]
        whole = (len(body) == size and hashlib.sha256(body).hexdigest()[:16] == match["sha"].decode()
                 and data[start + size:start + size + len(end_mark)] == end_mark)  # fmt: skip
        copies.append(Copy(token, whole, where, at, ended))
    return copies


# -- the device ---------------------------------------------------------------------------------------


@dataclass
class Arrival:
    start: float
    end: float = 0.0
    data: bytes = b""
    clean: bool = False  # the device read the stream to its end (False: a reset, or switched off first)
    cut: bool = False  # switched off before the end of the stream


class ChaosDevice(LoopbackListener):
    """A raw (AppSocket) printer on 127.0.0.1 that records every connection and can go down and up
    (down: stop listening and reset the connections under way, as a printer switched off)."""

    backlog = 64

    def __init__(self, port: int | None = None) -> None:
        self.arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, Arrival] = {}
        super().__init__(port)

    def switched_off(self) -> None:
        with self._lock:
            for connection, arrival in list(self._connections.items()):
                if not arrival.clean:
                    arrival.cut = True  # switched off before it read the end of the job: not printed
                try:
                    # A reset, never a FIN: SHUT_RD wakes the reading thread without telling the peer
                    # anything, and its close with SO_LINGER 0 resets the connection (SHUT_RDWR would
                    # send a FIN first, which the spooler rightly takes for "the device has it all").
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    connection.shutdown(socket.SHUT_RD)
                except OSError:
                    pass

    def accepted(self, connection: socket.socket) -> None:
        arrival = Arrival(time.time())
        with self._lock:
            self._connections[connection] = arrival
        threading.Thread(target=self._receive, args=(connection, arrival), daemon=True).start()

    def _receive(self, connection: socket.socket, arrival: Arrival) -> None:
        chunks = []
        try:
            connection.settimeout(60)
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    with self._lock:
                        arrival.clean = not arrival.cut  # (after a switch-off, the end is our own shutdown)
                    break
                chunks.append(chunk)
        except OSError:
            pass
        finally:
            arrival.end = time.time()
            arrival.data = b"".join(chunks)
            with self._lock:
                self._connections.pop(connection, None)
                if arrival.data:  # an empty connection is a probe, not a job
                    self.arrivals.append(arrival)
            connection.close()



# -- the clients ---------------------------------------------------------------------------------------


@dataclass
class Submission:
    token: str
    protocol: str  # ipp | lpd | raw
    client: str
    queue: str
    size: int
    started: float
    ended: float = 0.0
    acked: bool = False
    outcome: str = ""


def ipp_print_job(port: int, queue: str, user: str, name: str, data: bytes, timeout: float = 30.0) -> int:
    """One IPP Print-Job over HTTP/1.1 (our own minimal client, built on the spooler's IPP codec);
    the IPP status-code of the answer. Raises OSError (or http.client errors) when there is none."""
    from spooler.ipp.codec import Attribute, IppMessage, decode, encode_message
    from spooler.ipp.tags import Operation, Tag

    path = "/ipp/print" if queue == "default" else f"/ipp/print/{queue}"
    message = IppMessage((2, 0), int(Operation.PRINT_JOB), 1)
    message.add_group(Tag.OPERATION, Attribute.charset("attributes-charset", "utf-8"),
                      Attribute.language("attributes-natural-language", "en"),
                      Attribute.uri("printer-uri", f"ipp://127.0.0.1:{port}{path}"),
                      Attribute.name("requesting-user-name", user), Attribute.name("job-name", name),
                      Attribute.mime("document-format", "application/octet-stream"))  # fmt: skip
    message.data = data
    body = encode_message(message)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/ipp"})
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            return -response.status
        return decode(answer).code
    finally:
        connection.close()


def lpd_print(port: int, queue: str, user: str, name: str, data: bytes, number: int, timeout: float = 30.0) -> bool:
    """One LPD job (RFC 1179 receive-job: control file, then data file); True when every step,
    the last one included (the job's commit), was acknowledged with a 0 byte."""
    control = f"Hchaos\nP{user}\nJ{name}\nldfA{number % 1000:03d}chaos\nUdfA{number % 1000:03d}chaos\n".encode()
    steps = [b"\x02%s\n" % queue.encode(), b"\x02%d cfA%03dchaos\n" % (len(control), number % 1000),
             control + b"\x00", b"\x03%d dfA%03dchaos\n" % (len(data), number % 1000), data + b"\x00"]  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        for step in steps:
            sock.sendall(step)
            if sock.recv(1) != b"\x00":
                return False
    return True


def raw_print(port: int, data: bytes, timeout: float = 30.0) -> bool:
    """One raw (port 9100) job: send, half-close, read to the end. True only for a clean close (the
    spooler's acknowledgement); a reset is not one."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    return True


class Clients:
    """Client threads, each sending numbered jobs back to back over its protocol to its queue."""

    def __init__(self, spooler: Spooler, plan: list[tuple[str, str]], seed: int, max_size: int, run_tag: str,
                 think: float) -> None:  # fmt: skip
        self.spooler = spooler
        self.think = think
        self.plan = plan  # (protocol, queue) per client
        self.seed = seed
        self.max_size = max_size
        self.run_tag = run_tag
        self.submissions: list[Submission] = []
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for number, (protocol, queue) in enumerate(self.plan):
            thread = threading.Thread(target=self._client, args=(number, protocol, queue), daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(60)

    def _client(self, number: int, protocol: str, queue: str) -> None:
        rng = random.Random(self.seed * 1000 + number)
        client = f"{protocol}{number}"
        sequence = 0
        while not self.stop.is_set():
            sequence += 1
            token = f"{self.run_tag}.{client}.{sequence}"
            size = rng.randint(100, self.max_size) if rng.random() < 0.95 else rng.randint(self.max_size, 8 * self.max_size)
            payload = make_payload(token, size, rng)
            submission = Submission(token, protocol, client, queue, len(payload), time.time())
            with self._lock:
                self.submissions.append(submission)
            try:
                if protocol == "ipp":
                    status = ipp_print_job(self.spooler.ipp_port, queue, client, token, payload)
                    submission.acked, submission.outcome = status in (0, 1, 2), f"status {status:#06x}" if status >= 0 else f"HTTP {-status}"
                elif protocol == "lpd":
                    submission.acked = lpd_print(self.spooler.lpd_port, queue, client, token, payload, sequence)
                    submission.outcome = "ack" if submission.acked else "refused"
                else:
                    submission.acked = raw_print(self.spooler.raw_port, pjl_job(client, token, payload, language="PCL"))
                    submission.outcome = "closed"
            except (OSError, http.client.HTTPException, ValueError) as error:
                submission.outcome = type(error).__name__
            submission.ended = time.time()
            if not submission.acked:
                time.sleep(rng.uniform(0.02, 0.1))  # the spooler is down or restarting
            else:
                time.sleep(rng.expovariate(1 / self.think))


# -- the run ---------------------------------------------------------------------------------------------


@dataclass
class ChaosRun:
    """One chaos run in `root` (which it fills and leaves for inspection; the caller removes it)."""

    root: Path
    seconds: float
    seed: int = 1
    plan: list[tuple[str, str]] = field(default_factory=lambda: [
        ("ipp", "default"), ("ipp", "ordered"), ("lpd", "default"), ("lpd", "ordered"), ("raw", "default"),
        ("raw", "default")])  # fmt: skip
    max_size: int = 64 * 1024
    #: Mean seconds between two acts of chaos (spooler kill, server change, device change).
    pace: float = 2.5
    #: Mean seconds a client waits between two jobs (6 clients at 0.3 s: about 20 jobs/s offered).
    think: float = 0.3
    #: Acts to play in this order (see `act`) instead of random ones.
    script: list[str] | None = None
    log: Callable[[str], None] = lambda line: None
    server_state: str = "up"
    events: list[tuple[float, str]] = field(default_factory=list)
    #: The central server's queue: "ipp-held" (IPP, jobs held until released: pull print), "ipp" (IPP,
    #: printed at once), "lpd" or "raw" (neither can be asked what it holds).
    server_queue: str = "ipp-held"
    #: With "ipp-held": a held job prints on its own this long after it arrived (working time).
    release_after: float = 8.0

    def run(self) -> dict[str, Any]:
        rng = random.Random(self.seed)
        for part in ("central", "branch"):
            (self.root / part).mkdir(parents=True, exist_ok=True)
        if self.server_queue not in SERVER_QUEUES:
            raise ValueError(f"server_queue must be one of {', '.join(SERVER_QUEUES)}")
        held = self.server_queue == "ipp-held"
        self.central = RefServer(self.root / "central", raw=self.server_queue == "raw", hold=held,
                                 release_after=self.release_after if held else None)  # fmt: skip
        queue_uri = {"ipp-held": self.central.ipp_uri, "ipp": self.central.ipp_uri, "lpd": self.central.lpd_uri,
                     "raw": f"socket://127.0.0.1:{self.central.raw_port}"}[self.server_queue]  # fmt: skip
        self.device = ChaosDevice()
        self.spooler = Spooler(self.root / "branch", **{
            "server__queue_uri": queue_uri, "server__probe_interval": "250ms",
            "server__probe_timeout": "750ms", "server__connect_timeout": "1s", "server__io_timeout": "5s",
            "device__uri": f"socket://127.0.0.1:{self.device.port}", "device__connect_timeout": "1s",
            "device__io_timeout": "5s", "device__retry_initial": "200ms", "device__retry_max": "1s",
            "queues.default__offline_policy": "print", "queues.ordered__offline_policy": "queue",
            "log__spool_log_max_size": "1GiB",
            # accounting records go up to the central API while the chaos goes on (uploads get cut
            # by kills and outages too); a record waits at most 5 s for page figures a kill lost
            "server__api_url": self.central.api_url, "accounting__interval": "500ms",
            "accounting__retry_initial": "200ms", "accounting__retry_max": "1s", "accounting__analysis_wait": "5s",
        })  # fmt: skip
        clients = Clients(self.spooler, self.plan, self.seed, self.max_size, f"r{self.seed}", self.think)
        try:
            self.central.start()
            self.spooler.start()
            self.note("all up")
            clients.start()
            self._chaos(rng)
            clients.join()
            self._restore()
            self._drain()
            self._drain_outbox()
            return check(clients.submissions, self._copies(), self.events, self.spooler.jobs(),
                         self.spooler.events("job_completed"), self._server_records(),
                         in_doubt=self._in_doubt(), server_queue=self.server_queue)  # fmt: skip
        finally:
            clients.stop.set()
            for process in (self.spooler, self.central):
                if process.process is not None and process.process.poll() is None:
                    process.process.kill()
                    process.process.wait()
                process.process = None
            self.device.close()

    def note(self, what: str, at: float | None = None) -> None:
        """`what` happened at `at` (default: now); an act's time is when it began, since the command
        that carries it out (a kill, a `ctl mode`) takes effect before it returns."""
        self.events.append((time.time() if at is None else at, what))
        self.log(f"{time.strftime('%H:%M:%S')} {what}")

    def _chaos(self, rng: random.Random) -> None:
        """Acts of chaos at random moments (mean `pace` seconds apart): random ones until the time is
        up, or, when `script` is given, every act of the script in turn (however long the acts take on a
        loaded machine: a restart waits for the spooler to listen), then quiet until the time is up."""
        deadline = time.monotonic() + self.seconds
        script = list(self.script or [])
        while script or time.monotonic() < deadline:
            wait = rng.expovariate(1 / self.pace)
            time.sleep(wait if script else min(wait, max(0.0, deadline - time.monotonic())))
            if script:
                self.act(script.pop(0), rng)
            elif self.script is None and time.monotonic() < deadline:
                self.act(rng.choices(["spooler", "server", "device"], weights=[4, 3, 2])[0], rng)

    def act(self, act: str, rng: random.Random) -> None:
        """One act: "spooler" (kill -9, restart), "server" or "device" (down if up, up if down)."""
        if act == "spooler":
            began = time.time()
            self.spooler.kill9()
            self.note("spooler killed", at=began)
            time.sleep(rng.uniform(0.05, 1.0))
            self.spooler.start()
            self.note("spooler restarted")
        elif act == "server":
            if self.server_state != "up":
                if self.server_state == "killed":
                    self.central.start()
                else:
                    self.central.mode("normal")
                self.server_state = "up"
                self.note("server up")
            else:
                self.server_state = rng.choices(["killed", "refuse", "hang", "error"], weights=[3, 1, 1, 1])[0]
                began = time.time()
                if self.server_state == "killed":
                    self.central.kill9()
                else:
                    self.central.mode(self.server_state)
                self.note(f"server down ({self.server_state})", at=began)
        elif self.device.is_up:
            began = time.time()
            self.device.down()
            self.note("device down", at=began)
        else:
            self.device.up()
            self.note("device up")

    def _restore(self) -> None:
        if self.central.process is None:
            self.central.start()
        self.central.mode("normal")
        self.device.up()
        if self.spooler.process is None:
            self.spooler.start()
        self.note("clients stopped; everything up again")

    def _waiting(self, state_dir: Path) -> int:
        """Jobs not done yet: pending, processing, or held for release (but not an empty Create-Job,
        which never prints: in-doubt forwards left some, and reconciliation cancels them)."""
        result = self.spooler.cli("jobs", "--json", "--state-dir", str(state_dir), check=False)
        if result.returncode != 0:
            return -1
        return sum(1 for job in json.loads(result.stdout) if job["state"] in ("pending", "processing")
                   or (job["state"] == "pending-held" and job["reason"] != "job-incoming"))  # fmt: skip

    def _open_doubts(self) -> int:
        result = self.spooler.cli("status", "--json", check=False)
        if result.returncode != 0:
            return -1
        return int((json.loads(result.stdout).get("forwards_in_doubt") or {}).get("open", 0))

    def _drain(self) -> None:
        # The in-doubt forwards first: the server must not release a copy reconciliation will cancel.
        wait_for(lambda: self._open_doubts() == 0, timeout=120, interval=0.5, what="the in-doubt forwards settled")
        self.note("in-doubt forwards settled")

        def drained() -> bool:
            return self._waiting(self.spooler.state_dir) == 0 and self._waiting(self.central.state_dir / "queue") == 0

        wait_for(drained, timeout=180, interval=0.5, what="both queues to drain")
        time.sleep(1.0)  # let the last device connection be recorded
        self.note("drained")

    def _in_doubt(self) -> dict[str, Any]:
        """What the spooler kept in doubt and settled (its status), and what the server still holds empty."""
        result = self.spooler.cli("status", "--json")
        counts = dict(json.loads(result.stdout).get("forwards_in_doubt") or {})
        queue = self.spooler.cli("jobs", "--all", "--json", "--state-dir", str(self.central.state_dir / "queue"))
        counts["empty_jobs_left_at_server"] = sum(1 for job in json.loads(queue.stdout)
                                                  if job["state"] == "pending-held" and job["reason"] == "job-incoming")
        counts["events"] = [{key: event.get(key) for key in ("job_id", "outcome", "detail", "stage")}
                            for event in self.spooler.events("forward_reconciled")]  # fmt: skip
        return counts

    def _drain_outbox(self) -> None:
        """Wait until every accounting record has gone up to the central server."""

        def sent() -> bool:
            result = self.spooler.cli("outbox", "--json", check=False)
            if result.returncode != 0:
                return False
            counts = json.loads(result.stdout)
            return counts["records"] > 0 and counts["waiting"] == 0 and counts["rejected"] == 0

        wait_for(sent, timeout=120, interval=0.5, what="the accounting records to reach the server")
        self.note("accounting sent")

    def _server_records(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.central.api_url}/accounting", timeout=30) as answer:
            return list(json.load(answer)["records"])

    def _copies(self) -> list[Copy]:
        copies: list[Copy] = []
        for data_file in sorted(self.central.received_dir.glob("job-*.prn")):
            sidecar = json.loads(data_file.with_suffix(".json").read_text())
            copies += find_copies(data_file.read_bytes(), "server", float(sidecar["created_at"]),
                                  float(sidecar["delivered_at"]))  # fmt: skip
        for arrival in list(self.device.arrivals):
            found = find_copies(arrival.data, "device", arrival.start, arrival.end)
            if not arrival.clean:  # the device was switched off while reading: it did not print it
                found = [Copy(c.token, False, "device-cut", c.at, c.ended) for c in found]
            copies += found
        return copies


# -- the checker ---------------------------------------------------------------------------------------------


def _iso(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


def check(submissions: list[Submission], copies: list[Copy], events: list[tuple[float, str]],
          spooler_jobs: list[dict[str, Any]], completions: list[dict[str, Any]],
          server_records: list[dict[str, Any]] | None = None, *, in_doubt: dict[str, Any] | None = None,
          server_queue: str = "ipp-held") -> dict[str, Any]:  # fmt: skip
    """Match every copy to its job and count what went right and wrong (see the module's docstring).
    `events` is the run's timeline ("spooler killed", "server down (...)", ...), `spooler_jobs` the
    spooler's jobs (`spooler jobs --all --json`), `completions` its job_completed log records,
    `in_doubt` the spooler's in-doubt forwards by outcome, `server_queue` the kind of server queue."""
    by_token = {s.token: s for s in submissions}
    whole: dict[str, list[Copy]] = defaultdict(list)
    partial: dict[str, list[Copy]] = defaultdict(list)
    unknown = 0
    for found in copies:
        if found.token not in by_token:
            unknown += 1
        elif found.whole:
            whole[found.token].append(found)
        else:
            partial[found.token].append(found)
    kills = [at for at, what in events if what == "spooler killed"]
    server_down = [at for at, what in events if what.startswith("server down")]
    jobs = {job["name"]: job for job in spooler_jobs}
    completed: dict[int, list[float]] = defaultdict(list)
    for record in completions:
        completed[int(record["job_id"])].append(_iso(record["time"]))

    report: dict[str, Any] = {"sent": len(submissions), "acknowledged": sum(s.acked for s in submissions)}
    report["by_protocol"] = {p: {"sent": sum(s.protocol == p for s in submissions),
                                 "acknowledged": sum(s.acked and s.protocol == p for s in submissions)}
                             for p in sorted({s.protocol for s in submissions})}  # fmt: skip
    report["delivered_at_server"] = sum(1 for t in whole if whole[t][0].where == "server" or
                                        any(c.where == "server" for c in whole[t]))  # fmt: skip
    report["delivered_at_device"] = sum(1 for t in whole if any(c.where == "device" for c in whole[t]))
    report["delivered"] = len(whole)
    report["lost"] = sorted(s.token for s in submissions if s.acked and s.token not in whole)
    report["unknown_copies"] = unknown

    device_off = [at for at, what in events if what == "device down"]
    duplicates: dict[str, list[str]] = {"raw_kill_unavoidable": [], "raw_device_off_unavoidable": [],
                                        "server_died_mid_forward": [], "held_copy_not_canceled": [],
                                        "server_cannot_be_asked": [],
                                        "bug": []}  # fmt: skip
    # A held copy at a server that can be asked is canceled by reconciliation: never printed twice.
    reconcilable = server_queue == "ipp-held"
    for token, found in whole.items():
        if len(found) < 2:
            continue
        found = sorted(found, key=lambda c: c.at)
        job = jobs.get(token)
        done_times = completed.get(int(job["job_id"]), []) if job else []
        for first, second in zip(found, found[1:]):
            if first.where == "device":  # then the device again, or the server once it was back
                kill = next((k for k in kills if first.at <= k <= second.at), None)
                recorded_before = kill is not None and any(t < kill for t in done_times)
                if kill is not None and not recorded_before:
                    kind = "raw_kill_unavoidable"
                elif any(first.at <= d <= second.at for d in device_off) and not done_times[:-1]:
                    # The device read the whole job, then was switched off before it closed the
                    # connection: the spooler saw a reset and sent the job again (spooler.delivery.socket).
                    kind = "raw_device_off_unavoidable"
                else:
                    kind = "bug"
            elif first.where == "server" and second.where == "device":
                died = any(first.at - 5 <= d <= second.at for d in server_down)
                kind = ("held_copy_not_canceled" if reconcilable else "server_died_mid_forward") if died else "bug"
            elif server_queue in ("lpd", "raw"):
                # An LPD or raw queue cannot be asked what it kept: a forward whose last acknowledgement
                # (or the end of the connection) was lost to an outage or a kill is sent again.
                cut = any(first.at - 5 <= t <= second.at for t in server_down + kills)
                kind = "server_cannot_be_asked" if cut else "bug"
            else:
                kind = "bug"  # the server can be asked (IPP Get-Job-Attributes): never twice there
            duplicates[kind].append(token)
    report["duplicates"] = {kind: len(tokens) for kind, tokens in duplicates.items()}
    report["duplicate_tokens"] = duplicates

    # Partial copies: a raw delivery cut by a kill of the spooler is unavoidable; one cut by the device
    # going down is the device's loss (the spooler sends it again); anything else is a bug.
    partial_kinds: Counter[str] = Counter()
    partial_bugs = []
    for token, found in partial.items():
        for cut in found:
            if cut.where == "device-cut":
                partial_kinds["device_switched_off"] += 1
            elif cut.where == "device" and any(cut.at - 0.1 <= k <= cut.ended + 0.1 for k in kills):
                partial_kinds["raw_cut_by_spooler_kill"] += 1
            else:
                partial_kinds["bug"] += 1
                partial_bugs.append(token)
    report["partial_copies"] = dict(partial_kinds)
    report["partial_bug_tokens"] = partial_bugs

    not_acked = [s for s in submissions if not s.acked]
    report["not_acknowledged"] = {
        "refused_at_connect": sum(1 for s in not_acked if s.outcome == "ConnectionRefusedError"),
        "absent": sum(1 for s in not_acked if s.token not in whole and s.token not in partial),
        "delivered_whole": sum(1 for s in not_acked if s.token in whole),
        "only_partial": sum(1 for s in not_acked if s.token not in whole and s.token in partial),
    }

    # Order, per queue: if A was acknowledged before B's client began sending B, A leaves first.
    out_of_order = []
    leave = {token: min(c.at for c in found) for token, found in whole.items()}
    for queue in sorted({s.queue for s in submissions}):
        delivered = [s for s in submissions if s.queue == queue and s.token in leave]
        acked = sorted((s for s in delivered if s.acked), key=lambda s: s.ended)
        cursor, latest, latest_token = 0, float("-inf"), ""
        for later in sorted(delivered, key=lambda s: s.started):
            while cursor < len(acked) and acked[cursor].ended < later.started:
                if leave[acked[cursor].token] > latest:
                    latest, latest_token = leave[acked[cursor].token], acked[cursor].token
                cursor += 1
            if leave[later.token] < latest:
                out_of_order.append((queue, latest_token, later.token))
    report["out_of_order"] = len(out_of_order)
    report["out_of_order_pairs"] = out_of_order[:20]

    # The spooler's own view: every acknowledged job ends completed.
    states = Counter(jobs[s.token]["state"] for s in submissions if s.acked and s.token in jobs)
    report["acknowledged_job_states"] = dict(states)
    report["acknowledged_unknown_to_spooler"] = sum(1 for s in submissions if s.acked and s.token not in jobs)

    # Accounting: every acknowledged job has exactly one record at the central server (uploads were
    # cut by kills and outages; the server keeps a record_id once, so a second record of one job
    # could only come from the spooler making two), and the server holds no record of a job the
    # spooler does not know.
    accounting_failures = 0
    if server_records is not None:
        per_job = Counter(r.get("job_id") for r in server_records)
        known_ids = {job["job_id"] for job in spooler_jobs}
        acked_ids = [jobs[s.token]["job_id"] for s in submissions if s.acked and s.token in jobs]
        report["accounting_records_at_server"] = len(server_records)
        report["accounting_missing"] = [job_id for job_id in acked_ids if per_job[job_id] == 0][:20]
        report["accounting_duplicated"] = [job_id for job_id, n in per_job.items() if n > 1][:20]
        report["accounting_unknown_jobs"] = [job_id for job_id in per_job if job_id not in known_ids][:20]
        accounting_failures = (sum(1 for job_id in acked_ids if per_job[job_id] == 0)
                               + sum(1 for n in per_job.values() if n > 1)
                               + sum(1 for job_id in per_job if job_id not in known_ids))  # fmt: skip

    report["server_queue"] = server_queue
    report["in_doubt"] = in_doubt
    empty_left = int((in_doubt or {}).get("empty_jobs_left_at_server", 0)) if reconcilable else 0

    report["kills"] = len(kills)
    report["server_outages"] = len(server_down)
    report["device_outages"] = sum(1 for _, what in events if what == "device down")
    report["failures"] = (len(report["lost"]) + len(duplicates["bug"]) + len(duplicates["held_copy_not_canceled"])
                          + empty_left + len(partial_bugs) + len(out_of_order)
                          + report["acknowledged_unknown_to_spooler"] + unknown + accounting_failures
                          + sum(n for state, n in states.items() if state != "completed"))  # fmt: skip
    return report


SERVER_QUEUES = ("ipp-held", "ipp", "lpd", "raw")


def in_doubt_line(report: dict[str, Any]) -> str:
    """The summary line of the in-doubt forwards: how many, and what reconciliation did with each."""
    doubt, queue = report.get("in_doubt"), report.get("server_queue", "ipp-held")
    if doubt is None:
        return "in-doubt forwards: not checked"
    total = sum(int(doubt.get(k, 0)) for k in ("open", "canceled", "printed_at_server", "delivered", "not_at_server",
                                               "kept", "unresolved"))  # fmt: skip
    if queue in ("lpd", "raw"):
        return (f"in-doubt forwards {total}: the server's {queue} queue cannot be asked what it kept, so "
                f"{doubt.get('unresolved', 0)} were left unresolved (their duplicates stay unavoidable)")
    held = "holds its jobs for release" if queue == "ipp-held" else "prints at once"
    return (f"in-doubt forwards {total} (the server {held}): reconciled by cancel {doubt.get('canceled', 0)}, "
            f"found printed at the server {doubt.get('printed_at_server', 0)}, found there whole and taken as the "
            f"delivery {doubt.get('delivered', 0)}, not at the server {doubt.get('not_at_server', 0)}, kept there "
            f"{doubt.get('kept', 0)}, left unresolved {int(doubt.get('unresolved', 0)) + int(doubt.get('open', 0))}; "
            f"empty jobs left at the server {doubt.get('empty_jobs_left_at_server', 0)}")


def summary(report: dict[str, Any], seconds: float) -> str:
    """The report as a few human lines."""
    d, p, n = report["duplicates"], report["partial_copies"], report["not_acknowledged"]
    protocols = ", ".join(f"{name} {v['acknowledged']}/{v['sent']}" for name, v in report["by_protocol"].items())
    lines = [
        f"chaos run of {seconds / 60:.1f} min: {report['kills']} kill -9 of the spooler, "
        f"{report['server_outages']} central server outages, {report['device_outages']} device outages",
        f"jobs sent {report['sent']}, acknowledged {report['acknowledged']} ({protocols})",
        f"delivered {report['delivered']} (at the server {report['delivered_at_server']}, "
        f"at the device {report['delivered_at_device']})",
        f"lost {len(report['lost'])}",
        f"duplicates: bugs {d['bug']}; held copies at the server not canceled {d['held_copy_not_canceled']}; "
        f"unavoidable: raw device, spooler killed before recording the delivery "
        f"{d['raw_kill_unavoidable']}; raw device switched off after reading the job, before closing "
        f"{d['raw_device_off_unavoidable']}; server died mid-forward, then printed on the device {d['server_died_mid_forward']}"
        + (f"; sent again to a server queue that cannot be asked {d['server_cannot_be_asked']}"
           if report.get("server_queue") in ("lpd", "raw") else ""),
        in_doubt_line(report),
        f"out of order {report['out_of_order']}",
        f"not acknowledged: {n['refused_at_connect']} refused at connect (spooler down); "
        f"the others absent {n['absent'] - n['refused_at_connect']}, delivered whole {n['delivered_whole']}, "
        f"only partial copies {n['only_partial']}",
        "partial copies: " + (", ".join(f"{k} {v}" for k, v in sorted(p.items())) or "none"),
        f"acknowledged jobs' final states at the spooler: {report['acknowledged_job_states']}",
        f"accounting records at the central server {report.get('accounting_records_at_server', 'not checked')}: "
        f"acknowledged jobs without one {len(report.get('accounting_missing', []))}, jobs with more than one "
        f"{len(report.get('accounting_duplicated', []))}, records of unknown jobs {len(report.get('accounting_unknown_jobs', []))}",
        f"FAILURES {report['failures']}" + ("" if report["failures"] else " (none)"),
    ]
    return "\n".join(lines)
