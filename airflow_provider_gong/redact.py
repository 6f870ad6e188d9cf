"""Redaction of credentials from text that came back from the network.

Airflow's secrets masker covers task logs, but not exception text that ends up in a warehouse ledger,
in ``to_dict()``, in the UI's Test-connection message or in a script outside Airflow; and a gateway or
proxy that echoes the request into its error body copies the Authorization header into all of them.
So every message the hook builds from an answer passes through a :class:`Redactor` first, which knows
each form a credential can take there: raw, ``key:secret``, base64, and URL-encoded.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

MASK = "***"
#: Shorter values would redact innocent text; Airflow's masker draws the same line.
MIN_SECRET_LENGTH = 5


class Redactor:
    """Replace every known form of the given secrets with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if not secret or len(secret) < MIN_SECRET_LENGTH:
                continue
            forms.update({secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()})
        # Longest first, so "key:secret" goes before "secret" and nothing is left half-masked.
        self._forms = sorted((f for f in forms if len(f) >= MIN_SECRET_LENGTH), key=len, reverse=True)

    @classmethod
    def for_credentials(
        cls, *, access_key: str | None, access_key_secret: str | None, access_token: str | None
    ) -> Redactor:
        pair = f"{access_key or ''}:{access_key_secret}" if access_key_secret else None
        return cls([s for s in (access_key_secret, access_token, pair) if s])

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str) or not self._forms:
            return value
        for form in self._forms:
            if form in value:
                value = value.replace(form, MASK)
        return value
