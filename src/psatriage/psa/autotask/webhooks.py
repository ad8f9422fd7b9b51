"""Registering Autotask's ticket webhook: found by URL or created, re-activated, subscribed to one
field (a webhook is only ready with one) and told to leave out our own API user's changes."""

from __future__ import annotations

from psatriage.errors import PermanentError
from psatriage.psa.autotask.client import AutotaskClient
from psatriage.psa.autotask.config import AutotaskConfig
from psatriage.psa.autotask.picklists import parse_picklists
from psatriage.psa.wire import JSON, lower_keys, numeric, record_id


def register(client: AutotaskClient, config: AutotaskConfig, url: str, resource: int) -> str:
    """The id of the ticket webhook that calls ``url``, active and ready, excluding ``resource``."""
    if not 1 <= len(url) <= 500:
        raise PermanentError("Autotask accepts webhook urls of at most 500 characters")
    existing = [
        hook
        for hook in client.query(
            "TicketWebhooks",
            [{"op": "eq", "field": "webhookUrl", "value": url}],
            what="ticket webhooks",
        )
        if lower_keys(hook).get("webhookurl") == url
    ]
    secret = config.signing_secret().get_secret_value()
    if existing:
        hook_id = numeric(str(lower_keys(existing[0]).get("id")), "webhook id", psa="Autotask")
        # Re-activates a webhook Autotask disabled, and makes its secret ours again.
        update = {"id": hook_id, "isActive": True, "secretKey": secret}
        client.call("PATCH", "TicketWebhooks", json_body=update, what="the webhook")
    else:
        hook_id = _create(client, config, url, secret)
    _ensure_subscribed_field(client, config, hook_id)
    _ensure_excluded(client, hook_id, resource)
    data = client.json("GET", f"TicketWebhooks/{hook_id}", what=f"webhook {hook_id}")
    state = lower_keys(lower_keys(data).get("item"))
    if state.get("isactive") is not True or state.get("isready") is not True:
        raise PermanentError(
            f"Autotask webhook {hook_id} exists but is not active and ready (isActive="
            f"{state.get('isactive')}, isReady={state.get('isready')}); check it in Autotask"
        )
    return str(hook_id)


def _create(client: AutotaskClient, config: AutotaskConfig, url: str, secret: str) -> int:
    hook: JSON = {
        "name": config.webhook_name,
        "webhookUrl": url,
        "deactivationUrl": url,  # the Deactivated notice arrives like any delivery
        "isActive": True,
        "isSubscribedToCreateEvents": True,
        "isSubscribedToUpdateEvents": False,
        "isSubscribedToDeleteEvents": False,
        "secretKey": secret,
        "sendThresholdExceededNotification": False,
    }
    if config.notification_email:
        hook["notificationEmailAddress"] = config.notification_email
    created = lower_keys(client.json("POST", "TicketWebhooks", json_body=hook, what="the webhook"))
    new_id = record_id(created.get("itemid")) or record_id(
        lower_keys(created.get("item")).get("id")
    )
    if new_id is None:
        raise PermanentError("Autotask created the webhook but returned no id")
    return int(new_id)


def _ensure_subscribed_field(client: AutotaskClient, config: AutotaskConfig, hook_id: int) -> None:
    """A webhook is only ready with one subscribed field (reference §2.1, Nango)."""
    path = f"TicketWebhooks/{hook_id}/Fields"
    what = f"fields of webhook {hook_id}"
    fields = client.pages(client.json("GET", path, what=what), what)
    if any(lower_keys(f).get("issubscribedfield") is True for f in fields):
        return
    info = client.json(
        "GET", "TicketWebhookFields/entityInformation/fields", what="the webhook fields"
    )
    choices = [p for p in parse_picklists(info).get("fieldID", ()) if p.active]
    wanted = config.webhook_field.replace(" ", "").casefold()
    pick = next((p for p in choices if p.label.replace(" ", "").casefold() == wanted), None)
    if pick is None and not choices:
        raise PermanentError("Autotask lists no ticket fields a webhook can subscribe to")
    field = pick or choices[0]
    body = {
        "fieldID": int(field.id),
        "isSubscribedField": True,
        "isDisplayAlwaysField": False,
        "webhookID": hook_id,
    }
    client.call("POST", path, json_body=body, what="the webhook field")


def _ensure_excluded(client: AutotaskClient, hook_id: int, resource: int) -> None:
    """Exclude our API user, so our own writes never call us."""
    path = f"TicketWebhooks/{hook_id}/ExcludedResources"
    what = f"excluded resources of webhook {hook_id}"
    excluded = client.pages(client.json("GET", path, what=what), what)
    if any(record_id(lower_keys(e).get("resourceid")) == str(resource) for e in excluded):
        return
    body = {"resourceID": resource, "webhookID": hook_id}
    client.call("POST", path, json_body=body, what="the excluded resource")
