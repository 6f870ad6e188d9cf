"""
Pacing: the per-second rule every Gong call is held to.

Gong allows 3 calls/s per company by default and answers 429 with ``Retry-After`` beyond that.
:class:`Schedule` is the per-second rule (even spacing plus a sliding-window guard), written as a pure
function of a little state so that :class:`~airflow_provider_gong.quota.QuotaLimiter` can run it on
state that every task of a Gong account shares (see :mod:`airflow_provider_gong.quota`). Clocks are
injectable so tests count calls per window without wall time. Whether a failed call may be sent again,
and when, is :mod:`airflow_provider_gong._client.retry`.
"""

from __future__ import annotations

import math
from bisect import bisect_right

WINDOW = 1.0
"""Seconds over which Gong counts calls ("3 calls per second")."""

DEFAULT_MARGIN = 0.008
"""Extra seconds between a call and the one ``ceil(rate)`` calls later, beyond :data:`WINDOW`.

It must cover how much later one call may reach Gong than another, relative to when each was
granted: transit jitter plus the client's own time between grant and send (a few ms on a LAN,
often more over the internet, where no small margin can cover every outlier). It costs at most one
margin per window of ``ceil(rate)`` calls when calls run at the full rate, whatever the rate, so the
long-run rate is at least about ``rate / (1 + margin + late)`` (see :data:`DEFAULT_LATE`): 0.991 of
the limit with the defaults, at 3/s as at 50/s (tests/unit/test_pacing.py checks both with 0-3 ms
oversleep and 0-5 ms transit jitter).

8 ms is the largest margin that keeps 0.99 of the limit. It was 5 ms until calls of mapped tasks in
``dag.test()`` on a loaded 2-CPU machine were measured reaching the stand-in up to 9-18 ms after
their slot (median 1.5-2.4 ms): a call that is slow followed ``ceil(rate)`` calls later by a fast one
is what a strict limiter counts as rate + 1. The hook also opens the connection before taking the
slot (:meth:`~airflow_provider_gong._client.transport.DeadlineAdapter.preconnect`), so a handshake is never
between the two.
"""

DEFAULT_LATE = 0.001
"""How late after its slot a call may still go out as planned, in seconds.

Slots are reserved before the caller sleeps (the state is shared between processes and cannot stay
locked during the sleep), so a sleep that overruns sends the call later than the slot the others
planned around. Up to ``late`` is simply added to the window guard; a caller that wakes later than
that records its real send time instead, or takes a new slot when the old one was already counted on
(:meth:`Schedule.confirm`). 1 ms is well above a Linux sleep's usual overrun (< 0.1 ms), so the extra
write is rare, and costs 0.1 % of the rate.
"""

HISTORY_CAP = 256
"""Most grant times kept per account. Up to this many calls per second the window guard is exact; a
faster limit (only a stand-in runs that fast) bounds the older grants from the even spacing instead
(:meth:`Schedule.reserve`), which keeps the state small whatever the rate."""


class Schedule:
    """
    Allow at most ``rate`` calls per second, spaced evenly, never ``rate`` + 1 in any second.

    Calls are spaced 1/rate apart: Gong counts calls per second, and a burst followed by steady
    traffic could put more than ``rate`` calls into one second and earn a 429.

    Even spacing alone is not enough for a strict sliding-window limiter: call n and call n + rate
    are exactly one second apart, so any jitter that makes the later one arrive a little early puts
    rate + 1 calls into one second. The schedule therefore also remembers when the last ``ceil(rate)``
    calls were granted and holds a call until :data:`WINDOW` + ``margin`` + ``late`` after the call
    ``ceil(rate)`` before it. ``ceil`` because "never rate + 1 calls in a second" means at most
    ``ceil(rate)`` calls for a fractional rate too: 2.5/s evenly spaced (0.4 s) puts 3 calls into
    some seconds, and allowing only ``floor(rate)`` = 2 would cap the long-run rate at 2/s.

    The even schedule advances from the planned slot, so sleeps that overrun do not accumulate; the
    window guard counts from when a call really went out (:meth:`confirm`), so an overrun delays the
    following window instead of eating into the margin.

    It holds no state of its own: :meth:`reserve` and :meth:`confirm` map (state, now) to new state,
    which is what lets a shared store run them inside its own transaction. An infinite rate means
    "do not pace".

    :param rate: calls per second (may be fractional).
    :param margin: see :data:`DEFAULT_MARGIN`; 0 gives the plain even schedule.
    :param late: see :data:`DEFAULT_LATE`.
    """

    def __init__(self, rate: float, *, margin: float = DEFAULT_MARGIN, late: float = DEFAULT_LATE) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 calls per second, got {rate!r}")
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0 seconds, got {margin!r}")
        if not late >= 0:
            raise ValueError(f"late must be >= 0 seconds, got {late!r}")
        self.rate = float(rate)
        self.margin = float(margin)
        self.late = float(late)
        self.paced = math.isfinite(self.rate)
        self.interval = 1.0 / self.rate
        #: calls allowed in any window, and how many grant times are kept to enforce it
        self.depth = math.ceil(self.rate) if self.paced else 0
        self.kept = min(self.depth, HISTORY_CAP)
        #: whether the history holds every grant the guard needs (so a late call can correct its own)
        self.exact = self.paced and self.kept == self.depth
        self.guard = WINDOW + self.margin + self.late
        # Slots further ahead than this cannot come from callers queueing (that would be hundreds of
        # tasks waiting at once): the clock stepped back, and the schedule starts afresh.
        self.stale = max(300.0, 100 * self.interval) if self.paced else 0.0

    def reserve(self, due: float, granted: list[float], now: float) -> tuple[float, float, list[float]]:
        """
        Reserve the next slot at or after ``now``; returns ``(slot, new due, new granted)``.

        :param due: when the next call is due on the even schedule.
        :param granted: the latest grant times, oldest first (not modified).
        """
        if not self.paced:
            return now, due, []
        if due > now + self.stale:
            due, granted = now, []
        # Grants more than a guard ago hold nobody back any more: forget them.
        recent = granted[bisect_right(granted, now - self.guard) :]
        slot = max(now, due)
        if self.kept and len(recent) >= self.kept:
            oldest = recent[-self.kept]
            # With the history capped, the grant ``depth`` calls back is at least (depth - kept)
            # intervals before the oldest kept one: planned slots are never closer than that.
            oldest -= (self.depth - self.kept) * self.interval
            slot = max(slot, oldest + self.guard)
        recent.append(slot)
        return slot, slot + self.interval, recent[-self.kept :] if self.kept else []

    def confirm(self, granted: list[float], slot: float, sent: float) -> list[float] | None:
        """
        Record that the call for ``slot`` really goes out at ``sent`` (later than planned).

        Returns the new grant times, or None when the slot has already been counted on: a call
        ``depth`` later was planned from it (it has left the history), so the caller must give the
        slot up (an unused slot is always safe) and reserve a new one.
        """
        if not self.exact:
            return granted  # a capped history has no exact grant times to correct; see HISTORY_CAP
        if slot not in granted:
            return None
        corrected = [t for t in granted if t != slot]
        corrected.append(max(slot, sent))
        corrected.sort()
        return corrected
