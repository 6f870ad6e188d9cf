from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

import jsonschema

from airflow_provider_gong import get_provider_info


def test_provider_info_passes_airflows_schema():
    schema = json.loads(resources.files("airflow").joinpath("provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_the_transfer_operator_is_declared():
    (transfer,) = get_provider_info()["transfers"]
    assert transfer["python-module"] == "airflow_provider_gong.transfers.sql_to_gong"
    assert (transfer["source-integration-name"], transfer["target-integration-name"]) == (
        "Common SQL",
        "Gong",
    )


def test_the_wheel_holds_the_product_and_the_pytest_plugin_is_opt_in():
    import tomllib

    from tests.conftest import ROOT

    package = ROOT / "airflow_provider_gong"
    assert sorted(p.name for p in (package / "testing").glob("*.py")) == [
        "__init__.py",
        "__main__.py",
        "pytest_plugin.py",
        "standin.py",
    ]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "pytest11" not in project.get("entry-points", {})


def test_connection_form_is_declarative():
    (conn_type,) = get_provider_info()["connection-types"]
    behaviour = conn_type["ui-field-behaviour"]
    assert behaviour["hidden-fields"] == ["schema", "port"]
    assert behaviour["relabeling"]["login"] == "Access key / OAuth client ID"
    assert behaviour["relabeling"]["password"] == "Access key secret / OAuth client secret"
    assert "api.gong.io" in behaviour["placeholders"]["host"]
    fields = conn_type["conn-fields"]
    assert fields["access_token"]["schema"]["format"] == "password"  # sensitive in the UI
    assert {"auth_type", "timeout", "rate_limit_per_second", "max_retry_wait"} <= set(fields)


def test_providers_manager_registers_hook_and_link():
    from airflow.providers_manager import ProvidersManager

    try:  # Airflow >= 3.2: tasks resolve hooks through the task SDK's own registry
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as HookRegistry
    except ImportError:  # Airflow 3.1: one ProvidersManager for everything
        HookRegistry = ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-gong" in manager.providers
    assert "airflow_provider_gong.links.GongMeetingLink" in manager.extra_links_class_names
    hook_info = HookRegistry().hooks["gong"]
    assert hook_info.hook_class_name == "airflow_provider_gong.hooks.gong.GongHook"
    assert hook_info.connection_id_attribute_name == "gong_conn_id"
    assert hook_info.connection_testable


def test_airflow_cli_lists_the_gong_connection_type():
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "hooks", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    rows = {row["connection_type"]: row for row in json.loads(out[out.index("[") :])}
    assert rows["gong"]["class"] == "airflow_provider_gong.hooks.gong.GongHook"
