"""The guard: how many deletes a run may make, the empty source, and what a dry run reports."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from airflow_provider_gong.exceptions import GongSyncGuardError, GongValidationError
from airflow_provider_gong.sync import guard
from airflow_provider_gong.sync.guard import DeleteGuard, max_deletes


def plan(deletes: int, calls: int | None = None) -> dict:
    counts = dict.fromkeys((*guard.BUCKETS, "skipped"), 0)
    counts["delete"] = deletes
    return {
        "mode": "upsert",
        "counts": counts,
        "samples": {},
        "gong_calls": deletes if calls is None else calls,
    }


@pytest.mark.parametrize("value, limit", [(25, 25), ("25", 25), (0.1, 0.1), ("0.5", 0.5), (0, 0), (1, 1)])
def test_max_deletes_is_a_count_or_a_fraction(value, limit):
    assert max_deletes(value) == limit


@pytest.mark.parametrize("value", [-1, "many", True, None])
def test_max_deletes_refuses_anything_else(value):
    with pytest.raises(GongValidationError, match="max_deletes must be a count"):
        max_deletes(value)


@pytest.mark.parametrize("limit, live, allowed", [(0.1, 95, 9), (0.1, 5, 0), (3, 1000, 3), ("0.5", 7, 3)])
def test_the_allowance_is_a_count_or_a_share_of_the_live_meetings(limit, live, allowed):
    assert DeleteGuard("upsert", "led", limit).allowed(live) == allowed


def test_a_plan_without_deletes_always_passes():
    assert DeleteGuard("mirror", "led", 0).check(plan(0), live=100, source_rows=0) == ""


def test_an_empty_source_never_deletes():
    why = DeleteGuard("mirror", "led", 1.0 - 1e-9).check(plan(3), live=3, source_rows=0)
    assert "the source returned no rows, so this mirror run would delete all 3 live meeting(s) in led" in why


def test_more_deletes_than_allowed_stop_the_run_with_what_to_do():
    why = DeleteGuard("upsert", "led", 0.1).check(plan(11), live=100, source_rows=100)
    assert "would delete 11 of 100 live meeting(s) in led" in why and "max_deletes=0.1 allows 10" in why
    assert DeleteGuard("upsert", "led", 0.1).check(plan(10), live=100, source_rows=100) == ""


def test_the_dry_run_report_has_the_plan_the_quota_share_and_the_guard(caplog):
    the_plan = plan(2, calls=250)
    the_plan["samples"] = {"delete": [{"key": "7", "reason": "cancelled"}]}
    with caplog.at_level(logging.INFO):
        summary = DeleteGuard("upsert", "led", 1).report(the_plan, "too many", daily_quota=10_000)
    assert summary["dry_run"] is True and summary["daily_quota_share"] == 0.025
    assert (summary["guard"], summary["ledger_table"], summary["counts"]["delete"]) == ("too many", "led", 2)
    assert "It would make 250 Gong call(s), 2.5% of a 10000-call daily quota" in caplog.text
    assert "delete: 7 (cancelled)" in caplog.text and "A real run would stop before any call" in caplog.text
    assert DeleteGuard("upsert", "led", 1).report(plan(0), "", 10_000)["guard"] is None


def _batch(rows: int, live: int) -> SimpleNamespace:
    return SimpleNamespace(
        progress=SimpleNamespace(total=rows),
        ledger=SimpleNamespace(count_live=lambda: live),
        delete_budget=None,
    )


def test_hold_returns_a_dry_runs_plan_and_stops_a_real_run_over_the_guard(monkeypatch):
    monkeypatch.setattr(guard, "survey", lambda batch, **_: plan(5))
    fence = DeleteGuard("upsert", "led", 2)
    assert fence.hold(_batch(10, 50), dry_run=True, daily_quota=100)["guard"].startswith(
        "this run would delete 5"
    )
    with pytest.raises(GongSyncGuardError, match="max_deletes=2 allows 2"):
        fence.hold(_batch(10, 50), dry_run=False, daily_quota=100)


def test_hold_gives_a_passing_run_its_delete_budget(monkeypatch):
    monkeypatch.setattr(guard, "survey", lambda batch, **_: plan(1))
    batch = _batch(10, 50)
    assert DeleteGuard("upsert", "led", 0.1).hold(batch, dry_run=False, daily_quota=100) is None
    assert batch.delete_budget == 5  # the run itself may not delete more either
    monkeypatch.setattr(guard, "survey", lambda batch, **_: plan(0))
    empty = _batch(0, 50)
    DeleteGuard("upsert", "led", 0.1).hold(empty, dry_run=False, daily_quota=100)
    assert empty.delete_budget == 0  # an empty source never deletes
