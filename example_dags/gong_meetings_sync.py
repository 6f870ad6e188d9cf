"""
### Keep Gong in step with a warehouse table (mirror mode)

Reads the same table as `gong_meetings_from_warehouse` (columns `id, start_time, end_time, title,
organizer_email, invitees, external_id`, plus an optional `cancelled` column) and keeps Gong in sync:

| row | what happens in Gong |
|---|---|
| new | created (POST) |
| changed since Gong last accepted it (times, title, invitees...) | updated (PUT) |
| organizer changed | deleted under the old organizer, created under the new one |
| `cancelled` true / 1 / yes / 'cancelled' | deleted (DELETE); never created if it was not yet |
| gone from the table | deleted (mirror mode only) |
| unchanged, or the meeting is already over | nothing |

**Guard**: a run that would delete more than `max_deletes` meetings (a count, or a fraction of the
live ones; default 0.1) fails before any call, and an empty table never deletes anything. Look at the
plan with `dry_run` (nothing is sent or written), then raise `max_deletes` for that one run if the
deletes are right.

**Ledger**: `gong_meeting_ledger` (status `created`, `deleted`, `failed`, `pending`), shared with
`gong_meetings_from_warehouse`: both may run on the same table and ledger; claims keep every row
exactly once.

Connections (DAG params): `warehouse` (any common-sql connection) and `gong_default`.
Not scheduled: every run is one you trigger (add a schedule once a dry run shows the right plan).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag

from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator


@dag(
    dag_id="gong_meetings_sync",
    # Not scheduled: unpausing it starts nothing (a mirror run deletes meetings, so no run should start
    # that nobody asked for). To keep Gong in step, set e.g. schedule="*/30 * * * *" once a dry run
    # showed the right plan.
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["gong", "example", "warehouse", "sync"],
    render_template_as_native_obj=True,
    params={
        "table": Param(
            "meetings_to_schedule", type="string", description="The source table, one meeting a row."
        ),
        "warehouse_conn_id": Param(
            "warehouse", type="string", description="The warehouse connection (any common-sql connection)."
        ),
        "gong_conn_id": Param("gong_default", type="string", description="The Gong connection (type gong)."),
        "ledger_table": Param(
            "gong_meeting_ledger",
            type="string",
            description="Where each row's outcome is kept, in the same warehouse (created if absent).",
        ),
        "sync_mode": Param(
            "mirror",
            enum=["create", "upsert", "mirror"],
            description="create: new rows only; upsert: also update changed rows; mirror: also delete "
            "meetings whose row is gone or cancelled.",
        ),
        "dry_run": Param(
            False, type="boolean", description="Only log the plan (creates, updates, deletes); send nothing."
        ),
        "max_deletes": Param(
            0.1,
            type="number",
            minimum=0,
            description="Fail before any call when a run would delete more meetings than this (a count, "
            "or a fraction of the live ones).",
        ),
        "retry_failed": Param(
            False,
            type="boolean",
            description="Also resend rows that failed for good before (bad data, Gong refused) once fixed.",
        ),
        "timezone": Param("UTC", type="string", description="The time zone of naive start/end times."),
        "fail_on_row_errors": Param(
            True,
            type="boolean",
            description="Fail the run while any row is failed or pending in the ledger.",
        ),
    },
)
def gong_meetings_sync() -> None:
    # [START howto_transfer_sql_to_gong_sync]
    SqlToGongMeetingsOperator(
        task_id="sync_meetings",
        sql_conn_id="{{ params.warehouse_conn_id }}",
        gong_conn_id="{{ params.gong_conn_id }}",
        table="{{ params.table }}",
        ledger_table="{{ params.ledger_table }}",
        sync_mode="{{ params.sync_mode }}",
        dry_run="{{ params.dry_run }}",
        max_deletes="{{ params.max_deletes }}",
        retry_failed="{{ params.retry_failed }}",
        timezone="{{ params.timezone }}",
        fail_on_row_errors="{{ params.fail_on_row_errors }}",
    )
    # [END howto_transfer_sql_to_gong_sync]


gong_meetings_sync()
