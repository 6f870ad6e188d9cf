"""``[core] hostname_callable`` of the local Celery deployment: each worker's own name.

Every worker of ``LocalDeployment(executor="celery")`` runs on this one machine, so the default
(``getfqdn``) would give every task instance the same ``hostname``. Each worker's environment names it
in ``GONG_WORKER_HOSTNAME`` instead, as its own machine would; any other process (scheduler, API
server) falls back to the machine's name.
"""

from __future__ import annotations

import os
import socket

ENV = "GONG_WORKER_HOSTNAME"


def hostname() -> str:
    return os.environ.get(ENV) or socket.getfqdn()
