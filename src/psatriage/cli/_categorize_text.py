"""``psatriage categorize --engine local``: the offline engine on text, no PSA and no key.

One ticket (the text argument: the first line is the title) prints the chosen path, its confidence
and the best alternatives; ``--file tickets.jsonl`` does many, with a progress bar, as a table,
CSV or JSON.
"""

from __future__ import annotations

import csv
import io
import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from psatriage.cli._app import console, errors
from psatriage.errors import ConfigError

if TYPE_CHECKING:
    from psatriage.domain import Taxonomy
    from psatriage.local_engine.ranker import Ranker, Scored


class Output(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def run(
    engine: str | None,
    taxonomy_file: Path | None,
    text: str | None,
    file: Path | None,
    model: Path | None,
    output: Output,
    top: int,
) -> None:
    from psatriage.local_engine.data import read_examples, read_taxonomy

    if engine != "local":
        raise ConfigError(
            "offline categorizing needs --engine local (LLM engines run through a tenant: "
            "--tenant T --ticket ID)"
        )
    if taxonomy_file is None:
        raise ConfigError("--engine local needs --taxonomy FILE (see examples/taxonomy.toml)")
    if text is not None and file is not None:
        raise ConfigError('give the ticket text ("Printer keeps jamming") or --file, not both')
    if text is None and file is None:
        raise ConfigError(
            'give the ticket text ("Printer keeps jamming") or --file FILE (JSON Lines)'
        )
    taxonomy = read_taxonomy(taxonomy_file)
    ranker = _ranker(model)
    if model is not None:
        _require_fit(ranker, taxonomy, model, taxonomy_file)
    if text is not None:
        title, _, description = text.strip().partition("\n")
        rows = [_row("1", title, description, ranker, taxonomy, top)]
    else:
        assert file is not None
        examples = read_examples(file)
        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=errors,
            transient=True,
            disable=not errors.is_terminal,
        )
        rows = []
        with progress:
            task = progress.add_task(f"categorizing {file.name}", total=len(examples))
            for example in examples:
                rows.append(
                    _row(example.id, example.title, example.description, ranker, taxonomy, top)
                )
                progress.advance(task)
    _print(rows, output, single=text is not None)


def _ranker(model: Path | None) -> Ranker:
    from psatriage.local_engine.embed import shared_embedder
    from psatriage.local_engine.model import TrainedModel
    from psatriage.local_engine.ranker import Ranker

    return Ranker(shared_embedder(), TrainedModel.load(model) if model is not None else None)


def _require_fit(ranker: Ranker, taxonomy: Taxonomy, model: Path, taxonomy_file: Path) -> None:
    """A model that knows none of the taxonomy's categories would leave every ticket to
    zero-shot without a word: that is a mistake in the command, not a result."""
    _, sources = ranker.probabilities([""], taxonomy.active())
    if "model" in sources or ranker.model is None:
        return
    known = ", ".join(ranker.model.classes[:3])
    raise ConfigError(
        f"--model {model} was trained for other categories (level "
        f"{ranker.model.report.label!r}: {known}…) than {taxonomy_file} lists; fix: train it "
        "on labels of this taxonomy, or leave --model out for zero-shot"
    )


def _row(
    ticket_id: str, title: str, description: str, ranker: Ranker, taxonomy: Taxonomy, top: int
) -> dict[str, Any]:
    from psatriage.local_engine.data import ticket_text

    ranked: list[Scored] = ranker.rank(ticket_text(title, description), taxonomy.active())
    best = ranked[0]
    return {
        "id": ticket_id,
        "title": title,
        "key": best.category.key,
        "category": best.category.label,
        "confidence": round(best.probability, 4),
        "source": best.source,
        "alternatives": [
            {
                "key": s.category.key,
                "category": s.category.label,
                "confidence": round(s.probability, 4),
            }
            for s in ranked[1 : 1 + top]
        ],
    }


def _print(rows: list[dict[str, Any]], output: Output, *, single: bool) -> None:
    if output is Output.JSON:
        print(json.dumps(rows[0] if single else rows, indent=2, ensure_ascii=False))
        return
    if output is Output.CSV:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["id", "key", "category", "confidence", "alternatives"])
        for row in rows:
            alternatives = "; ".join(
                f"{a['category']} ({a['confidence']:.2f})" for a in row["alternatives"]
            )
            writer.writerow(
                [row["id"], row["key"], row["category"], row["confidence"], alternatives]
            )
        print(buffer.getvalue(), end="")
        return
    if single:
        row = rows[0]
        console.print(f"{row['category']}  (confidence {row['confidence']:.2f})", highlight=False)
        for alternative in row["alternatives"]:
            console.print(
                f"  or {alternative['category']}  ({alternative['confidence']:.2f})",
                highlight=False,
            )
        return
    table = Table("id", "category", "confidence", "next best")
    for row in rows:
        next_best = row["alternatives"][0]["category"] if row["alternatives"] else ""
        table.add_row(row["id"], row["category"], f"{row['confidence']:.2f}", next_best)
    console.print(table)
