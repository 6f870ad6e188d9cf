"""
### Create one Gong meeting

Creates a Gong consent-meeting link for a call tomorrow, from templated values, then hands the
meeting ID and URL to a downstream task (here it only prints them; in real life you would put the URL
into the calendar invite together with Gong's `additional_invitees`).

Connections: `gong_default` (type `gong`). Run it offline against the bundled stand-in:
`python -m airflow_provider_gong.testing` prints the connection to export.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from airflow_provider_gong.operators.meetings import GongCreateMeetingOperator

# A Jinja expression: tomorrow at the top of the hour, from the run's run_after.
TOMORROW_AT_THE_HOUR = (
    "(dag_run.run_after + macros.timedelta(days=1)).replace(minute=0, second=0, microsecond=0)"
)


@dag(
    dag_id="gong_create_meeting",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["gong", "example"],
    params={
        "gong_conn_id": Param(
            "gong_default", type="string", description="The Gong connection (type gong) to create it with."
        ),
        "organizer_email": Param(
            "rep@acme.com",
            type="string",
            format="idn-email",
            description="The Gong user who hosts the meeting (must have a consent page in Gong).",
        ),
        "invitees": Param(
            ["buyer@client.com"], type="array", description="The invitees' email addresses, one per line."
        ),
        "title": Param("Discovery call", type="string", description="The meeting title shown in Gong."),
    },
    render_template_as_native_obj=True,
)
def gong_create_meeting() -> None:
    # [START howto_operator_gong_create_meeting]
    create = GongCreateMeetingOperator(
        task_id="create_meeting",
        gong_conn_id="{{ params.gong_conn_id }}",
        # Tomorrow at the top of the hour, for 30 minutes (rendered as native datetimes). run_after is
        # set on every run; logical_date is not (a trigger from the UI, CLI or REST API may omit it).
        start_time=f"{{{{ {TOMORROW_AT_THE_HOUR} }}}}",
        end_time=f"{{{{ {TOMORROW_AT_THE_HOUR} + macros.timedelta(minutes=30) }}}}",
        invitees="{{ params.invitees }}",
        organizer_email="{{ params.organizer_email }}",
        title="{{ params.title }}",
        external_id="{{ dag.dag_id }}:{{ run_id }}",
        # Optional: pool="gong_api" caps concurrent Gong tasks, once you created the pool
        # (airflow pools set gong_api 3 "Gong API"); a task in a missing pool never starts.
    )
    # [END howto_operator_gong_create_meeting]

    @task
    def share_link(meeting_id: str, meeting_url: str) -> str:
        line = f"Gong meeting {meeting_id}: {meeting_url}"
        print(line)
        return line

    share_link(create.output["meeting_id"], create.output["meeting_url"])


gong_create_meeting()
