"""Records in this process only: for tests, and for one long-running process that needs no other."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from airflow_provider_gong.state.base import Change, Moment, Row, S, StateStore, T, Table


class MemoryStore(StateStore[S]):
    """
    A dict under a process lock.

    Rows are kept encoded, as a database keeps them, so the record a change is handed is always a fresh
    one.

    :param clock: the pace clock (injectable so tests need no wall time).
    :param wall: seconds since the epoch (injectable likewise).
    """

    name = "memory (this process)"

    def __init__(
        self,
        table: Table[S],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self._clock = clock
        self._wall = wall
        self._rows: dict[str, Row] = {}
        self._lock = threading.Lock()

    def transact(self, key: str, change: Change[S, T], labels: Row = ()) -> tuple[T, Moment]:
        self.table.written(labels)
        with self._lock:
            moment = Moment(self._clock(), self._wall())
            new, result = change(self.table.decode(self._rows.get(key)), moment)
            if new is not None:
                self._rows[key] = self.table.encode(new, moment)
            return result, moment
