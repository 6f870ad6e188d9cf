"""The ledger's DDL in each warehouse's own types (the warehouses we cannot run here are checked as
text: the types and key syntax their documentation accepts)."""

from __future__ import annotations

import re

import pytest

from airflow_provider_gong.sync.ddl import DIALECTS, LEDGER_COLUMNS, ledger_ddl, main
from airflow_provider_gong.sync.records import COLUMNS


def test_the_ddl_has_the_ledgers_columns_in_order():
    assert tuple(name for name, *_ in LEDGER_COLUMNS) == COLUMNS


@pytest.mark.parametrize(
    "kind, has, has_not",
    [
        (
            "bigquery",
            ["row_key STRING NOT NULL", "attempts INT64 NOT NULL"],
            ["VARCHAR", "TEXT", "PRIMARY KEY"],
        ),
        (
            "databricks",
            ["row_key STRING NOT NULL", "attempts INT NOT NULL"],
            ["VARCHAR", "TEXT", "PRIMARY KEY"],
        ),
        ("redshift", ["meeting_url VARCHAR(65535)"], [" TEXT", "PRIMARY KEY"]),  # TEXT is 256 bytes there
        ("snowflake", ["row_key VARCHAR(255) NOT NULL", "meeting_url TEXT"], ["PRIMARY KEY"]),
        (
            "mysql",
            ["row_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY"],
            [],
        ),
        ("mariadb", ["COLLATE utf8mb4_bin NOT NULL PRIMARY KEY"], []),
        ("postgresql", ["row_key VARCHAR(255) NOT NULL PRIMARY KEY", "meeting_url TEXT"], []),
        ("sqlite", ["row_key VARCHAR(255) NOT NULL PRIMARY KEY"], []),
        ("duckdb", ["row_key VARCHAR(255) NOT NULL PRIMARY KEY"], []),
    ],
)
def test_each_warehouse_gets_types_it_accepts_and_a_key_only_where_enforced(kind, has, has_not):
    ddl = ledger_ddl(kind, "gong_meeting_ledger")
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS gong_meeting_ledger (")
    for fragment in has:
        assert fragment in ddl
    for fragment in has_not:
        assert fragment not in ddl
    assert re.findall(r"\b(\w+) ", ddl.split("(", 1)[1])[0] == "row_key"


def test_create_it_yourself_prints_both_tables_for_every_dialect(capsys):
    for kind in DIALECTS:
        assert main([kind, "analytics.gong_ledger"]) == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert out[0].startswith("CREATE TABLE IF NOT EXISTS analytics.gong_ledger (")
        assert out[1].startswith("CREATE TABLE analytics.gong_ledger_lock AS SELECT") or (
            kind in ("mysql", "mariadb") and out[1].startswith("CREATE TABLE analytics.gong_ledger_lock (")
        )
    assert main(["oracle"]) == 2 and "usage" in capsys.readouterr().out
