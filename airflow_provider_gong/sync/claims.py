"""
Claims: the atomic state change that makes one runner, and only one, the sender of a row.

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
left ``pending`` ("outcome unknown"). Windows of rows are claimed in one transaction (see
``sync/pipeline.py``); claims won but never acted on are handed back (:meth:`Claims.release`).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pendulum

from airflow_provider_gong.sync.connection import (
    KeysCollide,
    LedgerConnection,
    LedgerWriteError,
    on_ledger_thread,
)
from airflow_provider_gong.sync.lease import LeaseKeeper
from airflow_provider_gong.sync.records import PENDING, ClaimRequest, LedgerEntry
from airflow_provider_gong.sync.sql import begin, is_mysql, rollback_quietly

log = logging.getLogger(__name__)


class Claims:
    """
    This runner's claims on one ledger table.

    :param cols: the ledger's column names, quoted the hook's way.
    :param lookup: reads ledger entries by key (on the ledger's thread).
    """

    def __init__(
        self,
        db: LedgerConnection,
        keeper: LeaseKeeper,
        *,
        table: str,
        cols: Mapping[str, str],
        owner: str,
        lookup: Callable[[Sequence[str]], dict[str, LedgerEntry]],
    ) -> None:
        self.db = db
        self.keeper = keeper
        self.table = table
        self.owner = owner
        self._cols = cols
        self._lookup = lookup
        #: keys this run could not claim because the ledger holds them under another spelling (its
        #: collation compares them equal, e.g. ``ABC`` and ``abc``): key -> the spelling it holds
        self.collisions: dict[str, str] = {}

    def claim(self, key: str, entry: LedgerEntry | None, action: str = "create") -> bool:
        """
        Try to claim ``key`` (last seen as ``entry``) for one attempt of ``action``.

        True: this runner won and the claim is committed; False: another runner changed the row first.
        """
        return self.claim_many([ClaimRequest(key, entry, action)])[key]

    @on_ledger_thread
    def claim_many(self, requests: Sequence[ClaimRequest]) -> dict[str, bool]:
        """
        Claim a window of rows in one transaction (see :meth:`_claim_window`).

        When the window cannot go through whole (keys the ledger holds as one, a lock), each row is
        claimed on its own.
        """
        if not requests:
            return {}
        lease = self.keeper.lease
        if lease.fence is None and not lease.lost:
            self.keeper.acquire(0)  # a caller that did not take the lease first (the operator does, waiting)
        try:
            return self.db.retry(lambda: self._claim_window(requests))
        except LedgerWriteError as exc:
            if len(requests) == 1:
                raise
            log.info("Ledger %s: claiming the window's rows one at a time: %s", self.db.name, exc)
        won: dict[str, bool] = {}
        for request in requests:
            won.update(self.db.retry(lambda r=request: self._claim_window([r])))  # type: ignore[misc]
        return won

    def _claim_window(self, requests: Sequence[ClaimRequest]) -> dict[str, bool]:
        """
        One transaction: INSERT the new keys still absent, conditionally UPDATE the rest, commit.

        Each statement carries the lease's fencing check. Which rows were won is told by the rowcount,
        or by reading the tokens back; a shortfall with the lease gone is GongLeaseLostError.
        """
        conn = self.db.conn
        begin(conn, self.db.kind)
        try:
            new = [r for r in requests if r.entry is None]
            won = self._insert_claims(new) if new else {}
            old = [r for r in requests if r.entry is not None]
            rowcount = self._update_claims(old) if old else 0
            if old and rowcount != len(old):
                self.keeper.lease.check_held(conn)
            conn.commit()
        except BaseException:
            rollback_quietly(conn)
            raise
        if old and rowcount == len(old):
            won.update((r.key, True) for r in old)
        elif old:  # some lost, or the driver does not say: read the tokens back
            current = self._lookup([r.key for r in old])
            for r in old:
                now_entry = current.get(r.key)
                won[r.key] = now_entry is not None and self._is_mine(now_entry, r.attempts)
        return won

    def insert_claims(self, new: Sequence[ClaimRequest]) -> dict[str, bool]:
        """Claim new keys in the caller's open transaction (see :meth:`ResultsLedger.take`); not committed."""
        return self._insert_claims(new)

    def _insert_claims(self, new: Sequence[ClaimRequest]) -> dict[str, bool]:
        """
        INSERT the new keys the ledger does not hold yet, in one statement (fenced by the lease).

        When fewer rows went in than asked, the ledger is read to tell which: a key already there is
        lost, unless it is this runner's own claim whose commit landed before an error, or the ledger
        holds it under another spelling (a collision, see :meth:`_held`).
        """
        fresh = [r for r in new if r.key not in self.collisions]
        won = {r.key: False for r in new if r.key in self.collisions}
        if not fresh:
            return won
        sql, params = self._insert_sql(fresh)
        try:
            _, _, rowcount = self.db.execute(sql, params)
        except Exception as exc:
            if len(fresh) > 1 and _is_integrity_error(exc):
                raise KeysCollide(f"the ledger refused keys of one window as duplicates: {exc}") from exc
            raise
        if len(fresh) > 1 and is_mysql(self.db.kind):
            self._check_collation([r.key for r in fresh])
        if rowcount == len(fresh):
            won.update((r.key, True) for r in fresh)
            return won
        self.keeper.lease.check_held(self.db.conn)  # fewer rows: the lease lost, or keys another run holds
        held = self._held([r.key for r in fresh])
        for r in fresh:
            entry = held.get(r.key)
            won[r.key] = entry is not None and self._is_mine(entry, 1)
        return won

    def _insert_sql(self, fresh: Sequence[ClaimRequest]) -> tuple[str, tuple[Any, ...]]:
        c, ph = self._cols, self.db.ph
        fence, fenced = self.keeper.lease.fence_sql()
        one = f"SELECT {ph} AS k, {ph} AS a, {ph} AS o, {ph} AS t"
        rows = " UNION ALL ".join([one] + [f"SELECT {ph}, {ph}, {ph}, {ph}"] * (len(fresh) - 1))
        names = ("row_key", "status", "attempts", "claimed_by", "updated_at", "action")
        sql = (
            f"INSERT INTO {self.table} ({', '.join(c[n] for n in names)}) "
            f"SELECT v.k, '{PENDING}', 1, v.o, v.t, v.a FROM ({rows}) v "
            f"WHERE NOT EXISTS (SELECT 1 FROM {self.table} led WHERE led.{c['row_key']} = v.k) AND {fence}"
        )
        now = now_iso()
        return sql, tuple(v for r in fresh for v in (r.key, r.action, self.owner, now)) + fenced

    def _held(self, keys: list[str]) -> dict[str, LedgerEntry]:
        """
        Read the ledger's entries for these keys, in the claim transaction.

        A key the ledger holds under another spelling (its collation compares them equal) is noted in
        :attr:`collisions`.
        """
        c, ph = self._cols, self.db.ph
        columns = ("row_key", "status", "attempts", "claimed_by")
        sql = (
            f"SELECT {', '.join(c[n] for n in columns)} FROM {self.table} "
            f"WHERE {c['row_key']} IN ({', '.join([ph] * len(keys))})"
        )
        _, rows, _ = self.db.execute(sql, tuple(keys))
        held = {str(k): LedgerEntry(str(st), None, int(a or 0), by) for k, st, a, by in rows}
        if len(held) > len(set(keys) & set(held)):  # other spellings came back: whose are they?
            for key in set(keys) - set(held):
                _, same, _ = self.db.execute(
                    f"SELECT {c['row_key']} FROM {self.table} WHERE {c['row_key']} = {ph}", (key,)
                )
                if same:
                    self.collisions[key] = str(same[0][0])
        return held

    def _check_collation(self, keys: list[str]) -> None:
        """
        MySQL/MariaDB: undo the window when the ledger holds two of its keys as one.

        A ledger in a case-insensitive collation (made by hand, or before 0.2.0) may do that; then each
        row is claimed alone.
        """
        c, ph = self._cols, self.db.ph
        sql = (
            f"SELECT {c['row_key']} FROM {self.table} "
            f"WHERE {c['row_key']} IN ({', '.join([ph] * len(keys))}) "
            f"GROUP BY {c['row_key']} HAVING COUNT(*) > 1"
        )
        _, rows, _ = self.db.execute(sql, tuple(keys))
        if rows:
            raise KeysCollide(f"the ledger's collation holds keys of one window as one ({rows[0][0]!r})")

    def _update_claims(self, old: Sequence[ClaimRequest]) -> int:
        c, ph, now = self._cols, self.db.ph, now_iso()
        fence, fenced = self.keeper.lease.fence_sql()
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
        _, _, rowcount = self.db.execute(sql, (*params, *fenced))
        return rowcount

    def _is_mine(self, entry: LedgerEntry, attempts: int) -> bool:
        return entry.claimed_by == self.owner and entry.status == PENDING and entry.attempts == attempts

    @on_ledger_thread
    def release(self, requests: Sequence[ClaimRequest]) -> None:
        """
        Undo claims this runner won but never acted on (the run stopped first).

        A new key's row goes away, an existing row gets back the status and error it had. Nothing was
        sent for these rows, so they are safe to hand back; the attempt counter stays raised, which only
        makes it monotonic.
        """
        c, ph = self._cols, self.db.ph
        mine = f"{c['row_key']} = {ph} AND {c['claimed_by']} = {ph} AND {c['status']} = {ph}"

        def once() -> None:
            for r in requests:
                if r.entry is None:
                    self.db.execute(f"DELETE FROM {self.table} WHERE {mine}", (r.key, self.owner, PENDING))
                    continue
                values = {
                    "status": r.entry.status,
                    "error": r.entry.error,
                    "error_kind": r.entry.error_kind,
                    "action": r.entry.action,
                }
                assignments = ", ".join(f"{c[k]} = {ph}" for k in values)
                self.db.execute(
                    f"UPDATE {self.table} SET {assignments} WHERE {mine}",
                    (*values.values(), r.key, self.owner, PENDING),
                )
            self.db.conn.commit()

        if requests:
            self.db.retry(once)


def now_iso() -> str:
    """Return the time a ledger row is stamped with (UTC, ISO-8601)."""
    return pendulum.now("UTC").isoformat()


def _is_integrity_error(exc: BaseException) -> bool:
    """Recognise a DB-API IntegrityError of any driver (each module defines its own class of that name)."""
    return any(kind.__name__ == "IntegrityError" for kind in type(exc).__mro__)


def claim_token(context: Mapping[str, Any]) -> str:
    """Return this run's claim token: who holds a claim (for people reading the ledger) + a unique suffix."""
    ti = context.get("ti") if isinstance(context, Mapping) else None
    who = "manual"
    if ti is not None and getattr(ti, "dag_id", None):
        map_index = getattr(ti, "map_index", -1)
        mapped = f"[{map_index}]" if isinstance(map_index, int) and map_index >= 0 else ""
        who = f"{ti.dag_id}/{ti.task_id}{mapped}/{ti.run_id}/try{getattr(ti, 'try_number', '?')}"
    return f"{who[:180]}@{socket.gethostname()[:40]}:{os.getpid()}/{uuid.uuid4().hex[:12]}"
