"""The provider on CeleryExecutor: two workers share Gong's 3 calls/s, and a worker lost mid-batch
costs no duplicate (issue 22, part 3).

The deployment (``celery_deployment`` in conftest.py): Redis broker, two workers of two slots each,
with their own hostnames and directories; metadata, Celery results, the warehouse and the Gong
connections' quota store on PostgreSQL, nothing shared through a file. The stand-in answers 429 beyond
3 calls/s, like Gong. Airflow's ``Stats`` on the workers send StatsD to a listener on loopback, where
the provider's metrics (docs/guides/metrics.md) are read back.

Main venv only (marker ``celery``, excluded by ``MATRIX_PYTEST_ARGS``); the rate check also carries
``timing`` (it reads the wall clock).
"""

from __future__ import annotations

import time

import pytest

from tests._support.celery import worker_name
from tests._support.deployment import LocalDeployment
from tests._support.statsd import StatsdListener
from tests._support.warehouse import create_meetings_table, demo_rows, insert_meetings
from tests.deployment.helpers import CELERY_BATCH_DAG, MAPPED_DAG, MAPPED_ROWS, CallRecorder

pytestmark = [pytest.mark.deployment, pytest.mark.celery]

RATE = 3.0
#: Rows of each of the two overlapping batch runs, and of the run whose worker is killed.
BATCH_ROWS = 18
KILL_ROWS = 36
WORKERS = {worker_name(1), worker_name(2)}


def seed(deployment: LocalDeployment, table: str, rows: int) -> list[str]:
    """A source table of ``rows`` good meetings whose externalIds start with the table's name."""
    hook = deployment.warehouse()
    create_meetings_table(hook, table, timestamp_type="TIMESTAMPTZ")
    insert_meetings(hook, [(*r[:6], f"{table}-{r[0]}") for r in demo_rows(rows, bad=False)], table)
    return [f"{table}-{i}" for i in range(1, rows + 1)]


def ledger(deployment: LocalDeployment, table: str) -> dict[str, tuple[str, str]]:
    """row key -> (status, claimed_by)."""
    rows = deployment.warehouse().get_records(f"SELECT row_key, status, claimed_by FROM {table}")
    return {key: (status, claimed_by or "") for key, status, claimed_by in rows}


def hostnames(deployment: LocalDeployment, dag_id: str, run_id: str) -> dict[str, str]:
    """task (with map index) -> the hostname of the worker that ran its latest try (REST API)."""
    return {
        f"{ti['task_id']}[{ti['map_index']}]": ti["hostname"]
        for ti in deployment.task_instances(dag_id, run_id)
    }


@pytest.mark.timing
def test_mapped_and_overlapping_batches_share_the_rate_across_both_workers(
    celery_deployment: LocalDeployment, standin_calls: CallRecorder, statsd: StatsdListener
):
    deployment = celery_deployment
    standin = deployment.standin
    assert standin is not None
    expected = {f"crm-evt-{1000 + i}" for i in range(1, MAPPED_ROWS + 1)}
    for table in ("celery_a", "celery_b"):
        expected.update(seed(deployment, table, BATCH_ROWS))
    runs = [
        (CELERY_BATCH_DAG, deployment.trigger(CELERY_BATCH_DAG, {"table": t, "ledger_table": f"{t}_ledger"}))
        for t in ("celery_a", "celery_b")
    ]
    runs.append((MAPPED_DAG, deployment.trigger(MAPPED_DAG)))
    for dag_id, run_id in runs:
        state = deployment.wait_for_run(dag_id, run_id, timeout=240)
        assert state == "success", deployment.diagnostics(dag_id, run_id)

    # Spread over both workers: each ran task instances (the TI's hostname, as the REST API gives it).
    ran_on = {name: hostnames(deployment, *run) for name, run in zip(("a", "b", "mapped"), runs, strict=True)}
    assert {h for tis in ran_on.values() for h in tis.values()} == WORKERS, ran_on

    # Exactly once: every row has one meeting at the stand-in, every ledger says created.
    assert standin.duplicates() == {}
    assert {c.payload["externalId"] for c in standin.created} == expected
    for table in ("celery_a", "celery_b"):
        statuses = {status for status, _ in ledger(deployment, f"{table}_ledger").values()}
        assert statuses == {"created"}, (table, statuses)

    # Gong's rate, shared through PostgreSQL by tasks on two workers: never over it (no 429) ...
    calls = standin_calls.snapshot()
    assert [c for c in calls if c.status == 429] == []
    # ... and close to it while the two batches have rows to send: from the first batch create to the
    # last, every call the stand-in answered (the mapped run's and the preflights' included).
    spans = [
        [c.at for c in calls if (c.external_id or "").startswith(f"{t}-")] for t in ("celery_a", "celery_b")
    ]
    assert max(min(span) for span in spans) < min(max(span) for span in spans), "the batches did not overlap"
    batch = spans[0] + spans[1]
    first, last = min(batch), max(batch)
    busy = [c for c in calls if first <= c.at <= last]
    rate = (len(busy) - 1) / (last - first) / RATE
    everything = (len(calls) - 1) / (calls[-1].at - calls[0].at) / RATE
    print(
        f"busy window: {len(busy)} calls in {last - first:.1f} s = {rate:.3f} of {RATE}/s; all calls "
        f"{everything:.3f}; hostnames {ran_on}"
    )
    assert rate >= 0.9, (len(busy), last - first)

    # Metrics: what the tasks on both workers sent through Airflow's Stats to the StatsD listener.
    creates = sum(1 for c in calls if (c.method, c.path) == ("POST", "/v2/meetings") and c.status < 300)
    batch_rows = 2 * BATCH_ROWS

    def arrived(listener: StatsdListener) -> bool:
        counted = listener.counters()
        return (
            counted.get("gong.calls.meetings_create.2xx") == creates
            and counted.get("gong.batch.rows.created") == batch_rows
        )

    statsd.wait_for(arrived, timeout=20)
    counted = statsd.counters()
    assert counted.get("gong.calls.meetings_create.2xx") == creates, counted
    assert counted.get("gong.batch.rows.created") == batch_rows, counted  # the two batch runs' rows
    assert counted.get("gong.batch.runs") == 2, counted
    assert counted.get("gong.rate_limited", 0) == 0 and counted.get("gong.batch.rows.failed") == 0, counted
    waits = statsd.timings().get("gong.quota.wait", [])
    assert len(waits) >= creates and max(waits) > 0, waits  # every call asked the shared quota; some waited


