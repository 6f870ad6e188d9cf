"""GongHook: an Airflow connection turned into a paced, retrying, secret-safe Gong API client."""

from __future__ import annotations

import base64
import email.utils
import functools
import os
import re
import time
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3.exceptions
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from tenacity import Retrying

from airflow_provider_gong import __version__
from airflow_provider_gong.exceptions import (
    GongAuthError,
    GongConnectionError,
    GongError,
    GongMeetingMayExistError,
    GongNotFoundError,
    GongQuotaExhaustedError,
    GongValidationError,
    error_from_response,
)
from airflow_provider_gong.meetings import Meeting, MeetingResult
from airflow_provider_gong.oauth import (
    DEFAULT_TOKEN_URL,
    AccessToken,
    OAuthClient,
    masked_forms,
    token_store_for,
)
from airflow_provider_gong.pacing import retrying
from airflow_provider_gong.quota import DEFAULT_DAILY_QUOTA, Grant, QuotaLimiter, account_key, store_for
from airflow_provider_gong.redact import Redactor
from airflow_provider_gong.transport import DeadlineAdapter, DeadlineExceeded

DEFAULT_HOST = "https://api.gong.io"
MAX_EMAILS_PER_STATUS_CALL = 100
_RETRYABLE_5XX = frozenset({502, 503, 504})
# RFC 6750 token characters, loosened to any visible ASCII: what an HTTP header can carry as-is.
_HEADER_SAFE = re.compile(r"^[\x21-\x7e]+$")
# requests raises these while preparing a request, before any byte leaves the machine.
_NOT_SENT = (
    requests.exceptions.InvalidHeader,
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidJSONError,
    requests.exceptions.URLRequired,
)


