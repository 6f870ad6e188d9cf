"""claim -> call -> record per step, with a narrow fake pipeline and a fake Gong: what each outcome
writes, what it counts, and which errors stop the batch."""

from __future__ import annotations

from types import SimpleNamespace

import pendulum
import pytest

from airflow_provider_gong.exceptions import (
    GongAuthError,
    GongBadRequestError,
    GongMeetingMayExistError,
    GongNotFoundError,
    GongServerError,
    GongSyncGuardError,
)
from airflow_provider_gong.meetings import Meeting, MeetingResult
from airflow_provider_gong.sync.actions import Actions
from airflow_provider_gong.sync.plan import Reason
from airflow_provider_gong.sync.preflight import Preflight
from airflow_provider_gong.sync.progress import BatchProgress
from airflow_provider_gong.sync.records import LedgerEntry

LIVE = LedgerEntry("created", None, 1, "earlier", None, "77", "old@acme.com", "fp", None)


class Pipe:
    """Claims as told; outcomes kept in order; ``get`` answers with the last status written."""

    def __init__(self, wins=True):
        self.wins, self.claims, self.outcomes = wins, [], []
        self.ledger = SimpleNamespace(owner="me", table_name="led", claims=SimpleNamespace(collisions={}))

    def claim(self, key, entry, action):
        self.claims.append((key, str(action)))
        return self.wins

    def record(self, key, values, meaning):
        self.outcomes.append((key, values["status"], meaning))

    def get(self, key):
        status = next(s for k, s, _ in reversed(self.outcomes) if k == key)
        return LedgerEntry(status, None, 2, "me")


class Gong:
    def __init__(self, error=None):
        self.error, self.calls = error, []

    def _answer(self, name, value):
        self.calls.append(name)
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return value

    def create_meeting(self, meeting):
        return self._answer("POST", MeetingResult("123", "https://join/123", "req-1"))

    def update_meeting(self, meeting_id, meeting):
        return self._answer("PUT", {"request_id": "req-2"})

    def delete_meeting(self, meeting_id, organizer):
        return self._answer("DELETE", True)


def meeting(organizer="rep@acme.com") -> Meeting:
    start = pendulum.now("UTC").add(days=1)
    return Meeting.build(
        start_time=start, end_time=start.add(hours=1), organizer_email=organizer, invitees=["a@x.com"]
    )


def actions(gong=None, pipe=None) -> Actions:
    gong = gong or Gong()
    return Actions(gong, pipe or Pipe(), BatchProgress(10), Preflight(gong, enabled=False), key_column="id")


def test_a_create_is_claimed_sent_and_recorded_with_its_meeting():
    act = actions()
    act.create("k1", None, meeting(), None)
    assert act.pipe.claims == [("k1", "create")]
    assert act.pipe.outcomes == [("k1", "created", "created, meeting_id 123, meeting_url https://join/123")]
    assert act.progress.created == 1 and act.entries["k1"].claimed_by == "me"  # a second row: duplicate


def test_a_row_that_is_no_meeting_is_claimed_and_recorded_as_failed_without_a_call():
    act = actions()
    act.create("k1", None, None, "end before start")
    assert act.gong.calls == [] and act.pipe.outcomes == [("k1", "failed", "failed (permanent)")]
    assert act.progress.failed == 1


def test_a_claim_lost_sends_nothing():
    act = actions(pipe=Pipe(wins=False))
    act.create("k1", None, meeting(), None)
    assert act.gong.calls == [] and act.progress.claimed_elsewhere == 1


def test_a_key_the_ledger_holds_under_another_spelling_is_a_duplicate():
    pipe = Pipe(wins=False)
    pipe.ledger.claims.collisions["abc"] = "ABC"
    act = actions(pipe=pipe)
    act.create("abc", None, meeting(), None)
    assert (act.progress.duplicate_keys, act.progress.failed, act.progress.claimed_elsewhere) == (1, 1, 0)


def test_a_lost_answer_leaves_the_row_pending():
    act = actions(Gong(GongMeetingMayExistError("timed out", request_id="r9")))
    act.create("k1", None, meeting(), None)
    assert act.pipe.outcomes == [("k1", "pending", "pending")] and act.progress.unknown == 1


