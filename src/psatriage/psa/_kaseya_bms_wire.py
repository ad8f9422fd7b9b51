"""Kaseya BMS wire format: the response envelope and its errors, timestamps, tokens, webhooks.

Kept apart from ``kaseya_bms.py`` so the adapter reads as what it does; nothing here does I/O.

* ``read_result`` is the adapter's one error-mapping function: HTTP status *and* the
  ``{"Success", "Error", "Result"}`` envelope (checked even on HTTP 200) into the error tree.
* ``TokenCache`` holds the access/refresh token pair, shared by an adapter's threads.
* ``match_scheme``, ``ticket_id_in``, ``event_of`` serve the webhook receiver, whose body and
  signature BMS does not document [UNSURE]: see ``docs/kaseya-bms.md``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import parse_qs

import httpx

from psatriage.errors import AuthFailed, PermanentError, TransientError, WebhookRejected
from psatriage.psa._wire import lower_keys as ci
from psatriage.psa._wire import retry_after as _retry_after

# -- the envelope and its errors ---------------------------------------------------------------


def unauthorized(response: httpx.Response) -> bool:
    """A 401, or an envelope whose error code is 401: the access token may just have expired."""
    if response.status_code == 401:
        return True
    envelope = _envelope(response)
    return envelope.get("success") is False and _code(ci(envelope.get("error"))) == 401


def read_result(
    response: httpx.Response, what: str, *, rejected: type[PermanentError] = PermanentError
) -> Any:
    """The envelope's ``Result``; any failure (HTTP status or ``Success: false``) as an error.

    [UNSURE] BMS's HTTP status codes on errors are not documented (its spec lists only 200), so
    an error inside a 200 is mapped by its ``Error.Code`` when that is an HTTP-like code.
    """
    status = response.status_code
    envelope = _envelope(response)
    detail = _detail(ci(envelope.get("error")))
    if status >= 300:
        _raise(status, what, detail, response, rejected)
    if "success" not in envelope:
        raise PermanentError(f"Kaseya BMS answered {what} without its Success/Result envelope")
    if envelope["success"] is not True:
        code = _code(ci(envelope.get("error")))
        _raise(code if code >= 300 else 0, what, detail or ": Success is false", response, rejected)
    return envelope.get("result")


def _raise(
    code: int,
    what: str,
    detail: str,
    response: httpx.Response,
    rejected: type[PermanentError],
) -> None:
    if code in (401, 403):
        raise AuthFailed(f"Kaseya BMS refused the API user ({code}) for {what}{detail}")
    if code == 429 or code >= 500:
        raise TransientError(
            f"Kaseya BMS answered {code} for {what}{detail}",
            retry_after=_retry_after(response.headers.get("retry-after")),
        )
    if code == 404:
        raise PermanentError(f"{what} not found{detail}")
    if 300 <= code < 400:
        raise PermanentError(f"Kaseya BMS redirected the request for {what} ({code})")
    if code == 0:
        raise rejected(f"Kaseya BMS refused {what}{detail}")
    raise rejected(f"Kaseya BMS rejected {what} ({code}){detail}")


def _envelope(response: httpx.Response) -> dict[str, Any]:
    try:
        return ci(response.json())
    except ValueError:
        return {}


def _code(error: Mapping[str, Any]) -> int:
    code = error.get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    if isinstance(code, str) and code.strip().isdigit():
        return int(code)
    return 0


def _detail(error: Mapping[str, Any]) -> str:
    """': Message (Details); sub-error' from BMS's ``ErrorInfo``, or ''. Never the stack trace."""
    parts = [str(error[key]) for key in ("message", "details") if error.get(key)]
    parts += [str(sub) for sub in error.get("suberrors") or [] if isinstance(sub, str | int)]
    return (": " + "; ".join(parts))[:500] if parts else ""


# -- time -------------------------------------------------------------------------------------


