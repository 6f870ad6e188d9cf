"""
GongHook: an Airflow connection turned into a paced, retrying, secret-safe Gong API client.

The hook is the Airflow side (connection, log masking, the connection form and test) and one short
method per Gong endpoint; how a call is authenticated, paced, bounded, retried and mapped to a typed
error lives in :mod:`airflow_provider_gong._client`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any

import requests
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from airflow_provider_gong._client.client import GongClient
from airflow_provider_gong._client.redact import Redactor
from airflow_provider_gong._client.settings import GongSettings, settings_from_connection
from airflow_provider_gong.exceptions import (
    GongError,
    GongMeetingMayExistError,
    GongNotFoundError,
    GongValidationError,
)
from airflow_provider_gong.meetings import Meeting, MeetingResult
from airflow_provider_gong.oauth import OAuthClient, masked_forms
from airflow_provider_gong.quota import QuotaLimiter

MAX_EMAILS_PER_STATUS_CALL = 100


class GongHook(BaseHook):
    """
    Talk to Gong's Meetings API through an Airflow connection.

    Every call goes through one path (:meth:`request`): the quota limiter that every task of the
    Gong account shares paces and counts it (:attr:`limiter`), a deadline bounds it, and one retry
    policy decides what may be re-sent. Creating a meeting is never re-sent once Gong may have
    received it. An OAuth call refused with 401 is sent once more with another access token.

    Connection (type ``gong``): host = API base URL (default ``https://api.gong.io``), login and
    password = access key and secret (for OAuth: the app's client id and secret); the extras are
    the fields of :class:`~airflow_provider_gong._client.settings.GongSettings`.

    :param gong_conn_id: the Airflow connection id.
    :param timeout: read timeout in seconds; overrides the connection's extra.
    :param rate_limit_per_second: the account's calls per second, shared by every task that uses it;
        overrides the connection's extra (Gong's default is 3).
    :param max_retry_wait: the longest ``Retry-After`` the hook waits out; beyond it the call fails
        with :class:`~airflow_provider_gong.exceptions.GongRateLimitError` so Airflow can retry later.
    :param max_attempts: attempts per call for retryable failures.

    .. code-block:: python

        hook = GongHook(gong_conn_id="gong_default")
        result = hook.create_meeting(Meeting.build(start_time=..., end_time=..., ...))
        print(result.meeting_id, result.meeting_url)
    """

    conn_name_attr = "gong_conn_id"
    default_conn_name = "gong_default"
    conn_type = "gong"
    hook_name = "Gong"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """
        Return the connection form's relabeled and hidden fields, for Airflow 3.1 only.

        3.1 asks the hook; 3.2+ reads the same block from ``get_provider_info()`` and then never calls this.
        """
        from airflow_provider_gong._compat import hook_ui_field_behaviour

        return hook_ui_field_behaviour()

    def __init__(
        self,
        gong_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        rate_limit_per_second: float | None = None,
        max_retry_wait: float | None = None,
        max_attempts: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.gong_conn_id = gong_conn_id
        overrides = {
            "timeout": timeout,
            "rate_limit_per_second": rate_limit_per_second,
            "max_retry_wait": max_retry_wait,
            "max_attempts": max_attempts,
        }
        self._overrides = {k: v for k, v in overrides.items() if v is not None}
        # Injectable for tests: retries sleep through this (the limiter has its own clock/sleep).
        self.sleep: Callable[[float], None] = time.sleep

    # -- connection -> settings -> client ----------------------------------------------------------

    @cached_property
    def settings(self) -> GongSettings:
        """The connection, validated; its secrets are registered with Airflow's log masker first."""
        conn = self.get_connection(self.gong_conn_id)
        if conn.conn_type and conn.conn_type.lower() != self.conn_type:
            raise GongValidationError(
                f"connection {self.gong_conn_id!r} has type {conn.conn_type!r}; the Gong hook needs a "
                f"connection of type {self.conn_type!r}"
            )
        settings = settings_from_connection(conn, self._overrides)
        for name in ("access_key_secret", "access_token", "refresh_token"):
            secret = settings.secret(name)
            for form in masked_forms(secret) if secret else ():
                mask_secret(form)
        extra = conn.extra_dejson or {}
        for raw in (conn.password, extra.get("access_token"), extra.get("refresh_token")):  # as stored
            if isinstance(raw, str) and raw.strip():
                mask_secret(raw)
        return settings

    @cached_property
    def client(self) -> GongClient:
        """The HTTP client for :attr:`settings` (one session, one quota limiter, one token source)."""
        return GongClient(
            self.settings, mask=mask_secret, sleep=lambda seconds: self.sleep(seconds), log=self.log
        )

    @property
    def session(self) -> requests.Session:
        """One keep-alive session per hook, with the environment read once."""
        return self.client.session

    @property
    def redact(self) -> Redactor:
        """Removes the connection's credentials, in any form, from text built out of an answer."""
        return self.client.redact

    @property
    def oauth(self) -> OAuthClient:
        """An OAuth connection's token source (see :mod:`airflow_provider_gong.oauth`)."""
        return self.client.oauth

    @property
    def limiter(self) -> QuotaLimiter:
        """Paces and counts this hook's calls on the state every task of the Gong account shares."""
        return self.client.limiter

    @limiter.setter
    def limiter(self, limiter: QuotaLimiter) -> None:
        self.client.limiter = limiter

    @property
    def base_url(self) -> str:
        """The API base URL: the connection's host, or for OAuth the token's customer host."""
        return self.client.base_url

    @property
    def calls(self) -> int:
        """Calls this hook has made (slots taken from the shared quota), for a task's summary."""
        return self.client.calls

    def quota_status(self) -> dict[str, Any]:
        """
        Return today's use of the shared daily budget (``used``, ``budget``, ``left``, ``resets_at``).

        :raises GongError: the quota store cannot be read. (No Gong call is made.)
        """
        return self.limiter.status()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotent: bool = True,
        max_attempts: int | None = None,
    ) -> Any:
        """Send one API call; see :meth:`~airflow_provider_gong._client.client.GongClient.request`."""
        return self.client.request(
            method, path, json=json, params=params, idempotent=idempotent, max_attempts=max_attempts
        )

    def get_conn(self) -> requests.Session:
        """Return the configured session (Airflow's hook protocol)."""
        return self.session

    def close(self) -> None:
        """Close the session; a later call opens a new one (and reads the environment again)."""
        if "client" in self.__dict__:
            self.client.close()

    # -- Meetings API -----------------------------------------------------------------------------

    def create_meeting(self, meeting: Meeting) -> MeetingResult:
        """
        Create a meeting: POST /v2/meetings.

        Not idempotent, so its failures come in exactly two kinds:

        - :class:`GongMeetingMayExistError`: Gong may have created the meeting (lost, late, garbled or
          5xx answer, or any error this code did not foresee). Never re-send it automatically.
        - any other :class:`GongError`: Gong certainly created nothing (bad input, 4xx, 429, a
          connection that never opened, credentials that cannot be sent). Safe to try again later.
        """
        try:
            body = self.request("POST", "/v2/meetings", json=meeting.to_payload(), idempotent=False)
            result = MeetingResult.from_response(body)
        except GongError:
            raise
        except Exception as exc:
            self.client.forget_connections()
            raise GongMeetingMayExistError(
                f"POST /v2/meetings failed after it may have reached Gong ({type(exc).__name__}: {exc}); "
                "the meeting may exist."
            ).redact(self.redact) from None
        if result is None:
            self.client.forget_connections()
            raise GongMeetingMayExistError(
                "POST /v2/meetings answered 2xx without a usable meetingId; the meeting may exist.",
                request_id=body.get("requestId") if isinstance(body, dict) else None,
            )
        self.log.debug("Created Gong meeting %s, requestId=%s", result.meeting_id, result.request_id)
        return result

    def update_meeting(self, meeting_id: str | int, meeting: Meeting) -> dict[str, Any]:
        """Replace the meeting (PUT /v2/meetings/{id}); return its ``request_id`` and ``meeting_id``."""
        body = self.request("PUT", f"/v2/meetings/{_meeting_id(meeting_id)}", json=meeting.to_payload())
        return {"request_id": body.get("requestId"), "meeting_id": str(body.get("meetingId") or meeting_id)}

    def delete_meeting(self, meeting_id: str | int, organizer_email: str) -> bool:
        """Delete the meeting (DELETE /v2/meetings/{id}); False if Gong has none: deleting is idempotent."""
        path = f"/v2/meetings/{_meeting_id(meeting_id)}"
        try:
            self.request("DELETE", path, json={"organizerEmail": organizer_email})
        except GongNotFoundError:
            self.log.info("Gong meeting %s was already gone", meeting_id)
            return False
        return True

    def get_integration_status(self, emails: Iterable[str]) -> list[dict[str, Any]]:
        """
        POST /v2/meetings/integration/status for each <= 100 distinct emails.

        Returns Gong's per-user entries (``email``, ``exists``, ``valid``, ``userFacingError``,
        ``fixUrl``, ``helpUrl``).
        """
        unique = list(dict.fromkeys(e.strip() for e in emails if e and e.strip()))
        users: list[dict[str, Any]] = []
        for start in range(0, len(unique), MAX_EMAILS_PER_STATUS_CALL):
            chunk = unique[start : start + MAX_EMAILS_PER_STATUS_CALL]
            body = self.request("POST", "/v2/meetings/integration/status", json={"emails": chunk})
            users.extend(body.get("users") or [])
        return users

    def test_connection(self) -> tuple[bool, str]:
        """
        One authenticated GET /v2/users; the message says what is wrong when it fails.

        For OAuth, the access token is got first (reused from the token store, or refreshed), so the
        message tells a refused refresh token or client apart from a refused API call.
        """
        step = ""
        try:
            if self.settings.auth_type == "oauth":
                step = f"Getting an OAuth access token from {self.settings.token_url} failed: "
                self.oauth.token()
                step = "The OAuth access token was obtained, but the API call failed: "
            body = self.request("GET", "/v2/users", max_attempts=1)
        except GongError as exc:
            return False, self._redact_safely(step + str(exc))
        except Exception as exc:
            return False, str(self._redact_safely(f"{step}{type(exc).__name__}: {exc}"))
        count = len(body.get("users") or []) if isinstance(body, dict) else 0
        how = ""
        current = self.oauth.current if self.settings.auth_type == "oauth" else None
        if current is not None:
            until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(current.expires_at))
            how = f" with an OAuth access token valid until {until}"
        return True, f"Connected to Gong at {self.base_url}{how} ({count} users on the first page)."

    def _redact_safely(self, text: str) -> str:
        try:
            return self.redact(text)
        except Exception:  # the settings themselves are broken: the text cannot hold a working secret
            return text


def _meeting_id(value: str | int) -> str:
    text = str(value).strip()
    if not text.isdigit() or len(text) > 20:
        raise GongValidationError(
            f"meeting_id must be Gong's numeric meeting ID (up to 20 digits), got {value!r}"
        )
    return text
