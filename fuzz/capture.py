"""Record the seed corpora from real clients: ``python fuzz/capture.py`` (writes fuzz/seeds/).

A real ``spooler serve`` runs on loopback; a recording proxy sits in front of its IPP and LPD ports
and saves every byte each client sends. The clients are ipptool (its stock .test files), the CUPS
ipp backend and the CUPS lpd backend run directly (as cupsd runs them), and plain sockets for the
LPD queue-state and removal commands. What is kept:

* seeds/ipp/: the IPP request bodies (HTTP framing removed, document data cut to 2 KiB);
* seeds/lpd_session/: each LPD connection's client stream, prefixed with the chunking byte 0x00;
* seeds/lpd_control/: the control files found in those streams.

The PJL seeds (seeds/pjl/) are written from the headers in tests/test_pjl.py by ``--pjl``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = Path(__file__).resolve().parent / "seeds"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

DOCUMENT = ROOT / "samples" / "corpus" / "text_a4_3p.pdf"
MAX_DOCUMENT = 2048


class RecordingProxy:
    """Accepts on a free loopback port, forwards to `upstream`, records each connection's client bytes."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.streams: list[bytearray] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            record = bytearray()
            with self.lock:
                self.streams.append(record)
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, upstream, record), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, record: bytearray | None) -> None:
        try:
            while chunk := source.recv(65536):
                if record is not None:
                    record += chunk
                sink.sendall(chunk)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.server.close()


def http_bodies(stream: bytes) -> list[bytes]:
    """The bodies of the HTTP requests in one connection's client stream (Content-Length or chunked)."""
    bodies = []
    while stream:
        head, sep, stream = stream.partition(b"\r\n\r\n")
        if not sep:
            break
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(b":") for line in head.split(b"\r\n")[1:])}  # fmt: skip
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = bytearray()
            while True:
                size_line, _, stream = stream.partition(b"\r\n")
                size = int(size_line.split(b";")[0] or b"0", 16)
                if size == 0:
                    _, _, stream = stream.partition(b"\r\n")
                    break
                body += stream[:size]
                stream = stream[size + 2:]
            bodies.append(bytes(body))
        else:
            length = int(headers.get(b"content-length", b"0"))
            bodies.append(stream[:length])
            stream = stream[length:]
    return [b for b in bodies if b]


def cut_ipp(body: bytes) -> bytes:
    from spooler.ipp.codec import IppParseError, decode_message

    try:
        _, offset = decode_message(body)
    except IppParseError:
        return body[:MAX_DOCUMENT * 4]
    return body[:offset + MAX_DOCUMENT]


def save(folder: str, blobs: list[bytes], suffix: str) -> int:
    target = SEEDS / folder
    target.mkdir(parents=True, exist_ok=True)
    saved = 0
    for blob in blobs:
        name = hashlib.sha1(blob).hexdigest()[:16] + suffix
        if not (target / name).exists():
            (target / name).write_bytes(blob)
            saved += 1
    return saved


def run(command: list[str], env: dict[str, str] | None = None) -> None:
    try:
        result = subprocess.run(command, env=env, capture_output=True, timeout=30)
        print(f"  {Path(command[0]).name} {' '.join(command[1:])[-70:]}: exit {result.returncode}")
    except subprocess.TimeoutExpired:
        print(f"  {command[0]}: timed out (kept what it sent)")


