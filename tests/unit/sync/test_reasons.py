"""Action and Reason: one table for every reason (its words, its dry-run bucket, its skip counter)."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from airflow_provider_gong.sync.plan import Action, Reason, Step, plan_removed, plan_row
from airflow_provider_gong.sync.progress import BatchProgress
from airflow_provider_gong.sync.records import LedgerEntry

COUNTERS = {f.name for f in dataclasses.fields(BatchProgress) if f.type in ("int", int)}


def test_reasons_read_as_the_words_logs_and_summaries_always_used():
    assert Reason.NEW == "new" and str(Reason.IN_FLIGHT) == "in_flight" and f"{Reason.PAST}" == "past"
    record = logging.LogRecord(
        "batch", logging.INFO, __file__, 1, "Row 7: %s (%s)", (Action.UPDATE, Reason.CHANGED), None
    )
    assert record.getMessage() == "Row 7: update (changed)" and type(str(Action.DELETE)) is str
    assert json.dumps({Reason.CANCELLED_NOT_CREATED: Action.SKIP}) == '{"cancelled_not_created": "skip"}'
    assert Reason("pending") is Reason.PENDING  # found by its word, as the ledger and old logs spell it


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_says_what_it_means_and_where_it_is_counted(reason):
    assert reason.meaning and not reason.meaning.endswith(".")  # it is read inside a log line
    assert reason.counter in COUNTERS  # a skip for this reason lands in a real counter
    assert reason.bucket in ("skipped", "pending", "past", "unchanged", "cancelled")


@pytest.mark.parametrize(
    "reason, bucket, counter",
    [
        (Reason.CREATED, "skipped", "skipped_created"),
        (Reason.DELETED, "skipped", "skipped_created"),
        (Reason.PENDING, "pending", "skipped_pending"),
        (Reason.IN_FLIGHT, "pending", "claimed_elsewhere"),
        (Reason.UNCHANGED, "unchanged", "unchanged"),
        (Reason.PAST, "past", "skipped_past"),
        (Reason.CANCELLED_NOT_CREATED, "cancelled", "skipped_cancelled"),
        (Reason.FAILED_PERMANENT, "skipped", "skipped_failed"),
        (Reason.DUPLICATE_IN_RUN, "skipped", "duplicate_keys"),
        (Reason.INVALID_KEY, "skipped", "skipped_failed"),
    ],
)
def test_skip_reasons_keep_their_dry_run_bucket_and_counter(reason, bucket, counter):
    assert (reason.bucket, reason.counter) == (bucket, counter)


@pytest.mark.parametrize(
    "status, reason",
    [
        ("pending", Reason.PENDING),
        ("failed", Reason.FAILED),
        ("deleted", Reason.DELETED),
        ("odd", Reason.PENDING),
    ],
)
def test_a_removed_row_without_a_live_meeting_is_skipped_for_its_status(status, reason):
    assert plan_removed(LedgerEntry(status, "permanent", 1, "someone")) == Step(Action.SKIP, reason)


def test_plan_steps_carry_enum_members():
    step = plan_row(None, retry_failed=False, owner="me")
    assert step.action is Action.CREATE and step.reason is Reason.NEW
