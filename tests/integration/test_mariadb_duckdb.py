"""What MariaDB/MySQL and DuckDB do differently from SQLite and PostgreSQL, each found by a run that
went wrong: instants in TIMESTAMP columns, keys a case-insensitive ledger holds as one, and a driver
whose rollback() refuses when no transaction is open (DuckDB), which sent the ledger's reconnect into
waiting on its own thread."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid

import pendulum
import pytest
from airflow.sdk import BaseHook

from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.sync.records import ClaimRequest
from tests.integration.helpers import ledger
from tests.integration.warehouses import MARIADB_URI, duckdb_reason, mariadb_reason

pytestmark = [pytest.mark.integration, pytest.mark.warehouses]


@pytest.fixture
def mariadb(monkeypatch):
    reason = mariadb_reason()
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", MARIADB_URI)
    suffix = uuid.uuid4().hex[:8]
    names = {"table": f"m_{suffix}", "ledger": f"l_{suffix}"}
    yield names
    hook = BaseHook.get_hook("warehouse")
    hook.run(
        [f"DROP TABLE IF EXISTS {n}" for n in (names["table"], names["ledger"], f"{names['ledger']}_lock")]
    )


def batch(names, **kwargs):
    from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator

    return SqlToGongMeetingsOperator(
        task_id="batch",
        table=names["table"],
        ledger_table=names["ledger"],
        fail_on_row_errors=False,
        **kwargs,
    )


@pytest.mark.parametrize("column_type", ["TIMESTAMP", "DATETIME"])
def test_mariadb_times_are_the_instants_written(mariadb, fast_gong, column_type):
    """09:00 in New York, written by a session in New York's winter offset: a TIMESTAMP stores the
    instant (14:00 UTC), a DATETIME the wall clock, read in the task's zone. Both are 14:00 UTC; the
    reader's own session zone must not matter (before the fix: 19:00 UTC, five hours off)."""
    conn = BaseHook.get_hook("warehouse").get_conn()
    cur = conn.cursor()
    cur.execute("SET time_zone = '-05:00'")
    cur.execute(
        f"CREATE TABLE {mariadb['table']} (id INTEGER PRIMARY KEY, start_time {column_type} NULL, "
        f"end_time {column_type} NULL, title VARCHAR(100), organizer_email VARCHAR(320), invitees TEXT, "
        "external_id VARCHAR(255))"
    )
    cur.execute(
        f"INSERT INTO {mariadb['table']} VALUES (1, '2027-01-11 09:00:00', '2027-01-11 09:30:00', "
        "'Winter call', 'rep@acme.com', 'buyer@client.com', 'tz-1')"
    )
    conn.commit()
    conn.close()
    summary = batch(mariadb, timezone="America/New_York").execute({})
    assert summary["created"] == 1
    (created,) = fast_gong.created
    assert pendulum.parse(created.payload["startTime"]) == pendulum.datetime(2027, 1, 11, 14, 0, tz="UTC")
    assert pendulum.parse(created.payload["endTime"]) == pendulum.datetime(2027, 1, 11, 14, 30, tz="UTC")


def _keys_table(names, keys) -> None:
    hook = BaseHook.get_hook("warehouse")
    hook.run(
        f"CREATE TABLE {names['table']} (id VARCHAR(20) COLLATE utf8mb4_bin PRIMARY KEY, start_time "
        "VARCHAR(40), end_time VARCHAR(40), title VARCHAR(100), organizer_email VARCHAR(320), invitees TEXT, "
        "external_id VARCHAR(255))"
    )
    start = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)).replace(microsecond=0)
    rows = [
        (
            k,
            start.isoformat(),
            (start + dt.timedelta(minutes=30)).isoformat(),
            f"Call {k}",
            "rep@acme.com",
            "buyer@client.com",
            f"ext-{k}",
        )
        for k in keys
    ]
    hook.insert_rows(names["table"], rows)


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "unkeyed"])
@pytest.mark.parametrize("window", [1, None], ids=["window1", "auto"])
def test_keys_a_case_insensitive_ledger_holds_as_one(mariadb, fast_gong, caplog, keyed, window):
    """A ledger made before 0.2.0 (or by hand) in MariaDB's default collation, and a case-sensitive
    source: ABC and abc are one key to the ledger. One is sent, the other is reported as a duplicate
    key, and the rest of the batch goes on (before the fix: LedgerWriteError stopped the run)."""
    _keys_table(mariadb, ["ABC", "abc", "k1", "k2"])
    hook = BaseHook.get_hook("warehouse")
    hook.run(
        f"CREATE TABLE {mariadb['ledger']} (row_key VARCHAR(255) NOT NULL{' PRIMARY KEY' if keyed else ''}, "
        "status VARCHAR(16) NOT NULL, meeting_id TEXT, meeting_url TEXT, request_id TEXT, "
        "additional_invitees TEXT, error TEXT, error_kind VARCHAR(16), attempts INTEGER NOT NULL, "
        "updated_at VARCHAR(40) NOT NULL) COLLATE utf8mb4_general_ci"
    )
    with caplog.at_level(logging.ERROR):
        summary = batch(mariadb, claim_window=window).execute({})
    assert (summary["created"], summary["duplicate_keys"], summary["failed"]) == (3, 1, 1)
    assert sorted(c.payload["externalId"] for c in fast_gong.created) == ["ext-ABC", "ext-k1", "ext-k2"]
    assert any("'abc' is the same key as 'ABC'" in r.getMessage() for r in caplog.records)
    assert len(hook.get_records(f"SELECT row_key FROM {mariadb['ledger']}")) == 3
    again = batch(mariadb, claim_window=window).execute({})  # a rerun: reported again, nothing re-sent
    assert (again["created"], again["duplicate_keys"]) == (0, 1) and fast_gong.created_count() == 3


def test_a_ledger_made_now_compares_keys_exactly(mariadb, fast_gong):
    _keys_table(mariadb, ["ABC", "abc", "k1"])
    summary = batch(mariadb).execute({})
    assert summary["created"] == 3 and fast_gong.duplicates() == {}
    assert set(ledger(mariadb)) == {"ABC", "abc", "k1"}


# -- a connection that breaks under the ledger ---------------------------------------------------


@pytest.fixture(params=["sqlite", "duckdb"])
def local_db(request, tmp_path, monkeypatch):
    if request.param == "duckdb" and duckdb_reason():
        pytest.skip(duckdb_reason())
    path = tmp_path / f"l.{request.param}"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": request.param, "host": str(path)}))
    return request.param


def test_a_broken_connection_is_replaced_without_waiting_on_itself(local_db):
    """The ledger's connection dies between statements. The retry replaces it, on the ledger's own
    thread, and the claim goes through (before the fix: the task hung for good)."""
    book = ResultsLedger(BaseHook.get_hook("warehouse"), "ledger_x", owner="me", sleep=lambda _: None)
    book.ensure_table()
    book.submit(book.conn.close).result()  # the connection is gone
    done: dict = {}
    worker = threading.Thread(
        target=lambda: done.update(won=book.claim_many([ClaimRequest("k1", None, "create")])), daemon=True
    )
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the ledger waited on its own thread"
    assert done["won"] == {"k1": True}
    assert book.get("k1").claimed_by == "me"
    book.close()
