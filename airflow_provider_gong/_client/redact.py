"""
Redaction of credentials from text that came back from the network.

Airflow's secrets masker covers task logs, but not exception text that ends up in a warehouse ledger,
in ``to_dict()``, in the UI's Test-connection message or in a script outside Airflow; and a gateway or
proxy that echoes the request into its error body copies the Authorization header into all of them.
So every message the hook builds from an answer passes through a :class:`Redactor` first, which knows
each form a credential can take there: raw, ``key:secret``, base64, and URL-encoded.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterable
from typing import Any, TypeVar, overload
from urllib.parse import quote

_T = TypeVar("_T")

MASK = "***"
#: Shorter values would redact innocent text; Airflow's masker draws the same line.
MIN_SECRET_LENGTH = 5


class Redactor:
    """Replace every known form of the given secrets with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._forms: list[str] = []
        self._lock = threading.Lock()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Also redact ``secret`` from now on: OAuth access and refresh tokens rotate while a hook lives."""
        if not secret or len(secret) < MIN_SECRET_LENGTH:
            return
        new = {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()}
        with self._lock:
            if new <= set(self._forms):
                return
            forms = set(self._forms) | {f for f in new if len(f) >= MIN_SECRET_LENGTH}
            # Longest first, so "key:secret" goes before "secret" and nothing is left half-masked. A new
            # list, swapped in whole, so a redaction running in another thread never sees half of it.
            self._forms = sorted(forms, key=len, reverse=True)

    @classmethod
    def for_credentials(
        cls,
        *,
        access_key: str | None,
        access_key_secret: str | None,
        access_token: str | None,
        refresh_token: str | None = None,
    ) -> Redactor:
        pair = f"{access_key or ''}:{access_key_secret}" if access_key_secret else None
        return cls([s for s in (access_key_secret, access_token, pair, refresh_token) if s])

    # Text comes back as text; anything else (None, a number) comes back unchanged.
    @overload
    def __call__(self, value: str) -> str: ...
    @overload
    def __call__(self, value: _T) -> _T: ...
    def __call__(self, value: Any) -> Any:
        forms = self._forms
        if not isinstance(value, str) or not forms:
            return value
        for form in forms:
            if form in value:
                value = value.replace(form, MASK)
        return value
