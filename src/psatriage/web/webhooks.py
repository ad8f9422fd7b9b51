"""``POST /webhooks/{tenant}``: verify, parse, write the ledger row, enqueue, acknowledge.

No PSA or model is called on this path (the one exception: ConnectWise's signing key, fetched once
per key URL and cached by the adapter). The ledger row is written before the 2xx, so an accepted
event is never lost even if the queue is down (the reaper queues it later).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from psatriage import metrics
from psatriage.domain import TicketEvent
from psatriage.errors import PsatriageError, TransientError, WebhookRejected
from psatriage.psa.base import PATH_TOKEN_HEADER
from psatriage.runtime import Runtime
from psatriage.store.tables import EventState
from psatriage.web.responses import Detail

log = structlog.get_logger(__name__)

router = APIRouter()


class Answer(BaseModel):
    """A 200 or 202: what became of the delivery (``event_id`` once it is in the ledger)."""

    status: Literal["accepted", "ignored", "duplicate"]
    event_id: int | None = None
    reason: str | None = None


# What the schema says, so clients and schemathesis know every answer (the handler builds them).
_DECLARED: dict[str, Any] = {
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "description": "The PSA's delivery as sent; signatures cover these exact bytes.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
    "responses": {
        200: {"model": Answer, "description": "Already recorded (a PSA retry); nothing new done."},
        202: {
            "model": Answer,
            "description": "Recorded and queued, or ignored (not a new ticket).",
        },
        400: {
            "model": Detail,
            "description": "Authentic but unusable, or outside the replay window.",
        },
        401: {"model": Detail, "description": "Not proven to come from this tenant's PSA."},
        404: {"model": Detail, "description": "No such tenant, or it does not take webhooks."},
        413: {"model": Detail, "description": "Body larger than PSATRIAGE_MAX_BODY_BYTES."},
        503: {
            "model": Detail,
            "description": "Not taken now (signing key or database unreachable); send again.",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
    },
}


class BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/webhooks/{tenant}", status_code=202, **_DECLARED)
async def receive_webhook(tenant: str, request: Request) -> JSONResponse:
    """Accept a PSA's "ticket created" call for ``tenant``."""
    return await _receive(tenant, request, path_token=None)


@router.post("/webhooks/{tenant}/{path_token}", status_code=202, **_DECLARED)
async def receive_webhook_with_path_token(
    tenant: str, path_token: str, request: Request
) -> JSONResponse:
    """The same, for PSAs that authenticate with a secret segment in the URL."""
    return await _receive(tenant, request, path_token=path_token)


async def _receive(tenant: str, request: Request, *, path_token: str | None) -> JSONResponse:
    started = time.perf_counter()
    runtime: Runtime = request.app.state.runtime
    known = runtime.config.tenants.get(tenant)
    if known is None or not known.takes_webhooks:  # the same answer: reveal nothing
        return _answer(404, "not found", tenant="unknown", result="unknown_tenant")
    limit = runtime.settings.max_body_bytes
    try:
        body = await _read_body(request, limit)
    except BodyTooLarge:
        return _answer(413, f"body larger than {limit} bytes", tenant=tenant, result="too_large")
    headers = {
        key.lower(): value
        for key, value in request.headers.items()
        if key.lower() != PATH_TOKEN_HEADER  # only the path may set it
    }
    if path_token is not None:
        headers[PATH_TOKEN_HEADER] = path_token
    try:
        status, payload = await run_in_threadpool(_accept, runtime, tenant, headers, body)
    except WebhookRejected as exc:
        log.info("webhook rejected", tenant=tenant, status=exc.status, reason=str(exc))
        return _answer(exc.status, str(exc), tenant=tenant, result=f"rejected_{exc.status}")
    except TransientError as exc:
        log.warning("webhook could not be verified now", tenant=tenant, error=str(exc))
        response = _answer(503, str(exc), tenant=tenant, result="unavailable")
        response.headers["Retry-After"] = str(int(exc.retry_after or 5))
        return response
    except PsatriageError as exc:
        log.error("webhook refused", tenant=tenant, error=str(exc))
        return _answer(400, str(exc), tenant=tenant, result="error")
    except SQLAlchemyError as exc:  # the ledger cannot record it now: the PSA must send it again
        log.error("webhook not recorded: database unavailable", tenant=tenant, error=str(exc))
        response = _answer(503, "database unavailable; send again", tenant=tenant, result="no_db")
        response.headers["Retry-After"] = "5"
        return response
    finally:
        metrics.WEBHOOK_SECONDS.observe(time.perf_counter() - started)
    metrics.WEBHOOKS.labels(tenant, payload["status"]).inc()
    return JSONResponse(payload, status_code=status)


def _accept(
    runtime: Runtime, tenant: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, Any]]:
    adapter = runtime.adapter(tenant)
    adapter.verify(headers, body)
    event = adapter.parse(body)
    if event is None:
        return 202, {"status": "ignored", "reason": "not a ticket event"}
    if event.actionable:
        refuse_replay(event, runtime.tenant(tenant).replay_window_seconds)
    acted_on = event.actionable or _moved(runtime, tenant, event)
    state = EventState.RECEIVED if acted_on else EventState.IGNORED
    event_id, created = runtime.ledger.record(event, state=state)
    if not created:
        return 200, {"status": "duplicate", "event_id": event_id}
    if not event.actionable:  # an update: the outcome sweep reads the ticket next time
        runtime.outcomes.make_due(tenant, event.ticket_id)
    if not acted_on:
        return 202, {"status": "ignored", "event_id": event_id, "reason": event.action}
    try:
        runtime.queue.enqueue(event_id)
    except Exception:
        log.exception("enqueue failed; the reaper will pick the event up", event_id=event_id)
    return 202, {"status": "accepted", "event_id": event_id}


def _moved(runtime: Runtime, tenant: str, event: TicketEvent) -> bool:
    """Whether an update moved a ticket we categorized to another category tree (a ConnectWise
    board) that it was not re-checked on yet: the category is then decided again there."""
    if event.scope is None or not runtime.adapter(tenant).routing_sets_scope:
        return False
    holder = runtime.decisions.ticket_holder(tenant, event.ticket_id)
    if holder is None or not holder.wrote_category or holder.scope in (None, event.scope):
        return False
    return runtime.decisions.rechecked(tenant, event.ticket_id, event.scope) is None


def refuse_replay(event: TicketEvent, window_seconds: int, now: datetime | None = None) -> None:
    """Refuse a signed "created" event whose PSA time is older than the tenant's replay window.

    Only the past is bounded: HaloPSA's times may lack an offset and be read as UTC [UNSURE], so
    a time ahead of ours is taken as a clock difference, not an attack. Events without a time
    rely on the ledger's dedupe key alone.
    """
    if not window_seconds or event.occurred_at is None:
        return
    occurred = event.occurred_at
    if occurred.tzinfo is None:
        occurred = occurred.replace(tzinfo=UTC)
    age = ((now or datetime.now(UTC)) - occurred).total_seconds()
    if age > window_seconds:
        raise WebhookRejected(
            f"event time {occurred.isoformat()} is {age:.0f} s old, outside the replay window of "
            f"{window_seconds} s (tenant key 'replay_window_seconds'); nothing was recorded",
            status=400,
        )


def _answer(status: int, detail: str, *, tenant: str, result: str) -> JSONResponse:
    metrics.WEBHOOKS.labels(tenant, result).inc()
    return JSONResponse({"detail": detail}, status_code=status)
