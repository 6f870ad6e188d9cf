"""The SQL dialect facts: identifiers and their case rules, literal percent signs."""

from __future__ import annotations

import pytest

from airflow_provider_gong.exceptions import GongValidationError
from airflow_provider_gong.sync.sql import literal_percent, quote_identifier


class _Hook:
    def __init__(self, dialect_name, placeholder="%s", escape_word_format='"{}"'):
        self.dialect_name = dialect_name
        self.placeholder = placeholder
        self.escape_word_format = escape_word_format


@pytest.mark.parametrize(
    "dialect, name, quoted",
    [
        ("postgresql", "Gong_Ledger", '"gong_ledger"'),
        ("postgresql", "Analytics.Meetings", '"analytics"."meetings"'),
        ("postgresql", '"MixedCase"', '"MixedCase"'),
        ("snowflake", "gong_ledger", '"GONG_LEDGER"'),
        ("sqlite", "Gong_Ledger", '"Gong_Ledger"'),
        ("postgresql", "end", '"end"'),  # a reserved word stays usable
    ],
)
def test_identifiers_follow_the_databases_case_rules(dialect, name, quoted):
    assert quote_identifier(_Hook(dialect), name) == quoted


@pytest.mark.parametrize("name", ["", "a;drop table x", 'a"b', "a.b.c.d", "1abc", '"unterminated'])
def test_bad_identifiers_are_rejected(name):
    with pytest.raises(GongValidationError, match="not a plain SQL identifier"):
        quote_identifier(_Hook("postgresql"), name)


def test_percent_is_doubled_only_for_percent_style_drivers():
    sql = "SELECT * FROM t WHERE title LIKE 'a%'"
    assert literal_percent(_Hook("postgresql", "%s"), sql) == "SELECT * FROM t WHERE title LIKE 'a%%'"
    assert literal_percent(_Hook("sqlite", "?"), sql) == sql
