"""The warehouse matrix: the databases the batch is tested on, each with a keyed and an unkeyed ledger.

A cell is a fresh database (or fresh tables in a shared server) behind the Airflow connection
``warehouse``, in the dict shape the helpers of ``tests/integration/helpers.py`` take. ``keyed=False``
makes the ledger up front with the batch's columns and *no* key constraint: what Snowflake, BigQuery,
Redshift and Databricks amount to, since they accept PRIMARY KEY but never enforce it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import BaseHook

from tests.integration.helpers import PG_URI, postgres_reason

MARIADB_URI = os.environ.get("GONG_TEST_MARIADB_URI", "mysql://root@127.0.0.1:3306/test")
BACKENDS = ("sqlite", "postgres", "mariadb", "duckdb")


def mariadb_reason() -> str | None:
    try:
        import MySQLdb
        from airflow.providers.mysql.hooks.mysql import MySqlHook  # noqa: F401
    except ImportError as exc:
        return f"MariaDB tests need apache-airflow-providers-mysql and mysqlclient: {exc}"
    try:
        import MySQLdb

        MySQLdb.connect(host="127.0.0.1", port=3306, user="root", database="test", connect_timeout=3).close()
    except Exception as exc:  # any failure means: no usable server here
        return f"MariaDB not reachable at 127.0.0.1:3306 (root, database test): {exc}"
    return None


def duckdb_reason() -> str | None:
    try:
        import duckdb  # noqa: F401
        from duckdb_provider.hooks.duckdb_hook import DuckDBHook  # noqa: F401
    except ImportError as exc:
        return f"DuckDB tests need airflow-provider-duckdb: {exc}"
    return None


#: what each backend stores the demo rows' ISO-8601 times in (MariaDB's TIMESTAMP takes no offset)
TIMESTAMP_TYPES = {
    "sqlite": "TIMESTAMP",
    "postgres": "TIMESTAMPTZ",
    "mariadb": "VARCHAR(40)",
    "duckdb": "TIMESTAMPTZ",
}


def open_cell(kind: str, keyed: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """Set up one cell, yield its description, drop what it made in shared servers afterwards."""
    suffix = uuid.uuid4().hex[:8]
    cell: dict[str, Any] = {
        "table": f"meetings_{suffix}",
        "ledger": f"ledger_{suffix}",
        "kind": kind,
        "keyed": keyed,
        "timestamp_type": TIMESTAMP_TYPES[kind],
    }
    if kind == "sqlite":
        uri = json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "wh.db")})
    elif kind == "duckdb":
        reason = duckdb_reason()
        if reason:
            pytest.skip(reason)
        uri = json.dumps({"conn_type": "duckdb", "host": str(tmp_path / "wh.duckdb")})
    elif kind == "postgres":
        reason = postgres_reason()
        if reason:
            pytest.skip(reason)
        uri = PG_URI
    else:
        reason = mariadb_reason()
        if reason:
            pytest.skip(reason)
        uri = MARIADB_URI
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", uri)
    if not keyed:
        make_unkeyed_ledger(cell)
    yield cell
    if kind in ("postgres", "mariadb"):
        hook = BaseHook.get_hook("warehouse")
        hook.run([f"DROP TABLE IF EXISTS {cell[t]}" for t in ("table", "ledger")])
        hook.run(f"DROP TABLE IF EXISTS {cell['ledger']}_lock")


def make_unkeyed_ledger(cell: dict) -> None:
    """The ledger's columns in the database's types, without PRIMARY KEY: an unenforced key."""
    from airflow_provider_gong.sync.ddl import ledger_ddl
    from airflow_provider_gong.sync.sql import dialect

    hook = BaseHook.get_hook("warehouse")
    ddl = ledger_ddl(dialect(hook), cell["ledger"], primary_key=False)
    assert "PRIMARY KEY" not in ddl.upper()
    hook.run(ddl)


def refuse_created_writes(cell: dict) -> None:
    """Make the database refuse every write that sets a ledger row to 'created'."""
    hook = BaseHook.get_hook("warehouse")
    name, kind = cell["ledger"], cell["kind"]
    if kind == "sqlite":
        hook.run(
            f"CREATE TRIGGER refuse_{name} BEFORE UPDATE ON {name} WHEN NEW.status = 'created' "
            "BEGIN SELECT RAISE(ABORT, 'simulated: disk full'); END"
        )
    elif kind == "postgres":
        hook.run(
            [
                f"CREATE FUNCTION refuse_{name}() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'simulated: statement timeout'; END $$ LANGUAGE plpgsql",
                f"CREATE TRIGGER refuse_{name} BEFORE UPDATE ON {name} FOR EACH ROW "
                f"WHEN (NEW.status = 'created') EXECUTE FUNCTION refuse_{name}()",
            ]
        )
    elif kind == "mariadb":
        hook.run(
            f"CREATE TRIGGER refuse_{name} BEFORE UPDATE ON {name} FOR EACH ROW BEGIN "
            "IF NEW.status = 'created' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'simulated: lock wait "
            "timeout'; END IF; END"
        )
    else:  # DuckDB has no triggers: the same table again, with a CHECK that refuses the value
        _rebuild_duckdb_ledger(cell, check="CHECK (status <> 'created')")


def allow_writes(cell: dict) -> None:
    hook = BaseHook.get_hook("warehouse")
    name, kind = cell["ledger"], cell["kind"]
    if kind == "sqlite":
        hook.run(f"DROP TRIGGER refuse_{name}")
    elif kind == "postgres":
        hook.run([f"DROP TRIGGER refuse_{name} ON {name}", f"DROP FUNCTION refuse_{name}()"])
    elif kind == "mariadb":
        hook.run(f"DROP TRIGGER refuse_{name}")
    else:
        _rebuild_duckdb_ledger(cell, check="")


def _rebuild_duckdb_ledger(cell: dict, check: str) -> None:
    from airflow_provider_gong.sync.ddl import ledger_ddl

    hook = BaseHook.get_hook("warehouse")
    name = cell["ledger"]
    ddl = ledger_ddl("duckdb", f"{name}_new", primary_key=cell["keyed"])
    if check:
        ddl = ddl[: ddl.rindex(")")] + f", {check})"
    exists = hook.get_first(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = ?", parameters=(name,)
    )[0]
    statements = [ddl]
    if exists:
        statements += [f"INSERT INTO {name}_new SELECT * FROM {name}", f"DROP TABLE {name}"]
    statements.append(f"ALTER TABLE {name}_new RENAME TO {name}")
    hook.run(statements)
