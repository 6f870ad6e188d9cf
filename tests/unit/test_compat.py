"""airflow_provider_gong._compat on whichever Airflow runs the suite (`make test`: 3.1, 3.2 and 3.3).

Each difference is tested through what it is for (the class Airflow's task runner catches, the store the
task context carries, the form the ProvidersManager builds), and both sides of each feature detection
run on every version where that can be simulated.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
import warnings
from importlib import resources

import jsonschema
import pytest

from airflow_provider_gong import _compat, get_provider_info
from airflow_provider_gong.exceptions import GongMeetingMayExistError, GongPermanentError
from tests.conftest import EXAMPLE_DAGS


def _core_exceptions() -> types.ModuleType:
    with warnings.catch_warnings():  # 3.2+ re-exports the task SDK's classes here, deprecated
        warnings.simplefilter("ignore")
        import airflow.exceptions

        return airflow.exceptions


def test_permanent_errors_derive_from_the_fail_exception_the_task_runner_catches():
    """3.1's runner catches airflow.exceptions.AirflowFailException; from 3.2 that name is the task SDK's
    class itself, so on every version this is the one class a permanent error must derive from."""
    core = _core_exceptions()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _compat.AirflowFailException is core.AirflowFailException
        assert _compat.TaskDeferred is core.TaskDeferred
    assert issubclass(GongPermanentError, _compat.AirflowFailException)
    assert issubclass(GongMeetingMayExistError, _compat.AirflowFailException)


def test_the_fallback_import_path_works_on_this_airflow(monkeypatch):
    """The ``except ImportError`` branch (the 3.1 path), run here by hiding the task SDK's classes: a copy
    of _compat loaded in isolation then takes them from airflow.exceptions.

    airflow.exceptions is replaced too, by a module holding its real classes: from 3.2 its names are lazy
    aliases that import the (hidden) task SDK module."""
    real = _core_exceptions()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = {n: getattr(real, n) for n in ("AirflowException", "AirflowFailException", "TaskDeferred")}
    core = types.ModuleType("airflow.exceptions")
    core.__dict__.update(names)
    monkeypatch.setitem(sys.modules, "airflow.exceptions", core)
    monkeypatch.setitem(sys.modules, "airflow.sdk.exceptions", types.ModuleType("airflow.sdk.exceptions"))
    spec = importlib.util.spec_from_file_location("_compat_fallback_probe", _compat.__file__)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    assert {n: getattr(probe, n) for n in names} == names


def test_task_state_store_comes_from_the_context_when_airflow_provides_one():
    store = object()
    assert _compat.task_state_store({"task_state_store": store}) is store  # Airflow >= 3.3
    assert _compat.task_state_store({"ti": object()}) is None  # 3.1, 3.2


def test_task_state_store_detection_agrees_with_airflows_task_context():
    from airflow.sdk.definitions.context import Context

    assert _compat.has_task_state_store() == ("task_state_store" in Context.__annotations__)


def test_dag_bag_loads_the_example_dags_and_other_names_stay_unknown():
    bag = _compat.DagBag(dag_folder=str(EXAMPLE_DAGS))
    assert bag.import_errors == {} and "gong_create_meeting" in bag.dags
    assert _compat.DagBag.__module__ in ("airflow.dag_processing.dagbag", "airflow.models.dagbag")
    with pytest.raises(AttributeError):
        _compat.NoSuchThing  # noqa: B018


def test_the_hooks_field_behaviour_is_the_declared_one_in_the_shape_airflow_3_1_validates():
    from airflow_provider_gong.hooks.gong import GongHook

    schema = json.loads(
        resources.files("airflow").joinpath("customized_form_field_behaviours.schema.json").read_text()
    )
    behaviour = GongHook.get_ui_field_behaviour()
    jsonschema.validate(behaviour, schema)
    (declared,) = get_provider_info()["connection-types"]
    assert behaviour == {
        "hidden_fields": declared["ui-field-behaviour"]["hidden-fields"],
        "relabeling": declared["ui-field-behaviour"]["relabeling"],
        "placeholders": declared["ui-field-behaviour"]["placeholders"],
    }


FORM_PROBE = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from airflow.providers_manager import ProvidersManager
    manager = ProvidersManager()
    behaviours = manager.field_behaviours
try:
    import wtforms  # noqa: F401
    has_wtforms = True
except ImportError:
    has_wtforms = False
print("FORM=" + json.dumps({
    "gong": behaviours.get("gong"),
    "warnings": [str(w.message) for w in caught if "GongHook" in str(w.message)],
    "has_wtforms": has_wtforms,
}))
"""


def test_airflow_builds_the_relabeled_connection_form_on_every_version():
    """3.2+ builds it from get_provider_info() and never calls the hook method (so no deprecation
    warning); 3.1 calls GongHook.get_ui_field_behaviour, but only where wtforms is installed (it comes
    with the FAB provider): without it 3.1 skips every provider's form customisation."""
    done = subprocess.run(
        [sys.executable, "-c", FORM_PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("FORM=")]
    form = json.loads(line.removeprefix("FORM="))
    assert form["warnings"] == []
    if not _compat.has_declarative_connection_form() and not form["has_wtforms"]:
        assert form["gong"] is None
        pytest.skip("Airflow 3.1 without wtforms (FAB provider) builds no custom connection forms at all")
    assert form["gong"]["relabeling"]["login"].startswith("Access key")
    assert form["gong"]["hidden_fields"] == ["schema", "port"]
