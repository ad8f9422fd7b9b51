"""Prompt size and shortlist recall on a 1,000-leaf IT taxonomy, strategy by strategy, in one run.

Run from the repository root (the labeled data is not part of the repository)::

    uv run python -m bench.tokens --data ../shared/data [--json] [--limit N] [--holdout]

The board and the tokenizer are described in ``bench/board.py``. For every eval ticket of Endava
and of CFPB (the first ``N`` of each with ``--limit``, for a quick look; with ``--holdout`` the
model is trained on three quarters of the train split and measured on the fourth instead, a
check of settings chosen on the eval split) the local engine ranks the 1,000 leaves twice,
trained on the train split (what a tenant with history gets) and zero-shot (a new tenant), and
each strategy below keeps its candidates from those rankings with the shipped code
(``psatriage.shortlist``):

- the full list: no shortlist (the reference);
- the best leaves: the ranker's top k (the shortlist two rounds ago);
- branches, then leaves: the likeliest parent branches whole, then the best leaves
  (``by_branches``: the shortlist of the last round, and still the zero-shot one);
- weighed history: the trained ranking weighed with the history it was trained on
  (``weighed``), its top k, or every leaf at least a tenth as likely as uniform, at most 200
  (``by_history``, the shipped shortlist with a trained model), and variants of it;
- weighed until a share of the probability: the likeliest leaves until they hold it (not kept);
- branch first: two model calls, all branches of the split depth, then the leaves of the right
  branch (what a model that chooses the branch correctly is shown; its recall is the model's
  branch accuracy, which needs a model to measure).

Prompt tokens: the prompt rendered for the ticket, system and user messages, plus the strict JSON
schema whose enum lists what the model may answer (OpenAI counts it as input). Three listings:
"flat" (two rounds ago: one line per candidate with its whole path and PSA key), "grouped" (the
last round: candidates under their parent path written once, short aliases, ``key: name``) and
"outline" (shipped: each level of the path a heading written when it changes, ``key name``).
Recall: the share of eval tickets whose true leaf is among the candidates kept.

Ticket fields (``--fields``, no data needed): the extra prompt tokens (the field's lines in the
prompt and its property in the schema) and answer tokens (its key and a typical value in the
JSON answer) of each field beside the category, for one ticket and 80 candidates, with live
values the size of a real PSA's (5 priorities, 8 boards). Language is detected offline: it adds
no token.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tiktoken
from rich.console import Console
from rich.table import Table

from bench.board import build_taxonomy, encoding
from psatriage.branches import at_depth, listing_order, split_depth
from psatriage.classifiers._openai_answer import Choices
from psatriage.classifiers.openai_compat import response_schema
from psatriage.config.fields import LEVELS, FieldsSettings
from psatriage.domain import Category, Facet, FieldSpec, LevelValue, Taxonomy, Ticket
from psatriage.fields import specs
from psatriage.local_engine.data import Example, read_examples, select, ticket_text
from psatriage.local_engine.embed import shared_embedder
from psatriage.local_engine.model import TrainingReport
from psatriage.local_engine.ranker import Ranker, Scored
from psatriage.local_engine.training import train
from psatriage.prompts import DEFAULT_PROMPT, PromptTemplate, compile_prompt
from psatriage.shortlist import KEEP_OF_UNIFORM, TEMPER, by_branches, by_history, weighed

TARGET_TOKENS = 1500
TARGET_RECALL = 0.99
RECALL_AT = (10, 20, 40, 80, 120, 160, 200)  # the best k leaves of each ranking
MOST = 200  # a trained shortlist's cap: the default taxonomy.shortlist_above
# the listing of the shipped prompt, and what it replaced (the rest of the prompt unchanged)
_SHIPPED_LISTING = re.compile(
    r"\nCategories under the headings.*?{% endfor %}\n{% endfor %}\n", re.S
)
_LISTINGS = {
    "flat": """
Categories (key: path{{ " - description" if described }}):
{% for c in candidates %}
{{ c.key }}: {{ c.label }}{{ " - " ~ c.description if c.description }}
{% endfor %}
""",
    "grouped": """
Categories, each under the path of its group (key: name{{ " - description" if described }}):
{% for g in groups %}
{% if g.label %}

