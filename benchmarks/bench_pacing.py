"""Pacing against a strict sliding-window limiter: the old even-spaced bucket against the new limiter.

Why this exists (issue 9, part 4): the hook spaces calls 1/rate apart, so call n and call n + rate
leave exactly one second apart; seen from the server, send-time and transit jitter put rate + 1
calls into some second (0.993-0.999 s), and a limiter that counts calls in a sliding second
answers 429. The new limiter (:class:`~airflow_provider_gong.quota.QuotaLimiter` on a SQLite store,
as the hook builds it; issue 10 shares it between processes) also keeps rate calls window + margin
apart. This shows what that costs (achieved rate / limit) and what it saves (429s).

The bundled stand-in runs in a subprocess (so its request handling does not share our GIL and add
jitter a real server would not see) in ``strict_window`` mode at exactly the tested rate (the
harshest reading of "N calls per second"; it never throttles below that rate), and records when
each call reached its limiter; it hands that log back when the run ends. A :class:`GongHook` with
``rate_limit_per_second`` = the rate sends
``GET /v2/users`` in a loop, once with the old bucket (reconstructed below) and once with the new
limiter.
A 429 is retried by the hook as in production (after ``Retry-After``, 1 s by default), so its cost
shows in the achieved rate. Columns:

* ``achieved/limit``: accepted calls per second at the server, first to last, over the limit;
* ``max/1s``: the most calls (accepted or not) the server saw in any sliding second;
* ``429s``: answers 429; ``failed``: calls that still failed after the hook's retries.

Each configuration runs ``--repeat`` times (fresh server each time); the table shows the median.
It only prints: nothing here asserts a timing.

    .venv/bin/python benchmarks/bench_pacing.py [--quick] [--rates 3 50] [--calls 60 1000] [--repeat 3]
        [--margin 0.008] [--server strict|bucket|off] [--retry-after 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Importing Airflow writes into AIRFLOW_HOME: keep a benchmark run from touching ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="gong-bench-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
sys.path.insert(0, str(ROOT))

from airflow_provider_gong.exceptions import GongError  # noqa: E402
from airflow_provider_gong.hooks.gong import GongHook  # noqa: E402
from airflow_provider_gong.pacing import DEFAULT_MARGIN  # noqa: E402
from airflow_provider_gong.quota import QuotaLimiter, SQLiteStore  # noqa: E402
from airflow_provider_gong.testing.standin import GongStandIn, max_in_sliding_window  # noqa: E402

CONN_ID = "gong_bench_pacing"
ACCESS_KEY, ACCESS_KEY_SECRET = "standin-key", "standin-secret-value"  # the stand-in's defaults
SECONDS = 20  # default run length per configuration: rate * SECONDS calls
QUICK_SECONDS = 4


class OldTokenBucket:
    """The bucket before issue 9 part 4, verbatim in behaviour: burst 1, calls 1/rate apart, nothing
    else. Kept here only for comparison."""

    def __init__(self, rate: float, *, burst: int = 1) -> None:
        self.rate = float(rate)
        self.burst = burst
        self._tokens = float(burst)
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)
        return wait


class RecordingStandIn(GongStandIn):
    """The stand-in, noting when each API call reached its rate limiter and whether it was refused.

    The time is read just before the limiter reads its own, so it is what the limiter judged."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.arrivals: list[tuple[float, bool]] = []

    def _over_rate(self) -> bool:
        now = time.monotonic()
        refused = super()._over_rate()
        with self.lock:
            self.arrivals.append((now, refused))
        return refused


def serve(rate: float | None, strict: bool, retry_after: int) -> int:
    """Subprocess side: run a recording stand-in, print its URL, and when stdin closes print the
    arrivals as JSON ``[[monotonic seconds, refused], ...]``."""
    with RecordingStandIn(
        rate_limit_per_second=rate, strict_window=strict, retry_after=retry_after
    ) as standin:
        print(standin.url, flush=True)
        sys.stdin.read()
        with standin.lock:
            print(json.dumps(standin.arrivals), flush=True)
    return 0


