"""Accuracy of the local engine beside a TF-IDF + logistic-regression baseline, in one run.

Run from the repository root (the data is not part of the repository)::

    uv run python -m bench.accuracy --data ../shared/data [--json] [--skip-rss]

Rows (each trained on the train split and scored on the eval split of the data README's rule):

supervised   Endava ``category_path`` and ``sub_category1``, CFPB ``product`` and ``issue``: the
             baseline (TF-IDF of words and word pairs, sublinear, min_df 2, logistic regression
             C=10: the setting that reproduces the data README's figures) and the local engine
             exactly as ``psatriage eval`` runs it (trained by ``psatriage.local_engine``, each
             ticket through ``LocalClassifier.classify``).
zero-shot    CFPB ``product`` and ``issue`` from the label names alone, beside the majority class.
RSS          a real ``psatriage serve`` whose tenant uses ``kind = "local"`` with the Endava
             ``category_path`` model, after it has categorized 20 tickets from a fake ConnectWise;
             beside the same service with the OpenAI classifier (fakes on loopback).

Nothing here asserts: docs/PERFORMANCE.md holds one run's numbers and the goals.
"""

from __future__ import annotations

import argparse
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
from psatriage.evaluation.measures import accuracy, macro_f1, report
from psatriage.evaluation.runs import Setup

SUPERVISED = (
    ("endava/tickets.jsonl", "category_path", 0.424),
    ("endava/tickets.jsonl", "sub_category1", 0.632),
    ("cfpb/complaints.jsonl", "product", 0.718),
    ("cfpb/complaints.jsonl", "issue", 0.491),
)
ZERO_SHOT = (("cfpb/complaints.jsonl", "product"), ("cfpb/complaints.jsonl", "issue"))
RSS_TARGET_MB = 250
TICKETS = (
    ("Printer on 3rd floor", "My printer has a paper jam again"),
    ("Laptop is dead", "My laptop will not power on after the update"),
    ("VPN keeps dropping", "The VPN disconnects every few minutes when I work from home"),
    ("New phone", "Please help with the email setup on my new phone"),
)


def baseline(setup: Setup) -> dict[str, float]:
    """TF-IDF 1-2-grams + logistic regression on the train split, scored on the eval split."""
    texts, labels = runs.texts_and_labels(setup.rest)
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    model = LogisticRegression(C=10, max_iter=1000)
    model.fit(vectorizer.fit_transform(texts), labels)
    seconds = time.perf_counter() - started
    eval_texts, truth = runs.texts_and_labels(setup.scored)
    predicted = [str(p) for p in model.predict(vectorizer.transform(eval_texts))]
    return {
        "accuracy": accuracy(truth, predicted),
        "macro_f1": macro_f1(truth, predicted),
        "train_seconds": seconds,
    }


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
    result = report(run.predictions, failures=run.failures)
    return {
        "accuracy": result.accuracy,
        "macro_f1": result.macro_f1,
        "ece": result.ece,
        "threshold_90": result.threshold_for_target,
        "coverage_at_0.8": next(r.coverage for r in result.thresholds if r.threshold == 0.8),
        "precision_at_0.8": next(r.precision for r in result.thresholds if r.threshold == 0.8),
        "p50_ms": result.latency_p50_ms,
        "p99_ms": result.latency_p99_ms,
        "train_seconds": training.get("seconds"),
        "zero_shot_classes": len(training.get("zero_shot", {})),
        "classes": training.get("classes"),
    }


def accuracy_rows(data: Path, folder: Path) -> dict[str, Any]:
    supervised, zero = [], []
    for file, level, published in SUPERVISED:
        setup = runs.prepare(data / file, level, "eval")
        supervised.append(
            {
                "data": file.split("/")[0],
                "label": level,
                "eval_tickets": len(setup.scored),
                "categories": len(setup.taxonomy.leaves),
                "published_baseline": published,
                "baseline": baseline(setup),
                "local": local(setup, zero_shot=False, folder=folder),
            }
        )
    for file, level in ZERO_SHOT:
        setup = runs.prepare(data / file, level, "eval")
        truth = [value for _, value in setup.scored]
        majority = Counter(value for _, value in setup.rest).most_common(1)[0][0]
        zero.append(
            {
                "data": file.split("/")[0],
                "label": level,
                "eval_tickets": len(setup.scored),
                "categories": len(setup.taxonomy.leaves),
                "majority": accuracy(truth, [majority] * len(truth)),
                "local": local(setup, zero_shot=True, folder=folder),
            }
        )
    return {"supervised": supervised, "zero_shot": zero}


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
                started = _status_mb(pid)
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
                finished = _status_mb(pid)
            out[name] = {
                "rss_at_start_mb": round(started["VmRSS"], 1),
                "rss_mb": round(finished["VmRSS"], 1),
                "peak_mb": round(finished["VmHWM"], 1),
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
        "p50 / p99 ms",
        title="supervised (eval split)",
    )
    for row in result["supervised"]:
        base, ours = row["baseline"], row["local"]
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
            f"{ours['p50_ms']:.1f} / {ours['p99_ms']:.1f}",
        )
    console.print(table)
    zero = Table("data", "label", "categories", "majority", "zero-shot acc", "F1", "ECE")
    for row in result["zero_shot"]:
        ours = row["local"]
        zero.add_row(
            row["data"],
            row["label"],
            str(row["categories"]),
            f"{row['majority']:.3f}",
            f"{ours['accuracy']:.3f}",
            f"{ours['macro_f1']:.3f}",
            f"{ours['ece']:.3f}",
        )
    console.print(zero)
    if "rss" in result:
        console.print(result["rss"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--skip-rss", action="store_true", help="do not start services")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        result: dict[str, Any] = {"machine": machine()}
        result |= accuracy_rows(args.data, Path(folder))
        if not args.skip_rss:
            setup = runs.prepare(args.data / SUPERVISED[0][0], SUPERVISED[0][1], "eval")
            model = runs.train_on_rest(setup)
            path = Path(folder) / "rss-model.npz"
            model.save(path)
            result["rss"] = service_rss(path)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        render(result, Console())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
