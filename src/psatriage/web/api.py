"""Read-only JSON API over the ledger and the decisions, plus health, readiness and metrics."""

from __future__ import annotations

import contextlib
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from psatriage import accuracy
from psatriage.domain import Outcome
from psatriage.observe import state_registry
from psatriage.runtime import Runtime
from psatriage.store import db
from psatriage.store.tables import EventState
from psatriage.web.responses import (
    BudgetMeter,
    Decision,
    DecisionList,
    Detail,
    Event,
    EventDetail,
    EventList,
    Health,
    ModelCall,
    Readiness,
)

router = APIRouter()


_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {
        "model": Detail,
        "description": "PSATRIAGE_API_TOKEN is set and the bearer is missing or wrong.",
    }
}


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def require_token(request: Request, runtime: RuntimeDep) -> None:
    """When ``PSATRIAGE_API_TOKEN`` is set, the API needs ``Authorization: Bearer <token>``."""
    token = runtime.settings.api_token
    if token is None:
        return
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise HTTPException(status_code=401, detail="missing or wrong bearer token")


Limit = Annotated[int, Query(ge=1, le=1000)]
# Ledger ids are INTEGER columns: a larger number is no id (and would overflow SQLite's driver).
MAX_ID = 2**31 - 1
BeforeId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
# PostgreSQL text cannot hold NUL; such a filter would fail in the driver, so it is a 422 here.
Filter = Annotated[str | None, Query(pattern=r"^[^\x00]*$")]


@router.get("/healthz")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    responses={
        200: {"model": Readiness, "description": "The database and the queue answer."},
        503: {"model": Readiness, "description": "Not ready; ``checks`` says what is not."},
    },
)
def readyz(runtime: RuntimeDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        checks["database"] = "ok" if db.at_head(runtime.engine) else "not at the newest migration"
    except Exception as exc:  # noqa: BLE001 - any database error makes the service not ready
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["queue"] = "ok" if runtime.queue.reachable() else "unreachable"
    ready = all(value == "ok" for value in checks.values())
    problems = runtime.problems()
    meters: dict[str, BudgetMeter] = {}
    with contextlib.suppress(SQLAlchemyError):  # the database check above already says so
        for name, meter in runtime.budgets().items():
            meters[name] = BudgetMeter.model_validate(meter)
            if meter.reached:
                problems.setdefault(name, []).append(meter.reached)
    body = Readiness(
        ready=ready,
        checks=checks,
        tenants=dict(sorted(problems.items())),
        degraded=runtime.degraded(),
        models=_models(runtime),
        budgets=meters,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


def _models(runtime: Runtime) -> dict[str, dict[str, str]]:
    """Per tenant with an LLM, what its server was found to support (no call is made here)."""
    found = {}
    for name in sorted(runtime.config.tenants):
        capabilities = runtime.classifier(name).capabilities()
        if capabilities is not None:
            found[name] = capabilities
    return found


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(runtime: RuntimeDep) -> Response:
    """The process's counters and histograms, and the service's state as gauges (read from the
    database now: ``psatriage.observe``)."""
    # the budget and accuracy gauges, fresh from the database (workers count there); on a
    # database error the other metrics are still worth serving, and /readyz says what is wrong
    with contextlib.suppress(SQLAlchemyError):
        runtime.budgets()
        accuracy.refresh_gauges(runtime.sessions, runtime.config.tenants)
    body = generate_latest()
    with contextlib.suppress(SQLAlchemyError):
        body += generate_latest(state_registry(runtime))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/api/events", dependencies=[Depends(require_token)], responses=_UNAUTHORIZED)
def list_events(
    runtime: RuntimeDep,
    tenant: Filter = None,
    state: EventState | None = None,
    ticket_id: Filter = None,
    before_id: BeforeId = None,
    limit: Limit = 100,
) -> EventList:
    rows = runtime.ledger.search(
        tenant=tenant, state=state, ticket_id=ticket_id, limit=limit, before_id=before_id
    )
    return EventList(events=[Event.model_validate(row) for row in rows])


@router.get(
    "/api/events/{event_id}",
    dependencies=[Depends(require_token)],
    responses={**_UNAUTHORIZED, 404: {"model": Detail, "description": "No event has this id."}},
)
def get_event(runtime: RuntimeDep, event_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> EventDetail:
    row = runtime.ledger.get(event_id)
    if row is None:
        raise HTTPException(status_code=404, detail="no such event")
    decision = runtime.decisions.decision_for_event(event_id)
    return EventDetail(
        **Event.model_validate(row).model_dump(),
        decision=Decision.model_validate(decision) if decision else None,
        model_calls=[
            ModelCall.model_validate(call) for call in runtime.decisions.calls_for_event(event_id)
        ],
    )


@router.get("/api/decisions", dependencies=[Depends(require_token)], responses=_UNAUTHORIZED)
def list_decisions(
    runtime: RuntimeDep,
    tenant: Filter = None,
    ticket_id: Filter = None,
    outcome: Outcome | None = None,
    before_id: BeforeId = None,
    limit: Limit = 100,
) -> DecisionList:
    rows = runtime.decisions.search_decisions(
        tenant=tenant, ticket_id=ticket_id, outcome=outcome, limit=limit, before_id=before_id
    )
    return DecisionList(decisions=[Decision.model_validate(row) for row in rows])
