"""One quota across Airflow tasks: the mapped example DAG (a task, and a new hook, per meeting) and two
batch runs at once stay within Gong's rate against a stand-in that refuses any call beyond it in a
sliding second (before the shared quota, each hook paced only itself and every first call was free)."""

from __future__ import annotations

import json

import pytest

from airflow_provider_gong._compat import DagBag
from airflow_provider_gong.testing import GongStandIn
from tests._support.warehouse import demo_rows
from tests.conftest import EXAMPLE_DAGS
from tests.integration.helpers import finish, seed, start_runners

pytestmark = pytest.mark.integration


@pytest.fixture
def strict_gong(monkeypatch, tmp_path):
    def make(rate: float) -> GongStandIn:
        standin = GongStandIn(rate_limit_per_second=rate, strict_window=True).start()
        monkeypatch.setenv(
            "AIRFLOW_CONN_GONG_DEFAULT",
            standin.connection_json(rate_limit_per_second=rate, quota_dir=str(tmp_path / "quota")),
        )
        started.append(standin)
        return standin

    started: list[GongStandIn] = []
    yield make
    for standin in started:
        standin.stop()


def _answers(standin: GongStandIn) -> list[int]:
    return [entry[2] for entry in standin.log if not entry[1].startswith("/_standin")]


@pytest.mark.timing  # wall-clock rate/volume check: main venv only (pyproject markers)
def test_the_mapped_example_keeps_the_rate_across_its_tasks(strict_gong, tmp_path, monkeypatch, run_dag):
    gong = strict_gong(3.0)
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "m.db")})
    )
    seed({"table": "meetings_to_schedule", "timestamp_type": "TIMESTAMP"}, demo_rows(9, bad=False))
    dag = DagBag(dag_folder=str(EXAMPLE_DAGS)).dags["gong_meetings_mapped"]
    assert run_dag(dag).state == "success"
    assert gong.created_count() == 9 and gong.duplicates() == {}
    assert _answers(gong).count(429) == 0


@pytest.mark.timing  # wall-clock rate/volume check: main venv only (pyproject markers)
def test_two_batches_at_once_share_the_rate(strict_gong, warehouse, tmp_path):
    gong = strict_gong(10.0)
    seed(warehouse, demo_rows(30, bad=False))
    # Two batches over two tables and ledgers (one ledger admits one run at a time), one Gong account.
    other = {**warehouse, "table": f"{warehouse['table']}_b", "ledger": f"{warehouse['ledger']}_b"}
    seed(other, [(100 + i, *row[1:6], f"second-{i}") for i, row in enumerate(demo_rows(15, bad=False), 1)])
    procs, go = start_runners(tmp_path, warehouse, 1)
    more, _ = start_runners(tmp_path, other, 1, go=go)
    go.touch()
    summaries = finish(procs + more)
    assert [s["created"] for s in summaries] == [30, 15] and gong.duplicates() == {}
    assert _answers(gong).count(429) == 0
