"""
The one place that reads a Gong connection: its fields and extras over the defaults, validated once.

Extras arrive as strings from URI-form connections and as nulls from the UI form, so this is where
numbers are coerced and empty values mean "the default"; secrets are ``SecretStr`` so that a repr or a
validation error never shows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator

from airflow_provider_gong._client.auth import HEADER_SAFE, BasicAuth, BearerAuth
from airflow_provider_gong.exceptions import GongValidationError
from airflow_provider_gong.oauth import DEFAULT_TOKEN_URL
from airflow_provider_gong.quota import DEFAULT_DAILY_QUOTA

DEFAULT_HOST = "https://api.gong.io"


class GongSettings(BaseModel):
    """Everything the client needs from a connection, validated once."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    base_url: str
    auth_type: Literal["basic", "bearer", "oauth"] = "basic"
    #: basic: the access key; oauth: the OAuth app's client id
    access_key: SecretStr | None = None
    #: basic: the access key secret; oauth: the OAuth app's client secret
    access_key_secret: SecretStr | None = None
    access_token: SecretStr | None = None
    refresh_token: SecretStr | None = Field(None, description="oauth: the refresh token the chain starts at")
    token_url: str = Field(DEFAULT_TOKEN_URL, description="oauth: Gong's token endpoint")
    timeout: float = Field(30.0, gt=0, description="read timeout, seconds")
    connect_timeout: float = Field(10.0, gt=0)
    deadline: float | None = Field(None, gt=0, description="total seconds per call; default connect+read")
    rate_limit_per_second: float = Field(3.0, gt=0)
    daily_quota: int = Field(DEFAULT_DAILY_QUOTA, ge=1, description="calls per UTC day for the account")
    quota_backend: Literal["local", "sql", "memory"] = "local"
    quota_dir: str | None = Field(None, description="local backend: default $AIRFLOW_HOME/gong_quota")
    quota_conn_id: str | None = Field(
        None, validate_default=True, description="sql backend: the PostgreSQL connection"
    )
    max_retry_wait: float = Field(60.0, ge=0)
    max_attempts: int = Field(5, ge=1)

    @field_validator("access_key", "access_key_secret", "access_token", "refresh_token", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        # A value pasted with a trailing newline or space is the commonest copy-paste accident.
        return value.strip() or None if isinstance(value, str) else value

    @field_validator("quota_backend", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("token_url", mode="before")
    @classmethod
    def _token_url(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be the http(s) URL of Gong's token endpoint")
        return value.strip()

    @field_validator("quota_conn_id")
    @classmethod
    def _named_for_sql(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("quota_backend") == "sql" and not value:
            raise ValueError("quota_backend 'sql' needs it: the PostgreSQL connection to keep the quota in")
        return value

    @property
    def total_deadline(self) -> float:
        """Seconds one call may take from connect to the last byte of the answer."""
        return self.deadline if self.deadline is not None else self.connect_timeout + self.timeout

    def secret(self, name: str) -> str | None:
        """Return the plain value of a secret field (None when unset): read where it is sent, nowhere else."""
        value: SecretStr | None = getattr(self, name)
        return value.get_secret_value() if value else None

    def static_auth(self) -> BasicAuth | BearerAuth:
        """
        Return the Basic or Bearer auth of a connection that carries its credential itself.

        Built (and so checked) before any row of a batch is touched, so that a credential that cannot be
        sent fails the task once instead of every row (and never appears in requests' error text).
        """
        if self.auth_type == "oauth":
            raise GongValidationError(
                "the Gong connection uses OAuth: its access token comes from Gong's token endpoint "
                "(GongHook.oauth), not from the connection"
            )
        if self.auth_type == "bearer":
            return BearerAuth(self.secret("access_token"))
        return BasicAuth(self.secret("access_key"), self.secret("access_key_secret"))

    def authorization(self) -> str:
        """Return the Authorization header value of a Basic or Bearer connection."""
        return self.static_auth().header

    def oauth_credentials(self) -> tuple[str, str, str]:
        """
        Return (client id, client secret, refresh token) of an OAuth connection, checked before any call.

        Login and password hold the OAuth app's client id and secret, the extras the refresh token.
        """
        missing = [
            name
            for name, value in (
                ("a client id (login)", self.access_key),
                ("a client secret (password)", self.access_key_secret),
                ("a refresh_token in its extras", self.refresh_token),
            )
            if not value or not value.get_secret_value()
        ]
        if missing:
            raise GongValidationError(f"the Gong connection uses OAuth but lacks {', '.join(missing)}")
        values = (self.access_key, self.access_key_secret, self.refresh_token)
        client_id, client_secret, refresh_token = (v.get_secret_value() for v in values if v)
        if not HEADER_SAFE.match(refresh_token) or ":" in client_id:
            raise GongValidationError(
                "the Gong connection's client id or refresh_token contains characters that cannot be sent "
                "(a colon in the client id; spaces, line breaks or non-ASCII in the token); paste it again"
            )
        return client_id, client_secret, refresh_token


def normalise_base_url(host: str | None, schema: str | None = None, port: int | None = None) -> str:
    """
    Accept ``us-12345.api.gong.io``, ``https://api.gong.io/``, ``http://127.0.0.1:8080/v2`` ...

    No scheme means https (or the connection's schema field when it says http/https). A trailing
    ``/v2`` is dropped because every path the client sends starts with it.
    """
    raw = (host or "").strip() or DEFAULT_HOST
    if "://" not in raw:
        scheme = schema.lower() if schema and schema.lower() in ("http", "https") else "https"
        raw = f"{scheme}://{raw}"
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GongValidationError(f"Gong connection host {host!r} is not a valid URL or host name")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if port and parts.port is None:
        netloc = f"{netloc}:{port}"
    path = parts.path.rstrip("/")
    path = path.removesuffix("/v2")
    return urlunsplit((parts.scheme, netloc, path, "", ""))


class ConnectionFields(Protocol):
    """What is read of an Airflow ``Connection`` (any object with these attributes will do)."""

    host: str | None
    schema: str | None
    port: int | None
    login: str | None
    password: str | None

    @property
    def extra_dejson(self) -> dict[str, Any]: ...


def settings_from_connection(conn: ConnectionFields, overrides: Mapping[str, Any]) -> GongSettings:
    """
    Return the connection fields and extras, over the defaults, under the hook's keyword overrides.

    ``auth_type`` ``auto`` (or none) picks OAuth when a refresh token is set, else Bearer when an
    access token is, else Basic.
    """
    host, schema, port, login, password = conn.host, conn.schema, conn.port, conn.login, conn.password
    # The UI form saves every empty optional field as null (or ""): that means "the default".
    extras = {k: v for k, v in (conn.extra_dejson or {}).items() if v is not None and v != ""}
    token = extras.get("access_token")
    auth_type = str(extras.get("auth_type") or "auto").strip().lower()
    if auth_type == "auto":
        auth_type = "oauth" if extras.get("refresh_token") else "bearer" if token else "basic"
    base_url = normalise_base_url(host, schema, port)
    data = {
        **extras,
        "base_url": base_url,
        "auth_type": auth_type,
        "access_key": login or None,
        "access_key_secret": password or None,
        "access_token": token or None,
        **overrides,
    }
    try:
        return GongSettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False)
        )
        raise GongValidationError(f"the Gong connection for {base_url} is invalid: {problems}") from None
