from __future__ import annotations

import datetime as dt

import pendulum
import pytest

from airflow_provider_gong._compat import AirflowFailException
from airflow_provider_gong.exceptions import GongValidationError
from airflow_provider_gong.meetings import Meeting, MeetingResult

GOOD = {
    "start_time": "2025-03-04T15:00:00Z",
    "end_time": "2025-03-04T15:30:00Z",
    "organizer_email": "rep@acme.com",
    "invitees": ["buyer@client.com"],
}


# The window is measured from a fixed instant here, so these calendar dates never expire.
NOW = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


def build(**changes):
    return Meeting.build(**{**GOOD, "now": NOW, **changes})


def test_payload_is_gongs_camel_case_body():
    meeting = build(
        invitees=[
            {"email": "pat@client.com", "displayName": "Pat Buyer", "firstName": "Pat", "lastName": "B"}
        ],
        title="Discovery call",
        external_id="crm-evt-8812",
    )
    assert meeting.to_payload() == {
        "startTime": "2025-03-04T15:00:00+00:00",
        "endTime": "2025-03-04T15:30:00+00:00",
        "organizerEmail": "rep@acme.com",
        "invitees": [
            {"email": "pat@client.com", "displayName": "Pat Buyer", "firstName": "Pat", "lastName": "B"}
        ],
        "title": "Discovery call",
        "externalId": "crm-evt-8812",
    }


def test_naive_times_are_read_in_the_stated_timezone_and_sent_with_offset():
    meeting = build(
        start_time="2025-07-01T09:00:00", end_time=dt.datetime(2025, 7, 1, 9, 45), timezone="Europe/Paris"
    )
    body = meeting.to_payload()
    assert body["startTime"] == "2025-07-01T09:00:00+02:00"
    assert body["endTime"] == "2025-07-01T09:45:00+02:00"


def test_naive_times_default_to_utc():
    assert build(start_time="2025-01-01T10:00:00", end_time="2025-01-01T11:00:00").to_payload()[
        "startTime"
    ] == ("2025-01-01T10:00:00+00:00")


def test_aware_values_keep_their_instant_and_are_sent_in_the_task_timezone():
    start = pendulum.datetime(2025, 1, 1, 10, tz="America/New_York")
    meeting = build(start_time=start, end_time=start.add(minutes=30), timezone="Asia/Tokyo")
    assert meeting.start_time == start
    assert meeting.to_payload()["startTime"] == "2025-01-02T00:00:00+09:00"


def test_winter_and_summer_offsets_follow_dst():
    winter = build(start_time="2025-01-15T10:00", end_time="2025-01-15T11:00", timezone="America/New_York")
    summer = build(start_time="2025-07-15T10:00", end_time="2025-07-15T11:00", timezone="America/New_York")
    assert winter.to_payload()["startTime"].endswith("-05:00")
    assert summer.to_payload()["startTime"].endswith("-04:00")


@pytest.mark.parametrize(
    "invitees, expected",
    [
        ("a@x.com, b@y.com; c@z.com", ["a@x.com", "b@y.com", "c@z.com"]),
        ('["a@x.com", "b@y.com"]', ["a@x.com", "b@y.com"]),
        ('[{"email": "a@x.com", "displayName": "A"}]', ["a@x.com"]),
        ({"email": "a@x.com"}, ["a@x.com"]),
        (("a@x.com",), ["a@x.com"]),
        ([{"email": "a@x.com", "first_name": "Ann"}], ["a@x.com"]),
    ],
)
def test_invitee_shapes(invitees, expected):
    assert [i["email"] for i in build(invitees=invitees).to_payload()["invitees"]] == expected


def test_duplicates_and_the_organizer_are_removed_case_insensitively():
    meeting = build(invitees=["A@x.com", "a@X.com", "REP@acme.com", "b@y.com"])
    assert [i.email for i in meeting.invitees] == ["A@x.com", "b@y.com"]


def test_integer_external_id_becomes_a_string_and_blank_optionals_are_dropped():
    body = build(external_id=12345678901234567890, title="  ").to_payload()
    assert body["externalId"] == "12345678901234567890"
    assert "title" not in body


BAD_INPUTS = [
    ({"start_time": None}, "start_time"),
    ({"end_time": None}, "end_time"),
    ({"organizer_email": None}, "organizer_email"),
    ({"invitees": None}, "invitees"),
    ({"start_time": "not a date"}, "start_time"),
    ({"start_time": "2025-03-04"}, "needs a date and a time"),
    ({"end_time": "15:30"}, "end_time"),
    ({"start_time": 1741100400}, "start_time"),
    ({"start_time": ""}, "start_time"),
    ({"end_time": "2025-03-04T15:00:00Z"}, "must be after start_time"),
    ({"end_time": "2025-03-04T14:00:00Z"}, "must be after start_time"),
    ({"organizer_email": "rep"}, "organizer_email"),
    ({"organizer_email": "rep@acme"}, "organizer_email"),
    ({"organizer_email": "rep@@acme.com"}, "organizer_email"),
    ({"organizer_email": "a@b.com, c@d.com"}, "organizer_email"),
    ({"organizer_email": 42}, "organizer_email"),
    ({"invitees": []}, "at least one invitee"),
    ({"invitees": ["rep@acme.com"]}, "at least one invitee"),
    ({"invitees": ["not-an-email"]}, "invitee email"),
    ({"invitees": [{"displayName": "No email"}]}, "email"),
    ({"invitees": [{"email": "a@b.com", "phone": "123"}]}, "unknown keys"),
    ({"invitees": [42]}, "invitees[0]"),
    ({"invitees": "[not json"}, "does not parse"),
    ({"invitees": 7}, "invitees"),
    ({"invitees": [{"email": "a@b.com", "displayName": 5}]}, "display_name"),
    ({"title": "x" * 1001}, "title"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"external_id": ["a"]}, "external_id"),
]


@pytest.mark.parametrize("changes, fragment", BAD_INPUTS, ids=[str(c)[:60] for c, _ in BAD_INPUTS])
def test_bad_input_raises_a_clear_error_naming_the_field(changes, fragment):
    with pytest.raises(GongValidationError) as info:
        build(**changes)
    assert fragment in str(info.value)
    # Bad input is permanent: Airflow must not retry it.
    assert isinstance(info.value, AirflowFailException)


def test_meeting_result_keeps_ids_as_strings():
    result = MeetingResult.from_response(
        {"meetingId": 7782342274025937895, "meetingUrl": "u", "requestId": "r"}
    )
    assert result.meeting_id == "7782342274025937895"
    assert result.to_dict() == {
        "meeting_id": "7782342274025937895",
        "meeting_url": "u",
        "request_id": "r",
        "additional_invitees": [],
    }
