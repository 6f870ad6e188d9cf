"""The shared quota's algorithm on a fake clock: one schedule and one daily count per Gong account,
whichever store keeps them (memory, or the SQLite file of the ``local`` backend)."""

from __future__ import annotations

import base64
import datetime
import json
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from airflow_provider_gong.exceptions import (
    GongError,
    GongMeetingMayExistError,
    GongQuotaExhaustedError,
    GongRateLimitError,
    GongValidationError,
)
from airflow_provider_gong.hooks.gong import GongHook
from airflow_provider_gong.quota import (
    DEFAULT_DAILY_QUOTA,
    MEMORY,
    MemoryStore,
    QuotaLimiter,
    QuotaStore,
    SQLiteStore,
    account_key,
    default_quota_dir,
    store_for,
)
from tests.conftest import ROOT
from tests.unit.hooks.test_gong import MEETING
from tests.unit.test_pacing import FakeClock, max_in_sliding_window

UTC = datetime.timezone.utc
BEFORE_MIDNIGHT = datetime.datetime(2030, 3, 4, 23, 59, 58, tzinfo=UTC).timestamp()
KEY, SECRET, TOKEN = "quota-key-4711", "quota-secret-0815-XYZ", "quota-bearer-token-QRS"


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request, tmp_path):
    """A store factory on the given clock: the same algorithm must hold on every backend."""

    def make(clock) -> QuotaStore:
        if request.param == "memory":
            return MemoryStore(clock=clock, wall=clock)
        return SQLiteStore(tmp_path / "quota.sqlite3", clock=clock, wall=clock)

    return make


def limiter_on(store: QuotaStore, clock: FakeClock, rate: float = 3, account: str = "acct", **kwargs):
    return QuotaLimiter(store, account, rate, clock=clock, sleep=clock.sleep, **kwargs)


# -- one schedule for every process ---------------------------------------------------------------------


def test_limiters_on_one_store_share_one_rate(make_store):
    """Three "processes" (limiters of their own) take turns on one store: together they keep the
    account's rate, where three private limiters would each have taken it."""
    clock = FakeClock()
    store = make_store(clock)
    limiters = [limiter_on(store, clock) for _ in range(3)]
    times = []
    for i in range(60):
        limiters[i % 3].acquire()
        times.append(clock.now)
    assert max_in_sliding_window(times) == 3
    assert (len(times) - 1) / (times[-1] - times[0]) >= 0.99 * 3
    assert limiters[0].usage() == (60, DEFAULT_DAILY_QUOTA)

    private = [limiter_on(MemoryStore(clock=clock), clock) for _ in range(3)]
    burst = []
    for i in range(60):
        private[i % 3].acquire()
        burst.append(clock.now)
    assert max_in_sliding_window(burst) == 9  # what every hook pacing only itself did


def test_a_new_limiter_gets_no_free_first_call(make_store):
    """Each task's new hook used to send its first call at once: now it queues behind the others."""
    clock = FakeClock()
    store = make_store(clock)
    limiter_on(store, clock).acquire()
    assert limiter_on(store, clock).acquire() == pytest.approx(1 / 3)


def test_state_is_kept_per_account(make_store):
    clock = FakeClock()
    store = make_store(clock)
    a = limiter_on(store, clock, account="host-a/1", daily_quota=2)
    b = limiter_on(store, clock, account="host-b/2", daily_quota=2)
    a.acquire()
    assert a.acquire() == pytest.approx(1 / 3)
    assert b.acquire() == 0.0  # not paced behind account a's calls
    with pytest.raises(GongQuotaExhaustedError):
        a.acquire()
    assert b.acquire() == pytest.approx(1 / 3)  # paced behind its own call; a's budget is not b's
    assert (a.usage(), b.usage()) == ((2, 2), (2, 2))


# -- the daily budget -----------------------------------------------------------------------------------


