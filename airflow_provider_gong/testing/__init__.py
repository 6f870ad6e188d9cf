"""
Offline testing aids: the Gong stand-in server and its pytest fixtures.

``from airflow_provider_gong.testing import GongStandIn`` or, in pytest, the ``gong_standin`` and
``gong_connection`` fixtures: opt in with
``pytest_plugins = ("airflow_provider_gong.testing.pytest_plugin",)`` in a conftest.py, or
``pytest -p airflow_provider_gong.testing.pytest_plugin``.
"""

from airflow_provider_gong.testing.standin import Fault, GongStandIn

__all__ = ["Fault", "GongStandIn"]
