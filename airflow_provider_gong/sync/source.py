"""
Source: the rows of a table or query, in key order, in bounded pages; key problems as findings.

Keyset paging (``WHERE key > last ORDER BY key LIMIT n``) keeps memory bounded and holds no cursor or
lock while Gong is called, on any database with LIMIT. Keyset paging silently skips what it cannot
order or tell apart, so keys are checked first: rows with a NULL key and keys shared by several rows
are found with one query each and reported, never looped over or dropped without a word.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from airflow_provider_gong.exceptions import GongValidationError
from airflow_provider_gong.sync.sql import (
    as_text,
    connect,
    dialect,
    first_line,
    is_mysql,
    literal_percent,
    quote_identifier,
    rollback_quietly,
)

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

#: The ledger's key column is VARCHAR(255): longer keys cannot be tracked.
MAX_KEY_LENGTH = 255
#: At most this many duplicate keys are held in memory (and reported) per run.
MAX_DUPLICATE_KEYS = 100_000
#: MySQL's type code of a TIMESTAMP column (an instant; DATETIME, code 12, is a wall-clock time)
_MYSQL_TIMESTAMP = 7


def normalise_key(value: Any) -> str:
    """
    Return the ledger key of a source key: ``str(value)``; bytes as hex; dates in ISO-8601.

    Deterministic and the same as 0.1.0's for the usual key types (integers, text, UUIDs), so ledgers
    written by 0.1.0 keep matching. Different values of different types can meet (``7`` and ``'7'``
    in a dynamically typed SQLite column): the batch treats that as a duplicate key.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value)


