"""The results ledger: one row per source key, in the warehouse, and the claims that make a batch
exactly-once.

Every write to a row happens under a **claim**: an atomic state change only one runner can win.

- a new key is claimed by INSERTing it (the primary key lets one runner in);
- a failed key is claimed by ``UPDATE ... WHERE row_key = ? AND status = 'failed' AND attempts = ?``
  (the attempt counter defeats ABA: a row failed again in between has another count);
- the winner is told by the rowcount, or, where a driver reports none, by reading back its own claim
  token (``claimed_by``).

A claim is committed before Gong is called, so whatever happens next, at most the claimed row is
left ``pending`` ("outcome unknown"), and nothing re-sends a pending row on its own. Outcomes are
written under the same token. Failed writes are retried; a write that still fails raises
:class:`LedgerWriteError`, and the caller reports what it was about to write.

Plain DB-API with the hook's placeholder and identifier quoting, so it runs on any common-sql
connection that reports rowcount (or lets a row be read back).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pendulum
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from airflow_provider_gong.sync.sql import dialect, execute, quote_identifier

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_provider_gong.meetings import MeetingResult

log = logging.getLogger(__name__)
T = TypeVar("T")

PENDING, CREATED, FAILED = "pending", "created", "failed"
PERMANENT, TRANSIENT, UNKNOWN = "permanent", "transient", "unknown"
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
    "claimed_by",
)
# 0.1.0 declared these VARCHAR(32/2048/128); Gong's answers are kept whole since 0.2.0.
_WIDENED = ("meeting_id", "meeting_url", "request_id")


class LedgerWriteError(Exception):
    """A ledger statement still failed after its retries."""


@dataclass(frozen=True)
class LedgerEntry:
    status: str
    error_kind: str | None
    attempts: int
    claimed_by: str | None = None
    updated_at: str | None = None


class ResultsLedger:
    """The ledger table, through its own DB-API connection.

    :param owner: this runner's claim token; unique per run (see the operator).
    :param write_attempts: tries per statement before :class:`LedgerWriteError`.
    """

    def __init__(
        self,
        hook: DbApiHook,
        table: str,
        *,
        owner: str,
        write_attempts: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.hook = hook
        self.table_name = table
        self.table = quote_identifier(hook, table, what="ledger_table")
        self.owner = owner[:255]
        self.ph = hook.placeholder
        self._cols = {c: quote_identifier(hook, c) for c in COLUMNS}
        self._write_attempts = write_attempts
        self._sleep = sleep
        self.conn: Any = hook.get_conn()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    # -- schema -----------------------------------------------------------------------------------

    def ensure_table(self) -> None:
        """Create the table if absent and migrate a 0.1.0 table; safe when runners race to do it."""
        c = self._cols
        if self._columns() is None:
            ddl = (
                f"CREATE TABLE IF NOT EXISTS {self.table} ("
                f"{c['row_key']} VARCHAR(255) NOT NULL PRIMARY KEY, "
                f"{c['status']} VARCHAR(16) NOT NULL, "
                f"{c['meeting_id']} TEXT, "
                f"{c['meeting_url']} TEXT, "
                f"{c['request_id']} TEXT, "
                f"{c['additional_invitees']} TEXT, "
                f"{c['error']} TEXT, "
                f"{c['error_kind']} VARCHAR(16), "
                f"{c['attempts']} INTEGER NOT NULL, "
                f"{c['updated_at']} VARCHAR(40) NOT NULL, "
                f"{c['claimed_by']} VARCHAR(255))"
            )
            self._ddl(ddl, done=lambda: self._columns() is not None)
        columns = self._columns() or set()
        if "claimed_by" not in columns:  # a 0.1.0 ledger
            log.info("Migrating ledger %s to the 0.2.0 layout (claimed_by, unbounded IDs)", self.table_name)
            self._ddl(
                f"ALTER TABLE {self.table} ADD COLUMN {c['claimed_by']} VARCHAR(255)",
                done=lambda: "claimed_by" in (self._columns() or set()),
            )
            self._widen()

    def _widen(self) -> None:
        kind = dialect(self.hook)
        if kind.startswith("postgres"):
            clauses = ", ".join(f"ALTER COLUMN {self._cols[n]} TYPE TEXT" for n in _WIDENED)
        elif kind.startswith(("mysql", "mariadb")):
            clauses = ", ".join(f"MODIFY {self._cols[n]} TEXT" for n in _WIDENED)
        else:
            return  # SQLite does not enforce VARCHAR lengths; other dialects keep 0.1.0's sizes
        self._ddl(f"ALTER TABLE {self.table} {clauses}", done=lambda: False)

    def _ddl(self, sql: str, *, done: Callable[[], bool]) -> None:
        """Run DDL; if it fails because a concurrent runner did the same first, that is success."""
        try:
            execute(self.conn, sql)
            self.conn.commit()
        except Exception:
            self._rollback()
            if not done():
                raise

    def _columns(self) -> set[str] | None:
        """Lower-case column names, or None when the table does not exist."""
        try:
            names, _, _ = execute(self.conn, f"SELECT * FROM {self.table} WHERE 1 = 0")
        except Exception:
            self._rollback()
            return None
        self._rollback()
        return {n.lower() for n in names}

    # -- reads ------------------------------------------------------------------------------------

    def lookup(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of these keys (one query; callers pass one page of keys)."""
        if not keys:
            return {}
        c = self._cols
        marks = ", ".join([self.ph] * len(keys))
        sql = (
            f"SELECT {c['row_key']}, {c['status']}, {c['error_kind']}, {c['attempts']}, "
            f"{c['claimed_by']}, {c['updated_at']} FROM {self.table} WHERE {c['row_key']} IN ({marks})"
        )
        rows = self._retry(lambda: self._read(sql, tuple(keys)))
        return {
            str(k): LedgerEntry(status, kind, int(attempts or 0), owner, updated)
            for k, status, kind, attempts, owner, updated in rows
        }

    def get(self, key: str) -> LedgerEntry | None:
        return self.lookup([key]).get(key)

    def read_all(self) -> list[dict[str, Any]]:
        """The whole ledger, for reports and tests (not used by the batch itself)."""
        cols = ", ".join(self._cols[c] for c in COLUMNS)
        rows = self._read(f"SELECT {cols} FROM {self.table} ORDER BY {self._cols['row_key']}", ())
        return [dict(zip(COLUMNS, row, strict=True)) for row in rows]

    # -- claims -----------------------------------------------------------------------------------

    def claim(self, key: str, entry: LedgerEntry | None) -> bool:
        """Try to claim ``key`` (last seen as ``entry``) for one attempt. True: this runner won and
        the claim is committed; False: another runner changed the row first."""
        attempts = (entry.attempts if entry else 0) + 1
        return self._retry(lambda: self._claim_once(key, entry, attempts))

    def _claim_once(self, key: str, entry: LedgerEntry | None, attempts: int) -> bool:
        c = self._cols
        values = {"status": PENDING, "error": None, "error_kind": None, "attempts": attempts}
        values.update(claimed_by=self.owner, updated_at=_now())
        if entry is None:
            row = {"row_key": key, **values}
            sql = (
                f"INSERT INTO {self.table} ({', '.join(c[k] for k in row)}) "
                f"VALUES ({', '.join([self.ph] * len(row))})"
            )
            try:
                execute(self.conn, sql, tuple(row.values()))
                self.conn.commit()
                return True
            except Exception:
                self._rollback()
                now = self.get(key)
                if now is None:
                    raise  # not a lost race: a real failure (retried by _retry)
                return self._is_mine(now, attempts)  # our own commit may have landed before it failed
        sql = (
            f"UPDATE {self.table} SET {self._assignments(values)} WHERE {c['row_key']} = {self.ph} "
            f"AND {c['status']} = {self.ph} AND {c['attempts']} = {self.ph}"
        )
        try:
            _, _, rowcount = execute(self.conn, sql, (*values.values(), key, entry.status, entry.attempts))
            self.conn.commit()
        except Exception:
            self._rollback()
            now = self.get(key)
            if now is not None and self._is_mine(now, attempts):
                return True
            raise
        if rowcount >= 0:
            return rowcount == 1
        now = self.get(key)  # the driver reports no rowcount: read our token back
        return now is not None and self._is_mine(now, attempts)

    def _is_mine(self, entry: LedgerEntry, attempts: int) -> bool:
        return entry.claimed_by == self.owner and entry.status == PENDING and entry.attempts == attempts

    # -- outcomes ---------------------------------------------------------------------------------

    def record_created(self, key: str, result: MeetingResult) -> bool:
        """Write a created meeting under this runner's claim. False when the row is no longer this
        runner's (someone reconciled it by hand meanwhile)."""
        return self._record(
            key,
            {
                "status": CREATED,
                "meeting_id": result.meeting_id,
                "meeting_url": result.meeting_url,
                "request_id": result.request_id,
                "additional_invitees": json.dumps(result.additional_invitees),
                "error": None,
                "error_kind": None,
            },
        )

    def record_failed(self, key: str, error: str, kind: str) -> bool:
        return self._record(key, {"status": FAILED, "error": error, "error_kind": kind})

    def record_unknown(self, key: str, error: str, request_id: str | None) -> bool:
        """Leave the row pending but say why: the create may have happened."""
        return self._record(
            key, {"status": PENDING, "error": error, "error_kind": UNKNOWN, "request_id": request_id}
        )

    def _record(self, key: str, values: dict[str, Any]) -> bool:
        c = self._cols
        values = {**values, "updated_at": _now()}
        sql = (
            f"UPDATE {self.table} SET {self._assignments(values)} "
            f"WHERE {c['row_key']} = {self.ph} AND {c['claimed_by']} = {self.ph}"
        )

        def once() -> bool:
            _, _, rowcount = execute(self.conn, sql, (*values.values(), key, self.owner))
            self.conn.commit()
            return rowcount != 0

        return self._retry(once)

    # -- plumbing ---------------------------------------------------------------------------------

    def _assignments(self, values: dict[str, Any]) -> str:
        return ", ".join(f"{self._cols[k]} = {self.ph}" for k in values)

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            _, rows, _ = execute(self.conn, sql, params)
        finally:
            self._rollback()  # hold no snapshot or lock between statements
        return rows

    def _retry(self, fn: Callable[[], T]) -> T:
        """Run one ledger step, retrying database errors (locks, timeouts, dropped connections)."""

        def before_sleep(state: Any) -> None:
            exc = state.outcome.exception()
            log.warning(
                "Ledger %s: %s: %s; retrying (attempt %d of %d)",
                self.table_name,
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
                state.attempt_number + 1,
                self._write_attempts,
            )
            self._reconnect_if_broken()

        try:
            return Retrying(
                retry=retry_if_exception_type(Exception),
                stop=stop_after_attempt(self._write_attempts),
                wait=wait_exponential(multiplier=0.2, max=2),
                sleep=self._sleep,
                before_sleep=before_sleep,
                reraise=True,
            )(fn)
        except Exception as exc:
            raise LedgerWriteError(
                f"ledger {self.table_name}: {type(exc).__name__}: {str(exc).strip()[:300]}"
            ) from exc

    def _rollback(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.rollback()

    def _reconnect_if_broken(self) -> None:
        try:
            self.conn.rollback()
        except Exception:
            self.close()
            self.conn = self.hook.get_conn()


def _now() -> str:
    return pendulum.now("UTC").isoformat()
