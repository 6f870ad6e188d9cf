"""
Warehouse batch: rows of a SQL table (or query) -> Gong meetings -> outcomes in a results ledger.

The operator holds the arguments, the checks that fail the whole task before any row is touched, and
the summary; the protocol itself (source -> plan -> claim -> call -> record) lives in
:mod:`airflow_provider_gong.sync`. Every meeting goes through the same
:class:`~airflow_provider_gong.meetings.Meeting` model and
:class:`~airflow_provider_gong.hooks.gong.GongHook` as the single-meeting operator.

Each row's outcome goes to a results ledger table in the same warehouse (created if absent, an
older ledger is migrated): ``row_key, status (pending/created/failed/deleted), meeting_id,
meeting_url, request_id, additional_invitees, error, error_kind, attempts, updated_at, claimed_by,
fingerprint, organizer_email, end_time, action, source_fingerprint``. A row is
sent only by the run whose atomic claim on it won, after that claim is committed, so overlapping
runs, a zombie attempt beside its retry, and reruns never send a row twice. Reruns skip created
rows, skip permanently failed rows unless ``retry_failed``, retry rows that failed transiently,
and never re-post ``pending`` rows (their create may have reached Gong): those are reported for
reconciliation. One bad row never stops the others; authentication, permission and quota
problems stop the batch (every later row would fail the same way) and fail the task so Airflow
can retry it. Task-level problems (unknown timezone, unusable Gong connection, missing source or
column) fail the task before any row is touched. Rows with a NULL, duplicated or over-long key
are reported and counted as failed, never sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook, BaseOperator

from airflow_provider_gong import DEFAULT_CONN_ID
from airflow_provider_gong.deferral import default_deferrable, defer_for_quota, may_defer
from airflow_provider_gong.exceptions import (
    GongBatchRowErrors,
    GongRateLimitError,
    GongValidationError,
)
from airflow_provider_gong.sync.ddl import DEFAULT_LEDGER_TABLE
from airflow_provider_gong.sync.guard import DeleteGuard, max_deletes as _max_deletes
from airflow_provider_gong.sync.plan import CREATE_ONLY, DEFAULT_COLUMNS, SYNC_MODES
from airflow_provider_gong.sync.progress import IDLE, log_quota, problems, so_far

# DAG files import this module on every parse: the hook (requests), the rules (pydantic, email-validator),
# common-sql's hooks and the sync runner are imported in execute(), where they are used
# (tests/unit/test_lazy_imports.py keeps it that way).
if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import Context

    from airflow_provider_gong.hooks.gong import GongHook
    from airflow_provider_gong.lineage import Lineage
    from airflow_provider_gong.rules import MeetingLimits
    from airflow_provider_gong.sync.ledger import ResultsLedger
    from airflow_provider_gong.sync.progress import BatchProgress
    from airflow_provider_gong.sync.run import BatchOptions, BatchRun
    from airflow_provider_gong.sync.startup import Startup


__all__ = ["DEFAULT_COLUMNS", "SqlToGongMeetingsOperator"]


class SqlToGongMeetingsOperator(BaseOperator):
    """
    Create a Gong meeting for every row of a warehouse table, exactly once per row.

    With ``sync_mode`` "upsert" or "mirror", also keep those meetings in step with the rows (PUT when
    a row changed, DELETE when it is cancelled or, in mirror mode, gone). How a row travels, what the
    ledger holds and which problems fail what: see this module's docstring.

    :param sql_conn_id: any common-sql connection (templated).
    :param table: source table, ``name`` or ``schema.name`` (templated). Or give ``sql``.
    :param sql: a SELECT whose rows are the meetings (templated), wrapped as a subquery; written as in
        any SQL client (``LIKE 'a%'`` needs no escaping on any driver).
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
    :param sync_mode: "create" (default: only create), "upsert" (also update changed rows and delete
        cancelled ones) or "mirror" (upsert, and delete meetings whose row left the source). Templated.
    :param dry_run: return the plan (counts, samples, Gong calls, quota share); no call, no write (templated).
    :param max_deletes: the most meetings one run may delete: a count (e.g. 25) or a fraction of the
        ledger's live meetings (default 0.1). A run over it fails before any call; a source with no rows
        never deletes (templated).
    :param daily_quota: Gong calls per day, for the dry run's quota share (default 10,000).
    :param deferrable: when Gong's quota is spent (a 429 whose Retry-After exceeds ``max_retry_wait``,
        or the shared daily budget), defer with a ``DateTimeTrigger`` until then and resume from the
        ledger, instead of failing. Default: ``[operators] default_deferrable``.
    :param claim_window: rows claimed (and outcomes written) per ledger statement, a window ahead of the
        calls, so a slow warehouse does not slow the batch. None (default) sizes windows from the
        ledger's measured write time and the Gong pace (at least 3 rows). A worker killed outright can
        leave up to three windows of rows pending for reconciliation; 1 keeps that to the fewest rows.
    :param lease_seconds: one run works a ledger at a time, under a lease it renews while it works
        (``<ledger>_lock``; see docs/design/0001-claims-without-enforced-keys.md). A run that dies
        without a word keeps the ledger this long after its last renewal. Default 120.
    :param lease_wait_seconds: how long a run waits for another live run's lease; if still held then,
        this run ends successfully without touching a row (one log line names the holder; summary key
        ``ledger_busy``). Default 150: longer than a lease, so a crashed holder never stops the next run.
    :param progress_every_rows: log progress every N rows, or ``progress_every_seconds``, whichever first.
    :param progress_every_seconds: see ``progress_every_rows``.
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
        "dry_run",
        "sync_mode",
        "max_deletes",
    )
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql"}
    ui_color = "#8039df"
    # The dry_run argument (templated) shadows BaseOperator.dry_run(), a method Airflow 3 never calls.
    dry_run: bool | str  # type: ignore[assignment]

    def __init__(
        self,
        *,
        sql_conn_id: str = "warehouse",
        table: str | None = None,
        sql: str | None = None,
        columns: Mapping[str, str] | None = None,
        ledger_table: str = DEFAULT_LEDGER_TABLE,
        timezone: str = "UTC",
        limits: MeetingLimits | Mapping[str, Any] | None = None,
        gong_conn_id: str = DEFAULT_CONN_ID,
        page_size: int = 500,
        retry_failed: bool | str = False,
        fail_on_row_errors: bool | str = True,
        preflight: bool | str = False,
        progress_every_rows: int = 100,
        progress_every_seconds: float = 30.0,
        claim_lease_seconds: float = 600.0,
        sync_mode: str = CREATE_ONLY,
        dry_run: bool | str = False,
        max_deletes: int | float = 0.1,
        daily_quota: int = 10_000,
        claim_window: int | None = None,
        deferrable: bool | None = None,
        lease_seconds: float = 120.0,
        lease_wait_seconds: float = 150.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_arguments(
            sync_mode, max_deletes, columns, page_size, claim_window, lease_seconds, lease_wait_seconds
        )
        self.sync_mode, self.dry_run, self.max_deletes = sync_mode, dry_run, max_deletes
        self.daily_quota = daily_quota
        self.sql_conn_id, self.table, self.sql = sql_conn_id, table, sql
        self.columns = {**DEFAULT_COLUMNS, **(columns or {})}
        self.ledger_table, self.timezone, self.limits = ledger_table, timezone, limits
        self.gong_conn_id = gong_conn_id
        self.page_size = page_size
        self.retry_failed, self.preflight = retry_failed, preflight
        self.fail_on_row_errors = fail_on_row_errors
        self.progress_every_rows, self.progress_every_seconds = progress_every_rows, progress_every_seconds
        self.claim_lease_seconds, self.claim_window = claim_lease_seconds, claim_window
        self.lease_seconds, self.lease_wait_seconds = lease_seconds, lease_wait_seconds
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self._earlier: dict[str, Any] = {}  # what earlier legs of a deferred run did
        self.batch: BatchRun | None = None  # the last pass, kept for inspection in tests
        #: the last run's summary (also its return value), kept for OpenLineage's completion event
        self.summary: dict[str, Any] | None = None

    def execute_complete(
        self, context: Context, event: Any = None, earlier: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Back from a deferral: run again; the ledger makes it go on where the last leg stopped."""
        self._earlier = dict(earlier or {})
        self.log.info(
            "Resuming after Gong's quota wait (deferral %d); the ledger holds what earlier legs did",
            int(self._earlier.get("deferrals", 0)),
        )
        return self.execute(context)

    def get_openlineage_facets_on_start(self) -> Lineage:
        """
        OpenLineage (optional extra): the source in, Gong's meetings and the results ledger out.

        The source is the table or query. Named like common-sql's SQLExecuteQueryOperator names the
        same tables, so the two join in a lineage graph (see :mod:`airflow_provider_gong.lineage`).
        """
        return self._lineage(None)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Lineage:
        """
        Return the same datasets, with this run's counts.

        The counts: a ``gongMeetingsBatch`` run facet (every count of the summary), output statistics
        on Gong's meetings (created + updated + deleted) and input statistics on the source (rows
        read). Also used for a failed run, which keeps its counts when it got as far as a summary.
        """
        return self._lineage(self.summary)

    def _lineage(self, summary: dict[str, Any] | None) -> Lineage:
        from airflow_provider_gong.lineage import batch_lineage

        return batch_lineage(
            sql_conn_id=self.sql_conn_id,
            table=self.table,
            sql=self.sql,
            ledger_table=self.ledger_table,
            gong_conn_id=self.gong_conn_id,
            sync_mode=str(self.sync_mode),
            dry_run=_truthy(self.dry_run),
            summary=summary,
        )

    def on_kill(self) -> None:
        """
        Airflow calls this on SIGTERM: the batch stops before its next row.

        SIGTERM comes when a task is cleared, timed out or marked failed, or a worker shuts down. The
        batch writes every outcome it has and hands back the rows it claimed but did not send, instead
        of leaving them pending for a person.
        """
        if self.batch is not None:
            self.log.warning("Stop requested: the batch stops before its next row")
            self.batch.stop()

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_gong.hooks.gong import GongHook
        from airflow_provider_gong.sync.claims import claim_token
        from airflow_provider_gong.sync.ledger import ResultsLedger
        from airflow_provider_gong.sync.progress import BatchProgress
        from airflow_provider_gong.sync.run import BatchRun
        from airflow_provider_gong.sync.source import SourceReader
        from airflow_provider_gong.sync.startup import Startup

        self.summary = None  # an instance run twice in one process (dag.test) must not report old counts
        # Task-level problems fail the task here, before any row is read, claimed or charged.
        options, db = _batch_options(self), _warehouse(self.sql_conn_id)
        gong = GongHook(gong_conn_id=self.gong_conn_id)
        gong.get_conn()  # connection type, settings and credentials checked, nothing sent
        source = SourceReader(
            db, table=self.table, sql=self.sql, key=self.columns["key"], page_size=self.page_size
        )
        ledger: ResultsLedger | None = None
        dry_run = _truthy(self.dry_run)
        try:
            ledger = ResultsLedger(
                db, self.ledger_table, owner=claim_token(context), lease_seconds=self.lease_seconds
            )
            # the source's reads, the lease and the first claims overlap (sync/startup.py)
            start = Startup(source, ledger, take_lease=not dry_run, wait=self.lease_wait_seconds)
            every = (self.progress_every_rows, self.progress_every_seconds)
            make = partial(BatchRun, source=source, ledger=ledger, gong=gong, options=options)
            self.batch = start.first(self.columns, lambda rows: make(progress=BatchProgress(rows, *every)))
            progress = self.batch.progress
            if (busy := self._take(start, self.batch)) is not None:
                self.summary = busy
                return busy
            self._log_start(progress, gong, ledger, dry_run)
            quota_left = None if dry_run else log_quota(self.log, gong, progress.total, self.deferrable)
            if dry_run or self.sync_mode != CREATE_ONLY:  # a plan first: a dry run ends with it
                guard = DeleteGuard(self.sync_mode, self.ledger_table, self.max_deletes)
                self.summary = guard.hold(self.batch, dry_run=dry_run, daily_quota=self.daily_quota)
                if self.summary is not None:
                    return self.summary
            quota = self._run(self.batch)
        finally:
            source.close()
            if ledger is not None:
                ledger.close()
            gong.close()
        if quota is not None:
            defer_for_quota(self, quota, earlier=so_far(self._earlier, progress.summary(), deferring=True))
        return self._finish(progress, gong, quota_left)

    def _take(self, start: Startup, batch: BatchRun) -> dict[str, Any] | None:
        """Wait for the lease and first claims; a summary when another live run keeps the ledger (busy)."""
        from airflow_provider_gong.sync.lease import LedgerBusyError

        try:
            start.lease(batch)
        except LedgerBusyError as busy:
            self.log.warning("Nothing done: %s", busy)
            return {
                "ledger_busy": True,
                "held_by": busy.holder.owner,
                "ledger_table": self.ledger_table,
                **IDLE,
            }
        return None

    def _log_start(
        self, progress: BatchProgress, gong: GongHook, ledger: ResultsLedger, dry_run: bool
    ) -> None:
        self.log.info(
            "%s Gong meetings (%s mode) for %d rows of %s, ledger %s (pace %.2g calls/s, claims as %s)",
            "Planning" if dry_run else ("Creating" if self.sync_mode == CREATE_ONLY else "Syncing"),
            self.sync_mode,
            progress.total,
            self.table or "query",
            self.ledger_table,
            gong.settings.rate_limit_per_second,
            ledger.owner,
        )

    def _run(self, batch: BatchRun) -> GongRateLimitError | None:
        """Run the batch; Gong's quota spent, a deferrable run returns the error to defer on."""
        try:
            batch.run()
        except GongRateLimitError as exc:
            if not (self.deferrable and may_defer(exc)):
                raise
            return exc  # the run has written every outcome and handed back unused claims
        finally:
            self.log.info("Batch finished. %s", batch.progress.line())
        return None

    def _finish(self, progress: BatchProgress, gong: GongHook, quota_left: int | None) -> dict[str, Any]:
        summary: dict[str, Any] = {
            **so_far(self._earlier, progress.summary()),
            "gong_calls": gong.calls,
            "quota_left": quota_left - gong.calls if quota_left is not None else None,
            "ledger_table": self.ledger_table,
        }
        self.log.info(
            "This run made %d Gong call(s)%s.",
            gong.calls,
            f"; about {summary['quota_left']} left of today's budget" if quota_left is not None else "",
        )
        self.summary = summary  # before a GongBatchRowErrors: a failed run's lineage still has its counts
        rows = problems(summary)
        if rows:
            self.log.warning(
                "Rows that need attention (status/error in ledger %s): %s.", self.ledger_table, rows
            )
            if _truthy(self.fail_on_row_errors):
                raise GongBatchRowErrors(
                    f"{rows} (created {summary['created']} in this run); every outcome is in "
                    f"{self.ledger_table}. The task fails while such rows remain; "
                    "set fail_on_row_errors=False to accept them."
                )
        return summary


def _batch_options(op: SqlToGongMeetingsOperator) -> BatchOptions:
    """Return the run's options, checked: a bad mode, limit or zone fails the task before any row is read."""
    from airflow_provider_gong.rules import MeetingLimits, zone
    from airflow_provider_gong.sync.run import BatchOptions

    op.sync_mode = _sync_mode(op.sync_mode)
    _max_deletes(op.max_deletes)
    try:
        zone(op.timezone)
        limits = MeetingLimits.of(dict(op.limits) if isinstance(op.limits, Mapping) else op.limits)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError too
        raise GongValidationError(f"{exc}") from None
    return BatchOptions(
        columns=op.columns,
        timezone=op.timezone,
        limits=limits,
        retry_failed=_truthy(op.retry_failed),
        preflight=_truthy(op.preflight),
        claim_lease_seconds=op.claim_lease_seconds,
        mode=op.sync_mode,
        claim_window=op.claim_window,
    )


def _warehouse(conn_id: str) -> DbApiHook:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    db = BaseHook.get_hook(conn_id)
    if not isinstance(db, DbApiHook):
        raise GongValidationError(f"connection {conn_id!r} is not a common-sql (DbApiHook) connection")
    return db


def _check_arguments(
    sync_mode: str,
    max_deletes: int | float,
    columns: Mapping[str, str] | None,
    page_size: int,
    claim_window: int | None,
    lease_seconds: float,
    lease_wait_seconds: float,
) -> None:
    """Mistakes in a DAG file fail when the DAG is parsed, not when its task runs."""
    if "{{" not in str(sync_mode):  # templated values are checked when rendered
        _sync_mode(sync_mode)
    if "{{" not in str(max_deletes):
        _max_deletes(max_deletes)
    unknown = set(columns or {}) - set(DEFAULT_COLUMNS)
    if unknown:
        raise ValueError(
            f"columns has unknown meeting fields {sorted(unknown)}; known: {sorted(DEFAULT_COLUMNS)}"
        )
    if page_size < 1:
        raise ValueError("page_size must be >= 1")
    if claim_window is not None and not 1 <= claim_window <= 100:
        raise ValueError(f"claim_window must be None (automatic) or 1..100 rows, got {claim_window!r}")
    if lease_seconds < 4 or lease_wait_seconds < 0:
        raise ValueError(
            f"lease_seconds must be >= 4 and lease_wait_seconds >= 0, got {lease_seconds!r}, "
            f"{lease_wait_seconds!r}"
        )


def _sync_mode(value: Any) -> str:
    if value not in SYNC_MODES:
        raise GongValidationError(f"sync_mode must be one of {', '.join(SYNC_MODES)}, got {value!r}")
    return str(value)


def _truthy(value: bool | str) -> bool:
    """Templated flags render as strings unless the DAG renders native objects."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(value)
