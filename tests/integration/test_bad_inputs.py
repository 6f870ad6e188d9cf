"""Implausible meetings never reach Gong: every case in tests/bad_inputs.py, through the operator and as
a warehouse row (SQLite and PostgreSQL), between good rows that must still go through."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import MagicMock

import pytest
from airflow.sdk import BaseHook

from airflow_provider_gong.exceptions import GongValidationError
from airflow_provider_gong.operators.meetings import GongCreateMeetingOperator
from airflow_provider_gong.testing import GongStandIn
from tests._support.warehouse import STANDARD_COLUMNS
from tests.bad_inputs import CASES, GOOD, TIMEZONE, Bad
from tests.dates import NEXT_YEAR, dst_changes
from tests.integration.helpers import PG_URI, ledger, operator, postgres_reason

ROW_CASES = [c for c in CASES if c.row]


def _ids(cases: list[Bad]) -> list[str]:
    return [c.name for c in cases]


def test_the_catalogue_is_big_enough_and_its_base_meeting_is_good(gong_connection):
    assert len(CASES) >= 100 and len(ROW_CASES) >= 100
    assert len({c.name for c in CASES}) == len(CASES)
    GongCreateMeetingOperator(task_id="good", timezone=TIMEZONE, **GOOD).execute({"ti": MagicMock()})
    assert gong_connection.created_count() == 1


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_operator_rejects_before_any_gong_call_naming_the_field(gong_connection, case):
    op = GongCreateMeetingOperator(task_id="create", **{"timezone": TIMEZONE, **case.meeting()})
    with pytest.raises(GongValidationError) as info:
        op.execute({"ti": MagicMock()})
    message = str(info.value)
    assert case.field in message, message
    assert len(message) < 1000  # a 1 MB bad value is not copied into the message
    assert gong_connection.log == []  # not even a connection check


# -- as warehouse rows --------------------------------------------------------------------------


@dataclass
class BatchOutcome:
    kind: str
    keys: dict[str, str]  # case name -> row key
    ledger: dict[str, dict[str, Any]]
    posted_external_ids: list[str]
    good_keys: list[str]
    log: list[str] = field(default_factory=list)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def bad_rows_batch(request, tmp_path_factory) -> Iterator[BatchOutcome]:
    """One batch per dialect over every row case, each bad row right after a good one."""
    kind = request.param
    if kind == "postgres" and (reason := postgres_reason()):
        pytest.skip(reason)
    uri = (
        PG_URI
        if kind == "postgres"
        else json.dumps({"conn_type": "sqlite", "host": str(tmp_path_factory.mktemp("wh") / "w.db")})
    )
    wh = {"table": "bad_inputs_src", "ledger": "bad_inputs_ledger", "kind": kind}
    cases = [c for c in ROW_CASES if not (kind == "postgres" and c.has_nul)]
    with pytest.MonkeyPatch.context() as mp, GongStandIn() as standin:
        mp.setenv("AIRFLOW_CONN_WAREHOUSE", uri)
        mp.setenv("AIRFLOW_CONN_GONG_DEFAULT", standin.connection_json(rate_limit_per_second=1000))
        hook = BaseHook.get_hook("warehouse")
        hook.run([f"DROP TABLE IF EXISTS {n}" for n in (wh["table"], wh["ledger"], f"{wh['ledger']}_lock")])
        hook.run(
            f"CREATE TABLE {wh['table']} (id INTEGER PRIMARY KEY, start_time TEXT, end_time TEXT, "
            "title TEXT, organizer_email TEXT, invitees TEXT, external_id TEXT)"
        )
        rows, keys, good_keys = [], {}, []
        for index, case in enumerate(cases):
            good_key, bad_key = 2 * index + 1, 2 * index + 2
            rows.append((good_key, *(GOOD[c] for c in STANDARD_COLUMNS[1:])))
            rows.append((bad_key, *(case.meeting()[c] for c in STANDARD_COLUMNS[1:])))
            keys[case.name], good_keys = str(bad_key), [*good_keys, str(good_key)]
        hook.insert_rows(wh["table"], rows, target_fields=list(STANDARD_COLUMNS))
        collect = _Collect()
        logging.getLogger("airflow_provider_gong").addHandler(collect)
        try:
            summary = operator(wh, timezone=TIMEZONE, fail_on_row_errors=False).execute({})
        finally:
            logging.getLogger("airflow_provider_gong").removeHandler(collect)
        assert summary["created"] == len(good_keys) and summary["failed"] == len(cases), summary
        yield BatchOutcome(
            kind=kind,
            keys=keys,
            ledger=ledger(wh),
            posted_external_ids=[c.payload.get("externalId") for c in standin.created],
            good_keys=good_keys,
            log=collect.lines,
        )
        hook.run([f"DROP TABLE IF EXISTS {n}" for n in (wh["table"], wh["ledger"], f"{wh['ledger']}_lock")])


def test_only_the_good_rows_reach_gong(bad_rows_batch):
    assert sorted(bad_rows_batch.posted_external_ids, key=int) == bad_rows_batch.good_keys
    assert all(bad_rows_batch.ledger[k]["status"] == "created" for k in bad_rows_batch.good_keys)


@pytest.mark.parametrize("case", ROW_CASES, ids=_ids(ROW_CASES))
def test_bad_row_fails_alone_naming_field_and_row(bad_rows_batch, case):
    if bad_rows_batch.kind == "postgres" and case.has_nul:
        pytest.skip("PostgreSQL text cannot hold NUL, so this row cannot exist there (SQLite covers it)")
    key = bad_rows_batch.keys[case.name]
    entry = bad_rows_batch.ledger[key]
    assert (entry["status"], entry["error_kind"]) == ("failed", "permanent")
    assert case.field in entry["error"], entry["error"]
    assert len(entry["error"]) < 1000
    assert key not in bad_rows_batch.posted_external_ids
    assert any(line.startswith(f"Row {key}: ") and case.field in line for line in bad_rows_batch.log)
    neighbour = str(int(key) - 1)  # the good row just before it
    assert bad_rows_batch.ledger[neighbour]["status"] == "created"


# -- one instant per value, whatever the column type ----------------------------------------------

_GAP, _FOLD = dst_changes(TIMEZONE, NEXT_YEAR)
NAIVE = {  # key -> naive wall-clock value in TIMEZONE
    "fold": _FOLD.replace(minute=30),  # happens twice: the first (summer-time) one is meant
    "gap": _GAP.replace(minute=30),  # never happens: rejected
    "plain": _FOLD.replace(hour=12, minute=0),
}
AWARE = {  # key -> text with an offset; the second 01:30 of the fold night, and a UTC instant
    "fold_second": _FOLD.replace(minute=30).isoformat() + "-05:00",
    "utc": _FOLD.replace(hour=17).isoformat() + "+00:00",
}


def _run_column_type(
    kind: str, column_type: str, values: dict[str, Any], gong: GongStandIn
) -> dict[str, str]:
    hook = BaseHook.get_hook("warehouse")
    table, book = f"types_{column_type.lower()}", f"types_{column_type.lower()}_ledger"
    hook.run([f"DROP TABLE IF EXISTS {n}" for n in (table, book, f"{book}_lock")])
    hook.run(
        f"CREATE TABLE {table} (id VARCHAR(20) PRIMARY KEY, start_time {column_type}, "
        f"end_time {column_type}, "
        "title TEXT, organizer_email TEXT, invitees TEXT, external_id TEXT)"
    )
    rows = [
        (key, start, _plus_45(start), "t", "rep@acme.com", "a@b.com", f"{column_type}-{key}")
        for key, start in values.items()
    ]
    hook.insert_rows(table, rows, target_fields=list(STANDARD_COLUMNS))
    wh = {"table": table, "ledger": book}
    operator(wh, timezone=TIMEZONE, fail_on_row_errors=False).execute({})
    sent = {c.payload["externalId"]: c.payload["startTime"] for c in gong.created}
    result = {}
    for key, entry in ledger(wh).items():
        result[key] = sent.get(f"{column_type}-{key}") or f"failed: {entry['error']}"
    hook.run([f"DROP TABLE IF EXISTS {n}" for n in (table, book, f"{book}_lock")])
    return result


def _plus_45(start: str) -> str:
    """The end time, written like the start (same separator, same offset suffix)."""
    later = dt.datetime.fromisoformat(start[:19]) + dt.timedelta(minutes=45)
    return later.isoformat(sep=start[10]) + start[19:]


def test_the_same_value_means_the_same_instant_in_every_column_type(warehouse, fast_gong):
    naive_text = {k: v.isoformat(sep=" ") for k, v in NAIVE.items()}
    results = {"TEXT naive": _run_column_type(warehouse["kind"], "TEXT", naive_text, fast_gong)}
    results["TIMESTAMP naive"] = _run_column_type(warehouse["kind"], "TIMESTAMP", naive_text, fast_gong)
    results["TEXT aware"] = _run_column_type(warehouse["kind"], "TEXT", AWARE, fast_gong)
    if warehouse["kind"] == "postgres":
        results["TIMESTAMPTZ aware"] = _run_column_type(warehouse["kind"], "TIMESTAMPTZ", AWARE, fast_gong)
    fold = _FOLD.replace(minute=30)
    expected_naive = {
        "fold": fold.isoformat() + "-04:00",
        "plain": _FOLD.replace(hour=12).isoformat() + "-05:00",
    }
    expected_aware = {
        "fold_second": fold.isoformat() + "-05:00",
        "utc": _FOLD.replace(hour=12).isoformat() + "-05:00",
    }
    for source, got in results.items():
        expected = expected_naive if "naive" in source else expected_aware
        assert {k: v for k, v in got.items() if k != "gap"} == expected, source
        if "naive" in source:
            assert got["gap"].startswith("failed: ") and "does not exist in America/New_York" in got["gap"]
