"""The "Gong meeting" button on a task instance."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.providers.common.compat.sdk import XCom
from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey  # the key BaseOperatorLink.get_link is declared with

MEETING_URL_KEY = "meeting_url"


class GongMeetingLink(BaseOperatorLink):
    """
    Points at the meeting URL the task pushed to XCom.

    In Airflow 3 links are resolved on the worker when the task ends, so this only reads the XCom the
    operator pushed; it never calls Gong.
    """

    name = "Gong meeting"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return XCom.get_value(key=MEETING_URL_KEY, ti_key=ti_key) or ""
