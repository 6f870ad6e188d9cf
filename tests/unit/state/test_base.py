"""The state layer's contract, independent of any backend: a table names its label columns once, and a
transaction that gives the wrong number of labels is refused before anything is written."""

from __future__ import annotations

import pytest

from airflow_provider_gong.state import MemoryStore, Moment
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
