"""
Operators for single Gong meetings (create, update, delete, integration status).

They validate input and delegate every call to GongHook.

DAG files import this module on every parse, so it imports only what a DAG needs to build the
operators; the hook (requests), the meeting model and its rules (pydantic, email-validator) are imported
in ``execute``, where they are used (tests/unit/test_lazy_imports.py keeps it that way).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_gong import DEFAULT_CONN_ID
from airflow_provider_gong._compat import task_state_store
from airflow_provider_gong.deferral import call_or_defer, default_deferrable, defer_for_quota, may_defer
from airflow_provider_gong.exceptions import (
    GongError,
    GongMeetingMayExistError,
    GongPermanentError,
    GongRateLimitError,
    GongValidationError,
)
from airflow_provider_gong.links import MEETING_URL_KEY, GongMeetingLink
from airflow_provider_gong.operators import _exactly_once

# Re-exported: the XCom keys and outcomes are documented under this module.
from airflow_provider_gong.operators._exactly_once import (
    CREATED as CREATED,
    MEETING_ID_DISPLAY_KEY as MEETING_ID_DISPLAY_KEY,
    MEETING_ID_KEY as MEETING_ID_KEY,
    OUTCOME_KEY as OUTCOME_KEY,
    REJECTED as REJECTED,
    SENDING as SENDING,
    STATE_KEY as STATE_KEY,
    UNKNOWN as UNKNOWN,
)
from airflow_provider_gong.operators._fields import MeetingFieldsOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_gong.lineage import Lineage
    from airflow_provider_gong.meetings import Meeting, MeetingResult


class GongCreateMeetingOperator(MeetingFieldsOperator):
    """
    Create a Gong consent-meeting link (POST /v2/meetings).

    Pushes XCom ``meeting_id``, ``meeting_url``, ``gong_outcome`` (:data:`OUTCOME_KEY`) and, for people,
    ``meeting_id_display`` (:data:`MEETING_ID_DISPLAY_KEY`); returns ``meeting_id``, ``meeting_url``,
    ``request_id`` and ``additional_invitees`` (IDs are strings). Add ``additional_invitees`` (e.g.
    Gong's assistant) to your calendar invite, or Gong will not record the call.

    Bad input and Gong's permanent answers (400/401/403/404/409) fail the task without Airflow
    retries. A create whose outcome is unknown (timeout, dropped connection, 5xx) also fails without
    retries: re-running it could create the meeting twice.

    Exactly once across Airflow retries (Airflow >= 3.3, ``task_state_store``): the task records
    "sending" before the POST and the result right after it. A retry that finds the result returns
    it (and pushes the XCom again) without calling Gong; one that finds only "sending" fails
    permanently as "may exist", because the earlier try may have created the meeting. Failures that
    prove Gong created nothing (4xx, 429, no connection) clear the mark, so a retry creates it. On
    older Airflow there is no such store: a failure after the POST inside this operator is made
    permanent (no retry), but a worker killed between Gong's answer and the end of the task can lead
    to a second meeting on retry; use ``retries=0`` there if that matters.

    :param start_time: datetime, pendulum value or ISO-8601 string (templated).
    :param end_time: same; must be after ``start_time`` (templated).
    :param invitees: list of emails or of ``{email, displayName, firstName, lastName}`` dicts, or a
        JSON string of either, or "a@x.com, b@y.com" (templated). The organizer is removed if present.
    :param organizer_email: a Gong user; their consent-page settings apply (templated).
    :param title: optional event title (templated).
    :param external_id: optional ID from your system, e.g. the CRM event ID (templated).
    :param timezone: IANA zone used to read naive start/end values (default UTC; templated). A naive
        time the zone skips (daylight saving) is rejected; a repeated one is read as its first occurrence.
    :param limits: plausibility limits (:class:`~airflow_provider_gong.rules.MeetingLimits` or a dict of
        its fields): by default the start lies between 1 day ago and 3 years ahead and the meeting
        lasts at most 24 hours.
    :param gong_conn_id: the Gong connection (templated).
    :param deferrable: when Gong's quota is spent (a 429 whose Retry-After exceeds ``max_retry_wait``,
        or the shared daily budget), defer with a ``DateTimeTrigger`` until then and create it after,
        instead of failing. Default: ``[operators] default_deferrable``.

    .. code-block:: python

        GongCreateMeetingOperator(
            task_id="create_meeting",
            start_time="{{ data_interval_end.add(days=1).isoformat() }}",
            end_time="{{ data_interval_end.add(days=1, minutes=30).isoformat() }}",
            invitees=["buyer@client.com"],
            organizer_email="rep@acme.com",
            title="Discovery call",
        )
    """

    template_fields: Sequence[str] = (
        "gong_conn_id",
        "start_time",
        "end_time",
        "invitees",
        "organizer_email",
        "title",
        "external_id",
        "timezone",
    )
    template_fields_renderers = {"invitees": "json"}
    operator_extra_links = (GongMeetingLink(),)
    ui_color = "#8039df"

    def execute(self, context: Context) -> dict[str, Any]:
        ti = context["ti"]
        try:
            return self._create(ti, task_state_store(context))
        except GongMeetingMayExistError:
            self._mark(ti, UNKNOWN, best_effort=True)
            raise
        except GongRateLimitError as exc:  # nothing created: wait out the quota if allowed
            if self.deferrable and may_defer(exc):
                defer_for_quota(self, exc)
            self._mark(ti, REJECTED, best_effort=True)
            raise
        except GongError:  # bad input or Gong's refusal: provably nothing created
            self._mark(ti, REJECTED, best_effort=True)
            raise

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Back from a quota deferral: the 429 created nothing, so create it now."""
        return self.execute(context)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Lineage:
        """
        OpenLineage (optional extra): this task writes to the Gong account's ``meetings`` dataset.

        Called by the OpenLineage listener on success and on failure; the meeting ID comes from the XCom
        this task pushed, so a failed create reports the dataset without a count or a meeting.
        """
        from airflow_provider_gong.lineage import meeting_lineage, pulled

        meeting_id = pulled(task_instance, MEETING_ID_KEY)
        return meeting_lineage(
            gong_conn_id=self.gong_conn_id,
            action="create",
            meeting_id=meeting_id,
            written=1 if meeting_id else None,
        )

    def _create(self, ti: Any, store: Any) -> dict[str, Any]:
        if store is None:
            self.log.warning(
                "This Airflow has no task_state_store (added in 3.3): a retry after a worker dies "
                "between Gong's answer and the end of this task could create the meeting twice."
            )
        else:
            previous = store.get(STATE_KEY)
            if isinstance(previous, dict):
                result = _exactly_once.resume(previous, self.external_id, self.log)
                self._push(ti, result)
                return result.to_dict()
        meeting = self._meeting()
        self._mark(ti, SENDING)  # durable before the POST: downstream can tell "maybe sent" from "not sent"
        if store is not None:
            _exactly_once.mark_sending(store, ti)
        result = self._send(meeting, store)
        # Logged first: from here on, nothing may lose this meeting ID or lead to a second POST.
        self.log.info(
            "Created Gong meeting %s (%s), requestId=%s, for %s at %s",
            result.meeting_id,
            result.meeting_url,
            result.request_id,
            meeting.organizer_email,
            meeting.start_time.isoformat(),
        )
        self._record(ti, store, result)
        if result.additional_invitees:
            self.log.info(
                "Add these to the calendar invite so Gong records the call: %s",
                ", ".join(str(i.get("email", "?")) for i in result.additional_invitees),
            )
        return result.to_dict()

    def _send(self, meeting: Meeting, store: Any) -> MeetingResult:
        from airflow_provider_gong.hooks.gong import GongHook

        hook = GongHook(gong_conn_id=self.gong_conn_id)
        try:
            return hook.create_meeting(meeting)
        except GongMeetingMayExistError:
            raise  # the mark stays: no retry may create it again
        except GongError:
            if store is not None:
                store.delete(STATE_KEY)  # Gong created nothing: a retry may try again
            raise
        finally:
            hook.close()

    def _record(self, ti: Any, store: Any, result: MeetingResult) -> None:
        """Keep the result for a retry and push it downstream; a failure here is never "rejected"."""
        try:
            if store is not None:
                _exactly_once.save(store, ti, result)
            self._push(ti, result)
        except Exception as exc:
            if store is not None and _exactly_once.saved(store, result):
                raise  # a retry finds the stored result and finishes the job without calling Gong
            # Outcome "unknown" (not "rejected"): downstream must not read this as "nothing created".
            # Without a task_state_store (Airflow < 3.3) every failure after the POST ends here.
            raise GongMeetingMayExistError(
                f"Gong created meeting {result.meeting_id} ({result.meeting_url}), but the task could not "
                f"finish ({type(exc).__name__}: {exc}). Not retried, to avoid a second meeting: use this "
                "meeting ID downstream or clear the task to create another one."
            ) from exc

    def _mark(self, ti: Any, outcome: str, *, best_effort: bool = False) -> None:
        try:
            ti.xcom_push(key=OUTCOME_KEY, value=outcome)
        except Exception:
            if not best_effort:
                raise
            self.log.warning("Could not record outcome %r in XCom %r", outcome, OUTCOME_KEY, exc_info=True)

    def _push(self, ti: Any, result: MeetingResult) -> None:
        _exactly_once.push_meeting_id(ti, result.meeting_id)
        ti.xcom_push(key=MEETING_URL_KEY, value=result.meeting_url)
        ti.xcom_push(key=OUTCOME_KEY, value=CREATED)


