"""Structured logs (structlog): JSON in production, readable in a terminal; secrets masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(
    r"(authorization|api[-_]?key|secret|password|private[-_]?key|token|signature)", re.I
)
MASK = "***"
_known_secrets: set[str] = set()


def register_secrets(values: Iterable[str]) -> None:
    """Secret values (from the tenants file) that must never appear in a log line, anywhere."""
    _known_secrets.update(v for v in values if len(v) >= 4)


def mask_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask fields whose name says they hold a secret, and any known secret value in any text."""
    for key in list(event):
        if key != "event" and _SECRET_KEYS.search(key):
            event[key] = MASK
        elif _known_secrets:
            event[key] = _scrub(event[key])
    return event


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _known_secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, BaseException):
        return _scrub(f"{type(value).__name__}: {value}")
    return value


class _ScrubbingFilter(logging.Filter):
    """The same for the standard library's log records (uvicorn, httpx)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _known_secrets:
            record.msg = _scrub(record.getMessage())
            record.args = None
        return True


class _Stderr:
    """Whatever ``sys.stderr`` is at the time of writing (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(*, level: str = "info", json: bool = False) -> None:
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,  # configure_logging may run again (CLI, tests)
    )
    handler = logging.StreamHandler(_Stderr())
    handler.addFilter(_ScrubbingFilter())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # httpx2 and httpcore2: the openai SDK's transport, which logs every request at INFO
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2", "alembic"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
