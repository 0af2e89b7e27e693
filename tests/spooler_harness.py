"""Test harness: runs a real `spooler serve` subprocess on free loopback ports, third-party tools, helpers."""

from __future__ import annotations

import errno
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CUPS_SOCKET_BACKEND = "/usr/lib/cups/backend/socket"


def require_tool(tool: str) -> str:
    """The path of a third-party tool. Missing: a skip on a developer machine, a failure under CI=true."""
    path = tool if os.path.isabs(tool) and os.access(tool, os.X_OK) else shutil.which(tool)
    if path:
        return path
    message = f"{tool} is not installed (Debian: see tests/install-deps.sh)"
    if IN_CI:
        pytest.fail(message + " — CI must install it")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def short_tempdir(prefix: str = "sp") -> Path:
    """A short path under /tmp: the admin socket's path must stay under the 107-byte UNIX limit."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(str(value))


def send_raw(port: int, data: bytes, *, wait_close: bool = True, timeout: float = 30.0) -> bytes:
    """Send one raw job like `nc -N`: connect, send, half-close, read until the spooler closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        if wait_close:
            while chunk := sock.recv(65536):
                received += chunk
        return received


def open_idle(port: int, count: int) -> list[socket.socket]:
    """`count` connections that never send a byte (non-blocking connects: a full accept queue must not
    block the test)."""
    flood = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        error = sock.connect_ex(("127.0.0.1", port))
        assert error in (0, errno.EINPROGRESS), os.strerror(error)
        flood.append(sock)
    return flood



class ManagedProcess:
    """A daemon a test started (`process`, its `root` folder, its `stderr_path`): stopped with SIGTERM
    or kill -9, its stderr read, and everything removed at the end."""

    root: Path
    stderr_path: Path
    process: subprocess.Popen[bytes] | None = None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
        shutil.rmtree(self.root, ignore_errors=True)


