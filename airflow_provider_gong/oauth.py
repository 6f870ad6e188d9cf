"""OAuth 2.0 for Gong: one rotating refresh token, shared safely by every task of a connection.

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

The store reuses the quota backends (``quota_backend`` of the connection, see
:mod:`airflow_provider_gong.quota`): ``local`` is a SQLite file beside the quota file
(``BEGIN IMMEDIATE``), for the tasks of one machine; ``sql`` is table ``gong_oauth_token`` in the
PostgreSQL database of ``quota_conn_id`` (``SELECT ... FOR UPDATE``), for workers on several machines
(Celery, Kubernetes: a machine-local store cannot work there, because every machine would start from
the connection's refresh token, which only one of them can use); ``memory`` is one process only.

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
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import pendulum
import requests
from cryptography.fernet import Fernet, InvalidToken
from requests.auth import HTTPBasicAuth

from airflow_provider_gong import __version__
from airflow_provider_gong._client.redact import Redactor
from airflow_provider_gong._client.retry import never_sent, parse_retry_after
from airflow_provider_gong._client.transport import DeadlineAdapter, DeadlineExceeded
from airflow_provider_gong.exceptions import (
    GongAuthError,
    GongConnectionError,
    GongError,
    GongRateLimitError,
    GongValidationError,
)
from airflow_provider_gong.shared_db import locate, open_postgres, open_sqlite, row_values, sqlite_write_lock

T = TypeVar("T")

DEFAULT_TOKEN_URL = "https://app.gong.io/oauth2/generate-customer-token"
TABLE = "gong_oauth_token"
LOCAL_FILE = "oauth.sqlite3"
#: Refresh this long before the access token expires (at most a tenth of its lifetime), so that a call
#: made just before the expiry does not arrive just after it.
REFRESH_MARGIN = 300.0
#: Gong's answer should carry ``expires_in``; when it does not, the token is assumed good for this long
#: (a 401 from the API then refreshes it earlier).
DEFAULT_LIFETIME = 3600.0
#: Seconds a task waits for another one's refresh (the lock) before giving up.
LOCK_WAIT = 120.0
_KEY_INFO = b"airflow-provider-gong oauth token store v1\n"


class GongRefreshTokenError(GongAuthError):
    """Gong's token endpoint answered ``invalid_grant``: the refresh token was already used or has been
    revoked. Only a new authorisation (a new refresh token in the connection) fixes it, so it is
    permanent (no Airflow retries)."""


class GongTokenRefreshLostError(GongError):
    """A refresh reached Gong's token endpoint but its answer was lost (timeout, dropped connection,
    5xx, unreadable body). Gong may have used up the refresh token, so it is not re-sent by the hook;
    the task's next try will find out (success, or :class:`GongRefreshTokenError`). Not permanent."""


# -- what a store holds --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredToken:
    """One token chain as a store keeps it. Times are seconds on the store's clock (epoch seconds).

    :param blob: the secrets (refresh token, access token, API host), encrypted.
    :param expires_at: when the access token expires.
    :param refresh_at: when to refresh it (``expires_at`` less the margin).
    :param refreshes: refreshes made on this chain, by every process (for operators and tests).
    :param lost_at: when a refresh's answer was lost; the stored refresh token may be spent since.
    """

    blob: bytes
    expires_at: float = 0.0
    refresh_at: float = 0.0
    refreshes: int = 0
    lost_at: float | None = None


@dataclass(frozen=True)
class AccessToken:
    """An access token as the hook uses it. The token itself never shows in a repr."""

    access_token: str = field(repr=False)
    api_base_url: str | None
    expires_at: float

    @property
    def authorization(self) -> str:
        return f"Bearer {self.access_token}"


Change = Callable[[StoredToken | None, float], tuple[StoredToken | None, T]]


class TokenStore(ABC):
    """Where token chains live. :meth:`transact` is the only operation: it runs a change on one row
    while no other process (or thread) can touch that row, and commits what it returns."""

    name: str = "store"

    @abstractmethod
    def transact(self, key: str, label: str, change: Change[T]) -> T:
        """Run ``change(stored, now)`` with ``key``'s row locked; write the row it returns (None: write
        nothing) and commit before returning its result. An exception from ``change`` rolls back."""


