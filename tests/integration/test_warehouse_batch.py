"""The warehouse batch against the stand-in over loopback, on real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from airflow.sdk import BaseHook

from airflow_provider_gong._compat import DagBag
from airflow_provider_gong.exceptions import GongBatchRowErrors, GongRateLimitError
from tests._support.warehouse import demo_rows, insert_meetings
from tests.conftest import EXAMPLE_DAGS, ROOT
from tests.dates import SOON, SOON_AFTER
from tests.integration.helpers import ledger, operator, seed

pytestmark = pytest.mark.integration


def test_example_dag_creates_every_row_once_and_rerun_creates_nothing(warehouse, fast_gong, run_dag, xcoms):
    seed(warehouse, demo_rows(12))
    dag = DagBag(dag_folder=str(EXAMPLE_DAGS)).dags["gong_meetings_from_warehouse"]
    conf = {"table": warehouse["table"], "ledger_table": warehouse["ledger"], "fail_on_row_errors": False}
    first = run_dag(dag, run_conf=conf)
    assert first.state == "success"
    assert fast_gong.created_count() == 12
    rows = ledger(warehouse)
    by_external_id = {c.payload["externalId"]: c for c in fast_gong.created}
    for key in map(str, range(1, 13)):
        assert rows[key]["status"] == "created"
        created = by_external_id[f"crm-evt-{1000 + int(key)}"]
        assert rows[key]["meeting_id"] == created.meeting_id
        assert rows[key]["meeting_url"].startswith("https://join.gong.io/")
        assert json.loads(rows[key]["additional_invitees"]) == [
            {"displayName": "Gong Assistant", "email": "assistant@gong.io"}
        ]
        assert rows[key]["attempts"] == 1
    assert rows["13"]["status"] == "failed" and "No Gong user" in rows["13"]["error"]
    assert rows["14"]["status"] == "failed" and "must be after start_time" in rows["14"]["error"]
    summary = xcoms(first)[("create_meetings", -1, "return_value")]
    assert (summary["created"], summary["failed"], summary["rows"]) == (12, 2, 14)

    calls_before = len(fast_gong.log)
    second = run_dag(dag, run_conf=conf)
    assert second.state == "success"
    assert fast_gong.created_count() == 12  # nothing new
    assert len(fast_gong.log) == calls_before  # not even a preflight call: every row is settled
    assert xcoms(second)[("create_meetings", -1, "return_value")]["skipped_created"] == 12
    assert fast_gong.duplicates() == {}


def test_example_dag_fails_after_writing_every_outcome_when_rows_fail(
    warehouse, fast_gong, run_dag, task_states
):
    seed(warehouse, demo_rows(3))
    dag = DagBag(dag_folder=str(EXAMPLE_DAGS)).dags["gong_meetings_from_warehouse"]
    dag_run = run_dag(dag, run_conf={"table": warehouse["table"], "ledger_table": warehouse["ledger"]})
    assert dag_run.state == "failed"
    assert task_states(dag_run)["create_meetings"][1] == 1  # permanent: no Airflow retry
    assert sorted(r["status"] for r in ledger(warehouse).values()) == ["created"] * 3 + ["failed"] * 2


BAD_ROWS = [
    # (start, end, organizer, invitees, expected error fragment)
    (None, f"{SOON}T10:30:00Z", "rep@acme.com", "a@b.com", "start_time"),
    ("tomorrow", f"{SOON}T10:30:00Z", "rep@acme.com", "a@b.com", "ISO-8601"),
    (SOON, f"{SOON}T10:30:00Z", "rep@acme.com", "a@b.com", "date and a time"),
    (f"{SOON}T10:00:00Z", f"{SOON}T09:00:00Z", "rep@acme.com", "a@b.com", "must be after"),
    (f"{SOON}T10:00:00Z", f"{SOON}T10:30:00Z", "not-an-email", "a@b.com", "organizer_email"),
    (f"{SOON}T10:00:00Z", f"{SOON}T10:30:00Z", None, "a@b.com", "organizer_email"),
    (f"{SOON}T10:00:00Z", f"{SOON}T10:30:00Z", "rep@acme.com", "", "at least one invitee"),
    (f"{SOON}T10:00:00Z", f"{SOON}T10:30:00Z", "rep@acme.com", "[oops", "does not parse"),
    (f"{SOON}T10:00:00Z", f"{SOON}T10:30:00Z", "rep@acme.com", "a@b.com; broken", "invitee email"),
    (f"{SOON}T10:00:00Z", f"{SOON}T10:30:00Z", "rep@acme.com", '[{"mail": "a@b.com"}]', "unknown keys"),
    (f"{SOON}T10:00:00Z", f"{SOON}T10:30:00Z", "rep@acme.com", "rep@acme.com", "at least one invitee"),
    (f"{SOON}T10:00:00Z", f"{SOON}T10:30:00Z", "nobody@acme.com", "a@b.com", "No Gong user found"),
    (
        f"{SOON}T10:00:00Z",
        f"{SOON}T10:30:00Z",
        "noconsent@acme.com",
        "a@b.com",
        "consent page is not enabled",
    ),
]


def test_each_bad_row_gets_its_own_error_and_good_rows_go_through(tmp_path, monkeypatch, fast_gong):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")})
    )
    wh = {"table": "meetings", "ledger": "ledger", "timestamp_type": "TIMESTAMP"}
    good = [
        (100 + i, f"{SOON_AFTER}T10:00:00Z", f"{SOON_AFTER}T10:30:00Z", "ok", "rep@acme.com", "x@y.com", None)
        for i in range(3)
    ]
    bad = [(i + 1, s, e, "bad", o, inv, None) for i, (s, e, o, inv, _) in enumerate(BAD_ROWS)]
    seed(wh, bad[:6] + good[:1] + bad[6:] + good[1:])  # good rows between and after bad ones
    with pytest.raises(GongBatchRowErrors, match=f"{len(BAD_ROWS)} row"):
        operator(wh).execute({})
    rows = ledger(wh)
    for i, (*_, fragment) in enumerate(BAD_ROWS):
        assert rows[str(i + 1)]["status"] == "failed"
        assert fragment in rows[str(i + 1)]["error"], (i, rows[str(i + 1)]["error"])
        assert rows[str(i + 1)]["error_kind"] == "permanent"
    assert [rows[str(100 + i)]["status"] for i in range(3)] == ["created"] * 3
    # external_id falls back to the row key, so Gong-side records trace back to their row.
    assert sorted(c.payload["externalId"] for c in fast_gong.created) == ["100", "101", "102"]
    # A rerun neither re-posts the bad rows nor the good ones ...
    calls_before = len(fast_gong.log)
    summary = operator(wh, fail_on_row_errors=False).execute({})
    assert summary["skipped_failed"] == len(BAD_ROWS) and summary["skipped_created"] == 3
    assert len(fast_gong.log) == calls_before
    # ... and does not turn green while those rows still have no meeting (unless asked to).
    with pytest.raises(GongBatchRowErrors, match=f"{len(BAD_ROWS)} row.s. failed permanently in an earlier"):
        operator(wh).execute({})


def test_preflight_fails_organizers_without_a_create_call(warehouse, fast_gong):
    seed(warehouse, demo_rows(4))
    summary = operator(warehouse, preflight=True, fail_on_row_errors=False).execute({})
    assert summary["created"] == 4 and summary["failed"] == 2
    posts = [path for method, path, _ in fast_gong.log if method == "POST" and path == "/v2/meetings"]
    assert len(posts) == 4  # nobody@ never reaches create; the bad-times row is caught locally
    assert "Preflight" in ledger(warehouse)["5"]["error"]


def test_429_and_5xx_bursts_mid_batch_end_with_zero_duplicates(warehouse, fast_gong):
    seed(warehouse, demo_rows(20, bad=False))
    fast_gong.inject("delay", times=8, delay=0, match="POST /v2/meetings")  # 8 creates go through ...
    fast_gong.inject("status", times=3, status=429, retry_after=0, match="POST /v2/meetings")  # ... then 429s
    summary1 = operator(warehouse, page_size=7).execute({})
    assert [status for _, _, status in fast_gong.log][8:11] == [429, 429, 429]
    assert summary1["created"] == 20  # the 429s were waited out and retried: nothing was created by them
    # A 5xx burst on create: the outcome is unknown, so those rows stay pending and are not re-sent.
    insert_meetings(
        BaseHook.get_hook("warehouse"),
        [(100 + r[0], *r[1:6], f"x-{r[0]}") for r in demo_rows(10, bad=False)],
        warehouse["table"],
    )
    fast_gong.inject("status", times=2, status=503, match="POST /v2/meetings")
    with pytest.raises(GongBatchRowErrors, match=r"2 row\(s\) are pending"):
        operator(warehouse).execute({})
    rows = ledger(warehouse)
    assert sorted(k for k, r in rows.items() if r["status"] == "pending") == ["101", "102"]
    assert all("may" in rows[k]["error"] for k in ("101", "102"))
    posts_before = sum(1 for m, p, _ in fast_gong.log if (m, p) == ("POST", "/v2/meetings"))
    with pytest.raises(GongBatchRowErrors):
        operator(warehouse).execute({})
    assert sum(1 for m, p, _ in fast_gong.log if (m, p) == ("POST", "/v2/meetings")) == posts_before
    assert fast_gong.duplicates() == {}
    assert fast_gong.created_count() == 28


def test_connection_dropped_after_create_leaves_row_pending_and_rerun_does_not_repost(warehouse, fast_gong):
    seed(warehouse, demo_rows(5, bad=False))
    fast_gong.inject("drop_after", match="POST /v2/meetings")  # the first create happens, its answer is lost
    with pytest.raises(GongBatchRowErrors, match=r"1 row\(s\) are pending"):
        operator(warehouse).execute({})
    rows = ledger(warehouse)
    assert rows["1"]["status"] == "pending" and rows["1"]["error_kind"] == "unknown"
    assert [rows[k]["status"] for k in "2345"] == ["created"] * 4
    assert fast_gong.created_count("crm-evt-1001") == 1  # it exists in Gong
    for _ in range(2):
        with pytest.raises(GongBatchRowErrors):
            operator(warehouse).execute({})
    assert fast_gong.created_count("crm-evt-1001") == 1 and fast_gong.duplicates() == {}


def test_quota_exhaustion_stops_the_batch_and_a_rerun_finishes_it(warehouse, fast_gong):
    seed(warehouse, demo_rows(6, bad=False))
    # Two creates go through, then Gong's daily quota is spent (Retry-After of an hour).
    fast_gong.inject("delay", times=2, delay=0, match="POST /v2/meetings")
    fast_gong.inject("status", times=1, status=429, retry_after=3600, match="POST /v2/meetings")
    op = operator(warehouse)
    with pytest.raises(GongRateLimitError):
        op.execute({})
    rows = ledger(warehouse)
    assert [rows[k]["status"] for k in "12"] == ["created", "created"]
    assert rows["3"]["status"] == "failed" and rows["3"]["error_kind"] == "transient"
    assert "4" not in rows  # the batch stopped instead of failing every later row
    summary = operator(warehouse).execute({})  # quota back: the transient row is retried
    assert summary["created"] == 4 and summary["skipped_created"] == 2
    assert ledger(warehouse)["3"]["attempts"] == 2
    assert fast_gong.duplicates() == {}


# lease_seconds=4: the rerun takes over the dead runner's ledger lease 4 s after its last renewal (the
# default, 120 s, is the same path, two minutes later).
KILL_SCRIPT = """
import sys
from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator
SqlToGongMeetingsOperator(
    task_id="batch", table=sys.argv[1], ledger_table=sys.argv[2], claim_window=4, lease_seconds=4
).execute({})
"""


def test_task_killed_mid_batch_then_rerun_loses_nothing_and_duplicates_nothing(
    warehouse, gong_standin, monkeypatch
):
    seed(warehouse, demo_rows(60, bad=False))
    monkeypatch.setenv("AIRFLOW_CONN_GONG_DEFAULT", gong_standin.connection_json(rate_limit_per_second=40))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, warehouse["table"], warehouse["ledger"]],
        env=dict(os.environ),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while gong_standin.created_count() < 15 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = gong_standin.created_count()
    assert 15 <= killed_at < 60, "the kill must land mid-batch"

    summary = operator(warehouse, fail_on_row_errors=False).execute({})
    rows = ledger(warehouse)
    assert len(rows) == 60  # every row is accounted for
    statuses = [r["status"] for r in rows.values()]
    # at most three claim windows: claimed ahead, being sent, sent with the outcome not yet written
    assert statuses.count("pending") <= 3 * 4
    assert statuses.count("created") + statuses.count("pending") == 60
    assert gong_standin.duplicates() == {}
    for key, row in rows.items():
        in_gong = gong_standin.created_count(f"crm-evt-{1000 + int(key)}")
        # created rows exist exactly once; the pending one (if any) exists at most once
        assert in_gong == 1 if row["status"] == "created" else in_gong in (0, 1)
    assert summary["skipped_created"] >= killed_at - 2 * 4  # sent and recorded before the kill


@pytest.mark.timing  # wall-clock rate/volume check: main venv only (pyproject markers)
def test_ten_thousand_rows_stream_in_bounded_pages(tmp_path, monkeypatch, fast_gong):
    # 10,000 calls is Gong's whole default day: a budget and a quota directory of its own, so neither
    # the default nor calls counted by an earlier stand-in on a reused port can end it.
    monkeypatch.setenv(
        "AIRFLOW_CONN_GONG_DEFAULT",
        fast_gong.connection_json(
            rate_limit_per_second=500, daily_quota=1_000_000, quota_dir=str(tmp_path / "quota")
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "big.db")})
    )
    wh = {"table": "big", "ledger": "big_ledger", "timestamp_type": "TIMESTAMP"}
    rows = [
        (i, f"{SOON}T10:00:00Z", f"{SOON}T10:30:00Z", None, "rep@acme.com", "a@b.com", None)
        for i in range(10_000)
    ]
    seed(wh, rows)
    monkeypatch.setenv(  # faster now, and still its own budget and quota directory
        "AIRFLOW_CONN_GONG_DEFAULT",
        fast_gong.connection_json(
            rate_limit_per_second=100_000, daily_quota=1_000_000, quota_dir=str(tmp_path / "quota")
        ),
    )
    op = operator(wh, page_size=500, progress_every_rows=2500)
    summary = op.execute({})
    assert summary["created"] == 10_000
    assert max(op.batch.source.fetch_sizes) == 500  # never more than one page in memory
    assert len(op.batch.source.fetch_sizes) == 21  # 20 full pages, then an empty one ends the scan
    assert fast_gong.duplicates() == {} and fast_gong.created_count() == 10_000


def test_mapped_example_dag_creates_and_writes_back(tmp_path, monkeypatch, fast_gong, run_dag):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "m.db")})
    )
    seed({"table": "meetings_to_schedule", "timestamp_type": "TIMESTAMP"}, demo_rows(4))
    dag = DagBag(dag_folder=str(EXAMPLE_DAGS)).dags["gong_meetings_mapped"]
    dag_run = run_dag(dag)
    results = dict(
        BaseHook.get_hook("warehouse").get_records("SELECT row_key, status FROM gong_meeting_results")
    )
    assert results == {
        **{f"crm-evt-{1000 + i}": "created" for i in range(1, 5)},
        "crm-evt-1005": "failed",
        "crm-evt-1006": "failed",
    }
    # write_back (all_done) recorded the two failed rows, then failed the run: a green run would lie.
    assert dag_run.state == "failed"
    assert fast_gong.created_count() == 4
    run_dag(dag)  # rerun: created rows are not sent again
    assert fast_gong.created_count() == 4


def _mapped_results() -> dict[str, str]:
    return dict(
        BaseHook.get_hook("warehouse").get_records("SELECT row_key, status FROM gong_meeting_results")
    )


def test_mapped_example_records_a_lost_answer_as_unknown_and_never_resends_it(
    tmp_path, monkeypatch, fast_gong, run_dag
):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "m.db")})
    )
    seed({"table": "meetings_to_schedule", "timestamp_type": "TIMESTAMP"}, demo_rows(4, bad=False))
    fast_gong.inject("drop_after", match="POST /v2/meetings")  # Gong creates it; the answer is lost
    dag = DagBag(dag_folder=str(EXAMPLE_DAGS)).dags["gong_meetings_mapped"]
    assert run_dag(dag).state == "failed"  # not green while an outcome is unknown
    results = _mapped_results()
    (lost,) = [key for key, status in results.items() if status == "unknown"]
    assert sorted(results.values()) == ["created"] * 3 + ["unknown"]
    assert fast_gong.created_count(lost) == 1
    assert run_dag(dag).state == "success"  # nothing left to send: the unknown row is not offered again
    assert fast_gong.created_count(lost) == 1 and fast_gong.created_count() == 4
    assert _mapped_results()[lost] == "unknown"


def test_mapped_example_takes_max_rows_per_run_and_says_how_many_wait(
    tmp_path, monkeypatch, fast_gong, run_dag, caplog
):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "m.db")})
    )
    seed({"table": "meetings_to_schedule", "timestamp_type": "TIMESTAMP"}, demo_rows(5, bad=False))
    dag = DagBag(dag_folder=str(EXAMPLE_DAGS)).dags["gong_meetings_mapped"]
    assert run_dag(dag, run_conf={"max_rows": 2}).state == "success"
    assert fast_gong.created_count() == 2
    assert "3 more row(s) wait for the next run" in caplog.text
    run_dag(dag, run_conf={"max_rows": 2})
    run_dag(dag, run_conf={"max_rows": 2})
    assert fast_gong.created_count() == 5 and not fast_gong.duplicates()
    assert sorted(_mapped_results().values()) == ["created"] * 5
