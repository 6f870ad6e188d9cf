"""``python -m airflow_provider_gong.oauth_setup``: the first refresh token of a Gong OAuth app, from the
authorization code into the connection, over real HTTP to the stand-in and a real (SQLite) metadata DB.

What matters: the token lands in the connection the next task reads (and starts a new token chain), a
refused code leaves the connection as it was, a connection the command cannot change is refused before
the single-use code is spent, and no secret (code, client secret, tokens) is printed, logged or put in an
error, except the refresh token in ``--print-extra``'s JSON when asked for.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import uuid
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from airflow_provider_gong import oauth_setup
from airflow_provider_gong.exceptions import GongError
from airflow_provider_gong.hooks.gong import GongHook
from airflow_provider_gong.oauth_setup import DEFAULT_SCOPES, main
from airflow_provider_gong.testing import GongStandIn
from airflow_provider_gong.testing.standin import TOKEN_PATH
from tests.conftest import ROOT

pytestmark = pytest.mark.integration  # a real metadata DB, and one dag.test()

REDIRECT = "https://airflow.example.com/gong/callback"
SECRET = "setup-Client-Secret-4711"


@pytest.fixture
def standin():
    with GongStandIn(client_secret=SECRET) as server:
        yield server


@pytest.fixture
def conn_id(airflow_db):
    """A fresh connection id; its metadata DB row (if a test made one) is deleted afterwards."""
    name = f"gong_setup_{uuid.uuid4().hex[:8]}"
    yield name
    from airflow.models import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == name).delete()


def oauth_app_connection(standin: GongStandIn, tmp_path, **extra) -> dict:
    """The connection as an admin creates it before the first authorisation: the app, no token yet."""
    return {
        "conn_type": "gong",
        "description": "Gong, OAuth app",
        "host": "https://api.gong.io",
        "login": standin.client_id,
        "password": standin.client_secret,
        "extra": {
            "token_url": standin.url + TOKEN_PATH,
            "quota_dir": str(tmp_path / "q"),
            "rate_limit_per_second": 1000,
            "timeout": 12,
            **extra,
        },
    }


def add_to_db(conn_id: str, conn: dict) -> None:
    from airflow.models import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        session.add(Connection.from_json(json.dumps(conn), conn_id=conn_id))


def in_db(conn_id: str) -> dict:
    from airflow.models import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(Connection).filter(Connection.conn_id == conn_id).one()
        return {
            "conn_type": row.conn_type,
            "description": row.description,
            "host": row.host,
            "login": row.login,
            "password": row.password,
            "extra": row.extra_dejson,
        }


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def exchange(capsys, conn_id: str, code: str, *more: str, redirect: str = REDIRECT) -> tuple[int, str, str]:
    return run(capsys, "exchange", "--conn-id", conn_id, "--code", code, "--redirect-uri", redirect, *more)


def secret_forms(standin: GongStandIn, *also: str) -> list[str]:
    """Every secret the flow handled, raw and as it travels (URL-encoded, Basic header)."""
    values = [SECRET, *standin.issued, *standin.refresh_tokens, *also]
    pair = base64.b64encode(f"{standin.client_id}:{SECRET}".encode()).decode()
    return [*values, *(quote(v, safe="") for v in values), pair]


def hook_call_through_the_metadata_db(conn_id: str, monkeypatch) -> tuple[bool, str]:
    """What ``airflow connections test`` does: the hook reads the connection from the metadata DB."""
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "server")
    hook = GongHook(conn_id)
    try:
        return hook.test_connection()
    finally:
        hook.close()


# -- url --------------------------------------------------------------------------------------------------


def test_url_prints_the_authorize_url_of_the_connections_app_and_the_stand_in_follows_it(
    standin, conn_id, tmp_path, capsys
):
    add_to_db(conn_id, oauth_app_connection(standin, tmp_path))
    status, out, err = run(capsys, "url", "--conn-id", conn_id, "--redirect-uri", REDIRECT, "--state", "s-1")
    assert status == 0
    url = out.strip()
    assert "\n" not in url  # stdout is the URL alone, for $(...) and scripts
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == standin.url + "/oauth2/authorize"
    assert parse_qs(parts.query) == {
        "client_id": [standin.client_id],
        "response_type": ["code"],
        "scope": [" ".join(DEFAULT_SCOPES)],
        "redirect_uri": [REDIRECT],
        "state": ["s-1"],
    }
    assert "exchange" in err and "s-1" in err
    redirected = requests.get(url, allow_redirects=False, timeout=5)
    query = parse_qs(urlsplit(redirected.headers["Location"]).query)
    assert query["state"] == ["s-1"] and query["code"][0] in standin.codes


def test_url_defaults_to_gongs_authorize_page_and_takes_scopes_and_a_random_state(
    conn_id, capsys, monkeypatch
):
    conn = {"conn_type": "gong", "login": "client-7", "password": "pw-123456"}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))  # any source will do for url
    status, out, _ = run(
        capsys, "url", "--conn-id", conn_id, "--redirect-uri", REDIRECT, "--scope", "api:users:read"
    )
    parts = urlsplit(out.strip())
    assert status == 0 and out.strip().startswith("https://app.gong.io/oauth2/authorize?")
    query = parse_qs(parts.query)
    assert query["scope"] == ["api:users:read"] and query["client_id"] == ["client-7"]
    assert len(query["state"][0]) >= 16


# -- exchange ---------------------------------------------------------------------------------------------


def test_exchange_stores_the_refresh_token_and_the_next_hook_call_works_via_oauth(
    standin, conn_id, tmp_path, capsys, monkeypatch, caplog
):
    before = oauth_app_connection(standin, tmp_path, auth_type="basic")
    add_to_db(conn_id, before)
    code = standin.issue_authorization_code(REDIRECT)
    with caplog.at_level(logging.DEBUG):
        status, out, err = exchange(capsys, conn_id, code)
    assert status == 0, err
    after = in_db(conn_id)
    (refresh_token,) = standin.refresh_tokens - {standin.refresh_token}
    assert after["extra"] == {**before["extra"], "auth_type": "oauth", "refresh_token": refresh_token}
    assert {k: v for k, v in after.items() if k != "extra"} == {
        k: v for k, v in before.items() if k != "extra"
    }
    assert standin.url in out and "metadata database" in out  # the API host, and where it was stored
    assert oauth_setup.fingerprint(refresh_token) in out
    for form in secret_forms(standin, code):
        assert form not in out + err + caplog.text

    ok, message = hook_call_through_the_metadata_db(conn_id, monkeypatch)
    assert ok, message
    assert "OAuth access token" in message
    assert standin.oauth_counters()["refreshes"] == 1  # with the stored refresh token
    assert refresh_token not in standin.refresh_tokens  # ... which Gong has now rotated


def test_a_new_authorisation_starts_a_new_chain_the_next_hook_call_uses(
    standin, conn_id, tmp_path, capsys, monkeypatch
):
    """The connection already has a chain (with a valid access token in the token store): after the
    exchange, the next hook call must use the new refresh token, not the old chain's stored token."""
    add_to_db(conn_id, oauth_app_connection(standin, tmp_path, refresh_token=standin.refresh_token))
    assert hook_call_through_the_metadata_db(conn_id, monkeypatch)[0]
    monkeypatch.delenv("_AIRFLOW_PROCESS_CONTEXT")
    assert standin.oauth_counters()["refreshes"] == 1
    status, _, err = exchange(capsys, conn_id, standin.issue_authorization_code(REDIRECT))
    assert status == 0, err
    new_seed = in_db(conn_id)["extra"]["refresh_token"]
    assert new_seed in standin.refresh_tokens

    assert hook_call_through_the_metadata_db(conn_id, monkeypatch)[0]
    assert standin.oauth_counters()["refreshes"] == 2
    assert new_seed not in standin.refresh_tokens  # the new chain began with it
    assert standin.oauth_counters()["invalid_grant"] == 0


