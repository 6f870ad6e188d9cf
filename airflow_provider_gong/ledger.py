"""The results ledger: one row per source row key, written in the warehouse, that makes a batch
exactly-once.

A row is marked ``pending`` (and committed) *before* its create call and ``created`` / ``failed``
(and committed) right after. A task killed in between leaves at most that one row ``pending``; a
rerun never re-posts a pending row on its own, because its meeting may exist.

Plain DB-API with the hook's placeholder and identifier quoting, so it runs on any common-sql
connection (SQLite, PostgreSQL, MySQL, Snowflake, ...). Identifiers are validated before they are
quoted; values always travel as bind parameters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pendulum

from airflow_provider_gong.exceptions import GongValidationError

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_provider_gong.meetings import MeetingResult

PENDING, CREATED, FAILED = "pending", "created", "failed"
PERMANENT, TRANSIENT, UNKNOWN = "permanent", "transient", "unknown"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,127}$")
COLUMNS = (
    "row_key",
    "status",
    "meeting_id",
    "meeting_url",
    "request_id",
    "additional_invitees",
    "error",
    "error_kind",
    "attempts",
    "updated_at",
)


def quote_identifier(hook: DbApiHook, name: str, *, what: str = "identifier") -> str:
    """Validate ``name`` (optionally ``schema.table``) and quote each part the hook's way."""
    parts = str(name).split(".")
    if not name or len(parts) > 3 or not all(_IDENTIFIER.match(p) for p in parts):
        raise GongValidationError(
            f"{what} {name!r} is not a plain SQL identifier (letters, digits, _ ; optionally schema.table)"
        )
    fmt = getattr(hook, "escape_word_format", None) or '"{}"'
    return ".".join(fmt.format(p) for p in parts)


@dataclass(frozen=True)
class LedgerEntry:
    status: str
    error_kind: str | None
    attempts: int


class ResultsLedger:
    """Reads and writes the ledger table through one open DB-API connection."""

    def __init__(self, hook: DbApiHook, conn: Any, table: str) -> None:
        self.hook = hook
        self.conn = conn
        self.table_name = table
        self.table = quote_identifier(hook, table, what="ledger_table")
        self.ph = hook.placeholder
        self._cols = {c: quote_identifier(hook, c) for c in COLUMNS}

    def ensure_table(self) -> None:
        c = self._cols
        ddl = (
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            f"{c['row_key']} VARCHAR(255) NOT NULL PRIMARY KEY, "
            f"{c['status']} VARCHAR(16) NOT NULL, "
            f"{c['meeting_id']} VARCHAR(32), "
            f"{c['meeting_url']} VARCHAR(2048), "
            f"{c['request_id']} VARCHAR(128), "
            f"{c['additional_invitees']} TEXT, "
            f"{c['error']} TEXT, "
            f"{c['error_kind']} VARCHAR(16), "
            f"{c['attempts']} INTEGER NOT NULL, "
            f"{c['updated_at']} VARCHAR(40) NOT NULL)"
        )
        self._execute(ddl)
        self.conn.commit()

    def lookup(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """The ledger entries of these keys (one query per call; callers pass one page of keys)."""
        if not keys:
            return {}
        c = self._cols
        marks = ", ".join([self.ph] * len(keys))
        sql = (
            f"SELECT {c['row_key']}, {c['status']}, {c['error_kind']}, {c['attempts']} "
            f"FROM {self.table} WHERE {c['row_key']} IN ({marks})"
        )
        cur = self.conn.cursor()
        try:
            cur.execute(sql, tuple(keys))
            rows = cur.fetchall()
        finally:
            cur.close()
        return {str(k): LedgerEntry(status, kind, int(attempts or 0)) for k, status, kind, attempts in rows}

    def mark_pending(self, key: str, previous: LedgerEntry | None) -> int:
        """Record the attempt *before* the create call and commit. Returns the attempt number."""
        attempts = (previous.attempts if previous else 0) + 1
        values = {"status": PENDING, "error": None, "error_kind": None, "attempts": attempts}
        self._write(key, values, exists=previous is not None)
        return attempts

    def mark_created(self, key: str, result: MeetingResult) -> None:
        values = {
            "status": CREATED,
            "meeting_id": result.meeting_id,
            "meeting_url": result.meeting_url,
            "request_id": result.request_id,
            "additional_invitees": json.dumps(result.additional_invitees),
            "error": None,
            "error_kind": None,
        }
        self._write(key, values, exists=True)

    def mark_failed(
        self, key: str, error: str, kind: str, *, exists: bool, attempts: int | None = None
    ) -> None:
        values: dict[str, Any] = {"status": FAILED, "error": error, "error_kind": kind}
        if attempts is not None:
            values["attempts"] = attempts
        self._write(key, values, exists=exists)

    def mark_unknown(self, key: str, error: str, request_id: str | None) -> None:
        """Leave the row pending but say why: the create may have happened."""
        values = {"status": PENDING, "error": error, "error_kind": UNKNOWN, "request_id": request_id}
        self._write(key, values, exists=True)

    def read_all(self) -> list[dict[str, Any]]:
        """The whole ledger, for reports and tests (not used by the batch itself)."""
        cols = ", ".join(self._cols[c] for c in COLUMNS)
        cur = self.conn.cursor()
        try:
            cur.execute(f"SELECT {cols} FROM {self.table} ORDER BY {self._cols['row_key']}")
            return [dict(zip(COLUMNS, row, strict=True)) for row in cur.fetchall()]
        finally:
            cur.close()

    def _write(self, key: str, values: dict[str, Any], *, exists: bool) -> None:
        values = {**values, "updated_at": pendulum.now("UTC").isoformat()}
        if exists:
            assignments = ", ".join(f"{self._cols[k]} = {self.ph}" for k in values)
            sql = f"UPDATE {self.table} SET {assignments} WHERE {self._cols['row_key']} = {self.ph}"
            params: Iterable[Any] = (*values.values(), key)
        else:
            values = {"row_key": key, "attempts": 0, **values}
            names = ", ".join(self._cols[k] for k in values)
            marks = ", ".join([self.ph] * len(values))
            sql = f"INSERT INTO {self.table} ({names}) VALUES ({marks})"
            params = tuple(values.values())
        self._execute(sql, tuple(params))
        self.conn.commit()

    def _execute(self, sql: str, params: tuple[Any, ...] | None = None) -> None:
        cur = self.conn.cursor()
        try:
            if params is None:
                cur.execute(sql)
            else:
                cur.execute(sql, params)
        finally:
            cur.close()
