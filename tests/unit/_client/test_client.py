"""The client's send step: one quota slot per attempt (a retry too), taken from an injectable limiter;
a spent daily budget is waited out only when it resets within max_retry_wait."""

from __future__ import annotations

import datetime
from types import SimpleNamespace

import pytest

from airflow_provider_gong._client.client import GongClient
from airflow_provider_gong._client.settings import settings_from_connection
from airflow_provider_gong.exceptions import GongQuotaExhaustedError
from airflow_provider_gong.quota import Grant

BASE = "https://gong.test"


class Limiter:
    """Grants every slot at once, or raises the errors it was given first."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.taken = 0

    def take(self) -> Grant:
        if self.errors:
            raise self.errors.pop(0)
        self.taken += 1
        return Grant(0.0, 0.0, 0.0)

    def sent(self, grant: Grant, at: float) -> None:
        pass


def client(limiter: Limiter, **extra: object) -> tuple[GongClient, list[float]]:
    conn = SimpleNamespace(
        host=BASE, schema=None, port=None, login="key-1", password="secret-1", extra_dejson=extra
    )
    settings = settings_from_connection(conn, {})
    slept: list[float] = []
    gong = GongClient(settings, sleep=slept.append)
    gong.limiter = limiter  # type: ignore[assignment]
    return gong, slept


def exhausted(seconds: float) -> GongQuotaExhaustedError:
    resume = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return GongQuotaExhaustedError("spent", retry_after=seconds, resume_at=resume)


def test_every_attempt_takes_a_slot_of_its_own(requests_mock):
    requests_mock.get(f"{BASE}/v2/users", [{"status_code": 503, "json": {}}, {"json": {"users": []}}])
    limiter = Limiter()
    gong, slept = client(limiter)
    assert gong.request("get", "/v2/users") == {"users": []}
    assert (limiter.taken, gong.calls, len(slept)) == (2, 2, 1)


def test_a_budget_that_resets_within_max_retry_wait_is_waited_out(requests_mock):
    requests_mock.post(f"{BASE}/v2/meetings", json={"meetingId": "1"})
    gong, slept = client(Limiter(exhausted(3)), max_retry_wait=5)
    assert gong.request("POST", "/v2/meetings", json={}, idempotent=False) == {"meetingId": "1"}
    assert slept == [3] and requests_mock.call_count == 1


def test_a_budget_that_resets_later_fails_at_once_without_a_call(requests_mock):
    gong, slept = client(Limiter(exhausted(3600)), max_retry_wait=5)
    with pytest.raises(GongQuotaExhaustedError) as info:
        gong.request("GET", "/v2/users")
    assert not info.value.retryable and slept == [] and requests_mock.call_count == 0 and gong.calls == 0


def test_the_session_authenticates_and_close_opens_a_new_one(requests_mock):
    requests_mock.get(f"{BASE}/v2/users", json={})
    gong, _ = client(Limiter())
    first = gong.session
    gong.request("GET", "/v2/users")
    assert requests_mock.last_request.headers["Authorization"].startswith("Basic ")
    gong.close()
    assert gong.session is not first
