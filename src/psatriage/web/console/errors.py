"""The console's refusals as pages: sign-in needed (back to sign-in, remembering the page),
not allowed (403), forged or stale form (403), not found (404)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from psatriage.web.console.core import (
    SAFE_METHODS,
    CsrfRejected,
    Forbidden,
    PageNotFound,
    SignInRequired,
    console_of,
    optional_user,
    sign_in_url,
)


def install(app: FastAPI) -> None:
    app.add_exception_handler(SignInRequired, _sign_in)  # type: ignore[arg-type]
    app.add_exception_handler(Forbidden, _forbidden)  # type: ignore[arg-type]
    app.add_exception_handler(CsrfRejected, _csrf)  # type: ignore[arg-type]
    app.add_exception_handler(PageNotFound, _not_found)  # type: ignore[arg-type]


def _sign_in(request: Request, exc: SignInRequired) -> Response:
    if request.method in SAFE_METHODS:
        return RedirectResponse(sign_in_url(request, expired=exc.expired), status_code=303)
    return _page(request, 403, "Signed out", "Your session has ended; sign in again and retry.")


def _forbidden(request: Request, exc: Forbidden) -> Response:
    return _page(request, 403, "Not allowed", str(exc))


def _csrf(request: Request, exc: CsrfRejected) -> Response:
    text = (
        f"This request was refused: {exc}. Forms of this console only work from its own pages, "
        "for the session that showed them; reload the page and try again."
    )
    return _page(request, 403, "Refused", text)


def _not_found(request: Request, exc: PageNotFound) -> Response:
    return _page(request, 404, "Not found", str(exc))


def _page(request: Request, status: int, title: str, text: str) -> Response:
    return console_of(request).render(
        request,
        "error.html",
        {"title": title, "text": text, "status": status},
        user=optional_user(request),
        status=status,
    )
