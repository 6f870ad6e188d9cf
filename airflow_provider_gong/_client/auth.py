"""
How a call proves who it is: Basic, Bearer, or an OAuth access token that is renewed on a 401.

Each is a ``requests.auth.AuthBase`` set as the session's ``auth``, so the Authorization header is put on
the request by requests itself and a netrc entry can never replace it. Basic and Bearer check their
credential when they are built: one that an HTTP header cannot carry fails the task before any call,
instead of failing every row of a batch (and showing up in requests' error text).
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from requests.auth import AuthBase

from airflow_provider_gong.exceptions import GongAuthError, GongValidationError

if TYPE_CHECKING:
    from airflow_provider_gong.oauth import AccessToken, OAuthClient

T = TypeVar("T")

#: RFC 6750 token characters, loosened to any visible ASCII: what an HTTP header can carry as-is.
HEADER_SAFE = re.compile(r"^[\x21-\x7e]+$")


class _HeaderAuth(AuthBase):
    """A fixed Authorization header, built once rather than per call."""

    header: str

    @property
    def credential(self) -> str:
        """
        The part after the scheme: what Airflow's log masker must learn.

        The base64 of key:secret is as good as the secret itself.
        """
        return self.header.split(" ", 1)[1]

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self.header
        return request


class BasicAuth(_HeaderAuth):
    """Gong's access key and secret (RFC 7617, UTF-8), the connection's login and password."""

    def __init__(self, access_key: str | None, access_key_secret: str | None) -> None:
        if not (access_key and access_key_secret):
            raise GongValidationError(
                "Gong connection needs an access key (login) and an access key secret (password)"
            )
        pair = f"{access_key}:{access_key_secret}"
        self.header = "Basic " + base64.b64encode(pair.encode()).decode()


class BearerAuth(_HeaderAuth):
    """An access token kept in the connection's extras (renewed by whoever put it there)."""

    def __init__(self, access_token: str | None) -> None:
        if not access_token:
            raise GongValidationError(
                "Gong connection uses bearer auth but has no access_token in its extras"
            )
        if not HEADER_SAFE.match(access_token):
            raise GongValidationError(
                "the Gong connection's access_token contains characters an HTTP header cannot carry "
                "(spaces, line breaks, control or non-ASCII characters); paste the token again"
            )
        self.header = f"Bearer {access_token}"


class OAuthAuth(AuthBase):
    """
    An OAuth access token from Gong's token endpoint, and what to do when Gong refuses it.

    :meth:`renew` is called before the call takes its quota slot (a refresh is a round trip to Gong,
    and must not sit between the slot and the request); ``__call__`` then only puts the token held on
    the request. :meth:`send` is the refresh-on-401 re-send that requests' ``HTTPDigestAuth`` keeps in
    a response hook. Here it wraps the client's whole send step instead: the re-send must take a quota
    slot and a deadline of its own, and a response hook re-sending through ``response.connection``
    would get neither.
    """

    def __init__(self, oauth: OAuthClient, *, log: Any = None) -> None:
        self.oauth = oauth
        self.log = log or logging.getLogger(__name__)
        self._token: AccessToken | None = None

    def renew(self, rejected: AccessToken | None = None) -> AccessToken:
        """
        Return a valid token; cheap while the one held is valid.

        After a 401 (``rejected``): the one another task stored since, or a fresh one.
        """
        token = self.oauth.reauthorize(rejected) if rejected else self.oauth.token()
        self._token = token
        return token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self._token or self.renew()
        request.headers["Authorization"] = token.authorization
        return request

    def send(self, send: Callable[[], T], redact: Callable[[Any], Any]) -> T:
        """
        One call with a valid access token; after a 401, once more with another one.

        A 401 means Gong refused the call and did nothing, so even a create may be sent again. The
        usual reason is a token that expired early or was revoked. A second 401 is final.
        """
        used = self.renew()
        try:
            return send()
        except GongAuthError as exc:
            if exc.status != 401:
                raise
            self.log.info("Gong refused the OAuth access token (401); trying once more with another one")
        self.renew(rejected=used)
        try:
            return send()
        except GongAuthError as exc:
            if exc.status == 401:
                exc.message += (
                    " Gong refused a second, newer OAuth access token too: check the OAuth app's scopes "
                    "and that it is authorised for this Gong company."
                )
                exc.redact(redact)  # re-renders the message
            raise
