"""Failure -> typed error, by what Gong may have seen: what may be re-sent follows from it."""

from __future__ import annotations

import pytest
import requests
import urllib3.exceptions

from airflow_provider_gong._client.errors import json_or_none, not_json_error, status_error, transport_error
from airflow_provider_gong._client.transport import DeadlineExceeded
from airflow_provider_gong.exceptions import (
    GongConnectionError,
    GongError,
    GongMeetingMayExistError,
    GongNotFoundError,
    GongRateLimitError,
    GongServerError,
    GongValidationError,
)

BASE = "https://gong.test"


def answer(status: int, body: bytes = b"", **headers: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update(headers)
    return response


def status(response: requests.Response, *, idempotent: bool = True, max_retry_wait: float = 60) -> GongError:
    return status_error(response, "POST /v2/meetings", idempotent=idempotent, max_retry_wait=max_retry_wait)


def test_a_429_within_the_cap_is_retried_after_gongs_wait():
    error = status(answer(429, b'{"errors": ["limit"]}', **{"Retry-After": "7"}), idempotent=False)
    assert isinstance(error, GongRateLimitError) and error.retryable and error.retry_after == 7


def test_a_429_beyond_the_cap_fails_now_and_says_why():
    error = status(answer(429, b"{}", **{"Retry-After": "7200"}), max_retry_wait=30)
    assert isinstance(error, GongRateLimitError) and not error.retryable
    assert "max_retry_wait (30 s)" in str(error)


@pytest.mark.parametrize("code", [500, 502, 503])
def test_a_5xx_to_a_create_may_have_created_it(code):
    error = status(answer(code, b'{"requestId": "r-9"}'), idempotent=False)
    assert type(error) is GongMeetingMayExistError and error.request_id == "r-9" and not error.retryable


@pytest.mark.parametrize("code, retryable", [(500, False), (502, True), (503, True), (504, True)])
def test_only_gateway_errors_are_retried_for_idempotent_calls(code, retryable):
    error = status(answer(code, b"{}"))
    assert isinstance(error, GongServerError) and error.retryable is retryable


def test_a_4xx_keeps_gongs_fields():
    error = status(answer(404, b'{"requestId": "r-4", "errors": ["no user"]}'), idempotent=False)
    assert isinstance(error, GongNotFoundError) and (error.request_id, error.errors) == ("r-4", ["no user"])


def _refused() -> requests.ConnectionError:
    reason = urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", reason))  # type: ignore[arg-type]


@pytest.mark.parametrize("exc", [requests.ConnectTimeout(), _refused()])
def test_a_connection_that_never_opened_may_be_retried_even_for_a_create(exc):
    error = transport_error(exc, "POST /v2/meetings", idempotent=False, base_url=BASE, deadline=40)
    assert isinstance(error, GongConnectionError) and error.retryable and BASE in str(error)


@pytest.mark.parametrize(
    "exc", [requests.ReadTimeout(), requests.ConnectionError("reset"), RuntimeError("?"), DeadlineExceeded()]
)
def test_anything_else_after_a_create_may_have_created_it(exc):
    error = transport_error(exc, "POST /v2/meetings", idempotent=False, base_url=BASE, deadline=40)
    assert type(error) is GongMeetingMayExistError


def test_a_blown_deadline_is_named_and_retried_when_idempotent():
    error = transport_error(DeadlineExceeded(), "GET /v2/users", idempotent=True, base_url=BASE, deadline=1.5)
    assert isinstance(error, GongConnectionError) and error.retryable
    assert "within the 1.5 s deadline" in str(error)


def test_an_unknown_failure_of_an_idempotent_call_is_not_retried():
    error = transport_error(RuntimeError("?"), "GET /v2/users", idempotent=True, base_url=BASE, deadline=1)
    assert isinstance(error, GongConnectionError) and not error.retryable


def test_a_header_error_never_copies_requests_text():
    exc = requests.exceptions.InvalidHeader("Invalid header value b'Bearer s3cret\\n'")
    error = transport_error(exc, "GET /v2/users", idempotent=True, base_url=BASE, deadline=1)
    assert isinstance(error, GongValidationError) and "s3cret" not in str(error)


def test_bodies_empty_json_and_not_json():
    assert json_or_none(answer(200)) == {}
    assert json_or_none(answer(200, b'{"a": 1}')) == {"a": 1}
    assert json_or_none(answer(200, b"<html>")) is None


def test_a_body_that_is_not_json_points_at_the_host():
    assert type(not_json_error(200, "GET /v2/users", idempotent=True, base_url=BASE)) is GongError
    error = not_json_error(201, "POST /v2/meetings", idempotent=False, base_url=BASE)
    assert isinstance(error, GongMeetingMayExistError) and "probably not Gong's API" in str(error)
