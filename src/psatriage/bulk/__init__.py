"""Bulk work on a tenant's existing tickets: ``backfill`` (categorize them through the pipeline)
and ``export`` (closed, categorized tickets as JSON Lines), both checkpointed in the database
(``psatriage.store.bulk``) so an interrupted run resumes where it stopped."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from psatriage.errors import ConfigError


def parse_until(text: str | None, since: datetime) -> datetime | None:
    """``--until`` as naive UTC (None when not given); it must come after ``since``."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--until {text!r} is not an ISO date such as 2026-09-30") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    if moment <= since:
        raise ConfigError(
            f"--since {since:%Y-%m-%d %H:%M} is not before --until {moment:%Y-%m-%d %H:%M}; "
            "fix: give a --since earlier than --until"
        )
    return moment


def run_key(tenant: str, kind: str, params: Mapping[str, Any]) -> str:
    """The key that finds an unfinished run of the same command again."""
    text = json.dumps({"tenant": tenant, "kind": kind, **params}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