def test_a_spent_code_is_a_clear_error_and_the_connection_is_unchanged(standin, conn_id, tmp_path, capsys):
    add_to_db(conn_id, oauth_app_connection(standin, tmp_path))
    code = standin.issue_authorization_code(REDIRECT)
    assert exchange(capsys, conn_id, code)[0] == 0
    stored = in_db(conn_id)
    status, out, err = exchange(capsys, conn_id, code)
    assert status == 1 and out == ""
    assert "authorization code" in err and "already exchanged" in err and "url" in err
    assert in_db(conn_id) == stored
    assert code not in err


def test_another_redirect_uri_is_a_clear_error_and_the_connection_is_unchanged(
    standin, conn_id, tmp_path, capsys
):
    add_to_db(conn_id, oauth_app_connection(standin, tmp_path))
    before = in_db(conn_id)
    code = standin.issue_authorization_code(REDIRECT)
    status, out, err = exchange(capsys, conn_id, code, redirect=REDIRECT + "/elsewhere")
    assert status == 1 and out == ""
    assert "redirect_uri" in err and "does not match" in err
    assert in_db(conn_id) == before


def test_every_error_is_free_of_secrets_even_when_gong_echoes_the_request(standin, conn_id, tmp_path, capsys):
    """A gateway that echoes the request (query string with the code, Basic header) into its error."""
    standin.echo_authorization = True
    add_to_db(conn_id, oauth_app_connection(standin, tmp_path))
    code = standin.issue_authorization_code(REDIRECT)
    status, _, err = exchange(capsys, conn_id, code, redirect=REDIRECT + "/x")
    assert status == 1 and "Basic ***" in err and "code=***" in err  # the echo came through, redacted
    with pytest.raises(GongError) as caught:
        oauth_setup.exchange(conn_id, code, REDIRECT + "/x")
    for form in secret_forms(standin, code):
        assert form not in err and form not in str(caught.value) and form not in repr(caught.value.args)


