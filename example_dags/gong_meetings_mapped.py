"""
### Gong meetings from a warehouse table, one mapped task per meeting

Same source table as `gong_meetings_from_warehouse` (columns `id, start_time, end_time, title,
organizer_email, invitees, external_id`), but each meeting is its own mapped
`GongCreateMeetingOperator` task instance (at most 3 at a time), and the results are upserted into
`gong_meeting_results` (`row_key, meeting_id, meeting_url, request_id, status`) at the end. The run
fails, after writing every result, when any meeting failed.

**Choose this one** for small batches (tens to a few hundred rows, `[core] max_map_length` caps it at
1024 by default) when you want every meeting visible in the UI with its own log, retry button and
"Gong meeting" link. **Choose `gong_meetings_from_warehouse`** for anything larger or when exactly-once
matters most: its ledger marks a row *before* calling Gong, so a killed worker can never lead to a
second create; here, a task killed between Gong's answer and the write-back step loses the result.

Connections: `warehouse` (any common-sql connection) and `gong_default`. Optional pool: add
`pool="gong_api"` once it exists (`airflow pools set gong_api 3 "Gong API"`).

It keeps its own results table: do not point it and `gong_meetings_from_warehouse` at the same source
table, or every meeting is created twice (once per results table).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import BaseHook, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowException

from airflow_provider_gong.operators.meetings import GongCreateMeetingOperator
from airflow_provider_gong.sync.sql import quote_identifier

SOURCE_TABLE = "meetings_to_schedule"
RESULTS_TABLE = "gong_meeting_results"
MAX_ROWS = 200


@dag(
    dag_id="gong_meetings_mapped",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["gong", "example", "warehouse"],
)
def gong_meetings_mapped() -> None:
    @task
    def rows_to_create() -> list[dict[str, Any]]:
        """Rows without a created result, as keyword arguments for the create operator.

        The row key in the results table is the meeting's external_id (the row id when empty), so the
        write-back step can find it in the operator's arguments.
        """
        hook = BaseHook.get_hook("warehouse")
        results = quote_identifier(hook, RESULTS_TABLE)
        hook.run(
            f"CREATE TABLE IF NOT EXISTS {results} (row_key VARCHAR(255) PRIMARY KEY, "
            "meeting_id VARCHAR(32), meeting_url VARCHAR(2048), request_id VARCHAR(128), status VARCHAR(16))"
        )
        done = {
            str(k) for (k,) in hook.get_records(f"SELECT row_key FROM {results} WHERE status = 'created'")
        }
        source = quote_identifier(hook, SOURCE_TABLE)
        rows = hook.get_records(
            f"SELECT id, start_time, end_time, title, organizer_email, invitees, external_id FROM {source} "
            f"ORDER BY id LIMIT {MAX_ROWS}"
        )
        return [
            {
                "start_time": str(start),
                "end_time": str(end),
                "title": title,
                "organizer_email": organizer,
                "invitees": invitees,
                "external_id": row_key,
            }
            for key, start, end, title, organizer, invitees, external_id in rows
            if (row_key := str(external_id or key)) not in done
        ]

    batch = rows_to_create()
    created = GongCreateMeetingOperator.partial(
        task_id="create_meeting",
        max_active_tis_per_dagrun=3,
        map_index_template="{{ task.external_id }}",
    ).expand_kwargs(batch)

    @task(trigger_rule="all_done")
    def write_back(batch: list[dict[str, Any]]) -> int:
        """Upsert one result row per mapped task instance (failed ones too), then fail the run if
        any meeting failed: a green run means every row has its meeting."""
        ti = get_current_context()["ti"]
        rows = []
        for index, kwargs in enumerate(batch):
            result = ti.xcom_pull(task_ids="create_meeting", map_indexes=index, key="return_value")
            status = "created" if result else "failed"
            result = result or {}
            row_key = kwargs["external_id"]
            rows.append(
                (
                    row_key,
                    result.get("meeting_id"),
                    result.get("meeting_url"),
                    result.get("request_id"),
                    status,
                )
            )
        if rows:
            BaseHook.get_hook("warehouse").insert_rows(
                RESULTS_TABLE,
                rows,
                target_fields=["row_key", "meeting_id", "meeting_url", "request_id", "status"],
                replace=True,
                replace_index="row_key",
            )
        failed = [r[0] for r in rows if r[-1] == "failed"]
        if failed:
            raise AirflowException(
                f"{len(failed)} of {len(rows)} meeting(s) failed (rows {', '.join(failed[:20])}); "
                f"see the create_meeting task logs and {RESULTS_TABLE}."
            )
        return len(rows)

    created >> write_back(batch)


gong_meetings_mapped()
