"""
The meeting model: validate user input once, before any call, and build Gong's JSON body.

The single-meeting operator and the warehouse batch both go through :meth:`Meeting.build`, so a row
in a table and an operator argument are held to the same rules and produce the same payload.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pendulum
from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from airflow_provider_gong.exceptions import GongValidationError
from airflow_provider_gong.rules import (
    MeetingLimits,
    check_text,
    check_window,
    normalise_email,
    shown,
    to_instant,
    zone,
)

_INVITEE_KEYS = {
    "email": "email",
    "displayName": "display_name",
    "display_name": "display_name",
    "name": "display_name",
    "firstName": "first_name",
    "first_name": "first_name",
    "lastName": "last_name",
    "last_name": "last_name",
}


def parse_invitees(value: Any) -> list[dict[str, Any]]:
    """
    Accept the shapes invitees arrive in and return a list of invitee dicts.

    Shapes: a list of emails; a list of ``{email, displayName, firstName, lastName}`` dicts (camelCase
    or snake_case); a JSON string of either (templated values and warehouse columns); or a string of
    emails separated by commas or semicolons.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"invitees looks like JSON but does not parse: {exc.msg}") from exc
        else:
            value = [part.strip() for part in re.split(r"[,;]", text) if part.strip()]
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, Iterable) or isinstance(value, (str, bytes)):
        raise ValueError(f"invitees must be a list of emails or invitee objects, got {shown(value)}")
    result: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        if isinstance(item, str):
            result.append({"email": item})
        elif isinstance(item, Invitee):
            result.append(item.model_dump())
        elif isinstance(item, Mapping):
            unknown = set(item) - set(_INVITEE_KEYS)
            if unknown:
                raise ValueError(f"invitees[{index}] has unknown keys {sorted(unknown)}")
            result.append({_INVITEE_KEYS[k]: v for k, v in item.items()})
        else:
            raise ValueError(f"invitees[{index}] must be an email or an object, got {shown(item)}")
    return result


def _limits(info: ValidationInfo) -> MeetingLimits:
    return (info.context or {}).get("limits") or MeetingLimits()


