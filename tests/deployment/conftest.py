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

from tests._support.deployment import LocalDeployment, postgres_unreachable
from tests.conftest import EXAMPLE_DAGS
from tests.deployment.helpers import CREATE_DAG, DAG_FILES, WAREHOUSE_DAG, Runs

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
