"""The databases tasks share state through: a SQLite file on one machine, a PostgreSQL table across
machines.

Two kinds of state live there, each in its own table and module: the account's quota
(:mod:`airflow_provider_gong.quota`) and the OAuth token chain (:mod:`airflow_provider_gong.oauth`).
Both need the same things from the database, which this module gives them once: a connection per
process (never one inherited through ``fork()``), a table created on first use even when several
processes race to create it, and a transaction that holds the write lock before anything is read.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from airflow_provider_gong.exceptions import GongValidationError


def open_sqlite(
    path: Path,
    table: str,
    columns: str,
    *,
    timeout: float,
    synchronous: Literal["NORMAL", "FULL"],
    private: bool = False,
) -> sqlite3.Connection:
    """A connection to the state file ``path`` with ``table`` (``columns``: its SQL column list)
    in it, in autocommit mode so that :func:`sqlite_write_lock` decides the transactions.

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
    """One transaction that takes SQLite's write lock before anything is read (``BEGIN
    IMMEDIATE``): two processes can never both read the same state and both write a change of it.
    Commits on success; rolls back on any exception, including a kill signal's."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
            conn.execute("ROLLBACK")
        raise


def open_postgres(conn_id: str, table: str, columns: str, *, needed_by: str) -> Any:
    """A DB-API connection (autocommit off) to the PostgreSQL database of Airflow connection
    ``conn_id``, with ``table`` (``columns``: its SQL column list) in it.

    :param needed_by: what needs it, for the message when ``conn_id`` is not PostgreSQL (e.g.
        "quota_backend 'sql'"): the state relies on ``SELECT ... FOR UPDATE`` and the server's clock.
    :raises GongValidationError: the connection is not a PostgreSQL one.
    """
    from airflow.sdk import BaseHook

    from airflow_provider_gong.sync.sql import dialect

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
    """A row as a tuple, also from a connection whose extras ask for dict rows."""
    return tuple(row.values()) if hasattr(row, "values") else tuple(row)


def locate(
    backend: str, *, quota_dir: str | None, quota_conn_id: str | None, filename: str
) -> tuple[Literal["memory", "local", "sql"], str]:
    """Where a connection's ``quota_backend`` extras put shared state: ``("local", absolute path of
    filename in quota_dir)`` (default ``$AIRFLOW_HOME/gong_quota``), ``("sql", quota_conn_id)`` or
    ``("memory", "")``. The quota and the OAuth token store read the same extras the same way.

    :raises GongValidationError: an unknown backend, or ``sql`` without ``quota_conn_id``.
    """
    if backend == "memory":
        return "memory", ""
    if backend == "local":
        where = Path(os.path.expanduser(quota_dir)) if quota_dir else default_state_dir()
        return "local", os.path.abspath(where / filename)
    if backend == "sql":
        if not quota_conn_id:
            raise GongValidationError(
                "quota_backend 'sql' needs quota_conn_id: the Airflow connection of the PostgreSQL database"
            )
        return "sql", quota_conn_id
    raise GongValidationError(f"quota_backend must be one of local, sql, memory, got {backend!r}")


def default_state_dir() -> Path:
    """``$AIRFLOW_HOME/gong_quota``: a directory every task on the machine sees (AIRFLOW_HOME's own
    default is ``~/airflow``)."""
    return Path(os.path.expanduser(os.environ.get("AIRFLOW_HOME") or "~/airflow")) / "gong_quota"
