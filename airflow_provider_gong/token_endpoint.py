"""
Gong's OAuth token endpoint: one request (a refresh, or a code exchange), and what its answer means.

A refresh spends the refresh token it sends (Gong rotates them), so what matters most here is telling
apart an answer that says the refresh did not happen (a typed error: safe to try again later) from one
that leaves it in doubt (:class:`AnswerLost`: the caller must not send the same token again). An
authorization code is single-use too, so its exchange (``python -m airflow_provider_gong.oauth_setup``)
goes through the same request and the same reading of the answer. The grant travels in the query
string, as Gong documents it, which is why this module also keeps it out of urllib3's debug log and
tells the masker its URL-encoded forms.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from requests.auth import HTTPBasicAuth

from airflow_provider_gong import __version__
from airflow_provider_gong._client.redact import Redactor
from airflow_provider_gong._client.retry import never_sent, parse_retry_after
from airflow_provider_gong._client.transport import DeadlineAdapter, DeadlineExceeded
from airflow_provider_gong.exceptions import (
    GongAuthError,
    GongConnectionError,
    GongRateLimitError,
    GongValidationError,
)

DEFAULT_TOKEN_URL = "https://app.gong.io/oauth2/generate-customer-token"
#: Gong's answer should carry ``expires_in``; when it does not, the token is assumed good for this long
#: (a 401 from the API then refreshes it earlier).
DEFAULT_LIFETIME = 3600.0


class GongRefreshTokenError(GongAuthError):
    """
    Gong's token endpoint answered ``invalid_grant``: the refresh token was already used, or revoked.

    Only a new authorisation (a new refresh token in the connection) fixes it, so it is permanent (no
    Airflow retries).
    """


class GongAuthorizationCodeError(GongAuthError):
    """
    Gong's token endpoint refused an authorization code (``invalid_grant``).

    The code was already exchanged, has expired, or was issued for another ``redirect_uri`` or client:
    only a new authorisation (a new code) fixes it.
    """


@dataclass(frozen=True)
class _Grant:
    """What one kind of token request is called in messages, and what it must answer."""

    name: str
    needs: tuple[str, ...]


_REFRESH = _Grant("the refresh", ("access_token",))
_CODE = _Grant("the exchange of the authorization code", ("access_token", "refresh_token"))


class AnswerLost(Exception):
    """The refresh may have been done by Gong, but its answer did not arrive in a usable form."""


class TokenEndpoint:
    """
    Gong's token endpoint as one OAuth client calls it.

    :param redact: the client's redactor; it learns tokens as they come, so an echo of any of them in
        an error body is scrubbed.
    :param timeouts: (connect, read) seconds.
    :param deadline: total seconds for one refresh call.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str,
        *,
        redact: Redactor,
        timeouts: tuple[float, float],
        deadline: float,
    ) -> None:
        self.url = url
        self._client_id = client_id
        self._auth = HTTPBasicAuth(client_id, client_secret)
        self._redact = redact
        self._timeouts = timeouts
        self._deadline = deadline

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        """
        Make one refresh, as Gong documents it.

        The grant goes in the query string and the client's credentials as Basic auth. Returns Gong's
        answer (``access_token`` at least).

        :raises AnswerLost: Gong may have acted on it (the refresh token may be spent).
        :raises GongError: the refresh was refused or never sent (the refresh token is unspent).
        """
        response, body = self._send({"grant_type": "refresh_token", "refresh_token": refresh_token})
        return self._read(response, body, _REFRESH)

    def exchange_code(self, code: str, redirect_uri: str) -> dict[str, Any]:
        """
        Exchange an authorization code for the first refresh token, as Gong documents it.

        ``grant_type=authorization_code``, the code, the client id and the ``redirect_uri`` the code was
        issued for, in the query string; the client's credentials as Basic auth. The code is redacted
        from every error from here on. Returns Gong's answer (``access_token`` and ``refresh_token`` at
        least).

        :raises AnswerLost: Gong may have acted on it (the code may be spent).
        :raises GongAuthorizationCodeError: Gong refused the code (spent, expired, other redirect_uri).
        :raises GongError: the exchange was refused otherwise, or never sent.
        """
        self._redact.add(code)
        params = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": self._client_id,
            "redirect_uri": redirect_uri,
        }
        response, body = self._send(params)
        return self._read(response, body, _CODE)

    def _send(self, params: dict[str, str]) -> tuple[requests.Response, Any]:

        session = requests.Session()
        adapter = DeadlineAdapter()
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        try:
            with DeadlineAdapter.deadline(self._deadline):
                response = session.post(
                    self.url,
                    params=params,
                    # requests builds the Basic header; given explicitly, no netrc entry can replace it
                    auth=self._auth,
                    headers={
                        "Accept": "application/json",
                        "User-Agent": f"airflow-provider-gong/{__version__}",
                    },
                    timeout=self._timeouts,
                    allow_redirects=False,
                )
                return response, _json_or_none(response)
        except (requests.RequestException, DeadlineExceeded) as exc:
            kind = type(exc).__name__  # never the text: requests quotes the URL, with the token or code
            if isinstance(exc, requests.RequestException) and never_sent(exc):
                raise GongConnectionError(
                    f"Could not connect to Gong's token endpoint {self.url} ({kind}); check the "
                    "connection's token_url and the network.",
                    retryable=True,
                ) from None
            raise AnswerLost(f"its answer was lost ({kind})") from None
        finally:
            session.close()

    def _read(self, response: requests.Response, body: Any, grant: _Grant) -> dict[str, Any]:

        status = response.status_code
        fields: dict[str, Any] = body if isinstance(body, dict) else {}
        error = str(fields.get("error") or "")
        said = self._redact(str(fields.get("error_description") or fields.get("errors") or error))[:300]
        gong_says = f" Gong says: {said}" if said else ""
        if status == 200:
            for name in grant.needs:
                if not (isinstance(fields.get(name), str) and fields[name]):
                    raise AnswerLost(f"its answer held no {name.replace('_', ' ')}")
            return fields
        if 300 <= status < 400:
            raise GongValidationError(
                f"Gong's token endpoint {self.url} answered a redirect (HTTP {status}); set the "
                "connection's token_url to the endpoint itself."
            )
        if status == 400 and error == "invalid_grant" and grant is _CODE:
            raise GongAuthorizationCodeError(
                "Gong refused the authorization code (invalid_grant): it was already exchanged, it has "
                "expired (codes are short-lived), or the redirect_uri differs from the one the authorize URL "
                "was opened with. Open the authorize URL again and exchange the new code at once, with the "
                f"same redirect_uri.{gong_says}",
                status=status,
            )
        if status == 400 and error == "invalid_grant":
            raise GongRefreshTokenError(
                "Gong refused the connection's OAuth refresh token (invalid_grant): it was already used or "
                "has been revoked. The connection needs a new refresh token: authorise the Gong app again "
                f"and put the new refresh token in the connection's extras.{gong_says}",
                status=status,
            )
        if status in (401, 403) or error == "invalid_client":
            raise GongAuthError(
                f"Gong's token endpoint rejected the OAuth client (HTTP {status}): check the client id "
                f"(login) and client secret (password) of the Gong connection.{gong_says}",
                status=status,
            )
        if status == 429:
            raise GongRateLimitError(
                f"Gong's token endpoint answered 429 (too many requests); {grant.name} was refused."
                f"{gong_says}",
                status=status,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                retryable=True,
            )
        if 400 <= status < 500:
            raise GongAuthError(
                f"Gong's token endpoint refused {grant.name} (HTTP {status}{', ' + error if error else ''})."
                f"{gong_says}",
                status=status,
            )
        raise AnswerLost(f"it answered HTTP {status}")


