"""
### The batch example's task, for the Celery deployment test (`tests/deployment/test_celery.py`)

The task of `example_dags/gong_meetings_from_warehouse.py` (the same operator, preflight on), with
what the test needs and the example should not have: runs that overlap (the example keeps one run at a
time), one Airflow retry (the scheduler retries a task whose worker died), a 4 s ledger lease (the
retry takes the dead runner's lease over at once instead of after the default 120 s) and claim windows
of 3 rows (a runner killed outright leaves at most three windows pending).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator


@dag(
    dag_id="gong_celery_batch",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=1)},
    doc_md=__doc__,
    tags=["gong", "test"],
    render_template_as_native_obj=True,
    params={
        "table": Param("meetings_to_schedule", type="string", description="The source table."),
        "ledger_table": Param("gong_meeting_ledger", type="string", description="The ledger table."),
        "fail_on_row_errors": Param(True, type="boolean", description="Fail while rows are failed/pending."),
    },
)
def gong_celery_batch() -> None:
    SqlToGongMeetingsOperator(
        task_id="create_meetings",
        sql_conn_id="warehouse",
        table="{{ params.table }}",
        ledger_table="{{ params.ledger_table }}",
        fail_on_row_errors="{{ params.fail_on_row_errors }}",
        preflight=True,
        lease_seconds=4,
        claim_window=3,
    )


gong_celery_batch()
