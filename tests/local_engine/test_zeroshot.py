"""Zero-shot scoring reads a category's description: a tenant's hints steer it where the names
alone say nothing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from psatriage.config import CategoryHint
from psatriage.domain import Category, LevelValue
from psatriage.local_engine.embed import shared_embedder
from psatriage.local_engine.zeroshot import ZeroShot, category_text
from tests.fakes.inprocess import TREE, answer
from tests.pipeline_kit import PipelineKit, make_database

QUEUES = (
    Category("1", (LevelValue("type", "1", "Queue A"),)),
    Category("2", (LevelValue("type", "2", "Queue B"),)),
)


def _best(candidates: tuple[Category, ...], text: str) -> str:
    engine = ZeroShot(shared_embedder())
    vector = shared_embedder().embed([text])
    return candidates[int(engine.probabilities(vector, candidates)[0].argmax())].key


def test_hints_in_the_description_steer_zero_shot() -> None:
    described = (
        replace(QUEUES[0], description="e.g. vpn, remote access, tunnel, firewall"),
        replace(QUEUES[1], description="e.g. printer, paper jam, toner, scanner"),
    )
    assert category_text(described[1]) == "Queue B. e.g. printer, paper jam, toner, scanner"
    assert _best(described, "The printer has a paper jam") == "2"
    assert _best(described, "VPN tunnel keeps dropping") == "1"


def test_words_every_candidate_shares_do_not_decide() -> None:
    def leaf(key: str, name: str) -> Category:
        return Category(key, (LevelValue("type", key, name),))

    candidates = tuple(
        leaf(str(i), f"Computer problem: {topic}")
        for i, topic in enumerate(["printer paper jam", "vpn tunnel", "mailbox full", "monitor"])
    )
    assert _best(candidates, "my computer has a problem with the vpn tunnel") == "1"
    assert _best(candidates, "the mailbox is full") == "2"


def test_a_ticket_without_a_vector_favours_no_candidate() -> None:
    engine = ZeroShot(shared_embedder())
    blank = shared_embedder().embed(["ช่วยด้วย"])
    assert not blank.any()
    assert not engine.similarities(blank, QUEUES).any()
    assert engine.probabilities(blank, QUEUES)[0].tolist() == [0.5, 0.5]


def test_the_pipeline_gives_the_classifier_the_tenants_descriptions_and_hints(
    tmp_path: Path,
) -> None:
    engine = make_database(tmp_path / "fast.db")
    try:
        kit = PipelineKit(engine)
        kit.tenant = replace(
            kit.tenant,
            categories={
                "Hardware > Printer": CategoryHint(hints=("toner", "paper jam")),
                "10/21": CategoryHint(description="Laptops and docks"),
            },
        )
        ticket = kit.psa.add_ticket("Printer jam", "The printer jams")
        kit.classifier.then(answer("10/20/30"))
        kit.run(kit.event(ticket))
        offered = {c.key: c.description for c in kit.classifier.requests[0].candidates}
        assert offered["10/20/30"] == offered["10/20/31"] == "e.g. toner, paper jam"
        assert offered["10/21"] == "Laptops and docks"
        assert offered["11/22/32"] == ""
        assert len(offered) == len([leaf for leaf in TREE.leaves if leaf.active])
    finally:
        engine.dispose()
