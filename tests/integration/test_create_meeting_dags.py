"""Real Airflow runs (dag.test on a SQLite metadata DB) against the stand-in over loopback."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pendulum
import pytest
import requests
from airflow.sdk import DAG

from airflow_provider_gong._compat import DagBag, has_task_state_store
from airflow_provider_gong.operators.meetings import GongCreateMeetingOperator
from airflow_provider_gong.testing import GongStandIn
from tests.conftest import EXAMPLE_DAGS
from tests.dates import SOON

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-Access-Key-Secret-Value"
TOKEN = "bearer-T0KEN-value-for-masking"


def test_example_dags_import_cleanly():
    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))
    assert bag.import_errors == {}
    assert "gong_create_meeting" in bag.dags


def test_example_dag_creates_a_meeting_and_passes_it_downstream(run_dag, gong_connection, xcoms):
    dag = DagBag(dag_folder=str(EXAMPLE_DAGS)).dags["gong_create_meeting"]
    dag_run = run_dag(dag)
    assert dag_run.state == "success"
    (created,) = gong_connection.created
    values = xcoms(dag_run)
    assert values[("create_meeting", -1, "meeting_id")] == created.meeting_id
    url = values[("create_meeting", -1, "meeting_url")]
    assert url.startswith("https://join.gong.io/acme/rep")
    assert values[("create_meeting", -1, "return_value")]["meeting_id"] == created.meeting_id
    assert values[("share_link", -1, "return_value")] == f"Gong meeting {created.meeting_id}: {url}"
    # The extra link resolves to the meeting URL (Airflow 3 stores it at task end).
    assert values[("create_meeting", -1, "_link_GongMeetingLink")] == url
    # Templated, native-rendered values reached Gong with explicit offsets.
    assert created.payload["invitees"] == [{"email": "buyer@client.com"}]
    assert created.payload["startTime"].endswith("+00:00")
    assert created.payload["externalId"].startswith("gong_create_meeting:")


def _inline_dag(dag_id: str, **op_args) -> DAG:
    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False) as dag:
        GongCreateMeetingOperator(
            task_id="create",
            start_time="{{ logical_date.add(days=2).isoformat() }}",
            end_time="{{ logical_date.add(days=2, hours=1).isoformat() }}",
            invitees="buyer@client.com; cto@client.com",
            organizer_email="{{ params.organizer }}",
            title="Inline {{ ds }}",
            params={"organizer": "ae@acme.com"},
            **op_args,
        )
    return dag


def test_inline_dag_with_templated_arguments(run_dag, gong_connection, xcoms):
    dag_run = run_dag(_inline_dag("gong_inline"))
    assert dag_run.state == "success"
    (created,) = gong_connection.created
    assert created.payload["organizerEmail"] == "ae@acme.com"
    assert created.payload["title"].startswith("Inline 20")
    assert [i["email"] for i in created.payload["invitees"]] == ["buyer@client.com", "cto@client.com"]
    assert xcoms(dag_run)[("create", -1, "meeting_id")] == created.meeting_id


def test_permanent_failure_is_not_retried_by_airflow(run_dag, gong_connection, task_states):
    dag = _inline_dag("gong_inline_404", retries=3)
    gong_connection.users.discard("ae@acme.com")  # the organizer is no Gong user -> 404
    dag_run = run_dag(dag)
    assert dag_run.state == "failed"
    state, try_number = task_states(dag_run)["create"]
    assert state == "failed" and try_number == 1  # not up_for_retry despite retries=3
    assert gong_connection.created_count() == 0


SECRETS_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_gong.operators.meetings import GongCreateMeetingOperator

with DAG("gong_secrets", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")) as dag:
    for conn_id in ("gong_basic_ok", "gong_bearer_ok", "gong_basic_rejected", "gong_bearer_rejected"):
        GongCreateMeetingOperator(
            task_id=conn_id,
            gong_conn_id=conn_id,
            start_time="SOONT10:00:00Z",
            end_time="SOONT10:30:00Z",
            invitees=["buyer@client.com"],
            organizer_email="rep@acme.com",
        )
""".replace("SOON", SOON)
RUNNER = """
import os, sys
from airflow_provider_gong._compat import DagBag
from airflow.utils.db import initdb
initdb()
dag_run = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).dags["gong_secrets"].test()
from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
from airflow.models.taskinstance import TaskInstance as TI
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
with create_session() as session:
    for ti in session.query(TI).filter(TI.run_id == dag_run.run_id):
        print("STATE", ti.task_id, ti.state)
    print("XCOM", [x.value for x in session.query(XComModel).filter(XComModel.run_id == dag_run.run_id)])
    print("RENDERED", [r.rendered_fields for r in session.query(RTIF).filter(RTIF.run_id == dag_run.run_id)])
"""


def _has_namespace_log_levels() -> bool:
    """``[logging] namespace_levels`` exists (Airflow >= 3.2); 3.1 has only the global level, and a global
    DEBUG would print Airflow's own in-process supervisor messages, secrets included."""
    from airflow.configuration import conf

    return "namespace_levels" in conf.configuration_description.get("logging", {}).get("options", {})


