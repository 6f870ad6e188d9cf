"""Basic, Bearer and OAuth as requests auth objects; the OAuth refresh-on-401 re-send."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest
import requests

from airflow_provider_gong._client.auth import BasicAuth, BearerAuth, OAuthAuth
from airflow_provider_gong.exceptions import GongAuthError, GongForbiddenError, GongValidationError


def test_basic_is_rfc7617_utf8():
    auth = BasicAuth("key", "sécret")
    assert auth.header == "Basic " + base64.b64encode("key:sécret".encode()).decode()
    assert auth.credential == base64.b64encode("key:sécret".encode()).decode()


@pytest.mark.parametrize("key, secret", [(None, "s"), ("k", None), ("", "")])
def test_basic_needs_both_halves(key, secret):
    with pytest.raises(GongValidationError, match="access key"):
        BasicAuth(key, secret)


@pytest.mark.parametrize("token", ["two words", "line\nbreak", "tokén"])
def test_a_bearer_token_a_header_cannot_carry_is_refused_without_showing_it(token):
    with pytest.raises(GongValidationError) as info:
        BearerAuth(token)
    assert token not in str(info.value)


def test_auth_objects_put_the_header_on_the_request(requests_mock):
    requests_mock.get("https://gong.test/v2/users", json={})
    session = requests.Session()
    session.auth = BearerAuth("tok-123")
    session.get("https://gong.test/v2/users")
    assert requests_mock.last_request.headers["Authorization"] == "Bearer tok-123"


@dataclass(frozen=True)
class Token:
    access_token: str

    @property
    def authorization(self) -> str:
        return f"Bearer {self.access_token}"


class FakeOAuth:
    """Hands out token-1, token-2, ... ; records what was refused."""

    def __init__(self) -> None:
        self.issued = 0
        self.held: Token | None = None
        self.rejected: list[Token] = []

    def token(self) -> Token:
        if self.held is None:
            self.issued += 1
            self.held = Token(f"token-{self.issued}")
        return self.held

    def reauthorize(self, rejected: Token) -> Token:
        self.rejected.append(rejected)
        self.held = None
        return self.token()


def sender(auth: OAuthAuth, answers: list[BaseException | str]):
    """A send step that stamps a request with ``auth`` and then fails or answers as told."""
    seen: list[str] = []

    def send() -> str:
        seen.append(auth(requests.Request("GET", "https://gong.test/").prepare()).headers["Authorization"])
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return send, seen


def test_a_401_renews_the_token_and_sends_once_more():
    oauth = FakeOAuth()
    auth = OAuthAuth(oauth)  # type: ignore[arg-type]
    send, seen = sender(auth, [GongAuthError("refused", status=401), "ok"])
    assert auth.send(send, str) == "ok"
    assert seen == ["Bearer token-1", "Bearer token-2"]
    assert oauth.rejected == [Token("token-1")]


def test_a_second_401_is_final_and_says_so_redacted():
    auth = OAuthAuth(FakeOAuth())  # type: ignore[arg-type]
    send, seen = sender(
        auth, [GongAuthError("refused", status=401), GongAuthError("token-2 refused", status=401)]
    )
    with pytest.raises(GongAuthError, match="second, newer OAuth access token") as info:
        auth.send(send, lambda text: text.replace("token-2", "***") if isinstance(text, str) else text)
    assert len(seen) == 2 and "token-2" not in str(info.value)


def test_other_refusals_are_not_sent_again():
    oauth = FakeOAuth()
    auth = OAuthAuth(oauth)  # type: ignore[arg-type]
    send, seen = sender(auth, [GongForbiddenError("no scope", status=403)])
    with pytest.raises(GongForbiddenError):
        auth.send(send, str)
    assert len(seen) == 1 and oauth.rejected == []
