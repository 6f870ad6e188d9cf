"""Helpers shared by the warehouse tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import os

from airflow.sdk import BaseHook

from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.testing.warehouse import create_meetings_table, insert_meetings
from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator

PG_URI = os.environ.get("GONG_TEST_POSTGRES_URI", "postgresql://postgres@127.0.0.1:5432/postgres")


def postgres_reason() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_URI, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure means: no usable server here
        return f"PostgreSQL not reachable at {PG_URI}: {type(exc).__name__}: {exc}"
    return None


def seed(warehouse, rows):
    hook = BaseHook.get_hook("warehouse")
    create_meetings_table(hook, warehouse["table"], timestamp_type=warehouse["timestamp_type"])
    insert_meetings(hook, rows, warehouse["table"])


def ledger(warehouse) -> dict[str, dict]:
    hook = BaseHook.get_hook("warehouse")
    book = ResultsLedger(hook, warehouse["ledger"], owner="test-reader")
    try:
        return {r["row_key"]: r for r in book.read_all()}
    finally:
        book.close()


def operator(warehouse, **kwargs) -> SqlToGongMeetingsOperator:
    return SqlToGongMeetingsOperator(
        task_id="batch", table=warehouse["table"], ledger_table=warehouse["ledger"], **kwargs
    )
