"""
Which database a common-sql hook talks to.

Asked by the state layer (is this PostgreSQL?) and by the batch engine (how to quote, cast and connect),
so it lives below both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook


def dialect(hook: DbApiHook) -> str:
    """Return the hook's dialect name in lower case ("sqlite", "postgresql", "mysql", ...), or ""."""
    try:
        name = hook.dialect_name
    except Exception:  # dialect detection needs SQLAlchemy URL support some hooks lack
        name = ""
    if not name or name == "default":
        name = str(getattr(hook, "conn_type", "") or "")
    return name.lower()