def token_lifetime(expires_in: Any) -> float:
    """
    Return the seconds an access token is good for, from the answer's ``expires_in``.

    ``expires_in`` is a number, a numeric string, or missing (then :data:`DEFAULT_LIFETIME`).
    """
    try:
        seconds = float(expires_in)
    except (TypeError, ValueError):
        return DEFAULT_LIFETIME
    return seconds if seconds > 0 else DEFAULT_LIFETIME


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json() if response.content else None
    except ValueError:
        return None


def masked_forms(secret: str) -> list[str]:
    """
    Return the forms a secret takes in the text Airflow's masker sees.

    Raw, and URL-encoded as it is in the token request's query string (the refresh token's ``/``, ``+``
    and ``=`` are escaped there).
    """
    return list(dict.fromkeys([secret, quote(secret, safe=""), quote(secret, safe="").replace("%20", "+")]))


# -- keeping refresh tokens out of urllib3's debug log -----------------------------------------------

_QUERY_SECRET = re.compile(r"((?:refresh_token|access_token|code)=)[^&\s\"']+")


class _QuerySecretFilter(logging.Filter):
    """
    Mask the secrets of query strings in log records, for the handlers Airflow's masker does not cover.

    urllib3 logs each request line at DEBUG, query string included, and Gong wants the refresh token in
    the query string. Airflow's masker covers task logs (the hook registers every token with it); this
    covers every other handler (a script's, pytest's).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        if "_token=" in message or "code=" in message:
            record.msg, record.args = _QUERY_SECRET.sub(r"\1***", message), ()
        return True


_URLLIB3_LOG = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, _QuerySecretFilter) for f in _URLLIB3_LOG.filters):
    _URLLIB3_LOG.addFilter(_QuerySecretFilter())
