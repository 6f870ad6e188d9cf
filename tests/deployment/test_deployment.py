"""The provider in a real Airflow deployment, used the way a user uses it: through the REST API.

What ``dag.test()`` cannot show: DAG files parsed by the DAG processor, runs scheduled by the scheduler
and executed by LocalExecutor workers under the task supervisor (which masks secrets in task logs),
connections read from the PostgreSQL metadata database through the Execution API, the connection form
and the Test button served by the API server, the extra link resolved by the API server.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import sqlite3
from pathlib import Path

import pytest

from airflow_provider_gong import get_provider_info
from airflow_provider_gong._compat import has_declarative_connection_form
from tests._support.deployment import (
    MARKER_ENV,
    PG_ADMIN_URI,
    AirflowApi,
    LocalDeployment,
    free_port,
)
from tests.deployment.helpers import CREATE_DAG, NO_CONSENT_ORGANIZER, WAREHOUSE_DAG, Runs, find_leaks

pytestmark = pytest.mark.deployment

#: The wrong secret the Test button is tried with (must not come back either).
WRONG_SECRET = "wrong-Secret-Value-0451"


def gong_form() -> dict:
    return next(c for c in get_provider_info()["connection-types"] if c["connection-type"] == "gong")


def metadata_db(deployment: LocalDeployment):
    """A connection to the deployment's metadata database (psycopg is there: the fixture checked)."""
    import psycopg

    assert deployment.database, "the deployment did not create a PostgreSQL database"
    return psycopg.connect(PG_ADMIN_URI, dbname=deployment.database, autocommit=True)


# -- the deployment itself ------------------------------------------------------------------------


def test_api_requires_a_login(deployment: LocalDeployment):
    anonymous = AirflowApi(deployment.url)
    anonymous.request("GET", "/api/v2/dags", expected=(401,))
    anonymous.request("POST", "/auth/token", json={"username": "admin", "password": "nope"}, expected=(401,))
    dags = deployment.api.get("/api/v2/dags")["dags"]
    assert {d["dag_id"] for d in dags} == {CREATE_DAG, WAREHOUSE_DAG}


def test_components_share_one_postgresql_database(deployment: LocalDeployment):
    health = deployment.health()
    for component in ("metadatabase", "scheduler", "dag_processor"):
        assert health[component]["status"] == "healthy", health
    # The process scan the clean-up check relies on sees every component and what it forked.
    commands = list(deployment.processes().values())
    for component in ("api_server", "scheduler", "dag-processor", "serve-logs", "LocalExecutor"):
        assert any(component in command for command in commands), (component, commands)
    # The API server answers from the throwaway database the DAG processor wrote to.
    with metadata_db(deployment) as conn:
        dag_ids = {row[0] for row in conn.execute("SELECT dag_id FROM dag")}
    assert dag_ids == {CREATE_DAG, WAREHOUSE_DAG}


def test_connections_live_in_the_metadata_database_encrypted(deployment: LocalDeployment):
    stored = {c["connection_id"]: c for c in deployment.api.get("/api/v2/connections")["connections"]}
    assert {"gong_default", "gong_bearer", "warehouse"} <= set(stored)
    gong = stored["gong_default"]
    assert (gong["conn_type"], gong["host"], gong["login"]) == (
        "gong",
        deployment.standin.url,
        deployment.gong_key,
    )
    assert deployment.gong_secret not in str(stored), "the API returned the access key secret"
    with metadata_db(deployment) as conn:
        password, is_encrypted = conn.execute(
            "SELECT password, is_encrypted FROM connection WHERE conn_id = 'gong_default'"
        ).fetchone()
    assert is_encrypted and password and deployment.gong_secret not in password
    # ...and not in the environment: no process of the deployment has an AIRFLOW_CONN_* variable
    # (the scheduler and DAG processor keep a readable environment; setproctitle overwrites others').
    checked = 0
    for (pid, _), command in deployment.processes().items():
        with contextlib.suppress(OSError):
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if f"{MARKER_ENV}={deployment.marker}".encode() in environ:
                checked += 1
                assert not [v for v in environ if v.startswith(b"AIRFLOW_CONN_")], command
    assert checked >= 2


# -- the connection form and the Test button (served by the API server) -----------------------------


