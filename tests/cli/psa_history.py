"""Tenants of each PSA's HTTP fake with closed, categorized tickets in their history, for the
backtest and readiness commands: ``PSAS`` says how to close a ticket in a category on each fake,
``history`` leaves a known set of tickets, ``tenant_of`` writes the tenants file for one PSA."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select

from psatriage.settings import Settings
from psatriage.store import db
from psatriage.store.tables import BacktestResultRow
from tests.fakes.kit import ContractKit
from tests.fakes.openai import DEFAULT_API_KEY, FakeOpenAI
from tests.harness import OPENAI_KEY_ENV, kit_for, kit_tenant, to_toml

TENANT = "acme"


def _when(days_ago: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days_ago, hours=1)


# Per PSA: how to leave a ticket closed in a category (None: closed, never categorized) or open,
# and two categories whose leaf names the OpenAI fake finds in a ticket's text.
Closer = Callable[[Any, str, Any, int, bool], str]


def _connectwise(fake: Any, title: str, category: Any, days: int, closed: bool) -> str:
    type_id, subtype_id, item_id = category or (None, None, None)
    number = fake.add_ticket(
        title, title, type_id=type_id, subtype_id=subtype_id, item_id=item_id, entered=_when(days)
    )
    if closed:
        fake.close_ticket(number)
    return str(number)


def _autotask(fake: Any, title: str, category: Any, days: int, closed: bool) -> str:
    issue, sub = category or (None, None)
    number = fake.add_ticket(
        title, title, issue_type=issue, sub_issue_type=sub, created=_when(days)
    )
    if closed:
        fake.complete_ticket(number)
    return str(number)


def _halopsa(fake: Any, title: str, category: Any, days: int, closed: bool) -> str:
    occurred = _when(days).strftime("%Y-%m-%dT%H:%M:%S.000")
    number = fake.add_ticket(title, title, category_id=category, dateoccurred=occurred)
    if closed:
        fake.close_ticket(number)
    return str(number)


def _kaseya_bms(fake: Any, title: str, category: Any, days: int, closed: bool) -> str:
    issue, sub = category or (None, None)
    number = fake.add_ticket(
        title, title, created_on=_when(days), issue_type_id=issue, sub_issue_type_id=sub
    )
    if closed:
        fake.close_ticket(number)
    return str(number)


PSAS: dict[str, tuple[Closer, Any, Any]] = {
    "connectwise": (_connectwise, (10, 20, 30), (12, 24, None)),  # Paper jam, VPN
    "autotask": (_autotask, (10, 136), (12, 150)),  # Printer, VPN
    "halopsa": (_halopsa, 19, 22),  # Hardware>Printer>Paper jam, Network
    "kaseya_bms": (_kaseya_bms, (101, 201), (103, 205)),  # Printer, VPN
}
TEXTS = {
    "connectwise": ("Paper jam in tray two", "VPN drops at home"),
    "autotask": ("Printer shows an error", "VPN drops at home"),
    "halopsa": ("Paper jam in tray two", "Network is down on floor 2"),
    "kaseya_bms": ("Printer shows an error", "VPN drops at home"),
}


@dataclass
class HistoryTenant:
    kind: str
    kit: ContractKit
    llm: FakeOpenAI
    root: Path

    def close(self, text: str, category: Any, *, days: int = 3, closed: bool = True) -> str:
        closer = PSAS[self.kind][0]
        return closer(self.kit.fake, text, category, days, closed)

    def results(self) -> int:
        """Backtest results checkpointed so far (0 before the database is ready)."""
        if not (self.root / "data" / "psatriage.db").exists():
            return 0
        engine = db.make_engine(Settings(data_dir=self.root / "data").effective_database_url)
        try:
            if not inspect(engine).has_table("backtest_results"):
                return 0
            with engine.connect() as connection:
                return int(
                    connection.execute(
                        select(func.count()).select_from(BacktestResultRow)
                    ).scalar_one()
                )
        finally:
            engine.dispose()


def tenant_of(
    kind: str, llm: FakeOpenAI, root: Path, monkeypatch: pytest.MonkeyPatch, **tenant: Any
) -> Iterator[HistoryTenant]:
    kit = kit_for(kind)
    try:
        config = root / "psatriage.toml"
        table = kit_tenant(kit, llm) | tenant
        config.write_text(to_toml({"tenants": {TENANT: table}}), encoding="utf-8")
        for key, value in {**kit.env, OPENAI_KEY_ENV: DEFAULT_API_KEY}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("PSATRIAGE_CONFIG", str(config))
        monkeypatch.setenv("PSATRIAGE_DATA_DIR", str(root / "data"))
        yield HistoryTenant(kind, kit, llm, root)
    finally:
        kit.fake.stop()


def history(tenant: HistoryTenant) -> list[str]:
    """Four closed, categorized tickets (the last one's text names the other category), one
    still open, one closed but never categorized, one closed before the period."""
    first, second = PSAS[tenant.kind][1:]
    first_text, second_text = TEXTS[tenant.kind]
    tickets = [
        tenant.close(first_text, first, days=4),
        tenant.close(first_text + " again", first, days=3),
        tenant.close(second_text, second, days=2),
        tenant.close(first_text + " after the VPN fix", second, days=1),  # answered: first
    ]
    tenant.close(second_text, second, closed=False)
    tenant.close("Nothing to say", None)
    tenant.close(first_text, first, days=60)
    return tickets
