from __future__ import annotations

from pathlib import Path

from psatriage.docgen import configuration_reference

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_configuration_reference_is_up_to_date() -> None:
    """Regenerate with: uv run psatriage config reference > docs/configuration.md"""
    assert DOC.read_text(encoding="utf-8") == configuration_reference()


def test_reference_covers_every_setting_and_connection_key() -> None:
    text = configuration_reference()
    for needle in ("PSATRIAGE_DATABASE_URL", "PSATRIAGE_QUEUE_URL", "PSATRIAGE_WORKERS"):
        assert needle in text
    for needle in ("`private_key`", "`min_confidence_to_change`", "`ai_model_ticket_cat`"):
        assert needle in text
