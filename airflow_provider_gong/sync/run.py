"""Run: source -> plan -> claim -> call -> record, row by row, at the hook's pace.

The order is the guarantee. A row is sent only by the runner whose claim on it won, and only after
that claim is committed; the outcome is logged the moment Gong answers (so a meeting ID survives any
later failure) and then written under the same claim. A create whose answer may have been lost stays
``pending`` for a person to reconcile. Claims and outcomes travel in windows through
:class:`~airflow_provider_gong.sync.pipeline.LedgerPipeline`, so the warehouse's round trips overlap
the calls instead of adding to them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pendulum

from airflow_provider_gong.exceptions import (
    GongBatchStoppedError,
    GongError,
    GongMeetingMayExistError,
    GongNotFoundError,
    GongSyncGuardError,
    GongValidationError,
)
from airflow_provider_gong.hooks.gong import GongHook
from airflow_provider_gong.meetings import Meeting
from airflow_provider_gong.rules import MeetingLimits, normalise_email
from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.sync.pipeline import LedgerPipeline
from airflow_provider_gong.sync.plan import (
    CREATE,
    CREATE_ONLY,
    DELETE,
    MIRROR,
    REASONS,
    REPLACE,
    REQUIRED_COLUMNS,
    SKIP,
    UPDATE,
    RowFacts,
    Step,
    plan_removed,
    plan_row,
)
from airflow_provider_gong.sync.records import (
    DELETED,
    PERMANENT,
    TRANSIENT,
    ClaimRequest,
    LedgerEntry,
    MeetingState,
    created_values,
    deleted_values,
    failed_values,
    reverted_values,
    unknown_values,
    updated_values,
)
from airflow_provider_gong.sync.source import MAX_KEY_LENGTH, SourceReader, normalise_key

log = logging.getLogger(__name__)

#: skip reasons -> the dry run's buckets
_SKIP_BUCKETS = {
    "unchanged": "unchanged",
    "pending": "pending",
    "in_flight": "pending",
    "past": "past",
    "cancelled_not_created": "cancelled",
}
#: values of the ``cancelled`` column that mean "cancelled" (compared case-insensitively)
CANCELLED_VALUES = frozenset({"true", "t", "1", "yes", "y", "cancelled", "canceled"})
# Gong refused the meeting itself: retrying the same row cannot help.
_ROW_STATUSES = (400, 404, 409)


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


class BatchRun:
    """One pass over the source. Build it, then :meth:`run`; read :attr:`progress` afterwards."""

    def __init__(
        self,
        *,
        source: SourceReader,
        ledger: ResultsLedger,
        gong: GongHook,
        columns: Mapping[str, str],
        timezone: str,
        retry_failed: bool,
        limits: MeetingLimits | None = None,
        preflight: bool,
        progress: BatchProgress,
        claim_lease_seconds: float = 600.0,
        mode: str = CREATE_ONLY,
        claim_window: int | None = None,
    ) -> None:
        self.source = source
        self.ledger = ledger
        self.gong = gong
        self.columns = dict(columns)
        self.timezone = timezone
        self.limits = limits or MeetingLimits()
        self.retry_failed = retry_failed
        self.preflight = preflight
        self.progress = progress
        self.lease = claim_lease_seconds
        self.mode = mode
        self.organizers: dict[str, dict[str, Any]] = {}
        self.duplicates: dict[str, int] = {}
        self._entries: dict[str, LedgerEntry] = {}  # the current page's ledger view
        #: the most deletes this run may make (the guard's allowance); None: no limit
        self.delete_budget: int | None = None
        self.pipe = LedgerPipeline(ledger, claim_window, rate=gong.settings.rate_limit_per_second)
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Ask the run to stop before its next row (safe from a signal handler or another thread)."""
        self._stopping.set()

    def _check_stop(self) -> None:
        if self._stopping.is_set():
            raise GongBatchStoppedError(
                f"the batch was asked to stop (SIGTERM) after {self.progress.seen} row(s); every outcome so "
                "far is in the ledger and rows claimed but not sent were handed back. A retry goes on from "
                "there."
            )

    # -- the pass ---------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._report_key_problems()
            for names, rows in self.source.pages():
                self._run_page(names, rows)
            if self.mode == MIRROR:
                for keys in self.removed_keys():
                    self._run_removed(self.ledger.lookup(keys))
        except BaseException:
            self.pipe.abandon()  # outcomes written, unused claims handed back; the error stands
            raise
        self.pipe.finish()

    def _run_removed(self, entries: dict[str, LedgerEntry]) -> None:
        steps = {key: plan_removed(entry, lease_seconds=self.lease) for key, entry in entries.items()}
        budget = self._deletes_left()
        ahead: list[ClaimRequest] = []
        for key, step in steps.items():
            if step.action == DELETE and entries[key].meeting_id and entries[key].organizer_email:
                if budget is not None and len(ahead) >= budget:
                    break
                ahead.append(ClaimRequest(key, entries[key], DELETE))
        self.pipe.expect(ahead)
        for key, step in steps.items():
            self._check_stop()
            if step.action == DELETE:
                self._delete(key, entries[key], entries[key].organizer_email)
            elif step.reason == "past":
                self.progress.skipped_past += 1
        self.pipe.finish()

    def _deletes_left(self) -> int | None:
        return None if self.delete_budget is None else max(self.delete_budget - self.progress.deleted, 0)

    def survey(self, sample: int = 5) -> dict[str, Any]:
        """The plan of this run without acting on it: how many rows each action would touch, the first
        few of each with the reason, and the Gong calls that makes. Reads only; writes nothing."""
        counts: Counter[str] = Counter()
        samples: dict[str, list[dict[str, str]]] = {}

        def note(bucket: str, key: str, why: str) -> None:
            counts[bucket] += 1
            if len(samples.setdefault(bucket, [])) < sample:
                samples[bucket].append({"key": key, "reason": why})

        nulls, _ = self.source.null_keys()
        self.duplicates = self.source.duplicate_keys()
        counts["invalid"] += nulls + sum(self.duplicates.values())
        for names, rows in self.source.pages():
            for record, step in self.steps(names, rows):
                problem = record["_problem"]
                turned_invalid = step.reason == "created" and self.mode != CREATE_ONLY
                if problem and (step.action == CREATE or turned_invalid):
                    note("invalid", record["_key"], problem)
                elif step.action != SKIP:
                    note(step.action, record["_key"], step.reason)
                else:
                    note(_SKIP_BUCKETS.get(step.reason, "skipped"), record["_key"], step.reason)
        if self.mode == MIRROR and self.ledger.exists():
            for keys in self.removed_keys():
                for key, entry in self.ledger.lookup(keys).items():
                    step = plan_removed(entry, lease_seconds=self.lease)
                    note(step.action if step.action != SKIP else "past", key, step.reason)
        calls = counts[CREATE] + counts[UPDATE] + counts[DELETE] + 2 * counts[REPLACE]
        buckets = (CREATE, UPDATE, DELETE, REPLACE, "unchanged", "invalid", "pending", "past", "cancelled")
        return {
            "mode": self.mode,
            "counts": {b: counts[b] for b in (*buckets, "skipped")},
            "samples": samples,
            "gong_calls": calls,
        }

    def removed_keys(self) -> Iterator[list[str]]:
        """Pages of ledger keys with a live meeting whose row left the source (mirror mode)."""
        c = self.ledger.columns
        return self.source.missing_keys(self.ledger.table, c["row_key"], c["status"])

    def steps(self, names: list[str], rows: list[tuple[Any, ...]]) -> Iterator[tuple[dict[str, Any], Step]]:
        """Each row of a page with the step its ledger entry calls for (read-only: for dry runs)."""
        records, entries = self._prepare(names, rows)
        for record in records:
            if record["_key"] in self.duplicates:
                continue
            if len(record["_key"]) > MAX_KEY_LENGTH:
                yield record, Step(SKIP, "invalid_key")
                continue
            yield record, self._plan(entries.get(record["_key"]), record)

    def _report_key_problems(self) -> None:
        nulls, sample = self.source.null_keys()
        if nulls:
            self.progress.seen += nulls
            self.progress.invalid_keys += nulls
            self.progress.failed += nulls
            key_column = self.columns["key"].lower()
            shown = [{k: v for k, v in row.items() if k.lower() != key_column} for row in sample]
            log.error(
                "%d row(s) have a NULL key (%s) and cannot be tracked; they were not sent. Fix the "
                "source. First %d: %s",
                nulls,
                self.columns["key"],
                len(shown),
                shown,
            )
        self.duplicates = self.source.duplicate_keys()
        if self.duplicates:
            # Counted here, whole: keyset paging reads only one row of each duplicated key.
            rows = sum(self.duplicates.values())
            self.progress.seen += rows
            self.progress.duplicate_keys += rows
            self.progress.failed += rows
            listed = ", ".join(f"{k!r} x{n}" for k, n in list(self.duplicates.items())[:20])
            log.error(
                "%d key(s) are shared by %d rows of the source (%s%s); none of those rows is sent, since "
                "one ledger entry cannot tell them apart. Make %s unique.",
                len(self.duplicates),
                rows,
                listed,
                ", ..." if len(self.duplicates) > 20 else "",
                self.columns["key"],
            )

    def _prepare(
        self, names: list[str], rows: list[tuple[Any, ...]]
    ) -> tuple[list[dict[str, Any]], dict[str, LedgerEntry]]:
        index = self._column_index(names)
        records: list[dict[str, Any]] = [
            {f: (row[i] if i is not None else None) for f, i in index.items()} for row in rows
        ]
        for record in records:
            record["_key"] = normalise_key(record["key"])
            record["_meeting"], record["_problem"] = self._validate(record, record["_key"])
        keys = [r["_key"] for r in records if len(r["_key"]) <= MAX_KEY_LENGTH]
        return records, self.ledger.lookup(keys)

    def _run_page(self, names: list[str], rows: list[tuple[Any, ...]]) -> None:
        records, entries = self._prepare(names, rows)
        if self.preflight:
            due = [r for r in records if self._sendable(r, entries)]
            self._check_organizers(due)
        self.pipe.expect(self._claims_ahead(records, entries))
        for record in records:
            if record["_key"] in self.duplicates:
                continue  # reported and counted up front
            self._check_stop()
            self.progress.seen += 1
            self._run_row(record, entries)
            if self.progress.due():
                log.info("%s", self.progress.line())
        self.pipe.finish()  # this page's outcomes are in the ledger before the next page is read

    def _claims_ahead(
        self, records: list[dict[str, Any]], entries: dict[str, LedgerEntry]
    ) -> list[ClaimRequest]:
        """The claims this page's rows will ask for, in order, so they can be made a window ahead.
        Only a forecast: a row that asks for something else is claimed on its own, and claims not
        asked for are handed back at the page's end."""
        ahead: list[ClaimRequest] = []
        seen: set[str] = set()
        deletes = self._deletes_left()
        for record in records:
            key = record["_key"]
            if key in self.duplicates or key in seen or len(key) > MAX_KEY_LENGTH:
                continue
            seen.add(key)
            entry = entries.get(key)
            action = self._plan(entry, record).action
            if action in (CREATE, UPDATE):
                ahead.append(ClaimRequest(key, entry, action))
            elif action in (DELETE, REPLACE) and entry is not None and entry.meeting_id:
                if not (entry.organizer_email or record["organizer_email"]):
                    continue
                if action == DELETE and deletes is not None:
                    if deletes <= 0:
                        continue
                    deletes -= 1
                ahead.append(ClaimRequest(key, entry, DELETE))
        return ahead

    def _sendable(self, record: dict[str, Any], entries: dict[str, LedgerEntry]) -> bool:
        key = record["_key"]
        if len(key) > MAX_KEY_LENGTH or key in self.duplicates:
            return False
        return self._plan(entries.get(key), record).action in (CREATE, UPDATE, REPLACE)

    def _plan(self, entry: LedgerEntry | None, record: dict[str, Any]) -> Step:
        return plan_row(
            entry,
            retry_failed=self.retry_failed,
            owner=self.ledger.owner,
            lease_seconds=self.lease,
            mode=self.mode,
            facts=self._facts(record),
        )

    def _facts(self, record: dict[str, Any]) -> RowFacts:
        meeting: Meeting | None = record["_meeting"]
        raw = record.get("cancelled")
        cancelled = str(raw).strip().lower() in CANCELLED_VALUES if raw is not None else False
        if meeting is None:
            return RowFacts(cancelled=cancelled)
        return RowFacts(
            cancelled=cancelled,
            over=meeting.end_time < pendulum.now("UTC"),
            fingerprint=meeting.fingerprint(),
            organizer_email=meeting.organizer_email.lower(),
        )

    def _run_row(self, record: dict[str, Any], entries: dict[str, LedgerEntry]) -> None:
        key: str = record["_key"]
        progress = self.progress
        if len(key) > MAX_KEY_LENGTH:
            progress.invalid_keys += 1
            progress.failed += 1
            log.error(
                "Row key %r... is %d characters long; the ledger holds at most %d. Not sent.",
                key[:40],
                len(key),
                MAX_KEY_LENGTH,
            )
            return
        self._entries = entries
        entry = entries.get(key)
        step = self._plan(entry, record)
        if step.action == SKIP:
            if self.mode != CREATE_ONLY and record["_problem"] and step.reason == "created":
                progress.failed += 1  # a live meeting whose row turned invalid: Gong keeps the old one
                log.warning("Row %s: not updated, Gong keeps its last version: %s", key, record["_problem"])
                return
            self._skip(key, step.reason, entry)
            return
        if step.action != CREATE:
            assert entry is not None
            log.info("Row %s: %s (%s)", key, step.action, REASONS.get(step.reason, step.reason))
            if step.action == DELETE:
                self._delete(key, entry, entry.organizer_email or record["organizer_email"])
            elif step.action == UPDATE:
                self._update(key, entry, record["_meeting"])
            else:
                self._replace(key, entry, record["_meeting"])
            return
        meeting, problem = self._refuse(record["_meeting"], record["_problem"])
        self._claim_and_create(key, entry, meeting, problem)

    def _claim_and_create(
        self, key: str, entry: LedgerEntry | None, meeting: Meeting | None, problem: str | None
    ) -> None:
        progress = self.progress
        if not self.pipe.claim(key, entry, CREATE):
            held = self.ledger.collisions.get(key)
            if held is not None:
                progress.duplicate_keys += 1
                progress.failed += 1
                log.error(
                    "Row key %r is the same key as %r to the ledger %s (its collation compares them "
                    "equal, e.g. case-insensitively); this row was not sent. Make %s unique the way the "
                    "ledger compares, or give the ledger's row_key column a binary collation.",
                    key,
                    held,
                    self.ledger.table_name,
                    self.columns["key"],
                )
                return
            progress.claimed_elsewhere += 1
            log.info("Row %s: another run claimed it first; skipped here", key)
            return
        attempts = (entry.attempts if entry else 0) + 1
        # This run now owns the key: a second source row with the same key is a duplicate.
        self._entries[key] = LedgerEntry("pending", None, attempts, self.ledger.owner)
        if problem is not None:
            self._record_failed(key, problem, PERMANENT)
            log.warning("Row %s: %s", key, problem)
            return
        assert meeting is not None
        self._create(key, meeting)

    def _skip(self, key: str, reason: str, entry: LedgerEntry | None) -> None:
        progress = self.progress
        if reason == "duplicate_in_run":
            progress.duplicate_keys += 1
            progress.failed += 1
            log.error(
                "Row key %r occurs again in the source (keys are compared as text: 7 and '7' are the same "
                "key); only the first row was sent. Make %s unique.",
                key,
                self.columns["key"],
            )
        elif reason in ("created", "deleted"):
            progress.skipped_created += 1
        elif reason == "unchanged":
            progress.unchanged += 1
        elif reason == "past":
            progress.skipped_past += 1
        elif reason == "cancelled_not_created":
            progress.skipped_cancelled += 1
        elif reason == "in_flight":
            progress.claimed_elsewhere += 1
            assert entry is not None
            log.info(
                "Row %s: %s (%s at %s); skipped here",
                key,
                REASONS[reason],
                entry.claimed_by,
                entry.updated_at,
            )
        elif reason == "pending":
            progress.skipped_pending += 1
            assert entry is not None
            log.warning(
                "Row %s: %s (claimed by %s at %s). Reconcile it in %s.",
                key,
                REASONS[reason],
                entry.claimed_by or "an earlier run",
                entry.updated_at,
                self.ledger.table_name,
            )
        else:
            progress.skipped_failed += 1

    def _validate(self, record: dict[str, Any], key: str) -> tuple[Meeting | None, str | None]:
        """The row as a Meeting, or why it cannot be one."""
        external_id = record["external_id"]
        try:
            meeting = Meeting.build(
                start_time=record["start_time"],
                end_time=record["end_time"],
                organizer_email=record["organizer_email"],
                invitees=record["invitees"],
                title=record["title"],
                external_id=external_id if external_id not in (None, "") else key,
                timezone=self.timezone,
                limits=self.limits,
            )
        except GongValidationError as exc:
            return None, str(exc)
        return meeting, None

    def _refuse(self, meeting: Meeting | None, problem: str | None) -> tuple[Meeting | None, str | None]:
        """The preflight's verdict on the meeting's organizer, when it has one."""
        if meeting is None:
            return None, problem
        refusal = self.organizers.get(meeting.organizer_email.lower())
        if refusal is not None and not (refusal.get("exists") and refusal.get("valid")):
            reason = (
                refusal.get("userFacingError") or "organizer is not a Gong user with a valid consent page"
            )
            fix = f" Fix it here: {refusal['fixUrl']}" if refusal.get("fixUrl") else ""
            return None, f"Preflight: {meeting.organizer_email}: {reason}{fix}"
        return meeting, None

    # -- update, delete, replace (PUT and DELETE are idempotent: a failure puts the row back) ----------

    def _update(self, key: str, entry: LedgerEntry, meeting: Meeting) -> None:
        if not self.pipe.claim(key, entry, UPDATE):
            self.progress.claimed_elsewhere += 1
            return
        try:
            answer = self.gong.update_meeting(str(entry.meeting_id), meeting)
        except GongNotFoundError:
            # Deleted in Gong behind our back: record it so, and the row (still live) is created anew.
            log.warning(
                "Row %s: Gong meeting %s no longer exists; it will be created again", key, entry.meeting_id
            )
            self._write(key, deleted_values(), "deleted")
            gone = self.pipe.get(key)
            if gone is not None and gone.status == DELETED:
                fresh, problem = self._refuse(meeting, None)
                self._claim_and_create(key, gone, fresh, problem)
            return
        except GongError as exc:
            self._revert(key, "update", exc)
            return
        log.info(
            "Row %s: updated Gong meeting %s (requestId=%s)", key, entry.meeting_id, answer["request_id"]
        )
        self._write(key, updated_values(_state(meeting), answer["request_id"]), "created")
        self.progress.updated += 1

    def _delete(self, key: str, entry: LedgerEntry, organizer: Any, *, counted: bool = True) -> bool:
        """DELETE the row's meeting. ``counted``: a delete the guard answers for (not a replacement)."""
        if counted and self.delete_budget is not None and self.progress.deleted >= self.delete_budget:
            raise GongSyncGuardError(
                f"this run has deleted {self.progress.deleted} meeting(s), the most max_deletes allows, and "
                f"would delete more (row {key}): the source changed since the run's plan. Stopped; check "
                "the source and run again."
            )
        if not entry.meeting_id or not organizer:
            self.progress.failed += 1
            log.error("Row %s: cannot delete its meeting: the ledger has no meeting ID or organizer", key)
            return False
        if not self.pipe.claim(key, entry, DELETE):
            self.progress.claimed_elsewhere += 1
            return False
        try:
            existed = self.gong.delete_meeting(str(entry.meeting_id), str(organizer))
        except GongError as exc:
            self._revert(key, "delete", exc)
            return False
        log.info(
            "Row %s: deleted Gong meeting %s%s", key, entry.meeting_id, "" if existed else " (already gone)"
        )
        self._write(key, deleted_values(), "deleted")
        self.progress.deleted += 1
        return True

    def _replace(self, key: str, entry: LedgerEntry, meeting: Meeting) -> None:
        """A new organizer: delete the meeting under the old one, then create it under the new one."""
        if not self._delete(key, entry, entry.organizer_email, counted=False):
            return
        gone = self.pipe.get(key)
        if gone is None or gone.status != DELETED:
            return
        self.progress.deleted -= 1  # counted as one replacement: a delete and a create
        checked, problem = self._refuse(meeting, None)  # (None, why) when the preflight refuses it
        self._claim_and_create(key, gone, checked, problem)

    def _revert(self, key: str, what: str, exc: GongError) -> None:
        kind = PERMANENT if exc.permanent else TRANSIENT
        self.progress.failed += 1
        log.warning(
            "Row %s: %s failed (%s), the meeting stays as it was; the next run retries: %s",
            key,
            what,
            kind,
            exc,
        )
        self._write(key, reverted_values(f"{what}: {exc}", kind), "created")
        if not (isinstance(exc, GongValidationError) or exc.status in _ROW_STATUSES):
            raise exc  # credentials, permissions, quota or connectivity: every later row would fail too

    def _create(self, key: str, meeting: Meeting) -> None:
        progress = self.progress
        try:
            result = self.gong.create_meeting(meeting)
        except GongMeetingMayExistError as exc:
            progress.unknown += 1
            log.error("Row %s: outcome unknown, left pending for reconciliation: %s", key, exc)
            self._write(key, unknown_values(str(exc), exc.request_id), "pending")
            return
        except GongError as exc:  # Gong created nothing (create_meeting's contract)
            if isinstance(exc, GongValidationError) or exc.status in _ROW_STATUSES:
                self._record_failed(key, str(exc), PERMANENT)
                log.warning("Row %s failed: %s", key, exc)
                return
            # Credentials, permissions, quota or connectivity: every later row would fail the same way.
            self._record_failed(key, str(exc), TRANSIENT)
            log.error("Stopping the batch at row %s: %s", key, exc)
            raise
        # Logged before the ledger write: if that write fails, the meeting ID is still on record.
        log.info(
            "Row %s: created Gong meeting %s %s (requestId=%s)",
            key,
            result.meeting_id,
            result.meeting_url,
            result.request_id,
        )
        self._write(
            key,
            created_values(result, _state(meeting)),
            f"created, meeting_id {result.meeting_id}, meeting_url {result.meeting_url}",
        )
        progress.created += 1

    def _record_failed(self, key: str, error: str, kind: str) -> None:
        self.progress.failed += 1
        self._write(key, failed_values(error, kind), f"failed ({kind})")

    def _write(self, key: str, values: dict[str, Any], meaning: str) -> None:
        """Hand an outcome to the pipeline; it is written with the window's others (see pipeline.py)."""
        self.pipe.record(key, values, meaning)

    # -- preflight ----------------------------------------------------------------------------------

    def _check_organizers(self, records: list[dict[str, Any]]) -> None:
        """Ask Gong once per new organizer; never sink the batch (its rows are checked on create)."""
        emails = {email.lower() for r in records if (email := _email_or_none(r["organizer_email"]))}
        new = sorted(emails - set(self.organizers))
        if not new:
            return
        try:
            users = self.gong.get_integration_status(new)
        except GongError as exc:
            log.warning("Preflight skipped: Gong's integration-status call failed (%s). Continuing.", exc)
            self.preflight = False
            return
        for user in users:
            self.organizers[str(user.get("email", "")).lower()] = user
        for email in new:  # Gong silent about an address: treat it as unknown
            self.organizers.setdefault(email, {"exists": False, "valid": False})
        log.info("Preflight checked %d organizer(s) with Gong", len(new))

    def _column_index(self, names: list[str]) -> dict[str, int | None]:
        lower = {n.lower(): i for i, n in enumerate(names)}
        index: dict[str, int | None] = {}
        for fieldname, column in self.columns.items():
            position = lower.get(column.lower())
            if position is None and fieldname in REQUIRED_COLUMNS:
                raise GongValidationError(
                    f"source has no column {column!r} for {fieldname}; columns are {names}. "
                    "Map it with columns={...}."
                )
            index[fieldname] = position
        return index


def _email_or_none(value: Any) -> str | None:
    """The address as the meeting will carry it (IDNA domain), or None when it is not one."""
    try:
        return normalise_email(value, "organizer_email")
    except ValueError:
        return None


def _state(meeting: Meeting) -> MeetingState:
    return MeetingState(
        fingerprint=meeting.fingerprint(),
        organizer_email=meeting.organizer_email.lower(),
        end_time=meeting.end_time.in_timezone("UTC").isoformat(),
    )
