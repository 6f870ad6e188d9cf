"""The meeting operators' execute() against the stand-in over loopback (no Airflow run needed): the
create (exactly once, its XCom and records), then update, delete and integration status."""

from __future__ import annotations

from unittest.mock import MagicMock, call

import pytest

from airflow_provider_gong._compat import AirflowFailException
from airflow_provider_gong.exceptions import (
    GongMeetingMayExistError,
    GongNotFoundError,
    GongPermanentError,
    GongRateLimitError,
    GongValidationError,
)
from airflow_provider_gong.operators.meetings import (
    OUTCOME_KEY,
    STATE_KEY,
    GongCreateMeetingOperator,
    GongDeleteMeetingOperator,
    GongMeetingIntegrationStatusOperator,
    GongUpdateMeetingOperator,
)
from tests.dates import NEXT_YEAR, SOON


def make_op(**changes):
    args = {
        "task_id": "create",
        "start_time": f"{NEXT_YEAR}-01-15T10:00:00",
        "end_time": f"{NEXT_YEAR}-01-15T10:30:00",
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
    assert created.payload["startTime"] == f"{NEXT_YEAR}-01-15T10:00:00-05:00"
    assert [i["email"] for i in created.payload["invitees"]] == ["buyer@client.com", "cfo@client.com"]
    assert result["meeting_id"] == created.meeting_id and isinstance(result["meeting_id"], str)
    assert result["additional_invitees"] == [{"displayName": "Gong Assistant", "email": "assistant@gong.io"}]
    assert result["request_id"]
    ti.xcom_push.assert_has_calls(
        [
            call(key="meeting_id", value=created.meeting_id),
            call(key="meeting_id_display", value=f'"{created.meeting_id}"'),
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
        ({"end_time": f"{NEXT_YEAR}-01-15T09:00:00"}, None),
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
    pushed = [(c.kwargs["key"], c.kwargs["value"]) for c in ti.xcom_push.call_args_list]
    assert {key for key, _ in pushed} == {OUTCOME_KEY} and pushed[-1] == (OUTCOME_KEY, "rejected")


def _outcomes(ti: MagicMock) -> list[object]:
    return [c.kwargs["value"] for c in ti.xcom_push.call_args_list if c.kwargs["key"] == OUTCOME_KEY]


def test_create_with_lost_answer_is_reported_not_retried(gong_connection):
    gong_connection.inject("drop_after")
    ti = MagicMock()
    with pytest.raises(GongMeetingMayExistError):
        make_op().execute({"ti": ti})
    assert gong_connection.created_count() == 1  # it exists, and was not created again
    assert _outcomes(ti) == ["sending", "unknown"]  # downstream must not record it as failed


def test_outcome_marks_sending_before_the_post_then_created(gong_connection):
    ti = MagicMock()
    ti.xcom_push.side_effect = lambda key, value: (
        (key == OUTCOME_KEY and value == "sending")
        and (gong_connection.log == [] or pytest.fail("'sending' must be recorded before any Gong call"))
    )
    make_op().execute({"ti": ti})
    assert _outcomes(ti) == ["sending", "created"]


def test_quota_exhaustion_is_a_transient_failure(gong_connection, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GONG_DEFAULT", gong_connection.connection_json(max_retry_wait=5))
    gong_connection.inject("status", status=429, retry_after=3600)
    with pytest.raises(GongRateLimitError) as info:
        make_op().execute({"ti": MagicMock()})
    assert not isinstance(info.value, AirflowFailException)
    assert info.value.retry_after == 3600


# -- exactly once across Airflow retries (task_state_store, Airflow >= 3.3) --------------------------


class FakeStore:
    """The task_state_store accessor's interface (get / set / delete), kept in a dict."""

    def __init__(self, values=None):
        self.values = dict(values or {})

    def get(self, key, default=None):
        return self.values.get(key, default)

    def set(self, key, value, **kwargs):
        self.values[key] = value

    def delete(self, key):
        self.values.pop(key, None)


def test_the_result_is_stored_and_a_retry_returns_it_without_calling_gong(gong_connection):
    store = FakeStore()
    first = make_op().execute({"ti": MagicMock(), "task_state_store": store})
    assert store.values[STATE_KEY]["state"] == "created"
    ti = MagicMock()
    again = make_op().execute({"ti": ti, "task_state_store": store})
    assert again == first and gong_connection.created_count() == 1
    ti.xcom_push.assert_any_call(key="meeting_id", value=first["meeting_id"])
    ti.xcom_push.assert_any_call(key="meeting_id_display", value=f'"{first["meeting_id"]}"')


def test_a_retry_that_finds_only_the_mark_fails_as_may_exist_without_calling_gong(gong_connection):
    store = FakeStore({STATE_KEY: {"state": "sending", "at": "2030-01-01T00:00:00+00:00", "try_number": 1}})
    with pytest.raises(GongMeetingMayExistError, match="earlier try") as info:
        make_op().execute({"ti": MagicMock(), "task_state_store": store})
    assert isinstance(info.value, AirflowFailException)
    assert gong_connection.log == []


def test_a_lost_answer_keeps_the_mark(gong_connection):
    store = FakeStore()
    gong_connection.inject("drop_after")
    with pytest.raises(GongMeetingMayExistError):
        make_op().execute({"ti": MagicMock(), "task_state_store": store})
    assert store.values[STATE_KEY]["state"] == "sending"
    with pytest.raises(GongMeetingMayExistError):
        make_op().execute({"ti": MagicMock(), "task_state_store": store})
    assert gong_connection.created_count() == 1


def test_a_failure_that_created_nothing_clears_the_mark_so_a_retry_creates_it(gong_connection, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GONG_DEFAULT", gong_connection.connection_json(max_retry_wait=5))
    store = FakeStore()
    gong_connection.inject("status", status=429, retry_after=3600)
    with pytest.raises(GongRateLimitError):
        make_op().execute({"ti": MagicMock(), "task_state_store": store})
    assert STATE_KEY not in store.values
    make_op().execute({"ti": MagicMock(), "task_state_store": store})
    assert gong_connection.created_count() == 1


def _xcom_down_after_the_post(key: str, value: object) -> None:
    if key != OUTCOME_KEY:  # the "sending" mark goes through; the result pushes fail
        raise RuntimeError("XCom backend down")


def test_xcom_failure_after_the_post_with_a_store_is_finished_by_the_retry(gong_connection):
    store = FakeStore()
    ti = MagicMock()
    ti.xcom_push.side_effect = _xcom_down_after_the_post
    with pytest.raises(RuntimeError):
        make_op().execute({"ti": ti, "task_state_store": store})
    result = make_op().execute({"ti": MagicMock(), "task_state_store": store})
    assert (
        gong_connection.created_count() == 1 and result["meeting_id"] == gong_connection.created[0].meeting_id
    )


def test_xcom_failure_after_the_post_without_a_store_is_permanent_and_names_the_meeting(gong_connection):
    ti = MagicMock()
    ti.xcom_push.side_effect = _xcom_down_after_the_post
    with pytest.raises(AirflowFailException) as info:
        make_op().execute({"ti": ti})
    assert gong_connection.created[0].meeting_id in str(info.value)
    # "unknown", never "rejected": a write-back must not read it as "nothing was created"
    assert isinstance(info.value, GongMeetingMayExistError)
    assert _outcomes(ti) == ["sending", "unknown"]


# Update, delete and integration status.

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
    assert ti.xcom_push.call_args_list == [
        call(key="meeting_id", value=meeting_id),
        call(key="meeting_id_display", value=f'"{meeting_id}"'),
    ]


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
