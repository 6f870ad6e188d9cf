"""Does the batch keep Gong's pace when the warehouse is slow? And does memory stay flat with size?

Why this exists: a real warehouse (Snowflake, BigQuery, Redshift) answers a statement in 50-500 ms,
SQLite in microseconds. A batch that writes its ledger in line with each Gong call (0.1.0-0.2.0: two
statements and two commits per row) falls behind Gong's 3 calls/s as soon as a round trip costs
150 ms. Here every ledger and source round trip (execute, commit, rollback) is slowed by L ms with a
DB-API proxy (``tests._support.slowdb``) over SQLite, and over PostgreSQL when one is
reachable, and each cell runs the real operator against the bundled Gong stand-in, in its own process:

- pace = (calls - 1) / (last call - first call), as the stand-in saw them, divided by the limit: the
  share of Gong's rate the batch achieves while it works (goal >= 0.95 at 3/s with L = 150 ms and at
  10/s with L = 50 ms);
- end-to-end = the ideal time (rows / rate) over the task's whole run, set-up reads included;
- statements/row = every execute the run made (source reads, ledger set-up, claims, outcomes) over rows.

With ``--baseline REF`` (default: the last commit before the pipeline) the same cells also run the
code of that commit, side by side in the same run, so the machine's noise hits both alike. The memory
part runs a batch over 100 and 100,000 rows whose ledger already holds all but 100 of them (so both
make the same 100 calls) and prints peak traced memory of each. It only prints; nothing asserts.

A last part (issue 22 part 5) runs 90 rows at 3/s with every round trip taking 1 s (BigQuery DML) on a
ledger that already exists, side by side with ``--slow-baseline`` (default bc78e2b, before the
overlapped start-up): pace over the create window (goal >= 0.95), the whole run against the ideal
30 s (goal <= 1.2x), and the round trips before the first call and after the last.

    .venv/bin/python benchmarks/bench_warehouse.py [--quick] [--repeat 3] [--baseline 43f6070]
        [--slow-baseline bc78e2b] [--no-slow]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "43f6070"  # 0.2.0 after issue 8: the ledger written in line, row by row
PG_URI = os.environ.get("GONG_TEST_POSTGRES_URI", "postgresql://postgres@127.0.0.1:5432/postgres")
GOALS = {(3.0, 150.0): 0.95, (10.0, 50.0): 0.95}
#: issue 22 part 5: every statement takes a second (BigQuery DML); 90 rows at 3/s, compared with this
LATENCY_BASELINE = "bc78e2b"  # main before the overlapped start-up
SLOW = {"rate": 3.0, "latency_ms": 1000.0, "rows": 90}
SLOW_GOALS = {"pace": 0.95, "x_ideal": 1.2}


# -- one cell, in a fresh process (PYTHONPATH picks the code version) ---------------------------------


def _cell(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the batch once; return what the stand-in and the round-trip counter saw."""
    home = tempfile.mkdtemp(prefix="gong-bench-home-")
    os.environ.update(AIRFLOW_HOME=home, AIRFLOW__CORE__LOAD_EXAMPLES="False")

    from airflow.sdk import BaseHook

    from airflow_provider_gong.testing.standin import GongStandIn
    from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator

    # the latency proxy and the demo table come from this checkout's files: an older code version (the
    # baseline cell) does not have them where this one keeps them
    slowdb = _support("slowdb")
    warehouse = _support("warehouse")
    create_meetings_table, insert_meetings = warehouse.create_meetings_table, warehouse.insert_meetings

    rate, rows, latency = spec["rate"], spec["rows"], spec["latency_ms"] / 1000.0
    suffix = f"{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    table, ledger = f"bench_meetings_{suffix}", f"bench_ledger_{suffix}"
    if spec["db"] == "sqlite":
        conn = {"conn_type": "sqlite", "host": str(Path(home) / "warehouse.db")}
        os.environ["AIRFLOW_CONN_WAREHOUSE"] = json.dumps(conn)
    else:
        os.environ["AIRFLOW_CONN_WAREHOUSE"] = PG_URI
    hook = BaseHook.get_hook("warehouse")
    create_meetings_table(hook, table)
    insert_meetings(hook, _rows(rows), table)
    if spec.get("ledger") == "existing":  # as every run after the first finds it (made by the DDL it prints)
        from airflow_provider_gong.sync.ddl import lease_ddl, ledger_ddl, lock_table_name

        kind = "sqlite" if spec["db"] == "sqlite" else "postgres"
        hook.run([ledger_ddl(kind, ledger), lease_ddl(kind, lock_table_name(ledger))])
    standin = GongStandIn(port=0, rate_limit_per_second=rate * 1.5).start()
    os.environ["AIRFLOW_CONN_GONG_DEFAULT"] = standin.connection_json(rate_limit_per_second=rate)
    op = SqlToGongMeetingsOperator(task_id="bench", sql_conn_id="warehouse", table=table, ledger_table=ledger)
    try:
        with slowdb.slow_connections(type(hook), latency) as trips:
            started, wall = time.monotonic(), time.time()
            summary = op.execute({})
            elapsed = time.monotonic() - started
        times = sorted(c.at for c in standin.created)
        throttled = sum(1 for entry in standin.log if entry[2] == 429)
    finally:
        standin.stop()
        if spec["db"] != "sqlite":
            hook.run([f"DROP TABLE IF EXISTS {n}" for n in (table, ledger, f"{ledger}_lock")])
    pace = (len(times) - 1) / (times[-1] - times[0]) / rate if len(times) > 1 else 0.0
    events = getattr(trips, "events", [])
    return {
        "created": summary["created"],
        "pace": pace,
        "end_to_end": (rows / rate) / elapsed,
        "x_ideal": elapsed / (rows / rate),
        "to_first_call": times[0] - wall if times else 0.0,
        "trips_before": sum(1 for e in events if times and e[3] < times[0]),
        "trips_after": sum(1 for e in events if times and e[3] > times[-1]),
        "statements_per_row": trips.executes / rows,
        "commits_per_row": trips.commits / rows,
        "answers_429": throttled,
    }


