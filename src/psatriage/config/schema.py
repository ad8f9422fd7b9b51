"""The tenants file as written: one pydantic model per table, validated when the file loads.

``RawTenant`` is a ``[tenants.NAME]`` table before its connection and classifier tables are checked
against the chosen adapter and classifier (``psatriage.config.loader`` does that). The field
descriptions here are the configuration reference (``docs/configuration.md`` is generated from
them).
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from psatriage.redact import Redactor


class Mode(enum.StrEnum):
    APPLY = "apply"  # write the category (above the thresholds) and a note
    SUGGEST = "suggest"  # write a note only
    SHADOW = "shadow"  # write nothing to the PSA; record the decision only


class Overwrite(enum.StrEnum):
    NEVER = "never"  # a category set by a person is kept
    DEFAULTS = "defaults"  # replace only the PSA's own default/placeholder values
    ALWAYS = "always"  # replace any category (above min_confidence_to_change)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Policy(_Strict):
    """What psatriage may do with a decision."""

    mode: Mode = Field(default=Mode.APPLY, description="apply, suggest (note only) or shadow.")
    min_confidence: float = Field(
        default=0.5, ge=0, le=1, description="Confidence needed to fill an empty category."
    )
    min_confidence_to_change: float = Field(
        default=0.8, ge=0, le=1, description="Confidence needed to replace a non-empty category."
    )
    overwrite: Overwrite = Field(
        default=Overwrite.NEVER,
        description="never, defaults (only the PSA's placeholder values) or always.",
    )
    report_errors: bool = Field(
        default=True,
        description="Add an internal note (once per ticket) when the model cannot be used.",
    )
    locked: tuple[str, ...] = Field(
        default=(),
        description="Categories (keys or path prefixes such as 'Security') that, once on a "
        "ticket, are never changed.",
    )
    excluded: tuple[str, ...] = Field(
        default=(),
        description="Categories (keys or path prefixes) the model may never choose.",
    )

    @model_validator(mode="after")
    def _thresholds(self) -> Policy:
        if self.min_confidence_to_change < self.min_confidence:
            raise ValueError(
                "min_confidence_to_change must be at least min_confidence "
                "(replacing a category needs more certainty than filling an empty one)"
            )
        return self


class PolicyOverride(_Strict):
    """Per-company changes to the tenant's policy; unset keys keep the tenant's value."""

    mode: Mode | None = None
    min_confidence: float | None = Field(default=None, ge=0, le=1)
    min_confidence_to_change: float | None = Field(default=None, ge=0, le=1)
    overwrite: Overwrite | None = None
    report_errors: bool | None = None
    locked: tuple[str, ...] | None = None
    excluded: tuple[str, ...] | None = None


class CompanyOverride(_Strict):
    """Settings for one client company (the seed's organization variables)."""

    model: str | None = Field(
        default=None,
        validation_alias=AliasChoices("model", "ai_model_ticket_cat"),
        description="Model for this company's tickets (alias: ai_model_ticket_cat).",
    )
    max_tokens: int | None = Field(
        default=None,
        ge=16,
        le=32768,
        validation_alias=AliasChoices("max_tokens", "ticket_cat_max_tokens"),
        description="Answer token budget (alias: ticket_cat_max_tokens).",
    )
    instructions: str = Field(default="", description="Added after the tenant's instructions.")
    policy: PolicyOverride = Field(default_factory=PolicyOverride)


class PromptSettings(_Strict):
    instructions: str = Field(default="", description="Told to the model for every ticket.")
    template: str | None = Field(
        default=None, description="A prompt template (Jinja2, blocks system and user)."
    )
    template_file: Path | None = Field(default=None, description="Or the template in a file.")
    note_template: str | None = Field(default=None, description="Template of the note.")
    error_note_template: str | None = Field(
        default=None, description="Template of the note added when categorizing fails."
    )


class TaxonomySettings(_Strict):
    cache_seconds: int = Field(
        default=3600, ge=0, description="How long a category tree is reused before re-reading."
    )
    descriptions: dict[str, str] = Field(
        default_factory=dict,
        description="Descriptions shown to the model, by category key or path prefix.",
    )
    # shortlisting (psatriage.shortlist): large trees are cut to the local engine's best leaves
    shortlist_above: int = Field(
        default=200,
        ge=0,
        description="When a ticket has more candidate categories than this, only the local "
        "engine's best shortlist_size go to the classifier (0: never shortlist).",
    )
    shortlist_size: int = Field(
        default=80,
        ge=2,
        description="How many candidates a shortlist keeps: the local engine's likeliest "
        "branches whole, then its best single leaves (see docs/PERFORMANCE.md for the recall "
        "and prompt size this gives).",
    )
    large_trees: Literal["shortlist", "branch_first"] = Field(
        default="shortlist",
        description="How a ticket with more than shortlist_above candidates is narrowed: "
        "'shortlist' (the local engine's shortlist, one model call) or 'branch_first' (an LLM "
        "first chooses a branch among all of the tree's first level or first two levels, then a "
        "category of that branch: two model calls, every leaf reachable). The local and hybrid "
        "classifiers always shortlist.",
    )


class Trigger(enum.StrEnum):
    WEBHOOK = "webhook"  # the PSA calls /webhooks/NAME
    POLL = "poll"  # psatriage asks the PSA for new tickets every poll_seconds
    BOTH = "both"  # webhooks, and polling to catch any the PSA did not deliver


class PrivacySettings(_Strict):
    redact: bool = Field(
        default=True,
        description="Mask e-mails, phone numbers, IP addresses, card numbers and 'password: x' "
        "secrets in the ticket before it is sent to a model.",
    )
    patterns: dict[str, str] = Field(
        default_factory=dict,
        description="More things to mask: name = regular expression (masked as [NAME]).",
    )

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: dict[str, str]) -> dict[str, str]:
        for name, pattern in patterns.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", name):
                raise ValueError(f"pattern name {name!r}: use lower-case letters, digits and _")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"pattern {name!r} is not a valid regular expression: {exc}"
                ) from None
        return patterns

    def redactor(self) -> Redactor:
        return Redactor(
            enabled=self.redact,
            patterns={name: re.compile(p) for name, p in self.patterns.items()},
        )


