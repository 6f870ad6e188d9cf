"""airflow_provider_gong.metrics: the names it builds, what it sends for a run, and that a broken
metrics backend never breaks a call."""

from __future__ import annotations

import logging
import re

import pytest

from airflow_provider_gong import _compat, metrics

# What Airflow's validators accept (stat_name_default_handler): letters, digits, "_", ".", "-", "/",
# at most 250 characters; OpenTelemetry's limit (63 on 3.1) counts Airflow's prefix ("airflow.") too.
STATSD_SAFE = re.compile(r"^[A-Za-z0-9_.]+$")


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v2/meetings", "meetings_create"),
        ("PUT", "/v2/meetings/123", "meetings_update"),
        ("DELETE", "/v2/meetings/123", "meetings_delete"),
        ("POST", "/v2/meetings/integration/status", "integration_status"),
        ("GET", "/v2/users", "users"),
        ("get", "/v2/users", "users"),
        ("GET", "/v2/meetings/123", "other"),
        ("PATCH", "/v2/something/else", "other"),
    ],
)
def test_endpoint_names(method, path, expected):
    assert metrics.endpoint(method, path) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "2xx"), (201, "2xx"), (302, "3xx"), (404, "4xx"), (429, "4xx"), (503, "5xx"), (None, "error")],
)
def test_status_classes(status, expected):
    assert metrics.status_class(status) == expected


def test_every_documented_name_is_statsd_safe_and_short_enough_for_otel():
    for name in metrics.all_names():
        assert STATSD_SAFE.match(name), name
        assert name.startswith("gong.")
        assert len("airflow." + name) <= 63, name


def test_a_call_is_counted_by_endpoint_and_status_class(metrics):
    recorder = metrics
    from airflow_provider_gong import metrics as module

    module.call("POST", "/v2/meetings", 201)
    module.call("PUT", "/v2/meetings/9", 429)
    module.call("DELETE", "/v2/meetings/9", None)
    assert recorder.counters() == {
        "gong.calls.meetings_create.2xx": 1,
        "gong.calls.meetings_update.4xx": 1,
        "gong.rate_limited": 1,
        "gong.calls.meetings_delete.error": 1,
    }
    first = recorder.samples[0]
    assert first.tags == {"endpoint": "meetings_create", "status_class": "2xx", "status": "201"}


def test_a_quota_wait_is_a_timer_in_milliseconds(metrics):
    from airflow_provider_gong import metrics as module

    module.quota_wait(0.25)
    (sample,) = metrics.samples
    assert (sample.name, sample.kind, sample.value) == ("gong.quota.wait", "ms", pytest.approx(250.0))


def test_a_run_sends_one_counter_per_outcome_with_its_rows(metrics):
    from airflow_provider_gong import metrics as module

    summary = {
        "rows": 12,
        "created": 3,
        "updated": 2,
        "deleted": 1,
        "failed": 1,
        "outcome_unknown": 1,
        "unchanged": 2,
        "skipped_created": 1,
        "skipped_failed": 0,
        "claimed_elsewhere": 1,
        "skipped_past": 0,
        "skipped_cancelled": 0,
        "pending_unreconciled": 1,
    }
    module.batch_rows(summary, skipped=2, tags={"sync_mode": "upsert"})
    assert metrics.counters() == {
        "gong.batch.runs": 1,
        "gong.batch.rows.created": 3,
        "gong.batch.rows.updated": 2,
        "gong.batch.rows.deleted": 1,
        "gong.batch.rows.failed": 1,
        "gong.batch.rows.outcome_unknown": 1,
        "gong.batch.rows.unchanged": 2,
        "gong.batch.rows.skipped": 2,
    }
    assert {s.tags["sync_mode"] for s in metrics.samples} == {"upsert"}


def test_a_lost_claim_is_counted_with_its_action(metrics):
    from airflow_provider_gong import metrics as module

    module.claim_lost("create")
    assert [(s.name, s.value, s.tags) for s in metrics.samples] == [
        ("gong.claims.lost", 1, {"action": "create"})
    ]


class Broken:
    def __getattr__(self, name):
        raise RuntimeError("the metrics backend is down")


def test_a_failing_backend_never_raises_and_is_logged_once(monkeypatch, caplog):
    monkeypatch.setattr(metrics, "_stats", Broken)
    monkeypatch.setattr(metrics, "_warned", False)
    with caplog.at_level(logging.WARNING, logger=metrics.__name__):
        metrics.call("POST", "/v2/meetings", 200)
        metrics.quota_wait(1.0)
        metrics.claim_lost("update")
        metrics.batch_rows({"created": 1}, skipped=0)
    warnings = [r for r in caplog.records if r.name == metrics.__name__]
    assert len(warnings) == 1 and "the metrics backend is down" in warnings[0].getMessage()


def test_no_stats_backend_at_all_is_no_error(monkeypatch):
    def missing():
        raise ImportError("no Stats in this Airflow")

    monkeypatch.setattr(_compat, "stats", missing)
    monkeypatch.setattr(metrics, "_warned", False)
    metrics.call("GET", "/v2/users", 200)  # nothing raised


def test_compat_finds_airflows_stats_for_task_code():
    stats = _compat.stats()
    for method in ("incr", "timing", "gauge"):
        assert callable(getattr(stats, method))
    try:  # 3.2+: the task SDK's Stats, the one its task runner configures
        from airflow.sdk.observability.stats import Stats
    except ImportError:  # 3.1: core's
        from airflow.stats import Stats
    assert stats is Stats


def test_the_metrics_guide_names_every_part_of_every_name():
    from tests.conftest import ROOT

    guide = (ROOT / "docs" / "guides" / "metrics.md").read_text()
    parts = [*metrics.ENDPOINTS, *metrics.STATUS_CLASSES, *metrics.ROW_OUTCOMES]
    fixed = [metrics.RATE_LIMITED, metrics.QUOTA_WAIT, metrics.BATCH_RUNS, metrics.CLAIMS_LOST]
    templates = [f"{metrics.CALLS}.<endpoint>.<status_class>", f"{metrics.BATCH_ROWS}.<outcome>"]
    for word in [*fixed, *templates]:
        assert f"`{word}`" in guide, word
    for word in parts:
        assert f"| `{word}` |" in guide or f"`{word}`" in guide, word
