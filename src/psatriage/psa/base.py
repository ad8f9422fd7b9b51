"""The one interface every PSA adapter implements.

An adapter is built per tenant from its validated ``Config`` and an ``httpx.Client`` made by
``psatriage.http.make_client``. Its calls go through a ``psatriage.psa.client.PSAClient``, which
maps vendor and HTTP failures into the error tree of ``psatriage.errors`` with one ladder for every
PSA; nothing else leaks out. What every ``Config`` shares is here too: unknown keys refused, the
short retries of a 429, and the mixins for call limits and webhook secret rotation.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import ClassVar, Generic, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from psatriage.domain import (
    Category,
    LabeledTicket,
    NewTicket,
    Taxonomy,
    Ticket,
    TicketEvent,
)
from psatriage.secrets import Secret
from psatriage.shared.limits import CallLimits

PATH_TOKEN_HEADER = "x-psatriage-path-token"  # noqa: S105 - a header name, not a secret
"""``verify`` finds the secret segment of ``/webhooks/{tenant}/{token}`` under this header name.

The web edge sets it from the URL path and drops any such header the sender sent, so it can only
ever hold what was in the path."""


class AdapterConfig(BaseModel):
    """Base of every adapter's ``Config``: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_limit_retries: int = Field(
        default=2, ge=0, le=5, description="Retries of a 429 answer inside one call."
    )
    max_rate_limit_wait_seconds: float = Field(
        default=2.0,
        ge=0.1,
        le=30,
        description="Longest wait for a 429 inside a call; a longer Retry-After reschedules the "
        "ticket instead.",
    )

    def webhook_config_problem(self) -> str | None:
        """Why this connection cannot take webhooks (asked when the trigger uses them), or None."""
        return None


class CallLimitsConfig(BaseModel):
    """Mixed into adapter configs whose PSA limits calls per tenant and per endpoint: a window for
    all calls together and a cap on calls in flight per endpoint. The defaults are a conservative
    guess for PSAs that publish no limit (ConnectWise, HaloPSA); a PSA that publishes its own
    (Autotask) sets them in its config."""

    requests_per_window: int = Field(
        default=300,
        ge=1,
        le=100_000,
        description="Client-side cap on calls to the PSA per window for this tenant, all "
        "endpoints (and token requests) together. The PSA publishes no number; 300 a minute (5 a "
        "second) is a conservative guess that leaves room for other integrations. A call past "
        "it is not sent and the ticket waits its turn; lower it if the PSA answers 429.",
    )
    window_seconds: float = Field(
        default=60.0, ge=1, le=86_400, description="Length of that window in seconds."
    )
    concurrent_per_endpoint: int = Field(
        default=4,
        ge=1,
        le=32,
        description="Calls in flight at once per endpoint (e.g. GET tickets/{id}) from all "
        "worker processes. Not published by the PSA; lower it if the PSA answers 429.",
    )

    def call_limits(self, scope: str) -> CallLimits:
        """The limiter for one tenant (``scope`` such as ``"halopsa:acme"``)."""
        return CallLimits(
            per_window=self.requests_per_window,
            window_seconds=self.window_seconds,
            per_endpoint=False,
            concurrent_per_endpoint=self.concurrent_per_endpoint,
            scope=scope,
        )


class RotatingWebhookSecret(BaseModel):
    """Mixed into adapter configs whose PSA signs webhooks with a shared secret: during a
    rotation, the previous secret is still accepted until ``webhook_secret_previous_until``."""

    webhook_secret_previous: Secret | None = Field(
        default=None,
        description="While rotating: the old webhook secret, still accepted until "
        "webhook_secret_previous_until (deliveries already queued in the PSA carry it).",
    )
    webhook_secret_previous_until: datetime | None = Field(
        default=None,
        description="When the old webhook secret stops being accepted (ISO 8601, e.g. "
        "2026-12-01T00:00:00Z).",
    )

    @model_validator(mode="after")
    def _rotation_has_an_end(self) -> RotatingWebhookSecret:
        if (self.webhook_secret_previous is None) != (self.webhook_secret_previous_until is None):
            raise ValueError(
                "webhook_secret_previous and webhook_secret_previous_until go together: a "
                "rotation must end"
            )
        return self

    def previous_webhook_secret(self, now: datetime | None = None) -> SecretStr | None:
        """The old secret while its grace period lasts, else None."""
        until = self.webhook_secret_previous_until
        if self.webhook_secret_previous is None or until is None:
            return None
        moment = now or datetime.now(UTC)
        deadline = until if until.tzinfo else until.replace(tzinfo=UTC)
        return self.webhook_secret_previous if moment < deadline else None


_ORIGIN = re.compile(r"^https?://[a-z0-9.\-]+(:\d{1,5})?$", re.IGNORECASE)


