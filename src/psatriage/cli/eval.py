"""``psatriage eval``: measure an engine on a labeled JSONL file."""

from __future__ import annotations

import json
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from psatriage.cli._app import app, console, errors, fail_cleanly, settings
from psatriage.errors import ConfigError
from psatriage.evaluation.measures import Report, report
from psatriage.local_engine import DEFAULT_MIN_EXAMPLES

if TYPE_CHECKING:
    from psatriage.classifiers.base import Classifier
    from psatriage.evaluation import runs as runs_module
    from psatriage.local_engine.data import Split
    from psatriage.local_engine.model import TrainedModel

CATEGORY_LEVEL = "category"  # the label level offered as the category beside a field


class Engine(StrEnum):
    LOCAL = "local"
    OPENAI = "openai"
    HYBRID = "hybrid"


class SplitChoice(StrEnum):
    EVAL = "eval"
    TRAIN = "train"
    ALL = "all"


@app.command("eval")
def eval_command(
    data: Annotated[Path, typer.Argument(help="Labeled tickets, JSON Lines.")],
    label: Annotated[
        str,
        typer.Option(
            "--label",
            "-l",
            help="The label level to predict: a category level, or a ticket field (priority, "
            "routing, noise, sentiment, language).",
        ),
    ],
    engine: Annotated[Engine, typer.Option(help="Which engine to measure.")] = Engine.LOCAL,
    split: Annotated[
        SplitChoice,
        typer.Option(help="Which tickets to score: the eval split (~20%), train, or all."),
    ] = SplitChoice.EVAL,
    model: Annotated[
        Path | None,
        typer.Option(help="A trained model file; without it local/hybrid train on the rest."),
    ] = None,
    zero_shot: Annotated[
        bool, typer.Option("--zero-shot", help="Local engine without training: label names only.")
    ] = False,
    taxonomy: Annotated[
        Path | None, typer.Option(help="TOML file naming or describing the label values.")
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", "-t", help="Take the LLM settings from this tenant."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Score at most this many tickets.")] = None,
    min_examples: Annotated[
        int, typer.Option(help="Fewer examples than this: the category stays zero-shot.")
    ] = DEFAULT_MIN_EXAMPLES,
    target_precision: Annotated[
        float, typer.Option(help="Report the confidence threshold that reaches this precision.")
    ] = 0.9,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Accuracy, macro-F1, per-class table, confusions, thresholds, calibration, latency, cost.

    A ticket field as the label is measured as the service decides it: an LLM engine is asked it
    beside the category (the file's category level) in one call, the local engine learns it
    as a label, a hybrid's local half ranks the categories and takes the field from a model of
    it trained on the rest (the tickets it decides without the LLM), and the language is
    detected offline.

    A ticket the engine cannot answer is counted as a failure of its kind and the run goes on;
    the exit code is 1 when no ticket was answered or the run had to stop (credentials refused).
    """
    from psatriage.evaluation import field_runs as field_measures
    from psatriage.evaluation import runs
    from psatriage.shortlist import HasRanker

    with fail_cleanly(), ExitStack() as stack:
        if engine is not Engine.LOCAL and tenant is None:
            raise ConfigError(f"--engine {engine.value} needs --tenant (whose LLM settings to use)")
        if zero_shot and model is not None:
            raise ConfigError("--zero-shot and --model exclude each other")
        chosen_split: Split = split.value
        setup = runs.prepare(data, label, chosen_split, taxonomy)
        if label == "language":  # detected offline, as the service does: no engine to ask
            _language(data, setup, split, limit, target_precision, as_json=as_json)
            return
        as_field = _asked_as_field(setup, engine)
        categories = _categories(data, label, chosen_split) if as_field else None
        trained = _Trained()
        if engine is not Engine.OPENAI and not zero_shot:
            trained = _train(setup, model, min_examples, stack, as_field, categories)
        training, learned = trained.training, trained.learned
        classifier = _classifier(engine, trained.model_ref, tenant)
        stack.callback(classifier.close)
        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=errors,
            transient=True,
            disable=not errors.is_terminal,
        )
        total = len(setup.scored[:limit])
        with progress:
            task = progress.add_task(f"{engine.value} on {data.name}", total=total)
            if as_field:
                run = field_measures.evaluate(
                    setup,
                    classifier,
                    categories=categories.taxonomy if categories is not None else None,
                    progress=lambda n: progress.advance(task, n),
                    limit=limit,
                    learned=learned,
                )
            else:
                run = runs.evaluate(
                    setup,
                    classifier,
                    progress=lambda n: progress.advance(task, n),
                    limit=limit,
                )
        result = report(run.predictions, target_precision=target_precision, failures=run.failures)
        model_name = classifier.config.default_model  # the LLM's; the local engine's model below
        if not model_name and isinstance(classifier, HasRanker):
            model_name = classifier.ranker().name
        header = {
            "data": data.name,
            "label": label,
            "field": label in field_measures.FILE_FIELDS,
            "split": split.value,
            "engine": engine.value,
            "model": model_name,
            "candidates": len(setup.taxonomy.leaves),
            "training": training,
            "pricing": _pricing(classifier),
            "stopped": run.stopped,
        }
        if as_json:
            print(json.dumps({**header, **result.to_dict()}, indent=2))
        else:
            _show(header, result)
        if run.stopped:
            errors.print(Text(run.stopped, "red"), highlight=False)
        if run.stopped or not run.predictions:
            raise typer.Exit(1)


def _asked_as_field(setup: runs_module.Setup, engine: Engine) -> bool:
    """Whether the label is a ticket field asked of an LLM beside the category (the local
    engine learns a field as a label); a field's values are checked either way."""
    from psatriage.evaluation import field_runs as field_measures

    if setup.label not in field_measures.FILE_FIELDS:
        return False
    field_measures.check_values(setup)
    return engine is not Engine.LOCAL


def _categories(data: Path, label: str, split: Split) -> runs_module.Setup | None:
    """The file's categories (its ``category`` level), offered beside a field as the service
    offers the tree, and what a hybrid's local half is trained on to rank them; None when the
    file has no such level."""
    from psatriage.evaluation import runs
    from psatriage.local_engine import DataError

    if label == CATEGORY_LEVEL:
        return None
    try:
        return runs.prepare(data, CATEGORY_LEVEL, split)
    except DataError:
        return None


@dataclass(frozen=True)
class _Trained:
    model_ref: str = "zero-shot"  # the local engine's (a hybrid's local half's) category model
    training: dict[str, Any] | None = None  # the report of what was trained on the label
    learned: TrainedModel | None = None  # the local engine's model of a field


def _train(
    setup: runs_module.Setup,
    model: Path | None,
    min_examples: int,
    stack: ExitStack,
    as_field: bool,
    categories: runs_module.Setup | None,
) -> _Trained:
    """The local engine's models, trained on the tickets outside the scored split. For a field
    asked of a hybrid (``as_field``): its local half ranks the file's ``categories`` (zero-shot
    without them), and a model of the field answers the field of the tickets it decides, as the
    service's field models do; otherwise one model of the label."""
    from psatriage.evaluation import runs

    if not as_field:
        if model is not None:
            return _Trained(str(model))
        trained = runs.train_on_rest(setup, min_examples=min_examples)
        return _Trained(str(_saved(trained, stack)), trained.report.to_dict())
    learned = runs.train_on_rest(setup, min_examples=min_examples) if setup.rest else None
    if model is None and categories is not None and categories.rest:
        model = _saved(runs.train_on_rest(categories, min_examples=min_examples), stack)
    return _Trained(
        str(model) if model is not None else "zero-shot",
        learned.report.to_dict() if learned is not None else None,
        learned,
    )


def _saved(trained: TrainedModel, stack: ExitStack) -> Path:
    """``trained`` in a model file that lives as long as ``stack``."""
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    path = folder / "model.npz"
    trained.save(path)
    return path


def _language(
    data: Path,
    setup: runs_module.Setup,
    split: SplitChoice,
    limit: int | None,
    target_precision: float,
    *,
    as_json: bool,
) -> None:
    """``--label language``: the offline detector the service uses, on the scored tickets."""
    from psatriage.evaluation import field_runs as field_measures

    run = field_measures.evaluate(setup, None, limit=limit)
    result = report(run.predictions, target_precision=target_precision)
    header = {
        "data": data.name,
        "label": setup.label,
        "field": True,
        "split": split.value,
        "engine": "offline",
        "model": "language profiles shipped with the package",
        "candidates": len(setup.taxonomy.leaves),
        "training": None,
        "pricing": None,
        "stopped": None,
    }
    if as_json:
        print(json.dumps({**header, **result.to_dict()}, indent=2))
    else:
        _show(header, result)


def _classifier(engine: Engine, model_ref: str, tenant: str | None) -> Classifier[Any]:
    from psatriage.classifiers.local import LocalClassifier, LocalConfig
    from psatriage.config import load_config
    from psatriage.evaluation.engines import classifier_for

    if engine is Engine.LOCAL:
        return LocalClassifier("eval", LocalConfig(model=model_ref))
    assert tenant is not None
    configured = load_config(settings().config).tenant(tenant)
    return classifier_for(configured, engine.value, local_model=model_ref)


def _pricing(classifier: Classifier[Any]) -> str | None:
    """How the LLM's calls are priced, for engines that call one."""
    from psatriage.classifiers._openai_config import cost_basis
    from psatriage.classifiers.hybrid import HybridClassifier
    from psatriage.classifiers.openai_compat import OpenAICompatClassifier

    llm = classifier.llm if isinstance(classifier, HybridClassifier) else classifier
    if isinstance(llm, OpenAICompatClassifier):
        return cost_basis(llm.config, llm.config.default_model)
    return None


def _show(header: dict[str, Any], result: Report) -> None:
    summary = Table("", "", title=f"{header['engine']} on {header['data']} ({header['label']})")
    summary.add_row("split", f"{header['split']}: {result.examples} tickets answered")
    if result.failed:
        kinds = ", ".join(f"{kind}: {count}" for kind, count in result.failures.items())
        summary.add_row("failed", Text.assemble((f"{result.failed} tickets", "red"), f" ({kinds})"))
    summary.add_row("candidates", str(header["candidates"]))
    summary.add_row("model", str(header["model"]))
    summary.add_row("accuracy", f"{result.accuracy:.3f}")
    summary.add_row("macro-F1", f"{result.macro_f1:.3f}")
    summary.add_row("calibration error (ECE)", f"{result.ece:.3f}")
    target = result.threshold_for_target
    summary.add_row(
        f"threshold for {result.target_precision:.0%} precision",
        f"{target:.2f}" if target is not None else "not reached",
    )
    summary.add_row(
        "latency p50 / p99", f"{result.latency_p50_ms:.1f} / {result.latency_p99_ms:.1f} ms"
    )
    if result.tokens_in or result.cost_usd:
        summary.add_row(
            "tokens in / out",
            f"{result.tokens_in} / {result.tokens_out} (cost ${result.cost_usd:.4f})",
        )
    if header.get("pricing"):
        summary.add_row("pricing", str(header["pricing"]))
    if result.engines:
        summary.add_row("decided by", ", ".join(f"{k}: {v}" for k, v in result.engines.items()))
    training = header.get("training")
    if training:
        summary.add_row(
            "trained on",
            f"{training['examples']} tickets, {training['classes']} categories "
            f"({len(training['zero_shot'])} left zero-shot); cross-validated accuracy "
            f"{training['cv_accuracy']:.3f}",
        )
    console.print(summary)

    thresholds = Table("confidence ≥", "coverage", "precision", title="thresholds")
    for row in result.thresholds:
        thresholds.add_row(f"{row.threshold:.2f}", f"{row.coverage:.1%}", f"{row.precision:.3f}")
    console.print(thresholds)

    what = "value" if header.get("field") else "category"
    classes = Table(what, "support", "precision", "recall", "F1", title=f"per {what}")
    for c in result.classes[:40]:
        classes.add_row(
            c.label, str(c.support), f"{c.precision:.2f}", f"{c.recall:.2f}", f"{c.f1:.2f}"
        )
    if len(result.classes) > 40:
        classes.caption = f"{len(result.classes) - 40} more in --json"
    console.print(classes)

    if result.failure_examples:
        failed = Table("ticket", "kind", "error", title="failures (first of each kind)")
        for failure in result.failure_examples:
            failed.add_row(failure.ticket_id, failure.kind, failure.message)
        console.print(failed)

    if result.confused:
        confused = Table("true", "predicted", "count", title="most confused")
        for truth, predicted, count in result.confused:
            confused.add_row(truth, predicted, str(count))
        console.print(confused)
