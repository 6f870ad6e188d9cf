"""The create operator's execute(), against the stand-in over loopback (no Airflow run needed)."""

from __future__ import annotations

from unittest.mock import MagicMock, call

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_gong.exceptions import GongMeetingMayExistError, GongRateLimitError
from airflow_provider_gong.operators.meetings import GongCreateMeetingOperator


def make_op(**changes):
    args = {
        "task_id": "create",
        "start_time": "2025-03-04T10:00:00",
        "end_time": "2025-03-04T10:30:00",
        "invitees": '["buyer@client.com", {"email": "cfo@client.com", "displayName": "CFO"}]',
        "organizer_email": "rep@acme.com",
        "title": "Discovery",
        "external_id": "crm-1",
        "timezone": "America/New_York",
    }
    return GongCreateMeetingOperator(**{**args, **changes})


def test_execute_creates_pushes_xcom_and_returns_the_result(gong_connection):
    ti = MagicMock()
    result = make_op().execute({"ti": ti})
    (created,) = gong_connection.created
    assert created.payload["startTime"] == "2025-03-04T10:00:00-05:00"
    assert [i["email"] for i in created.payload["invitees"]] == ["buyer@client.com", "cfo@client.com"]
    assert result["meeting_id"] == created.meeting_id and isinstance(result["meeting_id"], str)
    assert result["additional_invitees"] == [{"displayName": "Gong Assistant", "email": "assistant@gong.io"}]
    assert result["request_id"]
    ti.xcom_push.assert_has_calls(
        [
            call(key="meeting_id", value=created.meeting_id),
            call(key="meeting_url", value=result["meeting_url"]),
        ]
    )


def test_template_fields_cover_every_argument():
    assert set(GongCreateMeetingOperator.template_fields) == {
        "gong_conn_id",
        "start_time",
        "end_time",
        "invitees",
        "organizer_email",
        "title",
        "external_id",
        "timezone",
    }


@pytest.mark.parametrize(
    "changes, standin_setup",
    [
        ({"end_time": "2025-03-04T09:00:00"}, None),
        ({"organizer_email": "nobody@acme.com"}, None),
        ({"organizer_email": "noconsent@acme.com"}, None),
        ({}, lambda s: setattr(s, "limited_release", True)),
        ({}, lambda s: s.inject("status", status=400)),
    ],
)
def test_permanent_failures_fail_without_retries_and_create_nothing(gong_connection, changes, standin_setup):
    if standin_setup:
        standin_setup(gong_connection)
    ti = MagicMock()
    with pytest.raises(AirflowFailException):
        make_op(**changes).execute({"ti": ti})
    assert gong_connection.created_count() == 0
    ti.xcom_push.assert_not_called()


def test_create_with_lost_answer_is_reported_not_retried(gong_connection):
    gong_connection.inject("drop_after")
    with pytest.raises(GongMeetingMayExistError):
        make_op().execute({"ti": MagicMock()})
    assert gong_connection.created_count() == 1  # it exists, and was not created again


def test_quota_exhaustion_is_a_transient_failure(gong_connection, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GONG_DEFAULT", gong_connection.connection_json(max_retry_wait=5))
    gong_connection.inject("status", status=429, retry_after=3600)
    with pytest.raises(GongRateLimitError) as info:
        make_op().execute({"ti": MagicMock()})
    assert not isinstance(info.value, AirflowFailException)
    assert info.value.retry_after == 3600
