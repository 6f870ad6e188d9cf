"""
Deferral: wait out Gong's quota in the triggerer instead of failing (or holding a worker slot).

Gong's daily quota, once spent, answers 429 with a Retry-After of hours. Failing the task hands the
wait to Airflow's retries, which know nothing of it; sleeping holds a worker slot for hours. A
deferrable task hands the wait to a ``DateTimeTrigger`` and resumes when Gong said it may: the batch
from its ledger (every row once), the single create from scratch (a 429 means nothing was created).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

    from airflow_provider_gong.exceptions import GongRateLimitError

T = TypeVar("T")

#: the shortest deferral: a trigger round trip costs more than waiting a second in the task
MIN_DEFERRAL_SECONDS = 1


def default_deferrable() -> bool:
    """``[operators] default_deferrable``, as Airflow's own deferrable operators default to it."""
    from airflow.configuration import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


def may_defer(exc: GongRateLimitError) -> bool:
    """Gong (or the shared quota) said how long to wait; without that there is nothing to wait for."""
    return exc.retry_after is not None and exc.retry_after > 0


def defer_for_quota(task: BaseOperator, exc: GongRateLimitError, **kwargs: Any) -> NoReturn:
    """Defer ``task`` until Gong's quota allows calls again; it resumes in ``execute_complete``."""
    import pendulum
    from airflow.providers.standard.triggers.temporal import DateTimeTrigger

    wait = max(MIN_DEFERRAL_SECONDS, math.ceil(float(exc.retry_after or 0)))
    moment = pendulum.now("UTC").add(seconds=wait)
    task.log.warning(
        "Gong's quota is spent (%s). Deferring for %d s, until %s: no worker slot is held meanwhile, and "
        "the task resumes where it stopped.",
        exc,
        wait,
        moment.isoformat(),
    )
    task.defer(trigger=DateTimeTrigger(moment=moment), method_name="execute_complete", kwargs=kwargs or None)
    raise AssertionError("defer() returned")  # pragma: no cover - defer always raises TaskDeferred


def call_or_defer(task: BaseOperator, deferrable: bool, call: Callable[[], T]) -> T:
    """
    Run an idempotent Gong call (a PUT, a DELETE), deferring ``task`` when Gong's quota is spent.

    Only when ``deferrable``: ``task`` then waits until the quota allows calls again, and its
    ``execute_complete`` runs ``execute`` again: the 429 changed nothing, and the call may be repeated
    anyway.
    """
    from airflow_provider_gong.exceptions import GongRateLimitError

    try:
        return call()
    except GongRateLimitError as exc:
        if deferrable and may_defer(exc):
            defer_for_quota(task, exc)
        raise
