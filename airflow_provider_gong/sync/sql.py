"""
The few SQL dialect facts the batch needs, in one place: identifiers, case rules, parameters.

Everything else is portable DB-API: values always travel as bind parameters, identifiers are
validated and then quoted, and every statement is executed with a parameter tuple (possibly empty)
so that drivers with ``%s`` placeholders parse every statement the same way.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_gong._dialect import dialect as dialect  # re-exported: the batch asks it here
from airflow_provider_gong.exceptions import GongValidationError
from airflow_provider_gong.sync.ddl import family

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

log = logging.getLogger(__name__)
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,127}$")
_QUOTED = re.compile(r'^"([^"]{1,128})"$')
_FOLDS_TO_LOWER = ("postgres", "redshift")
_FOLDS_TO_UPPER = ("snowflake", "oracle", "db2")


def quote_identifier(hook: DbApiHook, name: str, *, what: str = "identifier") -> str:
    """
    Validate ``name`` (``table`` or ``schema.table``) and quote each part the hook's way.

    A plain part is folded the way the database folds unquoted names (lower case on PostgreSQL,
    upper case on Snowflake/Oracle), so ``Gong_Ledger`` names the same table quoted or unquoted, as
    users expect; quoting still protects reserved words such as ``end``. A part written in double
    quotes (``'"MixedCase"'``) is taken literally.
    """
    parts = str(name or "").split(".")
    if not name or len(parts) > 3:
        raise GongValidationError(_bad_name(what, name))
    fmt = getattr(hook, "escape_word_format", None) or '"{}"'
    kind = dialect(hook)
    quoted = []
    for part in parts:
        literal = _QUOTED.match(part)
        if literal:
            quoted.append(fmt.format(literal.group(1)))
        elif _PLAIN.match(part):
            if kind.startswith(_FOLDS_TO_LOWER):
                part = part.lower()
            elif kind.startswith(_FOLDS_TO_UPPER):
                part = part.upper()
            quoted.append(fmt.format(part))
        else:
            raise GongValidationError(_bad_name(what, name))
    return ".".join(quoted)


def _bad_name(what: str, name: Any) -> str:
    return (
        f"{what} {name!r} is not a plain SQL identifier (letters, digits, _ ; optionally schema.table; "
        "a part in double quotes is taken literally)"
    )


def as_text(hook: DbApiHook, expr: str) -> str:
    """
    ``expr`` cast to text, for comparing a source key with the ledger's text key in SQL.

    Matches :func:`~airflow_provider_gong.sync.source.normalise_key` for integer, text and UUID keys.
    """
    kind = dialect(hook)
    if kind.startswith("sqlite"):
        # SQLite compares an INTEGER column with text by numeric affinity, and the bare column keeps
        # its index usable: a CAST would make the anti-join a full scan per ledger row (O(n^2)).
        return expr
    if kind.startswith(("mysql", "mariadb")):
        return f"CAST({expr} AS CHAR)"
    return f"CAST({expr} AS VARCHAR(255))"


def literal_percent(hook: DbApiHook, sql: str) -> str:
    """
    User SQL as the driver must see it when parameters are passed.

    With ``%s``-style drivers (psycopg, MySQL) a literal ``%`` must be doubled, with ``?``-style ones
    (SQLite) nothing changes. Users write ``LIKE 'abc%'`` as in any SQL client.
    """
    return sql.replace("%", "%%") if getattr(hook, "placeholder", "%s") == "%s" else sql


def execute(
    conn: Any, sql: str, params: tuple[Any, ...] = ()
) -> tuple[list[str], list[tuple[Any, ...]], int]:
    """
    Run one statement; return (column names, rows, rowcount).

    Rows only for statements that return them; the caller bounds their number (LIMIT).
    """
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        names = [d[0] for d in cur.description] if cur.description else []
        rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
        rowcount = cur.rowcount if isinstance(cur.rowcount, int) else -1
    finally:
        cur.close()
    return names, rows, rowcount


# -- connections and transactions: the drivers' differences --------------------------------------

#: how long a run waits for a DuckDB file another process holds (DuckDB allows one writing process per
#: file) before it gives up with a clear error
FILE_LOCK_WAIT_SECONDS = 600.0


def connect(
    hook: DbApiHook, *, wait: float = FILE_LOCK_WAIT_SECONDS, sleep: Callable[[float], None] = time.sleep
) -> Any:
    """
    Open a new DB-API connection, set up the way the batch reads and writes.

    - MySQL/MariaDB: the session's time zone is UTC, so a ``TIMESTAMP`` (an instant) comes back as naive
      UTC whatever the server's or the user's default zone (the source then marks it as UTC);
    - DuckDB: a file another process has open is waited for (up to ``wait`` seconds), not a failure.
    """
    kind = dialect(hook)
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            conn = hook.get_conn()
            break
        except Exception as exc:
            held = "conflicting lock" in str(exc).lower()
            if not held or time.monotonic() >= deadline:
                if held:
                    raise RuntimeError(
                        f"the DuckDB file of connection {hook.get_conn_id()!r} is still held by another "
                        f"process after {wait:.0f} s (DuckDB allows one writing process per file): "
                        f"{first_line(exc)}. Run one batch on this file at a time (max_active_runs=1)."
                    ) from None
                raise
            if not told:
                log.info(
                    "The DuckDB file is open in another process (another run?); waiting for it: %s",
                    first_line(exc),
                )
                told = True
            sleep(1.0)
    if is_mysql(kind):
        execute(conn, "SET time_zone = '+00:00'")
    return conn


def is_mysql(kind: str) -> bool:
    return family(kind) == "mysql"


def begin(conn: Any, kind: str) -> None:
    """
    Open a transaction where the driver does not.

    DuckDB, and Snowflake sessions in their default AUTOCOMMIT mode, run each statement on its own
    otherwise. (PEP 249 drivers open one implicitly.)
    """
    if kind.startswith(("duckdb", "snowflake")):
        execute(conn, "BEGIN TRANSACTION")


def rollback_quietly(conn: Any) -> None:
    """
    End whatever transaction is open.

    Some drivers (DuckDB) refuse a rollback with none open; a connection that is broken is found by
    the next statement, not here.
    """
    with contextlib.suppress(Exception):
        conn.rollback()


def is_alive(conn: Any) -> bool:
    try:
        execute(conn, "SELECT 1")
    except Exception:
        return False
    finally:
        rollback_quietly(conn)
    return True


def first_line(exc: BaseException) -> str:
    """Return the first line of an error's message ("" when it has none), for one-line log and error texts."""
    text = str(exc).strip().splitlines()
    return text[0] if text else ""
