"""Backup and restore of a state folder: `spooler backup FILE`, `spooler restore FILE`.

A backup is one gzip'd tar file, mode 0600 (it holds the login cache's key):

    spooler.db, login.db   copies made with SQLite's online backup API (consistent while the daemon
                           writes; each a single file, not WAL)
    keys/..., ipp-users    the key files and the other small files of the state folder
    spool/...              the spool files of the jobs in the database copy
    manifest.json          what is inside: size and SHA-256 of every member, schema versions, counts

Not included: the spool log, data still arriving (never acknowledged), the file sink, the lock and
the admin socket, and files kept outside the state folder (the configuration, a fleet key or TLS
certificate configured elsewhere): back those up with the configuration.

A restore checks the manifest (every member listed, sizes and checksums, database integrity and
schema, the login cache opening under the restored key) in a staging folder before anything in the
state folder changes; it refuses while a spooler runs there (the folder's lock), and refuses to
replace existing databases unless forced.

The jobs that were waiting when the backup was made may have printed since (a backup is a past
moment), so a restore puts them on hold: none prints twice unasked. The admin releases the ones
that did not print (`spooler release ID`), or restores with `--deliver-waiting` when the backup is
known to be current (a move to new hardware right after `spooler backup`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import socket
import sqlite3
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Any

from spooler import __version__
from spooler.model import JobState, SpoolerError
from spooler.store.spoolfiles import ensure_private_dir, fsync_directory

FORMAT = "branch-spooler-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST = 16 * 1024 * 1024
#: Top-level names of the state folder that a backup leaves out (see the module's docstring).
EXCLUDED = frozenset({"lock", "admin.sock", "incoming", "log", "device", "spool"})
EXCLUDED_SUFFIXES = ("-wal", "-shm", "-journal", ".tmp")
DATABASES = ("spooler.db", "login.db")
LOGIN_KEY = "keys/login.key"
CHUNK = 1024 * 1024


class BackupError(SpoolerError):
    """A backup that cannot be made, or a file that cannot be restored (the message says why)."""


# -- making a backup ---------------------------------------------------------------------------------


def snapshot_database(source: Path, target: Path) -> int:
    """Copy a live SQLite database with the online backup API into `target` (one file, no WAL); its
    schema version. The copy is one read transaction of the source: consistent, writers not blocked."""
    with closing(sqlite3.connect(str(source), timeout=30)) as live:
        live.execute("PRAGMA busy_timeout=30000")
        with closing(sqlite3.connect(str(target))) as copy:
            live.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")
            return int(copy.execute("PRAGMA user_version").fetchone()[0])


def _referenced_spool_files(database: Path) -> list[str]:
    """The spool files of the jobs in a database copy (documents stored inline have none that count)."""
    with closing(sqlite3.connect(str(database))) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        inline = ("AND NOT EXISTS (SELECT 1 FROM document_data x WHERE x.job_id = d.job_id AND x.number = d.number)"
                  if "document_data" in tables else "")  # fmt: skip
        rows = db.execute("SELECT d.file_name FROM documents d JOIN jobs j USING (job_id) "
                          f"WHERE j.files_removed = 0 {inline} ORDER BY d.file_name")  # fmt: skip
        return [row[0] for row in rows]


def _database_facts(name: str, path: Path) -> dict[str, Any]:
    with closing(sqlite3.connect(str(path))) as db:
        facts: dict[str, Any] = {"schema": int(db.execute("PRAGMA user_version").fetchone()[0])}
        if name == "spooler.db":
            facts["jobs"] = int(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
            row = db.execute("SELECT value FROM meta WHERE key = 'spool_id'").fetchone()
            facts["spool_id"] = row[0] if row else None
        elif name == "login.db":
            facts["users"] = int(db.execute("SELECT COUNT(*) FROM sealed WHERE kind = 'user'").fetchone()[0])
        return facts


def _small_files(state_dir: Path) -> Iterator[tuple[str, Path]]:
    """The state folder's other files (keys, the IPP users file, ...): regular files only."""
    for directory, folders, files in os.walk(state_dir):
        relative = Path(directory).relative_to(state_dir)
        if relative == Path("."):
            folders[:] = [f for f in folders if f not in EXCLUDED and not f.startswith(".")]
        folders.sort()
        for name in sorted(files):
            path = Path(directory) / name
            member = (relative / name).as_posix()
            if relative == Path(".") and (name in EXCLUDED or name.endswith(".db")):
                continue
            if name.endswith(EXCLUDED_SUFFIXES) or name.startswith(".") or not path.is_file() or path.is_symlink():
                continue
            yield member, path


