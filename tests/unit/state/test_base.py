"""The state layer's contract, the same on every backend: a change that writes nothing leaves the row as
it was, one that raises rolls back, and labels must match the table's label columns."""

from __future__ import annotations

import pytest

from airflow_provider_gong.state import MemoryStore, Moment, PostgresStore, SQLiteStore, StateStore
from tests.unit.state.conftest import PG_CONN_ID
from tests.unit.state.counter import COUNTER, increment, read


def test_labels_must_match_the_tables_label_columns():
    assert COUNTER.written(("a label",)) == ("a label",)
    with pytest.raises(ValueError, match=r"state_test_counter takes labels \('label',\), got 0"):
        COUNTER.written(())


def test_a_transaction_with_missing_labels_writes_nothing():
    store = MemoryStore(COUNTER)
    with pytest.raises(ValueError, match="takes labels"):
        store.transact("k", increment())
    assert store.transact("k", read, labels=("x",))[0] == 0


def test_a_moment_names_both_clocks():
    moment = Moment(pace=1.5, wall=1_700_000_000.0)
    assert (moment.pace, moment.wall) == (1.5, 1_700_000_000.0)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request, tmp_path) -> StateStore[int]:
    if request.param == "memory":
        return MemoryStore(COUNTER)
    if request.param == "sqlite":
        return SQLiteStore(COUNTER, tmp_path / "s.sqlite3")
    return PostgresStore(request.getfixturevalue("pg_table"), PG_CONN_ID, needed_by="test")


def test_every_backend_commits_what_a_change_returns_and_only_that(store):
    assert store.transact("k", increment(), labels=("l",))[0] == 1
    assert store.transact("k", read, labels=("l",))[0] == 1  # None: nothing written
    assert store.transact("other", read, labels=("l",))[0] == 0  # keys are separate

    def fails(n, moment):
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        store.transact("k", fails, labels=("l",))
    assert store.transact("k", increment(), labels=("l",))[0] == 2
