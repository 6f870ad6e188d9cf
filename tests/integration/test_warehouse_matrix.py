"""Exactly once on every warehouse of the matrix, each with a keyed and an unkeyed ledger.

SQLite, PostgreSQL, MariaDB and DuckDB run for real; the unkeyed cells stand for Snowflake, BigQuery,
Redshift and Databricks, which accept a PRIMARY KEY but never enforce it. Each scenario counts meetings
per externalId at the stand-in: 0 duplicates and 0 lost meeting IDs.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter

import pytest
from airflow.sdk import BaseHook

from airflow_provider_gong.exceptions import GongLedgerError
from tests._support.warehouse import demo_rows
from tests.integration.helpers import finish, ledger, operator, run_concurrently, seed, start_runners
from tests.integration.warehouses import BACKENDS, allow_writes, open_cell, refuse_created_writes

pytestmark = [pytest.mark.integration, pytest.mark.warehouses]

CELLS = [
    pytest.param((kind, keyed), id=f"{kind}-{'keyed' if keyed else 'unkeyed'}")
    for kind in BACKENDS
    for keyed in (True, False)
]


@pytest.fixture(params=CELLS)
def cell(request, tmp_path, monkeypatch):
    kind, keyed = request.param
    yield from open_cell(kind, keyed, tmp_path, monkeypatch)


def assert_each_row_once(standin, cell, keys) -> None:
    rows = ledger(cell)
    assert standin.duplicates() == {}
    hook = BaseHook.get_hook("warehouse")
    assert hook.get_first(f"SELECT COUNT(*) FROM {cell['ledger']}")[0] == len(rows)  # one ledger row a key
    for key in keys:
        external_id = f"crm-evt-{1000 + int(key)}"
        assert standin.created_count(external_id) == 1, key
        assert rows[key]["status"] == "created", (key, rows[key])
        created = next(c for c in standin.created if c.payload.get("externalId") == external_id)
        assert rows[key]["meeting_id"] == created.meeting_id


def test_two_runs_at_once(cell, slow_gong, tmp_path):
    seed(cell, demo_rows(30, bad=False))
    summaries = run_concurrently(tmp_path, cell)
    assert_each_row_once(slow_gong, cell, [str(i) for i in range(1, 31)])
    assert sum(s["created"] for s in summaries) == 30
    assert sum(s["created"] + s["claimed_elsewhere"] + s["skipped_created"] for s in summaries) == 60


def test_zombie_attempt_and_its_retry(cell, slow_gong, tmp_path):
    seed(cell, demo_rows(20, bad=False))
    slow_gong.inject("delay", times=1, delay=0, match="POST /v2/meetings")
    slow_gong.inject("delay", times=1, delay=2.0, match="POST /v2/meetings")  # row 2 hangs for 2 s
    zombie, go = start_runners(tmp_path, cell, 1)
    go.touch()
    deadline = time.monotonic() + 60
    while slow_gong.created_count() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    retry, go2 = start_runners(tmp_path, cell, 1)
    go2.touch()
    summaries = finish(zombie + retry)
    assert_each_row_once(slow_gong, cell, [str(i) for i in range(1, 21)])
    assert sum(s["created"] for s in summaries) == 20


@pytest.mark.parametrize("window", [1, 4])
def test_a_run_killed_mid_call_and_its_retry(cell, slow_gong, tmp_path, window):
    """SIGKILL while Gong works on row 5: at most three claim windows of rows are left pending (claimed
    ahead, or sent with the outcome not yet written), none is ever sent twice, and the retry (after the
    killed run's lease lapses) sends all the rest."""
    seed(cell, demo_rows(30, bad=False))
    slow_gong.inject("delay", times=4, delay=0, match="POST /v2/meetings")
    slow_gong.inject("delay", times=1, delay=3.0, match="POST /v2/meetings")  # row 5: Gong acts, answers late
    # A short lease: the killed run holds the ledger until it lapses, and the retry waits that long.
    first, go = start_runners(tmp_path, cell, 1, claim_window=window, lease_seconds=4)
    go.touch()
    deadline = time.monotonic() + 60
    while slow_gong.created_count() < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    first[0].send_signal(signal.SIGKILL)  # killed while waiting for row 5's answer
    first[0].wait(timeout=30)
    retry, go2 = start_runners(tmp_path, cell, 1, claim_lease_seconds=0, lease_seconds=4)
    go2.touch()
    (summary,) = finish(retry)
    rows = ledger(cell)
    pending = sorted((k for k, r in rows.items() if r["status"] == "pending"), key=int)
    assert "5" in pending and slow_gong.created_count("crm-evt-1005") == 1  # nobody re-sent it
    assert 1 <= len(pending) <= 3 * window, pending
    later = len([k for k in pending if int(k) > 5])  # claimed ahead by the killed run, never sent
    assert summary["pending_unreconciled"] == len(pending) and summary["created"] == 30 - 5 - later
    assert_each_row_once(slow_gong, cell, [str(i) for i in range(1, 31) if str(i) not in pending])
    for key in pending:  # each left pending was sent at most once, and only if the killed run reached it
        assert slow_gong.created_count(f"crm-evt-{1000 + int(key)}") == (1 if int(key) <= 5 else 0)


def test_lost_answer_stays_pending_and_reruns_send_nothing_twice(cell, fast_gong):
    seed(cell, demo_rows(4, bad=False))
    fast_gong.inject("drop_after", match="POST /v2/meetings")  # Gong acted; the answer never arrives
    summary = operator(cell, fail_on_row_errors=False).execute({})
    assert summary["outcome_unknown"] == 1 and summary["created"] == 3
    assert ledger(cell)["1"]["status"] == "pending"
    for _ in range(2):
        again = operator(cell, fail_on_row_errors=False).execute({})
        assert again["created"] == 0 and again["skipped_created"] == 3
    assert fast_gong.created_count("crm-evt-1001") == 1 and fast_gong.duplicates() == {}
    assert_each_row_once(fast_gong, cell, ["2", "3", "4"])


def test_refused_ledger_write_loses_no_meeting_id(cell, fast_gong, caplog):
    seed(cell, demo_rows(8, bad=False))
    from airflow_provider_gong.sync.ledger import ResultsLedger

    book = ResultsLedger(BaseHook.get_hook("warehouse"), cell["ledger"], owner="setup")
    book.ensure_table()
    book.close()
    refuse_created_writes(cell)
    with caplog.at_level(logging.INFO), pytest.raises(GongLedgerError) as info:
        operator(cell, claim_window=1).execute({})
    made = list(fast_gong.created)
    assert 1 <= len(made) <= 2
    keys = [str(int(c.payload["externalId"][-4:]) - 1000) for c in made]
    for key, created in zip(keys, made, strict=True):
        assert f"row {key}: created, meeting_id {created.meeting_id}" in str(info.value)
        assert ledger(cell)[key]["status"] == "pending"
    allow_writes(cell)
    summary = operator(cell, fail_on_row_errors=False, claim_lease_seconds=0).execute({})
    assert summary["created"] == 8 - len(made) and summary["pending_unreconciled"] == len(made)
    assert fast_gong.duplicates() == {} and fast_gong.created_count() == 8


def test_upsert_and_mirror_make_each_call_once(cell, fast_gong, tmp_path):
    import datetime as dt

    seed(cell, demo_rows(8, bad=False))
    hook = BaseHook.get_hook("warehouse")
    ph = hook.placeholder
    assert operator(cell, sync_mode="upsert").execute({})["created"] == 8
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)).replace(microsecond=0, minute=0)
    for row_id in (1, 2):
        hook.run(
            f"UPDATE {cell['table']} SET start_time = {ph}, end_time = {ph} WHERE id = {ph}",
            parameters=(later.isoformat(), (later + dt.timedelta(minutes=30)).isoformat(), row_id),
        )
    hook.run(f"UPDATE {cell['table']} SET cancelled = TRUE WHERE id = 3")
    hook.run(f"DELETE FROM {cell['table']} WHERE id = 4")
    mark = len(fast_gong.log)
    summaries = run_concurrently(tmp_path, cell, sync_mode="mirror", max_deletes=0.5)
    calls = Counter(
        m for m, p, _ in fast_gong.log[mark:] if p.startswith("/v2/meetings") and "status" not in p
    )
    assert calls == Counter({"PUT": 2, "DELETE": 2})
    assert sum(s["updated"] for s in summaries) == 2 and sum(s["deleted"] for s in summaries) == 2
    rows = ledger(cell)
    assert rows["3"]["status"] == rows["4"]["status"] == "deleted"
    assert fast_gong.duplicates() == {}