class GongUpdateMeetingOperator(MeetingFieldsOperator):
    """
    Replace a Gong meeting (PUT /v2/meetings/{meeting_id}) with the full meeting given here.

    A PUT is idempotent, so Airflow retries are safe. Validated like the create operator (same
    arguments, same rules); pushes XCom ``meeting_id`` and ``meeting_id_display``; returns
    ``{meeting_id, request_id}``.

    :param meeting_id: the Gong meeting to change (templated), e.g. the create task's XCom.
    :param deferrable: when Gong's quota is spent, defer until it allows calls again and send the PUT
        then, instead of failing (as the create operator). Default: ``[operators] default_deferrable``.
    """

    template_fields: Sequence[str] = ("meeting_id", *GongCreateMeetingOperator.template_fields)
    template_fields_renderers = {"invitees": "json"}
    ui_color = "#8039df"

    def __init__(self, *, meeting_id: str | int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.meeting_id = meeting_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_gong.hooks.gong import GongHook

        meeting = self._meeting()
        hook = GongHook(gong_conn_id=self.gong_conn_id)
        try:
            answer = call_or_defer(
                self, self.deferrable, lambda: hook.update_meeting(self.meeting_id, meeting)
            )
        finally:
            hook.close()
        self.log.info("Updated Gong meeting %s (requestId=%s)", answer["meeting_id"], answer["request_id"])
        _exactly_once.push_meeting_id(context["ti"], answer["meeting_id"])
        return answer

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Back from a quota deferral: send the PUT now."""
        return self.execute(context)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Lineage:
        """OpenLineage (optional extra): one meeting of the Gong account's ``meetings`` replaced."""
        from airflow_provider_gong.lineage import meeting_lineage

        return meeting_lineage(
            gong_conn_id=self.gong_conn_id, action="update", meeting_id=self.meeting_id, written=1
        )

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Lineage:
        """Return the same dataset, without a count: a failed PUT may or may not have changed the meeting."""
        from airflow_provider_gong.lineage import meeting_lineage

        return meeting_lineage(
            gong_conn_id=self.gong_conn_id, action="update", meeting_id=self.meeting_id, written=None
        )


class GongDeleteMeetingOperator(BaseOperator):
    """
    Delete a Gong meeting (DELETE /v2/meetings/{meeting_id}).

    A meeting already gone (404) counts as deleted, so the task is idempotent and safe to retry.

    :param meeting_id: the Gong meeting (templated).
    :param organizer_email: its organizer; Gong needs it to find the meeting (templated).
    :param deferrable: when Gong's quota is spent, defer until it allows calls again and delete then,
        instead of failing. Default: ``[operators] default_deferrable``.
    :return: ``{"meeting_id": ..., "deleted": True|False}`` (False: it was already gone).
    """

    template_fields: Sequence[str] = ("meeting_id", "organizer_email", "gong_conn_id")
    ui_color = "#8039df"

    def __init__(
        self,
        *,
        meeting_id: str | int,
        organizer_email: str,
        gong_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.meeting_id = meeting_id
        self.organizer_email = organizer_email
        self.gong_conn_id = gong_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_gong.hooks.gong import GongHook
        from airflow_provider_gong.rules import normalise_email

        try:
            organizer = normalise_email(self.organizer_email, "organizer_email")
        except ValueError as exc:
            raise GongValidationError(str(exc)) from None
        hook = GongHook(gong_conn_id=self.gong_conn_id)
        try:
            deleted = call_or_defer(
                self, self.deferrable, lambda: hook.delete_meeting(self.meeting_id, organizer)
            )
        finally:
            hook.close()
        self.log.info(
            "Gong meeting %s %s", self.meeting_id, "deleted" if deleted else "was already gone (404)"
        )
        return {"meeting_id": str(self.meeting_id), "deleted": deleted}

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Back from a quota deferral: delete now."""
        return self.execute(context)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Lineage:
        """
        OpenLineage (optional extra): one meeting removed from the Gong account's ``meetings``.

        Count 0 when Gong answered 404 (it was already gone); no count when the answer is unknown.
        """
        from airflow_provider_gong.lineage import meeting_lineage, pulled

        answer = pulled(task_instance, "return_value")
        deleted = answer.get("deleted") if isinstance(answer, dict) else None
        return meeting_lineage(
            gong_conn_id=self.gong_conn_id,
            action="delete",
            meeting_id=self.meeting_id,
            written=None if deleted is None else int(bool(deleted)),
        )


class GongMeetingIntegrationStatusOperator(BaseOperator):
    """
    Ask Gong whether organizers can create meetings (POST /v2/meetings/integration/status).

    Returns Gong's entries (``email``, ``exists``, ``valid``, ``userFacingError``, ``fixUrl``, ...).
    With ``fail_on_invalid`` the task fails, permanently, naming each organizer that is not a Gong
    user or has no valid consent page, with Gong's explanation and fix link, so a DAG can stop before
    a batch that would fail row by row.

    :param emails: organizer emails: a list, or a comma/semicolon-separated string (templated).
    """

    template_fields: Sequence[str] = ("emails", "gong_conn_id")
    ui_color = "#8039df"

    def __init__(
        self,
        *,
        emails: Any,
        fail_on_invalid: bool = False,
        gong_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.emails = emails
        self.fail_on_invalid = fail_on_invalid
        self.gong_conn_id = gong_conn_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow_provider_gong.hooks.gong import GongHook

        emails = self._emails()
        hook = GongHook(gong_conn_id=self.gong_conn_id)
        try:
            users = hook.get_integration_status(emails)
        finally:
            hook.close()
        problems = _problems(emails, users)
        for line in problems:
            self.log.warning("Organizer cannot create Gong meetings: %s", line)
        self.log.info(
            "%d of %d organizer(s) ready for Gong meetings", len(emails) - len(problems), len(emails)
        )
        if problems and self.fail_on_invalid:
            raise GongPermanentError(
                f"{len(problems)} organizer(s) cannot create Gong meetings: " + "; ".join(problems)
            )
        return users

    def _emails(self) -> list[str]:
        """
        Return the rendered ``emails``, checked before any call.

        They may be a list, or a comma/semicolon-separated string.
        """
        from airflow_provider_gong.rules import normalise_email, shown

        raw = self.emails
        if isinstance(raw, str):
            raw = [part for part in re.split(r"[,;\s]+", raw) if part]
        if not isinstance(raw, (list, tuple, set)) or not raw:
            raise GongValidationError(
                f"emails must be a non-empty list of addresses, got {shown(self.emails)}"
            )
        try:
            return [normalise_email(e, "emails") for e in raw]
        except ValueError as exc:
            raise GongValidationError(str(exc)) from None


def _problems(emails: list[str], users: list[dict[str, Any]]) -> list[str]:
    """
    List, one line each, the organizers Gong does not know or that have no valid consent page.

    Each line has Gong's reason and fix link: what a Gong admin needs to act on.
    """
    by_email = {str(u.get("email", "")).lower(): u for u in users}
    problems = []
    for email in emails:
        user = by_email.get(email.lower())
        if user is None or not (user.get("exists") and user.get("valid")):
            why = (user or {}).get("userFacingError") or (
                "not a Gong user" if not (user or {}).get("exists") else "no valid consent page"
            )
            fix = f" (fix: {user['fixUrl']})" if user and user.get("fixUrl") else ""
            problems.append(f"{email}: {why}{fix}")
    return problems
