"""The provider's metrics as a StatsD server receives them: a real batch run (SqlToGongMeetingsOperator
on a SQLite warehouse against the stand-in) in a process whose Airflow is configured for StatsD
(``AIRFLOW__METRICS__STATSD_*``), read from a UDP listener on loopback (tests/_support/statsd.py).

A subprocess, because Airflow sets up ``Stats`` once per process; there the batch runs after the same
set-up the task runner does before a task (``configure_stats_like_the_task_runner``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from airflow.sdk import BaseHook

from tests._support.statsd import StatsdListener
from tests._support.warehouse import create_meetings_table, demo_rows, insert_meetings
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

RUN = """
import json
from tests._support.statsd import configure_stats_like_the_task_runner

configure_stats_like_the_task_runner()
from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator

op = SqlToGongMeetingsOperator(
    task_id="sync", table="m", ledger_table="led", sql_conn_id="warehouse", fail_on_row_errors=False
)
print("SUMMARY=" + json.dumps(op.execute({})))
"""


def test_a_batch_run_sends_its_calls_429s_quota_waits_and_rows_to_statsd(tmp_path, monkeypatch, gong_standin):
    warehouse = json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "wh.db")})
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", warehouse)
    hook = BaseHook.get_hook("warehouse")
    create_meetings_table(hook, "m")
    insert_meetings(hook, demo_rows(6), "m")  # 6 good rows, an organizer Gong does not know, a bad end
    gong_standin.inject("status", status=429, retry_after=0, match="POST /v2/meetings")  # one 429
    with StatsdListener() as statsd:
        env = {
            **os.environ,
            **statsd.airflow_env(),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "AIRFLOW_CONN_WAREHOUSE": warehouse,
            "AIRFLOW_CONN_GONG_DEFAULT": gong_standin.connection_json(
                rate_limit_per_second=20, max_retry_wait=5, quota_backend="memory"
            ),
        }
        done = subprocess.run(
            [sys.executable, "-c", RUN], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads(done.stdout.split("SUMMARY=", 1)[1])
        assert (summary["created"], summary["failed"], summary["gong_calls"]) == (6, 2, 8)
        assert statsd.wait_for(lambda s: s.counters().get("gong.batch.runs") == 1)

    counters = statsd.counters()
    assert counters == {
        "gong.calls.meetings_create.2xx": 6,
        "gong.calls.meetings_create.4xx": 2,  # the 429, and the organizer Gong does not know (404)
        "gong.rate_limited": 1,
        "gong.batch.runs": 1,
        "gong.batch.rows.created": 6,
        "gong.batch.rows.updated": 0,
        "gong.batch.rows.deleted": 0,
        "gong.batch.rows.failed": 2,
        "gong.batch.rows.outcome_unknown": 0,
        "gong.batch.rows.unchanged": 0,
        "gong.batch.rows.skipped": 0,
    }
    waits = statsd.timings()["gong.quota.wait"]
    assert len(waits) == 8 and all(w >= 0 for w in waits)  # one per call; paced at 20/s, most wait
    assert any(w > 0 for w in waits)
