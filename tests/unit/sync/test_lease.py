"""The ledger's lease: one runner at a time, taken over when it lapses, fenced before claims and calls."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_provider_gong.exceptions import GongLeaseLostError
from airflow_provider_gong.sync.connection import LedgerWriteError
from airflow_provider_gong.sync.ddl import lease_ddl, ledger_ddl, lock_table_name
from airflow_provider_gong.sync.lease import LedgerBusyError
from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.sync.records import ClaimRequest


@pytest.fixture
def hook(sqlite_hook):
    return sqlite_hook


def runner(hook, owner, **kwargs) -> ResultsLedger:
    ledger = ResultsLedger(hook, "ledger", owner=owner, sleep=time.sleep, **kwargs)
    ledger.ensure_table()
    return ledger


def lease_row(hook) -> tuple:
    return tuple(hook.get_first("SELECT owner, fence, expires_at FROM ledger_lock"))


def test_one_holder_at_a_time_and_a_released_lease_is_free_at_once(hook):
    a, b = runner(hook, "run-a"), runner(hook, "run-b")
    a.acquire(0)
    with pytest.raises(LedgerBusyError, match=r"run-a.*lease until"):
        b.acquire(0.3)
    a.release_lease()
    b.acquire(0)
    assert lease_row(hook)[:2] == ("run-b", 2)  # every acquisition raises the fence
    a.close()
    b.close()
    assert lease_row(hook)[0] == ""


def test_a_waiting_run_gets_the_lease_when_the_holder_lets_go(hook):
    a, b = runner(hook, "run-a"), runner(hook, "run-b")
    a.acquire(0)
    threading.Timer(0.5, a.release_lease).start()
    started = time.monotonic()
    b.acquire(10)
    assert 0.4 < time.monotonic() - started < 5
    assert lease_row(hook)[0] == "run-b"
    a.close()
    b.close()


def test_a_lapsed_lease_is_taken_over_and_the_old_holder_is_fenced_off(hook):
    """run-a stops renewing (a paused or cut-off worker): run-b takes the ledger over; run-a's next
    claim and its check before a Gong call both refuse, and it does not take the lease back itself."""
    a, b = runner(hook, "run-a"), runner(hook, "run-b")
    a.acquire(0)
    a.keeper.stop_heartbeat()  # run-a's heartbeat stops, as a SIGSTOPped process's would
    hook.run("UPDATE ledger_lock SET expires_at = 0")  # ... and its lease runs out
    b.acquire(0)
    with pytest.raises(GongLeaseLostError, match="taken over"):
        a.claim("k1", None)
    a.lease._valid_until = 0.0
    with pytest.raises(GongLeaseLostError, match="not been renewed"):
        a.check_lease()
    assert b.claim("k1", None) is True and a.get("k1").claimed_by == "run-b"
    a.close()
    b.close()
    assert lease_row(hook)[0] == ""  # run-a's close did not release run-b's lease; run-b's did


def test_the_heartbeat_renews_the_lease_between_claims(hook):
    a = runner(hook, "run-a", lease_seconds=4)
    a.acquire(0)
    first = lease_row(hook)[2]
    time.sleep(2.5)  # a heartbeat every second once a quarter of the lease has passed
    assert lease_row(hook)[2] > first
    a.check_lease()  # still trusted by its own clock
    a.close()


def test_claims_need_the_lease_even_on_a_ledger_without_a_key(hook):
    hook.run(ledger_ddl("sqlite", "ledger", primary_key=False))
    a, b = runner(hook, "run-a"), runner(hook, "run-b")
    assert a.claim_many([ClaimRequest("k1", None, "create")]) == {"k1": True}
    with pytest.raises(LedgerBusyError):
        b.claim_many([ClaimRequest("k1", None, "create")])
    a.release_lease()
    assert b.claim_many([ClaimRequest("k1", None, "create"), ClaimRequest("k2", None, "create")]) == {
        "k1": False,
        "k2": True,
    }
    assert sorted(r["row_key"] for r in a.read_all()) == ["k1", "k2"]
    a.close()
    b.close()


def test_a_lease_table_changed_by_hand_stops_the_run_with_the_fix(hook):
    a = runner(hook, "run-a")
    hook.run("INSERT INTO ledger_lock VALUES (0, '', 0)")
    with pytest.raises(LedgerWriteError, match=r"has 2 rows, not 1.*Drop it"):
        runner(hook, "run-b")
    a.close()


def test_a_lease_table_of_another_shape_stops_the_run_with_the_fix(hook):
    hook.run("CREATE TABLE ledger_lock AS SELECT 0 AS claims")
    with pytest.raises(LedgerWriteError, match=r"lacks the columns fence, owner, expires_at.*Drop it"):
        runner(hook, "run-a")


@pytest.mark.parametrize(
    "kind, fragments",
    [
        ("sqlite", ["CAST(0 AS BIGINT)", "VARCHAR(255)"]),
        ("mysql", ["BIGINT NOT NULL", ") SELECT 0 AS"]),
        ("bigquery", ["CAST('' AS STRING)"]),
    ],
)
def test_the_lease_table_is_made_with_its_row_in_one_statement(kind, fragments):
    ddl = lease_ddl(kind, "x_lock", str)
    assert ddl.startswith("CREATE TABLE x_lock ") and "SELECT" in ddl and ";" not in ddl
    for fragment in fragments:
        assert fragment in ddl


@pytest.mark.parametrize(
    "name, lock",
    [
        ("ledger", "ledger_lock"),
        ('"Ledger"', '"Ledger_lock"'),
        ("s.`t`", "s.`t_lock`"),
        ("a.b.c", "a.b.c_lock"),
    ],
)
def test_lock_table_names(name, lock):
    assert lock_table_name(name) == lock
