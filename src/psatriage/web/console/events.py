"""Failed, parked and over-budget events, with their reasons, and a retry for admins."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from psatriage.store.users import Role
from psatriage.web.console.core import (
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
NAV = NavItem("Events", "/events")
SHOWN = 200


@router.get("/events", response_class=HTMLResponse)
def events(
    request: Request,
    user: Annotated[SignedIn, Depends(signed_in)],
    tenant: str = "",
    retried: int | None = None,
) -> HTMLResponse:
    console = console_of(request)
    tenants = sorted(console.runtime.config.tenants)
    if tenant and tenant not in tenants:
        raise PageNotFound(f"There is no tenant named {tenant!r}.")
    rows = console.queries.failed_events(tenant or None, limit=SHOWN)
    return console.render(
        request,
        "events.html",
        {
            "events": rows,
            "tenant": tenant,
            "tenants": tenants,
            "retried": retried,
            "shown": SHOWN,
            "may_retry": user.may(Role.ADMIN),
        },
        user=user,
    )


@router.post("/events/retry")
def retry(
    request: Request,
    user: Annotated[SignedIn, Depends(require(Role.ADMIN, "retry events"))],
    event_id: Annotated[list[int], Form(min_length=1, max_length=SHOWN)],
    tenant: Annotated[str, Form()] = "",
) -> Response:
    """Queue failed, parked or over-budget events again (as ``psatriage events retry`` does)."""
    console = console_of(request)
    runtime = console.runtime
    reopened = runtime.ledger.reopen([number for number in event_id if 0 < number <= MAX_ID])
    if reopened:
        runtime.queue.wake()
    ids = " ".join(str(number) for number in reopened)
    console.audit.record(user.name, "events_retry", ids, address=console.address(request))
    log.info("events retried from the console", user=user.name, events=reopened)
    back = f"/events?retried={len(reopened)}"
    if tenant in runtime.config.tenants:
        back += f"&tenant={tenant}"
    return RedirectResponse(back, status_code=303)
