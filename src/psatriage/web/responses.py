"""The bodies the API answers with, as pydantic models: what ``/docs`` and ``/openapi.json``
show, and what every answer is validated against on its way out.

Rows keep naive UTC times; here they become aware UTC, written ``2026-03-02T09:15:00Z``. The
bodies of ``/api/reports/...`` are the reports themselves, ``psatriage.reports.models`` (the CLI
prints the same with ``--json``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from psatriage.domain import Outcome
from psatriage.store.tables import EventState, ReviewState


def _as_utc(value: object) -> object:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


UtcTime = Annotated[datetime, BeforeValidator(_as_utc)]


class _FromRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Detail(BaseModel):
    """The body of every refusal: what was wrong, in words."""

    detail: str


class Health(BaseModel):
    status: Literal["ok"] = Field(description="Always ok: the process answers.")


class BudgetMeter(BaseModel):
    """A tenant's model budget and what it used of it (UTC day and month)."""

    model_config = ConfigDict(from_attributes=True)

    calls_today: int = Field(description="Model calls made today for the tenant's tickets.")
    max_model_calls_per_day: int | None = Field(description="Its budget; null: no limit.")
    cost_this_month: float = Field(description="Estimated model cost this month, USD.")
    max_cost_per_month: float | None = Field(description="Its budget, USD; null: no limit.")
    reached: str | None = Field(
        description="Why the budget is reached (its tickets are recorded as over_budget), or null."
    )


class Readiness(BaseModel):
    ready: bool = Field(
        description="The database is at the newest migration and the queue answers."
    )
    checks: dict[str, str] = Field(description="database and queue: ok, or what is wrong.")
    tenants: dict[str, list[str]] = Field(
        description="Per tenant, what needs a person: refused credentials, a deactivated "
        "webhook, repeated failures."
    )
    degraded: dict[str, str] = Field(
        default_factory=dict,
        description="Per tenant degraded by repeated PSA or model failures (events or polls, "
        "PSATRIAGE_DEGRADED_AFTER in a row): why. The service stays ready for other tenants.",
    )
    models: dict[str, dict[str, str]] = Field(
        description="Per tenant with an LLM, what its model server was found to support "
        "(structured output, log-probs); filled from the cache, no call is made."
    )
    budgets: dict[str, BudgetMeter] = Field(
        default_factory=dict,
        description="Per tenant with a model budget, what it used of it. A tenant whose budget "
        "is reached is also listed under tenants; the service stays ready.",
    )


class Event(_FromRow):
    """One ticket event in the ledger: a webhook delivery, a poll's find or a manual run."""

    id: int
    tenant: str
    ticket_id: str = Field(description="The PSA's ticket id.")
    action: str = Field(description="What the PSA said happened (added, Create, manual...).")
    source: str = Field(description="webhook, poll or cli.")
    state: EventState
    attempts: int = Field(description="Processing attempts so far.")
    reason: str = Field(description="Why it is in this state (empty when done).")
    received_at: UtcTime
    updated_at: UtcTime
    finished_at: UtcTime | None
    next_attempt_at: UtcTime | None = Field(description="When a retrying event is tried next.")


class DecidedField(BaseModel):
    """One ticket field decided beside the category (priority, routing, noise...)."""

    name: str = Field(description="priority, routing, noise, language, sentiment or summary.")
    label: str = Field(description="As the note shows it (Priority, Board, Queue, Team...).")
    value: str = Field(description="The value as the note shows it.")
    value_id: str = Field(description="The PSA's id of the value, or the kind answered.")
    outcome: str = Field(description="applied (written), suggested (note only) or recorded.")
    confidence: float | None


