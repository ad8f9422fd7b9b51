"""A database that looks like a month of work: events, decisions and model calls spread over the
last ``days`` days, some failed and parked events. The browser tests take the console's
screenshots from it and ``bench/console.py`` fills 100,000 decisions with it.

Rows go in with bulk Core inserts (no pipeline runs), so 100,000 decisions take seconds.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, insert, select, text

from psatriage.store.tables import DecisionRow, EventRow, ModelCallRow, utcnow

CATEGORIES = (
    ("10/20/30", "Hardware › Printer › Paper jam"),
    ("10/20/31", "Hardware › Printer › Toner"),
    ("10/21/32", "Hardware › Laptop › Will not power on"),
    ("11/22/33", "Network › VPN › Cannot connect"),
    ("11/23/34", "Network › Wi-Fi › Slow"),
    ("12/24/35", "Accounts › Password › Reset"),
    ("12/25/36", "Accounts › New user › Onboarding"),
    ("13/26/37", "Email › Outlook › Not syncing"),
    ("13/27/38", "Email › Spam › Phishing report"),
    ("14/28/39", "Security › Endpoint › Malware alert"),
)
# outcome, share: most decisions are applied, a quarter are notes only
OUTCOMES = (("applied", 0.62), ("suggested", 0.24), ("shadowed", 0.09), ("kept", 0.05))
MODELS = (("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("local", "local-tfidf"))
FAILURES = (
    ("failed", "gave up after 6 attempts: the model could not be reached (HTTP 503)"),
    ("failed", "the model chose '99/1', which is not a candidate"),
    ("parked", "credentials refused: the PSA answered 401 Unauthorized"),
)
BATCH = 5_000


@dataclass(frozen=True)
class Seeded:
    decisions: int
    failed: int
    first_decision_id: int


def seed(
    engine: Engine,
    *,
    tenants: Sequence[str] = ("acme", "globex"),
    decisions: int = 300,
    failures: int = 6,
    days: int = 30,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> Seeded:
    """Add ``decisions`` finished decisions (one event and one model call each) and ``failures``
    failed or parked events, spread over the last ``days`` days."""
    rng = rng or random.Random(16)
    now = now or utcnow()
    with engine.connect() as connection:
        first = (connection.execute(select(func.max(EventRow.id))).scalar() or 0) + 1
    event_ids = iter(range(first, first + decisions + failures))
    # older decisions have smaller ids, as in a real database
    moments = sorted(
        now - timedelta(seconds=rng.uniform(0, days * 86400)) for _ in range(decisions)
    )
    outcomes, weights = zip(*OUTCOMES, strict=True)
    for offset in range(0, decisions, BATCH):
        events, rows, calls = [], [], []
        for index in range(offset, min(offset + BATCH, decisions)):
            event_id = next(event_ids)
            tenant = tenants[index % len(tenants)]
            at = moments[index]
            outcome = rng.choices(outcomes, weights)[0]
            key, label = rng.choice(CATEGORIES)
            engine_name, model = rng.choice(MODELS)
            tokens_in, tokens_out = rng.randint(380, 920), rng.randint(18, 64)
            cost = 0.0 if engine_name == "local" else _cost(model, tokens_in, tokens_out)
            kept = outcome == "kept"
            events.append(_event(event_id, tenant, at, state="kept" if kept else "done"))
            rows.append(
                {
                    "id": event_id,
                    "event_id": event_id,
                    "tenant": tenant,
                    "ticket_id": str(40_000 + event_id),
                    "ticket_key": f"{tenant}:{40_000 + event_id}",
                    "company_id": str(250 + index % 17),
                    "final": True,
                    "outcome": outcome,
                    "reason": "a person's category is kept" if kept else "confidence above 0.5",
                    "category_key": None if kept else key,
                    "category_label": "" if kept else label,
                    "category": None if kept else _category(key, label),
                    "previous": label if kept else "",
                    "replacing": False,
                    "confidence": None if kept else round(rng.uniform(0.35, 0.99), 2),
                    "confidence_source": "" if kept else "logprobs",
                    "reasoning": "" if kept else f"The ticket describes {label.split(' › ')[-1]}.",
                    "engine": "" if kept else engine_name,
                    "model": "" if kept else model,
                    "tokens_in": 0 if kept else tokens_in,
                    "tokens_out": 0 if kept else tokens_out,
                    "cost_usd": 0.0 if kept else cost,
                    "latency_ms": 0.0 if kept else rng.uniform(300, 1800),
                    "wrote_category": outcome == "applied",
                    "wrote_note": outcome in {"applied", "suggested"},
                    "redactions": None,
                    "created_at": at,
                    "updated_at": at,
                }
            )
            if not kept:
                calls.append(
                    {
                        "tenant": tenant,
                        "ticket_id": str(40_000 + event_id),
                        "event_id": event_id,
                        "engine": engine_name,
                        "model": model,
                        "template_hash": "4a33822dd7180050",
                        "taxonomy_hash": "d47dda40397c" * 4,
                        "tokens_in": tokens_in,
                        "tokens_out": tokens_out,
                        "latency_ms": rows[-1]["latency_ms"],
                        "cost_usd": cost,
                        "chosen_key": key,
                        "confidence": rows[-1]["confidence"],
                        "error": None,
                        "redactions": None,
                        "created_at": at,
                    }
                )
        with engine.begin() as connection:
            connection.execute(insert(EventRow), events)
            connection.execute(insert(DecisionRow), rows)
            if calls:
                connection.execute(insert(ModelCallRow), calls)
    failed = []
    for index in range(failures):
        state, reason = FAILURES[index % len(FAILURES)]
        at = now - timedelta(seconds=rng.uniform(0, days * 86400))
        tenant = tenants[index % len(tenants)]
        failed.append(_event(next(event_ids), tenant, at, state=state, reason=reason, attempts=6))
    with engine.begin() as connection:
        if failed:
            connection.execute(insert(EventRow), failed)
        if engine.dialect.name == "postgresql":  # ids were given: move the sequences past them
            for table in ("events", "decisions"):
                connection.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                        f"(SELECT coalesce(max(id), 1) FROM {table}))"
                    )
                )
    return Seeded(decisions, failures, first)


def _event(
    event_id: int,
    tenant: str,
    at: datetime,
    *,
    state: str = "done",
    reason: str = "",
    attempts: int = 1,
) -> dict[str, object]:
    return {
        "id": event_id,
        "tenant": tenant,
        "dedupe_key": f"seed:{event_id}:{at.timestamp()}",
        "ticket_id": str(30_000 + event_id),
        "action": "added",
        "source": "webhook",
        "state": state,
        "attempts": attempts,
        "reason": reason,
        "received_at": at,
        "updated_at": at,
        "lease_until": None,
        "next_attempt_at": None,
        "finished_at": at,
        "occurred_at": at,
    }


def _category(key: str, label: str) -> dict[str, object]:
    ids = key.split("/")
    names = label.split(" › ")
    levels = ("type", "subType", "item")
    path = [[level, ident, name] for level, ident, name in zip(levels, ids, names, strict=True)]
    return {"key": key, "path": path, "description": "", "facets": [], "levels": list(levels)}


def _cost(model: str, tokens_in: int, tokens_out: int) -> float:
    per_million = {"gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.0)}[model]
    return (tokens_in * per_million[0] + tokens_out * per_million[1]) / 1_000_000
