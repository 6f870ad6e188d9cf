"""
OpenLineage for the Gong operators: which warehouse rows went to which Gong account, and how many.

Needs the optional extra ``airflow-provider-gong[openlineage]`` (``apache-airflow-providers-openlineage``).
This module imports OpenLineage at module level, so nothing imports it at DAG parse time: the operators'
``get_openlineage_facets_on_*`` methods import it when the OpenLineage listener calls them, which happens
only where the provider is installed and configured. Without the provider the operators never touch it.

Datasets
--------
* **Gong** (output of every writing operator): namespace ``<scheme>://<host>[:<port>]`` of the connection's
  API base URL, name ``meetings`` (``<path>/meetings`` when the base URL has a path, e.g. a proxy).
  Gong gives every company its own API host (``us-12345.api.gong.io``), so the namespace tells Gong
  accounts apart. It comes from the same normalised base URL the hook calls, so it never holds the
  connection's login, password or token.
* **Warehouse** (input of the batch, and its results ledger as a second output): what common-sql's
  ``SQLExecuteQueryOperator`` would report for the same connection and table, so both operators' datasets
  join in a lineage graph. Namespace and name come from the hook's ``get_openlineage_database_info`` and the
  OpenLineage SQL parser (``postgres://host:5432`` + ``database.schema.table`` for PostgreSQL). Hooks that
  give no database info get ``<conn_type>://<host>[:<port>]``; SQLite, whose provider gives none, gets
  ``sqlite://<absolute path of the database file>`` and names ``main.<table>`` (``main`` is SQLite's
  schema name for that file).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attr
from airflow.providers.openlineage.extractors import OperatorLineage
from airflow.providers.openlineage.sqlparser import DatabaseInfo, SQLParser
from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.facet_v2 import (
    RunFacet,
    datasource_dataset,
    input_statistics_input_dataset,
    output_statistics_output_dataset,
    sql_job,
)

if TYPE_CHECKING:
    from typing import TypeAlias

    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from openlineage.client.event_v2 import Dataset
    from openlineage.client.facet_v2 import JobFacet

    #: ``OperatorLineage`` with its type parameters: datasets in and out, run facets and job facets
    Lineage: TypeAlias = OperatorLineage[Dataset, RunFacet | JobFacet]

log = logging.getLogger(__name__)

#: dataset name of a Gong account's meetings (the namespace is the account's API host)
GONG_MEETINGS = "meetings"
#: run facet keys
BATCH_FACET = "gongMeetingsBatch"
MEETING_FACET = "gongMeeting"


@attr.define
class GongMeetingsBatchRunFacet(RunFacet):
    """
    What one run of ``SqlToGongMeetingsOperator`` did.

    ``counts`` holds every count of the task's summary (its XCom ``return_value``), under the same keys:
    ``rows``, ``created``, ``updated``, ``deleted``, ``failed``, ``unchanged``, ``skipped_created``,
    ``pending_unreconciled``, ``gong_calls``, ... For a dry run they are the plan's buckets (``create``,
    ``update``, ``delete``, ...) and nothing was sent or written.
    """

    # OpenLineage facet fields are camelCase
    syncMode: str
    dryRun: bool
    counts: dict[str, int] = attr.field(factory=dict)

    # numbers and fixed words: nothing the secrets masker needs to look at
    _additional_skip_redact = ["syncMode", "dryRun", "counts"]


@attr.define
class GongMeetingRunFacet(RunFacet):
    """The meeting a single-meeting operator created, updated or deleted."""

    action: str
    meetingId: str | None = None

    _additional_skip_redact = ["action", "meetingId"]


# -- datasets -----------------------------------------------------------------------------------------


def gong_namespace_and_name(base_url: str) -> tuple[str, str]:
    """
    ``(namespace, name)`` of the meetings behind a Gong API base URL.

    Built from the parsed host and port only, so a URL that carries credentials
    (``https://key:secret@host``) can never put them in a lineage event.
    """
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    prefix = parts.path.strip("/")
    return f"{parts.scheme or 'https'}://{netloc}", f"{prefix}/{GONG_MEETINGS}" if prefix else GONG_MEETINGS


def gong_meetings(gong_conn_id: str, *, written: int | None = None) -> OutputDataset:
    """Return the Gong meetings dataset of a connection; ``written``: meetings created, updated or deleted."""
    from airflow_provider_gong.hooks.gong import GongHook

    hook = GongHook(gong_conn_id=gong_conn_id)
    try:
        namespace, name = gong_namespace_and_name(hook.base_url)
    finally:
        hook.close()
    output_facets: dict[str, Any] = {}
    if written is not None:
        output_facets["outputStatistics"] = (
            output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=written)
        )
    return OutputDataset(
        namespace=namespace,
        name=name,
        facets={"datasource": datasource_dataset.DatasourceDatasetFacet(name=namespace, uri=namespace)},
        outputFacets=output_facets,
    )


class WarehouseLineage:
    """Datasets of one common-sql connection, named the way common-sql/OpenLineage name them."""

    def __init__(self, conn_id: str) -> None:
        from airflow.sdk import BaseHook

        self.conn_id = conn_id
        self.connection = BaseHook.get_connection(conn_id)
        # Connection.get_hook() is unannotated in Airflow's SDK (it returns whichever hook the type names)
        self.hook: DbApiHook = self.connection.get_hook()  # type: ignore[no-untyped-call]
        self.database_info = self._database_info()
        self.namespace = SQLParser.create_namespace(self.database_info)

    def _database_info(self) -> DatabaseInfo:
        try:
            info = self.hook.get_openlineage_database_info(self.connection)
        except Exception as exc:  # a hook's optional extra missing (e.g. redshift without amazon)
            log.warning("%s gave no OpenLineage database info (%s)", type(self.hook).__name__, exc)
            info = None
        if info is not None:
            return info
        if (self.connection.conn_type or "").lower() == "sqlite":
            # The SQLite provider gives none: the database is the file the hook opens.
            return DatabaseInfo(scheme="sqlite", authority=_sqlite_path(self.hook.get_uri()))
        return DatabaseInfo(
            scheme=self.connection.conn_type or "sql",
            authority=type(self.hook).get_openlineage_authority_part(self.connection),
            database=self.connection.schema or None,
        )

    @cached_property
    def _parser(self) -> SQLParser:
        """One parser per connection: PostgreSQL's default schema is a query to the server."""
        if self.database_info.scheme == "sqlite":
            return SQLParser(dialect="sqlite", default_schema="main")
        try:
            dialect = self.hook.get_openlineage_database_dialect(self.connection)
        except Exception:
            dialect = "generic"
        try:
            schema = self.hook.get_openlineage_default_schema()
        except Exception as exc:  # e.g. PostgreSQL asks the server for CURRENT_SCHEMA
            log.warning("Could not read the default schema of %r for lineage (%s)", self.conn_id, exc)
            schema = None
        return SQLParser(dialect=dialect, default_schema=schema or "public")

    def lineage_of(self, sql: str) -> Lineage:
        """Tables a statement reads and writes, named as the SQL parser names them for this database."""
        return self._parser.generate_openlineage_metadata_from_sql(
            sql=sql, hook=self.hook, database_info=self.database_info, use_connection=False
        )

    def table(self, table: str) -> tuple[str, str]:
        """``(namespace, name)`` of a table given as ``name`` or ``schema.name``."""
        (dataset,) = self.lineage_of(f"SELECT * FROM {table}").inputs
        return dataset.namespace, dataset.name


def _sqlite_path(uri: str) -> str:
    """Return the database file of a SQLite hook's SQLAlchemy URI (``sqlite:////abs/path.db?mode=ro``)."""
    path = uri.split("?", 1)[0].removeprefix("sqlite:///")
    path = path.rsplit("@", 1)[-1]  # never a login or password, should a connection carry one
    if path in ("", ":memory:"):
        return path
    return "/" + os.path.abspath(path).lstrip("/")  # one leading slash, as SQLite reads it


# -- what the operators report ------------------------------------------------------------------------


def batch_lineage(
    *,
    sql_conn_id: str,
    table: str | None,
    sql: str | None,
    ledger_table: str,
    gong_conn_id: str,
    sync_mode: str,
    dry_run: bool,
    summary: Mapping[str, Any] | None,
) -> Lineage:
    """
    Describe the batch: source table/query -> Gong meetings (+ the results ledger), with the run's counts.

    ``summary`` is the task's summary (None at start, or when the task failed before it had one).
    Each part is built on its own, so a warehouse that cannot be named still leaves the Gong output.
    """
    counts = _counts(summary)
    inputs: list[Dataset] = []
    outputs: list[Dataset] = []
    job_facets: dict[str, Any] = {}
    run_facets: dict[str, Any] = {}
    try:
        warehouse = WarehouseLineage(sql_conn_id)
        read = warehouse.lineage_of(sql) if sql else warehouse.lineage_of(f"SELECT * FROM {table}")
        if sql:
            job_facets["sql"] = sql_job.SQLJobFacet(query=SQLParser.normalize_sql(sql))
            run_facets.update(read.run_facets)  # the parser's extractionError, if any
        input_facets: dict[str, Any] = {}
        if "rows" in counts and not dry_run:
            input_facets["inputStatistics"] = input_statistics_input_dataset.InputStatisticsInputDatasetFacet(
                rowCount=counts["rows"]
            )
        inputs = [
            InputDataset(namespace=d.namespace, name=d.name, facets=d.facets, inputFacets=input_facets)
            for d in read.inputs
        ]
        if not dry_run:
            namespace, name = warehouse.table(ledger_table)
            outputs.append(OutputDataset(namespace=namespace, name=name))
    except Exception as exc:
        log.warning("OpenLineage: could not name the warehouse datasets of %r: %s", sql_conn_id, exc)
    if not dry_run:  # a dry run sends nothing to Gong
        written = None
        if summary is not None:
            written = sum(counts.get(k, 0) for k in ("created", "updated", "deleted"))
        outputs.insert(0, gong_meetings(gong_conn_id, written=written))
    if summary is not None:
        run_facets[BATCH_FACET] = GongMeetingsBatchRunFacet(syncMode=sync_mode, dryRun=dry_run, counts=counts)
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets, job_facets=job_facets)