{{ g.label }} ›
{% endif %}
{% for c in g.candidates %}
{{ c.key }}: {{ c.name }}{{ " - " ~ c.description if c.description }}
{% endfor %}
{% endfor %}
""",
}

Rankings = dict[str, list[Scored]]  # "trained" / "zero-shot" -> every leaf, best first
Keep = Callable[[Rankings], set[str]]


@dataclass
class Row:
    """One strategy: which candidates it keeps, how they are listed, and what it measured."""

    strategy: str
    ranker: str
    size: str
    listing: str  # "flat", "grouped" or "outline"
    keep: Keep | None  # None: the full list
    calls: int = 1
    hits: int = 0
    kept: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)

    def result(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "ranker": self.ranker,
            "size": self.size,
            "listing": self.listing,
            "model_calls": self.calls,
            "recall": self.hits / len(self.tokens) if self.keep or self.calls == 1 else None,
            "candidates_mean": statistics.mean(self.kept),
            "prompt_tokens_mean": statistics.mean(self.tokens),
            "prompt_tokens_max": max(self.tokens),
        }


def rows(report: Callable[[], TrainingReport]) -> list[Row]:
    """The strategies; ``report`` is the trained model's (for the weighed rows)."""

    def best(ranker: str, k: int) -> Keep:
        return lambda ranked: {s.category.key for s in ranked[ranker][:k]}

    def branches(ranker: str, k: int) -> Keep:
        return lambda ranked: by_branches(ranked[ranker], k)

    def weighed_best(k: int) -> Keep:
        return lambda ranked: _top(_weighed(ranked, report()), k)

    def history(keep: float = KEEP_OF_UNIFORM, temper: float = TEMPER) -> Keep:
        def chosen(ranked: Rankings) -> set[str]:
            found = by_history(ranked["trained"], report(), MOST, keep=keep, temper=temper)
            assert found is not None
            return found

        return chosen

    def until(mass: float) -> Keep:
        return lambda ranked: _until(_weighed(ranked, report()), mass, MOST)

    trained, zero, weighed = "trained", "zero-shot", "trained, weighed"
    uniform = f"≥ {KEEP_OF_UNIFORM:g} × uniform, ≤ {MOST}"
    out = [Row("full list", "", "1,000", listing, None) for listing in _LISTINGS]
    out += [
        Row("full list", "", "1,000", "outline", None),
        Row("best leaves", trained, "80", "flat", best(trained, 80)),
        Row("branches, then leaves", trained, "80", "grouped", branches(trained, 80)),
    ]
    out += [
        Row("branches, then leaves", trained, f"{k}", "outline", branches(trained, k))
        for k in (80, 160)
    ]
    out += [
        Row("branches, then leaves", zero, f"{k}", "outline", branches(zero, k)) for k in (80, 160)
    ]
    out += [Row("best leaves", weighed, f"{k}", "outline", weighed_best(k)) for k in (120, 160)]
    out += [
        Row("weighed history", weighed, uniform, "grouped", history()),
        Row("weighed history (the default)", weighed, uniform, "outline", history()),
        Row("weighed history, untempered", weighed, uniform, "outline", history(temper=1.0)),
    ]
    out += [
        Row("weighed history", weighed, f"≥ {k:g} × uniform, ≤ {MOST}", "outline", history(k))
        for k in (0.2, 0.05)
    ]
    out += [
        Row(f"weighed until {m:.1%} of the probability", weighed, f"≤ {MOST}", "outline", until(m))
        for m in (0.99, 0.998)
    ]
    out.append(Row("branch first", "the model", "all branches, then 1", "outline", None, calls=2))
    return out


def _weighed(ranked: Rankings, report: TrainingReport) -> dict[str, float]:
    scores = weighed(ranked["trained"], report)
    assert scores is not None
    return scores


def _top(scores: dict[str, float], k: int) -> set[str]:
    return set(sorted(scores, key=lambda key: -scores[key])[:k])


def _until(scores: dict[str, float], mass: float, cap: int) -> set[str]:
    """The likeliest leaves until they hold ``mass`` of the weighed probability, at most ``cap``."""
    keep: set[str] = set()
    held = 0.0
    for key in sorted(scores, key=lambda key: -scores[key])[:cap]:
        if held >= mass:
            break
        keep.add(key)
        held += scores[key]
    return keep


# -- measuring ------------------------------------------------------------------------------------