class Spooler(ManagedProcess):
    """One `spooler serve` process with its own state folder, config file and free raw port."""

    def __init__(self, root: Path, **settings: Any) -> None:
        self.root = root
        self.state_dir = root / "state"
        self.sink = self.state_dir / "device"
        self.config_path = root / "spooler.toml"
        self.raw_port = free_port()
        self.lpd_port = free_port()
        self.ipp_port = free_port()
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.stderr_path = root / "stderr.log"
        self.write_config()

    def write_config(self, **changes: Any) -> None:
        self.settings.update(changes)
        sections: dict[str, dict[str, Any]] = {"listen": {"raw": f"tcp:{self.raw_port}:interface=127.0.0.1",
                                                          "lpd": f"tcp:{self.lpd_port}:interface=127.0.0.1",
                                                          "ipp": f"tcp:{self.ipp_port}:interface=127.0.0.1"}}
        for dotted, value in self.settings.items():
            section, key = dotted.split("__", 1)
            sections.setdefault(section, {})[key] = value
        lines = [f"state_dir = {toml_value(self.state_dir)}"]
        for section, values in sections.items():
            lines.append(f"[{section}]")
            lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    # -- process control -------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The daemon's command line (a test may wrap it, e.g. in a mount namespace)."""
        return [sys.executable, "-m", "spooler", "serve", "--config", str(self.config_path)]

    def start(self, wait: bool = True, env: dict[str, str] | None = None) -> Spooler:
        """Start `spooler serve` (with `env` added to the environment) and wait until it listens."""
        stderr = open(self.stderr_path, "ab")
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                        env=dict(os.environ, **env) if env else None)  # fmt: skip
        stderr.close()
        if wait:
            wait_for(self._ready, timeout=20, what=f"the spooler to listen (stderr: {self.stderr_path})")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"spooler exited with {self.process.returncode}: {self.stderr()}")
        try:
            socket.create_connection(("127.0.0.1", self.raw_port), timeout=1).close()
        except OSError:
            return False
        # The admin socket accepts connections (its file appears at bind, a moment before it listens).
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as admin:
            admin.settimeout(1)
            try:
                admin.connect(str(self.state_dir / "admin.sock"))
            except OSError:
                return False
        return True


    # -- observing ---------------------------------------------------------------------------------

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "spooler", *args, "--config", str(self.config_path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"spooler {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def jobs(self) -> list[dict[str, Any]]:
        return json.loads(self.cli("jobs", "--all", "--json").stdout)

    def status(self) -> dict[str, Any]:
        """`spooler status --json`."""
        return dict(json.loads(self.cli("status", "--json").stdout))

    def wait_idle(self, timeout: float = 60) -> None:
        """Wait until no job is pending or being delivered: every delivery the spooler is going to make
        is made, so what the device has then is final (a duplicate would be there)."""

        def idle() -> bool:
            return not any(job["state"] in ("pending", "processing") for job in self.jobs())

        wait_for(idle, timeout=timeout, what=f"no job waiting for delivery (stderr: {self.stderr_path})")

    def job(self, job_id: int) -> dict[str, Any]:
        return json.loads(self.cli("show", str(job_id), "--json").stdout)

    def log_records(self) -> list[dict[str, Any]]:
        path = self.state_dir / "log" / "spool.jsonl"
        if not path.exists():
            return []
        # The daemon may be writing a line right now: only lines that end in a newline are whole.
        whole = path.read_text().rpartition("\n")[0]
        return [json.loads(line) for line in whole.splitlines() if line.strip()]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.log_records() if r["event"] == name]

    def sink_files(self, directory: Path | None = None) -> list[Path]:
        return sorted((directory or self.sink).glob("job-*.prn"))

    def sink_sidecar(self, data_file: Path) -> dict[str, Any]:
        return json.loads(data_file.with_suffix(".json").read_text())

    def deliveries(self, directory: Path | None = None) -> list[dict[str, Any]]:
        journal = (directory or self.sink) / "deliveries.log"
        if not journal.exists():
            return []
        return [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]

    def wait_delivered(self, count: int, directory: Path | None = None, timeout: float = 20) -> list[Path]:
        wait_for(lambda: len(self.deliveries(directory)) >= count, timeout=timeout,
                 what=f"{count} deliveries (stderr: {self.stderr_path})")  # fmt: skip
        return self.sink_files(directory)



def pjl_job(user: str, name: str, body: bytes, language: str = "PDF", extra: str = "") -> bytes:
    header = (
        f'\x1b%-12345X@PJL\r\n@PJL JOB NAME = "{name}"\r\n@PJL SET USERNAME = "{user}"\r\n{extra}'
        f"@PJL ENTER LANGUAGE = {language}\r\n"
    )
    return header.encode() + body + b"\x1b%-12345X@PJL EOJ\r\n\x1b%-12345X"


def ipptool_get_jobs(uri: str, folder: Path, attributes: Sequence[str], *, which: str = "all",
                     user: str = "alice") -> list[dict[str, str]]:  # fmt: skip
    """Get-Jobs with ipptool (its .test file written into `folder`) as `user`: one dict per job, of
    `attributes` as ipptool displays them (its CSV output, -c; several values joined by commas)."""
    lines = "\n".join(f"  DISPLAY {name}" for name in attributes)
    test = folder / f"get-jobs-{which}.test"
    test.write_text(f"""{{
  NAME "Get-Jobs {which}"
  OPERATION Get-Jobs
  GROUP operation-attributes-tag
  ATTR charset attributes-charset utf-8
  ATTR language attributes-natural-language en
  ATTR uri printer-uri $uri
  ATTR name requesting-user-name {user}
  ATTR keyword which-jobs {which}
  ATTR keyword requested-attributes {",".join(attributes)}
  STATUS successful-ok
{lines}
}}
""")
    result = subprocess.run([require_tool("ipptool"), "-c", uri, str(test)], capture_output=True, text=True,
                            timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.strip()]
    header = rows[0].split(",")
    return [dict(zip(header, row.split(",", len(header) - 1))) for row in rows[1:]]