class Server:
    """Parent side of :func:`serve`: the URL to call, and the arrivals once :meth:`finish` ran."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url

    def finish(self) -> list[tuple[float, bool]]:
        out, _ = self.proc.communicate(timeout=30)
        return [(float(t), bool(refused)) for t, refused in json.loads(out)]


@contextmanager
def standin_subprocess(rate: float | None, strict: bool, retry_after: int) -> Iterator[Server]:
    command = [sys.executable, __file__, "--serve", "--retry-after", str(retry_after)]
    command += ["--server", "strict" if strict else "bucket" if rate else "off"]
    command += ["--rates", str(rate or 1)]
    proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the stand-in did not start: {url!r}")
        yield Server(proc, url)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class Result:
    achieved: float  # accepted calls/s over the limit
    max_per_second: int
    refused: int
    failed: int
    wall: float


def run(rate: float, calls: int, bucket: Callable[[float], object], server: str, retry_after: int) -> Result:
    """``calls`` paced calls through a fresh hook and a fresh stand-in; what the server saw."""
    limit = None if server == "off" else rate
    with standin_subprocess(limit, server == "strict", retry_after) as standin:
        conn = {
            "conn_type": "gong",
            "host": standin.url,
            "login": ACCESS_KEY,
            "password": ACCESS_KEY_SECRET,
            "extra": {
                "rate_limit_per_second": rate,
                "max_attempts": 20,
                "max_retry_wait": max(retry_after, 1),
            },
        }
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(conn)
        hook = GongHook(CONN_ID)
        hook.limiter = bucket(rate)  # type: ignore[assignment]
        failed = 0
        started = time.monotonic()
        try:
            for _ in range(calls):
                try:
                    hook.request("GET", "/v2/users")
                except GongError:
                    failed += 1
        finally:
            hook.close()
        wall = time.monotonic() - started
        arrivals = standin.finish()
    accepted = sorted(t for t, refused in arrivals if not refused)
    span = accepted[-1] - accepted[0] if len(accepted) > 1 else 0.0
    return Result(
        achieved=(len(accepted) - 1) / span / rate if span else float("nan"),
        max_per_second=max_in_sliding_window([t for t, _ in arrivals]) if arrivals else 0,
        refused=sum(1 for _, refused in arrivals if refused),
        failed=failed,
        wall=wall,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[3.0, 50.0], help="calls/s to test")
    parser.add_argument(
        "--calls",
        type=int,
        nargs="+",
        help=f"calls per rate (default rate * {SECONDS}; one value or one per rate)",
    )
    parser.add_argument("--quick", action="store_true", help=f"rate * {QUICK_SECONDS} calls per rate")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration; prints the median")
    parser.add_argument(
        "--server",
        choices=["strict", "bucket", "off"],
        default="strict",
        help="the stand-in's limiter at the tested rate: sliding window (default), token bucket, none",
    )
    parser.add_argument("--retry-after", type=int, default=1, help="seconds the stand-in asks to wait on 429")
    parser.add_argument(
        "--margin",
        type=float,
        default=DEFAULT_MARGIN,
        help="the new limiter's margin, seconds (default %(default)s)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the subprocess
    args = parser.parse_args(argv)
    if args.serve:
        return serve(
            None if args.server == "off" else args.rates[0], args.server == "strict", args.retry_after
        )
    seconds = QUICK_SECONDS if args.quick else SECONDS
    calls = args.calls or [round(rate * seconds) for rate in args.rates]
    if len(calls) == 1:
        calls = calls * len(args.rates)
    if len(calls) != len(args.rates):
        parser.error("--calls takes one value, or one per rate")
    logging.getLogger("airflow_provider_gong").setLevel(logging.ERROR)  # the hook warns on every 429

    contenders: dict[str, Callable[[float], object]] = {
        "old": OldTokenBucket,
        "new": lambda rate: QuotaLimiter(
            SQLiteStore(Path(tempfile.mkdtemp(prefix="gong-bench-quota-")) / "quota.sqlite3"),
            "bench",
            rate,
            margin=args.margin,
            daily_quota=10**9,
        ),
    }
    print(
        f"stand-in limiter: {args.server} at the tested rate; Retry-After {args.retry_after} s; "
        f"median of {args.repeat} run(s); new margin {args.margin * 1000:g} ms"
    )
    header = f"{'limit':>7}  {'calls':>5}  {'bucket':6}  {'achieved/limit':>14}  {'max/1s':>6}  {'429s':>5}"
    print(header + f"  {'failed':>6}  {'wall s':>7}")
    for rate, count in zip(args.rates, calls, strict=True):
        for name, bucket in contenders.items():
            results = [run(rate, count, bucket, args.server, args.retry_after) for _ in range(args.repeat)]
            achieved = statistics.median(r.achieved for r in results)
            most = statistics.median(r.max_per_second for r in results)
            refused = statistics.median(r.refused for r in results)
            failed = statistics.median(r.failed for r in results)
            wall = statistics.median(r.wall for r in results)
            print(
                f"{rate:>5g}/s  {count:>5}  {name:6}  {achieved:>14.4f}  {most:>6g}  {refused:>5g}  "
                f"{failed:>6g}  {wall:>7.1f}",
                flush=True,
            )
            if args.repeat > 1:
                each = ", ".join(f"{r.achieved:.4f}/{r.max_per_second}/{r.refused}" for r in results)
                print(f"{'':>23}runs (achieved/max/429s): {each}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
