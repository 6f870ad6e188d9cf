"""The SQLite file store: the write lock is held from before the read to the commit, so processes on
one machine never lose an update; the table and file are what other tools read."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from airflow_provider_gong.state import Moment, SQLiteStore
from tests.conftest import ROOT
from tests.unit.state.counter import COUNTER, increment, read


def test_rows_are_written_as_the_table_says(tmp_path):
    path = tmp_path / "sub" / "state.sqlite3"
    store = SQLiteStore(COUNTER, path, clock=lambda: 5.0, wall=lambda: 1234.5)
    assert store.transact("k", increment(), labels=("my label",)) == (1, Moment(5.0, 1234.5))
    assert store.transact("k", read, labels=("my label",))[0] == 1
    rows = sqlite3.connect(path).execute("SELECT name, label, n, at FROM state_test_counter").fetchall()
    assert rows == [("k", "my label", 1, 1234.5)]
    assert store.name == f"local ({path})"


def test_the_write_lock_is_held_while_the_change_runs(tmp_path):
    """``BEGIN IMMEDIATE``: no other connection can start a write between this read and its commit."""
    path = tmp_path / "s.sqlite3"
    store = SQLiteStore(COUNTER, path)
    store.transact("k", increment(), labels=("l",))
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    refused: list[str] = []

    def change(n, moment):
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            refused.append(str(exc))
        else:
            other.execute("ROLLBACK")
        return n + 1, n

    store.transact("k", change, labels=("l",))
    assert refused == ["database is locked"]
    other.execute("BEGIN IMMEDIATE")  # and released after the commit
    other.execute("ROLLBACK")


def test_a_held_lock_is_waited_for_up_to_the_timeout(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SQLiteStore(COUNTER, path, timeout=0.3)
    store.transact("k", increment(), labels=("l",))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        store.transact("k", increment(), labels=("l",))
    assert time.monotonic() - started >= 0.25
    holder.execute("ROLLBACK")
    assert store.transact("k", increment(), labels=("l",))[0] == 2


def test_a_private_file_is_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "secret.sqlite3"
    SQLiteStore(COUNTER, path, private=True, synchronous="FULL").transact("k", increment(), labels=("l",))
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_processes_never_lose_an_update(tmp_path):
    """Three processes increment one key with a pause between read and write; every increment counts."""
    script = textwrap.dedent(
        """
        import sys, time
        from airflow_provider_gong.state import SQLiteStore
        from tests.unit.state.counter import COUNTER, increment
        store = SQLiteStore(COUNTER, sys.argv[1])
        time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all start together
        for _ in range(60):
            store.transact("k", increment(0.001), labels=("p",))
        """
    )
    path = tmp_path / "s.sqlite3"
    start = str(time.time() + 3)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(path), start], cwd=ROOT, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    assert SQLiteStore(COUNTER, path).transact("k", read, labels=("p",))[0] == 180


def test_a_forked_child_opens_its_own_connection(tmp_path):
    """A connection inherited through ``fork()`` is never used by the child (SQLite forbids it)."""
    import multiprocessing

    store = SQLiteStore(COUNTER, tmp_path / "s.sqlite3")
    store.transact("k", increment(), labels=("l",))
    inherited = store._connection()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def child():
        store.transact("k", increment(), labels=("l",))
        queue.put(store._connection() is not inherited)

    proc = ctx.Process(target=child)
    proc.start()
    proc.join(30)
    assert proc.exitcode == 0 and queue.get(timeout=5) is True
    assert store.transact("k", read, labels=("l",))[0] == 2
