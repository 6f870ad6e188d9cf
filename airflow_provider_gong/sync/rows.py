"""
A source row as the batch sees it: its ledger key, its meeting, and the facts the sync modes plan with.

Its meeting is the one it describes, or why it describes none.

Validation happens at most once per row, here, so the plan, the preflight and the calls all see the same
verdict; a row that is not a valid meeting is a finding about that row, never a crash of the batch. It
happens only when the row's meeting is needed: a row the ledger shows unchanged (by its digest, see
:mod:`~airflow_provider_gong.sync.change`) is never validated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any

import pendulum

from airflow_provider_gong.exceptions import GongValidationError
from airflow_provider_gong.meetings import Meeting
from airflow_provider_gong.rules import MeetingLimits, to_instant
from airflow_provider_gong.sync.change import PAYLOAD_FIELDS, RowDigest
from airflow_provider_gong.sync.plan import REQUIRED_COLUMNS, RowFacts
from airflow_provider_gong.sync.source import MAX_KEY_LENGTH, normalise_key

#: values of the ``cancelled`` column that mean "cancelled" (compared case-insensitively)
CANCELLED_VALUES = frozenset({"true", "t", "1", "yes", "y", "cancelled", "canceled"})


class SourceRow:
    """
    One row: ``fields`` maps meeting fields (see ``DEFAULT_COLUMNS``) to the row's values.

    ``digest`` is the hash of its raw payload values (:mod:`~airflow_provider_gong.sync.change`). The
    row is validated the first time its meeting, problem or facts are asked for, not before: a row the
    ledger shows unchanged is never validated.
    """

    __slots__ = ("_check", "_verdict", "digest", "fields", "key", "timezone")

    def __init__(
        self,
        key: str,
        fields: dict[str, Any],
        digest: str | None = None,
        check: Callable[[dict[str, Any], str], tuple[Meeting | None, str | None]] | None = None,
        verdict: tuple[Meeting | None, str | None] | None = None,
        timezone: str = "UTC",
    ) -> None:
        self.key, self.fields, self.digest = key, fields, digest
        self._check, self._verdict = check, verdict
        self.timezone = timezone  # naive times in the row are wall-clock time here

    def verdict(self) -> tuple[Meeting | None, str | None]:
        """Return the row as (Meeting, None), or (None, why it is none); validated once, on first use."""
        if self._verdict is None:
            assert self._check is not None
            self._verdict = self._check(self.fields, self.key)
        return self._verdict

    @property
    def meeting(self) -> Meeting | None:
        return self.verdict()[0]

    @property
    def problem(self) -> str | None:
        """Why the row is not a valid meeting (None when it is one)."""
        return self.verdict()[1]

    @property
    def trackable(self) -> bool:
        """The ledger can hold the key (VARCHAR(255))."""
        return len(self.key) <= MAX_KEY_LENGTH

    @property
    def organizer_email(self) -> Any:
        return self.fields["organizer_email"]

    @property
    def cancelled(self) -> bool:
        return is_cancelled(self.fields.get("cancelled"))

    def facts(self) -> RowFacts:
        cancelled, meeting = self.cancelled, self.meeting
        if meeting is None:
            # Not a valid meeting today; but one that has ended (e.g. it began longer than max_past ago,
            # which the rules refuse) is past, not invalid: its ledger row is settled, nothing to send.
            return RowFacts(cancelled=cancelled, over=self._ended())
        return RowFacts(
            cancelled=cancelled,
            over=meeting.end_time < pendulum.now("UTC"),
            fingerprint=meeting.fingerprint(),
            organizer_email=meeting.organizer_email.lower(),
        )


    def _ended(self) -> bool:
        """Tell whether the row has ended (its end time, if it can be read at all, is before now)."""
        try:
            return to_instant(self.fields.get("end_time"), self.timezone, "end_time") < pendulum.now("UTC")
        except (ValueError, LookupError):  # unreadable, or an unknown timezone: not known to be over
            return False


class RowReader:
    """
    Turns a page of (column names, rows) into :class:`SourceRow` objects.

    :param columns: meeting field -> source column.
    """

    def __init__(self, columns: Mapping[str, str], timezone: str, limits: MeetingLimits) -> None:
        self.columns = dict(columns)
        self.timezone = timezone
        self.limits = limits

    def read(self, names: list[str], rows: list[tuple[Any, ...]]) -> list[SourceRow]:
        """Return the page's rows, digested as read; each is validated only when its meeting is asked for."""
        index = self._index(names)
        present = [f for f in PAYLOAD_FIELDS if index.get(f) is not None]
        payload = itemgetter(*(index[f] for f in present))  # the key and start/end at least: a tuple
        digest, check = RowDigest(self.timezone, self.limits, present).of, self._validate
        read = []
        for row in rows:
            fields = {f: (row[i] if i is not None else None) for f, i in index.items()}
            key = normalise_key(fields["key"])
            read.append(SourceRow(key, fields, digest(payload(row)), check, timezone=self.timezone))
        return read

    def keys(self, names: list[str], rows: list[tuple[Any, ...]]) -> list[str]:
        """Return the ledger keys of a page's rows, in order."""
        column = self._index(names)["key"]
        assert column is not None  # a required column
        return [normalise_key(row[column]) for row in rows]

    def cancelled(self, names: list[str], rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Return the rows of a page that are cancelled, as read (none when there is no such column)."""
        column = self._index(names).get("cancelled")
        return [] if column is None else [row for row in rows if is_cancelled(row[column])]

    def _index(self, names: list[str]) -> dict[str, int | None]:
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

    def _validate(self, fields: dict[str, Any], key: str) -> tuple[Meeting | None, str | None]:
        """Return the row as a Meeting, or why it cannot be one."""
        external_id = fields["external_id"]
        try:
            meeting = Meeting.build(
                start_time=fields["start_time"],
                end_time=fields["end_time"],
                organizer_email=fields["organizer_email"],
                invitees=fields["invitees"],
                title=fields["title"],
                external_id=key if _blank(external_id) else external_id,
                timezone=self.timezone,
                limits=self.limits,
            )
        except GongValidationError as exc:
            return None, str(exc)
        return meeting, None


def check_columns(names: list[str], columns: Mapping[str, str]) -> None:
    """Fail the task, before any row is touched, when the source lacks a column a meeting needs."""
    present = {n.lower() for n in names}
    missing = [f"{columns[f]!r} ({f})" for f in REQUIRED_COLUMNS if columns[f].lower() not in present]
    if missing:
        raise GongValidationError(
            f"source has no column {', '.join(missing)}; columns are {sorted(present)}. "
            "Map them with columns={...}."
        )


def is_cancelled(raw: Any) -> bool:
    """Return whether a ``cancelled`` value means cancelled (see :data:`CANCELLED_VALUES`; NULL: live)."""
    return raw is not None and str(raw).strip().lower() in CANCELLED_VALUES


def _blank(value: Any) -> bool:
    """NULL, empty or only whitespace: no ID of the user's, so the row key is sent (as documented)."""
    return value is None or (isinstance(value, str) and not value.strip())
