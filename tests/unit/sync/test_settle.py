"""Settling a pending ledger row by hand: the same lease and claim rules as a run, on real warehouses.

Every row here is made by real claims and outcome writes (:class:`LedgerRun`), as a run leaves it. The
core cases run on SQLite, PostgreSQL, MariaDB and DuckDB; the refusals on SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
import threading

import pendulum
import pytest
from airflow.sdk import BaseHook

from airflow_provider_gong.exceptions import (
    GongLeaseLostError,
    GongLedgerBusyError,
    GongSettleRefusedError,
    GongValidationError,
)
from airflow_provider_gong.sync.ddl import DEFAULT_LEDGER_TABLE
from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.sync.plan import CREATE, Reason, plan_row
from airflow_provider_gong.sync.settle import LedgerSettler, list_pending, report, settle_row, settle_token
from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator
from tests.integration.helpers import LedgerRun, lease_owner, ledger_row
from tests.integration.warehouses import open_cell

MEETING_ID = "7782342274025937895"  # beyond 2**53: must stay a string
URL = "https://join.gong.io/7782342274025937895"
ALL = [
    pytest.param("sqlite", id="sqlite"),
    *(
        pytest.param(kind, id=kind, marks=pytest.mark.warehouses)
        for kind in ("postgres", "mariadb", "duckdb")
    ),
]
TWO = ALL[:2]


@pytest.fixture(params=ALL)
def cell(request, tmp_path, monkeypatch):
    yield from open_cell(request.param, True, tmp_path, monkeypatch)


@pytest.fixture(params=TWO)
def cell2(request, tmp_path, monkeypatch):
    yield from open_cell(request.param, True, tmp_path, monkeypatch)


@pytest.fixture
def run(request):
    made: list[LedgerRun] = []

    def start(cell, owner="run-a"):
        made.append(LedgerRun(cell["ledger"], owner))
        return made[-1]

    yield start
    for r in made:
        r.close()


def entry_of(cell, key):
    book = ResultsLedger(BaseHook.get_hook("warehouse"), cell["ledger"], owner="reader")
    try:
        return book.get(key)
    finally:
        book.close()


def settle(cell, key, outcome, **kwargs):
    return settle_row("warehouse", key, outcome, ledger_table=cell["ledger"], **kwargs)


# -- the two outcomes ----------------------------------------------------------------------------------


def test_created_writes_what_a_run_records_for_a_created_meeting(cell, run, caplog):
    r = run(cell)
    r.lost_answer("k1")
    r.close()
    caplog.set_level(logging.INFO, logger="airflow_provider_gong.sync.settle")
    done = settle(cell, "k1", "created", meeting_id=f" {MEETING_ID} ", meeting_url=URL)
    row = ledger_row(cell["ledger"], "k1")
    assert row["status"] == "created" and str(row["meeting_id"]) == MEETING_ID
    assert row["meeting_url"] == URL and row["error"] is None and row["error_kind"] is None
    assert row["action"] is None and row["request_id"] == "req-k1"  # Gong's requestId of the lost call
    # Unknown to a person: an upsert/mirror run sends one PUT to be sure Gong matches, then keeps them.
    assert (row["fingerprint"], row["organizer_email"], row["end_time"]) == (None, None, None)
    assert row["claimed_by"] == done.settled_by and done.settled_by.startswith("settle:")
    assert int(row["attempts"]) == 1
    assert done.before["status"] == "pending" and done.before["error_kind"] == "unknown"
    assert done.after["status"] == "created" and done.after["meeting_id"] == MEETING_ID
    assert plan_row(entry_of(cell, "k1"), retry_failed=False, owner="run-b").reason is Reason.CREATED
    assert lease_owner(cell["ledger"]) == ""  # let go
    text = caplog.text
    assert "k1" in text and "pending" in text and "-> status created" in text and MEETING_ID in text


def test_failed_makes_the_row_one_the_next_run_sends_again(cell, run):
    r = run(cell)
    r.died("k1")
    r.close()
    done = settle(cell, "k1", "failed")
    row = ledger_row(cell["ledger"], "k1")
    assert (row["status"], row["error_kind"], row["meeting_id"]) == ("failed", "transient", None)
    assert "settled" in row["error"] and done.after["status"] == "failed"
    entry = entry_of(cell, "k1")
    assert plan_row(entry, retry_failed=False, owner="run-b").action is CREATE
    nxt = run(cell, "run-b")
    assert nxt.book.claim("k1", entry) is True  # the next run's claim wins it, as for any transient failure


# -- refusals --------------------------------------------------------------------------------------


def test_no_ledger_and_no_row_are_refused_and_nothing_is_made(cell2, run):
    with pytest.raises(GongSettleRefusedError, match=r"does not exist") as no_ledger:
        settle(cell2, "k1", "failed")
    assert no_ledger.value.reason == "no_ledger"
    assert list_pending("warehouse", cell2["ledger"]) == []
    book = ResultsLedger(BaseHook.get_hook("warehouse"), cell2["ledger"], owner="reader")
    assert book.exists() is False  # neither call made the ledger
    book.close()
    r = run(cell2)
    r.created("k2")
    r.close()
    with pytest.raises(GongSettleRefusedError, match=r"no row 'k1'") as missing:
        settle(cell2, "k1", "failed", lease_wait_seconds=0)
    assert missing.value.reason == "not_found" and missing.value.row_key == "k1"


def test_rows_that_are_not_pending_are_refused_with_their_status(cell2, run):
    r = run(cell2)
    r.created("k1", "111")
    r.failed("k2")
    r.close()
    with pytest.raises(GongSettleRefusedError, match=r"not pending: it is created \(meeting 111\)") as exc:
        settle(cell2, "k1", "created", meeting_id="222")
    assert exc.value.reason == "not_pending"
    with pytest.raises(GongSettleRefusedError, match=r"it is failed \(permanent"):
        settle(cell2, "k2", "failed")
    assert str(ledger_row(cell2["ledger"], "k1")["meeting_id"]) == "111"


def test_a_call_still_in_flight_is_refused_until_the_claim_lease_has_passed(cell2, run):
    r = run(cell2)
    r.in_flight("k1")
    r.close()
    claimed = pendulum.parse(ledger_row(cell2["ledger"], "k1")["updated_at"])
    with pytest.raises(GongSettleRefusedError, match=r"in flight.*can be settled from") as exc:
        settle(cell2, "k1", "failed")
    assert exc.value.reason == "in_flight"
    assert claimed.add(seconds=600).in_timezone("UTC").isoformat()[:19] in str(exc.value)
    assert ledger_row(cell2["ledger"], "k1")["status"] == "pending"
    settle(cell2, "k1", "failed", claim_lease_seconds=0)  # the batch's own rule, with its setting
    assert ledger_row(cell2["ledger"], "k1")["status"] == "failed"


@pytest.mark.parametrize("action", ["update", "delete"])
def test_a_pending_update_or_delete_needs_nothing(cell2, run, action):
    r = run(cell2)
    r.pending("k1", action)
    r.close()
    with pytest.raises(GongSettleRefusedError, match=rf"pending {action}.*next .* run sends it again") as exc:
        settle(cell2, "k1", "created", meeting_id="1")
    assert exc.value.reason == "resent_by_run"
    assert ledger_row(cell2["ledger"], "k1")["status"] == "pending"


@pytest.mark.parametrize(
    ("outcome", "options", "match"),
    [
        ("created", {}, "meeting_id is required"),
        ("created", {"meeting_id": "abc"}, "digits"),
        ("created", {"meeting_id": "123 456"}, "digits"),
        ("created", {"meeting_id": "-1"}, "digits"),
        ("created", {"meeting_id": "12", "meeting_url": "join.gong.io/12"}, "meeting_url"),
        ("failed", {"meeting_id": "12"}, "takes no meeting"),
        ("maybe", {}, "outcome must be one of"),
    ],
)
def test_bad_arguments_are_refused_before_the_ledger_is_touched(
    tmp_path, monkeypatch, outcome, options, match
):
    cell = next(open_cell("sqlite", True, tmp_path, monkeypatch))
    with pytest.raises(GongValidationError, match=match):
        settle(cell, "k1", outcome, **options)
    assert not (tmp_path / "wh.db").exists()


# -- the lease and the claim -----------------------------------------------------------------------


def test_a_run_holding_the_lease_is_named_and_then_waited_for(cell2, run):
    r = run(cell2)
    r.lost_answer("k1")  # r keeps the lease: a run at work
    with pytest.raises(GongLedgerBusyError, match=r"run-a.*lease until") as busy:
        settle(cell2, "k1", "failed", lease_wait_seconds=0.3)
    assert busy.value.holder == "run-a"
    assert ledger_row(cell2["ledger"], "k1")["status"] == "pending"
    threading.Timer(0.5, r.book.release_lease).start()
    settle(cell2, "k1", "failed", lease_wait_seconds=20)  # waits for the run to let go
    assert ledger_row(cell2["ledger"], "k1")["status"] == "failed"


def test_the_write_carries_the_rows_claim_and_the_leases_fence(cell2, run):
    """Between the settlement's reading and its write, the run whose call was in doubt records an
    outcome after all (a zombie, outside the lease): the settlement writes nothing. And a settlement
    whose lease was taken over writes nothing either."""
    r = run(cell2)
    r.lost_answer("k1")
    r.lost_answer("k2")
    r.book.release_lease()
    settler = LedgerSettler(BaseHook.get_hook("warehouse"), cell2["ledger"], owner=settle_token())
    try:
        settler.open(wait=0)
        seen = settler.read("k1")
        r.book.record_failed("k1", "503", "transient")  # the claim's own outcome write, still allowed
        with pytest.raises(
            GongSettleRefusedError, match=r"changed while .*, nothing written: it is now status failed"
        ) as exc:
            settler.apply(seen, "created", meeting_id="1")
        assert exc.value.reason == "changed"
        seen = settler.read("k2")
        BaseHook.get_hook("warehouse").run(
            f"UPDATE {cell2['ledger']}_lock SET owner = 'run-c', fence = fence + 1"  # taken over
        )
        with pytest.raises(GongLeaseLostError):
            settler.apply(seen, "created", meeting_id="1")
    finally:
        settler.close()
    assert ledger_row(cell2["ledger"], "k1")["error_kind"] == "transient"
    assert ledger_row(cell2["ledger"], "k2")["status"] == "pending"


# -- the list ----------------------------------------------------------------------------------------


def test_the_list_shows_what_needs_settling(cell2, run):
    r = run(cell2)
    r.lost_answer("k1")
    r.died("k2")
    r.in_flight("k3")
    r.pending("k4", "update")
    r.created("k5")
    r.close()
    rows = list_pending("warehouse", cell2["ledger"])
    assert [p.row_key for p in rows] == ["k1", "k2"]
    k1, k2 = rows
    assert (k1.action, k1.error_kind, k1.request_id) == ("create", "unknown", "req-k1")
    assert (k2.action, k2.error_kind, k2.claimed_at) == ("create", None, "2020-01-01T00:00:00+00:00")
    assert k1.claimed_by == "run-a" and k1.needs_settlement and k1.to_dict()["row_key"] == "k1"
    everything = {p.row_key: p for p in list_pending("warehouse", cell2["ledger"], everything=True)}
    assert sorted(everything) == ["k1", "k2", "k3", "k4"]
    assert "in flight" in everything["k3"].note and "sends it again" in everything["k4"].note
    text = report(list(everything.values()), cell2["ledger"])
    assert "2 row(s) to settle" in text and "req-k1" in text and "k3" in text


def test_the_default_ledger_is_the_batchs():
    assert DEFAULT_LEDGER_TABLE == "gong_meeting_ledger"
    assert SqlToGongMeetingsOperator(task_id="t", table="t").ledger_table == DEFAULT_LEDGER_TABLE
    assert report([], DEFAULT_LEDGER_TABLE).startswith(f"Ledger {DEFAULT_LEDGER_TABLE}: nothing to settle")


def test_settling_is_logged_from_what_to_what(cell2, run, caplog):
    r = run(cell2)
    r.died("k1")
    r.close()
    caplog.set_level(logging.INFO, logger="airflow_provider_gong.sync.settle")
    settle(cell2, "k1", "failed")
    (line,) = [m for m in caplog.messages if "settled" in m]
    assert "row k1" in line and "status pending" in line and "-> status failed, error_kind transient" in line
