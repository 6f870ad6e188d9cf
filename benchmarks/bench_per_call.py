"""Per-call overhead of ``GongHook.create_meeting`` against a bare, reused ``requests.Session.post``.

Why this exists: a warehouse batch makes tens of thousands of calls, so whatever the hook adds to
each one (pacing, the retry policy, the deadline watchdog, redaction, typing the answer) is paid tens
of thousands of times. The goal (issue 9) is a hook that costs no more than the plainest client that
sends the same JSON body with the same headers to the same server.

The bundled Gong stand-in runs in a subprocess (so its request handling does not share our GIL) on a
loopback port, with a rate limit far above what one client can reach; the hook's own pacing is set
just as high, so neither dominates. The contenders run interleaved in rounds (A, B, C, A, B, C, ...)
so that machine noise hits them alike; the table shows each round's per-call microseconds, the ratio
to the bare session, and the median of the rounds. It only prints: nothing here asserts a timing.

    .venv/bin/python benchmarks/bench_per_call.py [--calls 300] [--rounds 9]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Importing Airflow writes into AIRFLOW_HOME: keep a benchmark run from touching ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="gong-bench-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from airflow_provider_gong import __version__  # noqa: E402
from airflow_provider_gong.hooks.gong import GongHook  # noqa: E402
from airflow_provider_gong.meetings import Meeting  # noqa: E402

ACCESS_KEY, ACCESS_KEY_SECRET = "standin-key", "standin-secret-value"  # the stand-in's defaults
CONN_ID = "gong_bench"
HTTP_CONN_ID = "gong_bench_http"
HIGH_RATE = 1_000_000.0  # calls/s: far beyond one client, so neither side ever paces or throttles


@contextmanager
def standin_subprocess() -> Iterator[str]:
    """Start ``python -m airflow_provider_gong.testing`` on a free port; yield its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_gong.testing", "--port", "0", "--rate", str(HIGH_RATE)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if "listening on " not in first:
            raise RuntimeError(f"the stand-in did not start: {first!r}")
        yield first.rsplit("listening on ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def meeting() -> Meeting:
    """A meeting 30 days ahead (fixed dates would leave Gong's plausibility window)."""
    day = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).date().isoformat()
    return Meeting.build(
        start_time=f"{day}T15:00:00Z",
        end_time=f"{day}T15:30:00Z",
        organizer_email="rep@acme.com",
        invitees=["buyer@client.com"],
        title="Benchmark",
        external_id="bench-1",
    )


def bare_session(url: str, payload: dict, authorization: str) -> Callable[[], object]:
    """What a hand-written client would do: one reused Session, the same headers and JSON body."""
    session = requests.Session()
    session.headers.update(
        {
            "Authorization": authorization,
            "Accept": "application/json",
            "User-Agent": f"airflow-provider-gong/{__version__}",
        }
    )
    target = url + "/v2/meetings"

    def call() -> object:
        response = session.post(target, json=payload, timeout=(10.0, 30.0))
        response.raise_for_status()
        return response.json()

    return call


def gong_hook(url: str, item: Meeting) -> Callable[[], object]:
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
        {
            "conn_type": "gong",
            "host": url,
            "login": ACCESS_KEY,
            "password": ACCESS_KEY_SECRET,
            "extra": {"rate_limit_per_second": HIGH_RATE},
        }
    )
    hook = GongHook(CONN_ID)
    return lambda: hook.create_meeting(item)


def http_hook(url: str, payload: dict, authorization: str) -> Callable[[], object] | None:
    """Airflow's generic HttpHook, for comparison; None when the http provider is not installed."""
    try:
        from airflow.providers.http.hooks.http import HttpHook  # type: ignore[import-not-found]
    except ImportError:
        return None
    os.environ[f"AIRFLOW_CONN_{HTTP_CONN_ID.upper()}"] = json.dumps({"conn_type": "http", "host": url})
    hook = HttpHook(method="POST", http_conn_id=HTTP_CONN_ID)
    headers = {
        "Authorization": authorization,
        "Accept": "application/json",
        "User-Agent": f"airflow-provider-gong/{__version__}",
    }
    return lambda: hook.run("/v2/meetings", json=payload, headers=headers).json()


def time_block(call: Callable[[], object], calls: int) -> float:
    """Microseconds per call over ``calls`` back-to-back calls."""
    gc.collect()
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=300, help="calls per contender per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=50, help="untimed calls per contender first")
    args = parser.parse_args(argv)

    item = meeting()
    payload = item.to_payload()
    with standin_subprocess() as url:
        hook_call = gong_hook(url, item)
        authorization = GongHook(CONN_ID).settings.authorization()
        contenders: dict[str, Callable[[], object] | None] = {
            "requests.Session.post": bare_session(url, payload, authorization),
            "GongHook.create_meeting": hook_call,
            "HttpHook.run": http_hook(url, payload, authorization),
        }
        live = {name: call for name, call in contenders.items() if call is not None}
        for call in live.values():
            for _ in range(args.warmup):
                call()
        results: dict[str, list[float]] = {name: [] for name in live}
        for _ in range(args.rounds):
            for name, call in live.items():  # interleaved: A, B, C, A, B, C, ...
                results[name].append(time_block(call, args.calls))

    names = list(contenders)
    bare = results[names[0]]
    width = 30
    print(f"{args.rounds} rounds x {args.calls} calls per contender, stand-in at {url}")
    # A bare session scans the environment on every call, so its cost grows with the environment.
    print(
        f"python {sys.version.split()[0]}, requests {requests.__version__}, {len(os.environ)} env variables"
    )
    print("per-call microseconds (ratio to the bare session)\n")
    print("round  " + "".join(f"{name:>{width}}" for name in names))

    def cell(name: str, index: int | None) -> str:
        if name not in results:
            return f"{'n/a (provider not installed)':>{width}}"
        if index is None:
            value, base = statistics.median(results[name]), statistics.median(bare)
        else:
            value, base = results[name][index], bare[index]
        return f"{f'{value:8.1f} us ({value / base:4.2f}x)':>{width}}"

    for index in range(args.rounds):
        print(f"{index + 1:>5}  " + "".join(cell(name, index) for name in names))
    print("median " + "".join(cell(name, None) for name in names))
    per_round = {
        name: statistics.median(r / b for r, b in zip(results[name], bare, strict=True))
        for name in names
        if name in results
    }
    print(
        "\nmedian of per-round ratios: "
        + ", ".join(f"{name} {ratio:.3f}x" for name, ratio in per_round.items())
    )


if __name__ == "__main__":
    main()
