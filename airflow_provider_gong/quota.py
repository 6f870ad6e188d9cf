"""
One Gong quota for every task: a limiter whose state every process of a Gong account shares.

Gong's limit is per company: 3 calls/s and 10,000 calls per day, shared by every integration. A
limiter per hook lets every task, mapped task instance and concurrent DAG run take the full rate for
itself (and each new hook's first call go out at once), so they overrun Gong together. Here the
pacing state (:class:`~airflow_provider_gong.pacing.Schedule`: the next free slot and the latest grant
times) and the day's call count live in a store every task of the account sees, keyed by the account
(host plus a hash of the credential identity, never a secret):

- ``local`` (default): a SQLite file under ``$AIRFLOW_HOME/gong_quota/``, for every task on one
  machine; cross-process safe through SQLite's own locking (``BEGIN IMMEDIATE``), no new dependency.
  The schedule runs on the machine's monotonic clock, which every process shares and which is never
  stepped; the wall clock can be (on the VM this was measured on it ran 0.5 % faster than the
  monotonic clock, enough to eat the window guard's margin).
- ``sql``: a row in table ``gong_quota`` of a PostgreSQL database reached through an Airflow
  connection (``SELECT ... FOR UPDATE``), for workers on several machines. Its clock is the
  database's, so workers whose clocks disagree still agree on the schedule; as that is a wall clock,
  its window guard is 5 ms longer (:attr:`~airflow_provider_gong.state.PostgresStore.clock_allowance`).
- ``memory``: per process (tests, or a single long-running process).

The stores are :mod:`airflow_provider_gong.state`'s, shared with the OAuth token chain; this module
keeps what is stored (:class:`QuotaState`, table ``gong_quota``) and what is done with it
(:class:`QuotaLimiter`).

Every call is a reservation: one short transaction reads the state, takes the next slot at or after
now, counts the call against the UTC day's budget and commits; the caller then sleeps until its slot
outside the transaction. A process killed after reserving wastes one slot, nothing more. A spent
budget raises :class:`~airflow_provider_gong.exceptions.GongQuotaExhaustedError` at once instead of
sleeping for hours.

Why not pyrate-limiter (4.5.0 evaluated): its SQLite and PostgreSQL buckets keep one row per call in a
sliding-window log that every acquire counts, and a blocked caller sleeps and retries the whole check
(polling, not a reservation), so there is neither even spacing nor an order among waiting processes;
its calendar-aligned ``FixedWindow`` (a UTC-day budget) is a per-bucket algorithm, so the per-second
and the daily limit would sit in two buckets checked in two transactions, and a call could take a
second's slot and then be refused by the day; cross-process SQLite needs the ``filelock`` package and
its PostgreSQL bucket needs ``psycopg[pool]`` with a pool of its own (not the Airflow connection's
DbApiHook) and takes ``LOCK TABLE ... NOWAIT``, which refuses rather than queues under contention; a
refused non-blocking acquire is a bare False, so telling a spent day from a busy second takes another
query. Measured in one process, ``Rate(3, SECOND)`` grants calls in bursts of three (0.004, 0.006,
0.008, 1.055, ... s). The reservation scheme here is a few hundred lines on the standard library's
``sqlite3`` and the DbApiHook, so pyrate-limiter is not adopted and not a dependency.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import pendulum

from airflow_provider_gong import state
from airflow_provider_gong.exceptions import GongError, GongQuotaExhaustedError
from airflow_provider_gong.pacing import DEFAULT_LATE, DEFAULT_MARGIN, Schedule
from airflow_provider_gong.state import Moment, Row, StateStore, Table, default_state_dir

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_DAILY_QUOTA = 10_000
"""Gong's default calls per company per day. Counted per UTC day: Gong does not document when its
day starts, and UTC is the one reading every worker agrees on; set ``daily_quota`` below Gong's figure
to leave room for the company's other integrations, or above it when Gong support raised it."""

BACKENDS = ("local", "sql", "memory")
DAY = 86_400.0
TABLE = "gong_quota"
LOCAL_FILE = "quota.sqlite3"


class Grant(NamedTuple):
    """A call's place in the shared schedule, as :meth:`QuotaLimiter.take` handed it out."""

    #: the grant time the other calls plan around, on the store's clock
    recorded: float
    #: the same instant on this process's monotonic clock
    local: float
    #: seconds slept waiting for it
    slept: float


