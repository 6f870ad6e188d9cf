from __future__ import annotations

import base64
import json
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from airflow_provider_gong._client.settings import normalise_base_url
from airflow_provider_gong._compat import AirflowFailException
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
from airflow_provider_gong.hooks.gong import GongHook
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
    quota = "daily_quota quota_backend quota_dir quota_conn_id"
    nulls = dict.fromkeys([*names.split(), "max_attempts", *quota.split()])
    hook = make_hook(monkeypatch, extra={**nulls, "timeout": ""})
    requests_mock.get(f"{BASE}/v2/users", json={"users": []})
    hook.request("GET", "/v2/users")
    settings = hook.settings
    assert (settings.auth_type, settings.timeout, settings.max_retry_wait) == ("basic", 30.0, 60.0)
    assert (settings.max_attempts, settings.total_deadline) == (5, 40.0)
    assert (settings.daily_quota, settings.quota_backend, settings.quota_conn_id) == (10_000, "local", None)


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


# -- the environment: proxies, CA bundle, netrc (issue 9) -------------------------------------------
# requests reads these on every call; the hook reads them once per session, for the Gong host. These
# tests pin that what requests would have done still happens.

_PROXY_AND_CA_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE")


@pytest.fixture
def bare_env(monkeypatch, tmp_path):
    """No proxy, CA bundle or netrc from the machine running the tests."""
    for name in (*_PROXY_AND_CA_VARIABLES, "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-such-netrc"))
    return monkeypatch


