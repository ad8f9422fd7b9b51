"""What every adapter's ``Config`` shares (``psatriage.psa.base``)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from psatriage.psa.base import AdapterConfig, CallLimitsConfig, origin_url


class Limited(AdapterConfig, CallLimitsConfig):
    pass


def test_a_psa_that_publishes_no_limit_gets_a_conservative_one() -> None:
    config = Limited()
    assert (config.requests_per_window, config.window_seconds) == (300, 60.0)
    assert config.concurrent_per_endpoint == 4
    limits = config.call_limits("example:acme")
    assert limits.window is not None and limits.window.scope == "example:acme"
    assert limits.concurrency is not None and limits.concurrency.limit == 4
    for bad in ({"requests_per_window": 0}, {"window_seconds": 0}, {"concurrent_per_endpoint": 0}):
        with pytest.raises(ValidationError):
            Limited.model_validate(bad)


def test_every_psa_retries_a_429_briefly_and_boundedly() -> None:
    config = Limited()
    assert (config.rate_limit_retries, config.max_rate_limit_wait_seconds) == (2, 2.0)
    for bad in ({"rate_limit_retries": 6}, {"max_rate_limit_wait_seconds": 31}, {"other": 1}):
        with pytest.raises(ValidationError):
            Limited.model_validate(bad)


def test_origin_url() -> None:
    assert origin_url("HTTPS://CW.Example.com:8443/", example="x") == "https://cw.example.com:8443"
    for bad in ("https://cw.example.com/path", "cw.example.com", "ftp://cw.example.com"):
        with pytest.raises(ValueError, match="such as 'https://example'"):
            origin_url(bad, example="https://example")