@pytest.mark.parametrize(
    "conn, fragment",
    [
        (None, "not found"),
        ({"conn_type": "gong", "password": "pw-123456"}, "client ID (login)"),
        ({"conn_type": "gong", "login": "standin-client-id"}, "client secret (password)"),
        ({"conn_type": "http", "login": "a", "password": "pw-123456"}, "type 'http'"),
    ],
)
def test_a_connection_that_cannot_be_used_is_refused_before_any_call(
    standin, conn_id, capsys, conn, fragment
):
    if conn is not None:
        add_to_db(conn_id, {**conn, "extra": {"token_url": standin.url + TOKEN_PATH}})
    status, out, err = exchange(capsys, conn_id, "code-123456")
    assert status == 1 and out == "" and fragment in err and conn_id in err
    assert standin.log == []


def test_a_connection_from_an_environment_variable_is_refused_before_the_code_is_spent(
    standin, conn_id, tmp_path, capsys, monkeypatch
):
    conn = oauth_app_connection(standin, tmp_path)
    add_to_db(conn_id, conn)  # the variable shadows this row, for the hook too
    before = in_db(conn_id)
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    monkeypatch.setenv(variable, json.dumps(conn))
    code = standin.issue_authorization_code(REDIRECT)
    status, out, err = exchange(capsys, conn_id, code)
    assert status == 1 and out == ""
    assert f"environment variable {variable}" in err and "--print-extra" in err
    assert code in standin.codes  # not spent: the user can still use it
    assert in_db(conn_id) == before

    status, out, err = exchange(capsys, conn_id, code, "--print-extra")
    assert status == 0, err
    (refresh_token,) = standin.refresh_tokens - {standin.refresh_token}
    assert json.loads(out) == {**conn["extra"], "auth_type": "oauth", "refresh_token": refresh_token}
    assert refresh_token not in err and variable in err
    assert in_db(conn_id) == before  # printed, not stored


