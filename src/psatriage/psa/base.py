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
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Self, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from psatriage.domain import (
    Category,
    ClosedTicket,
    Facet,
    LabeledTicket,
    NewTicket,
    Taxonomy,
    Ticket,
    TicketEvent,
    TicketState,
)
from psatriage.errors import NotFound
from psatriage.secrets import Secret
from psatriage.shared.limits import CallLimits

TITLE_LEVEL = "title"
"""A ``set_category`` path value at this level rewrites the ticket's title: its ``id`` (and
``name``) is the new title (``fields.summary.rewrite_generic_titles``)."""

PATH_TOKEN_HEADER = "x-psatriage-path-token"  # noqa: S105 - a header name, not a secret
"""``verify`` finds the secret segment of ``/webhooks/{tenant}/{token}`` under this header name.

The web edge sets it from the URL path and drops any such header the sender sent, so it can only
ever hold what was in the path."""


WINDOW_LIMIT_KEYS = ("requests_per_window", "calls_per_hour")
"""Connection keys holding a calls-per-window limit (``AdapterConfig.with_call_share``)."""


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

    def with_call_share(self, share: float) -> Self:
        """This connection with its per-window call limit cut to ``share`` of it (at least one
        call): the same counters under a lower ceiling, so a bulk run under it only takes calls
        while the tenant's traffic leaves that much room, and never more than its share."""
        for key in WINDOW_LIMIT_KEYS:
            limit = getattr(self, key, None)
            if isinstance(limit, int):
                return self.model_copy(update={key: max(1, int(limit * share))})
        return self


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
    ticket_fields: ClassVar[frozenset[str]] = frozenset()
    """The ticket fields (``psatriage.fields``) this PSA stores beside the category: ``priority``
    and ``routing`` (the board, queue or team), whose live values ``field_values`` lists, and
    ``title`` (a rewrite of a generic title, ``TITLE_LEVEL``)."""
    field_facets: ClassVar[Mapping[str, str]] = {}
    """Ticket fields that a facet of ``Config.facets`` also sets (field -> facet): a tenant uses
    one or the other, never both."""
    routing_sets_scope: ClassVar[bool] = False
    """Whether routing moves the ticket to another category tree (a ConnectWise board): routing
    is then decided first and the category chosen within the chosen scope's tree."""
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

    def warm_up(self) -> None:
        """Find out once what every ticket's first call would otherwise stop to find out (a
        ConnectWise codebase, an Autotask zone): a new worker process runs this before its first
        ticket. Raises the error tree like any call; default: nothing to find out."""

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

    @classmethod
    def keeps_snapshots(cls) -> bool:
        """Whether ``parse`` keeps the delivered ticket (``TicketEvent.snapshot``) and
        ``ticket_from_snapshot`` reads less with it."""
        return cls.ticket_from_snapshot is not PSAAdapter.ticket_from_snapshot

    def ticket_from_snapshot(self, ticket_id: str, snapshot: Mapping[str, Any]) -> Ticket:
        """The ticket as ``get_ticket`` reads it, from the snapshot ``parse`` kept with its event
        plus only the reads the snapshot cannot stand for (ConnectWise: the notes). The caller
        decides whether the snapshot is still fresh. PSAs whose deliveries carry no ticket keep
        no snapshots; for them this is ``get_ticket``."""
        return self.get_ticket(ticket_id)

    @abstractmethod
    def get_taxonomy(self, ticket: Ticket) -> Taxonomy:
        """Read the valid, active category leaves for the ticket's scope (``ticket.scope``)."""

    @abstractmethod
    def set_category(self, ticket: Ticket, category: Category) -> None:
        """Write the category onto the ticket. Raise ``CategoryRejected`` if the PSA refuses it.

        ``category.path`` may end with facet values and ticket field values
        (``Category.with_facets``): every level in the path is a field to write, all in one
        update. A path with no level of the category tree writes only the fields it names. A
        value at ``TITLE_LEVEL`` rewrites the title (its ``id`` is the new title).
        """

    def field_values(self, ticket: Ticket, field: str) -> Facet:
        """The live, active values of a ticket field (one of ``ticket_fields``) for this ticket:
        a ``Facet`` named after the field whose options carry, as ``level``, the PSA field that
        ``set_category`` writes. Read through the taxonomy cache (``field_scope``)."""
        raise NotImplementedError(f"{self.kind} does not store the ticket field {field!r}")

    def field_scope(self, ticket: Ticket, field: str) -> str:
        """What a field's values depend on, for the cache: the field alone by default (a PSA
        whose values differ per ticket, such as HaloPSA's priorities per SLA, adds to it)."""
        return field

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

    def list_labeled_tickets(
        self, since: datetime, limit: int, *, until: datetime | None = None
    ) -> list[LabeledTicket]:
        """Closed tickets created at or after ``since`` (and before ``until``, when given) that
        carry a category, newest first, at most ``limit`` (paged, within the adapter's rate
        limits): the local engine's training data, and ``psatriage export``'s.
        """
        raise NotImplementedError(f"{self.kind} cannot read labeled history")

    state_batch_size: ClassVar[int] = 1
    """How many tickets ``read_ticket_states`` reads in one list query (1: one call each)."""
    state_endpoint: ClassVar[str] = ""
    """Where the PSA counts calls per endpoint: the endpoint ``read_ticket_states`` reads (the
    outcome sweep leaves room on it for new tickets)."""

    def read_ticket_states(self, ticket_ids: Sequence[str]) -> dict[str, TicketState]:
        """The category, closed flag and last changer of each ticket, for the outcome sweep:
        at most ``state_batch_size`` ids per list query where the PSA can filter a list by id,
        else one read per ticket, all within the tenant's call limits. A ticket missing from the
        answer is gone (deleted, or merged away). The default reads each ticket with
        ``get_ticket``, which cannot tell a closed ticket."""
        states: dict[str, TicketState] = {}
        for ticket_id in ticket_ids:
            try:
                ticket = self.get_ticket(ticket_id)
            except NotFound:
                continue
            states[ticket_id] = TicketState(ticket.id, ticket.scope, ticket.current, closed=False)
        return states

    @classmethod
    def can_read_time(cls) -> bool:
        """Whether this adapter implements ``list_closed_tickets`` and ``time_spent`` (reports)."""
        return (
            cls.list_closed_tickets is not PSAAdapter.list_closed_tickets
            and cls.time_spent is not PSAAdapter.time_spent
        )

    def list_closed_tickets(self, since: datetime, until: datetime) -> list[ClosedTicket]:
        """Tickets closed at or after ``since`` and before ``until`` (naive means UTC), oldest
        closed first, with their category, company and times: the facts reports are made of.
        Paged, within the adapter's call limits; tickets without a category are included."""
        raise NotImplementedError(f"{self.kind} cannot list closed tickets")

    def time_spent(self, ticket_ids: Sequence[str]) -> dict[str, float]:
        """Hours of time recorded on each ticket of ``ticket_ids`` (0.0 for a ticket without any),
        read in batches as large as the PSA allows, within the adapter's call limits.

        Raises ``TimeUnavailable`` (naming the permission to grant) when the PSA will not show
        the API user time entries."""
        raise NotImplementedError(f"{self.kind} cannot read time spent on tickets")

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
