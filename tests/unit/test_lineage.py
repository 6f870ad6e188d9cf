"""OpenLineage datasets and facets, one piece at a time (the real runs are in
tests/integration/test_openlineage.py). Skipped without the optional OpenLineage provider."""

from __future__ import annotations

import json
from unittest.mock import MagicMock

import pytest

pytest.importorskip(
    "airflow.providers.openlineage",
    reason="the optional extra airflow-provider-gong[openlineage] (apache-airflow-providers-openlineage) "
    "is not installed",
)

from openlineage.client.serde import Serde

from airflow_provider_gong import lineage
from airflow_provider_gong.operators.meetings import (
    GongCreateMeetingOperator,
    GongDeleteMeetingOperator,
    GongUpdateMeetingOperator,
)
from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator
from tests.dates import SOON

KEY, SECRET, PG_SECRET = "acc-KEY-4711", "gong-SECRET-never-in-lineage", "pg-Pa55-never-in-lineage"
MEETING = {
    "start_time": f"{SOON}T10:00:00Z",
    "end_time": f"{SOON}T10:30:00Z",
    "invitees": ["buyer@client.com"],
    "organizer_email": "rep@acme.com",
}


def _json(result) -> str:
    """Everything an OperatorLineage holds, serialised as OpenLineage would send it (before redaction)."""
    return json.dumps(
        [Serde.to_dict(d) for d in (*result.inputs, *result.outputs)]
        + [Serde.to_dict(f) for f in (*result.run_facets.values(), *result.job_facets.values())]
    )


@pytest.fixture
def gong_conn(monkeypatch):
    """A Gong connection that carries its credentials in the host as well as in login/password."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_GONG_DEFAULT",
        json.dumps(
            {
                "conn_type": "gong",
                "host": f"https://{KEY}:{SECRET}@us-12345.api.gong.io/v2",
                "login": KEY,
                "password": SECRET,
            }
        ),
    )


@pytest.fixture
def postgres_conn(monkeypatch):
    """A PostgreSQL warehouse with a password; its default schema read fails like an unreachable server."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    monkeypatch.setenv("AIRFLOW_CONN_PG_WH", f"postgresql://etl:{PG_SECRET}@db.internal:5439/analytics")

    def unreachable(self):
        raise ConnectionError("server unreachable")

    monkeypatch.setattr(PostgresHook, "get_openlineage_default_schema", unreachable)


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://us-12345.api.gong.io", ("https://us-12345.api.gong.io", "meetings")),
        ("http://127.0.0.1:8765", ("http://127.0.0.1:8765", "meetings")),
        ("https://k:s@api.gong.io", ("https://api.gong.io", "meetings")),
        ("https://proxy.corp/gong/", ("https://proxy.corp", "gong/meetings")),
        ("http://[::1]:8080", ("http://[::1]:8080", "meetings")),
    ],
)
def test_the_gong_dataset_is_the_api_host_and_its_meetings(base_url, expected):
    assert lineage.gong_namespace_and_name(base_url) == expected


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("sqlite:////srv/wh.db", "/srv/wh.db"),
        ("sqlite:////srv/wh.db?mode=ro", "/srv/wh.db"),
        ("sqlite:///etl:pw@/srv/wh.db", "/srv/wh.db"),  # a login/password never reaches the namespace
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_the_sqlite_namespace_is_the_file_the_hook_opens(uri, path):
    assert lineage._sqlite_path(uri) == path


def test_a_relative_sqlite_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert lineage._sqlite_path("sqlite:///wh.db") == str(tmp_path / "wh.db")


def test_postgres_is_named_as_common_sql_names_it_and_its_password_stays_out(postgres_conn, gong_conn):
    result = lineage.batch_lineage(
        sql_conn_id="pg_wh",
        table="crm.meetings",
        sql=None,
        ledger_table="gong_ledger",
        gong_conn_id="gong_default",
        sync_mode="create",
        dry_run=False,
        summary={"rows": 5, "created": 4, "failed": 1, "updated": 0, "deleted": 0, "quota_left": None},
    )
    assert [(d.namespace, d.name) for d in result.inputs] == [
        ("postgres://db.internal:5439", "analytics.crm.meetings")
    ]
    assert [(d.namespace, d.name) for d in result.outputs] == [
        ("https://us-12345.api.gong.io", "meetings"),
        ("postgres://db.internal:5439", "analytics.public.gong_ledger"),  # default schema unreadable
    ]
    assert result.outputs[0].outputFacets["outputStatistics"].rowCount == 4
    assert result.inputs[0].inputFacets["inputStatistics"].rowCount == 5
    assert result.run_facets["gongMeetingsBatch"].counts == {
        "rows": 5,
        "created": 4,
        "failed": 1,
        "updated": 0,
        "deleted": 0,
    }
    assert "sql" not in result.job_facets  # a table source has no query of its own
    text = _json(result)
    for secret in (PG_SECRET, SECRET, f"{KEY}:", "etl:"):
        assert secret not in text


