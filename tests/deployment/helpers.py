"""The DAG runs the deployment test triggers, and the log scan (plain code; fixtures in conftest.py)."""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_gong.testing.standin import GongStandIn
from tests._support.deployment import LocalDeployment

CREATE_DAG = "gong_create_meeting"
WAREHOUSE_DAG = "gong_meetings_from_warehouse"
DAG_FILES = [f"{CREATE_DAG}.py", f"{WAREHOUSE_DAG}.py"]
MAPPED_DAG = "gong_meetings_mapped"
#: The batch example's task, with overlapping runs, one retry and a short lease (see the file).
CELERY_BATCH_DAG = "gong_celery_batch"
CELERY_DAG_FILES = [f"{MAPPED_DAG}.py", str(Path(__file__).parent / "dags" / f"{CELERY_BATCH_DAG}.py")]
CELERY_DAGS = [MAPPED_DAG, CELERY_BATCH_DAG]
#: Rows of meetings_to_schedule, the mapped example's table (one mapped task each).
MAPPED_ROWS = 6
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


@dataclass
class Call:
    at: float  # time.monotonic() when answered
    method: str
    path: str
    status: int
    external_id: str | None  # of a create


@dataclass
class CallRecorder:
    """Every API call the stand-in answers, with its time (the stand-in's own log has none)."""

    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def attach(cls, standin: GongStandIn) -> CallRecorder:
        recorder = cls()
        handle = standin.handle

        def timed(method: str, path: str, headers: Any, body: bytes, query: str = "") -> Any:
            answer = handle(method, path, headers, body, query)
            if not path.startswith("/_standin/"):
                external_id = None
                if method == "POST" and path == "/v2/meetings":
                    with contextlib.suppress(ValueError, AttributeError):
                        external_id = json.loads(body).get("externalId")
                with recorder.lock:
                    recorder.calls.append(Call(time.monotonic(), method, path, answer[0], external_id))
            return answer

        standin.handle = timed  # type: ignore[method-assign]
        return recorder

    def snapshot(self) -> list[Call]:
        with self.lock:
            return list(self.calls)
