"""A catalogue of implausible meetings, shared by the operator and the warehouse-row tests.

Each case changes a good meeting (:data:`GOOD`) in one way and names the field the error must name.
``row`` cases are text or NULL, so they can sit in a warehouse table of TEXT columns as well.
Times are relative to today, so the catalogue never expires. Naive times are read in :data:`TIMEZONE`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from tests.dates import NEXT_YEAR, SOON, SOON_AFTER, dst_changes

TIMEZONE = "America/New_York"
GOOD: dict[str, Any] = {
    "start_time": f"{SOON}T10:00:00Z",
    "end_time": f"{SOON}T10:30:00Z",
    "organizer_email": "rep@acme.com",
    "invitees": "buyer@client.com",
    "title": "Discovery call",
    "external_id": None,
}
_NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
_GAP, _ = dst_changes(TIMEZONE, NEXT_YEAR)
_GAP_TEXT = (_GAP + dt.timedelta(minutes=30)).isoformat()  # e.g. 2027-03-14T02:30:00, never on a wall clock


def _at(delta: dt.timedelta) -> str:
    return (_NOW + delta).isoformat()


def _span(start: str, end: str) -> dict[str, str]:
    return {"start_time": start, "end_time": end}


@dataclass(frozen=True)
class Bad:
    name: str
    changes: dict[str, Any]
    field: str  # the message must name it
    row: bool = True  # storable as TEXT/NULL in a warehouse row

    @property
    def has_nul(self) -> bool:  # PostgreSQL TEXT cannot hold NUL; such rows exist only in SQLite
        return any(isinstance(v, str) and "\x00" in v for v in self.changes.values())

    def meeting(self) -> dict[str, Any]:
        return {**GOOD, **self.changes}


def _email_cases(field: str) -> list[Bad]:
    values = {
        "no_at": "rep",
        "no_dot_in_domain": "rep@acme",
        "double_at": "rep@@acme.com",
        "two_addresses_comma": "a@b.com, c@d.com",
        "two_addresses_semicolon_no_space": "a@x.com;b@y.com",
        "double_dot_local": "a..b@x.com",
        "leading_dot": ".a@x.com",
        "trailing_dot_local": "a.@x.com",
        "hyphen_after_at": "a@-x.com",
        "hyphen_before_dot": "a@x-.com",
        "mailto_prefix": "mailto:a@x.com",
        "nul_inside": "a\x00b@x.com",
        "zero_width_space": "a\u200bb@x.com",
        "right_to_left_override": "a\u202eb@x.com",
        "bidi_in_domain": "rep@acme.com\u202e",
        "zero_width_in_domain": "rep@ex\u200bample.com",
        "local_part_1000": "x" * 1000 + "@x.com",
        "local_part_65": "x" * 65 + "@x.com",
        "domain_label_300": "a@" + "x" * 300 + ".com",
        "space_inside": "a b@x.com",
        "tab_inside": "a\tb@x.com",
        "quoted_local": '"quoted"@x.com',
        "ip_literal": "a@[127.0.0.1]",
        "non_ascii_local": "ü@x.com",
        "double_dot_domain": "a@x..com",
        "trailing_dot_domain": "a@x.com.",
        "one_letter_tld": "a@example.c",  # no top-level domain has one letter
        "tld_starting_with_a_digit": "a@example.1a",
        "numeric_tld": "a@x.123",
        "angle_brackets": "<a@x.com>",
        "display_name_form": "Rep <rep@acme.com>",
        "nothing_before_at": "@acme.com",
        "nothing_after_at": "rep@",
        "underscore_domain": "rep@acme_corp.com",
        "query_string": "a@b.com?x=1",
        "bad_punycode": "a@xn--zz.com",
        "localhost": "rep@localhost",
    }
    if field == "organizer_email":
        return [Bad(f"organizer_{k}", {"organizer_email": v}, "organizer_email") for k, v in values.items()]
    # As JSON text (escaped, so NUL and tabs survive PostgreSQL and json.loads).
    return [Bad(f"invitee_{k}", {"invitees": json.dumps([v])}, "invitee email") for k, v in values.items()]


CASES: list[Bad] = [
    # -- times: shape ---------------------------------------------------------------------------
    Bad("start_words", {"start_time": "tomorrow at ten"}, "start_time"),
    Bad("start_now_keyword", {"start_time": "now"}, "start_time"),
    Bad("start_empty", {"start_time": ""}, "start_time"),
    Bad("start_blank", {"start_time": "   "}, "start_time"),
    Bad("start_date_only", {"start_time": SOON}, "start_time"),
    Bad("start_time_only", {"start_time": "10:00"}, "start_time"),
    Bad("end_time_only", {"end_time": "15:30"}, "end_time"),
    Bad("end_duration_text", {"end_time": "P1D"}, "end_time"),
    Bad("start_feb_30", {"start_time": f"{NEXT_YEAR}-02-30T10:00:00"}, "start_time"),
    Bad("start_month_13", {"start_time": f"{NEXT_YEAR}-13-01T10:00:00"}, "start_time"),
    Bad("start_hour_25", {"start_time": f"{NEXT_YEAR}-01-01T25:00:00"}, "start_time"),
    Bad("start_offset_25h", {"start_time": f"{SOON}T10:00:00+25:00"}, "start_time"),
    Bad("start_trailing_junk", {"start_time": f"{SOON}T10:00:00Z junk"}, "start_time"),
    Bad("start_nul", {"start_time": f"{SOON}T10:00:00\x00Z"}, "start_time"),
    Bad("start_epoch_number", {"start_time": 1741100400}, "start_time", row=False),
    Bad("start_list", {"start_time": [SOON]}, "start_time", row=False),
    Bad("end_date_object", {"end_time": dt.date.fromisoformat(SOON)}, "end_time", row=False),
    # -- times: plausibility --------------------------------------------------------------------
    Bad("year_0001", _span("0001-01-01T10:00:00Z", "0001-01-01T10:30:00Z"), "start_time"),
    Bad("year_9999", _span("9999-12-31T10:00:00Z", "9999-12-31T10:30:00Z"), "start_time"),
    Bad("lasts_7900_years", {"end_time": "9925-01-01T10:30:00Z"}, "end_time"),
    Bad(
        "two_days_ago",
        _span(_at(-dt.timedelta(days=2)), _at(-dt.timedelta(days=2, minutes=-30))),
        "start_time",
    ),
    Bad(
        "four_years_ahead",
        _span(_at(dt.timedelta(days=4 * 365)), _at(dt.timedelta(days=4 * 365, minutes=30))),
        "start_time",
    ),
    Bad("lasts_25_hours", {"end_time": f"{SOON_AFTER}T11:00:00Z"}, "end_time"),
    Bad("ends_at_start", {"end_time": f"{SOON}T10:00:00Z"}, "end_time"),
    Bad("ends_before_start", {"end_time": f"{SOON}T09:00:00Z"}, "end_time"),
    Bad("dst_gap_start", _span(_GAP_TEXT, (_GAP + dt.timedelta(hours=2)).isoformat()), "start_time"),
    Bad("dst_gap_end", _span((_GAP - dt.timedelta(hours=1)).isoformat(), _GAP_TEXT), "end_time"),
    # -- organizer and invitee emails -------------------------------------------------------------
    *_email_cases("organizer_email"),
    Bad("organizer_empty", {"organizer_email": ""}, "organizer_email"),
    Bad("organizer_number", {"organizer_email": 42}, "organizer_email", row=False),
    *_email_cases("invitees"),
    # -- invitees: shape and sizes ----------------------------------------------------------------
    Bad("invitees_empty_text", {"invitees": ""}, "invitees"),
    Bad("invitees_empty_json_list", {"invitees": "[]"}, "invitees"),
    Bad("invitees_only_organizer", {"invitees": "rep@acme.com"}, "invitees"),
    Bad("invitees_broken_json", {"invitees": "[oops"}, "invitees"),
    Bad("invitees_unknown_key", {"invitees": '[{"mail": "a@b.com"}]'}, "invitees"),
    Bad("invitees_no_email", {"invitees": '[{"displayName": "No email"}]'}, "email"),
    Bad("invitees_null_email", {"invitees": '[{"email": null}]'}, "email"),
    Bad("invitees_number_item", {"invitees": "[42]"}, "invitees"),
    Bad("invitees_null_item", {"invitees": "[null]"}, "invitees"),
    Bad("invitees_one_bad_in_list", {"invitees": "a@b.com; a..b@x.com"}, "invitee email"),
    Bad("invitees_101", {"invitees": ", ".join(f"u{i}@client.com" for i in range(101))}, "invitees"),
    Bad("display_name_number", {"invitees": '[{"email": "a@b.com", "displayName": 5}]'}, "display_name"),
    Bad(
        "display_name_1mb",
        {"invitees": '[{"email": "a@b.com", "displayName": "' + "x" * 1_000_000 + '"}]'},
        "display_name",
    ),
    Bad(
        "display_name_nul",
        {"invitees": '[{"email": "a@b.com", "displayName": "Pat\\u0000"}]'},
        "display_name",
    ),
    Bad(
        "display_name_bidi",
        {"invitees": '[{"email": "a@b.com", "displayName": "Pat\\u202eevil"}]'},
        "display_name",
    ),
    Bad(
        "first_name_256",
        {"invitees": '[{"email": "a@b.com", "firstName": "' + "x" * 256 + '"}]'},
        "first_name",
    ),
    Bad("first_name_newline", {"invitees": '[{"email": "a@b.com", "firstName": "Pat\\nB"}]'}, "first_name"),
    Bad("last_name_zero_width", {"invitees": '[{"email": "a@b.com", "lastName": "B\\u200bx"}]'}, "last_name"),
    Bad(
        "last_name_escape_seq",
        {"invitees": '[{"email": "a@b.com", "lastName": "\\u001b[31mred"}]'},
        "last_name",
    ),
    Bad("invitees_number", {"invitees": 7}, "invitees", row=False),
    Bad("invitees_object_item", {"invitees": [object()]}, "invitees", row=False),
    # -- title ------------------------------------------------------------------------------------
    Bad("title_1001", {"title": "x" * 1001}, "title"),
    Bad("title_1mb", {"title": "x" * 1_000_000}, "title"),
    Bad("title_nul", {"title": "Call\x00"}, "title"),
    Bad("title_newline", {"title": "line1\nline2"}, "title"),
    Bad("title_tab", {"title": "a\tb"}, "title"),
    Bad("title_bidi_override", {"title": "\u202eevil"}, "title"),
    Bad("title_bidi_isolate", {"title": "x\u2066y"}, "title"),
    Bad("title_zero_width", {"title": "zero\u200bwidth"}, "title"),
    Bad("title_ansi_escape", {"title": "\x1b[31mred"}, "title"),
    Bad("title_bom", {"title": "\ufeffCall"}, "title"),
    Bad("title_delete_char", {"title": "Call\x7f"}, "title"),
    Bad("title_c1_control", {"title": "Call\x85me"}, "title"),
    Bad("title_number", {"title": 42}, "title", row=False),
    # -- external_id -----------------------------------------------------------------------------
    Bad("external_id_256", {"external_id": "x" * 256}, "external_id"),
    Bad("external_id_1mb", {"external_id": "x" * 1_000_000}, "external_id"),
    Bad("external_id_nul", {"external_id": "crm\x00-1"}, "external_id"),
    Bad("external_id_newline", {"external_id": "crm\n1"}, "external_id"),
    Bad("external_id_isolate", {"external_id": "\u2066id"}, "external_id"),
    Bad("external_id_list", {"external_id": ["a"]}, "external_id", row=False),
    Bad("external_id_dict", {"external_id": {"a": 1}}, "external_id", row=False),
    # -- task settings (operator only: in a batch they fail the task, not a row) -------------------
    Bad("timezone_unknown", {"timezone": "Mars/Olympus"}, "timezone", row=False),
    Bad("timezone_empty", {"timezone": ""}, "timezone", row=False),
    Bad("limits_bad_duration", {"limits": {"max_duration": "soon"}}, "max_duration", row=False),
    Bad("limits_zero_invitees", {"limits": {"max_invitees": 0}}, "max_invitees", row=False),
    Bad("limits_unknown_field", {"limits": {"max_guests": 3}}, "max_guests", row=False),
]
