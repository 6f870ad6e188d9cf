"""
Where a connection's OAuth token chain is kept: the row, its table, and the store for each backend.

:mod:`airflow_provider_gong.oauth` decides when to refresh; this module only says what a chain looks
like at rest and which :mod:`airflow_provider_gong.state` store holds it (the quota's backend: ``local``,
``sql`` or ``memory``), so that the two can change apart.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from airflow_provider_gong import state
from airflow_provider_gong.state import Moment, Row, StateStore, Table

TABLE = "gong_oauth_token"
LOCAL_FILE = "oauth.sqlite3"
#: Seconds a task waits for another one's refresh (the lock) before giving up.
LOCK_WAIT = 120.0


# -- what a store holds --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredToken:
    """
    One token chain as a store keeps it. Times are seconds on the store's clock (epoch seconds).

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

    @staticmethod
    def decode(row: Row | None) -> StoredToken | None:
        """Decode a stored row into the chain; None for no row, or for the empty row PostgreSQL locks on."""
        if row is None or not row[0]:
            return None
        blob, expires_at, refresh_at, refreshes, lost_at, _updated_at = row
        return StoredToken(bytes(blob), float(expires_at), float(refresh_at), int(refreshes), lost_at)

    @staticmethod
    def encode(token: StoredToken | None, moment: Moment) -> Row:
        """Return the row's value columns; ``updated_at`` is the transaction's time."""
        if token is None:  # a change returns None to write nothing; a store never passes it here
            return TOKEN_TABLE.blank
        return (token.blob, token.expires_at, token.refresh_at, token.refreshes, token.lost_at, moment.wall)


TOKEN_TABLE: Table[StoredToken | None] = Table(
    name=TABLE,
    key="key",
    columns=("blob", "expires_at", "refresh_at", "refreshes", "lost_at", "updated_at"),
    sqlite_columns=(
        "key TEXT PRIMARY KEY, label TEXT NOT NULL, blob BLOB NOT NULL, expires_at REAL NOT NULL, "
        "refresh_at REAL NOT NULL, refreshes INTEGER NOT NULL, lost_at REAL, updated_at REAL NOT NULL"
    ),
    postgres_columns=(
        "key VARCHAR(200) PRIMARY KEY, label TEXT NOT NULL, blob BYTEA NOT NULL, "
        "expires_at DOUBLE PRECISION NOT NULL, refresh_at DOUBLE PRECISION NOT NULL, "
        "refreshes INTEGER NOT NULL, lost_at DOUBLE PRECISION, updated_at DOUBLE PRECISION NOT NULL"
    ),
    blank=(b"", 0.0, 0.0, 0, None, 0.0),
    decode=StoredToken.decode,
    encode=StoredToken.encode,
    labels=("label",),
)
"""The token chains' table (``gong_oauth_token``): one row per chain, its secrets encrypted, and a
label (the token endpoint's host and a client id hash) for whoever reads the table."""


TokenStore = StateStore[StoredToken | None]
"""Where token chains live: :meth:`~airflow_provider_gong.state.StateStore.transact` runs a change on
one chain's row while no other process (or thread) can touch that row, and commits what it returns.
The store's clock (:attr:`~airflow_provider_gong.state.Moment.wall`) is the one expiry times are on."""


class MemoryTokenStore(state.MemoryStore[StoredToken | None]):
    """
    Chains in this process only (``quota_backend="memory"``).

    Every hook of the process shares :data:`MEMORY`, but another process would refresh on its own and
    break the chain.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(TOKEN_TABLE, clock=clock, wall=clock)


MEMORY = MemoryTokenStore()


class SQLiteTokenStore(state.SQLiteStore[StoredToken | None]):
    """
    Chains in a SQLite file every process on the machine opens (``quota_backend="local"``).

    A file of its own beside the quota file, not a table in it: SQLite locks the whole file, and a
    refresh holds the lock for an HTTP round trip, which must not stall every Gong call of the machine.
    A process waiting for another's refresh waits up to ``timeout`` seconds. The file is created
    readable by its owner only, and written with ``synchronous=FULL``, not ``NORMAL`` as the quota's:
    a rotated refresh token forgotten by an OS crash is a broken connection, not one wasted call.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = LOCK_WAIT,
    ) -> None:
        super().__init__(
            TOKEN_TABLE, path, clock=clock, wall=clock, timeout=timeout, synchronous="FULL", private=True
        )


class SqlTokenStore(state.PostgresStore[StoredToken | None]):
    """
    Chains in table ``gong_oauth_token`` of a PostgreSQL database (``quota_backend="sql"``).

    A connection of its own, not the quota store's: a refresh holds its transaction open for an HTTP
    round trip. ``timeout`` (``lock_timeout``) bounds the wait for another worker's refresh. A broken
    connection is never retried within a transaction: the change may have spent the refresh token.
    """

    def __init__(self, conn_id: str, *, timeout: float = LOCK_WAIT) -> None:
        super().__init__(TOKEN_TABLE, conn_id, needed_by="the sql OAuth token store", lock_timeout=timeout)


_STORES = state.StoreRegistry(LOCAL_FILE, memory=MEMORY, local=SQLiteTokenStore, sql=SqlTokenStore)


def token_store_for(
    backend: str, *, quota_dir: str | None = None, quota_conn_id: str | None = None
) -> TokenStore:
    """Return the process-wide token store for a connection's quota extras (the same backend as its quota)."""
    return _STORES.get(backend, quota_dir=quota_dir, quota_conn_id=quota_conn_id)


def chain_key(token_url: str, client_id: str, seed_refresh_token: str) -> str:
    """
    Return the row a connection's chain lives in: ``oauth/<hash>`` of endpoint, client id and the seed.

    The seed is the refresh token in the connection: after it has been used once it is worthless, so
    its hash gives nothing away, and a new one (a new authorisation) is a new chain.
    """
    identity = f"{token_url.strip().lower()}\n{client_id}\n{seed_refresh_token}"
    return "oauth/" + hashlib.sha256(identity.encode()).hexdigest()[:40]
