"""Plan: from a source row's ledger entry, the one thing to do with the row, and why.

Pure functions of the entry and the run's options, so the rules are stated (and tested) in one place.
The plan is advisory: it is read from the ledger before the claim, and only the claim decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import pendulum

from airflow_provider_gong.sync.records import CREATED, DELETED, FAILED, PENDING, PERMANENT, LedgerEntry

CREATE, UPDATE, DELETE, REPLACE, SKIP = "create", "update", "delete", "replace", "skip"
#: sync modes: "create" only creates; "upsert" also updates changed rows and deletes cancelled ones;
#: "mirror" also deletes meetings whose row left the source
CREATE_ONLY, UPSERT, MIRROR = "create", "upsert", "mirror"
SYNC_MODES = (CREATE_ONLY, UPSERT, MIRROR)

#: meeting field -> source column. ``key`` identifies the row in the ledger.
DEFAULT_COLUMNS: dict[str, str] = {
    "key": "id",
    "start_time": "start_time",
    "end_time": "end_time",
    "title": "title",
    "organizer_email": "organizer_email",
    "invitees": "invitees",
    "external_id": "external_id",
    "cancelled": "cancelled",  # optional; read in upsert and mirror modes
}
REQUIRED_COLUMNS = ("key", "start_time", "end_time", "organizer_email", "invitees")

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
    "changed": "the row changed since Gong last accepted it (fingerprint differs)",
    "no_fingerprint": "created before fingerprints were kept; sent once to be sure Gong matches",
    "unchanged": "Gong already holds this version",
    "cancelled": "the row is cancelled and its meeting exists",
    "cancelled_not_created": "the row is cancelled and no meeting was created for it",
    "removed": "the row left the source (mirror mode)",
    "organizer_changed": "a new organizer: the meeting is deleted under the old one and created anew",
    "recreate": "its meeting was deleted and the row is live again",
    "deleted": "its meeting was deleted",
    "past": "the meeting is already over: never created, updated or deleted",
}


@dataclass(frozen=True)
class RowFacts:
    """What the sync modes need to know of a source row (besides its ledger entry)."""

    cancelled: bool = False
    over: bool = False  # the meeting ended before now
    fingerprint: str | None = None  # None: the row is not a valid meeting
    organizer_email: str | None = None


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
    mode: str = CREATE_ONLY,
    facts: RowFacts | None = None,
) -> Step:
    """What to do with a row whose ledger entry is ``entry``.

    :param owner: this run's claim token: an entry it wrote means the source holds the key twice.
    :param lease_seconds: a claim younger than this with no outcome yet is another run's call in
        flight (e.g. a slow attempt beside its retry), not yet a row to reconcile.
    """
    if entry is not None and entry.claimed_by == owner:
        return Step(SKIP, "duplicate_in_run")
    if mode != CREATE_ONLY and facts is not None:
        step = _sync_step(entry, facts, lease_seconds=lease_seconds, now=now)
        if step is not None:
            return step
    if entry is None:
        return Step(CREATE, "new")
    if entry.status == CREATED:
        return Step(SKIP, "created")
    if entry.status == DELETED:
        return Step(SKIP, "deleted")
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


def _sync_step(
    entry: LedgerEntry | None, facts: RowFacts, *, lease_seconds: float, now: pendulum.DateTime | None
) -> Step | None:
    """The upsert/mirror rules for a row still in the source; None: fall back to the create rules."""
    status = entry.status if entry else None
    if status == PENDING and entry is not None and entry.action in (UPDATE, DELETE):
        if entry.error_kind is None and _age(entry, now) < lease_seconds:
            return Step(SKIP, "in_flight")
        # A run died mid-PUT or mid-DELETE: the meeting exists in one version or the other (or is
        # gone, and a DELETE then answers 404). Both calls are safe to repeat, so decide afresh.
        status = CREATED
    elif status == PENDING:
        return None
    if status == CREATED:
        assert entry is not None
        if facts.over:
            return Step(SKIP, "past")
        if facts.cancelled:
            return Step(DELETE, "cancelled")
        if facts.fingerprint is None:
            return None  # invalid now: the caller reports it; Gong keeps the last good version
        if entry.organizer_email and facts.organizer_email != entry.organizer_email.lower():
            return Step(REPLACE, "organizer_changed")
        if entry.fingerprint is None:
            return Step(UPDATE, "no_fingerprint")
        if entry.fingerprint != facts.fingerprint:
            return Step(UPDATE, "changed")
        return Step(SKIP, "unchanged")
    # new, deleted or failed: a create is what would happen next
    if facts.cancelled:
        return Step(SKIP, "cancelled_not_created" if status != DELETED else "deleted")
    if facts.over:
        return Step(SKIP, "past")
    if status == DELETED:
        return Step(CREATE, "recreate")
    return None


def plan_removed(
    entry: LedgerEntry, now: pendulum.DateTime | None = None, lease_seconds: float = 600.0
) -> Step:
    """A ledger row whose key left the source (mirror mode): its meeting is deleted."""
    cut_off = entry.status == PENDING and entry.action in (UPDATE, DELETE)
    if cut_off and entry.error_kind is None and _age(entry, now) < lease_seconds:
        return Step(SKIP, "in_flight")
    if entry.status != CREATED and not cut_off:
        return Step(SKIP, entry.status)
    if entry.end_time and _before_now(entry.end_time, now):
        return Step(SKIP, "past")
    return Step(DELETE, "removed")


def _before_now(text: str, now: pendulum.DateTime | None) -> bool:
    try:
        when = pendulum.parse(text)
    except Exception:
        return False
    return isinstance(when, pendulum.DateTime) and when < (now or pendulum.now("UTC"))


def _age(entry: LedgerEntry, now: pendulum.DateTime | None) -> float:
    """Seconds since the entry was written; infinite when that is unknown."""
    try:
        written = pendulum.parse(str(entry.updated_at))
    except Exception:
        return float("inf")
    if not isinstance(written, pendulum.DateTime):
        return float("inf")
    return ((now or pendulum.now("UTC")) - written).total_seconds()
