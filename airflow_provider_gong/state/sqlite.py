"""
Records in a SQLite file that every process on one machine opens (``quota_backend="local"``).

SQLite locks the whole file, so what one transaction holds it for decides what every other process
waits on: each kind of record gets a file of its own. The file must be on a local disk: network file
systems do not honour SQLite's locks (PostgreSQL is the store across machines).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from airflow_provider_gong.state.base import Change, Moment, Row, S, StateStore, T, Table


def open_sqlite(
    path: Path,
    table: str,
    columns: str,
    *,
    timeout: float,
    synchronous: Literal["NORMAL", "FULL"],
    private: bool = False,
) -> sqlite3.Connection:
    """
    Open a connection to the state file ``path`` with ``table`` (``columns``: its SQL column list) in it.

    Autocommit mode, so that :func:`sqlite_write_lock` decides the transactions.

    WAL lets readers go on while one process writes; ``timeout`` is how long a process waits for
    another's lock (SQLite's busy handler). ``synchronous``: ``NORMAL`` survives any process crash
    and may forget the last transactions on an OS crash; ``FULL`` forgets nothing.

    :param private: create the file readable by its owner only (it holds secrets, encrypted or not).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if private:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    with contextlib.suppress(sqlite3.OperationalError):  # another process is switching it to WAL
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
    return conn


@contextlib.contextmanager
def sqlite_write_lock(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """
    Run one transaction that takes SQLite's write lock before anything is read (``BEGIN IMMEDIATE``).

    Two processes can never both read the same state and both write a change of it. Commits on success;
    rolls back on any exception, including a kill signal's.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
            conn.execute("ROLLBACK")
        raise


class SQLiteStore(StateStore[S]):
    """
    One table in the SQLite file ``path``, locked with ``BEGIN IMMEDIATE`` for each transaction.

    A thread lock serialises this process's threads on its one connection; a process waiting for
    another's transaction waits up to ``timeout`` seconds. One connection per process: a connection
    inherited through ``fork()`` is never used by the child.

    :param clock: the pace clock, which every process on the machine must share (monotonic: never
        stepped).
    :param wall: seconds since the epoch.
    :param synchronous: see :func:`open_sqlite`.
    :param private: see :func:`open_sqlite`.
    """

    def __init__(
        self,
        table: Table[S],
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        timeout: float = 30.0,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        private: bool = False,
    ) -> None:
        self.table = table
        self.path = Path(path)
        self.name = f"local ({self.path})"
        self._clock = clock
        self._wall = wall
        self._timeout = timeout
        self._synchronous: Literal["NORMAL", "FULL"] = synchronous
        self._private = private
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        written = (table.key, *table.labels, *table.columns)
        self._select = f"SELECT {', '.join(table.columns)} FROM {table.name} WHERE {table.key} = ?"
        self._replace = (
            f"INSERT OR REPLACE INTO {table.name} ({', '.join(written)}) "
            f"VALUES ({', '.join('?' for _ in written)})"
        )

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self._conn = open_sqlite(
                self.path,
                self.table.name,
                self.table.sqlite_columns,
                timeout=self._timeout,
                synchronous=self._synchronous,
                private=self._private,
            )
            self._pid = os.getpid()
        return self._conn

    def transact(self, key: str, change: Change[S, T], labels: Row = ()) -> tuple[T, Moment]:
        labels = self.table.written(labels)
        with self._lock, sqlite_write_lock(self._connection()) as conn:
            row = conn.execute(self._select, (key,)).fetchone()
            moment = Moment(self._clock(), self._wall())
            new, result = change(self.table.decode(tuple(row) if row else None), moment)
            if new is not None:
                conn.execute(self._replace, (key, *labels, *self.table.encode(new, moment)))
        return result, moment
