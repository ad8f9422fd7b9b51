"""Signing in and out: local users (argon2 passwords, rate-limited) and single sign-on (OIDC).

A browser gets a session before it signs in (its CSRF token protects the sign-in form, and single
sign-on keeps its state there); signing in replaces it with a new one, so a session id known
before sign-in is worth nothing after.
"""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from psatriage.store.tables import utcnow
from psatriage.store.users import Audit, Role
from psatriage.web.console.core import (
    SESSION_COOKIE,
    Console,
    SignedIn,
    console_of,
    csrf_guard,
    current_session,
    safe_next,
    signed_in,
)
from psatriage.web.console.oidc import SignInFailed

log = structlog.get_logger(__name__)
router = APIRouter(dependencies=[Depends(csrf_guard)], include_in_schema=False)

WRONG = "Wrong user name or password."
TOO_MANY = "Too many failed sign-ins. Wait {minutes} minutes, then try again."
CALLBACK = "/login/oidc/callback"


@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request, next_page: Annotated[str, Query(alias="next")] = "/", expired: bool = False
) -> Response:
    console = console_of(request)
    session = current_session(request)
    if session is not None and session.user_name is not None:
        return RedirectResponse(safe_next(next_page), status_code=303)
    notice = "Your session ended; sign in again to continue." if expired else ""
    return _form(console, request, next_page=next_page, notice=notice)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    name: Annotated[str, Form(max_length=255)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next_page: Annotated[str, Form(alias="next")] = "/",
) -> Response:
    console = console_of(request)
    settings, address = console.settings, console.address(request)
    by_name, by_address = console.audit.failed_sign_ins(
        name.strip().lower(), address, utcnow() - settings.sign_in_window
    )
    allowed = settings.sign_in_attempts
    if by_name >= allowed or by_address >= 4 * allowed:
        too_many = TOO_MANY.format(minutes=f"{settings.sign_in_window_minutes:g}")
        return _form(console, request, next_page=next_page, error=too_many, status=429, name=name)
    user = console.users.verify(name, password)
    if user is None:
        console.audit.record(name or "?", Audit.SIGN_IN_FAILED, name.strip().lower(), "", address)
        log.info("console sign-in refused", user=name, address=address)
        return _form(console, request, next_page=next_page, error=WRONG, status=401, name=name)
    return _start(console, request, user.name, Role(user.role), "password", next_page)


@router.post("/logout")
def logout(request: Request, user: Annotated[SignedIn, Depends(signed_in)]) -> Response:
    console = console_of(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    console.sessions.end(token)
    console.audit.record(user.name, "sign_out", address=console.address(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/login/oidc")
def oidc_start(request: Request, next_page: Annotated[str, Query(alias="next")] = "/") -> Response:
    console = console_of(request)
    if console.oidc is None:
        error = "Single sign-on is not set up."
        return _form(console, request, next_page=next_page, error=error, status=404)
    try:
        url, pending = console.oidc.begin(_redirect_uri(console, request))
    except SignInFailed as exc:
        error = f"Single sign-on failed: {exc}"
        return _form(console, request, next_page=next_page, error=error, status=502)
    token, _ = console.sessions.start(pending={**pending, "next": safe_next(next_page)})
    response = RedirectResponse(url, status_code=303)
    _set_cookie(response, request, token, console)
    return response


@router.get(CALLBACK)
def oidc_callback(
    request: Request, code: str = "", state: str = "", error: str = "", error_description: str = ""
) -> Response:
    console = console_of(request)
    session = current_session(request)
    pending = session.pending if session is not None else None
    if console.oidc is None or session is None or not pending:
        return _form(console, request, error="This sign-in has expired; start again.", status=400)
    console.sessions.set_pending(request.cookies.get(SESSION_COOKIE, ""), None)  # used once
    address = console.address(request)
    try:
        if error:
            raise SignInFailed(f"the provider said {error}: {error_description}".rstrip(": "))
        claims = console.oidc.finish(
            code=code, state=state, redirect_uri=_redirect_uri(console, request), pending=pending
        )
        name, role = _person(console, claims)
    except SignInFailed as exc:
        console.audit.record("?", Audit.SIGN_IN_FAILED, "", f"single sign-on: {exc}", address)
        log.info("console single sign-on refused", reason=str(exc), address=address)
        return _form(console, request, error=f"Single sign-on failed: {exc}", status=401)
    console.sessions.end(request.cookies.get(SESSION_COOKIE, ""))
    return _start(console, request, name, role, "oidc", pending.get("next", "/"))


def _person(console: Console, claims: dict[str, Any]) -> tuple[str, Role]:
    """Who the provider signed in, and their role: from the roles claim, else a local user of
    the same name, else the default role."""
    settings = console.settings
    name = next(
        (
            str(claims[key])
            for key in (settings.oidc_username_claim, "email", "sub")
            if isinstance(claims.get(key), str) and claims[key]
        ),
        "",
    ).lower()
    listed = claims.get(settings.oidc_roles_claim) or []
    listed = [listed] if isinstance(listed, str) else listed
    granted = {str(v).lower().rsplit(".", 1)[-1] for v in listed if isinstance(v, str)}
    for role in reversed(list(Role)):
        if role.value in granted:
            return name, role
    local = console.users.get(name)
    if local is not None:
        return local.name, Role(local.role)
    if settings.oidc_default_role is not None:
        return name, settings.oidc_default_role
    raise SignInFailed(f"{name} has no psatriage role; ask an admin to give you one")


def _start(
    console: Console, request: Request, name: str, role: Role, method: str, next_page: str
) -> Response:
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        console.sessions.end(old)
    token, _ = console.sessions.start(user_name=name, role=role, method=method)
    console.audit.record(name, "sign_in", detail=method, address=console.address(request))
    response = RedirectResponse(safe_next(next_page), status_code=303)
    _set_cookie(response, request, token, console)
    return response


def _form(
    console: Console,
    request: Request,
    *,
    next_page: str = "/",
    error: str = "",
    notice: str = "",
    status: int = 200,
    name: str = "",
) -> Response:
    """The sign-in form, with a pre-sign-in session (and so a CSRF token) for this browser."""
    session = current_session(request)
    token = None
    if session is None:
        token, session = console.sessions.start()
    response = console.render(
        request,
        "login.html",
        {
            "next": safe_next(next_page),
            "error": error,
            "notice": notice,
            "name": name,
            "csrf_token": session.csrf_token,
            "no_users": console.oidc is None and console.users.count() == 0,
        },
        status=status,
    )
    if token is not None:
        _set_cookie(response, request, token, console)
    return response


def _set_cookie(response: Response, request: Request, token: str, console: Console) -> None:
    secure = request.url.scheme == "https" or console.settings.public_url.startswith("https:")
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(console.settings.lifetimes.absolute.total_seconds()),
        path="/",
        httponly=True,
        secure=secure,
        samesite="lax",  # sent when the provider sends the browser back, never on cross-site POSTs
    )


def _redirect_uri(console: Console, request: Request) -> str:
    base = console.settings.public_url or str(request.base_url).rstrip("/")
    return base + CALLBACK
