"""The one retry policy: only what is marked retryable, Gong's wait when it gave one, a bounded count."""

from __future__ import annotations

import email.utils
import time

import pytest
import requests
import urllib3.exceptions

from airflow_provider_gong._client.retry import never_sent, parse_retry_after, retrying
from airflow_provider_gong.exceptions import GongError, GongRateLimitError


@pytest.mark.parametrize("value, expected", [("2", 2.0), ("0.5", 0.5), ("-3", 0.0), ("", None), (None, None)])
def test_retry_after_seconds(value, expected):
    assert parse_retry_after(value) == expected


def test_retry_after_as_an_http_date():
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 115 <= (parse_retry_after(when) or 0) <= 120
    assert parse_retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0
    assert parse_retry_after("soon") is None


def test_never_sent_is_only_a_connection_that_never_opened():
    refused = urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]
    assert never_sent(requests.ConnectTimeout())
    assert never_sent(requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", refused)))  # type: ignore[arg-type]
    assert not never_sent(requests.ReadTimeout())
    assert not never_sent(requests.ConnectionError("connection reset"))


def failing(errors: list[BaseException]):
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "ok"

    return call, calls


def test_gongs_wait_is_used_and_capped():
    slept: list[float] = []
    call, calls = failing(
        [
            GongRateLimitError("a", retry_after=2, retryable=True),
            GongRateLimitError("b", retry_after=99, retryable=True),
        ]
    )
    assert retrying(max_attempts=5, max_wait=10, sleep=slept.append)(call) == "ok"
    assert slept == [2.0, 10.0] and len(calls) == 3


def test_without_a_wait_it_backs_off_and_gives_up_after_max_attempts():
    slept: list[float] = []
    call, calls = failing([GongError(str(i), retryable=True) for i in range(5)])
    with pytest.raises(GongError, match="2"):
        retrying(max_attempts=3, max_wait=4, sleep=slept.append)(call)
    assert len(calls) == 3 and len(slept) == 2 and all(0 < s <= 4 for s in slept)


def test_an_error_not_marked_retryable_is_raised_at_once():
    slept: list[float] = []
    call, calls = failing([GongError("permanent")])
    with pytest.raises(GongError, match="permanent"):
        retrying(max_attempts=5, max_wait=4, sleep=slept.append)(call)
    assert len(calls) == 1 and slept == []