def _login_cache_opens(login_db: Path, key_file: Path) -> bool:
    """Whether every row of a login cache copy opens with a copy of the key file."""
    from spooler.login.cache import CacheError, CredentialCache
    from spooler.login.keys import KeyFileError, LoginKeys

    try:
        cache = CredentialCache.open(login_db, LoginKeys.load(key_file), strict=True)
    except (CacheError, KeyFileError, FileNotFoundError):
        return False
    cache.close()
    return True


class _Writer:
    """Adds members to the tar file, each with its size and SHA-256 in the manifest."""

    def __init__(self, archive: tarfile.TarFile, now: float) -> None:
        self.archive = archive
        self.now = now
        self.files: dict[str, dict[str, Any]] = {}

    def add(self, member: str, handle: IO[bytes], size: int) -> None:
        digest = hashlib.sha256()

        class Hashing(io.RawIOBase):
            def readinto(self, buffer: Any) -> int:
                data = handle.read(len(buffer))
                digest.update(data)
                buffer[: len(data)] = data
                return len(data)

            def readable(self) -> bool:
                return True

        info = tarfile.TarInfo(member)
        info.size, info.mode, info.mtime = size, 0o600, int(self.now)
        self.archive.addfile(info, io.BufferedReader(Hashing(), CHUNK))
        self.files[member] = {"size": size, "sha256": digest.hexdigest()}

    def add_file(self, member: str, path: Path) -> bool:
        """Add a file as it is now; False if it is gone (removed since it was listed)."""
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            return False
        with handle:
            self.add(member, handle, os.fstat(handle.fileno()).st_size)
        return True

    def add_bytes(self, member: str, data: bytes) -> None:
        self.add(member, io.BytesIO(data), len(data))


