"""Offline PIN-only login cost with synced users (verifiers at the server's real scrypt cost, N=16384).

Three figures, medians of --runs runs, in one process on the real reactor and its thread pool:

- seen PIN: a PIN that logged in here before, found by its HMAC fingerprint (one scrypt check);
- worst case: a wrong PIN against USERS synced users with 3 PINs each (every verifier is checked,
  by LoginService's threaded scan), through LoginService.login offline;
- baseline: the same verifiers checked one after the other on one thread (the naive scan).

The ratio baseline / worst case says what the threaded scan buys on this machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, task  # noqa: E402
from twisted.internet.threads import deferToThreadPool  # noqa: E402

from spooler.config import LoginConfig  # noqa: E402
from spooler.login.cache import CredentialCache  # noqa: E402
from spooler.login.entries import Credential, UserEntry  # noqa: E402
from spooler.login.keys import LoginKeys  # noqa: E402
from spooler.login.service import SCAN_THREADS, LoginOutcome, LoginRefused, LoginService  # noqa: E402
from spooler.verifiers import check_verifier, make_verifier  # noqa: E402


def build_cache(folder: Path, users: int, pins: int) -> CredentialCache:
    cache = CredentialCache.open(folder / "login.db", LoginKeys.open_or_create(folder / "keys" / "login.key"))
    secrets = [f"{n:06d}" for n in range(users * pins)]
    with ThreadPoolExecutor() as pool:
        verifiers = list(pool.map(make_verifier, secrets))
    now = time.time()
    for user in range(users):
        credentials = {f"pin-{k + 1}": Credential(f"pin-{k + 1}", "pin", verifiers[user * pins + k], now, "sync", "sync")
                       for k in range(pins)}  # fmt: skip
        cache.put(UserEntry(f"user{user:03d}", {"full_name": "", "email": "", "groups": []}, credentials,
                            now, now, "sync"))  # fmt: skip
    return cache


async def measure(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="loginbench"))
    print(f"making {args.users * 3} verifiers (N=16384) ...", file=sys.stderr)
    cache = build_cache(folder, args.users, 3)
    reactor.suggestThreadPoolSize(max(10, SCAN_THREADS + 2))

    def run_in_thread(function: Any, *a: Any, **kw: Any) -> Any:
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *a, **kw)

    service = LoginService(reactor, LoginConfig(max_failures=10**6), cache, device="bench", api=None,
                           run_in_thread=run_in_thread)  # fmt: skip

    async def timed_login(secret: str, terminal: str) -> tuple[float, Any]:
        start = time.perf_counter()
        try:
            outcome = await defer.Deferred.fromCoroutine(_login(service, secret, terminal))
        except LoginRefused as refused:
            outcome = refused
        return time.perf_counter() - start, outcome

    # The last user's last PIN, first by scan (its first login), then by fingerprint.
    last = f"{args.users * 3 - 1:06d}"
    first_login, outcome = await timed_login(last, "t0")
    assert isinstance(outcome, LoginOutcome), outcome
    seen, worst, naive = [], [], []
    verifiers = [c.verifier for _, c in cache.credentials_of("pin")]
    for run in range(args.runs):
        elapsed, outcome = await timed_login(last, f"s{run}")
        assert isinstance(outcome, LoginOutcome)
        seen.append(elapsed)
        elapsed, outcome = await timed_login("999999", f"w{run}")
        assert isinstance(outcome, LoginRefused) and outcome.reason == "invalid"
        worst.append(elapsed)
        start = time.perf_counter()
        assert not any(check_verifier("999999", verifier) for verifier in verifiers)
        naive.append(time.perf_counter() - start)
        print(f"run {run + 1}: seen {seen[-1]:.3f}s, worst {worst[-1]:.2f}s, naive {naive[-1]:.2f}s", file=sys.stderr)
    cache.close()
    return {"users": args.users, "verifiers": len(verifiers), "scan_threads": SCAN_THREADS,
            "first_login_by_scan_s": round(first_login, 3),
            "seen_pin_median_s": round(statistics.median(seen), 4),
            "worst_case_median_s": round(statistics.median(worst), 3),
            "naive_sequential_median_s": round(statistics.median(naive), 3),
            "speedup_vs_naive": round(statistics.median(naive) / statistics.median(worst), 2)}  # fmt: skip


async def _login(service: LoginService, secret: str, terminal: str) -> Any:
    return await service.login(method="pin", secret=secret, user=None, terminal=terminal)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    async def run(reactor: Any) -> None:
        figures = await measure(reactor, args)
        if args.json:
            print(json.dumps(figures))
        else:
            for key, value in figures.items():
                print(f"{key:28} {value}")

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
