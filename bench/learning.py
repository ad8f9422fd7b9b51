"""Learning from corrections: accuracy as corrections accumulate, against a model trained once.

Run from the repository root (the data is not part of the repository)::

    uv run python -m bench.learning --data ../shared/data/endava/tickets.jsonl
        [--label category_path] [--history 300] [--retrain-every 300] [--stream N] [--json]

A labeled file is replayed as one tenant's life. The file has no dates, so its order is the time
order. Its eval split (the data README's rule) is the fixed test set, never seen in training;
its train split, in file order, is the stream:

1. the first ``--history`` tickets are the closed-ticket history: the first model is trained on
   them (``psatriage train``). The same model, never retrained, is the reference.
2. the rest arrive as new tickets, ``--retrain-every`` of them per period (a week at a small
   MSP's volume). The active model decides each ticket; where it is wrong, the person's category
   is a correction, stored as a labeled example (``store.examples.add_example``).
3. at the end of each period the scheduled retrain runs exactly as the service runs it
   (``learning.retrain.retrain``, default ``learning`` settings): its closed-ticket history is
   the first history plus every ticket decided so far (they have closed with the category people
   left), its examples are the corrections; the newest 20% of the closed tickets the model in use
   has not learned is held out, and the candidate is promoted only when it is better on them by
   more than chance explains. With ``--fixed-history`` the history stays the first ``--history``
   tickets (read once): there is then nothing new to compare on, and every retrained model waits
   as a candidate.

After every retrain both the active model and the reference are scored on the test set; the
report gives their accuracy after 0, 100, 500, 1,000 and 2,000 corrections (the first retrain
after that many) and, for every retrain, whether it was promoted and what the candidate and the
model in use scored on the test set: a promoted candidate that scores lower there is a retrain
that promoted a worse model. Nothing here asserts: docs/PERFORMANCE.md holds one run's numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from psatriage.config import LearningSettings
from psatriage.domain import Category
from psatriage.learning.dataset import Labeled, categories, from_examples
from psatriage.learning.retrain import accuracy, fit, retrain
from psatriage.learning.versions import ModelVersions
from psatriage.local_engine import DEFAULT_MIN_EXAMPLES
from psatriage.local_engine.data import labeled, read_examples, select
from psatriage.local_engine.embed import Embedder, shared_embedder
from psatriage.local_engine.model import TrainedModel
from psatriage.store import db
from psatriage.store.examples import add_example, list_examples

TENANT = "bench"
CHECKPOINTS = (0, 100, 500, 1000, 2000)


def _items(path: Path, label: str, split: str) -> list[Labeled]:
    examples = select(read_examples(path), "eval" if split == "eval" else "train")
    return [
        Labeled(ticket_id=e.id, text=e.text, key=value, label="")
        for e, value in labeled(examples, label, path)
    ]


def _predict(model: TrainedModel, items: list[Labeled], candidates: tuple[Category, ...],
             embedder: Embedder) -> list[str]:  # fmt: skip
    from psatriage.local_engine.ranker import Ranker  # noqa: PLC0415

    probabilities, _ = Ranker(embedder, model).probabilities([i.text for i in items], candidates)
    return [candidates[c].key for c in probabilities.argmax(axis=1).tolist()]


def run(args: argparse.Namespace) -> dict[str, Any]:
    embedder = shared_embedder()
    settings = LearningSettings()
    train_items = _items(args.data, args.label, "train")
    test = _items(args.data, args.label, "eval")[: args.test]
    history, stream = train_items[: args.history], train_items[args.history :]
    if args.stream:
        stream = stream[: args.stream]
    candidates = categories([*train_items, *test])
    started = time.monotonic()
    cpu = time.process_time()

    with tempfile.TemporaryDirectory() as folder:
        engine = db.make_engine(f"sqlite:///{Path(folder) / 'bench.db'}")
        db.upgrade(engine)
        sessions = db.make_sessionmaker(engine)
        versions = ModelVersions(sessions)
        reference = fit(history, embedder, source="history", min_examples=DEFAULT_MIN_EXAMPLES)
        versions.add(
            TENANT,
            reference,
            state="active",
            trigger="train",
            trained_on=[i.ticket_id for i in history],
        )
        reference_accuracy = round(accuracy(reference, test, candidates, embedder), 4)
        curve: list[dict[str, Any]] = [
            {
                "period": 0,
                "tickets": 0,
                "corrections": 0,
                "active": "v0001",
                "accuracy": reference_accuracy,
                "reference": reference_accuracy,
            }
        ]
        retrains: list[dict[str, Any]] = []
        corrections = 0
        decided = 0
        for period, start in enumerate(range(0, len(stream), args.retrain_every), start=1):
            block = stream[start : start + args.retrain_every]
            active = versions.active(TENANT)
            assert active is not None
            model = active[1]
            for item, chosen in zip(block, _predict(model, block, candidates, embedder),
                                    strict=True):  # fmt: skip
                decided += 1
                if chosen != item.key:  # the technician corrects it: a labeled example
                    corrections += 1
                    add_example(
                        sessions,
                        tenant=TENANT,
                        company=None,
                        ticket_id=item.ticket_id,
                        text=item.text,
                        category_key=item.key,
                        category_path="",
                        source="correction",
                        decision_id=None,
                    )
            examples = from_examples(list_examples(sessions, tenant=TENANT))
            closed = history if args.fixed_history else [*history, *stream[:decided]]
            result = retrain(
                versions,
                TENANT,
                closed,
                examples,
                embedder,
                held_out=settings.held_out,
                min_held_out=settings.min_held_out,
                min_examples=DEFAULT_MIN_EXAMPLES,
            )
            current_test = round(accuracy(model, test, candidates, embedder), 4)
            candidate_test = None
            if result.version is not None:
                candidate = versions.load(TENANT, result.version.version)[1]
                candidate_test = round(accuracy(candidate, test, candidates, embedder), 4)
            comparison = result.comparison
            retrains.append(
                {
                    "period": period,
                    "corrections": corrections,
                    "promoted": result.promoted,
                    "held_out": comparison.held_out if comparison else 0,
                    "held_out_candidate": comparison.candidate_accuracy if comparison else None,
                    "held_out_current": comparison.current_accuracy if comparison else None,
                    "test_candidate": candidate_test,
                    "test_current": current_test,
                    "reason": result.reason,
                }
            )
            now_active = versions.active(TENANT)
            assert now_active is not None
            active_accuracy = candidate_test if result.promoted else current_test
            curve.append(
                {
                    "period": period,
                    "tickets": decided,
                    "corrections": corrections,
                    "active": now_active[0].name,
                    "accuracy": active_accuracy,
                    "reference": reference_accuracy,
                }
            )
            print(
                f"period {period}: {decided} tickets, {corrections} corrections, "
                f"{result.line()} (test: active {active_accuracy})",
                flush=True,
            )
        engine.dispose()

    worse = [
        r
        for r in retrains
        if r["promoted"] and r["test_candidate"] is not None
        and r["test_candidate"] < r["test_current"]
    ]  # fmt: skip
    at = {}
    for checkpoint in CHECKPOINTS:
        point = next((p for p in curve if p["corrections"] >= checkpoint), None)
        at[str(checkpoint)] = point
    return {
        "data": args.data.name,
        "label": args.label,
        "history": len(history),
        "stream": len(stream),
        "test": len(test),
        "retrain_every": args.retrain_every,
        "history_grows": not args.fixed_history,
        "checkpoints": at,
        "curve": curve,
        "retrains": retrains,
        "promoted": sum(r["promoted"] for r in retrains),
        "promoted_worse_on_test": len(worse),
        "wall_seconds": round(time.monotonic() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": args.load_before,
            "load_after": round(os.getloadavg()[0], 2),
        },
    }


def show(report: dict[str, Any]) -> None:
    console = Console(markup=False)
    table = Table("corrections", "tickets decided", "active model", "accuracy", "trained once",
                  title=f"{report['data']} {report['label']}: accuracy on {report['test']} "
                  "held-out tickets")  # fmt: skip
    for checkpoint, point in report["checkpoints"].items():
        if point is None:
            table.add_row(checkpoint, "not reached", "", "", "")
            continue
        table.add_row(
            f"{checkpoint} ({point['corrections']})",
            str(point["tickets"]),
            point["active"],
            f"{point['accuracy']:.3f}",
            f"{point['reference']:.3f}",
        )
    console.print(table)
    retrains = Table("period", "corrections", "promoted", "held-out: candidate vs current",
                     "test: candidate vs current", title="every retrain")  # fmt: skip
    for r in report["retrains"]:
        held = (
            f"{r['held_out_candidate']:.3f} vs {r['held_out_current']:.3f} (n={r['held_out']})"
            if r["held_out_candidate"] is not None
            else r["reason"]
        )
        test = (
            f"{r['test_candidate']:.3f} vs {r['test_current']:.3f}"
            if r["test_candidate"] is not None
            else ""
        )
        retrains.add_row(
            str(r["period"]), str(r["corrections"]), "yes" if r["promoted"] else "no", held, test
        )
    console.print(retrains)
    console.print(
        f"{report['promoted']} of {len(report['retrains'])} retrains promoted; "
        f"{report['promoted_worse_on_test']} promoted a model that scored lower on the test set. "
        f"{report['wall_seconds']} s wall, {report['cpu_seconds']} s CPU; load "
        f"{report['machine']['load_before']} before, {report['machine']['load_after']} after."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/endava/tickets.jsonl"))
    parser.add_argument("--label", default="category_path")
    parser.add_argument("--history", type=int, default=300, help="tickets of history")
    parser.add_argument("--retrain-every", type=int, default=300, help="tickets per period")
    parser.add_argument("--stream", type=int, default=0, help="at most this many new tickets")
    parser.add_argument("--test", type=int, default=100_000, help="at most this many test tickets")
    parser.add_argument("--fixed-history", action="store_true", help="history read once")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.load_before = round(os.getloadavg()[0], 2)
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        show(report)


if __name__ == "__main__":
    main()
