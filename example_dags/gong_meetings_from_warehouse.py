"""
### Gong meetings from a warehouse table (the daily batch)

Reads every row of a warehouse table, creates a Gong consent-meeting link for each at Gong's rate
limit, and writes each row's outcome to a results ledger in the same warehouse, exactly once per row.

**Source table** (default `meetings_to_schedule`; columns can be remapped with `columns=`):

| column | meaning |
|---|---|
| `id` | unique, orderable row key (the ledger key) |
| `start_time`, `end_time` | timestamps or ISO-8601 strings; naive values are read in `timezone` |
| `title` | optional |
| `organizer_email` | a Gong user |
| `invitees` | JSON array of emails or invitee objects, or `a@x.com, b@y.com` |
| `external_id` | optional; the row key is sent when empty |

**Ledger** (default `gong_meeting_ledger`, created if absent): `row_key, status, meeting_id,
meeting_url, request_id, additional_invitees, error, error_kind, attempts, updated_at, claimed_by`.
`status` is `created`, `failed`, or `pending` (the create may have reached Gong; reconcile by hand).
A row is sent only by the run that won its claim in the ledger, so overlapping runs, a slow attempt
beside its retry, and reruns never create a meeting twice.

**Connections** (DAG params): `warehouse` (any common-sql connection: SQLite by default, PostgreSQL,
MySQL, Snowflake...) and `gong_default`. **Pool** (optional): create `gong_api`
(`airflow pools set gong_api 1 "Gong API"`) and add `pool="gong_api"` to cap concurrent Gong tasks
across workers; the hook paces each task at the connection's rate.

**Run state**: with `fail_on_row_errors` (default true) the run fails while any row of the table is
`failed` or awaits reconciliation in the ledger — also rows an earlier run failed — so a green run
means every row has its meeting.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag

from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator


@dag(
    dag_id="gong_meetings_from_warehouse",
    # Not scheduled: unpausing it starts nothing; every run is one you trigger. For the daily batch,
    # set e.g. schedule="0 6 * * *" (catchup=False then runs only the latest day).
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["gong", "example", "warehouse"],
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
        "timezone": Param("UTC", type="string", description="The time zone of naive start/end times."),
        "dry_run": Param(
            False, type="boolean", description="Only log what would be sent; call nothing, write nothing."
        ),
        "retry_failed": Param(
            False,
            type="boolean",
            description="Also resend rows that failed for good before (bad data, Gong refused) once fixed.",
        ),
        "fail_on_row_errors": Param(
            True,
            type="boolean",
            description="Fail the run while any row is failed or pending in the ledger (a green run means "
            "every row has its meeting).",
        ),
    },
)
def gong_meetings_from_warehouse() -> None:
    # [START howto_transfer_sql_to_gong]
    SqlToGongMeetingsOperator(
        task_id="create_meetings",
        sql_conn_id="{{ params.warehouse_conn_id }}",
        table="{{ params.table }}",
        gong_conn_id="{{ params.gong_conn_id }}",
        ledger_table="{{ params.ledger_table }}",
        timezone="{{ params.timezone }}",
        dry_run="{{ params.dry_run }}",
        retry_failed="{{ params.retry_failed }}",
        fail_on_row_errors="{{ params.fail_on_row_errors }}",
        preflight=True,
        # Optional: pool="gong_api" once the pool exists (a task in a missing pool never starts).
    )
    # [END howto_transfer_sql_to_gong]


gong_meetings_from_warehouse()
