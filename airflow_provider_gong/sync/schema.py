"""
The ledger table made if absent, and an older ledger migrated in place, on any warehouse.

Runners may race to do it: each step checks whether a concurrent runner did it first (see
:meth:`~airflow_provider_gong.sync.connection.LedgerConnection.ddl`). Types: ``sync/ddl.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from airflow_provider_gong.sync.connection import LedgerConnection
from airflow_provider_gong.sync.ddl import column_type, ledger_ddl

log = logging.getLogger(__name__)

# 0.1.0 declared these VARCHAR(32/2048/128); Gong's answers are kept whole since 0.2.0.
_WIDENED = ("meeting_id", "meeting_url", "request_id")
# Columns added after 0.1.0: added in place to an older ledger on first use (types: sync/ddl.py).
ADDED = (
    "claimed_by",
    "fingerprint",  # sha256 of the meeting as Gong last accepted it
    "organizer_email",  # who owns it in Gong (a DELETE needs it)
    "end_time",  # UTC ISO-8601: is the meeting over? (rows gone from the source too)
    "action",  # what a pending claim is doing: create, update, delete, replace
    "source_fingerprint",  # digest of the row as read (see sync/change.py): unchanged rows skip validation
)


def table_columns(db: LedgerConnection, table: str) -> set[str] | None:
    """Lower-case column names, or None when the table does not exist."""
    try:
        names, _, _ = db.execute(f"SELECT * FROM {table} WHERE 1 = 0")
    except Exception:
        db.rollback()
        return None
    db.rollback()
    return {n.lower() for n in names}


def ensure_ledger(db: LedgerConnection, table: str, name: str, cols: Mapping[str, str]) -> set[str]:
    """
    Create ``table`` (quoted; ``name`` as the user wrote it) or add what an older ledger lacks.

    Returns its columns, so nobody needs to read them again (a round trip saved).
    """
    columns = table_columns(db, table)
    if columns is None:
        ddl = ledger_ddl(db.kind, table, quote=lambda column: cols[column])
        db.ddl(ddl, done=lambda: table_columns(db, table) is not None)
        columns = table_columns(db, table) or set()
    missing = [column for column in ADDED if column not in columns]
    if missing:
        log.info("Migrating ledger %s: adding column(s) %s", name, ", ".join(missing))
    for column in missing:

        def added(column: str = column) -> bool:  # a def, not a lambda: mypy cannot type a lambda's default
            return column in (table_columns(db, table) or set())

        kind = column_type(db.kind, column)
        db.ddl(f"ALTER TABLE {table} ADD COLUMN {cols[column]} {kind}", done=added)
    if "claimed_by" in missing:  # a 0.1.0 ledger: its ID/URL columns were too narrow
        _widen(db, table, cols)
    return columns | set(missing)


def _widen(db: LedgerConnection, table: str, cols: Mapping[str, str]) -> None:
    if db.kind.startswith("postgres"):
        clauses = ", ".join(f"ALTER COLUMN {cols[n]} TYPE TEXT" for n in _WIDENED)
    elif db.kind.startswith(("mysql", "mariadb")):
        clauses = ", ".join(f"MODIFY {cols[n]} TEXT" for n in _WIDENED)
    else:
        return  # SQLite does not enforce VARCHAR lengths; other dialects keep 0.1.0's sizes
    db.ddl(f"ALTER TABLE {table} {clauses}", done=lambda: False)
