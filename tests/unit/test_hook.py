from __future__ import annotations

import base64
import json

import pytest
import requests
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_gong.exceptions import (
    GongAuthError,
    GongBadRequestError,
    GongConflictError,
    GongConnectionError,
    GongError,
    GongForbiddenError,
    GongLimitedReleaseError,
    GongMeetingMayExistError,
    GongNotFoundError,
    GongRateLimitError,
    GongServerError,
    GongValidationError,
)
from airflow_provider_gong.hooks.gong import GongHook, normalise_base_url
from airflow_provider_gong.meetings import Meeting
from tests.dates import SOON

BASE = "https://us-12345.api.gong.io"
KEY, SECRET, TOKEN = "access-key-1", "access-secret-XYZ", "bearer-token-ABC"
MEETING = Meeting.build(
    start_time=f"{SOON}T15:00:00Z",
    end_time=f"{SOON}T15:30:00Z",
    organizer_email="rep@acme.com",
    invitees=["buyer@client.com"],
    external_id="crm-1",
)
CREATED = {
    "requestId": "req-1",
    "meetingId": "7782342274025937895",
    "meetingUrl": "https://join.gong.io/acme/rep?tkn=abc",
    "additionalInvitees": [{"displayName": "Gong Assistant", "email": "assistant@gong.io"}],
}


def make_hook(monkeypatch, conn_id="gong_unit", **conn) -> GongHook:
    value = {"conn_type": "gong", "host": "us-12345.api.gong.io", "login": KEY, "password": SECRET, **conn}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))
    hook = GongHook(conn_id, rate_limit_per_second=1000)
    hook.slept = []
    hook.sleep = hook.slept.append
    return hook


@pytest.fixture
def hook(monkeypatch):
    return make_hook(monkeypatch)


# -- auth and base URL ------------------------------------------------------------------------------


def test_basic_auth_header_is_rfc7617_without_spaces(hook, requests_mock):
    requests_mock.get(f"{BASE}/v2/users", json={"users": []})
    hook.request("GET", "/v2/users")
    expected = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    assert requests_mock.last_request.headers["Authorization"] == expected


def test_bearer_auth_from_access_token_extra(monkeypatch, requests_mock):
    hook = make_hook(monkeypatch, login=None, password=None, extra={"access_token": TOKEN})
    requests_mock.get(f"{BASE}/v2/users", json={"users": []})
    hook.request("GET", "/v2/users")
    assert hook.settings.auth_type == "bearer"
    assert requests_mock.last_request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_explicit_basic_wins_over_a_stored_token(monkeypatch, requests_mock):
    hook = make_hook(monkeypatch, extra={"access_token": TOKEN, "auth_type": "basic"})
    requests_mock.get(f"{BASE}/v2/users", json={"users": []})
    hook.request("GET", "/v2/users")
    assert requests_mock.last_request.headers["Authorization"].startswith("Basic ")


@pytest.mark.parametrize(
    "conn, fragment",
    [
        ({"login": None, "password": None}, "access key"),
        ({"extra": {"auth_type": "bearer"}}, "no access_token"),
    ],
)
def test_missing_credentials_are_reported_before_any_call(monkeypatch, requests_mock, conn, fragment):
    hook = make_hook(monkeypatch, **conn)
    with pytest.raises(GongValidationError, match=fragment):
        hook.request("GET", "/v2/users")
    assert requests_mock.call_count == 0


def test_uri_form_connection_coerces_string_extras(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_GONG_URI",
        f"gong://{KEY}:{SECRET}@us-12345.api.gong.io/?timeout=12&rate_limit_per_second=2.5",
    )
    settings = GongHook("gong_uri").settings
    assert (settings.base_url, settings.timeout, settings.rate_limit_per_second) == (BASE, 12.0, 2.5)
    assert settings.access_key_secret.get_secret_value() == SECRET


