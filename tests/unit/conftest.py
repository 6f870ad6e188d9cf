"""Fixtures of the unit tests."""

from __future__ import annotations

import json
import uuid

import pytest
from airflow.sdk import BaseHook


@pytest.fixture
def sqlite_hook(tmp_path, monkeypatch):
    """A common-sql hook on a fresh SQLite file, through a connection of its own."""
    conn_id = f"wh_{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "l.db")})
    )
    return BaseHook.get_hook(conn_id)
