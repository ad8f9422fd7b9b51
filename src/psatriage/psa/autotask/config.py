"""The connection table of an Autotask tenant (``[tenants.X.connection]``, psa = "autotask")."""

from __future__ import annotations

from typing import Literal

import httpx
from pydantic import Field, SecretStr, field_validator

from psatriage.errors import ConfigError
from psatriage.psa.base import AdapterConfig, CallLimitsConfig, RotatingWebhookSecret
from psatriage.secrets import Secret

FACET_LABELS = {"queueID": "Queue", "ticketCategory": "Ticket category", "priority": "Priority"}
FacetName = Literal["queueID", "ticketCategory", "priority"]
PORTAL_VISIBLE = "all autotask users"  # publish value 1: visible in the client portal


class AutotaskConfig(AdapterConfig, RotatingWebhookSecret, CallLimitsConfig):
    """The ``[tenants.X.connection]`` table of an Autotask tenant."""

    username: str = Field(
        description="The API user's user name (an e-mail address): the UserName header, also "
        "used for zone discovery and to find the API user's own resource."
    )
    secret: Secret = Field(description="The API user's password (env:NAME or file:PATH).")
    integration_code: Secret = Field(
        description="The API tracking identifier chosen for the API user, sent as "
        "ApiIntegrationCode (env:NAME or file:PATH)."
    )
    webhook_secret: Secret | None = Field(
        default=None,
        description="Shared secret (1-64 characters) that signs webhook deliveries "
        "(X-Hook-Signature); set on the webhook by 'psatriage webhooks register'. Needed when "
        'the tenant takes webhooks (trigger webhook or both), not for trigger = "poll".',
    )
    discovery_url: str = Field(
        default="https://webservices.autotask.net/ATServicesRest",
        description="Where the zone of the API user is asked (zoneInformation); override for "
        "tests.",
    )
    zone_url: str | None = Field(
        default=None,
        description="The zone's REST root, e.g. "
        "'https://webservices5.autotask.net/ATServicesRest'; skips discovery. Leave unset: "
        "databases move between zones.",
    )
    api_resource_id: int | None = Field(
        default=None,
        ge=1,
        description="Resource id of the API user (events it causes are ignored); looked up by "
        "username when unset.",
    )
    facets: tuple[FacetName, ...] = Field(
        default=(),
        description="Ticket fields the model sets beside issue type › sub-issue type: any of "
        "'queueID', 'ticketCategory', 'priority'.",
    )
    note_publish: str = Field(
        default="Internal Project Team",
        description="Label of the TicketNotes 'publish' value used for our notes; must be an "
        "internal one ('All Autotask Users' is visible in the client portal and refused).",
    )
    note_type: str = Field(
        default="Task Notes",
        description="Label of the TicketNotes 'noteType' value; the picklist's default when "
        "absent.",
    )
    note_title: str = Field(
        default="psatriage", min_length=1, max_length=250, description="Title of our notes."
    )
    webhook_name: str = Field(
        default="psatriage", min_length=1, max_length=50, description="Name of the webhook."
    )
    webhook_field: str = Field(
        default="Status",
        description="Label of the ticket field the webhook subscribes to (Autotask needs one to "
        "make a webhook ready; update events stay off).",
    )
    notification_email: str | None = Field(
        default=None, description="Address Autotask e-mails when deliveries keep failing."
    )
    page_size: int = Field(default=500, ge=1, le=500, description="Records per query page (1-500).")
    requests_per_window: int = Field(
        default=10_000,
        ge=1,
        description="Client-side cap on calls per window for this tenant (Autotask allows 10,000 "
        "an hour per database, shared by every integration).",
    )
    window_seconds: float = Field(default=3600.0, gt=0, description="Length of that window.")
    concurrent_per_endpoint: int = Field(
        default=3, ge=1, le=3, description="Calls in flight per object endpoint (Autotask: 3)."
    )
    threshold_check_at: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Share of the window used after which ThresholdInformation is asked how busy "
        "the database is (calls pause at 95% of Autotask's threshold).",
    )

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value.strip()):
            raise ValueError("give the API user's user name, without spaces")
        return value.strip()

    @field_validator("discovery_url", "zone_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            url = httpx.URL(value.strip())
        except httpx.InvalidURL:
            raise ValueError(
                "must be a URL such as 'https://webservices.autotask.net/...'"
            ) from None
        if url.scheme not in {"http", "https"} or not url.host or url.query or url.userinfo:
            raise ValueError("must be an http(s) URL without query or credentials")
        return str(url).rstrip("/")

    @field_validator("webhook_secret")
    @classmethod
    def _secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not 1 <= len(value.get_secret_value()) <= 64:
            raise ValueError("Autotask accepts a webhook secret of 1 to 64 characters")
        return value

    def webhook_config_problem(self) -> str | None:
        """Webhooks are signed with ``webhook_secret``: a tenant that takes them needs one."""
        if self.webhook_secret is None:
            return (
                "webhooks need connection.webhook_secret (1-64 characters, env:NAME or "
                'file:PATH); fix: set it, or use trigger = "poll"'
            )
        return None

    def signing_secret(self) -> SecretStr:
        """``webhook_secret``, which a tenant that takes webhooks always has (the loader checks
        ``webhook_config_problem``); a ``ConfigError`` otherwise."""
        if self.webhook_secret is None:
            raise ConfigError(
                "this Autotask tenant has no connection.webhook_secret; fix: set it to take "
                "webhooks"
            )
        return self.webhook_secret

    @field_validator("note_publish")
    @classmethod
    def _internal_only(cls, value: str) -> str:
        if value.strip().casefold() == PORTAL_VISIBLE:
            raise ValueError(
                "'All Autotask Users' notes are visible in the client portal; use an internal "
                "value such as 'Internal Project Team'"
            )
        return value.strip()

    @field_validator("facets")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("name each facet once")
        return value
