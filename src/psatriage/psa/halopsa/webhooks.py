"""HaloPSA webhooks: how a delivery proves it comes from the tenant's Halo, and what
``register_webhook`` asks Halo to create (the outbound webhook and its "New Ticket Logged"
binding)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import SecretStr

from psatriage.errors import PermanentError, WebhookRejected
from psatriage.psa.base import PATH_TOKEN_HEADER
from psatriage.psa.halopsa.client import HaloClient
from psatriage.psa.halopsa.config import HaloPSAConfig
from psatriage.psa.halopsa.wire import as_int

WebhookAuth = Literal["hmac", "basic", "header"]
WEBHOOK_NAME = "psatriage: categorize new tickets"
NEW_TICKET_EVENT = 3  # Halo's event number of "New Ticket Logged" [2 src]
NEW_TICKET_TEXT = "new ticket logged"


def event_text(event: str) -> str:
    """'New Ticket Logged', 'new_ticket_logged' → 'new ticket logged'."""
    return " ".join(re.sub(r"[_\-]+", " ", event).lower().split())


def is_new_ticket(payload: Mapping[str, Any], event: str, notifications: Sequence[int]) -> bool:
    """Whether a delivery is "New Ticket Logged": by event number, then by the tenant's
    notification ids (``notifications``), then by the event text (``event_text``).

    [UNSURE] whether ``notification_id`` is the event number or the id of the webhook's event
    binding; without the text, 3 is taken as the event number.
    """
    eventno = as_int(payload.get("eventno"))
    if eventno is not None:
        return eventno == NEW_TICKET_EVENT
    notification = as_int(payload.get("notification_id"))
    if notifications and notification is not None:
        return notification in notifications
    if event:
        return event == NEW_TICKET_TEXT
    return notification == NEW_TICKET_EVENT


def verify_delivery(
    method: WebhookAuth,
    *,
    secret: SecretStr | None,
    path_token: SecretStr | None,
    header: str,
    username: str,
    headers: Mapping[str, str],
    body: bytes,
) -> None:
    """Raise ``WebhookRejected(401)`` unless the delivery carries this tenant's authentication.

    With ``secret``, ``method`` says how Halo sends it. ``hmac``: ``header`` = base64(HMAC-SHA256(
    key=secret, message=raw body)), as django-psa verifies Halo's "Token" header; ``basic``:
    ``Authorization: Basic user:secret``; ``header``: ``header`` holds the secret itself. With
    ``path_token``, the URL's secret segment (``PATH_TOKEN_HEADER``, set by the web edge only)
    must match too. Without either, everything is refused. Comparisons take constant time.
    """
    if secret is None and path_token is None:
        raise WebhookRejected("this tenant has no webhook authentication configured", status=401)
    if path_token is not None:
        given = headers.get(PATH_TOKEN_HEADER, "").encode()
        if not hmac.compare_digest(given, path_token.get_secret_value().encode()):
            raise WebhookRejected("the URL's secret segment is missing or wrong", status=401)
    if secret is not None:
        _check_secret(method, secret.get_secret_value().encode(), header, username, headers, body)


def _check_secret(
    method: WebhookAuth,
    key: bytes,
    header: str,
    username: str,
    headers: Mapping[str, str],
    body: bytes,
) -> None:
    if method == "basic":
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic" or not value.strip():
            raise WebhookRejected("the Authorization: Basic header is missing", status=401)
        expected = base64.b64encode(username.encode() + b":" + key)
        if not hmac.compare_digest(value.strip().encode(), expected):
            raise WebhookRejected("the Basic credentials are wrong", status=401)
        return
    given = headers.get(header.lower(), "").strip()
    if not given:
        raise WebhookRejected(f"the {header} header is missing", status=401)
    if method == "hmac":
        expected = base64.b64encode(hmac.new(key, body, hashlib.sha256).digest())
        if not hmac.compare_digest(given.encode(), expected):
            raise WebhookRejected(f"the {header} signature does not match the body", status=401)
        return
    if not hmac.compare_digest(given.encode(), key):
        raise WebhookRejected(f"the {header} header does not hold the shared secret", status=401)


def webhook_request(
    url: str, method: WebhookAuth, *, secret: SecretStr | None, header: str, username: str
) -> dict[str, object]:
    """The ``POST /api/Webhook`` element for an outbound webhook that calls ``url``.

    ``authentication_type`` "3" with ``algorithm`` 0 is what django-psa registers to receive the
    HMAC ``Token`` header. The enum is [UNSURE]: a third-party document lists 0 None, 1 Basic,
    2 Bearer, 3 API key; "basic" uses 1 and "header" uses 3 without an algorithm on that reading.
    Without a secret (a path token only) no authentication is set.
    """
    body: dict[str, object] = {
        "name": WEBHOOK_NAME,
        "url": url,
        "type": 0,  # an outbound webhook (1 is a runbook)
        "method": 0,  # POST
        "content_type": "application/json",
        "active": True,
        "certificate_id": 0,
        "inbound_authentication_type": 0,
        "runbook_start_type": 0,
    }
    if secret is None:
        return body
    password = secret.get_secret_value()
    if method == "basic":
        return body | {
            "authentication_type": "1",
            "basic_username": username,
            "basic_password": password,
        }
    body |= {"authentication_type": "3", "authentication_header": header}
    body["basic_password"] = password
    if method == "hmac":
        body["algorithm"] = 0
    return body


def new_ticket_binding(webhook_id: str, event_number: int) -> dict[str, object]:
    """The ``POST /api/Notification`` element binding the event to the webhook.

    The fields and their string values are those production code (django-psa) sends.
    """
    return {
        "webhook_id": webhook_id,
        "type": "-2",
        "delivery_method": "6",
        "name": "",
        "agent_id": "0",
        "slack_id": "0",
        "teams_id": "0",
        "email_list": "",
        "filter_type": "2",
        "restriction_type": "0",
        "sendpushnotification": False,
        "customisecolour": False,
        "eventno": str(event_number),
        "interval": "0",
        "useworkinghours": "0",
        "conditions": [],
        "emailtemplate_id": "32",
    }


def register(client: HaloClient, config: HaloPSAConfig, url: str) -> str:
    """The webhook that calls ``url`` (found by url, else created) and its "New Ticket Logged"
    binding, as ``"<webhook id> (new-ticket notification <id>)"``. With ``webhook_path_token``,
    Halo calls ``{url}/{token}``."""
    if config.webhook_path_token is not None:
        url = f"{url.rstrip('/')}/{config.webhook_path_token.get_secret_value()}"
    hooks = client.get_list("Webhook", "webhooks", what="webhooks")
    hook = next(
        (h for h in hooks if h.get("url") == url and as_int(h.get("type")) in (None, 0)), None
    )
    if hook is None:
        body = webhook_request(
            url,
            config.webhook_auth,
            secret=config.webhook_secret,
            header=config.webhook_header,
            username=config.webhook_username,
        )
        hook = client.record("POST", "Webhook", json_body=[body], what="the webhook")
    webhook_id = str(hook.get("id") or "")
    if not webhook_id:
        raise PermanentError("HaloPSA did not return the webhook's id")
    return f"{webhook_id} (new-ticket notification {_bind_new_tickets(client, webhook_id)})"


def _bind_new_tickets(client: HaloClient, webhook_id: str) -> str:
    bindings = client.get_list(
        "Notification", "notifications", params={"webhook_id": webhook_id}, what="notifications"
    )
    for binding in bindings:
        if (
            str(binding.get("webhook_id")) == webhook_id
            and as_int(binding.get("eventno")) == NEW_TICKET_EVENT
        ):
            return str(binding.get("id"))
    binding = new_ticket_binding(webhook_id, NEW_TICKET_EVENT)
    created = client.record("POST", "Notification", json_body=[binding], what="the notification")
    return str(created.get("id"))
