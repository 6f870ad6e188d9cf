from __future__ import annotations

import json
import math
import random
import threading
import time

import pytest

from airflow_provider_gong.hooks.gong import GongHook
from airflow_provider_gong.pacing import TokenBucket


class FakeClock:
    """Time that only moves when someone sleeps (or the test advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def max_calls_in_any_window(times: list[float], window: float = 1.0) -> int:
    """Largest number of calls inside any half-open window [t, t + window)."""
    return max(sum(1 for u in times if t <= u < t + window - 1e-9) for t in times)


@pytest.mark.parametrize("rate", [1, 3, 10])
@pytest.mark.parametrize("margin", [0.0, None])
def test_bucket_never_exceeds_rate_in_any_window(rate, margin):
    clock = FakeClock()
    options = {} if margin is None else {"margin": margin}
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep, **options)
    times = []
    for _ in range(50):
        bucket.acquire()
        times.append(clock.now)
    assert max_calls_in_any_window(times) == rate
    # and it does not go slower than needed: 50 calls take (50 - 1) / rate seconds, plus at most the
    # margin once per second (the default margin keeps server-seen windows safe from jitter)
    if margin == 0:
        assert times[-1] - times[0] == pytest.approx(49 / rate)
    else:
        assert 49 / rate <= times[-1] - times[0] <= 49 / rate * (1 + bucket.margin) + 1e-9


def test_bucket_refills_while_idle_but_only_up_to_burst():
    clock = FakeClock()
    bucket = TokenBucket(2, burst=3, clock=clock, sleep=clock.sleep)
    clock.now += 60  # a long idle period
    waits = [bucket.acquire() for _ in range(5)]
    assert waits[:3] == [0, 0, 0]  # the burst
    assert waits[3] == pytest.approx(0.5)
    assert waits[4] == pytest.approx(0.5)


@pytest.mark.parametrize("rate, burst", [(0, 1), (-1, 1), (3, 0)])
def test_bucket_rejects_nonsense(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst=burst)


def test_hook_paces_calls_at_the_connection_rate(monkeypatch, requests_mock):
    conn = {
        "conn_type": "gong",
        "host": "api.gong.io",
        "login": "k",
        "password": "secret-xyz",
        "extra": {"rate_limit_per_second": "4"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_GONG_PACED", json.dumps(conn))
    clock = FakeClock()
    hook = GongHook("gong_paced")
    assert hook.settings.rate_limit_per_second == 4
    hook.bucket = TokenBucket(hook.settings.rate_limit_per_second, clock=clock, sleep=clock.sleep)
    sent = []
    requests_mock.get(
        "https://api.gong.io/v2/users", json=lambda req, ctx: sent.append(clock.now) or {"users": []}
    )
    for _ in range(20):
        hook.request("GET", "/v2/users")
    assert len(sent) == 20
    assert max_calls_in_any_window(sent) == 4


class JitteryClock(FakeClock):
    """A fake clock whose sleep oversleeps, like a real OS timer: each sleep advances time by the
    requested seconds plus a random 0 to ``oversleep`` seconds. Deterministic (seeded)."""

    def __init__(self, rng: random.Random, oversleep: float = 0.003) -> None:
        super().__init__()
        self.rng = rng
        self.oversleep = oversleep

    def sleep(self, seconds: float) -> None:
        self.now += seconds + self.rng.uniform(0.0, self.oversleep)


def max_in_sliding_window(times: list[float], window: float = 1.0) -> int:
    """Most calls inside any half-open window [t, t + window): what a strict sliding-window limiter
    compares with its limit (it refuses a call when ``limit`` calls arrived less than 1 s before)."""
    ordered = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        most = max(most, end - start + 1)
    return most


def run_with_jitter(
    rate: float, calls: int, *, seed: int = 7, transit: float = 0.005, **kwargs
) -> list[float]:
    """``calls`` acquisitions on a jittery clock; returns the times a server would see each call:
    the grant time (the moment before sending) plus a random 0 to ``transit`` seconds in flight."""
    rng = random.Random(seed)
    clock = JitteryClock(rng)
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep, **kwargs)
    seen = []
    for _ in range(calls):
        bucket.acquire()
        seen.append(clock.now + rng.uniform(0.0, transit))
        clock.now += rng.uniform(0.0, 0.2 / rate)  # the call itself takes a little while
    return seen


@pytest.mark.parametrize("rate", [3, 50])
@pytest.mark.parametrize("seed", [1, 2])
def test_no_second_holds_more_than_rate_calls_despite_jitter(rate, seed):
    seen = run_with_jitter(rate, 2000, seed=seed)
    assert max_in_sliding_window(seen) <= rate


@pytest.mark.parametrize("rate", [3, 50])
def test_without_a_margin_transit_jitter_still_crowds_a_second(rate):
    """The harness can see the problem: remembering send times is not enough without the margin,
    because the server sees each call up to 5 ms after it was sent."""
    assert max_in_sliding_window(run_with_jitter(rate, 2000, margin=0.0)) == rate + 1


@pytest.mark.parametrize("rate", [3, 50])
def test_window_guard_keeps_99_percent_of_the_limit(rate):
    seen = sorted(run_with_jitter(rate, 2000))
    achieved = (len(seen) - 1) / (seen[-1] - seen[0])
    assert achieved >= 0.99 * rate
    assert achieved <= rate


def test_fractional_rate_keeps_its_long_run_rate_and_ceil_calls_per_second():
    """2.5/s: even spacing (0.4 s) puts 3 calls into some seconds, which is fewer than rate + 1; the
    guard allows ceil(rate) per second, so the long-run rate stays 2.5/s rather than dropping to 2."""
    seen = sorted(run_with_jitter(2.5, 500))
    assert max_in_sliding_window(seen) == 3
    achieved = (len(seen) - 1) / (seen[-1] - seen[0])
    assert 0.99 * 2.5 <= achieved <= 2.5


@pytest.mark.parametrize("rate", [0.5, 1, 3, 50])
def test_margin_is_the_only_cost_without_jitter(rate):
    """Without jitter the default bucket is the even schedule stretched by at most the margin per
    second: within 1% of ideal, and never faster."""
    clock = FakeClock()
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(500):
        bucket.acquire()
        times.append(clock.now)
    ideal = 499 / rate
    assert ideal - 1e-9 <= times[-1] - times[0] <= ideal * (1 + bucket.margin) + 1e-9
    assert max_in_sliding_window(times) == math.ceil(rate)


def test_the_send_time_is_taken_after_the_sleep():
    """The guard measures from when a call really went out: the 2nd call's sleep overran by 50 ms,
    so the 4th (two calls later at 2/s) leaves window + margin after the 2nd's real send time. The
    even schedule is not shifted by the overrun: the 3rd call is held only by the window guard."""
    clock = FakeClock()
    sleeps = []

    def sleep(seconds: float) -> None:
        clock.now += seconds + (0.05 if not sleeps else 0.0)
        sleeps.append(seconds)

    bucket = TokenBucket(2, clock=clock, sleep=sleep)
    times = []
    for _ in range(4):
        bucket.acquire()
        times.append(clock.now)
    assert times[1] - times[0] == pytest.approx(0.55)  # the overrun sleep
    assert times[2] - times[0] == pytest.approx(1.0 + bucket.margin)
    assert times[3] - times[1] == pytest.approx(1.0 + bucket.margin)


def test_bucket_is_safe_to_share_between_threads():
    """Four threads share one bucket (real clock, 100/s): every call is granted once, and the 101st
    grant still waited for the window to pass the 1st (the shared history is consistent)."""
    bucket = TokenBucket(100)
    granted: list[float] = []

    def worker() -> None:
        for _ in range(30):
            bucket.acquire()
            granted.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 120
    assert max(granted) - started >= 1.0 + bucket.margin


def test_an_infinite_rate_does_not_pace():
    clock = FakeClock()
    bucket = TokenBucket(float("inf"), clock=clock, sleep=clock.sleep)
    assert [bucket.acquire() for _ in range(5)] == [0.0] * 5


@pytest.mark.parametrize("margin", [-0.001, float("nan")])
def test_bucket_rejects_a_negative_margin(margin):
    with pytest.raises(ValueError):
        TokenBucket(3, margin=margin)
