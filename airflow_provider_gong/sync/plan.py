"""
Plan: from a source row's ledger entry, the one thing to do with the row, and why.

Pure functions of the entry and the run's options, so the rules are stated (and tested) in one place.
The plan is advisory: it is read from the ledger before the claim, and only the claim decides.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import pendulum

from airflow_provider_gong.sync.records import CREATED, DELETED, FAILED, PENDING, PERMANENT, LedgerEntry


class Action(str, enum.Enum):
    """
    What the batch does with a row.

    A ``str``, so logs, the ledger's ``action`` column and the dry run's counts read the same words as
    before there was an Enum.
    """

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    REPLACE = "replace"
    SKIP = "skip"

    def __str__(self) -> str:
        return str(self.value)


CREATE, UPDATE, DELETE, REPLACE, SKIP = (
    Action.CREATE,
    Action.UPDATE,
    Action.DELETE,
    Action.REPLACE,
    Action.SKIP,
)
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


class Reason(str, enum.Enum):
    """
    Why a row gets its step, with everything that hangs on the reason in one row of this table.

    Each reason carries what it means (logs, the README's table), the dry run's bucket for a skipped
    row, and the :class:`~airflow_provider_gong.sync.progress.BatchProgress` counter a skip adds to.
    The value is the word logs and the dry run's samples show.
    """

    _value_: str
    meaning: str
    bucket: str
    counter: str

    def __new__(
        cls, value: str, meaning: str, bucket: str = "skipped", counter: str = "skipped_failed"
    ) -> Reason:
        member = str.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        member.bucket = bucket
        member.counter = counter
        return member

    def __str__(self) -> str:
        return self._value_

    NEW = "new", "no ledger entry yet"
    RETRY_TRANSIENT = "retry_transient", "failed before for a reason that may pass (quota, network, auth)"
    RETRY_FAILED = "retry_failed", "failed permanently before; retried because retry_failed=True"
    CREATED = "created", "a meeting was created for it", "skipped", "skipped_created"
    PENDING = (
        "pending",
        "a create may have reached Gong (outcome unknown); never re-sent automatically",
        "pending",
        "skipped_pending",
    )
    IN_FLIGHT = (
        "in_flight",
        "another run claimed it moments ago and has not recorded an outcome yet",
        "pending",
        "claimed_elsewhere",
    )
    FAILED_PERMANENT = (
        "failed_permanent",
        "failed permanently before (bad data, 400/404/409); set retry_failed=True to retry",
    )
    DUPLICATE_IN_RUN = (
        "duplicate_in_run",
        "this run already handled a row with the same key",
        "skipped",
        "duplicate_keys",
    )
    CHANGED = "changed", "the row changed since Gong last accepted it (fingerprint differs)"
    NO_FINGERPRINT = (
        "no_fingerprint",
        "created before fingerprints were kept; sent once to be sure Gong matches",
    )
    UNCHANGED = "unchanged", "Gong already holds this version", "unchanged", "unchanged"
    CANCELLED = "cancelled", "the row is cancelled and its meeting exists"
    CANCELLED_NOT_CREATED = (
        "cancelled_not_created",
        "the row is cancelled and no meeting was created for it",
        "cancelled",
        "skipped_cancelled",
    )
    REMOVED = "removed", "the row left the source (mirror mode)"
    ORGANIZER_CHANGED = (
        "organizer_changed",
        "a new organizer: the meeting is deleted under the old one and created anew",
    )
    RECREATE = "recreate", "its meeting was deleted and the row is live again"
    DELETED = "deleted", "its meeting was deleted", "skipped", "skipped_created"
    PAST = "past", "the meeting is already over: never created, updated or deleted", "past", "skipped_past"
    INVALID_KEY = "invalid_key", "its key is NULL, shared by several rows or longer than the ledger holds"
    FAILED = "failed", "it failed before: it has no meeting"

    @classmethod
    def of_status(cls, status: str) -> Reason:
        """
        Return the reason a ledger row with no live meeting is skipped for, by its status.

        An unknown status is treated with the caution of "pending".
        """
        return {PENDING: cls.PENDING, FAILED: cls.FAILED, DELETED: cls.DELETED}.get(status, cls.PENDING)


@dataclass(frozen=True)
class RowFacts:
    """What the sync modes need to know of a source row (besides its ledger entry)."""

    cancelled: bool = False
    over: bool = False  # the meeting ended before now
    fingerprint: str | None = None  # None: the row is not a valid meeting
    organizer_email: str | None = None


@dataclass(frozen=True)
class Step:
    """What the plan decides for a row: the action, and the reason logs, the dry run and the counters show."""

    action: Action
    reason: Reason


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
    """
    Decide what to do with a row whose ledger entry is ``entry``.

    :param owner: this run's claim token: an entry it wrote means the source holds the key twice.
    :param lease_seconds: a claim younger than this with no outcome yet is another run's call in
        flight (e.g. a slow attempt beside its retry), not yet a row to reconcile.
    """
    if entry is not None and entry.claimed_by == owner:
        return Step(SKIP, Reason.DUPLICATE_IN_RUN)
    if mode != CREATE_ONLY and facts is not None:
        step = _sync_step(entry, facts, lease_seconds=lease_seconds, now=now)
        if step is not None:
            return step
    if entry is None:
        return Step(CREATE, Reason.NEW)
    if entry.status == CREATED:
        return Step(SKIP, Reason.CREATED)
    if entry.status == DELETED:
        return Step(SKIP, Reason.DELETED)
    if entry.status == PENDING:
        if entry.error_kind is None and _age(entry, now) < lease_seconds:
            return Step(SKIP, Reason.IN_FLIGHT)
        return Step(SKIP, Reason.PENDING)
    if entry.status == FAILED and entry.error_kind != PERMANENT:
        return Step(CREATE, Reason.RETRY_TRANSIENT)
    if entry.status == FAILED and retry_failed:
        return Step(CREATE, Reason.RETRY_FAILED)
    if entry.status == FAILED:
        return Step(SKIP, Reason.FAILED_PERMANENT)
    return Step(SKIP, Reason.PENDING)  # an unknown status is treated with the caution of "pending"


def _sync_step(
    entry: LedgerEntry | None, facts: RowFacts, *, lease_seconds: float, now: pendulum.DateTime | None
) -> Step | None:
    """Apply the upsert/mirror rules to a row still in the source; None: fall back to the create rules."""
    status = entry.status if entry else None
    if status == PENDING and entry is not None and entry.action in (UPDATE, DELETE):
        if entry.error_kind is None and _age(entry, now) < lease_seconds:
            return Step(SKIP, Reason.IN_FLIGHT)
        # A run died mid-PUT or mid-DELETE: the meeting exists in one version or the other (or is
        # gone, and a DELETE then answers 404). Both calls are safe to repeat, so decide afresh.
        status = CREATED
    elif status == PENDING:
        return None
    if status == CREATED:
        assert entry is not None
        if facts.over:
            return Step(SKIP, Reason.PAST)
        if facts.cancelled:
            return Step(DELETE, Reason.CANCELLED)
        if facts.fingerprint is None:
            return None  # invalid now: the caller reports it; Gong keeps the last good version
        if entry.organizer_email and facts.organizer_email != entry.organizer_email.lower():
            return Step(REPLACE, Reason.ORGANIZER_CHANGED)
        if entry.fingerprint is None:
            return Step(UPDATE, Reason.NO_FINGERPRINT)
        if entry.fingerprint != facts.fingerprint:
            return Step(UPDATE, Reason.CHANGED)
        return Step(SKIP, Reason.UNCHANGED)
    # new, deleted or failed: a create is what would happen next
    if facts.cancelled:
        return Step(SKIP, Reason.CANCELLED_NOT_CREATED if status != DELETED else Reason.DELETED)
    if facts.over:
        return Step(SKIP, Reason.PAST)
    if status == DELETED:
        return Step(CREATE, Reason.RECREATE)
    return None


def plan_removed(
    entry: LedgerEntry, now: pendulum.DateTime | None = None, lease_seconds: float = 600.0
) -> Step:
    """Plan a ledger row whose key left the source (mirror mode): its meeting is deleted."""
    cut_off = entry.status == PENDING and entry.action in (UPDATE, DELETE)
    if cut_off and entry.error_kind is None and _age(entry, now) < lease_seconds:
        return Step(SKIP, Reason.IN_FLIGHT)
    if entry.status != CREATED and not cut_off:
        return Step(SKIP, Reason.of_status(entry.status))
    if entry.end_time and _before_now(entry.end_time, now):
        return Step(SKIP, Reason.PAST)
    return Step(DELETE, Reason.REMOVED)


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