def test_bad_extras_name_the_field_and_hide_the_secret(monkeypatch):
    hook = make_hook(monkeypatch, extra={"timeout": "soon", "auth_type": "oauth-magic"})
    with pytest.raises(GongValidationError) as info:
        hook.settings  # noqa: B018
    assert "timeout" in str(info.value) and "auth_type" in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "host, schema, port, expected",
    [
        (None, None, None, "https://api.gong.io"),
        ("", None, None, "https://api.gong.io"),
        ("api.gong.io", None, None, "https://api.gong.io"),
        ("us-12345.api.gong.io", None, None, "https://us-12345.api.gong.io"),
        ("https://us-12345.api.gong.io/", None, None, "https://us-12345.api.gong.io"),
        ("https://us-12345.api.gong.io/v2/", None, None, "https://us-12345.api.gong.io"),
        ("http://127.0.0.1:8765", None, None, "http://127.0.0.1:8765"),
        ("127.0.0.1", "http", 8765, "http://127.0.0.1:8765"),
        ("localhost", None, 8443, "https://localhost:8443"),
    ],
)
def test_base_url_forms(host, schema, port, expected):
    assert normalise_base_url(host, schema, port) == expected


@pytest.mark.parametrize("host", ["ftp://api.gong.io", "https://", "http:///v2"])
def test_bad_base_url_is_rejected(host):
    with pytest.raises(GongValidationError, match="host"):
        normalise_base_url(host)


def test_every_call_has_a_connect_and_read_timeout(monkeypatch, requests_mock):
    hook = make_hook(monkeypatch, extra={"timeout": 7, "connect_timeout": 2})
    requests_mock.get(f"{BASE}/v2/users", json={"users": []})
    hook.request("GET", "/v2/users")
    assert requests_mock.last_request.timeout == (2.0, 7.0)


# -- status codes -> typed errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, body, error_type, fragments",
    [
        (
            400,
            {"requestId": "r400", "errors": ["startTime is required"]},
            GongBadRequestError,
            ["malformed", "startTime is required", "r400"],
        ),
        (401, {"requestId": "r401", "errors": ["Access denied"]}, GongAuthError, ["credentials", "r401"]),
        (403, {"requestId": "r403", "errors": ["Missing scope"]}, GongForbiddenError, ["scope", "r403"]),
        (
            403,
            {"requestId": "r403b", "errors": ["This API endpoint is in Limited release - contact your CSM"]},
            GongLimitedReleaseError,
            ["limited release", "CSM", "r403b"],
        ),
        (
            404,
            {
                "requestId": "r404",
                "errors": ["No Gong user found corresponding to the provided organizer email"],
            },
            GongNotFoundError,
            ["organizer", "r404"],
        ),
        (
            409,
            {
                "requestId": "r409",
                "errors": ["Conflict"],
                "userFacingError": "The Gong consent page is not enabled",
                "fixUrl": "https://app.gong.io/fix",
            },
            GongConflictError,
            ["consent page is not enabled", "https://app.gong.io/fix", "r409"],
        ),
        (418, None, GongError, ["418"]),
    ],
)
def test_status_maps_to_error_type_and_actionable_message(
    hook, requests_mock, status, body, error_type, fragments
):
    kwargs = {"json": body} if body is not None else {"text": "teapot"}
    requests_mock.put(f"{BASE}/v2/meetings/123", status_code=status, **kwargs)
    with pytest.raises(error_type) as info:
        hook.update_meeting("123", MEETING)
    error = info.value
    assert type(error) is error_type
    for fragment in fragments:
        assert fragment in str(error)
    assert error.status == status
    if body:
        assert error.request_id == body["requestId"]
        assert error.errors == body["errors"]
    assert requests_mock.call_count == 1  # permanent answers are never retried


def test_permanent_errors_fail_without_airflow_retries(hook, requests_mock):
    requests_mock.post(f"{BASE}/v2/meetings", status_code=404, json={"errors": ["no user"]})
    with pytest.raises(AirflowFailException):
        hook.create_meeting(MEETING)


def test_409_carries_user_facing_error_and_fix_url(hook, requests_mock):
    requests_mock.post(
        f"{BASE}/v2/meetings",
        status_code=409,
        json={
            "requestId": "q",
            "errors": ["x"],
            "userFacingError": "Enable consent",
            "fixUrl": "https://fix",
            "helpUrl": "https://help",
        },
    )
    with pytest.raises(GongConflictError) as info:
        hook.create_meeting(MEETING)
    assert (info.value.user_facing_error, info.value.fix_url, info.value.help_url) == (
        "Enable consent",
        "https://fix",
        "https://help",
    )


# -- retries ------------------------------------------------------------------------------------------