def test_spent_budget_raises_at_once_with_the_wait_until_utc_midnight(make_store):
    clock = FakeClock()
    clock.now = BEFORE_MIDNIGHT
    store = make_store(clock)
    limiter = limiter_on(store, clock, rate=10, daily_quota=3)
    for _ in range(3):
        limiter.acquire()
    assert clock.now == pytest.approx(BEFORE_MIDNIGHT + 0.2)
    before = clock.now
    with pytest.raises(GongQuotaExhaustedError) as caught:
        limiter.acquire()
    error = caught.value
    assert clock.now == before  # no sleep: it fails now instead of waiting for hours
    assert isinstance(error, GongRateLimitError) and not error.retryable
    assert error.retry_after == pytest.approx(1.8)
    assert error.resume_at == datetime.datetime(2030, 3, 5, tzinfo=UTC)
    assert (error.used, error.budget) == (3, 3)
    message = str(error)
    assert "3 of 3 calls" in message and "2030-03-05 00:00 UTC" in message and "daily_quota" in message
    assert limiter.usage() == (3, 3)
    status = limiter.status()
    assert (status["used"], status["budget"], status["left"]) == (3, 3, 0)
    assert status["resets_at"] == datetime.datetime(2030, 3, 5, tzinfo=UTC)


def test_the_budget_resets_at_utc_midnight(make_store):
    clock = FakeClock()
    clock.now = BEFORE_MIDNIGHT
    limiter = limiter_on(make_store(clock), clock, rate=10, daily_quota=3)
    for _ in range(3):
        limiter.acquire()
    with pytest.raises(GongQuotaExhaustedError):
        limiter.acquire()
    clock.now = BEFORE_MIDNIGHT + 2.0  # 00:00:00 UTC
    assert limiter.usage() == (0, 3)
    assert limiter.acquire() == 0.0  # the refused call reserved nothing, so nothing delays this one
    assert limiter.usage() == (1, 3)
    assert limiter.status()["resets_at"] == datetime.datetime(2030, 3, 6, tzinfo=UTC)


def test_a_slot_after_midnight_counts_for_the_new_day(make_store):
    """Calls queued across midnight go out after it: Gong counts them on the new day."""
    clock = FakeClock()
    clock.now = BEFORE_MIDNIGHT + 1.85
    store = make_store(clock)
    first, second = (limiter_on(store, clock, rate=4, daily_quota=1) for _ in range(2))
    first.acquire()  # 23:59:59.85, the day's only call
    second.acquire()  # its slot is 00:00:00.10: not refused by the full day before
    assert datetime.datetime.fromtimestamp(clock.now, UTC).day == 5
    assert first.usage() == (1, 1)


def test_the_budget_is_shared_between_processes(tmp_path):
    """Real processes on the local store: no reservation is lost or counted twice under contention."""
    script = textwrap.dedent(
        """
        import sys
        from airflow_provider_gong.quota import QuotaLimiter, SQLiteStore
        limiter = QuotaLimiter(SQLiteStore(sys.argv[1]), "acct", float("inf"), daily_quota=10**6)
        for _ in range(150):
            limiter.acquire()
        """
    )
    path = tmp_path / "q" / "quota.sqlite3"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(path)], cwd=ROOT, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    assert QuotaLimiter(SQLiteStore(path), "acct", 3).usage() == (450, DEFAULT_DAILY_QUOTA)


# -- the hook: account key, settings, secrets -------------------------------------------------------------


def conn(host="us-12345.api.gong.io", **fields) -> str:
    return json.dumps({"conn_type": "gong", "host": host, "login": KEY, "password": SECRET, **fields})


