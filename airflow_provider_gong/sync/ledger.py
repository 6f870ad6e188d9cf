"""
The results ledger: one row per source key, in the warehouse, read and written through its own connection.

The ledger is storage: its table (made or migrated by :mod:`~airflow_provider_gong.sync.schema`),
lookups, and outcomes written under this runner's claim. Who may write a row is decided elsewhere:
the lease (:mod:`~airflow_provider_gong.sync.lease`, one runner per ledger) and the claims
(:mod:`~airflow_provider_gong.sync.claims`, one runner per row). :class:`ResultsLedger` puts the three
on one connection and one thread (:mod:`~airflow_provider_gong.sync.connection`).

Outcomes are written under the row's claim token. Failed writes are retried; a write that still
fails raises :class:`LedgerWriteError`, and the caller reports what it was about to write. The batch
writes a window's outcomes in one statement (:meth:`ResultsLedger.record_many`) while it calls Gong
(see ``sync/pipeline.py``); the single-row methods remain for everything else.

Plain DB-API with the hook's placeholder and identifier quoting, so it runs on any common-sql
connection that reports rowcount (or lets a row be read back).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_gong.sync.claims import Claims, now_iso
from airflow_provider_gong.sync.connection import LedgerConnection, LedgerWriteError, on_ledger_thread
from airflow_provider_gong.sync.ddl import lease_ddl, lock_table_name
from airflow_provider_gong.sync.lease import Lease, LeaseKeeper, LedgerBusyError
from airflow_provider_gong.sync.records import (
    COLUMNS,
    CREATED,
    ENTRY_COLUMNS,
    ClaimRequest,
    LedgerEntry,
    MeetingState,
    created_values,
    deleted_values,
    failed_values,
    learn_statement,
    reverted_values,
    unknown_values,
    updated_values,
)
from airflow_provider_gong.sync.schema import ensure_ledger, table_columns
from airflow_provider_gong.sync.sql import begin, execute, quote_identifier, rollback_quietly

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_provider_gong.meetings import MeetingResult

__all__ = ["ClaimRequest", "LedgerBusyError", "LedgerEntry", "LedgerWriteError", "ResultsLedger"]
T = TypeVar("T")


class ResultsLedger:
    """
    The ledger table, through its own DB-API connection.

    :param owner: this runner's claim token; unique per run (see the operator).
    :param write_attempts: tries per statement before :class:`LedgerWriteError`.
    :param lease_seconds: how long the lease holds without a renewal.
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
        self.lock_table = lock_table_name(self.table)
        self.db = LedgerConnection(hook, table, attempts=write_attempts, sleep=sleep)
        self.ph, self.kind = self.db.ph, self.db.kind
        self._cols = {c: quote_identifier(hook, c) for c in COLUMNS}
        self._quote = functools.partial(quote_identifier, hook)
        self.lease = Lease(self.lock_table, self.owner, self.ph, self._quote, seconds=lease_seconds)
        self.keeper = LeaseKeeper(self.db, self.lease, table)
        self.claims = Claims(
            self.db, self.keeper, table=self.table, cols=self._cols, owner=self.owner, lookup=self.lookup
        )
        self._known: set[str] | None = None  # the table's columns, once read
        self._primed: tuple[list[str], dict[str, LedgerEntry]] | None = None  # see lookup_on

    @property
    def columns(self) -> Mapping[str, str]:
        """The ledger's column names, quoted the hook's way (for SQL that joins the ledger)."""
        return self._cols

    @property
    def conn(self) -> Any:
        """The ledger's DB-API connection (used on the ledger's thread only)."""
        return self.db.conn

    @conn.setter
    def conn(self, value: Any) -> None:
        self.db.conn = value

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``fn(*args)`` on the ledger's thread; steps run one at a time, in the order queued."""
        return self.db.submit(fn, *args)

    def close(self) -> None:
        self.db.close(self.keeper.release)

    # -- schema -----------------------------------------------------------------------------------

    @on_ledger_thread
    def ensure_table(self) -> None:
        """
        Create the table and its lease table if absent, and migrate an older ledger in place.

        Safe when runners race to do it.
        """
        self._known = ensure_ledger(self.db, self.table, self.table_name, self._cols)
        self.keeper.ensure_table(lease_ddl(self.kind, self.lock_table, self._quote))

    # -- the lease and the claims (see sync/lease.py, sync/claims.py) -------------------------------

    def acquire(self, wait: float) -> None:
        """Hold the ledger's lease, waiting up to ``wait`` seconds (:class:`LedgerBusyError`)."""
        self.keeper.acquire(wait)

    @on_ledger_thread
    def take(self, first: Future[list[ClaimRequest]], wait: float) -> dict[str, bool] | None:
        """
        Take the lease and claim the run's first rows (new keys): three round trips on a ledger set up.

        The lease is taken blind (:meth:`Lease.try_acquire_at_once`) while the caller reads the source;
        ``first`` then brings the first claims, INSERTed in the same transaction, which one commit ends
        (nothing is written unless the source could be read). Returns which rows were won; None when
        it went the usual way (no lease table yet, an older ledger, the lease held by another run: the
        lease read and taken, waiting up to ``wait`` s), and the run claims from the entries it reads.
        """
        conn, fast = self.db.conn, False
        try:
            begin(conn, self.kind)
            fast = self.lease.try_acquire_at_once(conn)
        except Exception:  # no lease table yet, or not of this shape: the usual way
            fast = False
        if not fast:
            self.db.rollback()  # while the source is read
        try:
            requests = first.result()
        except BaseException:
            # the source failed the task: nothing was written (where each statement commits by itself,
            # the lease stays known, so that closing the ledger lets it go at once)
            self.db.rollback()
            raise
        if fast:
            try:
                won = self.claims.insert_claims(requests) if requests else {}
                conn.commit()
            except Exception:  # e.g. an older ledger: nothing was committed, the lease included
                self.db.rollback()
                self.lease.forget()
            else:
                self.keeper.start_heartbeat()
                if not requests:  # no claim has shown the ledger is as this version writes it
                    self._known = ensure_ledger(self.db, self.table, self.table_name, self._cols)
                return won
        self.ensure_table()
        self.keeper.acquire(wait)
        return None  # nothing claimed: the run claims as usual, from the entries it reads

    def release_lease(self) -> None:
        self.keeper.release()

    def let_go(self, conn: Any) -> None:
        """Let the lease go on another connection (the source's) while this one writes the last outcomes."""
        self.keeper.let_go(conn)

    def check_lease(self) -> None:
        self.keeper.check()

    def claim(self, key: str, entry: LedgerEntry | None, action: str = "create") -> bool:
        return self.claims.claim(key, entry, action)

    def claim_many(self, requests: Sequence[ClaimRequest]) -> dict[str, bool]:
        return self.claims.claim_many(requests)

    def release(self, requests: Sequence[ClaimRequest]) -> None:
        self.claims.release(requests)

    # -- reads ------------------------------------------------------------------------------------

    def lookup_on(self, conn: Any, keys: Sequence[str]) -> bool:
        """
        Read the entries of these keys on another connection (the source's), while this one is busy.

        The next :meth:`lookup` of exactly these keys returns them without a round trip, leaving out rows
        this run claimed meanwhile (see :meth:`take`). False when they could not be read.
        """
        read = read_entries_on(conn, self.table, self._cols["row_key"], self.ph, keys) if keys else None
        if read is None:
            return False  # no ledger yet, or an older one: the ledger's own connection reads (migrates) it
        columns, entries = read
        self._known = self._known or columns
        # a row this run claimed meanwhile (its first window, see ``take``) was absent when it was claimed
        self._primed = (list(keys), {k: e for k, e in entries.items() if e.claimed_by != self.owner})
        return True

    def unprime(self) -> None:
        """Forget what :meth:`lookup_on` read (e.g. it is old: the run waited for the lease since)."""
        self._primed = None

    @on_ledger_thread
    def lookup(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """Read the entries of these keys (one query; callers pass one page of keys)."""
        if not keys:
            return {}
        primed, self._primed = self._primed, None
        if primed is not None and primed[0] == list(keys):
            return primed[1]
        if self._known is None:
            self._known = table_columns(self.db, self.table)
        if self._known is None:
            return {}  # no ledger yet (a dry run does not create it)
        names = [n for n in ENTRY_COLUMNS if n in self._known]
        marks = ", ".join([self.ph] * len(keys))
        sql = (
            f"SELECT {', '.join(self._cols[n] for n in names)} FROM {self.table} "
            f"WHERE {self._cols['row_key']} IN ({marks})"
        )
        return _entries(names, self.db.retry(lambda: self.db.read(sql, tuple(keys))))

    @on_ledger_thread
    def exists(self) -> bool:
        return table_columns(self.db, self.table) is not None

    @on_ledger_thread
    def count_live(self) -> int:
        """Rows with a live meeting (status ``created``); 0 when there is no ledger yet."""
        if not self.exists():
            return 0
        sql = f"SELECT COUNT(*) FROM {self.table} WHERE {self._cols['status']} = {self.ph}"
        return int(self.db.retry(lambda: self.db.read(sql, (CREATED,)))[0][0])

    def get(self, key: str) -> LedgerEntry | None:
        return self.lookup([key]).get(key)

    @on_ledger_thread
    def read_all(self) -> list[dict[str, Any]]:
        """Read the whole ledger, for reports and tests (not used by the batch itself)."""
        cols = ", ".join(self._cols[c] for c in COLUMNS)
        rows = self.db.read(f"SELECT {cols} FROM {self.table} ORDER BY {self._cols['row_key']}", ())
        return [dict(zip(COLUMNS, row, strict=True)) for row in rows]

    # -- outcomes ---------------------------------------------------------------------------------

    def record_created(self, key: str, result: MeetingResult, state: MeetingState | None = None) -> bool:
        """
        Write a created meeting under this runner's claim.

        False when the row is no longer this runner's (someone reconciled it by hand meanwhile).
        """
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

    @on_ledger_thread
    def _record(self, key: str, values: dict[str, Any]) -> bool:
        c = self._cols
        values = {**values, "updated_at": now_iso()}
        assignments = ", ".join(f"{c[k]} = {self.ph}" for k in values)
        sql = (
            f"UPDATE {self.table} SET {assignments} "
            f"WHERE {c['row_key']} = {self.ph} AND {c['claimed_by']} = {self.ph}"
        )

        def once() -> bool:
            _, _, rowcount = self.db.execute(sql, (*values.values(), key, self.owner))
            self.db.conn.commit()
            return rowcount != 0

        return self.db.retry(once)

    @on_ledger_thread
    def learn(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """
        Keep the digests of rows found unchanged the long way: (key, digest, fingerprint).

        Not a claim and no outcome (see :func:`~airflow_provider_gong.sync.records.learn_statement`): a
        digest that does not land only costs a validation next run.
        """
        if not rows or "source_fingerprint" not in (self._known or set()):
            return
        sql, params = learn_statement(self.table, self._cols, self.ph, rows)

        def once() -> None:
            self.db.execute(sql, tuple(params))
            self.db.conn.commit()

        self.db.retry(once)

    @on_ledger_thread
    def record_many(self, outcomes: Sequence[tuple[str, dict[str, Any]]]) -> set[str]:
        """
        Write many rows' outcomes in one UPDATE (a CASE per column), each under this runner's claim.

        Returns the keys that were *not* written (no longer this runner's).
        """
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
            whens = " ".join(f"WHEN {ph} THEN {ph}" for _ in rows)
            sets.append(f"{c[name]} = CASE {c['row_key']} {whens} ELSE {c[name]} END")
            params += [v for row in rows for v in row]
        sets.append(f"{c['updated_at']} = {ph}")
        params.append(now_iso())
        mine = f"{c['row_key']} IN ({', '.join([ph] * len(keys))}) AND {c['claimed_by']} = {ph}"
        sql = f"UPDATE {self.table} SET {', '.join(sets)} WHERE {mine}"
        params += [*keys, self.owner]
        owned_sql = f"SELECT {c['row_key']} FROM {self.table} WHERE {mine}"

        def once() -> set[str]:
            _, _, rowcount = self.db.execute(sql, tuple(params))
            self.db.conn.commit()
            if rowcount == len(keys):
                return set()
            owned = {str(row[0]) for row in self.db.read(owned_sql, (*keys, self.owner))}
            return set(keys) - owned

        return self.db.retry(once)


def read_entries_on(
    conn: Any, table: str, key_column: str, ph: str, keys: Sequence[str]
) -> tuple[set[str], dict[str, LedgerEntry]] | None:
    """Read the ledger's columns and the entries of ``keys`` on ``conn`` (None: no ledger, or older)."""
    sql = f"SELECT * FROM {table} WHERE {key_column} IN ({', '.join([ph] * len(keys))})"
    try:
        names, rows, _ = execute(conn, sql, tuple(keys))
    except Exception:
        return None
    finally:
        rollback_quietly(conn)
    names = [n.lower() for n in names]
    if not set(ENTRY_COLUMNS) <= set(names):
        return None
    wanted = [names.index(n) for n in ENTRY_COLUMNS]
    return set(names), _entries(ENTRY_COLUMNS, [[row[i] for i in wanted] for row in rows])


def _entries(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, LedgerEntry]:
    """Ledger rows (``names`` from :data:`ENTRY_COLUMNS`) as entries by key."""
    entries = {}
    for row in rows:
        values = dict(zip(names, row, strict=True))
        key = str(values.pop("row_key"))
        values["attempts"] = int(values.get("attempts") or 0)
        if values.get("meeting_id") is not None:
            values["meeting_id"] = str(values["meeting_id"])
        entries[key] = LedgerEntry(**values)
    return entries
