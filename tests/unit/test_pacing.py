from __future__ import annotations

import json

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
def test_bucket_never_exceeds_rate_in_any_window(rate):
    clock = FakeClock()
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(50):
        bucket.acquire()
        times.append(clock.now)
    assert max_calls_in_any_window(times) == rate
    # and it does not go slower than needed: 50 calls take (50 - 1) / rate seconds
    assert times[-1] - times[0] == pytest.approx(49 / rate)


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
