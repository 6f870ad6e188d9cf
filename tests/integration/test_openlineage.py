"""OpenLineage from real runs: dag.test() against the Gong stand-in and a real SQLite (or PostgreSQL)
warehouse, with the OpenLineage provider's own listener emitting through its file transport.

What a lineage backend receives is read back from that file, so these tests check the whole path:
the listener finds the operator's ``get_openlineage_facets_on_*`` methods, the datasets and facets
serialise, and the counts agree with what the stand-in received. A test of the raw facets (before the
OpenLineage redactor masks anything) checks that no credential gets into them in the first place.

Skipped when the optional extra (``apache-airflow-providers-openlineage``) is not installed.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

pytest.importorskip(
    "airflow.providers.openlineage",
    reason="the optional extra airflow-provider-gong[openlineage] (apache-airflow-providers-openlineage) "
    "is not installed",
)

from airflow.sdk import BaseHook

from airflow_provider_gong._compat import DagBag  # its module moved in Airflow 3.2
from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator
from tests._support.warehouse import demo_rows
from tests.conftest import EXAMPLE_DAGS
from tests.integration.helpers import seed

pytestmark = pytest.mark.integration


def _clear_openlineage_config_cache() -> None:
    """The provider caches every [openlineage] setting for the process; tests change them."""
    from airflow.providers.openlineage import conf

    for value in vars(conf).values():
        if callable(getattr(value, "cache_clear", None)):
            value.cache_clear()


@pytest.fixture
def lineage_events(tmp_path, monkeypatch):
    """The OpenLineage listener, registered with the task SDK's listener manager for this test and
    writing every event it emits, as JSON lines, to a file; returns a reader of those events.

    A fresh listener each time (its adapter keeps the transport it was built with). The events are
    sent from a thread, not a fork of the test process, and waited for, so they are all in the file
    when dag.test() returns.
    """
    from airflow.providers.openlineage.plugins.listener import OpenLineageListener

    try:  # Airflow >= 3.2: the task runner calls the task SDK's own listener manager
        from airflow.sdk.listener import get_listener_manager
    except ImportError:  # Airflow 3.1: the core one
        from airflow.listeners.listener import get_listener_manager

    # Built (and the provider's plugin loaded) before OpenLineage is configured below, so the rest of
    # the session never inherits a plugin listener enabled by this test.
    manager = get_listener_manager()
    path = tmp_path / "openlineage.jsonl"
    monkeypatch.setenv(
        "AIRFLOW__OPENLINEAGE__TRANSPORT",
        json.dumps({"type": "file", "log_file_path": str(path), "append": True}),
    )
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__NAMESPACE", "gong-tests")
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD", "True")
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT", "30")
    _clear_openlineage_config_cache()
    listener = OpenLineageListener()
    # Where the provider's plugin registered its own listener (OpenLineage was configured when the
    # manager was built), that one would emit every event a second time, into another transport.
    others = [p for p in manager.pm.get_plugins() if isinstance(p, OpenLineageListener)]
    for other in others:
        manager.pm.unregister(other)
    manager.add_listener(listener)

    def read(task_id: str | None = None) -> list[dict]:
        if not path.exists():
            return []
        events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [e for e in events if task_id is None or e["job"]["name"].endswith(f".{task_id}")]

    read.path = path
    try:
        yield read
    finally:
        manager.pm.unregister(listener)
        for other in others:
            manager.add_listener(other)
        monkeypatch.delenv("AIRFLOW__OPENLINEAGE__TRANSPORT")
        _clear_openlineage_config_cache()


def _final(events: list[dict]) -> dict:
    (final,) = [e for e in events if e["eventType"] in ("COMPLETE", "FAIL")]
    return final


def _table(warehouse, table: str) -> tuple[str, str]:
    """What common-sql/OpenLineage call a warehouse table, written out from the connection: SQLite's
    file path, or PostgreSQL's host:port and database.schema.table."""
    conn = BaseHook.get_connection("warehouse")
    if warehouse["kind"] == "sqlite":
        return f"sqlite://{conn.host}", f"main.{table}"
    return f"postgres://{conn.host}:{conn.port or 5432}", f"{conn.schema}.public.{table}"


def _meeting_calls(gong, since: int = 0) -> Counter:
    return Counter(
        method
        for method, path, _ in gong.log[since:]
        if path.startswith("/v2/meetings") and "status" not in path
    )


