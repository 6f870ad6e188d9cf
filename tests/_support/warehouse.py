"""A warehouse table of meetings in the standard column layout, for demos and DAG tests.

Layout (the defaults of SqlToGongMeetingsOperator): ``id, start_time, end_time, title,
organizer_email, invitees, external_id`` and ``cancelled`` (read by the sync modes; NULL = live).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

STANDARD_COLUMNS = ("id", "start_time", "end_time", "title", "organizer_email", "invitees", "external_id")


def create_meetings_table(
    hook: Any, table: str = "meetings_to_schedule", *, timestamp_type: str = "TIMESTAMP"
) -> None:
    """Create the table if absent. ``timestamp_type`` lets a test use e.g. TIMESTAMPTZ on PostgreSQL."""
    hook.run(
        f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, start_time {timestamp_type}, "
        f"end_time {timestamp_type}, title VARCHAR(1000), organizer_email VARCHAR(320), invitees TEXT, "
        "external_id VARCHAR(255), cancelled BOOLEAN)"
    )


def insert_meetings(hook: Any, rows: Iterable[Sequence[Any]], table: str = "meetings_to_schedule") -> None:
    hook.insert_rows(table, list(rows), target_fields=list(STANDARD_COLUMNS), commit_every=1000)


def demo_rows(count: int = 12, *, start: datetime | None = None, bad: bool = True) -> list[tuple[Any, ...]]:
    """``count`` good meetings (a mix of invitee formats and time zones) and, with ``bad``, two bad
    ones at the end: an organizer who is no Gong user, and an end before its start."""
    base = (start or datetime.now(timezone.utc) + timedelta(days=1)).replace(
        minute=0, second=0, microsecond=0
    )
    organizers = ("rep@acme.com", "ae@acme.com", "csm@acme.com")
    rows: list[tuple[Any, ...]] = []
    for i in range(1, count + 1):
        begin = base + timedelta(hours=i)
        invitees = (
            f'["buyer{i}@client.com", {{"email": "cfo{i}@client.com", "displayName": "CFO {i}"}}]'
            if i % 2
            else f"buyer{i}@client.com; champion{i}@client.com"
        )
        rows.append(
            (
                i,
                begin.isoformat(),
                (begin + timedelta(minutes=30)).isoformat(),
                f"Discovery call #{i}",
                organizers[i % 3],
                invitees,
                f"crm-evt-{1000 + i}",
            )
        )
    if bad:
        begin = base + timedelta(hours=count + 1)
        rows.append(
            (
                count + 1,
                begin.isoformat(),
                (begin + timedelta(minutes=30)).isoformat(),
                "Unknown organizer",
                "nobody@acme.com",
                "buyer@client.com",
                f"crm-evt-{1001 + count}",
            )
        )
        rows.append(
            (
                count + 2,
                begin.isoformat(),
                (begin - timedelta(minutes=30)).isoformat(),
                "Ends before start",
                "rep@acme.com",
                "buyer@client.com",
                f"crm-evt-{1002 + count}",
            )
        )
    return rows
