"""The stand-in itself, over real HTTP: it must behave like Gong or the other tests prove nothing."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

BODY = {
    "startTime": "2025-03-04T15:00:00Z",
    "endTime": "2025-03-04T15:30:00+00:00",
    "organizerEmail": "rep@acme.com",
    "invitees": [{"email": "buyer@client.com"}],
    "externalId": "e1",
}


@pytest.fixture
def api(gong_standin):
    session = requests.Session()
    session.auth = (gong_standin.access_key, gong_standin.access_key_secret)

    def call(method, path, **kw):
        return session.request(method, gong_standin.url + path, timeout=5, **kw)

    return call


def test_create_returns_gongs_shape_with_string_ids(api, gong_standin):
    answer = api("POST", "/v2/meetings", json=BODY)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"requestId", "meetingId", "meetingUrl", "additionalInvitees"}
    assert isinstance(body["meetingId"], str) and int(body["meetingId"]) > 2**53
    assert body["meetingUrl"].startswith("https://join.gong.io/")
    assert gong_standin.created_count("e1") == 1


@pytest.mark.parametrize("auth", [None, ("standin-key", "wrong"), ("wrong", "standin-secret-value")])
def test_requests_without_valid_basic_auth_get_401(gong_standin, auth):
    answer = requests.get(gong_standin.url + "/v2/users", auth=auth, timeout=5)
    assert answer.status_code == 401
    assert answer.json()["errors"]


def test_bearer_auth(gong_standin):
    ok = requests.get(
        gong_standin.url + "/v2/users", headers={"Authorization": "Bearer standin-bearer-token"}, timeout=5
    )
    bad = requests.get(gong_standin.url + "/v2/users", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert (ok.status_code, bad.status_code) == (200, 401)


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"startTime": None}, "startTime"),
        ({"startTime": "2025-03-04T15:00:00"}, "startTime"),  # no offset
        ({"endTime": "2025-03-04T14:00:00Z"}, "after"),
        ({"organizerEmail": "nope"}, "organizerEmail"),
        ({"invitees": "a@b.com"}, "invitees"),
        ({"invitees": [{"email": 5}]}, "invitees[0]"),
        ({"title": 5}, "title"),
    ],
)
def test_invalid_bodies_get_400_with_request_id_and_errors(api, change, fragment):
    answer = api("POST", "/v2/meetings", json={**BODY, **change})
    assert answer.status_code == 400
    assert answer.json()["requestId"]
    assert any(fragment in e for e in answer.json()["errors"])


def test_unknown_organizer_404_and_consent_off_409(api):
    assert api("POST", "/v2/meetings", json={**BODY, "organizerEmail": "who@acme.com"}).status_code == 404
    conflict = api("POST", "/v2/meetings", json={**BODY, "organizerEmail": "noconsent@acme.com"})
    assert conflict.status_code == 409
    assert conflict.json()["userFacingError"] and conflict.json()["fixUrl"]


def test_limited_release_403(api, gong_standin):
    gong_standin.limited_release = True
    answer = api("POST", "/v2/meetings", json=BODY)
    assert answer.status_code == 403 and "Limited release" in answer.json()["errors"][0]


def test_rate_limit_answers_429_with_retry_after(api, gong_standin):
    gong_standin.rate_limit_per_second = 3
    statuses = [api("GET", "/v2/users").status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200]
    assert 429 in statuses[3:]
    limited = next(r for r in (api("GET", "/v2/users") for _ in range(3)) if r.status_code == 429)
    assert limited.headers["Retry-After"] == "1"


def test_update_delete_and_status(api):
    meeting_id = api("POST", "/v2/meetings", json=BODY).json()["meetingId"]
    assert (
        api("PUT", f"/v2/meetings/{meeting_id}", json={**BODY, "title": "new"}).json()["meetingId"]
        == meeting_id
    )
    assert api("PUT", "/v2/meetings/1", json=BODY).status_code == 404
    assert (
        api("DELETE", f"/v2/meetings/{meeting_id}", json={"organizerEmail": "rep@acme.com"}).status_code
        == 200
    )
    assert (
        api("DELETE", f"/v2/meetings/{meeting_id}", json={"organizerEmail": "rep@acme.com"}).status_code
        == 404
    )
    users = api(
        "POST", "/v2/meetings/integration/status", json={"emails": ["rep@acme.com", "noconsent@acme.com"]}
    )
    assert [(u["exists"], u["valid"]) for u in users.json()["users"]] == [(True, True), (True, False)]
    too_many = api(
        "POST", "/v2/meetings/integration/status", json={"emails": [f"u{i}@a.com" for i in range(101)]}
    )
    assert too_many.status_code == 400


def test_faults_status_drop_after_and_delay(api, gong_standin):
    gong_standin.inject("status", times=2, status=503, match="POST /v2/meetings")
    assert [api("POST", "/v2/meetings", json=BODY).status_code for _ in range(3)] == [503, 503, 200]
    gong_standin.inject("drop_after")
    with pytest.raises(requests.ConnectionError):
        api("POST", "/v2/meetings", json=BODY)
    assert gong_standin.created_count("e1") == 2  # the dropped one was created: the answer was lost
    assert gong_standin.duplicates() == {"e1": 2}
    gong_standin.inject("delay", delay=0.3)
    started = time.monotonic()
    assert api("GET", "/v2/users").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_admin_endpoints_control_a_server_in_another_process(gong_standin):
    url = gong_standin.url
    assert requests.post(url + "/_standin/faults", json={"kind": "status", "status": 500}, timeout=5).ok
    assert requests.post(url + "/_standin/faults", json={"kind": "bogus"}, timeout=5).status_code == 400
    auth = (gong_standin.access_key, gong_standin.access_key_secret)
    assert requests.get(url + "/v2/users", auth=auth, timeout=5).status_code == 500
    requests.post(url + "/v2/meetings", json=BODY, auth=auth, timeout=5)
    listing = requests.get(url + "/_standin/meetings", timeout=5).json()
    assert [m["externalId"] for m in listing["created"]] == ["e1"]
    requests.post(url + "/_standin/reset", timeout=5)
    assert gong_standin.created_count() == 0


def test_cli_starts_a_server(tmp_path):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_gong.testing", "--port", "0", "--user", "x@acme.com"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        answer = requests.get(url + "/v2/users", auth=("standin-key", "standin-secret-value"), timeout=5)
        assert [u["emailAddress"] for u in answer.json()["users"]] == ["noconsent@acme.com", "x@acme.com"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_a_hook_at_the_default_pace_never_meets_a_429_from_the_default_stand_in(gong_standin, monkeypatch):
    """Our pacing and our stand-in agree: 3 calls/s evenly spaced fit Gong's 3 calls/s."""
    from airflow_provider_gong.hooks.gong import GongHook

    gong_standin.rate_limit_per_second = 3  # what `python -m airflow_provider_gong.testing` runs with
    monkeypatch.setenv("AIRFLOW_CONN_GONG_DEFAULT", gong_standin.connection_json())  # default pace
    hook = GongHook()
    for _ in range(10):
        hook.request("GET", "/v2/users")
    assert [status for _, _, status in gong_standin.log] == [200] * 10


