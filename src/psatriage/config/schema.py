"""The tenants file as written: one pydantic model per table, validated when the file loads.

``RawTenant`` is a ``[tenants.NAME]`` table before its connection and classifier tables are checked
against the chosen adapter and classifier (``psatriage.config.loader`` does that). The field
descriptions here are the configuration reference (``docs/configuration.md`` is generated from
them).
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime
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

from psatriage.config.fields import FieldName, FieldOverride, FieldsSettings
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


FIELDS = ("category", "priority", "routing", "noise", "language", "sentiment", "summary")
"""The fields a decision covers, each with its own band (``policy.fields``)."""


class FieldPolicy(_Strict):
    """The band of one field: at or above ``apply_at`` its value is written; from ``suggest_at``
    up to ``apply_at`` it goes into an internal note marked for review (and waits in the review
    queue); below ``suggest_at`` it is recorded only. Unset keys take the tenant's."""

    mode: Mode | None = Field(default=None, description="apply, suggest or shadow.")
    apply_at: float | None = Field(
        default=None, ge=0, le=1, description="Confidence at or above which the value is written."
    )
    suggest_at: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Confidence from which the value is suggested for review (below: recorded).",
    )


def _value(holder: object, key: str) -> Any:
    if isinstance(holder, dict):
        return holder.get(key)
    return getattr(holder, key, None)


