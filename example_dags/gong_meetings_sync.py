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

Connections: `warehouse` (any common-sql connection) and `gong_default`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag

from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator


@dag(
    dag_id="gong_meetings_sync",
    schedule="*/30 * * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["gong", "example", "warehouse", "sync"],
    render_template_as_native_obj=True,
    params={
        "table": Param("meetings_to_schedule", type="string"),
        "ledger_table": Param("gong_meeting_ledger", type="string"),
        "sync_mode": Param("mirror", enum=["create", "upsert", "mirror"]),
        "dry_run": Param(False, type="boolean"),
        "max_deletes": Param(0.1, type="number", minimum=0),
        "timezone": Param("UTC", type="string"),
        "fail_on_row_errors": Param(True, type="boolean"),
    },
)
def gong_meetings_sync() -> None:
    # [START howto_transfer_sql_to_gong_sync]
    SqlToGongMeetingsOperator(
        task_id="sync_meetings",
        sql_conn_id="warehouse",
        table="{{ params.table }}",
        ledger_table="{{ params.ledger_table }}",
        sync_mode="{{ params.sync_mode }}",
        dry_run="{{ params.dry_run }}",
        max_deletes="{{ params.max_deletes }}",
        timezone="{{ params.timezone }}",
        fail_on_row_errors="{{ params.fail_on_row_errors }}",
    )
    # [END howto_transfer_sql_to_gong_sync]


gong_meetings_sync()
