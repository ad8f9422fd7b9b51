"""The trust loop on every PSA: one in-process ``Runtime`` with a tenant per PSA (named after
it), each on its HTTP fake, and the fake OpenAI server answering with a confidence between the
bands, so every ticket becomes a suggestion waiting for review.

``Loop.suggest(psa)`` creates a ticket at the PSA's fake, runs its "ticket created" event
through the worker's job and returns the ticket id and its review.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psatriage import jobs
from psatriage.config import load_config
from psatriage.domain import Category, TicketEvent
from psatriage.psa import adapters
from psatriage.runtime import Runtime
from psatriage.settings import Settings
from psatriage.store.tables import EventState, ReviewRow
from tests.fakes.kit import ContractKit
from tests.fakes.openai import DEFAULT_API_KEY, FakeOpenAI
from tests.harness import OPENAI_KEY_ENV, kit_for, kit_tenant, to_toml

PSAS = sorted(adapters())
BANDS = {"apply_at": 0.95, "suggest_at": 0.2}
CONFIDENCE = 0.6  # between the bands


@dataclass
class Loop:
    runtime: Runtime
    kits: dict[str, ContractKit]
    llm: FakeOpenAI
    root: Path

    def suggest(self, psa: str, title: str = "Printer on floor 3") -> tuple[str, ReviewRow]:
        kit = self.kits[psa]
        ticket = kit.new_ticket(title, "My printer has a paper jam")
        event = TicketEvent(psa, ticket, "created", True, f"loop:{ticket}")
        event_id, _ = self.runtime.ledger.record(event, state=EventState.RECEIVED)
        assert jobs.process_event(self.runtime, event_id) is EventState.DONE
        (review,) = self.runtime.reviews.search(tenant=psa, ticket_id=ticket)
        return ticket, review

    def other_leaf(self, psa: str, ticket: str, *not_keys: str) -> Category:
        """An active leaf of the ticket's tree other than ``not_keys``."""
        adapter = self.runtime.adapter(psa)
        taxonomy = adapter.get_taxonomy(adapter.get_ticket(ticket))
        return next(c for c in taxonomy.active() if c.key not in not_keys)

    def config_path(self) -> Path:
        return self.root / "psatriage.toml"


def open_loop(
    root: Path, *, extra: Mapping[str, Any] | None = None, **policy: Any
) -> Iterator[Loop]:
    """Start the fakes and the runtime; yields the loop, stops everything after. ``policy``
    changes the tenants' policy, ``extra`` adds tables (``outcomes``...) to each tenant."""
    with ExitStack() as stack:
        llm = stack.enter_context(FakeOpenAI(category_probability=CONFIDENCE))
        kits: dict[str, ContractKit] = {}
        for psa in PSAS:
            kits[psa] = kit_for(psa)
            stack.callback(kits[psa].fake.stop)
        tenants = {
            psa: {**kit_tenant(kit, llm), "policy": {**BANDS, **policy}, **(extra or {})}
            for psa, kit in kits.items()
        }
        path = root / "psatriage.toml"
        path.write_text(to_toml({"tenants": tenants}), encoding="utf-8")
        env = {key: value for kit in kits.values() for key, value in kit.env.items()}
        os.environ.update({**env, OPENAI_KEY_ENV: DEFAULT_API_KEY})
        settings = Settings(data_dir=root / "data", config=path)
        runtime = Runtime(settings, load_config(path))
        stack.callback(runtime.close)
        yield Loop(runtime, kits, llm, root)