def parse_time(value: object, zone: tzinfo = UTC) -> datetime | None:
    """An aware datetime from BMS's ISO text; one without an offset is read in ``zone``.

    [UNSURE] Whether BMS writes UTC or the tenant's local time without an offset is not
    documented; ``connection.api_timezone`` says which (default UTC).
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)  # .NET writes 7 fractional digits
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def iso_z(moment: datetime) -> str:
    """UTC, whole seconds (rounded down), with a ``Z``: how ``Filter.CreatedOnFrom`` is sent."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plain_text(value: object) -> str:
    """Ticket text as plain text: BMS may store ``Details`` as HTML [UNSURE]."""
    text = str(value or "")
    if not re.search(r"<[a-zA-Z/][^>]*>", text):
        return text
    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", "", text)
    text = re.sub(r"(?i)<br\s*/?>|</(p|div|li|tr|h[1-6])\s*>", "\n", text)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    return re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]+", " ", text)).strip()


# -- tokens -----------------------------------------------------------------------------------

FALLBACK_LIFETIME = 600.0  # seconds, when BMS gives no usable AccessTokenExpireOn
REFRESH_MARGIN = 60.0  # refresh this long before expiry (at most halfway through a lifetime)


@dataclass(frozen=True)
class Token:
    """An access/refresh pair; times are on the ``time.monotonic`` clock."""

    access: str
    refresh: str
    refresh_at: float
    refresh_until: float | None  # when the refresh token stops working, if known

    def __repr__(self) -> str:
        return "Token(...)"

    @classmethod
    def from_result(cls, result: object, zone: tzinfo, now: float) -> Token:
        data = ci(result)
        access, refresh = data.get("accesstoken"), data.get("refreshtoken")
        if not isinstance(access, str) or not access:
            raise AuthFailed("Kaseya BMS answered the authentication without an access token")
        wall = datetime.now(UTC)
        lifetime = _seconds_until(data.get("accesstokenexpireon"), zone, wall)
        if lifetime is None or lifetime <= 0:
            lifetime = FALLBACK_LIFETIME
        refresh_life = _seconds_until(data.get("refreshtokenexpireon"), zone, wall)
        return cls(
            access=access,
            refresh=refresh if isinstance(refresh, str) else "",
            refresh_at=now + max(lifetime - REFRESH_MARGIN, lifetime / 2),
            refresh_until=now + refresh_life if refresh_life is not None else None,
        )


def _seconds_until(value: object, zone: tzinfo, wall: datetime) -> float | None:
    moment = parse_time(value, zone)
    return (moment - wall).total_seconds() if moment else None


