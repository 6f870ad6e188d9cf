"""
The arguments of a meeting, shared by the create and the update operator.

Both send a whole meeting (a PUT replaces it), so both take the same arguments and validate them by
the same rules. Imported at DAG parse time: the meeting model is imported where it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_gong import DEFAULT_CONN_ID
from airflow_provider_gong.deferral import default_deferrable

if TYPE_CHECKING:
    from airflow_provider_gong.meetings import Meeting
    from airflow_provider_gong.rules import MeetingLimits


class MeetingFieldsOperator(BaseOperator):
    """The meeting a create or an update sends: the same arguments, validated by the same rules."""

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
        limits: MeetingLimits | dict[str, Any] | None = None,
        gong_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.start_time = start_time
        self.end_time = end_time
        self.invitees = invitees
        self.organizer_email = organizer_email
        self.title = title
        self.external_id = external_id
        self.timezone = timezone
        self.limits = limits
        self.gong_conn_id = gong_conn_id

    def _meeting(self) -> Meeting:
        """Return the rendered arguments as a validated meeting (raises GongValidationError on bad input)."""
        from airflow_provider_gong.meetings import Meeting

        return Meeting.build(
            start_time=self.start_time,
            end_time=self.end_time,
            invitees=self.invitees,
            organizer_email=self.organizer_email,
            title=self.title,
            external_id=self.external_id,
            timezone=self.timezone,
            limits=self.limits,
        )
