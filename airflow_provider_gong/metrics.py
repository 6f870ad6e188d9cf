"""
Metrics: what the provider counts, sent through Airflow's own ``Stats``.

Airflow sends them wherever the deployment sends its own metrics (StatsD, DogStatsD or OpenTelemetry,
``[metrics]`` in airflow.cfg), under its prefix (``statsd_prefix`` / ``otel_prefix``, ``airflow`` by
default). Each dimension is part of the name, as Airflow names its own metrics, so plain StatsD can
tell endpoints apart; the same dimensions also go along as tags, which DogStatsD, OpenTelemetry and
StatsD with InfluxDB tags keep. Every name and its meaning: ``docs/guides/metrics.md``.

Never raises: a metrics backend that fails (an unresolvable StatsD host, a broken exporter) is logged
once per process and otherwise ignored, since a count is never worth a Gong call or a batch row.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any

from airflow_provider_gong import _compat

log = logging.getLogger(__name__)

PREFIX = "gong"

#: endpoint part of ``gong.calls.<endpoint>.<status class>``
ENDPOINTS = ("meetings_create", "meetings_update", "meetings_delete", "integration_status", "users", "other")
#: status class part: Gong's HTTP status by its first digit, or ``error`` when no answer came
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "error")
#: ``gong.batch.rows.<outcome>``: the run's summary keys (``skipped`` is every kind of skip together)
ROW_OUTCOMES = ("created", "updated", "deleted", "failed", "outcome_unknown", "unchanged", "skipped")

CALLS = f"{PREFIX}.calls"
RATE_LIMITED = f"{PREFIX}.rate_limited"
QUOTA_WAIT = f"{PREFIX}.quota.wait"
BATCH_RUNS = f"{PREFIX}.batch.runs"
BATCH_ROWS = f"{PREFIX}.batch.rows"
CLAIMS_LOST = f"{PREFIX}.claims.lost"

_warned = False


def endpoint(method: str, path: str) -> str:
    """Name the Gong endpoint of a call (one of :data:`ENDPOINTS`); meeting IDs never enter a name."""
    method = method.upper()
    if path.startswith("/v2/meetings/integration/status"):
        return "integration_status"
    if path == "/v2/meetings" and method == "POST":
        return "meetings_create"
    if path.startswith("/v2/meetings/") and method in ("PUT", "DELETE"):
        return "meetings_update" if method == "PUT" else "meetings_delete"
    if path.startswith("/v2/users"):
        return "users"
    return "other"


def status_class(status: int | None) -> str:
    """``2xx`` ... ``5xx`` for an answer, ``error`` for none (connection, timeout, deadline)."""
    if status is None or not 100 <= status < 600:
        return "error"
    return f"{status // 100}xx"


def all_names() -> list[str]:
    """Every metric name the provider can send (without Airflow's prefix)."""
    calls = [f"{CALLS}.{e}.{s}" for e in ENDPOINTS for s in STATUS_CLASSES]
    rows = [f"{BATCH_ROWS}.{o}" for o in ROW_OUTCOMES]
    return [*calls, RATE_LIMITED, QUOTA_WAIT, BATCH_RUNS, *rows, CLAIMS_LOST]


# -- what the provider reports --------------------------------------------------------------------


def call(method: str, path: str, status: int | None) -> None:
    """Count one attempt of a Gong call that went out and ended with ``status`` (None: no answer)."""
    where, cls = endpoint(method, path), status_class(status)
    tags = {"endpoint": where, "status_class": cls}
    if status is not None:
        tags["status"] = str(status)
    _incr(f"{CALLS}.{where}.{cls}", 1, tags)
    if status == 429:
        _incr(RATE_LIMITED, 1, {"endpoint": where})


def quota_wait(seconds: float) -> None:
    """Report the seconds a call waited for its slot in the account's shared quota (0: due at once)."""
    _emit("timing", QUOTA_WAIT, datetime.timedelta(seconds=max(seconds, 0.0)), None)


def claim_lost(action: str) -> None:
    """Count a row another runner claimed first (``action``: what this run meant to do with it)."""
    _incr(CLAIMS_LOST, 1, {"action": action})


def batch_rows(summary: Mapping[str, Any], *, skipped: int, tags: Mapping[str, str] | None = None) -> None:
    """
    Report a batch run (or one leg of a deferred run) that ended: one counter per outcome, by its rows.

    Counters, not gauges: they add up over runs, legs and workers; a dashboard shows their rate or sum.
    Outcomes with no rows are sent too (as 0), so every series exists from the first run on.
    """
    base = dict(tags or {})
    _incr(BATCH_RUNS, 1, base)
    for outcome in ROW_OUTCOMES:
        rows = skipped if outcome == "skipped" else int(summary.get(outcome, 0) or 0)
        _incr(f"{BATCH_ROWS}.{outcome}", rows, {**base, "outcome": outcome})


# -- sending --------------------------------------------------------------------------------------


def _stats() -> Any:
    """Airflow's ``Stats`` (tests swap this function for a recorder)."""
    return _compat.stats()


def _incr(name: str, count: int, tags: Mapping[str, str] | None) -> None:
    _emit("incr", name, count, tags)


def _emit(kind: str, name: str, value: Any, tags: Mapping[str, str] | None) -> None:
    global _warned
    try:
        send = getattr(_stats(), kind)
        if kind == "incr":
            send(name, count=value, tags=dict(tags) if tags else None)
        else:
            send(name, value, tags=dict(tags) if tags else None)
    except Exception as exc:
        if not _warned:
            _warned = True
            log.warning(
                "Gong metrics could not be sent through Airflow's Stats (%s: %s); going on without them "
                "(logged once per process)",
                type(exc).__name__,
                exc,
            )