def test_gong_refusing_the_row_fails_the_row_and_the_batch_goes_on():
    act = actions(Gong(GongBadRequestError("bad invitee", status=400)))
    act.create("k1", None, meeting(), None)
    assert act.pipe.outcomes == [("k1", "failed", "failed (permanent)")]


def test_an_error_every_row_would_hit_stops_the_batch_after_recording_the_row():
    act = actions(Gong(GongAuthError("bad key", status=401)))
    with pytest.raises(GongAuthError):
        act.create("k1", None, meeting(), None)
    assert act.pipe.outcomes == [("k1", "failed", "failed (transient)")]


def test_an_update_is_recorded_with_the_new_version():
    act = actions()
    act.update("k1", LIVE, meeting())
    assert act.pipe.outcomes == [("k1", "created", "created")] and act.progress.updated == 1


def test_a_failed_update_puts_the_row_back_and_only_row_errors_let_the_batch_go_on():
    act = actions(Gong(GongBadRequestError("no", status=400)))
    act.update("k1", LIVE, meeting())
    assert act.pipe.outcomes == [("k1", "created", "created")] and act.progress.failed == 1
    act = actions(Gong(GongServerError("down", status=503)))
    with pytest.raises(GongServerError):
        act.update("k1", LIVE, meeting())
    assert act.pipe.outcomes == [("k1", "created", "created")]  # put back before stopping


def test_a_meeting_deleted_in_gong_is_created_again_on_update():
    act = actions(Gong(GongNotFoundError("gone", status=404)))
    act.update("k1", LIVE, meeting())
    assert act.gong.calls == ["PUT", "POST"]
    assert [s for _, s, _ in act.pipe.outcomes] == ["deleted", "created"]
    assert (act.progress.created, act.progress.updated) == (1, 0)


def test_a_replacement_is_one_delete_and_one_create_counted_as_a_create():
    act = actions()
    act.replace("k1", LIVE, meeting("new@acme.com"))
    assert act.gong.calls == ["DELETE", "POST"]
    assert (act.progress.deleted, act.progress.created) == (0, 1)


def test_deletes_stop_at_the_budget_the_guard_allowed():
    act = actions()
    act.delete_budget = 1
    assert act.delete("k1", LIVE, "old@acme.com") is True and act.deletes_left() == 0
    with pytest.raises(GongSyncGuardError, match="the most max_deletes allows"):
        act.delete("k2", LIVE, "old@acme.com")
    assert act.gong.calls == ["DELETE"]


def test_a_delete_without_a_meeting_id_fails_the_row_without_a_call():
    act = actions()
    assert act.delete("k1", LedgerEntry("created", None, 1), None) is False
    assert act.gong.calls == [] and act.progress.failed == 1


@pytest.mark.parametrize(
    "reason, counter, text",
    [
        (Reason.DUPLICATE_IN_RUN, "duplicate_keys", "occurs again in the source"),
        (Reason.PENDING, "skipped_pending", "Reconcile it in led"),
        (Reason.IN_FLIGHT, "claimed_elsewhere", "skipped here"),
        (Reason.UNCHANGED, "unchanged", ""),
    ],
)
def test_skips_are_counted_and_told(caplog, reason, counter, text):
    act = actions()
    act.skip("k1", reason, LedgerEntry("pending", None, 1, "other", "2030-01-01"))
    assert getattr(act.progress, counter) == 1 and text in caplog.text


@pytest.mark.parametrize("step", ["create", "update", "delete"])
def test_a_claim_lost_to_another_runner_is_counted_in_stats(step, metrics):
    act = actions(pipe=Pipe(wins=False))
    if step == "create":
        act.create("k", None, meeting(), None)
    elif step == "update":
        act.update("k", LIVE, meeting())
    else:
        act.delete("k", LIVE, "old@acme.com")
    assert act.progress.claimed_elsewhere == 1
    assert [(s.name, s.value, s.tags) for s in metrics.samples] == [("gong.claims.lost", 1, {"action": step})]