class GongSettings(BaseModel):
    """Everything the hook needs from a connection, validated once.

    Extras arrive as strings from URI-form connections, so numbers are coerced here; secrets are
    ``SecretStr`` so a repr or a validation error never shows them.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    base_url: str
    auth_type: Literal["basic", "bearer", "oauth"] = "basic"
    #: basic: the access key; oauth: the OAuth app's client id
    access_key: SecretStr | None = None
    #: basic: the access key secret; oauth: the OAuth app's client secret
    access_key_secret: SecretStr | None = None
    access_token: SecretStr | None = None
    refresh_token: SecretStr | None = Field(None, description="oauth: the refresh token the chain starts at")
    token_url: str = Field(DEFAULT_TOKEN_URL, description="oauth: Gong's token endpoint")
    timeout: float = Field(30.0, gt=0, description="read timeout, seconds")
    connect_timeout: float = Field(10.0, gt=0)
    deadline: float | None = Field(None, gt=0, description="total seconds per call; default connect+read")
    rate_limit_per_second: float = Field(3.0, gt=0)
    daily_quota: int = Field(DEFAULT_DAILY_QUOTA, ge=1, description="calls per UTC day for the account")
    quota_backend: Literal["local", "sql", "memory"] = "local"
    quota_dir: str | None = Field(None, description="local backend: default $AIRFLOW_HOME/gong_quota")
    quota_conn_id: str | None = Field(
        None, validate_default=True, description="sql backend: the PostgreSQL connection"
    )
    max_retry_wait: float = Field(60.0, ge=0)
    max_attempts: int = Field(5, ge=1)

    @field_validator("access_key", "access_key_secret", "access_token", "refresh_token", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        # A value pasted with a trailing newline or space is the commonest copy-paste accident.
        return value.strip() or None if isinstance(value, str) else value

    @field_validator("quota_backend", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("token_url", mode="before")
    @classmethod
    def _token_url(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be the http(s) URL of Gong's token endpoint")
        return value.strip()

    @field_validator("quota_conn_id")
    @classmethod
    def _named_for_sql(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("quota_backend") == "sql" and not value:
            raise ValueError("quota_backend 'sql' needs it: the PostgreSQL connection to keep the quota in")
        return value

    @property
    def total_deadline(self) -> float:
        """Seconds one call may take from connect to the last byte of the answer."""
        return self.deadline if self.deadline is not None else self.connect_timeout + self.timeout

    def authorization(self) -> str:
        """The Authorization header value (masked in logs before it is ever used).

        Checked here, before any row of a batch is touched, so that a credential that cannot be sent
        fails the task once instead of every row (and never appears in requests' error text).
        For OAuth the access token comes from the token endpoint (:attr:`GongHook.oauth`), not from here.
        """
        if self.auth_type == "oauth":
            raise GongValidationError(
                "the Gong connection uses OAuth: its access token comes from Gong's token endpoint "
                "(GongHook.oauth), not from the connection"
            )
        if self.auth_type == "bearer":
            if not self.access_token or not self.access_token.get_secret_value():
                raise GongValidationError(
                    "Gong connection uses bearer auth but has no access_token in its extras"
                )
            if not _HEADER_SAFE.match(self.access_token.get_secret_value()):
                raise GongValidationError(
                    "the Gong connection's access_token contains characters an HTTP header cannot carry "
                    "(spaces, line breaks, control or non-ASCII characters); paste the token again"
                )
            return f"Bearer {self.access_token.get_secret_value()}"
        if not (self.access_key and self.access_key_secret):
            raise GongValidationError(
                "Gong connection needs an access key (login) and an access key secret (password)"
            )
        pair = f"{self.access_key.get_secret_value()}:{self.access_key_secret.get_secret_value()}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    def oauth_credentials(self) -> tuple[str, str, str]:
        """(client id, client secret, refresh token) of an OAuth connection, checked before any call:
        login and password hold the OAuth app's client id and secret, the extras the refresh token."""
        missing = [
            name
            for name, value in (
                ("a client id (login)", self.access_key),
                ("a client secret (password)", self.access_key_secret),
                ("a refresh_token in its extras", self.refresh_token),
            )
            if not value or not value.get_secret_value()
        ]
        if missing:
            raise GongValidationError(f"the Gong connection uses OAuth but lacks {', '.join(missing)}")
        values = (self.access_key, self.access_key_secret, self.refresh_token)
        client_id, client_secret, refresh_token = (v.get_secret_value() for v in values if v)
        if not _HEADER_SAFE.match(refresh_token) or ":" in client_id:
            raise GongValidationError(
                "the Gong connection's client id or refresh_token contains characters that cannot be sent "
                "(a colon in the client id; spaces, line breaks or non-ASCII in the token); paste it again"
            )
        return client_id, client_secret, refresh_token


def normalise_base_url(host: str | None, schema: str | None = None, port: int | None = None) -> str:
    """Accept ``us-12345.api.gong.io``, ``https://api.gong.io/``, ``http://127.0.0.1:8080/v2`` ...

    No scheme means https (or the connection's schema field when it says http/https). A trailing
    ``/v2`` is dropped because every path the hook sends starts with it.
    """
    raw = (host or "").strip() or DEFAULT_HOST
    if "://" not in raw:
        scheme = schema.lower() if schema and schema.lower() in ("http", "https") else "https"
        raw = f"{scheme}://{raw}"
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GongValidationError(f"Gong connection host {host!r} is not a valid URL or host name")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if port and parts.port is None:
        netloc = f"{netloc}:{port}"
    path = parts.path.rstrip("/")
    path = path.removesuffix("/v2")
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def _parse_retry_after(value: str | None) -> float | None:
    """Gong sends integer seconds; HTTP also allows a date. Unparseable means "not given"."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request provably did not reach Gong (so even a create may be re-sent)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and exc.args:
        reason = getattr(exc.args[0], "reason", exc.args[0])
        return isinstance(
            reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)
        )
    return False


class GongHook(BaseHook):
    """Talk to Gong's Meetings API through an Airflow connection.

    Every call goes through one path (:meth:`request`): the quota limiter that every task of the
    Gong account shares paces and counts it (:attr:`limiter`), a timeout bounds it, and one retry
    policy decides what may be re-sent. Creating a meeting is never re-sent once Gong may have
    received it.

    Connection (type ``gong``): host = API base URL (default ``https://api.gong.io``; a customer host
    such as ``us-12345.api.gong.io`` works with or without scheme), login = access key, password =
    access key secret. Extras: ``auth_type`` (``basic``/``bearer``), ``access_token``, ``timeout``,
    ``connect_timeout``, ``rate_limit_per_second``, ``max_retry_wait``, ``max_attempts``, and for the
    shared quota ``daily_quota``, ``quota_backend`` (``local``/``sql``/``memory``), ``quota_dir``,
    ``quota_conn_id`` (see :mod:`airflow_provider_gong.quota`).

    OAuth (``auth_type`` ``oauth``, or ``auto`` with a ``refresh_token`` extra): login = the OAuth app's
    client id, password = its client secret, extras ``refresh_token`` and optionally ``token_url``. The
    hook exchanges the refresh token for an access token and sends every call to the token's
    ``api_base_url_for_customer``; Gong's single-use refresh tokens are rotated and kept in a token
    store beside the quota (same backend), so tasks never refresh at once (see
    :mod:`airflow_provider_gong.oauth`). A call refused with 401 is sent once more with another token.

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
        """The connection form's relabeled and hidden fields, for Airflow 3.1 only: 3.1 asks the hook,
        3.2+ reads the same block from ``get_provider_info()`` and then never calls this."""
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
        self._overrides = {
            k: v
            for k, v in {
                "timeout": timeout,
                "rate_limit_per_second": rate_limit_per_second,
                "max_retry_wait": max_retry_wait,
                "max_attempts": max_attempts,
            }.items()
            if v is not None
        }
        # Injectable for tests: retries sleep through this (the limiter has its own clock/sleep).
        self.sleep = time.sleep
        #: calls this hook has made (slots taken from the shared quota), for a task's summary
        self.calls = 0
        # Retry policies by (max_attempts, max_retry_wait), built on first use (see _policy).
        self._policies: dict[tuple[int, float], Retrying] = {}

    # -- configuration --------------------------------------------------------------------------

    @cached_property
    def settings(self) -> GongSettings:
        conn = self.get_connection(self.gong_conn_id)
        if conn.conn_type and conn.conn_type.lower() != self.conn_type:
            raise GongValidationError(
                f"connection {self.gong_conn_id!r} has type {conn.conn_type!r}; the Gong hook needs a "
                f"connection of type {self.conn_type!r}"
            )
        # The UI form saves every empty optional field as null (or ""): that means "the default".
        extra = {k: v for k, v in (conn.extra_dejson or {}).items() if v is not None and v != ""}
        token = extra.get("access_token")
        auth_type = str(extra.get("auth_type") or "auto").strip().lower()
        if auth_type == "auto":
            auth_type = "oauth" if extra.get("refresh_token") else "bearer" if token else "basic"
        base_url = normalise_base_url(conn.host, conn.schema, conn.port)
        data = {
            **extra,
            "base_url": base_url,
            "auth_type": auth_type,
            "access_key": conn.login or None,
            "access_key_secret": conn.password or None,
            "access_token": token or None,
            **self._overrides,
        }
        try:
            settings = GongSettings.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False)
            )
            raise GongValidationError(f"the Gong connection for {base_url} is invalid: {problems}") from None
        for secret in (settings.access_key_secret, settings.access_token, settings.refresh_token):
            if secret:
                for form in masked_forms(secret.get_secret_value()):
                    mask_secret(form)
        for raw in (conn.password, token, extra.get("refresh_token")):  # as stored, maybe unstripped
            if isinstance(raw, str) and raw.strip():
                mask_secret(raw)
        return settings

    @cached_property
    def oauth(self) -> OAuthClient:
        """An OAuth connection's token source: refresh-or-reuse on the token store every task of the
        connection shares (the quota's backend; see :mod:`airflow_provider_gong.oauth`). Every token it
        learns is masked in Airflow's logs and redacted from this hook's errors before it is used."""
        settings = self.settings
        client_id, client_secret, refresh_token = settings.oauth_credentials()
        return OAuthClient(
            token_url=settings.token_url,
            client_id=client_id,
            client_secret=client_secret,
            refresh_token=refresh_token,
            store=token_store_for(
                settings.quota_backend, quota_dir=settings.quota_dir, quota_conn_id=settings.quota_conn_id
            ),
            on_secret=self._learn_secret,
            connect_timeout=settings.connect_timeout,
            timeout=settings.timeout,
            deadline=settings.total_deadline,
        )

    def _learn_secret(self, secret: str) -> None:
        for form in masked_forms(secret):
            mask_secret(form)
        self.redact.add(secret)

    def _authorization(self) -> str:
        """The Authorization header: from the connection, or for OAuth a valid access token (its API
        host then becomes :attr:`base_url`)."""
        if self.settings.auth_type == "oauth":
            return self.oauth.token().authorization
        return self.settings.authorization()

    def _renew_authorization(self, rejected: AccessToken | None = None) -> None:
        """OAuth: put a valid access token on the session before a call (cheap while the one held is
        valid); after a 401 (``rejected``), the one another task stored or a fresh one."""
        token = self.oauth.reauthorize(rejected) if rejected else self.oauth.token()
        if self.session.headers.get("Authorization") != token.authorization:
            self.session.headers["Authorization"] = token.authorization

    @cached_property
    def session(self) -> requests.Session:
        """One keep-alive session per hook, with the environment read once (see ``_pin_environment``)."""
        authorization = self._authorization()
        # Mask the derived value too: base64(key:secret) is as good as the secret itself.
        mask_secret(authorization.split(" ", 1)[1])
        session = requests.Session()
        adapter = DeadlineAdapter()
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers.update(
            {
                "Authorization": authorization,
                "Accept": "application/json",
                "User-Agent": f"airflow-provider-gong/{__version__}",
            }
        )
        _pin_environment(session, self.base_url)
        return session

    @cached_property
    def redact(self) -> Redactor:
        """Removes the connection's credentials, in any form, from text built out of an answer."""
        settings = self.settings
        return Redactor.for_credentials(
            access_key=settings.access_key.get_secret_value() if settings.access_key else None,
            access_key_secret=(
                settings.access_key_secret.get_secret_value() if settings.access_key_secret else None
            ),
            access_token=settings.access_token.get_secret_value() if settings.access_token else None,
            refresh_token=settings.refresh_token.get_secret_value() if settings.refresh_token else None,
        )

    @cached_property
    def limiter(self) -> QuotaLimiter:
        """Paces and counts this hook's calls on the state every task of the Gong account shares: the
        account (host + credential identity, see :func:`~airflow_provider_gong.quota.account_key`), not
        the connection id or the task, is what Gong's per-company quota belongs to. For OAuth that is
        the token's API host and the client id, never the access token, which rotates."""
        settings = self.settings
        if settings.auth_type == "oauth":
            self.oauth.token()  # the API host comes with the token
        account = account_key(
            self.base_url,
            auth_type=settings.auth_type,
            access_key=settings.access_key.get_secret_value() if settings.access_key else None,
            access_token=settings.access_token.get_secret_value() if settings.access_token else None,
        )
        store = store_for(
            settings.quota_backend, quota_dir=settings.quota_dir, quota_conn_id=settings.quota_conn_id
        )
        return QuotaLimiter(store, account, settings.rate_limit_per_second, daily_quota=settings.daily_quota)

    def quota_status(self) -> dict[str, Any]:
        """Today's use of the account's daily budget, counted by every task that shares it:
        ``{"used", "budget", "left", "resets_at"}`` (``resets_at``: the next UTC midnight). Makes no
        Gong call (an OAuth connection may first need an access token, to learn its API host); meant for
        a log line at the start of a batch.

        :raises GongError: the quota store cannot be read.
        """
        return self.limiter.status()

    @property
    def base_url(self) -> str:
        """The API base URL: the connection's host, or for OAuth the ``api_base_url_for_customer`` that
        came with the access token (Gong refuses the token on any other host)."""
        settings = self.settings
        if settings.auth_type == "oauth":
            oauth = self.__dict__.get("oauth")  # never built or refreshed here: error messages read this
            current = oauth.current if oauth is not None else None
            if current is not None and current.api_base_url:
                return _customer_base_url(current.api_base_url)
        return settings.base_url

    def get_conn(self) -> requests.Session:
        """The configured session (Airflow's hook protocol)."""
        return self.session

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

    # -- the one request path ---------------------------------------------------------------------

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
        """Send one API call under the pacing and retry policy and return the decoded JSON body.

        :param idempotent: False for calls that must not be repeated once Gong may have received them
            (creating a meeting). Those are retried only when Gong certainly did nothing: a 429 or a
            connection that never opened.
        :raises GongError: a typed subclass for every failure.
        """
        policy = self._policy(max_attempts or self.settings.max_attempts)
        return policy(self._send_once, method.upper(), path, json, params, idempotent)

    def _policy(self, max_attempts: int) -> Retrying:
        """The retry policy for ``max_attempts``, built once per hook instead of once per call.

        Sharing one ``Retrying`` is safe: tenacity keeps each call's state in a ``RetryCallState`` of
        its own and its statistics in thread-local storage, so calls from many threads do not mix.
        Keyed by the settings it is built from, so it can never disagree with them.
        """
        key = (max_attempts, self.settings.max_retry_wait)
        policy = self._policies.get(key)
        if policy is None:
            policy = retrying(max_attempts=key[0], max_wait=key[1], sleep=self._sleep)
            self._policies[key] = policy
        return policy

    def _sleep(self, seconds: float) -> None:
        # Looked up at every wait, not when the policy is built: ``sleep`` may be swapped at any time.
        self.sleep(seconds)

    def _send_once(
        self, method: str, path: str, json: Any, params: dict[str, Any] | None, idempotent: bool
    ) -> Any:
        try:
            if self.settings.auth_type == "oauth":
                return self._send_with_oauth(method, path, json, params, idempotent)
            return self._send_unredacted(method, path, json, params, idempotent)
        except GongError as exc:
            raise exc.redact(self.redact) from None  # before the retry log or any caller sees it

    def _send_with_oauth(
        self, method: str, path: str, json: Any, params: dict[str, Any] | None, idempotent: bool
    ) -> Any:
        """One call with a valid OAuth access token; after a 401, once more with another one.

        A 401 means Gong refused the call and did nothing, so even a create may be sent again. The
        usual reason is a token that expired early or was revoked; the one another task stored since,
        or a fresh one, is used. A second 401 is final.
        """
        self._renew_authorization()
        used = self.oauth.current
        try:
            return self._send_unredacted(method, path, json, params, idempotent)
        except GongAuthError as exc:
            if exc.status != 401 or used is None:
                raise
            self.log.info("Gong refused the OAuth access token (401); trying once more with another one")
        self._renew_authorization(rejected=used)
        try:
            return self._send_unredacted(method, path, json, params, idempotent)
        except GongAuthError as exc:
            if exc.status == 401:
                exc.message += (
                    " Gong refused a second, newer OAuth access token too: check the OAuth app's scopes "
                    "and that it is authorised for this Gong company."
                )
                exc.redact(self.redact)  # re-renders the message
            raise

    def _send_unredacted(
        self, method: str, path: str, json: Any, params: dict[str, Any] | None, idempotent: bool
    ) -> Any:
        operation = f"{method} {path}"
        session = self.session  # builds and checks the credentials: nothing is sent if they are unusable
        self._preconnect(session)  # before the slot: the request must follow its slot at once
        grant = self._acquire()
        deadline = self.settings.total_deadline
        try:
            with DeadlineAdapter.deadline(deadline) as call:
                try:
                    response = session.request(
                        method,
                        self.base_url + path,
                        json=json,
                        params=params,
                        timeout=(self.settings.connect_timeout, self.settings.timeout),
                    )
                finally:
                    if call.sent_at is not None:  # written out, whatever came back
                        self.limiter.sent(grant, call.sent_at)
            if not 200 <= response.status_code < 300:
                return self._raise_for_status(response, operation, idempotent)
            self.log.debug("%s -> %s", operation, response.status_code)
            body = _json_or_none(response)
        except GongError:
            raise
        except Exception as exc:
            self._forget_connections()
            raise self._transport_error(exc, operation, idempotent) from None
        if body is None:
            self._forget_connections()
            message = (
                f"{operation} answered HTTP {response.status_code} with a body that is not JSON; "
                f"{self.base_url} is probably not Gong's API (check the connection's host)"
            )
            if idempotent:
                raise GongError(message, status=response.status_code)
            raise GongMeetingMayExistError(message + "; the meeting may exist.", status=response.status_code)
        return body

    def _preconnect(self, session: requests.Session) -> None:
        adapter = session.get_adapter(self.base_url)
        if isinstance(adapter, DeadlineAdapter):  # not a test's mock transport
            adapter.preconnect(session, self.base_url, timeout=self.settings.connect_timeout)

    def _acquire(self) -> Grant:
        """Wait for this call's slot in the account's shared quota (the one pacing path)."""
        try:
            grant = self.limiter.take()
            self.calls += 1  # a slot taken is a call counted against the quota
            return grant
        except GongQuotaExhaustedError as exc:
            # Like a 429's Retry-After: a budget that resets within max_retry_wait (the last seconds
            # before UTC midnight) is waited out by the retry policy; a longer wait fails now.
            exc.retryable = exc.retry_after is not None and exc.retry_after <= self.settings.max_retry_wait
            raise

    def _forget_connections(self) -> None:
        """Drop the pooled connections after an answer the hook could not use.

        Whatever broke the answer (a proxy, a half-closed socket) may be about to close the connection
        too; a create sent on it next could fail before Gong reads it and would then have to be
        reported as "may exist". A fresh connection costs one handshake, only after a failure.
        """
        for adapter in self.session.adapters.values():
            adapter.close()

    def _transport_error(self, exc: Exception, operation: str, idempotent: bool) -> GongError:
        """Classify a failure without an HTTP answer by what Gong may have seen.

        Only "never sent" is safe to repeat for a create: anything else (timeouts, dropped or reset
        connections, an answer that could not be read or decoded, a blown deadline, or an error this
        code does not know) may have happened after Gong acted, so a create becomes "may exist".
        The exception text is never copied for header errors: requests quotes the header value.
        """
        kind = type(exc).__name__
        if isinstance(exc, requests.RequestException) and _never_sent(exc):
            return GongConnectionError(
                f"{operation} failed: could not connect to {self.base_url} ({kind}); check the host of "
                f"the Gong connection and the network.",
                retryable=True,
            )
        if isinstance(exc, _NOT_SENT):
            detail = "" if isinstance(exc, requests.exceptions.InvalidHeader) else f": {exc}"
            return GongValidationError(f"{operation} was not sent: the request is malformed ({kind}){detail}")
        if isinstance(exc, DeadlineExceeded) or getattr(exc, "deadline_exceeded", False):
            what = f"no complete answer within the {self.settings.total_deadline:g} s deadline"
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

    def _raise_for_status(self, response: requests.Response, operation: str, idempotent: bool) -> Any:
        status = response.status_code
        body = _json_or_none(response) or {}
        if status == 429:
            retry_after = _parse_retry_after(response.headers.get("Retry-After"))
            within_cap = retry_after is None or retry_after <= self.settings.max_retry_wait
            note = (
                ""
                if within_cap
                else f" That is longer than max_retry_wait ({self.settings.max_retry_wait:g} s), so the call "
                "fails now; let Airflow retry the task later (retries/retry_delay)."
            )
            raise error_from_response(
                status, body, operation=operation, retry_after=retry_after, retryable=within_cap, note=note
            )
        if status >= 500 and not idempotent:
            request_id = body.get("requestId") if isinstance(body, dict) else None
            raise GongMeetingMayExistError(
                f"{operation} failed: Gong answered HTTP {status}, so the meeting may or may not exist; "
                "it was not re-sent to avoid a duplicate. Check Gong before creating it again.",
                status=status,
                request_id=request_id,
            )
        raise error_from_response(
            status, body, operation=operation, retryable=idempotent and status in _RETRYABLE_5XX
        )

    # -- Meetings API -----------------------------------------------------------------------------

    def create_meeting(self, meeting: Meeting) -> MeetingResult:
        """POST /v2/meetings. Not idempotent, so its failures come in exactly two kinds:

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
            self._forget_connections()
            raise GongMeetingMayExistError(
                f"POST /v2/meetings failed after it may have reached Gong ({type(exc).__name__}: {exc}); "
                "the meeting may exist."
            ).redact(self.redact) from None
        if result is None:
            self._forget_connections()
            raise GongMeetingMayExistError(
                "POST /v2/meetings answered 2xx without a usable meetingId; the meeting may exist.",
                request_id=body.get("requestId") if isinstance(body, dict) else None,
            )
        self.log.debug("Created Gong meeting %s, requestId=%s", result.meeting_id, result.request_id)
        return result

    def update_meeting(self, meeting_id: str | int, meeting: Meeting) -> dict[str, Any]:
        """PUT /v2/meetings/{id} with the full meeting (a PUT replaces it).

        Returns ``request_id`` and ``meeting_id``.
        """
        path = f"/v2/meetings/{_meeting_id(meeting_id)}"
        body = self.request("PUT", path, json=meeting.to_payload())
        return {"request_id": body.get("requestId"), "meeting_id": str(body.get("meetingId") or meeting_id)}

    def delete_meeting(self, meeting_id: str | int, organizer_email: str) -> bool:
        """DELETE /v2/meetings/{id} (Gong wants the organizer in a JSON body).

        Returns False when Gong says the meeting does not exist: deleting is idempotent.
        """
        path = f"/v2/meetings/{_meeting_id(meeting_id)}"
        try:
            self.request("DELETE", path, json={"organizerEmail": organizer_email})
        except GongNotFoundError:
            self.log.info("Gong meeting %s was already gone", meeting_id)
            return False
        return True

    def get_integration_status(self, emails: Iterable[str]) -> list[dict[str, Any]]:
        """POST /v2/meetings/integration/status for each <= 100 distinct emails.

        Returns Gong's per-user entries (``email``, ``exists``, ``valid``, ``userFacingError``,
        ``fixUrl``, ``helpUrl``).
        """
        unique = list(dict.fromkeys(e.strip() for e in emails if e and e.strip()))
        users: list[dict[str, Any]] = []
        for chunk in _chunks(unique, MAX_EMAILS_PER_STATUS_CALL):
            body = self.request("POST", "/v2/meetings/integration/status", json={"emails": chunk})
            users.extend(body.get("users") or [])
        return users

    def test_connection(self) -> tuple[bool, str]:
        """One authenticated GET /v2/users; the message says what is wrong when it fails.

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
            how = f" with an OAuth access token valid until {_utc_text(current.expires_at)}"
        return True, f"Connected to Gong at {self.base_url}{how} ({count} users on the first page)."

    def _redact_safely(self, text: str) -> str:
        try:
            return self.redact(text)
        except Exception:  # the settings themselves are broken: the text cannot hold a working secret
            return text