class RawJobSender(threading.Thread):
    """Sends raw jobs with `nc -N` (a real client) one after another, each a PJL job named
    "PREFIX-NNN" with `body(n)` as its data, to the port `port()` gives at that moment; records when
    each was acknowledged (nc returned 0 after the spooler closed the connection: the job exists). A
    refused connection (a listener moving) is not a job and is simply tried again."""

    def __init__(self, port: Callable[[], int], folder: Path, body: Callable[[int], bytes], *,
                 prefix: str = "job", user: str = "erin") -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.nc = require_tool("nc")
        self.port, self.folder, self.body, self.prefix, self.user = port, folder, body, prefix, user
        self.acknowledged: dict[str, float] = {}
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        number = 0
        while not self.stop.is_set():
            number += 1
            name = f"{self.prefix}-{number:03d}"
            path = self.folder / f"{name}.prn"
            path.write_bytes(pjl_job(self.user, name, self.body(number), language="PCL"))
            with open(path, "rb") as data:
                result = subprocess.run([self.nc, "-N", "127.0.0.1", str(self.port())], stdin=data,
                                        capture_output=True, timeout=60)  # fmt: skip
            if result.returncode == 0:
                self.acknowledged[name] = time.time()
            else:
                self.refused += 1
            time.sleep(0.02)

    def finish(self) -> dict[str, float]:
        self.stop.set()
        self.join(60)
        return dict(self.acknowledged)


