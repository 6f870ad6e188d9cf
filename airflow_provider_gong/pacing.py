"""Pacing and retries: the one policy every Gong call goes through.

Gong allows 3 calls/s per company by default and answers 429 with ``Retry-After`` beyond that. The
hook paces itself with :class:`TokenBucket` so a batch normally never sees a 429, and
:func:`retrying` decides, per failure, whether the same request may be sent again and how long to
wait first. Clock and sleep are injectable so tests count calls per window without wall time.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

log = logging.getLogger(__name__)

WINDOW = 1.0
"""Seconds over which Gong counts calls ("3 calls per second")."""

DEFAULT_MARGIN = 0.005
"""Extra seconds between a call and the one ``ceil(rate)`` calls later, beyond :data:`WINDOW`.

It must cover how much later one call may reach Gong than another, relative to when each was
granted: transit jitter plus the client's own time between grant and send (a few ms on a LAN,
often more over the internet, where no small margin can cover every outlier). It costs at most one
margin per window of ``ceil(rate)`` calls when calls run at the full rate, whatever the rate, so the
long-run rate is at least about ``rate / (1 + margin + oversleep)``, where oversleep is how far
``sleep`` overruns (well under 1 ms on Linux, a few ms on a busy host). Keeping >= 0.99 of the limit
needs ``margin + oversleep <= 10 ms``; 5 ms leaves half of that for oversleep, at 3/s as at 50/s
(tests/unit/test_pacing.py checks both with 0-3 ms oversleep and 0-5 ms transit jitter).
"""


class TokenBucket:
    """Allow at most ``rate`` acquisitions per second, with bursts of up to ``burst``.

    The default burst of 1 spaces calls evenly (1/rate apart): Gong counts calls per second, and a
    full bucket drained at once followed by steady traffic could put ``burst + rate`` calls into one
    second and earn a 429.

    Even spacing alone is not enough for a strict sliding-window limiter: call n and call n + rate
    are exactly one second apart, so any jitter that makes the later one arrive a little early puts
    rate + 1 calls into one second. With burst 1 the bucket therefore also remembers when the last
    ``ceil(rate)`` calls were granted and holds a call until :data:`WINDOW` + ``margin`` after the
    call ``ceil(rate)`` before it. ``ceil`` because "never rate + 1 calls in a second" means at most
    ``ceil(rate)`` calls for a fractional rate too: 2.5/s evenly spaced (0.4 s) puts 3 calls into
    some seconds, and allowing only ``floor(rate)`` = 2 would cap the long-run rate at 2/s.

    The grant time is read from the clock after the sleep, the moment before the caller sends, so
    an overrunning sleep delays the following window instead of eating into the margin; the even
    schedule, in contrast, advances from the planned grant time, so overruns do not accumulate.

    ``burst`` > 1 deliberately puts more than ``rate`` calls into a second, which a strict window
    refuses anyway; it is meant for a server that refills a bucket, and the window guard is off.

    Thread-safe: the lock is held across the sleep, so grants are strictly ordered and each one is
    planned from the real send time of the one before. Threads waiting for their turn queue on the
    lock; they would have to wait anyway, as only one call is granted per 1/rate.

    :param rate: calls per second (may be fractional).
    :param burst: calls that may go back to back after an idle period.
    :param clock: monotonic seconds (injectable so tests need no wall time).
    :param sleep: sleeps the given seconds (injectable likewise).
    :param margin: see :data:`DEFAULT_MARGIN`; 0 gives the plain even schedule.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        margin: float = DEFAULT_MARGIN,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 calls per second, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0 seconds, got {margin!r}")
        self.rate = float(rate)
        self.burst = burst
        self.margin = float(margin)
        self._clock = clock
        self._sleep = sleep
        self._interval = 1.0 / self.rate
        # How far ahead of the even schedule a burst may run (0 for burst 1).
        self._tolerance = (burst - 1) * self._interval
        # When the next call is due on the even schedule; a full bucket at start, as before.
        self._due = clock()
        # Grant times of the last ceil(rate) calls (burst 1 only, see the class docstring). An
        # infinite rate means "do not pace", as it always did: nothing to remember then.
        guarded = burst == 1 and math.isfinite(self.rate)
        self._granted: deque[float] | None = deque(maxlen=math.ceil(self.rate)) if guarded else None
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is free. Returns the seconds slept."""
        with self._lock:
            now = self._clock()
            at = max(now, self._due - self._tolerance)
            granted = self._granted
            if granted is not None and len(granted) == granted.maxlen:
                at = max(at, granted[0] + WINDOW + self.margin)
            wait = at - now
            if wait > 0:
                self._sleep(wait)
                now = self._clock()
            else:
                wait = 0.0
            self._due = max(self._due, at) + self._interval
            if granted is not None:
                granted.append(now)
        return wait


def _is_retryable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retryable", False))


def _wait(max_wait: float) -> Callable[[RetryCallState], float]:
    backoff = wait_exponential_jitter(multiplier=0.5, max=max_wait, jitter=0.5)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), max_wait)
        return backoff(state)

    return wait


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("Gong call failed (%s); retrying in %.2f s (attempt %d)", exc, wait, state.attempt_number + 1)


def retrying(*, max_attempts: int, max_wait: float, sleep: Callable[[float], None] = time.sleep) -> Retrying:
    """A tenacity policy: retry only errors the hook marked ``retryable``; wait ``retry_after`` when
    Gong gave one (429), else exponential backoff with jitter; give up after ``max_attempts`` and
    re-raise the last typed error."""
    return Retrying(
        retry=retry_if_exception(_is_retryable),
        stop=stop_after_attempt(max_attempts),
        wait=_wait(max_wait),
        sleep=sleep,
        before_sleep=_log_retry,
        reraise=True,
    )
