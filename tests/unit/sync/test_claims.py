"""Ledger claims on real SQLite: one winner per row (with and without an enforced key), no ABA, outcomes
only under one's own claim, windows, retries, drivers without rowcount, release, migration."""

from __future__ import annotations

import sqlite3

import pytest

from airflow_provider_gong.meetings import MeetingResult
from airflow_provider_gong.sync.connection import LedgerWriteError
from airflow_provider_gong.sync.ddl import ledger_ddl
from airflow_provider_gong.sync.lease import LedgerBusyError
from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.sync.plan import CREATE
from airflow_provider_gong.sync.records import (
    CREATED,
    FAILED,
    PENDING,
    PERMANENT,
    TRANSIENT,
    ClaimRequest,
    LedgerEntry,
    created_values,
    failed_values,
)

RESULT = MeetingResult("7782342274025937895", "https://join.gong.io/acme/rep?tkn=a", "req-1", [])


# -- ledger claims --------------------------------------------------------------------------------


def book(hook, owner, **kwargs) -> ResultsLedger:
    ledger = ResultsLedger(hook, "ledger", owner=owner, sleep=lambda s: None, **kwargs)
    ledger.ensure_table()
    hook.__dict__.setdefault("books", []).append(ledger)
    return ledger


def turn(runner: ResultsLedger) -> ResultsLedger:
    """Let ``runner`` act next: every other runner of the test lets the ledger's lease go. (Two runs
    never hold it at once; these tests check that row-level claims hold on their own as well.)"""
    for other in runner.hook.__dict__.get("books", []):
        if other is not runner:
            other.release_lease()
    return runner


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "unkeyed"])
def test_only_one_runner_wins_a_new_key(sqlite_hook, keyed):
    if not keyed:  # the ledger's columns without a key constraint: Snowflake, BigQuery, Redshift, ...
        sqlite_hook.run(ledger_ddl("sqlite", "ledger", primary_key=False))
    a, b = book(sqlite_hook, "run-a"), book(sqlite_hook, "run-b")
    assert a.claim("k1", None) is True
    with pytest.raises(LedgerBusyError, match="run-a"):  # a holds the ledger's lease
        b.claim("k1", None)
    assert turn(b).claim("k1", None) is False  # a's claim stands: the key is there
    assert a.get("k1") == LedgerEntry(PENDING, None, 1, "run-a", a.get("k1").updated_at, action="create")
    assert len(a.read_all()) == 1


def test_a_stale_view_of_a_failed_row_loses_the_claim(sqlite_hook):
    a, b = book(sqlite_hook, "run-a"), book(sqlite_hook, "run-b")
    a.claim("k1", None)
    a.record_failed("k1", "quota", TRANSIENT)
    seen = a.get("k1")  # both runners read: failed, attempts 1
    assert turn(b).claim("k1", seen) is True
    assert turn(a).claim("k1", seen) is False
    b.record_failed("k1", "quota again", TRANSIENT)  # back to failed, but attempts is now 2 (no ABA)
    assert a.claim("k1", seen) is False
    assert a.claim("k1", a.get("k1")) is True and a.get("k1").attempts == 3


def test_outcomes_are_written_only_under_ones_own_claim(sqlite_hook):
    a, b = book(sqlite_hook, "run-a"), book(sqlite_hook, "run-b")
    a.claim("k1", None)
    assert b.record_created("k1", RESULT) is False  # not b's claim
    assert a.record_created("k1", RESULT) is True
    row = a.read_all()[0]
    assert (row["status"], row["meeting_id"], row["claimed_by"]) == (CREATED, RESULT.meeting_id, "run-a")


class _Cursor:
    """A DB-API cursor proxy: optionally hides rowcount, optionally fails some statements."""

    def __init__(self, cursor, owner):
        self._cursor, self._owner = cursor, owner

    def execute(self, sql, params=()):
        if self._owner.failures and sql.lstrip().upper().startswith(self._owner.fail_prefix):
            self._owner.failures -= 1
            raise sqlite3.OperationalError("database is locked")
        return self._cursor.execute(sql, params)

    @property
    def rowcount(self):
        return -1 if self._owner.hide_rowcount else self._cursor.rowcount

    def __getattr__(self, name):
        return getattr(self._cursor, name)


class _Conn:
    def __init__(self, conn, *, hide_rowcount=False, failures=0, fail_prefix="UPDATE"):
        self._conn, self.hide_rowcount, self.failures, self.fail_prefix = (
            conn,
            hide_rowcount,
            failures,
            fail_prefix,
        )

    def cursor(self):
        return _Cursor(self._conn.cursor(), self)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_claims_work_with_a_driver_that_reports_no_rowcount(sqlite_hook):
    a, b = book(sqlite_hook, "run-a"), book(sqlite_hook, "run-b")
    a.conn, b.conn = _Conn(a.conn, hide_rowcount=True), _Conn(b.conn, hide_rowcount=True)
    a.claim("k1", None)
    a.record_failed("k1", "quota", TRANSIENT)
    seen = a.get("k1")
    assert turn(b).claim("k1", seen) is True  # told by reading its own token back
    assert turn(a).claim("k1", seen) is False


def test_a_write_that_fails_briefly_is_retried(sqlite_hook):
    a = book(sqlite_hook, "run-a")
    a.claim("k1", None)
    a.conn = _Conn(a.conn, failures=2)  # "database is locked" twice, then fine
    assert a.record_created("k1", RESULT) is True
    assert a.get("k1").status == CREATED