class TokenCache:
    """The current token of one adapter, shared by its threads; one login or refresh at a time.

    ``login(previous)`` gets a new token (refreshing ``previous`` when it can); it runs under the
    lock, so concurrent callers wait for the one refresh instead of each doing their own.
    """

    def __init__(
        self, login: Callable[[Token | None], Token], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._login, self._clock = login, clock
        self._token: Token | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "TokenCache(...)"

    def access(self) -> str:
        """A valid access token, refreshed first when it is about to expire."""
        with self._lock:
            if self._token is None or self._clock() >= self._token.refresh_at:
                self._token = self._login(self._token)
            return self._token.access

    def expire(self, used: str) -> None:
        """BMS refused ``used``: the next ``access()`` refreshes (unless another thread did)."""
        with self._lock:
            if self._token is not None and self._token.access == used:
                self._token = Token(
                    used, self._token.refresh, float("-inf"), self._token.refresh_until
                )

    def now(self) -> float:
        return self._clock()

    def refresh_usable(self, token: Token) -> bool:
        if not token.refresh:
            return False
        return token.refresh_until is None or self._clock() < token.refresh_until


# -- webhooks ---------------------------------------------------------------------------------

SCHEMES: dict[str, tuple[Callable[[], Any], Callable[[bytes], str]]] = {
    "hmac-sha256-hex": (hashlib.sha256, lambda digest: digest.hex()),
    "hmac-sha256-base64": (hashlib.sha256, lambda digest: base64.b64encode(digest).decode()),
    "hmac-sha1-hex": (hashlib.sha1, lambda digest: digest.hex()),
    "hmac-sha1-base64": (hashlib.sha1, lambda digest: base64.b64encode(digest).decode()),
}
_PREFIX = re.compile(r"^(sha256|sha1|hmac-sha256|hmac-sha1)=", re.IGNORECASE)


def sign(scheme: str, secret: str, body: bytes) -> str:
    digest_factory, encode = SCHEMES[scheme]
    return encode(hmac.new(secret.encode(), body, digest_factory).digest())


def match_scheme(secret: str, body: bytes, signature: str, schemes: Iterable[str]) -> str | None:
    """The first of ``schemes`` under which ``signature`` signs ``body``, compared in constant time.

    A ``sha256=``/``sha1=`` prefix is ignored; hex is compared case-insensitively.
    """
    given = _PREFIX.sub("", signature.strip())
    for scheme in schemes:
        expected = sign(scheme, secret, body)
        candidate = given.lower() if scheme.endswith("-hex") else given
        if hmac.compare_digest(expected.encode(), candidate.encode()):
            return scheme
    return None


def load_body(body: bytes) -> dict[str, Any]:
    """The delivery as a JSON object, also from a form-encoded ``payload=<json>`` body."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = _form_payload(body)
    if not isinstance(payload, dict):
        raise WebhookRejected("the body is not a JSON object", status=400)
    return payload


def _form_payload(body: bytes) -> object:
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        return json.loads(form["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError) as exc:
        raise WebhookRejected("the body is not JSON", status=400) from exc


_WRAPPERS = ("ticket", "data", "entity", "payload", "result", "object", "record")
_EVENT_KEYS = ("event", "eventname", "eventtype", "action", "trigger")
_ENTITY_KEYS = ("entitytype", "entityname", "categoryname", "category", "module", "objecttype")
_TOP_IDS = ("id", "entityid", "objectid", "recordid")


def _keys(value: object) -> dict[str, Any]:
    """Keys lower-cased and without '_' or '-' (TicketId, ticket_id, ticketID all match)."""
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, Mapping):
        return {}
    return {re.sub(r"[_\-]", "", str(k)).lower(): v for k, v in value.items()}


def record_id(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return str(int(value))
    return None


def event_of(payload: Mapping[str, Any]) -> tuple[str, str]:
    """``(entity, event)`` texts, lower-case: what the delivery is about and what happened."""
    keys = _keys(payload)
    entity, event = [], []
    for key in _ENTITY_KEYS:
        if isinstance(keys.get(key), str):
            entity.append(keys[key])
    for key in _EVENT_KEYS:
        value = keys.get(key)
        if isinstance(value, str):
            event.append(value)
        elif isinstance(value, Mapping):  # e.g. {"Event": {"Id": 1, "Name": "Created", ...}}
            nested = _keys(value)
            event += [nested[k] for k in ("name", "eventname") if isinstance(nested.get(k), str)]
            entity += [nested[k] for k in _ENTITY_KEYS if isinstance(nested.get(k), str)]
    return " ".join(entity).lower().strip(), " ".join(event).lower().strip()


def ticket_id_in(payload: Mapping[str, Any], about_ticket: bool) -> str | None:
    """The ticket id, looked for in this order (keys case-, '_'- and '-'-insensitive):

    1. ``TicketId`` at the top level;
    2. ``TicketId``, then ``Id``, inside ``Ticket``, ``Data``, ``Entity``, ``Payload``, ``Result``,
       ``Object`` or ``Record`` (an object or a JSON string), up to three wrappers deep;
    3. ``Id``, ``EntityId``, ``ObjectId`` or ``RecordId`` at the top level, only when the
       delivery says it is about a ticket (``about_ticket``).

    An id is a positive whole number (or a string of digits).
    """
    keys = _keys(payload)
    found = record_id(keys.get("ticketid")) or _wrapped_id(keys, depth=3)
    if found is None and about_ticket:
        found = next((i for k in _TOP_IDS if (i := record_id(keys.get(k)))), None)
    return found


def _wrapped_id(keys: Mapping[str, Any], depth: int) -> str | None:
    if depth == 0:
        return None
    for wrapper in _WRAPPERS:
        inner = _keys(keys.get(wrapper))
        if not inner:
            continue
        found = record_id(inner.get("ticketid")) or record_id(inner.get("id"))
        if found is None:
            found = _wrapped_id(inner, depth - 1)
        if found is not None:
            return found
    return None


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())
