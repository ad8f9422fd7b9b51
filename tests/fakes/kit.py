"""What the adapter contract suite needs from each PSA's fake.

Every ``tests/fakes/<name>`` whose adapter is registered defines ``kit() -> ContractKit`` (a
started fake and the ways to drive it) and ``CASES`` (its case tables, read when the tests are
collected); ``tests/psa/contract/`` runs the same checks against every adapter through them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from psatriage.domain import Ticket
from tests.fakes.base import FakePSA

Delivery = tuple[bytes, dict[str, str]]
Change = Callable[[bytes, dict[str, str]], Delivery]
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture(psa: str, name: str) -> Any:
    """A sample of the PSA reference, from ``tests/fixtures/<psa>/<name>``."""
    return json.loads((FIXTURES / psa / name).read_text(encoding="utf-8"))


def replaced(payload: Mapping[str, Any], **keys: Any) -> bytes:
    """``payload`` as a JSON body with top-level keys replaced (a None value removes the key)."""
    changed = {**payload, **keys}
    return json.dumps({k: v for k, v in changed.items() if v is not None}).encode()


@dataclass(frozen=True)
class ParseCase:
    """A webhook body and the ``TicketEvent`` fields ``parse`` must give (None: not about a
    ticket, ``parse`` answers None), with the tenant's ``connection`` overrides."""

    id: str
    body: bytes
    expected: Mapping[str, Any] | None
    connection: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Malformed:
    """A body ``parse`` refuses with ``WebhookRejected(400)`` whose message matches ``message``."""

    id: str
    body: bytes
    message: str


@dataclass(frozen=True)
class Refused:
    """A correctly signed "ticket created" delivery, changed by ``change``, that ``verify``
    refuses with ``status``; ``fake`` are attributes set on the fake first (how it signs)."""

    id: str
    change: Change
    status: int = 401
    fake: Mapping[str, Any] = field(default_factory=dict)
    connection: Mapping[str, Any] = field(default_factory=dict)  # the tenant's, to match
    title: str = "Printer on floor 3"  # of the ticket the delivery is about


@dataclass(frozen=True)
class ErrorCase:
    """The PSA answers ``get_ticket``'s read with ``status`` (``headers``, ``body``): the adapter
    raises ``error`` (exactly; a 429 as its subclass ``RateLimited``) matching ``message``."""

    id: str
    status: int
    error: type[Exception]
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True)
class BadConfig:
    """Connection overrides (None removes a key) the ``Config`` refuses, matching ``message``."""

    overrides: Mapping[str, Any]
    message: str = ""

    @property
    def id(self) -> str:
        return str(dict(self.overrides))


@dataclass(frozen=True)
class Concurrency:
    """Connection overrides that cap calls in flight at ``cap`` per endpoint; ``endpoint`` is how
    the fake names the endpoint of ``get_ticket``'s read (``FakeServer.endpoint_key``)."""

    overrides: Mapping[str, Any]
    cap: int
    endpoint: Callable[[Any], str]
    id: str = "cap"


@dataclass(frozen=True)
class Rotation:
    """A webhook secret being rotated, the old one ``still_valid`` or past its grace period."""

    id: str
    still_valid: bool


ROTATION = (Rotation("in grace", still_valid=True), Rotation("expired", still_valid=False))
"""The rotation cases of a PSA whose ``Config`` is a ``RotatingWebhookSecret``."""


@dataclass(frozen=True)
class Cases:
    """One PSA's case tables (static: read at collection, before any fake starts)."""

    parse: Sequence[ParseCase] = ()
    malformed: Sequence[Malformed] = ()
    refused: Sequence[Refused] = ()
    errors: Sequence[ErrorCase] = ()
    bad_config: Sequence[BadConfig] = ()
    concurrency: Sequence[Concurrency] = ()
    rotation: Sequence[Rotation] = ()
    window: Callable[[int], dict[str, Any]] = lambda calls: {"requests_per_window": calls}
    """Connection overrides that allow ``calls`` calls per window (to an endpoint, where the PSA
    counts per endpoint)."""
    connection_check: str = ""  # what ``check_connection`` says about the fake (a regex)
    bad_credentials: tuple[str, str, str] = ("", "", "")
    """An environment variable of the connection, a wrong value for it, and what the PSA's
    refusal says (a regex)."""
    taxonomy_shows: Sequence[str] = ()  # what ``psatriage taxonomy show`` prints for the fake
    taxonomy_hides: Sequence[str] = ()  # and what it leaves out (inactive values)


