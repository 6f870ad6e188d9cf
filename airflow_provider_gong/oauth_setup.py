"""
The first OAuth refresh token of a Gong connection: from the app's authorization code into the connection.

.. code-block:: bash

    python -m airflow_provider_gong.oauth_setup url --conn-id gong_default --redirect-uri URI
    # open the printed URL as a Gong technical admin; Gong redirects to URI?code=...&state=...
    python -m airflow_provider_gong.oauth_setup exchange --conn-id gong_default --redirect-uri URI --code CODE

``url`` prints Gong's authorize URL for the connection's OAuth app (client ID from *login*). ``exchange``
sends the code to the token endpoint the hook refreshes at (the connection's ``token_url``; the request
and the reading of Gong's answer are :mod:`airflow_provider_gong.token_endpoint`'s), then stores the
refresh token in the connection's extra ``refresh_token`` and sets ``auth_type`` to ``oauth``, every other
field as it was. A new refresh token is a new token chain (:mod:`airflow_provider_gong.oauth`), so the
next task starts from it.

It runs where the ``airflow`` CLI runs, and changes the connection in the metadata database with
Airflow's own ``Connection`` model and session, as ``airflow connections`` does. A connection that comes
from an environment variable or a secrets backend cannot be changed from here: the command says so
before the single-use code is spent, and ``--print-extra`` prints the new extra JSON (the refresh token
in it) for the user to put there. Nothing else it prints, logs or raises holds the code, the client
secret or a token: what was stored is shown by the API host, the access token's lifetime and a short
fingerprint of the refresh token.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from airflow_provider_gong._client.redact import Redactor
from airflow_provider_gong._client.settings import GongSettings, settings_from_connection
from airflow_provider_gong.exceptions import GongError
from airflow_provider_gong.token_endpoint import (
    AnswerLost,
    GongAuthorizationCodeError,
    TokenEndpoint,
    masked_forms,
    token_lifetime,
)

PROG = "python -m airflow_provider_gong.oauth_setup"
AUTHORIZE_PATH = "/oauth2/authorize"
#: What the provider calls: the four Meetings endpoints, and GET /v2/users (the connection test).
DEFAULT_SCOPES = (
    "api:meetings:user:create",
    "api:meetings:user:update",
    "api:meetings:user:delete",
    "api:meetings:integration:status",
    "api:users:read",
)
METADATA_DB = "the Airflow metadata database"


class SetupError(Exception):
    """Something the user fixes; the text says what and how, and holds no secret."""


@dataclass(frozen=True)
class Located:
    """A connection, and where Airflow finds it (the first secrets backend that has it)."""

    conn: Any  # airflow.models.Connection
    source: str
    in_metadata_db: bool


@dataclass(frozen=True)
class Exchanged:
    """What an exchange did: the new extra (refresh token in it, never in a repr) and what to show."""

    conn_id: str
    source: str
    stored: bool
    extra: dict[str, Any] = field(repr=False)
    fingerprint: str
    api_base_url: str | None
    expires_in: Any
    scope: str | None


# -- the authorize URL -----------------------------------------------------------------------------------


def authorize_url_for(token_url: str) -> str:
    """Return the authorize page beside a token endpoint (Gong's: ``https://app.gong.io/oauth2/authorize``)."""
    parts, endpoint = urlsplit(token_url), "/generate-customer-token"
    path = (
        parts.path.removesuffix(endpoint) + "/authorize" if parts.path.endswith(endpoint) else AUTHORIZE_PATH
    )
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def authorize_url(
    authorize: str, client_id: str, redirect_uri: str, *, scopes: Sequence[str], state: str
) -> str:
    """Return the URL an admin opens to authorise the app, with Gong's parameters."""
    query = {
        "client_id": client_id,
        "response_type": "code",
        "scope": " ".join(scopes),
        "redirect_uri": redirect_uri,
        "state": state,
    }
    return f"{authorize}?{urlencode(query)}"


# -- where the connection lives ----------------------------------------------------------------------------


def locate(conn_id: str) -> Located:
    """
    Find the connection as Airflow does (custom secrets backend, environment variable, metadata database).

    The first backend that has it is the one tasks read, so it is the one that must change.
    """
    from airflow.configuration import ensure_secrets_loaded
    from airflow.secrets.environment_variables import EnvironmentVariablesBackend
    from airflow.secrets.metastore import MetastoreBackend

    unreachable = []
    for backend in ensure_secrets_loaded():
        try:
            conn = backend.get_connection(conn_id=conn_id)
        except Exception as exc:  # as Airflow does: the next backend may have it
            unreachable.append(f"{type(backend).__name__} ({type(exc).__name__})")
            continue
        if conn is None:
            continue
        if isinstance(backend, MetastoreBackend):
            return Located(conn, METADATA_DB, in_metadata_db=True)
        if isinstance(backend, EnvironmentVariablesBackend):
            return Located(conn, f"the environment variable AIRFLOW_CONN_{conn_id.upper()}", False)
        return Located(conn, f"the secrets backend {type(backend).__name__} ([secrets] backend)", False)
    could_not = f" ({', '.join(unreachable)} could not be asked)" if unreachable else ""
    raise SetupError(
        f"Connection {conn_id!r} not found{could_not}. Add it first, with the OAuth app's client ID as "
        f"login and its client secret as password: airflow connections add {conn_id} --conn-type gong "
        "--conn-login CLIENT_ID --conn-password CLIENT_SECRET"
    )


def _in_metadata_db(conn_id: str) -> bool:
    from airflow.models import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return session.scalar(select(Connection.id).where(Connection.conn_id == conn_id)) is not None


def _refusal(conn_id: str, source: str) -> SetupError:
    try:
        shadows = _in_metadata_db(conn_id)
    except Exception:  # only said to explain; the refusal stands either way
        shadows = False
    shadow = f" (it takes precedence over the connection of that id in {METADATA_DB})" if shadows else ""
    return SetupError(
        f"Connection {conn_id!r} comes from {source}, which this command cannot change{shadow}. Either "
        f"keep the connection in {METADATA_DB} only (airflow connections add {conn_id} ..., and remove it "
        f"from {source}) and run this again, or run this again with --print-extra: it prints the "
        f"connection's new extra JSON, refresh token included, for you to put into {source}. The "
        "authorization code was not used."
    )


def app_settings(conn_id: str, conn: Any) -> tuple[GongSettings, str, str]:
    """Return the connection's settings, client ID and client secret, or say what is missing."""
    if conn.conn_type and conn.conn_type.lower() != "gong":
        raise SetupError(
            f"Connection {conn_id!r} has type {conn.conn_type!r}; it must be a 'gong' connection."
        )
    missing = [
        name
        for name, value in (("client ID (login)", conn.login), ("client secret (password)", conn.password))
        if not (value or "").strip()
    ]
    if missing:
        raise SetupError(
            f"Connection {conn_id!r} lacks the OAuth app's {' and '.join(missing)}: put the app's client ID "
            "in login and its client secret in password (Gong: Admin center > Settings > Ecosystem > API > "
            "Integrations)."
        )
    settings = settings_from_connection(conn, {})
    client_id, client_secret = conn.login.strip(), conn.password.strip()
    if ":" in client_id:
        raise SetupError(f"Connection {conn_id!r}: a client ID cannot contain a colon; paste it again.")
    return settings, client_id, client_secret


# -- the exchange ------------------------------------------------------------------------------------------


def fingerprint(token: str) -> str:
    """Return a short, one-way name of a token: enough to tell two apart, useless to anyone else."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def exchange(conn_id: str, code: str, redirect_uri: str, *, print_extra: bool = False) -> Exchanged:
    """
    Exchange ``code`` at the connection's token endpoint and store the refresh token in the connection.

    With ``print_extra``, nothing is stored: the new extra is returned for the caller to print.

    :raises SetupError: the connection cannot be used or changed (checked before the code is sent), or
        the answer was lost, or the new token could not be stored.
    :raises GongError: Gong refused the code or the client.
    """
    located = locate(conn_id)
    if not located.in_metadata_db and not print_extra:
        raise _refusal(conn_id, located.source)
    settings, client_id, client_secret = app_settings(conn_id, located.conn)
    redact = Redactor([client_secret, f"{client_id}:{client_secret}", code])
    _mask(client_secret, code)
    endpoint = TokenEndpoint(
        settings.token_url,
        client_id,
        client_secret,
        redact=redact,
        timeouts=(settings.connect_timeout, settings.timeout),
        deadline=settings.total_deadline,
    )
    try:
        answer = endpoint.exchange_code(code, redirect_uri)
    except AnswerLost as lost:
        raise SetupError(
            f"The exchange of the authorization code at {settings.token_url} reached Gong but {lost}; Gong "
            "may have used the code up. Nothing was stored: run the url command again, and exchange the new "
            "code."
        ) from None
    refresh_token = answer["refresh_token"]
    for token in (refresh_token, answer["access_token"]):
        _mask(token)
        redact.add(token)
    changes = {"auth_type": "oauth", "refresh_token": refresh_token}
    extra = {**located.conn.extra_dejson, **changes} if print_extra else _store(conn_id, changes, redact)
    api_base_url = answer.get("api_base_url_for_customer")
    return Exchanged(
        conn_id=conn_id,
        source=located.source,
        stored=not print_extra,
        extra=extra,
        fingerprint=fingerprint(refresh_token),
        api_base_url=api_base_url if isinstance(api_base_url, str) else None,
        expires_in=answer.get("expires_in"),
        scope=answer.get("scope") if isinstance(answer.get("scope"), str) else None,
    )


def _store(conn_id: str, changes: dict[str, Any], redact: Redactor) -> dict[str, Any]:
    """Write ``changes`` over the extra of the connection's metadata DB row, in one transaction."""
    from airflow.models import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    try:
        with create_session() as session:
            row = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
            if row is None:
                raise LookupError(f"connection {conn_id!r} is no longer there")
            extra = {**row.extra_dejson, **changes}
            row.extra = json.dumps(extra)
    except Exception as exc:
        reason = redact(str(exc).splitlines()[0] if str(exc) else "")[:200]
        raise SetupError(
            f"Gong issued a refresh token, but it could not be stored in {METADATA_DB} "
            f"({type(exc).__name__}: {reason}). The connection is unchanged and the new token is not "
            "printed; run the url command again and exchange the new code (or use --print-extra)."
        ) from None
    return extra


def _mask(*values: str) -> None:
    """Register secrets with Airflow's masker, in every form they travel in (as the hook does)."""
    from airflow.sdk.log import mask_secret

    for value in values:
        for form in masked_forms(value):
            mask_secret(form)


# -- the command ------------------------------------------------------------------------------------------


def read_code(value: str) -> str:
    """Return the code ``--code`` gives: the code itself, ``-`` (a line of stdin), or the redirect address."""
    if value == "-":  # typed at a terminal, it is not echoed
        prompt = "Authorization code, or the address Gong sent the browser to: "
        value = getpass.getpass(prompt) if sys.stdin.isatty() else sys.stdin.readline()
    value = value.strip()
    if "?" in value and "=" in value:  # the address the browser was sent to
        query = parse_qs(urlsplit(value).query)
        if query.get("error"):
            raise SetupError(f"Gong did not authorise the app: {query['error'][-1]}.")
        value = (query.get("code") or [""])[-1].strip()
    if not value:
        raise SetupError("No authorization code given (--code CODE, or --code - to read it from stdin).")
    return value


def _url(args: argparse.Namespace) -> int:
    located = locate(args.conn_id)
    settings, client_id, _ = app_settings(args.conn_id, located.conn)
    state = args.state or secrets.token_urlsafe(16)
    page = args.authorize_url or authorize_url_for(settings.token_url)
    print(authorize_url(page, client_id, args.redirect_uri, scopes=args.scope or DEFAULT_SCOPES, state=state))
    print(
        "Open this URL in a browser, signed in to Gong as a technical admin, and allow the app. Gong then "
        f"sends the browser to {args.redirect_uri}?code=...&state={state} (check the state). Within a few "
        f"minutes, run:\n  {PROG} exchange --conn-id {args.conn_id} --redirect-uri {args.redirect_uri} "
        "--code CODE\n(--code - reads the code, or the whole address, from stdin.)",
        file=sys.stderr,
    )
    return 0


def _exchange(args: argparse.Namespace) -> int:
    try:
        done = exchange(args.conn_id, read_code(args.code), args.redirect_uri, print_extra=args.print_extra)
    except GongAuthorizationCodeError as exc:
        raise SetupError(
            f"{exc} A new code: {PROG} url --conn-id {args.conn_id} --redirect-uri {args.redirect_uri}"
        ) from None
    if not done.stored:
        print(json.dumps(done.extra))  # one line: the JSON alone, whatever else Airflow logs
        print(
            f"Not stored: above is connection {done.conn_id!r}'s new extra JSON, with the new refresh token "
            f"({done.fingerprint}) and auth_type 'oauth'. Put it into {done.source} as the connection's "
            f"extra, in place of the old one.\n{_facts(done)}",
            file=sys.stderr,
        )
        return 0
    print(
        f"Stored a new OAuth refresh token ({done.fingerprint}) in connection {done.conn_id!r} in "
        f"{done.source}; auth_type is now 'oauth', every other field is as it was.\n{_facts(done)}\n"
        f"Check it: airflow connections test {done.conn_id} (with [core] test_connection enabled)"
    )
    return 0


def _facts(done: Exchanged) -> str:
    """Say what came with the refresh token: the API host, the scopes, the access token's lifetime."""
    if done.expires_in is None:
        lifetime = "lifetime not given"
    else:
        seconds = token_lifetime(done.expires_in)
        until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() + seconds))
        lifetime = f"valid {seconds:g} s, until {until}"
    return (
        f"API host for this Gong company: {done.api_base_url or 'not given by Gong'} (OAuth calls go there; "
        f"the connection's host is not used).\nScopes granted: {done.scope or 'not listed'}.\nThe access "
        f"token that came with it ({lifetime}) is not kept: the first Gong call refreshes with the new "
        "refresh token, which starts the connection's new token chain."
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="The first OAuth refresh token of a Gong connection."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    url = commands.add_parser("url", help="print the URL that authorises the connection's OAuth app")
    exchange = commands.add_parser("exchange", help="exchange the code and store the refresh token")
    for command in (url, exchange):
        command.add_argument("--conn-id", default="gong_default")
        command.add_argument(
            "--redirect-uri", required=True, help="the app's redirect URI, exactly as registered in Gong"
        )
    url.add_argument(
        "--scope", action="append", help=f"a scope (repeatable); default: {' '.join(DEFAULT_SCOPES)}"
    )
    url.add_argument("--state", help="the state to get back with the code (default: random)")
    url.add_argument("--authorize-url", help="default: beside the connection's token_url (Gong's page)")
    exchange.add_argument(
        "--code", required=True, help="the code from the redirect, the whole redirect address, or - (stdin)"
    )
    exchange.add_argument(
        "--print-extra",
        action="store_true",
        help="store nothing; print the connection's new extra JSON, refresh token included",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status (1 with the reason on stderr when it cannot be done)."""
    args = _parser().parse_args(argv)
    try:
        return _url(args) if args.command == "url" else _exchange(args)
    except (SetupError, GongError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
