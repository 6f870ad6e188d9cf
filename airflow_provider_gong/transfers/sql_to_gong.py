"""Warehouse batch: rows of a SQL table (or query) -> Gong meetings -> outcomes in a results ledger.

Reads through any common-sql connection in keyset pages (``WHERE key > last ORDER BY key LIMIT n``),
so memory stays bounded, no cursor or lock is held while Gong is called, and the same code runs on
SQLite, PostgreSQL, MySQL, Snowflake, DuckDB ... (any database with LIMIT). Every meeting goes
through the same :class:`~airflow_provider_gong.meetings.Meeting` model and
:class:`~airflow_provider_gong.hooks.gong.GongHook` as the single-meeting operator.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.providers.common.sql.hooks.sql import DbApiHook
from airflow.sdk import BaseHook, BaseOperator

from airflow_provider_gong.exceptions import (
    GongBatchRowErrors,
    GongError,
    GongMeetingMayExistError,
    GongValidationError,
)
from airflow_provider_gong.hooks.gong import GongHook
from airflow_provider_gong.ledger import (
    CREATED,
    FAILED,
    PENDING,
    PERMANENT,
    TRANSIENT,
    LedgerEntry,
    ResultsLedger,
    quote_identifier,
)
from airflow_provider_gong.meetings import Meeting

if TYPE_CHECKING:
    from airflow.sdk import Context

#: meeting field -> source column. ``key`` identifies the row in the ledger.
DEFAULT_COLUMNS: dict[str, str] = {
    "key": "id",
    "start_time": "start_time",
    "end_time": "end_time",
    "title": "title",
    "organizer_email": "organizer_email",
    "invitees": "invitees",
    "external_id": "external_id",
}
_REQUIRED = ("key", "start_time", "end_time", "organizer_email", "invitees")


class SourceReader:
    """Keyset-paged reads of a table or a query, on one open connection."""

    def __init__(
        self, hook: DbApiHook, conn: Any, *, table: str | None, sql: str | None, key: str, page_size: int
    ):
        if bool(table) == bool(sql):
            raise GongValidationError("give exactly one of table= or sql=")
        source = quote_identifier(hook, table, what="table") if table else f"({sql.strip().rstrip(';')})"
        self.source = f"{source} src"
        self.key = f"src.{quote_identifier(hook, key, what='key column')}"
        self.key_name = key.lower()
        self.conn = conn
        self.ph = hook.placeholder
        self.page_size = page_size
        #: rows returned by each fetch, so tests can prove memory stays bounded
        self.fetch_sizes: list[int] = []

    def count(self) -> int:
        return int(self._query(f"SELECT COUNT(*) FROM {self.source}", ())[1][0][0])

    def pages(self) -> Iterator[tuple[list[str], list[tuple[Any, ...]]]]:
        """Yield (column names, rows) pages in key order until the source is exhausted."""
        last: Any = None
        while True:
            where = "" if last is None else f" WHERE {self.key} > {self.ph}"
            sql = f"SELECT * FROM {self.source}{where} ORDER BY {self.key} LIMIT {int(self.page_size)}"
            names, rows = self._query(sql, () if last is None else (last,))
            self.fetch_sizes.append(len(rows))
            if not rows:
                return
            yield names, rows
            last = rows[-1][[n.lower() for n in names].index(self.key_name)]
            if len(rows) < self.page_size:
                return

    def _query(self, sql: str, params: tuple[Any, ...]) -> tuple[list[str], list[tuple[Any, ...]]]:
        cur = self.conn.cursor()
        try:
            if params:
                cur.execute(sql, params)
            else:
                cur.execute(sql)
            rows = cur.fetchall()  # bounded: every paged query has a LIMIT
            names = [d[0] for d in cur.description or ()]
        finally:
            cur.close()
        # Readers must not hold a transaction (and its locks) open while Gong is called.
        self.conn.commit()
        return names, [tuple(r) for r in rows]


@dataclass
class BatchProgress:
    """Counters plus a rate-limited progress line, so long batches can be followed in the task log."""

    total: int
    every_rows: int
    every_seconds: float
    seen: int = 0
    created: int = 0
    failed: int = 0
    unknown: int = 0
    skipped_created: int = 0
    skipped_failed: int = 0
    skipped_pending: int = 0
    started: float = field(default_factory=time.monotonic)
    _last_log: float = field(default_factory=time.monotonic)
    _last_seen: int = 0

    def due(self) -> bool:
        now = time.monotonic()
        if self.seen - self._last_seen >= self.every_rows or now - self._last_log >= self.every_seconds:
            self._last_log, self._last_seen = now, self.seen
            return True
        return False

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.created / elapsed
        remaining = max(self.total - self.seen, 0)
        eta = f"{remaining / rate:.0f} s" if rate > 0 else "n/a"
        pct = 100.0 * self.seen / self.total if self.total else 100.0
        return (
            f"Progress: {self.seen}/{self.total} rows ({pct:.0f}%), created {self.created}, "
            f"failed {self.failed}, outcome unknown {self.unknown}, skipped {self.skipped}, "
            f"{rate:.2f} meetings/s, ETA {eta}"
        )

    @property
    def skipped(self) -> int:
        return self.skipped_created + self.skipped_failed + self.skipped_pending

    def summary(self) -> dict[str, int]:
        return {
            "rows": self.seen,
            "created": self.created,
            "failed": self.failed,
            "outcome_unknown": self.unknown,
            "skipped_created": self.skipped_created,
            "skipped_failed": self.skipped_failed,
            "pending_unreconciled": self.skipped_pending + self.unknown,
        }


class SqlToGongMeetingsOperator(BaseOperator):
    """Create a Gong meeting for every row of a warehouse table, exactly once per row.

    Each row's outcome goes to a results ledger table in the same warehouse (created if absent):
    ``row_key, status (pending/created/failed), meeting_id, meeting_url, request_id,
    additional_invitees, error, error_kind, attempts, updated_at``. Reruns skip created rows, skip
    permanently failed rows unless ``retry_failed``, retry rows that failed transiently, and never
    re-post ``pending`` rows (their create may have reached Gong): those are reported for
    reconciliation. One bad row never stops the others; authentication, permission and quota
    problems stop the batch (every later row would fail the same way) and fail the task so Airflow
    can retry it.

    :param sql_conn_id: any common-sql connection (templated).
    :param table: source table, ``name`` or ``schema.name`` (templated). Or give ``sql``.
    :param sql: a SELECT whose rows are the meetings (templated); it is wrapped as a subquery.
    :param columns: meeting field -> column, merged over :data:`DEFAULT_COLUMNS`. The key column must
        be unique and orderable. When ``external_id`` is missing or NULL, the row key is sent as
        Gong's ``externalId`` so a meeting can always be traced back to its row.
    :param ledger_table: results table (templated; default ``gong_meeting_ledger``).
    :param timezone: IANA zone for naive timestamps (templated; default UTC).
    :param page_size: rows per read; bounds memory.
    :param retry_failed: also retry rows that failed permanently before (e.g. after fixing data).
    :param fail_on_row_errors: fail the task, after writing every outcome, when any row failed or
        awaits reconciliation.
    :param preflight: check each organizer once with Gong's integration-status call first; rows of
        organizers who are not Gong users or have no valid consent page fail without a create call.
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
        gong_conn_id: str = GongHook.default_conn_name,
        page_size: int = 500,
        retry_failed: bool = False,
        fail_on_row_errors: bool | str = True,
        preflight: bool = False,
        progress_every_rows: int = 100,
        progress_every_seconds: float = 30.0,
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
        self.gong_conn_id = gong_conn_id
        self.page_size = page_size
        self.retry_failed = retry_failed
        self.fail_on_row_errors = fail_on_row_errors
        self.preflight = preflight
        self.progress_every_rows = progress_every_rows
        self.progress_every_seconds = progress_every_seconds
        self.reader: SourceReader | None = None  # kept for inspection in tests

    def execute(self, context: Context) -> dict[str, Any]:
        db = BaseHook.get_hook(self.sql_conn_id)
        if not isinstance(db, DbApiHook):
            raise GongValidationError(
                f"connection {self.sql_conn_id!r} is not a common-sql (DbApiHook) connection"
            )
        gong = GongHook(gong_conn_id=self.gong_conn_id)
        conn = db.get_conn()
        try:
            ledger = ResultsLedger(db, conn, self.ledger_table)
            ledger.ensure_table()
            self.reader = SourceReader(
                db, conn, table=self.table, sql=self.sql, key=self.columns["key"], page_size=self.page_size
            )
            progress = BatchProgress(
                self.reader.count(), self.progress_every_rows, self.progress_every_seconds
            )
            self.log.info(
                "Creating Gong meetings for %d rows of %s into ledger %s (pace %.2g calls/s)",
                progress.total,
                self.table or "query",
                self.ledger_table,
                gong.settings.rate_limit_per_second,
            )
            organizers: dict[str, dict[str, Any]] = {}
            try:
                for names, rows in self.reader.pages():
                    self._run_page(names, rows, ledger, gong, progress, organizers)
            finally:
                self.log.info("Batch finished. %s", progress.line())
        finally:
            conn.close()
            gong.close()
        summary = {**progress.summary(), "ledger_table": self.ledger_table}
        problems = summary["failed"] + summary["pending_unreconciled"]
        if problems:
            self.log.warning(
                "%d row(s) need attention; see status/error in ledger %s (status 'pending' = the create may "
                "have reached Gong: check Gong by externalId, then set the row to created or delete it).",
                problems,
                self.ledger_table,
            )
            if _truthy(self.fail_on_row_errors):
                raise GongBatchRowErrors(
                    f"{summary['failed']} row(s) failed and {summary['pending_unreconciled']} await "
                    f"reconciliation (created {summary['created']}); every outcome is in {self.ledger_table}."
                )
        return summary

    def _run_page(
        self,
        names: list[str],
        rows: list[tuple[Any, ...]],
        ledger: ResultsLedger,
        gong: GongHook,
        progress: BatchProgress,
        organizers: dict[str, dict[str, Any]],
    ) -> None:
        index = self._column_index(names)
        records = [{f: (row[i] if i is not None else None) for f, i in index.items()} for row in rows]
        keys = [str(r["key"]) for r in records if r["key"] is not None]
        entries: dict[str, LedgerEntry] = ledger.lookup(keys)
        if self.preflight:
            todo = [r for r in records if r["key"] is not None and self._due(entries.get(str(r["key"])))]
            self._check_organizers(todo, gong, organizers)
        for record in records:
            progress.seen += 1
            self._run_row(record, entries, ledger, gong, progress, organizers)
            if progress.due():
                self.log.info("%s", progress.line())

    def _run_row(
        self,
        record: dict[str, Any],
        entries: dict[str, LedgerEntry],
        ledger: ResultsLedger,
        gong: GongHook,
        progress: BatchProgress,
        organizers: dict[str, dict[str, Any]],
    ) -> None:
        if record["key"] is None:
            progress.failed += 1
            self.log.error("A row has a NULL %s; it cannot be tracked and was skipped", self.columns["key"])
            return
        key = str(record["key"])
        entry = entries.get(key)
        if not self._due(entry):
            assert entry is not None  # only ledger entries make a row not due
            if entry.status == CREATED:
                progress.skipped_created += 1
            elif entry.status == PENDING:
                progress.skipped_pending += 1
                self.log.warning(
                    "Row %s is pending from an earlier attempt: its meeting may exist in Gong. Not re-sent; "
                    "reconcile it in %s.",
                    key,
                    self.ledger_table,
                )
            else:
                progress.skipped_failed += 1
            return

        def fail(message: str, kind: str = PERMANENT, attempts: int | None = None) -> None:
            ledger.mark_failed(
                key, message, kind, exists=entry is not None or attempts is not None, attempts=attempts
            )
            entries[key] = LedgerEntry(FAILED, kind, attempts or (entry.attempts if entry else 0))
            progress.failed += 1

        try:
            meeting = Meeting.build(
                start_time=record["start_time"],
                end_time=record["end_time"],
                organizer_email=record["organizer_email"],
                invitees=record["invitees"],
                title=record["title"],
                external_id=record["external_id"] if record["external_id"] not in (None, "") else key,
                timezone=self.timezone,
            )
        except GongValidationError as exc:
            fail(str(exc))
            self.log.warning("Row %s failed validation: %s", key, exc)
            return
        refusal = organizers.get(meeting.organizer_email.lower())
        if refusal is not None and not (refusal.get("exists") and refusal.get("valid")):
            reason = (
                refusal.get("userFacingError") or "organizer is not a Gong user with a valid consent page"
            )
            fix = f" Fix it here: {refusal['fixUrl']}" if refusal.get("fixUrl") else ""
            fail(f"Preflight: {meeting.organizer_email}: {reason}{fix}")
            self.log.warning("Row %s skipped by preflight: %s", key, reason)
            return

        attempts = ledger.mark_pending(key, entry)
        entries[key] = LedgerEntry(PENDING, None, attempts)
        try:
            result = gong.create_meeting(meeting)
        except GongMeetingMayExistError as exc:
            ledger.mark_unknown(key, str(exc), exc.request_id)
            progress.unknown += 1
            self.log.error("Row %s: outcome unknown, left pending for reconciliation: %s", key, exc)
            return
        except GongError as exc:
            if exc.permanent and exc.status in (400, 404, 409):
                fail(str(exc), PERMANENT, attempts)
                self.log.warning("Row %s failed: %s", key, exc)
                return
            # Credentials, permissions, quota or connectivity: every later row would fail the same way.
            fail(str(exc), TRANSIENT, attempts)
            self.log.error("Stopping the batch at row %s: %s", key, exc)
            raise
        ledger.mark_created(key, result)
        entries[key] = LedgerEntry(CREATED, None, attempts)
        progress.created += 1

    def _due(self, entry: LedgerEntry | None) -> bool:
        """Whether a row with this ledger entry is to be sent now."""
        if entry is None:
            return True
        if entry.status == FAILED:
            return entry.error_kind != PERMANENT or bool(self.retry_failed)
        return False  # created, or pending (never re-sent automatically)

    def _check_organizers(
        self, records: list[dict[str, Any]], gong: GongHook, organizers: dict[str, dict[str, Any]]
    ) -> None:
        emails = {
            str(r["organizer_email"]).strip().lower()
            for r in records
            if isinstance(r["organizer_email"], str) and r["organizer_email"].strip()
        }
        new = sorted(emails - set(organizers))
        if not new:
            return
        for user in gong.get_integration_status(new):
            organizers[str(user.get("email", "")).lower()] = user
        for email in new:  # Gong silent about an address: treat it as unknown
            organizers.setdefault(email, {"exists": False, "valid": False})
        self.log.info("Preflight checked %d organizer(s) with Gong", len(new))

    def _column_index(self, names: list[str]) -> dict[str, int | None]:
        lower = {n.lower(): i for i, n in enumerate(names)}
        index: dict[str, int | None] = {}
        for fieldname, column in self.columns.items():
            position = lower.get(column.lower())
            if position is None and fieldname in _REQUIRED:
                raise GongValidationError(
                    f"source has no column {column!r} for {fieldname}; columns are {names}. "
                    "Map it with columns={...}."
                )
            index[fieldname] = position
        return index


def _truthy(value: bool | str) -> bool:
    """Templated flags render as strings unless the DAG renders native objects."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(value)
