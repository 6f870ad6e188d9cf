"""
Run: source -> plan -> claim -> call -> record, page by page, row by row, at the hook's pace.

This module is the loop; each step lives in its own module: the rows come from
:mod:`~airflow_provider_gong.sync.source` (read as :mod:`~airflow_provider_gong.sync.rows`), each
row's step from :mod:`~airflow_provider_gong.sync.plan`, and claim -> call -> record from
:mod:`~airflow_provider_gong.sync.actions`. Claims and outcomes travel in windows through
:class:`~airflow_provider_gong.sync.pipeline.LedgerPipeline`, so the warehouse's round trips overlap
the calls instead of adding to them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_gong import metrics
from airflow_provider_gong.exceptions import GongBatchStoppedError
from airflow_provider_gong.hooks.gong import GongHook
from airflow_provider_gong.rules import MeetingLimits
from airflow_provider_gong.sync.actions import Actions
from airflow_provider_gong.sync.change import unchanged
from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.sync.pipeline import LedgerPipeline
from airflow_provider_gong.sync.plan import (
    CREATE,
    CREATE_ONLY,
    DELETE,
    MIRROR,
    REPLACE,
    SKIP,
    UPDATE,
    Reason,
    Step,
    plan_removed,
    plan_row,
)
from airflow_provider_gong.sync.preflight import Preflight
from airflow_provider_gong.sync.progress import BatchProgress
from airflow_provider_gong.sync.records import ClaimRequest, LedgerEntry
from airflow_provider_gong.sync.rows import RowReader, SourceRow
from airflow_provider_gong.sync.source import MAX_KEY_LENGTH, SourceReader

log = logging.getLogger(__name__)
Page = tuple[list[SourceRow], dict[str, LedgerEntry]]
_UNCHANGED = Step(SKIP, Reason.UNCHANGED)


@dataclass(frozen=True)
class BatchOptions:
    """
    How a run treats its rows: the operator's arguments, checked.

    :param columns: meeting field -> source column.
    :param claim_lease_seconds: a claim younger than this with no outcome is another run's call in flight.
    :param claim_window: rows per claim window (None: sized automatically; see ``sync/pipeline.py``).
    """

    columns: Mapping[str, str]
    timezone: str = "UTC"
    limits: MeetingLimits | None = None
    retry_failed: bool = False
    preflight: bool = False
    claim_lease_seconds: float = 600.0
    mode: str = CREATE_ONLY
    claim_window: int | None = None


class BatchRun:
    """One pass over the source. Build it, then :meth:`run`; read :attr:`progress` afterwards."""

    def __init__(
        self,
        *,
        source: SourceReader,
        ledger: ResultsLedger,
        gong: GongHook,
        options: BatchOptions,
        progress: BatchProgress,
    ) -> None:
        self.source = source
        self.ledger = ledger
        self.options = options
        self.mode = options.mode
        self.progress = progress
        self.limits = options.limits or MeetingLimits()
        self.reader = RowReader(options.columns, options.timezone, self.limits)
        self.pipe = LedgerPipeline(ledger, options.claim_window, rate=gong.settings.rate_limit_per_second)
        self.preflight = Preflight(gong, enabled=options.preflight)
        self.actions = Actions(gong, self.pipe, progress, self.preflight, key_column=options.columns["key"])
        self.duplicates: dict[str, int] = {}
        #: rows found unchanged the long way this page: key -> (digest, payload fingerprint), to write
        self._learnt: dict[str, tuple[str, str]] = {}
        self._stopping = threading.Event()

    @property
    def delete_budget(self) -> int | None:
        """The most deletes this run may make (the guard's allowance); None: no limit."""
        return self.actions.delete_budget

    @delete_budget.setter
    def delete_budget(self, value: int | None) -> None:
        self.actions.delete_budget = value

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

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.duplicates = report_key_problems(self.source, self.progress, self.options.columns["key"])
            for names, rows in self.source.pages():
                self._run_page(self.page(names, rows))
            if self.mode == MIRROR:
                for keys in self.removed_keys():
                    self._run_removed(self.ledger.lookup(keys))
        except BaseException:
            self.pipe.abandon()  # outcomes written, unused claims handed back; the error stands
            raise
        else:
            self.pipe.finish()
        finally:  # however it ended: what this run (this leg of a deferred run) did
            metrics.batch_rows(
                self.progress.summary(), skipped=self.progress.skipped, tags={"sync_mode": str(self.mode)}
            )

    def _run_page(self, page: Page) -> None:
        rows, entries = page
        self.preflight.check(r.organizer_email for r in rows if self._sends(r, entries))
        self.pipe.expect(self._claims_ahead(rows, entries))
        self.actions.entries = entries
        self.actions.digests = {r.key: r.digest for r in reversed(rows)}  # a key twice: the first row's
        for row in rows:
            if row.key in self.duplicates:
                continue  # reported and counted up front
            self._check_stop()
            self.progress.seen += 1
            self._run_row(row, entries.get(row.key))
            if self.progress.due():
                log.info("%s", self.progress.line())
        if self._learnt:  # digests of rows that read differently but are the meeting Gong holds
            self.ledger.learn([(k, d, f) for k, (d, f) in self._learnt.items()])
            self._learnt.clear()
        # this page's outcomes are in the ledger before the next page is read; after the last one the
        # lease is let go meanwhile, on the source's connection (one round trip instead of two after the
        # last call)
        last = len(rows) < self.source.page_size and self.mode != MIRROR
        self.pipe.finish(meanwhile=self._let_go if last else None)

    def _let_go(self) -> None:
        self.ledger.let_go(self.source.conn)

    def _run_row(self, row: SourceRow, entry: LedgerEntry | None) -> None:
        key, act = row.key, self.actions
        if not row.trackable:
            self.progress.count_bad_keys(1, duplicates=False)
            log.error(
                "Row key %r... is %d characters long; the ledger holds at most %d. Not sent.",
                key[:40],
                len(key),
                MAX_KEY_LENGTH,
            )
            return
        step = self.plan(entry, row)
        if step.reason is Reason.UNCHANGED:
            self._learn(row, entry)
        if step.action == SKIP and self.mode != CREATE_ONLY and step.reason == Reason.CREATED and row.problem:
            self.progress.failed += 1  # a live meeting whose row turned invalid: Gong keeps the old one
            log.warning("Row %s: not updated, Gong keeps its last version: %s", key, row.problem)
        elif step.action == SKIP:
            act.skip(key, step.reason, entry)
        elif step.action == CREATE:
            act.create(key, entry, *self.preflight.verdict(row.meeting, row.problem))
        else:
            assert entry is not None
            log.info("Row %s: %s (%s)", key, step.action, step.reason.meaning)
            self._change(step, row, entry)

    def _learn(self, row: SourceRow, entry: LedgerEntry | None) -> None:
        """Keep the digest of a row found unchanged the long way, for the page's end (see sync/change.py)."""
        if entry is not None and entry.fingerprint and row.digest and entry.source_fingerprint != row.digest:
            self._learnt[row.key] = (row.digest, entry.fingerprint)

    def _change(self, step: Step, row: SourceRow, entry: LedgerEntry) -> None:
        """Change a row whose meeting exists: delete, update or replace it."""
        if step.action == DELETE:
            self.actions.delete(row.key, entry, entry.organizer_email or row.organizer_email)
            return
        assert row.meeting is not None  # updates and replacements are planned for valid rows only
        if step.action == UPDATE:
            self.actions.update(row.key, entry, row.meeting)
        else:
            self.actions.replace(row.key, entry, row.meeting)

    def _run_removed(self, entries: dict[str, LedgerEntry]) -> None:
        """Mirror mode: the meetings of ledger rows whose key left the source are deleted."""
        steps = {
            key: plan_removed(entry, lease_seconds=self.options.claim_lease_seconds)
            for key, entry in entries.items()
        }
        budget = self.actions.deletes_left()
        ahead = [
            ClaimRequest(k, entries[k], DELETE)
            for k, s in steps.items()
            if s.action == DELETE and _deletable(entries[k])
        ]
        self.pipe.expect(ahead if budget is None else ahead[:budget])
        for key, step in steps.items():
            self._check_stop()
            if step.action == DELETE:
                self.actions.delete(key, entries[key], entries[key].organizer_email)
            elif step.reason == Reason.PAST:
                self.progress.skipped_past += 1
        self.pipe.finish()

    # -- the plan of a page -------------------------------------------------------------------------

    def page(self, names: list[str], rows: list[tuple[Any, ...]]) -> Page:
        """
        Read a page's rows, and look up their ledger entries.

        The lookup runs on the ledger's thread while this one digests the rows (the database's time
        and Python's overlap).
        """
        keys = [k for k in self.reader.keys(names, rows) if len(k) <= MAX_KEY_LENGTH]
        entries = self.ledger.submit(self.ledger.lookup, keys)
        return self.reader.read(names, rows), entries.result()

    def plan(self, entry: LedgerEntry | None, row: SourceRow) -> Step:
        """
        Return the row's step; a live row that reads as Gong holds it is skipped unvalidated.

        See :mod:`~airflow_provider_gong.sync.change`. The create mode plans without the row's facts.
        """
        if self.mode == CREATE_ONLY:
            facts = None
        elif not row.cancelled and unchanged(entry, row.digest, owner=self.ledger.owner, limits=self.limits):
            return _UNCHANGED
        else:
            facts = row.facts()
        return plan_row(
            entry,
            retry_failed=self.options.retry_failed,
            owner=self.ledger.owner,
            lease_seconds=self.options.claim_lease_seconds,
            mode=self.mode,
            facts=facts,
        )

    def steps(
        self, names: list[str], rows: list[tuple[Any, ...]], *, cancelled_only: bool = False
    ) -> Iterator[tuple[SourceRow, Step]]:
        """
        Each row of a page with the step its ledger entry calls for (read-only: the plan before a run).

        :param cancelled_only: only the page's cancelled rows (the only ones a delete is planned for).
        """
        read = self.reader.read(names, self.reader.cancelled(names, rows) if cancelled_only else rows)
        entries = self.ledger.lookup([r.key for r in read if r.trackable])
        for row in read:
            if row.key in self.duplicates:
                continue
            yield (
                row,
                (self.plan(entries.get(row.key), row) if row.trackable else Step(SKIP, Reason.INVALID_KEY)),
            )

    def removed_keys(self) -> Iterator[list[str]]:
        """Pages of ledger keys with a live meeting whose row left the source (mirror mode)."""
        c = self.ledger.columns
        return self.source.missing_keys(self.ledger.table, c["row_key"], c["status"])

    def first_page(
        self, names: list[str], rows: list[tuple[Any, ...]], *, claims: bool = True
    ) -> tuple[list[str], list[ClaimRequest]]:
        """
        Return the first page's ledger keys and its claims as if the ledger held none of its rows.

        For the run's start-up (``sync/startup.py``), before the entries are read. ``claims=False``:
        the keys only (planning a row as new validates it, which a sync run's unchanged rows skip).
        """
        read = self.reader.read(names, rows)
        return [r.key for r in read if r.trackable], self._claims_ahead(read, {}) if claims else []

    def _sends(self, row: SourceRow, entries: dict[str, LedgerEntry]) -> bool:
        if not row.trackable or row.key in self.duplicates:
            return False
        return self.plan(entries.get(row.key), row).action in (CREATE, UPDATE, REPLACE)

    def _claims_ahead(self, rows: list[SourceRow], entries: dict[str, LedgerEntry]) -> list[ClaimRequest]:
        """
        List the claims this page's rows will ask for, in order, so they can be made a window ahead.

        Only a forecast: a row that asks for something else is claimed on its own, and claims not
        asked for are handed back at the page's end.
        """
        ahead: list[ClaimRequest] = []
        seen: set[str] = set()
        deletes = self.actions.deletes_left()
        for row in rows:
            if row.key in self.duplicates or row.key in seen or not row.trackable:
                continue
            seen.add(row.key)
            entry = entries.get(row.key)
            action = self.plan(entry, row).action
            if action in (CREATE, UPDATE):
                ahead.append(ClaimRequest(row.key, entry, action))
            elif action in (DELETE, REPLACE) and entry is not None and entry.meeting_id:
                if not (entry.organizer_email or row.organizer_email):
                    continue
                if action == DELETE and deletes is not None:
                    if deletes <= 0:
                        continue
                    deletes -= 1
                ahead.append(ClaimRequest(row.key, entry, DELETE))
        return ahead


def _deletable(entry: LedgerEntry) -> bool:
    return bool(entry.meeting_id and entry.organizer_email)


def report_key_problems(source: SourceReader, progress: BatchProgress, key_column: str) -> dict[str, int]:
    """
    Count and log rows with a NULL key and keys shared by several rows, which are never sent.

    Counted whole: keyset paging reads only one row of each duplicated key. Returns the duplicated
    keys.
    """
    nulls, sample = source.null_keys()
    if nulls:
        progress.seen += nulls
        progress.count_bad_keys(nulls, duplicates=False)
        shown = [{k: v for k, v in row.items() if k.lower() != key_column.lower()} for row in sample]
        log.error(
            "%d row(s) have a NULL key (%s) and cannot be tracked; they were not sent. Fix the "
            "source. First %d: %s",
            nulls,
            key_column,
            len(shown),
            shown,
        )
    duplicates = source.duplicate_keys()
    if duplicates:
        rows = sum(duplicates.values())
        progress.seen += rows
        progress.count_bad_keys(rows, duplicates=True)
        listed = ", ".join(f"{k!r} x{n}" for k, n in list(duplicates.items())[:20])
        log.error(
            "%d key(s) are shared by %d rows of the source (%s%s); none of those rows is sent, since "
            "one ledger entry cannot tell them apart. Make %s unique.",
            len(duplicates),
            rows,
            listed,
            ", ..." if len(duplicates) > 20 else "",
            key_column,
        )
    return duplicates
