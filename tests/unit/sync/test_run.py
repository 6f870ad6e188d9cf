"""The run loop on a real SQLite source and ledger, against the Gong stand-in over loopback."""

from __future__ import annotations

import pytest

from airflow_provider_gong.exceptions import GongBatchStoppedError
from airflow_provider_gong.hooks.gong import GongHook
from airflow_provider_gong.sync import guard
from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.sync.progress import BatchProgress
from airflow_provider_gong.sync.run import BatchOptions, BatchRun
from airflow_provider_gong.sync.source import SourceReader
from tests._support.warehouse import create_meetings_table, demo_rows, insert_meetings


@pytest.fixture
def gong(gong_standin, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GONG_DEFAULT", gong_standin.connection_json(rate_limit_per_second=500))
    return gong_standin


@pytest.fixture
def batch(sqlite_hook, gong):
    """Build a run over the table ``m`` (seeded by the test) and its ledger; everything is closed after."""
    made = []

    def build(mode="create", owner="run-1", **options) -> BatchRun:
        source = SourceReader(sqlite_hook, table="m", sql=None, key="id", page_size=4)
        ledger = ResultsLedger(sqlite_hook, "led", owner=owner, sleep=lambda s: None)
        hook = GongHook()
        made.append((source, ledger, hook))
        ledger.ensure_table()
        ledger.acquire(0)
        columns = {"key": "id", **{f: f for f in ("start_time", "end_time", "title", "organizer_email")}}
        columns.update(invitees="invitees", external_id="external_id", cancelled="cancelled")
        opts = BatchOptions(columns=columns, mode=mode, claim_window=2, **options)
        return BatchRun(
            source=source, ledger=ledger, gong=hook, options=opts, progress=BatchProgress(source.count())
        )

    yield build
    for source, ledger, hook in made:
        source.close()
        ledger.close()
        hook.close()


def seed(hook, rows) -> None:
    create_meetings_table(hook, "m")
    insert_meetings(hook, rows, "m")


def test_a_run_creates_every_good_row_once_and_reports_the_bad_ones(sqlite_hook, gong, batch):
    seed(sqlite_hook, demo_rows(9))  # 9 good rows, an unknown organizer, an end before its start
    run = batch()
    run.run()
    summary = run.progress.summary()
    assert (summary["rows"], summary["created"], summary["failed"]) == (11, 9, 2)
    assert gong.created_count() == 9 and gong.duplicates() == {}
    statuses = {r["row_key"]: r["status"] for r in run.ledger.read_all()}
    assert statuses == {**{str(i): "created" for i in range(1, 10)}, "10": "failed", "11": "failed"}
    run.ledger.release_lease()
    again = batch(owner="run-2")
    again.run()
    assert again.progress.summary()["skipped_created"] == 9 and gong.created_count() == 9


def test_null_and_duplicate_keys_are_counted_and_never_sent(sqlite_hook, gong, batch):
    sqlite_hook.run(
        "CREATE TABLE m (id TEXT, start_time TEXT, end_time TEXT, title TEXT, organizer_email TEXT, "
        "invitees TEXT, external_id TEXT, cancelled BOOLEAN)"
    )
    rows = demo_rows(4, bad=False)
    insert_meetings(
        sqlite_hook, [(None, *rows[0][1:]), ("d", *rows[1][1:]), ("d", *rows[2][1:]), rows[3]], "m"
    )
    run = batch()
    run.run()
    summary = run.progress.summary()
    assert (summary["invalid_keys"], summary["duplicate_keys"], summary["created"]) == (1, 2, 1)
    assert gong.created_count() == 1


def test_a_stopped_run_stops_before_its_next_row_and_hands_back_its_claims(sqlite_hook, gong, batch):
    seed(sqlite_hook, demo_rows(6, bad=False))
    run = batch()
    run.stop()
    with pytest.raises(GongBatchStoppedError, match="after 0 row"):
        run.run()
    assert gong.created_count() == 0 and run.ledger.read_all() == []  # claims made ahead were handed back


def test_the_survey_plans_without_writing_and_the_sync_modes_act_on_it(sqlite_hook, gong, batch):
    seed(sqlite_hook, demo_rows(5, bad=False))
    plan = guard.survey(batch())
    assert plan["counts"]["create"] == 5 and plan["gong_calls"] == 5 and gong.log == []
    first = batch()
    first.run()
    first.ledger.release_lease()
    sqlite_hook.run("UPDATE m SET title = 'Moved' WHERE id = 2")
    sqlite_hook.run("UPDATE m SET cancelled = TRUE WHERE id = 3")
    sqlite_hook.run("DELETE FROM m WHERE id = 4")
    mirror = batch("mirror", owner="run-2")
    plan = guard.survey(mirror)
    assert {k: v for k, v in plan["counts"].items() if v} == {"update": 1, "delete": 2, "unchanged": 2}
    assert plan["samples"]["delete"] == [
        {"key": "3", "reason": "cancelled"},
        {"key": "4", "reason": "removed"},
    ]
    mirror.run()
    summary = mirror.progress.summary()
    assert (summary["updated"], summary["deleted"], summary["unchanged"]) == (1, 2, 2)
    statuses = {r["row_key"]: r["status"] for r in mirror.ledger.read_all()}
    assert statuses == {"1": "created", "2": "created", "3": "deleted", "4": "deleted", "5": "created"}


def test_a_run_reports_its_rows_to_airflows_stats_when_it_ends(sqlite_hook, gong, batch, metrics):
    seed(sqlite_hook, demo_rows(4))  # 4 good rows, an unknown organizer, an end before its start
    batch().run()
    counts = metrics.counters()
    assert counts["gong.batch.runs"] == 1
    assert (counts["gong.batch.rows.created"], counts["gong.batch.rows.failed"]) == (4, 2)
    assert counts["gong.batch.rows.skipped"] == 0 and counts["gong.batch.rows.outcome_unknown"] == 0
    assert counts["gong.calls.meetings_create.2xx"] == 4
    assert counts["gong.calls.meetings_create.4xx"] == 1  # the unknown organizer: Gong refused it
    rows = [s for s in metrics.samples if s.name.startswith("gong.batch.")]
    assert {s.tags["sync_mode"] for s in rows} == {"create"}


def test_a_stopped_run_still_reports_what_it_did(sqlite_hook, gong, batch, metrics):
    seed(sqlite_hook, demo_rows(3, bad=False))
    run = batch()
    run.stop()
    with pytest.raises(GongBatchStoppedError):
        run.run()
    assert metrics.counters()["gong.batch.runs"] == 1
