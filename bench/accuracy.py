"""Accuracy of the local engine beside a TF-IDF + logistic-regression baseline, in one run.

Run from the repository root (the data is not part of the repository)::

    uv run python -m bench.accuracy --data ../shared/data [--multilingual FILE.csv] [--json]
        [--skip-rss] [--rows product,issue] [--skip-baseline] [--only-supervised]

``--rows`` keeps some supervised rows (``category_path``, ``sub_category1``, ``product``,
``issue``), ``--skip-baseline`` leaves the baseline out (its ``category_path`` fit takes minutes)
and ``--only-supervised`` leaves out zero-shot, rotations, multilingual, training time and RSS:
what one iterates with. The table of docs/PERFORMANCE.md is one whole run.

Rows (each trained on the train split and scored on the eval split of the data README's rule):

supervised   Endava ``category_path`` and ``sub_category1``, CFPB ``product`` and ``issue``: the
             baseline (TF-IDF of words and word pairs, sublinear, min_df 2, logistic regression
             C=10: the setting that reproduces the data README's figures) and the local engine
             exactly as ``psatriage eval`` runs it (trained by ``psatriage.local_engine``, each
             ticket through ``LocalClassifier.classify``).
             Hierarchical labels (``category_path``) also get accuracy per level (the path's first
             level, its first two levels, the whole path) for both. Beside the local engine's
             ECE, its floor: the ECE a perfectly calibrated engine would show with the same
             confidences on as many tickets (the mean over simulated draws of right and wrong
             at those confidences): on a few hundred tickets the binned ECE cannot be near 0.
rotations    CFPB ``product`` and ``issue`` scored on each fifth of the file by the split rule's
             hash, each by a model trained on the other four (the eval split is one of them):
             accuracy and ECE per rotation and pooled over every ticket.
zero-shot    CFPB ``product`` from names alone and from names with the descriptions of
             ``bench/cfpb_products.toml``, and ``issue`` from names, beside the majority class;
             with top-3 accuracy.
multilingual per language, trained on all languages and on English only, beside the baseline
             and the majority class (``bench/multilingual.py``): the set built from the machine's
             message catalogs (``bench/catalogs.py``), and with ``--multilingual FILE.csv`` the
             multilingual customer-support tickets of Tobias Bueck (kept outside the repository).
training     the local engine trained on 10,000 tickets drawn (with replacement) from the Endava
             train split, ``category_path``: wall and CPU seconds.
RSS          a real ``psatriage serve`` (the web process and its 2 worker processes, each
             measured: the workers load the engine) whose tenant uses ``kind = "local"`` with the
             Endava ``category_path`` model, after it has categorized 20 tickets from a fake
             ConnectWise; beside the same service with the OpenAI classifier (fakes on loopback).

Nothing here asserts: docs/PERFORMANCE.md holds one run's numbers and the goals.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sklearn
from rich.console import Console
from rich.table import Table
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from tests.fakes.connectwise import FakeConnectWise
from tests.fakes.openai import FakeOpenAI
from tests.harness import TENANT, Harness

from psatriage.classifiers.local import LocalClassifier, LocalConfig
from psatriage.evaluation import runs
from psatriage.evaluation.measures import (
    Prediction,
    accuracy,
    expected_calibration_error,
    macro_f1,
    report,
)
from psatriage.evaluation.runs import Setup
from psatriage.local_engine.data import Example, read_examples, taxonomy_from_labels
from psatriage.local_engine.embed import shared_embedder
from psatriage.local_engine.training import train

SUPERVISED = (
    ("endava/tickets.jsonl", "category_path", 0.424),
    ("endava/tickets.jsonl", "sub_category1", 0.632),
    ("cfpb/complaints.jsonl", "product", 0.718),
    ("cfpb/complaints.jsonl", "issue", 0.491),
)
ROTATED = (("cfpb/complaints.jsonl", "product"), ("cfpb/complaints.jsonl", "issue"))
DESCRIBED = Path(__file__).resolve().parent / "cfpb_products.toml"
ZERO_SHOT: tuple[tuple[str, str, Path | None], ...] = (
    ("cfpb/complaints.jsonl", "product", None),
    ("cfpb/complaints.jsonl", "product", DESCRIBED),
    ("cfpb/complaints.jsonl", "issue", None),
)
RSS_TARGET_MB = 250
TICKETS = (
    ("Printer on 3rd floor", "My printer has a paper jam again"),
    ("Laptop is dead", "My laptop will not power on after the update"),
    ("VPN keeps dropping", "The VPN disconnects every few minutes when I work from home"),
    ("New phone", "Please help with the email setup on my new phone"),
)


def texts_and_labels(pairs: list[tuple[Example, str]]) -> tuple[list[str], list[str]]:
    return [e.text for e, _ in pairs], [v for _, v in pairs]


def baseline(setup: Setup) -> dict[str, Any]:
    """TF-IDF 1-2-grams + logistic regression on the train split, scored on the eval split."""
    texts, labels = texts_and_labels(setup.rest)
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    model = LogisticRegression(C=10, max_iter=1000)
    model.fit(vectorizer.fit_transform(texts), labels)
    seconds = time.perf_counter() - started
    eval_texts, truth = texts_and_labels(setup.scored)
    predicted = [str(p) for p in model.predict(vectorizer.transform(eval_texts))]
    return {
        "accuracy": accuracy(truth, predicted),
        "macro_f1": macro_f1(truth, predicted),
        "per_level": per_level(truth, predicted),
        "train_seconds": seconds,
    }


def per_level(truth: list[str], predicted: list[str]) -> list[float]:
    """Accuracy of the first level, the first two levels... of '/'-separated paths."""
    depth = max(len(t.split("/")) for t in truth)
    if depth < 2:
        return []
    return [
        accuracy(
            ["/".join(t.split("/")[: k + 1]) for t in truth],
            ["/".join(p.split("/")[: k + 1]) for p in predicted],
        )
        for k in range(depth)
    ]


def ece_floor(confidence: list[float], draws: int = 1000) -> dict[str, float]:
    """The expected calibration error of a perfectly calibrated engine with these confidences
    on as many tickets: each decision right with its own confidence, ``draws`` times. Its mean
    and its 10th and 90th percentiles (the spread of the measured ECE of a calibrated engine)."""
    if not confidence:
        return {"mean": 0.0, "p10": 0.0, "p90": 0.0}
    rng = np.random.default_rng(0)
    p = np.asarray(confidence, dtype=np.float64)
    found = [
        expected_calibration_error((rng.random(len(p)) < p).tolist(), p.tolist())
        for _ in range(draws)
    ]
    return {
        "mean": round(float(np.mean(found)), 4),
        "p10": round(float(np.percentile(found, 10)), 4),
        "p90": round(float(np.percentile(found, 90)), 4),
    }


def top_k(setup: Setup, classifier: LocalClassifier, k: int = 3) -> float:
    """Share of eval tickets whose category is among the ranker's ``k`` best."""
    ranker = classifier.ranker()
    candidates = setup.taxonomy.active()
    hits = 0
    for example, truth in setup.scored:
        ranked = ranker.rank(example.text, candidates)
        hits += truth in {s.category.key for s in ranked[:k]}
    return hits / len(setup.scored)


