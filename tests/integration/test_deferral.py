"""Quota deferral in real Airflow runs: Gong answers 429 with a Retry-After beyond ``max_retry_wait``,
a deferrable task hands the wait to a DateTimeTrigger (run inline by ``dag.test()``) and resumes; a
task that is not deferrable fails as before, with the wait in the error."""

from __future__ import annotations

import pendulum
import pytest
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import DAG

from airflow_provider_gong._compat import TaskDeferred
from airflow_provider_gong.exceptions import GongRateLimitError
from airflow_provider_gong.operators.meetings import (
    GongCreateMeetingOperator,
    GongDeleteMeetingOperator,
    GongUpdateMeetingOperator,
)
from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator
from tests._support.warehouse import demo_rows
from tests.dates import SOON
from tests.integration.helpers import ledger, operator, seed

pytestmark = pytest.mark.integration

RETRY_AFTER = 2  # seconds Gong asks for: more than max_retry_wait, so the hook gives up at once


@pytest.fixture
def quota_gong(gong_standin, monkeypatch):
    """A fast-paced connection that will not wait more than half a second for Gong's quota."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_GONG_DEFAULT",
        gong_standin.connection_json(rate_limit_per_second=500, max_retry_wait=0.5),
    )
    return gong_standin


def _quota_spent_at_call(standin, n: int) -> None:
    if n > 1:
        standin.inject("delay", times=n - 1, delay=0, match="POST /v2/meetings")
    standin.inject("status", status=429, retry_after=RETRY_AFTER, times=1, match="POST /v2/meetings")


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)


def test_a_deferrable_batch_waits_out_the_quota_and_resumes_from_its_ledger(
    warehouse, quota_gong, run_dag, task_states
):
    seed(warehouse, demo_rows(8, bad=False))
    _quota_spent_at_call(quota_gong, 4)
    with _dag(f"gong_batch_deferral_{warehouse['kind']}") as dag:
        SqlToGongMeetingsOperator(
            task_id="batch", table=warehouse["table"], ledger_table=warehouse["ledger"], deferrable=True
        )
    started = pendulum.now("UTC")
    dag_run = run_dag(dag)
    assert dag_run.state == "success" and task_states(dag_run)["batch"][0] == "success"
    assert (pendulum.now("UTC") - started).total_seconds() >= RETRY_AFTER  # it did wait
    assert quota_gong.created_count() == 8 and quota_gong.duplicates() == {}  # every row once
    assert all(r["status"] == "created" for r in ledger(warehouse).values())


def test_the_deferral_carries_a_trigger_for_gongs_wait_and_the_resume_adds_up(warehouse, quota_gong):
    """The defer itself, outside dag.test (which drops a deferral's kwargs when it runs the trigger
    inline): a DateTimeTrigger at Gong's Retry-After, resumed in execute_complete with the counts."""
    seed(warehouse, demo_rows(8, bad=False))
    _quota_spent_at_call(quota_gong, 4)
    op = operator(warehouse, deferrable=True)
    before = pendulum.now("UTC")
    with pytest.raises(TaskDeferred) as info:
        op.execute({})
    deferred = info.value
    assert isinstance(deferred.trigger, DateTimeTrigger) and deferred.method_name == "execute_complete"
    wait = (deferred.trigger.moment - before).total_seconds()
    assert RETRY_AFTER <= wait < RETRY_AFTER + 5
    assert deferred.kwargs["earlier"]["created"] == 3 and deferred.kwargs["earlier"]["deferrals"] == 1
    summary = op.execute_complete({}, event=None, **deferred.kwargs)
    assert (summary["created"], summary["deferrals"]) == (8, 1)
    assert quota_gong.created_count() == 8 and quota_gong.duplicates() == {}


def test_a_batch_that_is_not_deferrable_fails_with_the_wait_in_the_error(warehouse, quota_gong):
    seed(warehouse, demo_rows(4, bad=False))
    _quota_spent_at_call(quota_gong, 2)
    with pytest.raises(GongRateLimitError) as info:
        operator(warehouse, deferrable=False).execute({})
    assert info.value.retry_after == RETRY_AFTER and str(RETRY_AFTER) in str(info.value)
    rows = ledger(warehouse)  # the refused row is a transient failure, the rest untouched
    assert rows["1"]["status"] == "created" and rows["2"]["error_kind"] == "transient"
    assert set(rows) == {"1", "2"}


def test_a_deferrable_create_waits_out_the_quota_then_creates_once(quota_gong, run_dag, xcoms):
    _quota_spent_at_call(quota_gong, 1)
    with _dag("gong_create_deferral") as dag:
        GongCreateMeetingOperator(
            task_id="create",
            start_time=f"{SOON}T15:00:00Z",
            end_time=f"{SOON}T15:30:00Z",
            invitees="buyer@client.com",
            organizer_email="rep@acme.com",
            deferrable=True,
        )
    dag_run = run_dag(dag)
    assert dag_run.state == "success"
    (created,) = quota_gong.created
    values = xcoms(dag_run)
    assert values[("create", -1, "meeting_id")] == created.meeting_id
    assert values[("create", -1, "gong_outcome")] == "created"