def one_spelling(data: Any, *, where: str) -> Any:
    """The category's band can be written three ways (``apply_at`` = its older name
    ``min_confidence`` = ``fields.category.apply_at``; ``suggest_at`` =
    ``fields.category.suggest_at``; ``mode`` = ``fields.category.mode``): refuse spellings that
    disagree, then keep the value under every top-level name and drop ``fields.category``."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    fields = data.get("fields")
    category = None
    if isinstance(fields, dict) and "category" in fields:
        fields = dict(fields)
        category = fields.pop("category")
        data["fields"] = fields
    spellings = {
        "apply_at": (
            ("apply_at", data),
            ("min_confidence", data),
            ("fields.category.apply_at", category),
        ),
        "suggest_at": (("suggest_at", data), ("fields.category.suggest_at", category)),
        "mode": (("mode", data), ("fields.category.mode", category)),
    }
    for setting, names in spellings.items():
        given = {
            name: value
            for name, holder in names
            if holder is not None and (value := _value(holder, name.rsplit(".", 1)[-1])) is not None
        }
        values = {str(v) for v in given.values()}
        if len(values) > 1:
            said = ", ".join(f"{where}.{name} = {value}" for name, value in given.items())
            raise ValueError(
                f"{said} are one setting ({setting}) with different values; "
                "fix: keep only one of them"
            )
        if given:
            value = next(iter(given.values()))
            if setting != "mode" and not _is_confidence(value):
                # left where it was written: its own check names that key, once
                if any(name.startswith("fields.") for name in given):
                    data["fields"] = {**data["fields"], "category": category}
                continue
            data[setting] = value
            if setting == "apply_at":
                data["min_confidence"] = value
    return data


def _is_confidence(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1


class Policy(_Strict):
    """What psatriage may do with a decision.

    The category's band: at or above ``apply_at`` (its older name: ``min_confidence``, the same
    setting) the category is written; from ``suggest_at`` up to ``apply_at`` it goes into an
    internal note marked for review and waits in the review queue; below ``suggest_at`` the
    decision is recorded only. Replacing a category a person set needs
    ``min_confidence_to_change``.
    """

    mode: Mode = Field(default=Mode.APPLY, description="apply, suggest (note only) or shadow.")
    apply_at: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Confidence at or above which the category is written (when the ticket has "
        "none). The same setting as min_confidence: set one of them.",
    )
    min_confidence: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="The older name of apply_at (the same setting): confidence needed to fill an "
        "empty category.",
    )
    suggest_at: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="From this confidence up to apply_at the category goes into an internal note "
        "marked for review and waits in the review queue; below it the decision is recorded "
        "only (nothing is written to the PSA).",
    )
    min_confidence_to_change: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Confidence needed to replace a non-empty category (the apply_at of a "
        "replacement; below it, the review band).",
    )
    fields: dict[str, FieldPolicy] = Field(
        default_factory=dict,
        description="Bands per field, e.g. fields.category = { apply_at = 0.9 } (for the "
        "category the same settings as the keys above). Fields: " + ", ".join(FIELDS) + ".",
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

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        data = one_spelling(data, where="policy")
        if isinstance(data, dict) and data.get("min_confidence_to_change") is None:
            # unset, replacing needs at least what filling needs
            default = cls.model_fields["min_confidence_to_change"].default
            floor = data.get("apply_at")  # not a confidence: the field's own check says so
            data["min_confidence_to_change"] = max(default, floor if _is_confidence(floor) else 0)
        return data

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, fields: dict[str, FieldPolicy]) -> dict[str, FieldPolicy]:
        return known_fields(fields)

    @model_validator(mode="after")
    def _thresholds(self) -> Policy:
        if self.min_confidence_to_change < self.apply_at:
            raise ValueError(
                "min_confidence_to_change must be at least min_confidence (apply_at): "
                "replacing a category needs more certainty than filling an empty one; fix: "
                "raise min_confidence_to_change or lower min_confidence"
            )
        if self.suggest_at > self.apply_at:
            raise ValueError(
                f"suggest_at ({self.suggest_at}) is above apply_at ({self.apply_at}): the review "
                "band would run backwards; fix: lower suggest_at or raise apply_at"
            )
        for name, band in self.fields.items():
            apply_at = self.apply_at if band.apply_at is None else band.apply_at
            suggest_at = self.suggest_at if band.suggest_at is None else band.suggest_at
            if suggest_at > apply_at:
                raise ValueError(
                    f"fields.{name}: suggest_at ({suggest_at}) is above apply_at ({apply_at}); "
                    "fix: lower suggest_at or raise apply_at"
                )
        return self


def known_fields(fields: dict[str, FieldPolicy]) -> dict[str, FieldPolicy]:
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise ValueError(
            f"no field named {', '.join(map(repr, unknown))}; fix: use one of " + ", ".join(FIELDS)
        )
    return fields


class PolicyOverride(_Strict):
    """Per-company changes to the tenant's policy; unset keys keep the tenant's value."""

    mode: Mode | None = None
    apply_at: float | None = Field(default=None, ge=0, le=1)
    min_confidence: float | None = Field(default=None, ge=0, le=1)
    suggest_at: float | None = Field(default=None, ge=0, le=1)
    min_confidence_to_change: float | None = Field(default=None, ge=0, le=1)
    fields: dict[str, FieldPolicy] | None = None
    overwrite: Overwrite | None = None
    report_errors: bool | None = None
    locked: tuple[str, ...] | None = None
    excluded: tuple[str, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        return one_spelling(data, where="policy")

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, fields: dict[str, FieldPolicy] | None) -> dict[str, FieldPolicy] | None:
        return None if fields is None else known_fields(fields)


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
    fields: dict[FieldName, FieldOverride] = Field(
        default_factory=dict,
        description="Per-field settings for this company: enabled (false: the field is off for "
        "it), priority: at_least. A field's band is companies.X.policy.fields.",
    )

    @model_validator(mode="after")
    def _at_least_is_for_priority(self) -> CompanyOverride:
        for name, override in self.fields.items():
            if override.at_least is not None and name != "priority":
                raise ValueError(f"fields.{name}.at_least: at_least is for the priority only")
        return self


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
        "engine's shortlist goes to the classifier (0: never shortlist); a shortlist by a model "
        "trained on the tenant's history keeps at most this many.",
    )
    shortlist_size: int = Field(
        default=80,
        ge=2,
        description="How many candidates a zero-shot shortlist keeps: the local engine's "
        "likeliest branches whole, then its best single leaves. With a model trained on the "
        "tenant's history the shortlist keeps every leaf that model, weighed with the history, "
        "finds at least a tenth as likely as a uniform guess (see docs/PERFORMANCE.md for the "
        "recall and prompt size each gives).",
    )
    large_trees: Literal["shortlist", "branch_first"] = Field(
        default="shortlist",
        description="How a ticket with more than shortlist_above candidates is narrowed: "
        "'shortlist' (the local engine's shortlist, one model call) or 'branch_first' (an LLM "
        "first chooses a branch among all of the tree's first level or first two levels, then a "
        "category of that branch: two model calls, every leaf reachable). The local and hybrid "
        "classifiers always shortlist.",
    )


class OutcomeSettings(_Strict):
    """How the outcome sweep follows decided tickets to learn what they ended up as."""

    sweep_every_minutes: int = Field(
        default=15,
        ge=1,
        le=1440,
        description="How often the tenant's outcome sweep runs (one process at a time).",
    )
    check_every_hours: float = Field(
        default=24,
        gt=0,
        le=720,
        description="How often a decided ticket that is still open is read again (an update "
        "notification from the PSA makes it due at once).",
    )
    recheck_after_days: float = Field(
        default=7,
        ge=0,
        le=365,
        description="A ticket seen closed is read once more this long after, for a category "
        "changed at or after closing; then its outcome is settled.",
    )
    give_up_after_days: float = Field(
        default=30,
        gt=0,
        le=365,
        description="A ticket still open this long after the decision is settled as it stands.",
    )
    max_reads_per_sweep: int = Field(
        default=200,
        ge=1,
        le=10_000,
        description="At most this many tickets read per sweep (in list queries where the PSA "
        "can filter by id).",
    )
    keep_for_new_tickets: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Share of the tenant's PSA call window kept for new tickets: the sweep "
        "stops while the window is fuller than 1 minus this. It also waits while new tickets "
        "of the tenant wait.",
    )


class CategoryHint(_Strict):
    """What a category means at this MSP, for one category key or path prefix."""

    description: str = Field(
        default="",
        max_length=500,
        description="What belongs in the category, in the MSP's words (replaces the PSA's "
        "description and taxonomy.descriptions).",
    )
    hints: tuple[str, ...] = Field(
        default=(),
        description="Words or short phrases typical of its tickets (e.g. 'toner', 'paper "
        "jam'); shown to the model and added to the local engine's zero-shot text.",
    )

    @field_validator("hints")
    @classmethod
    def _short_hints(cls, hints: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(h.strip() for h in hints if h.strip())
        for hint in cleaned:
            if len(hint) > 100:
                raise ValueError(f"hint {hint[:30]!r}... is longer than 100 characters")
        if len(cleaned) > 20:
            raise ValueError("at most 20 hints per category")
        return cleaned


_PERIOD = re.compile(r"^(\d+)\s*([hdw])$")
_PERIOD_SECONDS = {"h": 3600, "d": 86400, "w": 7 * 86400}


def period_seconds(text: str) -> float | None:
    """``7d``, ``12h``, ``2w`` in seconds; None for ``off`` (or ``0d``)."""
    value = text.strip().lower()
    if value in {"off", "never", "0"}:
        return None
    match = _PERIOD.match(value)
    if match is None:
        raise ValueError(f"{text!r} is not a period such as 7d, 12h or 2w, nor 'off'")
    seconds = int(match.group(1)) * _PERIOD_SECONDS[match.group(2)]
    return float(seconds) if seconds else None


class LearningSettings(_Strict):
    """Learning from corrections, fills and reviews (docs/learning.md)."""

    retrain_every: str = Field(
        default="7d",
        description="How often the local engine's model is retrained on the tenant's history "
        "and labeled examples ('7d', '12h', '2w'; 'off' never). A retrained model replaces the "
        "one in use only when it scores better on the same held-out recent tickets. Only for "
        "tenants whose classifier is local or hybrid.",
    )
    held_out: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="The share of the newest closed tickets a retrain holds out to compare "
        "the new model with the one in use (tickets the model in use learned are left out).",
    )
    min_held_out: int = Field(
        default=20,
        ge=1,
        description="Fewer held-out tickets than this: the retrain is not compared and the "
        "new model is kept as a candidate for 'psatriage model promote' (unless there is no "
        "model yet: then it is used).",
    )
    history_days: int = Field(
        default=365,
        ge=0,
        le=3650,
        description="The retrain reads closed tickets created in this many days from the PSA "
        "(0: examples only and no PSA calls; with no recent closed tickets to compare on, a "
        "retrained model then waits for a person to promote it).",
    )
    history_limit: int = Field(
        default=5000, ge=1, description="At most this many closed tickets per retrain."
    )
    examples: int = Field(
        default=3,
        ge=0,
        le=10,
        description="LLM classifiers: how many of the tenant's labeled examples most like the "
        "ticket (same client company first) are shown in the prompt; 0 turns it off.",
    )
    example_chars: int = Field(
        default=400,
        ge=50,
        le=4000,
        description="Each example shown in the prompt is cut to this many characters.",
    )

    @field_validator("retrain_every")
    @classmethod
    def _period(cls, value: str) -> str:
        period_seconds(value)
        return value.strip().lower()

    @property
    def retrain_seconds(self) -> float | None:
        return period_seconds(self.retrain_every)


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


class Budget(_Strict):
    """What the tenant's tickets may spend on models. When one is reached, tickets are recorded
    as over_budget (no model asked; an error note only if policy.report_errors) until the day or
    month turns (UTC), and /readyz and /metrics show it."""

    max_model_calls_per_day: int | None = Field(
        default=None,
        ge=1,
        description="Model calls a day (UTC) for this tenant's tickets; unset: no limit. Local "
        "engine calls are free and not counted.",
    )
    max_cost_per_month: float | None = Field(
        default=None,
        gt=0,
        description="Estimated model cost in USD a calendar month (UTC), from the classifier's "
        "price table (classifier.prices or the shipped estimates); unset: no limit. An "
        "unpriced model costs 0 here: give it a price to enforce this.",
    )

    @property
    def limited(self) -> bool:
        return self.max_model_calls_per_day is not None or self.max_cost_per_month is not None


def parse_poll_start(value: str) -> datetime | None:
    """``poll_start`` as naive UTC (None for "now"); a ``ValueError`` that shows the forms."""
    if value.strip().lower() == "now":
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{value!r} is neither 'now' nor an ISO date such as '2026-11-01'"
        ) from None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


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
    poll_start: str = Field(
        default="now",
        description="Where the first poll of a new tenant starts: 'now' (tickets created before "
        "psatriage first polled are left alone; psatriage backfill categorizes them) or a date "
        "such as '2026-11-01' (every ticket created since is queued on the first poll).",
    )
    retention_days: int | None = Field(
        default=None,
        ge=1,
        le=36500,
        description="Days ticket-derived text is kept (the model's reasoning, event reasons that "
        "may quote it, backtest results); older text is blanked by housekeeping and by "
        "psatriage purge. Unset: kept for ever.",
    )
    record_retention_days: int | None = Field(
        default=None,
        ge=1,
        le=36500,
        description="Days events, decisions and model calls are kept; older rows are deleted "
        "after their counts are added to the daily totals (daily_counts). Unset: kept for ever. "
        "At least retention_days.",
    )
    backfill_call_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of the tenant's PSA call limit psatriage backfill may use: it takes a "
        "call only while fewer than this share of the window's calls are used (by every process, "
        "where limits are shared), so new tickets keep the rest.",
    )
    max_workers: int | None = Field(
        default=None,
        ge=1,
        le=512,
        description="Most tickets of this tenant a worker process has at the classifier at "
        "once (its bulkhead; it holds 1 + PSATRIAGE_WORKER_LOOKAHEAD times as many). Default: "
        "PSATRIAGE_TENANT_SHARE of the workers when several tenants are configured, all of them "
        "for a lone tenant.",
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
    categories: dict[str, CategoryHint] = Field(
        default_factory=dict,
        description="Per category key or path prefix ('Hardware > Printer'): description and "
        "hints, used in the prompt and by the local engine's zero-shot scoring.",
    )
    learning: LearningSettings = Field(default_factory=LearningSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    outcomes: OutcomeSettings = Field(default_factory=OutcomeSettings)
    companies: dict[str, CompanyOverride] = Field(default_factory=dict)
    budget: Budget = Field(default_factory=Budget)
    fields: FieldsSettings = Field(default_factory=FieldsSettings)
    storm_window_minutes: int = Field(
        default=0,
        ge=0,
        le=1440,
        description="Alert storms: a ticket of the same client company whose normalized title "
        "and description match one decided within this many minutes reuses that decision "
        "without a model call (0: off).",
    )

    @field_validator("poll_start")
    @classmethod
    def _poll_start(cls, value: str) -> str:
        parse_poll_start(value)
        return value

    @model_validator(mode="after")
    def _retention(self) -> RawTenant:
        text, records = self.retention_days, self.record_retention_days
        if text is not None and records is not None and records < text:
            raise ValueError(
                "record_retention_days must be at least retention_days (deleting a row deletes "
                "its text too)"
            )
        return self

    @model_validator(mode="after")
    def _company_at_least_in_order(self) -> RawTenant:
        order = {name.casefold() for name in self.fields.priority.order}
        for company, override in self.companies.items():
            wanted = override.fields.get("priority")
            at_least = wanted.at_least if wanted is not None else None
            if at_least is not None and at_least.casefold() not in order:
                raise ValueError(
                    f"companies.{company}.fields.priority.at_least {at_least!r} is not in "
                    "fields.priority.order; list it there"
                )
        return self
