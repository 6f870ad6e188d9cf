"""The ledger's connection: its own thread, retries that replace a dead connection, and what is never
retried (a lost lease, keys a collation holds as one)."""

from __future__ import annotations

import threading

import pytest

from airflow_provider_gong.exceptions import GongLeaseLostError
from airflow_provider_gong.sync.connection import (
    KeysCollide,
    LedgerConnection,
    LedgerWriteError,
    on_ledger_thread,
)


@pytest.fixture
def db(sqlite_hook):
    connection = LedgerConnection(sqlite_hook, "led", attempts=3, sleep=lambda s: None)
    yield connection
    connection.close(lambda: None)


def test_steps_run_on_the_ledgers_own_thread_whoever_calls(db):
    class Part:
        def __init__(self, db):
            self.db = db

        @on_ledger_thread
        def where(self):
            return threading.current_thread()

    assert Part(db).where() is db.thread is not threading.current_thread()


def test_a_failing_step_is_retried_then_reported_with_the_ledgers_name(db):
    tries = []

    def step():
        tries.append(1)
        raise OSError("database is locked")

    with pytest.raises(LedgerWriteError, match="ledger led: OSError: database is locked"):
        db.retry(step)
    assert len(tries) == 3


@pytest.mark.parametrize("error", [GongLeaseLostError("taken over"), KeysCollide("ABC and abc")])
def test_what_a_retry_cannot_fix_is_not_retried(db, error):
    tries = []

    def step():
        tries.append(1)
        raise error

    with pytest.raises((GongLeaseLostError, LedgerWriteError)):
        db.retry(step)
    assert len(tries) == 1


def test_a_dead_connection_is_replaced_between_tries(db):
    db.submit(db.conn.close).result()
    assert db.submit(db.retry, lambda: db.read("SELECT 1", ())).result() == [(1,)]


def test_ddl_a_concurrent_runner_did_first_counts_as_done(db):
    db.submit(db.ddl, "CREATE TABLE t (a INTEGER)", done=lambda: False).result()
    db.submit(db.ddl, "CREATE TABLE t (a INTEGER)", done=lambda: True).result()  # "already exists": fine
    with pytest.raises(Exception, match="already exists"):
        db.submit(db.ddl, "CREATE TABLE t (a INTEGER)", done=lambda: False).result()
