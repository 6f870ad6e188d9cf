"""DAG files must stay cheap to parse: the scheduler's DAG processor re-imports every DAG file every
few seconds, in a fresh process each time, so anything an operator module imports at module level is
paid on every parse of every DAG that uses it.

The provider's operators therefore import the hook (requests, urllib3), the meeting model and rules
(pydantic models, email-validator), common-sql's hooks and the sync engine only where they are used:
in ``execute``. These tests run each example DAG in a fresh interpreter and check that none of those
modules got loaded; they fail as soon as someone adds such an import back at module level (or in a
constructor, which also runs at parse time).

The list of heavy modules was picked with ``python -X importtime``: they are what the operator
modules used to pull in beyond what Airflow itself loads for a DagBag (``requests`` and
``urllib3``, ``email_validator``, ``sqlparse`` via common-sql, and the provider's own modules that
hold pydantic models or the HTTP client).
"""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import EXAMPLE_DAGS

HEAVY_MODULES = (
    "requests",
    "urllib3",
    "email_validator",
    "sqlparse",
    "airflow.providers.common.sql.hooks.sql",
    "airflow_provider_gong.hooks.gong",
    "airflow_provider_gong.meetings",
    "airflow_provider_gong.rules",
    "airflow_provider_gong._client.transport",
    "airflow_provider_gong.sync.run",
    "airflow_provider_gong.sync.source",
)

DAG_FILES = sorted(EXAMPLE_DAGS.glob("*.py"))


def _loaded_after(code: str, *, with_stdout: bool = False) -> Any:
    """Run ``code`` in a fresh interpreter and return which of HEAVY_MODULES it left in sys.modules
    (and its stdout, if asked).

    A fresh process is the only honest measure: this pytest process has long imported all of them.
    """
    probe = (
        f"{code}\nimport json, sys\n"
        f"print('LOADED=' + json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("LOADED=")]
    loaded = json.loads(line.removeprefix("LOADED="))
    return (loaded, done.stdout) if with_stdout else loaded


def _provider_imports(path: pathlib.Path) -> list[str]:
    """The provider modules a DAG file imports at module level, read from its source."""
    modules = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("airflow_provider_gong"):
            modules.append(node.module)
        elif isinstance(node, ast.Import):
            modules += [a.name for a in node.names if a.name.startswith("airflow_provider_gong")]
    return modules


def test_every_example_dag_uses_the_provider() -> None:
    assert DAG_FILES, f"no example DAGs in {EXAMPLE_DAGS}"
    for path in DAG_FILES:
        assert _provider_imports(path), f"{path.name} imports nothing from the provider"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_a_dag_file_loads_nothing_heavy(path: pathlib.Path) -> None:
    """First its provider imports alone, then the whole file, which also builds its operators (their
    constructors run at every parse too); one fresh interpreter for both keeps the suite fast."""
    imports = "\n".join(f"import {m}" for m in _provider_imports(path))
    code = (
        f"{imports}\nimport json, sys\n"
        f"print('IMPORTS=' + json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))\n"
        f"import runpy\nrunpy.run_path({str(path)!r}, run_name='dag_file')"
    )
    loaded, stdout = _loaded_after(code, with_stdout=True)
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("IMPORTS=")]
    assert json.loads(line.removeprefix("IMPORTS=")) == [], "importing the provider modules"
    assert loaded == [], "parsing the DAG file (imports plus operator constructors)"


def test_the_extra_link_module_is_light() -> None:
    assert _loaded_after("import airflow_provider_gong.links") == []


def test_provider_info_does_not_import_airflow() -> None:
    """Airflow calls get_provider_info while it starts; importing Airflow from it would recurse."""
    code = (
        "import sys, airflow_provider_gong\n"
        "airflow_provider_gong.get_provider_info()\n"
        "assert 'airflow' not in sys.modules, 'get_provider_info imported Airflow'"
    )
    assert _loaded_after(code) == []


def test_light_copies_match_their_sources() -> None:
    """The operators name the default connection themselves so that building them at parse time does
    not load the hook; it must not drift from the hook's."""
    from airflow_provider_gong import DEFAULT_CONN_ID
    from airflow_provider_gong.hooks.gong import GongHook
    from airflow_provider_gong.sync import plan
    from airflow_provider_gong.transfers import sql_to_gong

    assert GongHook.default_conn_name == DEFAULT_CONN_ID
    assert sql_to_gong.DEFAULT_COLUMNS is plan.DEFAULT_COLUMNS  # one table of columns, in sync.plan
