"""
What counts as a plausible meeting: time window, duration, sizes, characters and email syntax.

Gong documents none of these limits, and what it accepts it turns into a consent link somebody will
email to a customer: a meeting in the year 9999, a title holding a NUL byte or an address with a hidden
right-to-left override is a bug upstream, not a meeting. These rules stop such values before any call,
and state each limit so a person can see (and, through :class:`MeetingLimits`, change) it.

Times follow one rule wherever they come from (ISO text, a naive ``TIMESTAMP``, an aware ``TIMESTAMPTZ``,
a driver ``datetime``): a value with an offset is that instant; a naive value is wall-clock time in the
task's ``timezone``. A wall-clock time that does not exist there (the hour skipped when clocks go
forward) is rejected; one that happens twice (the hour repeated when clocks go back) is read as the
first occurrence, the earlier instant.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
import zoneinfo
from typing import Any

import email_validator
import pendulum
from pydantic import BaseModel, ConfigDict, Field

_UTC = dt.timezone.utc
# Invisible characters that change how text reads without showing: bidi embeddings, overrides and
# isolates (the "Trojan Source" set), and zero-width spaces. Joiners (U+200C/U+200D) stay allowed:
# some scripts and emoji need them.
_INVISIBLE = {
    *map(chr, range(0x202A, 0x202F)),
    *map(chr, range(0x2066, 0x206A)),
    "\u200b",
    "\u2060",
    "\ufeff",
}


class MeetingLimits(BaseModel):
    """
    The plausibility limits every meeting is checked against.

    Pass your own to an operator to widen or tighten them (``limits={"max_duration": "PT48H"}`` works
    too: durations accept ISO-8601 text or seconds).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: how far in the past ``start_time`` may lie (late-running batches still get their link)
    max_past: dt.timedelta = Field(default=dt.timedelta(days=1), ge=dt.timedelta(0))
    #: how far ahead ``start_time`` may lie
    max_future: dt.timedelta = Field(default=dt.timedelta(days=3 * 365), gt=dt.timedelta(0))
    #: longest meeting (``end_time - start_time``)
    max_duration: dt.timedelta = Field(default=dt.timedelta(hours=24), gt=dt.timedelta(0))
    max_invitees: int = Field(default=100, ge=1)
    max_title_length: int = Field(default=1000, ge=1)
    max_name_length: int = Field(default=255, ge=1)
    max_external_id_length: int = Field(default=255, ge=1)

    @classmethod
    def of(cls, value: MeetingLimits | dict[str, Any] | None) -> MeetingLimits:
        """Accept what an operator argument may hold: limits, a mapping of fields, or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, MeetingLimits):
            return value
        return cls.model_validate(value)


#: What a top-level domain in the DNS root looks like: letters only (``com``, ``io``), at least two, or
#: an internationalised one in its ASCII form (``xn--p1ai``). email-validator lets ``a@example.c`` and
#: ``a@example.1a`` through, but no such domain can exist: an invitation there could never arrive.
_TLD = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}", re.IGNORECASE)


def zone(name: str) -> zoneinfo.ZoneInfo:
    """Return the IANA zone ``name``; ValueError naming it when it is unknown."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(f"timezone {shown(name)} is not a known IANA time zone") from exc


def to_instant(value: Any, timezone: str, what: str) -> pendulum.DateTime:
    """Read ``value`` as one instant, expressed in ``timezone`` (so equal instants give equal text)."""
    tz = zone(timezone)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError(f"{what} is empty")
        try:
            if not text[:4].isdigit():  # pendulum would read "now" as the current time
                raise ValueError(text)
            parsed = pendulum.parse(text, exact=True, tz=None)
        except (ValueError, pendulum.parsing.exceptions.ParserError) as exc:
            raise ValueError(f"{what} is not an ISO-8601 date-time: {shown(value)}") from exc
        if not isinstance(parsed, dt.datetime):
            raise ValueError(f"{what} needs a date and a time (ISO-8601), got {shown(value)}")
        value = dt.datetime(*parsed.timetuple()[:6], parsed.microsecond, tzinfo=parsed.tzinfo)
    elif not isinstance(value, dt.datetime):
        raise ValueError(f"{what} must be a datetime or an ISO-8601 string, got {shown(value)}")
    try:
        if value.tzinfo is not None and value.utcoffset() is not None:
            instant = value.astimezone(_UTC)
        else:
            instant = _wall_clock(value.replace(tzinfo=None), tz, timezone, what)
        return pendulum.instance(instant).in_timezone(timezone)
    except OverflowError:
        raise ValueError(f"{what} {value.isoformat()} is out of range") from None


