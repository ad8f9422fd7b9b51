"""Tenants: the TOML file that says, per MSP, which PSA to talk to and how to categorize.

::

    [tenants.acme]
    psa = "connectwise"

    [tenants.acme.connection]          # the adapter's own Config (see docs/configuration.md)
    site = "api-na.myconnectwise.net"
    company_id = "acme"
    public_key = "env:ACME_CW_PUBLIC"  # secrets are env:NAME or file:PATH, never plain text
    ...

    [tenants.acme.classifier]          # kind = "openai" (OpenAI, Azure OpenAI, compatible servers)
    model = "gpt-4o-mini"
    api_key = "env:OPENAI_API_KEY"

    [tenants.acme.policy]
    mode = "apply"

    [tenants.acme.companies."Contoso"] # per client company (by PSA id or name)
    ai_model_ticket_cat = "gpt-4o"     # = model
    ticket_cat_max_tokens = 400        # = max_tokens
    instructions = "Contoso calls its VPN 'the tunnel'."

Everything is validated when the file loads; a bad file raises ``ConfigError`` with one line per
problem naming the tenant, the key and the fix.
"""

from __future__ import annotations

import enum
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from psatriage.classifiers import classifiers
from psatriage.classifiers.base import ClassifierConfig
from psatriage.domain import Category
from psatriage.errors import ConfigError
from psatriage.prompts import (
    DEFAULT_ERROR_NOTE,
    DEFAULT_NOTE,
    DEFAULT_PROMPT,
    PromptTemplate,
    TextTemplate,
    compile_note,
    compile_prompt,
)
from psatriage.psa import adapters
from psatriage.psa.base import AdapterConfig
from psatriage.redact import Redactor

TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


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
        description="How many candidates a shortlist keeps (see docs/PERFORMANCE.md for the "
        "recall and prompt size this gives).",
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


