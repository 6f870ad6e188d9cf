"""deferral: a spent quota hands the wait to the triggerer only when Gong said how long to wait."""

from __future__ import annotations

import pendulum
import pytest
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseOperator

from airflow_provider_gong.deferral import MIN_DEFERRAL_SECONDS, call_or_defer, defer_for_quota, may_defer
from airflow_provider_gong.exceptions import GongRateLimitError

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # pragma: no cover - older Task SDKs
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]


def task() -> BaseOperator:
    return BaseOperator(task_id="t")


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(None, False), (0, False), (-1, False), (0.5, True), (3600, True)]
)
def test_may_defer_only_with_a_positive_wait(retry_after: float | None, expected: bool) -> None:
    assert may_defer(GongRateLimitError("429", retry_after=retry_after)) is expected


def test_defer_for_quota_sets_a_trigger_at_the_end_of_the_wait() -> None:
    before = pendulum.now("UTC")
    with pytest.raises(TaskDeferred) as deferred:
        defer_for_quota(task(), GongRateLimitError("429", retry_after=90.2), page=3)
    trigger = deferred.value.trigger
    assert isinstance(trigger, DateTimeTrigger)
    # rounded up to whole seconds: resuming a moment early would only meet another 429
    assert 91 <= (trigger.moment - before).total_seconds() < 91 + 5
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.kwargs == {"page": 3}


def test_a_short_wait_is_stretched_to_the_minimum_deferral() -> None:
    before = pendulum.now("UTC")
    with pytest.raises(TaskDeferred) as deferred:
        defer_for_quota(task(), GongRateLimitError("429", retry_after=0.01))
    waited = (deferred.value.trigger.moment - before).total_seconds()
    assert MIN_DEFERRAL_SECONDS <= waited < MIN_DEFERRAL_SECONDS + 5
    assert deferred.value.kwargs is None


def test_call_or_defer_returns_what_the_call_returns() -> None:
    assert call_or_defer(task(), True, lambda: {"ok": 1}) == {"ok": 1}


def test_call_or_defer_defers_a_429_with_a_wait_when_deferrable() -> None:
    def refused() -> None:
        raise GongRateLimitError("429", retry_after=30)

    with pytest.raises(TaskDeferred):
        call_or_defer(task(), True, refused)


@pytest.mark.parametrize(("deferrable", "retry_after"), [(False, 30), (True, None)])
def test_call_or_defer_raises_the_429_when_it_cannot_defer(
    deferrable: bool, retry_after: float | None
) -> None:
    error = GongRateLimitError("429", retry_after=retry_after)

    def refused() -> None:
        raise error

    with pytest.raises(GongRateLimitError) as raised:
        call_or_defer(task(), deferrable, refused)
    assert raised.value is error