def test_strict_window_is_harsher_than_the_bucket(api, gong_standin):
    gong_standin.rate_limit_per_second = 2
    gong_standin.strict_window = True
    assert [api("GET", "/v2/users").status_code for _ in range(3)] == [200, 200, 429]


# -- the authorization-code grant ------------------------------------------------------------------------


def exchange(standin, code, redirect_uri, *, client_id=None):
    """POST the code as Gong documents it: the grant in the query string, the client as Basic auth."""
    params = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": client_id or standin.client_id,
        "redirect_uri": redirect_uri,
    }
    return requests.post(
        standin.url + "/oauth2/generate-customer-token",
        params=params,
        auth=(standin.client_id, standin.client_secret),
        timeout=5,
    )


REDIRECT = "https://airflow.example.com/gong/callback"


def test_authorize_redirects_with_a_code_that_exchanges_once_for_a_working_refresh_token(gong_standin):
    authorize = {
        "client_id": gong_standin.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": "api:meetings:user:create api:users:read",
        "state": "st-42",
    }
    answer = requests.get(
        gong_standin.url + "/oauth2/authorize", params=authorize, allow_redirects=False, timeout=5
    )
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["st-42"]
    (code,) = query["code"]

    granted = exchange(gong_standin, code, REDIRECT)
    assert granted.status_code == 200
    tokens = granted.json()
    assert tokens["api_base_url_for_customer"] == gong_standin.url
    assert tokens["refresh_token"] and tokens["access_token"] and tokens["expires_in"] == 3600.0
    assert gong_standin.code_exchanges == 1
    assert requests.get(
        gong_standin.url + "/v2/users",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=5,
    ).ok
    refreshed = requests.post(
        gong_standin.url + "/oauth2/generate-customer-token",
        params={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(gong_standin.client_id, gong_standin.client_secret),
        timeout=5,
    )
    assert refreshed.status_code == 200

    again = exchange(gong_standin, code, REDIRECT)  # a code works once
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


def test_a_code_is_refused_for_another_redirect_uri_or_client_and_stays_usable(gong_standin):
    code = gong_standin.issue_authorization_code(REDIRECT)
    wrong = exchange(gong_standin, code, REDIRECT + "/other")
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    assert "redirect_uri" in wrong.json()["error_description"]
    other_client = exchange(gong_standin, code, REDIRECT, client_id="someone-else")
    assert (other_client.status_code, other_client.json()["error"]) == (400, "invalid_grant")
    assert exchange(gong_standin, code, REDIRECT).status_code == 200
    assert exchange(gong_standin, "never-issued", REDIRECT).json()["error"] == "invalid_grant"


def test_an_expired_code_is_refused(gong_standin):
    gong_standin.code_lifetime = 0.0
    code = gong_standin.issue_authorization_code(REDIRECT)
    answer = exchange(gong_standin, code, REDIRECT)
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")
    assert "expired" in answer.json()["error_description"]


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"client_id": "unknown"}, "client_id"),
        ({"redirect_uri": None}, "redirect_uri"),
        ({"redirect_uri": "javascript:alert(1)"}, "redirect_uri"),
        ({"response_type": "token"}, "response_type"),
    ],
)
def test_authorize_never_redirects_a_bad_request(gong_standin, change, fragment):
    params = {
        "client_id": gong_standin.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        **change,
    }
    params = {k: v for k, v in params.items() if v is not None}
    answer = requests.get(
        gong_standin.url + "/oauth2/authorize", params=params, allow_redirects=False, timeout=5
    )
    assert answer.status_code == 400 and "Location" not in answer.headers
    assert fragment in answer.json()["error_description"]
    assert gong_standin.codes == {}


def test_the_token_endpoint_still_refuses_other_grants(gong_standin):
    answer = requests.post(
        gong_standin.url + "/oauth2/generate-customer-token",
        params={"grant_type": "password", "username": "x"},
        auth=(gong_standin.client_id, gong_standin.client_secret),
        timeout=5,
    )
    assert (answer.status_code, answer.json()["error"]) == (400, "unsupported_grant_type")
