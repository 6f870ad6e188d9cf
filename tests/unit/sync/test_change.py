"""Change detection: the digest of a row as read, when the ledger's digest makes validation needless, the
rows validated only on demand, and the digests written for rows found unchanged the long way."""

from __future__ import annotations

import datetime as dt

import pendulum
import pytest

from airflow_provider_gong.rules import MeetingLimits
from airflow_provider_gong.sync.change import RowDigest, unchanged
from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.sync.plan import DEFAULT_COLUMNS
from airflow_provider_gong.sync.records import CREATED, FAILED, PENDING, LedgerEntry
from airflow_provider_gong.sync.rows import RowReader
from tests._support.counting import count_builds

NOW = dt.datetime(2030, 1, 1, 12, tzinfo=dt.timezone.utc)
LIMITS = MeetingLimits()
VALUES = (7, "2030-01-02T10:00:00Z", "2030-01-02T11:00:00Z", "Call", "rep@acme.com", "a@x.com", None)


def digest(values=VALUES, timezone="UTC", limits=LIMITS) -> str:
    return RowDigest(timezone, limits).of(values)


def test_the_digest_is_stable_and_tells_apart_what_could_change_the_meeting():
    assert digest() == digest() and len(digest()) == 64
    assert digest((*VALUES[:3], "Call!", *VALUES[4:])) != digest()
    assert digest(("7", *VALUES[1:])) != digest()  # 7 and '7': another value to a driver
    assert digest(timezone="Europe/Berlin") != digest()  # naive times read in another zone
    assert digest(limits=MeetingLimits(max_invitees=3)) != digest()  # another verdict possible
    as_bytes = (*VALUES[:6], b"\x01\x02")
    assert digest((*VALUES[:6], memoryview(b"\x01\x02"))) == digest(as_bytes)  # not its address


def entry(**changes) -> LedgerEntry:
    values = {
        "status": CREATED,
        "error_kind": None,
        "attempts": 1,
        "claimed_by": "run-0",
        "meeting_id": "1",
        "organizer_email": "rep@acme.com",
        "fingerprint": "f" * 64,
        "end_time": "2030-01-02T11:00:00+00:00",
        "source_fingerprint": digest(),
    }
    return LedgerEntry(**{**values, **changes})


def known(e: LedgerEntry | None, row_digest: str | None = None, limits=LIMITS) -> bool:
    return unchanged(e, row_digest or digest(), owner="run-1", limits=limits, now=NOW)


def test_a_live_row_that_reads_as_gong_holds_it_is_known_unchanged():
    assert known(entry()) is True


@pytest.mark.parametrize(
    "changes",
    [
        {"source_fingerprint": None},  # an older ledger, a settled row
        {"source_fingerprint": "0" * 64},  # the row reads differently
        {"status": FAILED},
        {"status": PENDING},
        {"claimed_by": "run-1"},  # this run's own claim: a second row with the key
        {"fingerprint": None},
        {"organizer_email": None},
        {"end_time": None},
        {"end_time": "not a time"},
        {"end_time": "2030-01-02T11:00:00"},  # no offset
        {"end_time": "2030-01-01T11:30:00+00:00"},  # over
    ],
)
def test_anything_else_goes_the_long_way(changes):
    assert known(entry(**changes)) is False


def test_no_entry_or_no_digest_goes_the_long_way():
    assert known(None) is False
    assert unchanged(entry(), None, owner="run-1", limits=LIMITS, now=NOW) is False


def test_a_meeting_whose_start_may_be_beyond_max_past_goes_the_long_way():
    """Valid when sent; whether validation refuses it now depends on its start, which only the row knows."""
    tight = MeetingLimits(max_past=dt.timedelta(hours=1), max_duration=dt.timedelta(hours=6))
    ends_soon = entry(end_time="2030-01-01T13:00:00+00:00", source_fingerprint=digest(limits=tight))
    assert known(ends_soon, digest(limits=tight), tight) is False  # it may have started 5 h ago
    later = entry(end_time="2030-01-01T20:00:00+00:00", source_fingerprint=digest(limits=tight))
    assert known(later, digest(limits=tight), tight) is True  # started at 14:00 at the earliest


NAMES = ["id", "start_time", "end_time", "title", "organizer_email", "invitees", "external_id", "cancelled"]


def test_rows_are_validated_only_when_their_meeting_is_asked_for(monkeypatch):
    built = count_builds(monkeypatch)
    start = pendulum.now("UTC").add(days=1).start_of("hour")
    good = (
        1,
        start.isoformat(),
        start.add(hours=1).isoformat(),
        "Call",
        "rep@acme.com",
        "a@x.com",
        None,
        None,
    )
    bad = (
        2,
        start.isoformat(),
        start.subtract(hours=1).isoformat(),
        "Call",
        "rep@acme.com",
        "a@x.com",
        None,
        1,
    )
    first, second = RowReader(DEFAULT_COLUMNS, "UTC", LIMITS).read(NAMES, [good, bad])
    assert built["rows"] == 0 and first.digest != second.digest
    assert second.cancelled is True and built["rows"] == 0  # read from the raw value
    assert "end_time" in (second.problem or "") and second.meeting is None
    assert first.meeting is not None and first.problem is None and built["rows"] == 2  # once each
    first.facts()
    assert built["rows"] == 2


def test_a_source_without_optional_columns_is_digested_too():
    names = NAMES[:6]
    start = pendulum.now("UTC").add(days=1).start_of("hour")
    row = (1, start.isoformat(), start.add(hours=1).isoformat(), "Call", "rep@acme.com", "a@x.com")
    (read,) = RowReader(DEFAULT_COLUMNS, "UTC", LIMITS).read(names, [row])
    (full,) = RowReader(DEFAULT_COLUMNS, "UTC", LIMITS).read(NAMES, [(*row, None, None)])
    assert read.digest and read.digest != full.digest  # another set of columns: learnt once


def test_learn_writes_a_digest_only_beside_the_fingerprint_it_was_found_with(sqlite_hook):
    ledger = ResultsLedger(sqlite_hook, "ledger", owner="run-a", sleep=lambda s: None)
    ledger.ensure_table()
    sqlite_hook.run(
        "INSERT INTO ledger (row_key, status, attempts, updated_at, fingerprint) VALUES "
        "('a', 'created', 1, 't', 'fa'), ('b', 'created', 1, 't', 'fb'), ('c', 'failed', 1, 't', 'fc')"
    )
    try:
        ledger.learn([("a", "da", "fa"), ("b", "db", "stale"), ("c", "dc", "fc")])
        rows = {r["row_key"]: r["source_fingerprint"] for r in ledger.read_all()}
    finally:
        ledger.close()
    assert rows == {"a": "da", "b": None, "c": None}
