"""A record for testing the state layer on its own: one integer per key, plus the label column and
the transaction's time, the two kinds of extra column the quota's and the OAuth chain's tables have."""

from __future__ import annotations

import time

from airflow_provider_gong.state import Change, Moment, Row, Table


def _decode(row: Row | None) -> int:
    return 0 if row is None else int(row[0])


def _encode(n: int, moment: Moment) -> Row:
    return (n, moment.wall)


def counter_table(name: str = "state_test_counter") -> Table[int]:
    return Table(
        name=name,
        key="name",
        columns=("n", "at"),
        sqlite_columns="name TEXT PRIMARY KEY, label TEXT NOT NULL, n INTEGER NOT NULL, at REAL NOT NULL",
        postgres_columns=(
            "name VARCHAR(200) PRIMARY KEY, label TEXT NOT NULL, n INTEGER NOT NULL, "
            "at DOUBLE PRECISION NOT NULL"
        ),
        blank=(0, 0.0),
        decode=_decode,
        encode=_encode,
        labels=("label",),
    )


COUNTER = counter_table()


def increment(pause: float = 0.0) -> Change[int, int]:
    """A read-modify-write that sleeps between the read and the write: where two of them could overlap,
    one increment gets lost, so a lost update shows in the final count."""

    def change(n: int, moment: Moment) -> tuple[int, int]:
        if pause:
            time.sleep(pause)
        return n + 1, n + 1

    return change


def read(n: int, moment: Moment) -> tuple[None, int]:
    """Reads the count and writes nothing."""
    return None, n