class LoopbackListener:
    """A TCP listener on 127.0.0.1, listening once made, served by a thread: `accepted(connection)` is
    called for each connection, on that thread (one at a time, unless it hands the connection on). It
    can be switched off (`down()`: its port refuses connections) and on again on the same port (`up()`);
    `close()` stops it."""

    backlog = 16

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.up()

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def up(self) -> None:
        if self._server is not None:
            return
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        wait_for(lambda: self._bind(server), timeout=10, what=f"port {self.port} to be free")
        server.listen(self.backlog)
        self._server = server
        self._thread = threading.Thread(target=self._serve, args=(server,), daemon=True)
        self._thread.start()

    def _bind(self, server: socket.socket) -> bool:
        try:
            server.bind(("127.0.0.1", self.port))
        except OSError:
            return False
        return True

    def down(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        try:
            server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        server.close()
        self.switched_off()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def close(self) -> None:
        self.down()

    def switched_off(self) -> None:
        """What else switching off does (the listener is closed by then)."""

    def _serve(self, server: socket.socket) -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            self.accepted(connection)

    def accepted(self, connection: socket.socket) -> None:
        raise NotImplementedError


class AnswerLosingProxy(LoopbackListener):
    """A TCP proxy on 127.0.0.1 in front of an IPP server (one HTTP request per connection, as the
    spooler's IPP client sends them) that can lose an answer: the next request of an operation in
    `lose_answer_to` reaches the server whole, the server acts on it and answers, and the answer is
    dropped (the connection reset) — then the proxy refuses connections, as a server that died just
    after it took the request, until `up()` (unless `stay_up`: a network hiccup only). `lost` lists
    the operations whose answers were lost."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.lose_answer_to: set[int] = set()
        self.stay_up = False
        self.lost: list[int] = []
        self._lock = threading.Lock()
        super().__init__()

    def accepted(self, connection: socket.socket) -> None:
        threading.Thread(target=self._relay, args=(connection,), daemon=True).start()

    @staticmethod
    def _read_message(sock: socket.socket, data: bytes = b"") -> bytes:
        """One HTTP message (head and body: Content-Length, chunked, or until the peer closes)."""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        fields = {line.split(b":", 1)[0].strip().lower(): line.split(b":", 1)[1].strip()
                  for line in head.split(b"\r\n")[1:] if b":" in line}  # fmt: skip
        if b"content-length" in fields:
            length = int(fields[b"content-length"])
            while len(body) < length and (chunk := sock.recv(65536)):
                body += chunk
        elif fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            while not body.endswith(b"0\r\n\r\n") and (chunk := sock.recv(65536)):
                body += chunk
        else:
            while chunk := sock.recv(65536):
                body += chunk
        return head + b"\r\n\r\n" + body

    @staticmethod
    def _operation(request: bytes) -> int:
        body = request.partition(b"\r\n\r\n")[2]
        if b"transfer-encoding: chunked" in request.partition(b"\r\n\r\n")[0].lower():
            body = body.partition(b"\r\n")[2]  # the first chunk holds the IPP header
        return int.from_bytes(body[2:4], "big") if len(body) >= 4 else -1

    def _relay(self, client: socket.socket) -> None:
        with client:
            try:
                client.settimeout(30)
                request = self._read_message(client)
                operation = self._operation(request)
                with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30) as upstream:
                    upstream.sendall(request)
                    answer = self._read_message(upstream)
                with self._lock:
                    lose = operation in self.lose_answer_to
                    if lose:
                        self.lose_answer_to.discard(operation)
                        self.lost.append(operation)
                if lose:
                    if not self.stay_up:
                        self.down()  # the server "died" with the answer
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                client.sendall(answer)
            except OSError:
                pass


class RawDevice(LoopbackListener):
    """A stand-in raw printer on 127.0.0.1: accepts connections, reads each job to EOF, then closes."""

    def __init__(self, port: int | None = None) -> None:
        self.jobs: list[bytes] = []
        super().__init__(port)

    def accepted(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(10)
            data = b""
            while chunk := connection.recv(65536):
                data += chunk
            if data:  # an empty connection (a probe) is not a job, as on a real printer
                self.jobs.append(data)


class ScratchCups:
    """A cupsd of its own in a scratch folder (no systemd): loopback TCP on a free port plus a UNIX
    socket in the folder, no browsing, nothing written under /etc/cups. Stop it with `stop()`."""

    def __init__(self, root: Path, extra: tuple[str, ...] = ()) -> None:
        self.root = root
        self.port = free_port()
        self.socket = root / "cups.sock"
        self.process: subprocess.Popen[bytes] | None = None
        for name in ("spool", "cache", "state", "tmp", "log", "ppd"):
            (root / name).mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)
        os.chmod(root / "tmp", 0o1777)  # filters run as the lp user and write their temporary files here
        kept = []
        for line in Path("/etc/cups/cupsd.conf").read_text().splitlines():
            word = line.strip().split(" ", 1)[0]
            if word not in ("Listen", "Port", "Browsing", "BrowseLocalProtocols", "IdleExitTimeout", "LogLevel",
                            "WebInterface"):
                kept.append(line)
        head = [f"Listen 127.0.0.1:{self.port}", f"Listen {self.socket}", "Browsing No", "BrowseLocalProtocols none",
                "WebInterface No", "LogLevel info", *extra]  # fmt: skip
        (root / "cupsd.conf").write_text("\n".join(head + kept) + "\n")
        (root / "cups-files.conf").write_text("\n".join([
            "SystemGroup root lpadmin", f"ServerRoot {root}", f"RequestRoot {root}/spool",
            f"CacheDir {root}/cache", f"StateDir {root}/state", f"TempDir {root}/tmp",
            f"AccessLog {root}/log/access_log", f"ErrorLog {root}/log/error_log", f"PageLog {root}/log/page_log",
            "FileDevice Yes",
        ]) + "\n")  # fmt: skip

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, CUPS_SERVER=str(self.socket))

    def start(self) -> ScratchCups:
        cupsd = require_tool("/usr/sbin/cupsd")
        log = open(self.root / "log" / "cupsd.out", "ab")
        self.process = subprocess.Popen(
            [cupsd, "-f", "-c", str(self.root / "cupsd.conf"), "-s", str(self.root / "cups-files.conf")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
        log.close()

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"cupsd exited with {self.process.returncode}: {self.error_log()}")
            return self.socket.exists()

        wait_for(ready, timeout=20, what="cupsd to listen")
        return self

    def run(self, *command: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
        """A CUPS client command (lpadmin, lp, lpstat ...) against this cupsd."""
        result = subprocess.run([require_tool(command[0]), *command[1:]], env=self.env, capture_output=True,
                                text=True, timeout=timeout)  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {result.returncode}: {result.stderr}")
        return result

    def error_log(self) -> str:
        path = self.root / "log" / "error_log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@contextmanager
def refserver(*, start: bool = True, users: dict[str, Any] | None = None, **options: Any) -> Iterator[RefServer]:
    """A reference server in a short temporary folder of its own (started unless `start` is false),
    serving `users` (RefServer.with_users) if given; stopped and removed afterwards."""
    server = RefServer.with_users(users, **options) if users is not None else RefServer(short_tempdir("rs"), **options)
    try:
        yield server.start() if start else server
    finally:
        server.cleanup()


class IppEvePrinter:
    """ippeveprinter (CUPS' IPP Everywhere reference printer) on a free loopback port, in a private mount
    and PID namespace with its own dbus and avahi restricted to lo (it refuses to start without DNS-SD):
    when it stops, the namespace and both daemons go with it. `-c /bin/cat` prints at once (without a
    command it takes 5-15 s per job); `keep` keeps every job's document in `spool` (-k)."""

    AVAHI = ("[server]\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces=lo\nenable-dbus=yes\n"
             "[wide-area]\nenable-wide-area=no\n[publish]\npublish-addresses=no\npublish-hinfo=no\n"
             "publish-workstation=no\npublish-domain=no\n[reflector]\nenable-reflector=no\n")  # fmt: skip

    def __init__(self, root: Path, *, name: str = "Peer", keep: bool = False,
                 formats: str = "application/pdf,image/pwg-raster,image/urf") -> None:  # fmt: skip
        self.root = root
        self.port = free_port()
        self.uri = f"ipp://127.0.0.1:{self.port}/ipp/print"
        self.spool = root / "spool"
        self.name = name
        self.keep = keep
        self.formats = formats
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def require() -> None:
        for tool in ("ippeveprinter", "dbus-daemon", "avahi-daemon", "unshare"):
            require_tool(tool)

    def start(self) -> IppEvePrinter:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "avahi.conf").write_text(self.AVAHI)
        self.spool.mkdir(exist_ok=True)
        script = (
            "mount -t tmpfs -o size=4m,mode=755 run /run && mkdir -p /run/dbus /run/avahi-daemon && "
            "(dbus-daemon --system --nofork >/dev/null 2>&1 &) && sleep 0.3 && "
            f"(avahi-daemon --no-drop-root --no-chroot --no-rlimits -f {self.root}/avahi.conf >/dev/null 2>&1 &) && "
            f"sleep 0.5 && ippeveprinter -p {self.port} -n localhost -d {self.spool} -c /bin/cat "
            f"{'-k ' if self.keep else ''}-D file:///dev/null -f {self.formats} '{self.name}'"
        )  # fmt: skip
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--", "sh", "-c",
             script], stdout=subprocess.DEVNULL, stderr=open(self.root / "ippeveprinter.log", "ab"))  # fmt: skip

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"ippeveprinter exited: {(self.root / 'ippeveprinter.log').read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return False
            return True

        wait_for(ready, timeout=20, what="ippeveprinter to listen")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # --kill-child: the namespace's init dies, and every process in it with it
            self.process.wait(10)
        self.process = None


