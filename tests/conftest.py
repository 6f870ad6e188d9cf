"""Test bootstrap: a throwaway AIRFLOW_HOME with a SQLite metadata DB, set before Airflow is imported.

DAGS_FOLDER is the project's example_dags, so ``dag.test()`` finds the example DAGs in its bundle;
DAGs built inside a test are serialized into the DB first (see ``run_dag``).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE_DAGS = ROOT / "example_dags"
_HOME = tempfile.mkdtemp(prefix="gong-airflow-home-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(EXAMPLE_DAGS)
os.environ.pop("AIRFLOW_CONN_GONG_DEFAULT", None)

import pytest  # noqa: E402

# The stand-in's fixtures (gong_standin, gong_connection): opt-in, as for any user of the provider.
pytest_plugins = ("airflow_provider_gong.testing.pytest_plugin",)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Create the metadata DB once per session (idempotent)."""
    from airflow.utils.db import initdb

    initdb()


@pytest.fixture
def run_dag(airflow_db: None):
    """Run a DAG with ``dag.test()`` and return the DagRun; DAGs built in a test get serialized first."""

    def _run(dag, **kwargs):
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.dag_processing.collection import update_dag_parsing_results_in_db
        from airflow.serialization.serialized_objects import LazyDeserializedDAG
        from airflow.utils.session import create_session

        if dag.fileloc and not str(dag.fileloc).startswith(str(EXAMPLE_DAGS)):
            with create_session() as session:
                DagBundlesManager().sync_bundles_to_db(session=session)
                session.flush()
                update_dag_parsing_results_in_db(
                    "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
                )
        return dag.test(**kwargs)

    return _run


def _rows_of_run(model, dag_run) -> list:
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(model).filter(model.dag_id == dag_run.dag_id, model.run_id == dag_run.run_id).all()
        )
        session.expunge_all()
        return rows


@pytest.fixture
def xcoms():
    """Read back the XComs of a DagRun as {(task_id, map_index, key): value}."""
    from airflow.models.xcom import XComModel

    return lambda dag_run: {
        (r.task_id, r.map_index, r.key): r.value for r in _rows_of_run(XComModel, dag_run)
    }


@pytest.fixture
def task_states():
    """Read back {task_id: (state, try_number)} of a DagRun."""
    from airflow.models.taskinstance import TaskInstance

    return lambda dag_run: {r.task_id: (r.state, r.try_number) for r in _rows_of_run(TaskInstance, dag_run)}


@pytest.fixture
def metrics(monkeypatch):
    """What the provider sends to Airflow's ``Stats``, recorded instead (tests/_support/statsd.py)."""
    from airflow_provider_gong import metrics as module
    from tests._support.statsd import RecordingStats

    recorder = RecordingStats()
    monkeypatch.setattr(module, "_stats", lambda: recorder)
    return recorder
