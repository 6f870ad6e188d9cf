"""The batch engine's parts on their own: plan rules, ledger claims on real SQLite, SQL helpers."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from dataclasses import replace
from decimal import Decimal

import pendulum
import pytest

from airflow_provider_gong.exceptions import GongValidationError
from airflow_provider_gong.meetings import Meeting, MeetingResult
from airflow_provider_gong.sync.connection import LedgerWriteError
from airflow_provider_gong.sync.ddl import ledger_ddl
from airflow_provider_gong.sync.lease import LedgerBusyError
from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.sync.plan import CREATE, SKIP, RowFacts, plan_removed, plan_row
from airflow_provider_gong.sync.records import (
    CREATED,
    FAILED,
    PENDING,
    PERMANENT,
    TRANSIENT,
    UNKNOWN,
    ClaimRequest,
    LedgerEntry,
    created_values,
    failed_values,
)
from airflow_provider_gong.sync.source import normalise_key
from airflow_provider_gong.sync.sql import literal_percent, quote_identifier

NOW = pendulum.datetime(2030, 1, 1, 12, tz="UTC")
RESULT = MeetingResult("7782342274025937895", "https://join.gong.io/acme/rep?tkn=a", "req-1", [])


# -- plan ---------------------------------------------------------------------------------------


def entry(status, kind=None, attempts=1, owner="other-run", age=3600.0):
    return LedgerEntry(status, kind, attempts, owner, NOW.subtract(seconds=age).isoformat())


@pytest.mark.parametrize(
    "row, retry_failed, expected",
    [
        (None, False, (CREATE, "new")),
        (entry(CREATED), True, (SKIP, "created")),
        (entry(PENDING), True, (SKIP, "pending")),
        (entry(PENDING, age=5), False, (SKIP, "in_flight")),  # another run's call, still in its lease
        (entry(PENDING, UNKNOWN, age=5), False, (SKIP, "pending")),  # its answer was lost: reconcile
        (LedgerEntry(PENDING, None, 1, "0.1.0", None), False, (SKIP, "pending")),  # no timestamp
        (entry(FAILED, TRANSIENT), False, (CREATE, "retry_transient")),
        (entry(FAILED, PERMANENT), False, (SKIP, "failed_permanent")),
        (entry(FAILED, PERMANENT), True, (CREATE, "retry_failed")),
        (entry(CREATED, owner="this-run"), False, (SKIP, "duplicate_in_run")),
        (entry("something-else"), True, (SKIP, "pending")),
    ],
)
def test_plan_rules(row, retry_failed, expected):
    step = plan_row(row, retry_failed=retry_failed, owner="this-run", lease_seconds=600, now=NOW)
    assert (step.action, step.reason) == expected


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


# -- keys and SQL --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, key",
    [
        (7, "7"),
        ("7", "7"),
        ("crm-evt-1", "crm-evt-1"),
        (Decimal("12"), "12"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (dt.date(2030, 1, 2), "2030-01-02"),
        (b"\x01\xff", "01ff"),
        (memoryview(b"\x01\xff"), "01ff"),
    ],
)
def test_key_normalisation(value, key):
    assert normalise_key(value) == key


class _Hook:
    def __init__(self, dialect_name, placeholder="%s", escape_word_format='"{}"'):
        self.dialect_name = dialect_name
        self.placeholder = placeholder
        self.escape_word_format = escape_word_format


@pytest.mark.parametrize(
    "dialect, name, quoted",
    [
        ("postgresql", "Gong_Ledger", '"gong_ledger"'),
        ("postgresql", "Analytics.Meetings", '"analytics"."meetings"'),
        ("postgresql", '"MixedCase"', '"MixedCase"'),
        ("snowflake", "gong_ledger", '"GONG_LEDGER"'),
        ("sqlite", "Gong_Ledger", '"Gong_Ledger"'),
        ("postgresql", "end", '"end"'),  # a reserved word stays usable
    ],
)
def test_identifiers_follow_the_databases_case_rules(dialect, name, quoted):
    assert quote_identifier(_Hook(dialect), name) == quoted


@pytest.mark.parametrize("name", ["", "a;drop table x", 'a"b', "a.b.c.d", "1abc", '"unterminated'])
def test_bad_identifiers_are_rejected(name):
    with pytest.raises(GongValidationError, match="not a plain SQL identifier"):
        quote_identifier(_Hook("postgresql"), name)


def test_percent_is_doubled_only_for_percent_style_drivers():
    sql = "SELECT * FROM t WHERE title LIKE 'a%'"
    assert literal_percent(_Hook("postgresql", "%s"), sql) == "SELECT * FROM t WHERE title LIKE 'a%%'"
    assert literal_percent(_Hook("sqlite", "?"), sql) == sql


# -- sync rules (upsert / mirror) ------------------------------------------------------------------

_LIVE = LedgerEntry(
    "created", None, 1, "run-x", "2030-01-01T00:00:00+00:00", "77", "rep@acme.com", "fp-1", None, None
)
_FACTS = RowFacts(fingerprint="fp-1", organizer_email="rep@acme.com")


@pytest.mark.parametrize(
    "entry, facts, expected",
    [
        (None, _FACTS, ("create", "new")),
        (None, RowFacts(cancelled=True, fingerprint="fp-1"), ("skip", "cancelled_not_created")),
        (None, RowFacts(over=True, fingerprint="fp-1"), ("skip", "past")),
        (_LIVE, _FACTS, ("skip", "unchanged")),
        (_LIVE, RowFacts(fingerprint="fp-2", organizer_email="rep@acme.com"), ("update", "changed")),
        (
            _LIVE,
            RowFacts(fingerprint="fp-2", organizer_email="ae@acme.com"),
            ("replace", "organizer_changed"),
        ),
        (_LIVE, RowFacts(cancelled=True), ("delete", "cancelled")),
        (_LIVE, RowFacts(cancelled=True, over=True), ("skip", "past")),
        (_LIVE, RowFacts(over=True, fingerprint="fp-2"), ("skip", "past")),
        (_LIVE, RowFacts(), ("skip", "created")),  # the row turned invalid: Gong keeps the last version
        (replace(_LIVE, fingerprint=None), _FACTS, ("update", "no_fingerprint")),
        (replace(_LIVE, status="deleted"), _FACTS, ("create", "recreate")),
        (replace(_LIVE, status="deleted"), RowFacts(cancelled=True), ("skip", "deleted")),
        # A run died mid-PUT / mid-DELETE: decided afresh (both calls are safe to repeat).
        (
            replace(_LIVE, status="pending", action="update", updated_at="2000-01-01T00:00:00+00:00"),
            RowFacts(fingerprint="fp-2", organizer_email="rep@acme.com"),
            ("update", "changed"),
        ),
        (
            replace(_LIVE, status="pending", action="delete", updated_at="2000-01-01T00:00:00+00:00"),
            RowFacts(cancelled=True),
            ("delete", "cancelled"),
        ),
        (replace(_LIVE, status="pending", action="update"), _FACTS, ("skip", "in_flight")),
        (
            replace(_LIVE, status="pending", action="create", updated_at="2000-01-01T00:00:00+00:00"),
            _FACTS,
            ("skip", "pending"),
        ),  # a create is never redone on its own
        (replace(_LIVE, status="failed", error_kind="permanent"), _FACTS, ("skip", "failed_permanent")),
    ],
)
def test_sync_rules(entry, facts, expected):
    step = plan_row(entry, retry_failed=False, owner="run-y", mode="upsert", facts=facts)
    assert (step.action, step.reason) == expected
    # create mode ignores the facts: today's behaviour
    if entry is None:
        assert plan_row(entry, retry_failed=False, owner="run-y", facts=facts).action == "create"


def test_removed_rows_are_deleted_unless_over_or_not_live():
    assert plan_removed(_LIVE).action == "delete"
    assert plan_removed(replace(_LIVE, end_time="2001-01-01T00:00:00+00:00")).reason == "past"
    assert plan_removed(replace(_LIVE, status="deleted")).action == "skip"
    died_mid_delete = replace(
        _LIVE, status="pending", action="delete", updated_at="2000-01-01T00:00:00+00:00"
    )
    assert plan_removed(died_mid_delete).action == "delete"
    assert plan_removed(replace(died_mid_delete, action="create")).action == "skip"  # creates: reconcile


def test_fingerprint_ignores_presentation_but_not_content():
    base = dict(
        start_time="2030-01-01T10:00:00Z", end_time="2030-01-01T11:00:00Z", organizer_email="rep@acme.com"
    )
    now = dt.datetime(2029, 12, 1, tzinfo=dt.timezone.utc)
    a = Meeting.build(**base, invitees=["a@x.com", "b@x.com"], now=now)
    b = Meeting.build(  # same meeting: other zone, invitees reordered and in other case
        **{**base, "start_time": "2030-01-01T11:00:00+01:00"},
        invitees=["B@x.com", "a@x.com"],
        now=now,
        timezone="Europe/Paris",
    )
    c = Meeting.build(**base, invitees=["a@x.com", "b@x.com", "c@x.com"], now=now)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
