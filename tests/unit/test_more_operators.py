"""Update, delete and integration-status operators against the stand-in over loopback."""

from __future__ import annotations

from unittest.mock import MagicMock

import pytest

from airflow_provider_gong._compat import AirflowFailException
from airflow_provider_gong.exceptions import GongNotFoundError, GongPermanentError, GongValidationError
from airflow_provider_gong.operators.meetings import (
    GongCreateMeetingOperator,
    GongDeleteMeetingOperator,
    GongMeetingIntegrationStatusOperator,
    GongUpdateMeetingOperator,
)
from tests.dates import SOON

MEETING = {
    "start_time": f"{SOON}T10:00:00Z",
    "end_time": f"{SOON}T10:30:00Z",
    "invitees": ["buyer@client.com"],
    "organizer_email": "rep@acme.com",
}


def created(gong) -> str:
    return GongCreateMeetingOperator(task_id="c", **MEETING).execute({"ti": MagicMock()})["meeting_id"]


def test_update_replaces_the_meeting_and_pushes_its_id(gong_connection):
    meeting_id = created(gong_connection)
    ti = MagicMock()
    answer = GongUpdateMeetingOperator(
        task_id="u", meeting_id=meeting_id, **{**MEETING, "end_time": f"{SOON}T11:00:00Z", "title": "Moved"}
    ).execute({"ti": ti})
    assert answer["meeting_id"] == meeting_id and answer["request_id"]
    assert gong_connection.meetings[meeting_id]["endTime"] == f"{SOON}T11:00:00+00:00"
    assert gong_connection.meetings[meeting_id]["title"] == "Moved"
    ti.xcom_push.assert_called_once_with(key="meeting_id", value=meeting_id)


def test_update_validates_before_any_call_and_an_unknown_meeting_is_permanent(gong_connection):
    with pytest.raises(GongValidationError, match="end_time"):
        GongUpdateMeetingOperator(task_id="u", meeting_id="1", **{**MEETING, "end_time": "oops"}).execute(
            {"ti": MagicMock()}
        )
    assert gong_connection.log == []
    with pytest.raises(GongNotFoundError) as info:
        GongUpdateMeetingOperator(task_id="u", meeting_id="424242", **MEETING).execute({"ti": MagicMock()})
    assert isinstance(info.value, AirflowFailException)


def test_delete_is_idempotent(gong_connection):
    meeting_id = created(gong_connection)
    op = GongDeleteMeetingOperator(task_id="d", meeting_id=meeting_id, organizer_email="rep@acme.com")
    assert op.execute({"ti": MagicMock()}) == {"meeting_id": meeting_id, "deleted": True}
    assert meeting_id not in gong_connection.meetings
    assert op.execute({"ti": MagicMock()}) == {"meeting_id": meeting_id, "deleted": False}  # 404: gone


def test_delete_rejects_a_bad_organizer_before_any_call(gong_connection):
    with pytest.raises(GongValidationError, match="organizer_email"):
        GongDeleteMeetingOperator(task_id="d", meeting_id="1", organizer_email="rep@").execute({})
    assert gong_connection.log == []


def test_status_returns_gongs_entries_and_can_fail_naming_each_bad_organizer(gong_connection):
    emails = "rep@acme.com, nobody@acme.com; noconsent@acme.com"
    users = GongMeetingIntegrationStatusOperator(task_id="s", emails=emails).execute({})
    assert {u["email"]: u["valid"] for u in users} == {
        "rep@acme.com": True,
        "nobody@acme.com": False,
        "noconsent@acme.com": False,
    }
    with pytest.raises(GongPermanentError) as info:
        GongMeetingIntegrationStatusOperator(task_id="s", emails=emails, fail_on_invalid=True).execute({})
    message = str(info.value)
    assert "2 organizer(s)" in message and "nobody@acme.com" in message and "noconsent@acme.com" in message
    assert "rep@acme.com:" not in message
    assert "http" in message  # Gong's fixUrl for the consent page


def test_status_rejects_bad_addresses_before_any_call(gong_connection):
    with pytest.raises(GongValidationError):
        GongMeetingIntegrationStatusOperator(task_id="s", emails=["a..b@x.com"]).execute({})
    with pytest.raises(GongValidationError):
        GongMeetingIntegrationStatusOperator(task_id="s", emails=[]).execute({})
    assert gong_connection.log == []
