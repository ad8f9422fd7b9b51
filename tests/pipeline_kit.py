"""The fast pipeline tier: ``pipeline.categorize`` with the in-process fakes on real SQLite.

No sockets, no queue, no migrations: the tables are created from the models (which
``tests/store/test_migrations.py`` checks agree with the migrations), the PSA and the classifier
are ``tests.fakes.inprocess``. The worker around the pipeline (retries, parking, the queue) is
tested through the real runtime in ``tests/test_jobs.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from psatriage import pipeline
from psatriage.breaker import CircuitBreaker
from psatriage.config import (
    CompanyOverride,
    Policy,
    PrivacySettings,
    TaxonomySettings,
    Tenant,
    Trigger,
)
from psatriage.config.fields import FieldsSettings
from psatriage.domain import Decision, TicketEvent
from psatriage.learning.fields import FieldModels
from psatriage.learning.similar import SimilarExamples
from psatriage.prompts import (
    DEFAULT_ERROR_NOTE,
    DEFAULT_NOTE,
    DEFAULT_PROMPT,
    compile_note,
    compile_prompt,
)
from psatriage.store import db
from psatriage.store.decisions import Decisions
from psatriage.store.ledger import Ledger
from psatriage.store.tables import Base, DecisionRow, EventState, ModelCallRow
from psatriage.store.taxonomies import StoredTaxonomies
from psatriage.taxonomy_cache import TaxonomyCache
from tests.fakes.inprocess import MemoryConfig, MemoryPSA, ScriptedClassifier, ScriptedConfig

TENANT = "acme"


def make_tenant(
    *,
    policy: Mapping[str, Any] | None = None,
    companies: Mapping[str, Mapping[str, Any]] | None = None,
    instructions: str = "",
    privacy: Mapping[str, Any] | None = None,
    classifier: ScriptedConfig | None = None,
    fields: Mapping[str, Any] | None = None,
    storm_window_minutes: int = 0,
) -> Tenant:
    """A tenant of the in-memory PSA with the shipped templates and the given settings."""
    return Tenant(
        name=TENANT,
        psa=MemoryPSA.kind,
        trigger=Trigger.WEBHOOK,
        poll_seconds=60,
        poll_overlap_seconds=120,
        replay_window_seconds=86400,
        connection=MemoryConfig(),
        classifier_kind=ScriptedClassifier.kind,
        classifier=classifier or ScriptedConfig(),
        policy=Policy.model_validate(policy or {}),
        instructions=instructions,
        prompt=compile_prompt(DEFAULT_PROMPT, name="prompt.template"),
        note=compile_note(DEFAULT_NOTE, name="prompt.note_template"),
        error_note=compile_note(
            DEFAULT_ERROR_NOTE, name="prompt.error_note_template", error_note=True
        ),
        taxonomy=TaxonomySettings(),
        redactor=PrivacySettings.model_validate(privacy or {}).redactor(),
        companies={
            name: CompanyOverride.model_validate(values)
            for name, values in (companies or {}).items()
        },
        fields=FieldsSettings.model_validate(fields or {}),
        storm_window_minutes=storm_window_minutes,
    )


def make_database(path: Path) -> Engine:
    """A SQLite file with every table, created from the models."""
    engine = db.make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    return engine


@dataclass
class PipelineKit:
    """One tenant's pipeline on the in-process fakes; ``run`` categorizes an event's ticket."""

    engine: Engine
    psa: MemoryPSA = field(default_factory=MemoryPSA)
    classifier: ScriptedClassifier = field(default_factory=ScriptedClassifier)
    tenant: Tenant = field(default_factory=make_tenant)
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    field_models: FieldModels | None = None

    def __post_init__(self) -> None:
        self.sessions: sessionmaker[Session] = db.make_sessionmaker(self.engine)
        self.ledger = Ledger(self.engine, self.sessions)
        self.decisions = Decisions(self.sessions)
        self.taxonomies = TaxonomyCache(StoredTaxonomies(self.sessions))
        self.examples = SimilarExamples(self.sessions, refresh_seconds=0)

    def with_tenant(self, **settings: Any) -> PipelineKit:
        """This kit (same database, PSA and classifier) for a tenant with other settings."""
        self.tenant = make_tenant(**settings)
        return self

    @property
    def deps(self) -> pipeline.Deps:
        return pipeline.Deps(
            tenant=self.tenant,
            adapter=self.psa,
            classifier=self.classifier,
            decisions=self.decisions,
            taxonomies=self.taxonomies,
            breaker=self.breaker,
            examples=self.examples,
            field_models=self.field_models,
        )

    def event(self, ticket_id: str, key: str | None = None) -> int:
        """Record a "ticket created" event in the ledger, as the webhook edge does."""
        event = TicketEvent(TENANT, ticket_id, "created", True, key or f"created-{ticket_id}")
        event_id, _ = self.ledger.record(event, state=EventState.RECEIVED)
        return event_id

    def run(self, event_id: int, *, attempt: int = 1, **options: Any) -> Decision:
        row = self.ledger.get(event_id)
        assert row is not None
        return pipeline.categorize(event_id, row.ticket_id, attempt, self.deps, **options)

    def decision(self, event_id: int) -> DecisionRow:
        row = self.decisions.decision_for_event(event_id)
        assert row is not None
        return row

    def calls(self) -> list[ModelCallRow]:
        with self.sessions() as session:
            return list(session.execute(select(ModelCallRow).order_by(ModelCallRow.id)).scalars())
