"""Single sign-on against the fake OpenID Connect provider: code flow with PKCE, ID-token checks,
roles from the token, from a local user or by default."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from psatriage.errors import ConfigError
from psatriage.runtime import Runtime
from psatriage.store.users import Role
from psatriage.web import create_app
from psatriage.web.console import load_settings
from psatriage.web.console.core import Console
from tests.fakes.oidc import CLIENT_ID, CLIENT_SECRET, FakeOidc
from tests.web.console.conftest import page

PUBLIC = "http://127.0.0.1:8080"


@pytest.fixture
def oidc(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOidc]:
    with FakeOidc() as fake:
        monkeypatch.setenv("PSATRIAGE_OIDC_ISSUER", fake.issuer)
        monkeypatch.setenv("PSATRIAGE_OIDC_CLIENT_ID", CLIENT_ID)
        monkeypatch.setenv("PSATRIAGE_OIDC_CLIENT_SECRET", CLIENT_SECRET)
        monkeypatch.setenv("PSATRIAGE_OIDC_DISPLAY_NAME", "Microsoft")
        monkeypatch.setenv("PSATRIAGE_PUBLIC_URL", PUBLIC)
        yield fake


@pytest.fixture
def sso(runtime: Runtime, oidc: FakeOidc) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), follow_redirects=False) as client:
        yield client


def _console(client: TestClient) -> Console:
    found: Console = client.app.state.console  # type: ignore[attr-defined]
    return found


def sign_in_with_provider(client: TestClient, next_page: str = "/") -> httpx.Response:
    """Click the button, let the provider sign the person in, come back."""
    start = client.get("/login/oidc", params={"next": next_page})
    assert start.status_code == 303, start.text
    answer = httpx.get(start.headers["location"], follow_redirects=False)  # at the provider
    assert answer.status_code == 302, answer.text
    back = httpx.URL(answer.headers["location"])
    assert str(back).startswith(f"{PUBLIC}/login/oidc/callback?")
    return client.get(back.path, params=dict(back.params))


def test_sign_in_with_the_provider(sso: TestClient, oidc: FakeOidc) -> None:
    assert "Sign in with Microsoft" in page(sso, "/login").text
    response = sign_in_with_provider(sso, "/events")
    assert response.status_code == 303 and response.headers["location"] == "/events"
    shown = page(sso, "/events")
    assert shown.status == 200 and "alex@contoso.example reviewer" in shown.text
    (token_request,) = oidc.token_requests
    assert token_request["code_verifier"] and "client_secret" not in token_request  # Basic auth
    audit = _console(sso).audit.recent()[0]
    assert (audit.actor, audit.action, audit.detail) == ("alex@contoso.example", "sign_in", "oidc")


def test_the_secret_goes_in_the_form_when_basic_is_not_offered(
    sso: TestClient, oidc: FakeOidc
) -> None:
    oidc.auth_methods = ["client_secret_post"]
    assert sign_in_with_provider(sso).status_code == 303
    assert oidc.token_requests[0]["client_secret"] == CLIENT_SECRET


def test_a_role_from_a_local_user_of_the_same_name(sso: TestClient, oidc: FakeOidc) -> None:
    oidc.person = {"preferred_username": "alex@contoso.example"}
    _console(sso).users.add("Alex@Contoso.example", Role.ADMIN, None)
    sign_in_with_provider(sso)
    assert "alex@contoso.example admin" in page(sso, "/").text


def test_no_role_is_no_entry(
    sso: TestClient, oidc: FakeOidc, monkeypatch: pytest.MonkeyPatch
) -> None:
    oidc.person = {"email": "eve@contoso.example"}
    refused = sign_in_with_provider(sso)
    assert refused.status_code == 401
    assert "eve@contoso.example has no psatriage role" in page_text(refused)
    assert sso.get("/").status_code == 303


def test_the_default_role(
    runtime: Runtime, oidc: FakeOidc, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PSATRIAGE_OIDC_DEFAULT_ROLE", "viewer")
    oidc.person = {"email": "eve@contoso.example"}
    with TestClient(create_app(runtime), follow_redirects=False) as client:
        assert sign_in_with_provider(client).status_code == 303
        assert "eve@contoso.example viewer" in page(client, "/").text


@pytest.mark.parametrize(
    ("tamper", "says"),
    [
        ("signature", "Signature verification failed"),
        ("audience", "Audience doesn't match"),
        ("issuer", "Invalid issuer"),
        ("nonce", "nonce does not match"),
        ("expired", "Signature has expired"),
        ("key", "a key the provider does not publish"),
        ("alg_none", "algorithm 'none' is not accepted"),
    ],
)
def test_a_bad_id_token_signs_nobody_in(
    sso: TestClient, oidc: FakeOidc, tamper: str, says: str
) -> None:
    oidc.tamper = {tamper}
    refused = sign_in_with_provider(sso)
    assert refused.status_code == 401
    assert "Single sign-on failed" in page_text(refused) and says in page_text(refused)
    assert sso.get("/").status_code == 303
    assert _console(sso).audit.recent()[0].action == "sign_in_failed"


def test_the_state_must_match_and_an_answer_counts_once(sso: TestClient, oidc: FakeOidc) -> None:
    start = sso.get("/login/oidc")
    answer = httpx.get(start.headers["location"], follow_redirects=False)
    back = httpx.URL(answer.headers["location"])
    forged = sso.get(back.path, params={**dict(back.params), "state": "forged"})
    assert forged.status_code == 401 and "does not match" in page_text(forged)
    replayed = sso.get(back.path, params=dict(back.params))  # the sign-in was used up
    assert replayed.status_code == 400 and "start again" in page_text(replayed)
    assert sso.get("/").status_code == 303


def test_a_callback_without_a_sign_in_in_progress(sso: TestClient) -> None:
    response = sso.get("/login/oidc/callback", params={"code": "x", "state": "y"})
    assert response.status_code == 400


def test_the_provider_says_no(sso: TestClient) -> None:
    sso.get("/login/oidc")
    refused = sso.get(
        "/login/oidc/callback",
        params={"error": "access_denied", "error_description": "the user declined"},
    )
    assert refused.status_code == 401
    assert "the provider said access_denied: the user declined" in page_text(refused)


def test_the_provider_rotates_its_signing_key(sso: TestClient, oidc: FakeOidc) -> None:
    assert sign_in_with_provider(sso).status_code == 303
    sso.cookies.clear()
    oidc.rotate_key()
    assert sign_in_with_provider(sso).status_code == 303


def test_an_issuer_that_does_not_match_the_discovery_document(
    runtime: Runtime, oidc: FakeOidc, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PSATRIAGE_OIDC_ISSUER", oidc.url)  # without /v2.0
    with TestClient(create_app(runtime), follow_redirects=False) as client:
        oidc.route(
            "GET",
            r"/\.well-known/openid-configuration",
            oidc._discovery,
        )
        response = client.get("/login/oidc")
        assert response.status_code == 502
        assert "fix PSATRIAGE_OIDC_ISSUER" in page_text(response)


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("PSATRIAGE_OIDC_ISSUER", "http://login.example/v2.0", "must use https"),
        ("PSATRIAGE_PUBLIC_URL", "not a url", "is not a URL"),
        ("PSATRIAGE_SESSION_HOURS", "-1", "PSATRIAGE_SESSION_HOURS"),
    ],
)
def test_bad_console_settings_are_clear_errors(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv("PSATRIAGE_OIDC_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=says):
        load_settings()


def test_an_issuer_needs_a_client_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSATRIAGE_OIDC_ISSUER", "https://login.example/v2.0")
    with pytest.raises(ConfigError, match="set both"):
        load_settings()


def page_text(response: httpx.Response) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text)))
