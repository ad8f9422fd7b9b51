"""Alert storms: many tickets from one client company saying the same thing (a monitoring
system re-alerting, a mail loop), decided once.

``key`` reduces a ticket to its company and its title and description with the parts that vary
between alerts (numbers, times, IP addresses, GUIDs) blanked out. Within the tenant's
``storm_window_minutes`` a ticket whose key matches a decision already made reuses that decision
without a model call (``psatriage.pipeline``); ``LOCK`` makes the tickets of one storm wait for
the first one's decision instead of each asking the model, across worker processes (the lock is
held in the deployment's shared store, ``psatriage.shared``).
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from psatriage.domain import Ticket
from psatriage.shared.limits import ConcurrencyLimit

_VARIABLE: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # GUIDs
    r"|\b0x[0-9a-f]+\b"  # hex numbers
    r"|\d+(?:[.,:/-]\d+)*",  # numbers, times, dates, IP addresses, versions
    re.IGNORECASE,
)
_SPACE: Final = re.compile(r"\s+")

LOCK: Final = ConcurrencyLimit(1, scope="storms", max_wait=30.0)
"""One decision at a time per storm key: the first ticket asks the model, the others wait (up to
30 s, then the job is rescheduled) and find its decision."""


def normalized(text: str) -> str:
    """``text`` lower-cased, with what varies between alerts replaced by ``#``."""
    return _SPACE.sub(" ", _VARIABLE.sub("#", text.casefold())).strip()


def key(ticket: Ticket) -> str:
    """The storm key: the client company and the normalized title and description."""
    company = ticket.company_id or ticket.company_name or ""
    text = "\x1f".join((company, normalized(ticket.title), normalized(ticket.description)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]
