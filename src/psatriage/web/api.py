"""Read-only JSON API over the ledger and the decisions, plus health, readiness and metrics."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from psatriage.runtime import Runtime
from psatriage.store import db
from psatriage.store.tables import DecisionRow, EventRow, ModelCallRow

router = APIRouter()


class Detail(BaseModel):
    """The body of every refusal: what was wrong, in words."""

    detail: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]
    tenants: dict[str, list[str]]
    models: dict[str, dict[str, str]]


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
def healthz() -> dict[str, str]:
    return {"status": "ok"}


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
    body = {
        "ready": ready,
        "checks": checks,
        "tenants": runtime.problems(),
        "models": _models(runtime),
    }
    return JSONResponse(body, status_code=200 if ready else 503)


def _models(runtime: Runtime) -> dict[str, dict[str, str]]:
    """Per tenant with an LLM, what its server was found to support (no call is made here)."""
    found = {}
    for name in sorted(runtime.config.tenants):
        capabilities = runtime.classifier(name).capabilities()
        if capabilities is not None:
            found[name] = capabilities
    return found


@router.get("/metrics", response_class=PlainTextResponse)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/events", dependencies=[Depends(require_token)], responses=_UNAUTHORIZED)
def list_events(
    runtime: RuntimeDep,
    tenant: Filter = None,
    state: Filter = None,
    ticket_id: Filter = None,
    before_id: BeforeId = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    rows = runtime.ledger.search(
        tenant=tenant, state=state, ticket_id=ticket_id, limit=limit, before_id=before_id
    )
    return {"events": [_event(row) for row in rows]}


@router.get(
    "/api/events/{event_id}",
    dependencies=[Depends(require_token)],
    responses={**_UNAUTHORIZED, 404: {"model": Detail, "description": "No event has this id."}},
)
def get_event(
    runtime: RuntimeDep, event_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> dict[str, Any]:
    row = runtime.ledger.get(event_id)
    if row is None:
        raise HTTPException(status_code=404, detail="no such event")
    decision = runtime.decisions.decision_for_event(event_id)
    return {
        **_event(row),
        "decision": _decision(decision) if decision else None,
        "model_calls": [_call(call) for call in runtime.decisions.calls_for_event(event_id)],
    }


@router.get("/api/decisions", dependencies=[Depends(require_token)], responses=_UNAUTHORIZED)
def list_decisions(
    runtime: RuntimeDep,
    tenant: Filter = None,
    ticket_id: Filter = None,
    outcome: Filter = None,
    before_id: BeforeId = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    rows = runtime.decisions.search_decisions(
        tenant=tenant, ticket_id=ticket_id, outcome=outcome, limit=limit, before_id=before_id
    )
    return {"decisions": [_decision(row) for row in rows]}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def _event(row: EventRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "tenant": row.tenant,
        "ticket_id": row.ticket_id,
        "action": row.action,
        "source": row.source,
        "state": row.state,
        "attempts": row.attempts,
        "reason": row.reason,
        "received_at": _iso(row.received_at),
        "updated_at": _iso(row.updated_at),
        "finished_at": _iso(row.finished_at),
        "next_attempt_at": _iso(row.next_attempt_at),
    }


def _decision(row: DecisionRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_id": row.event_id,
        "tenant": row.tenant,
        "ticket_id": row.ticket_id,
        "company_id": row.company_id,
        "final": row.final,
        "outcome": row.outcome,
        "reason": row.reason,
        "category_key": row.category_key,
        "category": row.category_label,
        "previous": row.previous,
        "confidence": row.confidence,
        "confidence_source": row.confidence_source,
        "reasoning": row.reasoning,
        "engine": row.engine,
        "model": row.model,
        "tokens_in": row.tokens_in,
        "tokens_out": row.tokens_out,
        "cost_usd": row.cost_usd,
        "latency_ms": row.latency_ms,
        "wrote_category": row.wrote_category,
        "wrote_note": row.wrote_note,
        "created_at": _iso(row.created_at),
    }


def _call(row: ModelCallRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "engine": row.engine,
        "model": row.model,
        "template_hash": row.template_hash,
        "taxonomy_hash": row.taxonomy_hash,
        "tokens_in": row.tokens_in,
        "tokens_out": row.tokens_out,
        "latency_ms": row.latency_ms,
        "cost_usd": row.cost_usd,
        "chosen_key": row.chosen_key,
        "confidence": row.confidence,
        "error": row.error,
        "created_at": _iso(row.created_at),
    }