class Counter:
    """Prompt tokens of each listing, as the classifier would send them."""

    def __init__(self, enc: tiktoken.Encoding) -> None:
        self.enc = enc
        self.templates = {"outline": compile_prompt(DEFAULT_PROMPT)}
        for listing, text in _LISTINGS.items():
            source, replaced = _SHIPPED_LISTING.subn(text.replace("\\", "\\\\"), DEFAULT_PROMPT)
            if replaced != 1:
                raise RuntimeError(
                    "the default prompt's candidate listing has changed: update bench"
                )
            self.templates[listing] = compile_prompt(source)

    def __call__(self, listing: str, ticket: Ticket, candidates: Sequence[Category]) -> int:
        template: PromptTemplate = self.templates[listing]
        shown, aliased = [c.key for c in candidates], None  # the PSA keys
        if listing != "flat":  # what OpenAICompatClassifier offers
            choices = Choices.for_keys([c.key for c in listing_order(candidates)])
            shown, aliased = list(choices.shown), choices.aliased
        rendered = template.render(ticket=ticket, candidates=candidates, keys=aliased)
        schema = json.dumps(response_schema(shown))
        return sum(len(self.enc.encode(text)) for text in (rendered.system, rendered.user, schema))


def measure(
    name: str,
    taxonomy: Taxonomy,
    train_set: Sequence[tuple[Example, str]],
    eval_set: Sequence[tuple[Example, str]],
    count: Counter,
) -> dict[str, Any]:
    candidates = taxonomy.active()
    seen = {key for _, key in train_set}
    embedder = shared_embedder()
    trained = train([e.text for e, _ in train_set], [k for _, k in train_set], embedder, label=name)
    rankers = {"trained": Ranker(embedder, trained), "zero-shot": Ranker(embedder)}
    depth = split_depth(candidates)
    assert depth is not None
    branches = at_depth(candidates, depth)
    branch_of = {leaf.key: branch for branch in branches for leaf in branch.leaves}
    offered = tuple(branch.as_category() for branch in branches)
    measured = rows(lambda: trained.report)
    positions: dict[str, list[int]] = {kind: [] for kind in (*rankers, "trained, weighed")}
    right_branch = 0
    for example, key in eval_set:
        ticket = Ticket(example.id, example.title, example.description, scope="bench")
        text = ticket_text(example.title, example.description)
        ranked = {kind: ranker.rank(text, candidates) for kind, ranker in rankers.items()}
        for kind, order in ranked.items():
            positions[kind].append(next(i for i, s in enumerate(order) if s.category.key == key))
        scores = _weighed(ranked, trained.report)
        positions["trained, weighed"].append(sum(score > scores[key] for score in scores.values()))
        top = by_branch_mass(ranked["trained"], branch_of)
        right_branch += top == branch_of[key].key
        for row in measured:
            if row.calls == 2:  # branch first: every branch, then the right branch's leaves
                leaves = branch_of[key].leaves
                both = count(row.listing, ticket, offered) + count(row.listing, ticket, leaves)
                row.tokens.append(both)
                row.kept.append(len(leaves))
                row.hits += 1
                continue
            keep = row.keep(ranked) if row.keep else {c.key for c in candidates}
            kept = tuple(c for c in candidates if c.key in keep)
            row.tokens.append(count(row.listing, ticket, kept))
            row.kept.append(len(kept))
            row.hits += key in keep
    return {
        "eval_tickets": len(eval_set),
        "leaves": len(candidates),
        "trained_classes": len(trained.classes),
        "rare_classes": len(trained.report.zero_shot),
        "eval_in_history": sum(key in seen for _, key in eval_set) / len(eval_set),
        "branch_first": {
            "depth": depth,
            "branches": len(branches),
            "leaves_per_branch_mean": len(candidates) / len(branches),
            "trained_top_branch_right": right_branch / len(eval_set),
        },
        "best_leaves_k_for_target_recall": {
            kind: _k_for(found, TARGET_RECALL) for kind, found in positions.items()
        },
        "recall_at_k": {
            kind: {str(k): sum(p < k for p in found) / len(found) for k in RECALL_AT}
            for kind, found in positions.items()
        },
        "rows": [row.result() for row in measured],
    }


