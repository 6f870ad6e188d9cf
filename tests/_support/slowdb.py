"""A warehouse that answers slowly: DB-API proxies adding latency to every round trip, and counting them.

Snowflake or BigQuery answer a statement in 50-500 ms where SQLite answers in microseconds. Wrapping a
fast local connection in :class:`SlowConnection` gives the batch the round-trip cost of a real
warehouse (``execute``, ``executemany``, ``commit`` and ``rollback`` each wait ``latency`` seconds
first), so tests and benchmarks can show what the batch's shape costs without a cloud account.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RoundTrips:
    """Counts shared by every proxied connection of one experiment."""

    latency: float = 0.0
    executes: int = 0
    commits: int = 0
    rollbacks: int = 0
    statements: list[str] = field(default_factory=list)
    #: every round trip in order: (thread name, kind, the statement's start, time.time() it began)
    events: list[tuple[str, str, str, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def wait(self, kind: str, sql: str = "") -> None:
        with self._lock:
            self.events.append((threading.current_thread().name, kind, sql.lstrip()[:40], time.time()))
            if kind == "execute":
                self.executes += 1
                self.statements.append(sql.lstrip()[:40])
            elif kind == "commit":
                self.commits += 1
            else:
                self.rollbacks += 1
        if self.latency:
            time.sleep(self.latency)

    def writes(self) -> int:
        """Statements that change the ledger (INSERT, UPDATE, DELETE)."""
        return sum(1 for s in self.statements if s.upper().startswith(("INSERT", "UPDATE", "DELETE")))


class _SlowCursor:
    def __init__(self, cursor: Any, trips: RoundTrips) -> None:
        self._cursor, self._trips = cursor, trips

    def execute(self, sql: str, *args: Any) -> Any:
        self._trips.wait("execute", sql)
        return self._cursor.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        self._trips.wait("execute", sql)
        return self._cursor.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def __enter__(self) -> _SlowCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cursor.close()


class SlowConnection:
    """A DB-API connection whose every round trip takes ``trips.latency`` seconds more."""

    def __init__(self, conn: Any, trips: RoundTrips) -> None:
        self._conn, self._trips = conn, trips

    def cursor(self, *args: Any, **kwargs: Any) -> _SlowCursor:
        return _SlowCursor(self._conn.cursor(*args, **kwargs), self._trips)

    def commit(self) -> None:
        self._trips.wait("commit")
        self._conn.commit()

    def rollback(self) -> None:
        self._trips.wait("rollback")
        self._conn.rollback()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@contextlib.contextmanager
def slow_connections(hook_class: type[Any], latency: float) -> Iterator[RoundTrips]:
    """Every connection ``hook_class.get_conn()`` makes inside the block is a :class:`SlowConnection`."""
    trips = RoundTrips(latency)
    original = hook_class.get_conn

    def get_conn(self: Any, *args: Any, **kwargs: Any) -> SlowConnection:
        return SlowConnection(original(self, *args, **kwargs), trips)

    hook_class.get_conn = get_conn
    try:
        yield trips
    finally:
        hook_class.get_conn = original