def capture_clients() -> None:
    from spooler_harness import Spooler, short_tempdir

    spooler = Spooler(short_tempdir(), device__uri="socket://127.0.0.1:9", device__retry_initial="1h",
                      device__retry_max="1h", ipp__admin_users=["root"]).start()  # fmt: skip
    ipp, lpd = RecordingProxy(spooler.ipp_port), RecordingProxy(spooler.lpd_port)
    work = short_tempdir()
    try:
        document = work / "doc.pdf"
        shutil.copy(DOCUMENT, document)
        (work / "doc.txt").write_bytes(b"Hello from the capture\n" * 20)
        uri = f"ipp://127.0.0.1:{ipp.port}/ipp/print"
        print("ipptool:")
        tests = ["get-printer-attributes.test", "get-printer-attributes-suite.test", "print-job.test",
                 "create-job.test", "get-jobs.test", "get-job-attributes.test", "print-job-gzip.test",
                 "print-job-deflate.test", "print-job-media-col.test", "print-job-hold.test",
                 "validate-job.test", "cancel-current-job.test", "identify-printer.test", "ipp-2.0.test"]
        for test in tests:
            run(["ipptool", "-q", "-T", "5", "-f", str(document), uri, test])
        print("CUPS ipp backend:")
        for options in ("waitjob=false&waitprinter=false", "waitjob=false&compression=gzip",
                        "waitjob=false&version=1.1"):
            env = dict(os.environ, DEVICE_URI=f"{uri}?{options}", CONTENT_TYPE="application/pdf",
                       FINAL_CONTENT_TYPE="application/pdf")  # fmt: skip
            run(["/usr/lib/cups/backend/ipp", "7", "alice", "Quarterly report", "2",
                 "sides=two-sided-long-edge media=iso_a4_210x297mm", str(document)], env)  # fmt: skip
        print("CUPS lpd backend:")
        lpd_uri = f"lpd://127.0.0.1:{lpd.port}/default?reserve=none&contimeout=10&sanitize_title=no"
        for options, copies in [("", 1), ("order=data,control&format=o&banner=on", 1),
                                ("order=control,data&format=f&manual_copies=no", 3), ("mode=stream&format=l", 1),
                                ("order=data,control&manual_copies=no", 2)]:  # fmt: skip
            env = dict(os.environ, DEVICE_URI=lpd_uri + (f"&{options}" if options else ""))
            run(["/usr/lib/cups/backend/lpd", "42", "alice", "Budget 2027 (draft)", str(copies), "",
                 str(work / "doc.txt")], env)  # fmt: skip
        print("LPD queue commands:")
        for command in (b"\x01default\n", b"\x03default\n", b"\x04default alice 1\n", b"\x05default alice 1\n",
                        b"\x05default root\n", b"\x03nosuchqueue\n"):  # fmt: skip
            with socket.create_connection(("127.0.0.1", lpd.port), timeout=10) as sock:
                sock.sendall(command)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass
    finally:
        ipp.close()
        lpd.close()
        spooler.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    bodies = [cut_ipp(body) for stream in ipp.streams for body in http_bodies(bytes(stream))]
    print(f"ipp: {save('ipp', bodies, '.ipp')} new of {len(bodies)} requests")
    sessions = [bytes(stream) for stream in lpd.streams if stream]
    prefixed = [bytes(1) + session for session in sessions]  # the chunking byte: all at once
    print(f"lpd_session: {save('lpd_session', prefixed, '.lpd')} new of {len(sessions)}")
    controls = []
    for session in sessions:
        for match in re.finditer(rb"\x02(\d+) cf[^\n]*\n", session):
            start = match.end()
            controls.append(session[start:start + int(match.group(1))])
    print(f"lpd_control: {save('lpd_control', controls, '.cf')} new of {len(controls)}")


def capture_pjl() -> None:
    """PJL headers: every bytes literal of tests/test_pjl.py that starts like PJL, and the samples' heads."""
    import ast

    tree = ast.parse((ROOT / "tests" / "test_pjl.py").read_text())
    heads = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, bytes) and len(node.value) > 8 and (
                b"@PJL" in node.value[:64].upper()):  # fmt: skip
            heads.append(node.value)
    print(f"pjl: {save('pjl', heads, '.pjl')} new of {len(heads)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pjl", action="store_true", help="only the PJL seeds")
    args = parser.parse_args()
    capture_pjl()
    if not args.pjl:
        capture_clients()


if __name__ == "__main__":
    main()
