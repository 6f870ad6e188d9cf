"""Helpers shared by the warehouse tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from airflow.sdk import BaseHook

from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator
from tests._support.warehouse import create_meetings_table, insert_meetings
from tests.conftest import ROOT

PG_URI = os.environ.get("GONG_TEST_POSTGRES_URI", "postgresql://postgres@127.0.0.1:5432/postgres")


def postgres_reason() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_URI, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure means: no usable server here
        return f"PostgreSQL not reachable at {PG_URI}: {type(exc).__name__}: {exc}"
    return None


def seed(warehouse, rows):
    hook = BaseHook.get_hook("warehouse")
    create_meetings_table(hook, warehouse["table"], timestamp_type=warehouse["timestamp_type"])
    insert_meetings(hook, rows, warehouse["table"])


def ledger(warehouse) -> dict[str, dict]:
    hook = BaseHook.get_hook("warehouse")
    book = ResultsLedger(hook, warehouse["ledger"], owner="test-reader")
    try:
        return {r["row_key"]: r for r in book.read_all()}
    finally:
        book.close()


def operator(warehouse, **kwargs) -> SqlToGongMeetingsOperator:
    return SqlToGongMeetingsOperator(
        task_id="batch", table=warehouse["table"], ledger_table=warehouse["ledger"], **kwargs
    )


# -- runners in separate processes, started together ---------------------------------------------

RUNNER = """
import json, os, signal, sys, time
from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator
table, ledger_table, go, options = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
op = SqlToGongMeetingsOperator(task_id="batch", table=table, ledger_table=ledger_table,
                               fail_on_row_errors=False, **options)
signal.signal(signal.SIGTERM, lambda *_: op.on_kill())  # what Airflow's task runner does
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:  # start together, after imports
    time.sleep(0.005)
try:
    print("SUMMARY " + json.dumps(op.execute({})), flush=True)
except BaseException as exc:
    print(f"ERROR {type(exc).__module__}.{type(exc).__name__}: {exc}", flush=True)
    sys.exit(1)
"""


def start_runners(
    tmp_path: Path, warehouse: dict, count: int = 2, *, go: Path | None = None, **options
) -> list[subprocess.Popen]:
    """``count`` runners of the batch, each waiting for the file ``go`` (new unless given) to start."""
    go = go or tmp_path / f"go-{time.monotonic_ns()}"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                RUNNER,
                warehouse["table"],
                warehouse["ledger"],
                str(go),
                json.dumps(options),
            ],
            env=dict(os.environ),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    return procs, go


def finish(procs: list[subprocess.Popen], timeout: float = 120) -> list[dict]:
    summaries = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        lines = [line for line in out.splitlines() if line.startswith(("SUMMARY ", "ERROR "))]
        assert proc.returncode == 0, f"runner failed: {lines} {err[-3000:]}"
        summaries.append(json.loads(lines[-1].removeprefix("SUMMARY ")))
    return summaries


def run_concurrently(tmp_path, warehouse, count=2, **options) -> list[dict]:
    procs, go = start_runners(tmp_path, warehouse, count, **options)
    time.sleep(0.5)
    go.touch()
    return finish(procs)


# -- ledger rows as a run leaves them (real claims and outcomes, no batch) -----------------------------

OLD = "2020-01-01T00:00:00+00:00"  # a claim older than any claim lease


class LedgerRun:
    """A run's side of a ledger: it takes the lease and claims and records rows as the batch does, to
    leave each kind of row a person may meet (the batch's own tests make them through Gong)."""

    def __init__(self, table: str, owner: str = "run-a", conn_id: str = "warehouse") -> None:
        from airflow_provider_gong.meetings import MeetingResult

        self._result = MeetingResult
        self.hook = BaseHook.get_hook(conn_id)
        self.table = table
        self.book = ResultsLedger(self.hook, table, owner=owner)
        self.book.ensure_table()
        self.book.acquire(0)

    def in_flight(self, key: str) -> None:
        """Claimed a moment ago, no outcome yet: another run's call may be in flight."""
        assert self.book.claim(key, None)

    def died(self, key: str) -> None:
        """Claimed long ago with no outcome: the run died mid-call."""
        self.in_flight(key)
        self.age(key)

    def lost_answer(self, key: str) -> None:
        """Gong's answer to the create was lost (error_kind unknown, Gong's requestId kept)."""
        self.in_flight(key)
        assert self.book.record_unknown(key, "POST /v2/meetings: the answer was lost", f"req-{key}")

    def created(self, key: str, meeting_id: str = "4830196611553043414") -> None:
        self.in_flight(key)
        result = self._result(meeting_id, f"https://join.gong.io/{meeting_id}", f"req-{key}")
        assert self.book.record_created(key, result)

    def failed(self, key: str) -> None:
        self.in_flight(key)
        assert self.book.record_failed(key, "400: bad organizer", "permanent")

    def pending(self, key: str, action: str) -> None:
        """A created row whose update or delete was cut off (a run died mid-PUT or mid-DELETE)."""
        self.created(key)
        assert self.book.claim(key, self.book.get(key), action)
        self.age(key)

    def age(self, key: str) -> None:
        self.hook.run(f"UPDATE {self.table} SET updated_at = '{OLD}' WHERE row_key = '{key}'")

    def close(self) -> None:
        self.book.close()


def ledger_row(table: str, key: str, conn_id: str = "warehouse") -> dict | None:
    book = ResultsLedger(BaseHook.get_hook(conn_id), table, owner="test-reader")
    try:
        return {r["row_key"]: r for r in book.read_all()}.get(key)
    finally:
        book.close()


def lease_owner(table: str, conn_id: str = "warehouse") -> str:
    return str(BaseHook.get_hook(conn_id).get_first(f"SELECT owner FROM {table}_lock")[0] or "").strip()
