"""What every console page shares: the ``Console`` (stores, settings, templates), who is signed
in, role checks, CSRF protection and rendering with the console's security headers.

Every state-changing request (any method but GET and HEAD) to a console router passes
``csrf_guard``: the session's CSRF token must come back in the form field ``csrf_token`` or the
``X-CSRF-Token`` header, and a browser's ``Origin``, when sent, must be this console's.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from psatriage.runtime import Runtime
from psatriage.store.tables import ConsoleSessionRow
from psatriage.store.users import Audit, Role, Sessions, Users
from psatriage.web.console import formatting
from psatriage.web.console.health import HealthProbe
from psatriage.web.console.oidc import OidcClient
from psatriage.web.console.queries import ConsoleQueries
from psatriage.web.console.settings import ConsoleSettings

SESSION_COOKIE = "psatriage_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class NavItem:
    """A page in the console's menu, shown to people whose role allows ``role``."""

    label: str
    path: str
    role: Role = Role.VIEWER


@dataclass(frozen=True)
class SignedIn:
    name: str
    role: Role
    csrf_token: str
    method: str

    def may(self, role: Role) -> bool:
        return self.role.allows(role)


class SignInRequired(Exception):
    """No live session: ``expired`` when the browser had one that ended."""

    def __init__(self, *, expired: bool) -> None:
        super().__init__("sign-in required")
        self.expired = expired


class Forbidden(Exception):
    """Signed in, but the role does not allow this; the message says who may."""


class CsrfRejected(Exception):
    """A state-changing request without this session's CSRF token, or from another origin."""


class PageNotFound(Exception):
    """A console page for something that does not exist; the message says what."""


class Console:
    """The console of one app: its stores, settings, templates and menu. The stores are made on
    first use, so an app can be built without a database (to read its OpenAPI schema)."""

    def __init__(self, runtime: Runtime, settings: ConsoleSettings, nav: list[NavItem]) -> None:
        self.runtime = runtime
        self.settings = settings
        self.nav = nav
        self.templates = Jinja2Templates(directory=TEMPLATES)
        formatting.install(self.templates.env)

    @cached_property
    def users(self) -> Users:
        return Users(self.runtime.sessions)

    @cached_property
    def sessions(self) -> Sessions:
        return Sessions(self.runtime.sessions, self.settings.lifetimes)

    @cached_property
    def audit(self) -> Audit:
        return Audit(self.runtime.sessions)

    @cached_property
    def queries(self) -> ConsoleQueries:
        return ConsoleQueries(self.runtime.sessions)

    @cached_property
    def health(self) -> HealthProbe:
        return HealthProbe(self.runtime, self.settings.health_seconds)

    def stop(self, timeout: float = 10.0) -> None:
        """On shutdown: wait for the connection checks still running in the background."""
        if "health" in self.__dict__:  # made on first use (a cached property)
            self.health.wait(timeout)

    @cached_property
    def oidc(self) -> OidcClient | None:
        return OidcClient(self.settings, self.runtime.http) if self.settings.oidc_enabled else None

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any] | None = None,
        *,
        user: SignedIn | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        values = {
            "user": user,
            "nav": [item for item in self.nav if user is not None and user.may(item.role)],
            "path": request.url.path,
            "csrf_token": user.csrf_token if user else "",
            "oidc_name": self.settings.oidc_display_name if self.oidc else None,
            **(context or {}),
        }
        response = self.templates.TemplateResponse(request, template, values, status_code=status)
        response.headers.update(SECURITY_HEADERS)
        return response

    def address(self, request: Request) -> str:
        return request.client.host if request.client else ""


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def current_session(request: Request) -> ConsoleSessionRow | None:
    """The live session of this request's cookie (looked up once per request)."""
    if not hasattr(request.state, "console_session"):
        token = request.cookies.get(SESSION_COOKIE)
        found = console_of(request).sessions.find(token) if token else None
        request.state.console_session = found
    session: ConsoleSessionRow | None = request.state.console_session
    return session


def signed_in(request: Request) -> SignedIn:
    """Dependency: the person signed in, or ``SignInRequired``."""
    session = current_session(request)
    if session is None or session.user_name is None or session.role is None:
        # a cookie whose session is gone: it expired (or was ended by a password change)
        raise SignInRequired(expired=session is None and SESSION_COOKIE in request.cookies)
    return SignedIn(session.user_name, Role(session.role), session.csrf_token, session.method)


def optional_user(request: Request) -> SignedIn | None:
    try:
        return signed_in(request)
    except SignInRequired:
        return None


def require(role: Role, action: str) -> Any:
    """Dependency factory: the person signed in, if their role allows ``role``."""

    def dependency(request: Request) -> SignedIn:
        user = signed_in(request)
        if not user.may(role):
            raise Forbidden(f"Only {role.value}s and above may {action}; you are a {user.role}.")
        return user

    return dependency


async def csrf_guard(request: Request) -> None:
    """Router dependency: refuse a state-changing request that does not prove it came from one
    of this console's own pages."""
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("origin")
    if origin is not None and origin not in _own_origins(request):
        raise CsrfRejected("the request came from another site")
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    session = current_session(request)
    if session is None or not given or not hmac.compare_digest(given, session.csrf_token):
        raise CsrfRejected("the form's token is missing or out of date")


def _own_origins(request: Request) -> set[str]:
    found = {f"{request.url.scheme}://{request.url.netloc}"}
    public = console_of(request).settings.public_url
    if public:
        parts = urlsplit(public)
        found.add(f"{parts.scheme}://{parts.netloc}")
    return found


def safe_next(target: str | None) -> str:
    """Where to go after signing in: only a path on this site (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def sign_in_url(request: Request, *, expired: bool) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = f"/login?next={quote(here, safe='')}"
    return url + ("&expired=1" if expired else "")
