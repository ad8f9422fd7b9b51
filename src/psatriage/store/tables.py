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

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


WAITING_STATES = (EventState.RECEIVED.value, EventState.RETRYING.value)
_WAITING = "state IN ('received', 'retrying')"

TERMINAL_STATES = frozenset(
    {EventState.DONE, EventState.KEPT, EventState.IGNORED, EventState.FAILED}
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
    reason: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    occurred_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


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
    __table_args__ = (Index("ix_decisions_tenant_ticket", "tenant", "ticket_id"),)

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
