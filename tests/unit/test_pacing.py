from __future__ import annotations

import json
import math
import random
import threading
import time

import pytest

from airflow_provider_gong.hooks.gong import GongHook
from airflow_provider_gong.pacing import DEFAULT_LATE, DEFAULT_MARGIN, Schedule
from airflow_provider_gong.quota import MemoryStore, QuotaLimiter
from airflow_provider_gong.testing.standin import max_in_sliding_window


class FakeClock:
    """Time that only moves when someone sleeps (or the test advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def paced(rate: float, clock, sleep=None, **kwargs) -> QuotaLimiter:
    """The limiter every Gong call goes through, on a store of its own and the given clock."""
    return QuotaLimiter(
        MemoryStore(clock=clock), "acct", rate, clock=clock, sleep=sleep or clock.sleep, **kwargs
    )


def guard(limiter: QuotaLimiter) -> float:
    """Seconds between a call and the one ``ceil(rate)`` later, at the least."""
    return limiter.schedule.guard


def max_calls_in_any_window(times: list[float], window: float = 1.0) -> int:
    """Largest number of calls inside any half-open window [t, t + window)."""
    return max(sum(1 for u in times if t <= u < t + window - 1e-9) for t in times)


@pytest.mark.parametrize("rate", [1, 3, 10])
@pytest.mark.parametrize("margin", [0.0, None])
def test_bucket_never_exceeds_rate_in_any_window(rate, margin):
    clock = FakeClock()
    options = {} if margin is None else {"margin": margin, "late": margin}
    limiter = paced(rate, clock, **options)
    times = []
    for _ in range(50):
        limiter.acquire()
        times.append(clock.now)
    assert max_calls_in_any_window(times) == rate
    # and it does not go slower than needed: 50 calls take (50 - 1) / rate seconds, plus at most the
    # margin (and the late allowance) once per second, which keep server-seen windows safe from jitter
    if margin == 0:
        assert times[-1] - times[0] == pytest.approx(49 / rate)
    else:
        assert 49 / rate <= times[-1] - times[0] <= 49 / rate * guard(limiter) + 1e-9


def test_an_idle_period_earns_no_burst():
    """Calls are spaced evenly after a long pause too: a burst followed by steady traffic could put
    more than ``rate`` calls into one second."""
    clock = FakeClock()
    limiter = paced(2, clock)
    limiter.acquire()
    clock.now += 60  # a long idle period
    waits = [limiter.acquire() for _ in range(4)]
    assert waits[0] == 0
    assert waits[1] == pytest.approx(0.5)
    assert min(waits[1:]) >= 0.5 - 1e-9  # (the 3rd also waits for the window guard)


@pytest.mark.parametrize("rate", [0, -1, float("nan")])
def test_limiter_rejects_nonsense(rate):
    with pytest.raises(ValueError):
        Schedule(rate)


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
    hook.limiter = paced(hook.settings.rate_limit_per_second, clock)
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

    oversleep_max = 0.003

    def __init__(self, rng: random.Random, oversleep: float = oversleep_max) -> None:
        super().__init__()
        self.rng = rng
        self.oversleep = oversleep

    def sleep(self, seconds: float) -> None:
        self.now += seconds + self.rng.uniform(0.0, self.oversleep)


def run_with_jitter(
    rate: float, calls: int, *, seed: int = 7, transit: float = 0.005, **kwargs
) -> list[float]:
    """``calls`` acquisitions on a jittery clock; returns the times a server would see each call:
    the grant time (the moment before sending) plus a random 0 to ``transit`` seconds in flight."""
    rng = random.Random(seed)
    clock = JitteryClock(rng)
    limiter = paced(rate, clock, **kwargs)
    seen = []
    for _ in range(calls):
        limiter.acquire()
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
    assert max_in_sliding_window(run_with_jitter(rate, 2000, margin=0.0, late=0.0)) == rate + 1


@pytest.mark.parametrize("rate", [3, 50])
def test_window_guard_costs_no_more_than_its_margin_and_the_oversleep(rate):
    """Each window of ceil(rate) calls is stretched by the margin, the late allowance and at most
    one oversleep (a late wake records its real time): 0.988 of the limit with 3 ms oversleeps."""
    seen = sorted(run_with_jitter(rate, 2000))
    achieved = (len(seen) - 1) / (seen[-1] - seen[0])
    assert achieved >= rate / (1.0 + DEFAULT_MARGIN + DEFAULT_LATE + JitteryClock.oversleep_max)
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
    """Without jitter the default limiter is the even schedule stretched by at most the margin (and
    the late allowance) per second: within 1% of ideal, and never faster."""
    clock = FakeClock()
    limiter = paced(rate, clock)
    times = []
    for _ in range(500):
        limiter.acquire()
        times.append(clock.now)
    ideal = 499 / rate
    assert ideal - 1e-9 <= times[-1] - times[0] <= ideal * guard(limiter) + 1e-9
    assert guard(limiter) <= 1.01
    assert max_in_sliding_window(times) == math.ceil(rate)


def test_the_send_time_is_taken_after_the_sleep():
    """The guard measures from when a call really went out: the 2nd call's sleep overran by 50 ms,
    so it records its real send time, and the 4th (two calls later at 2/s) leaves window + margin +
    late after it. The even schedule is not shifted by the overrun: the 3rd call is held only by the
    window guard."""
    clock = FakeClock()
    sleeps = []

    def sleep(seconds: float) -> None:
        clock.now += seconds + (0.05 if not sleeps else 0.0)
        sleeps.append(seconds)

    limiter = paced(2, clock, sleep)
    times = []
    for _ in range(4):
        limiter.acquire()
        times.append(clock.now)
    assert times[1] - times[0] == pytest.approx(0.55)  # the overrun sleep
    assert times[2] - times[0] == pytest.approx(guard(limiter))
    assert times[3] - times[1] == pytest.approx(guard(limiter))


def test_a_call_written_out_late_holds_back_the_call_a_window_later():
    """The slot came on time, but the request left 20 ms later (a process starved of CPU between
    its slot and the write): the call two later at 2/s is held a guard after the real send, not
    after the slot, so a server still never sees 3 calls in one second."""
    clock = FakeClock()
    limiter = paced(2, clock)
    first = limiter.take()
    limiter.sent(first, first.local + 0.020)
    limiter.take()
    third = limiter.take()
    assert third.local - first.local == pytest.approx(0.020 + guard(limiter))


def test_a_call_written_out_within_the_late_allowance_changes_nothing():
    clock = FakeClock()
    limiter = paced(2, clock)
    first = limiter.take()
    limiter.sent(first, first.local + limiter.schedule.late / 2)
    limiter.take()
    third = limiter.take()
    assert third.local - first.local == pytest.approx(guard(limiter))


def test_recording_a_late_send_never_fails_the_call(caplog):
    """The call has been made: a store that fails now must not turn its answer into an error."""
    clock = FakeClock()
    limiter = paced(2, clock)
    first = limiter.take()

    def broken(account, change, labels=()):
        raise OSError("disk full")

    limiter.store.transact = broken
    limiter.sent(first, first.local + 0.5)
    assert "could not be recorded" in caplog.text


def test_a_late_call_whose_slot_was_already_planned_from_takes_a_new_one():
    """At 1/s each slot is planned from the one before. A overslept by 2 s, and meanwhile B (another
    process on the same store) took the next slot, planned from A's: A must not go out now, closer
    than a second to B. It leaves its slot unused, takes the one after B's, and counts once."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    b = QuotaLimiter(store, "acct", 1, clock=clock, sleep=clock.sleep)
    overslept = []

    def sleep_and_let_b_in(seconds: float) -> None:
        if not overslept:
            overslept.append(seconds)
            clock.now += seconds + 2.0
            b.acquire()
            overslept.append(clock.now)  # B's send time
        else:
            clock.now += seconds

    a = QuotaLimiter(store, "acct", 1, clock=clock, sleep=sleep_and_let_b_in)
    a.acquire()  # the first slot is now: no sleep
    a.acquire()
    b_sent = overslept[1]
    assert clock.now - b_sent == pytest.approx(guard(a))
    assert a.usage() == (3, 10_000)


