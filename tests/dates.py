"""Dates for tests, relative to today: fixed calendar dates would fall out of the plausibility window."""

from __future__ import annotations

import datetime as dt
import zoneinfo

_TODAY = dt.datetime.now(dt.timezone.utc).date()
#: a day comfortably inside the default window (start at most 1 day past, 3 years ahead)
SOON = (_TODAY + dt.timedelta(days=30)).isoformat()
SOON_AFTER = (_TODAY + dt.timedelta(days=31)).isoformat()
#: next calendar year: January is winter and July summer in the northern hemisphere
NEXT_YEAR = _TODAY.year + 1


def dst_changes(zone: str, year: int = NEXT_YEAR) -> tuple[dt.datetime, dt.datetime]:
    """(naive hour skipped when clocks go forward, naive hour repeated when they go back) in ``zone``."""
    tz = zoneinfo.ZoneInfo(zone)
    gap = fold = None
    hour = dt.datetime(year, 1, 1)
    while hour.year == year and (gap is None or fold is None):
        first, second = hour.replace(tzinfo=tz, fold=0), hour.replace(tzinfo=tz, fold=1)
        if first.utcoffset() != second.utcoffset():
            skipped = first.astimezone(dt.timezone.utc).astimezone(tz).replace(tzinfo=None) != hour
            if skipped:
                gap = gap or hour
            else:
                fold = fold or hour
        hour += dt.timedelta(minutes=30)
    assert gap is not None and fold is not None, f"{zone} has no DST in {year}"
    return gap, fold
