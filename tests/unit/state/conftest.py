"""Fixtures of the state layer's tests: a PostgreSQL table of each test's own."""

from __future__ import annotations

import uuid

import pytest

from airflow_provider_gong.state import Table
from tests.integration.helpers import PG_URI, postgres_reason
from tests.unit.state.counter import counter_table

PG_CONN_ID = "state_test_pg"


@pytest.fixture(scope="session")
def postgres() -> None:
    """Skips the test, with the reason, when no PostgreSQL server can be reached."""
    reason = postgres_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def pg_table(postgres, monkeypatch):
    """A counter table of its own (dropped afterwards) in the database of connection ``PG_CONN_ID``."""
    import psycopg

    monkeypatch.setenv(f"AIRFLOW_CONN_{PG_CONN_ID.upper()}", PG_URI)
    table: Table[int] = counter_table(f"state_test_{uuid.uuid4().hex[:10]}")
    yield table
    with psycopg.connect(PG_URI, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table.name}")
