"""Prompt size and shortlist recall on a 1,000-leaf IT taxonomy, strategy by strategy, in one run.

Run from the repository root (the labeled data is not part of the repository)::

    uv run python -m bench.tokens --data ../shared/data [--json]

The board and the tokenizer are described in ``bench/board.py``. For every eval ticket of Endava
and of CFPB the local engine ranks the 1,000 leaves twice, trained on the train split (what a
tenant with history gets) and zero-shot (a new tenant), and each strategy below keeps its
candidates from those rankings with the shipped code (``psatriage.shortlist.by_branches``):

- the full list: no shortlist (the reference);
- the best leaves: the ranker's top k (the shortlist before this round);
- branches, then leaves: the likeliest parent branches whole, then the best leaves (shipped);
- union: the trained top k - m plus the zero-shot top m (measured, not shipped);
- adaptive: whole branches until they hold 95% of the ranker's probability, at most k
  (measured, not shipped);
- branch first: two model calls, all branches of the split depth, then the leaves of the right
  branch (what a model that chooses the branch correctly is shown; its recall is the model's
  branch accuracy, which needs a model to measure).

Prompt tokens: the prompt rendered for the ticket, system and user messages, plus the strict JSON
schema whose enum lists what the model may answer (OpenAI counts it as input). "flat" is the
listing before this round (one line per candidate with its whole path and PSA key), "compact" the
shipped one (grouped under the parent path, short aliases). Recall: the share of eval tickets
whose true leaf is among the candidates kept.

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
from psatriage.branches import at_depth, listing_order, parents, split_depth
from psatriage.classifiers._openai_answer import Choices
from psatriage.classifiers.openai_compat import response_schema
from psatriage.config.fields import LEVELS, FieldsSettings
from psatriage.domain import Category, Facet, FieldSpec, LevelValue, Taxonomy, Ticket
from psatriage.fields import specs
from psatriage.local_engine.data import Example, read_examples, select, ticket_text
from psatriage.local_engine.embed import shared_embedder
from psatriage.local_engine.ranker import Ranker, Scored
from psatriage.local_engine.training import train
from psatriage.prompts import DEFAULT_PROMPT, PromptTemplate, compile_prompt
from psatriage.shortlist import by_branches

TARGET_TOKENS = 1500
TARGET_RECALL = 0.99
# the listing before this round, for the "flat" rows (the rest of the default prompt unchanged)
_GROUPED_LISTING = re.compile(r"\nCategories, each under.*?{% endfor %}\n{% endfor %}\n", re.S)
_FLAT_LISTING = """
Categories (key: path{{ " - description" if described }}):
{% for c in candidates %}
{{ c.key }}: {{ c.label }}{{ " - " ~ c.description if c.description }}
{% endfor %}
"""

Rankings = dict[str, list[Scored]]  # "trained" / "zero-shot" -> every leaf, best first
Keep = Callable[[Rankings], set[str]]


@dataclass
class Row:
    """One strategy: which candidates it keeps, how they are listed, and what it measured."""

    strategy: str
    ranker: str
    size: str
    listing: str  # "flat" or "compact"
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


def rows() -> list[Row]:
    def best(ranker: str, k: int) -> Keep:
        return lambda ranked: {s.category.key for s in ranked[ranker][:k]}

    def branches(ranker: str, k: int) -> Keep:
        return lambda ranked: by_branches(ranked[ranker], k)

    def union(k: int, zero: int) -> Keep:
        return lambda ranked: best("trained", k - zero)(ranked) | best("zero-shot", zero)(ranked)

    def adaptive(ranker: str, k: int) -> Keep:
        return lambda ranked: _adaptive(ranked[ranker], k, 0.95)

    out = [
        Row("full list", "", "1,000", "flat", None),
        Row("full list", "", "1,000", "compact", None),
    ]
    out += [Row("best leaves", "trained", f"{k}", "flat", best("trained", k)) for k in (40, 80)]
    for ranker, sizes in (("trained", (40, 80, 120)), ("zero-shot", (80,))):
        out += [Row("best leaves", ranker, f"{k}", "compact", best(ranker, k)) for k in sizes]
    for ranker, sizes in (("trained", (40, 80, 120, 160, 240)), ("zero-shot", (80, 160))):
        out += [
            Row("branches, then leaves", ranker, f"{k}", "compact", branches(ranker, k))
            for k in sizes
        ]
    out += [
        Row("union", "trained + zero-shot", f"{k - m} + {m}", "compact", union(k, m))
        for k, m in ((80, 10), (120, 20))
    ]
    out += [
        Row("adaptive (95% probability)", "trained", f"≤ {k}", "compact", adaptive("trained", k))
        for k in (120, 240)
    ]
    out.append(Row("branch first", "the model", "all branches, then 1", "compact", None, calls=2))
    return out


def _adaptive(ranked: Sequence[Scored], cap: int, mass: float) -> set[str]:
    """Whole branches, likeliest first, until they hold ``mass`` of the probability or ``cap``."""
    probability = {s.category.key: s.probability for s in ranked}
    groups = parents([s.category for s in ranked])
    groups.sort(key=lambda g: -sum(probability[leaf.key] for leaf in g.leaves))
    keep: set[str] = set()
    held = 0.0
    for group in groups:
        if held >= mass or len(keep) + len(group.leaves) > cap:
            break
        keep.update(leaf.key for leaf in group.leaves)
        held += sum(probability[leaf.key] for leaf in group.leaves)
    return keep


# -- measuring ------------------------------------------------------------------------------------


class Counter:
    """Prompt tokens of the flat and the compact listing, as the classifier would send them."""

    def __init__(self, enc: tiktoken.Encoding) -> None:
        self.enc = enc
        flat, replaced = _GROUPED_LISTING.subn(_FLAT_LISTING, DEFAULT_PROMPT)
        if replaced != 1:
            raise RuntimeError("the default prompt's candidate listing has changed: update bench")
        self.templates = {"flat": compile_prompt(flat), "compact": compile_prompt(DEFAULT_PROMPT)}

    def __call__(self, listing: str, ticket: Ticket, candidates: Sequence[Category]) -> int:
        template: PromptTemplate = self.templates[listing]
        shown, aliased = [c.key for c in candidates], None  # the PSA keys
        if listing == "compact":  # what OpenAICompatClassifier offers
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
    embedder = shared_embedder()
    trained = train([e.text for e, _ in train_set], [k for _, k in train_set], embedder, label=name)
    rankers = {"trained": Ranker(embedder, trained), "zero-shot": Ranker(embedder)}
    depth = split_depth(candidates)
    assert depth is not None
    branches = at_depth(candidates, depth)
    branch_of = {leaf.key: branch for branch in branches for leaf in branch.leaves}
    offered = tuple(branch.as_category() for branch in branches)
    measured = rows()
    positions: dict[str, list[int]] = {kind: [] for kind in rankers}
    right_branch = 0
    for example, key in eval_set:
        ticket = Ticket(example.id, example.title, example.description, scope="bench")
        text = ticket_text(example.title, example.description)
        ranked = {kind: ranker.rank(text, candidates) for kind, ranker in rankers.items()}
        for kind, order in ranked.items():
            positions[kind].append(next(i for i, s in enumerate(order) if s.category.key == key))
        top = by_branch_mass(ranked["trained"], branch_of)
        right_branch += top == branch_of[key].key
        for row in measured:
            if row.calls == 2:  # branch first: every branch, then the right branch's leaves
                leaves = branch_of[key].leaves
                both = count("compact", ticket, offered) + count("compact", ticket, leaves)
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
        "branch_first": {
            "depth": depth,
            "branches": len(branches),
            "leaves_per_branch_mean": len(candidates) / len(branches),
            "trained_top_branch_right": right_branch / len(eval_set),
        },
        "best_leaves_k_for_target_recall": {
            kind: _k_for(found, TARGET_RECALL) for kind, found in positions.items()
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
        result[name] = measure(
            name,
            taxonomy,
            pairs(select(examples, "train"), key_of),
            pairs(select(examples, "eval"), key_of),
            count,
        )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    _print(result)
    return 0


def _print(result: dict[str, Any]) -> None:
    table = Table(
        "strategy", "ranker", "k", "listing", "calls",
        "Endava recall", "Endava tokens (mean / max)", "CFPB recall", "CFPB tokens (mean / max)",
        title="prompt tokens and recall of the right leaf, 1,000 leaves",
    )  # fmt: skip
    endava, cfpb = result["endava"]["rows"], result["cfpb"]["rows"]
    for mine, theirs in zip(endava, cfpb, strict=True):
        cells = [mine["strategy"], mine["ranker"], mine["size"], mine["listing"]]
        cells.append(str(mine["model_calls"]))
        for row in (mine, theirs):
            recall = "model" if row["model_calls"] == 2 else f"{row['recall']:.3f}"
            cells += [recall, f"{row['prompt_tokens_mean']:,.0f} / {row['prompt_tokens_max']:,}"]
        table.add_row(*cells)
    console = Console(width=160)
    console.print(table)
    for name in ("endava", "cfpb"):
        data = result[name]
        console.print(
            f"{name}: {data['eval_tickets']} eval tickets; best leaves reach "
            f"{TARGET_RECALL:.0%} at k = {data['best_leaves_k_for_target_recall']}; branch first: "
            f"{json.dumps(data['branch_first'])}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
