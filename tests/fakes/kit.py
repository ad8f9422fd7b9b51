"""What the shared adapter contract suite needs from each PSA's fake.

Every ``tests/fakes/<module>.py`` whose adapter is registered defines ``kit() -> ContractKit``;
``tests/psa/test_contract.py`` runs the same checks against every adapter through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.base import FakeServer

Delivery = tuple[bytes, dict[str, str]]


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
    """

    psa: str
    fake: FakeServer
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