def test_connection_form_is_the_declared_one(deployment: LocalDeployment):
    # The React UI builds the form from this private UI endpoint (there is no /api/v2 equivalent).
    metas = deployment.api.get("/ui/connections/hook_meta")
    gong = next(m for m in metas if m["connection_type"] == "gong")
    declared = gong_form()
    assert gong["hook_class_name"] == "airflow_provider_gong.hooks.gong.GongHook"
    assert gong["hook_name"] == "Gong"
    standard = gong["standard_fields"]
    assert standard["port"]["hidden"] and standard["url_schema"]["hidden"]
    assert not standard["host"]["hidden"] and not standard["login"]["hidden"]
    assert standard["host"]["title"] == "API base URL"
    assert standard["login"]["title"].startswith("Access key")
    assert "secret" in standard["password"]["title"].lower()
    for field, label in declared["ui-field-behaviour"]["relabeling"].items():
        assert standard[field]["title"] == label, field
    for field, placeholder in declared["ui-field-behaviour"]["placeholders"].items():
        assert standard[field]["placeholder"] == placeholder, field
    # Every declared extra field, with its label, type and default; the token renders as a password.
    extra = gong["extra_fields"]
    if not has_declarative_connection_form():
        # Airflow 3.1 builds extra fields only from Flask-AppBuilder widgets, which this provider does
        # not ship: there the extras are edited in the Extra JSON (README, compatibility table).
        assert extra is None
        return
    assert set(extra) == set(declared["conn-fields"])
    assert {"timeout", "auth_type", "access_token", "rate_limit_per_second", "daily_quota"} <= set(extra)
    for name, spec in declared["conn-fields"].items():
        assert extra[name]["schema"]["title"] == spec["label"], name
        assert extra[name]["schema"]["type"] == spec["schema"]["type"], name
    assert extra["access_token"]["schema"]["format"] == "password"
    assert extra["auth_type"]["value"] == "auto"
    assert "number" in extra["timeout"]["schema"]["type"]


def forbidden(deployment: LocalDeployment) -> dict[str, str]:
    """Every credential form that must never reach a message or a log."""
    wrong_pair = f"{deployment.gong_key}:{WRONG_SECRET}"
    return {
        **deployment.secrets(),
        "wrong secret": WRONG_SECRET,
        "Basic value of the wrong secret": base64.b64encode(wrong_pair.encode()).decode(),
    }


def assert_no_secret(message: str, deployment: LocalDeployment) -> None:
    leaked = [what for what, value in forbidden(deployment).items() if value in message]
    assert not leaked, f"{leaked} in {message!r}"


def test_test_button_good_credentials(deployment: LocalDeployment):
    url = deployment.standin.url
    # The stored connection, as the edit form sends it: the password comes back masked, and the API
    # server tests with the stored one.
    stored = deployment.test_connection(
        {
            "connection_id": "gong_default",
            "conn_type": "gong",
            "host": url,
            "login": deployment.gong_key,
            "password": "***",
            "extra": None,
        }
    )
    # A new connection, not saved yet.
    new = deployment.test_connection(
        {
            "connection_id": "gong_new",
            "conn_type": "gong",
            "host": url,
            "login": deployment.gong_key,
            "password": deployment.gong_secret,
        }
    )
    bearer = deployment.test_connection({"connection_id": "gong_bearer", "conn_type": "gong", "host": url})
    for answer in (stored, new, bearer):
        assert answer["status"] is True, answer
        assert url in answer["message"] and "users" in answer["message"], answer
        assert_no_secret(answer["message"], deployment)


def test_test_button_wrong_secret_says_credentials_refused(deployment: LocalDeployment):
    answer = deployment.test_connection(
        {
            "connection_id": "gong_default",
            "conn_type": "gong",
            "host": deployment.standin.url,
            "login": deployment.gong_key,
            "password": WRONG_SECRET,
        }
    )
    assert answer["status"] is False, answer
    message = answer["message"]
    assert re.search(r"\b(rejected|refused)\b.*\bcredentials\b", message, re.I), message
    assert "401" in message or "access key" in message.lower(), message
    # The stand-in echoed the Authorization header (with the wrong secret) into its error body.
    assert_no_secret(message, deployment)


def test_test_button_wrong_host_says_host_unreachable(deployment: LocalDeployment):
    port = free_port()  # nothing listens there
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    answer = deployment.test_connection(
        {
            "connection_id": "gong_default",
            "conn_type": "gong",
            "host": f"http://127.0.0.1:{port}",
            "login": deployment.gong_key,
            "password": deployment.gong_secret,
        }
    )
    assert answer["status"] is False, answer
    message = answer["message"]
    assert re.search(r"could not (connect|reach)", message, re.I), message
    assert f"127.0.0.1:{port}" in message and "host" in message.lower(), message
    assert_no_secret(message, deployment)


# -- DAG runs triggered through the REST API ---------------------------------------------------------


