"""
### Gong meetings from a warehouse table, one mapped task per meeting

Same source table as `gong_meetings_from_warehouse` (columns `id, start_time, end_time, title,
organizer_email, invitees, external_id`), but each meeting is its own mapped
`GongCreateMeetingOperator` task instance (at most 3 at a time), and the results are upserted into
`gong_meeting_results` (`row_key, meeting_id, meeting_url, request_id, status`) at the end. The run
fails, after writing every result, unless every meeting was created.

Statuses: `created`; `failed` (nothing was created: bad input or Gong refused; sent again next run);
`unknown` (the request may have reached Gong and its answer was lost: never sent again automatically;
check Gong, then set the row to `created` or delete it). Each run takes at most `max_rows` rows (param,
default 200) and logs how many more wait for the next run.

**Choose this one** for small batches (tens to a few hundred rows, `[core] max_map_length` caps it at
1024 by default) when you want every meeting visible in the UI with its own log, retry button and
"Gong meeting" link. **Choose `gong_meetings_from_warehouse`** for anything larger or when exactly-once
matters most: its ledger marks a row *before* calling Gong, so a killed worker can never lead to a
second create; here, a task killed between Gong's answer and the write-back step loses the result.

Connections (DAG params): `warehouse` (any common-sql connection) and `gong_default`. Optional pool: add
`pool="gong_api"` once it exists (`airflow pools set gong_api 3 "Gong API"`).

It keeps its own results table: do not point it and `gong_meetings_from_warehouse` at the same source
table, or every meeting is created twice (once per results table).
"""

from __future__ import annotations

import logging
from typing import Any

import pendulum
from airflow.sdk import BaseHook, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowException

from airflow_provider_gong.operators.meetings import (
    OUTCOME_KEY,
    SENDING,
    UNKNOWN,
    GongCreateMeetingOperator,
)

SOURCE_TABLE = "meetings_to_schedule"
RESULTS_TABLE = "gong_meeting_results"
MAX_ROWS = 200  # per run; the rest wait for the next run (and the log says how many)
log = logging.getLogger(__name__)


