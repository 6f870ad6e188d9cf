"""The one place that reads a connection: extras over defaults, overrides over extras, errors that
name the field and never the secret."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest

from airflow_provider_gong._client.auth import BasicAuth, BearerAuth
from airflow_provider_gong._client.settings import GongSettings, settings_from_connection
from airflow_provider_gong.exceptions import GongValidationError

KEY, SECRET, TOKEN, REFRESH = "key-1", "secret-XYZ", "token-ABC", "refresh-DEF"


def read(extra=None, *, login=KEY, password=SECRET, host="us-1.api.gong.io", **overrides) -> GongSettings:
    conn = SimpleNamespace(
        host=host, schema=None, port=None, login=login, password=password, extra_dejson=extra
    )
    return settings_from_connection(conn, overrides)


@pytest.mark.parametrize(
    "extra, expected",
    [
        ({}, "basic"),
        ({"access_token": TOKEN}, "bearer"),
        ({"refresh_token": REFRESH}, "oauth"),
        ({"refresh_token": REFRESH, "access_token": TOKEN}, "oauth"),
        ({"access_token": TOKEN, "auth_type": "basic"}, "basic"),
        ({"access_token": TOKEN, "auth_type": " AUTO "}, "bearer"),
    ],
)
def test_auth_type_auto_follows_the_credentials_present(extra, expected):
    assert read(extra).auth_type == expected


def test_empty_extras_mean_the_defaults_and_overrides_win():
    settings = read({"timeout": "", "max_attempts": None, "rate_limit_per_second": "2"}, max_attempts=2)
    assert (settings.timeout, settings.max_attempts, settings.rate_limit_per_second) == (30.0, 2, 2.0)
    assert settings.base_url == "https://us-1.api.gong.io"
    assert settings.total_deadline == 40.0
    assert read({"deadline": 5}).total_deadline == 5.0


def test_an_invalid_connection_names_each_field_and_hides_the_secret():
    with pytest.raises(GongValidationError) as info:
        read({"timeout": "soon", "quota_backend": "sql"})
    text = str(info.value)
    assert "timeout" in text and "quota_conn_id" in text and "https://us-1.api.gong.io" in text
    assert SECRET not in text


@pytest.mark.parametrize("url", ["ftp://app.gong.io/token", "not a url"])
def test_a_token_url_must_be_http(url):
    with pytest.raises(GongValidationError, match="token_url"):
        read({"refresh_token": REFRESH, "token_url": url})


def test_pasted_secrets_are_stripped():
    settings = read({"access_token": f" {TOKEN}\n"}, password=f"{SECRET}\n")
    assert (settings.secret("access_token"), settings.secret("access_key_secret")) == (TOKEN, SECRET)
    assert settings.secret("refresh_token") is None


def test_basic_and_bearer_come_from_the_settings_already_checked():
    basic = read().static_auth()
    assert isinstance(basic, BasicAuth)
    assert read().authorization() == "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    bearer = read({"access_token": TOKEN}).static_auth()
    assert isinstance(bearer, BearerAuth) and bearer.header == f"Bearer {TOKEN}"


def test_an_oauth_connection_has_no_static_header():
    with pytest.raises(GongValidationError, match="uses OAuth"):
        read({"refresh_token": REFRESH}).authorization()


def test_oauth_credentials_name_everything_missing():
    with pytest.raises(GongValidationError) as info:
        read({"auth_type": "oauth"}, login=None).oauth_credentials()
    assert "client id (login)" in str(info.value) and "refresh_token" in str(info.value)
    assert "client secret" not in str(info.value)
    assert read({"refresh_token": REFRESH}).oauth_credentials() == (KEY, SECRET, REFRESH)


@pytest.mark.parametrize("login, refresh", [("id:with-colon", REFRESH), (KEY, "two words")])
def test_oauth_credentials_that_cannot_be_sent_are_refused(login, refresh):
    with pytest.raises(GongValidationError, match="cannot be sent"):
        read({"refresh_token": refresh}, login=login).oauth_credentials()
