"""Counting row validations in tests: how many rows a batch built (and so validated) as meetings."""

from __future__ import annotations

from collections import Counter

import pytest

from airflow_provider_gong.meetings import Meeting


def count_builds(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count ``Meeting.build`` calls (row validation and model building) under ``built["rows"]``."""
    built: Counter[str] = Counter()
    original = Meeting.build.__func__  # type: ignore[attr-defined]

    def build(cls: type[Meeting], **kwargs: object) -> Meeting:
        built["rows"] += 1
        return original(cls, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(Meeting, "build", classmethod(build))
    return built
