"""The database tables (SQLAlchemy 2). Migrations in ``migrations/`` must agree with these.

``events`` is the ledger: a row is written before the webhook is acknowledged and ends in exactly
one terminal state. ``decisions`` records what was decided per event, ``model_calls`` every call
made to a model, ``taxonomy_cache`` the category trees read from the PSAs.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Naive UTC: what both SQLite and PostgreSQL ``timestamp`` columns store and return."""
    return datetime.now(UTC).replace(tzinfo=None)


class EventState(enum.StrEnum):
    RECEIVED = "received"  # in the ledger, queued
    PROCESSING = "processing"  # claimed by a worker until lease_until
    RETRYING = "retrying"  # failed transiently; queued again for next_attempt_at
    PARKED = "parked"  # credentials refused; waits for an operator (events retry)
    DONE = "done"  # decided (applied, suggested or shadowed)
    KEPT = "kept"  # a person's category was kept
    IGNORED = "ignored"  # not a ticket-created event, or already decided by another event
    FAILED = "failed"  # gave up; reason says why
    OVER_BUDGET = "over_budget"  # the tenant's model budget was spent; no model was asked

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


WAITING_STATES = (EventState.RECEIVED.value, EventState.RETRYING.value)
_WAITING = "state IN ('received', 'retrying')"

TERMINAL_STATES = frozenset(
    {
        EventState.DONE,
        EventState.KEPT,
        EventState.IGNORED,
        EventState.FAILED,
        EventState.OVER_BUDGET,
    }
)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("tenant", "dedupe_key", name="uq_events_tenant_dedupe_key"),
        Index("ix_events_state_lease", "state", "lease_until"),
        Index("ix_events_tenant_ticket", "tenant", "ticket_id"),
        # what a worker claims next: per tenant, new tickets first, oldest first (psatriage.jobs)
        Index(
            "ix_events_waiting",
            "tenant",
            "priority",
            "id",
            sqlite_where=text(_WAITING),
            postgresql_where=text(_WAITING),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(255))
    ticket_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16), default="webhook")
    # 0: a new ticket; higher is later work (claimed after a tenant's new tickets)
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # every claim adds one, even one handed back without spending an attempt: a claim's fencing
    # token, and more than one means an earlier claim may have written to the ticket
    claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reason: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    occurred_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # The ticket as the delivery carried it (``TicketEvent.snapshot``), when the PSA sends it.
    snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)


class TenantStateRow(Base):
    """Per tenant, what the workers need to share: whether it is paused (its events wait in the
    ledger) and when a worker last claimed one of its events (the fair order: the tenant served
    longest ago goes first)."""

    __tablename__ = "tenant_state"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    paused_by: Mapped[str] = mapped_column(String(255), default="")
    last_claim_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class DecisionRow(Base):
    __tablename__ = "decisions"
    __table_args__ = (
        Index("ix_decisions_tenant_ticket", "tenant", "ticket_id"),
        Index("ix_decisions_tenant_storm", "tenant", "storm_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), unique=True)
    tenant: Mapped[str] = mapped_column(String(64))
    ticket_id: Mapped[str] = mapped_column(String(64))
    # "tenant:ticket" while this decision is the ticket's one automatic decision: the unique
    # index makes a webhook and a poll racing on one ticket end in one decision. Cleared when
    # the event fails, so a later event may try again; NULL for manual runs.
    ticket_key: Mapped[str | None] = mapped_column(String(160), nullable=True, unique=True)
    company_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    final: Mapped[bool] = mapped_column(Boolean, default=False)
    outcome: Mapped[str] = mapped_column(String(16), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    category_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    category_label: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    previous: Mapped[str] = mapped_column(Text, default="")
    replacing: Mapped[bool] = mapped_column(Boolean, default=False)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    confidence_source: Mapped[str] = mapped_column(String(16), default="")
    reasoning: Mapped[str] = mapped_column(Text, default="")
    engine: Mapped[str] = mapped_column(String(32), default="")
    model: Mapped[str] = mapped_column(String(128), default="")
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    wrote_category: Mapped[bool] = mapped_column(Boolean, default=False)
    wrote_note: Mapped[bool] = mapped_column(Boolean, default=False)
    redactions: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)
    # the ticket fields decided beside the category (psatriage.fields.FieldDecision.to_dict)
    fields: Mapped[list[dict[str, object]] | None] = mapped_column(JSON, nullable=True)
    # alert storms: the company and normalized text's hash; the ticket whose decision was reused
    storm_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # the category tree (ticket scope, e.g. a ConnectWise board) the chosen category belongs to
    scope: Mapped[str | None] = mapped_column(String(255), nullable=True)
    followed: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class ModelCallRow(Base):
    __tablename__ = "model_calls"
    __table_args__ = (Index("ix_model_calls_tenant_created", "tenant", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    ticket_id: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    engine: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))
    template_hash: Mapped[str] = mapped_column(String(64))
    taxonomy_hash: Mapped[str] = mapped_column(String(64))
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    chosen_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    redactions: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class TaxonomyCacheRow(Base):
    __tablename__ = "taxonomy_cache"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, object]] = mapped_column(JSON)
    fetched_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class BudgetUsageRow(Base):
    """Per tenant and UTC day: the model calls its tickets made and their estimated cost (what
    the tenant's budget is checked against; ``psatriage.store.usage``)."""

    __tablename__ = "budget_usage"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD
    model_calls: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)


