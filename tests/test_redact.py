"""PII redaction on a small corpus: what is masked, what is kept, and that only counts remain."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from psatriage.domain import Ticket
from psatriage.redact import Redactor, describe

CORPUS = [
    ("Mail me at jane.doe+it@contoso.co.uk please", "email", "jane.doe"),
    ("Call +1 (555) 123-4567 after 5", "phone", "123-4567"),
    ("My number is 0171 234 5678", "phone", "234 5678"),
    ("The server 10.0.12.7 is down", "ip", "10.0.12.7"),
    ("Gateway fe80::1ff:fe23:4567:890a unreachable", "ip", "fe80::1ff"),
    ("Charged on card 4111 1111 1111 1111 twice", "card", "4111"),
    ("password: Hunter2! for the VPN", "secret", "Hunter2!"),
    ("API key = sk-live-abcdef0123", "secret", "sk-live"),
    ("the wifi pwd is tulips2024", "secret", "tulips2024"),
]
KEPT = [
    "Printer on floor 3 jams, ticket 12345",
    "Windows 11 update KB5031356 failed",
    "Order 1234 5678 9012 3456 is not a card (fails Luhn)",
    "Meeting at 10.30 tomorrow",
]


@pytest.mark.parametrize(("text", "kind", "secret"), CORPUS)
def test_masks_each_kind(text: str, kind: str, secret: str) -> None:
    counts: Counter[str] = Counter()
    masked = Redactor().text(text, counts)
    assert secret not in masked
    assert counts[kind] >= 1, (masked, counts)


@pytest.mark.parametrize("text", KEPT)
def test_keeps_ordinary_ticket_text(text: str) -> None:
    counts: Counter[str] = Counter()
    assert Redactor().text(text, counts) == text
    assert not counts


def test_tenant_patterns_and_switching_off() -> None:
    custom = Redactor(patterns={"employee_id": re.compile(r"EMP-\d{5}")})
    counts: Counter[str] = Counter()
    assert custom.text("badge EMP-01234 lost", counts) == "badge [EMPLOYEE_ID] lost"
    assert counts == {"employee_id": 1}
    assert Redactor(enabled=False).text("jane@contoso.com", Counter()) == "jane@contoso.com"


def test_ticket_redaction_counts_only() -> None:
    ticket = Ticket(
        id="1",
        title="VPN for jane@contoso.com",
        description="password: x1y2z3, call 555 123 4567",
        initial_note="ip 192.168.1.20",
        scope="1",
    )
    masked, counts = Redactor().ticket(ticket)
    assert "jane@contoso.com" not in masked.title and "x1y2z3" not in masked.description
    assert counts == {"email": 1, "ip": 1, "phone": 1, "secret": 1}
    assert describe(counts) == "1 email, 1 ip, 1 phone, 1 secret"
    assert masked.id == ticket.id and masked.scope == ticket.scope
