"""Exactly once under the conditions Airflow produces: overlapping runs in separate processes, a
zombie attempt beside its retry, lost and garbled answers, a ledger that fails its writes, bad keys.

Each scenario counts meetings per externalId at the stand-in: 0 duplicates and 0 lost meeting IDs.
"""

from __future__ import annotations

import json
import logging
import time

import pytest
from airflow.sdk import BaseHook

from airflow_provider_gong.exceptions import GongBatchRowErrors, GongLedgerError, GongValidationError
from airflow_provider_gong.sync.pipeline import MAX_CLAIM_WINDOW
from tests._support.warehouse import demo_rows, insert_meetings
from tests.integration.helpers import finish, ledger, operator, run_concurrently, seed, start_runners

pytestmark = pytest.mark.integration


def assert_each_row_created_once(standin, warehouse, keys) -> None:
    rows = ledger(warehouse)
    assert standin.duplicates() == {}
    for key in keys:
        external_id = f"crm-evt-{1000 + int(key)}"
        assert standin.created_count(external_id) == 1, key
        assert rows[key]["status"] == "created", (key, rows[key])
        created = next(c for c in standin.created if c.payload.get("externalId") == external_id)
        assert rows[key]["meeting_id"] == created.meeting_id  # the one meeting is the one on record


def set_ledger(warehouse, rows: list[tuple]) -> None:
    """Write ledger rows directly, as an earlier run would have left them."""
    hook = BaseHook.get_hook("warehouse")
    hook.insert_rows(
        warehouse["ledger"],
        rows,
        target_fields=["row_key", "status", "error", "error_kind", "attempts", "updated_at"],
    )


def make_ledger(warehouse) -> None:
    from airflow_provider_gong.sync.ledger import ResultsLedger

    book = ResultsLedger(BaseHook.get_hook("warehouse"), warehouse["ledger"], owner="setup")
    book.ensure_table()
    book.close()


# -- overlapping runs ---------------------------------------------------------------------------


# Two runs at once over a fresh ledger, and a zombie attempt beside its retry: in the warehouse matrix
# (test_warehouse_matrix.py), on every warehouse, with and without an enforced key.


@pytest.mark.parametrize("kind, retry_failed", [("transient", False), ("permanent", True)])
def test_two_runners_over_failed_rows_send_each_row_once(warehouse, slow_gong, tmp_path, kind, retry_failed):
    seed(warehouse, demo_rows(40, bad=False))
    make_ledger(warehouse)
    set_ledger(
        warehouse, [(str(i), "failed", "earlier failure", kind, 1, "2026-01-01") for i in range(1, 41)]
    )
    summaries = run_concurrently(tmp_path, warehouse, retry_failed=retry_failed)
    assert_each_row_created_once(slow_gong, warehouse, [str(i) for i in range(1, 41)])
    assert sum(s["created"] for s in summaries) == 40
    assert all(r["attempts"] == 2 for r in ledger(warehouse).values())


# A worker killed mid-call (SIGKILL) beside its retry: in the warehouse matrix.


# -- failures after Gong acted ------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault, options",
    [
        ("garble", {}),  # 200 with an undecodable gzip body
        ("truncate", {}),  # 200 whose body stops half-way
        ("body", {"body": "<html>proxy error</html>"}),
        ("body", {"body": '{"requestId": "r-1"}'}),  # JSON without a meetingId
        ("drop_after", {}),
    ],
)
def test_unreadable_answers_leave_the_row_pending_and_are_never_resent(warehouse, fast_gong, fault, options):
    seed(warehouse, demo_rows(4, bad=False))
    fast_gong.inject(fault, match="POST /v2/meetings", **options)
    summary = operator(warehouse, fail_on_row_errors=False).execute({})
    assert summary["outcome_unknown"] == 1 and summary["created"] == 3
    assert ledger(warehouse)["1"]["status"] == "pending"
    for _ in range(2):  # reruns: nothing is re-sent
        operator(warehouse, fail_on_row_errors=False).execute({})
    assert fast_gong.created_count("crm-evt-1001") == 1 and fast_gong.duplicates() == {}


def test_drip_fed_answer_ends_at_the_deadline_as_outcome_unknown(warehouse, gong_standin, monkeypatch):
    seed(warehouse, demo_rows(3, bad=False))
    monkeypatch.setenv(
        "AIRFLOW_CONN_GONG_DEFAULT",
        gong_standin.connection_json(rate_limit_per_second=500, timeout=1, deadline=2),
    )
    # One byte every 0.3 s: each read finishes well within the 1 s read timeout; the whole answer
    # would take over a minute.
    gong_standin.inject("drip", delay=0.3, match="POST /v2/meetings")
    started = time.monotonic()
    summary = operator(warehouse, fail_on_row_errors=False).execute({})
    assert time.monotonic() - started < 30
    assert summary["outcome_unknown"] == 1 and summary["created"] == 2
    row = ledger(warehouse)["1"]
    assert row["status"] == "pending" and "deadline" in row["error"]
    operator(warehouse, fail_on_row_errors=False).execute({})
    assert gong_standin.duplicates() == {} and gong_standin.created_count() == 3


