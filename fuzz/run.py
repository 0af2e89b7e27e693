"""Run the fuzz targets with atheris for a time budget each and print what they did.

    pip install atheris                      # not a test dependency: CI replays the seeds without it
    python fuzz/run.py --seconds 180         # every target: main ones 180 s, the others half that
    python fuzz/run.py --seconds 60 --targets pdf,pjl --parallel 2
    python fuzz/run.py --replay pdf fuzz/work/pdf/findings/*.bin   # re-run inputs without atheris

Each target runs in its own process (libFuzzer through atheris, project modules instrumented for
coverage) on a working corpus in fuzz/work/NAME/corpus, seeded from fuzz/seeds and samples/corpus.
Exceptions are caught per input rather than ending the run: each distinct one (exception type and
the innermost project frame) is a finding, saved with the smallest input that shows it as
fuzz/work/NAME/findings/SIG.bin plus its traceback in SIG.txt. An input that takes more than
SLOW_SECONDS is a finding too (slow-*.bin); one still running after HANG_SECONDS is stopped.
The table at the end: target, executions, executions/s, corpus size, findings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work"
SLOW_SECONDS = 1.0
HANG_SECONDS = 10.0

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class Hung(BaseException):
    """Raised by the alarm in an input that runs for HANG_SECONDS."""


def signature(error: BaseException) -> str:
    """The exception type and the innermost frame in the project's own code."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [f for f in frames if str(ROOT) in f.filename and "/fuzz/run.py" not in f.filename]
    where = own[-1] if own else (frames[-1] if frames else None)
    place = f"{Path(where.filename).relative_to(ROOT) if str(ROOT) in where.filename else where.filename}:" \
            f"{where.lineno}" if where else "?"  # fmt: skip
    what = type(error).__name__
    if what == "Finding":  # an invariant of the target: its message says which one
        what += " (" + re.sub(r"[0-9]+|\[.*", "N", str(error).split(":")[0])[:60] + ")"
    return f"{what} at {place}"


