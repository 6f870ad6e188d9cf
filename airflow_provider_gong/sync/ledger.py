"""The results ledger: one row per source key, in the warehouse, and the claims that make a batch
exactly-once.

Every write to a row happens under a **claim**: an atomic state change only one runner can win.

- a new key is claimed by INSERTing it (the primary key lets one runner in);
- a failed key is claimed by ``UPDATE ... WHERE row_key = ? AND status = 'failed' AND attempts = ?``
  (the attempt counter defeats ABA: a row failed again in between has another count);
- the winner is told by the rowcount, or, where a driver reports none, by reading back its own claim
  token (``claimed_by``).

A claim is committed before Gong is called, so whatever happens next, at most the claimed rows are
left ``pending`` ("outcome unknown"), and nothing re-sends a pending row on its own. Outcomes are
written under the same token. Failed writes are retried; a write that still fails raises
:class:`LedgerWriteError`, and the caller reports what it was about to write.

The batch claims windows of rows in one statement (:meth:`ResultsLedger.claim_many`) and writes a
window's outcomes in one statement (:meth:`ResultsLedger.record_many`), on the ledger's own thread,
while it calls Gong (see ``sync/pipeline.py``); the single-row methods remain for everything else.

Plain DB-API with the hook's placeholder and identifier quoting, so it runs on any common-sql
connection that reports rowcount (or lets a row be read back).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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
F = TypeVar("F", bound=Callable[..., Any])

PENDING, CREATED, FAILED, DELETED = "pending", "created", "failed", "deleted"
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
    "fingerprint",
    "organizer_email",
    "end_time",
    "action",
)
# 0.1.0 declared these VARCHAR(32/2048/128); Gong's answers are kept whole since 0.2.0.
_WIDENED = ("meeting_id", "meeting_url", "request_id")
# Columns added after 0.1.0, with their types: added in place to an older ledger on first use.
_ADDED = {
    "claimed_by": "VARCHAR(255)",
    "fingerprint": "VARCHAR(64)",  # sha256 of the meeting as Gong last accepted it
    "organizer_email": "TEXT",  # who owns it in Gong (a DELETE needs it)
    "end_time": "VARCHAR(40)",  # UTC ISO-8601: is the meeting over? (rows gone from the source too)
    "action": "VARCHAR(16)",  # what a pending claim is doing: create, update, delete, replace
}
_ENTRY_COLUMNS = (
    "row_key",
    "status",
    "error_kind",
    "attempts",
    "claimed_by",
    "updated_at",
    "meeting_id",
    "organizer_email",
    "fingerprint",
    "end_time",
    "action",
    "error",
)


@dataclass(frozen=True)
class MeetingState:
    """What the ledger keeps of a meeting as Gong last accepted it, to tell later what changed."""

    fingerprint: str
    organizer_email: str
    end_time: str

    def columns(self) -> dict[str, str]:
        return {
            "fingerprint": self.fingerprint,
            "organizer_email": self.organizer_email,
            "end_time": self.end_time,
        }


class LedgerWriteError(Exception):
    """A ledger statement still failed after its retries."""


@dataclass(frozen=True)
class LedgerEntry:
    status: str
    error_kind: str | None
    attempts: int
    claimed_by: str | None = None
    updated_at: str | None = None
    meeting_id: str | None = None
    organizer_email: str | None = None
    fingerprint: str | None = None
    end_time: str | None = None
    action: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class ClaimRequest:
    """A claim the batch will ask for: ``key``, last seen as ``entry``, for one attempt of ``action``."""

    key: str
    entry: LedgerEntry | None
    action: str

    @property
    def attempts(self) -> int:
        """The attempt count the row carries once claimed."""
        return (self.entry.attempts if self.entry else 0) + 1


# -- outcomes: the values each kind of result writes (under the row's claim) -----------------------


def created_values(result: MeetingResult, state: MeetingState | None = None) -> dict[str, Any]:
    return {
        "status": CREATED,
        "meeting_id": result.meeting_id,
        "meeting_url": result.meeting_url,
        "request_id": result.request_id,
        "additional_invitees": json.dumps(result.additional_invitees),
        "error": None,
        "error_kind": None,
        "action": None,
        **(state.columns() if state else {}),
    }


def updated_values(state: MeetingState, request_id: str | None) -> dict[str, Any]:
    """Gong accepted the new version (PUT): the row is ``created`` with the new fingerprint."""
    values = {"status": CREATED, "error": None, "error_kind": None, "action": None}
    return {**values, "request_id": request_id, **state.columns()}


def deleted_values() -> dict[str, Any]:
    return {"status": DELETED, "error": None, "error_kind": None, "action": None}


def reverted_values(error: str, kind: str) -> dict[str, Any]:
    """An update or delete did not happen (or may not have): the row is ``created`` again as it was,
    with the error, so the next run tries again (PUT and DELETE are safe to repeat)."""
    return {"status": CREATED, "error": error, "error_kind": kind, "action": None}


def failed_values(error: str, kind: str) -> dict[str, Any]:
    return {"status": FAILED, "error": error, "error_kind": kind}


def unknown_values(error: str, request_id: str | None) -> dict[str, Any]:
    """Leave the row pending but say why: the create may have happened."""
    return {"status": PENDING, "error": error, "error_kind": UNKNOWN, "request_id": request_id}


def _in_worker(method: F) -> F:
    """Run the method on the ledger's own thread (and wait for it).

    The connection is made and used only there: some drivers (sqlite3) refuse a connection from another
    thread, and one thread also lets the batch hand writes over and go on calling Gong meanwhile.
    """

    @functools.wraps(method)
    def wrapper(self: ResultsLedger, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is self._thread:
            return method(self, *args, **kwargs)
        return self._worker.submit(method, self, *args, **kwargs).result()

    return wrapper  # type: ignore[return-value]  # it takes and returns what `method` does


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
        self._known: set[str] | None = None  # the table's columns, once read
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gong-ledger")
        self._thread: threading.Thread = self._worker.submit(threading.current_thread).result()
        self.conn: Any = self._worker.submit(hook.get_conn).result()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``fn(*args)`` on the ledger's thread; steps run one at a time, in the order queued."""
        return self._worker.submit(fn, *args)

    def close(self) -> None:
        def close_conn() -> None:
            with contextlib.suppress(Exception):
                self.conn.close()

        with contextlib.suppress(RuntimeError):  # already shut down
            self._worker.submit(close_conn).result()
        self._worker.shutdown(wait=True)

    # -- schema -----------------------------------------------------------------------------------

    @_in_worker
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
                + ", ".join(f"{c[name]} {kind}" for name, kind in _ADDED.items())
                + ")"
            )
            self._ddl(ddl, done=lambda: self._columns() is not None)
        columns = self._columns() or set()
        missing = [name for name in _ADDED if name not in columns]
        if missing:
            log.info("Migrating ledger %s: adding column(s) %s", self.table_name, ", ".join(missing))
        for name in missing:

            def added(name: str = name) -> bool:  # a def, not a lambda: mypy cannot type a lambda's default
                return name in (self._columns() or set())

            self._ddl(f"ALTER TABLE {self.table} ADD COLUMN {c[name]} {_ADDED[name]}", done=added)
        if "claimed_by" in missing:  # a 0.1.0 ledger: its ID/URL columns were too narrow
            self._widen()
        self._known = columns | set(missing)  # no need to read it again: a round trip saved

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

    @_in_worker
    def lookup(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of these keys (one query; callers pass one page of keys)."""
        if not keys:
            return {}
        if self._known is None:
            self._known = self._columns()
        if self._known is None:
            return {}  # no ledger yet (a dry run does not create it)
        names = [n for n in _ENTRY_COLUMNS if n in self._known]
        marks = ", ".join([self.ph] * len(keys))
        sql = (
            f"SELECT {', '.join(self._cols[n] for n in names)} FROM {self.table} "
            f"WHERE {self._cols['row_key']} IN ({marks})"
        )
        rows = self._retry(lambda: self._read(sql, tuple(keys)))
        entries = {}
        for row in rows:
            values = dict(zip(names, row, strict=True))
            key = str(values.pop("row_key"))
            values["attempts"] = int(values.get("attempts") or 0)
            if values.get("meeting_id") is not None:
                values["meeting_id"] = str(values["meeting_id"])
            entries[key] = LedgerEntry(**values)
        return entries

    @_in_worker
    def exists(self) -> bool:
        return self._columns() is not None

    @_in_worker
    def count_live(self) -> int:
        """Rows with a live meeting (status ``created``); 0 when there is no ledger yet."""
        if not self.exists():
            return 0
        sql = f"SELECT COUNT(*) FROM {self.table} WHERE {self._cols['status']} = {self.ph}"
        return int(self._retry(lambda: self._read(sql, (CREATED,)))[0][0])

    def get(self, key: str) -> LedgerEntry | None:
        return self.lookup([key]).get(key)

    @_in_worker
    def read_all(self) -> list[dict[str, Any]]:
        """The whole ledger, for reports and tests (not used by the batch itself)."""
        cols = ", ".join(self._cols[c] for c in COLUMNS)
        rows = self._read(f"SELECT {cols} FROM {self.table} ORDER BY {self._cols['row_key']}", ())
        return [dict(zip(COLUMNS, row, strict=True)) for row in rows]

    # -- claims -----------------------------------------------------------------------------------

    @_in_worker
    def claim(self, key: str, entry: LedgerEntry | None, action: str = "create") -> bool:
        """Try to claim ``key`` (last seen as ``entry``) for one attempt of ``action``. True: this
        runner won and the claim is committed; False: another runner changed the row first."""
        attempts = (entry.attempts if entry else 0) + 1
        return self._retry(lambda: self._claim_once(key, entry, attempts, action))

    def _claim_once(self, key: str, entry: LedgerEntry | None, attempts: int, action: str) -> bool:
        c = self._cols
        values = {"status": PENDING, "error": None, "error_kind": None, "attempts": attempts}
        values.update(claimed_by=self.owner, updated_at=_now(), action=action)
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

    def record_created(self, key: str, result: MeetingResult, state: MeetingState | None = None) -> bool:
        """Write a created meeting under this runner's claim. False when the row is no longer this
        runner's (someone reconciled it by hand meanwhile)."""
        return self._record(key, created_values(result, state))

    def record_updated(self, key: str, state: MeetingState, request_id: str | None) -> bool:
        return self._record(key, updated_values(state, request_id))

    def record_deleted(self, key: str) -> bool:
        return self._record(key, deleted_values())

    def record_reverted(self, key: str, error: str, kind: str) -> bool:
        return self._record(key, reverted_values(error, kind))

    def record_failed(self, key: str, error: str, kind: str) -> bool:
        return self._record(key, failed_values(error, kind))

    def record_unknown(self, key: str, error: str, request_id: str | None) -> bool:
        return self._record(key, unknown_values(error, request_id))

    @_in_worker
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

    # -- windows: many rows per statement (see sync/pipeline.py) ----------------------------------------

    @_in_worker
    def claim_many(self, requests: Sequence[ClaimRequest]) -> dict[str, bool]:
        """Claim a window of rows in one transaction: one INSERT for the new keys, one conditional
        UPDATE for the rest. Which rows were won is told by the rowcount, or by reading the tokens
        back. When the window cannot go through whole (a key another runner inserted first, a lock),
        it is rolled back and each row is claimed on its own, as :meth:`claim` does."""
        if not requests:
            return {}
        try:
            return self._claim_window(requests)
        except Exception as exc:
            self._rollback()
            log.debug("Ledger %s: window claim fell back to row claims: %s", self.table_name, exc)
        current = self.lookup([r.key for r in requests])  # retried inside
        won = {}
        for request in requests:
            now = current.get(request.key)
            if now is not None and self._is_mine(now, request.attempts):
                won[request.key] = True  # our window's commit landed before its error
            else:
                won[request.key] = self.claim(request.key, request.entry, request.action)
        return won

    def _claim_window(self, requests: Sequence[ClaimRequest]) -> dict[str, bool]:
        c, ph, now = self._cols, self.ph, _now()
        new = [r for r in requests if r.entry is None]
        old = [r for r in requests if r.entry is not None]
        won: dict[str, bool] = {}
        if new:
            names = ("row_key", "status", "attempts", "claimed_by", "updated_at", "action")
            marks = "(" + ", ".join([ph] * len(names)) + ")"
            params = [v for r in new for v in (r.key, PENDING, 1, self.owner, now, r.action)]
            execute(
                self.conn,
                f"INSERT INTO {self.table} ({', '.join(c[n] for n in names)}) "
                f"VALUES {', '.join([marks] * len(new))}",
                tuple(params),
            )
            won.update((r.key, True) for r in new)
        rowcount = 0
        if old:
            cases = " ".join(f"WHEN {ph} THEN {ph}" for _ in old)
            matches = " OR ".join(
                f"({c['row_key']} = {ph} AND {c['status']} = {ph} AND {c['attempts']} = {ph})" for _ in old
            )
            sql = (
                f"UPDATE {self.table} SET {c['status']} = {ph}, {c['error']} = NULL, "
                f"{c['error_kind']} = NULL, {c['attempts']} = {c['attempts']} + 1, "
                f"{c['claimed_by']} = {ph}, {c['updated_at']} = {ph}, "
                f"{c['action']} = CASE {c['row_key']} {cases} END "
                f"WHERE {c['row_key']} IN ({', '.join([ph] * len(old))}) AND ({matches})"
            )
            params = [PENDING, self.owner, now]
            params += [v for r in old for v in (r.key, r.action)]
            params += [r.key for r in old]
            # every entry in `old` is set (filtered above); mypy cannot carry that through the list
            params += [v for r in old for v in (r.key, r.entry.status, r.entry.attempts)]  # type: ignore[union-attr]
            _, _, rowcount = execute(self.conn, sql, tuple(params))
        self.conn.commit()
        if old and rowcount == len(old):
            won.update((r.key, True) for r in old)
        elif old:  # some lost, or the driver does not say: read the tokens back
            current = self.lookup([r.key for r in old])
            for r in old:
                now_entry = current.get(r.key)
                won[r.key] = now_entry is not None and self._is_mine(now_entry, r.attempts)
        return won

    @_in_worker
    def record_many(self, outcomes: Sequence[tuple[str, dict[str, Any]]]) -> set[str]:
        """Write many rows' outcomes in one UPDATE (a CASE per column), each under this runner's claim.
        Returns the keys that were *not* written (no longer this runner's)."""
        if not outcomes:
            return set()
        if len(outcomes) == 1:
            key, values = outcomes[0]
            return set() if self._record(key, values) else {key}
        c, ph = self._cols, self.ph
        keys = [key for key, _ in outcomes]
        names = [n for n in COLUMNS if any(n in values for _, values in outcomes)]
        sets, params = [], []
        for name in names:
            rows = [(key, values[name]) for key, values in outcomes if name in values]
            sets.append(
                f"{c[name]} = CASE {c['row_key']} "
                + " ".join(f"WHEN {ph} THEN {ph}" for _ in rows)
                + f" ELSE {c[name]} END"
            )
            params += [v for row in rows for v in row]
        sets.append(f"{c['updated_at']} = {ph}")
        params.append(_now())
        sql = (
            f"UPDATE {self.table} SET {', '.join(sets)} "
            f"WHERE {c['row_key']} IN ({', '.join([ph] * len(keys))}) AND {c['claimed_by']} = {ph}"
        )
        params += [*keys, self.owner]
        owned_sql = (
            f"SELECT {c['row_key']} FROM {self.table} "
            f"WHERE {c['row_key']} IN ({', '.join([ph] * len(keys))}) AND {c['claimed_by']} = {ph}"
        )

        def once() -> set[str]:
            _, _, rowcount = execute(self.conn, sql, tuple(params))
            self.conn.commit()
            if rowcount == len(keys):
                return set()
            owned = {str(row[0]) for row in self._read(owned_sql, (*keys, self.owner))}
            return set(keys) - owned

        return self._retry(once)

    @_in_worker
    def release(self, requests: Sequence[ClaimRequest]) -> None:
        """Undo claims this runner won but never acted on (the run stopped first): a new key's row goes
        away, an existing row gets back the status and error it had. Nothing was sent for these rows,
        so they are safe to hand back; the attempt counter stays raised, which only makes it monotonic."""
        c, ph = self._cols, self.ph
        mine = f"{c['row_key']} = {ph} AND {c['claimed_by']} = {ph} AND {c['status']} = {ph}"

        def once() -> None:
            for r in requests:
                if r.entry is None:
                    execute(self.conn, f"DELETE FROM {self.table} WHERE {mine}", (r.key, self.owner, PENDING))
                else:
                    values = {
                        "status": r.entry.status,
                        "error": r.entry.error,
                        "error_kind": r.entry.error_kind,
                        "action": r.entry.action,
                    }
                    execute(
                        self.conn,
                        f"UPDATE {self.table} SET {self._assignments(values)} WHERE {mine}",
                        (*values.values(), r.key, self.owner, PENDING),
                    )
            self.conn.commit()

        if requests:
            self._retry(once)

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
