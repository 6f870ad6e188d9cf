"""The create task's record across tries: a stored result is returned, a bare "sending" mark is never
guessed past, and a late save is recognised."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from airflow_provider_gong.exceptions import GongMeetingMayExistError
from airflow_provider_gong.meetings import MeetingResult
from airflow_provider_gong.operators import _exactly_once
from airflow_provider_gong.operators._exactly_once import STATE_KEY

LOG = logging.getLogger(__name__)
RESULT = MeetingResult.from_response(
    {"meetingId": "77", "meetingUrl": "https://join/77", "requestId": "r", "additionalInvitees": []}
)


class Store(dict):
    def set(self, key, value):
        self[key] = value


def test_a_saved_result_comes_back_as_it_was():
    store, ti = Store(), SimpleNamespace(try_number=1)
    assert RESULT is not None
    _exactly_once.save(store, ti, RESULT)
    assert store[STATE_KEY]["state"] == "created" and store[STATE_KEY]["try_number"] == 1
    assert _exactly_once.resume(store[STATE_KEY], "crm-1", LOG) == RESULT
    assert _exactly_once.saved(store, RESULT)


def test_a_sending_mark_alone_is_may_exist_and_names_how_to_go_on():
    store = Store()
    _exactly_once.mark_sending(store, SimpleNamespace(try_number=3))
    assert store[STATE_KEY]["state"] == "sending"
    with pytest.raises(GongMeetingMayExistError) as info:
        _exactly_once.resume(store[STATE_KEY], "crm-1", LOG)
    assert "try 3" in str(info.value) and "'crm-1'" in str(info.value) and STATE_KEY in str(info.value)


def test_saved_is_false_for_another_meeting_or_an_unreadable_store():
    assert RESULT is not None
    other = Store({STATE_KEY: {"state": "created", "result": {"meeting_id": "78"}}})
    assert not _exactly_once.saved(other, RESULT)
    broken = SimpleNamespace(get=lambda key: (_ for _ in ()).throw(OSError("down")))
    assert not _exactly_once.saved(broken, RESULT)
