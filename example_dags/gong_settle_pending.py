"""
### Settle a batch row whose outcome is unknown (maintenance)

When Gong's answer to a create is lost, or a run dies mid-call, the batch leaves the row `pending` in its
ledger and never sends it again: Gong may have made the meeting. Look the meeting up in Gong by its
`externalId` (the source's `external_id`, or the row key when that is empty), then trigger this DAG:

| you found | `row_key` | `outcome` | `meeting_id` |
|---|---|---|---|
| the meeting | the row's key | `created` | its ID in Gong (digits); `meeting_url` optional |
| no meeting | the row's key | `failed` | empty: the next batch run sends the row again |

**With the defaults** (no `row_key`) it only lists the rows waiting to be settled, in the task log and
its XCom, and changes nothing (a ledger that does not exist yet has nothing to settle).

It settles as the batch's own runs claim rows: it takes the ledger's lease (waiting up to 150 s for a
run at work), checks the row and writes it only if no run or other settlement changed it meanwhile. The
task fails with the reason when the row is not pending, its call may still be in flight (it says from
when it can be settled), or it is a pending update or delete (the next run sends those again).

The same from a shell: `python -m airflow_provider_gong.sync.settle list --conn-id warehouse`.
"""

from __future__ import annotations

import logging
from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from airflow_provider_gong.sync.settle import DEFAULT_LEDGER_TABLE, OUTCOMES

log = logging.getLogger(__name__)


@dag(
    dag_id="gong_settle_pending",
    schedule=None,  # run by a person, with the row in hand
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["gong", "example", "warehouse", "maintenance"],
    params={
        "warehouse_conn_id": Param(
            "warehouse", type="string", description="The batch's warehouse connection (holds its ledger)."
        ),
        "ledger_table": Param(
            DEFAULT_LEDGER_TABLE, type="string", description="The batch's ledger table (its ledger_table)."
        ),
        "row_key": Param(
            None,
            type=["null", "string"],
            description="The row to settle. Empty: only list the rows waiting to be settled.",
        ),
        "outcome": Param(
            "created",
            enum=list(OUTCOMES),
            description="created: the meeting exists in Gong (give its ID); failed: it does not, and the "
            "next batch run sends the row again.",
        ),
        "meeting_id": Param(
            None, type=["null", "string"], description="With created: the meeting's ID in Gong (digits)."
        ),
        "meeting_url": Param(
            None, type=["null", "string"], description="With created, optional: the meeting's URL in Gong."
        ),
    },
)
def gong_settle_pending() -> None:
    # [START howto_settle_pending]
    @task
    def settle_pending(params: dict[str, Any]) -> dict[str, Any]:
        from airflow_provider_gong.sync.settle import list_pending, report, settle_row

        conn_id, ledger = params["warehouse_conn_id"], params["ledger_table"]
        row_key = (params["row_key"] or "").strip()
        if not row_key:  # list only
            rows = list_pending(conn_id, ledger, everything=True)
            log.info("%s", report(rows, ledger))
            return {"ledger_table": ledger, "pending": [row.to_dict() for row in rows]}
        done = settle_row(
            conn_id,
            row_key,
            params["outcome"],
            ledger_table=ledger,
            meeting_id=params["meeting_id"],
            meeting_url=params["meeting_url"],
            context=get_current_context(),  # the row's claim token names this task
        )
        return done.to_dict()

    settle_pending()
    # [END howto_settle_pending]


gong_settle_pending()