def test_create_meeting_run(deployment: LocalDeployment, runs: Runs):
    run = runs.created
    assert run.state == "success", deployment.diagnostics(run.dag_id, run.run_id)
    states = {ti["task_id"]: ti["state"] for ti in deployment.task_instances(run.dag_id, run.run_id)}
    assert states == {"create_meeting": "success", "share_link": "success"}

    meeting_id = deployment.xcom(run.dag_id, run.run_id, "create_meeting", "meeting_id")
    meeting_url = deployment.xcom(run.dag_id, run.run_id, "create_meeting", "meeting_url")
    # The meeting exists at the stand-in, made from the run's conf, under the run's external id.
    made = {c.meeting_id: c.payload for c in deployment.standin.created}
    assert isinstance(meeting_id, str) and meeting_id in made, (meeting_id, list(made))
    # What the UI's XCom tab is sent (it asks with deserialize=true): `meeting_id_display` is the exact
    # ID on every supported Airflow; `meeting_id` reaches the browser as a number there (rounded beyond
    # 2**53 by JSON.parse), which is why the display key exists (issue 21).
    shown = deployment.xcom(run.dag_id, run.run_id, "create_meeting", "meeting_id_display", deserialize=True)
    assert shown == meeting_id, (shown, meeting_id)
    payload = made[meeting_id]
    assert payload["title"] == runs.title
    assert payload["externalId"] == f"{CREATE_DAG}:{run.run_id}"
    assert payload["organizerEmail"] == "rep@acme.com"
    assert [i["email"] for i in payload["invitees"]] == ["buyer@client.com", "cfo@client.com"]
    assert meeting_url.startswith("https://join.gong.io/acme/rep?tkn=")
    assert deployment.xcom(run.dag_id, run.run_id, "create_meeting", "gong_outcome") == "created"
    assert (
        deployment.xcom(run.dag_id, run.run_id, "share_link") == f"Gong meeting {meeting_id}: {meeting_url}"
    )
    # The "Gong meeting" button, as the API server resolves it for the UI.
    assert deployment.extra_links(run.dag_id, run.run_id, "create_meeting") == {"Gong meeting": meeting_url}


def test_refused_meeting_run_fails_at_once(deployment: LocalDeployment, runs: Runs):
    run = runs.refused
    assert run.state == "failed", deployment.diagnostics(run.dag_id, run.run_id)
    tis = {ti["task_id"]: ti for ti in deployment.task_instances(run.dag_id, run.run_id)}
    assert (tis["create_meeting"]["state"], tis["create_meeting"]["try_number"]) == ("failed", 1)
    assert tis["share_link"]["state"] == "upstream_failed"
    assert deployment.xcom(run.dag_id, run.run_id, "create_meeting", "gong_outcome") == "rejected"
    assert not [c for c in deployment.standin.created if c.payload["organizerEmail"] == NO_CONSENT_ORGANIZER]
    assert not any(deployment.extra_links(run.dag_id, run.run_id, "create_meeting").values())


def test_warehouse_run(deployment: LocalDeployment, runs: Runs):
    run = runs.warehouse
    assert run.state == "success", deployment.diagnostics(run.dag_id, run.run_id)
    rows = deployment.warehouse_rows
    summary = deployment.xcom(run.dag_id, run.run_id, "create_meetings")
    assert (summary["created"], summary["failed"]) == (rows, 2), summary
    # Every good row has exactly one meeting at the stand-in, and the ledger says which.
    expected = {f"crm-evt-{1000 + i}" for i in range(1, rows + 1)}
    batch = {c.payload["externalId"]: c.meeting_id for c in deployment.standin.created}
    assert expected <= set(batch)
    assert deployment.standin.duplicates() == {}
    with contextlib.closing(sqlite3.connect(deployment.warehouse_path)) as conn:
        ledger = dict(
            conn.execute("SELECT row_key, status || ':' || COALESCE(meeting_id, '') FROM gong_meeting_ledger")
        )
    assert ledger == {
        **{str(i): f"created:{batch[f'crm-evt-{1000 + i}']}" for i in range(1, rows + 1)},
        str(rows + 1): "failed:",
        str(rows + 2): "failed:",
    }


def test_logs_hold_no_secret(deployment: LocalDeployment, runs: Runs):
    """The supervisor's task logs (and every component's output) never show a credential, even where
    Gong's error body echoed the Authorization header (the refused run)."""
    logs = {}
    for run in (runs.created, runs.refused, runs.warehouse):
        for path in deployment.task_log_files(run.dag_id, run.run_id):
            task = next(p.removeprefix("task_id=") for p in path.parts if p.startswith("task_id="))
            logs[(run.dag_id, run.run_id, task)] = path.read_text()
    created_log = logs[(CREATE_DAG, runs.created.run_id, "create_meeting")]
    refused_log = logs[(CREATE_DAG, runs.refused.run_id, "create_meeting")]
    warehouse_log = logs[(WAREHOUSE_DAG, runs.warehouse.run_id, "create_meetings")]
    # The scan reads the right files: each holds what its task did.
    meeting_id = deployment.xcom(CREATE_DAG, runs.created.run_id, "create_meeting", "meeting_id")
    assert meeting_id in created_log
    assert "consent page is not enabled" in refused_log
    first_row = next(
        c.meeting_id for c in deployment.standin.created if c.payload["externalId"] == "crm-evt-1001"
    )
    assert f"Row 1: created Gong meeting {first_row}" in warehouse_log
    files = deployment.all_log_files()
    assert len(files) >= len(logs) + 3, files  # task logs, DAG processor logs, component output
    assert find_leaks(files, forbidden(deployment)) == []


def test_stop_leaves_nothing_behind(deployment: LocalDeployment, runs: Runs):
    database, port = deployment.database, deployment.port
    assert database and deployment.database_exists(database)
    leftovers = deployment.stop()
    assert leftovers == [], leftovers
    assert deployment.processes() == {}
    assert not deployment.database_exists(database)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the API server still listens"
