"""Progress: each skip in its counter, the summary's words, deferred legs added up, problems in words."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_gong.sync.plan import Reason
from airflow_provider_gong.sync.progress import IDLE, BatchProgress, log_quota, problems, so_far

SUMMARY_KEYS = [
    "rows",
    "created",
    "failed",
    "outcome_unknown",
    "skipped_created",
    "skipped_failed",
    "claimed_elsewhere",
    "updated",
    "deleted",
    "unchanged",
    "skipped_past",
    "skipped_cancelled",
    "invalid_keys",
    "duplicate_keys",
    "pending_unreconciled",
]


def test_the_summary_keeps_its_keys_and_adds_up_unknown_and_pending():
    progress = BatchProgress(10)
    progress.count_skip(Reason.PENDING)
    progress.unknown += 2
    summary = progress.summary()
    assert list(summary) == SUMMARY_KEYS
    assert summary["pending_unreconciled"] == 3 and summary["outcome_unknown"] == 2
    assert set(IDLE) <= set(SUMMARY_KEYS) | {"gong_calls"}


def test_skips_land_in_their_counters_and_a_duplicate_is_a_failed_row():
    progress = BatchProgress(10)
    for reason in (Reason.CREATED, Reason.DELETED, Reason.IN_FLIGHT, Reason.PAST, Reason.DUPLICATE_IN_RUN):
        progress.count_skip(reason)
    assert (progress.skipped_created, progress.claimed_elsewhere, progress.skipped_past) == (2, 1, 1)
    assert (progress.duplicate_keys, progress.failed) == (1, 1)
    assert progress.skipped == 4  # duplicates are failures, not skips


def test_bad_keys_are_failed_rows_of_their_kind():
    progress = BatchProgress(10)
    progress.count_bad_keys(3, duplicates=True)
    progress.count_bad_keys(2, duplicates=False)
    assert (progress.duplicate_keys, progress.invalid_keys, progress.failed, progress.seen) == (3, 2, 5, 0)


def test_the_progress_line_is_due_every_n_rows():
    progress = BatchProgress(300, every_rows=100, every_seconds=3600)
    progress.seen = 99
    assert not progress.due()
    progress.seen = 100
    assert progress.due() and not progress.due()
    assert progress.line().startswith("Progress: 100/300 rows (33%), created 0")


def test_a_deferred_runs_legs_add_up_what_they_did():
    summary = so_far({"created": 5, "deleted": 1, "deferrals": 1, "failed": 9}, {"created": 2, "failed": 1})
    assert summary == {"created": 7, "failed": 1, "updated": 0, "deleted": 1, "deferrals": 1}
    assert so_far({}, {"created": 1}, deferring=True)["deferrals"] == 1


def test_problems_are_told_in_words():
    clean = dict.fromkeys(SUMMARY_KEYS, 0)
    assert problems(clean) == ""
    text = problems(
        {**clean, "failed": 3, "duplicate_keys": 2, "skipped_failed": 1, "pending_unreconciled": 4}
    )
    assert text.startswith("3 row(s) failed in this run (2 with a NULL, duplicated or over-long key)")
    assert "1 row(s) failed permanently in an earlier run" in text and "4 row(s) are pending" in text


class _Quota:
    def __init__(self, status=None):
        self.status = status

    def quota_status(self):
        if self.status is None:
            raise OSError("store gone")
        return self.status


@pytest.mark.parametrize("rows, fits", [(10, "it fits"), (500, "it does NOT fit; the run defers")])
def test_the_quota_line_says_whether_the_run_fits(caplog, rows, fits):
    gong = _Quota({"used": 9_900, "budget": 10_000, "left": 100, "resets_at": "tomorrow"})
    with caplog.at_level(logging.INFO):
        assert log_quota(logging.getLogger("t"), gong, rows, True) == 100
    assert fits in caplog.text and "9900 of 10000 calls used" in caplog.text


def test_an_unreadable_quota_does_not_stop_the_run(caplog):
    assert log_quota(logging.getLogger("t"), _Quota(), 5, False) is None
    assert "Could not read today's Gong quota (store gone)" in caplog.text
