"""The web console: server-rendered pages (Jinja2, inline SVG charts, no JavaScript) for people.

``install`` adds it to the FastAPI app: the sign-in pages, one router per page (``PAGES``; a new
page is a module with a ``router`` and a ``NAV`` entry, listed there), the console's static files,
the offline Swagger UI at ``/docs`` and the handlers that turn the console's refusals into pages.
Every page needs a signed-in person; see ``core`` for sessions, roles and CSRF protection.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from psatriage.errors import ConfigError
from psatriage.logging import register_secrets
from psatriage.runtime import Runtime
from psatriage.web.console import (
    api_docs,
    categories,
    decisions,
    errors,
    events,
    overview,
    reviews,
    signin,
    tenants,
)
from psatriage.web.console.core import STATIC, Console
from psatriage.web.console.settings import ConsoleSettings

PAGES = (overview, reviews, decisions, categories, events, tenants)

__all__ = ["PAGES", "ConsoleSettings", "install", "load_settings"]


def load_settings() -> ConsoleSettings:
    """The console's settings from the environment; a bad value is a ``ConfigError`` that names
    the variable and never shows its value."""
    try:
        return ConsoleSettings()
    except ValidationError as exc:
        problems = "; ".join(
            (f"PSATRIAGE_{str(e['loc'][0]).upper()}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors(include_input=False)
        )
        raise ConfigError(problems) from None


def install(app: FastAPI, runtime: Runtime, settings: ConsoleSettings | None = None) -> Console:
    settings = settings or load_settings()
    if settings.oidc_client_secret is not None:
        register_secrets([settings.oidc_client_secret.get_secret_value()])
    console = Console(runtime, settings, [page.NAV for page in PAGES])
    app.state.console = console
    app.mount("/static/console", StaticFiles(directory=STATIC), name="console-static")
    api_docs.mount(app)
    app.include_router(signin.router)
    for page in PAGES:
        app.include_router(page.router)
    errors.install(app)
    return console