def _utc_text(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


@functools.lru_cache(maxsize=16)
def _customer_base_url(url: str) -> str:
    """An OAuth token's ``api_base_url_for_customer``, in the form the hook sends calls to."""
    return normalise_base_url(url)


def _pin_environment(session: requests.Session, base_url: str) -> None:
    """Read once the proxy, CA bundle and netrc settings that requests reads on every call.

    With ``trust_env`` on, every ``Session.request`` scans the whole environment twice for proxies and
    stats the netrc files (~0.1 ms: more than everything else the hook adds to a call). Every call of
    this session goes to one host, so the answer cannot differ between calls: it is read here the way
    requests reads it (``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` unless ``NO_PROXY`` matches the
    Gong host; ``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE``, as the verify path), and the per-call
    scanning is switched off. A netrc entry is not used: with ``trust_env`` requests would let one
    replace the connection's Authorization header, and the Airflow connection is the one source of
    credentials. A changed environment reaches the next session (after :meth:`GongHook.close`).
    Gong's API does not redirect; if it ever sent a call to another host, that call would use these
    settings too.
    """
    session.proxies = dict(requests.utils.get_environ_proxies(base_url))
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = False


def _meeting_id(value: str | int) -> str:
    text = str(value).strip()
    if not text.isdigit() or len(text) > 20:
        raise GongValidationError(
            f"meeting_id must be Gong's numeric meeting ID (up to 20 digits), got {value!r}"
        )
    return text


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _json_or_none(response: requests.Response) -> Any:
    """The decoded body; ``{}`` for an empty one; None when it is not JSON."""
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        return None
