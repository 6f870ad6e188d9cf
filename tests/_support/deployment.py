"""A real, local Airflow deployment around the Gong stand-in: what ``dag.test()`` does not exercise.

``dag.test()`` runs every task inside the test process: no supervisor (so no secret masking of what a
task writes to its log), no executor, no scheduler, no DAG processor, no API server, no UI. This module
starts those for real, the way a user's deployment runs them:

- a fresh ``AIRFLOW_HOME`` whose ``airflow.cfg`` holds every setting (so ``AIRFLOW_HOME=... airflow``
  from another shell talks to the same deployment), a PostgreSQL metadata database created for it on
  the local server and dropped afterwards (or SQLite), LocalExecutor;
- ``airflow db migrate``, then ``airflow api-server``, ``airflow scheduler`` and ``airflow
  dag-processor`` (optionally ``airflow triggerer``) as subprocesses, each in its own process group so
  that stopping it also stops everything it forked (executor workers, task supervisors, log servers);
- the Gong stand-in (in this process) and the connections the example DAGs use, created in the
  metadata database with ``airflow connections add``; a SQLite "warehouse" seeded like ``make demo``;
- a SimpleAuthManager user ``admin`` with a password generated here, and a small REST client.

Used by the deployment test (``tests/deployment``) and by ``make airflow`` (``scripts/airflow_local.py``),
so both start exactly the same thing. Standard library plus ``requests``; ``psycopg`` only for PostgreSQL.
Nothing here imports Airflow: the deployment's processes do, with the deployment's configuration.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast

import requests

from airflow_provider_gong.testing.standin import GongStandIn
from tests._support.celery import (
    HOSTNAME_CALLABLE,
    RedisBroker,
    worker_command,
    worker_env,
    worker_name,
    worker_ready,
)
from tests._support.warehouse import create_meetings_table, demo_rows, insert_meetings

#: The repository (the Celery deployment's processes import tests._support.worker_hostname from it).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: The PostgreSQL server (maintenance database) the metadata databases are created on.
PG_ADMIN_URI = os.environ.get("GONG_TEST_POSTGRES_URI", "postgresql://postgres@127.0.0.1:5432/postgres")
#: Every metadata database this module creates starts with this (so leftovers are easy to spot).
DB_PREFIX = "gong_af_"
ADMIN_USER = "admin"
#: The file that marks a directory as a deployment's (the only kind :class:`LocalDeployment` wipes).
ROOT_MARKER = ".gong-local-deployment"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
#: Marks every process of a deployment (inherited by all their children), to find any left behind.
MARKER_ENV = "GONG_LOCAL_DEPLOYMENT"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
EXECUTORS = ("local", "celery")
#: The PostgreSQL connection of the Celery deployment's warehouse, which also keeps the Gong
#: connections' quota and OAuth token chain (``quota_backend`` sql): no file is shared between workers.
STATE_CONN_ID = "gong_state"
_COMPONENT_COMMANDS: dict[str, tuple[str, ...]] = {
    "api-server": ("api-server",),
    "scheduler": ("scheduler",),
    "dag-processor": ("dag-processor",),
    "triggerer": ("triggerer",),
}
_HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}


class DeploymentError(RuntimeError):
    """The deployment did not come up, or a DAG run did not finish; the message carries diagnostics."""


def postgres_unreachable(admin_uri: str = PG_ADMIN_URI) -> str | None:
    """Why PostgreSQL cannot host a metadata database here, or None when it can."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc}); install the test extra"
    try:
        with psycopg.connect(admin_uri, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure means: no usable server
        return f"PostgreSQL not reachable at {admin_uri}: {type(exc).__name__}: {' '.join(str(exc).split())}"
    return None


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when nothing listens on it, else a free loopback port chosen by the kernel."""
    return free_ports(1, preferred)[0]


def free_ports(count: int, preferred: int | None = None) -> list[int]:
    """``count`` distinct free loopback ports (the first is ``preferred`` when that one is free).

    The probe sockets stay bound until all are chosen, so the ports differ from each other. There is a
    window between closing them and the servers binding the ports; on a shared machine that is a small
    risk, paid once per deployment (start-up then fails loudly, naming the component).
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for want in [preferred or 0] + [0] * (count - 1):
            probe = stack.enter_context(socket.socket())
            # Like the servers do: a port whose last connections linger in TIME_WAIT is free for them.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", want))
            except OSError:  # the preferred port is taken
                probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
        return ports


class AirflowApi:
    """The deployment's REST API (``/api/v2``, ``/ui``, ``/auth``) with the admin's JWT.

    Errors raise :class:`DeploymentError` with the status and the answer's body, which is what a
    failing test needs to show.
    """

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # a proxy from the environment must not sit in front of 127.0.0.1
        self.token = token
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, *, expected: Iterable[int] = (200,), **kwargs: Any) -> Any:
        response = self.session.request(method, self.base_url + path, timeout=self.timeout, **kwargs)
        if response.status_code not in tuple(expected):
            raise DeploymentError(f"{method} {path} -> HTTP {response.status_code}: {response.text[:3000]}")
        return response.json() if response.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body, **kwargs)

    def patch(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self.request("PATCH", path, json=body, **kwargs)

    def close(self) -> None:
        self.session.close()


class _Component:
    """One Airflow command running in its own session (process group), output to a file."""

    def __init__(
        self, name: str, argv: Sequence[str], env: dict[str, str], output: Path, cwd: Path | None = None
    ) -> None:
        self.name = name
        self.output = output
        with output.open("ab") as sink:
            self.process = subprocess.Popen(
                list(argv),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches every child
            )
        self.pgid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)