@dag(
    dag_id="gong_meetings_mapped",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        "warehouse_conn_id": Param(
            "warehouse", type="string", description="The warehouse connection (any common-sql connection)."
        ),
        "gong_conn_id": Param("gong_default", type="string", description="The Gong connection (type gong)."),
        "max_rows": Param(
            MAX_ROWS,
            type="integer",
            minimum=1,
            maximum=1000,
            description="At most this many rows per run (one mapped task each); the rest wait for the "
            "next run.",
        ),
    },
    doc_md=__doc__,
    tags=["gong", "example", "warehouse"],
)
def gong_meetings_mapped() -> None:
    @task
    def rows_to_create(params: dict[str, Any]) -> list[dict[str, Any]]:
        """The first ``max_rows`` rows with no result yet, as keyword arguments for the create operator.

        Rows already ``created``, and rows whose outcome is ``unknown`` (Gong may have created them), are
        never offered again; rows that ``failed`` (provably nothing created) are. The row key in the
        results table is the meeting's external_id (the row id when empty).
        """
        hook = BaseHook.get_hook(params["warehouse_conn_id"])
        # common-sql's dialect quotes a name only when the database needs it (a reserved word, odd
        # characters), in that database's own way.
        results = hook.dialect.escape_word(RESULTS_TABLE)
        source = hook.dialect.escape_word(SOURCE_TABLE)
        hook.run(
            f"CREATE TABLE IF NOT EXISTS {results} (row_key VARCHAR(255) PRIMARY KEY, "
            "meeting_id VARCHAR(32), meeting_url TEXT, request_id TEXT, status VARCHAR(16))"
        )
        row_key = "COALESCE(NULLIF(TRIM(s.external_id), ''), CAST(s.id AS VARCHAR(255)))"
        waiting = (
            f"FROM {source} s WHERE NOT EXISTS (SELECT 1 FROM {results} r "
            f"WHERE r.row_key = {row_key} AND r.status IN ('created', 'unknown'))"
        )
        limit = int(params["max_rows"])
        rows = hook.get_records(
            f"SELECT {row_key}, s.start_time, s.end_time, s.title, s.organizer_email, s.invitees "
            f"{waiting} ORDER BY s.id LIMIT {limit}"
        )
        (total,) = hook.get_first(f"SELECT COUNT(*) {waiting}")
        (unknown,) = hook.get_first(f"SELECT COUNT(*) FROM {results} WHERE status = 'unknown'")
        log.info("%d row(s) without a meeting; this run takes %d (max_rows=%d).", total, len(rows), limit)
        if total > len(rows):
            log.warning(
                "%d more row(s) wait for the next run (max_rows=%d per run): trigger again or raise it.",
                total - len(rows),
                limit,
            )
        if unknown:
            log.warning(
                "%d row(s) in %s have status 'unknown': Gong may have created them, so they are not sent "
                "again. Check Gong, then set each to 'created' (with its meeting_id) or delete it to resend.",
                unknown,
                RESULTS_TABLE,
            )
        return [
            {
                "start_time": str(start),
                "end_time": str(end),
                "title": title,
                "organizer_email": organizer,
                "invitees": invitees,
                "external_id": str(key),
            }
            for key, start, end, title, organizer, invitees in rows
        ]

    batch = rows_to_create()
    # [START howto_operator_gong_create_meeting_mapped]
    created = GongCreateMeetingOperator.partial(
        task_id="create_meeting",
        gong_conn_id="{{ params.gong_conn_id }}",
        max_active_tis_per_dagrun=3,
        map_index_template="{{ task.external_id }}",
    ).expand_kwargs(batch)
    # [END howto_operator_gong_create_meeting_mapped]

    @task(trigger_rule="all_done")
    def write_back(batch: list[dict[str, Any]]) -> int:
        """Upsert one result row per mapped task instance, then fail the run unless every meeting was
        created: a green run means every row has its meeting.

        The status comes from the operator's ``gong_outcome`` XCom: ``created`` with the meeting; ``failed``
        only when nothing can have been created (bad input, Gong refused, or the task never got as far as
        sending); ``unknown`` when the request may have reached Gong (answer lost, worker killed mid-call),
        which is never sent again automatically.
        """
        context = get_current_context()
        ti = context["ti"]
        rows = []
        for index, kwargs in enumerate(batch):
            result = ti.xcom_pull(task_ids="create_meeting", map_indexes=index, key="return_value")
            outcome = ti.xcom_pull(task_ids="create_meeting", map_indexes=index, key=OUTCOME_KEY)
            if result:
                status = "created"
            elif outcome in (SENDING, UNKNOWN):
                status = "unknown"
            else:
                status = "failed"
            result = result or {}
            rows.append(
                (
                    kwargs["external_id"],
                    result.get("meeting_id"),
                    result.get("meeting_url"),
                    result.get("request_id"),
                    status,
                )
            )
        if rows:
            BaseHook.get_hook(context["params"]["warehouse_conn_id"]).insert_rows(
                RESULTS_TABLE,
                rows,
                target_fields=["row_key", "meeting_id", "meeting_url", "request_id", "status"],
                replace=True,
                replace_index="row_key",
            )
        failed = [r[0] for r in rows if r[-1] == "failed"]
        unknown = [r[0] for r in rows if r[-1] == "unknown"]
        if failed or unknown:
            raise AirflowException(
                f"{len(failed)} of {len(rows)} meeting(s) failed (rows {', '.join(failed[:20]) or '-'}) and "
                f"{len(unknown)} have an unknown outcome (rows {', '.join(unknown[:20]) or '-'}: check Gong "
                f"before resending); see the create_meeting task logs and {RESULTS_TABLE}."
            )
        return len(rows)

    created >> write_back(batch)


gong_meetings_mapped()
