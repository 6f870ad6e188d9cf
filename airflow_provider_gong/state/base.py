"""
The one operation every store offers: change one keyed row while nobody else can.

The quota and the OAuth token chain both keep a small record per key that several processes update:
read it, decide, write the result, with no other process in between. That is the whole contract
(:meth:`StateStore.transact`); what differs between the two is only the record, which a
:class:`Table` describes once for every backend (its columns, how a row becomes the record and back).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

S = TypeVar("S")
T = TypeVar("T")
Row = tuple[Any, ...]


class Moment(NamedTuple):
    """
    The store's clocks, read while the key's row is locked.

    Reading them then means a caller who queued for the lock decides from the real now, not from when
    it started waiting.
    """

    #: seconds on the clock schedules run on, the same for every process of the store
    pace: float
    #: seconds since the epoch (expiry times, the UTC day)
    wall: float


Change = Callable[[S, Moment], tuple[S | None, T]]
"""``change(value, moment) -> (new value or None to write nothing, result)``."""


@dataclass(frozen=True)
class Table(Generic[S]):
    """
    One kind of record as every backend keeps it: a table of one row per key.

    The same description serves the SQLite file, the PostgreSQL table and the in-memory dict (which
    keeps encoded rows too, so a change can never alter the stored record by mutating what it was
    handed).
    """

    #: the table's name, the same in SQLite and PostgreSQL
    name: str
    #: the key column (the table's primary key)
    key: str
    #: the value columns, in the order :attr:`encode` returns and :attr:`decode` receives them
    columns: tuple[str, ...]
    #: the full column list (key included) as SQLite's and as PostgreSQL's ``CREATE TABLE`` want it
    sqlite_columns: str
    postgres_columns: str
    #: a placeholder row's value columns: PostgreSQL needs a row to lock before the first record exists
    blank: Row
    #: a row's value columns (None: no row) -> the record the change sees
    decode: Callable[[Row | None], S]
    #: a record (never None) and the moment of the transaction -> the value columns to write
    encode: Callable[[S, Moment], Row]
    #: columns written beside the record but never read back, for a person reading the table (the
    #: caller names them per transaction: :meth:`StateStore.transact`'s ``labels``)
    labels: tuple[str, ...] = ()

    def written(self, labels: Row) -> Row:
        """
        Return ``labels`` checked against the table's label columns.

        A missing one then fails loudly instead of shifting every column it precedes.
        """
        if len(labels) != len(self.labels):
            raise ValueError(f"table {self.name} takes labels {self.labels}, got {len(labels)} value(s)")
        return labels


class StateStore(ABC, Generic[S]):
    """Where records of one :class:`Table` live; every process that opens the same store shares them."""

    #: how the store is named in messages
    name: str = "store"
    #: seconds per one-second window by which the store's pace clock may run off: 0 for a monotonic
    #: clock, more for a wall clock that NTP slews (see :class:`~.postgres.PostgresStore`)
    clock_allowance: float = 0.0

    @abstractmethod
    def transact(self, key: str, change: Change[S, T], labels: Row = ()) -> tuple[T, Moment]:
        """
        Run ``change(value, moment)`` while no other process or thread can touch ``key``'s row.

        ``moment`` is read from the store's clocks after the lock is held. ``change`` returns the new
        value (None: write nothing) and a result; an exception it raises rolls everything back.
        Commits before returning the result and ``moment``.

        :param labels: the values of the table's label columns, written with the record.
        """
