"""OAuth connections: refresh-or-reuse on a shared token store, against the stand-in's token endpoint,
whose refresh tokens work once (a second use answers ``400 invalid_grant``, as Gong's do).

The store logic runs on a fake clock (no waiting for expiries); the hook tests use real loopback HTTP.
"""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from airflow_provider_gong import get_provider_info
from airflow_provider_gong._compat import AirflowFailException
from airflow_provider_gong.exceptions import GongAuthError, GongError, GongValidationError
from airflow_provider_gong.hooks.gong import GongHook
from airflow_provider_gong.meetings import Meeting
from airflow_provider_gong.oauth import (
    DEFAULT_TOKEN_URL,
    GongRefreshTokenError as RefreshTokenError,
    GongTokenRefreshLostError as RefreshLostError,
    OAuthClient,
)
from airflow_provider_gong.quota import account_key
from airflow_provider_gong.state import Moment
from airflow_provider_gong.testing import GongStandIn
from airflow_provider_gong.testing.standin import TOKEN_PATH
from airflow_provider_gong.token_store import (
    LOCAL_FILE,
    MemoryTokenStore,
    SQLiteTokenStore,
    TokenStore,
    chain_key,
)
from tests.dates import SOON

CLIENT_SECRET = "oauth-Client-Secret-5150"
MEETING = Meeting.build(
    start_time=f"{SOON}T15:00:00Z",
    end_time=f"{SOON}T15:30:00Z",
    organizer_email="rep@acme.com",
    invitees=["buyer@client.com"],
)