def test_the_sync_dag_reports_its_table_gong_and_the_counts_gong_received(
    warehouse, fast_gong, run_dag, lineage_events
):
    seed(warehouse, demo_rows(6))  # 6 good rows, 2 that fail (no Gong user; end before start)
    dag = DagBag(dag_folder=str(EXAMPLE_DAGS)).dags["gong_meetings_sync"]
    conf = {
        "table": warehouse["table"],
        "ledger_table": warehouse["ledger"],
        "sync_mode": "upsert",
        "fail_on_row_errors": False,
        "max_deletes": 0.5,
    }
    dag_run = run_dag(dag, run_conf=conf)
    assert dag_run.state == "success"
    assert _meeting_calls(fast_gong) == Counter({"POST": 7})  # one refused: no such Gong user
    assert fast_gong.created_count() == 6

    events = lineage_events("sync_meetings")
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"], events
    start, done = events
    source, ledger = _table(warehouse, warehouse["table"]), _table(warehouse, warehouse["ledger"])
    for event in (start, done):
        assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [source]
        assert [(d["namespace"], d["name"]) for d in event["outputs"]] == [
            (fast_gong.url, "meetings"),
            ledger,
        ]
    assert "gongMeetingsBatch" not in start["run"]["facets"]  # no counts before the run

    batch = done["run"]["facets"]["gongMeetingsBatch"]
    assert (batch["syncMode"], batch["dryRun"]) == ("upsert", False)
    counts = batch["counts"]
    assert (counts["rows"], counts["created"], counts["updated"], counts["deleted"], counts["failed"]) == (
        8,
        fast_gong.created_count(),
        0,
        0,
        2,
    )
    assert counts["gong_calls"] == len(fast_gong.log)  # every call the stand-in answered
    gong_out = done["outputs"][0]
    assert gong_out["outputFacets"]["outputStatistics"]["rowCount"] == 6
    assert gong_out["facets"]["datasource"]["uri"] == fast_gong.url
    assert done["inputs"][0]["inputFacets"]["inputStatistics"]["rowCount"] == 8

    # The next run changes two rows and cancels one: the counts follow what Gong received.
    hook = BaseHook.get_hook("warehouse")
    table = warehouse["table"]
    hook.run(f"UPDATE {table} SET title = 'Moved' WHERE id IN (1, 2)")
    hook.run(f"UPDATE {table} SET cancelled = TRUE WHERE id = 3")
    mark = len(fast_gong.log)
    again = run_dag(DagBag(dag_folder=str(EXAMPLE_DAGS)).dags["gong_meetings_sync"], run_conf=conf)
    assert again.state == "success"
    assert _meeting_calls(fast_gong, mark) == Counter({"PUT": 2, "DELETE": 1})
    second = _final(lineage_events("sync_meetings")[2:])
    counts = second["run"]["facets"]["gongMeetingsBatch"]["counts"]
    assert (counts["created"], counts["updated"], counts["deleted"]) == (0, 2, 1)
    assert counts["gong_calls"] == len(fast_gong.log) - mark
    assert second["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 3

    # Nothing in any event carries the Gong credentials (masked or not: they must not be there at all).
    text = lineage_events.path.read_text()
    for secret in (fast_gong.access_key_secret, fast_gong.access_key):
        assert secret not in text


def test_a_dry_run_reports_the_plan_and_no_output(warehouse, fast_gong, run_dag, lineage_events):
    seed(warehouse, demo_rows(4, bad=False))
    dag = DagBag(dag_folder=str(EXAMPLE_DAGS)).dags["gong_meetings_sync"]
    conf = {"table": warehouse["table"], "ledger_table": warehouse["ledger"], "dry_run": True}
    assert run_dag(dag, run_conf=conf).state == "success"
    assert fast_gong.log == [] or _meeting_calls(fast_gong) == Counter()
    done = _final(lineage_events("sync_meetings"))
    assert done["outputs"] == []  # nothing was sent to Gong or written to the ledger
    assert [(d["namespace"], d["name"]) for d in done["inputs"]] == [_table(warehouse, warehouse["table"])]
    batch = done["run"]["facets"]["gongMeetingsBatch"]
    assert batch["dryRun"] is True
    assert (batch["counts"]["create"], batch["counts"]["gong_calls"]) == (4, 4)


def test_a_failed_batch_still_reports_what_it_did(warehouse, fast_gong, run_dag, lineage_events):
    """fail_on_row_errors fails the task after every outcome is written; the FAIL event keeps the counts."""
    seed(warehouse, demo_rows(3))
    dag = DagBag(dag_folder=str(EXAMPLE_DAGS)).dags["gong_meetings_sync"]
    conf = {"table": warehouse["table"], "ledger_table": warehouse["ledger"], "sync_mode": "create"}
    assert run_dag(dag, run_conf=conf).state == "failed"
    done = _final(lineage_events("sync_meetings"))
    assert done["eventType"] == "FAIL"
    counts = done["run"]["facets"]["gongMeetingsBatch"]["counts"]
    assert (counts["created"], counts["failed"]) == (fast_gong.created_count(), 2) == (3, 2)


def test_the_create_dag_reports_the_meeting_it_made(gong_connection, run_dag, lineage_events, xcoms):
    dag = DagBag(dag_folder=str(EXAMPLE_DAGS)).dags["gong_create_meeting"]
    dag_run = run_dag(dag)
    assert dag_run.state == "success"
    (created,) = gong_connection.created
    done = _final(lineage_events("create_meeting"))
    assert done["inputs"] == []
    (out,) = done["outputs"]
    assert (out["namespace"], out["name"]) == (gong_connection.url, "meetings")
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == 1
    assert done["run"]["facets"]["gongMeeting"] == {
        **done["run"]["facets"]["gongMeeting"],
        "action": "create",
        "meetingId": created.meeting_id,
    }
    text = lineage_events.path.read_text()
    assert gong_connection.access_key_secret not in text


def test_a_query_source_reports_the_tables_it_reads_and_no_secret_reaches_the_facets(
    tmp_path, monkeypatch, fast_gong
):
    """A real run of the operator (execute, then the completion method as the listener calls it) with
    a query as its source, on SQLite, and a Gong connection whose host carries the credentials too.
    The facets are checked raw, before OpenLineage's redactor could mask a leak. (A warehouse password
    is checked in tests/unit/test_lineage.py: SQLite cannot open a connection that has one.)"""
    from openlineage.client.serde import Serde

    db = tmp_path / "wh.db"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    warehouse = {"table": "crm_events", "ledger": "crm_ledger", "timestamp_type": "TIMESTAMP"}
    seed(warehouse, demo_rows(3, bad=False))
    BaseHook.get_hook("warehouse").run("CREATE TABLE reps (email TEXT)")
    gong = json.loads(fast_gong.connection_json(rate_limit_per_second=500, daily_quota=1_000_000))
    gong["host"] = gong["host"].replace("://", f"://{fast_gong.access_key}:{fast_gong.access_key_secret}@")
    monkeypatch.setenv("AIRFLOW_CONN_GONG_DEFAULT", json.dumps(gong))

    op = SqlToGongMeetingsOperator(
        task_id="batch",
        ledger_table=warehouse["ledger"],
        sql="SELECT e.* FROM crm_events e WHERE e.organizer_email IN (SELECT email FROM reps) "
        "OR e.organizer_email LIKE '%@acme.com'",
    )
    summary = op.execute({})
    assert summary["created"] == 3 == fast_gong.created_count()

    lineage = op.get_openlineage_facets_on_complete(None)
    raw = json.dumps(
        [Serde.to_dict(d) for d in (*lineage.inputs, *lineage.outputs)]
        + [Serde.to_dict(f) for f in (*lineage.run_facets.values(), *lineage.job_facets.values())]
    )
    for secret in (fast_gong.access_key_secret, f"{fast_gong.access_key}:"):
        assert secret not in raw
    namespace = f"sqlite://{os.path.abspath(db)}"
    assert sorted((d.namespace, d.name) for d in lineage.inputs) == [
        (namespace, "main.crm_events"),
        (namespace, "main.reps"),
    ]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [
        (fast_gong.url, "meetings"),
        (namespace, "main.crm_ledger"),
    ]
    assert "LIKE '%@acme.com'" in lineage.job_facets["sql"].query
    assert lineage.run_facets["gongMeetingsBatch"].counts["created"] == 3
