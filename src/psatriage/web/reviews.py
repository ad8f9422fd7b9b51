"""The review queue over JSON: list pending suggestions; accept, correct or dismiss one.

Every route needs the API token when ``PSATRIAGE_API_TOKEN`` is set. An action names who took it
(``by``, recorded as ``api:<by>``; ``api`` without it) and answers with the closed review. The
work is ``psatriage.reviews.act``, shared with the CLI and the console.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from psatriage import reviews
from psatriage.errors import AuthFailed, ConfigError, PsatriageError, TransientError
from psatriage.store.tables import ReviewState
from psatriage.web.api import (
    _UNAUTHORIZED,
    MAX_ID,
    BeforeId,
    Filter,
    Limit,
    RuntimeDep,
    require_token,
)
from psatriage.web.responses import Detail, Review, ReviewList

router = APIRouter(dependencies=[Depends(require_token)])

ReviewId = Annotated[int, Path(ge=1, le=MAX_ID)]
_ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    **_UNAUTHORIZED,
    404: {"model": Detail, "description": "No review has this id."},
    409: {
        "model": Detail,
        "description": "The review is already closed (or just closed itself: a person "
        "categorized the ticket in the PSA).",
    },
    400: {"model": Detail, "description": "The category key is not one the ticket may have."},
    502: {"model": Detail, "description": "The PSA refused the write; the review stays pending."},
    503: {"model": Detail, "description": "The PSA is unavailable; try again (Retry-After)."},
}


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field(default="", max_length=200, description="Who acts (recorded as api:<by>).")


class CorrectBody(ActionBody):
    category_key: str = Field(
        min_length=1, max_length=255, description="The category to write instead (its key)."
    )


_Body = TypeVar("_Body", bound=BaseModel)


@router.get("/api/reviews", responses=_UNAUTHORIZED)
def list_reviews(
    runtime: RuntimeDep,
    tenant: Filter = None,
    state: ReviewState | None = ReviewState.PENDING,
    company: Filter = None,
    ticket_id: Filter = None,
    before_id: BeforeId = None,
    limit: Limit = 100,
) -> ReviewList:
    """Reviews, pending ones by default; ``company`` is the PSA's company id or name."""
    rows = runtime.reviews.search(
        tenant=tenant,
        state=state,
        company=company,
        ticket_id=ticket_id,
        limit=limit,
        before_id=before_id,
    )
    return ReviewList(reviews=[Review.model_validate(row) for row in rows])


def _body_of(model: type[BaseModel], *, required: bool) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its body itself (after the token check:
    FastAPI would parse a declared body first, answering a bad body 422 before a bad token)."""
    schema = {"content": {"application/json": {"schema": model.model_json_schema()}}}
    return {"requestBody": {**schema, "required": required}}


async def _read(request: Request, model: type[_Body]) -> _Body:
    raw = await request.body()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None


@router.post(
    "/api/reviews/{review_id}/accept",
    responses=_ACTION_ERRORS,
    openapi_extra=_body_of(ActionBody, required=False),
)
async def accept_review(runtime: RuntimeDep, review_id: ReviewId, request: Request) -> Review:
    """Write the suggested category to the ticket (once) and close the review."""
    body = await _read(request, ActionBody)
    return await _act(runtime, review_id, reviews.Action.ACCEPT, body)


@router.post(
    "/api/reviews/{review_id}/correct",
    responses=_ACTION_ERRORS,
    openapi_extra=_body_of(CorrectBody, required=True),
)
async def correct_review(runtime: RuntimeDep, review_id: ReviewId, request: Request) -> Review:
    """Write another valid category to the ticket (once) and record the correction."""
    body = await _read(request, CorrectBody)
    return await _act(runtime, review_id, reviews.Action.CORRECT, body, body.category_key)


@router.post(
    "/api/reviews/{review_id}/dismiss",
    responses=_ACTION_ERRORS,
    openapi_extra=_body_of(ActionBody, required=False),
)
async def dismiss_review(runtime: RuntimeDep, review_id: ReviewId, request: Request) -> Review:
    """Close the review without writing anything."""
    body = await _read(request, ActionBody)
    return await _act(runtime, review_id, reviews.Action.DISMISS, body)


async def _act(
    runtime: RuntimeDep,
    review_id: int,
    action: reviews.Action,
    body: ActionBody,
    category_key: str | None = None,
) -> Review:
    by = f"api:{body.by}" if body.by else "api"
    try:  # the PSA calls block: off the event loop
        row = await run_in_threadpool(
            reviews.act,
            runtime.review_desk(),
            review_id,
            action,
            by=by,
            category_key=category_key,
        )
    except PsatriageError as exc:
        raise _refusal(exc) from None
    return Review.model_validate(row)


def _refusal(error: PsatriageError) -> HTTPException:
    if isinstance(error, reviews.UnknownReview):
        return HTTPException(404, str(error))
    if isinstance(error, reviews.ReviewClosed | ConfigError):
        return HTTPException(409, str(error))
    if isinstance(error, reviews.UnknownCategory):
        return HTTPException(400, str(error))
    if isinstance(error, TransientError):
        retry = {"Retry-After": str(round(error.retry_after))} if error.retry_after else None
        return HTTPException(503, f"the PSA is unavailable: {error}", headers=retry)
    if isinstance(error, AuthFailed):
        return HTTPException(502, f"the PSA refused psatriage's credentials: {error}")
    return HTTPException(502, f"the PSA refused the write: {error}")