class Clock:
    """Seconds that move only when told to: one clock for the store and the client."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def standin():
    with GongStandIn(client_secret=CLIENT_SECRET) as server:
        yield server


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request, tmp_path):
    """A store on the given clock: the same rules must hold on every backend."""

    def make(clock) -> TokenStore:
        if request.param == "memory":
            return MemoryTokenStore(clock=clock)
        return SQLiteTokenStore(tmp_path / LOCAL_FILE, clock=clock)

    return make


def client(standin: GongStandIn, store: TokenStore, clock: Clock, refresh_token: str | None = None, **kw):
    return OAuthClient(
        token_url=standin.url + TOKEN_PATH,
        client_id=standin.client_id,
        client_secret=kw.pop("client_secret", standin.client_secret),
        refresh_token=refresh_token or standin.refresh_token,
        store=store,
        clock=clock,
        **kw,
    )


def api_calls(standin: GongStandIn) -> list[tuple[str, str, int]]:
    """The stand-in's log without the token endpoint's requests."""
    return [entry for entry in standin.log if entry[1].startswith("/v2/")]


def oauth_hook(standin: GongStandIn, monkeypatch, tmp_path, conn_id: str = "gong_oauth", **extra) -> GongHook:
    extra = {"quota_dir": str(tmp_path / "q"), "rate_limit_per_second": 1000, **extra}
    conn = standin.connection(auth="oauth", **extra)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    hook = GongHook(conn_id)
    hook.sleep = lambda seconds: None
    return hook


# -- refresh or reuse ------------------------------------------------------------------------------------


def test_a_valid_token_is_reused_and_an_expiring_one_refreshed_with_the_rotated_token(standin, make_store):
    clock = Clock()
    oauth = client(standin, make_store(clock), clock)
    first = oauth.token()
    assert standin.oauth_counters()["refreshes"] == 1
    assert first.api_base_url == standin.url
    clock.now += 3000  # lifetime 3600 s, margin 300 s: still good
    assert oauth.token() is first
    clock.now += 301  # inside the margin: refresh, with the refresh token Gong rotated to
    second = oauth.token()
    assert second.access_token != first.access_token
    assert standin.oauth_counters() == {"refreshes": 2, "invalid_grant": 0, "invalid_client": 0, "expired": 0}
    assert oauth.refreshes_on_chain() == 2


def test_two_clients_on_one_store_share_one_chain(standin, make_store):
    """As two tasks would: the second finds the first's token; after the expiry only one refreshes,
    and the other then uses what it stored (never the spent refresh token)."""
    clock = Clock()
    store = make_store(clock)
    a, b = client(standin, store, clock), client(standin, store, clock)
    assert a.token() == b.token()
    assert standin.oauth_counters()["refreshes"] == 1
    clock.now += 3400
    fresh = b.token()
    assert a.token() == fresh
    assert (a.refreshes, b.refreshes) == (1, 1)
    assert standin.oauth_counters()["invalid_grant"] == 0


def test_a_new_refresh_token_in_the_connection_starts_a_new_chain(standin, make_store):
    """An admin authorised the app again and pasted the new refresh token: it is used at once instead
    of the stored chain, and the old chain (another connection's, say) is left alone."""
    clock = Clock()
    store = make_store(clock)
    old = client(standin, store, clock)
    old.token()
    renewed = client(standin, store, clock, refresh_token=standin.issue_refresh_token())
    assert renewed.key != old.key
    assert renewed.token().access_token != old.token().access_token
    clock.now += 3400
    old.token()
    renewed.token()
    assert standin.oauth_counters()["refreshes"] == 4
    assert standin.oauth_counters()["invalid_grant"] == 0


def test_a_rejected_token_is_replaced_once_not_by_every_holder(standin, make_store):
    clock = Clock()
    store = make_store(clock)
    a, b = client(standin, store, clock), client(standin, store, clock)
    revoked = a.token()
    b.token()
    replacement = a.reauthorize(revoked)  # the store still held the rejected one: refresh
    assert b.reauthorize(revoked) == replacement  # already replaced: reuse
    assert standin.oauth_counters()["refreshes"] == 2


def test_stored_tokens_are_encrypted_with_the_client_secret(standin, tmp_path):
    clock = Clock()
    store = SQLiteTokenStore(tmp_path / LOCAL_FILE, clock=clock)
    token = client(standin, store, clock).token()
    (rotated,) = standin.refresh_tokens
    raw = (tmp_path / LOCAL_FILE).read_bytes() + b"".join(
        p.read_bytes()
        for p in tmp_path.glob(f"{LOCAL_FILE}-*")  # the WAL
    )
    for secret in (token.access_token, rotated, standin.refresh_token, CLIENT_SECRET, standin.client_id):
        assert secret.encode() not in raw
    assert oct((tmp_path / LOCAL_FILE).stat().st_mode & 0o777) == "0o600"
    with pytest.raises(GongAuthError, match="client secret changed"):
        client(standin, store, clock, client_secret="another-secret-entirely").token()


def test_the_chain_key_holds_no_secret():
    key = chain_key(DEFAULT_TOKEN_URL, "client-id-123", "refresh-token-456")
    assert key.startswith("oauth/") and "client-id-123" not in key and "refresh-token-456" not in key
    assert key != chain_key(DEFAULT_TOKEN_URL, "client-id-123", "refresh-token-789")


# -- errors ------------------------------------------------------------------------------------------------


def test_invalid_grant_is_a_permanent_clear_error_without_secrets(standin, monkeypatch, tmp_path):
    spent = "spent+refresh/token=" + "x" * 20
    hook = oauth_hook(standin, monkeypatch, tmp_path, refresh_token=spent)
    with pytest.raises(RefreshTokenError) as caught:
        hook.request("GET", "/v2/users")
    error = caught.value
    assert isinstance(error, AirflowFailException)  # no Airflow retries: only a person can fix it
    text = str(error)
    assert "invalid_grant" in text and "already used or has been revoked" in text
    assert "needs a new refresh token" in text
    for secret in (spent, quote(spent, safe=""), CLIENT_SECRET):
        assert secret not in text
    assert standin.oauth_counters()["invalid_grant"] == 1
    assert api_calls(standin) == []  # no API call was attempted
    ok, message = hook.test_connection()
    assert not ok and message.startswith("Getting an OAuth access token from ") and "invalid_grant" in message


def test_a_wrong_client_secret_is_named_and_spends_no_refresh_token(standin, monkeypatch, tmp_path):
    conn = standin.connection(auth="oauth", quota_dir=str(tmp_path / "q"))
    conn["password"] = "not-the-client-secret"
    monkeypatch.setenv("AIRFLOW_CONN_GONG_BADCLIENT", json.dumps(conn))
    with pytest.raises(GongAuthError, match=r"client id .*client secret"):
        GongHook("gong_badclient").request("GET", "/v2/users")
    assert standin.refresh_token in standin.refresh_tokens  # still good
    assert standin.oauth_counters()["invalid_client"] == 1


def test_a_lost_refresh_answer_is_reported_and_explains_the_invalid_grant_that_follows(
    standin, monkeypatch, tmp_path
):
    """Gong rotated the refresh token but its answer never arrived: the hook must not send the old one
    again by itself, and the next try's invalid_grant says why the token is gone."""
    standin.inject("drop_after", match=f"POST {TOKEN_PATH}")
    hook = oauth_hook(standin, monkeypatch, tmp_path)
    with pytest.raises(RefreshLostError) as caught:
        hook.request("GET", "/v2/users")
    assert not isinstance(caught.value, AirflowFailException)  # a task retry may still succeed
    assert "may have used up the refresh token" in str(caught.value)
    assert standin.oauth_counters()["refreshes"] == 1 and standin.oauth_counters()["invalid_grant"] == 0

    with pytest.raises(RefreshTokenError) as again:
        oauth_hook(standin, monkeypatch, tmp_path).request("GET", "/v2/users")
    assert "earlier refresh" in str(again.value) and "was lost" in str(again.value)
    assert standin.oauth_counters()["invalid_grant"] == 1


def test_a_refresh_whose_answer_was_lost_before_gong_acted_succeeds_on_the_next_try(
    standin, monkeypatch, tmp_path
):
    standin.inject("drop", match=f"POST {TOKEN_PATH}")  # hung up without rotating
    with pytest.raises(RefreshLostError):
        oauth_hook(standin, monkeypatch, tmp_path).request("GET", "/v2/users")
    oauth_hook(standin, monkeypatch, tmp_path).request("GET", "/v2/users")
    assert standin.oauth_counters()["refreshes"] == 1


def test_a_refresh_refused_with_429_is_retried_but_a_5xx_is_in_doubt(standin, monkeypatch, tmp_path):
    """429: Gong did nothing, so the hook's retry policy tries again. 503: Gong may have rotated the
    token before failing, so it is not re-sent."""
    standin.inject("status", status=429, retry_after=0, match=f"POST {TOKEN_PATH}")
    oauth_hook(standin, monkeypatch, tmp_path).request("GET", "/v2/users")
    assert standin.oauth_counters()["refreshes"] == 1

    standin.revoke_access_tokens()
    standin.inject("status", status=503, match=f"POST {TOKEN_PATH}")
    with pytest.raises(RefreshLostError, match="HTTP 503"):
        oauth_hook(standin, monkeypatch, tmp_path).request("GET", "/v2/users")
    assert [path for _, path, _ in standin.log].count(TOKEN_PATH) == 3  # 429, 200, 503: none re-sent


class _CommitFails(MemoryTokenStore):
    """A store whose commit fails after the change ran (a full disk, a database that went away)."""

    def transact(self, key, change, labels=()):
        change(None, Moment(self._clock(), self._clock()))
        raise OSError("disk I/O error")


def test_a_rotated_refresh_token_that_could_not_be_saved_is_reported_as_lost(standin):
    clock = Clock()
    with pytest.raises(RefreshTokenError, match="could not save it") as caught:
        client(standin, _CommitFails(clock=clock), clock).token()
    assert standin.oauth_counters()["refreshes"] == 1
    for secret in (*standin.refresh_tokens, *standin.issued, CLIENT_SECRET):
        assert secret not in str(caught.value)


@pytest.mark.parametrize(
    "extra, fragment",
    [({"refresh_token": None}, "refresh_token"), ({"token_url": "ftp://x"}, "token_url")],
)
def test_an_incomplete_oauth_connection_fails_before_any_call(
    standin, monkeypatch, tmp_path, extra, fragment
):
    hook = oauth_hook(standin, monkeypatch, tmp_path, **extra)
    with pytest.raises(GongValidationError, match=fragment):
        hook.request("GET", "/v2/users")
    assert standin.oauth_counters()["refreshes"] == 0 and api_calls(standin) == []


# -- the hook --------------------------------------------------------------------------------------------


def test_calls_go_to_the_tokens_customer_host_not_the_connections(standin, monkeypatch, tmp_path):
    conn = standin.connection(auth="oauth", quota_dir=str(tmp_path / "q"))
    conn["host"] = "http://127.0.0.1:9"  # nothing listens there
    del conn["extra"]["auth_type"]  # auto: oauth, because a refresh token is set
    monkeypatch.setenv("AIRFLOW_CONN_GONG_HOSTED", json.dumps(conn))
    hook = GongHook("gong_hosted")
    assert hook.settings.auth_type == "oauth"
    hook.request("GET", "/v2/users")
    assert hook.base_url == standin.url
    assert api_calls(standin) == [("GET", "/v2/users", 200)]
    sent = hook.session.prepare_request(requests.Request("GET", hook.base_url + "/v2/users"))
    assert sent.headers["Authorization"].startswith("Bearer gat-")


def test_reuse_across_hooks_one_refresh(standin, monkeypatch, tmp_path):
    for _ in range(3):
        hook = oauth_hook(standin, monkeypatch, tmp_path)
        hook.request("GET", "/v2/users")
        hook.close()
    assert standin.oauth_counters()["refreshes"] == 1


def test_a_revoked_token_is_replaced_and_even_a_create_is_sent_again(standin, monkeypatch, tmp_path):
    """401 means Gong refused the call, so re-sending a create cannot duplicate the meeting."""
    hook = oauth_hook(standin, monkeypatch, tmp_path)
    hook.request("GET", "/v2/users")
    standin.revoke_access_tokens()
    result = hook.create_meeting(MEETING)
    assert [c.meeting_id for c in standin.created] == [result.meeting_id]
    assert [status for _, _, status in api_calls(standin)] == [200, 401, 200]
    assert standin.oauth_counters()["refreshes"] == 2


def test_a_second_401_is_final(monkeypatch, tmp_path):
    with GongStandIn(token_lifetime=0.0) as standin:  # every issued token is expired on arrival
        hook = oauth_hook(standin, monkeypatch, tmp_path)
        with pytest.raises(GongAuthError, match="second, newer OAuth access token") as caught:
            hook.create_meeting(MEETING)
        assert [status for _, _, status in api_calls(standin)] == [401, 401]
        assert standin.created == []
        assert standin.oauth_counters()["refreshes"] == 2
    assert "Bearer" not in str(caught.value)


def test_the_quota_is_keyed_on_host_and_client_not_the_rotating_token(standin, monkeypatch, tmp_path):
    first = oauth_hook(standin, monkeypatch, tmp_path)
    first.request("GET", "/v2/users")
    standin.revoke_access_tokens()
    second = oauth_hook(standin, monkeypatch, tmp_path)
    second.request("GET", "/v2/users")  # 401, refresh, retry: a new access token
    assert second.oauth.current != first.oauth.current
    expected = account_key(standin.url, auth_type="oauth", access_key=standin.client_id, access_token=None)
    assert first.limiter.account == second.limiter.account == expected
    assert first.quota_status()["used"] == 3  # both hooks' calls, the refused one included


def test_test_connection_says_it_used_oauth(standin, monkeypatch, tmp_path):
    ok, message = oauth_hook(standin, monkeypatch, tmp_path).test_connection()
    assert ok and "OAuth access token valid until" in message and standin.url in message


def test_the_refresh_is_sent_as_gong_documents_it(requests_mock, monkeypatch, tmp_path):
    """Query string grant, Basic client auth; then Bearer calls to api_base_url_for_customer."""
    token_url = "https://app.gong.io/oauth2/generate-customer-token"
    requests_mock.post(
        token_url,
        json={
            "access_token": "mock-access-token-1",
            "refresh_token": "mock-refresh-token-2",
            "expires_in": 86400,
            "api_base_url_for_customer": "https://us-49467.api.gong.io",
        },
    )
    requests_mock.get("https://us-49467.api.gong.io/v2/users", json={"users": []})
    conn = {
        "conn_type": "gong",
        "login": "client-id-9",
        "password": CLIENT_SECRET,
        "extra": {"refresh_token": "seed+refresh/token", "quota_dir": str(tmp_path)},
    }
    monkeypatch.setenv("AIRFLOW_CONN_GONG_WIRE", json.dumps(conn))
    GongHook("gong_wire").request("GET", "/v2/users")
    refresh, call = requests_mock.request_history
    assert refresh.method == "POST" and refresh.url.startswith(token_url + "?")
    assert parse_qs(urlsplit(refresh.url).query) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["seed+refresh/token"],
    }
    expected = base64.b64encode(f"client-id-9:{CLIENT_SECRET}".encode()).decode()
    assert refresh.headers["Authorization"] == f"Basic {expected}"
    assert call.headers["Authorization"] == "Bearer mock-access-token-1"