@dataclass
class QuotaState:
    """
    What every process of one account shares.

    Times are on the store's schedule clock (:attr:`~airflow_provider_gong.state.Moment.pace`).

    :param due: when the next call is due on the even schedule.
    :param granted: the latest grant times, oldest first (see :class:`~airflow_provider_gong.pacing.
        Schedule`).
    :param day: the UTC day (days since the epoch) that ``used`` counts.
    :param used: calls reserved on that day.
    """

    due: float = 0.0
    granted: list[float] = field(default_factory=list)
    day: int = 0
    used: int = 0

    def used_on(self, day: int) -> int:
        """Return the calls counted on ``day`` (0 once the stored day is over)."""
        return self.used if self.day >= day else 0

    @staticmethod
    def pack(times: list[float]) -> bytes:
        """Grant times as packed doubles: exact, and cheap to read and write on every call."""
        return array("d", times).tobytes()

    @staticmethod
    def unpack(blob: bytes | memoryview | None) -> list[float]:
        packed = array("d")
        packed.frombytes(bytes(blob or b""))
        return packed.tolist()

    @classmethod
    def decode(cls, row: Row | None) -> QuotaState:
        """Decode a stored row (None: none yet) into the state; a fresh account starts at the zero state."""
        if row is None:
            return cls()
        due, granted, day, used = row
        return cls(float(due), cls.unpack(granted), int(day), int(used))

    def encode(self, moment: Moment) -> Row:
        return (self.due, self.pack(self.granted), self.day, self.used)


QUOTA_TABLE: Table[QuotaState] = Table(
    name=TABLE,
    key="account",
    columns=("due", "granted", "day", "used"),
    sqlite_columns=(
        "account TEXT PRIMARY KEY, due REAL NOT NULL, granted BLOB NOT NULL, day INTEGER NOT NULL, "
        "used INTEGER NOT NULL"
    ),
    postgres_columns=(
        "account VARCHAR(200) PRIMARY KEY, due DOUBLE PRECISION NOT NULL, granted BYTEA NOT NULL, "
        "day INTEGER NOT NULL, used INTEGER NOT NULL"
    ),
    blank=(0.0, b"", 0, 0),
    decode=QuotaState.decode,
    encode=QuotaState.encode,
)
"""The quota's table (``gong_quota``), one row per account, the same in every backend."""

QuotaStore = StateStore[QuotaState]
"""Where the shared state lives: :meth:`~airflow_provider_gong.state.StateStore.transact` runs a change
on one account's state in an exclusive transaction."""


