"""The transfer operator: arguments checked at parse time, the claim token, and execute() delegating
to sync/ (a dry run, a busy ledger, row errors) on a SQLite warehouse against the Gong stand-in."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import pytest

from airflow_provider_gong.exceptions import GongBatchRowErrors, GongValidationError
from airflow_provider_gong.sync.claims import claim_token
from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator, _truthy
from tests._support.warehouse import create_meetings_table, demo_rows, insert_meetings


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"sync_mode": "merge"}, GongValidationError, "sync_mode must be one of create, upsert, mirror"),
        ({"max_deletes": -3}, GongValidationError, "max_deletes must be a count"),
        ({"columns": {"when": "x"}}, ValueError, "unknown meeting fields"),
        ({"page_size": 0}, ValueError, "page_size must be >= 1"),
        ({"claim_window": 101}, ValueError, "claim_window must be None"),
        ({"lease_seconds": 1}, ValueError, "lease_seconds must be >= 4"),
    ],
)
def test_mistakes_in_the_dag_file_fail_at_parse_time(kwargs, error, match):
    with pytest.raises(error, match=match):
        SqlToGongMeetingsOperator(task_id="t", table="m", **kwargs)


def test_templated_values_are_checked_when_rendered():
    op = SqlToGongMeetingsOperator(
        task_id="t", table="m", sync_mode="{{ params.mode }}", max_deletes="{{ x }}"
    )
    assert op.sync_mode == "{{ params.mode }}"
    assert op.columns["key"] == "id" and op.columns["cancelled"] == "cancelled"


@pytest.mark.parametrize(
    "value, truth",
    [("False", False), ("0", False), (" off ", False), ("", False), ("yes", True), (True, True)],
)
def test_templated_flags_render_as_text(value, truth):
    assert _truthy(value) is truth


def test_the_claim_token_names_the_task_attempt_and_is_unique():
    ti = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=3, try_number=2)
    token = claim_token({"ti": ti})
    assert token.startswith("d/t[3]/r/try2@") and token != claim_token({"ti": ti})
    assert claim_token({}).startswith("manual@")


@pytest.fixture
def warehouse(tmp_path, monkeypatch, gong_standin):
    conn_id = f"wh_{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")})
    )
    monkeypatch.setenv("AIRFLOW_CONN_GONG_DEFAULT", gong_standin.connection_json(rate_limit_per_second=500))
    from airflow.sdk import BaseHook

    hook = BaseHook.get_hook(conn_id)
    create_meetings_table(hook, "m")
    insert_meetings(hook, demo_rows(3), "m")  # 3 good rows and 2 bad ones
    return SimpleNamespace(conn_id=conn_id, hook=hook, gong=gong_standin)


def operator(warehouse, **kwargs) -> SqlToGongMeetingsOperator:
    return SqlToGongMeetingsOperator(
        task_id="t", sql_conn_id=warehouse.conn_id, table="m", ledger_table="led", **kwargs
    )


def test_a_dry_run_returns_its_plan_and_sends_and_writes_nothing(warehouse):
    summary = operator(warehouse, dry_run="True").execute({})
    assert summary["dry_run"] is True and summary["counts"]["create"] == 4  # the unknown organizer too
    assert summary["counts"]["invalid"] == 1 and summary["gong_calls"] == 4 and summary["guard"] is None
    assert warehouse.gong.log == []
    assert warehouse.hook.get_first("SELECT name FROM sqlite_master WHERE name = 'led'") is None


def test_a_run_returns_its_summary_and_fails_while_rows_need_attention(warehouse):
    op = operator(warehouse)
    with pytest.raises(GongBatchRowErrors, match=r"2 row\(s\) failed in this run"):
        op.execute({})
    assert op.summary["created"] == 3 and op.summary["gong_calls"] == 4  # kept for lineage
    again = operator(warehouse, fail_on_row_errors=False).execute({})
    assert (again["created"], again["skipped_created"], again["skipped_failed"]) == (0, 3, 2)


def test_a_busy_ledger_ends_the_run_without_touching_a_row(warehouse):
    holder = ResultsLedger(warehouse.hook, "led", owner="dag/other")
    holder.ensure_table()
    holder.acquire(0)
    try:
        summary = operator(warehouse, lease_wait_seconds=0).execute({})
    finally:
        holder.close()
    assert summary["ledger_busy"] is True and summary["held_by"] == "dag/other" and summary["created"] == 0
    assert warehouse.gong.log == []
