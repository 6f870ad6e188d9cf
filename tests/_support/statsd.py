"""Reading the provider's metrics in tests: a recording stand-in for Airflow's ``Stats``, and a real
StatsD listener on loopback.

``RecordingStats`` replaces what :func:`airflow_provider_gong._compat.stats` returns (see the ``metrics``
fixture in ``tests/conftest.py``): every ``incr``/``timing``/``gauge`` call is kept as a :class:`Sample`.

``StatsdListener`` is a UDP socket on 127.0.0.1 that collects the datagrams a StatsD client sends
(``name:value|type[|@rate][|#tags]``, several lines per datagram allowed). Point Airflow at it with
:meth:`StatsdListener.airflow_env` (``AIRFLOW__METRICS__STATSD_*``) in the process that runs tasks: a
subprocess, a deployment, Celery workers. Airflow prefixes every name with ``[metrics] statsd_prefix``
(``airflow`` by default); :meth:`StatsdListener.counters` and :meth:`StatsdListener.timings` take the
prefix off.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sample:
    """One metric as sent: ``kind`` is ``c`` (counter), ``ms`` (timer) or ``g`` (gauge)."""

    name: str
    value: float
    kind: str
    tags: dict[str, str] = field(default_factory=dict, compare=False)


class RecordingStats:
    """Airflow's ``Stats`` interface (``incr``, ``decr``, ``gauge``, ``timing``), recording every call."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def incr(self, stat: str, count: int = 1, rate: float = 1, *, tags: dict[str, Any] | None = None) -> None:
        self.samples.append(Sample(stat, count, "c", dict(tags or {})))

    def decr(self, stat: str, count: int = 1, rate: float = 1, *, tags: dict[str, Any] | None = None) -> None:
        self.samples.append(Sample(stat, -count, "c", dict(tags or {})))

    def gauge(
        self, stat: str, value: float, rate: float = 1, delta: bool = False, *, tags: Any = None
    ) -> None:
        self.samples.append(Sample(stat, value, "g", dict(tags or {})))

    def timing(self, stat: str, dt: Any, *, tags: dict[str, Any] | None = None) -> None:
        ms = dt.total_seconds() * 1000.0 if hasattr(dt, "total_seconds") else float(dt)
        self.samples.append(Sample(stat, ms, "ms", dict(tags or {})))

    def names(self, kind: str | None = None) -> list[str]:
        return [s.name for s in self.samples if kind is None or s.kind == kind]

    def counters(self) -> dict[str, float]:
        return _sum(s for s in self.samples if s.kind == "c")


def _sum(samples: Iterator[Sample] | list[Sample]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for s in samples:
        totals[s.name] = totals.get(s.name, 0) + s.value
    return totals


def parse(line: str) -> Sample | None:
    """Parse one StatsD line (``name:value|type[|@rate][|#k:v,...]``); None if it is not one."""
    try:
        name, rest = line.split(":", 1)
        value, kind, *extra = rest.split("|")
        tags = {}
        for part in extra:
            if part.startswith("#"):
                for tag in part[1:].split(","):
                    k, _, v = tag.partition(":")
                    tags[k] = v
        return Sample(name, float(value), kind, tags)
    except ValueError:
        return None


class StatsdListener:
    """
    A StatsD server on 127.0.0.1 (a random free UDP port) keeping every line it receives.

    Use as a context manager; :attr:`lines` holds the raw lines, :meth:`samples` the parsed ones.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.1)
        self.host, self.port = self.sock.getsockname()
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="statsd-listener", daemon=True)

    def __enter__(self) -> StatsdListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.lines.extend(line for line in data.decode("utf-8", "replace").splitlines() if line)

    def airflow_env(self, prefix: str = "airflow") -> dict[str, str]:
        """The environment that makes Airflow's ``Stats`` send StatsD to this listener."""
        return {
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": self.host,
            "AIRFLOW__METRICS__STATSD_PORT": str(self.port),
            "AIRFLOW__METRICS__STATSD_PREFIX": prefix,
        }

    def samples(self, prefix: str = "airflow.") -> list[Sample]:
        """Every line parsed, with ``prefix`` taken off the names that have it."""
        with self._lock:
            lines = list(self.lines)
        parsed = [s for s in map(parse, lines) if s is not None]
        return [Sample(s.name.removeprefix(prefix), s.value, s.kind, s.tags) if prefix else s for s in parsed]

    def counters(self, under: str = "gong.", prefix: str = "airflow.") -> dict[str, float]:
        """Counter totals by name (prefix taken off), for the names starting with ``under``."""
        return _sum([s for s in self.samples(prefix) if s.kind == "c" and s.name.startswith(under)])

    def timings(self, under: str = "gong.", prefix: str = "airflow.") -> dict[str, list[float]]:
        """Timer values (milliseconds) by name, for the names starting with ``under``."""
        found: dict[str, list[float]] = {}
        for s in self.samples(prefix):
            if s.kind == "ms" and s.name.startswith(under):
                found.setdefault(s.name, []).append(s.value)
        return found

    def wait_for(self, ready: Callable[[StatsdListener], bool], timeout: float = 10.0) -> bool:
        """Poll until ``ready(self)`` (UDP gives no end-of-stream); False when ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready(self):
                return True
            time.sleep(0.05)
        return ready(self)


def configure_stats_like_the_task_runner() -> None:
    """
    Set up Airflow's ``Stats`` from ``[metrics]`` in this process, as Airflow's task runner does
    before it runs a task (for a process that runs an operator itself, outside any task runner).

    Task SDK 1.3 (Airflow 3.3): ``stats.initialize(factory=..., export_legacy_names=...)``; task SDK 1.2
    (3.2): ``Stats.initialize(factory=get_stats_factory(Stats))``; Airflow 3.1: nothing, core's
    ``airflow.stats.Stats`` configures itself from ``[metrics]`` when first used.
    """
    import inspect

    try:
        from airflow.sdk.observability.metrics import stats_utils
    except ImportError:  # Airflow 3.1
        return
    from airflow.sdk.observability.stats import Stats

    if inspect.signature(stats_utils.get_stats_factory).parameters:  # task SDK 1.2
        Stats.initialize(factory=stats_utils.get_stats_factory(Stats))
        return
    from airflow.sdk.configuration import conf
    from airflow.sdk.observability import stats

    stats.initialize(
        factory=stats_utils.get_stats_factory(),
        export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
    )
