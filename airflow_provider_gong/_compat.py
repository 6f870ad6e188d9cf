"""
Every difference between the Airflow versions this provider supports (3.1, 3.2, 3.3), in one place.

The rest of the package imports from here instead of guessing where Airflow keeps things. Each entry
detects the feature itself (``try``/``except ImportError``), never the version string, so a backport or
a moved class keeps working, and the README's compatibility table lists what each difference means for
users:

* ``AirflowFailException`` / ``TaskDeferred``: ``airflow.sdk.exceptions`` from 3.2 (task SDK 1.2); on 3.1
  they live in ``airflow.exceptions``, and 3.1's task runner catches exactly that class, so a permanent
  Gong error must derive from it there to fail the task without retries.
* ``task_state_store``: the per-task-instance store the create operator uses to stay exactly once across
  Airflow retries. Airflow 3.3 puts it in the task context; before that there is none and the operator
  falls back to "a failure after the POST is permanent" (see ``GongCreateMeetingOperator``).
* ``DagBag``: ``airflow.dag_processing.dagbag`` from 3.2, ``airflow.models.dagbag`` on 3.1 (the demo and
  the tests load the example DAGs with it; the provider itself never does).
* ``Stats``: the task SDK's ``airflow.sdk.observability.stats`` from 3.2 (its task runner configures it
  from ``[metrics]``); on 3.1 core's ``airflow.stats``, which configures itself (:mod:`.metrics` sends
  through it).
* The connection form: 3.2+ reads it from ``get_provider_info()`` (``conn-fields``,
  ``ui-field-behaviour``); 3.1 only asks the hook class (``get_ui_field_behaviour``).

Kept import-light: operator modules import it on every DAG parse (tests/unit/test_lazy_imports.py).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

try:  # Airflow >= 3.2: the task SDK owns the exceptions its runner catches
    from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred
except ImportError:  # Airflow 3.1: task SDK 1.1 still catches the core classes
    # mypy checks against the newest Airflow, where these are the SDK's classes re-imported (not exported)
    from airflow.exceptions import (  # type: ignore[attr-defined,no-redef]
        AirflowException,
        AirflowFailException,
        TaskDeferred,
    )

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "TaskDeferred",
    "has_declarative_connection_form",
    "has_task_state_store",
    "hook_ui_field_behaviour",
    "stats",
    "task_state_store",
]


def task_state_store(context: Mapping[str, Any]) -> Any | None:
    """
    Return the task instance's ``task_state_store`` (Airflow >= 3.3), or None where Airflow has none.

    Its interface is ``get(key)``, ``set(key, value)`` and ``delete(key)``; values survive task retries.
    """
    return context.get("task_state_store")


@functools.cache
def has_task_state_store() -> bool:
    """
    Whether this Airflow gives tasks a ``task_state_store`` (3.3+).

    For logs, docs and tests; the operator itself just looks in its context (:func:`task_state_store`).
    """
    try:
        from airflow.sdk.execution_time.context import TaskStateStoreAccessor  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
@functools.cache  # the class is looked up once: on 3.1 a failed import would search the path per metric
def stats() -> Any:
    """
    Return Airflow's ``Stats`` for task code: ``incr``, ``timing``, ``gauge`` (imported on first use).

    From 3.2 the task SDK's (``airflow.sdk.observability.stats``), which its task runner configures from
    ``[metrics]`` before the task starts; on 3.1 core's ``airflow.stats.Stats``, which configures itself
    from ``[metrics]`` when first used. Whichever backend that is (StatsD, DogStatsD, OpenTelemetry, or
    none) is resolved by Airflow at every call, so it follows a fork or a re-initialisation.
    """
    try:
        from airflow.sdk.observability.stats import Stats
    except ImportError:  # Airflow 3.1 (task SDK 1.1 has none)
        from airflow.stats import Stats
    return Stats


@functools.cache
def has_declarative_connection_form() -> bool:
    """
    Whether Airflow builds the connection form from ``get_provider_info()`` (3.2+).

    Airflow 3.1 ignores the ``conn-fields`` and ``ui-field-behaviour`` blocks and asks the hook class
    (``get_ui_field_behaviour``) instead. Detected by the hook the 3.2 ProvidersManager gained for it.
    """
    from airflow.providers_manager import ProvidersManager

    return hasattr(ProvidersManager, "_load_ui_metadata")


def hook_ui_field_behaviour() -> dict[str, Any]:
    """
    Return ``get_provider_info()``'s ``ui-field-behaviour`` in the shape Airflow 3.1 asks the hook for.

    That shape is ``GongHook.get_ui_field_behaviour``'s (snake_case keys), so both forms come from one
    declaration.

    3.1 has no ``conn-fields`` counterpart without Flask-AppBuilder widgets: there the extras (auth type,
    timeout, rate limit, ...) are edited in the connection's Extra JSON.
    """
    from airflow_provider_gong import get_provider_info

    (connection_type,) = get_provider_info()["connection-types"]
    behaviour = connection_type["ui-field-behaviour"]
    return {
        "hidden_fields": list(behaviour.get("hidden-fields", [])),
        "relabeling": dict(behaviour.get("relabeling", {})),
        "placeholders": dict(behaviour.get("placeholders", {})),
    }


def __getattr__(name: str) -> Any:
    """
    ``from airflow_provider_gong._compat import DagBag``: Airflow's ``DagBag``, imported on first use.

    It comes from ``airflow.dag_processing.dagbag`` from 3.2, ``airflow.models.dagbag`` on 3.1.

    Lazy because only the demo and the tests load DAG files themselves; DAG files that import the
    provider must not pay for it.
    """
    if name != "DagBag":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    return DagBag
