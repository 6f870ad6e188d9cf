"""DAG parse time of the example DAGs, next to a DAG using ``SQLExecuteQueryOperator`` and a trivial DAG.

Why this exists: Airflow's DAG processor re-parses every DAG file every few seconds, each time in a
fresh process, so whatever a DAG file imports at module level (and whatever its operators' constructors
do) is paid on every parse of every DAG that uses the provider. The goal (issue 9) is that each example
DAG parses in at most 1.2x the time of an equivalent DAG built on common-sql's
``SQLExecuteQueryOperator``, the operator most warehouse DAGs already use.

How: the DAG files are written to a temp folder (copies of ``example_dags/*.py``, a trivial DAG and a
``SQLExecuteQueryOperator`` DAG shaped like ``gong_meetings_from_warehouse``). Each parse runs in a FRESH
interpreter, like the DAG processor; inside it, ``import airflow``, the DagBag import and the parse of
a separate trivial warm-up DAG happen first (that loads the Task SDK and the DagBag machinery, which a
long-lived DAG processor has loaded before it parses a file), and only ``DagBag(dag_folder=<that one
file>)`` is timed. Interpreter and Airflow start-up (about 1.5 s, the same for every file) would drown a
difference of a few milliseconds, and what is left is what the DAG file itself costs. Files run interleaved
in rounds (A, B, C, A, B, C, ...) so machine noise hits them alike; one untimed warm-up round comes first.

Byte code is cached in a temp ``PYTHONPYCACHEPREFIX`` (warmed by that first round), as an installed
provider's ``.pyc`` files would be; ``--no-bytecode-cache`` compiles every module on every parse instead
(what an editable install gets under ``PYTHONDONTWRITEBYTECODE=1``). It only prints: nothing here
asserts a timing.

    .venv/bin/python benchmarks/bench_dag_parse.py [--rounds 15] [--no-bytecode-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DAGS = ROOT / "example_dags"
GOAL = 1.2  # each example DAG parses in at most GOAL x the SQLExecuteQueryOperator DAG's time
TRIVIAL, SQL_OP = "trivial", "sql_execute_query"

TRIVIAL_DAG = '''\
"""A trivial DAG: one @task, nothing but the Task SDK."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="trivial", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def trivial() -> None:
    @task
    def hello() -> str:
        return "hello"

    hello()


