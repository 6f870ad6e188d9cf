"""Settling pending rows, end to end: the next batch run after a settlement, the command in its own
process (connections from Airflow's metadata database), two settlements at once, and a settlement while
a batch is at work. Real SQLite files and PostgreSQL (skipped with the reason when it is not there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
from airflow.sdk import BaseHook

from airflow_provider_gong.exceptions import GongLedgerBusyError
from airflow_provider_gong.sync.settle import settle_row
from tests._support.warehouse import demo_rows, insert_meetings
from tests.conftest import ROOT
from tests.integration.helpers import LedgerRun, ledger_row, operator, seed

pytestmark = pytest.mark.integration

POST = "POST /v2/meetings"


def ext(key: str) -> str:
    return f"crm-evt-{1000 + int(key)}"


def test_a_row_settled_as_created_is_skipped_by_the_next_run(warehouse, fast_gong):
    seed(warehouse, demo_rows(3, bad=False))
    fast_gong.inject("drop_after", match=POST)  # Gong made row 1's meeting; the answer never came
    first = operator(warehouse, fail_on_row_errors=False).execute({})
    assert first["outcome_unknown"] == 1 and ledger_row(warehouse["ledger"], "1")["status"] == "pending"
    (made,) = [c for c in fast_gong.created if c.payload["externalId"] == ext("1")]  # found in Gong
    settle_row("warehouse", "1", "created", ledger_table=warehouse["ledger"], meeting_id=made.meeting_id)
    again = operator(warehouse).execute({})  # fail_on_row_errors=True: green once nothing is pending
    assert again["gong_calls"] == 0 and again["created"] == 0 and again["skipped_created"] == 3
    assert again["pending_unreconciled"] == 0
    assert fast_gong.created_count(ext("1")) == 1 and fast_gong.duplicates() == {}
    assert ledger_row(warehouse["ledger"], "1")["meeting_id"] == made.meeting_id


def test_a_row_settled_as_failed_is_created_by_the_next_run_exactly_once(warehouse, fast_gong):
    seed(warehouse, demo_rows(3, bad=False))
    fast_gong.inject("drop", match=POST)  # the connection broke: Gong made nothing, the batch cannot know
    first = operator(warehouse, fail_on_row_errors=False).execute({})
    assert first["outcome_unknown"] == 1 and fast_gong.created_count(ext("1")) == 0
    settle_row("warehouse", "1", "failed", ledger_table=warehouse["ledger"])
    again = operator(warehouse).execute({})
    assert again["created"] == 1 and again["gong_calls"] == 1 and again["pending_unreconciled"] == 0
    third = operator(warehouse).execute({})
    assert third["gong_calls"] == 0 and third["skipped_created"] == 3
    assert fast_gong.created_count(ext("1")) == 1 and fast_gong.duplicates() == {}
    (made,) = [c for c in fast_gong.created if c.payload["externalId"] == ext("1")]
    row = ledger_row(warehouse["ledger"], "1")
    assert (row["status"], row["meeting_id"], int(row["attempts"])) == ("created", made.meeting_id, 2)


def test_a_settlement_while_a_batch_is_at_work_is_refused_then_waits_for_it(warehouse, fast_gong):
    rows = demo_rows(5, bad=False)
    seed(warehouse, rows[:3])
    fast_gong.inject("drop_after", match=POST)
    operator(warehouse, fail_on_row_errors=False).execute({})  # row 1 left pending
    insert_meetings(BaseHook.get_hook("warehouse"), rows[3:], warehouse["table"])
    fast_gong.inject("delay", delay=2.0, match=POST)  # row 4: Gong works, answers 2 s late
    batch = operator(warehouse, fail_on_row_errors=False)
    worker = threading.Thread(target=batch.execute, args=({},))
    worker.start()
    deadline = time.monotonic() + 30
    while fast_gong.created_count(ext("4")) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    made = next(c.meeting_id for c in fast_gong.created if c.payload["externalId"] == ext("1"))
    with pytest.raises(GongLedgerBusyError, match=r"being worked by a run \(manual@") as busy:
        settle_row(
            "warehouse",
            "1",
            "created",
            ledger_table=warehouse["ledger"],
            meeting_id=made,
            lease_wait_seconds=0,
        )
    assert busy.value.holder.startswith("manual@")
    settle_row(
        "warehouse", "1", "created", ledger_table=warehouse["ledger"], meeting_id=made, lease_wait_seconds=30
    )
    worker.join(timeout=30)
    assert batch.summary["created"] == 2  # the run went on undisturbed
    assert operator(warehouse).execute({})["gong_calls"] == 0  # every row has its meeting
    assert fast_gong.duplicates() == {}


# -- the command ---------------------------------------------------------------------------------------


def command(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "airflow_provider_gong.sync.settle", *args],
        env=env or dict(os.environ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def stored_connection(airflow_db, tmp_path, monkeypatch):
    """A SQLite warehouse whose connection exists only in Airflow's metadata database (as one made in
    the UI or with `airflow connections add`): the command must find it as the airflow CLI does."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    conn_id = f"settle_wh_{uuid.uuid4().hex[:6]}"
    with create_session() as session:
        session.add(Connection(conn_id=conn_id, conn_type="sqlite", host=str(tmp_path / "stored.db")))
    env = dict(os.environ)
    monkeypatch.setenv(  # for this process's own set-up only; the command's processes do not see it
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "stored.db")}),
    )
    yield conn_id, env
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == conn_id).delete()


