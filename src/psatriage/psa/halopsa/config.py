"""The ``[tenants.X.connection]`` table of a HaloPSA tenant (``HaloPSAConfig``)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from psatriage.psa.base import AdapterConfig, CallLimitsConfig, RotatingWebhookSecret
from psatriage.secrets import Secret

_URL = re.compile(r"^https?://[A-Za-z0-9.\-]+(:\d{1,5})?(/[A-Za-z0-9._~\-/]*)?$", re.IGNORECASE)
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_NAME = re.compile(r"^[A-Za-z0-9._:\- ]+$")
_PATH_TOKEN = re.compile(r"^[A-Za-z0-9._~\-]{16,256}$")


def _as_strings(value: object) -> object:
    """TOML may give ticket type ids as integers; keep them as strings."""
    if isinstance(value, list | tuple):
        return tuple(str(v) if isinstance(v, int) else v for v in value)
    return value


def _url(value: str) -> str:
    value = value.strip().rstrip("/")
    if not _URL.match(value):
        raise ValueError("must be an address such as 'https://acme.halopsa.com' (no query)")
    scheme, rest = value.split("://", 1)
    host, _, path = rest.partition("/")
    if "//" in path or ".." in path.split("/"):
        raise ValueError("the path must not hold '//' or '..'")
    return f"{scheme.lower()}://{host.lower()}" + (f"/{path}" if path else "")


class HaloPSAConfig(AdapterConfig, RotatingWebhookSecret, CallLimitsConfig):
    """The ``[tenants.X.connection]`` table of a HaloPSA tenant."""

    url: str = Field(
        description="Your Halo web address, e.g. 'https://acme.halopsa.com'; the API is "
        "{url}/api (a trailing /api is dropped)."
    )
    client_id: str = Field(description="Client ID of the API application (client credentials).")
    client_secret: Secret = Field(description="Client secret of the API application.")
    tenant: str | None = Field(
        default=None,
        description="Tenant name, sent as ?tenant= to the token endpoint of hosted multi-tenant "
        "instances; unset: the tenant_id /api/authinfo gives, if any.",
    )
    scope: str = Field(
        default="all", description="OAuth2 scope(s) to ask for, space-separated, e.g. 'all'."
    )
    auth_url: str | None = Field(
        default=None,
        description="Authorisation server (the token endpoint is {auth_url}/token); unset: read "
        "from {url}/api/authinfo, falling back to {url}/auth.",
    )
    token_refresh_margin_seconds: float = Field(
        default=60, ge=0, le=3600, description="Renew the access token this long before it expires."
    )
    webhook_auth: Literal["hmac", "basic", "header"] = Field(
        default="hmac",
        description="How Halo proves its webhook calls with webhook_secret: 'hmac' (base64 "
        "HMAC-SHA256 of the body in webhook_header), 'basic' (Basic auth "
        "webhook_username:webhook_secret) or 'header' (webhook_secret itself in webhook_header).",
    )
    webhook_secret: Secret | None = Field(
        default=None,
        description="Shared secret of the webhook, used as webhook_auth says: the HMAC key, the "
        "Basic password or the header value.",
    )
    webhook_path_token: Secret | None = Field(
        default=None,
        description="A secret path segment: Halo calls /webhooks/NAME/<token>, and calls without "
        "it are refused (at least 16 of A-Z a-z 0-9 . _ ~ -). A tenant that takes webhooks needs "
        "webhook_secret, this, or both.",
    )
    webhook_header: str = Field(
        default="Token", description="Header carrying the signature or secret ('hmac', 'header')."
    )
    webhook_username: str = Field(
        default="psatriage", description="User name of the Basic credentials ('basic')."
    )
    new_ticket_notifications: tuple[int, ...] = Field(
        default=(),
        description="Halo notification ids that mean 'new ticket' (the webhook's event bindings); "
        "when set, a delivery's notification_id decides. Empty: the event number or text does.",
    )
    ticket_types: Annotated[tuple[str, ...], BeforeValidator(_as_strings)] = Field(
        default=(),
        description="Ticket type ids or names to categorize; empty means every ticket type.",
    )
    set_ticket_type: bool = Field(
        default=False,
        description="Let the model choose the ticket type too (it becomes the first level of the "
        "tree); otherwise only the category allowed for the ticket's own type is set.",
    )
    category_field: int = Field(
        default=1, ge=1, le=4, description="Which of Halo's category fields is the tree (1-4)."
    )
    category_separator: str = Field(
        default=">",
        description="Separator of levels inside a category value ('Hardware>Printer'); '' when "
        "values hold no hierarchy.",
    )
    facets: tuple[Literal["priorityid"], ...] = Field(
        default=(),
        description="Fields the model sets beside the category: 'priorityid' (a priority of the "
        "ticket's SLA).",
    )
    note_outcome: str = Field(
        default="Private Note",
        description="Action outcome of the note (looked up by name at run time).",
    )
    dont_do_rules: bool = Field(
        default=False,
        description="Send dont_do_rules with the category write, so Halo's ticket rules do not "
        "run on it.",
    )
    page_size: int = Field(default=100, ge=1, le=100, description="Records per page (1-100).")

    @field_validator("url")
    @classmethod
    def _instance_url(cls, value: str) -> str:
        value = _url(value)
        return value[: -len("/api")] if value.endswith("/api") else value

    @field_validator("auth_url")
    @classmethod
    def _auth_url(cls, value: str | None) -> str | None:
        return None if value is None else _url(value)

    @field_validator("webhook_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not _HEADER.match(value):
            raise ValueError("must be an HTTP header name such as 'Token'")
        return value

    @field_validator("tenant", "scope", "note_outcome")
    @classmethod
    def _plain(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("use letters, digits, spaces and . _ : - only")
        return value

    @model_validator(mode="after")
    def _checks(self) -> HaloPSAConfig:
        if self.webhook_secret is not None and not self.webhook_secret.get_secret_value():
            raise ValueError("webhook_secret is empty")
        token = self.webhook_path_token
        if token is not None and not _PATH_TOKEN.match(token.get_secret_value()):
            raise ValueError(
                "webhook_path_token must be at least 16 characters of A-Z a-z 0-9 . _ ~ - "
                "(e.g. from: python -c 'import secrets; print(secrets.token_urlsafe(24))')"
            )
        if len(set(self.facets)) != len(self.facets):
            raise ValueError("facets lists a field twice")
        return self

    def webhook_config_problem(self) -> str | None:
        """Every HaloPSA webhook must authenticate: a shared secret, a path token, or both."""
        if self.webhook_secret is None and self.webhook_path_token is None:
            return (
                "a HaloPSA tenant that takes webhooks needs webhook_secret (with webhook_auth "
                "'hmac', 'basic' or 'header') or webhook_path_token; fix: set one of them to "
                "env:NAME or file:PATH"
            )
        return None
