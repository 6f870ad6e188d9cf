"""
A local stand-in for Gong's Meetings API, so DAGs and tests run offline over real HTTP.

It follows gong-api.md: Basic and bearer auth (401 otherwise), JSON body validation (400 with
``{requestId, errors}``), 404 for an unknown organizer or meeting, 409 with ``userFacingError`` /
``fixUrl`` for an organizer whose consent page is off, 403 "Limited release" when switched on, and
429 with ``Retry-After`` beyond a configured rate; and Gong's OAuth token endpoint, whose refresh
tokens rotate (each one works once, then answers ``400 invalid_grant``) and whose access tokens the
API accepts until they expire, with the authorize step before it (``GET /oauth2/authorize`` redirects
to the app's ``redirect_uri`` with a single-use code, as Gong does once an admin consents). Faults
can be injected (5xx, 429, slow answers, connections dropped before or after the work is done), and
every created meeting is recorded so a test can count duplicates.

Standard library only: it is imported by a pytest plugin and must stay cheap to import.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

DEFAULT_USERS = ("rep@acme.com", "ae@acme.com", "csm@acme.com")
DEFAULT_USERS_WITHOUT_CONSENT = ("noconsent@acme.com",)
LIMITED_RELEASE = "This API endpoint is in Limited release - contact your CSM for more information."
CONSENT_OFF = "The Gong consent page is not enabled in your company. Contact your Gong Admin."
FIX_URL = "https://app.gong.io/company/recording-consent/consent-page"
HELP_URL = "https://help.gong.io/hc/en-us/articles/360056677792"
ASSISTANT = {"displayName": "Gong Assistant", "email": "assistant@gong.io"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_MEETING_PATH = re.compile(r"^/v2/meetings/(\d{1,20})$")
TOKEN_PATH = "/oauth2/generate-customer-token"
AUTHORIZE_PATH = "/oauth2/authorize"
_FAULT_KINDS = ("status", "drop", "drop_after", "delay", "drip", "garble", "truncate", "body")
# Faults that do the work and then answer in a broken way (written by the handler).
_ANSWER_FAULTS = ("drip", "garble", "truncate", "body")


@dataclass
class Fault:
    """
    One injected misbehaviour, consumed by the next ``times`` matching requests.

    kinds: ``status`` answers ``status`` without doing the work; ``drop`` closes the connection
    without doing the work; ``drop_after`` does the work (e.g. creates the meeting) and then closes
    the connection without answering; ``delay`` does the work and answers ``delay`` seconds late.
    These also do the work first, then answer badly: ``drip`` sends the whole answer (headers too)
    one byte every ``delay`` seconds; ``garble`` sends a 200 whose gzip body cannot be decoded;
    ``truncate`` announces a longer body than it sends and hangs up; ``body`` sends 200 with the raw
    text ``body`` (e.g. not JSON, or JSON without a meetingId).
    ``match`` restricts it to requests whose "METHOD /path" starts with that text.
    """

    kind: str
    times: int = 1
    status: int = 503
    retry_after: int | None = None
    delay: float = 0.0
    match: str | None = None
    body: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {_FAULT_KINDS}, got {self.kind!r}")


@dataclass
class Created:
    """A meeting the stand-in created, kept so that tests can count and inspect what was sent to it."""

    meeting_id: str
    payload: dict[str, Any]
    at: float = field(default_factory=time.time)


Answer = tuple[int, dict[str, Any], dict[str, str]]  # status, JSON body, extra headers


class _Drop(Exception):
    """Close the connection without an answer."""


class _BadAnswer(Exception):
    """Answer in the broken way the fault describes (the work is done)."""

    def __init__(self, fault: Fault, answer: Answer) -> None:
        self.fault = fault
        self.answer = answer


class GongStandIn:
    """
    The server. Use it as a context manager, or ``start()`` / ``stop()``.

    :param port: 0 picks a free port; read :attr:`url` after start.
    :param users: Gong users with the consent page enabled (organizers that work).
    :param users_without_consent: Gong users whose consent page is off (create answers 409).
    :param rate_limit_per_second: answer 429 beyond this rate (None: no limit); see ``_over_rate``.
    :param strict_window: count calls in a sliding one-second window instead of a token bucket.
    :param limited_release: answer every Meetings call with 403 "Limited release".
    :param echo_authorization: like some gateways and proxies, copy the request's Authorization header
        into every error body (``errors``, ``requestId``, ``userFacingError``), raw and base64-decoded.
    :param latency: seconds every API call takes (so concurrent clients really overlap in tests).
    :param meeting_url_length: pad created meetings' ``meetingUrl`` to this many characters.
    :param additional_invitees: what create answers as ``additionalInvitees`` (any JSON value).
    :param client_id: the OAuth app's client id (Basic auth at the token endpoint).
    :param client_secret: the OAuth app's client secret.
    :param refresh_token: the refresh token an admin's authorisation gave (valid until used once).
    :param token_lifetime: ``expires_in`` of issued access tokens; the API refuses them (401) after it.
    :param api_base_url: ``api_base_url_for_customer`` in token answers (default: this server's URL).
    :param code_lifetime: seconds an authorization code can be exchanged after it was issued.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        access_key: str = "standin-key",
        access_key_secret: str = "standin-secret-value",
        access_token: str = "standin-bearer-token",
        users: Iterable[str] = DEFAULT_USERS,
        users_without_consent: Iterable[str] = DEFAULT_USERS_WITHOUT_CONSENT,
        rate_limit_per_second: float | None = None,
        retry_after: int = 1,
        limited_release: bool = False,
        company: str = "acme",
        meeting_url_length: int | None = None,
        latency: float = 0.0,
        strict_window: bool = False,
        echo_authorization: bool = False,
        additional_invitees: Any = (ASSISTANT,),
        client_id: str = "standin-client-id",
        client_secret: str = "standin-client-secret",
        refresh_token: str = "standin+refresh/token=0",
        token_lifetime: float = 3600.0,
        api_base_url: str | None = None,
        code_lifetime: float = 600.0,
    ) -> None:
        self.host = host
        self.port = port
        self.access_key = access_key
        self.access_key_secret = access_key_secret
        self.access_token = access_token
        self.users = {u.lower() for u in users}
        self.users_without_consent = {u.lower() for u in users_without_consent}
        self.rate_limit_per_second = rate_limit_per_second
        self.retry_after = retry_after
        self.limited_release = limited_release
        self.company = company
        self.meeting_url_length = meeting_url_length
        self.latency = latency
        self.strict_window = strict_window
        self.echo_authorization = echo_authorization
        self.additional_invitees = (
            list(additional_invitees) if isinstance(additional_invitees, tuple) else additional_invitees
        )
        self.lock = threading.RLock()
        self.created: list[Created] = []
        self.meetings: dict[str, dict[str, Any]] = {}
        self.log: list[tuple[str, str, int]] = []
        self._faults: list[Fault] = []
        self._window: deque[float] = deque()
        self._tokens = 0.0
        self._bucket_at: float | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.token_lifetime = token_lifetime
        self.api_base_url = api_base_url
        #: refresh tokens that still work (each works once)
        self.refresh_tokens: set[str] = {refresh_token}
        #: access tokens issued by the token endpoint -> when they expire (monotonic)
        self.issued: dict[str, float] = {}
        #: refreshes answered with new tokens / refused as invalid_grant / refused as invalid_client
        self.oauth_refreshes = 0
        self.oauth_invalid_grants = 0
        self.oauth_invalid_clients = 0
        #: API calls refused because their issued access token had expired or was revoked
        self.oauth_expired = 0
        self.code_lifetime = code_lifetime
        #: authorization codes not exchanged yet -> (client id, redirect_uri, when they expire (monotonic))
        self.codes: dict[str, tuple[str, str, float]] = {}
        #: codes exchanged for tokens
        self.code_exchanges = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> GongStandIn:
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        # stop() waits for serve_forever's next poll: at the default 0.5 s that was half a second per test
        # (~2.5 min of a full suite run); 50 ms costs an idle stand-in 20 wake-ups a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="gong-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> GongStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connection(self, *, auth: str = "basic", **extra: Any) -> dict[str, Any]:
        """
        Return an Airflow connection (JSON form) pointing at this server.

        ``auth="oauth"``: login/password are the OAuth client, the extras hold the refresh token and this
        server's token endpoint.
        """
        conn: dict[str, Any] = {"conn_type": "gong", "host": self.url, "extra": dict(extra)}
        if auth == "bearer":
            conn["extra"]["access_token"] = self.access_token
        elif auth == "oauth":
            conn["login"] = self.client_id
            conn["password"] = self.client_secret
            conn["extra"] = {
                "auth_type": "oauth",
                "refresh_token": self.refresh_token,
                "token_url": self.url + TOKEN_PATH,
                **conn["extra"],
            }
        else:
            conn["login"] = self.access_key
            conn["password"] = self.access_key_secret
        return conn

    def connection_json(self, *, auth: str = "basic", **extra: Any) -> str:
        """Value for ``AIRFLOW_CONN_GONG_DEFAULT``."""
        return json.dumps(self.connection(auth=auth, **extra))

    # -- control --------------------------------------------------------------------------------

    def inject(self, kind: str, *, times: int = 1, **options: Any) -> None:
        """Queue a :class:`Fault` for the next ``times`` matching requests."""
        with self.lock:
            self._faults.append(Fault(kind=kind, times=times, **options))

    def reset(self) -> None:
        with self.lock:
            self.created.clear()
            self.meetings.clear()
            self.log.clear()
            self._faults.clear()
            self._window.clear()
            self._bucket_at = None

    def created_count(self, external_id: str | None = None) -> int:
        with self.lock:
            return sum(1 for c in self.created if external_id in (None, c.payload.get("externalId")))

    def duplicates(self) -> dict[str, int]:
        """ExternalIds created more than once (the thing a batch must never do)."""
        counts: dict[str, int] = {}
        with self.lock:
            for c in self.created:
                key = c.payload.get("externalId")
                if key:
                    counts[key] = counts.get(key, 0) + 1
        return {k: n for k, n in counts.items() if n > 1}

    # -- request handling -------------------------------------------------------------------------

    def _take_fault(self, method: str, path: str, *, explicit: bool = False) -> Fault | None:
        """Take the next fault for this request; ``explicit``: only one whose ``match`` names it."""
        with self.lock:
            for fault in self._faults:
                if (fault.match is None and not explicit) or (
                    fault.match is not None and f"{method} {path}".startswith(fault.match)
                ):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _over_rate(self) -> bool:
        """
        Gong's limit as a token bucket (``rate`` tokens/s, bursts of ``rate``).

        A client paced evenly at the rate never sees a 429, whatever the timing jitter. ``strict_window``
        instead allows at most ``rate`` calls in any sliding second (a harsher reading of "3 calls/s").
        """
        if not self.rate_limit_per_second:
            return False
        rate = float(self.rate_limit_per_second)
        now = time.monotonic()
        with self.lock:
            if self.strict_window:
                while self._window and now - self._window[0] >= 1.0:
                    self._window.popleft()
                if len(self._window) >= rate:
                    return True
                self._window.append(now)
                return False
            if self._bucket_at is None:
                self._tokens, self._bucket_at = rate, now
            self._tokens = min(rate, self._tokens + (now - self._bucket_at) * rate)
            self._bucket_at = now
            if self._tokens < 1.0:
                return True
            self._tokens -= 1.0
        return False

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            with self.lock:
                expires = self.issued.get(value)
                if expires is not None:
                    if time.monotonic() < expires:
                        return True
                    self.oauth_expired += 1
                    return False
            return secrets.compare_digest(value, self.access_token)
        if scheme.lower() == "basic":
            expected = base64.b64encode(f"{self.access_key}:{self.access_key_secret}".encode()).decode()
            return secrets.compare_digest(value, expected)
        return False

    def handle(self, method: str, path: str, headers: Any, body: bytes, query: str = "") -> Answer:
        """Route one request; returns (status, JSON body, extra headers). Raises _Drop to hang up."""
        status, payload, extra = self._handle(method, path, headers, body, query)
        if self.echo_authorization and status >= 400 and not path.startswith("/_standin/"):
            header = str(headers.get("Authorization") or "")
            if query:  # a gateway that echoes the request line echoes the query string too
                header = f"{header} (query {query})"
            if "error_description" in payload:
                payload = {**payload, "error_description": f"{payload['error_description']}; {header}"}
            decoded = ""
            if header.lower().startswith("basic "):
                try:
                    decoded = base64.b64decode(header[6:]).decode("utf-8", "replace")
                except ValueError:
                    decoded = "?"
            echo = f"Request was: Authorization: {header} ({decoded})"
            payload = {
                **payload,
                "errors": [*payload.get("errors", []), echo],
                "requestId": f"{payload.get('requestId')} {header}",
                "userFacingError": f"{payload.get('userFacingError') or 'Error'}; {echo}",
            }
        return status, payload, extra

    def _handle(self, method: str, path: str, headers: Any, body: bytes, query: str = "") -> Answer:
        if path.startswith("/_standin/"):
            return self._admin(method, path, body)
        if path == TOKEN_PATH:
            return self._token_endpoint(method, headers, body, query)
        if path == AUTHORIZE_PATH:
            return self._authorize(method, query)
        if self.latency:
            time.sleep(self.latency)
        if not self._authorized(headers.get("Authorization")):
            return _error(401, "Access denied: missing or invalid credentials")
        if self._over_rate():
            return _error(429, "API request limit exceeded", headers={"Retry-After": str(self.retry_after)})
        fault = self._take_fault(method, path)
        if fault and fault.kind == "status":
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return _error(fault.status, "Injected failure", headers=extra)
        if fault and fault.kind == "drop":
            raise _Drop
        if self.limited_release and path.startswith("/v2/meetings"):
            return _error(403, LIMITED_RELEASE)
        try:
            data = json.loads(body) if body else None
        except ValueError:
            return _error(400, "Request body is not valid JSON")
        result = self._route(method, path, data)
        if fault and fault.kind == "drop_after":
            raise _Drop
        if fault and fault.kind == "delay":
            time.sleep(fault.delay)
        if fault and fault.kind in _ANSWER_FAULTS:
            raise _BadAnswer(fault, result)
        return result

    def _route(self, method: str, path: str, data: Any) -> Answer:
        if method == "GET" and path == "/v2/users":
            return self._users()
        if method == "POST" and path == "/v2/meetings":
            return self._create(data)
        if method == "POST" and path == "/v2/meetings/integration/status":
            return self._status(data)
        match = _MEETING_PATH.match(path)
        if match and method == "PUT":
            return self._update(match.group(1), data)
        if match and method == "DELETE":
            return self._delete(match.group(1), data)
        return _error(404, f"No such endpoint: {method} {path}")

    def _users(self) -> Answer:
        users = sorted(self.users | self.users_without_consent)
        records = {"totalRecords": len(users), "currentPageSize": len(users), "currentPageNumber": 0}
        listing = [{"id": str(7_000_000_000_000_000_000 + i), "emailAddress": e} for i, e in enumerate(users)]
        return 200, {"requestId": _request_id(), "records": records, "users": listing}, {}

    def _check_organizer(self, email: str) -> Answer | None:
        if email.lower() in self.users_without_consent:
            return _error(
                409,
                "Conflict: consent page is not enabled",
                userFacingError=CONSENT_OFF,
                fixUrl=FIX_URL,
                helpUrl=HELP_URL,
            )
        if email.lower() not in self.users:
            return _error(404, "No Gong user found corresponding to the provided organizer email")
        return None

    def _create(self, data: Any) -> Answer:
        problems = _meeting_problems(data)
        if problems:
            return _error(400, *problems)
        refusal = self._check_organizer(data["organizerEmail"])
        if refusal:
            return refusal
        with self.lock:
            meeting_id = str(secrets.randbelow(9 * 10**18) + 10**18)  # 19 digits, beyond 2**53
            self.created.append(Created(meeting_id, data))
            self.meetings[meeting_id] = data
        local = data["organizerEmail"].split("@")[0]
        url = f"https://join.gong.io/{self.company}/{local}?tkn={secrets.token_urlsafe(16)}"
        if self.meeting_url_length and len(url) < self.meeting_url_length:
            url += "&pad=" + "x" * (self.meeting_url_length - len(url) - 5)
        return (
            200,
            {
                "requestId": _request_id(),
                "meetingId": meeting_id,
                "meetingUrl": url,
                "additionalInvitees": self.additional_invitees,
            },
            {},
        )

    def _update(self, meeting_id: str, data: Any) -> Answer:
        problems = _meeting_problems(data)
        if problems:
            return _error(400, *problems)
        with self.lock:
            if meeting_id not in self.meetings:
                return _error(404, "No Gong meeting found with the provided meetingId")
        refusal = self._check_organizer(data["organizerEmail"])
        if refusal:
            return refusal
        with self.lock:
            self.meetings[meeting_id] = data
        return 200, {"requestId": _request_id(), "meetingId": meeting_id}, {}

    def _delete(self, meeting_id: str, data: Any) -> Answer:
        organizer = data.get("organizerEmail") if isinstance(data, dict) else None
        with self.lock:
            meeting = self.meetings.get(meeting_id)
            if meeting is None or (organizer and organizer.lower() != meeting["organizerEmail"].lower()):
                return _error(404, "No Gong meeting found corresponding to the provided organizer email")
            del self.meetings[meeting_id]
        return 200, {"organizerEmail": organizer or meeting["organizerEmail"]}, {}

    def _status(self, data: Any) -> Answer:
        emails = data.get("emails") if isinstance(data, dict) else None
        if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
            return _error(400, "emails must be an array of strings")
        if len(emails) > 100:
            return _error(400, "emails may hold at most 100 addresses")
        users = []
        for email in emails:
            known = email.lower() in self.users or email.lower() in self.users_without_consent
            valid = email.lower() in self.users
            entry: dict[str, Any] = {"email": email, "exists": known, "valid": valid}
            if known and not valid:
                entry.update(userFacingError=CONSENT_OFF, fixUrl=FIX_URL, helpUrl=HELP_URL)
            elif not known:
                entry["userFacingError"] = "No Gong user found with this email address."
            users.append(entry)
        return 200, {"requestId": _request_id(), "users": users}, {}

    # -- OAuth ------------------------------------------------------------------------------------------

    def issue_refresh_token(self) -> str:
        """Issue a new valid refresh token, as an admin's new authorisation of the app gives one."""
        with self.lock:
            token = _token_text()
            self.refresh_tokens.add(token)
            return token

    def issue_authorization_code(self, redirect_uri: str, client_id: str | None = None) -> str:
        """
        Issue an authorization code, as Gong does when an admin consents on the authorize page.

        It can be exchanged once, within :attr:`code_lifetime` seconds, by ``client_id`` (default: this
        server's client) with the same ``redirect_uri``.
        """
        with self.lock:
            code = "gac-" + secrets.token_urlsafe(18)
            expires = time.monotonic() + self.code_lifetime
            self.codes[code] = (client_id or self.client_id, redirect_uri, expires)
            return code

    def revoke_access_tokens(self) -> None:
        """Every issued access token stops working (the API answers 401), as after a revocation."""
        with self.lock:
            self.issued.clear()

    def oauth_counters(self) -> dict[str, int]:
        """Return ``refreshes``, ``invalid_grant``, ``invalid_client`` and ``expired`` (API calls refused)."""
        with self.lock:
            return {
                "refreshes": self.oauth_refreshes,
                "invalid_grant": self.oauth_invalid_grants,
                "invalid_client": self.oauth_invalid_clients,
                "expired": self.oauth_expired,
            }

    def _authorize(self, method: str, query: str) -> Answer:
        """
        Serve ``GET /oauth2/authorize``: redirect to ``redirect_uri`` with a new code and the ``state``.

        An admin's consent is taken as given. A request that must not be redirected (unknown client, no
        usable ``redirect_uri``, another ``response_type``) gets 400, as an authorization server shows an
        error page instead of redirecting.
        """
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        redirect_uri = params.get("redirect_uri") or ""
        problem = None
        if method != "GET":
            problem = "GET only"
        elif params.get("client_id") != self.client_id:
            problem = "unknown client_id"
        elif urlsplit(redirect_uri).scheme not in ("http", "https") or not urlsplit(redirect_uri).netloc:
            problem = "redirect_uri must be an http(s) URL"
        elif params.get("response_type") != "code":
            problem = "response_type must be code"
        if problem:
            return 400, {"error": "invalid_request", "error_description": problem}, {}
        code = self.issue_authorization_code(redirect_uri)
        answer = {"code": code, **({"state": params["state"]} if "state" in params else {})}
        location = f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(answer)}"
        return 302, {"redirect": location}, {"Location": location}

    def _token_endpoint(self, method: str, headers: Any, body: bytes, query: str) -> Answer:
        """
        Serve Gong's ``POST /oauth2/generate-customer-token``.

        ``grant_type=refresh_token`` (each refresh token works once) or ``authorization_code`` (a code
        this server issued, once, with the ``redirect_uri`` it was issued for). The grant in the query
        string (as Gong documents it) or a form body, the client as Basic auth. Faults apply only when
        their ``match`` names this path.
        """
        fault = self._take_fault(method, TOKEN_PATH, explicit=True)
        if fault and fault.kind == "status":
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return fault.status, {"error": "server_error" if fault.status >= 500 else "injected"}, extra
        if fault and fault.kind == "drop":
            raise _Drop
        if method != "POST":
            return 405, {"error": "invalid_request", "error_description": "POST only"}, {}
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        scheme, _, value = str(headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic" or not secrets.compare_digest(value, expected):
            with self.lock:
                self.oauth_invalid_clients += 1
            return 401, {"error": "invalid_client", "error_description": "Client authentication failed"}, {}
        form = {k: v[-1] for k, v in parse_qs(query).items()}
        if body and "urlencoded" in str(headers.get("Content-Type") or ""):
            form.update({k: v[-1] for k, v in parse_qs(body.decode("latin-1")).items()})
        if form.get("grant_type") == "authorization_code":
            refused = self._spend_code(form)
        elif form.get("grant_type") == "refresh_token" and form.get("refresh_token"):
            refused = self._spend_refresh_token(form["refresh_token"])
        else:
            refused = "unsupported_grant_type", "refresh_token or authorization_code only"
        if refused:
            return 400, {"error": refused[0], "error_description": refused[1]}, {}
        answer = self._issue_tokens()
        if fault and fault.kind == "drop_after":
            raise _Drop  # rotated, and the answer with the new refresh token is lost
        if fault and fault.kind == "delay":
            time.sleep(fault.delay)
        return 200, answer, {"Cache-Control": "no-store"}

    def _spend_refresh_token(self, refresh_token: str) -> tuple[str, str] | None:
        """Use up a refresh token; the refusal (error, description) when it does not work (any more)."""
        with self.lock:
            if refresh_token not in self.refresh_tokens:
                self.oauth_invalid_grants += 1
                return "invalid_grant", "Token has been expired or revoked"
            self.refresh_tokens.discard(refresh_token)
            self.oauth_refreshes += 1
        return None

    def _spend_code(self, form: dict[str, str]) -> tuple[str, str] | None:
        """Use up an authorization code; a refused one stays usable (until it expires)."""
        if not form.get("code") or not form.get("redirect_uri"):
            return "invalid_request", "code and redirect_uri are required"
        with self.lock:
            client_id, redirect_uri, expires = self.codes.get(form["code"], ("", "", 0.0))
            problem = None
            if not client_id:
                problem = "Authorization code is invalid or was already used"
            elif time.monotonic() >= expires:
                problem = "Authorization code has expired"
            elif form.get("client_id", client_id) != client_id or client_id != self.client_id:
                problem = "Authorization code was issued to another client"
            elif form["redirect_uri"] != redirect_uri:
                problem = "redirect_uri does not match the one the code was issued for"
            if problem:
                self.oauth_invalid_grants += 1
                return "invalid_grant", problem
            del self.codes[form["code"]]
            self.code_exchanges += 1
        return None

    def _issue_tokens(self) -> dict[str, Any]:
        """Issue a new refresh token and access token: the token endpoint's answer to a good grant."""
        with self.lock:
            new_refresh, access = _token_text(), "gat-" + secrets.token_urlsafe(24)
            self.refresh_tokens.add(new_refresh)
            self.issued[access] = time.monotonic() + self.token_lifetime
        return {
            "access_token": access,
            "refresh_token": new_refresh,
            "token_type": "bearer",
            "expires_in": self.token_lifetime,
            "scope": "api:meetings:user:create api:users:read",
            "api_base_url_for_customer": self.api_base_url or self.url,
        }

    def _admin(self, method: str, path: str, body: bytes) -> Answer:
        if method == "GET" and path == "/_standin/meetings":
            with self.lock:
                created = [{"meetingId": c.meeting_id, **c.payload} for c in self.created]
            return 200, {"created": created, "duplicates": self.duplicates()}, {}
        if method == "POST" and path == "/_standin/faults":
            try:
                self.inject(**json.loads(body or b"{}"))
            except (TypeError, ValueError) as exc:
                return _error(400, str(exc))
            return 200, {"ok": True}, {}
        if method == "GET" and path == "/_standin/oauth":
            return 200, self.oauth_counters(), {}
        if method == "POST" and path == "/_standin/oauth/refresh-token":
            return 200, {"refresh_token": self.issue_refresh_token()}, {}
        if method == "POST" and path == "/_standin/reset":
            self.reset()
            return 200, {"ok": True}, {}
        return _error(404, f"No such stand-in endpoint: {method} {path}")


class _Handler(BaseHTTPRequestHandler):
    standin: GongStandIn
    protocol_version = "HTTP/1.1"
    # Without this a keep-alive client waits ~40 ms per call for a delayed ACK (see DESIGN.md).
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        try:
            status, payload, headers = self.standin.handle(self.command, path, self.headers, body, query)
        except _Drop:
            with self.standin.lock:
                self.standin.log.append((self.command, path, 0))
            self.close_connection = True
            self.connection.shutdown(2)
            return
        except _BadAnswer as bad:
            with self.standin.lock:
                self.standin.log.append((self.command, path, -1))
            self._bad_answer(bad.fault, bad.answer)
            return
        with self.standin.lock:
            self.standin.log.append((self.command, path, status))
        self.wfile.write(_response(status, json.dumps(payload).encode(), headers))

    def _bad_answer(self, fault: Fault, answer: Answer) -> None:
        status, payload, headers = answer
        body = json.dumps(payload).encode()
        self.close_connection = True
        if fault.kind == "drip":
            try:
                for byte in _response(status, body, headers):
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(fault.delay or 0.5)
            except OSError:  # the client gave up: that is the point
                pass
        elif fault.kind == "garble":
            junk = b"\x1f\x8b\x08\x00garbage-not-gzip" + bytes(range(32))
            self.wfile.write(_response(200, junk, {"Content-Encoding": "gzip"}))
        elif fault.kind == "truncate":
            whole = _response(200, body, {"Content-Length": str(len(body) + 100)})
            self.wfile.write(whole[: len(whole) - len(body) // 2])
            self.connection.shutdown(2)
        else:  # body
            self.wfile.write(_response(200, fault.body.encode(), {}))

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


def _response(status: int, body: bytes, headers: dict[str, str]) -> bytes:
    """One HTTP/1.1 response as bytes, written in one send (no Nagle delay, see DESIGN.md)."""
    from http.client import responses

    fields = {"Content-Type": "application/json", "Content-Length": str(len(body)), **headers}
    head = f"HTTP/1.1 {status} {responses.get(status, 'Status')}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    return head.encode("latin-1") + body


def _token_text() -> str:
    """Return a refresh token with ``+``, ``/`` and ``=`` in it, so clients must URL-encode it to send it."""
    return "grt/" + base64.b64encode(secrets.token_bytes(30)).decode() + "=="


def _request_id() -> str:
    return uuid.uuid4().hex[:19]


def _error(status: int, *errors: str, headers: dict[str, str] | None = None, **fields: Any) -> Answer:
    return status, {"requestId": _request_id(), "errors": list(errors), **fields}, headers or {}


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _meeting_problems(data: Any) -> list[str]:
    """Gong's NewMeetingRequest rules (the four required fields; ISO-8601 with an offset)."""
    if not isinstance(data, dict):
        return ["Request body must be a JSON object"]
    problems = []
    start, end = _parse_time(data.get("startTime")), _parse_time(data.get("endTime"))
    if start is None:
        problems.append("startTime is required, in ISO-8601 format with a UTC offset or Z")
    if end is None:
        problems.append("endTime is required, in ISO-8601 format with a UTC offset or Z")
    if start and end and end <= start:
        problems.append("endTime must be after startTime")
    organizer = data.get("organizerEmail")
    if not isinstance(organizer, str) or not _EMAIL.match(organizer):
        problems.append("organizerEmail is required and must be an email address")
    invitees = data.get("invitees")
    if not isinstance(invitees, list):
        problems.append("invitees is required and must be an array")
    else:
        for i, invitee in enumerate(invitees):
            if not isinstance(invitee, dict) or not all(isinstance(v, str) for v in invitee.values()):
                problems.append(f"invitees[{i}] must be an object of strings")
            elif invitee.get("email") and not _EMAIL.match(invitee["email"]):
                problems.append(f"invitees[{i}].email is not an email address")
    for name in ("title", "externalId"):
        if name in data and data[name] is not None and not isinstance(data[name], str):
            problems.append(f"{name} must be a string")
    return problems


def max_in_sliding_window(times: list[float], window: float = 1.0) -> int:
    """
    Return the most calls inside any half-open window [t, t + window).

    That is what ``strict_window`` mode (and a strict server) compares with its limit; it refuses a call
    when ``limit`` calls came less than 1 s before. For tests and benchmarks that check a client's pacing
    from the server's side.
    """
    ordered = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        most = max(most, end - start + 1)
    return most
