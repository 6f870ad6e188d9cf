"""Plan rules: from a row's ledger entry (and, in the sync modes, the row's facts) one step and its
reason; pure functions, so every rule is stated here once."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pendulum
import pytest

from airflow_provider_gong.meetings import Meeting
from airflow_provider_gong.sync.plan import CREATE, SKIP, RowFacts, plan_removed, plan_row
from airflow_provider_gong.sync.records import (
    CREATED,
    FAILED,
    PENDING,
    PERMANENT,
    TRANSIENT,
    UNKNOWN,
    LedgerEntry,
)

NOW = pendulum.datetime(2030, 1, 1, 12, tz="UTC")


# -- plan ---------------------------------------------------------------------------------------


def entry(status, kind=None, attempts=1, owner="other-run", age=3600.0):
    return LedgerEntry(status, kind, attempts, owner, NOW.subtract(seconds=age).isoformat())


@pytest.mark.parametrize(
    "row, retry_failed, expected",
    [
        (None, False, (CREATE, "new")),
        (entry(CREATED), True, (SKIP, "created")),
        (entry(PENDING), True, (SKIP, "pending")),
        (entry(PENDING, age=5), False, (SKIP, "in_flight")),  # another run's call, still in its lease
        (entry(PENDING, UNKNOWN, age=5), False, (SKIP, "pending")),  # its answer was lost: reconcile
        (LedgerEntry(PENDING, None, 1, "0.1.0", None), False, (SKIP, "pending")),  # no timestamp
        (entry(FAILED, TRANSIENT), False, (CREATE, "retry_transient")),
        (entry(FAILED, PERMANENT), False, (SKIP, "failed_permanent")),
        (entry(FAILED, PERMANENT), True, (CREATE, "retry_failed")),
        (entry(CREATED, owner="this-run"), False, (SKIP, "duplicate_in_run")),
        (entry("something-else"), True, (SKIP, "pending")),
    ],
)
def test_plan_rules(row, retry_failed, expected):
    step = plan_row(row, retry_failed=retry_failed, owner="this-run", lease_seconds=600, now=NOW)
    assert (step.action, step.reason) == expected


# -- sync rules (upsert / mirror) ------------------------------------------------------------------

_LIVE = LedgerEntry(
    "created", None, 1, "run-x", "2030-01-01T00:00:00+00:00", "77", "rep@acme.com", "fp-1", None, None
)
_FACTS = RowFacts(fingerprint="fp-1", organizer_email="rep@acme.com")


@pytest.mark.parametrize(
    "entry, facts, expected",
    [
        (None, _FACTS, ("create", "new")),
        (None, RowFacts(cancelled=True, fingerprint="fp-1"), ("skip", "cancelled_not_created")),
        (None, RowFacts(over=True, fingerprint="fp-1"), ("skip", "past")),
        (_LIVE, _FACTS, ("skip", "unchanged")),
        (_LIVE, RowFacts(fingerprint="fp-2", organizer_email="rep@acme.com"), ("update", "changed")),
        (
            _LIVE,
            RowFacts(fingerprint="fp-2", organizer_email="ae@acme.com"),
            ("replace", "organizer_changed"),
        ),
        (_LIVE, RowFacts(cancelled=True), ("delete", "cancelled")),
        (_LIVE, RowFacts(cancelled=True, over=True), ("skip", "past")),
        (_LIVE, RowFacts(over=True, fingerprint="fp-2"), ("skip", "past")),
        (_LIVE, RowFacts(), ("skip", "created")),  # the row turned invalid: Gong keeps the last version
        (replace(_LIVE, fingerprint=None), _FACTS, ("update", "no_fingerprint")),
        (replace(_LIVE, status="deleted"), _FACTS, ("create", "recreate")),
        (replace(_LIVE, status="deleted"), RowFacts(cancelled=True), ("skip", "deleted")),
        # A run died mid-PUT / mid-DELETE: decided afresh (both calls are safe to repeat).
        (
            replace(_LIVE, status="pending", action="update", updated_at="2000-01-01T00:00:00+00:00"),
            RowFacts(fingerprint="fp-2", organizer_email="rep@acme.com"),
            ("update", "changed"),
        ),
        (
            replace(_LIVE, status="pending", action="delete", updated_at="2000-01-01T00:00:00+00:00"),
            RowFacts(cancelled=True),
            ("delete", "cancelled"),
        ),
        (replace(_LIVE, status="pending", action="update"), _FACTS, ("skip", "in_flight")),
        (
            replace(_LIVE, status="pending", action="create", updated_at="2000-01-01T00:00:00+00:00"),
            _FACTS,
            ("skip", "pending"),
        ),  # a create is never redone on its own
        (replace(_LIVE, status="failed", error_kind="permanent"), _FACTS, ("skip", "failed_permanent")),
    ],
)
def test_sync_rules(entry, facts, expected):
    step = plan_row(entry, retry_failed=False, owner="run-y", mode="upsert", facts=facts)
    assert (step.action, step.reason) == expected
    # create mode ignores the facts: today's behaviour
    if entry is None:
        assert plan_row(entry, retry_failed=False, owner="run-y", facts=facts).action == "create"


def test_removed_rows_are_deleted_unless_over_or_not_live():
    assert plan_removed(_LIVE).action == "delete"
    assert plan_removed(replace(_LIVE, end_time="2001-01-01T00:00:00+00:00")).reason == "past"
    assert plan_removed(replace(_LIVE, status="deleted")).action == "skip"
    died_mid_delete = replace(
        _LIVE, status="pending", action="delete", updated_at="2000-01-01T00:00:00+00:00"
    )
    assert plan_removed(died_mid_delete).action == "delete"
    assert plan_removed(replace(died_mid_delete, action="create")).action == "skip"  # creates: reconcile


def test_fingerprint_ignores_presentation_but_not_content():
    base = dict(
        start_time="2030-01-01T10:00:00Z", end_time="2030-01-01T11:00:00Z", organizer_email="rep@acme.com"
    )
    now = dt.datetime(2029, 12, 1, tzinfo=dt.timezone.utc)
    a = Meeting.build(**base, invitees=["a@x.com", "b@x.com"], now=now)
    b = Meeting.build(  # same meeting: other zone, invitees reordered and in other case
        **{**base, "start_time": "2030-01-01T11:00:00+01:00"},
        invitees=["B@x.com", "a@x.com"],
        now=now,
        timezone="Europe/Paris",
    )
    c = Meeting.build(**base, invitees=["a@x.com", "b@x.com", "c@x.com"], now=now)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