def test_two_connection_ids_for_one_account_share_the_state(monkeypatch, tmp_path):
    extra = {"quota_dir": str(tmp_path), "rate_limit_per_second": 5}
    monkeypatch.setenv("AIRFLOW_CONN_GONG_ONE", conn(extra=extra))
    monkeypatch.setenv("AIRFLOW_CONN_GONG_TWO", conn(host="https://US-12345.api.gong.io/v2", extra=extra))
    monkeypatch.setenv("AIRFLOW_CONN_GONG_OTHER", conn(host="us-99.api.gong.io", extra=extra))
    one, two, other = GongHook("gong_one"), GongHook("gong_two"), GongHook("gong_other")
    assert one.limiter.account == two.limiter.account != other.limiter.account
    assert one.limiter.store is two.limiter.store is other.limiter.store  # one file, one connection


def test_account_key_names_the_host_and_hides_the_credential():
    basic = account_key("https://api.gong.io", auth_type="basic", access_key=KEY, access_token=None)
    assert basic.startswith("api.gong.io/") and KEY not in basic
    assert basic != account_key("https://api.gong.io", auth_type="basic", access_key="k2", access_token=None)
    bearer = account_key("https://us-1.api.gong.io", auth_type="bearer", access_key=None, access_token=TOKEN)
    assert TOKEN not in bearer
    assert bearer != account_key(
        "https://us-1.api.gong.io", auth_type="bearer", access_key=None, access_token="another"
    )


@pytest.mark.parametrize("auth", ["basic", "bearer"])
def test_no_secret_is_ever_written_to_the_quota_store(monkeypatch, requests_mock, tmp_path, auth):
    extra = {"quota_dir": str(tmp_path), "rate_limit_per_second": 1000}
    if auth == "bearer":
        extra["access_token"] = TOKEN
    monkeypatch.setenv("AIRFLOW_CONN_GONG_SECRETS", conn(extra=extra))
    requests_mock.get("https://us-12345.api.gong.io/v2/users", json={"users": []})
    hook = GongHook("gong_secrets")
    for _ in range(3):
        hook.request("GET", "/v2/users")
    assert requests_mock.call_count == 3
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"us-12345.api.gong.io" in stored  # the right file: the account's row is in it
    basic = base64.b64encode(f"{KEY}:{SECRET}".encode())
    for secret in (KEY.encode(), SECRET.encode(), TOKEN.encode(), basic):
        assert secret not in stored
    rows = (
        sqlite3.connect(tmp_path / "quota.sqlite3").execute("SELECT account, used FROM gong_quota").fetchall()
    )
    assert rows == [(hook.limiter.account, 3)]


