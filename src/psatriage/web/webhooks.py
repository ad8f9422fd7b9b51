"""``POST /webhooks/{tenant}``: verify, parse, write the ledger row, wake a worker, acknowledge.

No PSA or model is called on this path (the one exception: ConnectWise's signing key, fetched once
per key URL and cached by the adapter). A delivery whose check needs no network is handled on the
event loop, without a hand-off to a thread; one that needs the network goes to a thread. The
ledger row (the queue of record) is written before the 2xx, so an accepted event is never lost;
a lost wake-up only delays it to the workers' next look. Unsigned or malformed deliveries are
refused before anything is written. When more than ``max_waiting`` events wait for a worker, or
the database cannot take the row, the answer is 503 with Retry-After: the PSA sends it again.
``AcceptPath`` serves these routes ahead of the framework's routing; the router declares them
for the schema.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

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
            "description": "Not taken now (signing key or database unreachable, or too many "
            "events waiting); send again after Retry-After.",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
    },
}


class BodyTooLarge(Exception):
    pass


class Backlog:
    """Whether too many events wait for a worker, from a count at most ``every`` seconds old,
    taken on a thread (the event loop never waits on it)."""

    def __init__(self, runtime: Runtime, *, every: float = 1.0) -> None:
        self._runtime = runtime
        self._every = every
        self._checked = 0.0
        self._full = False
        self._counting = threading.Lock()

    def full(self) -> bool:
        now = time.monotonic()
        if now - self._checked > self._every and self._counting.acquire(blocking=False):
            self._checked = now
            threading.Thread(target=self._count, name="psatriage-backlog", daemon=True).start()
        return self._full

    def refresh(self) -> bool:
        """Count now; whether the backlog is full."""
        waiting = self._runtime.ledger.waiting()
        self._full = waiting >= self._runtime.settings.max_waiting
        if self._full:
            log.warning("backlog full: webhooks refused with 503", waiting=waiting)
        return self._full

    def _count(self) -> None:
        try:
            self.refresh()
        except SQLAlchemyError:
            pass  # the insert itself answers 503 while the database is away
        finally:
            self._counting.release()


RETRY_FULL_SECONDS = 30


class Recorder:
    """Writes accepted events to the ledger from one thread, as many per transaction as arrived
    meanwhile, so the event loop never waits on the database (SQLite's write lock, a slow
    PostgreSQL) and a burst costs one commit per batch. An update notification newly recorded
    also makes the ticket's open outcomes due, on the same thread (the sweep reads the ticket
    next). The thread ends when idle and starts again with the next delivery."""

    BATCH = 256
    IDLE_SECONDS = 5.0

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._waiting: list[
            tuple[TicketEvent, EventState, asyncio.AbstractEventLoop, asyncio.Future[Any]]
        ] = []
        self._changed = threading.Condition()
        self._running = False

    async def record(self, event: TicketEvent, state: EventState) -> tuple[int, bool]:
        """``Ledger.record`` without blocking the loop: ``(event id, created)``; for a new
        update notification (not actionable) ``Outcomes.make_due`` too."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, bool]] = loop.create_future()
        with self._changed:
            self._waiting.append((event, state, loop, future))
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="psatriage-recorder", daemon=True).start()
            self._changed.notify()
        return await future

    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._waiting:
                    self._changed.wait(self.IDLE_SECONDS)
                if not self._waiting:
                    self._running = False
                    return
                batch = self._waiting[: self.BATCH]
                del self._waiting[: self.BATCH]
            results = self._write([(event, state) for event, state, _, _ in batch])
            for (_, _, loop, future), result in zip(batch, results, strict=True):
                loop.call_soon_threadsafe(_settle, future, result)

    def _write(self, events: list[tuple[TicketEvent, EventState]]) -> list[Any]:
        """Each event's ``(id, created)``, or the error that kept it from being recorded."""
        try:
            results: list[Any] = self._runtime.ledger.record_many(events)
        except Exception as exc:  # noqa: BLE001 - each waiting delivery gets the error
            return [exc] * len(events)
        for index, ((event, _), result) in enumerate(zip(events, results, strict=True)):
            if event.actionable or not result[1]:
                continue
            try:
                self._runtime.outcomes.make_due(event.tenant, event.ticket_id)
            except Exception as exc:  # noqa: BLE001 - answered 503: the PSA sends it again
                results[index] = exc
        return results