def local(setup: Setup, *, zero_shot: bool, folder: Path) -> dict[str, Any]:
    """The local engine as ``psatriage eval`` runs it."""
    config: dict[str, Any] = {"model": "zero-shot"}
    training: dict[str, Any] = {}
    if not zero_shot:
        model = runs.train_on_rest(setup)
        path = folder / f"{setup.path.stem}-{setup.label}.npz"
        model.save(path)
        config = {"model": str(path)}
        training = model.report.to_dict()
    classifier = LocalClassifier("bench", LocalConfig(**config))
    run = runs.evaluate(setup, classifier)
    predictions = run.predictions
    result = report(predictions, failures=run.failures)
    return {
        "accuracy": result.accuracy,
        "per_level": per_level([p.truth for p in predictions], [p.predicted for p in predictions]),
        "top3": top_k(setup, classifier) if zero_shot else None,
        "macro_f1": result.macro_f1,
        "ece": result.ece,
        "ece_floor": ece_floor([p.confidence for p in predictions]),
        "threshold_90": result.threshold_for_target,
        "coverage_at_0.8": next(r.coverage for r in result.thresholds if r.threshold == 0.8),
        "precision_at_0.8": next(r.precision for r in result.thresholds if r.threshold == 0.8),
        "p50_ms": result.latency_p50_ms,
        "p99_ms": result.latency_p99_ms,
        "train_seconds": training.get("seconds"),
        "cv_ece": training.get("cv_ece"),
        "zero_shot_classes": len(training.get("zero_shot", {})),
        "classes": training.get("classes"),
    }


