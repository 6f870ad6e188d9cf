"""OAuth across processes: separate worker processes share one rotating refresh token through the
token store (local SQLite file, and PostgreSQL through the ``sql`` backend) against a stand-in whose
refresh tokens work once, so any two refreshes with the same token would show as ``invalid_grant``;
a task killed in the middle of a refresh; and no token in XCom, logs or the warehouse ledger."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pendulum
import pytest
from airflow.sdk import DAG

from airflow_provider_gong.hooks.gong import GongHook
from airflow_provider_gong.oauth import GongRefreshTokenError
from airflow_provider_gong.operators.meetings import GongCreateMeetingOperator
from airflow_provider_gong.testing import GongStandIn
from airflow_provider_gong.testing.standin import TOKEN_PATH
from tests._support.warehouse import demo_rows
from tests.conftest import ROOT
from tests.integration.helpers import PG_URI, ledger, operator, postgres_reason, seed

pytestmark = pytest.mark.integration

PROCESSES = 4
SECONDS = 5.0
LIFETIME = 1.0  # expires_in of every access token: one expiry per ~0.9 s (10 % margin)
CALLS_PER_HOOK = 15  # each worker builds a new hook (as a new task would) every so many calls
CLIENT_SECRET = "race-Client-Secret-8086"

WORKER = """
import json, os, sys, time
from airflow_provider_gong.exceptions import GongError
from airflow_provider_gong.hooks.gong import GongHook
conn_id, go, seconds, per_hook = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
ok, failed, hooks, refreshes = 0, [], 0, 0
print("READY", flush=True)
deadline = time.monotonic() + 120
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.002)
began = time.monotonic()
end = began + seconds
while time.monotonic() < end:
    hook = GongHook(conn_id)
    hooks += 1
    for _ in range(per_hook):
        try:
            hook.request("GET", "/v2/users")
            ok += 1
        except GongError as exc:
            failed.append(f"{type(exc).__name__}: {exc}")
    if "oauth" in hook.client.__dict__:
        refreshes += hook.oauth.refreshes
    hook.close()
