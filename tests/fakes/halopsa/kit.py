"""The contract suite's kit and case tables for HaloPSA (see ``tests/fakes/kit.py``)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from psatriage.domain import LevelValue, Ticket
from psatriage.errors import AuthFailed, PermanentError, TransientError
from psatriage.psa.base import PATH_TOKEN_HEADER
from tests.fakes.halopsa.server import UPDATED_NOTIFICATION, FakeHaloPSA
from tests.fakes.kit import (
    ROTATION,
    BadConfig,
    Cases,
    Change,
    Concurrency,
    ContractKit,
    Delivery,
    ErrorCase,
    Malformed,
    ParseCase,
    Refused,
    kit_of,
)
from tests.fakes.kit import fixture as shared_fixture

PATH_TOKEN = "kit-path-token-0123456789abcdef"


def fixture(name: str) -> Any:
    return shared_fixture("halopsa", name)


def dumps(payload: Any) -> bytes:
    return json.dumps(payload).encode()


STATUS = fixture("webhook-ticket-status-changed.json")
EVENT_ONLY = fixture("webhook-event-information-only-fixture.json")
NANGO = dumps(fixture("webhook-new-ticket-logged-fixture.json"))
STATUS_CHANGED = {
    "ticket_id": "4242",
    "action": "ticket status changed",
    "actionable": False,
    "dedupe_key": "8e25bc7b-e07e-4102-9398-5d6647e1e79d",
    "actor": "3",
    "occurred_at": datetime(2026, 9, 25, 6, 41, 8, 789591, tzinfo=UTC),
}
NEW = {"actionable": True}

PARSE = [
    ParseCase("status changed sample", dumps(STATUS), STATUS_CHANGED),
    ParseCase("new ticket, full", dumps({**STATUS, "event": "New Ticket Logged"}), NEW),
    ParseCase("new ticket fixture", NANGO, {"ticket_id": "123", **NEW}),
    ParseCase("no delivery id", NANGO,
              {"dedupe_key": "sha256:" + hashlib.sha256(NANGO).hexdigest(), **NEW}),
    ParseCase("event information only", dumps(EVENT_ONLY), {"ticket_id": "4242",
              "actionable": False, "dedupe_key": EVENT_ONLY["id"], "actor": None}),
    ParseCase("event only, new ticket", dumps({**EVENT_ONLY, "event": "new_ticket_logged"}),
              {"ticket_id": "4242", "action": "new_ticket_logged", **NEW}),
    ParseCase("notification id configured", dumps(STATUS), NEW,
              {"new_ticket_notifications": [41]}),
    ParseCase("other notification id", dumps({**STATUS, "event": "New Ticket Logged"}),
              {"actionable": False}, {"new_ticket_notifications": [57]}),
    ParseCase("eventno 3", dumps({"eventno": "3", "object_id": 9}), NEW),
    ParseCase("eventno beats the text",
              dumps({"eventno": 61, "event": "New Ticket Logged", "object_id": 9}),
              {"actionable": False}),
    ParseCase("no text, event number", dumps({"notification_id": 3, "object_id": 9}), NEW),
    ParseCase("no text, other number", dumps({"notification_id": 41, "object_id": 9}), None),
    ParseCase("upper-case keys", dumps({"Event": "NEW TICKET LOGGED", "Object_Id": "77"}), NEW),
    ParseCase("id from ticket",
              dumps({"event": "New Ticket Logged", "ticket": {"id": 5}, "escmsg_id": "e-1"}),
              {"ticket_id": "5", "dedupe_key": "e-1", **NEW}),
    ParseCase("type in scope", dumps({**STATUS, "event": "New Ticket Logged"}), NEW,
              {"ticket_types": [25]}),
    ParseCase("type out of scope", dumps({**STATUS, "event": "New Ticket Logged"}),
              {"actionable": False}, {"ticket_types": ["Incident"]}),
    ParseCase("type unknown", dumps({**EVENT_ONLY, "event": "New Ticket Logged"}),
              {"actionable": False}, {"ticket_types": ["25"]}),
    ParseCase("client event", dumps({"event": "New Client Added", "object_id": 12}), None),
]  # fmt: skip

MALFORMED = [
    Malformed("not json", b"not json", "not JSON"),
    Malformed("array", b"[1, 2]", "not a JSON object"),
    Malformed("no id", dumps({"event": "New Ticket Logged"}), "no object_id"),
    Malformed("bad id", dumps({"event": "New Ticket Logged", "object_id": "abc"}), "no object_id"),
    Malformed("zero id", dumps({**STATUS, "object_id": 0, "ticket": {"id": -1}}), "no object_id"),
]


def _headers(*pairs: tuple[str, str]) -> Change:
    """The delivery's own headers replaced by ``pairs``; the URL's secret segment is kept (the
    signature is what these cases test, not the path token)."""
    return lambda body, headers: (
        body,
        {**{k: v for k, v in headers.items() if k == PATH_TOKEN_HEADER}, **dict(pairs)},
    )


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _auth(method: str, header: str = "Token") -> dict[str, Any]:
    return {"fake": {"webhook_auth": method, "webhook_header": header},
            "connection": {"webhook_auth": method, "webhook_header": header}}  # fmt: skip


SECRET = "fake-halo-webhook-secret"
REFUSED = [
    Refused("hmac tampered", lambda body, headers: (body + b" ", headers)),
    Refused("hmac missing", _headers()),
    Refused("hmac wrong", _headers(("token", "c2lnbmF0dXJl"))),
    Refused("basic wrong password", _headers(("authorization", _basic("psatriage", "wrong"))),
            **_auth("basic")),
    Refused("basic wrong user", _headers(("authorization", _basic("other", SECRET))),
            **_auth("basic")),
    Refused("basic bearer", _headers(("authorization", f"Bearer {SECRET}")), **_auth("basic")),
    Refused("basic missing", _headers(), **_auth("basic")),
    Refused("header wrong", _headers(("token", SECRET[:-1])), **_auth("header")),
    Refused("header missing", _headers(), **_auth("header")),
    Refused("path token missing",
            lambda body, headers: (body, {k: v for k, v in headers.items()
                                          if k != PATH_TOKEN_HEADER})),
    Refused("path token short", lambda body, headers: (body, {**headers,
            PATH_TOKEN_HEADER: PATH_TOKEN[:-1]})),
    Refused("path token long", lambda body, headers: (body, {**headers,
            PATH_TOKEN_HEADER: PATH_TOKEN + "x"})),
]  # fmt: skip

ERRORS = [
    ErrorCase("403", 403, AuthFailed, "Insufficient permissions",
              body={"Message": "Insufficient permissions"}),
    ErrorCase("429", 429, TransientError, "429", headers={"Retry-After": "7"}),
    ErrorCase("500", 500, TransientError, "System.NullReferenceException: oops",
              body={"ClassName": "System.NullReferenceException", "Message": "oops"}),
    ErrorCase("502, an HTML page", 502, TransientError, "502 for ticket",
              body="<html><body>Bad gateway</body></html>"),
    ErrorCase("503", 503, TransientError, "503", headers={"Retry-After": "2"}),
    ErrorCase("400, resultCode", 400, PermanentError, "5: Bad value",
              body={"resultCode": 5, "errorMessage": "Bad value"}),
    ErrorCase("400, text", 400, PermanentError, "The ticket is locked.",
              body="The ticket is locked."),
    ErrorCase("409, OAuth shape", 409, PermanentError, "conflict: busy",
              body={"error": "conflict", "error_description": "busy"}),
    ErrorCase("400, a secret echoed", 400, PermanentError, r"bad \*\*\*",
              body={"Message": "bad fake-halo-client-secret"}),
]  # fmt: skip

BAD_CONFIG = [
    BadConfig({"webhook_secret": "plain-text"}, "never written in the file"),
    BadConfig({"client_secret": "plain-text"}, "never written in the file"),
    BadConfig({"url": "https://acme.halopsa.com/?x=1"}, "no query"),
    BadConfig({"url": "acme.halopsa.com"}, "address such as"),
    BadConfig({"url": "https://acme.halopsa.com/../x"}, "'..'"),
    BadConfig({"auth_url": "ftp://auth.example.com"}, "address such as"),
    BadConfig({"webhook_header": "Bad Header"}, "header name"),
    BadConfig({"webhook_auth": "none"}, "webhook_auth"),
    BadConfig({"facets": ["priorityid", "priorityid"]}, "twice"),
    BadConfig({"facets": ["queue"]}, "facets"),
    BadConfig({"category_field": 5}, "category_field"),
    BadConfig({"page_size": 101}, "page_size"),
    BadConfig({"tenant": "acme&x=1"}, "letters, digits"),
    BadConfig({"requests_per_window": 0}, "requests_per_window"),
    BadConfig({"window_seconds": 0}, "window_seconds"),
    BadConfig({"concurrent_per_endpoint": 0}, "concurrent_per_endpoint"),
    BadConfig({"unknown": 1}, "unknown"),
]

CASES = Cases(
    parse=PARSE,
    malformed=MALFORMED,
    refused=REFUSED,
    errors=ERRORS,
    bad_config=BAD_CONFIG,
    rotation=ROTATION,
    concurrency=[
        Concurrency(
            {"concurrent_per_endpoint": 2}, cap=2, endpoint=lambda fake: "GET /api/Tickets/{id}"
        )
    ],
    connection_check=r"HaloPSA at 127\.0\.0\.1; notes as 'Private Note' \(outcome 3\)",
    bad_credentials=(FakeHaloPSA.CLIENT_SECRET_ENV, "wrong-S3CRET", "invalid_client"),
    taxonomy_shows=("Hardware › Printer › Paper jam", "Service Request", "Incident"),
    taxonomy_hides=("Retired", "Legacy"),
)


def kit() -> ContractKit:
    """The contract-suite kit for HaloPSA (see ``tests/fakes/kit.py``); starts the fake."""
    fake = FakeHaloPSA(path_token=PATH_TOKEN).start()

    def created(ticket_id: str) -> Delivery:
        return fake.delivery(int(ticket_id))

    def updated(ticket_id: str) -> Delivery:
        return fake.delivery(
            int(ticket_id), event="Ticket Updated", notification_id=UPDATED_NOTIFICATION
        )

    def tamper(delivery: Delivery) -> Delivery:
        body, headers = delivery
        return body.replace(b"New Ticket Logged", b"New Ticket logged", 1), headers

    def categorized() -> tuple[str, Ticket]:
        ticket_id = fake.add_ticket("Printer jams", "The 3rd floor printer jams.", category_id=19)
        return str(ticket_id), Ticket(
            id=str(ticket_id),
            title="Printer jams",
            description="The 3rd floor printer jams.",
            scope="1",
            scope_name="Incident",
            company_id="12",
            company_name="Contoso Ltd",
            current=(
                LevelValue("category_1", "Hardware", "Hardware"),
                LevelValue("category_1.2", "Hardware>Printer", "Printer"),
                LevelValue("category_1.3", "19", "Paper jam"),
            ),
        )

    def history_ticket(title: str, created: datetime, categorized: bool, closed: bool) -> str:
        occurred = created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
        category = 17 if categorized else None
        ticket_id = fake.add_ticket(
            title, f"text of {title}", category_id=category, dateoccurred=occurred
        )
        if closed:
            fake.close_ticket(ticket_id)
        return str(ticket_id)

    clients = ((12, "Contoso Ltd"), (13, "Fabrikam Inc"))

    def closed_ticket(
        title: str, created: datetime, closed: datetime, category: int | None, company: int
    ) -> str:
        occurred = created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
        ticket_id = fake.add_ticket(
            title,
            f"text of {title}",
            category_id=(17, 20)[category] if category is not None else None,
            dateoccurred=occurred,
            client=clients[company],
        )
        fake.close_ticket(ticket_id, closed)
        return str(ticket_id)

    return kit_of(
        "halopsa",
        fake,
        new_ticket=lambda title, description: str(fake.add_ticket(title, description)),
        created=created,
        updated=updated,
        tamper=tamper,
        category_writes=lambda ticket_id: fake.ticket_updates(int(ticket_id)),
        notes=lambda ticket_id: [a["note"] for a in fake.notes(int(ticket_id))],
        fail_path=lambda ticket_id: rf"/api/Tickets/{ticket_id}$",
        secrets=[fake.client_secret, fake.webhook_secret, PATH_TOKEN],
        webhook_path_suffix=f"/{PATH_TOKEN}",
        cases=CASES,
        add_note=lambda ticket_id, text: fake.add_action(int(ticket_id), text),
        categorized=categorized,
        field_value=lambda ticket_id, field: _field_value(fake, ticket_id, field),
        history_ticket=history_ticket,
        history_path=r"/api/Tickets$",
        registrations=lambda: len(fake.webhooks),
        close=lambda ticket_id: fake.close_ticket(int(ticket_id)),
        delete=lambda ticket_id: fake.delete_ticket(int(ticket_id)),
        closed_ticket=closed_ticket,
        add_time=lambda ticket_id, hours: fake.add_time(int(ticket_id), hours),
        deny_time=lambda: setattr(fake, "time_denied", True),
        time_path=r"/api/Actions$",
        report_categories=("Hardware › Printer", "Software › Email"),
    )


def _field_value(fake: FakeHaloPSA, ticket_id: str, field: str) -> str | None:
    value = fake.tickets[int(ticket_id)].get(
        {"priority": "priority_id", "routing": "team_id", "status": "status_id"}[field]
    )
    return None if value is None else str(value)
