"""The connection table of a Kaseya BMS tenant (``KaseyaBMSConfig``) and the fields it names."""

from __future__ import annotations

import re
from datetime import UTC, tzinfo
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, field_validator

from psatriage.psa.base import AdapterConfig, RotatingWebhookSecret, origin_url
from psatriage.secrets import Secret
from psatriage.shared.limits import CallLimits

REGIONS = {
    "us": "https://api.bms.kaseya.com",
    "emea": "https://api.bmsemea.kaseya.com",
    "apac": "https://api.bmsapac.kaseya.com",
    "vorex": "https://api.vorexlogin.com",
}
LEVELS = ("IssueTypeId", "SubIssueTypeId")
SCOPE, SCOPE_NAME = "tickets", "Service Desk"
FACETS = {"TypeId": "Ticket type", "QueueId": "Queue", "PriorityId": "Priority"}
_FACET_NAMES = {
    **dict.fromkeys(("typeid", "type", "tickettype", "tickettypeid"), "TypeId"),
    **dict.fromkeys(("queueid", "queue"), "QueueId"),
    **dict.fromkeys(("priorityid", "priority"), "PriorityId"),
}
_TABLE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")
Scheme = Literal[
    "auto", "hmac-sha256-hex", "hmac-sha256-base64", "hmac-sha1-hex", "hmac-sha1-base64"
]


def _id_text(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class KaseyaBMSConfig(AdapterConfig, RotatingWebhookSecret):
    """The ``[tenants.X.connection]`` table of a Kaseya BMS tenant."""

    username: str = Field(description="User name of the BMS API user.")
    password: Secret = Field(description="The API user's password.")
    company: str = Field(description="The BMS tenant (company) name you log in with.")
    region: Literal["us", "emea", "apac", "vorex"] = Field(
        default="us",
        description="Regional API host: us (api.bms.kaseya.com), emea, apac or vorex; "
        "your Gateway URL under My Settings tells which.",
    )
    base_url: str | None = Field(
        default=None,
        description="Origin overriding the regional host (tests, proxies), e.g. "
        "'https://api.bms.kaseya.com'.",
    )
    webhook_secret: Secret | None = Field(
        default=None,
        description="Secret shared with the BMS webhook; needed when the tenant receives webhooks.",
    )
    signature_scheme: Scheme = Field(
        default="auto",
        description="How the Signature header is computed; 'auto' accepts every candidate "
        "(HMAC-SHA256/SHA1 of the raw body, hex or base64) and logs the one that matched.",
    )
    webhook_event: str = Field(
        default="Ticket Created",
        description="Name of the BMS webhook event to subscribe to (case and spaces ignored; "
        "category and name are also tried together, e.g. 'Ticket' + 'Created').",
    )
    webhook_content_type: int = Field(
        default=1,
        description="ContentType sent when registering the webhook; must make BMS send JSON.",
    )
    facets: tuple[str, ...] = Field(
        default=(),
        description="Fields the model sets beside the issue type: any of 'TypeId' (ticket "
        "type), 'QueueId', 'PriorityId'.",
    )
    ticket_type_table: str = Field(
        default="TicketType",
        description="Name of the /v2/system/lookup table holding ticket types.",
    )
    note_type: Annotated[str | None, BeforeValidator(_id_text)] = Field(
        default=None,
        description="Note type of psatriage's note: an id, or a name looked up at run time; "
        "unset takes the lookup's default.",
    )
    note_type_table: str = Field(
        default="NoteType",
        description="Name of the /v2/system/lookup table holding note types.",
    )
    page_size: int = Field(default=100, ge=1, le=1000, description="Records per page (1-1000).")
    calls_per_hour: int = Field(
        default=1500, ge=1, description="Client-side limit of calls per endpoint per window."
    )
    rate_window_seconds: float = Field(
        default=3600.0, gt=0, description="Length of the rate-limit window in seconds."
    )
    api_timezone: str = Field(
        default="UTC",
        description="Time zone of BMS timestamps that carry no offset (IANA name).",
    )

    @field_validator("base_url")
    @classmethod
    def _origin_only(cls, value: str | None) -> str | None:
        return None if value is None else origin_url(value, example="https://api.bms.kaseya.com")

    @field_validator("facets")
    @classmethod
    def _facet_names(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        names = []
        for value in values:
            name = _FACET_NAMES.get(value.replace("_", "").lower())
            if name is None:
                raise ValueError(f"{value!r} is not a facet; use TypeId, QueueId or PriorityId")
            if name not in names:
                names.append(name)
        return tuple(names)

    @field_validator("ticket_type_table", "note_type_table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        if not _TABLE.match(value):
            raise ValueError("must be a lookup table name such as 'TicketType'")
        return value

    @field_validator("api_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if value.upper() != "UTC":
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r}; use an IANA name") from exc
        return value

    def call_limits(self, scope: str) -> CallLimits:
        """BMS counts calls per endpoint: ``calls_per_hour`` for each, over its window."""
        return CallLimits(
            per_window=self.calls_per_hour,
            window_seconds=self.rate_window_seconds,
            per_endpoint=True,
            scope=scope,
        )

    @property
    def origin(self) -> str:
        return self.base_url or REGIONS[self.region]

    @property
    def zone(self) -> tzinfo:
        return UTC if self.api_timezone.upper() == "UTC" else ZoneInfo(self.api_timezone)

    def webhook_config_problem(self) -> str | None:
        """Why this connection cannot receive webhooks, or None (asked when webhooks are on)."""
        if self.webhook_secret is None:
            return (
                "webhooks need connection.webhook_secret (env:NAME or file:PATH); fix: generate "
                "one with: python -c 'import secrets; print(secrets.token_hex(32))', or use "
                'trigger = "poll"'
            )
        return None
