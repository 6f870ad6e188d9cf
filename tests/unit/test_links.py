"""links: the "Gong meeting" button reads the URL the task pushed; it never calls Gong."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk import BaseOperator

from airflow_provider_gong import links
from airflow_provider_gong.links import MEETING_URL_KEY, GongMeetingLink


@pytest.fixture
def xcom(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """XCom as the worker sees it when it resolves links: one value per (key, task instance)."""
    store: dict[str, Any] = {"reads": []}

    def get_value(*, key: str, ti_key: Any) -> Any:
        store["reads"].append((key, ti_key))
        return store.get((key, ti_key))

    monkeypatch.setattr(links.XCom, "get_value", staticmethod(get_value))
    return store


def test_the_link_is_the_pushed_meeting_url(xcom: dict[str, Any]) -> None:
    xcom[(MEETING_URL_KEY, "ti-1")] = "https://app.gong.io/meetings/123"
    assert GongMeetingLink().get_link(BaseOperator(task_id="t"), ti_key="ti-1") == (  # type: ignore[arg-type]
        "https://app.gong.io/meetings/123"
    )
    assert xcom["reads"] == [("meeting_url", "ti-1")]


def test_no_pushed_url_gives_an_empty_link_not_none(xcom: dict[str, Any]) -> None:
    """``get_link`` is declared to return a string: a task that pushed no URL gets an empty one."""
    assert GongMeetingLink().get_link(BaseOperator(task_id="t"), ti_key="ti-2") == ""  # type: ignore[arg-type]


def test_the_button_is_named_for_people() -> None:
    assert GongMeetingLink.name == "Gong meeting"
