"""Replication benchmark: 10,000 accounting records made offline reach the central server after it
returns — how long it takes and the daemon's peak memory, with the default settings.

    python bench/replication.py [--records 10000] [--runs 3] [--json]

Setup (not timed): a state folder is filled through the store API with N finished offline jobs and
their records (as if N jobs had been printed on the device while the server was away). Per run, a
fresh reference server (`spooler-refserver`) starts with its ports refusing connections, a
`spooler serve` starts on a copy of that folder with `[server] api_url` pointing at it, and once the
spooler has seen the server down, the server is switched to normal at T0. Figures:

* detect: T0 -> the first record marked sent (includes the spooler noticing the server is back:
  probes every 1 s, up after 2 successes, then the outbox is kicked);
* replicate: T0 -> every record marked sent (the spooler's database, read-only, polled every 20 ms);
* upload: first -> last record marked sent (the outbox's own throughput);
* the daemon's peak RSS (VmHWM) before T0 (start-up: the recovery reads every job) and at the end,
  and its RSS before T0 and when the first record is seen sent;
* the peer: a plain client (http.client, no Twisted, no SQLite bookkeeping) posting the same records
  in the same batch size to another fresh reference server: its time is the floor the server sets.

The server then holds exactly N records (checked). Target (the issue): within 5 s. Medians, min and
max over the runs. Everything on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from spooler.accounting.records import RecordMaker  # noqa: E402
from spooler.config import AccountingConfig  # noqa: E402
from spooler.model import Document, Job, JobState, Mode, Route  # noqa: E402
from spooler.store.database import JobStore  # noqa: E402
from spooler_harness import RefServer, Spooler, wait_for  # noqa: E402

POLL = 0.02
USERS = [f"user{n:03d}" for n in range(200)]


def populate(state_dir: Path, count: int) -> float:
    """N finished offline jobs with their records, written through the store API. Returns seconds."""
    started = time.perf_counter()
    state_dir.mkdir(parents=True)
    store = JobStore.open(state_dir / "spooler.db", record_maker=RecordMaker(device="branch-bench"))
    store._db.execute("PRAGMA synchronous=OFF")  # setup only: the daemon reopens it with FULL
    now = time.time()
    for job_id in range(1, count + 1):
        pages = 1 + job_id % 9
        color = job_id % 3
        analysis = {"status": "ok", "reason": "", "pages": pages, "copies": 1, "sides": "one-sided",
                    "impressions": pages, "sheets": pages, "color_impressions": min(color, pages),
                    "mono_impressions": pages - min(color, pages), "sizes": {"iso_a4_210x297mm": pages}}  # fmt: skip
        when = now - 3600 + job_id * 0.1
        job = Job(job_id=job_id, uuid=f"bench-{job_id}", queue="default", protocol="raw",
                  user=USERS[job_id % len(USERS)], host="10.0.0.7", name=f"document {job_id}.pdf",
                  document_format="application/pdf", size=20_000 + job_id, state=JobState.PENDING,
                  reason="job-queued", created_at=when, route=Route.DEVICE, mode=Mode.OFFLINE,
                  attributes={"analysis": analysis})  # fmt: skip
        store.insert_job(job, [Document(job_id, 1, f"d{job_id:06d}-001", job.size, job.document_format)])
        store.update_job(job.evolve(state=JobState.COMPLETED, reason="job-completed-successfully",
                                    processing_at=when + 1, completed_at=when + 2, files_removed=True,
                                    attributes=job.attributes | {"delivery": {"completed_at": when + 2}}))  # fmt: skip
    store.close()
    return time.perf_counter() - started


def sent_count(database: Path) -> int:
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT COUNT(*) FROM accounting WHERE sent_at IS NOT NULL").fetchone()[0])
    finally:
        db.close()


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def spooler_run(template: Path, count: int) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="rb", dir="/tmp"))
    (root / "central").mkdir()
    (root / "sp").mkdir()
    central = RefServer(root / "central", mode="refuse")
    spooler = Spooler(root / "sp", **{"server__queue_uri": central.ipp_uri, "server__api_url": central.api_url,
                                      "device__name": "branch-bench", "log__level": "warn"})  # fmt: skip
    try:
        shutil.copytree(template, spooler.state_dir)
        central.start()
        spooler.start()
        wait_for(lambda: any(e.get("mode") == "offline" for e in spooler.events("mode_changed")), timeout=30,
                 what="the spooler to see the server down")  # fmt: skip
        assert spooler.process is not None
        rss_before, peak_before = memory(spooler.process.pid)
        database = spooler.state_dir / "spooler.db"
        assert sent_count(database) == 0
        central.mode("normal")
        t0 = time.perf_counter()
        first = last = None
        rss_first = 0
        while True:
            done = sent_count(database)
            moment = time.perf_counter()
            if done and first is None:
                first = moment
                rss_first, _ = memory(spooler.process.pid)
            if done >= count:
                last = moment
                break
            if moment - t0 > 120:
                raise AssertionError(f"only {done} of {count} records sent after 120 s")
            time.sleep(POLL)
        _, peak = memory(spooler.process.pid)
        at_server = int(central.status()["accounting_records"])
        if at_server != count:
            raise AssertionError(f"the server holds {at_server} records, not {count}")
        uploads = [e for e in spooler.events("records_replicated")]
        return {"detect_s": first - t0, "replicate_s": last - t0, "upload_s": last - first,
                "peak_rss_mib": peak / 1024, "rss_before_mib": rss_before / 1024, "rss_first_mib": rss_first / 1024,
                "peak_before_mib": peak_before / 1024, "uploads": len(uploads)}  # fmt: skip
    finally:
        spooler.cleanup()
        central.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def peer_run(template: Path, count: int, batch_size: int) -> float:
    """The same records posted by a plain client to a fresh reference server, in the same batches."""
    db = sqlite3.connect(f"file:{template / 'spooler.db'}?mode=ro", uri=True)
    bodies = [row[0] for row in db.execute("SELECT body FROM accounting ORDER BY finished_at, job_id")]
    db.close()
    root = Path(tempfile.mkdtemp(prefix="rp", dir="/tmp"))
    (root / "central").mkdir()
    central = RefServer(root / "central")
    try:
        central.start()
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", central.api_port, timeout=30)
        for offset in range(0, len(bodies), batch_size):
            records = [json.loads(body) for body in bodies[offset : offset + batch_size]]
            connection.request("POST", "/api/v1/accounting", body=json.dumps({"records": records}).encode(),
                               headers={"content-type": "application/json"})  # fmt: skip
            response = connection.getresponse()
            answer = json.loads(response.read())
            assert response.status == 200, answer
        elapsed = time.perf_counter() - started
        connection.close()
        assert int(central.status()["accounting_records"]) == count
        return elapsed
    finally:
        central.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    batch_size = AccountingConfig().batch_size
    work = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    try:
        template = work / "state"
        setup = populate(template, args.records)
        runs = [spooler_run(template, args.records) for _ in range(args.runs)]
        peers = [peer_run(template, args.records, batch_size) for _ in range(args.runs)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "records": args.records, "runs": args.runs, "batch_size": batch_size, "setup_s": round(setup, 1),
        **{key: summary([run[key] for run in runs]) for key in ("detect_s", "replicate_s", "upload_s", "peak_rss_mib",
                                                                "rss_before_mib", "rss_first_mib",
                                                                "peak_before_mib")},
        "uploads": runs[0]["uploads"], "peer_plain_client_s": summary(peers),
    }  # fmt: skip
    result["ratio_upload_to_peer"] = round(result["upload_s"]["median"] / result["peer_plain_client_s"]["median"], 2)
    result["target_met"] = result["replicate_s"]["median"] <= 5.0
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.records} offline records, batches of {batch_size}, {args.runs} runs (setup {setup:.1f} s)")
        for key, label in (("detect_s", "server back -> first record sent"),
                           ("replicate_s", "server back -> all records sent"),
                           ("upload_s", "first -> last record sent (outbox)"),
                           ("peer_plain_client_s", "plain client, same records and batches")):  # fmt: skip
            s = result[key]
            print(f"  {label:42s} median {s['median']:7.3f} s  (min {s['min']:.3f}, max {s['max']:.3f})")
        print(f"  {'outbox / plain client':42s} {result['ratio_upload_to_peer']:.2f}x")
        print(f"  {'daemon peak RSS (VmHWM) before T0':42s} median {result['peak_before_mib']['median']:7.1f} MiB"
              "  (start-up: recovery reads every job)")
        print(f"  {'daemon peak RSS (VmHWM) at the end':42s} median {result['peak_rss_mib']['median']:7.1f} MiB"
              f"  (RSS before T0: {result['rss_before_mib']['median']:.1f} MiB, at the first record sent:"
              f" {result['rss_first_mib']['median']:.1f} MiB)")  # fmt: skip
        print(f"  target (all within 5 s): {'met' if result['target_met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
