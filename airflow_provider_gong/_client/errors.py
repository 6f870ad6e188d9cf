"""
What a failed call means, as a typed :class:`~airflow_provider_gong.exceptions.GongError`.

The question behind every mapping is what Gong may have seen, because that decides what may be sent
again: a call Gong refused (4xx, 429) or never received (no connection) changed nothing, so even a
create may be repeated; a call whose answer was lost, late, garbled or a 5xx may have created the
meeting, so a create becomes "may exist" and is never re-sent. Idempotent calls (GET, PUT, DELETE) may
be repeated either way, and are marked ``retryable`` where a retry can help.
"""

from __future__ import annotations

from typing import Any

import requests

from airflow_provider_gong._client.retry import never_sent, parse_retry_after
from airflow_provider_gong._client.transport import DeadlineExceeded
from airflow_provider_gong.exceptions import (
    GongConnectionError,
    GongError,
    GongMeetingMayExistError,
    GongValidationError,
    error_from_response,
)

_RETRYABLE_5XX = frozenset({502, 503, 504})
# requests raises these while preparing a request, before any byte leaves the machine.
_NOT_SENT = (
    requests.exceptions.InvalidHeader,
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidJSONError,
    requests.exceptions.URLRequired,
)


def json_or_none(response: requests.Response) -> Any:
    """Return the decoded body; ``{}`` for an empty one; None when it is not JSON."""
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        return None


def transport_error(
    exc: Exception, operation: str, *, idempotent: bool, base_url: str, deadline: float
) -> GongError:
    """
    Classify a failure without an HTTP answer by what Gong may have seen.

    Only "never sent" is safe to repeat for a create: anything else (timeouts, dropped or reset
    connections, an answer that could not be read or decoded, a blown deadline, or an error this
    code does not know) may have happened after Gong acted, so a create becomes "may exist".
    The exception text is never copied for header errors: requests quotes the header value.
    """
    kind = type(exc).__name__
    if isinstance(exc, requests.RequestException) and never_sent(exc):
        return GongConnectionError(
            f"{operation} failed: could not connect to {base_url} ({kind}); check the host of "
            f"the Gong connection and the network.",
            retryable=True,
        )
    if isinstance(exc, _NOT_SENT):
        detail = "" if isinstance(exc, requests.exceptions.InvalidHeader) else f": {exc}"
        return GongValidationError(f"{operation} was not sent: the request is malformed ({kind}){detail}")
    if isinstance(exc, DeadlineExceeded) or getattr(exc, "deadline_exceeded", False):
        what = f"no complete answer within the {deadline:g} s deadline"
    else:
        what = f"the answer was lost or unreadable ({kind})"
    if idempotent:
        transient = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
        return GongConnectionError(
            f"{operation} failed: {what}.",
            retryable=isinstance(exc, (*transient, DeadlineExceeded)),
        )
    return GongMeetingMayExistError(
        f"{operation} failed: the request may have reached Gong but {what}. The meeting may exist; "
        "it was not re-sent to avoid a duplicate. Check Gong before creating it again."
    )


def status_error(
    response: requests.Response, operation: str, *, idempotent: bool, max_retry_wait: float
) -> GongError:
    """
    Return the error for a non-2xx answer.

    A 429 is retryable when Gong's wait is within ``max_retry_wait``; a 5xx to a create is "may exist";
    a gateway error to anything else is retried.
    """
    status = response.status_code
    body = json_or_none(response) or {}
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        within_cap = retry_after is None or retry_after <= max_retry_wait
        note = (
            ""
            if within_cap
            else f" That is longer than max_retry_wait ({max_retry_wait:g} s), so the call "
            "fails now; let Airflow retry the task later (retries/retry_delay)."
        )
        return error_from_response(
            status, body, operation=operation, retry_after=retry_after, retryable=within_cap, note=note
        )
    if status >= 500 and not idempotent:
        request_id = body.get("requestId") if isinstance(body, dict) else None
        return GongMeetingMayExistError(
            f"{operation} failed: Gong answered HTTP {status}, so the meeting may or may not exist; "
            "it was not re-sent to avoid a duplicate. Check Gong before creating it again.",
            status=status,
            request_id=request_id,
        )
    return error_from_response(
        status, body, operation=operation, retryable=idempotent and status in _RETRYABLE_5XX
    )


def not_json_error(status: int, operation: str, *, idempotent: bool, base_url: str) -> GongError:
    """
    Return the error for a 2xx whose body is not JSON.

    Most likely a host that is not Gong's API answered (a proxy's page).
    """
    message = (
        f"{operation} answered HTTP {status} with a body that is not JSON; "
        f"{base_url} is probably not Gong's API (check the connection's host)"
    )
    if idempotent:
        return GongError(message, status=status)
    return GongMeetingMayExistError(message + "; the meeting may exist.", status=status)