class _RawTenant(_Strict):
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
    connection: dict[str, Any]
    classifier: dict[str, Any] = Field(default_factory=dict)
    policy: Policy = Field(default_factory=Policy)
    prompt: PromptSettings = Field(default_factory=PromptSettings)
    taxonomy: TaxonomySettings = Field(default_factory=TaxonomySettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    companies: dict[str, CompanyOverride] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Effective:
    """The settings that apply to one ticket: tenant settings with its company's overrides."""

    model: str | None
    max_tokens: int | None
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

    def __repr__(self) -> str:
        return f"Tenant(name={self.name!r}, psa={self.psa!r}, classifier={self.classifier_kind!r})"

    @property
    def polls(self) -> bool:
        return self.trigger is not Trigger.WEBHOOK

    @property
    def takes_webhooks(self) -> bool:
        return self.trigger is not Trigger.POLL

    def effective(self, company_id: str | None, company_name: str | None = None) -> Effective:
        override = self._company(company_id, company_name)
        if override is None:
            return Effective(None, None, self.instructions, self.policy)
        changes = override.policy.model_dump(exclude_none=True)
        policy = Policy.model_validate({**self.policy.model_dump(), **changes})
        instructions = "\n".join(t for t in (self.instructions, override.instructions) if t)
        return Effective(override.model, override.max_tokens, instructions, policy)

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


def load_config(path: Path, *, missing_ok: bool = False) -> AppConfig:
    """Read and validate the tenants file. ``missing_ok``: an absent file means no tenants."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return AppConfig(tenants={}, source=None)
        raise ConfigError(
            f"tenants file {path} does not exist; create it (see docs/configuration.md) "
            "or point PSATRIAGE_CONFIG at it"
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(raw, source=path)


def parse_config(raw: Mapping[str, Any], *, source: Path | None = None) -> AppConfig:
    unknown = set(raw) - {"tenants"}
    if unknown:
        raise ConfigError(
            f"unknown top-level key(s) {', '.join(sorted(unknown))}; fix: only [tenants.NAME] "
            "tables belong in the tenants file"
        )
    tenants_raw = raw.get("tenants", {})
    if not isinstance(tenants_raw, dict):
        raise ConfigError("'tenants' must be a table of [tenants.NAME] sections")
    problems: list[str] = []
    tenants: dict[str, Tenant] = {}
    for name, body in tenants_raw.items():
        try:
            tenants[name] = _build_tenant(name, body, base=source.parent if source else Path())
        except _TenantProblems as exc:
            problems.extend(exc.lines)
    if problems:
        where = f"{source}: " if source else ""
        raise ConfigError(where + "invalid tenants file\n" + "\n".join(problems))
    return AppConfig(tenants=tenants, source=source)


class _TenantProblems(Exception):
    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _build_tenant(name: str, body: Any, *, base: Path) -> Tenant:
    def problem(key: str, message: str, fix: str) -> _TenantProblems:
        return _TenantProblems([f"tenant {name!r}, key {key!r}: {message}; fix: {fix}"])

    if not TENANT_NAME.match(name):
        raise problem(
            "tenants." + name,
            "tenant names appear in webhook URLs",
            "use lower-case letters, digits, '-' and '_' (at most 63)",
        )
    if not isinstance(body, dict):
        raise problem("tenants." + name, "must be a table", f"write it as [tenants.{name}]")
    try:
        raw = _RawTenant.model_validate(body)
    except ValidationError as exc:
        raise _TenantProblems(_explain(name, exc)) from None

    adapter_cls = adapters().get(raw.psa)
    if adapter_cls is None:
        raise problem("psa", f"unknown PSA {raw.psa!r}", f"use one of {sorted(adapters())}")
    lines: list[str] = []
    trigger = raw.trigger or Trigger(adapter_cls.default_trigger)
    if trigger is not Trigger.WEBHOOK and not adapter_cls.can_poll():
        lines.append(
            f"tenant {name!r}, key 'trigger': the {raw.psa} adapter cannot poll for new tickets; "
            'fix: use trigger = "webhook"'
        )
    try:
        connection = adapter_cls.Config.model_validate(raw.connection)
    except ValidationError as exc:
        lines += _explain(name, exc, prefix="connection")
    else:
        unusable = connection.webhook_config_problem() if trigger is not Trigger.POLL else None
        if unusable:
            lines.append(f"tenant {name!r}, key 'connection': {unusable}")
    classifier_body = dict(raw.classifier)
    classifier_kind = str(classifier_body.pop("kind", "openai"))
    classifier_cls = classifiers().get(classifier_kind)
    if classifier_cls is None:
        lines.append(
            f"tenant {name!r}, key 'classifier.kind': unknown classifier {classifier_kind!r}; "
            f"fix: use one of {sorted(classifiers())}"
        )
    else:
        try:
            classifier = classifier_cls.Config.model_validate(classifier_body)
        except ValidationError as exc:
            lines += _explain(name, exc, prefix="classifier")

    templates, template_problems = _compile_templates(name, raw.prompt, base)
    lines += template_problems
    if lines:
        raise _TenantProblems(lines)
    return Tenant(
        name=name,
        psa=raw.psa,
        trigger=trigger,
        poll_seconds=raw.poll_seconds,
        poll_overlap_seconds=raw.poll_overlap_seconds,
        replay_window_seconds=raw.replay_window_seconds,
        connection=connection,
        classifier_kind=classifier_kind,
        classifier=classifier,
        policy=raw.policy,
        instructions=raw.prompt.instructions,
        prompt=templates["prompt.template"],
        note=templates["prompt.note_template"],
        error_note=templates["prompt.error_note_template"],
        taxonomy=raw.taxonomy,
        redactor=raw.privacy.redactor(),
        companies=raw.companies,
    )


def _compile_templates(
    name: str, prompt: PromptSettings, base: Path
) -> tuple[dict[str, Any], list[str]]:
    """Compile the tenant's prompt and note templates (or the defaults); list what is wrong."""
    lines: list[str] = []
    templates: dict[str, Any] = {}
    prompt_source = prompt.template
    if prompt.template_file is not None:
        file = (
            prompt.template_file
            if prompt.template_file.is_absolute()
            else base / prompt.template_file
        )
        try:
            prompt_source = file.read_text(encoding="utf-8")
        except OSError as exc:
            lines.append(
                f"tenant {name!r}, key 'prompt.template_file': cannot read {file}: "
                f"{exc.strerror}; fix: give a readable path (relative to the tenants file)"
            )
    for key, source, compile_ in (
        ("prompt.template", prompt_source or DEFAULT_PROMPT, _compile_prompt),
        ("prompt.note_template", prompt.note_template or DEFAULT_NOTE, _compile_note),
        (
            "prompt.error_note_template",
            prompt.error_note_template or DEFAULT_ERROR_NOTE,
            _compile_error_note,
        ),
    ):
        try:
            templates[key] = compile_(source, key)
        except ValueError as exc:
            lines.append(
                f"tenant {name!r}, key {key!r}: {exc}; fix: use only the variables listed in "
                "docs/configuration.md and close every tag"
            )
    return templates, lines


def _compile_prompt(source: str, key: str) -> PromptTemplate:
    return compile_prompt(source, name=key)


def _compile_note(source: str, key: str) -> TextTemplate:
    return compile_note(source, name=key)


def _compile_error_note(source: str, key: str) -> TextTemplate:
    return compile_note(source, name=key, error_note=True)


_FIXES = {
    "missing": "add this key",
    "extra_forbidden": "remove it or check its spelling (see docs/configuration.md)",
    "enum": "use one of the values listed",
    "literal_error": "use one of the values listed",
    "greater_than_equal": "raise the value",
    "less_than_equal": "lower the value",
    "int_parsing": "write a whole number",
    "float_parsing": "write a number",
    "bool_parsing": "write true or false",
    "string_type": "write a quoted string",
    "url_parsing": "write a full URL such as https://host/path",
    "value_error": "see the message",
}


def _explain(tenant: str, exc: ValidationError, *, prefix: str = "") -> list[str]:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        key = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        message = error["msg"].removeprefix("Value error, ")
        fix = _FIXES.get(error["type"], "correct the value")
        lines.append(f"tenant {tenant!r}, key {key!r}: {message}; fix: {fix}")
    return lines
