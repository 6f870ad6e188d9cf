"""The pipeline on a real SQLite ledger: claims a window ahead, outcomes a window behind, claims not
used handed back, and a write that never lands named with what to set by hand."""

from __future__ import annotations

import pytest

from airflow_provider_gong.exceptions import GongLedgerError
from airflow_provider_gong.sync.connection import LedgerWriteError
from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.sync.pipeline import MIN_AUTO_WINDOW, LedgerPipeline
from airflow_provider_gong.sync.records import ClaimRequest, failed_values


@pytest.fixture
def ledger(sqlite_hook):
    book = ResultsLedger(sqlite_hook, "led", owner="me", sleep=lambda s: None, write_attempts=2)
    book.ensure_table()
    book.acquire(0)
    yield book
    book.close()


def statuses(ledger) -> dict[str, str]:
    return {r["row_key"]: r["status"] for r in ledger.read_all()}


def test_claims_go_a_window_ahead_and_outcomes_are_written_behind(ledger):
    pipe = LedgerPipeline(ledger, 2)
    pipe.expect([ClaimRequest(k, None, "create") for k in ("a", "b", "c", "d", "e")])
    assert pipe.window_sizes == [2]  # the first window only, until a row of it is taken
    assert pipe.claim("a", None, "create") is True
    assert pipe.window_sizes == [2, 2]  # the next window is claimed while this one is sent
    pipe.record("a", failed_values("bad row", "permanent"), "failed (permanent)")
    assert statuses(ledger)["a"] == "pending"  # kept, not yet written
    assert pipe.claim("b", None, "create") and pipe.claim("c", None, "create")
    pipe.finish()
    assert statuses(ledger) == {"a": "failed", "b": "pending", "c": "pending"}  # d, e handed back


def test_a_claim_nobody_expected_is_made_on_its_own(ledger):
    pipe = LedgerPipeline(ledger, 3)
    assert pipe.claim("x", None, "create") is True and pipe.window_sizes == []
    assert pipe.get("x").claimed_by == "me"


def test_automatic_windows_have_a_floor_and_grow_with_the_ledgers_time(ledger):
    pipe = LedgerPipeline(ledger, rate=10.0)
    assert pipe.size() == MIN_AUTO_WINDOW
    pipe._seconds.update(claim=1.0, write=1.0)  # a slow warehouse: 2 s per window of work
    assert pipe.size() == 40
    with pytest.raises(ValueError, match="between 1 and 100"):
        LedgerPipeline(ledger, 0)


def test_a_write_that_never_lands_stops_the_run_and_names_every_outcome(ledger, monkeypatch):
    pipe = LedgerPipeline(ledger, 1)
    pipe.expect([ClaimRequest("a", None, "create")])
    assert pipe.claim("a", None, "create")
    pipe.record("a", {"status": "created", "meeting_id": "9"}, "created, meeting_id 9")

    def refuse(outcomes):
        raise LedgerWriteError("ledger led: OperationalError: disk I/O error")

    monkeypatch.setattr(ledger, "record_many", refuse)
    with pytest.raises(GongLedgerError, match=r"set them by hand to: row a: created, meeting_id 9") as info:
        pipe.flush()
    assert info.value.row_key == "a"
    assert statuses(ledger) == {"a": "pending"}  # never lost silently: pending, for reconciliation