class MemoryTokenStore(TokenStore):
    """Chains in this process only (``quota_backend="memory"``): every hook of the process shares
    :data:`MEMORY`, but another process would refresh on its own and break the chain."""

    name = "memory (this process)"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._rows: dict[str, StoredToken] = {}
        self._lock = threading.Lock()

    def transact(self, key: str, label: str, change: Change[T]) -> T:
        with self._lock:
            new, result = change(self._rows.get(key), self._clock())
            if new is not None:
                self._rows[key] = new
            return result


MEMORY = MemoryTokenStore()


class SQLiteTokenStore(TokenStore):
    """Chains in a SQLite file every process on the machine opens (``quota_backend="local"``).

    A file of its own beside the quota file, not a table in it: SQLite locks the whole file, and a
    refresh holds the lock for an HTTP round trip, which must not stall every Gong call of the machine.
    ``BEGIN IMMEDIATE`` takes the write lock before the row is read; a process waiting for another's
    refresh waits up to ``timeout`` seconds. The file is created readable by its owner only.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = LOCK_WAIT,
    ) -> None:
        self.path = Path(path)
        self.name = f"local ({self.path})"
        self._clock = clock
        self._timeout = timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # never use a connection inherited by fork()
            columns = (
                "key TEXT PRIMARY KEY, label TEXT NOT NULL, blob BLOB NOT NULL, expires_at REAL NOT NULL, "
                "refresh_at REAL NOT NULL, refreshes INTEGER NOT NULL, lost_at REAL, updated_at REAL NOT NULL"
            )
            # FULL, not NORMAL as for the quota: a rotated refresh token forgotten by an OS crash is a
            # broken connection, not one wasted call.
            conn = open_sqlite(
                self.path, TABLE, columns, timeout=self._timeout, synchronous="FULL", private=True
            )
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def transact(self, key: str, label: str, change: Change[T]) -> T:
        with self._lock, sqlite_write_lock(self._connection()) as conn:
            row = conn.execute(
                f"SELECT blob, expires_at, refresh_at, refreshes, lost_at FROM {TABLE} WHERE key = ?",
                (key,),
            ).fetchone()
            now = self._clock()
            stored = StoredToken(bytes(row[0]), row[1], row[2], row[3], row[4]) if row and row[0] else None
            new, result = change(stored, now)
            if new is not None:
                conn.execute(
                    f"INSERT OR REPLACE INTO {TABLE} (key, label, blob, expires_at, refresh_at, "
                    "refreshes, lost_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, label, new.blob, new.expires_at, new.refresh_at, new.refreshes, new.lost_at, now),
                )
        return result


class SqlTokenStore(TokenStore):
    """Chains in table ``gong_oauth_token`` of a PostgreSQL database (``quota_backend="sql"``).

    The row is locked with ``SELECT ... FOR UPDATE`` (inserted empty first if absent, so that two
    processes seeding a new chain at once queue on one row). The clock is the database's, so workers
    whose clocks disagree still agree on when a token expires. A connection of its own, not the quota
    store's: a refresh holds its transaction open for an HTTP round trip. ``lock_timeout`` bounds the
    wait for another worker's refresh; a worker that dies mid-refresh releases the lock with its
    connection.
    """

    def __init__(self, conn_id: str, *, timeout: float = LOCK_WAIT) -> None:
        self.conn_id = conn_id
        self.name = f"sql (connection {conn_id!r}, table {TABLE})"
        self._timeout = timeout
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = 0

    def _connection(self) -> Any:
        if self._conn is not None and self._pid == os.getpid() and not getattr(self._conn, "closed", False):
            return self._conn
        columns = (
            "key VARCHAR(200) PRIMARY KEY, label TEXT NOT NULL, blob BYTEA NOT NULL, "
            "expires_at DOUBLE PRECISION NOT NULL, refresh_at DOUBLE PRECISION NOT NULL, "
            "refreshes INTEGER NOT NULL, lost_at DOUBLE PRECISION, updated_at DOUBLE PRECISION NOT NULL"
        )
        conn = open_postgres(self.conn_id, TABLE, columns, needed_by="the sql OAuth token store")
        self._conn, self._pid = conn, os.getpid()
        return conn

    def transact(self, key: str, label: str, change: Change[T]) -> T:
        with self._lock:
            conn = self._connection()
            cur = conn.cursor()
            try:
                cur.execute(f"SET LOCAL lock_timeout = '{int(self._timeout * 1000)}ms'")
                select = (
                    f"SELECT blob, expires_at, refresh_at, refreshes, lost_at FROM {TABLE} "
                    "WHERE key = %s FOR UPDATE"
                )
                cur.execute(select, (key,))
                row = cur.fetchone()
                if row is None:
                    cur.execute(
                        f"INSERT INTO {TABLE} (key, label, blob, expires_at, refresh_at, refreshes, "
                        "updated_at) VALUES (%s, %s, %s, 0, 0, 0, 0) ON CONFLICT (key) DO NOTHING",
                        (key, label, b""),
                    )
                    cur.execute(select, (key,))
                    row = cur.fetchone()
                blob, expires_at, refresh_at, refreshes, lost_at = row_values(row)
                cur.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8")
                now = float(row_values(cur.fetchone())[0])
                stored = (
                    StoredToken(bytes(blob), float(expires_at), float(refresh_at), int(refreshes), lost_at)
                    if blob
                    else None
                )
                new, result = change(stored, now)
                if new is not None:
                    cur.execute(
                        f"UPDATE {TABLE} SET label = %s, blob = %s, expires_at = %s, refresh_at = %s, "
                        "refreshes = %s, lost_at = %s, updated_at = %s WHERE key = %s",
                        (
                            label,
                            new.blob,
                            new.expires_at,
                            new.refresh_at,
                            new.refreshes,
                            new.lost_at,
                            now,
                            key,
                        ),
                    )
                conn.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.rollback()
                raise
            finally:
                with contextlib.suppress(Exception):
                    cur.close()
            return result


_STORES: dict[tuple[str, str], TokenStore] = {}
_STORES_LOCK = threading.Lock()


def token_store_for(
    backend: str, *, quota_dir: str | None = None, quota_conn_id: str | None = None
) -> TokenStore:
    """The process-wide token store for a connection's quota extras (the same backend as its quota)."""
    kind, where = locate(backend, quota_dir=quota_dir, quota_conn_id=quota_conn_id, filename=LOCAL_FILE)
    if kind == "memory":
        return MEMORY
    with _STORES_LOCK:
        store = _STORES.get((kind, where))
        if store is None:
            store = SQLiteTokenStore(where) if kind == "local" else SqlTokenStore(where)
            _STORES[(kind, where)] = store
        return store


