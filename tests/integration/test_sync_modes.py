"""Sync modes (upsert, mirror), cancellation, the delete guard and dry runs, through the
gong_meetings_sync example DAG (dag.test) and the operator, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from airflow.sdk import BaseHook

from airflow_provider_gong._compat import DagBag
from airflow_provider_gong.exceptions import GongError, GongSyncGuardError
from tests._support.warehouse import demo_rows
from tests.conftest import EXAMPLE_DAGS
from tests.integration.helpers import ledger, operator, run_concurrently, seed


def gong_calls(gong, since: int = 0) -> Counter:
    """Meeting calls Gong answered since log position ``since``: POST (create), PUT, DELETE."""
    return Counter(
        method
        for method, path, _ in gong.log[since:]
        if path.startswith("/v2/meetings") and "status" not in path
    )


def sql(warehouse, statement: str, *params) -> None:
    hook = BaseHook.get_hook("warehouse")
    hook.run(statement.replace("?", hook.placeholder), parameters=params or None)


def summary_of(dag_run, xcoms) -> dict:
    return xcoms(dag_run)[("sync_meetings", -1, "return_value")]


@pytest.fixture
def sync(run_dag):
    """Run the example DAG with this conf. A fresh parse each time, as a scheduler would: dag.test runs
    tasks in-process, so rendered template fields would otherwise carry over to the next run."""
    return lambda **conf: run_dag(
        DagBag(dag_folder=str(EXAMPLE_DAGS)).dags["gong_meetings_sync"], run_conf=conf
    )


def test_reschedule_invitee_cancel_remove_give_exactly_the_calls(warehouse, fast_gong, xcoms, sync):
    table = warehouse["table"]
    seed(warehouse, demo_rows(10, bad=False))
    conf = {"table": table, "ledger_table": warehouse["ledger"], "max_deletes": 0.5}

    first = sync(**conf, sync_mode="upsert")
    assert first.state == "success"
    assert gong_calls(fast_gong) == Counter({"POST": 10})

    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)).replace(microsecond=0)
    for row_id in (1, 2, 3):  # rescheduled
        start = later + dt.timedelta(hours=row_id)
        sql(
            warehouse,
            f"UPDATE {table} SET start_time = ?, end_time = ? WHERE id = ?",
            start.isoformat(),
            (start + dt.timedelta(minutes=45)).isoformat(),
            row_id,
        )
    sql(
        warehouse,
        f"UPDATE {table} SET invitees = ? WHERE id = 4",
        "buyer4@client.com; champion4@client.com; new4@client.com",
    )  # one more invitee
    sql(warehouse, f"UPDATE {table} SET cancelled = TRUE WHERE id IN (5, 6)")
    sql(warehouse, f"DELETE FROM {table} WHERE id = 7")
    before = ledger(warehouse)
    mark = len(fast_gong.log)

    # A dry run reports exactly the next run's work, and changes nothing.
    dry = summary_of(sync(**conf, sync_mode="upsert", dry_run=True), xcoms)
    assert dry["dry_run"] is True
    assert {k: dry["counts"][k] for k in ("create", "update", "delete", "unchanged")} == {
        "create": 0,
        "update": 4,
        "delete": 2,
        "unchanged": 3,
    }
    assert dry["gong_calls"] == 6 and dry["daily_quota_share"] == 0.0006
    assert sorted(r["key"] for r in dry["samples"]["update"]) == ["1", "2", "3", "4"]
    assert gong_calls(fast_gong, mark) == Counter() and ledger(warehouse) == before

    upsert = sync(**conf, sync_mode="upsert")
    assert upsert.state == "success", summary_of(upsert, xcoms)
    assert gong_calls(fast_gong, mark) == Counter({"PUT": 4, "DELETE": 2})
    rows = ledger(warehouse)
    assert [rows[k]["status"] for k in ("5", "6", "7")] == ["deleted", "deleted", "created"]
    moved = fast_gong.meetings[rows["1"]["meeting_id"]]
    assert moved["startTime"] == (later + dt.timedelta(hours=1)).isoformat()
    assert "new4@client.com" in str(fast_gong.meetings[rows["4"]["meeting_id"]]["invitees"])

    mark = len(fast_gong.log)
    dry = summary_of(sync(**conf, dry_run=True), xcoms)  # mirror by default
    assert dry["counts"]["delete"] == 1 and dry["samples"]["delete"] == [{"key": "7", "reason": "removed"}]
    mirror = sync(**conf)
    assert mirror.state == "success"
    assert gong_calls(fast_gong, mark) == Counter({"DELETE": 1})
    assert ledger(warehouse)["7"]["status"] == "deleted"
    assert len(fast_gong.meetings) == 7

    mark = len(fast_gong.log)
    assert sync(**conf).state == "success"
    assert gong_calls(fast_gong, mark) == Counter()  # a third run makes no call


def test_truncated_source_trips_the_guard_before_any_call(warehouse, fast_gong):
    seed(warehouse, demo_rows(10, bad=False))
    operator(warehouse, sync_mode="mirror").execute({})
    sql(warehouse, f"DELETE FROM {warehouse['table']}")
    mark = len(fast_gong.log)
    with pytest.raises(GongSyncGuardError, match="source returned no rows"):
        operator(warehouse, sync_mode="mirror", max_deletes=100).execute({})
    assert gong_calls(fast_gong, mark) == Counter()
    assert {r["status"] for r in ledger(warehouse).values()} == {"created"}


def test_more_cancellations_than_max_deletes_stop_the_run_and_say_why(warehouse, fast_gong):
    seed(warehouse, demo_rows(10, bad=False))
    operator(warehouse, sync_mode="upsert").execute({})
    sql(warehouse, f"UPDATE {warehouse['table']} SET cancelled = TRUE WHERE id IN (1, 2, 3)")
    mark = len(fast_gong.log)
    with pytest.raises(GongSyncGuardError, match=r"would delete 3 of 10 .*max_deletes=0.1 allows 1"):
        operator(warehouse, sync_mode="upsert").execute({})
    assert gong_calls(fast_gong, mark) == Counter()
    summary = operator(warehouse, sync_mode="upsert", max_deletes=3).execute({})  # the person agrees
    assert summary["deleted"] == 3 and gong_calls(fast_gong, mark) == Counter({"DELETE": 3})


def test_a_lost_delete_answer_ends_deleted_after_the_rerun(warehouse, fast_gong):
    seed(warehouse, demo_rows(3, bad=False))
    operator(warehouse, sync_mode="upsert").execute({})
    sql(warehouse, f"UPDATE {warehouse['table']} SET cancelled = TRUE WHERE id = 1")
    meeting_id = ledger(warehouse)["1"]["meeting_id"]
    # Gong deletes it, and every answer (the hook's retries too) is lost: the run stops on the network.
    fast_gong.inject("drop_after", times=5, match="DELETE /v2/meetings")
    with pytest.raises(GongError):
        operator(warehouse, sync_mode="upsert", max_deletes=1).execute({})
    assert meeting_id not in fast_gong.meetings
    assert ledger(warehouse)["1"]["status"] == "created"  # put back as it was, with the error
    summary = operator(warehouse, sync_mode="upsert", max_deletes=1).execute({})
    row = ledger(warehouse)["1"]
    assert (row["status"], row["error"]) == ("deleted", None)
    assert summary["failed"] == 0


def test_a_new_organizer_means_delete_under_the_old_then_create(warehouse, fast_gong):
    seed(warehouse, demo_rows(3, bad=False))
    operator(warehouse, sync_mode="upsert").execute({})
    old = ledger(warehouse)["2"]
    new_organizer = "csm@acme.com" if old["organizer_email"] != "csm@acme.com" else "ae@acme.com"
    sql(warehouse, f"UPDATE {warehouse['table']} SET organizer_email = ? WHERE id = 2", new_organizer)
    mark = len(fast_gong.log)
    summary = operator(warehouse, sync_mode="upsert").execute({})
    assert gong_calls(fast_gong, mark) == Counter({"DELETE": 1, "POST": 1})
    row = ledger(warehouse)["2"]
    assert row["status"] == "created" and row["meeting_id"] != old["meeting_id"]
    assert row["organizer_email"] == new_organizer and old["meeting_id"] not in fast_gong.meetings
    assert fast_gong.meetings[row["meeting_id"]]["organizerEmail"] == new_organizer
    assert summary["created"] == 1 and summary["deleted"] == 0


def test_meetings_already_over_are_left_alone(warehouse, fast_gong):
    seed(warehouse, demo_rows(2, bad=False))
    operator(warehouse, sync_mode="mirror").execute({})
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    sql(
        warehouse,
        f"UPDATE {warehouse['table']} SET start_time = ?, end_time = ?, cancelled = TRUE WHERE id = 1",
        (now - dt.timedelta(hours=3)).isoformat(),
        (now - dt.timedelta(hours=2)).isoformat(),
    )
    mark = len(fast_gong.log)
    summary = operator(warehouse, sync_mode="mirror").execute({})
    assert gong_calls(fast_gong, mark) == Counter()
    assert summary["skipped_past"] == 1 and ledger(warehouse)["1"]["status"] == "created"


@pytest.mark.parametrize("mode", ["upsert", "mirror"])
def test_a_meeting_over_for_longer_than_max_past_is_past_not_failed(warehouse, fast_gong, mode):
    # The rules refuse a start more than max_past (1 day) ago, so such a row is no valid meeting today;
    # a created one has simply ended: the run leaves it alone and stays green.
    seed(warehouse, demo_rows(2, bad=False))
    operator(warehouse, sync_mode=mode).execute({})
    long_ago = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=3)
    sql(
        warehouse,
        f"UPDATE {warehouse['table']} SET start_time = ?, end_time = ? WHERE id = 1",
        long_ago.isoformat(),
        (long_ago + dt.timedelta(minutes=30)).isoformat(),
    )
    mark = len(fast_gong.log)
    summary = operator(warehouse, sync_mode=mode, fail_on_row_errors=True).execute({})
    assert gong_calls(fast_gong, mark) == Counter()
    assert (summary["skipped_past"], summary["failed"]) == (1, 0), summary
    assert ledger(warehouse)["1"]["status"] == "created"


def test_a_cancelled_row_never_created_is_not_created(warehouse, fast_gong):
    seed(warehouse, demo_rows(3, bad=False))
    sql(warehouse, f"UPDATE {warehouse['table']} SET cancelled = TRUE WHERE id = 3")
    summary = operator(warehouse, sync_mode="upsert").execute({})
    assert summary["created"] == 2 and summary["skipped_cancelled"] == 1
    assert "3" not in ledger(warehouse)


def test_a_ledger_from_before_fingerprints_is_migrated_and_synced_once(warehouse, fast_gong):
    seed(warehouse, demo_rows(3, bad=False))
    modern = {**warehouse, "ledger": warehouse["ledger"] + "_new"}
    operator(modern).execute({})  # create mode: meetings exist in Gong
    hook = BaseHook.get_hook("warehouse")
    hook.run(  # the 0.1.0 layout, holding those meetings
        f"CREATE TABLE {warehouse['ledger']} (row_key VARCHAR(255) NOT NULL PRIMARY KEY, "
        "status VARCHAR(16) NOT NULL, meeting_id VARCHAR(32), meeting_url VARCHAR(2048), "
        "request_id VARCHAR(128), additional_invitees TEXT, error TEXT, error_kind VARCHAR(16), "
        "attempts INTEGER NOT NULL, updated_at VARCHAR(40) NOT NULL)"
    )
    rows = [
        (k, r["status"], r["meeting_id"], r["meeting_url"], None, "[]", None, None, 1, "t")
        for k, r in ledger(modern).items()
    ]
    hook.insert_rows(warehouse["ledger"], rows)
    hook.run([f"DROP TABLE {modern['ledger']}", f"DROP TABLE {modern['ledger']}_lock"])
    mark = len(fast_gong.log)
    summary = operator(warehouse, sync_mode="upsert").execute({})
    # No fingerprint yet: each live meeting is sent once (a PUT is safe), then it is known.
    assert summary["updated"] == 3 and gong_calls(fast_gong, mark) == Counter({"PUT": 3})
    assert all(r["fingerprint"] and r["claimed_by"] for r in ledger(warehouse).values())
    mark = len(fast_gong.log)
    assert operator(warehouse, sync_mode="upsert").execute({})["unchanged"] == 3
    assert gong_calls(fast_gong, mark) == Counter()


def test_two_runs_at_once_update_and_delete_each_row_once(tmp_path, warehouse, slow_gong):
    """Separate processes, started together, over rows that all need a PUT or a DELETE."""
    seed(warehouse, demo_rows(30, bad=False))
    operator(warehouse, sync_mode="upsert").execute({})
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)).replace(microsecond=0)
    sql(
        warehouse,
        f"UPDATE {warehouse['table']} SET start_time = ?, end_time = ? WHERE id <= 24",
        later.isoformat(),
        (later + dt.timedelta(minutes=30)).isoformat(),
    )
    sql(warehouse, f"UPDATE {warehouse['table']} SET cancelled = TRUE WHERE id > 24")
    mark = len(slow_gong.log)
    slow_gong.latency = 0.05  # 30 calls take 1.5 s: long enough for the two runs to overlap
    summaries = run_concurrently(tmp_path, warehouse, sync_mode="upsert", max_deletes=6)
    assert gong_calls(slow_gong, mark) == Counter({"PUT": 24, "DELETE": 6})  # never both on a row
    assert sum(s["updated"] for s in summaries) == 24 and sum(s["deleted"] for s in summaries) == 6
    statuses = Counter(r["status"] for r in ledger(warehouse).values())
    assert statuses == Counter({"created": 24, "deleted": 6})


def test_a_run_killed_mid_put_is_finished_by_the_next_run(warehouse, fast_gong):
    seed(warehouse, demo_rows(2, bad=False))
    operator(warehouse, sync_mode="upsert").execute({})
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=4)).replace(microsecond=0)
    sql(
        warehouse,
        f"UPDATE {warehouse['table']} SET start_time = ?, end_time = ? WHERE id = 1",
        later.isoformat(),
        (later + dt.timedelta(minutes=30)).isoformat(),
    )
    # What a worker killed between its claim and Gong's answer leaves behind, 20 minutes ago:
    sql(
        warehouse,
        f"UPDATE {warehouse['ledger']} SET status = 'pending', action = 'update', "
        "claimed_by = 'dead-worker', updated_at = ? WHERE row_key = '1'",
        (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=20)).isoformat(),
    )
    mark = len(fast_gong.log)
    summary = operator(warehouse, sync_mode="upsert").execute({})
    assert summary["updated"] == 1 and gong_calls(fast_gong, mark) == Counter({"PUT": 1})
    row = ledger(warehouse)["1"]
    assert (
        row["status"] == "created" and fast_gong.meetings[row["meeting_id"]]["startTime"] == later.isoformat()
    )


def test_a_meeting_deleted_in_gong_is_created_again_when_its_row_changes(warehouse, fast_gong):
    seed(warehouse, demo_rows(2, bad=False))
    operator(warehouse, sync_mode="upsert").execute({})
    old_id = ledger(warehouse)["1"]["meeting_id"]
    del fast_gong.meetings[old_id]  # someone deleted it in Gong
    sql(warehouse, f"UPDATE {warehouse['table']} SET title = ? WHERE id = 1", "Moved")
    mark = len(fast_gong.log)
    summary = operator(warehouse, sync_mode="upsert").execute({})
    assert gong_calls(fast_gong, mark) == Counter({"PUT": 1, "POST": 1})  # PUT answered 404, then create
    row = ledger(warehouse)["1"]
    assert row["status"] == "created" and row["meeting_id"] != old_id and summary["created"] == 1
    assert fast_gong.meetings[row["meeting_id"]]["title"] == "Moved"


def test_the_run_never_deletes_more_than_the_guard_allowed_even_if_rows_change_after_the_plan(
    warehouse, fast_gong, monkeypatch
):
    from airflow_provider_gong.sync import guard

    seed(warehouse, demo_rows(10, bad=False))
    operator(warehouse, sync_mode="upsert").execute({})
    sql(warehouse, f"UPDATE {warehouse['table']} SET cancelled = TRUE WHERE id IN (1, 2, 3)")
    real_survey = guard.survey

    def stale_survey(batch, *args, **kwargs):  # the plan was made before the 3 cancellations landed
        plan = real_survey(batch, *args, **kwargs)
        plan["counts"]["delete"] = 0
        return plan

    monkeypatch.setattr(guard, "survey", stale_survey)
    mark = len(fast_gong.log)
    with pytest.raises(GongSyncGuardError, match="the most max_deletes allows"):
        operator(warehouse, sync_mode="upsert", max_deletes=1).execute({})
    assert gong_calls(fast_gong, mark) == Counter({"DELETE": 1})
