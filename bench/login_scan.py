"""Offline login cost with synced users (verifiers at the server's real scrypt cost, N=16384), before
and after the lookup index of issue 14 (finding 11), the cost of a wrong password for a known and an
unknown user (finding 7), and what a stolen disk costs an attacker (the bound the README documents).

Everything is measured in one process, in the same run, on the real reactor and its thread pool,
medians of --runs runs, through LoginService.login offline:

- scan (before): USERS synced users x 3 PINs from a server that sends no lookups (the old sync): a
  wrong PIN checks every verifier, in LoginService's threaded scan;
- indexed (after): the same users synced with the server's lookup KDF and lookups: a wrong PIN costs
  one scrypt (the lookup), a right PIN never typed here two (the lookup and its verifier);
- naive: the same verifiers checked one after the other on one thread;
- password, known vs unknown user: a wrong password of a cached user, and of a user who does not
  exist (a dummy verifier of the same cost is checked);
- stolen disk: one lookup KDF and one HMAC, timed, scaled to every 4- and 6-digit PIN.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import math
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
from spooler.login.budget import BudgetPolicy  # noqa: E402
from spooler.login.cache import CredentialCache  # noqa: E402
from spooler.login.keys import LoginKeys  # noqa: E402
from spooler.login.service import SCAN_THREADS, LoginOutcome, LoginRefused, LoginService  # noqa: E402
from spooler.login.sync import synced_entry  # noqa: E402
from spooler.verifiers import check_verifier, lookup_digest, make_lookup_kdf, make_verifier  # noqa: E402

PINS_PER_USER = 3


def pin_of(user: int, k: int) -> str:
    return f"{user * PINS_PER_USER + k:06d}"


def build_cache(folder: Path, users: int, verifiers: list[str], lookups: list[str] | None, kdf: str) -> CredentialCache:
    """A cache as a user sync leaves it: with the server's lookups (indexed) or without (scanned)."""
    cache = CredentialCache.open(folder / "login.db", LoginKeys.open_or_create(folder / "keys" / "login.key"))
    if lookups is not None:
        cache.set_lookup_kdf(kdf, "server")
    now = time.time()
    for user in range(users):
        pins = []
        for k in range(PINS_PER_USER):
            item = {"id": f"pin-{k + 1}", "verifier": verifiers[user * PINS_PER_USER + k]}
            if lookups is not None:
                item["lookup"] = lookups[user * PINS_PER_USER + k]
            pins.append(item)
        raw = {"name": f"user{user:03d}", "pins": pins, "password": {"id": "password", "verifier": verifiers[user * PINS_PER_USER]}}
        cache.put(synced_entry(raw, verified_at=now, now=now, device="bench",
                               fingerprint=cache.fingerprint if lookups is not None else None))  # fmt: skip
    return cache


