"""The settle example DAG as a system test: real ``dag.test()`` runs on a SQLite warehouse."""

from __future__ import annotations

import json

import pytest

from airflow_provider_gong._compat import DagBag
from tests.conftest import EXAMPLE_DAGS
from tests.integration.helpers import LedgerRun, ledger_row

pytestmark = pytest.mark.integration
LEDGER = "gong_meeting_ledger"  # the DAG's default


@pytest.fixture(scope="module")
def settle_dag():
    return DagBag(dag_folder=str(EXAMPLE_DAGS / "gong_settle_pending.py")).dags["gong_settle_pending"]


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    """The connection the DAG's defaults name, on a fresh SQLite file (no ledger yet)."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")})
    )


def test_with_its_defaults_it_lists_and_succeeds_where_no_ledger_exists_yet(
    settle_dag, run_dag, warehouse, xcoms
):
    dag_run = run_dag(settle_dag)
    assert dag_run.state == "success"
    assert xcoms(dag_run)[("settle_pending", -1, "return_value")] == {"ledger_table": LEDGER, "pending": []}


def test_it_lists_then_settles_a_row_and_refuses_one_that_is_not_pending(
    settle_dag, run_dag, warehouse, xcoms, task_states
):
    run = LedgerRun(LEDGER)
    run.lost_answer("crm-1")
    run.close()
    listed = run_dag(settle_dag)
    assert listed.state == "success"
    (row,) = xcoms(listed)[("settle_pending", -1, "return_value")]["pending"]
    assert (row["row_key"], row["error_kind"], row["request_id"]) == ("crm-1", "unknown", "req-crm-1")
    conf = {"row_key": "crm-1", "outcome": "created", "meeting_id": "7782342274025937895"}
    settled = run_dag(settle_dag, run_conf=conf)
    assert settled.state == "success", task_states(settled)
    result = xcoms(settled)[("settle_pending", -1, "return_value")]
    assert result["before"]["status"] == "pending" and result["after"]["meeting_id"] == "7782342274025937895"
    now = ledger_row(LEDGER, "crm-1")
    assert now["status"] == "created" and now["meeting_id"] == "7782342274025937895"
    assert now["claimed_by"].startswith("settle:gong_settle_pending/settle_pending/")
    refused = run_dag(settle_dag, run_conf={**conf, "outcome": "failed", "meeting_id": None})
    assert refused.state == "failed"
    assert ledger_row(LEDGER, "crm-1")["status"] == "created"
