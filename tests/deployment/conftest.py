"""One real Airflow deployment for the whole module (starting one costs ~25 s; every test shares it).

Skipped, with the reason, when PostgreSQL is not reachable (the metadata database must be a real
server database, as in production) or when the venv has no ``airflow`` executable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._support.celery import celery_unavailable
from tests._support.deployment import LocalDeployment, postgres_unreachable
from tests._support.statsd import StatsdListener
from tests.conftest import EXAMPLE_DAGS
from tests.deployment.helpers import (
    CELERY_DAG_FILES,
    CELERY_DAGS,
    CREATE_DAG,
    DAG_FILES,
    MAPPED_ROWS,
    WAREHOUSE_DAG,
    CallRecorder,
    Runs,
)

#: What the fixtures measured, printed at the end of the session (the deployment test's cost).
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    """api-server + scheduler + dag-processor (LocalExecutor) on a fresh PostgreSQL database."""
    reason = postgres_unreachable()
    if reason:
        pytest.skip(f"the deployment test needs a PostgreSQL server for the metadata database: {reason}")
    if not (Path(sys.executable).parent / "airflow").exists():
        pytest.skip(f"no airflow executable next to {sys.executable}")
    begin = time.monotonic()
    deployment = LocalDeployment(
        tmp_path_factory.mktemp("deployment"),
        dags_folder=EXAMPLE_DAGS,
        dag_files=DAG_FILES,
        metadata="postgres",
        schedule_dags=False,  # only the runs the tests trigger
        # Like some gateways, the stand-in copies the Authorization header into its error bodies: a
        # refused call then carries the credentials back to the hook, which must not pass them on.
        standin_options={"echo_authorization": True},
    )
    with deployment:
        deployment.wait_for_dags([CREATE_DAG, WAREHOUSE_DAG])
        TIMINGS.update(deployment.timings)
        TIMINGS["up, DAGs parsed"] = time.monotonic() - begin
        yield deployment
    TIMINGS["stop"] = deployment.timings.get("stop", 0.0)
    TIMINGS["whole module"] = time.monotonic() - begin


@pytest.fixture(scope="module")
def statsd() -> Iterator[StatsdListener]:
    """A StatsD server on loopback: what the deployment's tasks send through Airflow's ``Stats``."""
    with StatsdListener() as listener:
        yield listener


@pytest.fixture(scope="module")
def celery_deployment(
    tmp_path_factory: pytest.TempPathFactory, statsd: StatsdListener
) -> Iterator[LocalDeployment]:
    """The same deployment on CeleryExecutor: Redis broker, two workers (2 slots each) with their own
    hostnames and directories, warehouse, quota and OAuth store on PostgreSQL; the stand-in at 3/s."""
    reason = postgres_unreachable() or celery_unavailable()
    if reason:
        pytest.skip(f"the Celery deployment test needs PostgreSQL, Redis and the Celery provider: {reason}")
    if not (Path(sys.executable).parent / "airflow").exists():
        pytest.skip(f"no airflow executable next to {sys.executable}")
    begin = time.monotonic()
    deployment = LocalDeployment(
        tmp_path_factory.mktemp("celery"),
        dags_folder=EXAMPLE_DAGS,
        dag_files=CELERY_DAG_FILES,
        metadata="postgres",
        executor="celery",
        workers=2,
        worker_concurrency=2,
        schedule_dags=False,
        standin_rate=3.0,  # Gong's: a call beyond it answers 429
        warehouse_rows=MAPPED_ROWS,  # meetings_to_schedule, the mapped example's table
        warehouse_bad_rows=False,
        # Airflow's own Stats on every component and worker send StatsD to the loopback listener.
        config={
            "metrics": {
                "statsd_on": "True",
                "statsd_host": statsd.host,
                "statsd_port": statsd.port,
                "statsd_prefix": "airflow",
            }
        },
    )
    with deployment:
        deployment.wait_for_dags(CELERY_DAGS)
        TIMINGS.update({f"celery {k}": v for k, v in deployment.timings.items()})
        yield deployment
    TIMINGS["celery stop"] = deployment.timings.get("stop", 0.0)
    TIMINGS["celery module"] = time.monotonic() - begin


@pytest.fixture(scope="module")
def standin_calls(celery_deployment: LocalDeployment) -> CallRecorder:
    """Every call the Celery deployment's stand-in answers from now on, timed."""
    assert celery_deployment.standin is not None
    return CallRecorder.attach(celery_deployment.standin)


@pytest.fixture(scope="module")
def runs(deployment: LocalDeployment) -> Runs:
    """The three DAG runs, triggered through the REST API together and waited for."""
    begin = time.monotonic()
    result = Runs.trigger_all(deployment)
    TIMINGS["three DAG runs"] = time.monotonic() - begin
    return result


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        text = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in TIMINGS.items())
        terminalreporter.write_line(f"deployment test: {text}")
