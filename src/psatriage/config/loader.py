"""Reading the tenants file: TOML into ``AppConfig``, every problem explained on one line.

Each ``[tenants.NAME]`` table is checked against ``RawTenant``, then its connection and classifier
tables against the chosen adapter's and classifier's ``Config``, and its templates are compiled.
A bad file raises ``ConfigError`` with one line per problem naming the tenant, the key and the fix.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from psatriage.classifiers import classifiers
from psatriage.config.fields import NOISE_KINDS, STORED_FIELDS
from psatriage.config.schema import PromptSettings, RawTenant, Trigger, parse_poll_start
from psatriage.config.tenant import AppConfig, Tenant
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

TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


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
        raw = RawTenant.model_validate(body)
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

    lines += _unstorable_fields(name, raw, adapter_cls.ticket_fields)
    lines += _fields_and_facets(name, raw, adapter_cls.field_facets, None if lines else connection)
    templates, template_problems = _compile_templates(name, raw.prompt, base)
    lines += template_problems
    if lines:
        raise _TenantProblems(lines)
    tenant = Tenant(
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
        outcomes=raw.outcomes,
        fields=raw.fields,
        storm_window_minutes=raw.storm_window_minutes,
        categories=raw.categories,
        learning=raw.learning,
        budget=raw.budget,
        poll_start=parse_poll_start(raw.poll_start),
        retention_days=raw.retention_days,
        record_retention_days=raw.record_retention_days,
        backfill_call_share=raw.backfill_call_share,
        max_workers=raw.max_workers,
        psa_timeout_seconds=raw.psa_timeout_seconds,
    )
    return _company_policies_hold(tenant)


def _company_policies_hold(tenant: Tenant) -> Tenant:
    """Each company's policy merged with the tenant's must hold together (bands in order)."""
    lines: list[str] = []
    for company, override in tenant.companies.items():
        try:
            tenant.policy_with(override)
        except ValidationError as exc:
            lines += _explain(tenant.name, exc, prefix=f"companies.{company}.policy")
    if lines:
        raise _TenantProblems(lines)
    return tenant


def _unstorable_fields(name: str, raw: RawTenant, stored: frozenset[str]) -> list[str]:
    """A field enabled that the tenant's PSA cannot store, one line each."""
    lines = [
        f"tenant {name!r}, key 'fields.enabled': the {raw.psa} adapter cannot store the "
        f"{field} field; fix: remove {field!r} from fields.enabled"
        for field in raw.fields.enabled
        if field in STORED_FIELDS and field not in stored
    ]
    lines += [
        f"tenant {name!r}, key 'companies.{company}.fields.{field}.enabled': the {raw.psa} "
        f"adapter cannot store the {field} field; fix: remove the key"
        for company, override in raw.companies.items()
        for field, settings in override.fields.items()
        if settings.enabled and field in STORED_FIELDS and field not in stored
    ]
    if raw.fields.summary.rewrite_generic_titles and "title" not in stored:
        lines.append(
            f"tenant {name!r}, key 'fields.summary.rewrite_generic_titles': the {raw.psa} adapter "
            "cannot rewrite titles; fix: set it to false"
        )
    if "routing" not in stored:
        lines += [
            f"tenant {name!r}, key 'fields.noise.{kind}.routing': the {raw.psa} adapter cannot "
            "route tickets; fix: remove it"
            for kind in NOISE_KINDS
            if raw.fields.noise.action_for(kind).routing
        ]
    if "status" not in stored:
        lines += [
            f"tenant {name!r}, key 'fields.noise.{kind}.status': the {raw.psa} adapter cannot "
            "set a ticket's status; fix: remove it"
            for kind in NOISE_KINDS
            if raw.fields.noise.action_for(kind).status
        ]
    return lines


def _fields_and_facets(
    name: str, raw: RawTenant, facets: Mapping[str, str], connection: object
) -> list[str]:
    """A field enabled whose PSA field is also one of the connection's facets (``connection``:
    None when it did not validate)."""
    listed = set(getattr(connection, "facets", None) or ())
    return [
        f"tenant {name!r}, key 'connection.facets': {facets[field]!r} is set by the {field} "
        f"field too; fix: remove {facets[field]!r} from connection.facets (or {field!r} from "
        "fields.enabled)"
        for field in raw.fields.enabled
        if facets.get(field) in listed
    ]


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
    "float_type": "write a number",
    "int_type": "write a whole number",
    "bool_parsing": "write true or false",
    "string_type": "write a quoted string",
    "url_parsing": "write a full URL such as https://host/path",
    "value_error": "correct the value (docs/configuration.md)",
}


def _explain(tenant: str, exc: ValidationError, *, prefix: str = "") -> list[str]:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        key = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        message = error["msg"].removeprefix("Value error, ")
        if "; fix: " in message:  # the message says the fix itself
            lines.append(f"tenant {tenant!r}, key {key!r}: {message}")
            continue
        fix = _FIXES.get(error["type"], "correct the value")
        lines.append(f"tenant {tenant!r}, key {key!r}: {message}; fix: {fix}")
    return lines