class RefServer(ManagedProcess):
    """One `spooler-refserver serve` process (the reference central server) with its own state folder
    and free loopback ports for its API, IPP and LPD listeners; `mode()` goes through `ctl`."""

    def __init__(self, root: Path, *, users: Path | None = None, mode: str = "normal", delay: float | None = None,
                 verifier_cost: int = 1024, raw: bool = False, sign: bool = True, hold: bool = False,
                 release_after: float | None = None) -> None:  # fmt: skip
        self.root = root
        self.state_dir = root / "state"
        self.received_dir = self.state_dir / "received"
        self.control_socket = self.state_dir / "control.sock"
        self.api_port = free_port()
        self.ipp_port = free_port()
        self.lpd_port = free_port()
        self.raw_port: int | None = free_port() if raw else None
        self.users = users
        self.initial_mode = mode
        self.initial_delay = delay
        self.verifier_cost = verifier_cost
        self.sign = sign
        self.hold = hold
        self.release_after = release_after
        self.process: subprocess.Popen[bytes] | None = None
        self.stderr_path = root / "refserver.log"

    @classmethod
    def with_users(cls, users: dict[str, Any], **options: Any) -> RefServer:
        """A server (not started) in a fresh short folder, serving the users file made of `users`."""
        root = short_tempdir("rs")
        (root / "users.json").write_text(json.dumps(users))
        return cls(root, users=root / "users.json", **options)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/v1"

    @property
    def ipp_uri(self) -> str:
        return f"ipp://127.0.0.1:{self.ipp_port}/ipp/print"

    @property
    def lpd_uri(self) -> str:
        return f"lpd://127.0.0.1:{self.lpd_port}/default?reserve=none"

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "spooler.refserver", "serve", "--state", str(self.state_dir),
                   "--api", f"tcp:{self.api_port}:interface=127.0.0.1",
                   "--ipp", f"tcp:{self.ipp_port}:interface=127.0.0.1",
                   "--lpd", f"tcp:{self.lpd_port}:interface=127.0.0.1",
                   "--mode", self.initial_mode, "--verifier-cost", str(self.verifier_cost)]  # fmt: skip
        if self.raw_port is not None:
            command += ["--raw", f"tcp:{self.raw_port}:interface=127.0.0.1"]
        if self.users is not None:
            command += ["--users", str(self.users)]
        if self.initial_delay is not None:
            command += ["--delay", str(self.initial_delay)]
        if not self.sign:
            command.append("--no-sign")
        if self.hold:
            command += ["--hold"] + (["--release-after", str(self.release_after)] if self.release_after is not None
                                     else [])  # fmt: skip
        return command

    def signing_key(self) -> str:
        """The public key spoolers pin as [server] signing_key (`spooler-refserver key`; made if new)."""
        command = [sys.executable, "-m", "spooler.refserver", "key", "--state", str(self.state_dir)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, env=self._env(), check=True)
        return result.stdout.strip()

    @staticmethod
    def _env() -> dict[str, str]:
        root = str(Path(__file__).resolve().parent.parent)
        return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))

    # -- process control -------------------------------------------------------------------------

    def start(self, wait: bool = True) -> RefServer:
        stderr = open(self.stderr_path, "ab")
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                        env=self._env())  # fmt: skip
        stderr.close()
        if wait:
            wait_for(self._ready, timeout=20, what=f"the reference server to listen (log: {self.stderr_path})")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"spooler-refserver exited with {self.process.returncode}: {self.stderr()}")
        if not self.control_socket.exists():
            return False
        if self.initial_mode == "refuse":
            return True
        try:
            socket.create_connection(("127.0.0.1", self.api_port), timeout=1).close()
        except OSError:
            return False
        return True



    # -- steering ----------------------------------------------------------------------------------

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`spooler-refserver ctl --state DIR ARGS...`."""
        command = [sys.executable, "-m", "spooler.refserver", "ctl", "--state", str(self.state_dir), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, env=self._env())
        if check and result.returncode != 0:
            raise AssertionError(f"spooler-refserver ctl {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def mode(self, mode: str, delay: float | None = None) -> dict[str, Any]:
        """Switch the failure mode (returns once the ports listen or stopped listening); the status."""
        extra = ["--delay", str(delay)] if delay is not None else []
        return json.loads(self.ctl("--json", "mode", mode, *extra).stdout)

    def status(self) -> dict[str, Any]:
        return json.loads(self.ctl("--json", "status").stdout)

    def release(self, *job_ids: int) -> list[int]:
        """`ctl release` (every held job when none is named): the jobs released."""
        return list(json.loads(self.ctl("--json", "release", *map(str, job_ids)).stdout)["released"])

    def queue_jobs(self) -> list[dict[str, Any]]:
        """The queue's jobs (`spooler jobs --all --json` on its state folder)."""
        result = subprocess.run([sys.executable, "-m", "spooler", "jobs", "--all", "--json", "--state-dir",
                                 str(self.state_dir / "queue")], capture_output=True, text=True, timeout=60,
                                env=self._env())  # fmt: skip
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout))

    def revoke(self, user: str, kind: str = "user", credential: str | None = None) -> dict[str, Any]:
        extra = ["--credential", credential] if credential else []
        return json.loads(self.ctl("--json", "revoke", user, "--kind", kind, *extra).stdout)

    # -- the API -----------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
        """One API request (`path` below /api/v1/): (HTTP status, decoded JSON body)."""
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"content-type": "application/json"} if payload is not None else {}
            connection.request(method, "/api/v1/" + path.lstrip("/"), body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        return response.status, json.loads(data) if data else None

    def health(self, timeout: float = 10.0) -> tuple[int, Any]:
        return self.api("GET", "health", timeout=timeout)

    def accounting(self) -> list[dict[str, Any]]:
        status, body = self.api("GET", "accounting")
        assert status == 200, body
        return list(body["records"])

    # -- the print queue ---------------------------------------------------------------------------

    def received_files(self) -> list[Path]:
        return sorted(self.received_dir.glob("job-*.prn"))

    def sidecar(self, data_file: Path) -> dict[str, Any]:
        return json.loads(data_file.with_suffix(".json").read_text())

    def wait_received(self, count: int, timeout: float = 20) -> list[Path]:
        wait_for(lambda: len(self.received_files()) >= count, timeout=timeout,
                 what=f"{count} jobs in {self.received_dir} (log: {self.stderr_path})")  # fmt: skip
        return self.received_files()


# -- the offline login of a running spooler (its admin API) ---------------------------------------------


def admin(spooler: Spooler, method: str, path: str, body: Any = None, timeout: float = 60) -> tuple[int, Any]:
    """One admin API request over the spooler's socket: (status, decoded body)."""

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(str(spooler.state_dir / "admin.sock"))

    connection = Connection("localhost", timeout=timeout)
    try:
        connection.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                           headers={"content-type": "application/json"})  # fmt: skip
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def login(spooler: Spooler, secret: str, *, method: str = "pin", user: str | None = None,
          terminal: str = "panel-1") -> tuple[int, dict[str, Any]]:  # fmt: skip
    return admin(spooler, "POST", "/v1/login", {"method": method, "secret": secret, "user": user, "terminal": terminal})


def users_of(spooler: Spooler) -> dict[str, str]:
    status, body = admin(spooler, "GET", "/v1/users")
    assert status == 200, body
    return {row["user"]: row["state"] for row in body["users"]}


def share_address(spooler: Spooler) -> str:
    """"127.0.0.1:PORT" of the spooler's share endpoint (login__share_listen = "tcp:PORT:interface=127.0.0.1")."""
    return "127.0.0.1:" + str(spooler.settings["login__share_listen"]).split(":")[1]


def enroll(*spoolers: Spooler, with_address: bool = False) -> None:
    """Every spooler enrolls every other by the key `spooler peers self` prints (daemons down or up),
    named by its device name, with its share address if asked."""
    keys = {spooler: spooler.cli("peers", "self").stdout.strip() for spooler in spoolers}
    for spooler in spoolers:
        for other in spoolers:
            if other is not spooler:
                address = ["--address", share_address(other)] if with_address else []
                spooler.cli("peers", "add", other.settings["device__name"], keys[other], *address)