class MemoryStore(state.MemoryStore[QuotaState]):
    """
    State in this process only; shared by every hook of the process when it is :data:`MEMORY`.

    :param clock: the schedule's clock (injectable so tests need no wall time).
    :param wall: seconds since the epoch, for the UTC day (injectable likewise).
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> None:
        super().__init__(QUOTA_TABLE, clock=clock, wall=wall)


MEMORY = MemoryStore()
"""The process-wide store behind ``quota_backend="memory"``."""


class SQLiteStore(state.SQLiteStore[QuotaState]):
    """
    State in a SQLite file every process on the machine opens (``quota_backend="local"``).

    ``BEGIN IMMEDIATE`` takes SQLite's write lock before the state is read, so two processes can
    never reserve from the same state; a process waiting for it waits up to ``timeout`` seconds
    (SQLite's busy handler). WAL mode with ``synchronous=NORMAL`` keeps a transaction to tens of
    microseconds and survives any process crash; an OS crash may forget the last few calls, which
    costs at most that many calls of the day's budget. The file must be on a local disk: network file
    systems do not honour SQLite's locks (use ``quota_backend="sql"`` across machines).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(QUOTA_TABLE, path, clock=clock, wall=wall, timeout=timeout, synchronous="NORMAL")


class SqlStore(state.PostgresStore[QuotaState]):
    """
    State in table ``gong_quota`` of a PostgreSQL database (``quota_backend="sql"``).

    The connection comes from ``BaseHook.get_hook(conn_id)`` (a common-sql DbApiHook), one per process.
    The account's row is locked with ``SELECT ... FOR UPDATE``; the clock is the database's (see
    :class:`~airflow_provider_gong.state.PostgresStore`), so workers on machines whose clocks disagree
    still share one schedule. A connection that broke is replaced once: a reservation may run twice.
    The database should be near the workers: a call that was due at once goes out one commit after
    the time the others plan from, which the margin must cover (a late one records its send time in a
    second transaction).
    """

    def __init__(self, conn_id: str) -> None:
        super().__init__(QUOTA_TABLE, conn_id, needed_by="quota_backend 'sql'", reconnect=True)


_STORES = state.StoreRegistry(LOCAL_FILE, memory=MEMORY, local=SQLiteStore, sql=SqlStore)

default_quota_dir = default_state_dir


def store_for(backend: str, *, quota_dir: str | None = None, quota_conn_id: str | None = None) -> QuotaStore:
    """
    Return the process-wide store for a connection's ``quota_backend`` extras.

    One per file or database, so every hook of the process shares its connection too.
    """
    return _STORES.get(backend, quota_dir=quota_dir, quota_conn_id=quota_conn_id)


def account_key(base_url: str, *, auth_type: str, access_key: str | None, access_token: str | None) -> str:
    """
    Return the name an account's state is kept under: ``host/hash``.

    Gong's quota belongs to the company, which the hook knows only as host + credential: host and
    access key for basic auth, host and token for bearer. The credential part is a sha256 prefix, so
    the store holds no secret (nor the access key), and two connection ids for the same account share
    one state, whatever their other extras.
    """
    host = (urlsplit(base_url).netloc or base_url).lower()
    identity = f"{base_url.lower()}\n{auth_type}\n{access_token if auth_type == 'bearer' else access_key}"
    return f"{host}/{hashlib.sha256(identity.encode()).hexdigest()[:32]}"


def _utc(seconds: float) -> datetime.datetime:
    return pendulum.from_timestamp(seconds, tz="UTC")


class QuotaLimiter:
    """
    Paces and counts the calls of one Gong account on a shared :data:`QuotaStore`.

    :meth:`acquire` reserves the next slot (:class:`~airflow_provider_gong.pacing.Schedule`) and
    counts the call against the UTC day's budget in one transaction, then sleeps until the slot
    outside it. Thread-safe (the store serialises); every process with the same store and account
    shares the rate and the budget.

    :param store: where the state lives.
    :param account: the key of the state (:func:`account_key`).
    :param rate: calls per second for the account (Gong's default is 3).
    :param daily_quota: calls per UTC day (see :data:`DEFAULT_DAILY_QUOTA`).
    :param margin: see :data:`~airflow_provider_gong.pacing.DEFAULT_MARGIN`.
    :param late: see :data:`~airflow_provider_gong.pacing.DEFAULT_LATE`.
    :param clock: this process's monotonic seconds (injectable so tests need no wall time).
    :param sleep: sleeps the given seconds (injectable likewise).
    """

    def __init__(
        self,
        store: QuotaStore,
        account: str,
        rate: float,
        *,
        daily_quota: int = DEFAULT_DAILY_QUOTA,
        margin: float = DEFAULT_MARGIN,
        late: float = DEFAULT_LATE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if daily_quota < 1:
            raise ValueError(f"daily_quota must be >= 1 calls per day, got {daily_quota!r}")
        self.store = store
        self.account = account
        self.schedule = Schedule(rate, margin=margin + store.clock_allowance, late=late)
        self.daily_quota = int(daily_quota)
        self._clock = clock
        self._sleep = sleep

    @property
    def rate(self) -> float:
        return self.schedule.rate

    def acquire(self) -> float:
        """Wait for this call's slot. Returns the seconds slept (see :meth:`take`)."""
        return self.take().slept

    def take(self) -> Grant:
        """
        Wait for this call's slot and return it; pass it to :meth:`sent` once the call went out.

        :raises GongQuotaExhaustedError: the day's budget is spent (nothing is reserved or slept).
        :raises GongError: the store failed; no call was made.
        """
        slept, counted = 0.0, False
        while True:
            seen: list[float] = []
            slot, moment = self._transact(partial(self._reserve, counted=counted, seen=seen))
            counted = True
            # The slot on this process's clock, from the moment the store's clock was read: the commit
            # that follows (a round trip or two to PostgreSQL) must not move the call later unnoticed.
            target = seen[-1] + (slot - moment.pace)
            wait = target - self._clock()
            if wait > 0:
                self._sleep(wait)
                slept += wait
            if self._clock() - target <= self.schedule.late or not self.schedule.exact:
                return Grant(slot, target, slept)
            # Woke later than the others planned around: record the real send time (once: the call
            # then goes out one commit after it), or, when a later call was already planned from this
            # slot, leave the slot unused and take another.
            seen = []
            recorded, moment = self._transact(partial(self._confirm, recorded=slot, seen=seen))
            if recorded is not None:
                return Grant(recorded, seen[-1] + (recorded - moment.pace), slept)

    def sent(self, grant: Grant, at: float) -> None:
        """
        Record that the call of ``grant`` was written to its connection at ``at`` (this process's clock).

        :meth:`take` returns as the slot comes, but the request is built and written after that, by a
        process that may be starved of CPU just then (measured: up to 9-18 ms on a loaded 2-CPU
        machine, against ~1 ms usually). A call that went out later than the late allowance is
        recorded by its real send time, so that the call ``ceil(rate)`` later is held back from it
        rather than from its slot; when that call was already planned, nothing can be done (the margin
        is all there is). Never raises: the call has been made, and its answer matters more than this
        correction (a store that fails here is logged).
        """
        late = at - grant.local
        if late <= self.schedule.late or not self.schedule.exact:
            return
        try:
            self._transact(partial(self._confirm, recorded=grant.recorded, sent=grant.recorded + late))
        except GongError as exc:
            log.warning("A late Gong call could not be recorded in the shared quota: %s", exc)

    def _reserve(
        self, state: QuotaState, moment: Moment, counted: bool, seen: list[float]
    ) -> tuple[QuotaState, float]:
        seen.append(self._clock())  # as close to the store's moment as this process can see it
        slot, due, granted = self.schedule.reserve(state.due, state.granted, moment.pace)
        # Gong counts the call on the day it arrives: the slot's day, which may be after midnight.
        day = int((moment.wall + slot - moment.pace) // DAY)
        new_day = day > state.day
        used = 0 if new_day else state.used
        if not counted or new_day:
            if used >= self.daily_quota:
                raise self._exhausted(used, (max(day, state.day) + 1) * DAY, moment.wall)
            used += 1
        return QuotaState(due, granted, max(day, state.day), used), slot

    def _confirm(
        self,
        state: QuotaState,
        moment: Moment,
        recorded: float,
        sent: float | None = None,
        seen: list[float] | None = None,
    ) -> tuple[QuotaState | None, float | None]:
        """
        Move the grant ``recorded`` to ``sent`` (default: now).

        Returns the new grant time, or None when a later call was already planned from it.
        """
        if seen is not None:
            seen.append(self._clock())
        when = moment.pace if sent is None else sent
        granted = self.schedule.confirm(state.granted, recorded, when)
        if granted is None:
            return None, None
        return QuotaState(state.due, granted, state.day, state.used), max(recorded, when)

    def _exhausted(self, used: int, resets: float, now: float) -> GongQuotaExhaustedError:
        resume_at = _utc(resets)
        retry_after = max(0.0, resets - now)
        hours, rest = divmod(int(retry_after + 0.5), 3600)
        host = self.account.split("/", 1)[0]
        return GongQuotaExhaustedError(
            f"The daily Gong call budget for {host} is spent: {used} of {self.daily_quota} calls used today "
            f"(UTC). It resets at {resume_at:%Y-%m-%d %H:%M} UTC, in {hours} h {rest // 60} min; no call "
            "was made. Let Airflow retry the task after that, or raise the connection's daily_quota if "
            "Gong support raised your company's quota.",
            retry_after=retry_after,
            resume_at=resume_at,
            used=used,
            budget=self.daily_quota,
        )

    def _transact(self, change: state.Change[QuotaState, T]) -> tuple[T, Moment]:
        try:
            return self.store.transact(self.account, change)
        except GongError:
            raise
        except Exception as exc:
            raise GongError(
                f"The shared Gong quota ({self.store.name}) could not be used: {type(exc).__name__}: {exc}. "
                "No call was made to Gong."
            ) from exc

    def usage(self) -> tuple[int, int]:
        """Return (calls counted today, UTC, across every process of the account; the daily budget)."""
        state, moment = self._transact(lambda state, moment: (None, state))
        return state.used_on(int(moment.wall // DAY)), self.daily_quota

    def status(self) -> dict[str, Any]:
        """Today's budget: ``used``, ``budget``, ``left`` and ``resets_at`` (UTC midnight, pendulum)."""
        state, moment = self._transact(lambda state, moment: (None, state))
        today = int(moment.wall // DAY)
        used = state.used_on(today)
        return {
            "used": used,
            "budget": self.daily_quota,
            "left": max(0, self.daily_quota - used),
            "resets_at": _utc((max(today, state.day) + 1) * DAY),
        }
