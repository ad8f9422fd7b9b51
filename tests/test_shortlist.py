"""Shortlisting large taxonomies: top-k valid leaves, in order, the current category kept; and
the pipeline's step, end to end against the ConnectWise and OpenAI fakes."""

from __future__ import annotations

from pathlib import Path

from psatriage import jobs
from psatriage.classifiers.local import LocalClassifier, LocalConfig
from psatriage.config import TaxonomySettings
from psatriage.domain import LevelValue, Ticket, TicketEvent
from psatriage.local_engine.data import read_taxonomy
from psatriage.local_engine.embed import shared_embedder
from psatriage.local_engine.ranker import Ranker
from psatriage.shortlist import for_ticket, shortlist
from psatriage.store.tables import EventState
from tests.harness import TENANT, Harness

LEAVES = read_taxonomy(Path(__file__).parent / "fixtures" / "local" / "taxonomy.toml").leaves


def _ticket(title: str, current: tuple[LevelValue, ...] = ()) -> Ticket:
    return Ticket(id="1", title=title, description="", scope="1", current=current)


def test_keeps_the_best_leaves_in_taxonomy_order() -> None:
    ranker = Ranker(shared_embedder())
    kept = shortlist(ranker, _ticket("printer keeps jamming"), LEAVES, 2)
    assert len(kept) == 2
    assert LEAVES[0] in kept  # Hardware > Printer
    assert list(kept) == [leaf for leaf in LEAVES if leaf in kept]
    assert set(kept) <= set(LEAVES)


def test_the_current_category_stays_in() -> None:
    ranker = Ranker(shared_embedder())
    phishing = LEAVES[-1]
    kept = shortlist(ranker, _ticket("printer keeps jamming", phishing.path), LEAVES, 1)
    assert phishing in kept and LEAVES[0] in kept


def test_small_lists_and_disabled_settings_pass_through() -> None:
    classifier = LocalClassifier("acme", LocalConfig(model="zero-shot"))
    ticket = _ticket("vpn down")
    assert for_ticket(TaxonomySettings(), classifier, ticket, LEAVES) == LEAVES
    off = TaxonomySettings(shortlist_above=0, shortlist_size=2)
    assert for_ticket(off, classifier, ticket, LEAVES) == LEAVES
    on = TaxonomySettings(shortlist_above=3, shortlist_size=2)
    kept = for_ticket(on, classifier, ticket, LEAVES)
    assert len(kept) == 2 and any(c.key == "Network > VPN" for c in kept)


def test_pipeline_sends_only_the_shortlist_to_the_llm(harness: Harness) -> None:
    runtime = harness.runtime(taxonomy={"shortlist_above": 1, "shortlist_size": 2})
    try:
        ticket = harness.cw.add_ticket("Printer broken", "My printer has a paper jam again")
        event = TicketEvent(TENANT, str(ticket), "added", True, "m-1")
        event_id, _ = runtime.ledger.record(event, state=EventState.RECEIVED)
        assert jobs.process_event(runtime, event_id) is EventState.DONE
        offered = harness.llm.calls[0]["response_format"]["json_schema"]["schema"]
        keys = offered["properties"]["category"]["enum"]
        assert len(keys) == 2 and "10/20/30" in keys  # Hardware > Printer > Paper jam
        adapter = runtime.adapter(TENANT)
        assert len(adapter.get_taxonomy(adapter.get_ticket(str(ticket))).active()) > 2
    finally:
        runtime.close()