async def measure(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    count = args.users * PINS_PER_USER
    print(f"making {count} verifiers and {count} lookups (N=16384) ...", file=sys.stderr)
    secrets = [pin_of(user, k) for user in range(args.users) for k in range(PINS_PER_USER)]
    kdf = make_lookup_kdf()
    with ThreadPoolExecutor() as pool:
        verifiers = list(pool.map(make_verifier, secrets))
        lookups = [base64.b64encode(d).decode() for d in pool.map(lambda s: lookup_digest(s, kdf), secrets)]
    scan_cache = build_cache(Path(tempfile.mkdtemp(prefix="loginbench")), args.users, verifiers, None, kdf)
    index_cache = build_cache(Path(tempfile.mkdtemp(prefix="loginbench")), args.users, verifiers, lookups, kdf)
    reactor.suggestThreadPoolSize(max(10, SCAN_THREADS + 2))

    def run_in_thread(function: Any, *a: Any, **kw: Any) -> Any:
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *a, **kw)

    config = LoginConfig(max_failures=10**6, device_max_failures=10**6)  # the bench measures cost, not limits
    scanning = LoginService(reactor, config, scan_cache, device="bench", api=None, run_in_thread=run_in_thread)
    indexed = LoginService(reactor, config, index_cache, device="bench", api=None, run_in_thread=run_in_thread)

    async def timed(service: LoginService, secret: str, method: str = "pin", user: str | None = None) -> tuple[float, Any]:
        start = time.perf_counter()
        try:
            outcome = await service.login(method=method, secret=secret, user=user, terminal="bench")
        except LoginRefused as refused:
            outcome = refused
        return time.perf_counter() - start, outcome

    figures: dict[str, list[float]] = {name: [] for name in (
        "scan_wrong", "indexed_wrong", "indexed_right", "naive", "password_known", "password_unknown", "kdf", "hmac_us")}
    last = pin_of(args.users - 1, PINS_PER_USER - 1)  # the last user's last PIN: the worst place in a scan
    for run in range(args.runs):
        elapsed, outcome = await timed(scanning, "999999")
        assert isinstance(outcome, LoginRefused) and outcome.reason == "invalid"
        figures["scan_wrong"].append(elapsed)
        elapsed, outcome = await timed(indexed, "999999")
        assert isinstance(outcome, LoginRefused) and outcome.reason == "invalid"
        figures["indexed_wrong"].append(elapsed)
        fresh = LoginService(reactor, config, index_cache, device="bench", api=None, run_in_thread=run_in_thread)
        elapsed, outcome = await timed(fresh, last)
        assert isinstance(outcome, LoginOutcome), outcome
        figures["indexed_right"].append(elapsed)
        start = time.perf_counter()
        assert not any(check_verifier("999999", verifier) for verifier in verifiers)
        figures["naive"].append(time.perf_counter() - start)
        elapsed, outcome = await timed(indexed, "wrong-password", "password", "user007")
        assert isinstance(outcome, LoginRefused) and outcome.reason == "invalid"
        figures["password_known"].append(elapsed)
        elapsed, outcome = await timed(indexed, "wrong-password", "password", "nobody-here")
        assert isinstance(outcome, LoginRefused) and outcome.reason == "invalid"
        figures["password_unknown"].append(elapsed)
        start = time.perf_counter()
        lookup_digest("999999", kdf)
        figures["kdf"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for n in range(100_000):
            hmac.new(b"k" * 32, b"pin\0%06d" % n, hashlib.sha256).digest()
        figures["hmac_us"].append((time.perf_counter() - start) / 100_000 * 1e6)
        print(f"run {run + 1}: scan {figures['scan_wrong'][-1]:.2f}s, indexed wrong {figures['indexed_wrong'][-1]:.3f}s,"
              f" right {figures['indexed_right'][-1]:.3f}s, naive {figures['naive'][-1]:.2f}s,"
              f" password known {figures['password_known'][-1] * 1000:.1f}ms"
              f" / unknown {figures['password_unknown'][-1] * 1000:.1f}ms", file=sys.stderr)  # fmt: skip
    scan_cache.close()
    index_cache.close()
    median = {name: statistics.median(values) for name, values in figures.items()}
    kdf_s, hmac_s = median["kdf"], median["hmac_us"] / 1e6
    device = BudgetPolicy(LoginConfig().device_max_failures, LoginConfig().lockout, LoginConfig().max_lockout)
    online = {"guesses_first_hour": device.guess_bound(3600), "guesses_per_day": device.guess_bound(86400)}
    for digits in (4, 6):
        space = 10**digits
        online[f"p_one_user_day_{digits}"] = round(online["guesses_per_day"] / space, 6)
        online[f"p_any_of_{count}_day_{digits}"] = round(1 - (1 - count / space) ** online["guesses_per_day"], 4)
    stolen = {}
    for digits in (4, 6):
        space = 10**digits
        # after: one KDF per guess tests every indexed PIN at once
        stolen[f"after_all_users_{digits}_digit_s"] = round(space * kdf_s, 1)
        # before: a PIN seen at a login had a plain HMAC fingerprint; a synced one never seen its own salt
        stolen[f"before_seen_pins_{digits}_digit_s"] = round(space * hmac_s, 3)
        stolen[f"before_one_synced_{digits}_digit_s"] = round(space * kdf_s, 1)
        stolen[f"before_all_synced_{digits}_digit_s"] = round(space * kdf_s * count, 1)
    return {"users": args.users, "verifiers": count, "scan_threads": SCAN_THREADS,
            "before_scan_wrong_pin_s": round(median["scan_wrong"], 3),
            "after_indexed_wrong_pin_s": round(median["indexed_wrong"], 4),
            "after_indexed_right_pin_s": round(median["indexed_right"], 4),
            "naive_sequential_s": round(median["naive"], 3),
            "speedup_before_over_after": round(median["scan_wrong"] / median["indexed_wrong"], 1),
            "password_known_user_ms": round(median["password_known"] * 1000, 1),
            "password_unknown_user_ms": round(median["password_unknown"] * 1000, 1),
            "password_unknown_over_known": round(median["password_unknown"] / median["password_known"], 2),
            "one_kdf_s": round(kdf_s, 4), "one_hmac_us": round(median["hmac_us"], 2),
            "online_bound": online, "stolen_disk_single_core": stolen}  # fmt: skip


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
            return
        for key, value in figures.items():
            if isinstance(value, dict):
                for inner, number in value.items():
                    print(f"{key}.{inner:34} {number}")
            else:
                print(f"{key:44} {value}")

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
