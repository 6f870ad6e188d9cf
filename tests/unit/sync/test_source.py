"""Source keys: how a source key becomes a ledger key."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from airflow_provider_gong.sync.source import normalise_key

# -- keys and SQL --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, key",
    [
        (7, "7"),
        ("7", "7"),
        ("crm-evt-1", "crm-evt-1"),
        (Decimal("12"), "12"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (dt.date(2030, 1, 2), "2030-01-02"),
        (b"\x01\xff", "01ff"),
        (memoryview(b"\x01\xff"), "01ff"),
    ],
)
def test_key_normalisation(value, key):
    assert normalise_key(value) == key
