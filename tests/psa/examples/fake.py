"""A fake Example PSA on 127.0.0.1, on the ``FakePSA`` base, with its contract kit and cases."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import uuid
from typing import Any, ClassVar

from psatriage.domain import LevelValue, Ticket
from psatriage.errors import AuthFailed, PermanentError, TransientError
from tests.fakes.base import FakePSA, Request, Response
from tests.fakes.kit import (
    BadConfig,
    Cases,
    Concurrency,
    ContractKit,
    Delivery,
    ErrorCase,
    Malformed,
    ParseCase,
    Refused,
    kit_of,
)


class FakeExamplePSA(FakePSA):
    API_KEY_ENV = "PSATRIAGE_TEST_EXAMPLE_API_KEY"
    WEBHOOK_SECRET_ENV = "PSATRIAGE_TEST_EXAMPLE_WEBHOOK_SECRET"
    SECRETS: ClassVar[dict[str, str]] = {
        API_KEY_ENV: "api_key",
        WEBHOOK_SECRET_ENV: "webhook_secret",
    }

    def __init__(self) -> None:
        super().__init__(max_page_size=100)
        self.api_key, self.webhook_secret = "fake-example-api-key", "fake-example-webhook-secret"
        self.categories = [
            {"id": 1, "name": "Hardware", "active": True},
            {"id": 2, "name": "Printer", "active": True},
            {"id": 3, "name": "Retired", "active": False},
        ]
        self.tickets: dict[int, dict[str, Any]] = {}
        self.ticket_notes: dict[int, list[dict[str, Any]]] = {}
        self.webhooks: list[dict[str, Any]] = []
        self._ids = itertools.count(100)
        for method, pattern, handler in [
            ("GET", r"/api/me", lambda r: Response(200, {"name": "Acme"})),
            ("GET", r"/api/categories", lambda r: self._page(r, self.categories)),
            ("GET", r"/api/tickets/(?P<id>\d+)", self._get_ticket),
            ("PATCH", r"/api/tickets/(?P<id>\d+)", self._patch_ticket),
            ("GET", r"/api/tickets/(?P<id>\d+)/notes", self._list_notes),
            ("POST", r"/api/tickets/(?P<id>\d+)/notes", self._add_note),
            ("GET", r"/api/webhooks", lambda r: self._page(r, self.webhooks)),
            ("POST", r"/api/webhooks", self._add_webhook),
        ]:
            self.route(method, pattern, self.locked(handler))

    def connection(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "api_key": f"env:{self.API_KEY_ENV}",
            "webhook_secret": f"env:{self.WEBHOOK_SECRET_ENV}",
            "requests_per_window": 100_000,
        }

    def add_ticket(self, title: str, body: str, category_id: int | None = None) -> int:
        with self._data:
            ticket_id = next(self._ids)
            self.tickets[ticket_id] = {
                "id": ticket_id,
                "title": title,
                "body": body,
                "category_id": category_id,
                "customer": {"id": 7, "name": "Contoso Ltd"},
            }
            self.ticket_notes[ticket_id] = []
            return ticket_id

    def add_note(self, ticket_id: int, text: str) -> None:
        with self._data:
            self.ticket_notes[ticket_id].append({"id": next(self._ids), "text": text})

    def delivery(self, ticket_id: int, event: str = "ticket.created") -> Delivery:
        body = json.dumps(
            {"event": event, "delivery": str(uuid.uuid4()), "ticket": {"id": ticket_id}}
        ).encode()
        signature = hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        return body, {"content-type": "application/json", "x-signature": signature}

    def authorize(self, request: Request) -> Response | None:
        if request.headers.get("x-api-key") != self.api_key:
            return Response(401, {"error": "unknown API key"})
        return None

    def _page(self, request: Request, records: list[Any]) -> Response:
        page = int(request.arg("page") or 1)
        chunk, _ = self.page_of(records, page, int(request.arg("per_page") or 20))
        return Response(200, {"items": chunk, "total": len(records)})

    def _get_ticket(self, request: Request) -> Response:
        ticket = self.tickets.get(int(request.params["id"]))
        return Response(200, ticket) if ticket else Response(404, {"error": "no such ticket"})

    def _patch_ticket(self, request: Request) -> Response:
        ticket = self.tickets.get(int(request.params["id"]))
        if ticket is None:
            return Response(404, {"error": "no such ticket"})
        wanted = request.json().get("category_id")
        if not any(c["id"] == wanted and c["active"] for c in self.categories):
            return Response(422, {"error": f"category {wanted} is not active"})
        ticket["category_id"] = wanted
        return Response(200, ticket)

    def _list_notes(self, request: Request) -> Response:
        return self._page(request, self.ticket_notes.get(int(request.params["id"]), []))

    def _add_note(self, request: Request) -> Response:
        ticket_id = int(request.params["id"])
        if ticket_id not in self.tickets:
            return Response(404, {"error": "no such ticket"})
        self.add_note(ticket_id, str(request.json().get("text") or ""))
        return Response(201, self.ticket_notes[ticket_id][-1])

    def _add_webhook(self, request: Request) -> Response:
        hook = {**request.json(), "id": next(self._ids)}
        self.webhooks.append(hook)
        return Response(201, hook)


CASES = Cases(
    parse=[
        ParseCase(
            "created",
            b'{"event": "ticket.created", "delivery": "d-1", "ticket": {"id": 5}}',
            {"ticket_id": "5", "actionable": True, "dedupe_key": "d-1"},
        ),
        ParseCase(
            "updated", b'{"event": "ticket.updated", "ticket": {"id": 5}}', {"actionable": False}
        ),
        ParseCase("not a ticket", b'{"event": "customer.created", "customer": {"id": 5}}', None),
    ],
    malformed=[Malformed("no id", b'{"event": "ticket.created", "ticket": {}}', "no ticket id")],
    refused=[
        Refused("edited", lambda body, headers: (body.replace(b"created", b"updated"), headers))
    ],
    errors=[
        ErrorCase("403", 403, AuthFailed, "refused the API key"),
        ErrorCase("429", 429, TransientError, "429", headers={"Retry-After": "9"}),
        ErrorCase("400", 400, PermanentError, "rejected ticket .*: bad", body={"error": "bad"}),
    ],
    bad_config=[
        BadConfig({"url": "https://acme.example-psa.com/api"}, "no path"),
        BadConfig({"api_key": "in-the-file"}, "never written in the file"),
    ],
    concurrency=[
        Concurrency({"concurrent_per_endpoint": 2}, 2, lambda fake: "GET /api/tickets/{id}")
    ],
    connection_check="Example PSA: Acme",
    bad_credentials=(FakeExamplePSA.API_KEY_ENV, "a-wrong-api-key", "refused the API key"),
)


def kit() -> ContractKit:
    fake = FakeExamplePSA().start()

    def categorized() -> tuple[str, Ticket]:
        ticket_id = str(fake.add_ticket("Printer jams", "It jams.", category_id=2))
        return ticket_id, Ticket(
            id=ticket_id,
            title="Printer jams",
            description="It jams.",
            scope="all",
            company_id="7",
            company_name="Contoso Ltd",
            current=(LevelValue("category", "2", "Printer"),),
        )

    return kit_of(
        "example",
        fake,
        new_ticket=lambda title, body: str(fake.add_ticket(title, body)),
        created=lambda ticket_id: fake.delivery(int(ticket_id)),
        updated=lambda ticket_id: fake.delivery(int(ticket_id), "ticket.updated"),
        tamper=lambda delivery: (delivery[0] + b" ", delivery[1]),
        category_writes=lambda ticket_id: fake.writes_to("PATCH", rf"/tickets/{ticket_id}$"),
        notes=lambda ticket_id: [n["text"] for n in fake.ticket_notes[int(ticket_id)]],
        fail_path=lambda ticket_id: rf"/api/tickets/{ticket_id}$",
        secrets=[fake.api_key, fake.webhook_secret],
        cases=CASES,
        add_note=lambda ticket_id, text: fake.add_note(int(ticket_id), text),
        categorized=categorized,
        registrations=lambda: len(fake.webhooks),
    )