@dataclass
class ContractKit:
    """A started fake and the ways to drive it, for one PSA.

    ``new_ticket(title, description)`` creates an uncategorized ticket and returns its id (str);
    ``created(ticket_id)`` is a correctly signed "ticket created" delivery for it, and
    ``updated(ticket_id)`` a correctly signed delivery of an event we do not act on;
    ``tamper(delivery)`` breaks its signature/authentication;
    ``category_writes(ticket_id)`` lists the category writes the fake received for the ticket;
    ``notes(ticket_id)`` the texts of the internal notes on it (ours and people's);
    ``fail_path`` is a regex of a path the adapter calls in ``get_ticket`` (for failure injection);
    ``secrets`` are credential values that must never appear in a repr, log or message.

    ``add_note(ticket_id, text)`` adds a person's note; ``categorized()`` creates a categorized
    ticket and gives its id and the ``Ticket`` ``get_ticket`` must read;
    ``history_ticket(title, created, categorized, closed)`` creates a ticket of the past and
    ``history_path`` is a regex of the list ``list_labeled_tickets`` reads;
    ``registrations()`` counts the webhooks registered in the fake;
    ``field_value(ticket_id, field)`` is the id the fake holds for a ticket field (``priority``,
    ``routing``), as a string.

    For the outcome sweep: ``close(ticket_id)`` closes the ticket as a technician would,
    ``delete(ticket_id)`` deletes it, and ``touch(ticket_id, person)`` records ``person`` (a PSA
    user id) as the last to change it, where the PSA says who did.
    For reports: ``closed_ticket(title, created, closed, category, company)`` creates a ticket
    closed at ``closed`` with the category ``report_categories[category]`` (None: none) for the
    company ``report_companies[company]``; ``add_time(ticket_id, hours)`` records time on it;
    ``deny_time()`` makes the PSA refuse the API user time entries; ``time_path`` is a regex of
    the path ``time_spent`` reads.
    """

    psa: str
    fake: FakePSA
    connection: dict[str, Any]
    env: dict[str, str]
    new_ticket: Callable[[str, str], str]
    created: Callable[[str], Delivery]
    updated: Callable[[str], Delivery]
    tamper: Callable[[Delivery], Delivery]
    category_writes: Callable[[str], list[Any]]
    notes: Callable[[str], list[str]]
    fail_path: Callable[[str], str]
    secrets: list[str] = field(default_factory=list)
    webhook_path_suffix: str = ""  # e.g. a secret path segment some PSAs authenticate with
    cases: Cases = field(default_factory=Cases)
    add_note: Callable[[str, str], object] | None = None
    categorized: Callable[[], tuple[str, Ticket]] | None = None
    history_ticket: Callable[[str, datetime, bool, bool], str] | None = None
    history_path: str = ""
    registrations: Callable[[], int] | None = None
    close: Callable[[str], object] | None = None
    delete: Callable[[str], object] | None = None
    touch: Callable[[str, str], object] | None = None
    closed_ticket: Callable[[str, datetime, datetime, int | None, int], str] | None = None
    add_time: Callable[[str, float], object] | None = None
    deny_time: Callable[[], object] | None = None
    time_path: str = ""
    report_categories: tuple[str, ...] = ()
    report_companies: tuple[str, ...] = ("Contoso Ltd", "Fabrikam Inc")
    field_value: Callable[[str, str], str | None] | None = None


def kit_of(psa: str, fake: FakePSA, **ways: Any) -> ContractKit:
    """The kit of a started ``fake``: its own connection table and environment, and ``ways``
    (the other fields of ``ContractKit``)."""
    return ContractKit(
        psa=psa, fake=fake, connection=fake.connection_config(), env=fake.secret_env(), **ways
    )