class RawTenant(_Strict):
    psa: str
    trigger: Trigger | None = Field(
        default=None,
        description="How new tickets reach psatriage: webhook, poll or both (default: the PSA's "
        "usual way: poll for Kaseya BMS, webhook for the others).",
    )
    poll_seconds: int = Field(
        default=60, ge=5, le=3600, description="Polling interval (trigger poll or both)."
    )
    poll_overlap_seconds: int = Field(
        default=120,
        ge=0,
        le=86400,
        description="Each poll looks this far behind the last one, for tickets the PSA indexed "
        "late or a clock that differs; the ledger drops what was already seen.",
    )
    replay_window_seconds: int = Field(
        default=86400,
        ge=0,
        le=30 * 86400,
        description="A signed 'ticket created' delivery whose PSA event time is older than this "
        "is refused (400) as a replay; 0 turns the check off. Applies where the PSA sends a time "
        "(Autotask EventTime, HaloPSA timestamp, ConnectWise dateEntered). Keep it longer than "
        "the PSA's own retry period; polling (trigger both) catches a real ticket refused late.",
    )
    max_workers: int | None = Field(
        default=None,
        ge=1,
        le=512,
        description="Most tickets of this tenant a worker process works on at once (its "
        "bulkhead). Default: PSATRIAGE_TENANT_SHARE of the workers when several tenants are "
        "configured, all of them for a lone tenant.",
    )
    psa_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=300,
        description="Longest wait for one answer from this tenant's PSA before the call counts as "
        "failed and the ticket is retried later (a PSA that hangs then holds a worker this long at "
        "most). Default: 30 s.",
    )
    connection: dict[str, Any]
    classifier: dict[str, Any] = Field(default_factory=dict)
    policy: Policy = Field(default_factory=Policy)
    prompt: PromptSettings = Field(default_factory=PromptSettings)
    taxonomy: TaxonomySettings = Field(default_factory=TaxonomySettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    companies: dict[str, CompanyOverride] = Field(default_factory=dict)
