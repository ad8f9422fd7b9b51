"""The example report of ``docs/backtest.md``: ``psatriage backtest`` and ``psatriage readiness``
on a fake ConnectWise board with 90 days of tickets, answered by the fake OpenAI server.

Run from the repository root::

    uv run python -m bench.backtest_example [--json]

The history is made up but shaped like a real board: most tickets in a few categories, a rare
one, tickets left at the board's placeholder type, two pairs of categories that people (and so
the model) mix up, and open tickets that count towards the monthly volume. The model's answers
are scripted (right with a high confidence most of the time, a neighbour with a lower one
otherwise) from a fixed seed, so the report is the same on every run. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.fakes.connectwise import FakeConnectWise
from tests.fakes.openai import DEFAULT_API_KEY, FakeOpenAI
from tests.harness import OPENAI_KEY_ENV, openai_classifier, to_toml
from typer.testing import CliRunner

from psatriage.cli import app

TENANT = "acme"
# final category (type, subtype, item) -> (tickets in 90 days, ticket text, mixed up with)
HISTORY: dict[tuple[int, int | None, int | None], tuple[int, str, tuple[int, ...] | None]] = {
    (10, 20, 30): (70, "Paper keeps jamming in the printer", None),
    (11, 22, 32): (55, "Set up e-mail for a new starter", (11, 23, None)),
    (11, 23, None): (30, "Word and Excel crash on start", (11, 22, 32)),
    (12, 24, None): (35, "VPN disconnects from home", None),
    (10, 21, None): (28, "Laptop is slow and noisy", (10, 21, 31)),
    (10, 21, 31): (12, "Laptop will not power on", (10, 21, None)),
    (10, 20, 31): (2, "Printer will not power on", (10, 20, 30)),
    (14, None, None): (18, "Please call me back", (10, 21, None)),  # the board's placeholder
}
OPEN_TICKETS = 60
SKILL = {(14, None, None): 0.25}  # how often the model is right; 0.9 elsewhere


def _key(category: tuple[int | None, ...]) -> str:
    return "/".join(str(part) for part in category if part is not None)


def _fill(cw: FakeConnectWise, rng: random.Random) -> list[tuple[str, str, float]]:
    """Close the history's tickets on the fake; return the model's answer per ticket, newest
    first (the order the backtest asks in with --concurrency 1)."""
    now = datetime.now(UTC)
    made: list[tuple[datetime, tuple[int | None, ...]]] = []
    for category, (count, _, _) in HISTORY.items():
        made += [(now - timedelta(days=rng.uniform(1, 89)), category) for _ in range(count)]
    answers = []
    for entered, category in sorted(made, key=lambda item: item[0], reverse=True):
        count, text, neighbour = HISTORY[category]
        type_id, subtype_id, item_id = category
        number = cw.add_ticket(
            text, f"{text}.", type_id=type_id, subtype_id=subtype_id, item_id=item_id,
            entered=entered,
        )  # fmt: skip
        cw.close_ticket(number)
        if rng.random() < SKILL.get(category, 0.9) or neighbour is None:
            answers.append((str(number), _key(category), rng.betavariate(9, 1)))
        else:
            answers.append((str(number), _key(neighbour), rng.betavariate(3, 2)))
    for n in range(OPEN_TICKETS):
        cw.add_ticket(f"Open ticket {n}", "Still being worked on", entered=now - timedelta(days=n))
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the JSON report as well")
    options = parser.parse_args()
    rng = random.Random(13)
    with FakeConnectWise() as cw, FakeOpenAI() as llm, tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        answers = _fill(cw, rng)
        llm.logprobs = "never"  # the scripted confidences, as the model's own estimate
        llm.script(*[("answer", key, round(confidence, 3)) for _, key, confidence in answers])
        tenant = {
            "psa": "connectwise",
            "connection": cw.connection_config(),
            "classifier": openai_classifier(llm),
        }
        config = root / "psatriage.toml"
        config.write_text(to_toml({"tenants": {TENANT: tenant}}), encoding="utf-8")
        os.environ.update(
            {
                **cw.secret_env(),
                OPENAI_KEY_ENV: DEFAULT_API_KEY,
                "PSATRIAGE_CONFIG": str(config),
                "PSATRIAGE_DATA_DIR": str(root / "data"),
                "PSATRIAGE_LOG_LEVEL": "warning",
                "COLUMNS": "110",
            }
        )
        runner = CliRunner()
        command = ["backtest", "--tenant", TENANT, "--concurrency", "1"]
        for arguments in (command, ["readiness", "--tenant", TENANT]):
            result = runner.invoke(app, arguments)
            print(f"$ psatriage {' '.join(arguments)}")
            print(result.stdout)
        if options.json:
            print(runner.invoke(app, ["readiness", "--tenant", TENANT, "--json"]).stdout)


if __name__ == "__main__":
    main()
