"""Kaseya BMS wire format: the ``{"Success", "Error", "Result"}`` envelope every answer comes in
(camelCase live, PascalCase in the spec: keys are read case-insensitively), its tokens and its
ticket text. Nothing here does I/O."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

import httpx

from psatriage.errors import AuthFailed
from psatriage.psa.tokens import Token
from psatriage.psa.wire import lower_keys, timestamp

FALLBACK_LIFETIME = 600.0  # seconds, when BMS gives no usable AccessTokenExpireOn
REFRESH_MARGIN = 60.0  # refresh this long before expiry (at most halfway through a lifetime)


def envelope(response: httpx.Response) -> dict[str, Any]:
    """The answer's envelope with lower-case keys (``{}`` when the body is not JSON)."""
    try:
        return lower_keys(response.json())
    except ValueError:
        return {}


def error_code(envelope: Mapping[str, Any]) -> int:
    """``Error.Code`` as a number (0 when absent or not one)."""
    code = lower_keys(envelope.get("error")).get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    if isinstance(code, str) and code.strip().isdigit():
        return int(code)
    return 0


def error_detail(envelope: Mapping[str, Any]) -> str:
    """': Message (Details); sub-error' from BMS's ``ErrorInfo``, or ''. Never the stack trace."""
    error = lower_keys(envelope.get("error"))
    parts = [str(error[key]) for key in ("message", "details") if error.get(key)]
    parts += [str(sub) for sub in error.get("suberrors") or [] if isinstance(sub, str | int)]
    return (": " + "; ".join(parts))[:500] if parts else ""


def unauthorized(response: httpx.Response) -> bool:
    """A 401, or an envelope whose error code is 401: the access token may just have expired."""
    if response.status_code == 401:
        return True
    found = envelope(response)
    return found.get("success") is False and error_code(found) == 401


def token_from(result: object, zone: tzinfo, now: float) -> Token:
    """The token of an authenticate or refresh answer; ``now`` on the token cache's clock.

    [UNSURE] whether BMS writes the expiry times in UTC or local time without an offset:
    ``zone`` (``connection.api_timezone``) says which.
    """
    data = lower_keys(result)
    access, refresh = data.get("accesstoken"), data.get("refreshtoken")
    if not isinstance(access, str) or not access:
        raise AuthFailed("Kaseya BMS answered the authentication without an access token")
    wall = datetime.now(UTC)
    lifetime = _seconds_until(data.get("accesstokenexpireon"), zone, wall)
    if lifetime is None or lifetime <= 0:
        lifetime = FALLBACK_LIFETIME
    refresh_life = _seconds_until(data.get("refreshtokenexpireon"), zone, wall)
    return Token(
        access=access,
        renew_at=now + max(lifetime - REFRESH_MARGIN, lifetime / 2),
        refresh=refresh if isinstance(refresh, str) else "",
        refresh_until=now + refresh_life if refresh_life is not None else None,
    )


def plain_text(value: object) -> str:
    """Ticket text as plain text: BMS may store ``Details`` as HTML [UNSURE]."""
    text = str(value or "")
    if not re.search(r"<[a-zA-Z/][^>]*>", text):
        return text
    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", "", text)
    text = re.sub(r"(?i)<br\s*/?>|</(p|div|li|tr|h[1-6])\s*>", "\n", text)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    return re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]+", " ", text)).strip()


def _seconds_until(value: object, zone: tzinfo, wall: datetime) -> float | None:
    moment = timestamp(value, zone)
    return (moment - wall).total_seconds() if moment else None