def test_worker_killed_mid_batch_no_duplicate_and_the_other_worker_finishes(
    celery_deployment: LocalDeployment, standin_calls: CallRecorder
):
    deployment = celery_deployment
    standin = deployment.standin
    assert standin is not None
    keys = seed(deployment, "celery_k", KILL_ROWS)
    conf = {"table": "celery_k", "ledger_table": "celery_k_ledger", "fail_on_row_errors": False}
    run_id = deployment.trigger(CELERY_BATCH_DAG, conf)

    def sent() -> int:
        return sum(1 for c in standin.created if c.payload["externalId"].startswith("celery_k-"))

    # Mid-batch: some meetings made, most to go; then the worker running the task dies at once.
    deadline = time.monotonic() + 120
    while sent() < 8:
        assert time.monotonic() < deadline, deployment.diagnostics(CELERY_BATCH_DAG, run_id)
        time.sleep(0.05)
    (ti,) = deployment.task_instances(CELERY_BATCH_DAG, run_id)
    victim = ti["hostname"]
    assert ti["state"] == "running" and victim in WORKERS, ti
    killed = deployment.kill_component(f"worker-{victim.rsplit('-', 1)[1]}")
    sent_at_kill = sent()
    assert sent_at_kill < KILL_ROWS, "the kill must land mid-batch"
    assert any("celery worker" in command for command in killed), killed
    survivor = (WORKERS - {victim}).pop()

    # The scheduler finds the task's heartbeat gone, fails the try and retries it on the other worker,
    # which takes the dead runner's ledger lease over and sends the rest.
    state = deployment.wait_for_run(CELERY_BATCH_DAG, run_id, timeout=180)
    assert state == "success", deployment.diagnostics(CELERY_BATCH_DAG, run_id)
    (ti,) = deployment.task_instances(CELERY_BATCH_DAG, run_id)
    assert (ti["try_number"], ti["hostname"]) == (2, survivor), ti
    rows = ledger(deployment, "celery_k_ledger")
    assert sorted(rows, key=int) == [str(i) for i in range(1, KILL_ROWS + 1)]  # every row accounted for
    by_try: dict[str, set[str]] = {"try1": set(), "try2": set()}
    for key, (status, claimed_by) in rows.items():
        attempt = "try2" if "/try2@" in claimed_by else "try1"
        by_try[attempt].add(status)
        made = standin.created_count(f"celery_k-{key}")
        # created: exactly one meeting; pending (the dead runner's call may have reached Gong): 0 or 1
        assert (status, made) in {("created", 1), ("pending", 0), ("pending", 1)}, (key, status, claimed_by)
    assert by_try["try1"] <= {"created", "pending"}, by_try
    assert by_try["try2"] == {"created"}, by_try  # the rest, finished on the surviving worker
    pending = [k for k, (status, _) in rows.items() if status == "pending"]
    assert len(pending) <= 3 * 3, pending  # at most three claim windows of 3 rows
    assert standin.duplicates() == {}
    assert sent() > sent_at_kill
    assert [c for c in standin_calls.snapshot() if c.status == 429] == []
    assert {f"celery_k-{k}" for k in rows} == set(keys)
    print(
        f"killed {victim} after {sent_at_kill} meetings; pending {sorted(pending, key=int)}; "
        f"{len(killed)} processes killed"
    )