class _RecordingProxy(socketserver.ThreadingTCPServer):
    """A loopback HTTP proxy that records each request line and refuses to tunnel, so a test can
    see where the hook sent a call without any real network."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.lines: list[str] = []
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.server.lines.append(self.rfile.readline().decode("latin-1").strip())
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@contextmanager
def recording_proxy() -> Iterator[_RecordingProxy]:
    proxy = _RecordingProxy()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_https_proxy_carries_the_call_to_gong(bare_env):
    with recording_proxy() as proxy:
        bare_env.setenv("HTTPS_PROXY", proxy.url)
        hook = make_hook(bare_env, extra={"max_attempts": 1})
        with pytest.raises(GongConnectionError):  # this proxy refuses to tunnel
            hook.request("GET", "/v2/users")
    assert [line.rsplit(" ", 1)[0] for line in proxy.lines] == ["CONNECT us-12345.api.gong.io:443"]


@pytest.mark.parametrize(
    "no_proxy, proxied",
    [
        (None, True),
        ("other.example.com", True),
        ("us-12345.api.gong.io", False),
        ("localhost,.api.gong.io", False),
        ("api.gong.io", False),
        ("*", False),
    ],
)
def test_no_proxy_matching_the_gong_host_bypasses_the_proxy(bare_env, requests_mock, no_proxy, proxied):
    bare_env.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    if no_proxy is not None:
        bare_env.setenv("NO_PROXY", no_proxy)
    hook = make_hook(bare_env)
    requests_mock.get(f"{BASE}/v2/users", json={"users": []})
    hook.request("GET", "/v2/users")
    assert requests_mock.last_request.proxies.get("https") == ("http://proxy.corp:3128" if proxied else None)


def test_no_proxy_really_sends_the_call_past_the_proxy(bare_env):
    import socket

    with socket.socket() as s:  # a port nothing listens on: going direct is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with recording_proxy() as proxy:
        bare_env.setenv("HTTP_PROXY", proxy.url)
        bare_env.setenv("NO_PROXY", "127.0.0.1")
        hook = make_hook(bare_env, host=f"http://127.0.0.1:{port}", extra={"max_attempts": 1})
        with pytest.raises(GongConnectionError, match="could not connect"):
            hook.request("GET", "/v2/users")
    assert proxy.lines == []


@pytest.mark.parametrize(
    "requests_bundle, curl_bundle, expected",
    [
        ("/etc/corp/ca.pem", None, "/etc/corp/ca.pem"),
        (None, "/etc/curl/ca.pem", "/etc/curl/ca.pem"),
        ("/etc/corp/ca.pem", "/etc/curl/ca.pem", "/etc/corp/ca.pem"),
        ("", "/etc/curl/ca.pem", "/etc/curl/ca.pem"),
        (None, None, True),
    ],
)
def test_a_ca_bundle_from_the_environment_verifies_gong(
    bare_env, requests_mock, requests_bundle, curl_bundle, expected
):
    for name, value in (("REQUESTS_CA_BUNDLE", requests_bundle), ("CURL_CA_BUNDLE", curl_bundle)):
        if value is not None:
            bare_env.setenv(name, value)
    hook = make_hook(bare_env)
    requests_mock.get(f"{BASE}/v2/users", json={"users": []})
    hook.request("GET", "/v2/users")
    assert requests_mock.last_request.verify == expected


def test_a_netrc_entry_never_replaces_the_connections_credentials(bare_env, requests_mock, tmp_path):
    # requests lets a netrc entry for the host replace the Authorization header; the Airflow connection
    # is the one source of credentials, so a stray ~/.netrc on a worker must not change who calls Gong.
    netrc = tmp_path / "netrc"
    netrc.write_text("machine us-12345.api.gong.io login netrc-user password netrc-pass\n")
    netrc.chmod(0o600)
    bare_env.setenv("NETRC", str(netrc))
    hook = make_hook(bare_env)
    requests_mock.get(f"{BASE}/v2/users", json={"users": []})
    hook.request("GET", "/v2/users")
    netrc_value = "Basic " + base64.b64encode(b"netrc-user:netrc-pass").decode()
    sent = requests_mock.last_request.headers["Authorization"]
    assert sent != netrc_value and sent == hook.settings.authorization()


def test_the_environment_is_read_once_per_session(bare_env, requests_mock):
    bare_env.setenv("HTTPS_PROXY", "http://proxy-a:3128")
    bare_env.setenv("REQUESTS_CA_BUNDLE", "/etc/a.pem")
    hook = make_hook(bare_env)
    requests_mock.get(f"{BASE}/v2/users", json={"users": []})
    hook.request("GET", "/v2/users")
    bare_env.setenv("HTTPS_PROXY", "http://proxy-b:3128")
    bare_env.setenv("REQUESTS_CA_BUNDLE", "/etc/b.pem")
    hook.request("GET", "/v2/users")
    seen = requests_mock.last_request
    assert (seen.proxies.get("https"), seen.verify) == ("http://proxy-a:3128", "/etc/a.pem")
    hook.close()  # a new session reads the environment again
    hook.request("GET", "/v2/users")
    seen = requests_mock.last_request
    assert (seen.proxies.get("https"), seen.verify) == ("http://proxy-b:3128", "/etc/b.pem")


# -- one retry policy per hook (issue 9) ------------------------------------------------------------


def test_the_retry_policy_is_built_once_per_hook(hook, requests_mock, monkeypatch):
    import airflow_provider_gong._client.client as client_module

    built = []
    original = client_module.retrying

    def counting(**kwargs):
        built.append(kwargs["max_attempts"])
        return original(**kwargs)

    monkeypatch.setattr(client_module, "retrying", counting)
    requests_mock.get(f"{BASE}/v2/users", json={"users": []})
    for _ in range(3):
        hook.request("GET", "/v2/users")
        hook.test_connection()  # max_attempts=1: a policy of its own
    assert sorted(built) == [1, 5]


def test_a_sleep_injected_after_the_first_call_is_used(hook, requests_mock):
    requests_mock.get(
        f"{BASE}/v2/users",
        [
            {"json": {"users": []}},
            {"status_code": 429, "headers": {"Retry-After": "3"}, "json": {"errors": ["limit"]}},
            {"json": {"users": []}},
        ],
    )
    hook.request("GET", "/v2/users")
    later: list[float] = []
    hook.sleep = later.append
    hook.request("GET", "/v2/users")
    assert later == [3.0] and hook.slept == []


def test_one_hook_retries_correctly_from_many_threads(monkeypatch):
    from airflow_provider_gong.testing import GongStandIn

    with GongStandIn() as standin:
        # More attempts than failures: whichever calls the failures land on, every call succeeds.
        monkeypatch.setenv("AIRFLOW_CONN_GONG_THREADS", standin.connection_json(max_attempts=13))
        hook = GongHook("gong_threads", rate_limit_per_second=1000)
        slept: list[float] = []
        hook.sleep = slept.append
        standin.inject("status", status=503, times=12, match="GET /v2/users")
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(5):
                    assert hook.request("GET", "/v2/users")["users"]
            except BaseException as exc:  # reported below, with the thread's own failure
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(slept) == 12  # one wait per injected failure, none lost or doubled across threads
        assert len(standin.log) == 40 + 12


def test_a_short_deadline_armed_after_long_ones_still_fires(monkeypatch):
    from airflow_provider_gong.testing import GongStandIn

    with GongStandIn() as standin:
        monkeypatch.setenv("AIRFLOW_CONN_GONG_LONG", standin.connection_json(deadline=3600))
        monkeypatch.setenv("AIRFLOW_CONN_GONG_SHORT", standin.connection_json(timeout=1, deadline=1))
        long_hook = GongHook("gong_long", rate_limit_per_second=1000)
        for _ in range(3):  # the watchdog now holds hour-long deadlines
            long_hook.request("GET", "/v2/users")
        standin.inject("drip", delay=0.05)  # ~20 s for the whole answer, without a deadline
        with pytest.raises(GongConnectionError, match=r"within the 1 s deadline"):
            GongHook("gong_short", max_attempts=1).request("GET", "/v2/users")


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_a_deadline_that_cuts_the_headers_short_is_never_a_success(monkeypatch, method):
    # At 20 ms a byte the 1 s deadline lands inside the headers; http.client takes the shut-down
    # socket for their end and would hand back an empty "answer".
    from airflow_provider_gong.testing import GongStandIn

    with GongStandIn() as standin:
        monkeypatch.setenv("AIRFLOW_CONN_GONG_CUT", standin.connection_json(timeout=1, deadline=1))
        hook = GongHook("gong_cut", max_attempts=1)
        standin.inject("drip", delay=0.02)
        with pytest.raises(GongConnectionError, match=r"within the 1 s deadline"):
            if method == "GET":
                hook.request("GET", "/v2/users")
            else:
                hook.update_meeting("123", MEETING)
