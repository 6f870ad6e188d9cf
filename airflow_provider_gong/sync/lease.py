"""
The ledger's lease: one runner writes claims to a ledger at a time, on every warehouse.

Gong's quota is per company (3 calls/s), so two runners on one ledger gain nothing; one writer at a
time costs no throughput and makes the claim safe where nothing else would (warehouses that never
enforce a key, and some that have no multi-statement transactions: BigQuery's DB-API, Databricks).

The lease is the one row of ``<ledger>_lock`` (made with its row by CREATE TABLE ... AS SELECT, which
succeeds for one caller only): ``owner`` ('' when free), ``fence`` (raised by every acquisition) and
``expires_at`` (epoch milliseconds, the holder's clock). Every step is one conditional UPDATE whose
rowcount says whether it held, the primitive every warehouse has:

- acquire: ``SET owner = me, fence = f + 1, expires_at = ... WHERE fence = f AND (owner = '' OR
  expires_at < now)`` after reading ``f``;
- renew: ``SET expires_at = ... WHERE owner = me AND fence = f``, by a heartbeat every quarter of the
  lease (0 rows: the lease was taken over);
- the fencing check rides in every claim statement (``... AND EXISTS (SELECT 1 FROM <lock> WHERE
  owner = me AND fence = f)``), so a claim changes rows only while the lease row names this runner,
  at no extra round trip; and before each Gong call the runner checks, by its own clock, that its
  lease has a quarter left (what stops a runner paused past its lease from calling);
- release: ``SET owner = '', expires_at = 0 WHERE owner = me AND fence = f``.

Design record: ``docs/design/0001-claims-without-enforced-keys.md``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_provider_gong.exceptions import GongLeaseLostError
from airflow_provider_gong.sync.connection import LedgerConnection, LedgerWriteError, on_ledger_thread
from airflow_provider_gong.sync.sql import begin, execute, rollback_quietly

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Holder:
    """Who holds the lease, as read."""

    owner: str
    fence: int
    expires_at: int

    @property
    def free(self) -> bool:
        return not self.owner or self.expires_at < now_ms()

    def until(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.expires_at / 1000))


class Lease:
    """
    This runner's side of the lease; every method runs on the ledger's own thread and connection.

    :param seconds: how long an acquisition or renewal holds without another renewal: how long a
        runner that died without a word keeps the next run waiting.
    """

    def __init__(
        self, table: str, owner: str, ph: str, quote: Callable[[str], str], *, seconds: float
    ) -> None:
        self.table, self.owner, self.ph = table, owner, ph
        self.seconds = seconds
        self.fence: int | None = None
        #: the lease was taken over while this runner held it: it must not take it again by itself
        self.lost = False
        self._c = {n: quote(n) for n in ("fence", "owner", "expires_at")}
        self._valid_until = 0.0  # monotonic: when this runner must stop trusting the lease
        self._expiry = 0  # the expires_at last written: every renewal writes a later one (MySQL counts
        # only rows an UPDATE *changed*; one that writes the same value reports 0 rows)

    def read(self, conn: Any) -> Holder | None:
        c = self._c
        try:
            _, rows, _ = execute(
                conn, f"SELECT {c['owner']}, {c['fence']}, {c['expires_at']} FROM {self.table}"
            )
        finally:
            rollback_quietly(conn)
        if len(rows) != 1:
            return None
        owner, fence, expires = rows[0]
        return Holder(str(owner or "").strip(), int(fence or 0), int(expires or 0))

    def try_acquire(self, conn: Any, seen: Holder) -> bool:
        """Take the lease if it is still as ``seen`` and free; True when this runner holds it now."""
        c, ph = self._c, self.ph
        started = time.monotonic()
        sql = (
            f"UPDATE {self.table} SET {c['owner']} = {ph}, {c['fence']} = {ph}, {c['expires_at']} = {ph} "
            f"WHERE {c['fence']} = {ph} AND ({c['owner']} = '' OR {c['expires_at']} < {ph})"
        )
        expiry = self._next_expiry()
        params = (self.owner, seen.fence + 1, expiry, seen.fence, now_ms())
        try:
            _, _, rowcount = execute(conn, sql, params)
            conn.commit()
        except Exception:
            rollback_quietly(conn)
            raise
        if rowcount < 0:  # the driver does not say: read it back
            now = self.read(conn)
            rowcount = 1 if now and now.owner == self.owner and now.fence == seen.fence + 1 else 0
        if rowcount != 1:
            return False
        self.fence = seen.fence + 1
        self._valid_until = started + self.seconds
        return True

    def try_acquire_at_once(self, conn: Any) -> bool:
        """
        Take the lease without reading it first, if it is free: one statement, in the caller's transaction.

        The new fence is chosen here (epoch microseconds, above every earlier one): the statement changes
        the row only while the fence is lower and the lease free, so it still raises the fence and two
        runners cannot both win. False (nothing changed, or a driver that does not say): the caller rolls
        back and takes the lease the usual way (:meth:`try_acquire`, after reading it).
        """
        if self.lost:
            return False
        c, ph = self._c, self.ph
        started = time.monotonic()
        fence = max(time.time_ns() // 1000, (self.fence or 0) + 1)
        sql = (
            f"UPDATE {self.table} SET {c['owner']} = {ph}, {c['fence']} = {ph}, {c['expires_at']} = {ph} "
            f"WHERE {c['fence']} < {ph} AND ({c['owner']} = '' OR {c['expires_at']} < {ph})"
        )
        _, _, rowcount = execute(conn, sql, (self.owner, fence, self._next_expiry(), fence, now_ms()))
        if rowcount != 1:
            return False
        self.fence = fence
        self._valid_until = started + self.seconds
        return True

    def forget(self) -> None:
        """Forget an acquisition that was rolled back: this runner holds nothing."""
        self.fence = None

    def fence_sql(self) -> tuple[str, tuple[Any, ...]]:
        """
        Return the fencing check, as a condition a claim statement carries (with its parameters).

        The statement changes rows only while the lease row still names this runner and its fence.
        """
        if self.fence is None:
            raise GongLeaseLostError(f"this run holds no lease on {self.table}")
        c, ph = self._c, self.ph
        sql = (
            f"EXISTS (SELECT 1 FROM {self.table} lk WHERE lk.{c['owner']} = {ph} AND lk.{c['fence']} = {ph})"
        )
        return sql, (self.owner, self.fence)

    def check_held(self, conn: Any) -> None:
        """
        Raise GongLeaseLostError unless the lease row still names this runner and its fence.

        Inside the caller's transaction (nothing is ended here).
        """
        _, params = self.fence_sql()
        c, ph = self._c, self.ph
        where = f"{c['owner']} = {ph} AND {c['fence']} = {ph}"
        _, rows, _ = execute(conn, f"SELECT COUNT(*) FROM {self.table} WHERE {where}", params)
        if not rows or int(rows[0][0]) == 0:
            self.fence, self.lost = None, True
            raise GongLeaseLostError(
                f"the lease on {self.table} was taken over by another run (this run went "
                f"{self.seconds:.0f} s without renewing it); this run stops before its next claim"
            )

    def adopt(self, holder: Holder) -> None:
        """
        Treat the lease as this runner's, until the expiry written: its row names this runner.

        For when its acquisition committed, then the driver reported an error.
        """
        self.fence = holder.fence
        self._expiry = holder.expires_at
        self._valid_until = time.monotonic() + max(holder.expires_at - now_ms(), 0) / 1000

    def renew(self, conn: Any) -> None:
        """
        Extend the lease, in the caller's transaction (not committed here).

        GongLeaseLostError if it is no longer this runner's.
        """
        if self.fence is None:
            raise GongLeaseLostError(f"this run holds no lease on {self.table}")
        c, ph = self._c, self.ph
        started = time.monotonic()
        _, _, rowcount = execute(
            conn,
            f"UPDATE {self.table} SET {c['expires_at']} = {ph} "
            f"WHERE {c['owner']} = {ph} AND {c['fence']} = {ph}",
            (self._next_expiry(), self.owner, self.fence),
        )
        if rowcount == 0:
            self.fence, self.lost = None, True
            raise GongLeaseLostError(
                f"the lease on {self.table} was taken over by another run (this run went "
                f"{self.seconds:.0f} s without renewing it); this run stops before its next claim"
            )
        self._valid_until = started + self.seconds

    def _next_expiry(self) -> int:
        self._expiry = max(now_ms() + int(self.seconds * 1000), self._expiry + 1)
        return self._expiry

    def release(self, conn: Any) -> None:
        if self.fence is None:
            return
        c, ph = self._c, self.ph
        try:
            execute(
                conn,
                f"UPDATE {self.table} SET {c['owner']} = '', {c['expires_at']} = 0 "
                f"WHERE {c['owner']} = {ph} AND {c['fence']} = {ph}",
                (self.owner, self.fence),
            )
            conn.commit()
        finally:
            self.fence = None

    def left(self) -> float:
        """Seconds this runner may still trust the lease by its own clock (0 when lost or never held)."""
        return max(self._valid_until - time.monotonic(), 0.0) if self.fence is not None else 0.0


class LedgerBusyError(Exception):
    """Another live run holds the ledger's lease."""

    def __init__(self, table: str, holder: Holder, waited: float) -> None:
        self.holder = holder
        super().__init__(
            f"ledger {table} is being worked by another run ({holder.owner}, lease until {holder.until()}); "
            f"waited {waited:.0f} s. Its rows are that run's; the next run takes over what is left."
        )