class SourceReader:
    """Reads the source through its own DB-API connection."""

    def __init__(
        self, hook: DbApiHook, *, table: str | None, sql: str | None, key: str, page_size: int
    ) -> None:
        if bool(table) == bool(sql):
            raise GongValidationError("give exactly one of table= or sql=")
        if page_size < 1:
            raise GongValidationError("page_size must be >= 1")
        self.what = f"table {table}" if table else "the sql= query"
        if table:
            source = quote_identifier(hook, table, what="table")
        else:
            source = f"({literal_percent(hook, str(sql).strip().rstrip(';'))})"
        self.source = f"{source} src"
        self.key_column = key
        self.key = f"src.{quote_identifier(hook, key, what='key column')}"
        self.ph = hook.placeholder
        self.page_size = page_size
        self.hook = hook
        self.conn = connect(hook)  # on MySQL/MariaDB: a session in UTC (see _instants)
        self._mysql = is_mysql(dialect(hook))
        #: rows returned by each fetch, so tests can prove memory stays bounded
        self.fetch_sizes: list[int] = []
        self._first: tuple[list[str], list[tuple[Any, ...]]] | None = None  # read by columns()
        self._stats: tuple[int, int, int] | None = None  # rows, NULL keys, duplicated keys (see stats)
        #: seconds the first page took to read: a first measure of the warehouse's round trip
        self.first_read_seconds = 0.0

    def close(self) -> None:
        self.conn.close()

    def columns(self) -> list[str]:
        """
        Return the source's column names; fails the task (not a row) when the source cannot be read.

        The first page is read to tell (and kept for :meth:`pages`): a round trip fewer. Its read is
        left open for the ledger lookup that follows on this connection, which ends it.
        """
        started = time.monotonic()
        try:
            self._first = self._query(self._page_sql(first=True), end=False)  # see Startup.claim_first
            self.first_read_seconds = time.monotonic() - started
            names = self._first[0]
        except Exception:
            self._first = None  # no such source or column: the plain query below says which
            names = self._names()
        if self.key_column.lower() not in (n.lower() for n in names):
            raise GongValidationError(
                f"{self.what} has no key column {self.key_column!r}; columns are {names}. "
                "Map it with columns={'key': ...}."
            )
        return names

    @property
    def first_page(self) -> tuple[list[str], list[tuple[Any, ...]]] | None:
        """The first page as :meth:`columns` read it, until :meth:`pages` hands it out."""
        return self._first

    def _names(self) -> list[str]:
        try:
            names, _ = self._query(f"SELECT * FROM {self.source} WHERE 1 = 0")
        except Exception as exc:
            raise GongValidationError(
                f"cannot read {self.what} through connection {self.hook.get_conn_id()!r}: "
                f"{type(exc).__name__}: {first_line(exc)}"
            ) from None
        return names

    def stats(self) -> Future[tuple[int, int, int]]:
        """
        Count rows, rows with a NULL key and keys held by several rows: one statement, on its own connection.

        Runs beside the first page's read; :meth:`count`, :meth:`null_keys` and
        :meth:`duplicate_keys` then answer from it (the last of them uses it up: a second pass asks again).
        """
        done: Future[tuple[int, int, int]] = Future()

        def run() -> None:
            key = self.key
            sql = (
                f"SELECT COUNT(*), COUNT({key}), (SELECT COUNT(*) FROM (SELECT {key} FROM {self.source} "
                f"WHERE {key} IS NOT NULL GROUP BY {key} HAVING COUNT(*) > 1) dup) FROM {self.source}"
            )
            conn = None
            try:
                conn = connect(self.hook)
                _, rows = self._query(sql, conn=conn, end=False)
                total, keyed, shared = (int(v or 0) for v in rows[0])
                self._stats = (total, total - keyed, shared)
                done.set_result(self._stats)
            except BaseException as exc:  # the plain queries below ask again
                done.set_exception(exc)
            finally:
                if conn is not None:  # after the answer is out: nobody waits for this
                    rollback_quietly(conn)
                    conn.close()

        threading.Thread(target=run, name="gong-source-stats", daemon=True).start()
        return done

    def count(self) -> int:
        if self._stats is not None:
            return self._stats[0]
        return int(self._query(f"SELECT COUNT(*) FROM {self.source}")[1][0][0])

    def null_keys(self, sample: int = 5) -> tuple[int, list[dict[str, Any]]]:
        """How many rows have a NULL key, and up to ``sample`` of them (for the log)."""
        where = f"WHERE {self.key} IS NULL"
        if self._stats is not None:
            count = self._stats[1]
        else:
            count = int(self._query(f"SELECT COUNT(*) FROM {self.source} {where}")[1][0][0])
        if not count:
            return 0, []
        names, rows = self._query(f"SELECT * FROM {self.source} {where} LIMIT {int(sample)}")
        return count, [dict(zip(names, row, strict=True)) for row in rows]

    def duplicate_keys(self) -> dict[str, int]:
        """Keys (normalised) held by more than one row, with their row counts."""
        stats, self._stats = self._stats, None
        if stats is not None and not stats[2]:
            return {}
        _, rows = self._query(
            f"SELECT {self.key}, COUNT(*) FROM {self.source} WHERE {self.key} IS NOT NULL "
            f"GROUP BY {self.key} HAVING COUNT(*) > 1 LIMIT {MAX_DUPLICATE_KEYS}"
        )
        found: dict[str, int] = {}
        for value, count in rows:
            key = normalise_key(value)
            found[key] = found.get(key, 0) + int(count)
        return found

    def pages(self, *, set_column: str | None = None) -> Iterator[tuple[list[str], list[tuple[Any, ...]]]]:
        """
        Yield (column names, rows) pages of non-NULL keys in key order until exhausted.

        Every page is sent with parameters, the first one too, so ``%`` in ``sql=`` means the same
        on every page.

        :param set_column: only rows where this column is not NULL (e.g. the ``cancelled`` column).
        """
        last: Any = None
        first = True
        only = f" AND src.{quote_identifier(self.hook, set_column)} IS NOT NULL" if set_column else ""
        while True:
            if first and self._first is not None and not only:  # read by columns(), unfiltered
                (names, rows), self._first = self._first, None
            else:
                names, rows = self._query(self._page_sql(first=first, only=only), () if first else (last,))
            self.fetch_sizes.append(len(rows))
            if not rows:
                return
            yield names, rows
            index = [n.lower() for n in names].index(self.key_column.lower())
            last, first = rows[-1][index], False
            if len(rows) < self.page_size:
                return

    def _page_sql(self, *, first: bool, only: str = "") -> str:
        where = f"WHERE {self.key} IS NOT NULL{only}" + ("" if first else f" AND {self.key} > {self.ph}")
        return f"SELECT * FROM {self.source} {where} ORDER BY {self.key} LIMIT {int(self.page_size)}"

    def missing_keys(self, ledger_table: str, key_column: str, status_column: str) -> Iterator[list[str]]:
        """
        Pages of ledger keys that may hold a meeting (``created``, ``pending``) whose row left the source.

        :func:`~airflow_provider_gong.sync.plan.plan_removed` decides what to do with each.

        An anti-join the database runs (``NOT EXISTS``), walked in keyset pages of the ledger's key, so
        memory stays bounded whatever the sizes of source and ledger. ``ledger_table`` and the column
        names come quoted.
        """
        last: str | None = None
        while True:
            after = "" if last is None else f" AND led.{key_column} > {self.ph}"
            sql = (
                f"SELECT led.{key_column} FROM {ledger_table} led "
                f"WHERE led.{status_column} IN ('created', 'pending')"
                f"{after} AND NOT EXISTS (SELECT 1 FROM {self.source} "
                f"WHERE {as_text(self.hook, self.key)} = led.{key_column}) "
                f"ORDER BY led.{key_column} LIMIT {int(self.page_size)}"
            )
            _, rows = self._query(sql, () if last is None else (last,))
            if not rows:
                return
            keys = [str(row[0]) for row in rows]
            yield keys
            last = keys[-1]
            if len(rows) < self.page_size:
                return

    def _query(
        self, sql: str, params: tuple[Any, ...] = (), *, conn: Any = None, end: bool = True
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        conn = conn or self.conn
        cur = conn.cursor()
        try:
            cur.execute(sql, params)
            description = cur.description or ()
            rows = [tuple(r) for r in cur.fetchall()] if description else []
        except BaseException:
            rollback_quietly(conn)
            raise
        finally:
            cur.close()
        if end:  # readers must not hold a transaction (and its locks or snapshot) while Gong is called
            rollback_quietly(conn)
        return [d[0] for d in description], self._instants(description, rows)

    def _instants(self, description: Any, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """
        Mark MySQL/MariaDB TIMESTAMPs as UTC, so that the task's ``timezone`` does not shift them.

        MySQL/MariaDB return a TIMESTAMP (an instant) as a naive value in the session's zone, which
        :func:`~airflow_provider_gong.sync.sql.connect` set to UTC; the task's ``timezone`` is meant
        for naive wall-clock values, e.g. DATETIME.
        """
        if not self._mysql:
            return rows
        utc = [i for i, d in enumerate(description) if d[1] == _MYSQL_TIMESTAMP]
        if not utc:
            return rows
        fixed = []
        for row in rows:
            values = list(row)
            for i in utc:
                if isinstance(values[i], dt.datetime) and values[i].tzinfo is None:
                    values[i] = values[i].replace(tzinfo=dt.timezone.utc)
            fixed.append(tuple(values))
        return fixed