def write_backup(state_dir: Path, target: Path, *, now: float | None = None) -> dict[str, Any]:
    """Write a backup of `state_dir` to `target` (replaced atomically, mode 0600); the manifest.
    Safe while the daemon runs: it only reads, and the databases are copied consistently."""
    now = time.time() if now is None else now
    state_dir = state_dir.absolute()
    if not (state_dir / "spooler.db").is_file():
        raise BackupError(f"no spool database in {state_dir} (has `spooler serve` ever run there?)")
    target = target.absolute()
    if target.is_dir():
        raise BackupError(f"{target} is a folder; give a file name")
    if target.resolve().is_relative_to(state_dir.resolve()):
        raise BackupError(f"{target} is inside the state folder {state_dir}: write the backup elsewhere")
    try:
        staging = Path(tempfile.mkdtemp(prefix=".spooler-backup-", dir=target.parent))
    except OSError as error:
        raise BackupError(f"cannot write in {target.parent}: {error.strerror or error}") from None
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    try:
        databases, key_staged = _snapshot_databases(state_dir, staging)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as archive:
            writer = _Writer(archive, now)
            for name in databases:
                writer.add_file(name, staging / name)
            for member, path in _small_files(state_dir):
                if not (member == LOGIN_KEY and key_staged):
                    writer.add_file(member, path)
            if key_staged:
                writer.add_file(LOGIN_KEY, staging / LOGIN_KEY)  # the copy that matches login.db's
            missing = []
            for name in _referenced_spool_files(staging / "spooler.db"):
                if not writer.add_file(f"spool/{name}", state_dir / "spool" / name):
                    missing.append(name)  # its job finished and retention removed it since the copy
            manifest = {
                "format": FORMAT, "version": FORMAT_VERSION, "created_at": now, "spooler_version": __version__,
                "host": socket.gethostname(), "state_dir": str(state_dir),
                "databases": {name: _database_facts(name, staging / name) for name in databases if name in DATABASES},
                "missing_spool_files": missing, "files": dict(writer.files),
            }  # fmt: skip
            writer.add_bytes(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
            raw.flush()
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
        fsync_directory(target.parent)
    except OSError as error:
        raise BackupError(f"cannot write {target}: {error.strerror or error}") from None
    except sqlite3.Error as error:
        raise BackupError(f"cannot copy the databases of {state_dir}: {error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if partial.exists():
            partial.unlink()
    manifest["size"] = target.stat().st_size
    return manifest


def _snapshot_databases(state_dir: Path, staging: Path) -> tuple[list[str], bool]:
    """Copy every database into `staging` and, with the login cache, its key file, so that the two
    match: the names of the databases, and whether the key file was copied. A key rotation between
    the two copies is caught (the copy does not open) and the pair is taken again."""
    names = [path.name for path in sorted(state_dir.glob("*.db")) if path.is_file()]
    for name in names:
        if name != "login.db":
            snapshot_database(state_dir / name, staging / name)
    key_file = state_dir / LOGIN_KEY
    if "login.db" not in names:
        return names, False
    if not key_file.exists():
        snapshot_database(state_dir / "login.db", staging / "login.db")
        return names, False
    ensure_private_dir(staging / "keys")
    for _ in range(5):
        (staging / LOGIN_KEY).write_bytes(key_file.read_bytes())
        snapshot_database(state_dir / "login.db", staging / "login.db")
        if _copy_opens(staging / "login.db", staging / LOGIN_KEY):
            return names, True
    raise BackupError("the login cache's copy does not open with its key file (a key rotation kept running?); "
                      "try again")


def _copy_opens(login_db: Path, key_file: Path) -> bool:
    """Whether a login cache file opens with a key file, tried on a scratch copy (left unchanged)."""
    check = login_db.parent / f".check-{secrets.token_hex(4)}"
    ensure_private_dir(check)
    try:
        shutil.copyfile(login_db, check / "login.db")
        return _login_cache_opens(check / "login.db", key_file)
    finally:
        shutil.rmtree(check, ignore_errors=True)


# -- reading and restoring ---------------------------------------------------------------------------


def _safe_member(name: str) -> bool:
    path = PurePosixPath(name)
    return (not path.is_absolute() and bool(path.parts) and all(part not in ("", ".", "..") for part in path.parts)
            and path.parts[0] not in ("lock", "admin.sock", "incoming") and "\\" not in name)  # fmt: skip


def read_manifest(archive: tarfile.TarFile, source: Path) -> dict[str, Any]:
    try:
        member = archive.getmember(MANIFEST)
    except KeyError:
        raise BackupError(f"{source} is not a spooler backup (no {MANIFEST})") from None
    handle = archive.extractfile(member) if member.isfile() and member.size <= MAX_MANIFEST else None
    if handle is None:
        raise BackupError(f"{source}: the manifest is not a small regular file")
    try:
        manifest = json.loads(handle.read())
    except ValueError:
        raise BackupError(f"{source}: the manifest is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{source} is not a spooler backup")
    if manifest.get("version") != FORMAT_VERSION:
        raise BackupError(f"{source} is a backup of format {manifest.get('version')!r}; this spooler reads "
                          f"format {FORMAT_VERSION}")  # fmt: skip
    files = manifest.get("files")
    if not isinstance(files, dict) or "spooler.db" not in files:
        raise BackupError(f"{source}: the manifest lists no job database")
    for name, facts in files.items():
        if not _safe_member(name) or not isinstance(facts, dict) or not isinstance(facts.get("size"), int) \
                or not isinstance(facts.get("sha256"), str):  # fmt: skip
            raise BackupError(f"{source}: the manifest has an unusable entry {name!r}")
    return manifest


@contextmanager
def _open_archive(source: Path) -> Iterator[tarfile.TarFile]:
    try:
        archive = tarfile.open(source, "r:*")
    except FileNotFoundError:
        raise BackupError(f"no such file: {source}") from None
    except (tarfile.TarError, OSError, EOFError) as error:
        raise BackupError(f"{source} is not a spooler backup (not a readable tar file: {error})") from None
    with archive:
        yield archive


def _extract_checked(archive: tarfile.TarFile, manifest: dict[str, Any], staging: Path, source: Path) -> None:
    """Every member into `staging`, each checked against the manifest; nothing unlisted, nothing missing."""
    files: dict[str, dict[str, Any]] = manifest["files"]
    seen: set[str] = set()
    try:
        for member in archive:
            if member.name == MANIFEST:
                continue
            if member.name not in files or not member.isfile() or member.name in seen:
                raise BackupError(f"{source}: {member.name!r} is not in the manifest (altered backup?)")
            seen.add(member.name)
            expected = files[member.name]
            target = staging / member.name
            ensure_private_dir(target.parent)
            handle = archive.extractfile(member)
            assert handle is not None
            digest = hashlib.sha256()
            size = 0
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if size != expected["size"] or digest.hexdigest() != expected["sha256"]:
                raise BackupError(f"{source}: {member.name} does not match its checksum (damaged or altered backup)")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise BackupError(f"{source} is damaged: {error}") from None
    absent = sorted(set(files) - seen)
    if absent:
        raise BackupError(f"{source} is incomplete: {', '.join(absent[:5])} missing")


def _check_databases(staging: Path, source: Path) -> dict[str, int]:
    from spooler.login.schema import LOGIN_SCHEMA
    from spooler.schema import check_known
    from spooler.store.database import _SCHEMA

    known = {"spooler.db": _SCHEMA, "login.db": LOGIN_SCHEMA}
    versions = {}
    for name in sorted(p.name for p in staging.glob("*.db")):
        try:
            with closing(sqlite3.connect(f"file:{staging / name}?mode=ro", uri=True)) as db:
                ok = db.execute("PRAGMA quick_check").fetchone()[0]
                version = int(db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as error:
            raise BackupError(f"{source}: {name} is not a usable database: {error}") from None
        if ok != "ok":
            raise BackupError(f"{source}: {name} fails SQLite's check: {ok}")
        if name in known:
            check_known(version, known[name], f"{source}: {name}")
        versions[name] = version
    if (staging / "login.db").exists():
        if not (staging / LOGIN_KEY).exists():
            raise BackupError(f"{source} holds the login cache but not its key file")
        if not _copy_opens(staging / "login.db", staging / LOGIN_KEY):
            raise BackupError(f"{source}: the login cache does not open with the key file in the backup")
    return versions


def restore_backup(state_dir: Path, source: Path, *, force: bool = False, hold_waiting: bool = True,
                   now: float | None = None) -> dict[str, Any]:
    """Restore a backup into `state_dir`, which no spooler may be running on; the manifest, with
    "held_job_ids": the waiting jobs put on hold (`hold_waiting`, see the module's docstring).
    Existing databases are replaced only with `force` (their spool files go with them)."""
    from spooler.model import StateDirLocked
    from spooler.service import StateDirLock

    state_dir = state_dir.absolute()
    source = source.absolute()
    ensure_private_dir(state_dir)
    lock = StateDirLock(state_dir / "lock")
    try:
        lock.acquire("restore")
    except StateDirLocked as error:
        raise BackupError(f"{error}: stop it first (e.g. systemctl stop spooler)") from None
    try:
        existing = [name for name in DATABASES if (state_dir / name).exists()]
        if existing and not force:
            raise BackupError(f"{state_dir} has {' and '.join(existing)} already; restore into a new state folder, "
                              "or give --force to replace them (and the spool files and keys)")  # fmt: skip
        staging = state_dir / f".restore-{secrets.token_hex(4)}"
        ensure_private_dir(staging)
        try:
            with _open_archive(source) as archive:
                manifest = read_manifest(archive, source)
                _extract_checked(archive, manifest, staging, source)
            _check_databases(staging, source)
            _replace_state(state_dir, staging, list(manifest["files"]))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        held = hold_waiting_jobs(state_dir / "spooler.db", manifest["created_at"],
                                 time.time() if now is None else now) if hold_waiting else []  # fmt: skip
    finally:
        lock.release()
    return manifest | {"held_job_ids": held}


def hold_waiting_jobs(database: Path, backup_made_at: float, now: float) -> list[int]:
    """Put on hold every job of a restored database that was waiting to be delivered (pending,
    processing, stopped; not one whose documents were still arriving, nor one already held); their ids."""
    from spooler.jobs.service import INCOMING
    from spooler.states import transition
    from spooler.store.database import JobStore

    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(backup_made_at))
    message = f"held at restore: it was waiting when the backup was made ({when}) and may have printed since"
    store = JobStore.open(database)
    try:
        held = []
        for job in store.list_jobs([JobState.PENDING, JobState.PROCESSING, JobState.PROCESSING_STOPPED]):
            if job.reason == INCOMING:
                continue
            if job.state != JobState.PENDING:
                job = transition(job, JobState.PENDING, now=now, reason="job-queued", message="")
            held.append(transition(job, JobState.PENDING_HELD, now=now, reason="job-hold-until-specified",
                                   message=message))  # fmt: skip
        store.update_jobs(held)
    finally:
        store.close()
    return [job.job_id for job in held]


def _replace_state(state_dir: Path, staging: Path, members: list[str]) -> None:
    """Move the checked files into the state folder: first remove the databases' old WAL and the old
    spool (a WAL beside another database file would damage it), then rename each file into place."""
    for name in list(DATABASES) + [p.name for p in state_dir.glob("*.db")]:
        for suffix in ("", "-wal", "-shm", "-journal"):
            (state_dir / (name + suffix)).unlink(missing_ok=True)
    spool = state_dir / "spool"
    if spool.is_dir():
        for path in spool.iterdir():
            if path.is_file():
                path.unlink()
    folders = {state_dir}
    for member in sorted(members, key=lambda name: name.endswith(".db")):  # the databases last
        target = state_dir / member
        ensure_private_dir(target.parent)
        os.replace(staging / member, target)
        folders.add(target.parent)
    for folder in folders:
        fsync_directory(folder)