def by_branch_mass(ranked: Sequence[Scored], branch_of: dict[str, Any]) -> str:
    """The key of the branch holding the most of the ranker's probability."""
    mass: dict[str, float] = {}
    for scored in ranked:
        branch = branch_of[scored.category.key].key
        mass[branch] = mass.get(branch, 0.0) + scored.probability
    return max(mass, key=mass.__getitem__)


def _k_for(positions: Sequence[int], recall: float) -> int:
    """The smallest k whose recall reaches ``recall``."""
    ordered = sorted(positions)
    return ordered[max(0, int(len(ordered) * recall + 0.999999) - 1)] + 1


# -- ticket fields --------------------------------------------------------------------------------

_FIELD_TICKET = Ticket(
    id="1",
    title="Printer on the second floor jams",
    description="Every print job stops with a paper jam since this morning; we have tried "
    "another tray. Please help, the whole finance team prints invoices today.",
    scope="1",
)
_PRIORITIES = ("Priority 1 - Emergency", "Priority 2 - Quick", "Priority 3 - Normal",
               "Priority 4 - Scheduled", "Priority 5 - Project")  # fmt: skip
_BOARDS = ("Help Desk", "Network Operations", "Onboarding", "Projects", "Security",
           "Field Services", "Procurement", "Monitoring")  # fmt: skip
_FIELD_VALUES = {
    "priority": Facet(
        "priority",
        "Priority",
        tuple(LevelValue("priority", str(n), name) for n, name in enumerate(_PRIORITIES, 1)),
    ),
    "routing": Facet(
        "routing",
        "Board",
        tuple(LevelValue("board", str(n), name) for n, name in enumerate(_BOARDS, 1)),
    ),
}
_FIELD_ANSWERS: dict[str, Any] = {
    "priority": "3",
    "urgency": "medium",
    "impact": "high",
    "routing": "1",
    "noise": "request",
    "sentiment": "negative",
    "frustrated": False,
    "summary": "The second-floor printer jams on every job while finance must print invoices.",
}
_MATRIX = {u: dict.fromkeys(("high", "medium", "low"), "Priority 3 - Normal") for u in LEVELS}


def field_costs(enc: tiktoken.Encoding) -> list[dict[str, Any]]:
    """Extra prompt and answer tokens of each field (and of all of them together)."""
    candidates = tuple(
        Category(
            f"{t}/{s}",
            (LevelValue("type", str(t), f"Type {t}"), LevelValue("subtype", str(s), f"Sub {s}")),
        )
        for t in range(10)
        for s in range(100 + 8 * t, 108 + 8 * t)
    )
    template = compile_prompt(DEFAULT_PROMPT)
    choices = Choices.for_keys([c.key for c in listing_order(candidates)])

    def tokens(specs: Sequence[FieldSpec]) -> tuple[int, int]:
        rendered = template.render(
            ticket=_FIELD_TICKET, candidates=candidates, keys=choices.aliased, fields=specs
        )
        schema = json.dumps(response_schema(list(choices.shown), fields=specs))
        prompt = sum(len(enc.encode(t)) for t in (rendered.system, rendered.user, schema))
        answer = {"category": choices.shown[0]}
        answer |= {spec.name: _FIELD_ANSWERS[spec.name] for spec in specs}
        answer |= {"confidence": 0.9, "reasoning": "The user reports a paper jam."}
        return prompt, len(enc.encode(json.dumps(answer)))

    base_prompt, base_answer = tokens(())
    cases: list[tuple[str, FieldsSettings]] = [
        (name, FieldsSettings(enabled=(name,)))  # type: ignore[arg-type]
        for name in ("priority", "routing", "noise", "sentiment", "summary")
    ]
    cases.insert(1, ("priority (matrix)", FieldsSettings.model_validate(
        {"enabled": ["priority"], "priority": {"matrix": _MATRIX}}
    )))  # fmt: skip
    cases.append(("all", FieldsSettings(enabled=("priority", "routing", "noise", "sentiment",
                                                  "summary"))))  # fmt: skip
    found = [{"field": "(category only)", "prompt": base_prompt, "answer": base_answer}]
    for name, settings in cases:
        prompt, answer = tokens(specs(settings, _FIELD_VALUES))
        found.append(
            {"field": name, "prompt": prompt - base_prompt, "answer": answer - base_answer}
        )
    return found