def test_a_write_that_keeps_failing_raises_after_its_retries(sqlite_hook):
    a = book(sqlite_hook, "run-a", write_attempts=3)
    a.claim("k1", None)
    a.conn = _Conn(a.conn, failures=10)
    with pytest.raises(LedgerWriteError, match="database is locked"):
        a.record_created("k1", RESULT)
    assert a.conn.failures == 7  # exactly three attempts


def test_a_claim_that_fails_to_write_is_not_a_win(sqlite_hook):
    a = book(sqlite_hook, "run-a", write_attempts=2)
    a.conn = _Conn(a.conn, failures=10, fail_prefix="INSERT")
    with pytest.raises(LedgerWriteError):
        a.claim("k1", None)  # the caller must not call Gong


def test_a_window_claim_wins_only_the_rows_nobody_else_holds(sqlite_hook):
    a, b = book(sqlite_hook, "run-a"), book(sqlite_hook, "run-b")
    a.claim("k2", None)  # b's view of k2 (absent) is stale
    a.claim("k4", None)
    a.record_failed("k4", "quota", TRANSIENT)
    k4 = a.get("k4")
    wanted = [
        ClaimRequest("k1", None, CREATE),
        ClaimRequest("k2", None, CREATE),
        ClaimRequest("k4", k4, CREATE),
    ]
    assert turn(b).claim_many(wanted) == {"k1": True, "k2": False, "k4": True}
    assert turn(a).claim_many([ClaimRequest("k4", k4, CREATE)]) == {"k4": False}  # no ABA: attempts moved on
    assert (b.get("k4").claimed_by, b.get("k4").attempts) == ("run-b", 2)


def test_window_claims_work_with_a_driver_that_reports_no_rowcount(sqlite_hook):
    a, b = book(sqlite_hook, "run-a"), book(sqlite_hook, "run-b")
    for key in ("k1", "k2"):
        a.claim(key, None)
        a.record_failed(key, "quota", TRANSIENT)
    seen = [ClaimRequest(k, a.get(k), CREATE) for k in ("k1", "k2")]
    a.claim("k2", seen[1].entry)  # a takes k2 first
    b.conn = _Conn(b.conn, hide_rowcount=True)
    assert turn(b).claim_many(seen) == {"k1": True, "k2": False}  # told by reading tokens back


def test_a_window_claim_that_fails_briefly_is_redone_row_by_row(sqlite_hook):
    a = book(sqlite_hook, "run-a")
    a.conn = _Conn(a.conn, failures=1, fail_prefix="INSERT")
    assert a.claim_many([ClaimRequest(k, None, CREATE) for k in ("k1", "k2")]) == {"k1": True, "k2": True}
    assert {a.get(k).status for k in ("k1", "k2")} == {PENDING}


def test_outcomes_of_a_window_are_written_in_one_statement_under_ones_own_claim(sqlite_hook):
    a, b = book(sqlite_hook, "run-a"), book(sqlite_hook, "run-b")
    a.claim_many([ClaimRequest(k, None, CREATE) for k in ("k1", "k2")])
    turn(b).claim("k3", None)
    refused = a.record_many(
        [
            ("k1", created_values(RESULT)),
            ("k2", failed_values("bad organizer", PERMANENT)),
            ("k3", failed_values("not mine", PERMANENT)),
        ]
    )
    assert refused == {"k3"}
    rows = {r["row_key"]: r for r in a.read_all()}
    assert (rows["k1"]["status"], rows["k1"]["meeting_id"], rows["k1"]["error"]) == (
        CREATED,
        RESULT.meeting_id,
        None,
    )
    assert (rows["k2"]["status"], rows["k2"]["error"], rows["k2"]["meeting_id"]) == (
        FAILED,
        "bad organizer",
        None,
    )
    assert (rows["k3"]["status"], rows["k3"]["claimed_by"]) == (PENDING, "run-b")


def test_released_claims_put_rows_back_as_they_were(sqlite_hook):
    a = book(sqlite_hook, "run-a")
    a.claim("old", None)
    a.record_failed("old", "quota", TRANSIENT)
    old = a.get("old")
    b = book(sqlite_hook, "run-b")
    wanted = [ClaimRequest("new", None, CREATE), ClaimRequest("old", old, CREATE)]
    assert turn(b).claim_many(wanted) == {"new": True, "old": True}
    b.release(wanted)
    assert b.get("new") is None
    back = b.get("old")
    assert (back.status, back.error, back.error_kind) == (FAILED, "quota", TRANSIENT)
    assert turn(a).claim("old", back) is True  # free to take again


def test_a_0_1_0_ledger_is_migrated_and_keeps_its_rows(sqlite_hook):
    sqlite_hook.run(
        "CREATE TABLE ledger (row_key VARCHAR(255) NOT NULL PRIMARY KEY, status VARCHAR(16) NOT NULL, "
        "meeting_id VARCHAR(32), meeting_url VARCHAR(2048), request_id VARCHAR(128), "
        "additional_invitees TEXT, error TEXT, error_kind VARCHAR(16), attempts INTEGER NOT NULL, "
        "updated_at VARCHAR(40) NOT NULL)"
    )
    sqlite_hook.insert_rows("ledger", [("1", "created", "123", "u", "r", "[]", None, None, 1, "t")])
    a = book(sqlite_hook, "run-a")
    assert a.get("1").status == CREATED
    book(sqlite_hook, "run-b")  # a second migration is a no-op
    assert a.claim("2", None) is True
