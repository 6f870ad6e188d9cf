"""scripts/check_layout.py flags what it is there to hold, on small synthetic package trees."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_layout.py"


@pytest.fixture(scope="module")
def layout() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_layout", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_layout"] = module
    spec.loader.exec_module(module)
    return module


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in {"__init__.py": "", **files}.items():
        path = root / "airflow_provider_gong" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_clean_tree_has_no_breach(layout: ModuleType, tmp_path: Path) -> None:
    root = make_tree(
        tmp_path,
        {
            "exceptions.py": "class GongError(Exception):\n    pass\n",
            "hooks/__init__.py": "",
            "hooks/gong.py": "from airflow_provider_gong.exceptions import GongError\n",
            "operators/__init__.py": "",
            "operators/meetings.py": "from airflow_provider_gong.hooks.gong import GongError\n",
        },
    )
    report = layout.check(root)
    assert report.breaches == []
    assert report.edges["airflow_provider_gong.operators.meetings"] == {"airflow_provider_gong.hooks.gong"}


def test_sizes_over_the_limits_are_breaches(layout: ModuleType, tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    method = "\n".join(f"        y{i} = {i}" for i in range(10))
    big_class = "class Big:\n" + "\n".join(f"    def m{i}(self) -> None:\n{method}\n" for i in range(30))
    root = make_tree(
        tmp_path,
        {
            "meetings.py": f"def long() -> None:\n{body}\n",
            "rules.py": big_class,
            "links.py": "x = 1\n" * 451,
            "testing/__init__.py": "",
            "testing/standin.py": "x = 1\n" * 900,
        },
    )
    breaches = layout.check(root).breaches
    assert "function airflow_provider_gong.meetings.long: 62 lines (limit 60)" in breaches
    assert any(b.startswith("class airflow_provider_gong.rules.Big:") for b in breaches)
    assert "module airflow_provider_gong.links: 451 lines (limit 450)" in breaches
    assert not any("standin" in b for b in breaches), "the stand-in is exempt"


def test_upward_imports_and_cycles_are_breaches_even_when_lazy(layout: ModuleType, tmp_path: Path) -> None:
    root = make_tree(
        tmp_path,
        {
            "hooks/__init__.py": "",
            "hooks/gong.py": "from airflow_provider_gong import oauth\n",
            "oauth.py": "def f() -> None:\n    from airflow_provider_gong.hooks.gong import x\n",
            "sync/__init__.py": "",
            "sync/a.py": "from . import b\n",
            "sync/b.py": "from airflow_provider_gong.sync.a import y\n",
        },
    )
    breaches = layout.check(root).breaches
    assert (
        "upward import: airflow_provider_gong.oauth (layer 3) -> airflow_provider_gong.hooks.gong (layer 5)"
        in (breaches)
    )
    assert "import cycle: airflow_provider_gong.hooks.gong <-> airflow_provider_gong.oauth" in breaches
    assert "import cycle: airflow_provider_gong.sync.a <-> airflow_provider_gong.sync.b" in breaches


def test_type_checking_imports_do_not_count(layout: ModuleType, tmp_path: Path) -> None:
    root = make_tree(
        tmp_path,
        {
            "hooks/__init__.py": "",
            "hooks/gong.py": "",
            "oauth.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from airflow_provider_gong.hooks.gong import GongHook\n"
            ),
            "newthing.py": "",
        },
    )
    breaches = layout.check(root).breaches
    assert breaches == ["module airflow_provider_gong.newthing: in no layer (add its package to LAYERS)"]


def test_main_exits_non_zero_on_a_breach(
    layout: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_tree(tmp_path, {"meetings.py": "x = 1\n" * 500})
    assert layout.main(["--root", str(root)]) == 1
    assert "BREACH module airflow_provider_gong.meetings: 500 lines" in capsys.readouterr().out
    make_tree(tmp_path, {"meetings.py": "x = 1\n"})
    assert layout.main(["--root", str(root)]) == 0


def test_the_client_plumbing_sits_below_quota_and_the_client_above_it(
    layout: ModuleType, tmp_path: Path
) -> None:
    root = make_tree(
        tmp_path,
        {
            "_client/__init__.py": "",
            "_client/retry.py": "from airflow_provider_gong import quota\n",
            "_client/client.py": "from airflow_provider_gong import quota\n",
            "quota.py": "from airflow_provider_gong._client import retry\n",
        },
    )
    assert layout.check(root).breaches == [
        "upward import: airflow_provider_gong._client.retry (layer 2) -> "
        "airflow_provider_gong.quota (layer 3)",
        "import cycle: airflow_provider_gong._client.retry <-> airflow_provider_gong.quota",
    ]


def test_the_hook_is_held_to_300_lines(layout: ModuleType, tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"hooks/__init__.py": "", "hooks/gong.py": "x = 1\n" * 301})
    assert layout.check(root).breaches == ["module airflow_provider_gong.hooks.gong: 301 lines (limit 300)"]