def _fail_created_writes(warehouse) -> None:
    """A trigger that makes the database refuse every write of a 'created' outcome."""
    hook = BaseHook.get_hook("warehouse")
    name = warehouse["ledger"]
    if warehouse["kind"] == "sqlite":
        hook.run(
            f"CREATE TRIGGER refuse_{name} BEFORE UPDATE ON {name} WHEN NEW.status = 'created' "
            "BEGIN SELECT RAISE(ABORT, 'simulated: disk full'); END"
        )
    else:
        hook.run(
            [
                f"CREATE FUNCTION refuse_{name}() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'simulated: statement timeout'; END $$ LANGUAGE plpgsql",
                f"CREATE TRIGGER refuse_{name} BEFORE UPDATE ON {name} FOR EACH ROW "
                f"WHEN (NEW.status = 'created') EXECUTE FUNCTION refuse_{name}()",
            ]
        )


def _drop_refusal(warehouse) -> None:
    hook = BaseHook.get_hook("warehouse")
    name = warehouse["ledger"]
    if warehouse["kind"] == "sqlite":
        hook.run(f"DROP TRIGGER refuse_{name}")
    else:
        hook.run([f"DROP TRIGGER refuse_{name} ON {name}", f"DROP FUNCTION refuse_{name}()"])


@pytest.mark.parametrize("window", [1, None])
def test_ledger_write_failing_after_a_create_never_loses_the_meeting_id(warehouse, fast_gong, caplog, window):
    """The database refuses every 'created' write: the batch stops within a window or two, the error
    names every meeting it could not record, and none of those rows is ever sent again.

    More rows than two windows of the largest size: an automatic window is sized from the warehouse's
    measured round trip and the connection's rate (500/s here), so on a loaded machine the first windows
    can be large; the batch must still stop within two windows, before the end."""
    rows = 2 * MAX_CLAIM_WINDOW + 50
    seed(warehouse, demo_rows(rows, bad=False))
    make_ledger(warehouse)
    _fail_created_writes(warehouse)
    op = operator(warehouse, claim_window=window)
    with caplog.at_level(logging.INFO), pytest.raises(GongLedgerError) as info:
        op.execute({})
    made = list(fast_gong.created)
    assert 1 <= len(made) <= 2 * MAX_CLAIM_WINDOW < rows  # stopped before the end ...
    if window == 1:
        assert len(made) <= 2  # ... one row per window: after at most one more call
    keys = [str(int(c.payload["externalId"][-4:]) - 1000) for c in made]
    assert info.value.row_key == keys[0]
    for key, created in zip(keys, made, strict=True):
        assert f"row {key}: created, meeting_id {created.meeting_id}" in str(info.value)
        logged = [r.getMessage() for r in caplog.records if created.meeting_id in r.getMessage()]
        assert any(f"Row {key}: created Gong meeting" in m for m in logged)  # logged before the write
        assert ledger(warehouse)[key]["status"] == "pending"  # the claim stands: never re-sent
    assert all(r["status"] != "pending" or r["row_key"] in keys for r in ledger(warehouse).values())
    _drop_refusal(warehouse)
    summary = operator(warehouse, fail_on_row_errors=False, claim_lease_seconds=0).execute({})
    assert summary["created"] == rows - len(made) and summary["pending_unreconciled"] == len(made)
    assert fast_gong.duplicates() == {} and fast_gong.created_count() == rows


def test_whatever_gong_returns_is_kept_whole(warehouse, fast_gong):
    """A 5,000-character meetingUrl and an odd additionalInvitees, on a ledger made by 0.1.0."""
    seed(warehouse, demo_rows(2, bad=False))
    hook = BaseHook.get_hook("warehouse")
    hook.run(  # 0.1.0's DDL, with one created row in it
        f"CREATE TABLE {warehouse['ledger']} (row_key VARCHAR(255) NOT NULL PRIMARY KEY, "
        "status VARCHAR(16) NOT NULL, meeting_id VARCHAR(32), meeting_url VARCHAR(2048), "
        "request_id VARCHAR(128), additional_invitees TEXT, error TEXT, error_kind VARCHAR(16), "
        "attempts INTEGER NOT NULL, updated_at VARCHAR(40) NOT NULL)"
    )
    hook.insert_rows(
        warehouse["ledger"],
        [("1", "created", "1234567890123456789", "https://join.gong.io/x", "r", "[]", None, None, 1, "t")],
    )
    fast_gong.meeting_url_length = 5000
    fast_gong.additional_invitees = {"email": "assistant@gong.io"}  # not the documented list
    summary = operator(warehouse).execute({})
    assert summary["created"] == 1 and summary["skipped_created"] == 1  # the 0.1.0 row still counts
    row = ledger(warehouse)["2"]
    (created,) = fast_gong.created
    assert row["meeting_id"] == created.meeting_id and len(row["meeting_url"]) == 5000
    assert row["claimed_by"]


