"""
Actions: claim -> call -> record for one row, one handler per kind of step.

The order is the guarantee. A row is sent only after its claim is committed and won; the outcome is
logged the moment Gong answers (so a meeting ID survives any later failure) and then handed to the
pipeline, which writes it under the same claim. A create whose answer may have been lost stays
``pending`` for a person to reconcile. PUT and DELETE are idempotent: when one fails, the row is put
back as it was and the next run tries again. Errors that would hit every later row too (credentials,
permissions, quota, connectivity) stop the batch; errors about one row do not.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow_provider_gong import metrics
from airflow_provider_gong.exceptions import (
    GongError,
    GongMeetingMayExistError,
    GongNotFoundError,
    GongSyncGuardError,
    GongValidationError,
)
from airflow_provider_gong.hooks.gong import GongHook
from airflow_provider_gong.meetings import Meeting
from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.sync.pipeline import LedgerPipeline
from airflow_provider_gong.sync.plan import CREATE, DELETE, UPDATE, Reason
from airflow_provider_gong.sync.preflight import Preflight
from airflow_provider_gong.sync.progress import BatchProgress
from airflow_provider_gong.sync.records import (
    DELETED,
    PENDING,
    PERMANENT,
    TRANSIENT,
    LedgerEntry,
    MeetingState,
    created_values,
    deleted_values,
    failed_values,
    reverted_values,
    unknown_values,
    updated_values,
)

log = logging.getLogger(__name__)
# Gong refused the meeting itself: retrying the same row cannot help.
_ROW_STATUSES = (400, 404, 409)


class Actions:
    """
    The handlers of one run.

    ``entries`` is the current page's ledger view: a key this run claims is marked there as this
    run's, so a second source row with the same key is seen as a duplicate.

    :param key_column: the source's key column, for messages that tell how to fix the source.
    """

    def __init__(
        self,
        gong: GongHook,
        pipe: LedgerPipeline,
        progress: BatchProgress,
        preflight: Preflight,
        *,
        key_column: str,
    ) -> None:
        self.gong = gong
        self.pipe = pipe
        self.ledger: ResultsLedger = pipe.ledger
        self.progress = progress
        self.preflight = preflight
        self.key_column = key_column
        self.entries: dict[str, LedgerEntry] = {}
        #: the current page's row digests (see sync/change.py), kept with what Gong accepts
        self.digests: dict[str, str | None] = {}
        #: the most deletes this run may make (the guard's allowance); None: no limit
        self.delete_budget: int | None = None

    def deletes_left(self) -> int | None:
        return None if self.delete_budget is None else max(self.delete_budget - self.progress.deleted, 0)

    # -- skip ---------------------------------------------------------------------------------------

    def skip(self, key: str, reason: Reason, entry: LedgerEntry | None) -> None:
        self.progress.count_skip(reason)
        if reason is Reason.DUPLICATE_IN_RUN:
            log.error(
                "Row key %r occurs again in the source (keys are compared as text: 7 and '7' are the same "
                "key); only the first row was sent. Make %s unique.",
                key,
                self.key_column,
            )
        elif reason is Reason.IN_FLIGHT:
            assert entry is not None
            log.info(
                "Row %s: %s (%s at %s); skipped here", key, reason.meaning, entry.claimed_by, entry.updated_at
            )
        elif reason is Reason.PENDING:
            assert entry is not None
            log.warning(
                "Row %s: %s (claimed by %s at %s). Reconcile it in %s.",
                key,
                reason.meaning,
                entry.claimed_by or "an earlier run",
                entry.updated_at,
                self.ledger.table_name,
            )

    # -- create (POST is not idempotent: an answer lost leaves the row pending) ------------------------

    def create(
        self, key: str, entry: LedgerEntry | None, meeting: Meeting | None, problem: str | None
    ) -> None:
        """Claim the row for a create; then record why it cannot be one, or send it."""
        if not self.pipe.claim(key, entry, CREATE):
            self._not_claimed(key)
            return
        attempts = (entry.attempts if entry else 0) + 1
        # This run now owns the key: a second source row with the same key is a duplicate.
        self.entries[key] = LedgerEntry(PENDING, None, attempts, self.ledger.owner)
        if problem is not None:
            self._record_failed(key, problem, PERMANENT)
            log.warning("Row %s: %s", key, problem)
            return
        assert meeting is not None
        self._send(key, meeting)

    def _not_claimed(self, key: str) -> None:
        held = self.ledger.claims.collisions.get(key)  # held under another spelling
        if held is None:
            self._lost(CREATE)
            log.info("Row %s: another run claimed it first; skipped here", key)
            return
        self.progress.count_bad_keys(1, duplicates=True)
        log.error(
            "Row key %r is the same key as %r to the ledger %s (its collation compares them "
            "equal, e.g. case-insensitively); this row was not sent. Make %s unique the way the "
            "ledger compares, or give the ledger's row_key column a binary collation.",
            key,
            held,
            self.ledger.table_name,
            self.key_column,
        )

    def _lost(self, action: str) -> None:
        """Another runner claimed the row first: it is that runner's to send (counted, and in Stats)."""
        self.progress.claimed_elsewhere += 1
        metrics.claim_lost(str(action))

    def _send(self, key: str, meeting: Meeting) -> None:
        try:
            result = self.gong.create_meeting(meeting)
        except GongMeetingMayExistError as exc:
            self.progress.unknown += 1
            log.error("Row %s: outcome unknown, left pending for reconciliation: %s", key, exc)
            self._write(key, unknown_values(str(exc), exc.request_id), "pending")
            return
        except GongError as exc:  # Gong created nothing (create_meeting's contract)
            if _about_the_row(exc):
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
        meaning = f"created, meeting_id {result.meeting_id}, meeting_url {result.meeting_url}"
        self._write(key, created_values(result, self._state(key, meeting)), meaning)
        self.progress.created += 1

    # -- update, delete, replace (PUT and DELETE are idempotent: a failure puts the row back) ----------

    def update(self, key: str, entry: LedgerEntry, meeting: Meeting) -> None:
        if not self.pipe.claim(key, entry, UPDATE):
            self._lost(UPDATE)
            return
        try:
            answer = self.gong.update_meeting(str(entry.meeting_id), meeting)
        except GongNotFoundError:
            # Deleted in Gong behind our back: record it so, and the row (still live) is created anew.
            log.warning(
                "Row %s: Gong meeting %s no longer exists; it will be created again", key, entry.meeting_id
            )
            self._write(key, deleted_values(), "deleted")
            self._create_again(key, meeting)
            return
        except GongError as exc:
            self._revert(key, "update", exc)
            return
        log.info(
            "Row %s: updated Gong meeting %s (requestId=%s)", key, entry.meeting_id, answer["request_id"]
        )
        self._write(key, updated_values(self._state(key, meeting), answer["request_id"]), "created")
        self.progress.updated += 1

    def delete(self, key: str, entry: LedgerEntry, organizer: Any, *, counted: bool = True) -> bool:
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
            self._lost(DELETE)
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

    def replace(self, key: str, entry: LedgerEntry, meeting: Meeting) -> None:
        """Give a meeting a new organizer: delete it under the old one, then create it under the new one."""
        if not self.delete(key, entry, entry.organizer_email, counted=False):
            return
        self._create_again(key, meeting, replacing=True)

    def _create_again(self, key: str, meeting: Meeting, *, replacing: bool = False) -> None:
        """Create the row's meeting anew once its old one is recorded as deleted (a fresh claim)."""
        gone = self.pipe.get(key)
        if gone is None or gone.status != DELETED:
            return
        if replacing:
            self.progress.deleted -= 1  # counted as one replacement: a delete and a create
        checked, problem = self.preflight.verdict(meeting, None)  # (None, why) when the preflight refuses
        self.create(key, gone, checked, problem)

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
        if not _about_the_row(exc):
            raise exc  # credentials, permissions, quota or connectivity: every later row would fail too

    def _record_failed(self, key: str, error: str, kind: str) -> None:
        self.progress.failed += 1
        self._write(key, failed_values(error, kind), f"failed ({kind})")

    def _state(self, key: str, meeting: Meeting) -> MeetingState:
        """Return what the ledger keeps of the meeting Gong accepted, with the digest of its row."""
        return state_of(meeting, self.digests.get(key))

    def _write(self, key: str, values: dict[str, Any], meaning: str) -> None:
        """Hand an outcome to the pipeline; it is written with the window's others (see pipeline.py)."""
        self.pipe.record(key, values, meaning)


def _about_the_row(exc: GongError) -> bool:
    """Gong refused this meeting (bad data, unknown organizer, conflict), not the batch as a whole."""
    return isinstance(exc, GongValidationError) or exc.status in _ROW_STATUSES


def state_of(meeting: Meeting, source_fingerprint: str | None = None) -> MeetingState:
    return MeetingState(
        fingerprint=meeting.fingerprint(),
        organizer_email=meeting.organizer_email.lower(),
        end_time=meeting.end_time.in_timezone("UTC").isoformat(),
        source_fingerprint=source_fingerprint,
    )