def rotations(data: Path, file: str, level: str, folder: Path) -> dict[str, Any]:
    """The local engine on each fifth of the file by the split rule's hash (the eval split is
    the fifth whose remainder is 0), trained on the other four: every ticket scored once by a
    model that did not see it. Per rotation and pooled: what one eval split of a few hundred
    tickets cannot tell apart from chance (its ECE floor) shows on five times as many."""
    path = data / file
    pairs = [(e, v) for e in read_examples(path) if (v := e.labels.get(level))]
    taxonomy = taxonomy_from_labels([v for _, v in pairs], level)
    pooled: list[Prediction] = []
    each = []
    for rotation in range(5):
        scored = [(e, v) for e, v in pairs if _fifth(e) == rotation]
        rest = [(e, v) for e, v in pairs if _fifth(e) != rotation]
        setup = Setup(path, level, "eval", taxonomy, scored, rest)
        model = runs.train_on_rest(setup)
        model_path = folder / f"{path.stem}-{level}-rotation{rotation}.npz"
        model.save(model_path)
        classifier = LocalClassifier("bench", LocalConfig(model=str(model_path)))
        predictions = runs.evaluate(setup, classifier).predictions
        pooled += predictions
        found = report(predictions)
        each.append(
            {
                "rotation": rotation,
                "tickets": len(predictions),
                "accuracy": round(found.accuracy, 4),
                "ece": round(found.ece, 4),
            }
        )
    found = report(pooled)
    return {
        "data": file.split("/", maxsplit=1)[0],
        "label": level,
        "rotations": each,
        "tickets": len(pooled),
        "accuracy": round(found.accuracy, 4),
        "macro_f1": round(found.macro_f1, 4),
        "ece": round(found.ece, 4),
        "ece_floor": ece_floor([p.confidence for p in pooled]),
    }


def _fifth(example: Example) -> int:
    """The split rule's remainder (0 is the eval split), from the text's hash."""
    normalized = " ".join((example.title + "\n" + example.description).lower().split())
    return int(hashlib.sha1(normalized.encode()).hexdigest(), 16) % 5  # noqa: S324 - a split rule


def accuracy_rows(
    data: Path,
    folder: Path,
    *,
    rows: frozenset[str] | None = None,
    with_baseline: bool = True,
    with_zero_shot: bool = True,
) -> dict[str, Any]:
    supervised, zero = [], []
    for file, level, published in SUPERVISED:
        if rows is not None and level not in rows:
            continue
        setup = runs.prepare(data / file, level, "eval")
        supervised.append(
            {
                "data": file.split("/")[0],
                "label": level,
                "eval_tickets": len(setup.scored),
                "categories": len(setup.taxonomy.leaves),
                "published_baseline": published,
                "baseline": baseline(setup) if with_baseline else None,
                "local": local(setup, zero_shot=False, folder=folder),
            }
        )
    for file, level, described in ZERO_SHOT if with_zero_shot else ():
        setup = runs.prepare(data / file, level, "eval", described)
        truth = [value for _, value in setup.scored]
        majority = Counter(value for _, value in setup.rest).most_common(1)[0][0]
        zero.append(
            {
                "data": file.split("/")[0],
                "label": level,
                "from": "names and descriptions" if described else "names",
                "eval_tickets": len(setup.scored),
                "categories": len(setup.taxonomy.leaves),
                "majority": accuracy(truth, [majority] * len(truth)),
                "local": local(setup, zero_shot=True, folder=folder),
            }
        )
    return {"supervised": supervised, "zero_shot": zero}


def training_time(data: Path, tickets: int = 10_000) -> dict[str, Any]:
    """The local engine trained on ``tickets`` drawn with replacement from Endava's train split."""
    setup = runs.prepare(data / SUPERVISED[0][0], SUPERVISED[0][1], "eval")
    draw = np.random.default_rng(0).integers(0, len(setup.rest), tickets)
    pairs = [setup.rest[i] for i in draw.tolist()]
    wall, cpu = time.perf_counter(), time.process_time()
    model = train(
        [e.text for e, _ in pairs], [v for _, v in pairs], shared_embedder(), label="category_path"
    )
    return {
        "tickets": tickets,
        "wall_seconds": round(time.perf_counter() - wall, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
        "classes": model.report.classes,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# -- RSS of a service with the local engine loaded ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _status_mb(pid: int) -> dict[str, float]:
    text = Path(f"/proc/{pid}/status").read_text()
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.MULTILINE))
    return {name: int(value) / 1024 for name, value in found.items()}