# -- keys ---------------------------------------------------------------------------------------


def test_null_duplicate_and_overlong_keys_are_reported_and_the_batch_goes_on(warehouse, fast_gong, tmp_path):
    seed(warehouse, demo_rows(6, bad=False))
    hook = BaseHook.get_hook("warehouse")
    t = warehouse["table"]
    if warehouse["kind"] == "postgres":  # no primary key, so that NULL and duplicate keys can occur
        hook.run(
            [f"ALTER TABLE {t} DROP CONSTRAINT {t}_pkey", f"ALTER TABLE {t} ALTER COLUMN id DROP NOT NULL"]
        )
    else:
        hook.run(f"ALTER TABLE {t} RENAME TO {t}_old")
        hook.run(f"CREATE TABLE {t} AS SELECT * FROM {t}_old")
    rows = demo_rows(3, bad=False)
    extra = [
        (None, *rows[0][1:6], "null-key-a"),
        (None, *rows[1][1:6], "null-key-b"),
        (3, *rows[0][1:6], "dup-of-3"),
        (5, *rows[2][1:6], "dup-of-5"),
    ]
    insert_meetings(hook, extra, t)
    procs, go = start_runners(tmp_path, warehouse, 1, page_size=2)  # duplicates straddle pages
    go.touch()
    (summary,) = finish(procs, timeout=90)  # a keyset loop on NULL keys would hang here
    assert summary["invalid_keys"] == 2  # the two NULL keys
    assert summary["duplicate_keys"] == 4  # keys 3 and 5, two rows each: none sent
    assert summary["created"] == 4 and summary["failed"] == 6 and summary["rows"] == 10
    external_ids = sorted(c.payload["externalId"] for c in fast_gong.created)
    assert external_ids == ["crm-evt-1001", "crm-evt-1002", "crm-evt-1004", "crm-evt-1006"]
    assert "3" not in ledger(warehouse) and "5" not in ledger(warehouse)


def test_overlong_key_fails_its_row_only(tmp_path, monkeypatch, fast_gong):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "k.db")})
    )
    hook = BaseHook.get_hook("warehouse")
    hook.run(
        "CREATE TABLE m (id TEXT, start_time TEXT, end_time TEXT, title TEXT, organizer_email TEXT, "
        "invitees TEXT, external_id TEXT)"
    )
    good = demo_rows(2, bad=False)
    hook.insert_rows("m", [("k" * 300, *good[0][1:]), ("short", *good[1][1:])])
    summary = SqlToGongMeetingsOperator_(table="m", ledger_table="l", fail_on_row_errors=False).execute({})
    assert (summary["invalid_keys"], summary["created"]) == (1, 1)
    assert [c.payload["externalId"] for c in fast_gong.created] == ["crm-evt-1002"]


