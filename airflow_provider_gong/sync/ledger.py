"""The results ledger: one row per source key, in the warehouse, and the claims that make a batch
exactly-once.

Every write to a row happens under a **claim**: an atomic state change only one runner can win.

- only the holder of the ledger's **lease** claims (:mod:`~airflow_provider_gong.sync.lease`): one
  runner per ledger at a time; every claim statement carries the lease's fencing check;
- a new key is claimed by INSERTing it where it is still absent (``INSERT ... SELECT ... WHERE NOT
  EXISTS``), so nothing rests on the warehouse enforcing a primary key (Snowflake, BigQuery,
  Redshift and Databricks never do); see ``docs/design/0001-claims-without-enforced-keys.md``;
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
from tenacity import Retrying, retry_if_not_exception_type, stop_after_attempt, wait_exponential

from airflow_provider_gong.exceptions import GongLeaseLostError
from airflow_provider_gong.sync.ddl import column_type, lease_ddl, ledger_ddl, lock_table_name
from airflow_provider_gong.sync.lease import Holder, Lease
from airflow_provider_gong.sync.sql import (
    begin,
    connect,
    dialect,
    execute,
    is_alive,
    is_mysql,
    quote_identifier,
    rollback_quietly,
)

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
# Columns added after 0.1.0: added in place to an older ledger on first use (types: sync/ddl.py).
_ADDED = (
    "claimed_by",
    "fingerprint",  # sha256 of the meeting as Gong last accepted it
    "organizer_email",  # who owns it in Gong (a DELETE needs it)
    "end_time",  # UTC ISO-8601: is the meeting over? (rows gone from the source too)
    "action",  # what a pending claim is doing: create, update, delete, replace
)
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


class LedgerBusyError(Exception):
    """Another live run holds the ledger's lease."""

    def __init__(self, table: str, holder: Holder, waited: float) -> None:
        self.holder = holder
        super().__init__(
            f"ledger {table} is being worked by another run ({holder.owner}, lease until {holder.until()}); "
            f"waited {waited:.0f} s. Its rows are that run's; the next run takes over what is left."
        )


