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

import pytest

from airflow_provider_gong.exceptions import GongValidationError
from airflow_provider_gong.state import PostgresStore
from tests.integration.helpers import PG_URI
from tests.unit.state.conftest import PG_CONN_ID as CONN_ID
from tests.unit.state.counter import counter_table, increment, read

pytestmark = pytest.mark.integration  # a real database server


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


def test_rows_placeholders_and_the_servers_clock(pg_table):
    store = PostgresStore(pg_table, CONN_ID, needed_by="test")
    result, moment = store.transact("k", increment(), labels=("label k",))
    assert result == 1 and moment.pace == moment.wall and abs(moment.wall - time.time()) < 60
    assert store.transact("fresh", read, labels=("label fresh",))[0] == 0  # no record: a placeholder row
    assert rows(pg_table.name) == [("fresh", "label fresh", 0, 0.0), ("k", "label k", 1, moment.wall)]
    assert store.name == f"sql (connection {CONN_ID!r}, table {pg_table.name})"


def test_connections_never_lose_an_update(pg_table):
    """Two stores (two connections, as two workers have) increment one row; the row lock queues them."""
    stores = [PostgresStore(pg_table, CONN_ID, needed_by="test") for _ in range(2)]

    def work(store):
        for _ in range(25):
            store.transact("k", increment(0.002), labels=("l",))

    threads = [threading.Thread(target=work, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stores[0].transact("k", read, labels=("l",))[0] == 50


def test_the_lock_timeout_bounds_the_wait_for_another_worker(pg_table):
    holder = PostgresStore(pg_table, CONN_ID, needed_by="test")
    waiter = PostgresStore(pg_table, CONN_ID, needed_by="test", lock_timeout=0.2)
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


def test_a_broken_connection_is_replaced_once_when_the_change_may_run_twice(pg_table):
    store = PostgresStore(pg_table, CONN_ID, needed_by="test", reconnect=True)
    store.transact("k", increment(), labels=("l",))
    _kill(store)
    assert store.transact("k", increment(), labels=("l",))[0] == 2


def test_without_reconnect_the_transaction_fails_and_the_next_one_reconnects(pg_table):
    """A change that may not run twice (an OAuth refresh) is never re-run; the next call still works."""
    store = PostgresStore(pg_table, CONN_ID, needed_by="test")
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