class Decision(_FromRow):
    """What the model chose for a ticket, and what was written."""

    id: int
    event_id: int
    tenant: str
    ticket_id: str
    company_id: str | None = Field(description="The PSA's client company, for overrides.")
    final: bool = Field(description="False while the decision is checkpointed, not yet written.")
    outcome: Outcome | Literal[""] = Field(description="Empty while not final.")
    reason: str
    category_key: str | None = Field(description="The chosen leaf's key (PSA ids joined by /).")
    category: str = Field(
        validation_alias="category_label", description="The chosen path, e.g. Hardware › Printer."
    )
    previous: str = Field(description="The ticket's category before, if it had one.")
    confidence: float | None
    confidence_source: str = Field(
        description="logprobs, self_reported (the model's own estimate) or model (local engine)."
    )
    reasoning: str
    engine: str
    model: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_ms: float
    wrote_category: bool
    wrote_note: bool
    fields: list[DecidedField] = Field(
        default_factory=list, description="The ticket fields decided beside the category."
    )
    followed: str | None = Field(
        default=None, description="The ticket whose decision an alert storm reused."
    )
    created_at: UtcTime

    @field_validator("fields", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return value or []


class ModelCall(_FromRow):
    """One call to a model, successful or not."""

    id: int
    engine: str
    model: str
    template_hash: str = Field(description="Hash of the prompt template used.")
    taxonomy_hash: str = Field(description="Hash of the candidates offered.")
    tokens_in: int
    tokens_out: int
    latency_ms: float
    cost_usd: float
    chosen_key: str | None
    confidence: float | None
    error: str | None = Field(description="Why the call failed; null when it answered.")
    created_at: UtcTime


class EventDetail(Event):
    decision: Decision | None
    model_calls: list[ModelCall]


class EventList(BaseModel):
    events: list[Event] = Field(description="Newest first; page on with before_id.")


class DecisionList(BaseModel):
    decisions: list[Decision] = Field(description="Newest first; page on with before_id.")


class Alternative(BaseModel):
    key: str
    label: str
    confidence: float


class Review(_FromRow):
    """A suggestion waiting for a person (or how one ended)."""

    id: int
    decision_id: int
    tenant: str
    ticket_id: str
    company_id: str | None
    company_name: str
    title: str = Field(description="The ticket's title, redacted as the model saw it.")
    excerpt: str = Field(description="The start of the ticket's text, redacted, one line.")
    category_key: str = Field(description="The suggested category's key.")
    category: str = Field(validation_alias="category_label", description="The suggested path.")
    confidence: float
    alternatives: list[Alternative] = Field(
        description="The next best categories, where the engine gives them."
    )
    state: ReviewState
    closed_by: str = Field(description="Who closed it: api[:name], cli:login, a console user, psa.")
    closed_at: UtcTime | None
    final_key: str | None = Field(description="The category written (or found), once closed.")
    final_label: str
    created_at: UtcTime


class ReviewList(BaseModel):
    reviews: list[Review] = Field(description="Newest first; page on with before_id.")


class AccuracyGroup(BaseModel):
    """The outcomes of one group of decisions."""

    key: str = Field(description="The group: company id, category key, engine/model, band...")
    label: str
    decided: int = Field(description="Decisions with a category chosen by the model.")
    known: int = Field(description="Of those, tickets with a final category (agreed, "
                       "corrected or filled).")  # fmt: skip
    correct: int = Field(description="Of those, tickets whose final category is the model's.")
    accuracy: float | None = Field(description="correct ÷ known; null before anything is known.")
    states: dict[str, int] = Field(description="Outcomes by state: pending, agreed, corrected, "
                                   "filled, gone.")  # fmt: skip


class AccuracyReport(BaseModel):
    """One tenant's accuracy from outcomes, overall and per dimension."""

    tenant: str
    since: UtcTime = Field(description="Decisions made at or after this moment.")
    overall: AccuracyGroup
    by_company: list[AccuracyGroup]
    by_category: list[AccuracyGroup] = Field(description="By the model's choice.")
    by_engine: list[AccuracyGroup] = Field(description="By engine and model.")
    by_band: list[AccuracyGroup] = Field(description="By confidence band: apply, suggest, "
                                         "record.")  # fmt: skip
    by_decision: list[AccuracyGroup] = Field(
        description="By what the decision did: applied, suggested, shadowed, recorded."
    )
    by_day: list[AccuracyGroup] = Field(description="By the day of the decision (UTC), oldest "
                                        "first.")  # fmt: skip