def test_a_hook_without_database_info_gets_type_host_and_port(postgres_conn, monkeypatch):
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    monkeypatch.setattr(PostgresHook, "get_openlineage_database_info", lambda self, conn: None)
    warehouse = lineage.WarehouseLineage("pg_wh")
    assert warehouse.namespace == "postgres://db.internal:5439"
    assert warehouse.table("meetings") == ("postgres://db.internal:5439", "analytics.public.meetings")
    assert PG_SECRET not in warehouse.namespace


def test_a_query_source_reports_every_table_it_reads_and_its_sql(postgres_conn, gong_conn):
    sql = "SELECT m.* FROM crm.meetings m JOIN crm.reps r ON r.email = m.organizer_email WHERE r.active"
    result = lineage.batch_lineage(
        sql_conn_id="pg_wh",
        table=None,
        sql=sql,
        ledger_table="gong_ledger",
        gong_conn_id="gong_default",
        sync_mode="upsert",
        dry_run=False,
        summary=None,
    )
    assert sorted(d.name for d in result.inputs) == ["analytics.crm.meetings", "analytics.crm.reps"]
    assert result.job_facets["sql"].query == sql
    assert "gongMeetingsBatch" not in result.run_facets  # no summary: the start event
    assert "outputStatistics" not in result.outputs[0].outputFacets


def test_an_unnameable_warehouse_still_reports_gong(gong_conn, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BROKEN", json.dumps({"conn_type": "http", "host": "example.invalid"}))
    result = lineage.batch_lineage(
        sql_conn_id="broken",
        table="t",
        sql=None,
        ledger_table="l",
        gong_conn_id="gong_default",
        sync_mode="create",
        dry_run=False,
        summary={"created": 2, "updated": 1, "deleted": 0},
    )
    assert result.inputs == []
    assert [(d.namespace, d.name) for d in result.outputs] == [("https://us-12345.api.gong.io", "meetings")]
    assert result.outputs[0].outputFacets["outputStatistics"].rowCount == 3


def test_counts_keep_the_integer_counts_only():
    summary = {"rows": 3, "created": 1, "dry_run": False, "quota_left": None, "ledger_table": "l", "x": True}
    assert lineage._counts(summary) == {"rows": 3, "created": 1}
    plan = {"dry_run": True, "counts": {"create": 2, "delete": 1}, "gong_calls": 3, "samples": {"create": []}}
    assert lineage._counts(plan) == {"create": 2, "delete": 1, "gong_calls": 3}
    assert lineage._counts(None) == {}


def test_the_batch_operator_reports_its_rendered_arguments(postgres_conn, gong_conn):
    op = SqlToGongMeetingsOperator(
        task_id="b", sql_conn_id="pg_wh", table="crm.meetings", ledger_table="gl", dry_run="False"
    )
    start = op.get_openlineage_facets_on_start()
    assert [d.name for d in start.inputs] == ["analytics.crm.meetings"]
    assert [d.name for d in start.outputs] == ["meetings", "analytics.public.gl"]
    op.summary = {"rows": 2, "created": 2, "updated": 0, "deleted": 0}
    done = op.get_openlineage_facets_on_complete(MagicMock())
    assert done.run_facets["gongMeetingsBatch"].counts["created"] == 2
    assert done.outputs[0].outputFacets["outputStatistics"].rowCount == 2


def _ti(**xcoms) -> MagicMock:
    ti = MagicMock(task_id="t")
    ti.xcom_pull.side_effect = lambda task_ids, key: xcoms.get(key)
    return ti


def test_single_operators_report_gong_meetings(gong_conn):
    create = GongCreateMeetingOperator(task_id="c", **MEETING)
    made = create.get_openlineage_facets_on_complete(_ti(meeting_id="123"))
    (out,) = made.outputs
    assert (out.namespace, out.name, out.outputFacets["outputStatistics"].rowCount) == (
        "https://us-12345.api.gong.io",
        "meetings",
        1,
    )
    facet = made.run_facets["gongMeeting"]
    assert (facet.action, facet.meetingId) == ("create", "123")
    assert made.inputs == []
    # A create that failed before Gong answered: the dataset, but no count and no meeting.
    failed = create.get_openlineage_facets_on_complete(_ti())
    assert failed.outputs[0].outputFacets == {} and failed.run_facets == {}

    update = GongUpdateMeetingOperator(task_id="u", meeting_id=77, **MEETING)
    assert update.get_openlineage_facets_on_complete(None).run_facets["gongMeeting"].meetingId == "77"
    assert update.get_openlineage_facets_on_failure(None).outputs[0].outputFacets == {}

    delete = GongDeleteMeetingOperator(task_id="d", meeting_id="9", organizer_email="rep@acme.com")
    gone = delete.get_openlineage_facets_on_complete(_ti(return_value={"meeting_id": "9", "deleted": False}))
    assert gone.outputs[0].outputFacets["outputStatistics"].rowCount == 0  # Gong said 404: already gone
    deleted = delete.get_openlineage_facets_on_complete(
        _ti(return_value={"meeting_id": "9", "deleted": True})
    )
    assert deleted.outputs[0].outputFacets["outputStatistics"].rowCount == 1
    assert deleted.run_facets["gongMeeting"].action == "delete"

    for result in (made, gone, deleted):
        text = _json(result)
        assert SECRET not in text and f"{KEY}:" not in text
