"""`make demo`: run the example DAG end to end, offline, and print what it created.

Everything lives under .demo/ (Airflow home with its SQLite metadata DB). The bundled Gong stand-in
runs in this process for the duration of the run; tasks run in-process through ``dag.test()``.
"""

from __future__ import annotations

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
os.environ["AIRFLOW_HOME"] = str(DEMO / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "example_dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")


def main() -> int:
    DEMO.mkdir(exist_ok=True)
    from airflow_provider_gong.testing import GongStandIn

    with GongStandIn() as standin:
        os.environ["AIRFLOW_CONN_GONG_DEFAULT"] = standin.connection_json()
        print(f"Gong stand-in running at {standin.url}")
        from airflow.dag_processing.dagbag import DagBag
        from airflow.utils.db import initdb

        initdb()
        dag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).dags["gong_create_meeting"]
        dag_run = dag.test()
        print(f"\nDAG run {dag_run.dag_id} finished: {dag_run.state}")
        for created in standin.created:
            print(f"Created Gong meeting {created.meeting_id} for {created.payload['organizerEmail']} "
                  f"at {created.payload['startTime']}")
        return 0 if dag_run.state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
