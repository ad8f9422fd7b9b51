"""A tenant as the service uses it: validated, templates compiled, with the settings that apply to
one ticket (``Tenant.effective``: tenant settings with its company's overrides)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from psatriage.classifiers.base import ClassifierConfig
from psatriage.config.schema import CompanyOverride, Policy, TaxonomySettings, Trigger
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
    max_workers: int | None = None
    psa_timeout_seconds: float | None = None

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
            return Effective(model, max_tokens, self.instructions, self.policy)
        changes = override.policy.model_dump(exclude_none=True)
        policy = Policy.model_validate({**self.policy.model_dump(), **changes})
        instructions = "\n".join(t for t in (self.instructions, override.instructions) if t)
        return Effective(
            override.model or model, override.max_tokens or max_tokens, instructions, policy
        )

    def _company(self, company_id: str | None, company_name: str | None) -> CompanyOverride | None:
        for wanted in (company_id, company_name):
            if wanted is None:
                continue
            for key, override in self.companies.items():
                if key.casefold() == wanted.casefold():
                    return override
        return None

    def describe(self, category: Category) -> str:
        """The tenant's description for a category, if it gave one."""
        for pattern, text in self.taxonomy.descriptions.items():
            if category_matches(category, pattern):
                return text
        return category.description


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