def meeting_lineage(*, gong_conn_id: str, action: str, meeting_id: Any, written: int | None) -> Lineage:
    """Describe a single-meeting operator: its output is the Gong meetings dataset."""
    run_facets: dict[str, Any] = {}
    if meeting_id not in (None, ""):
        run_facets[MEETING_FACET] = GongMeetingRunFacet(action=action, meetingId=str(meeting_id))
    return OperatorLineage(outputs=[gong_meetings(gong_conn_id, written=written)], run_facets=run_facets)


def _counts(summary: Mapping[str, Any] | None) -> dict[str, int]:
    """Return the integer counts of a batch summary (a dry run's are under ``counts``); nothing else of it."""
    if not summary:
        return {}
    source = summary.get("counts") if summary.get("dry_run") else summary
    counts = {
        str(k): int(v) for k, v in (source or {}).items() if isinstance(v, int) and not isinstance(v, bool)
    }
    if summary.get("dry_run") and isinstance(summary.get("gong_calls"), int):
        counts["gong_calls"] = int(summary["gong_calls"])
    return counts


def pulled(task_instance: Any, key: str) -> Any:
    """
    Return this task instance's XCom ``key``, or None.

    Lineage must never fail because an XCom is missing.
    """
    if task_instance is None:
        return None
    try:
        return task_instance.xcom_pull(task_ids=task_instance.task_id, key=key)
    except Exception as exc:
        log.debug("OpenLineage: no XCom %r for %s (%s)", key, getattr(task_instance, "task_id", "?"), exc)
        return None
