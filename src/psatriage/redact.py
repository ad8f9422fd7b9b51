"""PII redaction: what is masked in a ticket's text before it leaves for a model.

Masked by default: e-mail addresses, phone numbers, IP addresses, payment card numbers (Luhn-valid),
and secrets written as ``password: value`` / ``api key = value``; tenants add their own patterns.
Each match becomes ``[EMAIL]``, ``[PHONE]``... so the model still sees that something was there.
Only the counts per kind are kept (in the model-call log and the note), never the values.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from psatriage.domain import Ticket

_SECRET = re.compile(
    r"(?i)\b(pass(?:word|wd|code)?|pwd|pin|secret|api[ _-]?key|token|credentials?)"
    r"(\s*(?:is|[:=])\s*)(\S+)"
)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
_IPV6 = re.compile(r"(?i)\b(?:[0-9a-f]{1,4}:){2,7}[0-9a-f]{1,4}\b|\b(?:[0-9a-f]{1,4}:){1,6}:")
_PHONE = re.compile(
    r"(?<![\w.])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}\b"
)

LABELS = {
    "secret": "SECRET",
    "email": "EMAIL",
    "card": "CARD",
    "ip": "IP",
    "phone": "PHONE",
}


@dataclass(frozen=True)
class Redactor:
    """Masks PII in text. ``patterns`` are a tenant's own, by name (masked as ``[NAME]``)."""

    enabled: bool = True
    patterns: Mapping[str, re.Pattern[str]] = field(default_factory=dict)

    def text(self, text: str, counts: Counter[str]) -> str:
        if not self.enabled or not text:
            return text
        text = _SECRET.sub(lambda m: m.group(1) + m.group(2) + _mask(counts, "secret"), text)
        text = _EMAIL.sub(lambda m: _mask(counts, "email"), text)
        text = _CARD.sub(lambda m: _card(m, counts), text)
        text = _IPV4.sub(lambda m: _mask(counts, "ip"), text)
        text = _IPV6.sub(lambda m: _mask(counts, "ip"), text)
        text = _PHONE.sub(lambda m: _phone(m, counts), text)
        for name, pattern in self.patterns.items():
            text = pattern.sub(_masker(counts, name), text)
        return text

    def ticket(self, ticket: Ticket) -> tuple[Ticket, dict[str, int]]:
        """The ticket as the model may see it, and how many items of each kind were masked."""
        counts: Counter[str] = Counter()
        masked = replace(
            ticket,
            title=self.text(ticket.title, counts),
            description=self.text(ticket.description, counts),
            initial_note=self.text(ticket.initial_note, counts),
        )
        return masked, dict(sorted(counts.items()))


def describe(counts: Mapping[str, int]) -> str:
    """``"2 email, 1 phone"`` — for notes and logs."""
    return ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)


def _mask(counts: Counter[str], kind: str) -> str:
    counts[kind] += 1
    return f"[{LABELS.get(kind, kind.upper())}]"


def _masker(counts: Counter[str], kind: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: _mask(counts, kind)


def _card(match: re.Match[str], counts: Counter[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if 13 <= len(digits) <= 19 and _luhn(digits):
        return _mask(counts, "card")
    return match.group(0)


def _phone(match: re.Match[str], counts: Counter[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if 7 <= len(digits) <= 15:  # E.164 numbers have at most 15 digits; dates and times fewer than 7
        return _mask(counts, "phone")
    return match.group(0)


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value *= 2
            value -= 9 if value > 9 else 0
        total += value
    return total % 10 == 0