def _rows(count: int, *, minutes: bool = False) -> list[tuple[Any, ...]]:
    from datetime import datetime, timedelta, timezone

    base = (datetime.now(timezone.utc) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    step = timedelta(minutes=1) if minutes else timedelta(hours=1)
    out = []
    for i in range(1, count + 1):
        begin = base + step * i
        out.append(
            (
                i,
                begin.isoformat(),
                (begin + timedelta(minutes=30)).isoformat(),
                f"Discovery call #{i}",
                ("rep@acme.com", "ae@acme.com", "csm@acme.com")[i % 3],
                f"buyer{i}@client.com",
                f"crm-evt-{100000 + i}",
            )
        )
    return out


def _memory_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak traced memory of a run over ``rows`` rows, all but 100 of them already in the ledger."""
    home = tempfile.mkdtemp(prefix="gong-bench-home-")
    os.environ.update(AIRFLOW_HOME=home, AIRFLOW__CORE__LOAD_EXAMPLES="False")
    import tracemalloc

    from airflow.sdk import BaseHook

    warehouse = _support("warehouse")
    create_meetings_table, insert_meetings = warehouse.create_meetings_table, warehouse.insert_meetings
    from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator

    os.environ["AIRFLOW_CONN_WAREHOUSE"] = json.dumps({"conn_type": "sqlite", "host": f"{home}/wh.db"})
    os.environ["AIRFLOW_CONN_GONG_DEFAULT"] = spec["gong"]
    hook = BaseHook.get_hook("warehouse")
    rows = spec["rows"]
    create_meetings_table(hook, "m")
    insert_meetings(hook, _rows(rows, minutes=True), "m")
    hook.run(
        "CREATE TABLE l (row_key VARCHAR(255) NOT NULL PRIMARY KEY, status VARCHAR(16) NOT NULL, "
        "meeting_id TEXT, meeting_url TEXT, request_id TEXT, additional_invitees TEXT, error TEXT, "
        "error_kind VARCHAR(16), attempts INTEGER NOT NULL, updated_at VARCHAR(40) NOT NULL)"
    )
    done = [(str(i), "created", str(i), "u", "r", "[]", None, None, 1, "t") for i in range(1, rows - 99)]
    hook.insert_rows("l", done, commit_every=5000)
    op = SqlToGongMeetingsOperator(task_id="mem", sql_conn_id="warehouse", table="m", ledger_table="l")
    tracemalloc.start()
    summary = op.execute({})
    _, peak = tracemalloc.get_traced_memory()
    return {"created": summary["created"], "peak_mib": peak / 2**20}


# -- the parent: cells side by side -------------------------------------------------------------------


def _baseline_tree(ref: str) -> Path | None:
    target = Path(tempfile.mkdtemp(prefix="gong-bench-baseline-"))
    archive = subprocess.run(
        ["git", "archive", ref, "airflow_provider_gong"], cwd=ROOT, capture_output=True, check=False
    )
    if archive.returncode != 0:
        print(f"(baseline {ref} not available: {archive.stderr.decode().strip()}; current code only)")
        return None
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def _run(kind: str, spec: dict[str, Any], tree: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [sys.executable, __file__, f"--{kind}", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tree,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        tail = "\n".join(out.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"cell {spec} failed ({out.returncode}):\n{tail}")
    return json.loads(lines[-1][len("RESULT ") :])


def _postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_URI, connect_timeout=3):
            return True
    except Exception:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rows per cell (noisier)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the median is shown")
    parser.add_argument("--baseline", default=BASELINE, help="git ref to compare with ('' for none)")
    parser.add_argument("--latencies", default="0,50,150", help="ms added to each round trip")
    parser.add_argument("--rates", default="3,10", help="Gong calls/s")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-slow", action="store_true", help="skip the 1 s-per-statement cells")
    parser.add_argument("--slow-only", action="store_true", help="only the 1 s-per-statement cells")
    parser.add_argument(
        "--slow-baseline", default=LATENCY_BASELINE, help="git ref the 1 s cells compare with ('' for none)"
    )
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    parser.add_argument("--memory-cell", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell:
        print("RESULT " + json.dumps(_cell(json.loads(args.cell))), flush=True)
        return
    if args.memory_cell:
        print("RESULT " + json.dumps(_memory_cell(json.loads(args.memory_cell))), flush=True)
        return

    versions = {"current": ROOT}
    if args.baseline:
        tree = _baseline_tree(args.baseline)
        if tree is not None:
            versions = {f"{args.baseline} (row by row)": tree, **versions}
    dbs = ["sqlite"] + ([] if args.no_postgres or not _postgres_available() else ["postgresql"])
    if "postgresql" not in dbs and not args.no_postgres:
        print(f"(PostgreSQL not reachable at {PG_URI}: SQLite only)")
    seconds = 8 if args.quick else 20
    if args.slow_only:
        verdicts = _slow_warehouse(args, dbs)
        print(f"\nGoals: {'all met' if all(verdicts) else 'NOT all met'}")
        return
    print(f"Batch pace vs a slow warehouse: {seconds} s of calls per cell, median of {args.repeat} run(s)\n")
    header = (
        f"{'db':<11}{'limit':>6}{'L ms':>6}  {'version':<24}{'pace':>7}{'e2e':>7}"
        f"{'stmts/row':>11}{'commits/row':>13}{'429s':>6}  goal"
    )
    print(header)
    print("-" * len(header))
    verdicts = []
    for db in dbs:
        for rate in [float(r) for r in args.rates.split(",")]:
            for latency in [float(x) for x in args.latencies.split(",")]:
                spec = {"db": db, "rate": rate, "latency_ms": latency, "rows": int(rate * seconds) + 1}
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name in versions}
                for _ in range(args.repeat):
                    for name, tree in versions.items():  # interleaved: noise hits both alike
                        runs[name].append(_run("cell", spec, tree))
                for name in versions:
                    med = {k: statistics.median(r[k] for r in runs[name]) for k in runs[name][0]}
                    goal = GOALS.get((rate, latency))
                    mark = ""
                    if goal is not None and name == "current":
                        ok = med["pace"] >= goal and med["statements_per_row"] <= 1.0
                        mark = f">= {goal} {'met' if ok else 'MISSED'}"
                        verdicts.append(ok)
                    print(
                        f"{db:<11}{rate:>6.0f}{latency:>6.0f}  {name:<24}{med['pace']:>7.3f}"
                        f"{med['end_to_end']:>7.3f}{med['statements_per_row']:>11.2f}"
                        f"{med['commits_per_row']:>13.2f}{med['answers_429']:>6.0f}  {mark}"
                    )
    if not args.no_slow:
        verdicts += _slow_warehouse(args, dbs)
    if not args.no_memory:
        print("\nPeak traced memory of one run (the ledger already holds all but 100 rows: 100 calls each)")
        from airflow_provider_gong.testing.standin import GongStandIn

        standin = GongStandIn(port=0, rate_limit_per_second=None).start()
        try:
            gong = standin.connection_json(rate_limit_per_second=1000, daily_quota=1_000_000)
            sizes = [100, 10_000] if args.quick else [100, 100_000]
            peaks = {n: _run("memory-cell", {"rows": n, "gong": gong}, ROOT)["peak_mib"] for n in sizes}
        finally:
            standin.stop()
        small, large = sizes
        print(f"  {small:>7} rows: {peaks[small]:7.2f} MiB")
        print(f"  {large:>7} rows: {peaks[large]:7.2f} MiB   ratio {peaks[large] / peaks[small]:.2f}x")
    if verdicts:
        print(f"\nGoals: {'all met' if all(verdicts) else 'NOT all met'}")


def _slow_warehouse(args: argparse.Namespace, dbs: list[str]) -> list[bool]:
    """
    Issue 22 part 5: every statement takes 1 s (BigQuery DML), 90 rows at 3/s, on a ledger that exists.

    Side by side with ``--slow-baseline`` (interleaved, same run). Pace over the create window, the
    whole run against the ideal 30 s, and the round trips before the first call and after the last.
    """
    versions = {"current": ROOT}
    if args.slow_baseline:
        tree = _baseline_tree(args.slow_baseline)
        if tree is not None:
            versions = {args.slow_baseline: tree, **versions}
    ideal = SLOW["rows"] / SLOW["rate"]
    print(
        f"\n1 s per warehouse round trip (BigQuery DML), {SLOW['rows']} rows at {SLOW['rate']:.0f}/s, ledger "
        f"already made; ideal {ideal:.0f} s; median of {args.repeat} run(s)\n"
    )
    header = (
        f"{'db':<11}{'version':<10}{'pace':>7}{'run / ideal':>13}{'1st call s':>12}"
        f"{'trips before':>14}{'trips after':>13}{'stmts/row':>11}  goal"
    )
    print(header)
    print("-" * len(header))
    verdicts = []
    for db in dbs:
        spec = {**SLOW, "db": db, "ledger": "existing"}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in versions}
        for _ in range(args.repeat):
            for name, tree in versions.items():
                runs[name].append(_run("cell", spec, tree))
        for name in versions:
            med = {k: statistics.median(r[k] for r in runs[name]) for k in runs[name][0]}
            mark = ""
            if name == "current":
                ok = med["pace"] >= SLOW_GOALS["pace"] and med["x_ideal"] <= SLOW_GOALS["x_ideal"]
                mark = f">= {SLOW_GOALS['pace']}, <= {SLOW_GOALS['x_ideal']}x {'met' if ok else 'MISSED'}"
                verdicts.append(ok)
            trips = f"{med['trips_before']:>14.0f}{med['trips_after']:>13.0f}"
            print(
                f"{db:<11}{name:<10}{med['pace']:>7.3f}{med['x_ideal']:>12.2f}x{med['to_first_call']:>12.1f}"
                f"{trips}{med['statements_per_row']:>11.2f}  {mark}"
            )
    return verdicts


def _support(name: str) -> Any:
    """A module of this checkout's tests/_support, loaded from its file (not from a package)."""
    if name in sys.modules:
        return sys.modules[name]
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "_support" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT)) if "--cell" not in sys.argv and "--memory-cell" not in sys.argv else None
    main()
