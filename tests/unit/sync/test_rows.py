"""A source row as the batch sees it: key, meeting or the reason it is none, and the sync facts."""

from __future__ import annotations

import pendulum
import pytest

from airflow_provider_gong.exceptions import GongValidationError
from airflow_provider_gong.rules import MeetingLimits
from airflow_provider_gong.sync.plan import DEFAULT_COLUMNS
from airflow_provider_gong.sync.rows import RowReader, check_columns

NAMES = ["ID", "start_time", "end_time", "title", "organizer_email", "invitees", "external_id", "cancelled"]
START = pendulum.now("UTC").add(days=2).start_of("hour")
GOOD = (7, START.isoformat(), START.add(hours=1).isoformat(), "Call", "Rep@Acme.com", "a@x.com", None, None)


def reader() -> RowReader:
    return RowReader(DEFAULT_COLUMNS, "UTC", MeetingLimits())


def test_a_good_row_is_a_meeting_with_its_key_as_external_id():
    (row,) = reader().read(NAMES, [GOOD])
    assert (row.key, row.problem, row.trackable) == ("7", None, True)
    assert row.meeting is not None and row.meeting.external_id == "7"  # traceable to its row
    facts = row.facts()
    assert (facts.cancelled, facts.over, facts.organizer_email) == (False, False, "rep@acme.com")
    assert facts.fingerprint == row.meeting.fingerprint()


@pytest.mark.parametrize(
    ("external_id", "sent"), [("", "7"), ("   ", "7"), ("\t\n", "7"), (" crm-9 ", "crm-9")]
)
def test_a_blank_external_id_sends_the_row_key(external_id, sent):
    """The docs promise the row key whenever ``external_id`` is empty; spaces are empty too."""
    (row,) = reader().read(NAMES, [(*GOOD[:6], external_id, None)])
    assert row.problem is None
    assert row.meeting is not None and row.meeting.external_id == sent
    assert row.meeting.to_payload()["externalId"] == sent


def test_a_bad_row_carries_its_problem_and_no_fingerprint():
    bad = (
        8,
        START.isoformat(),
        START.subtract(hours=1).isoformat(),
        "Call",
        "rep@acme.com",
        "a@x.com",
        "x",
        "yes",
    )
    (row,) = reader().read(NAMES, [bad])
    assert row.meeting is None and "end" in row.problem
    assert row.facts().fingerprint is None and row.facts().cancelled is True


@pytest.mark.parametrize(
    "value, cancelled", [("TRUE", True), ("Canceled", True), (1, True), ("no", False), (0, False)]
)
def test_cancelled_values(value, cancelled):
    (row,) = reader().read(NAMES, [(*GOOD[:7], value)])
    assert row.facts().cancelled is cancelled


def test_a_key_longer_than_the_ledger_holds_is_not_trackable():
    (row,) = reader().read(NAMES, [("k" * 256, *GOOD[1:])])
    assert not row.trackable


def test_a_page_without_a_required_column_fails_with_the_mapping_hint():
    with pytest.raises(GongValidationError, match=r"no column 'invitees' for invitees.*columns=\{"):
        reader().read([n for n in NAMES if n != "invitees"], [GOOD[:5] + GOOD[6:]])


def test_missing_columns_fail_the_task_before_any_row():
    check_columns(NAMES, DEFAULT_COLUMNS)  # the optional ones may be absent too
    check_columns(NAMES[:6], DEFAULT_COLUMNS)
    with pytest.raises(GongValidationError, match=r"no column 'start_time' \(start_time\), 'end_time'"):
        check_columns(["id", "organizer_email", "invitees"], DEFAULT_COLUMNS)
