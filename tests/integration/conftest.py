"""Fixtures for warehouse tests: a fresh SQLite or PostgreSQL warehouse, and a fast-paced stand-in."""

from __future__ import annotations

import json
import uuid

import pytest
from airflow.sdk import BaseHook

from tests.integration.helpers import PG_URI, postgres_reason


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse(request, tmp_path, monkeypatch):
    """AIRFLOW_CONN_WAREHOUSE pointing at a fresh database; yields the table names to use."""
    suffix = uuid.uuid4().hex[:8]
    tables = {"table": f"meetings_{suffix}", "ledger": f"ledger_{suffix}"}
    if request.param == "sqlite":
        monkeypatch.setenv(
            "AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "wh.db")})
        )
        yield {**tables, "kind": "sqlite", "timestamp_type": "TIMESTAMP"}
        return
    reason = postgres_reason()
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", PG_URI)
    yield {**tables, "kind": "postgres", "timestamp_type": "TIMESTAMPTZ"}
    hook = BaseHook.get_hook("warehouse")
    t, led = tables["table"], tables["ledger"]  # and what tests make beside them (leases, second batches)
    made = [t, led, f"{led}_lock", f"{t}_b", f"{led}_b", f"{led}_b_lock"]
    hook.run([f"DROP TABLE IF EXISTS {name}" for name in made])


@pytest.fixture
def fast_gong(gong_standin, monkeypatch):
    """The stand-in, with a connection that paces fast so tests do not wait on Gong's 3/s (and whose
    daily budget does not end a 10,000-row test: that is exactly Gong's default day)."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_GONG_DEFAULT",
        gong_standin.connection_json(rate_limit_per_second=500, max_retry_wait=5, daily_quota=1_000_000),
    )
    return gong_standin


@pytest.fixture
def slow_gong(gong_standin, monkeypatch):
    """Every call takes 15 ms, so that two runners' work really overlaps."""
    gong_standin.latency = 0.015
    monkeypatch.setenv("AIRFLOW_CONN_GONG_DEFAULT", gong_standin.connection_json(rate_limit_per_second=1000))
    return gong_standin
