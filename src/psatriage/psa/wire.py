"""Small readers of what PSAs send, one copy for every adapter: case-insensitive keys, webhook
bodies, ids, timestamps, and the hash that stands for a body without a delivery id."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

import httpx

from psatriage.errors import PermanentError, WebhookRejected

JSON = dict[str, Any]
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


def lower_keys(value: object) -> dict[str, Any]:
    """A mapping with lower-case keys (PSAs vary: ``MessageId``/``MessageID``, camel/Pascal case);
    anything that is not a mapping becomes ``{}``."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k).lower(): v for k, v in value.items()}


def webhook_object(body: bytes) -> dict[str, Any]:
    """A webhook body as a JSON object with lower-case keys, or ``WebhookRejected(400)``.

    A delivery's check and its parsing each ask for the same body: it is decoded once (the
    last few bodies are remembered; each caller gets its own top-level copy)."""
    return dict(_webhook_object(body))


@functools.lru_cache(maxsize=4)
def _webhook_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise WebhookRejected("the body is not JSON", status=400) from exc
    if not isinstance(payload, dict):
        raise WebhookRejected("the body is not a JSON object", status=400)
    return lower_keys(payload)


def record_id(value: object) -> str | None:
    """A record id as text: a positive whole number, given as a number or as digits (``"079"``
    reads as ``"79"``); None for anything else (``true``, ``"abc"``, ``0``)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return str(int(value))
    return None


def numeric(
    value: str, what: str, *, psa: str, error: type[PermanentError] = PermanentError
) -> int:
    """An id we are about to put in a URL or a write: digits only, else ``error`` (so a ticket id
    such as ``../system/info`` never reaches the PSA)."""
    if not value.isdigit():
        article = "an" if psa[:1].lower() in "aeiou" else "a"
        raise error(f"{what} {value!r} is not {article} {psa} id (a number)")
    return int(value)


def timestamp(value: object, zone: tzinfo = UTC) -> datetime | None:
    """An aware datetime from ISO 8601 text (``Z`` and .NET's seven fractional digits included);
    one without an offset is read in ``zone``: UTC, unless a PSA is known to write local time.
    None when absent or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = _LONG_FRACTION.sub(r"\1", value.strip())
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def aware_utc(moment: datetime) -> datetime:
    """``moment`` with a time zone: a naive one is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def naive_utc(moment: datetime) -> datetime:
    """``moment`` in UTC without a time zone, as the database stores times."""
    return aware_utc(moment).astimezone(UTC).replace(tzinfo=None)


def utc_text(moment: datetime, *, millis: bool = False) -> str:
    """``moment`` (naive means UTC) as UTC text with a ``Z``, in whole seconds (rounded down) or
    with milliseconds: how the PSAs' date filters are written."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    utc = aware.astimezone(UTC)
    if millis:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def origin_of(url: httpx.URL) -> str:
    """``scheme://host[:port]``, lower-case, default ports left out (as httpx normalizes them)."""
    return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")


def trusted_url(
    text: str, *, origins: Iterable[str], https_host: Callable[[httpx.URL], bool]
) -> bool:
    """Whether credentials may go to a URL a PSA named (a zone, a signing key, an authorisation
    server): it parses, carries no credentials of its own, and is on one of ``origins`` or on an
    HTTPS host that ``https_host`` accepts."""
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:
        return False
    if url.userinfo or not url.host:
        return False
    if origin_of(url) in set(origins):
        return True
    return url.scheme == "https" and https_host(url)


def body_hash(body: bytes) -> str:
    """What stands for a delivery's id when the PSA sends none: the same body dedupes."""
    return "sha256:" + hashlib.sha256(body).hexdigest()