def test_the_command_lists_settles_and_refuses_with_exit_codes(stored_connection):
    conn_id, env = stored_connection
    empty = command("list", "--conn-id", conn_id, env=env)  # no ledger yet
    assert empty.returncode == 0 and "gong_meeting_ledger: nothing to settle" in empty.stdout, empty.stderr
    run = LedgerRun("gong_meeting_ledger", conn_id=conn_id)
    run.lost_answer("crm-1")
    run.in_flight("crm-2")
    run.close()
    listed = command("list", "--conn-id", conn_id, env=env)
    assert listed.returncode == 0, listed.stderr
    assert (
        "1 row(s) to settle" in listed.stdout and "req-crm-1" in listed.stdout and "unknown" in listed.stdout
    )
    assert "crm-2: claimed by run-a" in listed.stdout  # in flight, shown apart
    usage = command("created", "--conn-id", conn_id, env=env)
    assert usage.returncode == 2 and "needs --row-key" in usage.stderr
    done = command(
        "created", "--conn-id", conn_id, "--row-key", "crm-1", "--meeting-id", "7782342274025937895", env=env
    )
    assert done.returncode == 0, done.stderr
    assert "Settled. Ledger gong_meeting_ledger, row crm-1: status pending" in done.stdout
    assert "-> status created, meeting_id 7782342274025937895" in done.stdout
    again = command("failed", "--conn-id", conn_id, "--row-key", "crm-1", env=env)
    assert (
        again.returncode == 1 and "Refused:" in again.stderr and "not pending: it is created" in again.stderr
    )
    assert ledger_row("gong_meeting_ledger", "crm-1", conn_id)["meeting_id"] == "7782342274025937895"


SETTLER = """
import os, sys, time
from airflow_provider_gong.sync.settle import main
go = sys.argv[1]
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:  # start together, after imports
    time.sleep(0.002)
sys.exit(main(sys.argv[2:]))
"""


def test_two_settlements_of_one_row_at_once_one_wins_the_other_is_refused(warehouse, tmp_path):
    run = LedgerRun(warehouse["ledger"])
    run.lost_answer("k1")
    run.close()
    go = tmp_path / "go"
    common = ["--conn-id", "warehouse", "--ledger", warehouse["ledger"], "--row-key", "k1"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SETTLER, str(go), *args, *common],
            env=dict(os.environ),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in (["created", "--meeting-id", "111"], ["failed"])
    ]
    time.sleep(0.5)
    go.touch()
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    codes = [code for code, _, _ in results]
    assert sorted(codes) == [0, 1], results
    winner = codes.index(0)
    _, _, refused = results[1 - winner]
    assert "Refused:" in refused and "not pending" in refused and "Traceback" not in refused
    row = ledger_row(warehouse["ledger"], "k1")
    assert row["status"] == ("created", "failed")[winner]
