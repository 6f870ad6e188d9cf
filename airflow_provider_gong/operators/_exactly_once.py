"""
What a create task leaves behind, so that no Airflow retry creates a meeting twice.

Two records, for two readers. ``task_state_store`` (Airflow >= 3.3) survives the task's tries: "sending"
before the POST, the result right after it, so a retry either returns the stored result or, finding only
"sending", refuses to guess. The outcome XCom is for downstream tasks (a mapped write-back): it says how
far the task got, so "maybe sent" is never read as "not sent".

Imported at DAG parse time with the operators: the meeting model is imported where it is used.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pendulum

from airflow_provider_gong.exceptions import GongMeetingMayExistError

if TYPE_CHECKING:
    from airflow_provider_gong.meetings import MeetingResult

MEETING_ID_KEY = "meeting_id"
#: XCom key for people, not tasks: the meeting ID as the UI's XCom tab shows it exactly. Airflow's XCom
#: API (3.1-3.3) runs ``json.loads`` on a stored string, so the bare digits of ``meeting_id`` reach the
#: browser as a number and are rounded beyond 2**53 (Gong's IDs have 19 digits). This key holds the ID
#: as JSON text (``"7782342274025937895"``, quotes included), which that ``json.loads`` turns back into
#: the exact string. Tasks keep using ``meeting_id`` (a pull of this key returns the quotes too).
MEETING_ID_DISPLAY_KEY = "meeting_id_display"
#: task_state_store key: {"state": "sending"|"created", "at": ..., "try_number": ..., "result": {...}}
STATE_KEY = "gong_create_meeting"
#: XCom key saying how far this task got, for downstream bookkeeping (e.g. a mapped write-back):
#: "sending" is pushed before the POST and replaced by "created", "rejected" (provably nothing was
#: created: bad input or Gong refused) or "unknown" (the create may have happened). No key at all
#: means the task never got as far as sending.
OUTCOME_KEY = "gong_outcome"
SENDING, CREATED, REJECTED, UNKNOWN = "sending", "created", "rejected", "unknown"


def push_meeting_id(ti: Any, meeting_id: str) -> None:
    """Push ``meeting_id`` for downstream tasks and :data:`MEETING_ID_DISPLAY_KEY` for the UI."""
    ti.xcom_push(key=MEETING_ID_KEY, value=meeting_id)
    ti.xcom_push(key=MEETING_ID_DISPLAY_KEY, value=json.dumps(str(meeting_id)))


def stamp(ti: Any) -> dict[str, Any]:
    """When, and in which try, a record was written: what a later try's message quotes."""
    return {"at": pendulum.now("UTC").isoformat(), "try_number": getattr(ti, "try_number", None)}


def mark_sending(store: Any, ti: Any) -> None:
    """Durable before the POST: a later try then knows this one may have created the meeting."""
    store.set(STATE_KEY, {"state": "sending", **stamp(ti)})


def save(store: Any, ti: Any, result: MeetingResult) -> None:
    """Save the created meeting, for a retry to return without calling Gong."""
    store.set(STATE_KEY, {"state": "created", "result": result.to_dict(), **stamp(ti)})


def saved(store: Any, result: MeetingResult) -> bool:
    """Whether the store holds ``result`` after all (a failure after :func:`save` may have been late)."""
    try:
        stored = store.get(STATE_KEY)
    except Exception:
        return False
    return (
        isinstance(stored, dict)
        and stored.get("state") == "created"
        and (stored.get("result") or {}).get("meeting_id") == result.meeting_id
    )


def resume(previous: dict[str, Any], external_id: str | None, log: Any) -> MeetingResult:
    """Return what an earlier try of this task instance left behind: its result, or refuse to guess."""
    from airflow_provider_gong.meetings import MeetingResult

    result = MeetingResult.from_response(_camel(previous.get("result")))
    if previous.get("state") == "created" and result is not None:
        log.info(
            "An earlier try (try %s, %s) already created Gong meeting %s; returning it without "
            "calling Gong again.",
            previous.get("try_number"),
            previous.get("at"),
            result.meeting_id,
        )
        return result
    raise GongMeetingMayExistError(
        f"An earlier try of this task (try {previous.get('try_number')}, {previous.get('at')}) sent the "
        "create request and did not record an answer (it was killed or lost the answer). The meeting "
        "may exist in Gong; it was not sent again to avoid a duplicate. Check Gong (externalId "
        f"{external_id!r}), then clear the task's state (task_state_store key {STATE_KEY!r}) "
        "to create it."
    )


def _camel(result: Any) -> Any:
    """MeetingResult.to_dict() -> the shape of Gong's answer, for MeetingResult.from_response."""
    if not isinstance(result, dict):
        return None
    return {
        "meetingId": result.get("meeting_id"),
        "meetingUrl": result.get("meeting_url"),
        "requestId": result.get("request_id"),
        "additionalInvitees": result.get("additional_invitees"),
    }
