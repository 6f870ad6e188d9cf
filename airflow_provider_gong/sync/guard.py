"""
Before any call: the whole run's plan, what a dry run reports of it, and the guard against deleting too much.

A sync run deletes meetings for cancelled rows and, in mirror mode, for rows that left the source. A
truncated table or a failed load looks exactly like mass cancellation, so a run that would delete
more than ``max_deletes`` allows, or any meeting at all when the source returned no rows, stops
before its first call; the dry run shows the same plan and says whether a real run would stop.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_gong.exceptions import GongSyncGuardError, GongValidationError
from airflow_provider_gong.sync.plan import (
    CREATE,
    CREATE_ONLY,
    DELETE,
    MIRROR,
    REPLACE,
    SKIP,
    UPDATE,
    Reason,
    plan_removed,
)

if TYPE_CHECKING:
    from airflow_provider_gong.sync.run import BatchRun

log = logging.getLogger(__name__)
#: the dry run's counts, in the order it reports them
BUCKETS = ("create", "update", "delete", "replace", "unchanged", "invalid", "pending", "past", "cancelled")


def survey(batch: BatchRun, sample: int = 5, *, deletes_only: bool = False) -> dict[str, Any]:
    """
    Return the plan of this run without acting on it; reads only, writes nothing.

    The plan: how many rows each action would touch, the first few of each with the reason, and the
    Gong calls that makes.

    :param deletes_only: plan only the rows that may be deleted (what the guard of a real run needs):
        cancelled rows and, in mirror mode, rows gone from the source. Only a cancelled row still in
        the source can be planned a delete, so the others are read but not looked up or planned, and
        the plan's other counts stay 0.
    """
    counts: Counter[str] = Counter()
    samples: dict[str, list[dict[str, str]]] = {}

    def note(bucket: str, key: str, why: str) -> None:
        counts[bucket] += 1
        if len(samples.setdefault(bucket, [])) < sample:
            samples[bucket].append({"key": key, "reason": why})

    nulls = 0 if deletes_only else batch.source.null_keys()[0]
    batch.duplicates = batch.source.duplicate_keys()
    counts["invalid"] += nulls + sum(batch.duplicates.values())
    for names, rows in _pages(batch, deletes_only):
        for row, step in batch.steps(names, rows, cancelled_only=deletes_only):
            turned_invalid = step.reason is Reason.CREATED and batch.mode != CREATE_ONLY
            if (step.action == CREATE or turned_invalid) and row.problem:  # validated only if asked
                note("invalid", row.key, row.problem)
            elif step.action != SKIP:
                note(step.action.value, row.key, step.reason.value)
            else:
                note(step.reason.bucket, row.key, step.reason.value)
    if batch.mode == MIRROR and batch.ledger.exists():
        lease = batch.options.claim_lease_seconds
        for keys in batch.removed_keys():
            for key, entry in batch.ledger.lookup(keys).items():
                step = plan_removed(entry, lease_seconds=lease)
                note(step.action.value if step.action != SKIP else "past", key, step.reason.value)
    calls = counts[CREATE] + counts[UPDATE] + counts[DELETE] + 2 * counts[REPLACE]
    return {
        "mode": batch.mode,
        "counts": {b: counts[b] for b in (*BUCKETS, "skipped")},
        "samples": samples,
        "gong_calls": calls,
    }


def _pages(batch: BatchRun, deletes_only: bool) -> Iterator[tuple[list[str], list[tuple[Any, ...]]]]:
    """
    Return the source's pages; for a plan of deletes, only rows with a ``cancelled`` value.

    A NULL ``cancelled`` means live, and without the column no row is cancelled. The column is named
    as the database reports it, quoted, so its spelling matches whatever case it was created in.
    """
    if not deletes_only:
        return batch.source.pages()
    wanted = batch.options.columns["cancelled"].lower()
    found = [name for name in batch.source.columns() if name.lower() == wanted]
    if not found:
        return iter(())
    if '"' in found[0]:
        return batch.source.pages()  # cannot be quoted literally: every row is read
    return batch.source.pages(set_column=f'"{found[0]}"')


def max_deletes(value: Any) -> int | float:
    """Parse a count (an integer, e.g. 25) or a fraction of the live meetings (0 < f < 1, e.g. 0.1)."""
    try:
        number = float(value) if not isinstance(value, bool) else -1.0
    except (TypeError, ValueError):
        number = -1.0
    if number < 0:
        raise GongValidationError(f"max_deletes must be a count (>= 0) or a fraction (0..1), got {value!r}")
    return number if 0 < number < 1 else int(number)


@dataclass(frozen=True)
class DeleteGuard:
    """How many meetings one run may delete, and why a plan must not go ahead."""

    mode: str
    ledger_table: str
    max_deletes: int | float | str  # as given (templated values arrive as text)

    def allowed(self, live: int) -> int:
        """Return the most deletes a run may make, given ``live`` meetings in the ledger."""
        limit = max_deletes(self.max_deletes)
        return limit if isinstance(limit, int) else math.floor(limit * live)

    def check(self, plan: dict[str, Any], live: int, source_rows: int) -> str:
        """Why this run must not go ahead ("" when it may): too many deletes, or an empty source."""
        deletes = plan["counts"][DELETE]
        if not deletes:
            return ""
        allowed = self.allowed(live)
        if source_rows == 0:
            return (
                f"the source returned no rows, so this {self.mode} run would delete all {deletes} live "
                f"meeting(s) in {self.ledger_table}. Nothing was sent. An empty source is treated as a "
                "broken read, never as 'cancel everything'; cancel meetings with the cancelled column."
            )
        if deletes > allowed:
            return (
                f"this run would delete {deletes} of {live} live meeting(s) in {self.ledger_table} "
                f"(cancelled or removed rows); max_deletes={self.max_deletes} allows {allowed}. Nothing was "
                "sent. Check the source (a truncated table or a failed load looks like mass cancellation), "
                "look at the plan with dry_run=True, then raise max_deletes for one run if it is right."
            )
        return ""

    def hold(self, batch: BatchRun, *, dry_run: bool, daily_quota: int) -> dict[str, Any] | None:
        """
        Survey the run and hold it to the guard.

        A dry run returns its plan. Otherwise the run may go ahead (None), and may not delete more than
        the guard allows either (rows can change between the plan and the run):
        :class:`GongSyncGuardError` when the plan already does.
        """
        plan = survey(batch, deletes_only=not dry_run)
        live = batch.ledger.count_live()
        why = self.check(plan, live, batch.progress.total)
        if dry_run:
            return self.report(plan, why, daily_quota)
        if why:
            raise GongSyncGuardError(why)
        batch.delete_budget = self.allowed(live) if batch.progress.total else 0
        return None

    def report(self, plan: dict[str, Any], why: str, daily_quota: int) -> dict[str, Any]:
        """Return the dry run's summary, and log it: the counts, samples, calls and quota share."""
        calls = plan["gong_calls"]
        counts = ", ".join(f"{k} {v}" for k, v in plan["counts"].items())
        log.info(
            "Dry run (%s mode): %s. It would make %d Gong call(s), %.1f%% of a %d-call daily quota. "
            "Nothing was sent or written.",
            self.mode,
            counts,
            calls,
            100.0 * calls / daily_quota,
            daily_quota,
        )
        for bucket, rows in plan["samples"].items():
            log.info("  %s: %s", bucket, "; ".join(f"{r['key']} ({r['reason']})" for r in rows))
        if why:
            log.warning("A real run would stop before any call: %s", why)
        return {
            **plan,
            "dry_run": True,
            "daily_quota_share": round(calls / daily_quota, 4),
            "guard": why or None,
            "ledger_table": self.ledger_table,
        }
