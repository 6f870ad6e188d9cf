"""
### One Gong meeting from start to end: check, create, reschedule, cancel

Checks that the organizer can create Gong meetings (a Gong user with a valid consent page), creates a
meeting, moves it by an hour with a PUT of the full meeting, then deletes it. Each step is one of the
provider's single-meeting operators; the meeting ID travels between them as XCom.

In real life these steps live in different DAGs (the create when a call is booked, the update when it
moves, the delete when it is cancelled); for a whole table of meetings, use `gong_meetings_sync`.

Connections: `gong_default` (type `gong`). Run it offline against the bundled stand-in:
`python -m airflow_provider_gong.testing` prints the connection to export.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag

from airflow_provider_gong.operators.meetings import (
    GongCreateMeetingOperator,
    GongDeleteMeetingOperator,
    GongMeetingIntegrationStatusOperator,
    GongUpdateMeetingOperator,
)

# A Jinja expression: two days after the run's run_after, at the top of the hour.
IN_TWO_DAYS = "(dag_run.run_after + macros.timedelta(days=2)).replace(minute=0, second=0, microsecond=0)"


@dag(
    dag_id="gong_meeting_lifecycle",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["gong", "example"],
    params={
        "gong_conn_id": Param("gong_default", type="string", description="The Gong connection (type gong)."),
        "organizer_email": Param(
            "rep@acme.com",
            type="string",
            format="idn-email",
            description="The Gong user who hosts the meeting (checked first: must have a consent page).",
        ),
        "invitees": Param(
            ["buyer@client.com"], type="array", description="The invitees' email addresses, one per line."
        ),
    },
    render_template_as_native_obj=True,
)
def gong_meeting_lifecycle() -> None:
    # [START howto_operator_gong_integration_status]
    check_organizer = GongMeetingIntegrationStatusOperator(
        task_id="check_organizer",
        gong_conn_id="{{ params.gong_conn_id }}",
        emails="{{ params.organizer_email }}",
        fail_on_invalid=True,  # fail, naming the organizer and Gong's fix link, before any create
    )
    # [END howto_operator_gong_integration_status]

    create = GongCreateMeetingOperator(
        task_id="create_meeting",
        gong_conn_id="{{ params.gong_conn_id }}",
        start_time=f"{{{{ {IN_TWO_DAYS} }}}}",
        end_time=f"{{{{ {IN_TWO_DAYS} + macros.timedelta(minutes=30) }}}}",
        invitees="{{ params.invitees }}",
        organizer_email="{{ params.organizer_email }}",
        title="Discovery call",
        external_id="{{ dag.dag_id }}:{{ run_id }}",
    )

    # [START howto_operator_gong_update_meeting]
    reschedule = GongUpdateMeetingOperator(
        task_id="reschedule_meeting",
        gong_conn_id="{{ params.gong_conn_id }}",
        meeting_id="{{ ti.xcom_pull(task_ids='create_meeting', key='meeting_id') }}",
        # A PUT replaces the whole meeting: give every field, as for a create.
        start_time=f"{{{{ {IN_TWO_DAYS} + macros.timedelta(hours=1) }}}}",
        end_time=f"{{{{ {IN_TWO_DAYS} + macros.timedelta(hours=1, minutes=30) }}}}",
        invitees="{{ params.invitees }}",
        organizer_email="{{ params.organizer_email }}",
        title="Discovery call (moved)",
        external_id="{{ dag.dag_id }}:{{ run_id }}",
    )
    # [END howto_operator_gong_update_meeting]

    # [START howto_operator_gong_delete_meeting]
    cancel = GongDeleteMeetingOperator(
        task_id="delete_meeting",
        gong_conn_id="{{ params.gong_conn_id }}",
        meeting_id="{{ ti.xcom_pull(task_ids='create_meeting', key='meeting_id') }}",
        organizer_email="{{ params.organizer_email }}",  # Gong finds the meeting by its organizer
    )
    # [END howto_operator_gong_delete_meeting]

    check_organizer >> create >> reschedule >> cancel


gong_meeting_lifecycle()
