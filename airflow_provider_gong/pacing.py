"""Pacing and retries: the one policy every Gong call goes through.

Gong allows 3 calls/s per company by default and answers 429 with ``Retry-After`` beyond that. The
hook paces itself with :class:`TokenBucket` so a batch normally never sees a 429, and
:func:`retrying` decides, per failure, whether the same request may be sent again and how long to
wait first. Clock and sleep are injectable so tests count calls per window without wall time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

log = logging.getLogger(__name__)


class TokenBucket:
    """Allow at most ``rate`` acquisitions per second, with bursts of up to ``burst``.

    The default burst of 1 spaces calls evenly (1/rate apart): Gong counts calls per second, and a
    full bucket drained at once followed by steady traffic could put ``burst + rate`` calls into one
    second and earn a 429.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 calls per second, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is free. Returns the seconds slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
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