class _SqliteWarehouse:
    """Just enough of a DbApiHook (``run``, ``insert_rows``) for :mod:`.warehouse` to seed a SQLite file
    without importing Airflow in this process (the deployment's processes are the Airflow here)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(self, sql: str) -> None:
        with contextlib.closing(sqlite3.connect(self.path)) as conn, conn:
            conn.execute(sql)

    def insert_rows(
        self, table: str, rows: Sequence[Sequence[Any]], target_fields: Sequence[str], commit_every: int = 0
    ) -> None:
        marks = ", ".join("?" * len(target_fields))
        sql = f"INSERT INTO {table} ({', '.join(target_fields)}) VALUES ({marks})"
        with contextlib.closing(sqlite3.connect(self.path)) as conn, conn:
            conn.executemany(sql, rows)

    def get_records(self, sql: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            return conn.execute(sql).fetchall()


class _PostgresWarehouse:
    """The same for the Celery deployment's PostgreSQL warehouse (psycopg, autocommit)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def run(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.uri, autocommit=True) as conn:
            conn.execute(sql)

    def insert_rows(
        self, table: str, rows: Sequence[Sequence[Any]], target_fields: Sequence[str], commit_every: int = 0
    ) -> None:
        import psycopg

        marks = ", ".join(["%s"] * len(target_fields))
        sql = f"INSERT INTO {table} ({', '.join(target_fields)}) VALUES ({marks})"
        with psycopg.connect(self.uri, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.executemany(sql, rows)

    def get_records(self, sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.uri, autocommit=True) as conn:
            return conn.execute(sql).fetchall()


class LocalDeployment:
    """Start, use and stop one local Airflow deployment. Use it as a context manager.

    :param home: a directory for AIRFLOW_HOME and everything else: new, empty, or an earlier
        deployment's (wiped at start; any other directory is refused).
    :param dags_folder: the DAG files; with ``dag_files``, only those files are copied into the home
        (faster to parse, and the run is immune to edits of the source tree while it lasts).
    :param metadata: ``postgres`` (a database ``gong_af_*`` created on :data:`PG_ADMIN_URI`, dropped at
        stop), ``sqlite``, or ``auto`` (PostgreSQL when reachable).
    :param api_port: the API server's port; taken when free, else a free one is picked. None: any.
    :param components: the long-running Airflow commands to start.
    :param schedule_dags: False turns off cron scheduling (``[scheduler] use_job_schedule``): only
        triggered runs happen, so a test is not raced by a scheduled run of the DAG it triggers.
    :param gong_key, gong_secret, gong_token: the stand-in's credentials (random when None).
    :param warehouse_rows: good rows in the demo warehouse's ``meetings_to_schedule``.
    :param warehouse_bad_rows: also the two bad rows of ``make demo`` (a batch run with
        ``fail_on_row_errors`` then fails, as intended there).
    :param standin_rate: the stand-in's rate limit (calls/s; None: none); 3 like Gong's default.
    :param standin_options: more :class:`GongStandIn` arguments (e.g. ``echo_authorization``).
    :param config: more ``{section: {option: value}}`` for airflow.cfg, applied last.
    :param executor: ``local`` (LocalExecutor) or ``celery``: CeleryExecutor with a Redis broker
        (:mod:`.celery`), the PostgreSQL metadata database as its result backend, ``workers`` workers
        of ``worker_concurrency`` slots each, each with its own hostname and working directory; the
        warehouse is then a PostgreSQL database of its own (``gong_af_*_wh``, dropped at stop) which
        also keeps the Gong connections' quota and OAuth tokens (``quota_backend`` sql,
        ``quota_conn_id`` :data:`STATE_CONN_ID`), so the workers share no file.
    """

    def __init__(
        self,
        home: Path,
        *,
        dags_folder: Path,
        dag_files: Sequence[str] | None = None,
        metadata: str = "auto",
        api_port: int | None = None,
        components: Sequence[str] = ("api-server", "scheduler", "dag-processor"),
        schedule_dags: bool = True,
        gong_key: str | None = None,
        gong_secret: str | None = None,
        gong_token: str | None = None,
        standin_rate: float | None = 3.0,
        standin_options: dict[str, Any] | None = None,
        warehouse_rows: int = 12,
        warehouse_bad_rows: bool = True,
        config: dict[str, dict[str, Any]] | None = None,
        log: Any = None,
        executor: str = "local",
        workers: int = 2,
        worker_concurrency: int = 2,
    ) -> None:
        if metadata not in ("auto", "postgres", "sqlite"):
            raise ValueError(f"metadata must be auto, postgres or sqlite, got {metadata!r}")
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
        if executor == "celery" and metadata == "sqlite":
            raise ValueError("the Celery deployment needs PostgreSQL (metadata and the result backend)")
        unknown = set(components) - set(_COMPONENT_COMMANDS)
        if unknown:
            raise ValueError(f"unknown components {sorted(unknown)}; known: {sorted(_COMPONENT_COMMANDS)}")
        self.root = Path(home).resolve()
        self.home = self.root / "home"
        self.source_dags = Path(dags_folder).resolve()
        self.dag_files = list(dag_files) if dag_files is not None else None
        self.metadata = metadata
        self.requested_port = api_port
        self.components = list(components)
        self.schedule_dags = schedule_dags
        self.gong_key = gong_key or f"key-{secrets.token_hex(6)}"
        self.gong_secret = gong_secret or f"secret-{secrets.token_urlsafe(18)}"
        self.gong_token = gong_token or f"token-{secrets.token_urlsafe(18)}"
        self.standin_rate = standin_rate
        self.standin_options = standin_options or {}
        self.warehouse_rows = warehouse_rows
        self.warehouse_bad_rows = warehouse_bad_rows
        self.extra_config = config or {}
        self.say = log or (lambda message: None)
        self.executor = executor
        self.workers = workers if executor == "celery" else 0
        self.worker_concurrency = worker_concurrency
        self.marker = uuid.uuid4().hex
        self.broker: RedisBroker | None = None
        self.warehouse_database: str | None = None
        #: components this deployment was told to kill (:meth:`kill_component`): not a failure
        self.killed: set[str] = set()
        self.bin_dir = Path(sys.executable).parent
        self.admin_password = secrets.token_urlsafe(12)
        self.database: str | None = None
        self.sql_alchemy_conn = ""
        self.port = 0
        self.standin: GongStandIn | None = None
        self.running: dict[str, _Component] = {}
        self.timings: dict[str, float] = {}
        self._api: AirflowApi | None = None
        self._stopped = threading.Event()
        self._started = False

    # -- paths and URLs -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dags_folder(self) -> Path:
        return self.home / "dags" if self.dag_files is not None else self.source_dags

    @property
    def warehouse_path(self) -> Path:
        """The SQLite warehouse (LocalExecutor; the Celery deployment's is :attr:`warehouse_database`)."""
        return self.root / "warehouse.db"

    @property
    def celery(self) -> bool:
        return self.executor == "celery"

    @property
    def queue(self) -> str:
        """The Celery queue of this deployment's tasks and workers (its own, like its Redis database)."""
        return f"gong-{self.marker[:12]}"

    def worker_dir(self, index: int) -> Path:
        """Worker ``index``'s working directory (cwd, TMPDIR, pid file), as on a machine of its own."""
        return self.root / "workers" / worker_name(index)

    def warehouse(self) -> Any:
        """The warehouse, with ``run``, ``insert_rows`` and ``get_records`` (no Airflow import)."""
        if self.warehouse_database:
            return _PostgresWarehouse(self._pg_uri(self.warehouse_database))
        return _SqliteWarehouse(self.warehouse_path)

    @property
    def output_dir(self) -> Path:
        """stdout/stderr of every command this class ran (not Airflow's own log folder)."""
        return self.root / "output"

    @property
    def log_folder(self) -> Path:
        """Airflow's ``[logging] base_log_folder``: the task logs the supervisor writes."""
        return self.home / "logs"

    @property
    def basic_value(self) -> str:
        """The Basic Authorization value a Gong call carries: base64 of ``key:secret``."""
        return base64.b64encode(f"{self.gong_key}:{self.gong_secret}".encode()).decode()

    @property
    def env(self) -> dict[str, str]:
        """The environment of every Airflow command: this deployment's home and nothing else of Airflow.

        Inherited ``AIRFLOW__*`` / ``AIRFLOW_CONN_*`` / ``AIRFLOW_VAR_*`` variables are dropped: they would
        override airflow.cfg (a test runner sets some) and could satisfy a connection lookup that must
        come from the metadata database.
        """
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))
            and k not in ("AIRFLOW_HOME", "AIRFLOW_CONFIG")
        }
        env.update(
            AIRFLOW_HOME=str(self.home),
            PATH=f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}",  # Airflow spawns `airflow` itself
            PYTHONUNBUFFERED="1",
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        if self.celery:  # every process imports [core] hostname_callable from tests._support
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env[MARKER_ENV] = self.marker
        return env

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> LocalDeployment:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 240.0) -> LocalDeployment:
        """Bring everything up and wait until the API answers and every component reports healthy.

        On any failure the caller must still call :meth:`stop` (the context manager does).
        """
        self._started = True
        atexit.register(self.stop)  # a crashed caller still stops the processes and drops the database
        begin = time.monotonic()
        self._prepare_home()
        self._create_database()
        if self.celery:
            self.broker = RedisBroker(self.root, self.marker, say=self.say).start()
        self._write_config()
        self._step("db migrate", lambda: self.airflow("db", "migrate", timeout=timeout))
        self.standin = GongStandIn(
            access_key=self.gong_key,
            access_key_secret=self.gong_secret,
            access_token=self.gong_token,
            rate_limit_per_second=self.standin_rate,
            **self.standin_options,
        ).start()
        self._step("connections add", self._add_connections)
        self._seed_warehouse()
        for name in self.components:
            argv = [str(self.bin_dir / "airflow"), *_COMPONENT_COMMANDS[name]]
            self.running[name] = _Component(name, argv, self.env, self.output_dir / f"{name}.log")
        self._start_workers()
        self._step("components healthy", lambda: self.wait_healthy(timeout))
        self.timings["start total"] = time.monotonic() - begin
        self.say(f"Airflow is up at {self.url} ({self.timings['start total']:.1f} s)")
        return self

    def stop(self, grace: float = 20.0) -> list[str]:
        """Stop every process, the stand-in, and drop the database. Safe to call repeatedly.

        Each component's process group gets SIGTERM (a graceful shutdown: the scheduler stops its
        executor workers, the API server its workers), then SIGKILL after ``grace`` seconds.

        :returns: the processes of the deployment that were still alive after their process groups
            were killed (they had left them); they are killed one by one, and the list is what a test
            asserts to be empty.
        """
        if self._stopped.is_set() or not self._started:
            return []
        self._stopped.set()
        begin = time.monotonic()
        if self._api:
            self._api.close()
        before = self.processes()
        for component in self.running.values():
            component.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for component in self.running.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(max(0.1, deadline - time.monotonic()))
        # A leader may exit before its children (executor workers, log servers): wait for them all.
        while time.monotonic() < deadline and _alive(before):
            time.sleep(0.2)
        for component in self.running.values():
            component.signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(5)
        time.sleep(0.2)
        escaped = {**_alive(before), **self.processes()}
        for pid, _ in escaped:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self.standin is not None:
            self.standin.stop()
        if self.broker is not None:
            self.broker.stop()
        self._drop_database()
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        self.timings["stop"] = time.monotonic() - begin
        return [f"pid {pid}: {command}" for (pid, _), command in escaped.items()]

    def _step(self, name: str, action: Any) -> None:
        begin = time.monotonic()
        self.say(f"{name}...")
        action()
        self.timings[name] = time.monotonic() - begin

    def _prepare_home(self) -> None:
        marker = self.root / ROOT_MARKER
        if self.root.exists() and any(self.root.iterdir()):
            if not marker.exists():  # never wipe a directory this class did not make
                raise DeploymentError(
                    f"{self.root} is not empty and not a deployment directory; not wiping it"
                )
            shutil.rmtree(self.root)
        self.home.mkdir(parents=True)
        marker.write_text("made by tests/_support/deployment.py; wiped at the next start\n")
        self.output_dir.mkdir()
        if self.dag_files is not None:
            (self.home / "dags").mkdir()
            for name in self.dag_files:  # a name in dags_folder, or a path (e.g. a test's own DAG)
                shutil.copy2(self.source_dags / name, self.home / "dags" / Path(name).name)
        # SimpleAuthManager reads its users' passwords from this file (it generates missing ones);
        # writing it first gives a known password instead of one printed in a log.
        passwords = self.home / "simple_auth_manager_passwords.json.generated"
        passwords.write_text(json.dumps({ADMIN_USER: self.admin_password}) + "\n")
        passwords.chmod(0o600)

    def _create_database(self) -> None:
        kind = self.metadata
        if kind == "auto":
            reason = postgres_unreachable()
            if reason and self.celery:
                raise DeploymentError(f"the Celery deployment needs PostgreSQL: {reason}")
            kind = "sqlite" if reason else "postgres"
            if reason:
                self.say(f"Metadata database: SQLite ({reason})")
        if kind == "sqlite":
            self.sql_alchemy_conn = f"sqlite:///{self.home / 'airflow.db'}"
            return
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        name = f"{DB_PREFIX}{secrets.token_hex(5)}"
        with psycopg.connect(PG_ADMIN_URI, connect_timeout=5, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            self.database = name
            if self.celery:
                conn.execute(f'CREATE DATABASE "{name}_wh"')
                self.warehouse_database = f"{name}_wh"
        info = conninfo_to_dict(make_conninfo(PG_ADMIN_URI, dbname=name))
        user = str(info.get("user") or "postgres")
        auth = user + (f":{info['password']}" if info.get("password") else "")
        host, port = info.get("host") or "127.0.0.1", info.get("port") or 5432
        self.sql_alchemy_conn = f"postgresql+psycopg2://{auth}@{host}:{port}/{name}"
        self.say(f"Metadata database: PostgreSQL {name}")

    def _pg_uri(self, database: str) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(PG_ADMIN_URI, dbname=database)

    def _pg_connection(self, database: str, description: str) -> dict[str, Any]:
        """``airflow connections add --conn-json`` of a postgres connection to ``database``."""
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(self._pg_uri(database))
        conn = {
            "conn_type": "postgres",
            "host": info.get("host") or "127.0.0.1",
            "port": int(info.get("port") or 5432),
            "login": info.get("user") or "postgres",
            "schema": database,
            "description": description,
        }
        if info.get("password"):
            conn["password"] = info["password"]
        return conn

    def _drop_database(self) -> None:
        import psycopg

        for attribute in ("warehouse_database", "database"):
            name = getattr(self, attribute)
            if not name:
                continue
            try:
                with psycopg.connect(PG_ADMIN_URI, connect_timeout=5, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:  # report, do not hide the test's own failure behind this one
                print(f"Could not drop the database {name}: {exc}", file=sys.stderr)
                continue
            setattr(self, attribute, None)

    def database_exists(self, name: str) -> bool:
        import psycopg

        with psycopg.connect(PG_ADMIN_URI, connect_timeout=5, autocommit=True) as conn:
            return (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
            )

    def _write_config(self) -> None:
        """airflow.cfg with every setting, so processes need nothing but AIRFLOW_HOME.

        The fernet key and JWT secret are generated here: Airflow generates them only when it writes a
        default airflow.cfg itself, and every process must share them (the scheduler signs the tokens
        that tasks present to the API server).
        """
        self.port, worker_log_port, trigger_log_port = free_ports(3, self.requested_port)
        config: dict[str, dict[str, Any]] = {
            "core": {
                "dags_folder": self.dags_folder,
                "executor": "LocalExecutor",
                "load_examples": "False",
                "parallelism": 4,  # LocalExecutor worker processes; 32 by default, too many on 2 cores
                "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
                "execution_api_server_url": f"{self.url}/execution/",
                "test_connection": "Enabled",
                "auth_manager": SIMPLE_AUTH_MANAGER,
                "simple_auth_manager_users": f"{ADMIN_USER}:admin",
                "simple_auth_manager_all_admins": "False",
            },
            "database": {"sql_alchemy_conn": self.sql_alchemy_conn},
            "api": {
                "host": "127.0.0.1",
                "port": self.port,
                "base_url": self.url,
                "workers": 1,
                "secret_key": secrets.token_urlsafe(16),
                "expose_config": "True",
            },
            "api_auth": {"jwt_secret": secrets.token_urlsafe(64)},
            "scheduler": {
                "use_job_schedule": str(self.schedule_dags),
                "scheduler_idle_sleep_time": 0.5,
                "enable_health_check": "False",
            },
            "dag_processor": {
                # One pass at start-up parses every file; then new files are looked for every 10 s and
                # changed ones re-parsed every 10 s (defaults 300 / 30 make a user wait for an edit).
                "refresh_interval": 10,
                "min_file_process_interval": 10,
                "parsing_processes": 1,
                "print_stats_interval": 300,
            },
            "logging": {
                "logging_level": "INFO",
                # The log servers bind these on every deployment: never the defaults (8793/8794),
                # which another deployment on the machine (or a second test run) may hold.
                "worker_log_server_port": worker_log_port,
                "trigger_log_server_port": trigger_log_port,
            },
        }
        if self.celery:
            self._celery_config(config)
        for section, options in self.extra_config.items():
            config.setdefault(section, {}).update(options)
        lines = []
        for section, options in config.items():
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {value}" for key, value in options.items())
            lines.append("")
        path = self.home / "airflow.cfg"
        path.write_text("\n".join(lines))
        path.chmod(0o600)

    def _celery_config(self, config: dict[str, dict[str, Any]]) -> None:
        """CeleryExecutor: Redis broker, PostgreSQL result backend, a queue of its own, few slots."""
        assert self.broker is not None
        slots = self.workers * self.worker_concurrency
        config["core"].update(
            executor="CeleryExecutor",
            parallelism=slots,
            # Task instances record the worker's own name (GONG_WORKER_HOSTNAME), not this machine's.
            hostname_callable=HOSTNAME_CALLABLE,
        )
        config["celery"] = {
            "broker_url": self.broker.url,
            "result_backend": f"db+{self.sql_alchemy_conn}",
            "worker_concurrency": self.worker_concurrency,
            # One task at a time per free slot: a worker does not hoard queued tasks the other could run.
            "worker_prefetch_multiplier": 1,
            "sync_parallelism": 1,
        }
        config["operators"] = {"default_queue": self.queue}
        # A worker that dies without a word (SIGKILL, a lost machine) leaves its task instances
        # "running": the scheduler fails them (and retries them, if they have retries) once they miss
        # their heartbeats this long; the default, 300 s, is the same path five minutes later.
        config["scheduler"].update(
            task_instance_heartbeat_timeout=15, task_instance_heartbeat_timeout_detection_interval=2
        )
        config["workers"] = {"min_heartbeat_interval": 2}

    def connections(self) -> dict[str, dict[str, Any]]:
        """The connections the example DAGs use, as ``airflow connections add --conn-json`` takes them."""
        assert self.standin is not None
        connections: dict[str, dict[str, Any]] = {
            "gong_default": {
                "conn_type": "gong",
                "host": self.standin.url,
                "login": self.gong_key,
                "password": self.gong_secret,
                "description": "Gong stand-in (access key + secret)",
            },
            "gong_bearer": {
                "conn_type": "gong",
                "host": self.standin.url,
                "extra": {"access_token": self.gong_token},
                "description": "Gong stand-in (bearer token)",
            },
            "warehouse": {
                "conn_type": "sqlite",
                "host": str(self.warehouse_path),
                "description": "The demo warehouse (SQLite)",
            },
        }
        if self.warehouse_database:  # Celery: no file shared between workers
            shared = {"quota_backend": "sql", "quota_conn_id": STATE_CONN_ID}
            connections["gong_default"]["extra"] = shared
            connections["gong_bearer"]["extra"] = {**connections["gong_bearer"]["extra"], **shared}
            connections["warehouse"] = self._pg_connection(
                self.warehouse_database, "The demo warehouse (PostgreSQL)"
            )
            connections[STATE_CONN_ID] = self._pg_connection(
                self.warehouse_database, "Where the Gong connections keep their quota and OAuth tokens"
            )
        return connections

    def _add_connections(self) -> None:
        # `airflow connections add` costs an Airflow import (~2 s) each; run them side by side.
        procs = [
            (conn_id, self.airflow_async("connections", "add", conn_id, "--conn-json", json.dumps(conn)))
            for conn_id, conn in self.connections().items()
        ]
        for conn_id, proc in procs:
            out, _ = proc.communicate(timeout=120)
            self._record(f"connections add {conn_id}", out)
            if proc.returncode != 0 or f"conn_id`={conn_id}" not in out:
                raise DeploymentError(f"airflow connections add {conn_id} failed ({proc.returncode}): {out}")

    def _seed_warehouse(self) -> None:
        """The SQLite warehouse of ``make demo``: ``meetings_to_schedule`` with good rows (and two bad)."""
        hook = self.warehouse()
        create_meetings_table(hook, timestamp_type="TIMESTAMPTZ" if self.warehouse_database else "TIMESTAMP")
        insert_meetings(hook, demo_rows(self.warehouse_rows, bad=self.warehouse_bad_rows))

    # -- running Airflow commands ---------------------------------------------------------------

    def airflow_async(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(self.bin_dir / "airflow"), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def airflow(self, *args: str, timeout: float = 180.0) -> str:
        """Run one Airflow CLI command against this deployment; its output, or DeploymentError."""
        proc = self.airflow_async(*args)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            raise DeploymentError(f"airflow {args[0]} timed out after {timeout} s: {out[-3000:]}") from None
        self._record(" ".join(args[:2]), out)
        if proc.returncode != 0:
            raise DeploymentError(f"airflow {' '.join(args[:2])} failed ({proc.returncode}): {out[-3000:]}")
        return out

    def _record(self, command: str, output: str) -> None:
        """Keep a CLI command's output in output/cli.log (part of the logs a test scans for secrets)."""
        with (self.output_dir / "cli.log").open("a") as sink:
            sink.write(f"$ airflow {command}\n{output}\n")

    # -- the API --------------------------------------------------------------------------------

    def login(self, username: str = ADMIN_USER, password: str | None = None) -> str:
        """A JWT from the API server's SimpleAuthManager (``POST /auth/token``)."""
        answer = AirflowApi(self.url).post(
            "/auth/token",
            {"username": username, "password": password or self.admin_password},
            expected=(200, 201),
        )
        return str(answer["access_token"])

    @property
    def api(self) -> AirflowApi:
        """A client logged in as the admin (one login per deployment)."""
        if self._api is None:
            self._api = AirflowApi(self.url, self.login())
        return self._api

    def health(self) -> dict[str, Any]:
        return cast("dict[str, Any]", AirflowApi(self.url, timeout=10).get("/api/v2/monitor/health"))

    def _start_workers(self) -> None:
        """Celery: ``workers`` workers, each in a working directory of its own (as on its own machine)."""
        for index in range(1, self.workers + 1):
            workdir = self.worker_dir(index)
            workdir.mkdir(parents=True)
            argv = worker_command(
                self.bin_dir / "airflow",
                index,
                queue=self.queue,
                workdir=workdir,
                concurrency=self.worker_concurrency,
            )
            name = f"worker-{index}"
            env = worker_env(self.env, index, workdir)
            self.running[name] = _Component(name, argv, env, self.output_dir / f"{name}.log", cwd=workdir)

    def dead(self) -> list[str]:
        """The components that exited, except those :meth:`kill_component` killed on purpose."""
        return [c.name for c in self.running.values() if not c.alive() and c.name not in self.killed]

    def kill_component(self, name: str) -> list[str]:
        """SIGKILL a component as a lost machine would end it: its whole session and every descendant.

        The task supervisor moves each task process into a process group of its own, so killing the
        component's group alone would leave the task running; its session still holds it.

        :returns: the command lines killed.
        """
        component = self.running[name]
        self.killed.add(name)
        commands: list[str] = []
        for _ in range(3):  # again, for anything forked between reading the table and the kill
            table = _process_table()
            victims = {
                pid
                for pid, proc in table.items()
                if component.pgid in (proc.sid, proc.pgid) and not proc.zombie
            }
            while True:
                children = {pid for pid, proc in table.items() if proc.ppid in victims} - victims
                if not children:
                    break
                victims |= children
            if not victims:
                break
            commands += [_command(pid) for pid in sorted(victims)]
            component.signal_group(signal.SIGKILL)
            for pid in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(10)
        return commands

    def wait_healthy(self, timeout: float = 240.0) -> None:
        """Until the API answers and every started component reports healthy; raises with diagnostics."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            dead = self.dead()
            if dead:
                raise DeploymentError(f"{', '.join(dead)} exited during start-up\n{self.diagnostics()}")
            try:
                last = self.health()
            except (requests.RequestException, DeploymentError) as exc:
                last = exc
            else:
                wanted = [_HEALTH_KEYS[name] for name in self.running if name in _HEALTH_KEYS]
                states = [(last.get(key) or {}).get("status") for key in ["metadatabase", *wanted]]
                # Celery workers are not in Airflow's health answer: each says "ready." when consuming.
                waiting = [c.name for c in self.running.values() if c.name.startswith("worker-")]
                states += ["healthy" if worker_ready(self.running[n].output) else n for n in waiting]
                if all(state == "healthy" for state in states):
                    return
            time.sleep(1)
        raise DeploymentError(f"not healthy after {timeout} s (last: {last})\n{self.diagnostics()}")

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 120.0) -> None:
        """Until the DAG processor has serialized every DAG; import errors fail at once."""
        deadline = time.monotonic() + timeout
        missing = set(dag_ids)
        while missing:
            for dag_id in list(missing):
                answer = self.api.request("GET", f"/api/v2/dags/{dag_id}", expected=(200, 404))
                if answer and answer.get("dag_id") == dag_id:
                    missing.discard(dag_id)
            errors = self.api.get("/api/v2/importErrors").get("import_errors") or []
            if errors:
                raise DeploymentError(f"DAG import errors: {json.dumps(errors, indent=1)[:5000]}")
            if not missing:
                return
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"DAGs {sorted(missing)} not parsed after {timeout} s\n{self.diagnostics()}"
                )
            time.sleep(1)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Unpause the DAG and trigger a run through the REST API; the run id."""
        self.api.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})
        run = self.api.post(f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return str(run["dag_run_id"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180.0) -> str:
        """The run's final state (success or failed); raises with diagnostics after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in TERMINAL_RUN_STATES:
                return str(state)
            dead = self.dead()
            if dead or time.monotonic() > deadline:
                why = f"{', '.join(dead)} died" if dead else f"still {state} after {timeout} s"
                raise DeploymentError(f"{dag_id} run {run_id}: {why}\n{self.diagnostics(dag_id, run_id)}")
            time.sleep(0.5)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        answer = self.api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return cast("list[dict[str, Any]]", answer["task_instances"])

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", *, deserialize: bool = False
    ) -> Any:
        """
        An XCom value as ``GET .../xcomEntries/{key}`` returns it: the stored JSON value, as is.

        ``deserialize=True`` asks for it as the UI does (its XCom tab sends ``deserialize=true``).
        """
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.api.get(path + ("?deserialize=true" if deserialize else ""))["value"]

    def extra_links(self, dag_id: str, run_id: str, task_id: str) -> dict[str, str | None]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links"
        return cast("dict[str, str | None]", self.api.get(path)["extra_links"])

    def test_connection(self, body: dict[str, Any]) -> dict[str, Any]:
        """The UI's Test button: ``POST /api/v2/connections/test`` (runs the hook in the API server)."""
        return cast("dict[str, Any]", self.api.post("/api/v2/connections/test", body))

    # -- looking inside -------------------------------------------------------------------------

    def task_log_files(self, dag_id: str | None = None, run_id: str | None = None) -> list[Path]:
        """The task logs the supervisor wrote (``logs/dag_id=.../run_id=.../task_id=.../attempt=N.log``)."""
        pattern = f"dag_id={dag_id or '*'}/run_id={run_id or '*'}/task_id=*/**/*.log"
        return sorted(p for p in self.log_folder.glob(pattern) if p.is_file())

    def all_log_files(self) -> list[Path]:
        """Every file a process of this deployment wrote its log or output to."""
        return sorted(
            p for base in (self.log_folder, self.output_dir) for p in base.rglob("*") if p.is_file()
        )

    def secrets(self) -> dict[str, str]:
        """What must never appear in a log: the Gong secret, its Basic value, the bearer token."""
        return {
            "access key secret": self.gong_secret,
            "Basic value (base64 of key:secret)": self.basic_value,
            "bearer token": self.gong_token,
        }

    def processes(self) -> dict[tuple[int, int], str]:
        """Every live process of this deployment, as {(pid, start time): command line}.

        Found three ways, because each alone misses some: membership of a component's session or
        process group (everything it forks, unless that calls setsid); descent from those (also after
        a setsid, while the parent lives); the marker in the environment (also an orphan re-parented
        to init, unless setproctitle, which the API server, executor workers and log servers use,
        overwrote its environment block).
        """
        table = _process_table()
        leaders = {c.pgid for c in self.running.values()}
        ours = {
            pid
            for pid, proc in table.items()
            if proc.sid in leaders or proc.pgid in leaders or self._has_marker(pid)
        }
        while True:
            children = {pid for pid, proc in table.items() if proc.ppid in ours} - ours
            if not children:
                break
            ours |= children
        ours.discard(os.getpid())
        return {(pid, table[pid].start): _command(pid) for pid in sorted(ours) if not table[pid].zombie}

    def _has_marker(self, pid: int) -> bool:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return False
        return f"{MARKER_ENV}={self.marker}".encode() in environ.split(b"\0")

    def diagnostics(self, dag_id: str | None = None, run_id: str | None = None, tail: int = 60) -> str:
        """What a failed start or run needs to be understood: states, task logs, component output."""
        parts = [f"AIRFLOW_HOME={self.home} url={self.url} database={self.database or self.sql_alchemy_conn}"]
        parts.append(
            "components: " + ", ".join(f"{c.name}={c.process.poll()}" for c in self.running.values())
        )
        if dag_id and run_id:
            with contextlib.suppress(Exception):
                for ti in self.task_instances(dag_id, run_id):
                    parts.append(
                        f"task {ti['task_id']}[{ti.get('map_index')}]: state={ti['state']} "
                        f"try={ti.get('try_number')} hostname={ti.get('hostname')}"
                    )
        for path in self.task_log_files(dag_id, run_id) if dag_id else []:
            parts.append(f"---- {path.relative_to(self.home)}\n{_tail(path, tail * 2)}")
        for path in sorted(self.output_dir.glob("*.log")):
            parts.append(f"---- {path.name} (last {tail} lines)\n{_tail(path, tail)}")
        return "\n".join(parts)


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(unreadable: {exc})"


class _Proc(NamedTuple):
    ppid: int
    pgid: int
    sid: int
    start: int  # clock ticks after boot: with the pid, names one process even if the pid is reused
    zombie: bool


def _process_table() -> dict[int, _Proc]:
    """Every process of the machine, from /proc/<pid>/stat (Linux)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        state, ppid, pgid, sid, start = fields[0], fields[1], fields[2], fields[3], fields[19]
        table[int(entry.name)] = _Proc(int(ppid), int(pgid), int(sid), int(start), state == "Z")
    return table


def _alive(processes: dict[tuple[int, int], str]) -> dict[tuple[int, int], str]:
    """Those of ``processes`` that still run (same pid and start time, not a zombie)."""
    table = _process_table()
    return {
        (pid, start): command
        for (pid, start), command in processes.items()
        if pid in table and table[pid].start == start and not table[pid].zombie
    }


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:200]
