"""`make demo`: the daily warehouse batch, end to end and offline, then the ledger it wrote.

Everything lives under .demo/: the Airflow home (SQLite metadata DB) and warehouse.db, an SQLite
"warehouse" seeded once with a dozen meetings and two bad rows. The bundled Gong stand-in runs in this
process for the duration of the run; tasks run in-process through ``dag.test()``. Run it twice: the
second run creates nothing, because the ledger says every good row is done.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/_support: the demo table is a development aid, not in the wheel
DEMO = ROOT / ".demo"
WAREHOUSE = DEMO / "warehouse.db"
os.environ["AIRFLOW_HOME"] = str(DEMO / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "example_dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW_CONN_WAREHOUSE"] = json.dumps({"conn_type": "sqlite", "host": str(WAREHOUSE)})
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
os.environ.setdefault("AIRFLOW__LOGGING__NAMESPACE_LEVELS", "airflow.task.operators=INFO")


def seed() -> None:
    from airflow.sdk import BaseHook

    from tests._support.warehouse import create_meetings_table, demo_rows, insert_meetings

    hook = BaseHook.get_hook("warehouse")
    if hook.get_first("SELECT name FROM sqlite_master WHERE name = 'meetings_to_schedule'"):
        print(f"Warehouse {WAREHOUSE} already seeded (delete .demo/ to start over)")
        return
    create_meetings_table(hook)
    insert_meetings(hook, demo_rows(12))
    print(f"Seeded {WAREHOUSE}: table meetings_to_schedule with 12 good rows and 2 bad ones")


def print_ledger() -> None:
    from airflow.sdk import BaseHook

    rows = BaseHook.get_hook("warehouse").get_records(
        "SELECT row_key, status, meeting_id, meeting_url, error FROM gong_meeting_ledger "
        "ORDER BY CAST(row_key AS INTEGER)"
    )
    print(f"\n{'row':>4}  {'status':8}  {'meeting id':20}  url or error")
    for key, status, meeting_id, url, error in rows:
        detail = url if status == "created" else (error or "")[:110]
        print(f"{key:>4}  {status:8}  {meeting_id or '-':20}  {detail}")


def main() -> int:
    DEMO.mkdir(exist_ok=True)
    from airflow_provider_gong.testing import GongStandIn

    with GongStandIn() as standin:
        os.environ["AIRFLOW_CONN_GONG_DEFAULT"] = standin.connection_json()
        print(f"Gong stand-in running at {standin.url}")
        from airflow.utils.db import initdb

        from airflow_provider_gong._compat import DagBag  # its module moved in Airflow 3.2

        initdb()
        seed()
        dag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).dags["gong_meetings_from_warehouse"]
        # The two bad rows are expected here: record them in the ledger without failing the run.
        dag_run = dag.test(run_conf={"fail_on_row_errors": False})
        print(f"\nDAG run {dag_run.dag_id}: {dag_run.state}")
        print(
            f"This run created {standin.created_count()} new Gong meeting(s) "
            f"({len(standin.duplicates())} duplicates)."
        )
    print_ledger()
    return 0 if dag_run.state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