def _wall_clock(naive: dt.datetime, tz: zoneinfo.ZoneInfo, name: str, what: str) -> dt.datetime:
    first = naive.replace(tzinfo=tz, fold=0)
    if first.astimezone(_UTC).astimezone(tz).replace(tzinfo=None) != naive.replace(fold=0):
        raise ValueError(
            f"{what} {naive.isoformat()} does not exist in {name}: clocks skip that hour there "
            "(daylight saving). Give the time with a UTC offset, or fix the source."
        )
    return first.astimezone(_UTC)  # fold=0: an hour that happens twice is read as the first one


def check_window(
    start: pendulum.DateTime, end: pendulum.DateTime, limits: MeetingLimits, now: dt.datetime
) -> None:
    """Start within ``[now - max_past, now + max_future]``; end after start, within ``max_duration``."""
    if end <= start:
        raise ValueError(f"end_time ({end.isoformat()}) must be after start_time ({start.isoformat()})")
    earliest, latest = now - limits.max_past, now + limits.max_future
    if start < earliest:
        raise ValueError(
            f"start_time {start.isoformat()} is more than {_human(limits.max_past)} in the past "
            f"(limit max_past); a consent link for it is too late"
        )
    if start > latest:
        raise ValueError(
            f"start_time {start.isoformat()} is more than {_human(limits.max_future)} ahead "
            f"(limit max_future, latest {latest.date().isoformat()})"
        )
    if end - start > limits.max_duration:
        raise ValueError(
            f"end_time: the meeting lasts {_human(end - start)}, longer than "
            f"{_human(limits.max_duration)} (limit max_duration)"
        )


def check_text(value: str, what: str, max_length: int) -> str:
    """Reject text that is too long or holds control or invisible characters (named by code point)."""
    if len(value) > max_length:
        raise ValueError(f"{what} is {len(value)} characters long; the limit is {max_length}")
    for position, char in enumerate(value):
        if char in _INVISIBLE or unicodedata.category(char) in ("Cc", "Cs"):
            raise ValueError(
                f"{what} contains the {_char_name(char)} character at position {position}; control and "
                "invisible characters are not allowed"
            )
    return value


def normalise_email(value: Any, what: str) -> str:
    """
    Return the address Gong gets, or ValueError saying why it is not one.

    Checked by ``email-validator`` without DNS lookups: RFC syntax and lengths, no control, zero-width or
    bidi characters, no quoted local parts or IP-literal domains. Internationalised domains are accepted
    and sent in their ASCII (IDNA) form; a non-ASCII part before the @ is rejected, since it needs
    SMTPUTF8 end to end and Gong matches users by plain address.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be an email address like name@company.com, got {shown(value)}")
    text = value.strip()
    try:
        info = email_validator.validate_email(
            text,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            strict=True,  # also the 64-character limit before the @
        )
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"{what} {shown(text)} is not a valid email address: {exc}") from None
    tld = info.ascii_domain.rpartition(".")[2]
    if not _TLD.fullmatch(tld):
        raise ValueError(
            f"{what} {shown(text)} is not a valid email address: no top-level domain is {shown(tld)} "
            "(they are two or more letters, or xn--... for an internationalised one)"
        )
    return str(info.ascii_email)


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: a 1 MB bad value must not become a 1 MB message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text)} chars)"


def _char_name(char: str) -> str:
    return f"U+{ord(char):04X}" + (f" {unicodedata.name(char)}" if unicodedata.name(char, "") else "")


def _human(delta: dt.timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:,.1f}".removesuffix(".0") + " days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}".removesuffix(".0") + " hours"
    return f"{seconds / 60:.1f}".removesuffix(".0") + " minutes"
