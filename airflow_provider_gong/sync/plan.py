"""Plan: from a source row's ledger entry, the one thing to do with the row, and why.

Pure functions of the entry and the run's options, so the rules are stated (and tested) in one place.
The plan is advisory: it is read from the ledger before the claim, and only the claim decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import pendulum

from airflow_provider_gong.sync.ledger import CREATED, FAILED, PENDING, PERMANENT, LedgerEntry

CREATE, SKIP = "create", "skip"

#: reason -> what it means, for logs and the README's table
REASONS = {
    "new": "no ledger entry yet",
    "retry_transient": "failed before for a reason that may pass (quota, network, auth)",
    "retry_failed": "failed permanently before; retried because retry_failed=True",
    "created": "a meeting was created for it",
    "pending": "a create may have reached Gong (outcome unknown); never re-sent automatically",
    "in_flight": "another run claimed it moments ago and has not recorded an outcome yet",
    "failed_permanent": "failed permanently before (bad data, 400/404/409); set retry_failed=True to retry",
    "duplicate_in_run": "this run already handled a row with the same key",
}


@dataclass(frozen=True)
class Step:
    action: str
    reason: str


def plan_row(
    entry: LedgerEntry | None,
    *,
    retry_failed: bool,
    owner: str,
    lease_seconds: float = 600.0,
    now: pendulum.DateTime | None = None,
) -> Step:
    """What to do with a row whose ledger entry is ``entry``.

    :param owner: this run's claim token: an entry it wrote means the source holds the key twice.
    :param lease_seconds: a claim younger than this with no outcome yet is another run's call in
        flight (e.g. a slow attempt beside its retry), not yet a row to reconcile.
    """
    if entry is None:
        return Step(CREATE, "new")
    if entry.claimed_by == owner:
        return Step(SKIP, "duplicate_in_run")
    if entry.status == CREATED:
        return Step(SKIP, "created")
    if entry.status == PENDING:
        if entry.error_kind is None and _age(entry, now) < lease_seconds:
            return Step(SKIP, "in_flight")
        return Step(SKIP, "pending")
    if entry.status == FAILED and entry.error_kind != PERMANENT:
        return Step(CREATE, "retry_transient")
    if entry.status == FAILED and retry_failed:
        return Step(CREATE, "retry_failed")
    if entry.status == FAILED:
        return Step(SKIP, "failed_permanent")
    return Step(SKIP, "pending")  # an unknown status is treated with the caution of "pending"


def _age(entry: LedgerEntry, now: pendulum.DateTime | None) -> float:
    """Seconds since the entry was written; infinite when that is unknown."""
    try:
        written = pendulum.parse(str(entry.updated_at))
    except Exception:
        return float("inf")
    if not isinstance(written, pendulum.DateTime):
        return float("inf")
    return ((now or pendulum.now("UTC")) - written).total_seconds()
