"""
The one state layer: small records that every task of a Gong account or connection shares.

Two kinds of record live here, each described by a :class:`~.base.Table` in the module that owns it:
the account's quota (:mod:`airflow_provider_gong.quota`) and the OAuth token chain
(:mod:`airflow_provider_gong.oauth`). Both need one operation, change a keyed row while no other
process can (:meth:`~.base.StateStore.transact`), from three backends written once here:

- :mod:`.memory`: this process only (a dict under a thread lock);
- :mod:`.sqlite`: a SQLite file for every process on one machine (``BEGIN IMMEDIATE``);
- :mod:`.postgres`: a PostgreSQL table for workers on several machines (``SELECT ... FOR UPDATE``).

:mod:`.location` turns a connection's ``quota_backend`` extras into one of them.
"""

from __future__ import annotations

from airflow_provider_gong.state.base import Change, Moment, Row, StateStore, Table
from airflow_provider_gong.state.location import StoreRegistry, default_state_dir, locate
from airflow_provider_gong.state.memory import MemoryStore
from airflow_provider_gong.state.postgres import PostgresStore
from airflow_provider_gong.state.sqlite import SQLiteStore

__all__ = [
    "Change",
    "MemoryStore",
    "Moment",
    "PostgresStore",
    "Row",
    "SQLiteStore",
    "StateStore",
    "StoreRegistry",
    "Table",
    "default_state_dir",
    "locate",
]
