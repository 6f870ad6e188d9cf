"""
The single retry policy every Gong call goes through, and the two facts it rests on.

Whether a failed call may be sent again is decided where the failure is classified (see
:mod:`.errors`, which marks a :class:`~airflow_provider_gong.exceptions.GongError` ``retryable``); this
module only waits and repeats. What it needs to know about the failure itself: how long Gong asked to
wait (``Retry-After``), and whether the request provably never left the machine. Sleeps are injectable
so tests count waits without wall time.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable

import requests
import urllib3.exceptions
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

log = logging.getLogger(__name__)


def parse_retry_after(value: str | None) -> float | None:
    """Gong sends integer seconds; HTTP also allows a date. Unparseable means "not given"."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def never_sent(exc: requests.RequestException) -> bool:
    """Return True when the request provably did not reach Gong (so even a create may be re-sent)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and exc.args:
        reason = getattr(exc.args[0], "reason", exc.args[0])
        return isinstance(
            reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)
        )
    return False


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
    """
    Return a tenacity policy that retries only errors marked ``retryable``.

    It waits ``retry_after`` when Gong gave one (429), else exponential backoff with jitter; it gives up
    after ``max_attempts`` and re-raises the last typed error.
    """
    return Retrying(
        retry=retry_if_exception(_is_retryable),
        stop=stop_after_attempt(max_attempts),
        wait=_wait(max_wait),
        sleep=sleep,
        before_sleep=_log_retry,
        reraise=True,
    )