def _text(value: Any, info: ValidationInfo, what: str, max_length: int) -> str | None:
    """Check optional text: blank means absent; otherwise bounded and free of control characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text, got {type(value).__name__}")
    if not value.strip():
        return None
    return check_text(value.strip(), what, max_length)


class Invitee(BaseModel):
    """One invitee of a meeting (the organizer is never one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: str
    display_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None

    @field_validator("email", mode="before")
    @classmethod
    def _email(cls, value: Any) -> str:
        return normalise_email(value, "invitee email")

    @field_validator("display_name", "first_name", "last_name", mode="before")
    @classmethod
    def _names(cls, value: Any, info: ValidationInfo) -> str | None:
        return _text(value, info, str(info.field_name), _limits(info).max_name_length)

    def to_payload(self) -> dict[str, str]:
        body = {
            "email": self.email,
            "displayName": self.display_name,
            "firstName": self.first_name,
            "lastName": self.last_name,
        }
        return {k: v for k, v in body.items() if v}


class Meeting(BaseModel):
    """
    A validated, plausible meeting.

    Build it with :meth:`build`, which turns problems into :class:`GongValidationError` naming the
    field; the limits are in :mod:`airflow_provider_gong.rules`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    start_time: pendulum.DateTime
    end_time: pendulum.DateTime
    organizer_email: str
    invitees: tuple[Invitee, ...]
    title: str | None = None
    external_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        timezone = (info.context or {}).get("timezone", "UTC")
        data = dict(data)
        for name in ("start_time", "end_time"):
            if name in data:
                data[name] = to_instant(data[name], timezone, name)
        if "invitees" in data:
            data["invitees"] = parse_invitees(data["invitees"])
            limit = _limits(info).max_invitees
            if len(data["invitees"]) > limit:
                raise ValueError(
                    f"invitees: {len(data['invitees'])} invitees, more than the limit of {limit} "
                    "(limit max_invitees)"
                )
        external_id = data.get("external_id")
        if isinstance(external_id, (int, dt.date)) and not isinstance(external_id, bool):
            data["external_id"] = str(external_id)  # warehouse keys are often integers
        return data

    @field_validator("organizer_email", mode="before")
    @classmethod
    def _organizer(cls, value: Any) -> str:
        return normalise_email(value, "organizer_email")

    @field_validator("title", mode="before")
    @classmethod
    def _title(cls, value: Any, info: ValidationInfo) -> str | None:
        return _text(value, info, "title", _limits(info).max_title_length)

    @field_validator("external_id", mode="before")
    @classmethod
    def _external_id(cls, value: Any, info: ValidationInfo) -> str | None:
        return _text(value, info, "external_id", _limits(info).max_external_id_length)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Meeting:
        context = info.context or {}
        now = context.get("now") or dt.datetime.now(dt.timezone.utc)
        check_window(self.start_time, self.end_time, _limits(info), now)
        organizer = self.organizer_email.lower()
        seen: set[str] = set()
        unique: list[Invitee] = []
        for invitee in self.invitees:
            key = invitee.email.lower()
            if key == organizer or key in seen:
                continue
            seen.add(key)
            unique.append(invitee)
        if not unique:
            raise ValueError("invitees: at least one invitee other than the organizer is required")
        object.__setattr__(self, "invitees", tuple(unique))
        return self

    @classmethod
    def build(
        cls,
        *,
        start_time: Any,
        end_time: Any,
        organizer_email: Any,
        invitees: Any,
        title: Any = None,
        external_id: Any = None,
        timezone: str = "UTC",
        limits: MeetingLimits | Mapping[str, Any] | None = None,
        now: dt.datetime | None = None,
    ) -> Meeting:
        """
        Validate raw input into a Meeting.

        :param timezone: IANA name used to read naive start/end values (default UTC).
        :param limits: plausibility limits (default :class:`MeetingLimits`).
        :param now: the instant the time window is measured from (default: the current time).
        :raises GongValidationError: naming each bad field.
        """
        try:
            zone(timezone)
            checked = MeetingLimits.of(dict(limits) if isinstance(limits, Mapping) else limits)
        except ValidationError as exc:
            raise GongValidationError(f"invalid limits: {_describe(exc)}") from None
        except ValueError as exc:
            raise GongValidationError(str(exc)) from None
        data = {
            "start_time": start_time,
            "end_time": end_time,
            "organizer_email": organizer_email,
            "invitees": invitees,
            "title": title,
            "external_id": external_id,
        }
        missing = [k for k in ("start_time", "end_time", "organizer_email", "invitees") if data[k] is None]
        if missing:
            raise GongValidationError(f"invalid meeting: missing required field(s) {', '.join(missing)}")
        context = {"timezone": timezone, "limits": checked, "now": now}
        try:
            return cls.model_validate(data, context=context)
        except ValidationError as exc:
            raise GongValidationError(f"invalid meeting: {_describe(exc)}") from None
        except ValueError as exc:  # raised by the "before" normaliser outside pydantic's wrapping
            raise GongValidationError(f"invalid meeting: {exc}") from None

    def to_payload(self) -> dict[str, Any]:
        """Gong's camelCase JSON body for create and update (always with an explicit UTC offset)."""
        body: dict[str, Any] = {
            "startTime": self.start_time.isoformat(),
            "endTime": self.end_time.isoformat(),
            "organizerEmail": self.organizer_email,
            "invitees": [i.to_payload() for i in self.invitees],
        }
        if self.title:
            body["title"] = self.title
        if self.external_id:
            body["externalId"] = self.external_id
        return body

    def fingerprint(self) -> str:
        """
        Return a digest of what Gong holds for this meeting, blind to presentation.

        Times in UTC, emails lower-cased, invitees in any order. Equal fingerprints: nothing to update.
        """
        body = self.to_payload()
        body["startTime"] = self.start_time.in_timezone("UTC").isoformat()
        body["endTime"] = self.end_time.in_timezone("UTC").isoformat()
        body["organizerEmail"] = self.organizer_email.lower()
        body["invitees"] = sorted(
            ({**i, "email": i["email"].lower()} for i in body["invitees"]), key=lambda i: i["email"]
        )
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _describe(exc: ValidationError) -> str:
    messages = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        messages.append(f"{where}: {msg}" if where and not msg.startswith(where) else msg)
    return "; ".join(messages)


@dataclass(frozen=True)
class MeetingResult:
    """What Gong returned for a created meeting. IDs stay strings: they exceed 2**53."""

    meeting_id: str
    meeting_url: str
    request_id: str | None = None
    additional_invitees: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_response(cls, body: Any) -> MeetingResult | None:
        """
        Read Gong's create answer; None when it holds no usable ``meetingId``.

        Lenient about everything else on purpose: once Gong has created a meeting, its ID must reach
        the caller even if the URL or ``additionalInvitees`` come back in an odd shape (malformed
        invitee entries are dropped, a non-string URL becomes "").
        """
        if not isinstance(body, Mapping):
            return None
        raw_id = body.get("meetingId")
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or not str(raw_id).strip():
            return None
        url = body.get("meetingUrl")
        request_id = body.get("requestId")
        extra = body.get("additionalInvitees")
        invitees = [
            {str(k): v for k, v in item.items() if isinstance(v, (str, int, float, bool)) or v is None}
            for item in (extra if isinstance(extra, list) else [])
            if isinstance(item, Mapping)
        ]
        return cls(
            meeting_id=str(raw_id).strip(),
            meeting_url=url if isinstance(url, str) else "",
            request_id=str(request_id) if isinstance(request_id, (str, int)) else None,
            additional_invitees=invitees,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "meeting_id": self.meeting_id,
            "meeting_url": self.meeting_url,
            "request_id": self.request_id,
            "additional_invitees": self.additional_invitees,
        }
