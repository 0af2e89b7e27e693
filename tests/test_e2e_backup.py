"""Backup and restore with real processes: `spooler backup` while jobs arrive through `nc` (raw port
9100 style), `spooler restore` into a fresh state folder, and a spooler started there that has every
job acknowledged before the backup began, held (it may have printed since the backup) until the admin
releases it, then printed byte for byte, and whose login cache still decrypts (an offline PIN login
works). `--deliver-waiting` delivers them at start. Restore refuses while a spooler runs, and a
damaged file."""

from __future__ import annotations

import json
import os
import random
import tarfile
import time
from pathlib import Path

import pytest

from spooler_harness import RawJobSender, RefServer, Spooler, short_tempdir, wait_for
from test_e2e_login import admin, central, login, spoolers  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e


def body_of(number: int) -> bytes:
    """Job `number`'s data: small ones are stored inline in the database, large ones in spool files."""
    size = 1500 if number % 2 == 0 else 150_000
    return random.Random(number).randbytes(size)


def test_backup_while_jobs_arrive_and_restore(central: RefServer, spoolers: list[Spooler], tmp_path: Path) -> None:
    settings = {"server__queue_uri": central.ipp_uri, "server__api_url": central.api_url, "device__name": "branch-1",
                "login__sync_interval": 0, "login__share_listen": "",
                # The device never answers: every job stays in the spool, waiting.
                "device__uri": "socket://127.0.0.1:9", "device__connect_timeout": "1s"}  # fmt: skip
    original = Spooler(short_tempdir(), **settings)
    spoolers.append(original)
    original.start()
    synced = original.cli("users", "sync", "--json")
    assert json.loads(synced.stdout)["users"] == 3  # alice, bob, carol (dave is another device's)
    # Then the central server goes down, so nothing leaves the spool.
    central.mode("refuse")

    sender = RawJobSender(lambda: original.raw_port, tmp_path, body_of, prefix="backup")
    sender.start()
    try:
        wait_for(lambda: len(sender.acknowledged) >= 8, timeout=60, what="8 acknowledged jobs")
        backup_file = tmp_path / "branch.backup"
        began = time.time()
        made = original.cli("backup", str(backup_file), "--json")
        wait_for(lambda: any(at > time.time() - 0.5 and at > began for at in sender.acknowledged.values())
                 or len(sender.acknowledged) > 40, timeout=30, what="jobs after the backup")  # fmt: skip
    finally:
        sender.finish()
    assert sender.refused == 0
    before = sorted(name for name, at in sender.acknowledged.items() if at < began)
    assert len(before) >= 8
    manifest = json.loads(made.stdout)
    assert manifest["databases"]["spooler.db"]["jobs"] >= len(before)
    assert manifest["databases"]["login.db"]["users"] == 3
    assert os.stat(backup_file).st_mode & 0o777 == 0o600  # it holds the login cache's key

    # A restore refuses while a spooler runs on the state folder.
    refused = original.cli("restore", str(backup_file), "--force", check=False)
    assert refused.returncode == 1 and "in use by another spooler" in refused.stderr
    original.stop()

    # Restored into a fresh state folder: every job acknowledged before the backup began is there.
    restored = Spooler(short_tempdir(), **{key: value for key, value in settings.items()
                                           if not key.startswith("device__uri")})  # the default file sink
    spoolers.append(restored)
    done = json.loads(restored.cli("restore", str(backup_file), "--json").stdout)
    assert done["jobs"] >= len(before)
    listed = {job["name"]: job for job in json.loads(restored.cli("jobs", "--all", "--json").stdout)}
    assert set(before) <= set(listed), sorted(set(before) - set(listed))
    # Every one was waiting (nothing could be delivered): each is held now, as it may have printed
    # since the backup was made.
    assert sorted(done["jobs_held"]) == sorted(job["job_id"] for job in listed.values())
    assert {job["state"] for job in listed.values()} == {"pending-held"}
    down = restored.cli("status").stdout  # the daemon is not running: the stored cache opens with its key
    assert "NOT RUNNING" in down and "login cache 3 user(s): 3 usable" in down, down
    # Restoring again over it needs --force.
    again = restored.cli("restore", str(backup_file), check=False)
    assert again.returncode == 1 and "--force" in again.stderr

    # Started there (the central server still down): the admin releases every job but one (the
    # first with the CLI); they print on the device. The one not released stays held and unprinted.
    restored.start()
    kept = listed[before[0]]["job_id"]
    released = sorted(job["job_id"] for job in listed.values() if job["job_id"] != kept)
    assert restored.cli("release", str(released[0])).stdout == f"job {released[0]}: pending\n"
    for job_id in released[1:]:
        assert admin(restored, "POST", f"/v1/jobs/{job_id}/release")[0] == 200
    restored.wait_delivered(len(released), timeout=90)
    assert json.loads(restored.cli("show", str(kept), "--json").stdout)["state"] == "pending-held"
    assert before[0] not in {restored.sink_sidecar(data_file)["name"] for data_file in restored.sink_files()}
    # Every restored job is printed, byte for byte, once the last is released too.
    restored.cli("release", str(kept))
    restored.wait_delivered(len(listed), timeout=90)
    printed = {}
    for data_file in restored.sink_files():
        printed[restored.sink_sidecar(data_file)["name"]] = data_file.read_bytes()
    for name in before:
        number = int(name.split("-")[1])
        assert body_of(number) in printed[name], name
    status, outcome = login(restored, "628403")  # bob's PIN, synced before the backup
    assert status == 200, outcome
    assert (outcome["user"], outcome["mode"]) == ("bob", "offline")
    users = admin(restored, "GET", "/v1/users")[1]["users"]
    assert sorted(user["user"] for user in users) == ["alice", "bob", "carol"]


