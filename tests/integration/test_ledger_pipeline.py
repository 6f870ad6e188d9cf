"""The batch's ledger traffic: windows of claims ahead of the calls and outcomes behind them.

A warehouse round trip costs 50-500 ms, so the number of statements per row is what decides whether a
batch keeps Gong's pace; these tests count them (timings live in benchmarks/, not here), and check
what a run hands back when it stops early.
"""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
from airflow.sdk import BaseHook

from airflow_provider_gong.exceptions import GongAuthError
from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.sync.pipeline import LedgerPipeline
from tests._support.slowdb import slow_connections
from tests._support.warehouse import demo_rows
from tests.integration.helpers import finish, ledger, operator, seed, start_runners

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("window", [None, 10])
def test_at_most_one_statement_per_row(warehouse, fast_gong, window):
    """60 rows: the whole run (source reads, ledger set-up, claims, outcomes) stays under one
    statement per row; one row at a time it took 2 writes and 2 commits per row."""
    seed(warehouse, demo_rows(60, bad=False))
    hook_class = type(BaseHook.get_hook("warehouse"))
    with slow_connections(hook_class, latency=0.0) as trips:
        summary = operator(warehouse, claim_window=window).execute({})
    assert summary["created"] == 60 and fast_gong.created_count() == 60
    assert trips.executes <= 60, trips.statements
    windows = 60 // (window or 3)  # automatic windows have at least 3 rows
    # A statement per window for its claims (the lease's fencing check rides in it) and one for its
    # outcomes; and the run takes the lease and lets it go (a first run tries to take it once before
    # the lease table exists).
    assert trips.writes() <= 2 * windows + 3
    assert trips.commits <= 2 * windows + 5  # + the ledger's set-up, taking and letting go the lease
    assert all(r["status"] == "created" for r in ledger(warehouse).values())


def test_the_first_call_waits_for_three_round_trips_per_connection(warehouse, fast_gong, monkeypatch):
    """At 1 s per statement (BigQuery DML) the first call waited for about 22 round trips, one after
    another. On a ledger that exists (every run after the first) the start-up now overlaps on three
    connections: the source's (first page, that page's ledger entries), a short-lived one (the counts)
    and the ledger's (the lease taken, the first rows claimed, one commit). Counted, not timed."""
    seed(warehouse, demo_rows(30, bad=False))
    book = ResultsLedger(BaseHook.get_hook("warehouse"), warehouse["ledger"], owner="set-up")
    book.ensure_table()
    book.close()
    start: list[tuple[str, str, str, float]] = []
    claim = LedgerPipeline.claim

    def first_claim(self, *args, **kwargs):  # the first row's claim: everything before is start-up
        if not start:
            start.extend(trips.events)
        return claim(self, *args, **kwargs)

    monkeypatch.setattr(LedgerPipeline, "claim", first_claim)
    with slow_connections(type(BaseHook.get_hook("warehouse")), latency=0.0) as trips:
        summary = operator(warehouse).execute({})
    assert summary["created"] == 30 and fast_gong.created_count() == 30
    per_connection = Counter(thread.rstrip("_0123456789") for thread, *_ in start)
    assert max(per_connection.values()) <= 3, start
    assert len(start) <= 8, start
    claims = [e for e in start if e[2].startswith("INSERT")]
    assert len(claims) == 1 and claims[0][0].startswith("gong-ledger"), start


def test_a_run_stopped_by_an_error_hands_back_the_claims_it_did_not_use(warehouse, fast_gong):
    """Gong refuses the credentials at row 3 while rows 4-8 are already claimed: the run fails, writes
    rows 1-3, and rows 4-8 are not left pending (nothing was sent for them); the next run sends them."""
    seed(warehouse, demo_rows(8, bad=False))
    fast_gong.inject("delay", times=2, delay=0, match="POST /v2/meetings")
    fast_gong.inject("status", status=401, times=1, match="POST /v2/meetings")
    with pytest.raises(GongAuthError):
        operator(warehouse, claim_window=4).execute({})
    rows = ledger(warehouse)
    assert {k: r["status"] for k, r in rows.items()} == {"1": "created", "2": "created", "3": "failed"}
    summary = operator(warehouse, claim_window=4).execute({})
    assert summary["created"] == 6 and fast_gong.created_count() == 8 and fast_gong.duplicates() == {}


def test_rows_handed_back_keep_the_status_and_error_they_had(warehouse, fast_gong):
    """Rows 2 and 3 failed in an earlier run; this run claims 1-3, then stops at row 1 (401). Nothing
    was sent for 2 and 3, so they are handed back exactly as they were: failed, same error and kind."""
    seed(warehouse, demo_rows(3, bad=False))
    book = ResultsLedger(BaseHook.get_hook("warehouse"), warehouse["ledger"], owner="earlier-run")
    book.ensure_table()
    for key in ("2", "3"):
        book.claim(key, None)
        book.record_failed(key, "quota exhausted earlier", "transient")
    book.close()
    fast_gong.inject("status", status=401, times=1, match="POST /v2/meetings")
    with pytest.raises(GongAuthError):
        operator(warehouse, claim_window=3).execute({})
    rows = ledger(warehouse)
    assert rows["1"]["status"] == "failed" and "401" in rows["1"]["error"]
    for key in ("2", "3"):
        kept = (rows[key]["status"], rows[key]["error"], rows[key]["error_kind"], rows[key]["action"])
        assert kept == ("failed", "quota exhausted earlier", "transient", "create")
    assert fast_gong.created_count() == 0
    summary = operator(warehouse, claim_window=3).execute({})  # they are retried as transient failures
    assert summary["created"] == 3 and fast_gong.created_count() == 3


def test_sigterm_stops_between_rows_writes_every_outcome_and_hands_back_the_rest(
    warehouse, slow_gong, tmp_path
):
    """Airflow's SIGTERM (task cleared, timed out, worker shut down) calls on_kill: the batch stops
    before its next row with every outcome written and no row left pending; a retry does the rest."""
    seed(warehouse, demo_rows(60, bad=False))
    procs, go = start_runners(tmp_path, warehouse, 1, claim_window=5)
    go.touch()
    while slow_gong.created_count() < 7:
        time.sleep(0.005)
    procs[0].send_signal(signal.SIGTERM)
    out, _ = procs[0].communicate(timeout=60)
    assert procs[0].returncode == 1 and "GongBatchStoppedError" in out
    sent = slow_gong.created_count()
    rows = ledger(warehouse)
    assert 7 <= sent < 60
    assert sorted(r["status"] for r in rows.values()) == ["created"] * sent  # nothing pending
    retry, go2 = start_runners(tmp_path, warehouse, 1)
    go2.touch()
    (summary,) = finish(retry)
    assert summary["created"] == 60 - sent and summary["pending_unreconciled"] == 0
    assert slow_gong.created_count() == 60 and slow_gong.duplicates() == {}
