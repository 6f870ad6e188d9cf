"""
Preflight: Gong's integration-status verdict on each organizer, asked once, before the creates.

An organizer who is not a Gong user, or has no valid consent page, would fail every create of theirs
with a 4xx; asking once per organizer turns those calls into one, and the rows fail with Gong's own
words (and its fix URL). The preflight never sinks the batch: when Gong will not answer it, the
rows are checked by their creates as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from airflow_provider_gong.exceptions import GongError
from airflow_provider_gong.hooks.gong import GongHook
from airflow_provider_gong.meetings import Meeting
from airflow_provider_gong.rules import normalise_email

log = logging.getLogger(__name__)


class Preflight:
    """Organizers' verdicts for one run. ``enabled`` False: every meeting passes."""

    def __init__(self, gong: GongHook, *, enabled: bool) -> None:
        self.gong = gong
        self.enabled = enabled
        self.organizers: dict[str, dict[str, Any]] = {}

    def check(self, organizers: Iterable[Any]) -> None:
        """Ask Gong once per new organizer; never sink the batch (its rows are checked on create)."""
        if not self.enabled:
            return
        emails = {email.lower() for value in organizers if (email := _email_or_none(value))}
        new = sorted(emails - set(self.organizers))
        if not new:
            return
        try:
            users = self.gong.get_integration_status(new)
        except GongError as exc:
            log.warning("Preflight skipped: Gong's integration-status call failed (%s). Continuing.", exc)
            self.enabled = False
            return
        for user in users:
            self.organizers[str(user.get("email", "")).lower()] = user
        for email in new:  # Gong silent about an address: treat it as unknown
            self.organizers.setdefault(email, {"exists": False, "valid": False})
        log.info("Preflight checked %d organizer(s) with Gong", len(new))

    def verdict(self, meeting: Meeting | None, problem: str | None) -> tuple[Meeting | None, str | None]:
        """Return the meeting as it may be sent, or (None, why not), the preflight's refusal included."""
        if meeting is None:
            return None, problem
        refusal = self.organizers.get(meeting.organizer_email.lower())
        if refusal is not None and not (refusal.get("exists") and refusal.get("valid")):
            reason = (
                refusal.get("userFacingError") or "organizer is not a Gong user with a valid consent page"
            )
            fix = f" Fix it here: {refusal['fixUrl']}" if refusal.get("fixUrl") else ""
            return None, f"Preflight: {meeting.organizer_email}: {reason}{fix}"
        return meeting, None


def _email_or_none(value: Any) -> str | None:
    """Return the address as the meeting will carry it (IDNA domain), or None when it is not one."""
    try:
        return normalise_email(value, "organizer_email")
    except ValueError:
        return None
