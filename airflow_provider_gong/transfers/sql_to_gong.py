"""Warehouse batch: rows of a SQL table (or query) -> Gong meetings -> outcomes in a results ledger.

The operator holds the arguments, the checks that fail the whole task before any row is touched, and
the summary; the protocol itself (source -> plan -> claim -> call -> record) lives in
:mod:`airflow_provider_gong.sync`. Every meeting goes through the same
:class:`~airflow_provider_gong.meetings.Meeting` model and
:class:`~airflow_provider_gong.hooks.gong.GongHook` as the single-meeting operator.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.sql.hooks.sql import DbApiHook
from airflow.sdk import BaseHook, BaseOperator

from airflow_provider_gong.exceptions import GongBatchRowErrors, GongValidationError
from airflow_provider_gong.hooks.gong import GongHook
from airflow_provider_gong.rules import MeetingLimits, zone
from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.sync.run import DEFAULT_COLUMNS, REQUIRED_COLUMNS, BatchProgress, BatchRun
from airflow_provider_gong.sync.source import SourceReader

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["DEFAULT_COLUMNS", "SqlToGongMeetingsOperator"]


class SqlToGongMeetingsOperator(BaseOperator):
    """Create a Gong meeting for every row of a warehouse table, exactly once per row.

    Each row's outcome goes to a results ledger table in the same warehouse (created if absent, a
    0.1.0 ledger is migrated): ``row_key, status (pending/created/failed), meeting_id, meeting_url,
    request_id, additional_invitees, error, error_kind, attempts, updated_at, claimed_by``. A row is
    sent only by the run whose atomic claim on it won, after that claim is committed, so overlapping
    runs, a zombie attempt beside its retry, and reruns never send a row twice. Reruns skip created
    rows, skip permanently failed rows unless ``retry_failed``, retry rows that failed transiently,
    and never re-post ``pending`` rows (their create may have reached Gong): those are reported for
    reconciliation. One bad row never stops the others; authentication, permission and quota
    problems stop the batch (every later row would fail the same way) and fail the task so Airflow
    can retry it. Task-level problems (unknown timezone, unusable Gong connection, missing source or
    column) fail the task before any row is touched. Rows with a NULL, duplicated or over-long key
    are reported and counted as failed, never sent.

    :param sql_conn_id: any common-sql connection (templated).
    :param table: source table, ``name`` or ``schema.name`` (templated). Or give ``sql``.
    :param sql: a SELECT whose rows are the meetings (templated); it is wrapped as a subquery. Write
        it as in any SQL client (``LIKE 'a%'`` needs no escaping on any driver).
    :param columns: meeting field -> column, merged over :data:`DEFAULT_COLUMNS`. The key column must
        be unique and orderable; keys are compared as text (``str(value)``, at most 255 characters).
        When ``external_id`` is missing or NULL, the row key is sent as Gong's ``externalId`` so a
        meeting can always be traced back to its row.
    :param ledger_table: results table (templated; default ``gong_meeting_ledger``).
    :param timezone: IANA zone for naive timestamps (templated; default UTC). The same value means the
        same instant in a TEXT, TIMESTAMP or TIMESTAMPTZ column; a naive time the zone skips (daylight
        saving) fails its row, a repeated one is read as its first occurrence.
    :param limits: plausibility limits for every row (:class:`~airflow_provider_gong.rules.MeetingLimits`
        or a dict of its fields); rows outside them fail permanently without a Gong call.
    :param page_size: rows per read; bounds memory.
    :param retry_failed: also retry rows that failed permanently before (e.g. after fixing data).
    :param fail_on_row_errors: fail the task, after writing every outcome, while any source row has
        no meeting: it failed (in this run or, permanently, in an earlier one) or awaits
        reconciliation. Rows another run has in flight do not count. Default True.
    :param preflight: check each organizer once with Gong's integration-status call first; rows of
        organizers who are not Gong users or have no valid consent page fail without a create call.
    :param claim_lease_seconds: a row claimed by another run less than this long ago, with no outcome
        yet, is that run's call in flight and is skipped quietly (``claimed_elsewhere``); older ones
        are reported as ``pending`` for reconciliation. Default 600.
    :param progress_every_rows: log progress every N rows ...
    :param progress_every_seconds: ... or every T seconds, whichever comes first.
    """

    template_fields: Sequence[str] = (
        "sql_conn_id",
        "gong_conn_id",
        "table",
        "sql",
        "ledger_table",
        "timezone",
        "fail_on_row_errors",
        "retry_failed",
    )
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql"}
    ui_color = "#8039df"

    def __init__(
        self,
        *,
        sql_conn_id: str = "warehouse",
        table: str | None = None,
        sql: str | None = None,
        columns: Mapping[str, str] | None = None,
        ledger_table: str = "gong_meeting_ledger",
        timezone: str = "UTC",
        limits: MeetingLimits | Mapping[str, Any] | None = None,
        gong_conn_id: str = GongHook.default_conn_name,
        page_size: int = 500,
        retry_failed: bool | str = False,
        fail_on_row_errors: bool | str = True,
        preflight: bool | str = False,
        progress_every_rows: int = 100,
        progress_every_seconds: float = 30.0,
        claim_lease_seconds: float = 600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        unknown = set(columns or {}) - set(DEFAULT_COLUMNS)
        if unknown:
            raise ValueError(
                f"columns has unknown meeting fields {sorted(unknown)}; known: {sorted(DEFAULT_COLUMNS)}"
            )
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        self.sql_conn_id = sql_conn_id
        self.table = table
        self.sql = sql
        self.columns = {**DEFAULT_COLUMNS, **(columns or {})}
        self.ledger_table = ledger_table
        self.timezone = timezone
        self.limits = limits
        self.gong_conn_id = gong_conn_id
        self.page_size = page_size
        self.retry_failed = retry_failed
        self.fail_on_row_errors = fail_on_row_errors
        self.preflight = preflight
        self.progress_every_rows = progress_every_rows
        self.progress_every_seconds = progress_every_seconds
        self.claim_lease_seconds = claim_lease_seconds
        self.batch: BatchRun | None = None  # the last pass, kept for inspection in tests

    def execute(self, context: Context) -> dict[str, Any]:
        # Task-level problems fail the task here, before any row is read, claimed or charged.
        try:
            zone(self.timezone)
            limits = MeetingLimits.of(dict(self.limits) if isinstance(self.limits, Mapping) else self.limits)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError too
            raise GongValidationError(f"{exc}") from None
        db = BaseHook.get_hook(self.sql_conn_id)
        if not isinstance(db, DbApiHook):
            raise GongValidationError(
                f"connection {self.sql_conn_id!r} is not a common-sql (DbApiHook) connection"
            )
        gong = GongHook(gong_conn_id=self.gong_conn_id)
        gong.get_conn()  # connection type, settings and credentials checked, nothing sent
        source = SourceReader(
            db, table=self.table, sql=self.sql, key=self.columns["key"], page_size=self.page_size
        )
        ledger: ResultsLedger | None = None
        try:
            names = {n.lower() for n in source.columns()}
            missing = [
                f"{self.columns[f]!r} ({f})" for f in REQUIRED_COLUMNS if self.columns[f].lower() not in names
            ]
            if missing:
                raise GongValidationError(
                    f"source has no column {', '.join(missing)}; columns are {sorted(names)}. "
                    "Map them with columns={...}."
                )
            ledger = ResultsLedger(db, self.ledger_table, owner=_owner(context))
            ledger.ensure_table()
            progress = BatchProgress(source.count(), self.progress_every_rows, self.progress_every_seconds)
            self.log.info(
                "Creating Gong meetings for %d rows of %s into ledger %s (pace %.2g calls/s, claims as %s)",
                progress.total,
                self.table or "query",
                self.ledger_table,
                gong.settings.rate_limit_per_second,
                ledger.owner,
            )
            self.batch = BatchRun(
                source=source,
                ledger=ledger,
                gong=gong,
                columns=self.columns,
                timezone=self.timezone,
                limits=limits,
                retry_failed=_truthy(self.retry_failed),
                preflight=_truthy(self.preflight),
                progress=progress,
                claim_lease_seconds=self.claim_lease_seconds,
            )
            try:
                self.batch.run()
            finally:
                self.log.info("Batch finished. %s", progress.line())
        finally:
            source.close()
            if ledger is not None:
                ledger.close()
            gong.close()
        summary: dict[str, Any] = {**progress.summary(), "ledger_table": self.ledger_table}
        problems = _problems(summary)
        if problems:
            self.log.warning(
                "Rows that need attention (status/error in ledger %s): %s.", self.ledger_table, problems
            )
            if _truthy(self.fail_on_row_errors):
                raise GongBatchRowErrors(
                    f"{problems} (created {summary['created']} in this run); every outcome is in "
                    f"{self.ledger_table}. The task fails while such rows remain; "
                    "set fail_on_row_errors=False to accept them."
                )
        return summary


def _problems(summary: Mapping[str, Any]) -> str:
    """The rows this run answers for that have no meeting, in words; "" when there are none."""
    parts = []
    if summary["failed"]:
        bad_keys = summary["invalid_keys"] + summary["duplicate_keys"]
        keys = f" ({bad_keys} with a NULL, duplicated or over-long key)" if bad_keys else ""
        parts.append(f"{summary['failed']} row(s) failed in this run{keys}")
    if summary["skipped_failed"]:
        parts.append(
            f"{summary['skipped_failed']} row(s) failed permanently in an earlier run (fix the data, "
            "then run with retry_failed=True)"
        )
    if summary["pending_unreconciled"]:
        parts.append(
            f"{summary['pending_unreconciled']} row(s) are pending: the create may have reached Gong; "
            "check Gong by externalId, then set the row to created (with its meeting_id) or failed"
        )
    return "; ".join(parts)


def _owner(context: Context | Mapping[str, Any]) -> str:
    """This run's claim token: who holds a claim (for people reading the ledger) + a unique suffix."""
    ti = context.get("ti") if isinstance(context, Mapping) else None
    who = "manual"
    if ti is not None and getattr(ti, "dag_id", None):
        map_index = getattr(ti, "map_index", -1)
        mapped = f"[{map_index}]" if isinstance(map_index, int) and map_index >= 0 else ""
        who = f"{ti.dag_id}/{ti.task_id}{mapped}/{ti.run_id}/try{getattr(ti, 'try_number', '?')}"
    return f"{who[:180]}@{socket.gethostname()[:40]}:{os.getpid()}/{uuid.uuid4().hex[:12]}"


def _truthy(value: bool | str) -> bool:
    """Templated flags render as strings unless the DAG renders native objects."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(value)
