"""The lifecycle example DAG as a system test: a real ``dag.test()`` run against the stand-in."""

from __future__ import annotations

import pytest

from airflow_provider_gong._compat import DagBag
from tests.conftest import EXAMPLE_DAGS

pytestmark = pytest.mark.integration


def test_lifecycle_example_checks_creates_moves_and_deletes_one_meeting(
    run_dag, gong_connection, xcoms, task_states
):
    dag = DagBag(dag_folder=str(EXAMPLE_DAGS)).dags["gong_meeting_lifecycle"]
    dag_run = run_dag(dag)
    assert dag_run.state == "success", task_states(dag_run)
    (created,) = gong_connection.created
    values = xcoms(dag_run)
    meeting_id = values[("create_meeting", -1, "meeting_id")]
    assert meeting_id == created.meeting_id
    assert values[("reschedule_meeting", -1, "meeting_id")] == meeting_id
    assert values[("delete_meeting", -1, "return_value")] == {"meeting_id": meeting_id, "deleted": True}
    assert gong_connection.meetings == {}  # deleted at the end
    (status,) = values[("check_organizer", -1, "return_value")]
    assert status["email"] == "rep@acme.com"


def test_lifecycle_example_stops_before_creating_for_an_organizer_gong_refuses(
    run_dag, gong_connection, task_states
):
    gong_connection.users.discard("rep@acme.com")
    dag = DagBag(dag_folder=str(EXAMPLE_DAGS)).dags["gong_meeting_lifecycle"]
    dag_run = run_dag(dag)
    assert dag_run.state == "failed"
    assert task_states(dag_run)["check_organizer"][0] == "failed"
    assert gong_connection.created == []
