"""
The ledger's DDL in each warehouse's own types, and its lease table beside it.

One column list (``COLUMNS`` in :mod:`~airflow_provider_gong.sync.records`), written in the types each
dialect accepts: BigQuery and Databricks have no ``VARCHAR(n)``/``TEXT`` (``STRING``), Redshift's
``TEXT`` is only 256 bytes (Gong's meeting URLs are longer), MySQL/MariaDB compare text
case-insensitively unless told otherwise (a key column in a binary collation compares keys exactly as
the batch does, so ``abc`` and ``ABC`` are two keys).

The primary key is declared only where the warehouse enforces it (SQLite, PostgreSQL, MySQL/MariaDB,
DuckDB), as a second line of defence; the claim protocol never relies on it (see
``docs/design/0001-claims-without-enforced-keys.md``). Where a key would only be informational
(Snowflake, BigQuery, Redshift, Databricks) it is left out: an optimizer trusting a key that is not
true can return wrong results.

``python -m airflow_provider_gong.sync.ddl <dialect> [ledger_table]`` prints the statements, for teams
that create tables themselves (the batch then only checks that they exist).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

#: the ledger table the batch keeps when it is not told another (``ledger_table``)
DEFAULT_LEDGER_TABLE = "gong_meeting_ledger"
#: generic column kinds -> the type each dialect spells them with
_TYPES: dict[str, dict[str, str]] = {
    "default": {"key": "VARCHAR(255)", "short": "VARCHAR({n})", "text": "TEXT", "int": "INTEGER"},
    "bigquery": {"key": "STRING", "short": "STRING", "text": "STRING", "int": "INT64"},
    "databricks": {"key": "STRING", "short": "STRING", "text": "STRING", "int": "INT"},
    "redshift": {"key": "VARCHAR(255)", "short": "VARCHAR({n})", "text": "VARCHAR(65535)", "int": "INTEGER"},
    "mysql": {
        "key": "VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        "short": "VARCHAR({n})",
        "text": "TEXT",
        "int": "INTEGER",
    },
}
#: dialects that enforce a PRIMARY KEY (the others accept one and ignore it)
ENFORCES_KEYS = ("sqlite", "postgres", "mysql", "mariadb", "duckdb")
#: the ledger's columns, in order, as (name, kind, width for "short", NOT NULL)
LEDGER_COLUMNS: tuple[tuple[str, str, int, bool], ...] = (
    ("row_key", "key", 0, True),
    ("status", "short", 16, True),
    ("meeting_id", "text", 0, False),
    ("meeting_url", "text", 0, False),
    ("request_id", "text", 0, False),
    ("additional_invitees", "text", 0, False),
    ("error", "text", 0, False),
    ("error_kind", "short", 16, False),
    ("attempts", "int", 0, True),
    ("updated_at", "short", 40, True),
    ("claimed_by", "short", 255, False),
    ("fingerprint", "short", 64, False),
    ("organizer_email", "text", 0, False),
    ("end_time", "short", 40, False),
    ("action", "short", 16, False),
    ("source_fingerprint", "short", 64, False),
)
DIALECTS = (
    "sqlite",
    "postgres",
    "mysql",
    "mariadb",
    "duckdb",
    "snowflake",
    "bigquery",
    "redshift",
    "databricks",
)


def family(kind: str) -> str:
    """Map a dialect name as hooks report it ("postgresql", "mysql", "bigquery", ...) to its type family."""
    kind = kind.lower()
    for name in ("bigquery", "databricks", "redshift", "mysql", "postgres", "sqlite", "duckdb", "snowflake"):
        if kind.startswith(name):
            return name
    if kind.startswith("mariadb"):
        return "mysql"
    if kind.startswith("spark"):
        return "databricks"
    return "default"


def column_type(kind: str, name: str) -> str:
    """Return the declared type of ledger column ``name`` in dialect ``kind``."""
    types = _TYPES.get(family(kind), _TYPES["default"])
    _, generic, width, _ = next(c for c in LEDGER_COLUMNS if c[0] == name)
    return types[generic].format(n=width)


def _plain(name: str) -> str:
    return name


def ledger_ddl(
    kind: str, table: str, *, primary_key: bool | None = None, quote: Callable[[str], str] = _plain
) -> str:
    """
    ``CREATE TABLE IF NOT EXISTS`` for the ledger.

    ``primary_key`` None: declared where enforced. ``table`` comes quoted; ``quote`` quotes a column
    name the hook's way.
    """
    if primary_key is None:
        primary_key = family(kind) in ENFORCES_KEYS or kind.lower().startswith("mariadb")
    columns = []
    for name, _, _, not_null in LEDGER_COLUMNS:
        spec = f"{quote(name)} {column_type(kind, name)}"
        if not_null:
            spec += " NOT NULL"
        if name == "row_key" and primary_key:
            spec += " PRIMARY KEY"
        columns.append(spec)
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(columns)})"


def lock_table_name(table: str) -> str:
    """Return the lease table of a ledger: its name with ``_lock`` (inside the quotes of a quoted part)."""
    head, _, last = table.rpartition(".")
    quoted = re.fullmatch(r'(["`\[])(.*)(["`\]])', last)
    last = f"{quoted.group(1)}{quoted.group(2)}_lock{quoted.group(3)}" if quoted else f"{last}_lock"
    return f"{head}.{last}" if head else last


#: the text type of the owner column in a CAST, per dialect family
_OWNER_CAST = {"bigquery": "STRING", "databricks": "STRING"}


def lease_ddl(kind: str, table: str, quote: Callable[[str], str] = _plain) -> str:
    """Return the DDL of the lock table with its one (free) row, in one statement."""
    fence, owner, expires = quote("fence"), quote("owner"), quote("expires_at")
    if family(kind) == "mysql":  # its CAST knows no VARCHAR/BIGINT; it takes column types before SELECT
        return (
            f"CREATE TABLE {table} ({fence} BIGINT NOT NULL, {owner} VARCHAR(255) NOT NULL, "
            f"{expires} BIGINT NOT NULL) SELECT 0 AS {fence}, '' AS {owner}, 0 AS {expires}"
        )
    text = _OWNER_CAST.get(family(kind), "VARCHAR(255)")
    return (
        f"CREATE TABLE {table} AS SELECT CAST(0 AS BIGINT) AS {fence}, "
        f"CAST('' AS {text}) AS {owner}, CAST(0 AS BIGINT) AS {expires}"
    )


def main(argv: list[str]) -> int:
    if not argv or argv[0].lower() not in DIALECTS:
        print(f"usage: python -m airflow_provider_gong.sync.ddl <{'|'.join(DIALECTS)}> [ledger_table]")
        return 2
    kind, table = argv[0].lower(), argv[1] if len(argv) > 1 else DEFAULT_LEDGER_TABLE
    print(ledger_ddl(kind, table) + ";")
    print(lease_ddl(kind, lock_table_name(table)) + ";")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