def test_no_secret_in_task_logs_xcom_or_rendered_fields(tmp_path):
    """A whole Airflow run in a fresh process, its output captured as the task log would be.

    dag.test() runs tasks in-process and prints their log lines *unmasked*, so this catches any place
    where our code itself would log, raise or render a secret, on success and on a 401 failure, with
    the hook's DEBUG logging on.
    """
    with (
        GongStandIn(access_key_secret=SECRET, access_token=TOKEN) as accepting,
        GongStandIn(access_key_secret="other-secret-value", access_token="other-token-value") as rejecting,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
        for auth in ("basic", "bearer"):
            for outcome, standin in (("ok", accepting), ("rejected", rejecting)):
                conn = standin.connection(auth=auth)
                conn.update(login=standin.access_key, password=SECRET) if auth == "basic" else None
                conn["extra"]["access_token"] = TOKEN if auth == "bearer" else None
                env[f"AIRFLOW_CONN_GONG_{auth.upper()}_{outcome.upper()}"] = json.dumps(conn)
        (tmp_path / "gong_secrets.py").write_text(SECRETS_DAG)
        env["AIRFLOW__CORE__DAGS_FOLDER"] = str(tmp_path)
        # DEBUG for our loggers only: Airflow's own in-process supervisor prints MaskSecret values at DEBUG.
        env["AIRFLOW__LOGGING__NAMESPACE_LEVELS"] = "airflow_provider_gong=DEBUG airflow.task.hooks=DEBUG"
        run = subprocess.run(
            [sys.executable, "-c", RUNNER], env=env, capture_output=True, text=True, timeout=300
        )
        created = accepting.created_count()
        rejected = [status for _, _, status in rejecting.log]
    output = run.stdout + run.stderr
    assert "STATE gong_basic_ok success" in output and "STATE gong_bearer_ok success" in output, output[
        -3000:
    ]
    assert "STATE gong_basic_rejected failed" in output and "STATE gong_bearer_rejected failed" in output
    assert created == 2 and rejected == [401, 401]
    assert "Created Gong meeting" in output  # the operator's log lines are in what we searched
    assert "rejected the credentials" in output  # and so is the 401 error
    if _has_namespace_log_levels():  # Airflow 3.1 cannot turn on DEBUG for our loggers alone
        assert "POST /v2/meetings -> 200" in output  # and the hook's DEBUG lines
    basic = base64.b64encode(f"standin-key:{SECRET}".encode()).decode()
    for secret in (SECRET, TOKEN, basic):
        assert secret not in output


@pytest.mark.parametrize("auth", ["basic", "bearer"])
def test_secret_and_derived_header_are_registered_with_airflows_masker(monkeypatch, auth):
    """On a real worker the supervisor redacts task logs with the masker; the hook must feed it the
    secret, the token and the derived base64 header value (which Airflow cannot know about)."""
    from airflow.sdk._shared.secrets_masker import redact

    from airflow_provider_gong.hooks.gong import GongHook

    with GongStandIn(access_key_secret=SECRET + auth, access_token=TOKEN + auth) as standin:
        monkeypatch.setenv("AIRFLOW_CONN_GONG_MASKED", standin.connection_json(auth=auth))
        session = GongHook("gong_masked").session
        header = session.prepare_request(requests.Request("GET", standin.url)).headers["Authorization"]
    credential = header.split(" ", 1)[1]
    secret = SECRET + auth if auth == "basic" else TOKEN + auth
    redacted = redact(f"Authorization: {header}; raw={secret}")
    assert credential not in redacted
    assert secret not in redacted
    assert redacted.count("***") == 2


class _FailsAfterThePostOnce(GongCreateMeetingOperator):
    """Fault injection: the first try dies after Gong created the meeting (XCom push fails)."""

    def _push(self, ti, result):
        if ti.try_number == 1:
            raise RuntimeError("worker lost its XCom backend right after the POST")
        super()._push(ti, result)


def test_a_failure_after_the_post_is_not_a_second_meeting_on_airflow_retry(
    run_dag, gong_connection, xcoms, task_states
):
    with DAG(
        "gong_retry_after_post", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")
    ) as dag:
        _FailsAfterThePostOnce(
            task_id="create",
            start_time="{{ logical_date.add(days=2).isoformat() }}",
            end_time="{{ logical_date.add(days=2, hours=1).isoformat() }}",
            invitees="buyer@client.com",
            organizer_email="rep@acme.com",
            retries=2,
            retry_delay=0,
        )
    dag_run = run_dag(dag)
    (created,) = gong_connection.created  # one meeting, whatever this Airflow offers
    if has_task_state_store():  # Airflow >= 3.3: the retry finds the stored result and finishes the job
        assert dag_run.state == "success"
        assert task_states(dag_run)["create"] == ("success", 2)
        assert xcoms(dag_run)[("create", -1, "meeting_id")] == created.meeting_id
    else:  # older Airflow: nowhere to keep the result across tries, so the failure is made permanent
        assert dag_run.state == "failed"
        assert task_states(dag_run)["create"] == ("failed", 1)  # not retried despite retries=2
        assert xcoms(dag_run)[("create", -1, "gong_outcome")] == "unknown"  # never "nothing created"


def test_example_dag_runs_without_a_logical_date(run_dag, gong_connection, xcoms):
    """As `airflow dags trigger` or the REST API with logical_date null start it."""
    dag = DagBag(dag_folder=str(EXAMPLE_DAGS)).dags["gong_create_meeting"]
    dag_run = run_dag(dag, logical_date=None)
    assert dag_run.state == "success" and dag_run.logical_date is None
    (created,) = gong_connection.created
    start = pendulum.parse(created.payload["startTime"])
    assert start > pendulum.now("UTC") and (start.minute, start.second) == (0, 0)
    assert pendulum.parse(created.payload["endTime"]) == start.add(minutes=30)
    assert xcoms(dag_run)[("create_meeting", -1, "meeting_id")] == created.meeting_id
