"""Small helpers every adapter needs for what PSAs send: case-insensitive keys, webhook bodies,
Retry-After."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from psatriage.errors import WebhookRejected


def lower_keys(value: object) -> dict[str, Any]:
    """A mapping with lower-case keys (PSAs vary: ``MessageId``/``MessageID``, camel/Pascal case);
    anything that is not a mapping becomes ``{}``."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k).lower(): v for k, v in value.items()}


def webhook_object(body: bytes) -> dict[str, Any]:
    """A webhook body as a JSON object with lower-case keys, or ``WebhookRejected(400)``."""
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise WebhookRejected("the body is not JSON", status=400) from exc
    if not isinstance(payload, dict):
        raise WebhookRejected("the body is not a JSON object", status=400)
    return lower_keys(payload)


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds, given as seconds or as an HTTP date; None if absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
