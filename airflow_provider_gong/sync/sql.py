"""The few SQL dialect facts the batch needs, in one place: identifiers, case rules, parameters.

Everything else is portable DB-API: values always travel as bind parameters, identifiers are
validated and then quoted, and every statement is executed with a parameter tuple (possibly empty)
so that drivers with ``%s`` placeholders parse every statement the same way.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from airflow_provider_gong.exceptions import GongValidationError

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,127}$")
_QUOTED = re.compile(r'^"([^"]{1,128})"$')
_FOLDS_TO_LOWER = ("postgres", "redshift")
_FOLDS_TO_UPPER = ("snowflake", "oracle", "db2")


def dialect(hook: DbApiHook) -> str:
    """The hook's dialect name in lower case ("sqlite", "postgresql", "mysql", ...), or ""."""
    try:
        name = hook.dialect_name
    except Exception:  # dialect detection needs SQLAlchemy URL support some hooks lack
        name = ""
    if not name or name == "default":
        name = str(getattr(hook, "conn_type", "") or "")
    return name.lower()


def quote_identifier(hook: DbApiHook, name: str, *, what: str = "identifier") -> str:
    """Validate ``name`` (``table`` or ``schema.table``) and quote each part the hook's way.

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
    """``expr`` cast to text, for comparing a source key with the ledger's text key in SQL. Matches
    :func:`~airflow_provider_gong.sync.source.normalise_key` for integer, text and UUID keys."""
    kind = dialect(hook)
    if kind.startswith("sqlite"):
        # SQLite compares an INTEGER column with text by numeric affinity, and the bare column keeps
        # its index usable: a CAST would make the anti-join a full scan per ledger row (O(n^2)).
        return expr
    if kind.startswith(("mysql", "mariadb")):
        return f"CAST({expr} AS CHAR)"
    return f"CAST({expr} AS VARCHAR(255))"


def literal_percent(hook: DbApiHook, sql: str) -> str:
    """User SQL as the driver must see it when parameters are passed: with ``%s``-style drivers
    (psycopg, MySQL) a literal ``%`` must be doubled, with ``?``-style ones (SQLite) nothing changes.
    Users write ``LIKE 'abc%'`` as in any SQL client."""
    return sql.replace("%", "%%") if getattr(hook, "placeholder", "%s") == "%s" else sql


def execute(
    conn: Any, sql: str, params: tuple[Any, ...] = ()
) -> tuple[list[str], list[tuple[Any, ...]], int]:
    """Run one statement; return (column names, rows, rowcount). Rows only for statements that
    return them; the caller bounds their number (LIMIT)."""
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        names = [d[0] for d in cur.description] if cur.description else []
        rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
        rowcount = cur.rowcount if isinstance(cur.rowcount, int) else -1
    finally:
        cur.close()
    return names, rows, rowcount