def test_429_waits_retry_after_then_succeeds(hook, requests_mock):
    requests_mock.post(
        f"{BASE}/v2/meetings",
        [
            {
                "status_code": 429,
                "headers": {"Retry-After": "2"},
                "json": {"requestId": "a", "errors": ["limit"]},
            },
            {
                "status_code": 429,
                "headers": {"Retry-After": "5"},
                "json": {"requestId": "b", "errors": ["limit"]},
            },
            {"status_code": 200, "json": CREATED},
        ],
    )
    result = hook.create_meeting(MEETING)
    assert result.meeting_id == CREATED["meetingId"]
    assert hook.slept == [2.0, 5.0]
    assert requests_mock.call_count == 3


def test_429_beyond_max_retry_wait_raises_rate_limit_error_at_once(monkeypatch, requests_mock):
    hook = make_hook(monkeypatch, extra={"max_retry_wait": 30})
    requests_mock.post(
        f"{BASE}/v2/meetings",
        status_code=429,
        headers={"Retry-After": "7200"},
        json={"requestId": "q", "errors": []},
    )
    with pytest.raises(GongRateLimitError) as info:
        hook.create_meeting(MEETING)
    assert info.value.retry_after == 7200
    assert "max_retry_wait" in str(info.value)
    assert not isinstance(info.value, AirflowFailException)  # Airflow may retry it later
    assert hook.slept == []
    assert requests_mock.call_count == 1


def test_429_without_retry_after_backs_off_and_gives_up_after_max_attempts(monkeypatch, requests_mock):
    hook = make_hook(monkeypatch, extra={"max_attempts": 3, "max_retry_wait": 10})
    requests_mock.get(f"{BASE}/v2/users", status_code=429, json={"errors": ["limit"]})
    with pytest.raises(GongRateLimitError):
        hook.request("GET", "/v2/users")
    assert requests_mock.call_count == 3
    assert len(hook.slept) == 2 and all(0 < s <= 10 for s in hook.slept)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_create_is_never_resent_after_a_5xx(hook, requests_mock, status):
    requests_mock.post(
        f"{BASE}/v2/meetings", status_code=status, json={"requestId": "r5", "errors": ["boom"]}
    )
    with pytest.raises(GongMeetingMayExistError) as info:
        hook.create_meeting(MEETING)
    assert requests_mock.call_count == 1
    assert "may" in str(info.value) and "r5" in str(info.value)
    assert isinstance(info.value, AirflowFailException)


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ReadTimeout,
        requests.exceptions.ConnectionError,
        requests.exceptions.ChunkedEncodingError,
    ],
)
def test_create_is_never_resent_after_a_lost_answer(hook, requests_mock, exc):
    requests_mock.post(f"{BASE}/v2/meetings", exc=exc)
    with pytest.raises(GongMeetingMayExistError):
        hook.create_meeting(MEETING)
    assert requests_mock.call_count == 1


def test_create_is_resent_when_the_connection_never_opened(hook, requests_mock):
    requests_mock.post(
        f"{BASE}/v2/meetings", [{"exc": requests.exceptions.ConnectTimeout}, {"json": CREATED}]
    )
    assert hook.create_meeting(MEETING).meeting_id == CREATED["meetingId"]
    assert requests_mock.call_count == 2


def test_refused_connection_is_retried_then_reported(monkeypatch):
    # A real refused connection (nothing listens on this port), not a mock.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hook = make_hook(monkeypatch, host=f"http://127.0.0.1:{port}", extra={"max_attempts": 2})
    with pytest.raises(GongConnectionError, match="could not connect"):
        hook.create_meeting(MEETING)
    assert len(hook.slept) == 1


@pytest.mark.parametrize("status", [502, 503, 504])
def test_put_is_retried_on_gateway_errors(hook, requests_mock, status):
    requests_mock.put(
        f"{BASE}/v2/meetings/123",
        [{"status_code": status, "json": {}}, {"json": {"requestId": "r", "meetingId": "123"}}],
    )
    assert hook.update_meeting(123, MEETING) == {"request_id": "r", "meeting_id": "123"}
    assert requests_mock.call_count == 2


def test_put_is_not_retried_on_500_but_airflow_may_retry_it(hook, requests_mock):
    requests_mock.put(f"{BASE}/v2/meetings/123", status_code=500, json={"requestId": "r"})
    with pytest.raises(GongServerError) as info:
        hook.update_meeting("123", MEETING)
    assert requests_mock.call_count == 1
    assert not isinstance(info.value, AirflowFailException)


