"""Settings refuse what would be unsafe to run with."""

from __future__ import annotations

import pytest

from psatriage.errors import ConfigError
from psatriage.settings import Settings


@pytest.mark.parametrize("value", ["change-me", " change-me\n"])
def test_the_example_api_token_is_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSATRIAGE_API_TOKEN", value)
    with pytest.raises(ConfigError, match="PSATRIAGE_API_TOKEN is still the example's 'change-me'"):
        Settings()


def test_another_api_token_is_kept_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSATRIAGE_API_TOKEN", "a-token-of-our-own")
    settings = Settings()
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "a-token-of-our-own"
    assert "a-token-of-our-own" not in repr(settings)
