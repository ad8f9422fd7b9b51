"""The contract suite's kit and case tables for ConnectWise (see ``tests/fakes/kit.py``)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from psatriage.domain import LevelValue, Ticket
from psatriage.errors import AuthFailed, PermanentError, TransientError
from tests.fakes.connectwise.server import FakeConnectWise
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
    replaced,
)
from tests.fakes.kit import fixture as shared_fixture


def fixture(name: str) -> Any:
    return shared_fixture("connectwise", name)


def ticket_added(entity: dict[str, Any] | None = None, **keys: Any) -> bytes:
    """The ticket-added sample with top-level keys replaced (None removes) and Entity patched."""
    payload = fixture("callback-ticket-added.json")
    if entity is not None:
        payload["Entity"] = json.dumps({**json.loads(payload["Entity"]), **entity})
    return replaced(payload, **keys)


SAMPLE = ticket_added()
ENTITY_NULL = json.dumps({**fixture("callback-ticket-added.json"), "Entity": None}).encode()
UPPER = json.dumps(
    {"MESSAGEID": "m-1", "TYPE": "Ticket", "ACTION": "Added", "ID": "69", "MEMBERID": "jdoe"}
).encode()
CONTACT = json.dumps(fixture("callback-contact-added.json")).encode()
SAMPLE_DETAILS = {
    "dedupe_key": "sha256:" + hashlib.sha256(SAMPLE).hexdigest(),
    "occurred_at": datetime(2005, 5, 27, 17, 30, 19, tzinfo=UTC),
    "actor": None,
}

SAMPLE_SNAPSHOT = {  # what of the sample's Entity stands in for GET service/tickets/69
    "id": 69,
    "summary": "Schedule and Execute Conversion",
    "board": {"id": 1, "name": "Service A"},
    "company": {"id": 2, "name": "TestCompany"},
    "type": {"id": 8, "name": "Admin"},
    "subtype": {"id": 1, "name": "Repair"},
    "item": {"id": 2, "name": "Fix it"},
}

PARSE = [
    ParseCase("ticket added", SAMPLE, {"ticket_id": "69", "action": "added", "actionable": True}),
    ParseCase("sample details", SAMPLE, SAMPLE_DETAILS),
    ParseCase("contact added", CONTACT, None),
    ParseCase("updated", ticket_added(Action="updated"),
              {"actionable": False, "action": "updated"}),
    ParseCase("deleted, no entity", ticket_added(Action="deleted", Entity=None),
              {"actionable": False}),
    ParseCase("project ticket", ticket_added({"recordType": "ProjectTicket"}),
              {"actionable": False}),
    ParseCase("project issue", ticket_added({"recordType": "ProjectIssue"}), {"actionable": False}),
    ParseCase("no recordType", ticket_added({"recordType": None}), {"actionable": True}),
    ParseCase("Entity missing", ticket_added(Entity=None), {"ticket_id": "69", "actionable": True}),
    ParseCase("Entity empty", ticket_added(Entity=""), {"actionable": True, "occurred_at": None}),
    ParseCase("Entity null", ENTITY_NULL, {"ticket_id": "69", "actionable": True}),
    ParseCase("Entity not JSON", ticket_added(Entity="{oops"), {"ticket_id": "69"}),
    ParseCase("id from Entity", ticket_added(ID=None), {"ticket_id": "69"}),
    ParseCase("upper-case keys", UPPER, {"dedupe_key": "m-1", "actor": "jdoe", "actionable": True}),
    ParseCase("MessageID", ticket_added(MessageID="m-2"), {"dedupe_key": "m-2"}),
    ParseCase("board by id", SAMPLE, {"actionable": True}, {"boards": ["1"]}),
    ParseCase("board by name", SAMPLE, {"actionable": True}, {"boards": ["service a"]}),
    ParseCase("other board", SAMPLE, {"actionable": False}, {"boards": ["2", "Help Desk"]}),
    ParseCase("board unknown", ticket_added(Entity=None), {"actionable": False}, {"boards": ["1"]}),
    ParseCase("no Type", ticket_added(Type=None), None),
    ParseCase("snapshot", SAMPLE, {"snapshot": SAMPLE_SNAPSHOT}),
    ParseCase("no snapshot: updated", ticket_added(Action="updated"), {"snapshot": None}),
    ParseCase("no snapshot: no Entity", ticket_added(Entity=None), {"snapshot": None}),
    ParseCase("no snapshot: other id", ticket_added({"id": 70}), {"snapshot": None}),
    ParseCase("no snapshot: no summary", ticket_added({"summary": None}), {"snapshot": None}),
    ParseCase("no snapshot: no board", ticket_added({"board": None}), {"snapshot": None}),
    ParseCase("no snapshot: odd company", ticket_added({"company": "Contoso"}),
              {"snapshot": None}),
    ParseCase("no snapshot: out of scope", SAMPLE, {"snapshot": None}, {"boards": ["2"]}),
]  # fmt: skip

MALFORMED = [
    Malformed("not json", b"not json", "not JSON"),
    Malformed("array", b"[1, 2]", "not a JSON object"),
    Malformed("no id", ticket_added(ID=None, Entity=None), "no ID"),
    Malformed("bad id", ticket_added(ID="abc", Entity="{}"), "no ID"),
]

REFUSED = [
    Refused("trailing byte", lambda body, headers: (body + b" ", headers)),
    Refused("edited text", lambda body, headers: (body.replace(b"Printer", b"Desktop"), headers)),
    Refused("missing header", lambda body, headers: (body, {"content-type": "application/json"})),
    Refused("not json", lambda body, headers: (b"not json", headers), status=400),
    Refused("no key_url", lambda body, headers: (b'{"Type": "ticket"}', headers), status=400),
]

INVALID = fixture("error-invalidobject.json")
ERRORS = [
    ErrorCase("401", 401, AuthFailed, "401", body={"code": "Unauthorized"}),
    ErrorCase("403", 403, AuthFailed, "no access", body={"message": "no access"}),
    ErrorCase("429", 429, TransientError, "429", headers={"Retry-After": "7"}),
    ErrorCase("500", 500, TransientError, "timeout", body={"message": "timeout"}),
    ErrorCase("502", 502, TransientError, "502"),
    ErrorCase("503", 503, TransientError, "503", headers={"Retry-After": "2"}),
    ErrorCase("504", 504, TransientError, "504"),
    ErrorCase("400", 400, PermanentError, "yearEstablished must be between 1900 and 9999",
              body=INVALID),
    ErrorCase("409", 409, PermanentError, "Conflict: busy",
              body={"code": "Conflict", "message": "busy"}),
]  # fmt: skip

BAD_CONFIG = [
    BadConfig({"base_url": "http://127.0.0.1:1/v2025_1"}),
    BadConfig({"site": "https://api-na.myconnectwise.net"}),
    BadConfig({"page_size": 0}),
    BadConfig({"page_size": 1001}),
    BadConfig({"public_key": "plain-text-key"}),
    BadConfig({"trusted_key_origins": ["https://cw.example.com/keys"]}),
    BadConfig({"codebase": "../etc"}),
    BadConfig({"codebase": ".."}),
    BadConfig({"requests_per_window": 0}),
    BadConfig({"window_seconds": 0}),
    BadConfig({"concurrent_per_endpoint": 0}),
    BadConfig({"unknown": 1}),
]

CASES = Cases(
    parse=PARSE,
    malformed=MALFORMED,
    refused=REFUSED,
    errors=ERRORS,
    bad_config=BAD_CONFIG,
    concurrency=[
        Concurrency(
            {"concurrent_per_endpoint": 2},
            cap=2,
            endpoint=lambda fake: f"GET /{fake.codebase}apis/3.0/service/tickets/{{id}}",
        )
    ],
    connection_check=r"ConnectWise v2025\.1 \(cloud\)",
    bad_credentials=(FakeConnectWise.PRIVATE_KEY_ENV, "wrong-private-S3CRET", "refused"),
    taxonomy_shows=("10/20/30", "Hardware › Printer › Paper jam", "Network Operations"),
    taxonomy_hides=("Legacy", "Toner"),
)


def kit() -> ContractKit:
    """The contract-suite kit for ConnectWise (see ``tests/fakes/kit.py``); starts the fake."""
    fake = FakeConnectWise().start()

    def created(ticket_id: str) -> Delivery:
        return fake.callback(int(ticket_id))

    def updated(ticket_id: str) -> Delivery:
        return fake.callback(int(ticket_id), action="updated")

    def tamper(delivery: Delivery) -> Delivery:
        body, headers = delivery
        return body.replace(b'"ticket"', b'"Ticket"', 1), headers

    def categorized() -> tuple[str, Ticket]:
        ticket_id = fake.add_ticket(
            "Printer jams", "The 3rd floor printer jams.", type_id=10, subtype_id=20
        )
        fake.add_ticket_note(ticket_id, "Categorized. [psatriage:7]", internal=True)
        fake.add_ticket_note(ticket_id, "It is the HP on the left.", internal=True)
        fake.add_ticket_note(ticket_id, "Any news?", detail=True)
        return str(ticket_id), Ticket(
            id=str(ticket_id),
            title="Printer jams",
            description="The 3rd floor printer jams.",
            scope="1",
            scope_name="Help Desk",
            initial_note="It is the HP on the left.",
            company_id="250",
            company_name="Contoso Ltd",
            current=(LevelValue("type", "10", "Hardware"), LevelValue("subType", "20", "Printer")),
        )

    def history_ticket(title: str, created: datetime, categorized: bool, closed: bool) -> str:
        levels = {"type_id": 10, "subtype_id": 20, "item_id": 30} if categorized else {}
        ticket_id = fake.add_ticket(title, f"text of {title}", entered=created, **levels)
        if closed:
            fake.close_ticket(ticket_id)
        return str(ticket_id)

    categories = ({"type_id": 10, "subtype_id": 20, "item_id": 30},
                  {"type_id": 11, "subtype_id": 22, "item_id": 32})  # fmt: skip
    companies = ((250, "Contoso Ltd"), (251, "Fabrikam Inc"))

    def closed_ticket(
        title: str, created: datetime, closed: datetime, category: int | None, company: int
    ) -> str:
        levels = categories[category] if category is not None else {}
        ticket_id = fake.add_ticket(
            title, f"text of {title}", entered=created, company=companies[company], **levels
        )
        fake.close_ticket(ticket_id, closed)
        return str(ticket_id)

    return kit_of(
        "connectwise",
        fake,
        new_ticket=lambda title, description: str(fake.add_ticket(title, description)),
        created=created,
        updated=updated,
        tamper=tamper,
        category_writes=lambda ticket_id: fake.patches(int(ticket_id)),
        notes=lambda ticket_id: [n["text"] for n in fake.notes(int(ticket_id))],
        fail_path=lambda ticket_id: rf"/service/tickets/{ticket_id}$",
        secrets=[fake.public_key, fake.private_key, fake.signing_key],
        cases=CASES,
        add_note=lambda ticket_id, text: fake.add_ticket_note(int(ticket_id), text, internal=True),
        categorized=categorized,
        field_value=lambda ticket_id, field: _field_value(fake, ticket_id, field),
        history_ticket=history_ticket,
        history_path=r"/service/tickets$",
        registrations=lambda: len(fake.callbacks),
        close=lambda ticket_id: fake.close_ticket(int(ticket_id)),
        delete=lambda ticket_id: fake.delete_ticket(int(ticket_id)),
        touch=lambda ticket_id, person: fake.touch(int(ticket_id), person),
        closed_ticket=closed_ticket,
        add_time=lambda ticket_id, hours: fake.add_time(int(ticket_id), hours),
        deny_time=lambda: setattr(fake, "time_denied", True),
        time_path=r"/time/entries$",
        report_categories=("Hardware › Printer › Paper jam", "Software › Email › Setup"),
    )


def _field_value(fake: FakeConnectWise, ticket_id: str, field: str) -> str | None:
    ref = fake.tickets[int(ticket_id)].get(
        {"priority": "priority", "routing": "board", "status": "status"}[field]
    )
    return str(ref["id"]) if ref else None