def test_restore_refuses_a_damaged_or_foreign_file(spooler_factory, tmp_path: Path) -> None:
    spooler = spooler_factory().start()
    inside = spooler.cli("backup", str(spooler.state_dir / "x.backup"), check=False)
    assert inside.returncode == 1 and "inside the state folder" in inside.stderr
    spooler.cli("backup", str(tmp_path / "good.backup"))
    spooler.stop()

    # One byte of a member changed (the archive rebuilt around it): the checksum catches it.
    with tarfile.open(tmp_path / "good.backup") as source, tarfile.open(tmp_path / "bad.backup", "w:gz") as bad:
        for member in source:
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "keys/login.key":
                data = data[:-2] + bytes([data[-2] ^ 1]) + data[-1:]
            import io

            bad.addfile(member, io.BytesIO(data))
    fresh = Spooler(short_tempdir())
    try:
        damaged = fresh.cli("restore", str(tmp_path / "bad.backup"), check=False)
        assert damaged.returncode == 1 and "checksum" in damaged.stderr
        (tmp_path / "other.tar").write_bytes(b"not a tar file at all")
        foreign = fresh.cli("restore", str(tmp_path / "other.tar"), check=False)
        assert foreign.returncode == 1 and "not a spooler backup" in foreign.stderr
        # Nothing was written into the state folder by the refused restores.
        assert not (fresh.state_dir / "spooler.db").exists()
        assert fresh.cli("restore", str(tmp_path / "good.backup"), check=False).returncode == 0
    finally:
        fresh.cleanup()


def test_restore_with_deliver_waiting_prints_the_waiting_jobs_at_start(spooler_factory, tmp_path: Path) -> None:
    # Jobs waiting (the device never answers) when the backup is made; restored with
    # --deliver-waiting, none is held and each prints when the restored spooler starts.
    spooler = spooler_factory(device__uri="socket://127.0.0.1:9", device__connect_timeout="1s").start()
    sender = RawJobSender(lambda: spooler.raw_port, tmp_path, body_of, prefix="waiting")
    sender.start()
    try:
        wait_for(lambda: len(sender.acknowledged) >= 3, timeout=30, what="3 acknowledged jobs")
    finally:
        sender.finish()
    spooler.cli("backup", str(tmp_path / "waiting.backup"))
    spooler.stop()
    fresh = Spooler(short_tempdir())
    try:
        done = fresh.cli("restore", str(tmp_path / "waiting.backup"), "--deliver-waiting", "--json")
        restored = json.loads(done.stdout)
        assert restored["jobs_held"] == [] and restored["jobs_waiting"] == restored["jobs"] >= 3
        fresh.start()
        fresh.wait_delivered(restored["jobs"], timeout=60)
        printed = {fresh.sink_sidecar(data_file)["name"] for data_file in fresh.sink_files()}
        assert set(sender.acknowledged) <= printed
    finally:
        fresh.cleanup()
