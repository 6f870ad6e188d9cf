"""
Apache Airflow provider for Gong's Meetings API.

Kept import-light on purpose: Airflow imports every provider's ``get_provider_info`` while it starts,
so this module must not import Airflow, requests or the hook.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"
#: The Gong connection every operator uses by default (``GongHook.default_conn_name``). Declared here, not
#: read from the hook, so that the operators a DAG file imports need not load the hook (requests,
#: pydantic) just to fill in a default argument; a test keeps the two equal.
DEFAULT_CONN_ID = "gong_default"

__all__ = ["DEFAULT_CONN_ID", "__version__", "get_provider_info"]


#: How the Airflow UI shows the standard connection fields for a Gong connection.
_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port"],
    "relabeling": {
        "host": "API base URL",
        "login": "Access key / OAuth client ID",
        "password": "Access key secret / OAuth client secret",
    },
    "placeholders": {
        "host": "https://api.gong.io (or your company host, e.g. us-12345.api.gong.io)",
        "login": "Gong access key (basic auth) or the OAuth app's client ID (oauth)",
        "password": "Gong access key secret (basic auth) or the OAuth client secret (oauth)",
    },
}

#: The extras the hook reads (docs/connections/gong.rst describes each), as form fields.
_CONN_FIELDS: dict[str, Any] = {
    "auth_type": {
        "label": "Auth type",
        "description": "auto: oauth when a refresh token is set, else bearer when an access "
        "token is set, else basic; basic: access key + secret; bearer: a fixed access "
        "token; oauth: client ID + secret (login/password) and a refresh token, refreshed "
        "and shared by every task through the quota backend's token store.",
        "schema": {
            "type": "string",
            "enum": ["auto", "basic", "bearer", "oauth"],
            "default": "auto",
        },
    },
    "refresh_token": {
        "label": "OAuth refresh token",
        "description": "oauth: the refresh token from authorising the Gong app. Used once, "
        "then Gong's rotated tokens are kept in the token store (Quota backend: use sql "
        "when tasks run on several machines). Put a new one here after re-authorising.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "token_url": {
        "label": "OAuth token URL",
        "description": "oauth: Gong's token endpoint. Default "
        "https://app.gong.io/oauth2/generate-customer-token. API calls go to the token's "
        "api_base_url_for_customer, whatever the API base URL says.",
        "schema": {"type": ["string", "null"]},
    },
    "access_token": {
        "label": "Bearer access token",
        "description": "OAuth access token; send calls to the token's api_base_url_for_customer host.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "timeout": {
        "label": "Read timeout (s)",
        "description": "Seconds each read of Gong's answer may wait. Default 30.",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
    },
    "connect_timeout": {
        "label": "Connect timeout (s)",
        "description": "Seconds to open a connection to Gong. Default 10.",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
    },
    "deadline": {
        "label": "Deadline per call (s)",
        "description": "Total seconds one call may take, connect to last byte. "
        "Default: connect timeout + read timeout.",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
    },
    "rate_limit_per_second": {
        "label": "Rate limit (calls/s)",
        "description": "Calls per second for the Gong account, shared by every task "
        "that uses it (see Quota backend). Gong's company default is 3.",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
    },
    "daily_quota": {
        "label": "Daily quota (calls/day)",
        "description": "Calls per UTC day for the Gong account, shared by every task; "
        "once spent, calls fail at once until UTC midnight. Default 10000 (Gong's).",
        "schema": {"type": ["integer", "null"], "minimum": 1},
    },
    "quota_backend": {
        "label": "Quota backend",
        "description": "Where tasks share the rate and the daily count. local: a SQLite "
        "file for the tasks of one machine; sql: a table in the PostgreSQL database of "
        "Quota connection id (several machines); memory: one process only.",
        "schema": {"type": "string", "enum": ["local", "sql", "memory"], "default": "local"},
    },
    "quota_dir": {
        "label": "Quota directory (local)",
        "description": "Directory of the local quota file, on a local disk every task of "
        "the machine sees. Default $AIRFLOW_HOME/gong_quota.",
        "schema": {"type": ["string", "null"]},
    },
    "quota_conn_id": {
        "label": "Quota connection id (sql)",
        "description": "Airflow connection of the PostgreSQL database that keeps the "
        "quota (table gong_quota, created if absent). Required for the sql backend.",
        "schema": {"type": ["string", "null"]},
    },
    "max_retry_wait": {
        "label": "Max retry wait (s)",
        "description": "Longest Retry-After the hook waits out; beyond it the task "
        "fails with a rate-limit error so Airflow can retry later. Default 60.",
        "schema": {"type": ["number", "null"], "minimum": 0},
    },
    "max_attempts": {
        "label": "Max attempts per call",
        "description": "Tries per call for failures that are safe to repeat. Default 5.",
        "schema": {"type": ["integer", "null"], "minimum": 1},
    },
}


def get_provider_info() -> dict[str, Any]:
    """
    Return the provider metadata Airflow's ProvidersManager reads (entry point ``apache_airflow_provider``).

    The connection form is declarative (``conn-fields`` / ``ui-field-behaviour``): Airflow 3.2+ renders
    only declared fields.
    """
    return {
        "package-name": "airflow-provider-gong",
        "name": "Gong",
        "description": "Create, update and delete Gong consent-meeting links from Airflow "
        "(Gong Meetings API), one at a time or in batches from a SQL warehouse.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Gong",
                "external-doc-url": "https://help.gong.io/apidocs/meetings-1",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Gong", "python-modules": ["airflow_provider_gong.hooks.gong"]}],
        "operators": [
            {"integration-name": "Gong", "python-modules": ["airflow_provider_gong.operators.meetings"]}
        ],
        "transfers": [
            {
                "source-integration-name": "Common SQL",
                "target-integration-name": "Gong",
                "python-module": "airflow_provider_gong.transfers.sql_to_gong",
            }
        ],
        "extra-links": ["airflow_provider_gong.links.GongMeetingLink"],
        "connection-types": [
            {
                "connection-type": "gong",
                "hook-class-name": "airflow_provider_gong.hooks.gong.GongHook",
                "hook-name": "Gong",
                "ui-field-behaviour": _UI_FIELD_BEHAVIOUR,
                "conn-fields": _CONN_FIELDS,
            }
        ],
    }
