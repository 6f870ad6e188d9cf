"""
The session every Gong call goes out on, and a total deadline per call, which requests does not have.

requests' read timeout bounds each socket read, not the call: a server (or proxy) that drip-feeds an
answer one byte every few seconds keeps a task busy forever. :class:`DeadlineAdapter` records the
socket of the call in flight, and a timer shuts that socket down when the call's deadline passes; the
blocked read then fails at once and the client reports the call as timed out (for a create: outcome
unknown). The watchdog only ever touches the socket of the call that armed it, and one watchdog
thread serves every call in the process (arming costs a heap push, not a thread, and normally does
not even wake that thread).

Pacing is not an adapter: the client takes the call's quota slot right before it hands the request to
the session (see :class:`~airflow_provider_gong._client.client.GongClient`), so a test that swaps the
transport (``requests_mock``, or any adapter mounted on the session) is still paced and counted.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
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
        #: when the request was last written out (this process's monotonic clock), for the quota
        self.sent_at: float | None = None

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


def _sent(sock: Any) -> None:
    """
    Note that the request has been written (urllib3 asks for the answer right after).

    See QuotaLimiter.sent.
    """
    call: _Call | None = getattr(_local, "call", None)
    if call is not None:
        call.sent_at = time.monotonic()
        call.attach(sock)


class _TrackedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _attach(self.sock)

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _sent(self.sock)  # a reused keep-alive connection never calls connect()
        return super().getresponse(*args, **kwargs)


class _TrackedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _attach(self.sock)

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _sent(self.sock)
        return super().getresponse(*args, **kwargs)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _Watchdog:
    """
    One daemon thread that fires the calls whose deadline passed.

    Arming a call wakes the thread only when the new deadline comes before the moment the thread
    already means to wake (``_wake_at``): waking it on every call cost a GIL hand-over and two
    context switches per call, more than the rest of the deadline machinery. With one deadline for
    all the calls of a hook, that is the first call after an idle spell. Finished calls are dropped
    from the top of the heap as new ones are armed, so a steady stream of calls does not pile up
    until the earliest deadline comes round.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Call]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._wake_at = math.inf  # when the thread looks at the heap next without being notified

    def arm(self, seconds: float, call: _Call) -> None:
        due = time.monotonic() + seconds
        with self._cond:
            heap = self._heap
            while heap and heap[0][2].done:
                heapq.heappop(heap)  # finished in time: drop it
            heapq.heappush(heap, (due, next(self._order), call))
            if self._thread is None or not self._thread.is_alive():
                self._wake_at = math.inf
                self._thread = threading.Thread(target=self._loop, name="gong-deadline", daemon=True)
                self._thread.start()
            elif due < self._wake_at:
                self._cond.notify()

    def _loop(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._wake_at = math.inf
                    self._cond.wait()
                    continue
                due_at = self._heap[0][0]
                now = time.monotonic()
                if due_at > now:
                    self._wake_at = due_at
                    self._cond.wait(due_at - now)
                    continue
                _, _, call = heapq.heappop(self._heap)
                call.fire()


_WATCHDOG = _Watchdog()


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections report their socket to :meth:`deadline`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager

    def preconnect(self, session: requests.Session, url: str, *, timeout: float) -> bool:
        """
        Open the connection the next call to ``url`` will use, unless one is open already.

        The client calls this before it takes the call's slot in the shared quota, so that the slot is
        followed at once by the request itself: a new connection (TCP, TLS, a proxy's CONNECT: round
        trips to Gong) opened after the slot would make the call reach Gong later than the slot the
        other tasks planned around, and a strict limiter would count it in the next call's second.
        Each new hook's first call, which is every call of a mapped task, would pay for it. Through a
        proxy the connection is left to the call (urllib3 sets the tunnel up inside its request path).

        Returns whether a connection is open. Any failure is left for the call itself to meet and
        report (it tells "never sent" from "may have arrived"); the cost is that a host that never
        answers is waited for twice (``timeout`` here, then the call's own connect timeout).
        """
        pool = conn = None
        try:
            pool = self._pool_for(session, url)
            if pool.proxy is not None:
                return False  # a tunnel is set up inside urllib3's request path: left to the call
            # urllib3 has no public "open a pooled connection now"; these two are what its own
            # urlopen uses to borrow and return one (the pool never blocks: requests' pools don't).
            conn = pool._get_conn()
            if not conn.is_connected:
                conn.timeout = timeout
                conn.connect()
            return True
        except Exception:
            if conn is not None:
                conn.close()
            return False
        finally:
            if pool is not None and conn is not None:
                pool._put_conn(conn)

    def _pool_for(self, session: requests.Session, url: str) -> Any:
        """
        Return the pool requests will send ``url`` through, looked up once per pool rather than per call.

        Building a request to ask for it cost ~0.1 ms a call. :meth:`close` forgets it with the pools it
        drops (the client drops its connections after an unusable answer). The session's TLS and proxy
        settings are read once per session (:func:`pin_environment`), so they cannot change under it.
        """
        pools: dict[str, Any] = self.__dict__.setdefault("_preconnect_pools", {})
        pool = pools.get(url)
        if pool is None:
            request = requests.Request("GET", url).prepare()
            pool = self.get_connection_with_tls_context(
                request, session.verify, proxies=session.proxies, cert=session.cert
            )
            pools[url] = pool
        return pool

    def close(self) -> None:
        """
        Drop every pooled connection.

        urllib3's ``clear()`` only forgets its pools, leaving their sockets to the garbage collector; the
        client calls this after an answer it could not use, so close them now, and forget the pool
        :meth:`preconnect` looked up.
        """
        for pool in self.__dict__.pop("_preconnect_pools", {}).values():
            pool.close()
        super().close()

    @staticmethod
    @contextlib.contextmanager
    def deadline(seconds: float) -> Iterator[_Call]:
        """
        Bound the HTTP call made inside this block to ``seconds`` in total.

        Yields the call (whose ``sent_at`` says when its request was written out).

        :raises DeadlineExceeded: when the deadline fired, whether the call failed because of it or
            seemed to succeed: a socket shut down inside the header block reads as the end of the
            headers, and http.client then hands back an "answer" with no body.
        """
        call = _Call()
        _local.call = call
        _WATCHDOG.arm(seconds, call)
        try:
            yield call
        except Exception as exc:
            if call.fired:
                raise DeadlineExceeded(f"no complete answer within {seconds:g} s") from exc
            raise
        finally:
            with call.lock:
                call.done = True
                fired = call.fired
            _local.call = None
        if fired:
            raise DeadlineExceeded(f"no complete answer within {seconds:g} s")


def new_session(base_url: str, auth: AuthBase, user_agent: str) -> requests.Session:
    """One keep-alive session for every call of a client, its environment read once."""
    session = requests.Session()
    adapter = DeadlineAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.auth = auth
    session.headers.update({"Accept": "application/json", "User-Agent": user_agent})
    pin_environment(session, base_url)
    return session


def pin_environment(session: requests.Session, base_url: str) -> None:
    """
    Read once the proxy, CA bundle and netrc settings that requests reads on every call.

    With ``trust_env`` on, every ``Session.request`` scans the whole environment twice for proxies and
    stats the netrc files (~0.1 ms: more than everything else the hook adds to a call). Every call of
    this session goes to one host, so the answer cannot differ between calls: it is read here the way
    requests reads it (``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` unless ``NO_PROXY`` matches the
    Gong host; ``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE``, as the verify path), and the per-call
    scanning is switched off. A netrc entry is not used: with ``trust_env`` requests would let one
    replace the connection's Authorization header, and the Airflow connection is the one source of
    credentials. A changed environment reaches the next session (after ``GongHook.close()``).
    Gong's API does not redirect; if it ever sent a call to another host, that call would use these
    settings too.
    """
    session.proxies = dict(requests.utils.get_environ_proxies(base_url))
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = False
