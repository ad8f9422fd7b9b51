"""Kaseya BMS webhooks, which BMS does not document publicly [UNSURE]: every candidate signature
scheme, a ticket id looked for wherever a plausible body may carry it (see ``docs/kaseya-bms.md``),
and the registration of the webhook."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

from psatriage.errors import PermanentError, WebhookRejected
from psatriage.psa.kaseya_bms.client import BMSClient
from psatriage.psa.kaseya_bms.config import KaseyaBMSConfig
from psatriage.psa.wire import lower_keys, numeric, record_id

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


def is_creation(event: str) -> bool:
    """Whether the delivery's event text means a ticket was created.

    No event text at all counts as creation: psatriage subscribes to that one event only.
    """
    if not event:
        return True
    if any(word in event for word in ("note", "update", "delete", "edit", "change", "close")):
        return False
    return any(word in event for word in ("create", "new", "add", "log"))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


# -- registration -------------------------------------------------------------------------------


def register(client: BMSClient, config: KaseyaBMSConfig, url: str, *, name: str) -> str:
    """The id of the webhook that calls ``url`` on the ticket-created event (updated when one with
    that URL exists, else created)."""
    secret = config.webhook_secret
    if secret is None:
        raise PermanentError(str(config.webhook_config_problem()))
    entry = {
        "Name": name,
        "PayloadURL": url,
        "IsEnabled": True,
        "Secret": secret.get_secret_value(),
        "ContentType": config.webhook_content_type,  # [UNSURE] enum values unknown
        "SendAllEvents": False,
        "Events": [_event_id(client, config.webhook_event)],
    }
    # [UNSURE] the search body (paging only) is inferred from the other search endpoints.
    hooks = client.paged("admin/webhooks/search", what="webhooks", method="POST")
    existing = next((hook for hook in hooks if str(hook.get("payloadurl") or "") == url), None)
    if existing is not None:
        hook_id = numeric(str(existing.get("id")), "webhook id", psa="Kaseya BMS")
        client.call("PUT", f"admin/webhooks/{hook_id}", json_body=entry, what="the webhook")
        return str(hook_id)
    created = client.result("POST", "admin/webhooks", json_body=entry, what="the webhook")
    return str(lower_keys(created).get("id"))


def _event_id(client: BMSClient, event_name: str) -> int:
    wanted = slug(event_name)
    events = client.lookup("admin/webhooks/events/lookup", "webhook events")
    for event in events:
        name, category = str(event.get("name") or ""), str(event.get("categoryname") or "")
        if wanted in (slug(name), slug(category + name)) and record_id(event.get("id")):
            return int(event["id"])
    known = ", ".join(
        f"{e.get('categoryname') or ''} {e.get('name') or ''}".strip() for e in events
    )
    raise PermanentError(
        f"Kaseya BMS has no webhook event named {event_name!r} (it has: "
        f"{known or 'none'}); set connection.webhook_event to one of them"
    )
