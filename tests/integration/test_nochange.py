"""Change detection in bulk (issue 22): a run where nothing changed validates no row and reads the source
and the ledger in pages; what did change is still found, validated and sent exactly as before."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections import Counter

import pytest
from airflow.sdk import BaseHook

from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator
from tests._support.counting import count_builds
from tests._support.slowdb import slow_connections
from tests._support.warehouse import demo_rows
from tests.integration.helpers import ledger, operator, seed
from tests.integration.warehouses import BACKENDS, open_cell

ROWS, PAGE = 120, 20


def gong_calls(gong, since: int = 0) -> Counter:
    return Counter(
        m for m, path, _ in gong.log[since:] if path.startswith("/v2/meetings") and "status" not in path
    )


def sql(statement: str, *params) -> None:
    hook = BaseHook.get_hook("warehouse")
    hook.run(statement.replace("?", hook.placeholder), parameters=params or None)


@contextlib.contextmanager
def counting(monkeypatch):
    """Count Meeting.build calls (row validation and model building) and warehouse statements."""
    built = count_builds(monkeypatch)
    hook = BaseHook.get_hook("warehouse")
    with slow_connections(type(hook), 0.0) as trips:
        yield built, trips


def run(warehouse, monkeypatch, **kwargs):
    with counting(monkeypatch) as (built, trips):
        summary = operator(warehouse, page_size=PAGE, max_deletes=5, **kwargs).execute({})
    return summary, built["rows"], trips


@pytest.mark.parametrize("mode", ["upsert", "mirror"])
def test_a_run_where_nothing_changed_validates_no_row_and_reads_in_pages(
    warehouse, fast_gong, monkeypatch, mode
):
    seed(warehouse, demo_rows(ROWS, bad=False))
    first, built, _ = run(warehouse, monkeypatch, sync_mode=mode)
    assert first["created"] == ROWS and built >= ROWS  # a new row is validated, as ever
    mark = len(fast_gong.log)

    summary, built, trips = run(warehouse, monkeypatch, sync_mode=mode)

    assert gong_calls(fast_gong, mark) == Counter()
    assert (summary["unchanged"], summary["rows"], summary["failed"]) == (ROWS, ROWS, 0)
    assert built == 0  # no row validated: each was fingerprinted as read and found in the ledger
    pages = ROWS // PAGE + 1
    # the run reads each page of the source and of the ledger; the guard's plan reads only rows with a
    # cancelled value (none here); plus a fixed set-up (lease, counts, key checks)
    assert trips.executes <= 2 * pages + 20, trips.statements
    assert trips.writes() <= 2  # the lease taken and given back; no row written


def test_a_changed_row_among_unchanged_ones_is_updated_once(warehouse, fast_gong, monkeypatch):
    seed(warehouse, demo_rows(ROWS, bad=False))
    run(warehouse, monkeypatch, sync_mode="upsert")
    sql(f"UPDATE {warehouse['table']} SET title = ? WHERE id = 17", "Moved to a new title")
    mark = len(fast_gong.log)

    summary, built, _ = run(warehouse, monkeypatch, sync_mode="upsert")

    assert gong_calls(fast_gong, mark) == Counter({"PUT": 1})
    assert (summary["updated"], summary["unchanged"]) == (1, ROWS - 1)
    assert built == 1  # the changed row alone (the guard's plan looks at cancelled rows only)
    meeting = fast_gong.meetings[ledger(warehouse)["17"]["meeting_id"]]
    assert meeting["title"] == "Moved to a new title"
    mark = len(fast_gong.log)
    again, built, _ = run(warehouse, monkeypatch, sync_mode="upsert")
    assert gong_calls(fast_gong, mark) == Counter() and built == 0 and again["unchanged"] == ROWS


def test_a_raw_change_gong_would_not_see_is_not_sent_and_is_learnt(warehouse, fast_gong, monkeypatch):
    """Another spelling of the same meeting (an organizer's capitals): no call, one validation, then none."""
    seed(warehouse, demo_rows(ROWS, bad=False))
    run(warehouse, monkeypatch, sync_mode="upsert")
    sql(f"UPDATE {warehouse['table']} SET organizer_email = UPPER(organizer_email) WHERE id IN (3, 4)")
    mark = len(fast_gong.log)

    summary, built, trips = run(warehouse, monkeypatch, sync_mode="upsert")
    assert gong_calls(fast_gong, mark) == Counter() and summary["unchanged"] == ROWS
    assert built == 2
    assert trips.writes() <= 3  # the lease, and one statement for the page that learnt two spellings

    _, built, _ = run(warehouse, monkeypatch, sync_mode="upsert")
    assert built == 0


def test_a_ledger_without_source_fingerprints_is_validated_once_then_not(warehouse, fast_gong, monkeypatch):
    """A ledger from before this change (or a settled row): the row goes the long way once, as before."""
    seed(warehouse, demo_rows(ROWS, bad=False))
    run(warehouse, monkeypatch, sync_mode="upsert")
    sql(f"UPDATE {warehouse['ledger']} SET source_fingerprint = NULL")
    sql(f"UPDATE {warehouse['ledger']} SET fingerprint = NULL WHERE row_key = ?", "5")
    mark = len(fast_gong.log)

    summary, built, _ = run(warehouse, monkeypatch, sync_mode="upsert")
    assert gong_calls(fast_gong, mark) == Counter({"PUT": 1})  # no fingerprint: sent once, as before
    assert (summary["updated"], summary["unchanged"], built) == (1, ROWS - 1, ROWS)

    mark = len(fast_gong.log)
    summary, built, _ = run(warehouse, monkeypatch, sync_mode="upsert")
    assert gong_calls(fast_gong, mark) == Counter() and (summary["unchanged"], built) == (ROWS, 0)


def test_removed_cancelled_and_past_rows_among_unchanged_ones(warehouse, fast_gong, monkeypatch):
    rows = demo_rows(ROWS, bad=False)
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=3)
    last = (ROWS, soon.isoformat(), (soon + dt.timedelta(seconds=1)).isoformat(), *rows[-1][3:])
    seed(warehouse, [*rows[:-1], last])  # the last meeting ends in 4 s
    run(warehouse, monkeypatch, sync_mode="mirror")
    sql(f"DELETE FROM {warehouse['table']} WHERE id = 9")
    sql(f"UPDATE {warehouse['table']} SET cancelled = TRUE WHERE id = 10")
    time.sleep(
        max(0.0, (soon + dt.timedelta(seconds=1.5) - dt.datetime.now(dt.timezone.utc)).total_seconds())
    )
    mark = len(fast_gong.log)

    dry = operator(warehouse, page_size=PAGE, sync_mode="mirror", dry_run=True).execute({})
    assert {k: dry["counts"][k] for k in ("delete", "unchanged", "past")} == {
        "delete": 2,
        "unchanged": ROWS - 3,
        "past": 1,
    }
    summary, built, _ = run(warehouse, monkeypatch, sync_mode="mirror")

    assert gong_calls(fast_gong, mark) == Counter({"DELETE": 2})
    assert (summary["deleted"], summary["skipped_past"], summary["unchanged"]) == (2, 1, ROWS - 3)
    book = ledger(warehouse)
    assert (book["9"]["status"], book["10"]["status"], book[str(ROWS)]["status"]) == (
        "deleted",
        "deleted",
        "created",
    )
    # the cancelled row (in the guard's plan and in the run) and the one now over go the long way
    assert built <= 3


