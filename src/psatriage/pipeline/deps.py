"""What the pipeline needs for one tenant (``Deps``), and its reads through the taxonomy cache:
the category tree a ticket is on and the live values of the ticket fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psatriage.breaker import CircuitBreaker
from psatriage.classifiers.base import Classifier
from psatriage.config.fields import STORED_FIELDS, FieldsSettings
from psatriage.config.tenant import Tenant
from psatriage.domain import Facet, Taxonomy, Ticket
from psatriage.learning.fields import FieldModels
from psatriage.learning.similar import SimilarExamples
from psatriage.psa.base import PSAAdapter
from psatriage.store.decisions import Decisions
from psatriage.store.usage import Usage
from psatriage.taxonomy_cache import TaxonomyCache


@dataclass(frozen=True)
class Deps:
    """What the pipeline needs for one tenant."""

    tenant: Tenant
    adapter: PSAAdapter[Any]
    classifier: Classifier[Any]
    decisions: Decisions
    taxonomies: TaxonomyCache
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    examples: SimilarExamples | None = None  # labeled examples for an LLM's prompt
    usage: Usage | None = None  # the tenant's model budget meter; None: no budget is kept
    field_models: FieldModels | None = None  # the local engine's models of the ticket fields


def read_taxonomy(deps: Deps, ticket: Ticket) -> Taxonomy:
    return deps.taxonomies.get(
        deps.tenant.name,
        deps.adapter,
        ticket,
        ttl_seconds=deps.tenant.taxonomy.cache_seconds,
    )


def field_options(deps: Deps, ticket: Ticket, settings: FieldsSettings) -> dict[str, Facet]:
    """The live values of the enabled stored fields (priority, routing), through the cache."""
    return {
        name: read_field_values(deps, ticket, name)
        for name in settings.active()
        if name in STORED_FIELDS
    }


def read_field_values(deps: Deps, ticket: Ticket, name: str, *, refresh: bool = False) -> Facet:
    return deps.taxonomies.field_values(
        deps.tenant.name,
        deps.adapter,
        ticket,
        name,
        ttl_seconds=deps.tenant.taxonomy.cache_seconds,
        refresh=refresh,
    )