active = time.monotonic() - began
result = {"ok": ok, "failed": failed, "hooks": hooks, "refreshes": refreshes, "active": active}
print("RESULT " + json.dumps(result), flush=True)
"""


def start_workers(tmp_path: Path, conn_id: str, count: int, seconds: float) -> list[subprocess.Popen[str]]:
    """``count`` processes that wait (after importing Airflow) until the test says go."""
    go = tmp_path / f"go-{time.monotonic_ns()}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, conn_id, str(go), str(seconds), str(CALLS_PER_HOOK)],
            env=dict(os.environ),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            seen = []
            for line in proc.stdout:
                if line.strip() == "READY":
                    break
                seen.append(line)
            else:
                raise AssertionError(f"worker ended before READY: {''.join(seen)[-3000:]}")
    except BaseException:
        for proc in procs:
            proc.kill()
        raise
    go.touch()
    return procs


def results_of(procs: list[subprocess.Popen[str]]) -> list[dict]:
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=180)
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, f"worker failed: {out[-3000:]}"
        results.append(json.loads(lines[-1].removeprefix("RESULT ")))
    return results


def race(standin: GongStandIn, tmp_path: Path, monkeypatch, **extra: object) -> list[dict]:
    monkeypatch.setenv(
        "AIRFLOW_CONN_GONG_RACE",
        standin.connection_json(auth="oauth", rate_limit_per_second=1000, daily_quota=10**6, **extra),
    )
    return results_of(start_workers(tmp_path, "gong_race", PROCESSES, SECONDS))


def assert_one_chain(standin: GongStandIn, results: list[dict]) -> None:
    counters = standin.oauth_counters()
    elapsed = max(r["active"] for r in results)  # from the common start to the last call
    print(f"\nOAuth race: {PROCESSES} processes, {elapsed:.1f} s, {counters}, per process {results}")
    assert counters["invalid_grant"] == 0, counters  # no refresh token was ever sent twice
    assert all(r["failed"] == [] for r in results), [r["failed"][:2] for r in results]
    api = [status for _, path, status in standin.log if path.startswith("/v2/")]
    assert api.count(200) == sum(r["ok"] for r in results)
    assert all(r["ok"] > 0 and r["hooks"] > 1 for r in results)
    # Every refresh the stand-in saw came from a worker's client, and there were about as many as
    # the token expired in the run (one per 0.9 s), not one per process and expiry (4x as many).
    assert counters["refreshes"] == sum(r["refreshes"] for r in results)
    expiries = elapsed / (LIFETIME * 0.9)
    assert 3 <= counters["refreshes"] <= expiries + 2, (counters, elapsed)
    # A 401 (a call that arrived just after its token expired) is retried once with the new token.
    assert api.count(401) == counters["expired"]


@pytest.fixture
def racing_gong():
    with GongStandIn(token_lifetime=LIFETIME, client_secret=CLIENT_SECRET) as standin:
        yield standin


def test_processes_on_one_machine_share_one_refresh_token(racing_gong, tmp_path, monkeypatch):
    results = race(racing_gong, tmp_path, monkeypatch, quota_dir=str(tmp_path / "q"))
    assert_one_chain(racing_gong, results)
    hook = GongHook("gong_race")
    assert hook.oauth.refreshes_on_chain() == racing_gong.oauth_counters()["refreshes"]


def test_processes_share_one_refresh_token_through_postgres(racing_gong, tmp_path, monkeypatch):
    reason = postgres_reason()
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("AIRFLOW_CONN_GONG_QUOTA_DB", PG_URI)
    extra = {"quota_backend": "sql", "quota_conn_id": "gong_quota_db"}
    monkeypatch.setenv("AIRFLOW_CONN_GONG_RACE", racing_gong.connection_json(auth="oauth", **extra))
    probe = GongHook("gong_race")
    key = probe.oauth.key
    try:
        results = race(racing_gong, tmp_path, monkeypatch, **extra)
        assert_one_chain(racing_gong, results)
        assert probe.oauth.refreshes_on_chain() == racing_gong.oauth_counters()["refreshes"]
        import psycopg

        with psycopg.connect(PG_URI) as conn:
            (blob,) = conn.execute("SELECT blob FROM gong_oauth_token WHERE key = %s", (key,)).fetchone()
        for secret in (*racing_gong.refresh_tokens, CLIENT_SECRET, *racing_gong.issued):
            assert secret.encode() not in bytes(blob)
    finally:
        import psycopg

        with psycopg.connect(PG_URI) as conn:
            conn.execute("DELETE FROM gong_oauth_token WHERE key = %s", (key,))
            conn.execute("DELETE FROM gong_quota WHERE account LIKE %s", (f"127.0.0.1:{racing_gong.port}/%",))


ONE_CALL = """
import sys
from airflow_provider_gong.hooks.gong import GongHook
GongHook(sys.argv[1]).request("GET", "/v2/users")
"""


@pytest.mark.parametrize("backend", ["local", "sql"])
def test_a_task_killed_while_it_refreshed_leaves_a_clear_error(backend, tmp_path, monkeypatch):
    """Gong rotated the refresh token, but the task that asked was killed before the answer arrived:
    the new refresh token is gone for good. The next task must neither hang on the dead task's lock
    nor fail obscurely: it gets invalid_grant, explained, without a secret in it."""
    if backend == "sql":
        reason = postgres_reason()
        if reason:
            pytest.skip(reason)
        monkeypatch.setenv("AIRFLOW_CONN_GONG_QUOTA_DB", PG_URI)
        extra = {"quota_backend": "sql", "quota_conn_id": "gong_quota_db"}
    else:
        extra = {"quota_dir": str(tmp_path / "q")}
    with GongStandIn(client_secret=CLIENT_SECRET) as standin:
        standin.inject("delay", delay=20, match=f"POST {TOKEN_PATH}")  # rotates, then answers late
        monkeypatch.setenv("AIRFLOW_CONN_GONG_KILLED", standin.connection_json(auth="oauth", **extra))
        hook = GongHook("gong_killed")
        try:
            command = [sys.executable, "-c", ONE_CALL, "gong_killed"]
            proc = subprocess.Popen(command, cwd=ROOT, env=dict(os.environ))
            deadline = time.monotonic() + 120
            while standin.oauth_counters()["refreshes"] == 0 and proc.poll() is None:
                assert time.monotonic() < deadline, "the worker never asked for a token"
                time.sleep(0.05)
            proc.kill()
            proc.wait(timeout=30)
            with pytest.raises(GongRefreshTokenError) as caught:
                hook.request("GET", "/v2/users")
            ok, message = hook.test_connection()
        finally:
            if backend == "sql":
                import psycopg

                with psycopg.connect(PG_URI) as conn:
                    conn.execute("DELETE FROM gong_oauth_token WHERE key = %s", (hook.oauth.key,))
    text = str(caught.value)
    assert "invalid_grant" in text and "needs a new refresh token" in text
    assert "killed while it refreshed" in text
    assert not ok and "invalid_grant" in message
    (rotated,) = standin.refresh_tokens  # the one the killed task never received
    for secret in (rotated, standin.refresh_token, quote(standin.refresh_token, safe=""), CLIENT_SECRET):
        assert secret not in text and secret not in message
    assert standin.oauth_counters()["invalid_grant"] == 2  # this call, and test_connection's


# -- no token in XCom, logs or the ledger ----------------------------------------------------------------


def secret_forms(standin: GongStandIn) -> list[str]:
    tokens = [*standin.issued, *standin.refresh_tokens, standin.refresh_token, CLIENT_SECRET]
    pair = base64.b64encode(f"{standin.client_id}:{CLIENT_SECRET}".encode()).decode()
    return [*tokens, *(quote(t, safe="") for t in tokens), pair]


def test_no_token_reaches_xcom_or_the_task_log(run_dag, xcoms, monkeypatch, tmp_path, caplog):
    with GongStandIn(client_secret=CLIENT_SECRET) as standin:
        monkeypatch.setenv(
            "AIRFLOW_CONN_GONG_DEFAULT",
            standin.connection_json(auth="oauth", quota_dir=str(tmp_path / "q"), rate_limit_per_second=100),
        )
        with DAG("gong_oauth_xcom", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")) as dag:
            GongCreateMeetingOperator(
                task_id="create",
                start_time="{{ logical_date.add(days=2).isoformat() }}",
                end_time="{{ logical_date.add(days=2, hours=1).isoformat() }}",
                invitees="buyer@client.com",
                organizer_email="rep@acme.com",
            )
        with caplog.at_level(logging.DEBUG):
            dag_run = run_dag(dag)
        assert dag_run.state == "success"
        (created,) = standin.created
        values = xcoms(dag_run)
        assert values[("create", -1, "meeting_id")] == created.meeting_id
        assert standin.oauth_counters()["refreshes"] == 1
        forms = secret_forms(standin)
    stored = json.dumps({str(k): v for k, v in values.items()}, default=str)
    for form in forms:
        assert form not in stored
        assert form not in caplog.text


def test_the_ledger_never_stores_an_oauth_token(warehouse, monkeypatch, tmp_path):
    with GongStandIn(client_secret=CLIENT_SECRET, echo_authorization=True) as standin:
        monkeypatch.setenv(
            "AIRFLOW_CONN_GONG_DEFAULT",
            standin.connection_json(
                auth="oauth", quota_dir=str(tmp_path / "q"), rate_limit_per_second=500, max_retry_wait=0.1
            ),
        )
        rows = demo_rows(3, bad=False)
        rows[1] = (*rows[1][:4], "nobody@acme.com", *rows[1][5:])  # 404, with the echo
        seed(warehouse, rows)
        summary = operator(warehouse, fail_on_row_errors=False).execute({})
        forms = secret_forms(standin)
    assert (summary["created"], summary["failed"]) == (2, 1)
    stored = ledger(warehouse)
    assert "Request was" in stored["2"]["error"]  # the echo reached the ledger, redacted
    for row in stored.values():
        for form in forms:
            assert form not in str(row["error"]) and form not in str(row["request_id"])
