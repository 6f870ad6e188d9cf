"""
Progress: the run's counters, the progress line a long batch can be followed by, and the summary.

Every row ends in exactly one counter; the summary's keys are the words the README, the task's return
value (XCom) and OpenLineage's run facet use, so they are spelled in one place, here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_gong.sync.plan import Reason

if TYPE_CHECKING:
    from airflow_provider_gong.hooks.gong import GongHook


@dataclass
class BatchProgress:
    """Counters plus a rate-limited progress line, so long batches can be followed in the task log."""

    total: int
    every_rows: int = 100
    every_seconds: float = 30.0
    seen: int = 0
    created: int = 0
    failed: int = 0
    unknown: int = 0
    skipped_created: int = 0
    skipped_failed: int = 0
    skipped_pending: int = 0
    claimed_elsewhere: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    skipped_past: int = 0
    skipped_cancelled: int = 0
    invalid_keys: int = 0
    duplicate_keys: int = 0
    started: float = field(default_factory=time.monotonic)
    _last_log: float = field(default_factory=time.monotonic)
    _last_seen: int = 0

    def count_skip(self, reason: Reason) -> None:
        """Count a skipped row, in the counter its reason names (a duplicate key is also a failed row)."""
        setattr(self, reason.counter, getattr(self, reason.counter) + 1)
        if reason is Reason.DUPLICATE_IN_RUN:
            self.failed += 1

    def count_bad_keys(self, rows: int, *, duplicates: bool) -> None:
        """Rows never sent for their key (NULL, too long, shared): failed, and counted as such."""
        self.failed += rows
        if duplicates:
            self.duplicate_keys += rows
        else:
            self.invalid_keys += rows

    def due(self) -> bool:
        now = time.monotonic()
        if self.seen - self._last_seen >= self.every_rows or now - self._last_log >= self.every_seconds:
            self._last_log, self._last_seen = now, self.seen
            return True
        return False

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.created / elapsed
        remaining = max(self.total - self.seen, 0)
        eta = f"{remaining / rate:.0f} s" if rate > 0 else "n/a"
        pct = 100.0 * self.seen / self.total if self.total else 100.0
        return (
            f"Progress: {self.seen}/{self.total} rows ({pct:.0f}%), created {self.created}, "
            f"updated {self.updated}, deleted {self.deleted}, unchanged {self.unchanged}, "
            f"failed {self.failed}, outcome unknown {self.unknown}, skipped {self.skipped}, "
            f"{rate:.2f} meetings/s, ETA {eta}"
        )

    @property
    def skipped(self) -> int:
        return (
            self.skipped_created
            + self.skipped_failed
            + self.skipped_pending
            + self.claimed_elsewhere
            + self.skipped_past
            + self.skipped_cancelled
        )

    def summary(self) -> dict[str, int]:
        return {
            "rows": self.seen,
            "created": self.created,
            "failed": self.failed,
            "outcome_unknown": self.unknown,
            "skipped_created": self.skipped_created,
            "skipped_failed": self.skipped_failed,
            "claimed_elsewhere": self.claimed_elsewhere,
            "updated": self.updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "skipped_past": self.skipped_past,
            "skipped_cancelled": self.skipped_cancelled,
            "invalid_keys": self.invalid_keys,
            "duplicate_keys": self.duplicate_keys,
            "pending_unreconciled": self.skipped_pending + self.unknown,
        }


#: the counts of a run that did nothing (another run held the ledger)
IDLE = {
    "rows": 0,
    "created": 0,
    "updated": 0,
    "deleted": 0,
    "failed": 0,
    "outcome_unknown": 0,
    "skipped_created": 0,
    "claimed_elsewhere": 0,
    "gong_calls": 0,
}

#: counts that add up over the legs of a deferred run (the rest describe the last leg)
_CUMULATIVE = ("created", "updated", "deleted")


def so_far(earlier: Mapping[str, Any], now: Mapping[str, Any], *, deferring: bool = False) -> dict[str, Any]:
    """Return this leg's summary with the counts of earlier legs added, and how many deferrals there were."""
    summary = dict(now)
    for key in _CUMULATIVE:
        summary[key] = summary.get(key, 0) + int(earlier.get(key, 0))
    summary["deferrals"] = int(earlier.get("deferrals", 0)) + (1 if deferring else 0)
    return summary


def problems(summary: Mapping[str, Any]) -> str:
    """Return the rows this run answers for that have no meeting, in words; "" when there are none."""
    parts = []
    if summary["failed"]:
        bad_keys = summary["invalid_keys"] + summary["duplicate_keys"]
        keys = f" ({bad_keys} with a NULL, duplicated or over-long key)" if bad_keys else ""
        parts.append(f"{summary['failed']} row(s) failed in this run{keys}")
    if summary["skipped_failed"]:
        parts.append(
            f"{summary['skipped_failed']} row(s) failed permanently in an earlier run (fix the data, "
            "then run with retry_failed=True)"
        )
    if summary["pending_unreconciled"]:
        parts.append(
            f"{summary['pending_unreconciled']} row(s) are pending: the create may have reached Gong; "
            "check Gong by externalId, then set the row to created (with its meeting_id) or failed"
        )
    return "; ".join(parts)


def log_quota(log: logging.Logger | Any, gong: GongHook, rows: int, deferrable: bool) -> int | None:
    """
    Say how much of today's shared Gong budget is used and whether this run fits in the rest.

    In the task's own log, ``log``. Returns the calls left today, None when the quota cannot be read.
    """
    try:
        quota = gong.quota_status()
    except Exception as exc:  # a quota store that cannot be read must not stop the batch here
        log.warning("Could not read today's Gong quota (%s); going on", exc)
        return None
    fits = rows <= quota["left"]
    log.info(
        "Gong quota today: %d of %d calls used, %d left (resets %s). This run needs up to %d call(s) "
        "(one per row, retries aside): %s.",
        quota["used"],
        quota["budget"],
        quota["left"],
        quota["resets_at"],
        rows,
        "it fits"
        if fits
        else (
            "it does NOT fit; the run "
            + ("defers" if deferrable else "fails")
            + " when the budget runs out and goes on from its ledger after the reset"
        ),
    )
    return int(quota["left"])
