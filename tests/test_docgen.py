from __future__ import annotations

import re
from pathlib import Path

import pytest

from psatriage.docgen import configuration_reference, psa_page_problems
from psatriage.psa import adapters

DOCS = Path(__file__).resolve().parent.parent / "docs"
DOC = DOCS / "configuration.md"
PSA_PAGES = {
    match.group(1): path
    for path in sorted(DOCS.glob("*.md"))
    if (match := re.search(r'^- Adapter kind: `psa = "([a-z_]+)"`', path.read_text(), re.M))
}


def test_configuration_reference_is_up_to_date() -> None:
    """Regenerate with: uv run psatriage config reference > docs/configuration.md"""
    assert DOC.read_text(encoding="utf-8") == configuration_reference()


def test_reference_covers_every_setting_and_connection_key() -> None:
    text = configuration_reference()
    for needle in ("PSATRIAGE_DATABASE_URL", "PSATRIAGE_QUEUE_URL", "PSATRIAGE_WORKERS"):
        assert needle in text
    for needle in ("`private_key`", "`min_confidence_to_change`", "`ai_model_ticket_cat`"):
        assert needle in text


def test_every_psa_has_a_page() -> None:
    assert set(PSA_PAGES) == set(adapters())


@pytest.mark.parametrize("kind", sorted(PSA_PAGES))
def test_a_psa_page_states_the_defaults_the_code_has(kind: str) -> None:
    """Each page's key table names every connection key with its default, and its
    'Default trigger' line is the adapter's."""
    assert psa_page_problems(PSA_PAGES[kind].read_text(encoding="utf-8")) == []


def test_the_page_check_finds_what_drifted() -> None:
    page = PSA_PAGES["kaseya_bms"].read_text(encoding="utf-8")
    drifted = (
        page.replace("| `calls_per_hour` | `1500` |", "| `calls_per_hour` | `1000` |")
        .replace("- Default trigger: `poll`", "- Default trigger: `webhook`")
        .replace("its first active type. |", "its first active type (default 7). |")
    )
    drifted = re.sub(r"^\| `api_timezone` .*\n", "", drifted, flags=re.M)
    assert psa_page_problems(drifted) == [
        "default trigger: the page says webhook, the code poll",
        "`note_type`: the text says default 7, the code —",
        "`calls_per_hour`: the page says `1000`, the code `1500`",
        "`api_timezone` has no row in the key table",
    ]
    assert psa_page_problems("# no adapter here\n") == [
        'no "- Adapter kind: `psa = "NAME"`" line naming a known PSA'
    ]
