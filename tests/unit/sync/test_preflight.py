"""The preflight: one integration-status call per new organizer, its refusals in Gong's own words."""

from __future__ import annotations

import pendulum

from airflow_provider_gong.exceptions import GongServerError
from airflow_provider_gong.meetings import Meeting
from airflow_provider_gong.sync.preflight import Preflight


class Gong:
    def __init__(self, users=None, error=None):
        self.users, self.error, self.asked = users or [], error, []

    def get_integration_status(self, emails):
        self.asked.append(list(emails))
        if self.error:
            raise self.error
        return self.users


def meeting(organizer: str) -> Meeting:
    start = pendulum.now("UTC").add(days=1)
    return Meeting.build(
        start_time=start, end_time=start.add(hours=1), organizer_email=organizer, invitees=["a@x.com"]
    )


def test_each_organizer_is_asked_once_and_refusals_carry_gongs_words():
    gong = Gong(
        [
            {"email": "ok@acme.com", "exists": True, "valid": True},
            {
                "email": "no@acme.com",
                "exists": True,
                "valid": False,
                "userFacingError": "No consent page",
                "fixUrl": "https://fix",
            },
        ]
    )
    check = Preflight(gong, enabled=True)
    check.check(["OK@acme.com", "no@acme.com", "not an address", None])
    check.check(["ok@acme.com"])  # known: not asked again
    assert gong.asked == [["no@acme.com", "ok@acme.com"]]
    good = meeting("ok@acme.com")
    assert check.verdict(good, None) == (good, None)
    assert check.verdict(meeting("no@acme.com"), None) == (
        None,
        "Preflight: no@acme.com: No consent page Fix it here: https://fix",
    )


def test_an_organizer_gong_is_silent_about_is_refused():
    check = Preflight(Gong([]), enabled=True)
    check.check(["ghost@acme.com"])
    assert "not a Gong user with a valid consent page" in check.verdict(meeting("ghost@acme.com"), None)[1]


def test_a_failing_preflight_is_switched_off_and_passes_every_meeting(caplog):
    gong = Gong(error=GongServerError("down", status=503))
    check = Preflight(gong, enabled=True)
    check.check(["a@acme.com"])
    check.check(["b@acme.com"])
    assert len(gong.asked) == 1 and not check.enabled and "Preflight skipped" in caplog.text
    assert check.verdict(meeting("a@acme.com"), None)[1] is None


def test_a_disabled_preflight_asks_nothing_and_keeps_a_rows_own_problem():
    gong = Gong()
    check = Preflight(gong, enabled=False)
    check.check(["a@acme.com"])
    assert gong.asked == [] and check.verdict(None, "bad row") == (None, "bad row")