@pytest.fixture(params=[k for k in BACKENDS if k != "duckdb"])  # DuckDB: a paused process keeps the file
def unkeyed(request, tmp_path, monkeypatch):
    yield from open_cell(request.param, False, tmp_path, monkeypatch)


def test_a_paused_runner_is_taken_over_and_calls_gong_no_more(unkeyed, gong_standin, tmp_path, monkeypatch):
    """Run A freezes (SIGSTOP) while Gong works on its 4th row, for longer than its lease. Run B waits
    for the lease to lapse, takes the ledger over and does the rest; A, woken, records the answer it
    was waiting for and stops before its next call. A third run sends what A had claimed and not sent.
    On a ledger without a key: every row exactly one meeting."""
    cell = unkeyed
    monkeypatch.setenv("AIRFLOW_CONN_GONG_DEFAULT", gong_standin.connection_json(rate_limit_per_second=1000))
    gong_standin.latency = 0.05
    seed(cell, demo_rows(30, bad=False))
    gong_standin.inject("delay", times=3, delay=0, match="POST /v2/meetings")
    gong_standin.inject("delay", times=1, delay=2.0, match="POST /v2/meetings")  # acts, answers late
    lease = {"lease_seconds": 4, "lease_wait_seconds": 30, "claim_window": 1}
    (a,), go = start_runners(tmp_path, cell, 1, **lease)
    go.touch()
    deadline = time.monotonic() + 60
    while gong_standin.created_count() < 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    a.send_signal(signal.SIGSTOP)
    try:
        b, go_b = start_runners(tmp_path, cell, 1, **lease)
        go_b.touch()
        (summary_b,) = finish(b)
    finally:
        a.send_signal(signal.SIGCONT)
    out, _ = a.communicate(timeout=60)
    assert a.returncode == 1 and "GongLeaseLostError" in out, out[-2000:]
    assert summary_b["created"] >= 20  # B did the rest
    (summary_c,) = run_concurrently(tmp_path, cell, 1)
    assert gong_standin.duplicates() == {}
    assert_each_row_once(gong_standin, cell, [str(i) for i in range(1, 31)])
    assert summary_b["created"] + summary_c["created"] + 4 == 30


def test_a_run_that_finds_the_ledger_busy_ends_with_one_line_and_touches_nothing(unkeyed, fast_gong, capfd):
    from airflow_provider_gong.sync.ledger import ResultsLedger

    seed(unkeyed, demo_rows(3, bad=False))
    holder = ResultsLedger(BaseHook.get_hook("warehouse"), unkeyed["ledger"], owner="dag/other-run")
    holder.ensure_table()
    holder.acquire(0)
    try:
        capfd.readouterr()
        summary = operator(unkeyed, lease_wait_seconds=0.5).execute({})
    finally:
        holder.close()
    assert summary["ledger_busy"] is True and summary["held_by"] == "dag/other-run"
    assert summary["created"] == 0 and fast_gong.log == [] and ledger(unkeyed) == {}
    (line,) = [x for x in capfd.readouterr().out.splitlines() if "Nothing done" in x]  # the task log
    assert "dag/other-run" in line and "lease until" in line
    assert operator(unkeyed).execute({})["created"] == 3  # once it is free, the next run does the work
