"""The DAG runs the deployment test triggers, and the log scan (plain code; fixtures in conftest.py)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from tests._support.deployment import LocalDeployment

CREATE_DAG = "gong_create_meeting"
WAREHOUSE_DAG = "gong_meetings_from_warehouse"
DAG_FILES = [f"{CREATE_DAG}.py", f"{WAREHOUSE_DAG}.py"]
#: A Gong user of the stand-in whose consent page is off: creating a meeting for them answers 409.
NO_CONSENT_ORGANIZER = "noconsent@acme.com"


@dataclass
class Run:
    dag_id: str
    run_id: str
    conf: dict
    state: str = ""


@dataclass
class Runs:
    """``created``: one meeting; ``refused``: Gong answers 409 (its error body echoes the credentials);
    ``warehouse``: the batch over the demo table, with the bearer-token connection."""

    created: Run
    refused: Run
    warehouse: Run
    title: str = field(default="")

    @classmethod
    def trigger_all(cls, deployment: LocalDeployment, timeout: float = 240.0) -> Runs:
        title = f"Deployment check {secrets.token_hex(4)}"
        confs = {
            "created": (CREATE_DAG, {"title": title, "invitees": ["buyer@client.com", "cfo@client.com"]}),
            "refused": (CREATE_DAG, {"organizer_email": NO_CONSENT_ORGANIZER, "title": "Refused"}),
            "warehouse": (WAREHOUSE_DAG, {"fail_on_row_errors": False, "gong_conn_id": "gong_bearer"}),
        }
        runs = {
            name: Run(dag_id, deployment.trigger(dag_id, conf), conf)
            for name, (dag_id, conf) in confs.items()
        }
        for run in runs.values():  # started together: the executor runs them side by side
            run.state = deployment.wait_for_run(run.dag_id, run.run_id, timeout=timeout)
        return cls(title=title, **runs)


def find_leaks(files: list[Path], forbidden: dict[str, str]) -> list[str]:
    """``"<file>: <what>"`` for every file that contains one of the ``forbidden`` values."""
    leaks = []
    for path in files:
        text = path.read_text(errors="replace")
        leaks.extend(f"{path}: {what}" for what, value in forbidden.items() if value in text)
    return leaks