trivial()
'''

# Shaped like example_dags/gong_meetings_from_warehouse.py: same DAG arguments and params, one
# operator with templated connection and source, imported from its provider module at module level.
SQL_OP_DAG = '''\
"""
### Rows of a warehouse table, read by SQLExecuteQueryOperator

The common-sql baseline for the Gong warehouse DAG: the same DAG arguments and params, one task.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import Param, dag


@dag(
    dag_id="sql_execute_query",
    schedule="0 6 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["gong", "example", "warehouse"],
    render_template_as_native_obj=True,
    params={
        "table": Param("meetings_to_schedule", type="string"),
        "warehouse_conn_id": Param("warehouse", type="string"),
        "gong_conn_id": Param("gong_default", type="string"),
        "ledger_table": Param("gong_meeting_ledger", type="string"),
        "timezone": Param("UTC", type="string"),
        "fail_on_row_errors": Param(True, type="boolean"),
    },
)
def sql_execute_query() -> None:
    SQLExecuteQueryOperator(
        task_id="read_meetings",
        conn_id="{{ params.warehouse_conn_id }}",
        sql="SELECT * FROM {{ params.table }}",
    )


sql_execute_query()
'''

# Runs in the fresh interpreter: everything before the timer is the same for every DAG file.
PARSE_ONE = textwrap.dedent(
    """\
    import json, sys, time
    import airflow
    from airflow.dag_processing.dagbag import DagBag

    path, warm_up = sys.argv[1:3]
    DagBag(dag_folder=warm_up)  # loads the Task SDK and DagBag internals, as a long-lived processor has
    start = time.perf_counter()
    bag = DagBag(dag_folder=path)
    elapsed = time.perf_counter() - start
    print("RESULT=" + json.dumps({"ms": elapsed * 1000, "dags": sorted(bag.dag_ids),
                                  "errors": {str(k): str(v)[-500:] for k, v in bag.import_errors.items()}}))
    """
)


def write_dags(folder: Path) -> dict[str, Path]:
    """The contenders, name -> DAG file: trivial, the SQLExecuteQueryOperator DAG, each example DAG."""
    folder.mkdir(parents=True)
    files = {TRIVIAL: folder / "trivial.py", SQL_OP: folder / "sql_execute_query.py"}
    files[TRIVIAL].write_text(TRIVIAL_DAG)
    files[SQL_OP].write_text(SQL_OP_DAG)
    for example in sorted(EXAMPLE_DAGS.glob("*.py")):
        files[example.stem] = Path(shutil.copy(example, folder / example.name))
    return files


def child_env(tmp: Path, dags: Path, bytecode_cache: bool) -> dict[str, str]:
    """A throwaway AIRFLOW_HOME, no Airflow example DAGs, and the byte-code policy chosen."""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp / "home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    return env


def parse_once(path: Path, warm_up: Path, env: dict[str, str]) -> float:
    """Milliseconds DagBag took to collect ``path`` in a fresh interpreter; fails on import errors."""
    done = subprocess.run(
        [sys.executable, "-c", PARSE_ONE, str(path), str(warm_up)],
        env=env,
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT=")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"parsing {path.name} failed (rc={done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1].removeprefix("RESULT="))
    if result["errors"] or not result["dags"]:
        raise SystemExit(f"{path.name}: no DAG or import errors: {result['errors']}")
    return float(result["ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds (default 15)")
    parser.add_argument(
        "--no-bytecode-cache", action="store_true", help="compile every module on every parse"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gong-bench-dag-parse-") as tmp_name:
        tmp = Path(tmp_name)
        files = write_dags(tmp / "dags")
        warm_up = tmp / "warm_up" / "warm_up.py"
        warm_up.parent.mkdir()
        warm_up.write_text(TRIVIAL_DAG.replace('"trivial"', '"warm_up"'))
        env = child_env(tmp, tmp / "dags", bytecode_cache=not args.no_bytecode_cache)
        (tmp / "home").mkdir()
        for path in files.values():  # untimed round: writes the byte-code cache, fills the OS file cache
            parse_once(path, warm_up, env)
        times: dict[str, list[float]] = {name: [] for name in files}
        for number in range(1, args.rounds + 1):
            for name, path in files.items():
                times[name].append(parse_once(path, warm_up, env))
            print(f"round {number}/{args.rounds} done", file=sys.stderr)

    median = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"\nDagBag parse of one DAG file, fresh interpreter per parse, median of {args.rounds} rounds "
        f"(byte-code cache {'off' if args.no_bytecode_cache else 'on'}; Python {sys.version.split()[0]})\n"
    )
    header = (
        f"{'DAG file':<30} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'x SQL op':>9} {'x trivial':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, values in times.items():
        print(
            f"{name:<30} {median[name]:>10.1f} {min(values):>8.1f} {max(values):>8.1f} "
            f"{median[name] / median[SQL_OP]:>9.2f} {median[name] / median[TRIVIAL]:>10.2f}"
        )
    examples = [name for name in files if name not in (TRIVIAL, SQL_OP)]
    worst = max(examples, key=lambda name: median[name])
    ratio = median[worst] / median[SQL_OP]
    verdict = "MET" if ratio <= GOAL else "NOT MET"
    print(
        f"\nGoal: every example DAG <= {GOAL}x the SQLExecuteQueryOperator DAG. "
        f"Slowest example: {worst}, {ratio:.2f}x -> {verdict}"
    )


if __name__ == "__main__":
    main()