def test_the_url_of_a_connection_without_a_client_id_is_refused(conn_id, capsys, monkeypatch):
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "gong"}))
    status, out, err = run(capsys, "url", "--conn-id", conn_id, "--redirect-uri", REDIRECT)
    assert status == 1 and out == "" and "client ID (login)" in err


def test_the_code_may_come_from_stdin_or_as_the_whole_redirect_url(
    standin, conn_id, tmp_path, capsys, monkeypatch
):
    """Off the command line (shell history, ps), or pasted as the address the browser ended on."""
    add_to_db(conn_id, oauth_app_connection(standin, tmp_path))
    code = standin.issue_authorization_code(REDIRECT)
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO(f"{REDIRECT}?code={quote(code)}&state=s\n"))
    status, _, err = exchange(capsys, conn_id, "-")
    assert status == 0, err
    assert standin.code_exchanges == 1


# -- the command as users run it: no secret in its output or log ---------------------------------------------


def command(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG", "PYTHONPATH": str(ROOT)}
    env.pop("_AIRFLOW_PROCESS_CONTEXT", None)
    return subprocess.run(
        [sys.executable, "-m", "airflow_provider_gong.oauth_setup", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_prints_and_logs_no_secret(standin, conn_id, tmp_path, monkeypatch):
    add_to_db(conn_id, oauth_app_connection(standin, tmp_path))
    code = standin.issue_authorization_code(REDIRECT)
    stored = command("exchange", "--conn-id", conn_id, "--code", code, "--redirect-uri", REDIRECT)
    assert stored.returncode == 0, stored.stderr
    assert "Stored" in stored.stdout
    refresh_token = in_db(conn_id)["extra"]["refresh_token"]

    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    monkeypatch.setenv(variable, json.dumps(oauth_app_connection(standin, tmp_path)))
    second = standin.issue_authorization_code(REDIRECT)
    printed = command(
        "exchange", "--conn-id", conn_id, "--code", second, "--redirect-uri", REDIRECT, "--print-extra"
    )
    assert printed.returncode == 0, printed.stderr
    (line,) = [line for line in printed.stdout.splitlines() if line.startswith("{")]  # Airflow logs too
    printed_token = json.loads(line)["refresh_token"]
    assert "generate-customer-token" in stored.stdout + stored.stderr  # urllib3's DEBUG line was logged

    for form in secret_forms(standin, code, second, refresh_token):
        assert form not in stored.stdout + stored.stderr
        assert form not in printed.stderr
        if form != printed_token:
            assert form not in printed.stdout


def test_the_next_task_creates_its_meeting_with_the_stored_token(standin, conn_id, tmp_path, capsys, run_dag):
    """A task reads the connection as a deployment's tasks do (through Airflow, from the metadata DB)."""
    import pendulum
    from airflow.sdk import DAG

    from airflow_provider_gong.operators.meetings import GongCreateMeetingOperator

    add_to_db(conn_id, oauth_app_connection(standin, tmp_path))
    assert exchange(capsys, conn_id, standin.issue_authorization_code(REDIRECT))[0] == 0
    with DAG(f"{conn_id}_dag", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")) as dag:
        GongCreateMeetingOperator(
            task_id="create",
            gong_conn_id=conn_id,
            start_time="{{ logical_date.add(days=2).isoformat() }}",
            end_time="{{ logical_date.add(days=2, hours=1).isoformat() }}",
            invitees="buyer@client.com",
            organizer_email="rep@acme.com",
        )
    assert run_dag(dag).state == "success"
    assert standin.created_count() == 1 and standin.oauth_counters()["refreshes"] == 1
