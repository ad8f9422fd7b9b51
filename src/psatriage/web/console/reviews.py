"""The review queue: suggestions between a tenant's bands, waiting for a person's yes or no.

Accept, correct (another category of the ticket's *valid* ones, searched by path or key) or
dismiss; each action is ``psatriage.reviews.act``, as for the API and the CLI, so a review writes
to the PSA at most once and a ticket a person already categorized closes as ``filled`` instead of
being overwritten. Viewers see the queue; reviewers and admins act on it. ``static/reviews.js``
adds keyboard shortcuts (j/k, a, d, c) for working through a queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from psatriage import policy, reviews
from psatriage.errors import PsatriageError
from psatriage.store.tables import ReviewRow, ReviewState
from psatriage.store.users import Role
from psatriage.web.console.core import (
    Console,
    NavItem,
    PageNotFound,
    SignedIn,
    console_of,
    csrf_guard,
    require,
    signed_in,
)
from psatriage.web.console.queries import MAX_ID

log = structlog.get_logger(__name__)
router = APIRouter(dependencies=[Depends(csrf_guard)], include_in_schema=False)
NAV = NavItem("Review", "/reviews")
SHOWN = 100
_ACTOR = require(Role.REVIEWER, "act on reviews")


@dataclass(frozen=True)
class Choice:
    key: str
    label: str


@router.get("/reviews", response_class=HTMLResponse)
def queue(
    request: Request,
    user: Annotated[SignedIn, Depends(signed_in)],
    tenant: str = "",
    closed: int | None = None,
) -> HTMLResponse:
    return _queue(request, user, tenant, closed=closed)


@router.get("/reviews/{review_id}", response_class=HTMLResponse)
def review(
    request: Request, review_id: str, user: Annotated[SignedIn, Depends(signed_in)]
) -> HTMLResponse:
    console = console_of(request)
    return _detail(request, user, _review(console, review_id))


@router.post("/reviews/{review_id}/accept")
def accept(
    request: Request,
    review_id: str,
    user: Annotated[SignedIn, Depends(_ACTOR)],
    tenant: Annotated[str, Form()] = "",
) -> Response:
    return _act(
        request, user, _review(console_of(request), review_id), reviews.Action.ACCEPT, tenant
    )


@router.post("/reviews/{review_id}/dismiss")
def dismiss(
    request: Request,
    review_id: str,
    user: Annotated[SignedIn, Depends(_ACTOR)],
    tenant: Annotated[str, Form()] = "",
) -> Response:
    return _act(
        request, user, _review(console_of(request), review_id), reviews.Action.DISMISS, tenant
    )


@router.post("/reviews/{review_id}/correct")
def correct(
    request: Request,
    review_id: str,
    user: Annotated[SignedIn, Depends(_ACTOR)],
    category: Annotated[str, Form(max_length=2000)] = "",
    tenant: Annotated[str, Form()] = "",
) -> Response:
    console = console_of(request)
    row = _review(console, review_id)
    wanted = category.strip()
    if not wanted:
        problem = "Choose the category to write instead."
        return _detail(request, user, row, problem=problem, status=400)
    # a key or a path as listed: the review service reads the ticket once and checks it there
    return _act(request, user, row, reviews.Action.CORRECT, tenant, category_key=wanted)


def _act(
    request: Request,
    user: SignedIn,
    row: ReviewRow,
    action: reviews.Action,
    tenant: str,
    *,
    category_key: str | None = None,
) -> Response:
    console = console_of(request)
    try:
        closed = reviews.act(
            console.runtime.review_desk(), row.id, action, by=user.name, category_key=category_key
        )
    except reviews.UnknownReview as exc:
        raise PageNotFound(str(exc)) from None
    except reviews.ReviewClosed as exc:
        return _queue(request, user, tenant, problem=str(exc), status=409)
    except reviews.UnknownCategory:
        problem = (
            f"{category_key!r} is not one of the categories this ticket may have; pick one from "
            "the list."
        )
        return _detail(request, user, row, problem=problem, given=category_key or "", status=400)
    except PsatriageError as exc:  # the PSA refused or is unreachable: the review stays pending
        problem = f"The PSA did not take the change ({exc}); the review is still pending."
        return _queue(request, user, tenant, problem=problem, status=502)
    log.info("review closed from the console", review=closed.id, state=closed.state, by=user.name)
    query = {"closed": closed.id, **({"tenant": tenant} if tenant else {})}
    return RedirectResponse("/reviews?" + urlencode(query), status_code=303)


def _queue(
    request: Request,
    user: SignedIn,
    tenant: str,
    *,
    closed: int | None = None,
    problem: str = "",
    status: int = 200,
) -> HTMLResponse:
    console = console_of(request)
    tenants = sorted(console.runtime.config.tenants)
    if tenant and tenant not in tenants:
        raise PageNotFound(f"There is no tenant named {tenant!r}.")
    rows = console.runtime.reviews.search(tenant=tenant or None, limit=SHOWN)
    just_closed = (
        console.runtime.reviews.get(closed) if closed is not None and 0 < closed <= MAX_ID else None
    )
    return console.render(
        request,
        "reviews.html",
        {
            "reviews": rows,
            "tenant": tenant,
            "tenants": tenants,
            "closed": just_closed,
            "problem": problem,
            "shown": SHOWN,
            "may_act": user.may(Role.REVIEWER),
        },
        user=user,
        status=status,
    )


def _detail(
    request: Request,
    user: SignedIn,
    row: ReviewRow,
    *,
    problem: str = "",
    given: str = "",
    status: int = 200,
) -> HTMLResponse:
    console = console_of(request)
    choices, unavailable = (
        _choices(console, row) if row.state == ReviewState.PENDING.value else ([], "")
    )
    return console.render(
        request,
        "review.html",
        {
            "r": row,
            "choices": choices,
            "unavailable": unavailable,
            "problem": problem,
            "given": given,
            "may_act": user.may(Role.REVIEWER),
        },
        user=user,
        status=status,
    )


def _review(console: Console, review_id: str) -> ReviewRow:
    number = int(review_id) if review_id.isascii() and review_id.isdigit() else 0
    row = console.runtime.reviews.get(number) if 0 < number <= MAX_ID else None
    if row is None:
        raise PageNotFound(f"There is no review {review_id}.")
    return row


def _choices(console: Console, row: ReviewRow) -> tuple[list[Choice], str]:
    """The categories the review's ticket may have (live, active, not excluded), or why they
    cannot be read now."""
    runtime = console.runtime
    tenant = runtime.config.tenants.get(row.tenant)
    if tenant is None:
        return [], f"Tenant {row.tenant!r} is no longer configured."
    try:
        adapter = runtime.adapter(row.tenant)
        ticket = adapter.get_ticket(row.ticket_id)
        taxonomy = runtime.taxonomies.get(
            tenant.name, adapter, ticket, ttl_seconds=tenant.taxonomy.cache_seconds
        )
    except PsatriageError as exc:
        return [], f"The ticket's categories cannot be read from the PSA now: {exc}"
    rules = tenant.effective(ticket.company_id, ticket.company_name).policy
    leaves = policy.candidates(rules, taxonomy)
    return sorted((Choice(c.key, c.label) for c in leaves), key=lambda c: c.label.lower()), ""
