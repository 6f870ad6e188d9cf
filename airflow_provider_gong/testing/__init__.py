"""Offline testing aids: the Gong stand-in server and its pytest fixtures.

``from airflow_provider_gong.testing import GongStandIn`` or, in pytest, the ``gong_standin`` and
``gong_connection`` fixtures (registered automatically when this package is installed).
"""

from airflow_provider_gong.testing.standin import Fault, GongStandIn

__all__ = ["Fault", "GongStandIn"]