# -- secrets ------------------------------------------------------------------------------------------------


def test_every_token_is_masked_and_redacted(standin, monkeypatch, tmp_path):
    from airflow.sdk._shared.secrets_masker import redact

    hook = oauth_hook(standin, monkeypatch, tmp_path)
    hook.request("GET", "/v2/users")
    access = hook.oauth.current.access_token
    (rotated,) = standin.refresh_tokens
    pair = base64.b64encode(f"{standin.client_id}:{CLIENT_SECRET}".encode()).decode()
    secrets = [access, rotated, quote(rotated, safe=""), standin.refresh_token, CLIENT_SECRET, pair]
    text = " | ".join(secrets)
    masked, redacted = redact(text), hook.redact(text)
    for secret in secrets:
        assert secret not in masked, secret
        assert secret not in redacted, secret


def test_token_endpoint_echoes_are_redacted(monkeypatch, tmp_path):
    """A gateway that echoes the request (query string with the refresh token, Basic client header)
    into its error body: none of it reaches the error or test_connection's message."""
    with GongStandIn(client_secret=CLIENT_SECRET, echo_authorization=True) as standin:
        standin.refresh_tokens.clear()  # the connection's refresh token is spent: invalid_grant
        hook = oauth_hook(standin, monkeypatch, tmp_path)
        with pytest.raises(RefreshTokenError) as caught:
            hook.request("GET", "/v2/users")
        _, message = hook.test_connection()
    pair = base64.b64encode(f"{standin.client_id}:{CLIENT_SECRET}".encode()).decode()
    assert "query" in str(caught.value)  # the echo is there, redacted
    for text in (str(caught.value), json.dumps(caught.value.to_dict()), message):
        for secret in (standin.refresh_token, quote(standin.refresh_token, safe=""), CLIENT_SECRET, pair):
            assert secret not in text