def test_delete_read_timeout_is_retried(hook, requests_mock):
    requests_mock.delete(f"{BASE}/v2/meetings/9", [{"exc": requests.exceptions.ReadTimeout}, {"json": {}}])
    assert hook.delete_meeting("9", "rep@acme.com") is True
    assert requests_mock.call_count == 2


def test_create_2xx_without_json_is_treated_as_maybe_created(hook, requests_mock):
    requests_mock.post(f"{BASE}/v2/meetings", text="<html>proxy</html>")
    with pytest.raises(GongMeetingMayExistError):
        hook.create_meeting(MEETING)


# -- endpoints ------------------------------------------------------------------------------------------


def test_create_sends_the_payload_and_returns_string_ids(hook, requests_mock):
    requests_mock.post(f"{BASE}/v2/meetings", json={**CREATED, "meetingId": 7782342274025937895})
    result = hook.create_meeting(MEETING)
    assert requests_mock.last_request.json() == MEETING.to_payload()
    assert result.meeting_id == "7782342274025937895"
    assert result.additional_invitees == CREATED["additionalInvitees"]


def test_delete_sends_organizer_in_json_body_and_404_means_gone(hook, requests_mock):
    requests_mock.delete(
        f"{BASE}/v2/meetings/42",
        [{"json": {"organizerEmail": "rep@acme.com"}}, {"status_code": 404, "json": {"errors": ["gone"]}}],
    )
    assert hook.delete_meeting(42, "rep@acme.com") is True
    assert requests_mock.last_request.json() == {"organizerEmail": "rep@acme.com"}
    assert hook.delete_meeting(42, "rep@acme.com") is False


@pytest.mark.parametrize("bad_id", ["abc", "12/../users", "1" * 21, ""])
def test_meeting_id_is_validated_before_it_goes_into_a_path(hook, requests_mock, bad_id):
    with pytest.raises(GongValidationError, match="meeting_id"):
        hook.delete_meeting(bad_id, "rep@acme.com")
    assert requests_mock.call_count == 0


def test_integration_status_batches_at_most_100_distinct_emails(hook, requests_mock):
    emails = [f"user{i}@acme.com" for i in range(250)] + ["user0@acme.com", " ", ""]
    requests_mock.post(
        f"{BASE}/v2/meetings/integration/status",
        json=lambda req, ctx: {
            "users": [{"email": e, "exists": True, "valid": True} for e in req.json()["emails"]]
        },
    )
    users = hook.get_integration_status(emails)
    sizes = [len(r.json()["emails"]) for r in requests_mock.request_history]
    assert sizes == [100, 100, 50]
    assert [u["email"] for u in users] == [f"user{i}@acme.com" for i in range(250)]


def test_test_connection_reports_success_and_failure(hook, requests_mock):
    requests_mock.get(
        f"{BASE}/v2/users",
        [{"json": {"users": [{"id": "1"}]}}, {"status_code": 401, "json": {"errors": ["Access denied"]}}],
    )
    ok, message = hook.test_connection()
    assert ok and BASE in message
    ok, message = hook.test_connection()
    assert not ok and "credentials" in message
    assert SECRET not in message


# -- what Gong may have seen (issue 6) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ContentDecodingError("corrupt gzip"),
        requests.exceptions.ChunkedEncodingError("cut short"),
        requests.exceptions.SSLError("bad record mac"),
        RuntimeError("something nobody foresaw"),
    ],
)
def test_any_failure_after_a_create_may_have_reached_gong_is_may_exist(hook, requests_mock, exc):
    requests_mock.post(f"{BASE}/v2/meetings", exc=exc)
    with pytest.raises(GongMeetingMayExistError):
        hook.create_meeting(MEETING)
    assert requests_mock.call_count == 1  # never re-sent


def test_an_undecodable_answer_to_a_get_is_retried(hook, requests_mock):
    requests_mock.get(
        f"{BASE}/v2/users",
        [{"exc": requests.exceptions.ChunkedEncodingError("cut short")}, {"json": {"users": []}}],
    )
    assert hook.request("GET", "/v2/users") == {"users": []}


@pytest.mark.parametrize(
    "body",
    [[], {"requestId": "r-1"}, {"meetingId": None}, {"meetingId": {"id": 1}}, {"meetingId": True}],
)
def test_a_2xx_without_a_usable_meeting_id_is_may_exist(hook, requests_mock, body):
    requests_mock.post(f"{BASE}/v2/meetings", json=body)
    with pytest.raises(GongMeetingMayExistError):
        hook.create_meeting(MEETING)