class Recorder:
    """Keeps one input per finding signature (the smallest seen) and the run's figures."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.executions = 0
        self.signatures: dict[str, int] = {}
        self.slow: list[tuple[float, str]] = []

    def finding(self, sig: str, data: bytes, text: str) -> None:
        key = hashlib.sha1(sig.encode()).hexdigest()[:12]
        if sig in self.signatures and self.signatures[sig] <= len(data):
            return
        new = sig not in self.signatures
        self.signatures[sig] = len(data)
        (self.folder / f"{key}.bin").write_bytes(data)
        (self.folder / f"{key}.txt").write_text(f"{sig}\n\n{text}")
        if new:
            print(f"FINDING {sig} ({len(data)} bytes): {self.folder / key}.bin", file=sys.stderr, flush=True)

    def slow_input(self, seconds: float, data: bytes) -> None:
        key = hashlib.sha1(data).hexdigest()[:12]
        if len(self.slow) >= 5 and seconds <= min(s for s, _ in self.slow):
            return
        self.slow.append((seconds, key))
        self.slow.sort(reverse=True)
        for _, dropped in self.slow[5:]:
            (self.folder / f"slow-{dropped}.bin").unlink(missing_ok=True)
        self.slow = self.slow[:5]
        (self.folder / f"slow-{key}.bin").write_bytes(data)
        print(f"FINDING slow input: {seconds:.2f} s ({len(data)} bytes): slow-{key}.bin", file=sys.stderr, flush=True)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"executions": self.executions, "findings": sorted(self.signatures),
                                    "slow": [s for s, _ in self.slow]}))  # fmt: skip


def guarded(run: object, data: bytes, recorder: Recorder) -> None:
    """One input: exceptions and slowness become findings, never the end of the run."""
    from fuzz.targets import setup_seconds

    recorder.executions += 1
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    setup_before = setup_seconds[0]
    start = time.monotonic()
    try:
        run(data)  # type: ignore[operator]
    except Hung:
        recorder.finding("Hung", data, f"still running after {HANG_SECONDS} s")
    except (Exception, RecursionError, MemoryError) as error:
        recorder.finding(signature(error), data, "".join(traceback.format_exception(error)))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    elapsed = time.monotonic() - start - (setup_seconds[0] - setup_before)  # building a JobService is no parsing
    if elapsed > SLOW_SECONDS:
        recorder.slow_input(elapsed, data)


def worker(name: str, seconds: int) -> None:
    """One target under atheris (this process is started by main())."""
    import atheris

    include = ["spooler", "drivers"] + (["pypdf"] if name == "pdf" else [])
    with atheris.instrument_imports(include=include):
        import drivers.detect, drivers.image, drivers.pcl5, drivers.pclxl, drivers.pdf  # noqa: E401,F401
        import drivers.postscript, drivers.raster, drivers.text  # noqa: E401,F401
        import spooler.ipp.codec, spooler.ipp.server.operations, spooler.ipp.server.resource, spooler.jobs.service  # noqa: E401,F401
        import spooler.intake.lpd, drivers.pjl, spooler.store.database  # noqa: E401,F401
    from fuzz.targets import TARGETS

    target = TARGETS[name]
    folder = WORK / name
    corpus = folder / "corpus"
    recorder = Recorder(folder / "findings")
    stats = folder / "stats.json"
    last_save = [time.monotonic()]

    def on_alarm(signum: int, frame: object) -> None:
        raise Hung()

    signal.signal(signal.SIGALRM, on_alarm)

    def one(data: bytes) -> None:
        guarded(target.run, data, recorder)
        if time.monotonic() - last_save[0] > 2:
            recorder.save(stats)
            last_save[0] = time.monotonic()

    import atexit

    atexit.register(recorder.save, stats)
    args = [sys.argv[0], str(corpus), f"-max_total_time={seconds}", f"-max_len={target.max_len}",
            "-timeout=0", "-rss_limit_mb=2048", "-print_final_stats=1", f"-artifact_prefix={folder}/"]
    from fuzz.mutators import MUTATORS, write_dictionary

    if write_dictionary(name, folder / "dict.txt") is not None:
        args.append(f"-dict={folder / 'dict.txt'}")
    atheris.Setup(args, one, **({"custom_mutator": MUTATORS[name]} if name in MUTATORS else {}))
    atheris.Fuzz()


def prepare(name: str) -> Path:
    from fuzz.targets import TARGETS

    corpus = WORK / name / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in TARGETS[name].seed_files():
        copy = corpus / f"seed-{seed.name}"
        if not copy.exists():
            shutil.copyfile(seed, copy)
    (WORK / name / "stats.json").unlink(missing_ok=True)
    return corpus


def figures(name: str, log: str, elapsed: float) -> dict[str, object]:
    folder = WORK / name
    stats = json.loads((folder / "stats.json").read_text()) if (folder / "stats.json").exists() else {}
    executed = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
    executions = int(executed[-1]) if executed else int(stats.get("executions", 0))
    rate = re.findall(r"stat::average_exec_per_sec:\s*(\d+)", log)
    findings = list(stats.get("findings", []))
    crashes = sorted(p.name for p in folder.glob("*-*") if p.is_file() and p.name.split("-")[0] in
                     ("crash", "timeout", "oom", "leak"))  # fmt: skip
    findings += [f"libFuzzer {c}" for c in crashes]
    return {"target": name, "executions": executions, "seconds": round(elapsed),
            "per_second": int(rate[-1]) if rate else round(executions / elapsed) if elapsed else 0,
            "corpus": len(list((folder / "corpus").glob("*"))), "findings": findings,
            "slow": len(stats.get("slow", []))}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description="Fuzz every parser that reads client bytes (atheris).")
    parser.add_argument("--seconds", type=int, default=60, help="budget of each main target")
    parser.add_argument("--other-seconds", type=int, default=None, help="budget of the others (half)")
    parser.add_argument("--targets", default="", help="comma-separated names (default: all)")
    parser.add_argument("--parallel", type=int, default=1, help="targets run at the same time")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--replay", nargs="+", metavar=("TARGET", "FILE"),
                        help="run files through a target without atheris; print each outcome")
    args, _ = parser.parse_known_args()
    if args.worker:
        seconds = args.seconds
        sys.argv = [sys.argv[0]]
        worker(args.worker, seconds)
        return 0
    from fuzz.targets import TARGETS

    if args.replay:
        name, *files = args.replay
        target = TARGETS[name]
        failed = 0
        for file in files:
            data = Path(file).read_bytes()
            start = time.monotonic()
            try:
                target.run(data)
                outcome = "ok"
            except Exception as error:
                failed += 1
                outcome = f"FINDING {signature(error)}: {error}"[:500]
            print(f"{file}: {outcome} ({time.monotonic() - start:.2f} s)")
        return 1 if failed else 0
    names = [n for n in args.targets.split(",") if n] or list(TARGETS)
    other = args.other_seconds if args.other_seconds is not None else max(1, args.seconds // 2)
    pending = list(names)
    running: dict[str, tuple[subprocess.Popen[bytes], float, Path]] = {}
    results = []
    while pending or running:
        while pending and len(running) < args.parallel:
            name = pending.pop(0)
            prepare(name)
            budget = args.seconds if TARGETS[name].main else other
            log_path = WORK / name / "fuzz.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen([sys.executable, __file__, "--worker", name, "--seconds", str(budget)],
                                           stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)  # fmt: skip
            running[name] = (process, time.monotonic(), log_path)
            print(f"{name}: {budget} s ...", flush=True)
        time.sleep(0.5)
        for name, (process, start, log_path) in list(running.items()):
            if process.poll() is None:
                continue
            del running[name]
            result = figures(name, log_path.read_text(errors="replace"), time.monotonic() - start)
            result["exit"] = process.returncode
            results.append(result)
            print(f"{name}: done, {result['executions']} executions, {len(result['findings'])} findings", flush=True)
    print()
    print(f"{'target':<13}{'executions':>11}{'exec/s':>8}{'seconds':>8}{'corpus':>8}{'findings':>9}{'slow':>6}")
    for r in sorted(results, key=lambda r: names.index(str(r["target"]))):
        print(f"{r['target']:<13}{r['executions']:>11}{r['per_second']:>8}{r['seconds']:>8}{r['corpus']:>8}"
              f"{len(r['findings']):>9}{r['slow']:>6}")  # type: ignore[arg-type]
    for r in results:
        for finding in r["findings"]:  # type: ignore[attr-defined]
            print(f"  {r['target']}: {finding}")
    (WORK / "summary.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
