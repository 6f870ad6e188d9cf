"""What the one request path sends to Airflow's Stats: every attempt by endpoint and status class, each
429, and every wait for the quota (tests/unit/test_metrics.py covers the names themselves)."""

from __future__ import annotations

import pytest
import requests

from airflow_provider_gong.exceptions import (
    GongConnectionError,
    GongNotFoundError,
    GongRateLimitError,
    GongServerError,
)
from airflow_provider_gong.quota import Grant
from tests.unit._client.test_client import BASE, Limiter, client


class SlowLimiter(Limiter):
    """Every slot comes after ``wait`` seconds (reported, not slept)."""

    def __init__(self, wait: float) -> None:
        super().__init__()
        self.wait = wait

    def take(self) -> Grant:
        self.taken += 1
        return Grant(0.0, 0.0, self.wait)


def test_a_created_meeting_counts_one_2xx_create(requests_mock, metrics):
    requests_mock.post(f"{BASE}/v2/meetings", status_code=201, json={"meetingId": "1"})
    gong, _ = client(Limiter())
    gong.request("POST", "/v2/meetings", json={}, idempotent=False)
    assert metrics.counters() == {"gong.calls.meetings_create.2xx": 1}


def test_a_4xx_is_counted_once_it_is_not_retried(requests_mock, metrics):
    requests_mock.put(f"{BASE}/v2/meetings/7", status_code=404, json={"errors": ["no such meeting"]})
    gong, _ = client(Limiter())
    with pytest.raises(GongNotFoundError):
        gong.request("PUT", "/v2/meetings/7", json={})
    assert metrics.counters() == {"gong.calls.meetings_update.4xx": 1}


def test_each_5xx_attempt_is_counted(requests_mock, metrics):
    requests_mock.get(f"{BASE}/v2/users", status_code=503, json={})
    gong, _ = client(Limiter(), max_attempts=3)
    with pytest.raises(GongServerError):
        gong.request("GET", "/v2/users")
    assert metrics.counters() == {"gong.calls.users.5xx": 3}


def test_a_429_counts_as_4xx_and_as_rate_limited(requests_mock, metrics):
    requests_mock.delete(
        f"{BASE}/v2/meetings/7",
        [{"status_code": 429, "headers": {"Retry-After": "1"}, "json": {}}, {"status_code": 200, "json": {}}],
    )
    gong, slept = client(Limiter())
    gong.request("DELETE", "/v2/meetings/7", json={})
    assert slept == [1]
    assert metrics.counters() == {
        "gong.calls.meetings_delete.4xx": 1,
        "gong.rate_limited": 1,
        "gong.calls.meetings_delete.2xx": 1,
    }
    limited = [s for s in metrics.samples if s.name == "gong.rate_limited"]
    assert limited[0].tags["endpoint"] == "meetings_delete"


def test_a_429_on_every_attempt_is_counted_every_time(requests_mock, metrics):
    requests_mock.post(
        f"{BASE}/v2/meetings/integration/status", status_code=429, headers={"Retry-After": "0"}, json={}
    )
    gong, _ = client(Limiter(), max_attempts=2)
    with pytest.raises(GongRateLimitError):
        gong.request("POST", "/v2/meetings/integration/status", json={"emails": []})
    assert metrics.counters() == {"gong.calls.integration_status.4xx": 2, "gong.rate_limited": 2}


def test_a_network_error_counts_as_error(requests_mock, metrics):
    requests_mock.get(f"{BASE}/v2/users", exc=requests.ConnectionError("connection refused"))
    gong, _ = client(Limiter(), max_attempts=1)
    with pytest.raises(GongConnectionError):
        gong.request("GET", "/v2/users")
    assert metrics.counters() == {"gong.calls.users.error": 1}


def test_every_slot_reports_its_quota_wait(requests_mock, metrics):
    requests_mock.get(f"{BASE}/v2/users", json={})
    gong, _ = client(SlowLimiter(0.4))
    gong.request("GET", "/v2/users")
    waits = [s for s in metrics.samples if s.kind == "ms"]
    assert [(s.name, s.value) for s in waits] == [("gong.quota.wait", pytest.approx(400.0))]


def test_a_broken_metrics_backend_does_not_break_the_call(requests_mock, monkeypatch):
    from airflow_provider_gong import metrics as module

    def broken():
        raise RuntimeError("statsd host unknown")

    monkeypatch.setattr(module, "_stats", broken)
    requests_mock.post(f"{BASE}/v2/meetings", json={"meetingId": "1"})
    gong, _ = client(Limiter())
    assert gong.request("POST", "/v2/meetings", json={}, idempotent=False) == {"meetingId": "1"}