def _settle(future: asyncio.Future[Any], result: object) -> None:
    if future.done():  # the client went away
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


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


_ROUTE = re.compile(r"/webhooks/([^/]+)(?:/([^/]+))?")


class AcceptPath:
    """The webhook routes served before FastAPI's routing, dependency solving and exception
    middleware: those cost more CPU than the rest of an accepted delivery (verifying, parsing,
    handing the row to the recorder), and a PSA's burst is all webhooks. What comes before this
    middleware still applies (the body limit, the 500 for an unexpected error); any other
    request, or another method on these paths, goes on to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            if match := _ROUTE.fullmatch(path):
                tenant, path_token = match[1], match[2]
                response = await _receive(tenant, Request(scope, receive), path_token=path_token)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# Declared for the schema and for a client of the bare router; ``AcceptPath`` answers them.
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
    backlog: Backlog = request.app.state.backlog
    try:
        if backlog.full():
            raise TransientError(
                "too many events wait for a worker; send again later",
                retry_after=RETRY_FULL_SECONDS,
            )
        status, payload = await _take(request, runtime, tenant, headers, body)
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


async def _take(
    request: Request, runtime: Runtime, tenant: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, Any]]:
    """Verify, parse and record a delivery: its answer's status and body."""
    if runtime.adapter(tenant).verify_needs_io(headers, body):
        event = await run_in_threadpool(_verified, runtime, tenant, headers, body)
    else:  # checked in memory: no hand-off to a thread (see the module docstring)
        event = _verified(runtime, tenant, headers, body)
    if event is None:
        return 202, {"status": "ignored", "reason": "not a ticket event"}
    acted_on = event.actionable or await run_in_threadpool(_moved, runtime, tenant, event)
    state = EventState.RECEIVED if acted_on else EventState.IGNORED
    recorder: Recorder = request.app.state.recorder
    event_id, created = await recorder.record(event, state)  # an update: its outcomes due too
    return _answer_for(runtime, event, event_id, created, acted_on=acted_on)


def _verified(
    runtime: Runtime, tenant: str, headers: dict[str, str], body: bytes
) -> TicketEvent | None:
    """The delivery's event once verified, parsed and inside the replay window (None: not about
    a ticket); ``WebhookRejected`` otherwise."""
    adapter = runtime.adapter(tenant)
    adapter.verify(headers, body)
    event = adapter.parse(body)
    if event is not None and event.actionable:
        refuse_replay(event, runtime.tenant(tenant).replay_window_seconds)
    return event


def _moved(runtime: Runtime, tenant: str, event: TicketEvent) -> bool:
    """Whether an update moved a ticket we categorized to another category tree (a ConnectWise
    board) that it was not re-checked on yet: the category is then decided again there."""
    if event.scope is None or not runtime.adapter(tenant).routing_sets_scope:
        return False
    holder = runtime.decisions.ticket_holder(tenant, event.ticket_id)
    if holder is None or not holder.wrote_category or holder.scope in (None, event.scope):
        return False
    return runtime.decisions.rechecked(tenant, event.ticket_id, event.scope) is None


def _answer_for(
    runtime: Runtime, event: TicketEvent, event_id: int, created: bool, *, acted_on: bool
) -> tuple[int, dict[str, Any]]:
    if not created:
        return 200, {"status": "duplicate", "event_id": event_id}
    if not acted_on:
        return 202, {"status": "ignored", "event_id": event_id, "reason": event.action}
    runtime.queue.wake()
    return 202, {"status": "accepted", "event_id": event_id}


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
