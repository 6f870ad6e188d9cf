"""README.md stays a page with working links and example; the docs include example code that exists."""

from __future__ import annotations

import re

from tests.conftest import EXAMPLE_DAGS, ROOT

README = ROOT / "README.md"
LINK = re.compile(r"\]\((?!https?://|#)([^)#]+)(?:#[^)]*)?\)")


def test_readme_is_a_page_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    assert "make demo" in text and "make test" in text


def test_readme_links_point_at_files_in_the_repository():
    targets = LINK.findall(README.read_text())
    assert len(targets) >= 20
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert missing == []


def test_the_readme_example_builds_its_dag():
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    dag = namespace["gong_meetings"]()
    assert sorted(dag.task_ids) == ["create_meeting", "create_meetings"]


def test_every_included_example_marker_exists_once_in_its_file():
    include = re.compile(r"literalinclude:: \.\./\.\./(example_dags/\S+)\n((?:\s+:.*\n)+)")
    found = 0
    for page in (ROOT / "docs").rglob("*.rst"):
        for path, options in include.findall(page.read_text()):
            source = (ROOT / path).read_text()
            for marker in re.findall(r":(?:start-after|end-before): (\[.*\])", options):
                assert source.count(f"# {marker}\n") == 1, (page.name, path, marker)
                found += 1
    assert found >= 12


def test_every_start_marker_in_the_example_dags_has_its_end():
    for path in EXAMPLE_DAGS.glob("*.py"):
        text = path.read_text()
        starts = re.findall(r"# \[START (\w+)\]", text)
        assert sorted(starts) == sorted(re.findall(r"# \[END (\w+)\]", text)), path.name
