"""
One ledger opened to settle its pending rows: read, checked, and changed by one compare-and-set.

:class:`LedgerSettler` holds the steps :func:`~airflow_provider_gong.sync.settle.settle_row` runs in
order: take the lease as a run takes it, read the row, check it against the run's own claim rules
(:func:`~airflow_provider_gong.sync.plan.plan_row`), and write the outcome with one ``UPDATE`` whose
``WHERE`` carries the row's claim as read (status, claim token, attempt count) and the lease's fencing
check. A run, a late outcome write or another settlement that changed the row first makes it write
nothing (:class:`~airflow_provider_gong.exceptions.GongSettleRefusedError`, ``changed``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pendulum

from airflow_provider_gong.exceptions import GongLedgerBusyError, GongSettleRefusedError, GongValidationError
from airflow_provider_gong.sync.claims import now_iso
from airflow_provider_gong.sync.lease import LedgerBusyError
from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.sync.plan import DELETE, UPDATE, Reason, plan_row
from airflow_provider_gong.sync.records import (
    CREATED,
    FAILED,
    PENDING,
    LedgerEntry,
    settled_created_values,
    settled_failed_values,
)
from airflow_provider_gong.sync.schema import table_columns

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

log = logging.getLogger("airflow_provider_gong.sync.settle")  # one logger for the whole settlement
OUTCOMES = (CREATED, FAILED)
_MEETING_ID = re.compile(r"^[0-9]{1,40}$")
_URL = re.compile(r"^https?://\S+$")
#: what is read of a row to check it, list it and write it back only if unchanged
_READ = (
    "row_key",
    "status",
    "action",
    "updated_at",
    "error_kind",
    "error",
    "request_id",
    "claimed_by",
    "attempts",
    "meeting_id",
    "meeting_url",
)
#: columns a settlement may change, in the order the log shows them
_SHOWN = ("status", "meeting_id", "meeting_url", "error_kind", "error", "action", "claimed_by", "attempts")


@dataclass(frozen=True)
class PendingRow:
    """A ``pending`` ledger row, as :func:`~airflow_provider_gong.sync.settle.list_pending` shows it."""

    row_key: str
    action: str  # create, update or delete (create for rows written before actions were kept)
    claimed_at: str | None  # when the row was claimed, or its outcome "unknown" written
    error_kind: str | None  # "unknown": the answer was lost; None: no outcome was ever written
    request_id: str | None  # Gong's requestId of the call, when the run got one
    claimed_by: str | None
    attempts: int
    error: str | None
    note: str | None = None  # None: a person must settle it; else why it needs nothing now

    @property
    def needs_settlement(self) -> bool:
        return self.note is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Settlement:
    """A row settled: the columns it had and has now (what changed), and who settled it."""

    ledger_table: str
    row_key: str
    outcome: str
    before: dict[str, Any]
    after: dict[str, Any]
    settled_by: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return f"Ledger {self.ledger_table}, row {self.row_key}: {_show(self.before)} -> {_show(self.after)}"


class LedgerSettler:
    """
    One ledger, opened to settle its rows: :meth:`open`, :meth:`read`, :meth:`check`, :meth:`apply`.

    :param owner: the claim token the settlement writes into the row (and holds the lease as).
    """

    def __init__(
        self,
        hook: DbApiHook,
        table: str,
        *,
        owner: str,
        lease_seconds: float = 120.0,
        claim_lease_seconds: float = 600.0,
    ) -> None:
        self.table_name = table
        self.claim_lease_seconds = claim_lease_seconds
        self.ledger = ResultsLedger(hook, table, owner=owner, lease_seconds=lease_seconds)
        self.owner = self.ledger.owner

    def close(self) -> None:
        self.ledger.close()  # lets go of the lease, if held

    def open(self, wait: float) -> None:
        """Check the ledger exists, bring an older one up to date as a run would, and take its lease."""
        if not self.ledger.exists():
            raise GongSettleRefusedError(
                f"ledger {self.table_name} does not exist: there is nothing to settle (is the connection "
                "the batch's warehouse, and the table its ledger_table?)",
                row_key="",
                reason="no_ledger",
            )
        self.ledger.ensure_table()
        try:
            self.ledger.acquire(wait)
        except LedgerBusyError as busy:
            holder = busy.holder
            raise GongLedgerBusyError(
                f"ledger {self.table_name} is being worked by a run ({holder.owner}, lease until "
                f"{holder.until()}); waited {wait:.0f} s. Settle once it has finished (or wait longer).",
                holder=holder.owner,
                until=holder.until(),
            ) from None

    def pending(self) -> list[PendingRow] | None:
        """Every pending row, noted (None: no ledger)."""
        known = self.ledger.submit(table_columns, self.ledger.db, self.ledger.table).result()
        if known is None:
            return None
        rows = self._select(f"{self.ledger.columns['status']} = {self.ledger.ph}", (PENDING,), known)
        now = pendulum.now("UTC")
        return [_pending_row(row, self._verdict(row, now)) for row in rows]

    def read(self, key: str) -> dict[str, Any]:
        """Read the row as it is now; refused when there is none, or several."""
        rows = self._select(f"{self.ledger.columns['row_key']} = {self.ledger.ph}", (key,), None)
        if not rows:
            raise GongSettleRefusedError(
                f"ledger {self.table_name} has no row {key!r} (keys are compared exactly, as text)",
                row_key=key,
                reason="not_found",
            )
        if len(rows) > 1:
            raise GongSettleRefusedError(
                f"ledger {self.table_name} holds {len(rows)} rows for key {key!r} (a ledger without an "
                "enforced key, changed by hand?); settle it by hand",
                row_key=key,
                reason="duplicate_key",
            )
        return rows[0]

    def check(self, row: Mapping[str, Any]) -> None:
        """Refuse a row a person must not settle: not pending, in flight, or a run's to send again."""
        verdict = self._verdict(row, pendulum.now("UTC"))
        if verdict is not None:
            reason, why = verdict
            raise GongSettleRefusedError(
                f"ledger {self.table_name}, row {row['row_key']}: {why}",
                row_key=str(row["row_key"]),
                reason=reason,
            )

    def apply(
        self,
        row: Mapping[str, Any],
        outcome: str,
        *,
        meeting_id: str | None = None,
        meeting_url: str | None = None,
    ) -> Settlement:
        """
        Write the outcome if the row is still as read (its claim) and the lease still this settler's.

        :class:`~airflow_provider_gong.exceptions.GongSettleRefusedError` (``changed``) when a run or
        another settlement got there first; GongLeaseLostError when the lease was taken over.
        """
        values = {
            **outcome_values(outcome, meeting_id, meeting_url, row, self.owner),
            "claimed_by": self.owner,
        }
        key = str(row["row_key"])
        log.info("Ledger %s, row %s: %s; settling it as %s", self.table_name, key, _show(row), outcome)
        changed = self.ledger.submit(self._compare_and_set, row, {**values, "updated_at": now_iso()}).result()
        now = self.read(key)
        if changed != 1 and not (
            now.get("claimed_by") == self.owner and now.get("status") == values["status"]
        ):
            raise GongSettleRefusedError(
                f"ledger {self.table_name}, row {key} changed while it was being settled, nothing written: "
                f"it is now {_show(now)} (a run or another settlement got there first)",
                row_key=key,
                reason="changed",
            )
        done = Settlement(self.table_name, key, outcome, _subset(row), _subset(now), self.owner)
        log.info("%s (settled by %s)", done.line(), self.owner)
        return done

    def _compare_and_set(self, row: Mapping[str, Any], values: Mapping[str, Any]) -> int:
        """One UPDATE, on the ledger's thread: the row's claim as read, and the lease's fence."""
        c, ph, db = self.ledger.columns, self.ledger.ph, self.ledger.db
        fence, fenced = self.ledger.lease.fence_sql()
        where, params = [f"{c['row_key']} = {ph}", f"{c['status']} = {ph}"], [row["row_key"], PENDING]
        for name in ("claimed_by", "attempts"):
            where.append(f"{c[name]} IS NULL" if row[name] is None else f"{c[name]} = {ph}")
            params += [] if row[name] is None else [row[name]]
        sql = (
            f"UPDATE {self.ledger.table} SET {', '.join(f'{c[k]} = {ph}' for k in values)} "
            f"WHERE {' AND '.join(where)} AND {fence}"
        )

        def once() -> int:
            _, _, rowcount = db.execute(sql, (*values.values(), *params, *fenced))
            db.conn.commit()
            return rowcount

        rowcount = db.retry(once)
        if rowcount != 1:  # the row changed, or the lease is gone: say which
            try:
                self.ledger.lease.check_held(db.conn)
            finally:
                db.rollback()
        return rowcount

    def _select(self, where: str, params: tuple[Any, ...], known: set[str] | None) -> list[dict[str, Any]]:
        c, names = self.ledger.columns, [n for n in _READ if known is None or n in known]
        sql = (
            f"SELECT {', '.join(c[n] for n in names)} FROM {self.ledger.table} "
            f"WHERE {where} ORDER BY {c['row_key']}"
        )
        db = self.ledger.db
        rows = self.ledger.submit(db.retry, lambda: db.read(sql, params)).result()
        found = [{**dict.fromkeys(_READ), **dict(zip(names, r, strict=True))} for r in rows]
        for row in found:
            row["row_key"] = str(row["row_key"])
            row["meeting_id"] = None if row["meeting_id"] is None else str(row["meeting_id"])
        return found

    def _verdict(self, row: Mapping[str, Any], now: pendulum.DateTime) -> tuple[str, str] | None:
        """None: a person must settle the row; else (reason, why) it is not to be settled now."""
        status, action = str(row["status"]), str(row["action"] or "create")
        if status != PENDING:
            return "not_pending", f"not pending: it is {_status(row)}; there is nothing to settle"
        if action in (UPDATE, DELETE):
            return "resent_by_run", (
                f"a pending {action} needs no settling: PUT and DELETE are safe to repeat, so the next "
                "upsert or mirror run sends it again once the claim is older than claim_lease_seconds"
            )
        entry = LedgerEntry(
            PENDING, row["error_kind"], 0, row["claimed_by"], row["updated_at"], action=action
        )
        step = plan_row(
            entry, retry_failed=False, owner=self.owner, lease_seconds=self.claim_lease_seconds, now=now
        )
        if step.reason is not Reason.IN_FLIGHT:
            return None
        since = pendulum.parse(str(row["updated_at"]))
        assert isinstance(since, pendulum.DateTime)  # an age the plan could not read is never "in flight"
        until = since.add(seconds=int(self.claim_lease_seconds)).in_timezone("UTC").isoformat()
        return "in_flight", (
            f"claimed by {row['claimed_by']} at {row['updated_at']} with no outcome yet: its call may still "
            f"be in flight, and that run may still record it. It can be settled from {until} "
            f"(claim_lease_seconds={self.claim_lease_seconds:g} after the claim)"
        )


