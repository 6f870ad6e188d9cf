"""
The ledger's connection: one DB-API connection, used only on its own thread, with retries.

Some drivers (sqlite3) refuse a connection from another thread, and one thread also lets the batch hand
writes over and go on calling Gong meanwhile (see ``sync/pipeline.py``). Warehouses drop connections
and report locks and timeouts; every ledger step goes through :meth:`LedgerConnection.retry`, which
replaces a connection that no longer answers between attempts.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from tenacity import Retrying, retry_if_not_exception_type, stop_after_attempt, wait_exponential

from airflow_provider_gong.exceptions import GongLeaseLostError
from airflow_provider_gong.sync.sql import connect, dialect, execute, is_alive, rollback_quietly

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

log = logging.getLogger(__name__)
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class LedgerWriteError(Exception):
    """A ledger statement still failed after its retries."""


class KeysCollide(Exception):
    """
    The ledger holds two keys of one claim window as one (a case-insensitive collation).

    Not worth retrying as a window; each row is claimed on its own instead.
    """


class LedgerConnection:
    """
    The connection and the thread it lives on.

    :param name: the ledger's name, for messages.
    :param attempts: tries per step before :class:`LedgerWriteError`.
    """

    def __init__(
        self, hook: DbApiHook, name: str, *, attempts: int = 4, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.hook = hook
        self.name = name
        self.kind = dialect(hook)
        self.ph: str = hook.placeholder
        self.attempts = attempts
        self.sleep = sleep
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gong-ledger")
        self.thread: threading.Thread = self._worker.submit(threading.current_thread).result()
        self.conn: Any = self._worker.submit(connect, hook).result()

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``fn(*args)`` on the ledger's thread; steps run one at a time, in the order queued."""
        return self._worker.submit(fn, *args, **kwargs)

    def close(self, last: Callable[[], None]) -> None:
        """Run ``last`` on the thread (it may fail quietly), close the connection, end the thread."""

        def close_conn() -> None:
            last()
            with contextlib.suppress(Exception):
                self.conn.close()

        with contextlib.suppress(RuntimeError):  # already shut down
            self._worker.submit(close_conn).result()
        self._worker.shutdown(wait=True)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[list[str], list[tuple[Any, ...]], int]:
        return execute(self.conn, sql, params)

    def read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Rows of a query, holding no snapshot or lock afterwards."""
        try:
            _, rows, _ = execute(self.conn, sql, params)
        finally:
            self.rollback()
        return rows

    def ddl(self, sql: str, *, done: Callable[[], bool]) -> None:
        """Run DDL; if it fails because a concurrent runner did the same first, that is success."""
        try:
            execute(self.conn, sql)
            self.conn.commit()
        except Exception:
            self.rollback()
            if not done():
                raise

    def rollback(self) -> None:
        rollback_quietly(self.conn)

    def retry(self, fn: Callable[[], T]) -> T:
        """Run one ledger step, retrying database errors (locks, timeouts, dropped connections)."""

        def before_sleep(state: Any) -> None:
            exc = state.outcome.exception()
            log.warning(
                "Ledger %s: %s: %s; retrying (attempt %d of %d)",
                self.name,
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
                state.attempt_number + 1,
                self.attempts,
            )
            self._reconnect_if_broken()

        try:
            return Retrying(
                retry=retry_if_not_exception_type((KeysCollide, GongLeaseLostError)),
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=0.2, max=2),
                sleep=self.sleep,
                before_sleep=before_sleep,
                reraise=True,
            )(fn)
        except GongLeaseLostError:
            raise
        except Exception as exc:
            raise LedgerWriteError(
                f"ledger {self.name}: {type(exc).__name__}: {str(exc).strip()[:300]}"
            ) from exc

    def _reconnect_if_broken(self) -> None:
        """
        Replace a connection that no longer answers, between retries (on the ledger's own thread).

        It is closed directly: closing the ledger would wait for this very thread.
        """
        if is_alive(self.conn):
            return
        with contextlib.suppress(Exception):
            self.conn.close()
        self.conn = connect(self.hook)


class _OnConnection(Protocol):
    db: LedgerConnection


def on_ledger_thread(method: F) -> F:
    """
    Run the method on the ledger's own thread (and wait for it), whichever thread calls it.

    The object's ``db`` is its :class:`LedgerConnection`.
    """

    @functools.wraps(method)
    def wrapper(self: _OnConnection, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is self.db.thread:
            return method(self, *args, **kwargs)
        return self.db.submit(method, self, *args, **kwargs).result()

    return wrapper  # type: ignore[return-value]  # it takes and returns what `method` does
