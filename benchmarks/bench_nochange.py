"""What does a sync run cost when nothing changed? Compared with a bare read of the same table.

Why this exists (issue 22): a sync DAG on a schedule re-reads every row of its table, every run, and
0.2.0 validated every row (times, emails, the meeting model) twice before finding that nothing had
changed: about 1,600 rows/s on PostgreSQL, a hundred times slower than reading the table. Since then a
row is digested as read and compared with the ledger's digest (``sync/change.py``); only rows that
changed are validated.

For each database (PostgreSQL when reachable, SQLite) and size (20,000 and 200,000 rows), the script
seeds a meeting table and a ledger that already holds every row as created (fast: COPY on PostgreSQL,
``executemany`` on SQLite; the ledger's payload fingerprints are computed by a shortcut that is checked
against the real :class:`~airflow_provider_gong.meetings.Meeting` on a sample first), then times, side
by side and interleaved:

- the bare read: one cursor, ``SELECT *`` of the table, every row fetched;
- a no-change ``upsert`` run and a no-change ``mirror`` run of the real operator (its own process,
  the bundled Gong stand-in as Gong; 0 calls expected, every row ``unchanged``), run twice in that
  process: "cold" is the first run (with the imports ``execute()`` makes, which every task pays
  once), "warm" the second (what the rows cost);
- with ``--baseline REF``, the same runs on the code of REF (default: the commit before change
  detection), at the sizes up to ``--baseline-max`` rows (0.2.0 is slow: ~12 s per run at 20,000).

It prints seconds (median of ``--repeat``), rows/s and the ratio to the bare read. Nothing asserts.

    .venv/bin/python benchmarks/bench_nochange.py [--quick] [--repeat 3] [--sizes 20000,200000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "bc78e2b"  # 0.2.0 before change detection: every row validated, twice
PG_URI = os.environ.get("GONG_TEST_POSTGRES_URI", "postgresql://postgres@127.0.0.1:5432/postgres")
NAMES = ("id", "start_time", "end_time", "title", "organizer_email", "invitees", "external_id", "cancelled")
ORGANIZERS = ("rep@acme.com", "ae@acme.com", "csm@acme.com")


# -- seeding --------------------------------------------------------------------------------------------


def source_rows(count: int) -> list[tuple[Any, ...]]:
    base = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)).replace(
        minute=0, second=0, microsecond=0
    )
    rows = []
    for i in range(1, count + 1):
        begin = base + dt.timedelta(minutes=i % 500_000)
        rows.append(
            (
                i,
                begin,
                begin + dt.timedelta(minutes=30),
                f"Discovery call #{i}",
                ORGANIZERS[i % 3],
                f"buyer{i}@client.com",
                f"crm-evt-{100000 + i}",
                None,
            )
        )
    return rows


def payload_fingerprint(row: tuple[Any, ...]) -> str:
    """What ``Meeting.fingerprint()`` gives for these rows, without the model (checked on a sample)."""
    _, start, end, title, organizer, invitee, external_id, _ = row
    body = {
        "startTime": start.isoformat(),
        "endTime": end.isoformat(),
        "organizerEmail": organizer.lower(),
        "invitees": [{"email": invitee.lower()}],
        "title": title,
        "externalId": external_id,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def check_shortcut(rows: list[tuple[Any, ...]]) -> None:
    from airflow_provider_gong.meetings import Meeting

    for row in rows[:: max(1, len(rows) // 50)]:
        meeting = Meeting.build(**dict(zip(NAMES[1:7], row[1:7], strict=True)))
        if meeting.fingerprint() != payload_fingerprint(row):
            raise SystemExit(f"the seeding shortcut does not match Meeting.fingerprint() for row {row}")


def seed(db: str, target: Any, count: int, table: str, ledger: str) -> None:
    """The meeting table, and a ledger holding every row as created by an earlier run."""
    from airflow_provider_gong.rules import MeetingLimits
    from airflow_provider_gong.sync.ddl import ledger_ddl
    from airflow_provider_gong.sync.plan import DEFAULT_COLUMNS
    from airflow_provider_gong.sync.rows import RowReader

    rows = source_rows(count)
    check_shortcut(rows)
    stamp = dt.datetime.now(dt.timezone.utc).isoformat()
    kind = "TIMESTAMPTZ" if db == "postgresql" else "TIMESTAMP"
    create = (
        f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, start_time {kind}, end_time {kind}, "
        "title VARCHAR(1000), organizer_email VARCHAR(320), invitees TEXT, external_id VARCHAR(255), "
        "cancelled BOOLEAN)"
    )
    reader = RowReader(DEFAULT_COLUMNS, "UTC", MeetingLimits())
    conn = _connect(db, target)
    cur = conn.cursor()
    cur.execute(create)
    cur.execute(ledger_ddl("postgres" if db == "postgresql" else "sqlite", ledger))
    if db == "postgresql":
        with cur.copy(f"COPY {table} ({', '.join(NAMES)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        stored = [(r[0], r[1].isoformat(), r[2].isoformat(), *r[3:]) for r in rows]
        cur.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(NAMES))})", stored)
    conn.commit()
    # the digests of the rows as the run's driver returns them (the Airflow hook's, which may not be
    # psycopg 3): what a run computes
    from airflow.sdk import BaseHook

    run_conn = BaseHook.get_hook("warehouse").get_conn()
    run_cur = run_conn.cursor()
    run_cur.execute(f"SELECT {', '.join(NAMES)} FROM {table} ORDER BY id")
    digests = {r.key: r.digest for r in reader.read(list(NAMES), [tuple(x) for x in run_cur.fetchall()])}
    run_conn.close()
    entries = [
        (
            str(r[0]),
            "created",
            str(10**18 + r[0]),
            f"https://join.gong.io/acme/{r[0]}",
            "seeded",
            "[]",
            1,
            stamp,
            payload_fingerprint(r),
            r[4],
            r[2].astimezone(dt.timezone.utc).isoformat(),
            digests[str(r[0])],
        )
        for r in rows
    ]
    columns = (
        "row_key, status, meeting_id, meeting_url, request_id, additional_invitees, attempts, updated_at, "
        "fingerprint, organizer_email, end_time, source_fingerprint"
    )
    if db == "postgresql":
        with cur.copy(f"COPY {ledger} ({columns}) FROM STDIN") as copy:
            for entry in entries:
                copy.write_row(entry)
    else:
        cur.executemany(f"INSERT INTO {ledger} ({columns}) VALUES ({', '.join('?' * 12)})", entries)
    conn.commit()
    conn.close()


def _connect(db: str, target: Any) -> Any:
    if db == "postgresql":
        import psycopg

        return psycopg.connect(target)
    return sqlite3.connect(target)


def bare_read(db: str, target: Any, table: str) -> float:
    started = time.perf_counter()
    conn = _connect(db, target)
    cur = conn.cursor()
    cur.execute(f"SELECT * FROM {table}")
    count = 0
    while batch := cur.fetchmany(10_000):
        count += len(batch)
    conn.close()
    return time.perf_counter() - started


# -- one run of the operator, in its own process (PYTHONPATH picks the code version) --------------------


def _cell(spec: dict[str, Any]) -> dict[str, Any]:
    os.environ.update(AIRFLOW_HOME=spec["home"], AIRFLOW__CORE__LOAD_EXAMPLES="False")
    from airflow_provider_gong.transfers.sql_to_gong import SqlToGongMeetingsOperator

    op = SqlToGongMeetingsOperator(
        task_id="nochange",
        sql_conn_id="warehouse",
        table=spec["table"],
        ledger_table=spec["ledger"],
        sync_mode=spec["mode"],
    )
    seconds, unchanged, calls = [], [], 0
    for _ in range(2):  # cold: the first run in a process (a task's imports included), then warm
        started = time.perf_counter()
        summary = op.execute({})
        seconds.append(time.perf_counter() - started)
        unchanged.append(summary["unchanged"])
        calls += summary["gong_calls"]
    return {"cold": seconds[0], "warm": seconds[1], "unchanged": min(unchanged), "calls": calls}


def _run(spec: dict[str, Any], tree: Path, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--cell", json.dumps(spec)],
        env={**os.environ, **env, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=False,
        cwd=tree,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        tail = "\n".join(out.stderr.strip().splitlines()[-8:])
        raise SystemExit(f"cell {spec} failed ({out.returncode}):\n{tail}")
    return json.loads(lines[-1][len("RESULT ") :])


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


def _postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_URI, connect_timeout=3):
            return True
    except Exception:
        return False


def _drop(db: str, target: Any, names: list[str]) -> None:
    if db != "postgresql":
        return
    conn = _connect(db, target)
    for name in names:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.commit()
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2,000 and 20,000 rows, one run each")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the median is shown")
    parser.add_argument("--sizes", default="20000,200000")
    parser.add_argument("--baseline", default=BASELINE, help="git ref to compare with ('' for none)")
    parser.add_argument("--baseline-max", type=int, default=20_000, help="largest size the baseline runs")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell:
        print("RESULT " + json.dumps(_cell(json.loads(args.cell))), flush=True)
        return
    from airflow_provider_gong.testing.standin import GongStandIn

    sizes = [2_000, 20_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    repeat = 1 if args.quick else args.repeat
    versions = {"current": ROOT}
    if args.baseline:
        tree = _baseline_tree(args.baseline)
        if tree is not None:
            versions[args.baseline] = tree
    dbs = ([] if args.no_postgres or not _postgres_available() else ["postgresql"]) + ["sqlite"]
    if "postgresql" not in dbs and not args.no_postgres:
        print(f"(PostgreSQL not reachable at {PG_URI}: SQLite only)")
    home = tempfile.mkdtemp(prefix="gong-bench-nochange-")
    standin = GongStandIn(port=0, rate_limit_per_second=None).start()
    gong = standin.connection_json(rate_limit_per_second=1000, daily_quota=1_000_000)
    print(f"A sync run where nothing changed vs a bare read of the table; median of {repeat} run(s)\n")
    print(
        "warm: the second run in the task's process; cold: the first (lazy imports of execute() included)\n"
    )
    header = (
        f"{'db':<11}{'rows':>8}  {'what':<26}{'warm s':>8}{'rows/s':>10}{'x read':>8}"
        f"{'cold s':>9}{'rows/s':>10}{'x read':>8}"
    )
    print(header)
    print("-" * len(header))
    try:
        for db in dbs:
            for count in sizes:
                _measure(db, count, versions, repeat, args.baseline_max, home, gong)
    finally:
        standin.stop()
    calls = sum(1 for _, path, _ in standin.log if path.startswith("/v2/meetings") and "status" not in path)
    print(f"\nGong meeting calls made by all runs: {calls} (0 expected)")


def _measure(
    db: str, count: int, versions: dict[str, Path], repeat: int, baseline_max: int, home: str, gong: str
) -> None:
    suffix = f"{os.getpid()}_{count}"
    table, ledger = f"nochange_src_{suffix}", f"nochange_ledger_{suffix}"
    if db == "postgresql":
        target: Any = PG_URI
        env = {"AIRFLOW_CONN_WAREHOUSE": PG_URI}
    else:
        target = str(Path(home) / f"wh_{count}.db")
        env = {"AIRFLOW_CONN_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": target})}
    env["AIRFLOW_CONN_GONG_DEFAULT"] = gong
    os.environ.update(env, AIRFLOW_HOME=home, AIRFLOW__CORE__LOAD_EXAMPLES="False")  # for seed()
    _drop(db, target, [table, ledger, f"{ledger}_lock"])
    started = time.perf_counter()
    seed(db, target, count, table, ledger)
    print(f"{db:<11}{count:>8}  (seeded in {time.perf_counter() - started:.1f} s)")
    cells = [("bare read", None, None)]
    for name, tree in versions.items():
        if name == "current" or count <= baseline_max:
            cells += [(f"upsert run ({name})", "upsert", tree), (f"mirror run ({name})", "mirror", tree)]
    times: dict[str, list[float]] = {what: [] for what, _, _ in cells}
    cold: dict[str, list[float]] = {what: [] for what, _, _ in cells}
    try:
        for _ in range(repeat):
            for what, mode, tree in cells:  # interleaved: the machine's noise hits every cell alike
                if mode is None:
                    times[what].append(bare_read(db, target, table))
                    cold[what].append(times[what][-1])
                    continue
                spec = {"home": home, "table": table, "ledger": ledger, "mode": mode}
                result = _run(spec, tree, env)
                if result["unchanged"] != count or result["calls"]:
                    raise SystemExit(f"{what}: not a no-change run: {result}")
                times[what].append(result["warm"])
                cold[what].append(result["cold"])
    finally:
        _drop(db, target, [table, ledger, f"{ledger}_lock"])
    read = statistics.median(times["bare read"])
    for what, _, _ in cells:
        warm, first = statistics.median(times[what]), statistics.median(cold[what])
        print(
            f"{db:<11}{count:>8}  {what:<26}{warm:>8.3f}{count / warm:>10,.0f}{warm / read:>8.1f}"
            f"{first:>9.3f}{count / first:>10,.0f}{first / read:>8.1f}"
        )


if __name__ == "__main__":
    if "--cell" not in sys.argv:
        sys.path.insert(0, str(ROOT))
    main()