def test_a_spent_daily_budget_defers_until_the_reset_and_the_resume_sends_each_row_once(
    warehouse, gong_standin, monkeypatch, tmp_path, capsys
):
    """The shared budget (daily_quota=3) runs out at row 4: the start line said the run would not fit,
    the batch defers until the next UTC midnight, and once the budget allows (raised here, as a new day
    would) the resume sends rows 4 and 5, each once; the summary adds up both legs."""
    seed(warehouse, demo_rows(5, bad=False))

    def connect(budget: int) -> None:
        monkeypatch.setenv(
            "AIRFLOW_CONN_GONG_DEFAULT",
            gong_standin.connection_json(
                rate_limit_per_second=500, daily_quota=budget, quota_dir=str(tmp_path / "quota")
            ),
        )

    connect(3)
    op = operator(warehouse, deferrable=True)
    with pytest.raises(TaskDeferred) as info:
        op.execute({})
    said = capsys.readouterr().out  # the operator's own log lines
    assert "0 of 3 calls used, 3 left" in said and "does NOT fit" in said
    deferred = info.value
    midnight = pendulum.now("UTC").add(days=1).start_of("day")
    assert abs((deferred.trigger.moment - midnight).total_seconds()) < 5
    assert gong_standin.created_count() == 3 and deferred.kwargs["earlier"]["created"] == 3
    connect(10)
    summary = op.execute_complete({}, event=None, **deferred.kwargs)
    assert (summary["created"], summary["deferrals"], summary["gong_calls"]) == (5, 1, 2)
    assert gong_standin.created_count() == 5 and gong_standin.duplicates() == {}
    assert summary["quota_left"] == 10 - 5


def _existing_meeting(standin) -> str:
    from airflow_provider_gong.hooks.gong import GongHook
    from airflow_provider_gong.meetings import Meeting

    meeting = Meeting.build(
        start_time=f"{SOON}T15:00:00Z",
        end_time=f"{SOON}T15:30:00Z",
        invitees="buyer@client.com",
        organizer_email="rep@acme.com",
        title="Before",
    )
    return GongHook().create_meeting(meeting).meeting_id


def _update(meeting_id: str, **kwargs) -> GongUpdateMeetingOperator:
    return GongUpdateMeetingOperator(
        task_id="update",
        meeting_id=meeting_id,
        start_time=f"{SOON}T16:00:00Z",
        end_time=f"{SOON}T16:30:00Z",
        invitees="buyer@client.com",
        organizer_email="rep@acme.com",
        title="After",
        **kwargs,
    )


def test_a_deferrable_update_waits_out_the_quota_then_sends_the_put(quota_gong, run_dag, xcoms):
    meeting_id = _existing_meeting(quota_gong)
    quota_gong.inject("status", status=429, retry_after=RETRY_AFTER, times=1, match="PUT /v2/meetings")
    with _dag("gong_update_deferral") as dag:
        _update(meeting_id, deferrable=True)
    dag_run = run_dag(dag)
    assert dag_run.state == "success"
    assert quota_gong.meetings[meeting_id]["title"] == "After"
    puts = [entry[2] for entry in quota_gong.log if entry[0] == "PUT"]
    assert puts == [429, 200]  # refused once, sent once after the deferral
    assert xcoms(dag_run)[("update", -1, "meeting_id")] == meeting_id


def test_a_deferrable_delete_defers_with_gongs_wait_and_deletes_on_resume(quota_gong):
    meeting_id = _existing_meeting(quota_gong)
    quota_gong.inject("status", status=429, retry_after=RETRY_AFTER, times=1, match="DELETE /v2/meetings")
    op = GongDeleteMeetingOperator(
        task_id="delete", meeting_id=meeting_id, organizer_email="rep@acme.com", deferrable=True
    )
    with pytest.raises(TaskDeferred) as info:
        op.execute({})
    trigger = info.value.trigger
    assert isinstance(trigger, DateTimeTrigger)
    wait = (trigger.moment - pendulum.now("UTC")).total_seconds()
    assert 0 < wait <= RETRY_AFTER
    assert meeting_id in quota_gong.meetings  # nothing deleted yet
    assert op.execute_complete({}, event=None) == {"meeting_id": meeting_id, "deleted": True}
    assert meeting_id not in quota_gong.meetings


def test_an_update_that_is_not_deferrable_fails_with_the_wait_in_the_error(quota_gong):
    meeting_id = _existing_meeting(quota_gong)
    quota_gong.inject("status", status=429, retry_after=RETRY_AFTER, times=1, match="PUT /v2/meetings")
    with pytest.raises(GongRateLimitError) as info:
        _update(meeting_id, deferrable=False).execute({"ti": None})
    assert info.value.retry_after == RETRY_AFTER and str(RETRY_AFTER) in str(info.value)
    assert quota_gong.meetings[meeting_id]["title"] == "Before"
