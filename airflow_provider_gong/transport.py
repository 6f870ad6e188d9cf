"""A total deadline per HTTP call, which requests does not have.

requests' read timeout bounds each socket read, not the call: a server (or proxy) that drip-feeds an
answer one byte every few seconds keeps a task busy forever. :class:`DeadlineAdapter` records the
socket of the call in flight, and a timer shuts that socket down when the call's deadline passes; the
blocked read then fails at once and the hook reports the call as timed out (for a create: outcome
unknown). The timer only ever touches the socket of the call that armed it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_local = threading.local()


class DeadlineExceeded(Exception):
    """The call did not finish within its deadline; its socket was shut down."""


class _Call:
    """The call in flight on this thread: its socket, and whether its deadline fired."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.fired = False
        self.done = False

    def attach(self, sock: socket.socket | None) -> None:
        with self.lock:
            self.sock = sock
            if self.fired and sock is not None:
                _shutdown(sock)

    def fire(self) -> None:
        with self.lock:
            if self.done:
                return
            self.fired = True
            if self.sock is not None:
                _shutdown(self.sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _attach(sock: Any) -> None:
    call: _Call | None = getattr(_local, "call", None)
    if call is not None:
        call.attach(sock)


class _TrackedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _attach(self.sock)

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _attach(self.sock)  # a reused keep-alive connection never calls connect()
        return super().getresponse(*args, **kwargs)


class _TrackedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _attach(self.sock)

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _attach(self.sock)
        return super().getresponse(*args, **kwargs)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections report their socket to :meth:`deadline`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager

    @staticmethod
    @contextlib.contextmanager
    def deadline(seconds: float) -> Iterator[None]:
        """Bound the HTTP call made inside this block to ``seconds`` in total.

        :raises DeadlineExceeded: when the deadline fired and the call failed because of it.
        """
        call = _Call()
        _local.call = call
        timer = threading.Timer(seconds, call.fire)
        timer.daemon = True
        timer.start()
        try:
            yield
        except Exception as exc:
            if call.fired:
                raise DeadlineExceeded(f"no complete answer within {seconds:g} s") from exc
            raise
        finally:
            with call.lock:
                call.done = True
            timer.cancel()
            _local.call = None
