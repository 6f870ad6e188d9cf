"""No credential, in any form, leaves the hook, even when the server echoes the Authorization header
into its error bodies (as some gateways and proxies do): exceptions, to_dict(), test_connection(),
retry logs, and the warehouse ledger's error and request_id columns."""

from __future__ import annotations

import base64
import json
import logging

import pytest

from airflow_provider_gong.exceptions import GongError
from airflow_provider_gong.hooks.gong import GongHook
from airflow_provider_gong.meetings import Meeting
from airflow_provider_gong.testing import GongStandIn
from tests._support.warehouse import demo_rows
from tests.dates import SOON
from tests.integration.helpers import ledger, operator, seed

pytestmark = pytest.mark.integration

KEY, SECRET, TOKEN = "echo-access-key", "echo-Secret-Value-42", "echo-Bearer-Token-77"


def forms() -> list[str]:
    """Every form a credential can take in text: raw, key:secret, base64, and the header values."""
    pair = f"{KEY}:{SECRET}"
    b64 = base64.b64encode(pair.encode()).decode()
    return [SECRET, TOKEN, pair, b64, base64.b64encode(SECRET.encode()).decode(), f"Bearer {TOKEN}"]


def assert_clean(*texts) -> None:
    for text in texts:
        for form in forms():
            assert form not in str(text), (form, str(text)[:300])


@pytest.fixture(params=["basic", "bearer"])
def echoing(request, monkeypatch):
    with GongStandIn(
        access_key=KEY, access_key_secret=SECRET, access_token=TOKEN, echo_authorization=True
    ) as standin:
        monkeypatch.setenv(
            "AIRFLOW_CONN_GONG_DEFAULT",
            standin.connection_json(auth=request.param, rate_limit_per_second=500, max_retry_wait=0.1),
        )
        yield standin


def meeting(organizer="rep@acme.com") -> Meeting:
    return Meeting.build(
        start_time=f"{SOON}T10:00:00Z",
        end_time=f"{SOON}T10:30:00Z",
        organizer_email=organizer,
        invitees=["buyer@client.com"],
    )


CASES = [
    ("400", lambda s: s.inject("status", status=400), lambda h: h.create_meeting(meeting())),
    ("404", None, lambda h: h.create_meeting(meeting("nobody@acme.com"))),
    ("409", None, lambda h: h.create_meeting(meeting("noconsent@acme.com"))),
    ("403", lambda s: setattr(s, "limited_release", True), lambda h: h.create_meeting(meeting())),
    (
        "429",
        lambda s: s.inject("status", status=429, retry_after=3600),
        lambda h: h.create_meeting(meeting()),
    ),
    (
        "429-retried",
        lambda s: s.inject("status", times=9, status=429, retry_after=0),
        lambda h: h.request("GET", "/v2/users"),
    ),
    ("500-create", lambda s: s.inject("status", status=500), lambda h: h.create_meeting(meeting())),
    (
        "503-put",
        lambda s: s.inject("status", times=9, status=503),
        lambda h: h.update_meeting("123", meeting()),
    ),
    ("404-put", None, lambda h: h.update_meeting("123", meeting())),
]


@pytest.mark.parametrize("name, setup, call", CASES, ids=[c[0] for c in CASES])
def test_no_error_path_carries_a_credential(echoing, caplog, name, setup, call):
    if setup:
        setup(echoing)
    hook = GongHook()
    hook.sleep = lambda s: None
    with caplog.at_level(logging.DEBUG), pytest.raises(GongError) as info:
        call(hook)
    exc = info.value
    assert "Request was: Authorization" in json.dumps(exc.to_dict()) or exc.status in (None, 500, 503)
    assert_clean(str(exc), json.dumps(exc.to_dict()), repr(exc.args), caplog.text)


@pytest.mark.parametrize("setup", [None, "unauthorized", "forbidden", "500"])
def test_test_connection_message_carries_no_credential(echoing, setup):
    if setup == "unauthorized":
        echoing.access_key_secret = echoing.access_token = "something-else-entirely"
    elif setup == "forbidden":
        echoing.inject("status", status=403)
    elif setup == "500":
        echoing.inject("status", times=9, status=500)
    ok, message = GongHook().test_connection()
    assert ok is (setup is None)
    if setup:
        assert "Request was" in message or "HTTP" in message
    assert_clean(message)


def test_the_warehouse_ledger_never_stores_a_credential(warehouse, echoing):
    rows = demo_rows(4, bad=False)
    rows[1] = (*rows[1][:4], "nobody@acme.com", *rows[1][5:])  # 404 with the echo
    rows[2] = (*rows[2][:4], "noconsent@acme.com", *rows[2][5:])  # 409 with the echo
    seed(warehouse, rows)
    echoing.inject("status", status=500, match="POST /v2/meetings")  # row 1: 5xx, outcome unknown
    summary = operator(warehouse, fail_on_row_errors=False).execute({})
    assert (summary["created"], summary["failed"], summary["outcome_unknown"]) == (1, 2, 1)
    stored = ledger(warehouse)
    assert "Request was" in stored["2"]["error"]  # the echo reached the ledger, redacted
    for row in stored.values():
        assert_clean(row["error"], row["request_id"])
