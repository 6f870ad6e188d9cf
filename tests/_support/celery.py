"""The Celery side of :class:`~tests._support.deployment.LocalDeployment` (``executor="celery"``).

- **Broker**: the Redis server on 127.0.0.1:6379 when one answers there; otherwise a ``redis-server``
  started for the deployment on a free loopback port (no persistence, stopped with it). Either way the
  deployment claims a Redis database number of its own (an empty one of 1-15, claimed with ``SET NX``
  of a marker key) and empties it at stop, so deployments side by side (a test run and ``make
  airflow``) never see each other's messages; its queue name is its own too.
- **Workers**: ``airflow celery worker`` each with its own Celery hostname (``--celery-hostname``), its
  own working directory, ``TMPDIR`` and pid file, and the name task instances record
  (``GONG_WORKER_HOSTNAME``, read by :mod:`tests._support.worker_hostname`).

Nothing here imports Airflow; ``redis`` (installed with the Celery provider) only once a broker is needed.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests._support.worker_hostname import ENV as HOSTNAME_ENV

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
#: The key that marks a Redis database as one deployment's (value: the deployment's marker).
CLAIM_KEY = "gong-local-deployment"
CELERY_PROVIDER = "apache-airflow-providers-celery"
HOSTNAME_CALLABLE = "tests._support.worker_hostname.hostname"


def celery_unavailable() -> str | None:
    """Why this venv cannot run the Celery deployment, or None when it can."""
    try:
        importlib.metadata.version(CELERY_PROVIDER)
    except importlib.metadata.PackageNotFoundError:
        return f"{CELERY_PROVIDER} is not installed in this venv (the test extra brings it)"
    if importlib.util.find_spec("redis") is None:
        return "the redis client package is not installed (it comes with the Celery provider)"
    if not _answers(REDIS_HOST, REDIS_PORT) and shutil.which("redis-server") is None:
        return f"no Redis answers on {REDIS_HOST}:{REDIS_PORT} and there is no redis-server to start one"
    return None


def _answers(host: str, port: int) -> bool:
    """Whether a Redis server answers PING there."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisBroker:
    """One deployment's Redis database: on the machine's server, or on a server of its own.

    :param root: where a server of its own keeps its files (``root/redis``) and output.
    :param marker: the deployment's marker, written into the claimed database.
    """

    def __init__(self, root: Path, marker: str, *, port: int = REDIS_PORT, say: Any = None) -> None:
        self.root, self.marker, self.port = root, marker, port
        self.say = say or (lambda message: None)
        self.db: int | None = None
        self.server: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{REDIS_HOST}:{self.port}/{self.db}"

    def start(self) -> RedisBroker:
        if not _answers(REDIS_HOST, self.port):
            self._start_server()
        self.db = self._claim_database()
        where = "its own redis-server" if self.server else "the machine's Redis"
        self.say(f"Celery broker: {self.url} ({where}, database {self.db} claimed)")
        return self

    def _start_server(self) -> None:
        from tests._support.deployment import DeploymentError, free_port

        self.port = free_port()
        folder = self.root / "redis"
        folder.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--bind", REDIS_HOST, "--port", str(self.port), "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(folder)]
        with (folder / "redis-server.log").open("ab") as sink:
            self.server = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 20
        while not _answers(REDIS_HOST, self.port):
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise DeploymentError(f"redis-server did not start: see {folder / 'redis-server.log'}")
            time.sleep(0.1)

    def _client(self, db: int) -> Any:
        import redis

        return redis.Redis(host=REDIS_HOST, port=self.port, db=db, socket_connect_timeout=5)

    def _claim_database(self) -> int:
        from tests._support.deployment import DeploymentError

        numbers = list(range(1, 16))  # 0 is everyone's default: never used
        random.shuffle(numbers)
        for number in numbers:
            client = self._client(number)
            try:
                # Empty and unclaimed; SET NX makes the claim atomic against a deployment doing the same.
                if client.dbsize() == 0 and client.set(CLAIM_KEY, self.marker, nx=True):
                    return number
            finally:
                client.close()
        raise DeploymentError(f"no empty Redis database (1-15) on {REDIS_HOST}:{self.port}")

    def stop(self) -> None:
        """Empty the claimed database (only if it is still this deployment's); stop an own server."""
        if self.db is not None and self.server is None:
            with contextlib.suppress(Exception):
                client = self._client(self.db)
                with contextlib.closing(client):
                    if client.get(CLAIM_KEY) == self.marker.encode():
                        client.flushdb()
        self.db = None
        if self.server is not None:
            with contextlib.suppress(ProcessLookupError):
                self.server.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.server.wait(10)
            if self.server.poll() is None:
                self.server.kill()
                self.server.wait(5)
            self.server = None


def worker_name(index: int) -> str:
    """The name worker ``index`` (1, 2, ...) records as task instances' ``hostname``."""
    return f"gong-worker-{index}"


def worker_command(airflow: Path, index: int, *, queue: str, workdir: Path, concurrency: int) -> list[str]:
    """``airflow celery worker`` for worker ``index``: its own Celery hostname, queue and pid file.

    ``--skip-serve-logs``: the log server would bind the same port for every worker of this machine;
    the API server reads the task logs from the deployment's log folder instead.
    """
    return [
        str(airflow),
        "celery",
        "worker",
        "--celery-hostname",
        f"{worker_name(index)}@localhost",
        "--queues",
        queue,
        "--concurrency",
        str(concurrency),
        "--pid",
        str(workdir / "worker.pid"),
        "--skip-serve-logs",
        "--without-mingle",
        "--without-gossip",
    ]


def worker_env(base: dict[str, str], index: int, workdir: Path) -> dict[str, str]:
    """A worker's environment: the deployment's, plus its hostname and a temporary directory of its own."""
    tmp = workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return {**base, HOSTNAME_ENV: worker_name(index), "TMPDIR": str(tmp), "TMP": str(tmp), "TEMP": str(tmp)}


def worker_ready(output: Path) -> bool:
    """Whether the worker's output says it is consuming (Celery's ``... ready.`` line)."""
    try:
        text = output.read_text(errors="replace")
    except OSError:
        return False
    return " ready." in text
