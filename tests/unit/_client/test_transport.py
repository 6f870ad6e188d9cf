"""The connection is opened before a call takes its slot in the shared quota, over real loopback HTTP.

Why it matters: the others plan their calls around this call's slot; a TCP (and TLS) handshake
between the slot and the request makes the call reach Gong late, and a strict per-second limiter then
counts it in the next call's second (each new hook's first call; every call of a mapped task).
"""

from __future__ import annotations

import socket

import pytest
import requests

from airflow_provider_gong._client.transport import DeadlineAdapter
from airflow_provider_gong.exceptions import GongConnectionError
from airflow_provider_gong.hooks.gong import GongHook
from airflow_provider_gong.quota import Grant
from airflow_provider_gong.testing.standin import GongStandIn, _Handler


@pytest.fixture
def connections(monkeypatch):
    """Every TCP connection the stand-in accepts, in order (one handler per connection)."""
    accepted: list[str] = []
    setup = _Handler.setup

    def counting_setup(self):
        accepted.append(f"{self.client_address[0]}:{self.client_address[1]}")
        setup(self)

    monkeypatch.setattr(_Handler, "setup", counting_setup)
    return accepted


def _open_connections(hook: GongHook) -> int:
    """Connected sockets in the pool the hook's next call to Gong will borrow from."""
    session = hook.session
    request = requests.Request("GET", hook.base_url).prepare()
    pool = session.get_adapter(hook.base_url).get_connection_with_tls_context(
        request, session.verify, proxies=session.proxies, cert=session.cert
    )
    return sum(1 for conn in list(pool.pool.queue) if conn is not None and conn.is_connected)


def _watch_slots(monkeypatch, hook: GongHook) -> list[int]:
    """How many connections were open each time a call took its slot."""
    seen: list[int] = []
    take = hook.limiter.take

    def take_and_look() -> Grant:
        seen.append(_open_connections(hook))
        return take()

    monkeypatch.setattr(hook.limiter, "take", take_and_look)
    return seen


def _hook(monkeypatch, standin: GongStandIn) -> GongHook:
    monkeypatch.setenv(
        "AIRFLOW_CONN_GONG_T", standin.connection_json(quota_backend="memory", rate_limit_per_second=1000)
    )
    return GongHook("gong_t")


def test_the_connection_is_open_before_the_slot_is_taken(monkeypatch, connections):
    with GongStandIn() as standin:
        hook = _hook(monkeypatch, standin)
        seen_at_slot = _watch_slots(monkeypatch, hook)
        for _ in range(3):
            hook.request("GET", "/v2/users")
    # The first slot was taken with the connection already accepted; the later calls reuse it.
    assert seen_at_slot == [1, 1, 1]
    assert len(connections) == 1


def test_a_dropped_connection_is_reopened_before_the_next_slot(monkeypatch, connections):
    with GongStandIn() as standin:
        hook = _hook(monkeypatch, standin)
        hook.request("GET", "/v2/users")
        hook.client.forget_connections()  # what the hook does after an answer it could not use
        assert _open_connections(hook) == 0
        seen_at_slot = _watch_slots(monkeypatch, hook)
        hook.request("GET", "/v2/users")
    assert seen_at_slot == [1]
    assert len(connections) == 2


def test_a_host_that_refuses_is_reported_by_the_call_as_never_sent(monkeypatch):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_GONG_T",
        f'{{"conn_type": "gong", "host": "http://127.0.0.1:{port}", "login": "k", "password": "s", '
        '"extra": {"quota_backend": "memory", "max_attempts": 1}}',
    )
    hook = GongHook("gong_t")
    adapter = hook.session.get_adapter(hook.base_url)
    assert isinstance(adapter, DeadlineAdapter)
    assert adapter.preconnect(hook.session, hook.base_url, timeout=1) is False
    with pytest.raises(GongConnectionError) as info:
        hook.request("POST", "/v2/meetings", json={}, idempotent=False)
    # Refused before anything was sent: the create may be sent again, it is not "may exist".
    assert info.value.retryable
    assert "may exist" not in str(info.value)
