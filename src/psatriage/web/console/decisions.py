"""The decisions table (filters, keyset pages) and one decision with everything behind it."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from psatriage.classifiers.local import ENGINE as LOCAL_ENGINE
from psatriage.classifiers.openai_compat import ENGINE as OPENAI_ENGINE
from psatriage.domain import Outcome
from psatriage.errors import PsatriageError
from psatriage.pipeline import note_for
from psatriage.policy import Band
from psatriage.web.console.core import (
    Console,
    NavItem,
    PageNotFound,
    SignedIn,
    console_of,
    csrf_guard,
    signed_in,
)
from psatriage.web.console.queries import MAX_ID, VERDICTS, DecisionFilter

router = APIRouter(dependencies=[Depends(csrf_guard)], include_in_schema=False)
NAV = NavItem("Decisions", "/decisions")
PAGE_SIZE = 50
ENGINES = (OPENAI_ENGINE, LOCAL_ENGINE)
OUTCOMES = (*(o.value for o in Outcome), "unfinished")
BANDS = tuple(band.value for band in Band)
_FILTERS = (
    "tenant",
    "company",
    "category",
    "engine",
    "model",
    "outcome",
    "band",
    "verdict",
    "since",
    "until",
)


@router.get("/decisions", response_class=HTMLResponse)
def decisions(request: Request, user: Annotated[SignedIn, Depends(signed_in)]) -> HTMLResponse:
    console = console_of(request)
    given = {key: request.query_params.get(key, "").strip() for key in _FILTERS}
    problems: list[str] = []
    filters = DecisionFilter(
        tenant=given["tenant"],
        company=given["company"],
        category=given["category"],
        engine=given["engine"],
        model=given["model"],
        outcome=given["outcome"] if given["outcome"] in OUTCOMES else "",
        band=given["band"] if given["band"] in BANDS else "",
        verdict=given["verdict"] if given["verdict"] in VERDICTS else "",
        since=_date(given, "since", problems),
        until=_date(given, "until", problems),
    )
    before = _cursor(request.query_params.get("before"))
    after = _cursor(request.query_params.get("after"))
    page = console.queries.decisions(filters, before=before, after=after, limit=PAGE_SIZE)
    kept = {key: value for key, value in given.items() if value}

    def link(**cursor: int) -> str:
        return "/decisions?" + urlencode({**kept, **cursor})

    return console.render(
        request,
        "decisions.html",
        {
            "page": page,
            "given": given,
            "problems": problems,
            "tenants": sorted(console.runtime.config.tenants),
            "engines": ENGINES,
            "outcomes": OUTCOMES,
            "bands": BANDS,
            "verdicts": VERDICTS,
            "newer": link(after=page.rows[0].id) if page.has_newer else None,
            "older": link(before=page.rows[-1].id) if page.has_older else None,
            "filtered": bool(kept),
        },
        user=user,
    )


@router.get("/decisions/{decision_id}", response_class=HTMLResponse)
def decision(
    request: Request, decision_id: str, user: Annotated[SignedIn, Depends(signed_in)]
) -> HTMLResponse:
    console = console_of(request)
    number = _cursor(decision_id)
    detail = console.queries.decision(number) if number is not None else None
    if detail is None:
        raise PageNotFound(f"There is no decision {decision_id}.")
    return console.render(
        request,
        "decision.html",
        {
            "d": detail.decision,
            "event": detail.event,
            "calls": detail.calls,
            **_about(console, detail.decision),
        },
        user=user,
    )


def _about(console: Console, row: Any) -> dict[str, Any]:
    """What the tenant's configuration adds: the note, the PSA link, the current prompt hash."""
    tenant = console.runtime.config.tenants.get(row.tenant)
    if tenant is None:
        return {"note": None, "ticket_url": None, "prompt_hash": None, "configured": False}
    try:
        ticket_url = console.runtime.adapter(row.tenant).ticket_url(row.ticket_id)
    except PsatriageError:
        ticket_url = None
    return {
        "note": note_for(tenant, row),
        "ticket_url": ticket_url,
        "prompt_hash": tenant.prompt.hash,
        "configured": True,
    }


def _date(given: dict[str, str], key: str, problems: list[str]) -> date | None:
    if not given[key]:
        return None
    try:
        return date.fromisoformat(given[key])
    except ValueError:
        problems.append(f"'{given[key]}' is not a date; write it as YYYY-MM-DD ({key} ignored).")
        given[key] = ""
        return None


def _cursor(value: str | None) -> int | None:
    if value is None or not (value.isascii() and value.isdigit()) or not 0 < int(value) <= MAX_ID:
        return None
    return int(value)
