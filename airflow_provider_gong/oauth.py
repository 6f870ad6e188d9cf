"""
OAuth 2.0 for Gong: one rotating refresh token, shared safely by every task of a connection.

Gong's refresh tokens are single-use: each refresh answers a new refresh token and invalidates the
one that was sent (gong-api.md, section 2b). Two consequences drive this module:

- **Persist before use.** The new refresh token is the only key to the next access token. It is
  written to the token store and committed before the access token that came with it is handed out;
  a process that dies after that point loses nothing.
- **One refresh at a time.** Two tasks refreshing with the same refresh token means one of them gets
  ``400 invalid_grant`` (and, for Gong, its refresh token is gone). So the whole decision (is the
  stored access token still good? if not, refresh with the stored refresh token and save the answer)
  runs while the connection's row in the store is locked, and a task that waited for the lock finds
  the fresh token the other one saved instead of refreshing again.

The store is the quota's (``quota_backend`` of the connection; both come from
:mod:`airflow_provider_gong.state`): ``local`` is a SQLite file beside the quota file
(``BEGIN IMMEDIATE``), for the tasks of one machine; ``sql`` is table ``gong_oauth_token`` in the
PostgreSQL database of ``quota_conn_id`` (``SELECT ... FOR UPDATE``), for workers on several machines
(Celery, Kubernetes: a machine-local store cannot work there, because every machine would start from
the connection's refresh token, which only one of them can use); ``memory`` is one process only.
The request to Gong's token endpoint and the reading of its answer are
:mod:`airflow_provider_gong.token_endpoint`'s.

A row is keyed by token endpoint + client id + a hash of the refresh token the connection was seeded
with. A new refresh token in the connection (an admin authorised the app again) therefore starts a
fresh chain instead of being ignored in favour of a stored one, and two Gong companies that authorised
the same OAuth app (one client id, two seeds) keep two chains instead of overwriting each other's.
The tokens in a row are encrypted (Fernet, from the ``cryptography`` package Airflow installs) with a
key derived from the client secret: whoever can read the table but not the connection learns nothing
usable. The quota is keyed on the API host and the client id, never on the rotating access token
(see :attr:`airflow_provider_gong.hooks.gong.GongHook.limiter`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import pendulum
from cryptography.fernet import Fernet, InvalidToken

from airflow_provider_gong._client.redact import Redactor
from airflow_provider_gong.exceptions import GongAuthError, GongError
from airflow_provider_gong.state import Moment
from airflow_provider_gong.token_endpoint import (
    DEFAULT_TOKEN_URL as DEFAULT_TOKEN_URL,
    AnswerLost,
    GongRefreshTokenError as GongRefreshTokenError,
    TokenEndpoint,
    masked_forms as masked_forms,
    token_lifetime,
)
from airflow_provider_gong.token_store import StoredToken, TokenStore, chain_key

#: Refresh this long before the access token expires (at most a tenth of its lifetime), so that a call
#: made just before the expiry does not arrive just after it.
REFRESH_MARGIN = 300.0
_KEY_INFO = b"airflow-provider-gong oauth token store v1\n"


class GongTokenRefreshLostError(GongError):
    """
    A refresh reached Gong's token endpoint but its answer was lost.

    Lost: a timeout, dropped connection, 5xx or unreadable body. Gong may have used up the refresh
    token, so it is not re-sent by the hook; the task's next try will find out (success, or
    :class:`GongRefreshTokenError`). Not permanent.
    """


# -- what the client hands out -------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessToken:
    """An access token as the hook uses it. The token itself never shows in a repr."""

    access_token: str = field(repr=False)
    api_base_url: str | None
    expires_at: float

    @property
    def authorization(self) -> str:
        return f"Bearer {self.access_token}"


# -- the client ----------------------------------------------------------------------------------------


class OAuthClient:
    """
    Refresh-or-reuse of a connection's access token on a shared :class:`TokenStore`.

    Thread-safe; one per hook. :meth:`token` is cheap while the token this client holds is valid (no
    store access); otherwise it goes to the store, where the decision and any refresh happen under the
    row's lock (see the module docstring).

    :param token_url: Gong's token endpoint.
    :param client_id: the OAuth app's client id.
    :param client_secret: the OAuth app's client secret.
    :param refresh_token: the refresh token in the connection: the seed of the chain.
    :param store: where the chain lives.
    :param on_secret: called with every secret this client learns (tokens), before anything could print
        it: the hook registers them with Airflow's masker and its redactor.
    :param connect_timeout: seconds to connect to the token endpoint.
    :param timeout: read timeout for its answer.
    :param deadline: total seconds for one refresh call (default: connect + read timeout).
    :param clock: this process's monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        store: TokenStore,
        on_secret: Callable[[str], None] = lambda secret: None,
        connect_timeout: float = 10.0,
        timeout: float = 30.0,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._seed = refresh_token
        self.store = store
        self._on_secret = on_secret
        self._clock = clock
        self.key = chain_key(token_url, client_id, refresh_token)
        self.label = f"{urlsplit(token_url).netloc or token_url} (client id hash {self.key[6:14]})"
        digest = hmac.new(client_secret.encode(), _KEY_INFO + self.key.encode(), hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self.redact = Redactor([client_secret, f"{client_id}:{client_secret}", refresh_token])
        self._endpoint = TokenEndpoint(
            token_url,
            client_id,
            client_secret,
            redact=self.redact,
            timeouts=(connect_timeout, timeout),
            deadline=deadline if deadline is not None else connect_timeout + timeout,
        )
        self._lock = threading.Lock()
        self._current: AccessToken | None = None
        self._due = 0.0
        #: refreshes this client made (the store counts every process's: :meth:`refreshes_on_chain`)
        self.refreshes = 0
        for secret in (client_secret, refresh_token):
            self._learn(secret)
        self._learn(base64.b64encode(f"{client_id}:{client_secret}".encode()).decode())

    @property
    def current(self) -> AccessToken | None:
        """The access token this client holds, if any (no store access, no refresh)."""
        return self._current

    def token(self) -> AccessToken:
        """Return a valid access token: the one held, the one another task stored, or a fresh one."""
        current = self._current
        if current is not None and self._clock() < self._due:
            return current
        return self._obtain(rejected=None)

    def reauthorize(self, rejected: AccessToken) -> AccessToken:
        """
        Gong refused ``rejected`` (401): get another one.

        Refreshes only when the store still holds the refused token; when another task has already
        replaced it, that one is used.
        """
        return self._obtain(rejected=rejected.access_token)

    def refreshes_on_chain(self) -> int:
        """Count the refreshes made on this connection's chain by every process of the store."""
        count, _ = self.store.transact(
            self.key, lambda stored, moment: (None, stored.refreshes if stored else 0), labels=(self.label,)
        )
        return count

    def _obtain(self, rejected: str | None) -> AccessToken:
        with self._lock:
            current = self._current
            if current is not None:  # another thread of this hook may have replaced it meanwhile
                if rejected is None and self._clock() < self._due:
                    return current
                if rejected is not None and current.access_token != rejected:
                    return current
            refreshed: list[bool] = []
            try:
                outcome, _ = self.store.transact(
                    self.key,
                    partial(self._decide, rejected=rejected, refreshed=refreshed),
                    labels=(self.label,),
                )
            except GongError:
                raise
            except Exception as exc:
                problem = f"{type(exc).__name__}: {self.redact(str(exc))}"
                if refreshed:  # Gong rotated the refresh token, and the new one may not be saved
                    raise GongRefreshTokenError(
                        f"Gong issued a new OAuth refresh token but the token store ({self.store.name}) "
                        f"could not save it ({problem}). Unless the save went through after all, the "
                        "connection needs a new refresh token: authorise the Gong app again."
                    ) from None
                raise GongError(
                    f"The Gong OAuth token store ({self.store.name}) could not be used: {problem}. "
                    "No call was made to Gong."
                ) from None
            if isinstance(outcome, GongError):
                raise outcome  # raised after the commit: a lost answer's mark is saved
            token, seconds_left = outcome
            self._current, self._due = token, self._clock() + seconds_left
            return token

    def _decide(
        self, stored: StoredToken | None, moment: Moment, rejected: str | None, refreshed: list[bool]
    ) -> tuple[StoredToken | None, tuple[AccessToken, float] | GongError]:
        """
        Under the row's lock: reuse the stored access token, or refresh and store the answer.

        Returns the row to write and what :meth:`_obtain` hands out or raises after the commit. Appends
        to ``refreshed`` once Gong has rotated the refresh token: from then on a failed commit loses it.
        """
        now = moment.wall
        chain = self._open(stored) if stored is not None else None
        if chain is not None and stored is not None:
            access = chain.get("access_token")
            if access and access != rejected and now < stored.refresh_at:
                self._learn(access)
                return None, (self._token(chain, stored.expires_at), stored.refresh_at - now)
        refresh_token = chain["refresh_token"] if chain else self._seed
        self._learn(refresh_token)
        try:
            answer = self._endpoint.refresh(refresh_token)
        except AnswerLost as lost:
            marked = replace(stored or StoredToken(self._seal({"refresh_token": refresh_token})), lost_at=now)
            return marked, GongTokenRefreshLostError(
                f"The refresh of the Gong OAuth access token at {self.token_url} reached Gong but {lost}. "
                "Gong may have used up the refresh token; it was not sent again. The task's next try "
                "will tell: if it then fails with invalid_grant, the connection needs a new refresh token."
            )
        except GongRefreshTokenError as exc:
            return None, self._explain_invalid_grant(exc, stored, seeded=chain is None)
        except GongError as exc:
            return None, exc
        refreshed.append(True)
        access = answer["access_token"]
        new_refresh = answer.get("refresh_token") or refresh_token  # a server may decline to rotate
        for secret in (access, new_refresh):
            self._learn(secret)
        lifetime = token_lifetime(answer.get("expires_in"))
        usable = lifetime - min(REFRESH_MARGIN, lifetime / 10)
        api_base_url = answer.get("api_base_url_for_customer")
        new_chain = {
            "refresh_token": new_refresh,
            "access_token": access,
            "api_base_url": api_base_url if isinstance(api_base_url, str) and api_base_url.strip() else None,
        }
        self.refreshes += 1
        new = StoredToken(
            self._seal(new_chain),
            expires_at=now + lifetime,
            refresh_at=now + usable,
            refreshes=(stored.refreshes if stored else 0) + 1,
            lost_at=None,
        )
        return new, (self._token(new_chain, now + lifetime), usable)

    def _explain_invalid_grant(
        self, exc: GongRefreshTokenError, stored: StoredToken | None, *, seeded: bool
    ) -> GongRefreshTokenError:
        hints = []
        if stored is not None and stored.lost_at is not None:
            when = pendulum.from_timestamp(stored.lost_at, tz="UTC")
            hints.append(
                f"The answer to an earlier refresh (at {when:%Y-%m-%d %H:%M:%S} UTC) was lost, which "
                "probably used it up."
            )
        if seeded:
            hints.append(
                "The token store held no newer refresh token, so the connection's own was sent, and it had "
                "been used before: by another tool, by another machine with a local token store of its own "
                "(workers on several machines need quota_backend 'sql'), or by a task killed while it "
                "refreshed."
            )
        else:
            hints.append(
                "The stored refresh token was spent: by a task killed while it refreshed (Gong's answer "
                "with the next one never arrived), or the token store was restored from a backup."
            )
        exc.message = f"{exc.message} {' '.join(hints)}"
        exc.args = (exc._render(),)
        return exc

    def _learn(self, secret: str) -> None:
        if not secret:
            return
        self.redact.add(secret)
        self._on_secret(secret)

    def _seal(self, chain: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(chain).encode())

    def _open(self, stored: StoredToken) -> dict[str, Any]:
        try:
            chain = json.loads(self._fernet.decrypt(stored.blob))
        except (InvalidToken, ValueError):
            raise GongAuthError(
                f"The stored OAuth tokens of this Gong connection ({self.store.name}) cannot be read with "
                "its client secret: the client secret changed since they were stored. Put a new refresh "
                "token in the connection (authorise the Gong app again)."
            ) from None
        if not isinstance(chain, dict) or not chain.get("refresh_token"):
            raise GongAuthError(
                f"The stored OAuth tokens of this Gong connection ({self.store.name}) are damaged."
            )
        self._learn(chain["refresh_token"])
        return chain

    @staticmethod
    def _token(chain: dict[str, Any], expires_at: float) -> AccessToken:
        return AccessToken(chain["access_token"], chain.get("api_base_url"), expires_at)