def _processes(pid: int) -> dict[str, dict[str, float]]:
    """RSS and peak of the serve process and of each worker process it started."""
    out = {"serve": _status_mb(pid)}
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for number, child in enumerate(children, start=1):
        out[f"worker {number}"] = _status_mb(int(child))
    return out


@contextmanager
def _service(harness: Harness, classifier: dict[str, Any]) -> Iterator[tuple[str, int]]:
    harness.tenant["classifier"] = classifier
    config = harness.write_config()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSATRIAGE_")}
    env |= harness.env | {
        "PSATRIAGE_CONFIG": str(config),
        "PSATRIAGE_DATA_DIR": str(harness.root / "data"),
        "PSATRIAGE_LOG_FORMAT": "json",
        "PSATRIAGE_WORKERS": "2",
    }
    log = (harness.root / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "psatriage", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("psatriage serve did not start; see serve.log")
            time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _final(client: httpx.Client, url: str, event: int) -> tuple[str, str]:
    """The event's final state and the engine of its decision, once a worker finished it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        data = client.get(f"{url}/api/events/{event}").json()
        if data["state"] not in {"received", "processing"}:
            decision = data.get("decision") or {}
            return str(data["state"]), str(decision.get("engine", ""))
        time.sleep(0.05)
    raise RuntimeError(f"event {event} did not finish")


def service_rss(model: Path, tickets: int = 20) -> dict[str, Any]:
    """RSS of ``psatriage serve`` after categorizing tickets, local engine and OpenAI."""
    out: dict[str, Any] = {}
    for name, classifier in (
        ("local", {"kind": "local", "model": str(model)}),
        ("openai", None),
    ):
        with (
            FakeConnectWise() as cw,
            FakeOpenAI() as llm,
            tempfile.TemporaryDirectory() as root,
        ):
            harness = Harness(cw, llm, Path(root))
            chosen = classifier or harness.tenant["classifier"]
            with _service(harness, chosen) as (url, pid), httpx.Client() as client:
                started = _processes(pid)
                events = []
                for index in range(tickets):
                    summary, description = TICKETS[index % len(TICKETS)]
                    ticket = cw.add_ticket(summary, description)
                    body, headers = cw.callback(ticket)
                    answer = client.post(f"{url}/webhooks/{TENANT}", content=body, headers=headers)
                    events.append(int(answer.json()["event_id"]))
                finals = [_final(client, url, event) for event in events]
                done = sum(1 for state, _ in finals if state == "done")
                engines = sorted({engine for _, engine in finals})
                finished = _processes(pid)
            out[name] = {
                "processes": {
                    process: {
                        "rss_at_start_mb": round(started.get(process, {}).get("VmRSS", 0), 1),
                        "rss_mb": round(status["VmRSS"], 1),
                        "peak_mb": round(status["VmHWM"], 1),
                    }
                    for process, status in finished.items()
                },
                "largest_rss_mb": round(max(s["VmRSS"] for s in finished.values()), 1),
                "largest_peak_mb": round(max(s["VmHWM"] for s in finished.values()), 1),
                "tickets_categorized": done,
                "engines": engines,
            }
    out["model_file_mb"] = round(model.stat().st_size / 2**20, 1)
    return out


# -- the report -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = names[0].strip() if names else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


def render(result: dict[str, Any], console: Console) -> None:
    m = result["machine"]
    console.print(
        f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, numpy {m['numpy']}, "
        f"scikit-learn {m['scikit-learn']}"
    )
    table = Table(
        "data",
        "label",
        "categories",
        "baseline acc",
        "local acc",
        "Δ",
        "baseline F1",
        "local F1",
        "local ECE",
        "ECE floor (p10-p90)",
        "p50 / p99 ms",
        title="supervised (eval split)",
    )
    absent = {"accuracy": float("nan"), "macro_f1": float("nan"), "per_level": []}
    for row in result["supervised"]:
        base, ours = row["baseline"] or absent, row["local"]
        floor = ours["ece_floor"]
        table.add_row(
            row["data"],
            row["label"],
            str(row["categories"]),
            f"{base['accuracy']:.3f}",
            f"{ours['accuracy']:.3f}",
            f"{ours['accuracy'] - base['accuracy']:+.3f}",
            f"{base['macro_f1']:.3f}",
            f"{ours['macro_f1']:.3f}",
            f"{ours['ece']:.3f}",
            f"{floor['mean']:.3f} ({floor['p10']:.3f}-{floor['p90']:.3f})",
            f"{ours['p50_ms']:.1f} / {ours['p99_ms']:.1f}",
        )
    console.print(table)
    for row in result["supervised"]:
        if row["local"]["per_level"]:
            levels = " / ".join(f"{a:.3f}" for a in row["local"]["per_level"])
            base = " / ".join(f"{a:.3f}" for a in (row["baseline"] or absent)["per_level"])
            console.print(f"{row['label']} per level: local {levels}; baseline {base or '-'}")
    zero = Table("data", "label", "from", "majority", "zero-shot acc", "top-3", "F1", "ECE")
    for row in result["zero_shot"]:
        ours = row["local"]
        zero.add_row(
            row["data"],
            row["label"],
            row["from"],
            f"{row['majority']:.3f}",
            f"{ours['accuracy']:.3f}",
            f"{ours['top3']:.3f}",
            f"{ours['macro_f1']:.3f}",
            f"{ours['ece']:.3f}",
        )
    if result["zero_shot"]:
        console.print(zero)
    for found in result.get("multilingual", []):
        languages = [k for k in found["all languages"]["local"] if k != "all"]
        table = Table(
            "trained on", "model", "all", *languages, title=f"per language: {found['set']}"
        )
        for history in ("all languages", "English only"):
            for model in ("local", "baseline", "majority"):
                scores = found[history][model]
                table.add_row(history, model, *(f"{scores[k]:.3f}" for k in ["all", *languages]))
        console.print(table)
    for row in result.get("rotations", []):
        spread = ", ".join(
            f"{r['accuracy']:.3f} / {r['ece']:.3f} ({r['tickets']})" for r in row["rotations"]
        )
        floor = row["ece_floor"]
        console.print(
            f"{row['data']} {row['label']}, five rotations pooled ({row['tickets']} tickets): "
            f"accuracy {row['accuracy']:.3f}, macro-F1 {row['macro_f1']:.3f}, ECE "
            f"{row['ece']:.3f} (floor {floor['mean']:.3f}); each (accuracy / ECE): {spread}"
        )
    if "training" in result:
        console.print(result["training"])
    if "rss" in result:
        console.print(result["rss"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--skip-rss", action="store_true", help="do not start services")
    parser.add_argument(
        "--multilingual",
        type=Path,
        help="also dataset-tickets-multi-lang3-4k.csv (see bench/multilingual.py)",
    )
    parser.add_argument(
        "--rows",
        help="only these supervised labels, comma-separated: "
        + ",".join(level for _, level, _ in SUPERVISED),
    )
    parser.add_argument(
        "--skip-baseline", action="store_true", help="leave out the baseline (minutes to fit)"
    )
    parser.add_argument(
        "--only-supervised",
        action="store_true",
        help="only the supervised rows: no zero-shot, rotations, multilingual, training "
        "time or RSS",
    )
    args = parser.parse_args(argv)
    rows = None
    if args.rows:
        rows = frozenset(r.strip() for r in args.rows.split(",") if r.strip())
        known = {level for _, level, _ in SUPERVISED}
        if not rows <= known:
            parser.error(
                f"--rows: unknown {', '.join(sorted(rows - known))}; "
                f"known: {', '.join(sorted(known))}"
            )
    with tempfile.TemporaryDirectory() as folder:
        result: dict[str, Any] = {"machine": machine()}
        result |= accuracy_rows(
            args.data,
            Path(folder),
            rows=rows,
            with_baseline=not args.skip_baseline,
            with_zero_shot=not args.only_supervised,
        )
        if not args.only_supervised:
            result |= _the_rest(args, Path(folder))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        render(result, Console(width=200))
    return 0


def _the_rest(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Multilingual, training time and RSS."""
    from bench import catalogs, multilingual  # noqa: PLC0415 - it imports this module

    result: dict[str, Any] = {}
    sets = []
    if catalogs.available():
        sets.append(multilingual.catalog_rows(folder))
    if args.multilingual is not None:
        sets.append(multilingual.csv_rows(args.multilingual, folder))
    if sets:
        result["multilingual"] = sets
    result["rotations"] = [rotations(args.data, file, level, folder) for file, level in ROTATED]
    result["training"] = training_time(args.data)
    if not args.skip_rss:
        setup = runs.prepare(args.data / SUPERVISED[0][0], SUPERVISED[0][1], "eval")
        model = runs.train_on_rest(setup)
        path = folder / "rss-model.npz"
        model.save(path)
        result["rss"] = service_rss(path)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
