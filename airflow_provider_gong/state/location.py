"""
Which store a connection's extras choose, and one store per file or database in each process.

The quota and the OAuth token chain read the same extras (``quota_backend``, ``quota_dir``,
``quota_conn_id``) the same way, so that a connection keeps both kinds of state in the same place.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, Literal

from airflow_provider_gong.exceptions import GongValidationError
from airflow_provider_gong.state.base import S, StateStore


def locate(
    backend: str, *, quota_dir: str | None, quota_conn_id: str | None, filename: str
) -> tuple[Literal["memory", "local", "sql"], str]:
    """
    Return where a connection's ``quota_backend`` extras put shared state.

    That is ``("local", absolute path of filename in quota_dir)`` (default ``$AIRFLOW_HOME/gong_quota``),
    ``("sql", quota_conn_id)`` or ``("memory", "")``.

    :raises GongValidationError: an unknown backend, or ``sql`` without ``quota_conn_id``.
    """
    if backend == "memory":
        return "memory", ""
    if backend == "local":
        where = Path(os.path.expanduser(quota_dir)) if quota_dir else default_state_dir()
        return "local", os.path.abspath(where / filename)
    if backend == "sql":
        if not quota_conn_id:
            raise GongValidationError(
                "quota_backend 'sql' needs quota_conn_id: the Airflow connection of the PostgreSQL database"
            )
        return "sql", quota_conn_id
    raise GongValidationError(f"quota_backend must be one of local, sql, memory, got {backend!r}")


def default_state_dir() -> Path:
    """
    Return ``$AIRFLOW_HOME/gong_quota``: a directory every task on the machine sees.

    AIRFLOW_HOME's own default is ``~/airflow``.
    """
    return Path(os.path.expanduser(os.environ.get("AIRFLOW_HOME") or "~/airflow")) / "gong_quota"


class StoreRegistry(Generic[S]):
    """
    The process-wide stores of one kind of record: one per file or database.

    Every hook of the process then shares its connection (and its thread lock) instead of opening one of
    its own.

    :param filename: the record's file in the ``local`` backend's directory.
    :param memory: the one store behind ``quota_backend="memory"``.
    :param local: the store for a file path.
    :param sql: the store for an Airflow connection id.
    """

    def __init__(
        self,
        filename: str,
        *,
        memory: StateStore[S],
        local: Callable[[str], StateStore[S]],
        sql: Callable[[str], StateStore[S]],
    ) -> None:
        self.filename = filename
        self.memory = memory
        self._make = {"local": local, "sql": sql}
        self._stores: dict[tuple[str, str], StateStore[S]] = {}
        self._lock = threading.Lock()

    def get(
        self, backend: str, *, quota_dir: str | None = None, quota_conn_id: str | None = None
    ) -> StateStore[S]:
        """Return the store for a connection's extras (see :func:`locate`)."""
        kind, where = locate(
            backend, quota_dir=quota_dir, quota_conn_id=quota_conn_id, filename=self.filename
        )
        if kind == "memory":
            return self.memory
        with self._lock:
            store = self._stores.get((kind, where))
            if store is None:
                store = self._stores[(kind, where)] = self._make[kind](where)
            return store
