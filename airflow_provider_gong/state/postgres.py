"""
Records in a PostgreSQL table reached through an Airflow connection (``quota_backend="sql"``).

For workers on several machines.

PostgreSQL, not any common-sql database: the row lock (``SELECT ... FOR UPDATE``) that queues the
workers and the server's clock that they all agree on are what make the state shared.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

from airflow_provider_gong._dialect import dialect
from airflow_provider_gong.exceptions import GongError, GongValidationError
from airflow_provider_gong.state.base import Change, Moment, Row, S, StateStore, T, Table


def open_postgres(conn_id: str, table: str, columns: str, *, needed_by: str) -> Any:
    """
    Open a DB-API connection (autocommit off) to the PostgreSQL database of Airflow connection ``conn_id``.

    ``table`` (``columns``: its SQL column list) is in it.

    :param needed_by: what needs it, for the message when ``conn_id`` is not PostgreSQL (e.g.
        "quota_backend 'sql'"): the state relies on ``SELECT ... FOR UPDATE`` and the server's clock.
    :raises GongValidationError: the connection is not a PostgreSQL one.
    """
    from airflow.sdk import BaseHook

    hook = BaseHook.get_hook(conn_id)
    if not hasattr(hook, "get_conn") or not dialect(hook).startswith("postgres"):
        kind = getattr(hook, "conn_type", None) or type(hook).__name__
        raise GongValidationError(
            f"quota_conn_id {conn_id!r} is a {kind} connection; {needed_by} needs PostgreSQL "
            "(use quota_backend 'local' for the tasks of one machine)"
        )
    conn = hook.get_conn()
    conn.autocommit = False
    cur = conn.cursor()
    try:
        cur.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
        conn.commit()
    except Exception:
        # Two processes creating it at once: one of them loses on the catalog's unique index. The
        # table is there then; anything else fails the check below.
        conn.rollback()
        cur.execute(f"SELECT 1 FROM {table} WHERE 1 = 0")
        conn.rollback()
    finally:
        cur.close()
    return conn


def row_values(row: Any) -> tuple[Any, ...]:
    """Return a row as a tuple, also from a connection whose extras ask for dict rows."""
    return tuple(row.values()) if hasattr(row, "values") else tuple(row)


class PostgresStore(StateStore[S]):
    """
    One table in the PostgreSQL database of Airflow connection ``conn_id``.

    The key's row is locked with ``SELECT ... FOR UPDATE``, inserted as a placeholder first if absent
    (so that two processes creating the first record queue on one row). Both clocks are the server's
    ``clock_timestamp()``, read after the lock is held, so workers whose clocks disagree still agree.
    One connection per process (and per store: a transaction that holds a row while it waits on the
    network must not hold up another kind of state).

    :param needed_by: what needs the store, for the message when ``conn_id`` is not PostgreSQL.
    :param lock_timeout: seconds to wait for another worker's lock before failing (None: the server's
        setting); a worker that dies while it holds one releases it with its connection.
    :param reconnect: when the server went away mid-transaction, open one fresh connection and run the
        change once more. Only for changes that may run twice: one that talks to the outside world in
        between (an OAuth refresh) must not.
    """

    #: A wall clock may run fast or slow while NTP corrects it (0.5 % measured on a VM, where a
    #: one-second window guard would otherwise shrink from 1.009 s to 1.004 s); 5 ms per window covers that.
    clock_allowance = 0.005

    def __init__(
        self,
        table: Table[S],
        conn_id: str,
        *,
        needed_by: str,
        lock_timeout: float | None = None,
        reconnect: bool = False,
    ) -> None:
        self.table = table
        self.conn_id = conn_id
        self.name = f"sql (connection {conn_id!r}, table {table.name})"
        self._needed_by = needed_by
        self._lock_timeout = lock_timeout
        self._reconnect = reconnect
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = 0
        written = (*table.labels, *table.columns)
        self._select = (
            f"SELECT {', '.join(table.columns)} FROM {table.name} WHERE {table.key} = %s FOR UPDATE"
        )
        self._insert = (
            f"INSERT INTO {table.name} ({table.key}, {', '.join(written)}) "
            f"VALUES (%s, {', '.join('%s' for _ in written)}) ON CONFLICT ({table.key}) DO NOTHING"
        )
        self._update = (
            f"UPDATE {table.name} SET {', '.join(f'{c} = %s' for c in written)} WHERE {table.key} = %s"
        )

    def _connection(self) -> Any:
        if self._conn is not None and self._pid == os.getpid() and not getattr(self._conn, "closed", False):
            return self._conn
        self._conn = open_postgres(
            self.conn_id, self.table.name, self.table.postgres_columns, needed_by=self._needed_by
        )
        self._pid = os.getpid()
        return self._conn

    def transact(self, key: str, change: Change[S, T], labels: Row = ()) -> tuple[T, Moment]:
        labels = self.table.written(labels)
        with self._lock:
            if not self._reconnect:
                return self._transact(key, change, labels)
            try:
                return self._transact(key, change, labels)
            except GongError:  # an answer (a refused connection, a spent budget), not a broken one
                raise
            except Exception:
                if self._conn is None or not getattr(self._conn, "closed", False):
                    raise
                self._conn = None  # the server went away: one fresh connection, then give up
                return self._transact(key, change, labels)

    def _transact(self, key: str, change: Change[S, T], labels: Row) -> tuple[T, Moment]:
        conn = self._connection()
        cur = conn.cursor()
        try:
            if self._lock_timeout is not None:
                cur.execute(f"SET LOCAL lock_timeout = '{int(self._lock_timeout * 1000)}ms'")
            cur.execute(self._select, (key,))
            row = cur.fetchone()
            if row is None:
                cur.execute(self._insert, (key, *labels, *self.table.blank))
                cur.execute(self._select, (key,))
                row = cur.fetchone()
            # Read after the row lock is held: a caller that queued for it decides from the real now.
            cur.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8")
            now = float(row_values(cur.fetchone())[0])
            moment = Moment(now, now)
            new, result = change(self.table.decode(row_values(row)), moment)
            if new is not None:
                cur.execute(self._update, (*labels, *self.table.encode(new, moment), key))
            conn.commit()
        except BaseException:
            with contextlib.suppress(Exception):  # the connection itself is gone; the next call replaces it
                conn.rollback()
            raise
        finally:
            with contextlib.suppress(Exception):
                cur.close()
        return result, moment
