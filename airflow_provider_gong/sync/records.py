"""
What a ledger row holds, and what each kind of outcome writes to it.

Plain values with no database behind them, so the plan, the claims and the actions can share them
without importing one another (and DAG files that import the plan pay for nothing heavier).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_gong.meetings import MeetingResult

PENDING, CREATED, FAILED, DELETED = "pending", "created", "failed", "deleted"
PERMANENT, TRANSIENT, UNKNOWN = "permanent", "transient", "unknown"
COLUMNS = (
    "row_key",
    "status",
    "meeting_id",
    "meeting_url",
    "request_id",
    "additional_invitees",
    "error",
    "error_kind",
    "attempts",
    "updated_at",
    "claimed_by",
    "fingerprint",
    "organizer_email",
    "end_time",
    "action",
    "source_fingerprint",
)
#: what :meth:`~airflow_provider_gong.sync.ledger.ResultsLedger.lookup` reads of a row
ENTRY_COLUMNS = (
    "row_key",
    "status",
    "error_kind",
    "attempts",
    "claimed_by",
    "updated_at",
    "meeting_id",
    "organizer_email",
    "fingerprint",
    "end_time",
    "action",
    "error",
    "source_fingerprint",
)


@dataclass(frozen=True)
class MeetingState:
    """
    What the ledger keeps of a meeting as Gong last accepted it, to tell later what changed.

    ``source_fingerprint`` is the digest of the source row it was read from (see
    :mod:`~airflow_provider_gong.sync.change`): written only beside the payload fingerprint of the same
    row, so a row that still reads the same is known unchanged without being validated again.
    """

    fingerprint: str
    organizer_email: str
    end_time: str
    source_fingerprint: str | None = None

    def columns(self) -> dict[str, str | None]:
        return {
            "fingerprint": self.fingerprint,
            "organizer_email": self.organizer_email,
            "end_time": self.end_time,
            "source_fingerprint": self.source_fingerprint,
        }


@dataclass(frozen=True)
class LedgerEntry:
    """A ledger row as the batch reads it (:data:`ENTRY_COLUMNS`), to plan the row and claim it."""

    status: str
    error_kind: str | None
    attempts: int
    claimed_by: str | None = None
    updated_at: str | None = None
    meeting_id: str | None = None
    organizer_email: str | None = None
    fingerprint: str | None = None
    end_time: str | None = None
    action: str | None = None
    error: str | None = None
    source_fingerprint: str | None = None


@dataclass(frozen=True)
class ClaimRequest:
    """A claim the batch will ask for: ``key``, last seen as ``entry``, for one attempt of ``action``."""

    key: str
    entry: LedgerEntry | None
    action: str

    def __post_init__(self) -> None:
        # A plan's Action is a str subclass; drivers adapt such values each their own way (psycopg looks
        # for an Enum adapter first), so the ledger is handed the plain word.
        object.__setattr__(self, "action", str(self.action))

    @property
    def attempts(self) -> int:
        """The attempt count the row carries once claimed."""
        return (self.entry.attempts if self.entry else 0) + 1


# -- outcomes: the values each kind of result writes (under the row's claim) -----------------------


def created_values(result: MeetingResult, state: MeetingState | None = None) -> dict[str, Any]:
    return {
        "status": CREATED,
        "meeting_id": result.meeting_id,
        "meeting_url": result.meeting_url,
        "request_id": result.request_id,
        "additional_invitees": json.dumps(result.additional_invitees),
        "error": None,
        "error_kind": None,
        "action": None,
        **(state.columns() if state else {}),
    }


def updated_values(state: MeetingState, request_id: str | None) -> dict[str, Any]:
    """Gong accepted the new version (PUT): the row is ``created`` with the new fingerprint."""
    values = {"status": CREATED, "error": None, "error_kind": None, "action": None}
    return {**values, "request_id": request_id, **state.columns()}


def deleted_values() -> dict[str, Any]:
    return {"status": DELETED, "error": None, "error_kind": None, "action": None}


def reverted_values(error: str, kind: str) -> dict[str, Any]:
    """
    Return the values for an update or delete that did not happen (or may not have).

    The row is ``created`` again as it was, with the error, so the next run tries again (PUT and
    DELETE are safe to repeat).
    """
    return {"status": CREATED, "error": error, "error_kind": kind, "action": None}


def failed_values(error: str, kind: str) -> dict[str, Any]:
    return {"status": FAILED, "error": error, "error_kind": kind}


def unknown_values(error: str, request_id: str | None) -> dict[str, Any]:
    """Leave the row pending but say why: the create may have happened."""
    return {"status": PENDING, "error": error, "error_kind": UNKNOWN, "request_id": request_id}


# -- a person's settlement of a pending row (see sync/settle.py) ----------------------------------------


def settled_created_values(meeting_id: str, meeting_url: str | None) -> dict[str, Any]:
    """
    Return what a settlement writes for a meeting a person found in Gong.

    What a run writes for a created meeting (:func:`created_values`), but for the meeting's state, which
    only the source row knows: it is cleared, so an upsert or mirror run sends one PUT to be sure Gong
    matches and keeps it then, as for rows created before fingerprints were kept.
    """
    values = {"status": CREATED, "meeting_id": meeting_id, "meeting_url": meeting_url}
    values |= {"error": None, "error_kind": None, "action": None}
    cleared = {"fingerprint": None, "organizer_email": None, "end_time": None, "source_fingerprint": None}
    return {**values, **cleared}


def settled_failed_values(error: str) -> dict[str, Any]:
    """Return what a settlement writes when Gong has no meeting: failed, transient (the next run sends it)."""
    return failed_values(error, TRANSIENT)


def learn_statement(
    table: str, cols: Mapping[str, str], ph: str, rows: Sequence[tuple[str, str, str]]
) -> tuple[str, tuple[Any, ...]]:
    """
    One UPDATE keeping the digests of rows found unchanged the long way: (key, digest, fingerprint).

    Each lands only where the row is still ``created`` with that payload fingerprint, so a digest always
    stands for the version Gong holds.
    """
    whens = " ".join(f"WHEN {ph} THEN {ph}" for _ in rows)
    matches = " OR ".join(f"({cols['row_key']} = {ph} AND {cols['fingerprint']} = {ph})" for _ in rows)
    sql = (
        f"UPDATE {table} SET {cols['source_fingerprint']} = CASE {cols['row_key']} {whens} "
        f"ELSE {cols['source_fingerprint']} END "
        f"WHERE {cols['row_key']} IN ({', '.join([ph] * len(rows))}) "
        f"AND {cols['status']} = {ph} AND ({matches})"
    )
    params: list[Any] = [v for key, digest, _ in rows for v in (key, digest)]
    params += [key for key, _, _ in rows] + [CREATED]
    params += [v for key, _, fingerprint in rows for v in (key, fingerprint)]
    return sql, tuple(params)
