"""The PostgreSQL store against a real server: the row lock queues writers from separate connections,
the clock is the server's, the placeholder row carries its labels, a broken connection is replaced.

Needs PostgreSQL (``GONG_TEST_POSTGRES_URI``, default the local server); skipped with the reason when
it cannot be reached. The one check that needs no server (a connection that is not PostgreSQL is
refused) always runs.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from airflow_provider_gong.exceptions import GongValidationError
from airflow_provider_gong.state import PostgresStore
from tests.integration.helpers import PG_URI, postgres_reason
from tests.unit.state.counter import counter_table, increment, read

pytestmark = pytest.mark.integration  # a real database server

CONN_ID = "state_test_pg"


@pytest.fixture(scope="module")
def postgres():
    reason = postgres_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def table(postgres, monkeypatch):
    """A counter table of its own (dropped afterwards) in the database of connection ``CONN_ID``."""
    import psycopg

    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", PG_URI)
    name = f"state_test_{uuid.uuid4().hex[:10]}"
    yield counter_table(name)
    with psycopg.connect(PG_URI, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


def rows(name: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(PG_URI) as conn:
        return conn.execute(f"SELECT name, label, n, at FROM {name} ORDER BY name").fetchall()


def test_a_non_postgres_connection_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv(
        "AIRFLOW_CONN_STATE_LITE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "x.db")})
    )
    store = PostgresStore(counter_table(), "state_lite", needed_by="the test store")
    with pytest.raises(
        GongValidationError, match="'state_lite' is a sqlite connection; the test store needs"
    ):
        store.transact("k", read, labels=("l",))


def test_rows_placeholders_and_the_servers_clock(table):
    store = PostgresStore(table, CONN_ID, needed_by="test")
    result, moment = store.transact("k", increment(), labels=("label k",))
    assert result == 1 and moment.pace == moment.wall and abs(moment.wall - time.time()) < 60
    assert store.transact("fresh", read, labels=("label fresh",))[0] == 0  # no record: a placeholder row
    assert rows(table.name) == [("fresh", "label fresh", 0, 0.0), ("k", "label k", 1, moment.wall)]
    assert store.name == f"sql (connection {CONN_ID!r}, table {table.name})"


def test_a_change_that_raises_is_rolled_back(table):
    store = PostgresStore(table, CONN_ID, needed_by="test")
    store.transact("k", increment(), labels=("l",))

    def fails(n, moment):
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        store.transact("k", fails, labels=("l",))
    assert store.transact("k", read, labels=("l",))[0] == 1


def test_connections_never_lose_an_update(table):
    """Two stores (two connections, as two workers have) increment one row; the row lock queues them."""
    stores = [PostgresStore(table, CONN_ID, needed_by="test") for _ in range(2)]

    def work(store):
        for _ in range(25):
            store.transact("k", increment(0.002), labels=("l",))

    threads = [threading.Thread(target=work, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stores[0].transact("k", read, labels=("l",))[0] == 50


def test_the_lock_timeout_bounds_the_wait_for_another_worker(table):
    holder = PostgresStore(table, CONN_ID, needed_by="test")
    waiter = PostgresStore(table, CONN_ID, needed_by="test", lock_timeout=0.2)
    holder.transact("k", increment(), labels=("l",))
    inside, release = threading.Event(), threading.Event()

    def hold(n, moment):
        inside.set()
        release.wait(10)
        return n + 1, n + 1

    thread = threading.Thread(target=holder.transact, args=("k", hold), kwargs={"labels": ("l",)})
    thread.start()
    assert inside.wait(10)
    started = time.monotonic()
    try:
        with pytest.raises(Exception, match="lock timeout"):
            waiter.transact("k", increment(), labels=("l",))
        assert time.monotonic() - started < 5
    finally:
        release.set()
        thread.join()
    assert waiter.transact("k", read, labels=("l",))[0] == 2  # the holder's write went through


def _kill(store: PostgresStore) -> None:
    import psycopg

    with psycopg.connect(PG_URI, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (store._conn.info.backend_pid,))
    time.sleep(0.2)


def test_a_broken_connection_is_replaced_once_when_the_change_may_run_twice(table):
    store = PostgresStore(table, CONN_ID, needed_by="test", reconnect=True)
    store.transact("k", increment(), labels=("l",))
    _kill(store)
    assert store.transact("k", increment(), labels=("l",))[0] == 2


def test_without_reconnect_the_transaction_fails_and_the_next_one_reconnects(table):
    """A change that may not run twice (an OAuth refresh) is never re-run; the next call still works."""
    store = PostgresStore(table, CONN_ID, needed_by="test")
    store.transact("k", increment(), labels=("l",))
    _kill(store)
    runs: list[int] = []

    def counted(n, moment):
        runs.append(n)
        return n + 1, n + 1

    with pytest.raises(Exception):  # noqa: B017 - the driver's own error for a dead connection
        store.transact("k", counted, labels=("l",))
    assert runs == []
    assert store.transact("k", increment(), labels=("l",))[0] == 2
