"""The in-process store: one transaction at a time per store, and a change can only alter the stored
record by returning it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from airflow_provider_gong.state import MemoryStore, Moment, Row, Table
from tests.unit.state.counter import COUNTER, increment, read


def test_the_result_and_the_moment_come_back_and_none_writes_nothing():
    ticks = iter(range(100))
    store = MemoryStore(COUNTER, clock=lambda: float(next(ticks)), wall=lambda: 1e9)
    assert store.transact("k", increment(), labels=("l",)) == (1, Moment(0.0, 1e9))
    assert store.transact("k", read, labels=("l",)) == (1, Moment(1.0, 1e9))
    assert store.transact("other", read, labels=("l",))[0] == 0  # keys are separate


def test_threads_never_lose_an_update():
    store = MemoryStore(COUNTER)
    threads = [
        threading.Thread(
            target=lambda: [store.transact("k", increment(0.0005), labels=("l",)) for _ in range(40)]
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.transact("k", read, labels=("l",))[0] == 160


@dataclass
class Box:
    items: list[int] = field(default_factory=list)


def _decode(row: Row | None) -> Box:
    return Box(list(row[0])) if row else Box()


LISTS: Table[Box] = Table(
    name="lists",
    key="k",
    columns=("items",),
    sqlite_columns="",
    postgres_columns="",
    blank=((),),
    decode=_decode,
    encode=lambda box, moment: (tuple(box.items),),
)


def test_a_change_is_handed_a_fresh_record_each_time():
    """Mutating the record without returning it changes nothing, as with a database."""
    store = MemoryStore(LISTS)
    store.transact("k", lambda box, moment: (Box([1]), None))

    def mutate_only(box, moment):
        box.items.append(2)
        return None, None

    store.transact("k", mutate_only)
    assert store.transact("k", lambda box, moment: (None, box.items))[0] == [1]
