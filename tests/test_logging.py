"""What the logs say at the default level."""

from __future__ import annotations

import logging

import pytest

from psatriage.logging import configure_logging


@pytest.mark.parametrize("transport", ["httpx", "httpcore", "httpx2", "httpcore2"])
def test_http_transports_log_no_request_lines_at_info(
    transport: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The openai SDK sends through httpx2: its INFO line per request is noise in a command's
    output (and names every URL called)."""
    configure_logging(level="info")
    logging.getLogger(transport).info("HTTP Request: POST http://127.0.0.1/v1/chat/completions")
    logging.getLogger(transport).warning("a transport warning")
    logging.getLogger("psatriage.test").info("a line of our own")
    said = capsys.readouterr().err
    assert "HTTP Request" not in said
    assert "a transport warning" in said and "a line of our own" in said