def test_confirm_replaces_the_planned_time_only_while_no_call_was_planned_from_it():
    schedule = Schedule(2)
    slot, due, granted = schedule.reserve(0.0, [], 100.0)
    assert schedule.confirm(granted, slot, 100.2) == [100.2]
    _, due, granted = schedule.reserve(due, granted, 100.0)
    _, _, later = schedule.reserve(due, granted, 100.0)  # planned from the first slot
    assert slot not in later and schedule.confirm(later, slot, 100.2) is None


def test_a_capped_history_still_never_exceeds_the_rate():
    """Beyond HISTORY_CAP calls/s the oldest grant times are inferred from the even spacing."""
    clock = FakeClock()
    limiter = paced(600, clock)
    times = []
    for _ in range(2000):
        limiter.acquire()
        times.append(clock.now)
    assert max_in_sliding_window(times) <= 600
    assert (len(times) - 1) / (times[-1] - times[0]) >= 0.98 * 600


def test_a_clock_that_stepped_back_restarts_the_schedule():
    clock = FakeClock()
    limiter = paced(3, clock)
    limiter.acquire()
    clock.now -= 3600  # NTP stepped the wall clock back an hour: the stored slots are "ahead"
    assert limiter.acquire() == 0.0


def test_limiter_is_safe_to_share_between_threads():
    """Four threads share one limiter (real clock, 100/s): every call is granted once, and the 101st
    grant still waited for the window to pass the 1st (the shared history is consistent)."""
    limiter = QuotaLimiter(MemoryStore(), "acct", 100)
    granted: list[float] = []

    def worker() -> None:
        for _ in range(30):
            limiter.acquire()
            granted.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 120
    assert max(granted) - started >= 1.0 + limiter.schedule.margin


def test_an_infinite_rate_does_not_pace():
    clock = FakeClock()
    limiter = paced(float("inf"), clock)
    assert [limiter.acquire() for _ in range(5)] == [0.0] * 5
    assert limiter.usage() == (5, 10_000)  # but still counts against the day


@pytest.mark.parametrize("option", ["margin", "late"])
@pytest.mark.parametrize("value", [-0.001, float("nan")])
def test_limiter_rejects_a_negative_margin(option, value):
    with pytest.raises(ValueError):
        Schedule(3, **{option: value})
