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

The package: ``schema`` (the tables as written, pydantic models), ``tenant`` (a validated tenant
and the settings that apply to one ticket) and ``loader`` (the file into ``AppConfig``).
"""

from __future__ import annotations

from psatriage.config.loader import TENANT_NAME, load_config, parse_config
from psatriage.config.schema import (
    FIELDS,
    Budget,
    CategoryHint,
    CompanyOverride,
    FieldPolicy,
    LearningSettings,
    Mode,
    OutcomeSettings,
    Overwrite,
    Policy,
    PolicyOverride,
    PrivacySettings,
    PromptSettings,
    RawTenant,
    TaxonomySettings,
    Trigger,
)
from psatriage.config.tenant import AppConfig, Effective, Tenant, category_matches

__all__ = [
    "FIELDS",
    "TENANT_NAME",
    "AppConfig",
    "Budget",
    "CategoryHint",
    "CompanyOverride",
    "Effective",
    "FieldPolicy",
    "LearningSettings",
    "Mode",
    "OutcomeSettings",
    "Overwrite",
    "Policy",
    "PolicyOverride",
    "PrivacySettings",
    "PromptSettings",
    "RawTenant",
    "TaxonomySettings",
    "Tenant",
    "Trigger",
    "category_matches",
    "load_config",
    "parse_config",
]