def test_api_echoes_of_a_rotated_access_token_are_redacted(monkeypatch, tmp_path):
    with GongStandIn(echo_authorization=True) as standin:
        hook = oauth_hook(standin, monkeypatch, tmp_path)
        with pytest.raises(GongError) as caught:
            hook.create_meeting(MEETING.model_copy(update={"organizer_email": "nobody@acme.com"}))
        access = hook.oauth.current.access_token
    assert "Request was: Authorization" in json.dumps(caught.value.to_dict())
    assert access not in str(caught.value) and access not in json.dumps(caught.value.to_dict())


def test_urllib3_debug_lines_never_show_the_refresh_token(standin, monkeypatch, tmp_path, caplog):
    with caplog.at_level(logging.DEBUG):
        oauth_hook(standin, monkeypatch, tmp_path).request("GET", "/v2/users")
    assert TOKEN_PATH in caplog.text  # the request line was logged ...
    for secret in (standin.refresh_token, quote(standin.refresh_token, safe=""), *standin.refresh_tokens):
        assert secret not in caplog.text  # ... without the token
        assert quote(secret, safe="") not in caplog.text


def test_the_connection_form_has_the_oauth_fields():
    (conn_type,) = get_provider_info()["connection-types"]
    fields = conn_type["conn-fields"]
    assert "oauth" in fields["auth_type"]["schema"]["enum"]
    assert fields["refresh_token"]["schema"]["format"] == "password"  # sensitive in the UI
    assert "token_url" in fields
    assert "client ID" in conn_type["ui-field-behaviour"]["relabeling"]["login"]
