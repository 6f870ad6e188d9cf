"""One refresh at Gong's token endpoint: how each answer is read. What matters most is which answers
leave the refresh in doubt (:class:`AnswerLost`: the refresh token may be spent, never re-send it) and
which say it did not happen (a typed error)."""

from __future__ import annotations

import base64
import logging
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from airflow_provider_gong._client.redact import Redactor
from airflow_provider_gong.exceptions import (
    GongAuthError,
    GongConnectionError,
    GongRateLimitError,
    GongValidationError,
)
from airflow_provider_gong.token_endpoint import (
    DEFAULT_LIFETIME,
    AnswerLost,
    GongAuthorizationCodeError,
    GongRefreshTokenError,
    TokenEndpoint,
    masked_forms,
    token_lifetime,
)

URL = "https://app.gong.io/oauth2/generate-customer-token"
REFRESH = "refresh-token/with+odd=chars"


def endpoint() -> TokenEndpoint:
    return TokenEndpoint(
        URL, "client-id", "client-secret-99", redact=Redactor([REFRESH]), timeouts=(1.0, 1.0), deadline=2.0
    )


def test_a_good_answer_is_returned_and_the_request_is_as_gong_documents_it(requests_mock):
    requests_mock.post(URL, json={"access_token": "at-1", "refresh_token": "rt-2", "expires_in": 60})
    assert endpoint().refresh(REFRESH)["access_token"] == "at-1"
    sent = requests_mock.last_request
    assert parse_qs(urlsplit(sent.url).query) == {"grant_type": ["refresh_token"], "refresh_token": [REFRESH]}
    assert (
        sent.headers["Authorization"] == "Basic " + base64.b64encode(b"client-id:client-secret-99").decode()
    )
    assert sent.body is None  # the grant travels in the query string, as Gong documents it


@pytest.mark.parametrize(
    "answer, error, fragment",
    [
        ({"status_code": 200, "json": {"token_type": "bearer"}}, AnswerLost, "held no access token"),
        ({"status_code": 502, "text": "bad gateway"}, AnswerLost, "answered HTTP 502"),
        ({"exc": requests.ReadTimeout("read timed out")}, AnswerLost, "its answer was lost (ReadTimeout)"),
        ({"exc": requests.ConnectTimeout("no route")}, GongConnectionError, "Could not connect"),
        ({"status_code": 302, "headers": {"Location": "/x"}}, GongValidationError, "answered a redirect"),
        (
            {"status_code": 401, "json": {"error": "invalid_client"}},
            GongAuthError,
            "rejected the OAuth client",
        ),
        ({"status_code": 418, "json": {"error": "teapot"}}, GongAuthError, "HTTP 418, teapot"),
    ],
)
def test_each_answer_is_read_into_doubt_or_a_typed_error(requests_mock, answer, error, fragment):
    requests_mock.post(URL, **answer)
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        endpoint().refresh(REFRESH)


def test_invalid_grant_is_permanent_and_gongs_echo_is_redacted(requests_mock):
    requests_mock.post(
        URL, status_code=400, json={"error": "invalid_grant", "error_description": f"token {REFRESH} used"}
    )
    with pytest.raises(GongRefreshTokenError, match=r"Gong says: token \*\*\* used") as caught:
        endpoint().refresh(REFRESH)
    assert REFRESH not in str(caught.value) and caught.value.status == 400


def test_a_429_is_retryable_after_the_given_seconds(requests_mock):
    requests_mock.post(URL, status_code=429, headers={"Retry-After": "7"}, json={})
    with pytest.raises(GongRateLimitError) as caught:
        endpoint().refresh(REFRESH)
    assert caught.value.retry_after == 7.0 and caught.value.retryable


@pytest.mark.parametrize(
    "expires_in, seconds",
    [(60, 60.0), ("120", 120.0), (None, DEFAULT_LIFETIME), ("soon", DEFAULT_LIFETIME), (0, DEFAULT_LIFETIME)],
)
def test_the_lifetime_of_an_answer(expires_in, seconds):
    assert token_lifetime(expires_in) == seconds


def test_masked_forms_cover_the_query_string_encoding():
    assert masked_forms("a/b+c=d e") == ["a/b+c=d e", "a%2Fb%2Bc%3Dd%20e", "a%2Fb%2Bc%3Dd+e"]


def test_urllib3_debug_lines_hide_query_secrets(caplog):
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        logging.getLogger("urllib3.connectionpool").debug(
            '"POST /oauth2/x?grant_type=refresh_token&refresh_token=%s HTTP/1.1" 200', "SECRET123"
        )
    assert "SECRET123" not in caplog.text and "refresh_token=***" in caplog.text


# -- the authorization-code grant (python -m airflow_provider_gong.oauth_setup exchange) -------------------

CODE = "auth-code/with+odd=chars"
REDIRECT = "https://airflow.example.com/callback"


def test_a_code_exchange_is_sent_as_gong_documents_it(requests_mock):
    requests_mock.post(URL, json={"access_token": "at-1", "refresh_token": "rt-1", "expires_in": 60})
    assert endpoint().exchange_code(CODE, REDIRECT)["refresh_token"] == "rt-1"
    sent = requests_mock.last_request
    assert parse_qs(urlsplit(sent.url).query) == {
        "grant_type": ["authorization_code"],
        "code": [CODE],
        "client_id": ["client-id"],
        "redirect_uri": [REDIRECT],
    }
    assert (
        sent.headers["Authorization"] == "Basic " + base64.b64encode(b"client-id:client-secret-99").decode()
    )
    assert sent.body is None


def test_an_exchange_refused_with_invalid_grant_says_the_code_is_spent_or_the_redirect_differs(requests_mock):
    requests_mock.post(
        URL, status_code=400, json={"error": "invalid_grant", "error_description": f"code {CODE}"}
    )
    with pytest.raises(GongAuthorizationCodeError) as caught:  # the endpoint learns the code it sends
        endpoint().exchange_code(CODE, REDIRECT)
    message = str(caught.value)
    assert "authorization code" in message and "redirect_uri" in message and "refresh token" not in message
    assert CODE not in message and "Gong says: code ***" in message
    assert not isinstance(caught.value, GongRefreshTokenError)


@pytest.mark.parametrize(
    "answer, error, fragment",
    [
        (
            {"status_code": 401, "json": {"error": "invalid_client"}},
            GongAuthError,
            "rejected the OAuth client",
        ),
        ({"status_code": 418, "json": {}}, GongAuthError, "refused the exchange of the authorization code"),
        ({"status_code": 200, "json": {"access_token": "at"}}, AnswerLost, "held no refresh token"),
        ({"status_code": 429, "json": {}}, GongRateLimitError, "the exchange of the authorization code was"),
    ],
)
def test_other_exchange_answers_name_the_exchange(requests_mock, answer, error, fragment):
    requests_mock.post(URL, **answer)
    with pytest.raises(error, match=fragment):
        endpoint().exchange_code(CODE, REDIRECT)
