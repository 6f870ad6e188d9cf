"""
Errors raised by the Gong provider.

Every error derives from :class:`GongError`, so callers can catch one root. Errors that no retry can
fix (bad input, 400/401/403/404/409, and a create whose outcome is unknown) also derive from
:class:`~airflow.sdk.exceptions.AirflowFailException`: Airflow then fails the task at once instead of
burning its retries, wherever the error is raised (operator, ``@task`` code, batch).
(AirflowFailException is the class this Airflow's task runner catches: see ``_compat``.)
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import Any

from airflow_provider_gong._compat import AirflowException, AirflowFailException


class GongError(AirflowException):
    """
    Root of all Gong errors.

    :param message: what went wrong and what to do about it.
    :param status: HTTP status, when Gong answered.
    :param request_id: Gong's ``requestId``; Gong support asks for it.
    :param errors: Gong's ``errors`` list.
    :param user_facing_error: Gong's ``userFacingError`` (409 consent-page answers carry it).
    :param fix_url: Gong's ``fixUrl``: where a Gong admin fixes the problem.
    :param retryable: whether the hook may send the same request again.
    """

    #: True for errors no retry can fix; such classes also derive from AirflowFailException.
    permanent: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        errors: Sequence[str] = (),
        user_facing_error: str | None = None,
        fix_url: str | None = None,
        help_url: str | None = None,
        retryable: bool = False,
    ) -> None:
        self.message = message
        self.status = status
        self.request_id = request_id
        self.errors = list(errors)
        self.user_facing_error = user_facing_error
        self.fix_url = fix_url
        self.help_url = help_url
        self.retryable = retryable
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [self.message]
        if self.user_facing_error and self.user_facing_error not in self.message:
            parts.append(f"Gong says: {self.user_facing_error}")
        elif self.errors and self.errors[0] not in self.message:
            parts.append(f"Gong says: {'; '.join(self.errors)}")
        if self.fix_url:
            parts.append(f"Fix it here: {self.fix_url}")
        if self.status is not None:
            parts.append(f"(HTTP {self.status}, requestId={self.request_id or 'n/a'})")
        return " ".join(parts)

    def redact(self, redact: Callable[[Any], Any]) -> GongError:
        """
        Pass every text field through ``redact`` and re-render the message; returns self.

        ``redact`` is the hook's :class:`~airflow_provider_gong._client.redact.Redactor`. Gong's answer, or a
        proxy's, can echo the request, credentials included.
        """
        self.message = redact(self.message)
        self.request_id = redact(self.request_id)
        self.errors = [redact(e) for e in self.errors]
        self.user_facing_error = redact(self.user_facing_error)
        self.fix_url = redact(self.fix_url)
        self.help_url = redact(self.help_url)
        self.args = (self._render(),)
        return self

    def to_dict(self) -> dict[str, Any]:
        """
        Return a JSON-safe summary, e.g. for a results ledger.

        Raised by the hook, it holds no credential: the hook redacts every field first.
        """
        return {
            "type": type(self).__name__,
            "message": str(self),
            "status": self.status,
            "request_id": self.request_id,
            "errors": self.errors,
            "user_facing_error": self.user_facing_error,
            "fix_url": self.fix_url,
        }


class GongPermanentError(GongError, AirflowFailException):
    """An error that retrying the task cannot fix: Airflow fails the task without retries."""

    permanent = True


class GongValidationError(GongPermanentError, ValueError):
    """Input rejected before any call to Gong (the message names the field)."""


class GongBadRequestError(GongPermanentError):
    """400: Gong found the request malformed."""


class GongAuthError(GongPermanentError):
    """401: Gong rejected the credentials."""


class GongForbiddenError(GongPermanentError):
    """403: the credentials lack a scope, or the company has no access to the endpoint."""


class GongLimitedReleaseError(GongForbiddenError):
    """403 "Limited release": the Meetings API is not enabled for this company."""


class GongNotFoundError(GongPermanentError):
    """404: unknown organizer (create) or unknown meeting (update/delete)."""


class GongConflictError(GongPermanentError):
    """409: e.g. the consent page is not enabled in the company."""


class GongRateLimitError(GongError):
    """429: over Gong's quota. ``retry_after`` is Gong's requested wait in seconds, if it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class GongQuotaExhaustedError(GongRateLimitError):
    """
    The day's call budget for the Gong account (connection extra ``daily_quota``) is spent.

    Raised before any call, by the limiter every task of the account shares, instead of sleeping
    until the budget resets (hours). ``retry_after`` is the seconds until it resets (UTC midnight) and
    ``resume_at`` that moment, a UTC datetime; ``used`` and ``budget`` are the day's figures. Not
    permanent: Airflow's ``retries`` / ``retry_delay`` may try the task again later.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        resume_at: datetime.datetime,
        used: int | None = None,
        budget: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.resume_at = resume_at
        self.used = used
        self.budget = budget
        super().__init__(message, retry_after=retry_after, **kwargs)


class GongServerError(GongError):
    """5xx from Gong on a call that is safe to repeat (Airflow may retry the task)."""


class GongConnectionError(GongError):
    """
    The request never reached Gong, or for a safe call the answer never came back.

    Not reaching Gong: a DNS failure, a refused connection or a connect timeout.
    """


class GongMeetingMayExistError(GongPermanentError):
    """
    A create request reached Gong but its answer was lost (read timeout, dropped connection, 5xx).

    Gong documents no idempotency key, so the meeting may or may not exist. Re-sending could create
    a duplicate; this error is permanent so that neither the hook nor Airflow re-sends it. Reconcile
    by hand (e.g. in Gong, by ``externalId``) before creating it again.
    """


_BY_STATUS: dict[int, type[GongError]] = {
    400: GongBadRequestError,
    401: GongAuthError,
    403: GongForbiddenError,
    404: GongNotFoundError,
    409: GongConflictError,
}

_ADVICE: dict[int, str] = {
    400: "Gong rejected the request as malformed; check the meeting fields.",
    401: "Gong rejected the credentials; check the access key and secret (or bearer token) of the "
    "Gong connection, and that the host is your company's Gong API host.",
    403: "Gong refused access; the credentials lack the required scope or the API host is wrong.",
    404: "Gong found no such resource (no Gong user with this organizer email, or no such meeting).",
    409: "Gong reported a conflict; the consent page may be disabled for the company.",
    429: "Gong's rate limit was exceeded.",
}


def error_from_response(
    status: int,
    body: Any,
    *,
    operation: str,
    retry_after: float | None = None,
    retryable: bool = False,
    note: str = "",
) -> GongError:
    """
    Build the typed error for a non-2xx answer from Gong.

    :param status: the HTTP status.
    :param body: the decoded JSON body, or None / anything else when Gong sent none.
    :param operation: e.g. ``"POST /v2/meetings"``, for the message.
    """
    fields: dict[str, Any] = body if isinstance(body, dict) else {}
    errors = fields.get("errors") or []
    if isinstance(errors, str):
        errors = [errors]
    elif isinstance(errors, dict):
        errors = [f"{k}: {v}" for k, v in errors.items()]
    common: dict[str, Any] = {
        "status": status,
        "request_id": fields.get("requestId"),
        "errors": [str(e) for e in errors],
        "user_facing_error": fields.get("userFacingError"),
        "fix_url": fields.get("fixUrl"),
        "help_url": fields.get("helpUrl"),
    }
    text = " ".join(common["errors"] + [common["user_facing_error"] or ""]).lower()
    if status == 403 and "limited release" in text:
        return GongLimitedReleaseError(
            f"{operation} failed: the Gong Meetings API is in limited release and not enabled for this "
            "company; ask your Gong CSM to enable it.",
            **common,
        )
    if status == 429:
        wait = f" and asked to wait {retry_after:g} s" if retry_after is not None else ""
        return GongRateLimitError(
            f"{operation} failed: {_ADVICE[429]} Gong answered 429{wait}.{note}",
            retry_after=retry_after,
            retryable=retryable,
            **common,
        )
    if status in _BY_STATUS:
        return _BY_STATUS[status](f"{operation} failed: {_ADVICE[status]}", **common)
    if status >= 500:
        return GongServerError(f"{operation} failed: Gong had a server error.", retryable=retryable, **common)
    return GongError(f"{operation} failed with unexpected HTTP {status}.", **common)


class GongBatchRowErrors(GongPermanentError):
    """
    A batch finished, every outcome is in the ledger, and some rows failed or await reconciliation.

    Retrying the task would not change them, so it is permanent.
    """


class GongSyncGuardError(GongPermanentError):
    """
    A sync run would delete more meetings than ``max_deletes`` allows, or every meeting (an empty source).

    Raised before any Gong call; nothing was changed.
    """


class GongBatchStoppedError(GongError):
    """
    The batch was asked to stop (Airflow's SIGTERM calls ``on_kill``).

    It stopped between two rows, wrote every outcome it had and handed back the rows it had claimed but
    not sent; a retry goes on where it stopped.
    """


class GongLeaseLostError(GongError):
    """
    The batch's lease on its ledger lapsed, and another run may hold it now.

    The run went longer than ``lease_seconds`` without renewing it (e.g. a paused process or an
    unreachable warehouse). It stopped before its next Gong call; a retry waits for the lease and goes
    on from the ledger.
    """


class GongLedgerError(GongError):
    """
    The batch could not write a row's outcome to the ledger, even after retries.

    The message names the row and what to write by hand (for a created row: its meeting ID and URL).
    """

    def __init__(self, message: str, *, row_key: str, **kwargs: Any) -> None:
        self.row_key = row_key
        super().__init__(message, **kwargs)


class GongSettleRefusedError(GongPermanentError):
    """
    A ledger row was not settled; the message says why and what to do instead.

    ``reason`` is one of ``no_ledger``, ``not_found``, ``not_pending``, ``in_flight`` (another run's call
    may still be in flight; the message says from when it can be settled), ``resent_by_run`` (a pending
    update or delete: the next run sends it again, nothing to settle), ``duplicate_key`` and
    ``changed`` (the row changed between its reading and the write: a run or another settlement got
    there first). Nothing was written.
    """

    def __init__(self, message: str, *, row_key: str, reason: str, **kwargs: Any) -> None:
        self.row_key = row_key
        self.reason = reason
        super().__init__(message, **kwargs)


class GongLedgerBusyError(GongError):
    """
    A batch run holds the ledger's lease, and kept it for as long as the caller would wait.

    ``holder`` is its claim token and ``until`` when its lease lapses unless renewed (UTC, ISO-8601).
    Not permanent: settle again once the run has finished.
    """

    def __init__(self, message: str, *, holder: str, until: str, **kwargs: Any) -> None:
        self.holder = holder
        self.until = until
        super().__init__(message, **kwargs)
