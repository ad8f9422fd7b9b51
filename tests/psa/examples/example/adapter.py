"""The Example PSA: a ticket has one category (``category_id``); a webhook delivery is
``{"event", "delivery", "ticket": {"id"}}`` signed with ``X-Signature`` = hex
HMAC-SHA256(webhook secret, body)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from psatriage.domain import Category, LevelValue, Taxonomy, Ticket, TicketEvent
from psatriage.errors import CategoryRejected, WebhookRejected
from psatriage.psa.base import AdapterConfig, PSAAdapter
from psatriage.psa.wire import body_hash, lower_keys, numeric, record_id, webhook_object
from tests.psa.examples.example.client import ExampleClient
from tests.psa.examples.example.config import ExampleConfig

LEVEL = "category"


class ExampleAdapter(PSAAdapter[ExampleConfig]):
    kind: ClassVar[str] = "example"
    Config: ClassVar[type[AdapterConfig]] = ExampleConfig

    def __init__(self, tenant: str, config: ExampleConfig, http: httpx.Client) -> None:
        super().__init__(tenant, config, http)
        self.client = ExampleClient(tenant, config, http)

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        given = headers.get("x-signature", "")
        key = self.config.webhook_secret.get_secret_value().encode()
        expected = hmac.new(key, body, hashlib.sha256).hexdigest()
        if not given or not hmac.compare_digest(given.encode(), expected.encode()):
            raise WebhookRejected("the X-Signature header does not sign the body", status=401)

    def parse(self, body: bytes) -> TicketEvent | None:
        payload = webhook_object(body)
        event = str(payload.get("event") or "")
        if not event.startswith("ticket."):
            return None
        ticket_id = record_id(lower_keys(payload.get("ticket")).get("id"))
        if ticket_id is None:
            raise WebhookRejected("the delivery names no ticket id", status=400)
        return TicketEvent(
            tenant=self.tenant,
            ticket_id=ticket_id,
            action=event,
            actionable=event == "ticket.created",
            dedupe_key=str(payload.get("delivery") or body_hash(body)),
        )

    def get_ticket(self, ticket_id: str) -> Ticket:
        number = numeric(ticket_id, "ticket id", psa="Example PSA")
        data = lower_keys(self.client.json("GET", f"tickets/{number}", what=f"ticket {number}"))
        customer = lower_keys(data.get("customer"))
        return Ticket(
            id=str(number),
            title=str(data.get("title") or ""),
            description=str(data.get("body") or ""),
            scope="all",
            company_id=record_id(customer.get("id")),
            company_name=customer.get("name"),
            current=self._current(data.get("category_id")),
        )

    def _current(self, category_id: object) -> tuple[LevelValue, ...]:
        key = record_id(category_id)
        if key is None:
            return ()
        names = {leaf.key: leaf.label for leaf in self._leaves()}
        return (LevelValue(LEVEL, key, names.get(key, f"#{key}")),)

    def get_taxonomy(self, ticket: Ticket) -> Taxonomy:
        return Taxonomy(scope="all", scope_name="All", levels=(LEVEL,), leaves=self._leaves())

    def _leaves(self) -> tuple[Category, ...]:
        records = self.client.pages("categories", what="categories")
        return tuple(
            Category(str(r["id"]), (LevelValue(LEVEL, str(r["id"]), str(r.get("name") or "")),))
            for r in records
            if record_id(r.get("id")) and r.get("active") is not False
        )

    def set_category(self, ticket: Ticket, category: Category) -> None:
        number = numeric(ticket.id, "ticket id", psa="Example PSA")
        value = numeric(
            category.ids().get(LEVEL, ""), "category", psa="Example PSA", error=CategoryRejected
        )
        self.client.call(
            "PATCH",
            f"tickets/{number}",
            json_body={"category_id": value},
            what=f"the category of ticket {number}",
            rejected=CategoryRejected,
        )

    def add_note(self, ticket: Ticket, text: str) -> None:
        number = numeric(ticket.id, "ticket id", psa="Example PSA")
        note = {"text": text, "internal": True}
        self.client.call("POST", f"tickets/{number}/notes", json_body=note, what="the note")

    def find_note(self, ticket: Ticket, marker: str) -> bool:
        number = numeric(ticket.id, "ticket id", psa="Example PSA")
        notes = self.client.pages(f"tickets/{number}/notes", what=f"notes of ticket {number}")
        return any(marker in str(note.get("text") or "") for note in notes)

    def register_webhook(self, url: str) -> str:
        hooks = self.client.pages("webhooks", what="webhooks")
        found = next((h for h in hooks if h.get("url") == url), None)
        if found is None:
            body = {
                "url": url,
                "events": ["ticket.created"],
                "secret": self.config.webhook_secret.get_secret_value(),
            }
            found = lower_keys(
                self.client.json("POST", "webhooks", json_body=body, what="the webhook")
            )
        return str(found["id"])

    def check_connection(self) -> str:
        me: dict[str, Any] = lower_keys(self.client.json("GET", "me", what="the account"))
        return f"Example PSA: {me.get('name')}"