def chain_key(token_url: str, client_id: str, seed_refresh_token: str) -> str:
    """The row a connection's chain lives in: ``oauth/<hash>`` of endpoint, client id and the seed.

    The seed is the refresh token in the connection: after it has been used once it is worthless, so
    its hash gives nothing away, and a new one (a new authorisation) is a new chain.
    """
    identity = f"{token_url.strip().lower()}\n{client_id}\n{seed_refresh_token}"
    return "oauth/" + hashlib.sha256(identity.encode()).hexdigest()[:40]


# -- keeping refresh tokens out of urllib3's debug log -----------------------------------------------

_QUERY_SECRET = re.compile(r"((?:refresh_token|access_token|code)=)[^&\s\"']+")


class _QuerySecretFilter(logging.Filter):
    """urllib3 logs each request line at DEBUG, query string included, and Gong wants the refresh token
    in the query string. Airflow's masker covers task logs (the hook registers every token with it);
    this covers every other handler (a script's, pytest's)."""

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


# -- the client ----------------------------------------------------------------------------------------


class _Lost(Exception):
    """The refresh may have been done by Gong, but its answer did not arrive in a usable form."""


class OAuthClient:
    """Refresh-or-reuse of a connection's access token on a shared :class:`TokenStore`.

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
        self._client_secret = client_secret
        self._seed = refresh_token
        self.store = store
        self._on_secret = on_secret
        self._timeouts = (connect_timeout, timeout)
        self._deadline = deadline if deadline is not None else connect_timeout + timeout
        self._clock = clock
        self.key = chain_key(token_url, client_id, refresh_token)
        self.label = f"{urlsplit(token_url).netloc or token_url} (client id hash {self.key[6:14]})"
        digest = hmac.new(client_secret.encode(), _KEY_INFO + self.key.encode(), hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self.redact = Redactor([client_secret, f"{client_id}:{client_secret}", refresh_token])
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
        """A valid access token: the one held, the one another task stored, or a fresh one."""
        current = self._current
        if current is not None and self._clock() < self._due:
            return current
        return self._obtain(rejected=None)

    def reauthorize(self, rejected: AccessToken) -> AccessToken:
        """Gong refused ``rejected`` (401): get another one. Refreshes only when the store still holds
        the refused token; when another task has already replaced it, that one is used."""
        return self._obtain(rejected=rejected.access_token)

    def refreshes_on_chain(self) -> int:
        """Refreshes made on this connection's chain by every process of the store."""
        return self.store.transact(
            self.key, self.label, lambda stored, now: (None, stored.refreshes if stored else 0)
        )

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
                outcome = self.store.transact(
                    self.key, self.label, partial(self._decide, rejected=rejected, refreshed=refreshed)
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
        self, stored: StoredToken | None, now: float, rejected: str | None, refreshed: list[bool]
    ) -> tuple[StoredToken | None, tuple[AccessToken, float] | GongError]:
        """Under the row's lock: reuse the stored access token, or refresh and store the answer.

        Returns the row to write and what :meth:`_obtain` hands out or raises after the commit. Appends
        to ``refreshed`` once Gong has rotated the refresh token: from then on a failed commit loses it.
        """
        chain = self._open(stored) if stored is not None else None
        if chain is not None and stored is not None:
            access = chain.get("access_token")
            if access and access != rejected and now < stored.refresh_at:
                self._learn(access)
                return None, (self._token(chain, stored.expires_at), stored.refresh_at - now)
        refresh_token = chain["refresh_token"] if chain else self._seed
        self._learn(refresh_token)
        try:
            answer = self._exchange(refresh_token)
        except _Lost as lost:
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
        lifetime = _lifetime(answer.get("expires_in"))
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

    def _exchange(self, refresh_token: str) -> dict[str, Any]:
        """One refresh at the token endpoint, as Gong documents it: the grant in the query string and
        the client's credentials as Basic auth. Raises :class:`_Lost` when Gong may have acted on it."""
        session = requests.Session()
        adapter = DeadlineAdapter()
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        try:
            with DeadlineAdapter.deadline(self._deadline):
                response = session.post(
                    self.token_url,
                    params={"grant_type": "refresh_token", "refresh_token": refresh_token},
                    # requests builds the Basic header; given explicitly, no netrc entry can replace it
                    auth=HTTPBasicAuth(self.client_id, self._client_secret),
                    headers={
                        "Accept": "application/json",
                        "User-Agent": f"airflow-provider-gong/{__version__}",
                    },
                    timeout=self._timeouts,
                    allow_redirects=False,
                )
                body = _json_or_none(response)
        except (requests.RequestException, DeadlineExceeded) as exc:
            kind = type(exc).__name__  # never the text: requests quotes the URL, refresh token included
            if isinstance(exc, requests.RequestException) and never_sent(exc):
                raise GongConnectionError(
                    f"Could not connect to Gong's token endpoint {self.token_url} ({kind}); check the "
                    "connection's token_url and the network.",
                    retryable=True,
                ) from None
            raise _Lost(f"its answer was lost ({kind})") from None
        finally:
            session.close()
        status = response.status_code
        fields = body if isinstance(body, dict) else {}
        error = str(fields.get("error") or "")
        said = self.redact(str(fields.get("error_description") or fields.get("errors") or error))[:300]
        gong_says = f" Gong says: {said}" if said else ""
        if status == 200:
            if isinstance(fields.get("access_token"), str) and fields["access_token"]:
                return fields
            raise _Lost("its answer held no access token")
        if 300 <= status < 400:
            raise GongValidationError(
                f"Gong's token endpoint {self.token_url} answered a redirect (HTTP {status}); set the "
                "connection's token_url to the endpoint itself."
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
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise GongRateLimitError(
                f"Gong's token endpoint answered 429 (too many requests); the refresh was refused."
                f"{gong_says}",
                status=status,
                retry_after=retry_after,
                retryable=True,
            )
        if 400 <= status < 500:
            raise GongAuthError(
                f"Gong's token endpoint refused the refresh (HTTP {status}{', ' + error if error else ''})."
                f"{gong_says}",
                status=status,
            )
        raise _Lost(f"it answered HTTP {status}")

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


def _lifetime(expires_in: Any) -> float:
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
    """The forms a secret takes in the text Airflow's masker sees: raw, and URL-encoded as it is in the
    token request's query string (the refresh token's ``/``, ``+`` and ``=`` are escaped there)."""
    return list(dict.fromkeys([secret, quote(secret, safe=""), quote(secret, safe="").replace("%20", "+")]))