def test_keys_of_different_types_that_read_the_same_are_one_key(tmp_path, monkeypatch, fast_gong):
    """SQLite keeps 7 and '7' apart; the ledger (text) cannot: the first is sent, the second reported."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "t.db")})
    )
    hook = BaseHook.get_hook("warehouse")
    hook.run(
        "CREATE TABLE m (id, start_time TEXT, end_time TEXT, title TEXT, organizer_email TEXT, "
        "invitees TEXT, external_id TEXT)"
    )
    r = demo_rows(2, bad=False)
    conn = hook.get_conn()  # plain DB-API: insert_rows would turn 7 into '7'
    conn.executemany("INSERT INTO m VALUES (?, ?, ?, ?, ?, ?, ?)", [(7, *r[0][1:]), ("7", *r[1][1:])])
    conn.commit()
    conn.close()
    assert hook.get_records("SELECT typeof(id) FROM m ORDER BY 1") == [("integer",), ("text",)]
    summary = SqlToGongMeetingsOperator_(table="m", ledger_table="l", fail_on_row_errors=False).execute({})
    assert (summary["created"], summary["duplicate_keys"]) == (1, 1)
    assert fast_gong.created_count() == 1


def SqlToGongMeetingsOperator_(**kwargs):
    from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator

    return SqlToGongMeetingsOperator(task_id="batch", **kwargs)


def test_percent_in_sql_works_on_every_page(warehouse, fast_gong):
    seed(warehouse, demo_rows(7, bad=False))
    summary = SqlToGongMeetingsOperator_(
        sql=f"SELECT * FROM {warehouse['table']} WHERE title LIKE 'Discovery%'",
        ledger_table=warehouse["ledger"],
        page_size=3,
    ).execute({})
    assert summary["created"] == 7 and fast_gong.created_count() == 7


def test_table_names_follow_the_databases_case_rules(warehouse, fast_gong):
    seed(warehouse, demo_rows(2, bad=False))
    mixed = warehouse["ledger"].replace("ledger_", "Gong_Ledger_")
    SqlToGongMeetingsOperator_(table=warehouse["table"].upper(), ledger_table=mixed).execute({})
    unquoted = BaseHook.get_hook("warehouse").get_first(f"SELECT COUNT(*) FROM {mixed}")
    assert unquoted[0] == 2
    BaseHook.get_hook("warehouse").run([f"DROP TABLE {mixed}", f"DROP TABLE {mixed}_lock"])


# -- task-level problems ------------------------------------------------------------------------


def _assert_nothing_touched(warehouse, standin) -> None:
    assert standin.log == []  # not even a preflight call
    hook = BaseHook.get_hook("warehouse")
    try:
        count = hook.get_first(f"SELECT COUNT(*) FROM {warehouse['ledger']}")[0]
    except Exception:
        count = 0  # the ledger was not even created
    assert count == 0


@pytest.mark.parametrize(
    "setup, options, fragment",
    [
        (None, {"timezone": "Europe/Pariss"}, "Europe/Pariss"),
        ("http_conn", {}, "type 'http'"),
        ("token_with_space", {}, "access_token contains characters"),
        (None, {"table": "no_such_table"}, "no_such_table"),
        (None, {"columns": {"organizer_email": "organiser"}}, "organiser"),
    ],
)
def test_task_level_problems_fail_before_any_row_is_touched(
    warehouse, fast_gong, monkeypatch, setup, options, fragment
):
    seed(warehouse, demo_rows(3, bad=False))
    if setup == "http_conn":
        monkeypatch.setenv(
            "AIRFLOW_CONN_GONG_DEFAULT", json.dumps({"conn_type": "http", "host": fast_gong.url})
        )
    elif setup == "token_with_space":
        conn = fast_gong.connection(auth="bearer")
        conn["extra"]["access_token"] = "abc def-SECRET-TOKEN"
        monkeypatch.setenv("AIRFLOW_CONN_GONG_DEFAULT", json.dumps(conn))
    kwargs = {"table": warehouse["table"], **options}
    with pytest.raises(GongValidationError, match=fragment) as info:
        SqlToGongMeetingsOperator_(ledger_table=warehouse["ledger"], **kwargs).execute({})
    assert "SECRET-TOKEN" not in str(info.value)
    _assert_nothing_touched(warehouse, fast_gong)


def test_bearer_token_pasted_with_a_newline_works(warehouse, fast_gong, monkeypatch):
    seed(warehouse, demo_rows(2, bad=False))
    conn = fast_gong.connection(auth="bearer", rate_limit_per_second=500)
    conn["extra"]["access_token"] += "\n"
    monkeypatch.setenv("AIRFLOW_CONN_GONG_DEFAULT", json.dumps(conn))
    assert operator(warehouse).execute({})["created"] == 2


def test_preflight_never_sinks_the_batch(warehouse, fast_gong):
    rows = demo_rows(4, bad=False)
    rows[1] = (*rows[1][:4], "not an email", *rows[1][5:])
    seed(warehouse, rows)
    summary = operator(warehouse, preflight=True, fail_on_row_errors=False).execute({})
    status_calls = [p for m, p, _ in fast_gong.log if p == "/v2/meetings/integration/status"]
    assert len(status_calls) == 1 and summary["created"] == 3  # the bad address never reached Gong
    assert "organizer_email" in ledger(warehouse)["2"]["error"]
    # Gong failing the status call: the batch goes on without preflight.
    insert_meetings(BaseHook.get_hook("warehouse"), [(9, *rows[0][1:6], "x-9")], warehouse["table"])
    fast_gong.inject("status", status=500, match="POST /v2/meetings/integration/status")
    summary = operator(warehouse, preflight=True, fail_on_row_errors=False).execute({})
    assert summary["created"] == 1 and fast_gong.duplicates() == {}


def test_a_failed_batch_row_error_still_reports_every_outcome(warehouse, fast_gong):
    seed(warehouse, demo_rows(3))
    with pytest.raises(GongBatchRowErrors):
        operator(warehouse).execute({})
    assert sorted(r["status"] for r in ledger(warehouse).values()) == ["created"] * 3 + ["failed"] * 2
