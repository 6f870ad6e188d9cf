"""`make airflow`: a real local Airflow deployment with the provider, to click through in the UI.

The same deployment the deployment test starts (``tests._support.deployment``): API
server + UI, scheduler, DAG processor and triggerer with LocalExecutor; the example DAGs; the Gong
stand-in; the connections ``gong_default`` (access key + secret), ``gong_bearer`` (token) and
``warehouse`` (the SQLite demo warehouse of ``make demo``) in the metadata database. Runs in the
foreground; Ctrl-C stops every process and drops the PostgreSQL database. Every start is a fresh one
(the previous home under .demo/airflow-local is wiped at start, kept after exit for its logs).

``--executor celery`` (``make airflow EXECUTOR=celery``): CeleryExecutor instead, with a Redis broker
and two workers (``--workers``) of their own hostnames and directories; the warehouse and the Gong
connections' quota and OAuth store are then on PostgreSQL too (``gong_state``), so no worker shares a
file with another.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/_support: the deployment is a development aid, not in the wheel

from airflow_provider_gong.testing.standin import GongStandIn  # noqa: E402
from tests._support.celery import celery_unavailable, worker_name  # noqa: E402
from tests._support.deployment import (  # noqa: E402
    ADMIN_USER,
    STATE_CONN_ID,
    LocalDeployment,
    postgres_unreachable,
)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM (e.g. from a process manager) stops cleanly, like Ctrl-C


def banner(deployment: LocalDeployment) -> str:
    assert deployment.standin is not None
    home = _rel(deployment.home)
    if deployment.database:
        metadata = f"PostgreSQL database {deployment.database} on 127.0.0.1:5432 (dropped on exit)"
    else:
        metadata = f"SQLite {_rel(deployment.home / 'airflow.db')} ({postgres_unreachable() or 'as asked'})"
    dags = ", ".join(
        sorted(p.stem for p in deployment.dags_folder.glob("*.py") if not p.name.startswith("_"))
    )
    if deployment.celery:
        assert deployment.broker is not None
        indexes = range(1, deployment.workers + 1)
        workers = ", ".join(f"{worker_name(i)} (cwd {_rel(deployment.worker_dir(i))})" for i in indexes)
        slots = deployment.worker_concurrency
        executor = (
            f"CeleryExecutor, {deployment.workers} workers x {slots} slots: {workers}\n"
            f"                broker {deployment.broker.url} (queue {deployment.queue}), results in the "
            "metadata database"
        )
        warehouse = (
            f"PostgreSQL database {deployment.warehouse_database} (table meetings_to_schedule, "
            f"{deployment.warehouse_rows} rows;\n                dropped on exit); the Gong connections keep "
            f"their quota and OAuth tokens there too ({STATE_CONN_ID})"
        )
        connections = "warehouse and gong_state (PostgreSQL)"
    else:
        executor = "LocalExecutor (the scheduler runs the tasks)"
        warehouse = (
            f"{_rel(deployment.warehouse_path)} (table meetings_to_schedule, "
            f"{deployment.warehouse_rows} rows: every example succeeds\n"
            "                with its defaults; `make demo` shows what bad rows do)"
        )
        connections = "warehouse (SQLite)"
    return f"""
Airflow is running at {deployment.url}  (started in {deployment.timings["start total"]:.0f} s)
  Log in as:    {ADMIN_USER} / {deployment.admin_password}
  DAGs:         {dags} (paused: unpause, then Trigger; edits in example_dags/ are picked up)
  Executor:     {executor}
  Connections:  gong_default (access key + secret), gong_bearer (bearer token), {connections}
                check one: {_rel(deployment.bin_dir / "airflow")} connections test gong_default (with the
                AIRFLOW_HOME below; the UI's Test button fails on Airflow 3.3.2, see the guide)
  Gong stand-in {deployment.standin.url}: key {deployment.gong_key}, secret {deployment.gong_secret},
                token {deployment.gong_token}; meetings so far: {deployment.standin.url}/_standin/meetings
  Warehouse:    {warehouse}
  Metadata:     {metadata}
  CLI:          AIRFLOW_HOME={home} {_rel(deployment.bin_dir / "airflow")} dags list
  Logs:         {_rel(deployment.output_dir)}/*.log (components), {home}/logs (tasks)
Press Ctrl-C to stop everything.
"""


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make airflow", description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=ROOT / ".demo" / "airflow-local")
    parser.add_argument("--port", type=int, default=8080, help="API server port (another one if taken)")
    parser.add_argument("--metadata", choices=["auto", "postgres", "sqlite"], default="auto")
    parser.add_argument(
        "--no-triggerer", action="store_true", help="skip the triggerer (deferred tasks wait)"
    )
    parser.add_argument("--executor", choices=["local", "celery"], default="local")
    parser.add_argument("--workers", type=int, default=2, help="Celery workers (with --executor celery)")
    args = parser.parse_args(argv)
    if args.executor == "celery":
        reason = postgres_unreachable() or celery_unavailable()
        if args.metadata == "sqlite" or reason:
            why = reason or "--metadata sqlite"
            print(f"The Celery deployment needs PostgreSQL, Redis and the Celery provider: {why}")
            return 1

    signal.signal(signal.SIGTERM, _interrupt)
    # Python leaves SIGINT ignored when it started ignored (a background job of a script): Ctrl-C or
    # `kill -INT` must stop the deployment whatever started this.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    components = ["api-server", "scheduler", "dag-processor"] + ([] if args.no_triggerer else ["triggerer"])
    standin = GongStandIn()  # its fixed, documented credentials: easy to type into the connection form
    deployment = LocalDeployment(
        args.home,
        dags_folder=ROOT / "example_dags",
        metadata=args.metadata,
        api_port=args.port,
        components=components,
        gong_key=standin.access_key,
        gong_secret=standin.access_key_secret,
        gong_token=standin.access_token,
        # Only good rows: triggering any example with its form's defaults must succeed (issue 21).
        warehouse_bad_rows=False,
        log=lambda message: print(message, flush=True),
        executor=args.executor,
        workers=args.workers,
    )
    code = 0
    try:
        deployment.start()
        print(banner(deployment), flush=True)
        while True:
            dead = [c for c in deployment.running.values() if not c.alive()]
            if dead:
                for component in dead:
                    print(f"\n{component.name} exited ({component.process.returncode}); its output:")
                    print("\n".join(component.output.read_text(errors="replace").splitlines()[-40:]))
                code = 1
                break
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nStopping (a few seconds)...", flush=True)
    except Exception as exc:
        print(f"\nCould not start the deployment: {exc}", file=sys.stderr)
        code = 1
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave processes or the database behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        leftovers = deployment.stop()
        if leftovers:
            print(f"Killed {len(leftovers)} process(es) that outlived their group: {leftovers}")
        print(f"Stopped. Logs are kept in {_rel(deployment.root)} until the next start.")
    return code


if __name__ == "__main__":
    sys.exit(main())
