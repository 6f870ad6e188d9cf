"""Which store a connection's extras pick, and one store per file or database in a process."""

from __future__ import annotations

import pytest

from airflow_provider_gong.exceptions import GongValidationError
from airflow_provider_gong.state import MemoryStore, StoreRegistry, default_state_dir, locate
from tests.unit.state.counter import COUNTER


def test_locate_reads_the_extras(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    kw = {"quota_dir": None, "quota_conn_id": None, "filename": "f.sqlite3"}
    assert locate("memory", **kw) == ("memory", "")
    assert locate("local", **kw) == ("local", str(tmp_path / "home" / "gong_quota" / "f.sqlite3"))
    assert locate("local", **{**kw, "quota_dir": str(tmp_path / "d")}) == (
        "local",
        str(tmp_path / "d" / "f.sqlite3"),
    )
    assert locate("sql", **{**kw, "quota_conn_id": "pg"}) == ("sql", "pg")
    assert default_state_dir() == tmp_path / "home" / "gong_quota"


@pytest.mark.parametrize(
    "backend, conn_id, message",
    [
        ("sql", None, "quota_backend 'sql' needs quota_conn_id"),
        ("redis", None, "quota_backend must be one of local, sql, memory, got 'redis'"),
    ],
)
def test_locate_refuses_what_it_cannot_use(backend, conn_id, message):
    with pytest.raises(GongValidationError, match=message):
        locate(backend, quota_dir=None, quota_conn_id=conn_id, filename="f")


def test_the_registry_keeps_one_store_per_place(tmp_path):
    made: list[tuple[str, str]] = []
    memory = MemoryStore(COUNTER)

    def local(path):
        made.append(("local", path))
        return MemoryStore(COUNTER)

    def sql(conn_id):
        made.append(("sql", conn_id))
        return MemoryStore(COUNTER)

    stores = StoreRegistry("c.sqlite3", memory=memory, local=local, sql=sql)
    assert stores.get("memory") is memory
    one = stores.get("local", quota_dir=str(tmp_path))
    assert stores.get("local", quota_dir=str(tmp_path) + "/") is one  # the same file, however written
    assert stores.get("local", quota_dir=str(tmp_path / "other")) is not one
    assert stores.get("sql", quota_conn_id="pg") is stores.get("sql", quota_conn_id="pg")
    assert made == [
        ("local", str(tmp_path / "c.sqlite3")),
        ("local", str(tmp_path / "other" / "c.sqlite3")),
        ("sql", "pg"),
    ]
