"""Labeled examples of a tenant: corrections, fills and reviewed decisions, each a ticket's
redacted text with the category a person gave it.

They feed ``psatriage train`` and the scheduled retrain (beside the PSA's closed-ticket
history, which they override for the same ticket) and, for LLM tenants, the similar examples
shown in the prompt. ``add_example`` is idempotent per (tenant, ticket, source): adding the
same ticket and source again replaces the label and text, so a retried outcome or review never
makes two examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from psatriage.store.tables import ExampleRow, utcnow

ExampleSource = Literal["correction", "fill", "review_accept", "review_correct"]
SOURCES: Final[frozenset[str]] = frozenset(
    {"correction", "fill", "review_accept", "review_correct"}
)
MAX_TEXT: Final = 20_000  # characters of ticket text kept per example


@dataclass(frozen=True)
class Example:
    id: int
    tenant: str
    company: str | None
    ticket_id: str
    text: str
    category_key: str
    category_path: str
    source: str
    decision_id: int | None
    created_at: datetime
    updated_at: datetime


def _sessions(sessions_or_engine: sessionmaker[Session] | Engine) -> sessionmaker[Session]:
    if isinstance(sessions_or_engine, Engine):
        return sessionmaker(sessions_or_engine, expire_on_commit=False)
    return sessions_or_engine


def add_example(
    sessions_or_engine: sessionmaker[Session] | Engine,
    *,
    tenant: str,
    company: str | None,
    ticket_id: str,
    text: str,
    category_key: str,
    category_path: str,
    source: ExampleSource,
    decision_id: int | None,
) -> None:
    """Store (or replace) the tenant's example for this ticket and source.

    ``text`` must already be redacted; it is cut to ``MAX_TEXT`` characters.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown example source {source!r}; one of {sorted(SOURCES)}")
    if not category_key:
        raise ValueError("an example needs a category key")
    sessions = _sessions(sessions_or_engine)
    now = utcnow()
    values = {
        "company": company or None,
        "text": text[:MAX_TEXT],
        "category_key": category_key,
        "category_path": category_path,
        "decision_id": decision_id,
        "updated_at": now,
    }
    with sessions.begin() as session:
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(ExampleRow).values(
            tenant=tenant, ticket_id=ticket_id, source=source, created_at=now, **values
        )
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["tenant", "ticket_id", "source"], set_=values
            )
        )


def list_examples(
    sessions_or_engine: sessionmaker[Session] | Engine,
    *,
    tenant: str,
    since: datetime | None = None,
    company: str | None = None,
    limit: int | None = None,
) -> list[Example]:
    """The tenant's examples, oldest first; only those added or changed at or after ``since``
    (naive UTC), only one client company's when given, only the newest ``limit`` when given."""
    sessions = _sessions(sessions_or_engine)
    query = select(ExampleRow).where(ExampleRow.tenant == tenant)
    if since is not None:
        query = query.where(ExampleRow.updated_at >= since)
    if company is not None:
        query = query.where(ExampleRow.company == company)
    if limit is not None:
        newest = query.order_by(ExampleRow.updated_at.desc(), ExampleRow.id.desc()).limit(limit)
        with sessions() as session:
            return [_example(row) for row in reversed(session.execute(newest).scalars().all())]
    with sessions() as session:
        rows = session.execute(query.order_by(ExampleRow.updated_at, ExampleRow.id)).scalars()
        return [_example(row) for row in rows]


def _example(row: ExampleRow) -> Example:
    return Example(
        id=row.id,
        tenant=row.tenant,
        company=row.company,
        ticket_id=row.ticket_id,
        text=row.text,
        category_key=row.category_key,
        category_path=row.category_path,
        source=row.source,
        decision_id=row.decision_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