class _KeysCollide(Exception):
    """The ledger holds two keys of one claim window as one (a case-insensitive collation): not worth
    retrying as a window; each row is claimed on its own instead."""


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
        lease_seconds: float = 120.0,
    ) -> None:
        self.hook = hook
        self.table_name = table
        self.table = quote_identifier(hook, table, what="ledger_table")
        self.owner = owner[:255]
        self.ph = hook.placeholder
        self.kind = dialect(hook)
        self.lock_table = lock_table_name(self.table)
        self.lease = Lease(self.lock_table, self.owner, self.ph, self._quote, seconds=lease_seconds)
        self._seen: Holder | None = None  # the lease as ensure_table read it, for acquire's first look
        self._beating = threading.Event()
        #: keys this run could not claim because the ledger holds them under another spelling (its
        #: collation compares them equal, e.g. ``ABC`` and ``abc``): key -> the spelling it holds
        self.collisions: dict[str, str] = {}
        self._cols = {c: quote_identifier(hook, c) for c in COLUMNS}
        self._write_attempts = write_attempts
        self._sleep = sleep
        self._known: set[str] | None = None  # the table's columns, once read
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gong-ledger")
        self._thread: threading.Thread = self._worker.submit(threading.current_thread).result()
        self.conn: Any = self._worker.submit(connect, hook).result()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``fn(*args)`` on the ledger's thread; steps run one at a time, in the order queued."""
        return self._worker.submit(fn, *args)

    def close(self) -> None:
        def close_conn() -> None:
            self.release_lease()
            with contextlib.suppress(Exception):
                self.conn.close()

        with contextlib.suppress(RuntimeError):  # already shut down
            self._worker.submit(close_conn).result()
        self._worker.shutdown(wait=True)

    # -- schema -----------------------------------------------------------------------------------

    @_in_worker
    def ensure_table(self) -> None:
        """Create the table and its lease table if absent, and migrate an older ledger in place; safe
        when runners race to do it (each step checks whether a concurrent runner did it first)."""
        c = self._cols
        if self._columns() is None:
            ddl = ledger_ddl(self.kind, self.table, quote=lambda name: c[name])
            self._ddl(ddl, done=lambda: self._columns() is not None)
        columns = self._columns() or set()
        missing = [name for name in _ADDED if name not in columns]
        if missing:
            log.info("Migrating ledger %s: adding column(s) %s", self.table_name, ", ".join(missing))
        for name in missing:

            def added(name: str = name) -> bool:  # a def, not a lambda: mypy cannot type a lambda's default
                return name in (self._columns() or set())

            kind = column_type(self.kind, name)
            self._ddl(f"ALTER TABLE {self.table} ADD COLUMN {c[name]} {kind}", done=added)
        if "claimed_by" in missing:  # a 0.1.0 ledger: its ID/URL columns were too narrow
            self._widen()
        self._known = columns | set(missing)  # no need to read it again: a round trip saved
        self._ensure_lock()

    def _ensure_lock(self) -> None:
        """The lease's table: one row, made in one statement (CREATE TABLE ... AS SELECT), which
        succeeds for one caller only; a ledger made by an earlier version gets it here. Read once; the
        reading serves :meth:`acquire` too (a round trip fewer on a slow warehouse)."""
        ddl = lease_ddl(self.kind, self.lock_table, self._quote)
        try:
            self._seen = self.lease.read(self.conn)
        except Exception:  # no table yet (or not of this shape)
            if self._lock_rows() is None:
                self._ddl(ddl, done=lambda: self._lock_rows() is not None)
            try:
                self._seen = self.lease.read(self.conn)
            except Exception as exc:
                raise LedgerWriteError(
                    f"the lease table {self.lock_table} lacks the columns fence, owner, expires_at "
                    f"({type(exc).__name__}; changed by hand?); claims cannot be made safely. Drop it; the "
                    f"next run makes it again: {ddl}"
                ) from None
        if self._seen is None:
            raise LedgerWriteError(
                f"the lease table {self.lock_table} has {self._lock_rows()} rows, not 1 (changed by hand?); "
                f"claims cannot be made safely. Drop it; the next run makes it again: {ddl}"
            )

    # -- the lease ----------------------------------------------------------------------------------

    @_in_worker
    def acquire(self, wait: float) -> None:
        """Hold the ledger's lease, waiting up to ``wait`` seconds for another live run to let go;
        :class:`LedgerBusyError` when it does not. Renewed by a heartbeat until :meth:`close`."""
        started = time.monotonic()
        told = False
        while True:
            fresh = self._seen is None  # ensure_table's reading may be old by now: only trust it if free
            holder, self._seen = self._seen or self._retry(lambda: self.lease.read(self.conn)), None
            if holder is None:
                raise LedgerWriteError(f"the lease table {self.lock_table} does not have exactly one row")
            if holder.owner == self.owner and not holder.free:
                self.lease.adopt(holder)  # our acquisition landed although the driver reported an error
                break
            if holder.free:
                if self._retry(lambda h=holder: self.lease.try_acquire(self.conn, h)):  # type: ignore[misc]
                    break
                continue  # it changed since it was read (another run took it first): read it again
            if not fresh:
                continue
            waited = time.monotonic() - started
            if waited >= wait:
                raise LedgerBusyError(self.table_name, holder, waited)
            if not told:
                log.info(
                    "Ledger %s is being worked by another run (%s, lease until %s); waiting up to %.0f s",
                    self.table_name,
                    holder.owner,
                    holder.until(),
                    wait,
                )
                told = True
            self._sleep(min(2.0, max(wait - waited, 0.01)))
        if told:
            log.info(
                "Ledger %s: the lease is this run's now (after %.1f s)",
                self.table_name,
                time.monotonic() - started,
            )
        self._beating.set()
        threading.Thread(target=self._heartbeat, name="gong-ledger-lease", daemon=True).start()

    @_in_worker
    def release_lease(self) -> None:
        """Let the next run have the ledger now (else it waits until the lease expires)."""
        self._beating.clear()
        try:
            self.lease.release(self.conn)
        except Exception as exc:  # it expires on its own; the next run waits at most that long
            rollback_quietly(self.conn)
            log.warning("Could not release the lease on %s (it expires by itself): %s", self.lock_table, exc)

    def _heartbeat(self) -> None:
        """Renew the lease every quarter of its length while the run lives, whatever it is doing (a
        long wait for Gong's quota must not let it lapse)."""
        interval = self.lease.seconds / 4
        while self._beating.is_set():
            time.sleep(min(interval, 1.0))
            if not self._beating.is_set():
                return
            if self.lease.left() > self.lease.seconds - interval:
                continue  # renewed less than a quarter of the lease ago
            try:
                self.submit(self._renew).result()
            except GongLeaseLostError as exc:
                log.error("Ledger %s: %s", self.table_name, exc)
                return
            except RuntimeError:
                return  # the ledger is closed
            except Exception as exc:
                log.warning("Ledger %s: could not renew the lease (%s); trying again", self.table_name, exc)

    def _renew(self) -> None:
        begin(self.conn, self.kind)
        try:
            self.lease.renew(self.conn)
            self.conn.commit()
        except GongLeaseLostError:
            rollback_quietly(self.conn)
            self._beating.clear()
            raise
        except Exception:
            rollback_quietly(self.conn)
            raise

    def check_lease(self) -> None:
        """Before each Gong call: the lease must still be this run's by its own clock, with a quarter of
        it to spare (the margin covers the hosts' clock skew). Otherwise stop: another run may have
        taken it over."""
        if self.lease.left() < self.lease.seconds / 4:
            raise GongLeaseLostError(
                f"this run's lease on {self.lock_table} has not been renewed for "
                f"{self.lease.seconds - self.lease.left():.0f} s (of {self.lease.seconds:.0f}); another run "
                "may have taken over. Stopping before the next Gong call."
            )

    def _lock_rows(self) -> int | None:
        try:
            _, rows, _ = execute(self.conn, f"SELECT COUNT(*) FROM {self.lock_table}")
        except Exception:
            rollback_quietly(self.conn)
            return None
        rollback_quietly(self.conn)
        return int(rows[0][0])

    def _quote(self, name: str) -> str:
        return quote_identifier(self.hook, name)

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

    def claim(self, key: str, entry: LedgerEntry | None, action: str = "create") -> bool:
        """Try to claim ``key`` (last seen as ``entry``) for one attempt of ``action``. True: this
        runner won and the claim is committed; False: another runner changed the row first."""
        return self.claim_many([ClaimRequest(key, entry, action)])[key]

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
        """Claim a window of rows in one transaction (see :meth:`_claim_window`). When the window cannot
        go through whole (keys the ledger holds as one, a lock), each row is claimed on its own."""
        if not requests:
            return {}
        if self.lease.fence is None and not self.lease.lost:
            self.acquire(0)  # a caller that did not take the lease first (the operator does, waiting)
        try:
            return self._retry(lambda: self._claim_window(requests))
        except LedgerWriteError as exc:
            if len(requests) == 1:
                raise
            log.info("Ledger %s: claiming the window's rows one at a time: %s", self.table_name, exc)
        won: dict[str, bool] = {}
        for request in requests:
            won.update(self._retry(lambda r=request: self._claim_window([r])))  # type: ignore[misc]
        return won

    def _claim_window(self, requests: Sequence[ClaimRequest]) -> dict[str, bool]:
        """One transaction: INSERT the new keys still absent, conditionally UPDATE the rest, commit;
        each statement carries the lease's fencing check. Which rows were won is told by the rowcount,
        or by reading the tokens back; a shortfall with the lease gone is GongLeaseLostError."""
        begin(self.conn, self.kind)
        try:
            new = [r for r in requests if r.entry is None]
            won = self._insert_claims(new) if new else {}
            old = [r for r in requests if r.entry is not None]
            rowcount = self._update_claims(old) if old else 0
            if old and rowcount != len(old):
                self.lease.check_held(self.conn)
            self.conn.commit()
        except BaseException:
            rollback_quietly(self.conn)
            raise
        if old and rowcount == len(old):
            won.update((r.key, True) for r in old)
        elif old:  # some lost, or the driver does not say: read the tokens back
            current = self.lookup([r.key for r in old])
            for r in old:
                now_entry = current.get(r.key)
                won[r.key] = now_entry is not None and self._is_mine(now_entry, r.attempts)
        return won

    def _insert_claims(self, new: Sequence[ClaimRequest]) -> dict[str, bool]:
        """INSERT the new keys the ledger does not hold yet, in one statement (fenced by the lease). When
        fewer rows went in than asked, the ledger is read to tell which: a key already there is lost,
        unless it is this runner's own claim whose commit landed before an error, or the ledger holds
        it under another spelling (a collision, see :meth:`_held`)."""
        c, ph = self._cols, self.ph
        fence, fenced = self.lease.fence_sql()
        fresh = [r for r in new if r.key not in self.collisions]
        won = {r.key: False for r in new if r.key in self.collisions}
        if not fresh:
            return won
        one = f"SELECT {ph} AS k, {ph} AS a, {ph} AS o, {ph} AS t"
        rows = " UNION ALL ".join([one] + [f"SELECT {ph}, {ph}, {ph}, {ph}"] * (len(fresh) - 1))
        names = ("row_key", "status", "attempts", "claimed_by", "updated_at", "action")
        sql = (
            f"INSERT INTO {self.table} ({', '.join(c[n] for n in names)}) "
            f"SELECT v.k, '{PENDING}', 1, v.o, v.t, v.a FROM ({rows}) v "
            f"WHERE NOT EXISTS (SELECT 1 FROM {self.table} led WHERE led.{c['row_key']} = v.k) AND {fence}"
        )
        now = _now()
        params = tuple(v for r in fresh for v in (r.key, r.action, self.owner, now)) + fenced
        try:
            _, _, rowcount = execute(self.conn, sql, params)
        except Exception as exc:
            if len(fresh) > 1 and _is_integrity_error(exc):
                raise _KeysCollide(f"the ledger refused keys of one window as duplicates: {exc}") from exc
            raise
        if len(fresh) > 1 and is_mysql(self.kind):
            self._check_collation([r.key for r in fresh])
        if rowcount == len(fresh):
            won.update((r.key, True) for r in fresh)
            return won
        self.lease.check_held(self.conn)  # fewer rows: the lease lost, or keys another run holds
        held = self._held([r.key for r in fresh])
        for r in fresh:
            entry = held.get(r.key)
            won[r.key] = entry is not None and self._is_mine(entry, 1)
        return won

    def _held(self, keys: list[str]) -> dict[str, LedgerEntry]:
        """The ledger's entries for these keys, read in the claim transaction. A key the ledger holds under
        another spelling (its collation compares them equal) is noted in :attr:`collisions`."""
        c, ph = self._cols, self.ph
        columns = ("row_key", "status", "attempts", "claimed_by")
        sql = (
            f"SELECT {', '.join(c[n] for n in columns)} FROM {self.table} "
            f"WHERE {c['row_key']} IN ({', '.join([ph] * len(keys))})"
        )
        _, rows, _ = execute(self.conn, sql, tuple(keys))
        held = {str(k): LedgerEntry(str(st), None, int(a or 0), by) for k, st, a, by in rows}
        if len(held) > len(set(keys) & set(held)):  # other spellings came back: whose are they?
            for key in set(keys) - set(held):
                _, same, _ = execute(
                    self.conn, f"SELECT {c['row_key']} FROM {self.table} WHERE {c['row_key']} = {ph}", (key,)
                )
                if same:
                    self.collisions[key] = str(same[0][0])
        return held

    def _check_collation(self, keys: list[str]) -> None:
        """MySQL/MariaDB: a ledger in a case-insensitive collation (made by hand, or before 0.2.0) may
        hold two keys of this window as one; then the window is undone and each row claimed alone."""
        c, ph = self._cols, self.ph
        sql = (
            f"SELECT {c['row_key']} FROM {self.table} "
            f"WHERE {c['row_key']} IN ({', '.join([ph] * len(keys))}) "
            f"GROUP BY {c['row_key']} HAVING COUNT(*) > 1"
        )
        _, rows, _ = execute(self.conn, sql, tuple(keys))
        if rows:
            raise _KeysCollide(f"the ledger's collation holds keys of one window as one ({rows[0][0]!r})")

    def _update_claims(self, old: Sequence[ClaimRequest]) -> int:
        c, ph, now = self._cols, self.ph, _now()
        fence, fenced = self.lease.fence_sql()
        cases = " ".join(f"WHEN {ph} THEN {ph}" for _ in old)
        matches = " OR ".join(
            f"({c['row_key']} = {ph} AND {c['status']} = {ph} AND {c['attempts']} = {ph})" for _ in old
        )
        sql = (
            f"UPDATE {self.table} SET {c['status']} = {ph}, {c['error']} = NULL, "
            f"{c['error_kind']} = NULL, {c['attempts']} = {c['attempts']} + 1, "
            f"{c['claimed_by']} = {ph}, {c['updated_at']} = {ph}, "
            f"{c['action']} = CASE {c['row_key']} {cases} END "
            f"WHERE {c['row_key']} IN ({', '.join([ph] * len(old))}) AND ({matches}) AND {fence}"
        )
        params: list[Any] = [PENDING, self.owner, now]
        params += [v for r in old for v in (r.key, r.action)]
        params += [r.key for r in old]
        # every entry in `old` is set (the caller filtered); mypy cannot carry that through the list
        params += [v for r in old for v in (r.key, r.entry.status, r.entry.attempts)]  # type: ignore[union-attr]
        _, _, rowcount = execute(self.conn, sql, (*params, *fenced))
        return rowcount

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
                retry=retry_if_not_exception_type((_KeysCollide, GongLeaseLostError)),
                stop=stop_after_attempt(self._write_attempts),
                wait=wait_exponential(multiplier=0.2, max=2),
                sleep=self._sleep,
                before_sleep=before_sleep,
                reraise=True,
            )(fn)
        except GongLeaseLostError:
            raise
        except Exception as exc:
            raise LedgerWriteError(
                f"ledger {self.table_name}: {type(exc).__name__}: {str(exc).strip()[:300]}"
            ) from exc

    def _rollback(self) -> None:
        rollback_quietly(self.conn)

    def _reconnect_if_broken(self) -> None:
        """Between retries (on the ledger's own thread): a connection that no longer answers is
        replaced. It is closed directly: closing the ledger would wait for this very thread."""
        if is_alive(self.conn):
            return
        with contextlib.suppress(Exception):
            self.conn.close()
        self.conn = connect(self.hook)


def _is_integrity_error(exc: BaseException) -> bool:
    """A DB-API IntegrityError of whatever driver (each module defines its own class of that name)."""
    return any(kind.__name__ == "IntegrityError" for kind in type(exc).__mro__)


def _now() -> str:
    return pendulum.now("UTC").isoformat()
