"""
Change detection in bulk: a source row Gong already holds as it reads now is known without validating it.

A sync run re-reads every row of its source. Validating a row (parsing its times and emails, building
the :class:`~airflow_provider_gong.meetings.Meeting`) costs far more than reading it, so each row is
also **digested as read**: a hash of the raw values of the columns that make its meeting (key, times,
title, organizer, invitees, external ID), of the run's ``timezone`` and of its ``limits``. The ledger
keeps that digest (``source_fingerprint``) beside the payload fingerprint Gong last accepted, written
together from the same row, so it stands for that version.

A row whose digest equals its ledger entry's is the version Gong holds, so the plan's verdict for it
is known without the model: :func:`unchanged` says when that verdict is "unchanged" (skip). Everything
else goes the long way as before (validation, the payload fingerprint, :func:`~.plan.plan_row`): new,
changed, cancelled, failed and pending rows, rows with no digest yet (a ledger from before 0.2.0, a
settled row), and meetings that are over or near enough to ``max_past`` that validation might now
refuse them. A row whose raw values changed without changing its meeting (another spelling of the
same instant or email) is found unchanged the long way, and its new digest is written (one statement
per page) so the next run knows it at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from airflow_provider_gong.rules import MeetingLimits
from airflow_provider_gong.sync.records import CREATED, LedgerEntry

#: the meeting fields whose raw values make a row's meeting (``cancelled`` is read on its own)
PAYLOAD_FIELDS = ("key", "start_time", "end_time", "title", "organizer_email", "invitees", "external_id")
#: changes when the digest's recipe does: every row then goes the long way once, and is learnt again
_RECIPE = b"gong-source-row/1\x00"


class RowDigest:
    """The digest of a source row's raw values, for one run's ``timezone`` and ``limits``."""

    def __init__(self, timezone: str, limits: MeetingLimits, fields: Sequence[str] = PAYLOAD_FIELDS) -> None:
        """:param fields: the payload fields the source has a column for, in the order of :meth:`of`."""
        context = repr((timezone, sorted(limits.model_dump().items()), tuple(fields))).encode()
        self._base = hashlib.sha256(_RECIPE + context)

    def of(self, values: Sequence[Any]) -> str:
        """Return the hex digest of a row's payload values (those of ``fields``, in order)."""
        # repr() tells types apart (7 and '7') and is stable for what drivers return, but for a
        # memoryview, whose repr is its address: it is read as bytes
        text = repr(values)
        if "<memory at " in text:
            text = repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in values))
        digest = self._base.copy()
        digest.update(text.encode())
        return digest.hexdigest()


def unchanged(
    entry: LedgerEntry | None,
    digest: str | None,
    *,
    owner: str,
    limits: MeetingLimits,
    now: dt.datetime | None = None,
) -> bool:
    """
    Return True when :func:`~.plan.plan_row` would skip this live row as unchanged; False: ask it.

    True only when the row reads exactly as the version Gong holds (same digest) and nothing but its
    values could change the verdict: the entry is ``created`` (not this run's own claim) with a payload
    fingerprint and organizer; the meeting has not ended; and it started recently enough that
    validation cannot refuse it yet (a start more than ``max_past`` ago is refused): since it was valid
    under these limits, it started at most ``max_duration`` before its end. The caller checks
    ``cancelled`` and the sync mode.
    """
    if entry is None or digest is None or entry.source_fingerprint != digest:
        return False
    if entry.status != CREATED or entry.claimed_by == owner or not entry.fingerprint:
        return False
    if not entry.organizer_email or not entry.end_time:
        return False
    try:
        end = dt.datetime.fromisoformat(entry.end_time)
    except ValueError:
        return False
    if end.tzinfo is None:
        return False
    now = now or dt.datetime.now(dt.timezone.utc)
    return end > now and end - limits.max_duration >= now - limits.max_past