def _print_fields(found: list[dict[str, Any]]) -> None:
    table = Table("field", "extra prompt tokens", "extra answer tokens", title="ticket fields")
    for row in found:
        table.add_row(row["field"], f"{row['prompt']:,}", f"{row['answer']:,}")
    Console(width=120).print(table)


# -- the run --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--fields", action="store_true", help="ticket fields only (no data)")
    parser.add_argument("--limit", type=int, default=0, help="the first N eval tickets of each")
    parser.add_argument(
        "--holdout",
        action="store_true",
        help="train on three quarters of the train split, measure on the fourth (not the eval "
        "split): a check of settings chosen on the eval split",
    )
    args = parser.parse_args(argv)
    if args.fields:
        costs = field_costs(encoding())
        if args.json:
            print(json.dumps(costs, indent=2))
        else:
            _print_fields(costs)
        return 0
    count = Counter(encoding())
    endava = read_examples(args.data / "endava" / "tickets.jsonl")
    cfpb = read_examples(args.data / "cfpb" / "complaints.jsonl")
    endava_paths = sorted({v for e in endava if (v := e.labels.get("category_path"))})
    cfpb_pairs = sorted(
        {(p, i) for e in cfpb if (p := e.labels.get("product")) and (i := e.labels.get("issue"))}
    )
    taxonomy, endava_keys, cfpb_keys = build_taxonomy(endava_paths, cfpb_pairs)

    def pairs(examples: Sequence[Example], key_of: Any) -> list[tuple[Example, str]]:
        return [(e, k) for e in examples if (k := key_of(e))]

    def endava_key(e: Example) -> str | None:
        return endava_keys.get(e.labels.get("category_path") or "")

    def cfpb_key(e: Example) -> str | None:
        return cfpb_keys.get((e.labels.get("product") or "", e.labels.get("issue") or ""))

    result: dict[str, Any] = {"taxonomy_leaves": len(taxonomy.leaves)}
    for name, examples, key_of in (("endava", endava, endava_key), ("cfpb", cfpb, cfpb_key)):
        train_set = pairs(select(examples, "train"), key_of)
        eval_set = pairs(select(examples, "eval"), key_of)
        if args.holdout:
            held = [p for i, p in enumerate(train_set) if not i % 4]
            train_set, eval_set = [p for i, p in enumerate(train_set) if i % 4], held
        result[name] = measure(name, taxonomy, train_set, eval_set[: args.limit or None], count)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    _print(result)
    return 0


def _print(result: dict[str, Any]) -> None:
    table = Table(
        "strategy", "ranker", "k", "listing", "calls", "kept (mean)",
        "Endava recall", "Endava tokens (mean / max)", "CFPB recall", "CFPB tokens (mean / max)",
        title="prompt tokens and recall of the right leaf, 1,000 leaves",
    )  # fmt: skip
    endava, cfpb = result["endava"]["rows"], result["cfpb"]["rows"]
    for mine, theirs in zip(endava, cfpb, strict=True):
        cells = [mine["strategy"], mine["ranker"], mine["size"], mine["listing"]]
        cells.append(str(mine["model_calls"]))
        cells.append(f"{mine['candidates_mean']:,.0f} / {theirs['candidates_mean']:,.0f}")
        for row in (mine, theirs):
            recall = "model" if row["model_calls"] == 2 else f"{row['recall']:.3f}"
            cells += [recall, f"{row['prompt_tokens_mean']:,.0f} / {row['prompt_tokens_max']:,}"]
        table.add_row(*cells)
    console = Console(width=160)
    console.print(table)
    for name in ("endava", "cfpb"):
        data = result[name]
        console.print(
            f"{name}: {data['eval_tickets']} eval tickets, {data['eval_in_history']:.1%} in a "
            "category of the history; best leaves reach "
            f"{TARGET_RECALL:.0%} at k = {data['best_leaves_k_for_target_recall']}; branch first: "
            f"{json.dumps(data['branch_first'])}"
        )
    recall = Table("ranking", *(f"k = {k}" for k in RECALL_AT), title="recall@k (best leaves)")
    for name in ("endava", "cfpb"):
        for kind, found in result[name]["recall_at_k"].items():
            recall.add_row(f"{name}, {kind}", *(f"{found[str(k)]:.3f}" for k in RECALL_AT))
    console.print(recall)


if __name__ == "__main__":
    raise SystemExit(main())
