"""Signing in and out with local users, sessions, CSRF protection and the sign-in rate limit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from psatriage.store.tables import AuditRow, ConsoleSessionRow, utcnow
from psatriage.store.users import Role, token_hash
from psatriage.web.console import PAGES, signin
from psatriage.web.console.core import SESSION_COOKIE, Console
from psatriage.web.console.signin import TOO_MANY, WRONG
from tests.web.console.conftest import PASSWORD, csrf_of, page, sign_in


def test_every_page_needs_a_signed_in_person(client: TestClient) -> None:
    for path in ("/", "/decisions", "/decisions/1", "/events", "/tenants", "/tenants/acme"):
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=")


def test_sign_in_lands_on_the_page_asked_for(client: TestClient, people: object) -> None:
    response = client.get("/decisions", params={"tenant": "acme"})
    assert response.headers["location"] == "/login?next=%2Fdecisions%3Ftenant%3Dacme"
    signed = sign_in(client, "ann", next_page="/decisions?tenant=acme")
    assert signed.status_code == 303
    assert signed.headers["location"] == "/decisions?tenant=acme"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http on loopback; https sets it (below)
    assert page(client, "/decisions").status == 200


def test_the_cookie_is_secure_behind_tls(client: TestClient, people: object) -> None:
    form = client.get("https://testserver/login")
    signed = client.post(
        "https://testserver/login",
        data={"csrf_token": csrf_of(form.text), "name": "ann", "password": PASSWORD},
    )
    assert "Secure" in signed.headers["set-cookie"]


def test_a_wrong_password_reads_like_an_unknown_user(client: TestClient, people: object) -> None:
    wrong = sign_in(client, "ann", "not the password at all")
    unknown = sign_in(client, "nobody", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert WRONG in wrong.text and WRONG in unknown.text
    # the same page but for the name typed in and the form's token
    assert wrong.text.replace('value="ann"', "").replace(csrf_of(wrong.text), "") == (
        unknown.text.replace('value="nobody"', "").replace(csrf_of(unknown.text), "")
    )
    assert client.get("/").status_code == 303


def test_sign_in_is_rate_limited_per_name(
    client: TestClient, people: object, console: Console
) -> None:
    attempts = console.settings.sign_in_attempts
    for _ in range(attempts):
        assert sign_in(client, "ann", "guessing the password").status_code == 401
    locked = sign_in(client, "ann")  # even the right password is refused now
    assert locked.status_code == 429
    assert TOO_MANY.format(minutes="15") in locked.text
    unknown = sign_in(client, "ANN", "another guess")  # names compare in any case
    assert unknown.status_code == 429
    assert sign_in(client, "rob").status_code == 303  # others are not locked out


def test_the_rate_limit_window_passes(client: TestClient, people: object, console: Console) -> None:
    for _ in range(console.settings.sign_in_attempts):
        sign_in(client, "ann", "guessing the password")
    assert sign_in(client, "ann").status_code == 429
    with console.runtime.sessions.begin() as session:  # the failures age past the window
        session.execute(update(AuditRow).values(at=utcnow() - timedelta(minutes=16)))
    assert sign_in(client, "ann").status_code == 303


def test_failed_and_successful_sign_ins_are_audited(
    client: TestClient, people: object, console: Console
) -> None:
    sign_in(client, "ann", "wrong password here")
    sign_in(client, "ann")
    actions = [(row.actor, row.action) for row in reversed(console.audit.recent())]
    assert actions == [("ann", "sign_in_failed"), ("ann", "sign_in")]
    assert console.audit.recent()[0].address == "testclient"


def test_signing_in_replaces_the_session(
    client: TestClient, people: object, console: Console
) -> None:
    client.get("/login")
    before = client.cookies[SESSION_COOKIE]
    sign_in(client, "ann")
    after = client.cookies[SESSION_COOKIE]
    assert before != after
    assert console.sessions.find(before) is None  # a session id known before is worthless


def test_a_post_without_the_csrf_token_is_refused(client: TestClient, people: object) -> None:
    sign_in(client, "ann")
    refused = client.post("/logout")
    assert refused.status_code == 403
    assert "reload the page" in refused.text
    forged = client.post("/logout", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    assert page(client, "/").status == 200  # still signed in


def test_a_post_from_another_origin_is_refused(client: TestClient, people: object) -> None:
    sign_in(client, "ann")
    token = csrf_of(client.get("/").text)
    refused = client.post(
        "/logout", data={"csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert refused.status_code == 403
    own = client.post(
        "/logout", data={"csrf_token": token}, headers={"Origin": "http://testserver"}
    )
    assert own.status_code == 303


def test_a_replayed_form_after_sign_out_is_refused(client: TestClient, people: object) -> None:
    sign_in(client, "ann")
    token = csrf_of(client.get("/events").text)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    sign_in(client, "ann")
    replayed = client.post("/events/retry", data={"csrf_token": token, "event_id": "1"})
    assert replayed.status_code == 403


def test_every_state_changing_console_route_checks_csrf(
    client: TestClient, people: object, console: Console
) -> None:
    sign_in(client, "ann")
    routes = [route for module in (signin, *PAGES) for route in module.router.routes]
    posts = [
        route.path.replace("{name}", "acme")
        for route in routes
        if isinstance(route, APIRoute) and route.methods - {"GET", "HEAD"}
    ]
    assert {"/login", "/logout", "/events/retry", "/tenants/acme/check"} <= set(posts)
    for path in posts:
        assert client.post(path, data={"event_id": "1"}).status_code == 403, path


def test_an_expired_session_goes_back_to_sign_in_with_the_page_remembered(
    client: TestClient, people: object, console: Console
) -> None:
    sign_in(client, "ann")
    with console.runtime.sessions.begin() as session:
        session.execute(
            update(ConsoleSessionRow).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    response = client.get("/events", params={"tenant": "acme"})
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fevents%3Ftenant%3Dacme&expired=1"
    form = client.get(response.headers["location"])
    assert "Your session ended" in form.text
    signed = client.post(
        "/login",
        data={
            "csrf_token": csrf_of(form.text),
            "name": "ann",
            "password": PASSWORD,
            "next": "/events?tenant=acme",
        },
    )
    assert signed.headers["location"] == "/events?tenant=acme"


def test_an_idle_session_ends(client: TestClient, people: object, console: Console) -> None:
    sign_in(client, "ann")
    idle = console.settings.lifetimes.idle
    with console.runtime.sessions.begin() as session:
        session.execute(update(ConsoleSessionRow).values(seen_at=utcnow() - idle))
    assert client.get("/").headers["location"] == "/login?next=%2F&expired=1"


def test_sign_out_ends_the_session(client: TestClient, people: object, console: Console) -> None:
    sign_in(client, "ann")
    token = client.cookies[SESSION_COOKIE]
    signed_out = client.post("/logout", data={"csrf_token": csrf_of(client.get("/").text)})
    assert signed_out.headers["location"] == "/login"
    assert console.sessions.find(token) is None
    with console.runtime.sessions() as session:
        assert session.get(ConsoleSessionRow, token_hash(token)) is None
    assert client.get("/").status_code == 303


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example"])
def test_sign_in_never_redirects_off_site(client: TestClient, people: object, target: str) -> None:
    assert sign_in(client, "ann", next_page=target).headers["location"] == "/"


def test_removing_a_user_ends_their_sessions(
    client: TestClient, people: object, console: Console
) -> None:
    sign_in(client, "val")
    assert console.users.remove("val")
    assert client.get("/").status_code == 303


def test_the_session_cookie_holds_no_more_than_a_random_token(
    client: TestClient, people: object, console: Console
) -> None:
    sign_in(client, "ann")
    token = client.cookies[SESSION_COOKIE]
    assert len(token) >= 40 and "ann" not in token
    with console.runtime.sessions() as session:
        stored = session.execute(select(ConsoleSessionRow.token_hash)).scalars().all()
    assert token not in stored and token_hash(token) in stored


def test_the_sign_in_page_says_how_to_make_the_first_user(client: TestClient) -> None:
    assert "psatriage users add NAME --role admin" in page(client, "/login").text


def test_roles_allow_what_the_ones_before_them_allow() -> None:
    assert Role.ADMIN.allows(Role.REVIEWER) and Role.ADMIN.allows(Role.VIEWER)
    assert Role.REVIEWER.allows(Role.VIEWER) and not Role.REVIEWER.allows(Role.ADMIN)
    assert not Role.VIEWER.allows(Role.REVIEWER)
