"""Large taxonomies: the shortlist (with a trained model, the leaves its ranking weighed with the
tenant's history finds likely; zero-shot, the likeliest branches whole, then the best leaves;
valid leaves in order; the current category kept) and branch-first choice (a branch, then only
its leaves), with the real OpenAI classifier against FakeOpenAI and through the pipeline."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from psatriage import jobs
from psatriage.classifiers import _openai_capabilities
from psatriage.classifiers.base import ClassificationRequest
from psatriage.classifiers.local import LocalClassifier, LocalConfig
from psatriage.classifiers.openai_compat import OpenAICompatClassifier, OpenAIConfig
from psatriage.config import TaxonomySettings
from psatriage.domain import Category, Facet, LevelValue, ModelCall, Ticket, TicketEvent
from psatriage.errors import InvalidAnswer
from psatriage.local_engine.data import read_taxonomy
from psatriage.local_engine.embed import shared_embedder
from psatriage.local_engine.model import TrainedModel, TrainingReport
from psatriage.local_engine.ranker import Ranker, Scored, Source
from psatriage.local_engine.training import train
from psatriage.prompts import DEFAULT_PROMPT, compile_prompt
from psatriage.shortlist import by_branches, by_history, classify, for_ticket, shortlist, weighed
from psatriage.store.tables import EventState
from tests.fakes.openai import DEFAULT_API_KEY, Chooser, FakeOpenAI
from tests.harness import TENANT, Harness

LEAVES = read_taxonomy(Path(__file__).parent / "fixtures" / "local" / "taxonomy.toml").leaves
BRANCH_FIRST = TaxonomySettings(shortlist_above=10, shortlist_size=4, large_trees="branch_first")


def _ticket(title: str, current: tuple[LevelValue, ...] = ()) -> Ticket:
    return Ticket(id="1", title=title, description="", scope="1", current=current)


def _leaf(t: int, s: int, i: int) -> Category:
    return Category(
        f"{t}/{t}{s}/{t}{s}{i}",
        (
            LevelValue("type", str(t), f"Type {t}"),
            LevelValue("subtype", f"{t}{s}", f"Subtype {s}"),
            LevelValue("item", f"{t}{s}{i}", f"Item {i}"),
        ),
    )


# 4 types x 3 subtypes x 3 items: branch-first chooses a type (4 + 9 listed), then an item
BOARD = tuple(_leaf(t, s, i) for t in range(1, 5) for s in range(3) for i in range(3))


# -- the shortlist ------------------------------------------------------------------------------


def test_keeps_the_best_leaves_in_taxonomy_order() -> None:
    ranker = Ranker(shared_embedder())
    kept = shortlist(ranker, _ticket("printer keeps jamming"), LEAVES, 2)
    assert len(kept) == 2
    assert LEAVES[0] in kept  # Hardware > Printer
    assert list(kept) == [leaf for leaf in LEAVES if leaf in kept]
    assert set(kept) <= set(LEAVES)


def _ranked(*probabilities: tuple[Category, float]) -> list[Scored]:
    return [Scored(c, p, "model") for c, p in sorted(probabilities, key=lambda x: -x[1])]


def test_the_likeliest_branches_go_whole_then_the_best_leaves_fill_up() -> None:
    """Branch 1/10 holds 0.55 in all though its leaves are not the two best; branch 2/20 (0.30)
    does not fit whole in what is left, so the best single leaf outside 1/10 fills the rest."""
    a, b, c = _leaf(1, 0, 0), _leaf(1, 0, 1), _leaf(1, 0, 2)
    d, e = _leaf(2, 0, 0), _leaf(2, 0, 1)
    f = _leaf(3, 0, 0)
    ranked = _ranked((a, 0.19), (b, 0.18), (c, 0.18), (d, 0.2), (e, 0.1), (f, 0.15))
    assert [s.category for s in ranked[:3]] == [d, a, b]  # the best three leaves
    assert by_branches(ranked, 4) == {a.key, b.key, c.key, d.key}
    assert by_branches(ranked, 5) == {a.key, b.key, c.key, d.key, e.key}
    assert by_branches(ranked, 2) == {d.key, a.key}  # no branch fits: the best leaves
    assert by_branches(ranked, 9) == {x.key for x in (a, b, c, d, e, f)}


def _report(examples: int, rare: dict[str, int]) -> TrainingReport:
    return TrainingReport(
        label="category", source="", examples=examples, classes=2, min_examples=3,
        zero_shot=rare, cv_accuracy=0.9, cv_macro_f1=0.9, cv_ece=0.05, temperature=1.0,
        seconds=1.0, trained_at="2026-12-05T00:00:00Z", psatriage_version="0", embedder="e",
    )  # fmt: skip


def _scored(*probabilities: tuple[Category, float, Source]) -> list[Scored]:
    return [Scored(c, p, source) for c, p, source in sorted(probabilities, key=lambda x: -x[1])]


def test_the_history_weighs_the_ranking() -> None:
    """Known leaves keep the model's order (tempered), the rarely seen ones share their share
    of the history by count and by how likely the model finds their first level, the never seen
    ones what is left for the unseen (the share of categories seen once), by zero-shot and by
    how likely their branch is."""
    a, b = _leaf(1, 0, 0), _leaf(2, 0, 0)  # known to the model
    r1, r2, r3 = _leaf(1, 1, 0), _leaf(2, 1, 0), _leaf(2, 1, 1)  # seen 2, 2 and 1 times
    near, far = _leaf(1, 0, 1), _leaf(3, 0, 0)  # never seen: in a likely branch, in none
    ranked = _scored(
        (a, 0.6, "model"), (b, 0.3, "model"), (r1, 0.02, "zero-shot"), (r2, 0.02, "zero-shot"),
        (r3, 0.02, "zero-shot"), (near, 0.01, "zero-shot"), (far, 0.03, "zero-shot"),
    )  # fmt: skip
    report = _report(17, {r1.key: 2, r2.key: 2, r3.key: 1, "9/9/9": 1})
    scores = weighed(ranked, report)
    assert scores is not None and sum(scores.values()) == pytest.approx(1)
    total = 17 + 6
    assert scores[r1.key] + scores[r2.key] + scores[r3.key] == pytest.approx(5 / total)
    assert scores[near.key] + scores[far.key] == pytest.approx(2 / total)  # two seen once
    assert scores[a.key] / scores[b.key] == pytest.approx((0.6 / 0.3) ** 0.5)
    assert scores[r1.key] > scores[r2.key] > scores[r3.key]  # type 1 is likelier than type 2
    assert scores[near.key] > scores[far.key]  # despite its zero-shot probability
    untempered = weighed(ranked, report, temper=1.0)
    assert untempered is not None and untempered[a.key] / untempered[b.key] == pytest.approx(2)


def test_rare_categories_are_matched_by_path_names_too() -> None:
    a, rare = _leaf(1, 0, 0), _leaf(2, 0, 0)
    ranked = _scored((a, 0.9, "model"), (rare, 0.1, "zero-shot"))
    scores = weighed(ranked, _report(10, {"type 2 / SUBTYPE 0 > item 0": 2}))
    assert scores is not None and scores[rare.key] == pytest.approx(2 / 12)


def test_a_sure_ranking_keeps_few_leaves_an_unsure_one_many() -> None:
    known = BOARD[:6]
    report = _report(60, {BOARD[6].key: 1})

    def ranked(probabilities: list[float]) -> list[Scored]:
        rest = [(c, 0.01 / 30, "zero-shot") for c in BOARD[6:]]
        return _scored(*zip(known, probabilities, ["model"] * 6, strict=True), *rest)  # type: ignore[arg-type]

    sure = by_history(ranked([0.99999] + [2e-6] * 5), report, 36)
    unsure = by_history(ranked([1 / 6] * 6), report, 36)
    assert sure is not None and unsure is not None
    assert known[0].key in sure and len(sure) < len(unsure)
    assert {c.key for c in known} <= unsure
    capped = by_history(ranked([1 / 6] * 6), report, 3)
    assert capped is not None and len(capped) == 3
    assert by_history(ranked([1 / 6] * 6), report, 36, keep=100) == set()


def test_without_known_leaves_there_is_no_history_to_weigh() -> None:
    ranked = _scored(*((c, 1 / 36, "zero-shot") for c in BOARD))  # type: ignore[arg-type]
    assert by_history(ranked, _report(10, {}), 36) is None
    unreadable = _scored(*((c, 1 / 36, "unreadable") for c in BOARD))  # type: ignore[arg-type]
    assert by_history(unreadable, _report(10, {}), 36) is None


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    """Printer and VPN tickets (known), toner once (rare), on the 36-leaf board."""
    printer, vpn, toner = BOARD[0].key, BOARD[27].key, BOARD[1].key
    texts = [
        *(f"the printer jams {w}" for w in ("again", "today", "on floor two", "every morning")),
        *(f"vpn cannot connect {w}" for w in ("from home", "today", "since the update", "at all")),
        "toner is empty",
    ]
    return train(texts, [printer] * 4 + [vpn] * 4 + [toner], shared_embedder(), label="category")


def test_a_trained_shortlist_keeps_the_likely_leaves_of_the_history(trained: TrainedModel) -> None:
    ranker = Ranker(shared_embedder(), trained)
    kept = shortlist(ranker, _ticket("the printer jams in the morning"), BOARD, 2, 20)
    keys = [c.key for c in kept]
    assert BOARD[0].key in keys and BOARD[1].key in keys  # known printer, rare toner
    assert 2 < len(kept) < len(BOARD)  # more than ``size``: the cap is ``most``
    assert keys == [c.key for c in BOARD if c.key in keys]  # in the taxonomy's order
    assert len(shortlist(ranker, _ticket("the printer jams"), BOARD, 2, 3)) == 3


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


def test_a_classifier_with_its_own_ranker_always_shortlists() -> None:
    classifier = LocalClassifier("acme", LocalConfig(model="zero-shot"))
    settings = TaxonomySettings(shortlist_above=3, shortlist_size=2, large_trees="branch_first")
    assert len(for_ticket(settings, classifier, _ticket("vpn down"), LEAVES)) == 2


def test_pipeline_sends_only_the_shortlist_to_the_llm(harness: Harness) -> None:
    runtime = harness.runtime(taxonomy={"shortlist_above": 1, "shortlist_size": 2})
    try:
        ticket = harness.cw.add_ticket("Printer broken", "My printer has a paper jam again")
        event = TicketEvent(TENANT, str(ticket), "added", True, "m-1")
        event_id, _ = runtime.ledger.record(event, state=EventState.RECEIVED)
        assert jobs.process_event(runtime, event_id) is EventState.DONE
        offered = harness.llm.calls[0]["response_format"]["json_schema"]["schema"]
        assert offered["properties"]["category"]["enum"] == ["1", "2"]
        assert "\n1 Paper jam\n" in harness.llm.calls[0]["messages"][0]["content"]
        decision = runtime.decisions.decision_for_event(event_id)
        assert decision is not None and decision.category_key == "10/20/30"
        adapter = runtime.adapter(TENANT)
        assert len(adapter.get_taxonomy(adapter.get_ticket(str(ticket))).active()) > 2
    finally:
        runtime.close()


# -- branch first -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as running:
        yield running


@pytest.fixture
def gpt(openai_server: FakeOpenAI) -> Iterator[OpenAICompatClassifier]:
    openai_server.reset()
    _openai_capabilities.forget()
    config = OpenAIConfig(api_key=SecretStr(DEFAULT_API_KEY), base_url=f"{openai_server.url}/v1")
    classifier = OpenAICompatClassifier("acme", config)
    yield classifier
    classifier.close()
    _openai_capabilities.forget()


def _request(
    rows: list[ModelCall], candidates: tuple[Category, ...] = BOARD, facets: tuple[Facet, ...] = ()
) -> ClassificationRequest:
    return ClassificationRequest(
        tenant="acme",
        ticket=_ticket("Something is wrong"),
        candidates=candidates,
        prompt=compile_prompt(DEFAULT_PROMPT),
        model="gpt-4o-mini",
        max_tokens=200,
        facets=facets,
        record=rows.append,
    )


def test_the_model_chooses_a_type_then_a_leaf_of_that_type_only(
    openai_server: FakeOpenAI, gpt: OpenAICompatClassifier
) -> None:
    openai_server.chooser = lambda keys, text: keys[1]  # the second type, then its second leaf
    rows: list[ModelCall] = []
    result = classify(BRANCH_FIRST, gpt, _request(rows))

    first, second = openai_server.calls
    assert first["response_format"]["json_schema"]["schema"]["properties"]["category"]["enum"] == [
        "1",
        "2",
        "3",
        "4",
    ]
    assert "\n2 Type 2\n" in first["messages"][0]["content"]
    listed = second["response_format"]["json_schema"]["schema"]["properties"]["category"]["enum"]
    assert len(listed) == 9  # the 3 x 3 leaves of Type 2, nothing else
    system = second["messages"][0]["content"]
    assert "\nType 2:\n- Subtype 0:\n1 Item 0\n" in system
    assert "Type 1" not in system and "Type 3" not in system
    assert result.key == "2/20/201"
    assert [r.chosen_key for r in rows] == ["2", "2/20/201"]  # both calls recorded
    assert result.confidence == pytest.approx(0.92 * 0.92)  # the steps' product
    assert result.usage.tokens_in == rows[0].tokens_in + rows[1].tokens_in
    assert "chosen within Type 2 0.92" in result.reasoning


def test_branch_first_never_yields_an_invalid_leaf(
    openai_server: FakeOpenAI, gpt: OpenAICompatClassifier
) -> None:
    """Whatever the model picks at each step (every offered value, in turn), the answer is a leaf
    of the tree under the branch it chose first."""
    picks = random.Random(7)
    board = (*BOARD, Category("9", (LevelValue("type", "9", "Other"),)))  # a one-leaf branch
    for _ in range(12):
        openai_server.chooser = lambda keys, text: picks.choice(keys)
        rows: list[ModelCall] = []
        result = classify(BRANCH_FIRST, gpt, _request(rows, board))
        branch = rows[0].chosen_key
        assert branch is not None and result.key in {c.key for c in board}
        assert result.key == branch or result.key.startswith(f"{branch}/")


def test_an_invalid_branch_gets_the_corrective_retry_and_never_a_leaf(
    openai_server: FakeOpenAI, gpt: OpenAICompatClassifier
) -> None:
    openai_server.script("invalid_key", "invalid_key")
    rows: list[ModelCall] = []
    with pytest.raises(InvalidAnswer, match="not-a-category"):
        classify(BRANCH_FIRST, gpt, _request(rows))
    assert len(openai_server.calls) == 2 and [r.chosen_key for r in rows] == [None, None]


def test_a_branch_of_one_leaf_needs_no_second_call_unless_facets_are_asked(
    openai_server: FakeOpenAI, gpt: OpenAICompatClassifier
) -> None:
    lone = Category("9", (LevelValue("type", "9", "Other"),))
    board = (*BOARD, lone)
    openai_server.chooser = lambda keys, text: keys[-1]  # "Other", the last type
    rows: list[ModelCall] = []
    assert classify(BRANCH_FIRST, gpt, _request(rows, board)).key == "9"
    assert len(openai_server.calls) == 1 and [r.chosen_key for r in rows] == ["9"]

    queue = Facet("queue", "Queue", (LevelValue("queue", "5", "Service desk"),))
    openai_server.reset()
    openai_server.chooser = lambda keys, text: keys[-1]
    result = classify(BRANCH_FIRST, gpt, _request(rows, board, facets=(queue,)))
    first, second = openai_server.calls
    assert "queue" not in first["response_format"]["json_schema"]["schema"]["properties"]
    assert "queue" in second["response_format"]["json_schema"]["schema"]["properties"]
    assert (result.key, result.facets) == ("9", {"queue": "5"})


def test_a_branch_still_too_large_is_split_again(
    openai_server: FakeOpenAI, gpt: OpenAICompatClassifier
) -> None:
    """6 types x 4 subtypes x 5 items: a type (6 + 20 listed), whose 20 leaves are still over the
    limit: a subtype (4 + 5), then a leaf."""
    board = tuple(_leaf(t, s, i) for t in range(1, 7) for s in range(4) for i in range(5))
    openai_server.chooser = lambda keys, text: keys[-1]
    rows: list[ModelCall] = []
    result = classify(BRANCH_FIRST, gpt, _request(rows, board))
    assert [r.chosen_key for r in rows] == ["6", "6/63", "6/63/634"] and result.key == "6/63/634"
    assert result.confidence == pytest.approx(0.92**3)


def test_small_trees_and_the_shortlist_setting_make_one_call(
    openai_server: FakeOpenAI, gpt: OpenAICompatClassifier
) -> None:
    rows: list[ModelCall] = []
    classify(TaxonomySettings(shortlist_above=100, large_trees="branch_first"), gpt, _request(rows))
    classify(TaxonomySettings(shortlist_above=10), gpt, _request(rows))
    assert [len(c["response_format"]["json_schema"]["schema"]["properties"]["category"]["enum"])
            for c in openai_server.calls] == [36, 36]  # fmt: skip


def test_pipeline_asks_for_a_branch_then_a_category_of_it(harness: Harness) -> None:
    # Help Desk: 8 leaves in 4 types; Hardware holds 4 (not over the limit: no further split)
    runtime = harness.runtime(taxonomy={"shortlist_above": 4, "large_trees": "branch_first"})
    try:
        ticket = harness.cw.add_ticket("Hardware: printer broken", "It has a paper jam again")
        event = TicketEvent(TENANT, str(ticket), "added", True, "m-1")
        event_id, _ = runtime.ledger.record(event, state=EventState.RECEIVED)
        assert jobs.process_event(runtime, event_id) is EventState.DONE
        first, second = (c["messages"][0]["content"] for c in harness.llm.calls)
        assert "\n1 Hardware\n" in first and "Paper jam" not in first
        assert "\nHardware:\n- Printer:\n" in second and "Software" not in second
        calls = runtime.decisions.calls_for_event(event_id)
        assert [c.chosen_key for c in calls] == ["10", "10/20/30"]
        decision = runtime.decisions.decision_for_event(event_id)
        assert decision is not None and decision.category_key == "10/20/30"
    finally:
        runtime.close()


def _picking(*indices: int) -> Chooser:
    """A model that answers the offered value at each of ``indices`` in turn."""
    picks = iter(indices)
    return lambda keys, text: keys[next(picks)]


def test_every_leaf_is_reachable_by_some_choice(
    openai_server: FakeOpenAI, gpt: OpenAICompatClassifier
) -> None:
    reached = set()
    for first, second in itertools.product(range(4), range(9)):
        openai_server.chooser = _picking(first, second)
        reached.add(classify(BRANCH_FIRST, gpt, _request([])).key)
    assert reached == {c.key for c in BOARD}
