"""A tenant as the service uses it: validated, templates compiled, with the settings that apply to
one ticket (``Tenant.effective``: tenant settings with its company's overrides)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydantic import SecretStr

from psatriage.classifiers.base import ClassifierConfig
from psatriage.config.fields import FieldsSettings
from psatriage.config.schema import (
    Budget,
    CategoryHint,
    CompanyOverride,
    LearningSettings,
    OutcomeSettings,
    Policy,
    TaxonomySettings,
    Trigger,
)
from psatriage.domain import Category
from psatriage.errors import ConfigError
from psatriage.prompts import PromptTemplate, TextTemplate
from psatriage.psa.base import AdapterConfig
from psatriage.redact import Redactor


@dataclass(frozen=True, slots=True)
class Effective:
    """The settings that apply to one ticket: tenant settings with its company's overrides.

    ``model`` and ``max_tokens`` are the company's where it names them, else the classifier
    configuration's defaults (empty for a classifier that asks no LLM).
    """

    model: str
    max_tokens: int
    instructions: str
    policy: Policy
    fields: FieldsSettings = field(default_factory=FieldsSettings)


@dataclass(frozen=True)
class Tenant:
    """One MSP's validated configuration, templates compiled."""

    name: str
    psa: str
    trigger: Trigger
    poll_seconds: int
    poll_overlap_seconds: int
    replay_window_seconds: int
    connection: AdapterConfig
    classifier_kind: str
    classifier: ClassifierConfig
    policy: Policy
    instructions: str
    prompt: PromptTemplate
    note: TextTemplate
    error_note: TextTemplate
    taxonomy: TaxonomySettings
    redactor: Redactor = field(default_factory=Redactor)
    companies: Mapping[str, CompanyOverride] = field(default_factory=dict)
    outcomes: OutcomeSettings = field(default_factory=OutcomeSettings)
    fields: FieldsSettings = field(default_factory=FieldsSettings)
    storm_window_minutes: int = 0
    categories: Mapping[str, CategoryHint] = field(default_factory=dict)
    learning: LearningSettings = field(default_factory=LearningSettings)
    budget: Budget = field(default_factory=Budget)
    poll_start: datetime | None = None  # where the first poll starts; None: when it runs
    retention_days: int | None = None  # ticket-derived text; None: kept for ever
    record_retention_days: int | None = None  # events, decisions, model calls
    backfill_call_share: float = 0.5

    def __repr__(self) -> str:
        return f"Tenant(name={self.name!r}, psa={self.psa!r}, classifier={self.classifier_kind!r})"

    @property
    def polls(self) -> bool:
        return self.trigger is not Trigger.WEBHOOK

    @property
    def takes_webhooks(self) -> bool:
        return self.trigger is not Trigger.POLL

    def effective(self, company_id: str | None, company_name: str | None = None) -> Effective:
        """The settings for a ticket of this company (matched by PSA id, then by name)."""
        model, max_tokens = self.classifier.default_model, self.classifier.default_max_tokens
        override = self._company(company_id, company_name)
        if override is None:
            return Effective(model, max_tokens, self.instructions, self.policy, self.fields)
        policy = self.policy_with(override)
        instructions = "\n".join(t for t in (self.instructions, override.instructions) if t)
        return Effective(
            override.model or model,
            override.max_tokens or max_tokens,
            instructions,
            policy,
            self.fields.with_overrides(override.fields),
        )

    def policy_with(self, override: CompanyOverride) -> Policy:
        """The tenant's policy with a company's changes (raises ``ValidationError`` when the two
        together contradict each other; the loader checks every company when the file loads)."""
        changes = override.policy.model_dump(exclude_none=True)
        base = self.policy.model_dump()
        if "apply_at" in changes and "min_confidence_to_change" not in changes:
            changes["min_confidence_to_change"] = max(
                changes["apply_at"], base["min_confidence_to_change"]
            )
        fields: dict[str, dict[str, object]] = dict(base.get("fields") or {})
        for name, band in (changes.pop("fields", None) or {}).items():
            set_here = {key: value for key, value in band.items() if value is not None}
            fields[name] = {**fields.get(name, {}), **set_here}
        return Policy.model_validate({**base, **changes, "fields": fields})

    def _company(self, company_id: str | None, company_name: str | None) -> CompanyOverride | None:
        for wanted in (company_id, company_name):
            if wanted is None:
                continue
            for key, override in self.companies.items():
                if key.casefold() == wanted.casefold():
                    return override
        return None

    def describe(self, category: Category) -> str:
        """What the model and the zero-shot engine read about a category: the description of
        its most specific ``categories`` entry (else ``taxonomy.descriptions``, else the PSA's),
        followed by the hints of every entry that names it, the most specific first."""
        entries = self.category_entries(category)
        description = next((e.description for e in entries if e.description), "")
        if not description:
            description = next(
                (
                    text
                    for pattern, text in self.taxonomy.descriptions.items()
                    if category_matches(category, pattern)
                ),
                category.description,
            )
        hints = list(dict.fromkeys(h for e in entries for h in e.hints))
        if not hints:
            return description
        typical = "e.g. " + ", ".join(hints)
        return f"{description} ({typical})" if description else typical

    def category_entries(self, category: Category) -> list[CategoryHint]:
        """The ``categories`` entries naming this category, the most specific first (its key,
        then the longest path prefix)."""
        found = [
            (_specificity(pattern, category), entry)
            for pattern, entry in self.categories.items()
            if category_matches(category, pattern)
        ]
        return [entry for _, entry in sorted(found, key=lambda f: -f[0])]


@dataclass(frozen=True)
class AppConfig:
    tenants: Mapping[str, Tenant]
    source: Path | None = None

    def secret_values(self) -> list[str]:
        """Every credential of every tenant (to keep them out of logs)."""
        found: list[str] = []
        for tenant in self.tenants.values():
            for model in (tenant.connection, tenant.classifier):
                for value in model.__dict__.values():
                    if isinstance(value, SecretStr):
                        found.append(value.get_secret_value())
        return found

    def tenant(self, name: str) -> Tenant:
        try:
            return self.tenants[name]
        except KeyError:
            known = ", ".join(sorted(self.tenants)) or "none"
            raise ConfigError(f"no tenant named {name!r} (configured: {known})") from None


def _specificity(pattern: str, category: Category) -> int:
    if pattern == category.key:
        return 1_000
    return len([p for p in re.split(r"[>›]", pattern) if p.strip()])


def category_matches(category: Category, pattern: str) -> bool:
    """Whether ``pattern`` names this category: its key, or a prefix of its path.

    Path prefixes are written with ``>`` or ``›`` between levels and compared case-insensitively,
    so ``"Hardware"`` matches every leaf under the type Hardware.
    """
    if pattern == category.key:
        return True
    wanted = [p.strip().casefold() for p in re.split(r"[>›]", pattern) if p.strip()]
    names = [v.name.strip().casefold() for v in category.path]
    return bool(wanted) and names[: len(wanted)] == wanted