def test_create_mode_validates_only_rows_it_creates(warehouse, fast_gong, monkeypatch):
    seed(warehouse, demo_rows(ROWS, bad=False))
    run(warehouse, monkeypatch)
    seed(warehouse, demo_rows(ROWS + 2, bad=False)[ROWS:])
    summary, built, _ = run(warehouse, monkeypatch)
    assert (summary["created"], summary["skipped_created"], built) == (2, ROWS, 2)


def test_the_guard_still_counts_cancelled_rows_in_a_column_of_any_spelling(warehouse, fast_gong, monkeypatch):
    """The guard's plan reads only rows whose cancelled value is set; FALSE and 'no' are live rows."""
    from airflow_provider_gong.exceptions import GongSyncGuardError

    seed(warehouse, demo_rows(10, bad=False))
    query = (
        "SELECT id, start_time, end_time, title, organizer_email, invitees, external_id, "
        f'cancelled AS "Is_Off" FROM {warehouse["table"]}'
    )
    options = {"sql": query, "columns": {"cancelled": "Is_Off"}, "sync_mode": "upsert"}

    def operator(**kwargs):
        return SqlToGongMeetingsOperator(task_id="b", ledger_table=warehouse["ledger"], **options, **kwargs)

    assert operator().execute({})["created"] == 10
    sql(f"UPDATE {warehouse['table']} SET cancelled = FALSE WHERE id > 3")
    sql(f"UPDATE {warehouse['table']} SET cancelled = TRUE WHERE id <= 3")
    mark = len(fast_gong.log)
    with pytest.raises(GongSyncGuardError, match="would delete 3 of 10"):
        operator(max_deletes=2).execute({})
    assert gong_calls(fast_gong, mark) == Counter()
    summary = operator(max_deletes=3).execute({})
    assert (summary["deleted"], summary["unchanged"]) == (3, 7)


MATRIX = [
    pytest.param(kind, keyed, id=f"{kind}-{'keyed' if keyed else 'unkeyed'}", marks=pytest.mark.warehouses)
    for kind in BACKENDS
    for keyed in (True, False)
]


@pytest.mark.parametrize(("kind", "keyed"), MATRIX)
def test_change_detection_on_every_warehouse(kind, keyed, fast_gong, tmp_path, monkeypatch):
    """One code path on every database, keyed or not: learnt spellings, one update, then nothing."""
    for cell in open_cell(kind, keyed, tmp_path, monkeypatch):
        seed(cell, demo_rows(30, bad=False))
        assert run(cell, monkeypatch, sync_mode="mirror")[0]["created"] == 30
        sql(f"UPDATE {cell['table']} SET organizer_email = UPPER(organizer_email) WHERE id = 3")
        sql(f"UPDATE {cell['table']} SET title = ? WHERE id = 4", "A new title")
        sql(f"DELETE FROM {cell['table']} WHERE id = 5")
        mark = len(fast_gong.log)
        summary, built, _ = run(cell, monkeypatch, sync_mode="mirror")
        assert gong_calls(fast_gong, mark) == Counter({"PUT": 1, "DELETE": 1})
        assert (summary["updated"], summary["deleted"], summary["unchanged"], built) == (1, 1, 28, 2)
        mark = len(fast_gong.log)
        summary, built, _ = run(cell, monkeypatch, sync_mode="mirror")
        assert gong_calls(fast_gong, mark) == Counter() and (summary["unchanged"], built) == (29, 0)
