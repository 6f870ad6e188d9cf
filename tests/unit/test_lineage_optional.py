"""OpenLineage is an optional extra: the provider must import, parse and run without it, and must not
load it at DAG parse time where it is installed. Both checks run in a fresh interpreter, the only
honest view of what gets imported (this pytest process has long imported everything)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import EXAMPLE_DAGS, ROOT

# what the operators' lineage methods import (Airflow itself may import the provider's package
# ``airflow.providers.openlineage`` for its metadata, so that one is not a sign of anything)
LINEAGE_MODULES = (
    "airflow_provider_gong.lineage",
    "openlineage.client",
    "airflow.providers.openlineage.extractors",
    "airflow.providers.openlineage.sqlparser",
)

# Makes OpenLineage unimportable, as on an install without the extra: the OpenLineage client and every
# module of the provider except the two that Airflow's provider discovery reads for the installed
# distribution's metadata (they import nothing of OpenLineage).
BLOCK_OPENLINEAGE = """
import importlib.abc, sys

METADATA = ("airflow.providers.openlineage", "airflow.providers.openlineage.get_provider_info")

class _NoOpenLineage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        provider = name.startswith("airflow.providers.openlineage") and name not in METADATA
        if name.split(".")[0] in ("openlineage", "openlineage_sql") or provider:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, _NoOpenLineage())
"""

RUN_WITHOUT_OPENLINEAGE = (
    BLOCK_OPENLINEAGE
    + """
import json, os, tempfile
from unittest.mock import MagicMock

from airflow.sdk import BaseHook
from airflow_provider_gong.operators.meetings import GongCreateMeetingOperator
from airflow_provider_gong.testing import GongStandIn
from tests._support.warehouse import create_meetings_table, demo_rows, insert_meetings
from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator

out = {}
with GongStandIn() as gong:
    os.environ["AIRFLOW_CONN_GONG_DEFAULT"] = gong.connection_json(
        rate_limit_per_second=500, daily_quota=1_000_000
    )
    os.environ["AIRFLOW_CONN_WAREHOUSE"] = json.dumps(
        {"conn_type": "sqlite", "host": os.path.join(tempfile.mkdtemp(), "wh.db")}
    )
    db = BaseHook.get_hook("warehouse")
    create_meetings_table(db, "meetings")
    insert_meetings(db, demo_rows(3, bad=False), "meetings")
    batch = SqlToGongMeetingsOperator(task_id="b", table="meetings", ledger_table="ledger")
    out["batch_created"] = batch.execute({})["created"]
    first = demo_rows(1, bad=False)[0]
    single = GongCreateMeetingOperator(
        task_id="c", start_time=first[1], end_time=first[2], invitees="buyer@client.com",
        organizer_email="rep@acme.com",
    )
    out["single_id"] = bool(single.execute({"ti": MagicMock()})["meeting_id"])
    out["gong_created"] = gong.created_count()
out["loaded"] = [m for m in ("airflow_provider_gong.lineage", "openlineage.client") if m in sys.modules]
try:
    batch.get_openlineage_facets_on_complete(None)
    out["without_provider"] = "returned"
except ImportError as exc:
    out["without_provider"] = "ImportError"
print("RESULT=" + json.dumps(out))
"""
)


def _run(code: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT=")]
    return json.loads(line.removeprefix("RESULT="))


def test_the_operators_run_without_openlineage():
    """Imports, builds and runs the batch (SQLite -> stand-in) and a single create with every
    OpenLineage module unimportable; only asking for lineage fails, with an ImportError (which the
    OpenLineage listener, the only caller, never does without the provider)."""
    result = _run(RUN_WITHOUT_OPENLINEAGE)
    assert result == {
        "batch_created": 3,
        "single_id": True,
        "gong_created": 4,
        "loaded": [],
        "without_provider": "ImportError",
    }


def test_parsing_the_example_dags_loads_no_lineage_code():
    """Where the extra is installed, DAG parsing still never pays for it: the lineage module and the
    OpenLineage client load only when the listener asks an operator for its facets."""
    code = "import json, runpy, sys\n"
    for path in sorted(EXAMPLE_DAGS.glob("*.py")):
        code += f"runpy.run_path({str(path)!r}, run_name='dag_file')\n"
    code += f"print('RESULT=' + json.dumps([m for m in {LINEAGE_MODULES!r} if m in sys.modules]))\n"
    assert _run(code) == []