# -- the outcome, checked, and what it writes --------------------------------------------------------


def check_outcome(outcome: str, meeting_id: str | None, meeting_url: str | None) -> None:
    """Refuse a settlement that cannot be right before the ledger is touched (GongValidationError)."""
    if outcome not in OUTCOMES:
        raise GongValidationError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
    found, url = (meeting_id or "").strip(), (meeting_url or "").strip()
    if outcome == FAILED and (found or url):
        raise GongValidationError(
            "outcome 'failed' takes no meeting ID or URL: it records that Gong has no meeting for the row "
            "(settle it as 'created' if you found one)"
        )
    if outcome == CREATED and not found:
        raise GongValidationError("meeting_id is required with outcome 'created': the meeting's ID in Gong")
    if outcome == CREATED and not _MEETING_ID.match(found):
        raise GongValidationError(
            f"meeting_id must be the meeting's ID in Gong, digits only (e.g. 7782342274025937895), "
            f"got {meeting_id!r}"
        )
    if url and not _URL.match(url):
        raise GongValidationError(f"meeting_url must be an http(s) URL, got {meeting_url!r}")


def outcome_values(
    outcome: str, meeting_id: str | None, meeting_url: str | None, row: Mapping[str, Any], owner: str
) -> dict[str, Any]:
    """Return what the outcome writes to the row (see :mod:`~airflow_provider_gong.sync.records`)."""
    check_outcome(outcome, meeting_id, meeting_url)
    if outcome == CREATED:
        return settled_created_values(str(meeting_id).strip(), (meeting_url or "").strip() or None)
    was = str(row.get("error") or "no outcome was recorded")[:500]
    return settled_failed_values(
        f"settled as failed by {owner} at {now_iso()}: no meeting in Gong (was: {was})"
    )


# -- what a person reads -------------------------------------------------------------------------------


def _pending_row(row: Mapping[str, Any], verdict: tuple[str, str] | None) -> PendingRow:
    return PendingRow(
        row_key=str(row["row_key"]),
        action=str(row["action"] or "create"),
        claimed_at=None if row["updated_at"] is None else str(row["updated_at"]),
        error_kind=row["error_kind"],
        request_id=row["request_id"],
        claimed_by=row["claimed_by"],
        attempts=int(row["attempts"] or 0),
        error=row["error"],
        note=None if verdict is None else verdict[1],
    )


def _status(row: Mapping[str, Any]) -> str:
    status = str(row.get("status"))
    if status == CREATED and row.get("meeting_id"):
        return f"created (meeting {row['meeting_id']})"
    if row.get("error_kind"):
        return f"{status} ({row['error_kind']}: {str(row.get('error') or '')[:200]})"
    return status


def _subset(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in _SHOWN}


def _show(row: Mapping[str, Any]) -> str:
    """Return the columns a settlement changes, as ``status pending, error_kind unknown, ...``."""
    parts = [f"{name} {row[name]}" for name in _SHOWN if name in row and row[name] is not None]
    return ", ".join(part if len(part) < 160 else part[:157] + "..." for part in parts)