def test_an_odd_answer_with_a_meeting_id_keeps_the_id(hook, requests_mock):
    body = {**CREATED, "meetingUrl": 42, "additionalInvitees": ["assistant@gong.io", {"email": "a@gong.io"}]}
    requests_mock.post(f"{BASE}/v2/meetings", json=body)
    result = hook.create_meeting(MEETING)
    assert result.meeting_id == CREATED["meetingId"] and result.meeting_url == ""
    assert result.additional_invitees == [{"email": "a@gong.io"}]


def test_a_token_pasted_with_a_newline_is_stripped(monkeypatch, requests_mock):
    hook = make_hook(monkeypatch, login=None, password=None, extra={"access_token": TOKEN + "\n"})
    requests_mock.get(f"{BASE}/v2/users", json={"users": []})
    hook.request("GET", "/v2/users")
    assert requests_mock.last_request.headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("token", [f"{TOKEN} x", f"{TOKEN}\nX-Evil: 1", f"{TOKEN}é"])
def test_a_token_that_cannot_be_sent_fails_before_any_call_without_showing_it(
    monkeypatch, requests_mock, token
):
    hook = make_hook(monkeypatch, login=None, password=None, extra={"access_token": token})
    with pytest.raises(GongValidationError, match="access_token contains characters") as info:
        hook.get_conn()
    assert TOKEN not in str(info.value)
    assert requests_mock.call_count == 0


def test_a_connection_of_another_type_is_refused(monkeypatch):
    hook = make_hook(monkeypatch, conn_type="http")
    with pytest.raises(GongValidationError, match="type 'http'"):
        hook.get_conn()


def test_a_drip_fed_answer_ends_at_the_deadline(monkeypatch):
    from airflow_provider_gong.testing import GongStandIn

    with GongStandIn() as standin:
        monkeypatch.setenv("AIRFLOW_CONN_GONG_DRIP", standin.connection_json(timeout=1, deadline=1.5))
        standin.inject("drip", delay=0.25)  # every read is quick; the whole answer takes ~80 s
        hook = GongHook("gong_drip", max_attempts=1)
        with pytest.raises(GongConnectionError, match=r"within the 1.5 s deadline"):
            hook.request("GET", "/v2/users")
        standin.inject("drip", delay=0.25)
        with pytest.raises(GongMeetingMayExistError, match="deadline"):
            hook.create_meeting(MEETING)
        assert hook.request("GET", "/v2/users")["users"]  # the session still works afterwards


# -- a connection made in the UI form (issue 12) --------------------------------------------------------


def test_null_extras_as_the_ui_form_saves_them_mean_the_defaults(monkeypatch, requests_mock):
    names = "auth_type access_token timeout connect_timeout deadline rate_limit_per_second max_retry_wait"
    nulls = dict.fromkeys([*names.split(), "max_attempts"])
    hook = make_hook(monkeypatch, extra={**nulls, "timeout": ""})
    requests_mock.get(f"{BASE}/v2/users", json={"users": []})
    hook.request("GET", "/v2/users")
    settings = hook.settings
    assert (settings.auth_type, settings.timeout, settings.max_retry_wait) == ("basic", 30.0, 60.0)
    assert (settings.max_attempts, settings.total_deadline) == (5, 40.0)


@pytest.mark.parametrize("auth_type, expected", [("auto", "Bearer"), (None, "Bearer"), ("basic", "Basic")])
def test_auth_type_auto_picks_bearer_when_a_token_is_set(monkeypatch, requests_mock, auth_type, expected):
    hook = make_hook(monkeypatch, extra={"access_token": TOKEN, "auth_type": auth_type})
    requests_mock.get(f"{BASE}/v2/users", json={"users": []})
    hook.request("GET", "/v2/users")
    assert requests_mock.last_request.headers["Authorization"].startswith(expected)


def test_messages_name_the_host_not_a_throwaway_connection_id(monkeypatch, requests_mock):
    hook = make_hook(monkeypatch, conn_id="f26PtTDS", extra={"timeout": "soon"})
    ok, message = hook.test_connection()
    assert not ok and BASE in message and "f26PtTDS" not in message


def test_a_host_that_answers_html_is_probably_not_gongs_api(hook, requests_mock):
    requests_mock.get(f"{BASE}/v2/users", text="<html>Welcome to nginx</html>")
    ok, message = hook.test_connection()
    assert not ok and "probably not Gong's API" in message and BASE in message
