"""Operators for single Gong meetings. They validate input and delegate every call to GongHook."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_gong.hooks.gong import GongHook
from airflow_provider_gong.links import MEETING_URL_KEY, GongMeetingLink
from airflow_provider_gong.meetings import Meeting

if TYPE_CHECKING:
    from airflow.sdk import Context

MEETING_ID_KEY = "meeting_id"


class GongCreateMeetingOperator(BaseOperator):
    """Create a Gong consent-meeting link (POST /v2/meetings).

    Pushes XCom ``meeting_id`` and ``meeting_url`` and returns a dict with ``meeting_id``,
    ``meeting_url``, ``request_id`` and ``additional_invitees`` (IDs are strings). Gong's
    ``additional_invitees`` (e.g. its assistant address) must be added to your calendar invite, or Gong
    will not record the call.

    Bad input and Gong's permanent answers (400/401/403/404/409) fail the task without Airflow
    retries. A create whose outcome is unknown (timeout, dropped connection, 5xx) also fails without
    retries: re-running it could create the meeting twice.

    :param start_time: datetime, pendulum value or ISO-8601 string (templated).
    :param end_time: same; must be after ``start_time`` (templated).
    :param invitees: list of emails or of ``{email, displayName, firstName, lastName}`` dicts, or a
        JSON string of either, or "a@x.com, b@y.com" (templated). The organizer is removed if present.
    :param organizer_email: a Gong user; their consent-page settings apply (templated).
    :param title: optional event title (templated).
    :param external_id: optional ID from your system, e.g. the CRM event ID (templated).
    :param timezone: IANA zone used to read naive start/end values (default UTC; templated).
    :param gong_conn_id: the Gong connection (templated).

    .. code-block:: python

        GongCreateMeetingOperator(
            task_id="create_meeting",
            start_time="{{ data_interval_end.add(days=1).isoformat() }}",
            end_time="{{ data_interval_end.add(days=1, minutes=30).isoformat() }}",
            invitees=["buyer@client.com"],
            organizer_email="rep@acme.com",
            title="Discovery call",
        )
    """

    template_fields: Sequence[str] = (
        "gong_conn_id",
        "start_time",
        "end_time",
        "invitees",
        "organizer_email",
        "title",
        "external_id",
        "timezone",
    )
    template_fields_renderers = {"invitees": "json"}
    operator_extra_links = (GongMeetingLink(),)
    ui_color = "#8039df"

    def __init__(
        self,
        *,
        start_time: Any,
        end_time: Any,
        invitees: Any,
        organizer_email: str,
        title: str | None = None,
        external_id: str | None = None,
        timezone: str = "UTC",
        gong_conn_id: str = GongHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.start_time = start_time
        self.end_time = end_time
        self.invitees = invitees
        self.organizer_email = organizer_email
        self.title = title
        self.external_id = external_id
        self.timezone = timezone
        self.gong_conn_id = gong_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        meeting = Meeting.build(
            start_time=self.start_time,
            end_time=self.end_time,
            invitees=self.invitees,
            organizer_email=self.organizer_email,
            title=self.title,
            external_id=self.external_id,
            timezone=self.timezone,
        )
        hook = GongHook(gong_conn_id=self.gong_conn_id)
        try:
            result = hook.create_meeting(meeting)
        finally:
            hook.close()
        ti = context["ti"]
        ti.xcom_push(key=MEETING_ID_KEY, value=result.meeting_id)
        ti.xcom_push(key=MEETING_URL_KEY, value=result.meeting_url)
        self.log.info(
            "Created Gong meeting %s (%s), requestId=%s, for %s at %s",
            result.meeting_id,
            result.meeting_url,
            result.request_id,
            meeting.organizer_email,
            meeting.start_time.isoformat(),
        )
        if result.additional_invitees:
            self.log.info(
                "Add these to the calendar invite so Gong records the call: %s",
                ", ".join(i.get("email", "?") for i in result.additional_invitees),
            )
        return result.to_dict()
