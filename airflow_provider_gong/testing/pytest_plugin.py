"""
pytest fixtures for DAG tests against the Gong stand-in.

Opt in (it is not loaded into every pytest run of every project that installs the provider):
``pytest_plugins = ("airflow_provider_gong.testing.pytest_plugin",)`` in a conftest.py, or
``pytest -p airflow_provider_gong.testing.pytest_plugin``.

.. code-block:: python

    def test_my_dag(gong_connection):          # AIRFLOW_CONN_GONG_DEFAULT points at the stand-in
        dr = my_dag.test()
        assert gong_connection.created_count() == 1
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_gong.testing.standin import GongStandIn


@pytest.fixture
def gong_standin() -> Iterator[GongStandIn]:
    """Yield a fresh stand-in on a free loopback port, stopped after the test."""
    with GongStandIn() as standin:
        yield standin


@pytest.fixture
def gong_connection(gong_standin: GongStandIn, monkeypatch: pytest.MonkeyPatch) -> GongStandIn:
    """Return the stand-in, with ``AIRFLOW_CONN_GONG_DEFAULT`` pointing at it for the test."""
    monkeypatch.setenv("AIRFLOW_CONN_GONG_DEFAULT", gong_standin.connection_json())
    return gong_standin