def origin_url(value: str, *, example: str) -> str:
    """A config value that must be an origin (``scheme://host[:port]``): lower-case, without a
    trailing slash; else a ``ValueError`` that shows ``example``."""
    value = value.rstrip("/")
    if not _ORIGIN.match(value):
        raise ValueError(f"{value!r} is not an origin such as {example!r} (no path)")
    return value.lower()


ConfigT = TypeVar("ConfigT", bound=AdapterConfig)


class PSAAdapter(ABC, Generic[ConfigT]):
    """A PSA, as psatriage needs it. Subclasses set ``kind`` and ``Config``."""

    kind: ClassVar[str]
    Config: ClassVar[type[AdapterConfig]]
    default_trigger: ClassVar[str] = "webhook"  # what a tenant gets without ``trigger = ...``
    needs_token_cache: ClassVar[bool] = False
    """Whether the adapter holds an access token that the worker processes should share
    (``psatriage.psa.tokens.TokenCache``); the Runtime sets up the shared store where one does."""

    def __init__(self, tenant: str, config: ConfigT, http: httpx.Client) -> None:
        self.tenant = tenant
        self.config = config
        self.http = http

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tenant={self.tenant!r})"

    @abstractmethod
    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Prove the webhook came from this tenant's PSA; raise ``WebhookRejected`` if not.

        ``headers`` keys are lower-case. Runs before anything is parsed or stored. A secret path
        segment (``/webhooks/{tenant}/{token}``) arrives as ``headers[PATH_TOKEN_HEADER]``.
        """

    def verify_needs_io(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether ``verify`` would wait on the network for this delivery (a signing key not
        fetched yet). The web server runs such a delivery on a thread instead of its event loop.
        Default: no (signatures and secrets are checked in memory)."""
        return False

    @abstractmethod
    def parse(self, body: bytes) -> TicketEvent | None:
        """Read a verified webhook body.

        Returns ``None`` when the body is about something other than a ticket, an event with
        ``actionable=False`` for ticket events we do not act on, and raises ``WebhookRejected``
        (status 400) only when the body is malformed.
        """

    @abstractmethod
    def get_ticket(self, ticket_id: str) -> Ticket:
        """Read the ticket as it is now, with its description and current category."""

    @abstractmethod
    def get_taxonomy(self, ticket: Ticket) -> Taxonomy:
        """Read the valid, active category leaves for the ticket's scope (``ticket.scope``)."""

    @abstractmethod
    def set_category(self, ticket: Ticket, category: Category) -> None:
        """Write the category onto the ticket. Raise ``CategoryRejected`` if the PSA refuses it.

        ``category.path`` may end with facet values (``Category.with_facets``): every level in
        the path is a field to write.
        """

    @abstractmethod
    def add_note(self, ticket: Ticket, text: str) -> None:
        """Add an internal note, hidden from the end user and sending no e-mail."""

    @abstractmethod
    def find_note(self, ticket: Ticket, marker: str) -> bool:
        """Whether a note containing ``marker`` is already on the ticket."""

    @abstractmethod
    def register_webhook(self, url: str) -> str:
        """Create the PSA's webhook/callback entry that calls ``url``; return its PSA id."""

    def problems(self) -> list[str]:
        """Conditions an operator must fix (e.g. the PSA deactivated our webhook), for /readyz.

        The default has none; adapters that learn of such conditions report them here.
        """
        return []

    @classmethod
    def can_poll(cls) -> bool:
        """Whether this adapter implements ``list_new_tickets`` (the polling trigger)."""
        return cls.list_new_tickets is not PSAAdapter.list_new_tickets

    def list_new_tickets(self, since: datetime) -> list[NewTicket]:
        """Tickets created at or after ``since`` (for the polling trigger), oldest first.

        Adapters opt in to polling by implementing this; the default says they have not.
        """
        raise NotImplementedError(f"{self.kind} does not support polling")

    @classmethod
    def can_list_history(cls) -> bool:
        """Whether this adapter implements ``list_labeled_tickets`` (training from the PSA)."""
        return cls.list_labeled_tickets is not PSAAdapter.list_labeled_tickets

    def list_labeled_tickets(self, since: datetime, limit: int) -> list[LabeledTicket]:
        """Closed tickets created at or after ``since`` that carry a category, newest first, at
        most ``limit`` (paged, within the adapter's rate limits): the local engine's training data.
        """
        raise NotImplementedError(f"{self.kind} cannot read labeled history")

    def list_scopes(self) -> list[tuple[str, str]]:
        """The scopes that own category trees, as ``(id, name)`` (e.g. ConnectWise boards).

        PSAs with a single tree return one scope; the default says there is nothing to list.
        """
        return []

    def ticket_url(self, ticket_id: str) -> str | None:
        """Where a person opens the ticket in the PSA's web interface, if the adapter knows it
        without a call (the console links decisions to it); the default knows none."""
        return None

    @abstractmethod
    def check_connection(self) -> str:
        """Make one cheap authenticated call; return a short description of what answered."""