class LeaseKeeper:
    """
    The lease over a run's life, on the ledger's thread and connection.

    Its table made if absent, taken (waiting for another run), renewed by a heartbeat, checked before
    each call, and let go.
    """

    def __init__(self, db: LedgerConnection, lease: Lease, ledger_name: str) -> None:
        self.db = db
        self.lease = lease
        self.ledger_name = ledger_name
        self._seen: Holder | None = None  # the lease as ensure_table read it, for acquire's first look
        self._beating = threading.Event()
        self._letting_go = False  # see let_go: a renewal that finds the lease gone is no news then

    @property
    def table(self) -> str:
        return self.lease.table

    def ensure_table(self, ddl: str) -> None:
        """
        Make the lease's table: one row, in one statement (CREATE TABLE ... AS SELECT).

        The statement succeeds for one caller only; a ledger made by an earlier version gets the table
        here. Read once; the reading serves :meth:`acquire` too (a round trip fewer on a slow warehouse).
        """
        try:
            self._seen = self.lease.read(self.db.conn)
        except Exception:  # no table yet (or not of this shape)
            if self._rows() is None:
                self.db.ddl(ddl, done=lambda: self._rows() is not None)
            try:
                self._seen = self.lease.read(self.db.conn)
            except Exception as exc:
                raise LedgerWriteError(
                    f"the lease table {self.table} lacks the columns fence, owner, expires_at "
                    f"({type(exc).__name__}; changed by hand?); claims cannot be made safely. Drop it; the "
                    f"next run makes it again: {ddl}"
                ) from None
        if self._seen is None:
            raise LedgerWriteError(
                f"the lease table {self.table} has {self._rows()} rows, not 1 (changed by hand?); "
                f"claims cannot be made safely. Drop it; the next run makes it again: {ddl}"
            )

    @on_ledger_thread
    def acquire(self, wait: float) -> None:
        """
        Hold the ledger's lease, waiting up to ``wait`` seconds for another live run to let go.

        :class:`LedgerBusyError` when it does not. Renewed by a heartbeat until :meth:`release`.
        """
        started = time.monotonic()
        told = False
        while True:
            fresh = self._seen is None  # ensure_table's reading may be old by now: only trust it if free
            holder, self._seen = self._seen or self.db.retry(lambda: self.lease.read(self.db.conn)), None
            if holder is None:
                raise LedgerWriteError(f"the lease table {self.table} does not have exactly one row")
            if holder.owner == self.lease.owner and not holder.free:
                self.lease.adopt(holder)  # our acquisition landed although the driver reported an error
                break
            if holder.free:
                if self.db.retry(lambda h=holder: self.lease.try_acquire(self.db.conn, h)):  # type: ignore[misc]
                    break
                continue  # it changed since it was read (another run took it first): read it again
            if not fresh:
                continue
            waited = time.monotonic() - started
            if waited >= wait:
                raise LedgerBusyError(self.ledger_name, holder, waited)
            if not told:
                log.info(
                    "Ledger %s is being worked by another run (%s, lease until %s); waiting up to %.0f s",
                    self.ledger_name,
                    holder.owner,
                    holder.until(),
                    wait,
                )
                told = True
            self.db.sleep(min(2.0, max(wait - waited, 0.01)))
        if told:
            log.info(
                "Ledger %s: the lease is this run's now (after %.1f s)",
                self.ledger_name,
                time.monotonic() - started,
            )
        self.start_heartbeat()

    def start_heartbeat(self) -> None:
        """Renew the lease in the background from now on (it is this run's)."""
        self._beating.set()
        threading.Thread(target=self._heartbeat, name="gong-ledger-lease", daemon=True).start()

    @on_ledger_thread
    def release(self) -> None:
        """Let the next run have the ledger now (else it waits until the lease expires)."""
        self._beating.clear()
        try:
            self.lease.release(self.db.conn)
        except Exception as exc:  # it expires on its own; the next run waits at most that long
            self.db.rollback()
            log.warning("Could not release the lease on %s (it expires by itself): %s", self.table, exc)

    def let_go(self, conn: Any) -> None:
        """
        Let the next run have the ledger, on another connection than the ledger's (the run's last step).

        Outcomes are written under their claims, not the lease, so the last ones may still be on their
        way. If it fails, :meth:`release` tries again on the ledger's connection.
        """
        self._beating.clear()
        self._letting_go = True
        fence = self.lease.fence
        try:
            self.lease.release(conn)
        except Exception as exc:
            rollback_quietly(conn)
            self.lease.fence = fence
            log.info("Ledger %s: the lease goes on the ledger's connection instead (%s)", self.table, exc)

    def stop_heartbeat(self) -> None:
        """As if this process had stopped (tests of a lapsed lease)."""
        self._beating.clear()

    def _heartbeat(self) -> None:
        """
        Renew the lease every quarter of its length while the run lives, whatever it is doing.

        A long wait for Gong's quota must not let it lapse.
        """
        interval = self.lease.seconds / 4
        while self._beating.is_set():
            time.sleep(min(interval, 1.0))
            if not self._beating.is_set():
                return
            if self.lease.left() > self.lease.seconds - interval:
                continue  # renewed less than a quarter of the lease ago
            try:
                self.db.submit(self._renew).result()
            except GongLeaseLostError as exc:
                if not self._letting_go:
                    log.error("Ledger %s: %s", self.ledger_name, exc)
                return
            except RuntimeError:
                return  # the ledger is closed
            except Exception as exc:
                log.warning("Ledger %s: could not renew the lease (%s); trying again", self.ledger_name, exc)

    def _renew(self) -> None:
        if not self._beating.is_set():
            return  # let go (or stopped) since this renewal was queued
        begin(self.db.conn, self.db.kind)
        try:
            self.lease.renew(self.db.conn)
            self.db.conn.commit()
        except GongLeaseLostError:
            self.db.rollback()
            self._beating.clear()
            raise
        except Exception:
            self.db.rollback()
            raise

    def check(self) -> None:
        """
        Check, before each Gong call, that the lease is still this run's by its own clock.

        It must have a quarter of it to spare (the margin covers the hosts' clock skew). Otherwise
        stop: another run may have taken it over.
        """
        if self.lease.left() < self.lease.seconds / 4:
            raise GongLeaseLostError(
                f"this run's lease on {self.table} has not been renewed for "
                f"{self.lease.seconds - self.lease.left():.0f} s (of {self.lease.seconds:.0f}); another run "
                "may have taken over. Stopping before the next Gong call."
            )

    def _rows(self) -> int | None:
        try:
            _, rows, _ = self.db.execute(f"SELECT COUNT(*) FROM {self.table}")
        except Exception:
            self.db.rollback()
            return None
        self.db.rollback()
        return int(rows[0][0])