class PollMarkRow(Base):
    """Per tenant: how far polling has looked, and when the next poll is due."""

    __tablename__ = "poll_marks"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    mark: Mapped[datetime] = mapped_column(DateTime)
    next_poll_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class BacktestRunRow(Base):
    """One ``psatriage backtest``: its parameters, what it learned along the way (the category
    trees it met, the ticket volume) and, once finished, its report."""

    __tablename__ = "backtest_runs"
    __table_args__ = (Index("ix_backtest_runs_tenant_key", "tenant", "run_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    run_key: Mapped[str] = mapped_column(String(64))  # hash of the parameters and settings
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    since: Mapped[datetime] = mapped_column(DateTime)
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class BacktestResultRow(Base):
    """One ticket's result in a backtest: the checkpoint a resumed run starts from."""

    __tablename__ = "backtest_results"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("backtest_runs.id", ondelete="CASCADE"), primary_key=True
    )
    ticket_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


# -- the trust loop: reviews and outcomes (psatriage.store.reviews, psatriage.store.outcomes) --


class ReviewState(enum.StrEnum):
    PENDING = "pending"  # waits for a person
    ACCEPTED = "accepted"  # a person accepted the suggestion: it was written
    CORRECTED = "corrected"  # a person chose another category: it was written
    DISMISSED = "dismissed"  # a person closed it without a category
    FILLED = "filled"  # a person categorized the ticket in the PSA: closed by itself


class ReviewRow(Base):
    """A suggestion between ``suggest_at`` and ``apply_at`` waiting for a person: what was
    suggested (``category``: the decision's chosen category as written by ``Chosen.to_dict``),
    the ticket's redacted title and start, and how it ended."""

    __tablename__ = "reviews"
    __table_args__ = (Index("ix_reviews_tenant_state", "tenant", "state", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id"), unique=True)
    tenant: Mapped[str] = mapped_column(String(64))
    ticket_id: Mapped[str] = mapped_column(String(64))
    company_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    company_name: Mapped[str] = mapped_column(String(255), default="")
    title: Mapped[str] = mapped_column(Text, default="")
    excerpt: Mapped[str] = mapped_column(Text, default="")
    category_key: Mapped[str] = mapped_column(String(255))
    category_label: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[dict[str, Any]] = mapped_column(JSON)
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    alternatives: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), default=ReviewState.PENDING.value)
    closed_by: Mapped[str] = mapped_column(String(255), default="")
    closed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    final_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    final_label: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class OutcomeState(enum.StrEnum):
    PENDING = "pending"  # no final category known yet
    AGREED = "agreed"  # the category we wrote stayed on the ticket
    CORRECTED = "corrected"  # a person replaced the category we wrote
    FILLED = "filled"  # a person set a category where we only suggested or recorded
    GONE = "gone"  # the ticket was deleted (or merged away)


class OutcomeRow(Base):
    """What a decision's ticket ended up as: the category we chose beside the final one, who
    changed it (``changed_by_kind``: ``us`` for our API user, ``person``, or empty where the
    PSA does not say), and when the outcome sweep reads the ticket again (``next_check_at``)
    until it is ``settled``."""

    __tablename__ = "outcomes"
    __table_args__ = (
        Index("ix_outcomes_tenant_due", "tenant", "settled", "next_check_at"),
        Index("ix_outcomes_tenant_decided", "tenant", "decided_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id"), unique=True)
    tenant: Mapped[str] = mapped_column(String(64))
    ticket_id: Mapped[str] = mapped_column(String(64))
    company_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    company_name: Mapped[str] = mapped_column(String(255), default="")
    engine: Mapped[str] = mapped_column(String(32), default="")
    model: Mapped[str] = mapped_column(String(128), default="")
    band: Mapped[str] = mapped_column(String(16), default="")
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    decision_outcome: Mapped[str] = mapped_column(String(16))
    chosen_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    chosen_label: Mapped[str] = mapped_column(Text, default="")
    chosen: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    wrote: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default=OutcomeState.PENDING.value)
    final_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    final_label: Mapped[str] = mapped_column(Text, default="")
    matches: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    changed_by: Mapped[str] = mapped_column(String(255), default="")
    changed_by_kind: Mapped[str] = mapped_column(String(16), default="")
    changed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    closed: Mapped[bool] = mapped_column(Boolean, default=False)
    settled: Mapped[bool] = mapped_column(Boolean, default=False)
    checks: Mapped[int] = mapped_column(Integer, default=0)
    next_check_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    decided_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class SweepMarkRow(Base):
    """Per tenant: when its outcome sweep may run next (one process at a time claims it)."""

    __tablename__ = "outcome_sweeps"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_run_at: Mapped[datetime] = mapped_column(DateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


# -- reports (psatriage.store.facts, psatriage.reports) -----------------------------------------


class TicketFactRow(Base):
    """One closed ticket as the reports count it: its final category (``category_source`` says
    where it came from: ``"outcome"`` where the outcome sweep settled it, else ``"psa"``, or
    empty when it has none), its company, when it was opened and
    closed, the hours recorded on it (None until read, or while the PSA will not show them), and
    whether and how psatriage decided it. ``title`` is redacted as the model would see it."""

    __tablename__ = "ticket_facts"
    __table_args__ = (Index("ix_ticket_facts_tenant_closed_at", "tenant", "closed_at"),)

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(Text, default="")
    company_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    company_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    closed_at: Mapped[datetime] = mapped_column(DateTime)
    category_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    category_path: Mapped[list[str]] = mapped_column(JSON, default=list)  # names, level by level
    category_source: Mapped[str] = mapped_column(String(16), default="")
    hours: Mapped[float | None] = mapped_column(Float, nullable=True)
    decision: Mapped[str] = mapped_column(String(16), default="")  # the final outcome, or ""
    decision_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    refreshed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class FactRefreshRow(Base):
    """Per tenant: when its facts were last refreshed and up to when, when the next scheduled
    refresh is due (the mark several processes claim), and why hours are missing, if they are."""

    __tablename__ = "fact_refreshes"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_refresh_at: Mapped[datetime] = mapped_column(DateTime)
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    covered_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    hours_problem: Mapped[str] = mapped_column(Text, default="")


# -- learning from corrections (psatriage.store.examples, psatriage.learning) -----------------


class ExampleRow(Base):
    """A labeled example of a tenant: a ticket's redacted text and the category a person gave
    it (a correction, a fill, an accepted or corrected review). One row per ticket and source;
    adding it again replaces the label."""

    __tablename__ = "examples"
    __table_args__ = (
        UniqueConstraint("tenant", "ticket_id", "source", name="uq_examples_tenant_ticket_source"),
        Index("ix_examples_tenant_created", "tenant", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    company: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ticket_id: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    category_key: Mapped[str] = mapped_column(String(255))
    category_path: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(16))
    decision_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class ModelVersionRow(Base):
    """One trained local-engine model of a tenant: the model file's bytes, its training report
    and, for a scheduled retrain, how it scored against the model in use. At most one version
    per tenant is ``active``; the others are ``candidate`` (trained, never used), ``retired``
    (used before) or ``refused`` (a retrain that scored worse)."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("tenant", "version", name="uq_model_versions_tenant_version"),
        Index("ix_model_versions_tenant_state", "tenant", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16), default="train")
    data: Mapped[bytes] = mapped_column(LargeBinary)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class RetrainMarkRow(Base):
    """Per tenant: when the scheduled retrain last ran and is next due (one process claims it)."""

    __tablename__ = "retrain_marks"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    next_run_at: Mapped[datetime] = mapped_column(DateTime)
    result: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


# -- the web console (psatriage.store.users, psatriage.web.console) ---------------------------


class ConsoleUserRow(Base):
    """A person who may sign in to the console; ``password_hash`` is None for single sign-on
    only (the row then only gives the person a role)."""

    __tablename__ = "console_users"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class ConsoleSessionRow(Base):
    """A browser session. The cookie holds a random token; only its SHA-256 is stored here.
    Before sign-in ``user_name`` is None and ``pending`` holds what single sign-on must check
    when the provider sends the browser back (state, nonce, PKCE verifier, the page asked for)."""

    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_expires_at", "expires_at"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    method: Mapped[str] = mapped_column(String(16), default="")
    csrf_token: Mapped[str] = mapped_column(String(64))
    pending: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class AuditRow(Base):
    """One action someone took: signing in or out, a failed sign-in, retrying events, users
    added or removed. ``actor`` is the console user (or ``cli:<login>`` for the command line)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_action_at", "action", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    address: Mapped[str] = mapped_column(String(64), default="")


# The console's overview counts the last 30 days of decisions and model calls across tenants
# from these indexes alone (they hold every column it reads); its decisions table lists one
# tenant's decisions newest first.
Index(
    "ix_decisions_created_at",
    DecisionRow.created_at,
    DecisionRow.final,
    DecisionRow.tenant,
    DecisionRow.outcome,
)
Index("ix_decisions_tenant_id", DecisionRow.tenant, DecisionRow.id)
Index(
    "ix_model_calls_created_at",
    ModelCallRow.created_at,
    ModelCallRow.tenant,
    ModelCallRow.tokens_in,
    ModelCallRow.tokens_out,
    ModelCallRow.cost_usd,
)


# -- bulk work and data lifecycle (psatriage.store.bulk, psatriage.retention) -------------------


class BulkRunRow(Base):
    """One ``psatriage backfill`` or ``psatriage export``: its parameters and, once listed, the
    tickets it covers (``bulk_items``), so an interrupted run resumes where it stopped."""

    __tablename__ = "bulk_runs"
    __table_args__ = (Index("ix_bulk_runs_tenant_key", "tenant", "kind", "run_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # "backfill" or "export"
    run_key: Mapped[str] = mapped_column(String(64))  # hash of the parameters
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    listed: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class BulkItemRow(Base):
    """One ticket of a bulk run: ``pending`` until done, then its result (the checkpoint)."""

    __tablename__ = "bulk_items"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("bulk_runs.id", ondelete="CASCADE"), primary_key=True
    )
    ticket_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class DailyCountRow(Base):
    """A tenant's counts per day (events by state, decisions by outcome, model calls, tokens,
    cost) folded in from the rows a purge deletes, so totals survive retention."""

    __tablename__ = "daily_counts"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[datetime] = mapped_column(DateTime, primary_key=True)  # midnight UTC
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float] = mapped_column(Float, default=0.0)


class JobMarkRow(Base):
    """When a periodic job last ran for a tenant, so several processes do not repeat it."""

    __tablename__ = "job_marks"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    job: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_run_at: Mapped[datetime] = mapped_column(DateTime)


class FieldModelRow(Base):
    """A tenant's local-engine model of one ticket field (priority, routing, noise), trained on
    the values its closed tickets ended with: the model file's bytes and its training report.
    One per tenant and field; a new training replaces it."""

    __tablename__ = "field_models"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    field: Mapped[str] = mapped_column(String(16), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    trained_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
