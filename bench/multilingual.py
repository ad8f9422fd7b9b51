"""Per-language accuracy of the local engine on labeled multilingual tickets (part of
``bench/accuracy.py``).

Two sets, each scored per language beside the baseline (trained the same way) and the majority
class, after two trainings: on the train split in every language (a tenant whose history is
multilingual) and on its English tickets only (a ticket in a language the history never saw).

``catalogs``  built on the spot from the gettext message catalogs of the machine's Debian
              packages (``bench/catalogs.py``): 7 categories, English, German, French, Spanish
              and Dutch, each message in all five; the split keeps a message's translations on
              the side of its English text. Always run when the catalogs are installed.
``csv``       with ``--multilingual FILE``: "Multilingual Customer Support Tickets" by Tobias
              Bueck (synthetic e-mails with queue and language; CC BY-NC 4.0; Kaggle and Hugging
              Face ``Tobi-Bueck/customer-support-tickets``), ``dataset-tickets-multi-lang3-4k.csv``
              (columns subject, body, queue, language...), label ``queue``. Its licence forbids
              commercial use, so no part of it is kept here.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from bench import catalogs
from bench.accuracy import texts_and_labels
from psatriage.classifiers.local import LocalClassifier, LocalConfig
from psatriage.evaluation import runs
from psatriage.evaluation.runs import Setup
from psatriage.local_engine.data import Example, taxonomy_from_labels
from psatriage.local_engine.embed import shared_embedder
from psatriage.local_engine.training import train


def read_csv(path: Path) -> list[Example]:
    """The CSV's tickets with a queue and a language, as examples (labels: category, language)."""
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as source:
        rows = list(csv.DictReader(source))
    return [
        Example(
            id=f"row-{number}",
            title=row.get("subject") or "",
            description=row.get("body") or "",
            labels={"category": row["queue"], "language": row["language"]},
        )
        for number, row in enumerate(rows, start=2)
        if row.get("queue") and row.get("language") and (row.get("subject") or row.get("body"))
    ]


def catalog_rows(folder: Path) -> dict[str, Any]:
    examples = catalogs.examples()
    english = {
        e.labels["message"]: e.in_eval_split for e in examples if e.labels["language"] == "en"
    }
    result = rows(examples, folder, lambda e: english[e.labels["message"]])
    return {"set": "message catalogs (bench/catalogs.py)", **result}


def csv_rows(path: Path, folder: Path) -> dict[str, Any]:
    result = rows(read_csv(path), folder, lambda e: e.in_eval_split)
    return {"set": path.name, **result}


def rows(
    examples: list[Example], folder: Path, in_eval: Callable[[Example], bool]
) -> dict[str, Any]:
    scored = [(e, e.labels["category"] or "") for e in examples if in_eval(e)]
    rest = [(e, e.labels["category"] or "") for e in examples if not in_eval(e)]
    taxonomy = taxonomy_from_labels([v for _, v in scored + rest], "category")
    languages = sorted({str(e.labels["language"]) for e, _ in scored})
    out: dict[str, Any] = {
        "tickets": len(examples),
        "categories": len(taxonomy.leaves),
        "eval_by_language": dict(Counter(str(e.labels["language"]) for e, _ in scored)),
    }
    for name, history in (("all languages", rest), ("English only", _english(rest))):
        setup = Setup(Path("multilingual"), "category", "eval", taxonomy, scored, history)
        majority = Counter(v for _, v in history).most_common(1)[0][0]
        out[name] = {
            "train_tickets": len(history),
            "local": _by_language(setup, languages, _local(setup, folder, name)),
            "baseline": _by_language(setup, languages, _baseline(setup)),
            "majority": _by_language(setup, languages, [majority] * len(scored)),
        }
    return out


def _english(pairs: list[tuple[Example, str]]) -> list[tuple[Example, str]]:
    return [(e, v) for e, v in pairs if e.labels["language"] == "en"]


def _local(setup: Setup, folder: Path, name: str) -> list[str]:
    model = train(
        [e.text for e, _ in setup.rest],
        [v for _, v in setup.rest],
        shared_embedder(),
        label="category",
        source=f"multilingual ({name})",
    )
    path = folder / f"multilingual-{len(setup.rest)}.npz"
    model.save(path)
    classifier = LocalClassifier("bench", LocalConfig(model=str(path)))
    return [p.predicted for p in runs.evaluate(setup, classifier).predictions]


def _baseline(setup: Setup) -> list[str]:
    texts, labels = texts_and_labels(setup.rest)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    model = LogisticRegression(C=10, max_iter=1000)
    model.fit(vectorizer.fit_transform(texts), labels)
    eval_texts, _ = texts_and_labels(setup.scored)
    return [str(p) for p in model.predict(vectorizer.transform(eval_texts))]


def _by_language(setup: Setup, languages: list[str], predicted: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for language in ["all", *languages]:
        pairs = [
            (truth, guess)
            for (example, truth), guess in zip(setup.scored, predicted, strict=True)
            if language == "all" or example.labels["language"] == language
        ]
        out[language] = round(sum(t == g for t, g in pairs) / len(pairs), 3)
    return out
