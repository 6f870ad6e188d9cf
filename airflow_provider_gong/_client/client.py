"""
GongClient: settings in, one paced, bounded, retried, secret-safe request path out.

Every call goes through :meth:`GongClient.request`: the retry policy (:mod:`.retry`) around one send,
and each send opens its connection, takes its slot in the account's shared quota (the limiter every
task of the account shares), sends under a total deadline (:mod:`.transport`), and turns whatever
happened into a typed error (:mod:`.errors`) with every credential redacted (:mod:`.redact`) before
the retry log or any caller sees it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from functools import cached_property, partial
from typing import Any

import requests
from tenacity import Retrying

from airflow_provider_gong import __version__, metrics
from airflow_provider_gong._client.auth import BasicAuth, BearerAuth, OAuthAuth
from airflow_provider_gong._client.errors import json_or_none, not_json_error, status_error, transport_error
from airflow_provider_gong._client.redact import Redactor
from airflow_provider_gong._client.retry import retrying
from airflow_provider_gong._client.settings import GongSettings, normalise_base_url
from airflow_provider_gong._client.transport import DeadlineAdapter, new_session
from airflow_provider_gong.exceptions import GongError, GongQuotaExhaustedError
from airflow_provider_gong.oauth import OAuthClient, masked_forms
from airflow_provider_gong.quota import Grant, QuotaLimiter, account_key, store_for
from airflow_provider_gong.token_store import token_store_for


class GongClient:
    """
    Gong's API for one set of :class:`~.settings.GongSettings`; thread-safe, one per hook.

    :param settings: the validated connection.
    :param mask: called with every credential value before it could be logged (the hook passes
        Airflow's ``mask_secret``).
    :param sleep: how retries wait; looked up at every wait, so a test may swap it at any time.
    :param log: where the client's own lines go (the hook passes its logger: Airflow's per-namespace
        log levels reach that one, at DEBUG too).
    """

    def __init__(
        self,
        settings: GongSettings,
        *,
        mask: Callable[[str], None] = lambda secret: None,
        sleep: Callable[[float], None] = time.sleep,
        log: Any = None,
    ) -> None:
        self.settings = settings
        self.log = log or logging.getLogger(__name__)
        self.sleep = sleep
        self._mask = mask
        #: calls made (slots taken from the shared quota), for a task's summary
        self.calls = 0
        # Retry policies by (max_attempts, max_retry_wait), built on first use (see _policy).
        self._policies: dict[tuple[int, float], Retrying] = {}

    # -- what a call is sent with ------------------------------------------------------------------

    @cached_property
    def redact(self) -> Redactor:
        """Removes the connection's credentials, in any form, from text built out of an answer."""
        settings = self.settings
        return Redactor.for_credentials(
            access_key=settings.secret("access_key"),
            access_key_secret=settings.secret("access_key_secret"),
            access_token=settings.secret("access_token"),
            refresh_token=settings.secret("refresh_token"),
        )

    @cached_property
    def oauth(self) -> OAuthClient:
        """
        An OAuth connection's token source: refresh-or-reuse on a shared token store.

        The store is the one every task of the connection shares (the quota's backend). Every token it
        learns is masked and redacted before it is used.
        """
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
            self._mask(form)
        self.redact.add(secret)

    @cached_property
    def auth(self) -> BasicAuth | BearerAuth | OAuthAuth:
        """The session's auth, checked when it is built: nothing is sent with unusable credentials."""
        return (
            OAuthAuth(self.oauth, log=self.log)
            if self.settings.auth_type == "oauth"
            else self.settings.static_auth()
        )

    @cached_property
    def session(self) -> requests.Session:
        """One keep-alive session per client; for OAuth, built once the token has named the API host."""
        auth = self.auth
        # Mask the derived value too: base64(key:secret) is as good as the secret itself.
        self._mask(auth.renew().access_token if isinstance(auth, OAuthAuth) else auth.credential)
        return new_session(self.base_url, auth, f"airflow-provider-gong/{__version__}")

    @property
    def base_url(self) -> str:
        """
        The connection's host, or for OAuth the access token's ``api_base_url_for_customer``.

        For OAuth it is the one that came with the access token: Gong refuses the token on any other host.
        """
        settings = self.settings
        if settings.auth_type == "oauth":
            oauth = self.__dict__.get("oauth")  # never built or refreshed here: error messages read this
            current = oauth.current if oauth is not None else None
            if current is not None and current.api_base_url:
                return _customer_base_url(current.api_base_url)
        return settings.base_url

    @cached_property
    def limiter(self) -> QuotaLimiter:
        """
        Paces and counts the calls on state every task of the Gong account shares.

        The account (host + credential identity), not the connection id or the task, is what Gong's quota
        belongs to. For OAuth that is the token's API host and the client id, never the rotating access
        token.
        """
        settings = self.settings
        if settings.auth_type == "oauth":
            self.oauth.token()  # the API host comes with the token
        account = account_key(
            self.base_url,
            auth_type=settings.auth_type,
            access_key=settings.secret("access_key"),
            access_token=settings.secret("access_token"),
        )
        store = store_for(
            settings.quota_backend, quota_dir=settings.quota_dir, quota_conn_id=settings.quota_conn_id
        )
        return QuotaLimiter(store, account, settings.rate_limit_per_second, daily_quota=settings.daily_quota)

    def close(self) -> None:
        """Close the session; the next call opens a new one, reading the environment again."""
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

    def forget_connections(self) -> None:
        """
        Drop the pooled connections after an answer the client could not use.

        Whatever broke the answer (a proxy, a half-closed socket) may be about to close the connection
        too; a create sent on it next could fail before Gong reads it and would then have to be
        reported as "may exist". A fresh connection costs one handshake, only after a failure.
        """
        for adapter in self.session.adapters.values():
            adapter.close()

    # -- the one request path -----------------------------------------------------------------------

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
        """
        Send one API call under the pacing and retry policy and return the decoded JSON body.

        :param idempotent: False for calls that must not be repeated once Gong may have received them
            (creating a meeting). Those are retried only when Gong certainly did nothing: a 429 or a
            connection that never opened.
        :raises GongError: a typed subclass for every failure.
        """
        policy = self._policy(max_attempts or self.settings.max_attempts)
        return policy(self._send_once, method.upper(), path, json, params, idempotent)

    def _policy(self, max_attempts: int) -> Retrying:
        """
        Return the retry policy for ``max_attempts``, built once per client instead of once per call.

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
        send = partial(self._send, method, path, json, params, idempotent)
        try:
            auth = self.auth  # checks the credentials: nothing is sent if they are unusable
            return auth.send(send, self.redact) if isinstance(auth, OAuthAuth) else send()
        except GongError as exc:
            raise exc.redact(self.redact) from None  # before the retry log or any caller sees it

    def _send(
        self, method: str, path: str, json: Any, params: dict[str, Any] | None, idempotent: bool
    ) -> Any:
        operation = f"{method} {path}"
        settings = self.settings
        session = self.session
        self._preconnect(session)  # before the slot: the request must follow its slot at once
        grant = self._acquire()
        status: int | None = None  # none: no answer came (counted as an "error" call)
        try:
            with DeadlineAdapter.deadline(settings.total_deadline) as call:
                try:
                    response = session.request(
                        method,
                        self.base_url + path,
                        json=json,
                        params=params,
                        timeout=(settings.connect_timeout, settings.timeout),
                    )
                finally:
                    if call.sent_at is not None:  # written out, whatever came back
                        self.limiter.sent(grant, call.sent_at)
            status = response.status_code
            if not 200 <= response.status_code < 300:
                raise status_error(
                    response, operation, idempotent=idempotent, max_retry_wait=settings.max_retry_wait
                )
            self.log.debug("%s -> %s", operation, response.status_code)
            body = json_or_none(response)
        except GongError:
            raise
        except Exception as exc:
            self.forget_connections()
            raise transport_error(
                exc,
                operation,
                idempotent=idempotent,
                base_url=self.base_url,
                deadline=settings.total_deadline,
            ) from None
        finally:
            metrics.call(method, path, status)
        if body is None:
            self.forget_connections()
            raise not_json_error(
                response.status_code, operation, idempotent=idempotent, base_url=self.base_url
            )
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
            metrics.quota_wait(grant.slept)
            return grant
        except GongQuotaExhaustedError as exc:
            # Like a 429's Retry-After: a budget that resets within max_retry_wait (the last seconds
            # before UTC midnight) is waited out by the retry policy; a longer wait fails now.
            exc.retryable = exc.retry_after is not None and exc.retry_after <= self.settings.max_retry_wait
            raise


@functools.lru_cache(maxsize=16)
def _customer_base_url(url: str) -> str:
    """Return an OAuth token's ``api_base_url_for_customer``, in the form the client sends calls to."""
    return normalise_base_url(url)