def test_settings_defaults_and_string_extras(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GONG_Q", f"gong://{KEY}:{SECRET}@api.gong.io/?daily_quota=250")
    settings = GongHook("gong_q").settings
    assert (settings.daily_quota, settings.quota_backend, settings.quota_dir) == (250, "local", None)
    monkeypatch.setenv("AIRFLOW_CONN_GONG_Q", conn(extra={"quota_backend": " Memory ", "daily_quota": None}))
    hook = GongHook("gong_q")
    assert (hook.settings.quota_backend, hook.settings.daily_quota) == ("memory", DEFAULT_DAILY_QUOTA)
    assert hook.limiter.store is MEMORY


@pytest.mark.parametrize(
    "extra, fragment",
    [
        ({"quota_backend": "sql"}, "quota_conn_id"),
        ({"quota_backend": "redis"}, "quota_backend"),
        ({"daily_quota": 0}, "daily_quota"),
    ],
)
def test_bad_quota_extras_are_refused_before_any_call(monkeypatch, requests_mock, extra, fragment):
    monkeypatch.setenv("AIRFLOW_CONN_GONG_BAD", conn(extra=extra))
    with pytest.raises(GongValidationError, match=fragment):
        GongHook("gong_bad").request("GET", "/v2/users")
    assert requests_mock.call_count == 0


def test_the_sql_backend_needs_postgres(monkeypatch, requests_mock, tmp_path):
    monkeypatch.setenv(
        "AIRFLOW_CONN_QUOTA_LITE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "x")})
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_GONG_SQLQ", conn(extra={"quota_backend": "sql", "quota_conn_id": "quota_lite"})
    )
    with pytest.raises(GongValidationError, match="needs PostgreSQL"):
        GongHook("gong_sqlq").request("GET", "/v2/users")
    assert requests_mock.call_count == 0


def test_default_quota_dir_is_under_airflow_home(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert default_quota_dir() == tmp_path / "gong_quota"
    store = store_for("local")
    assert isinstance(store, SQLiteStore) and store.path == tmp_path / "gong_quota" / "quota.sqlite3"
    assert store_for("local", quota_dir=str(tmp_path / "gong_quota")) is store


# -- the hook: the error, quota_status, store failures -------------------------------------------------------


def paced_hook(monkeypatch, clock: FakeClock, **extra) -> GongHook:
    monkeypatch.setenv("AIRFLOW_CONN_GONG_QH", conn(extra={"rate_limit_per_second": 10, **extra}))
    hook = GongHook("gong_qh")
    hook.limiter = QuotaLimiter(
        MemoryStore(clock=clock, wall=clock),
        hook.limiter.account,
        10,
        daily_quota=hook.settings.daily_quota,
        clock=clock,
        sleep=clock.sleep,
    )
    hook.slept = []
    hook.sleep = hook.slept.append
    return hook


def test_hook_raises_the_typed_error_without_calling_gong(monkeypatch, requests_mock):
    clock = FakeClock()
    clock.now = BEFORE_MIDNIGHT - 7200
    hook = paced_hook(monkeypatch, clock, daily_quota=5)
    requests_mock.get("https://us-12345.api.gong.io/v2/users", json={"users": []})
    for _ in range(5):
        hook.request("GET", "/v2/users")
    assert hook.quota_status() == {
        "used": 5,
        "budget": 5,
        "left": 0,
        "resets_at": datetime.datetime(2030, 3, 5, tzinfo=UTC),
    }
    with pytest.raises(GongQuotaExhaustedError) as caught:
        hook.request("GET", "/v2/users")
    assert requests_mock.call_count == 5 and hook.slept == []  # no call, no retry wait
    assert caught.value.retry_after == pytest.approx(7202 - 0.4)
    assert "5 of 5 calls" in str(caught.value)


def test_a_budget_that_resets_within_max_retry_wait_is_waited_out(monkeypatch, requests_mock):
    """Like a 429's short Retry-After: just before UTC midnight the retry policy waits, then goes on."""
    clock = FakeClock()
    clock.now = BEFORE_MIDNIGHT
    hook = paced_hook(monkeypatch, clock, daily_quota=1, max_retry_wait=10)

    def wait(seconds: float) -> None:
        hook.slept.append(seconds)
        clock.now += seconds

    hook.sleep = wait
    requests_mock.get("https://us-12345.api.gong.io/v2/users", json={"users": []})
    hook.request("GET", "/v2/users")
    hook.request("GET", "/v2/users")  # waits for midnight, then counts on the new day
    assert requests_mock.call_count == 2
    assert hook.slept == [pytest.approx(2.0)]
    assert hook.limiter.usage() == (1, 1)


class BrokenStore(QuotaStore):
    name = "broken"

    def transact(self, key, change, labels=()):
        raise sqlite3.OperationalError("database is locked")


def test_a_failing_store_is_a_gong_error_and_never_a_maybe_created_meeting(monkeypatch, requests_mock):
    monkeypatch.setenv("AIRFLOW_CONN_GONG_BROKEN", conn())
    hook = GongHook("gong_broken")
    hook.limiter = QuotaLimiter(BrokenStore(), "acct", 3)
    requests_mock.post("https://us-12345.api.gong.io/v2/meetings", json={})
    with pytest.raises(GongError, match=r"database is locked.*No call was made") as caught:
        hook.create_meeting(MEETING)
    assert not isinstance(caught.value, GongMeetingMayExistError)
    assert requests_mock.call_count == 0
    with pytest.raises(GongError, match="shared Gong quota"):
        hook.quota_status()
