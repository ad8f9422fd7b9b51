"""The contract suite's kit and case tables for Autotask (see ``tests/fakes/kit.py``)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from psatriage.domain import LevelValue, Ticket
from psatriage.errors import AuthFailed, NotFound, PermanentError, TransientError
from tests.fakes.autotask.server import FakeAutotask
from tests.fakes.kit import (
    ROTATION,
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

TRICKY = 'Café & bar\'s "VPN" <down> + `x` 🚀 ü'


def fixture(name: str) -> Any:
    return shared_fixture("autotask", name)


def sample(name: str = "webhook-ticket-create.json", **keys: Any) -> bytes:
    """A sample delivery with top-level keys replaced (None removes them)."""
    return replaced(fixture(name), **keys)


CREATE_KEY = "a1da62a4-2c49-40a8-8183-69994ce5b3eb:351181:1"
LOWER = json.dumps({"action": "Create", "id": "77", "guid": "g", "sequencenumber": 3}).encode()
UNGUIDED = sample(Guid=None)

PARSE = [
    ParseCase("create sample", sample(), {"ticket_id": "351181", "action": "Create",
              "actionable": True, "dedupe_key": CREATE_KEY, "actor": "30691780",
              "occurred_at": datetime(2025, 9, 15, 14, 57, 50, tzinfo=UTC)}),
    ParseCase("update sample", sample("webhook-ticket-update.json"),
              {"ticket_id": "351182", "action": "Update", "actionable": False}),
    ParseCase("delete", sample(Action="Delete"), {"action": "Delete", "actionable": False}),
    ParseCase("PersonID", sample(PersonId=None, PersonID=42), {"actor": "42"}),
    ParseCase("no person", sample(PersonId=None), {"actor": None, "actionable": True}),
    ParseCase("lower-case keys", LOWER,
              {"ticket_id": "77", "dedupe_key": "g:77:3", "actionable": True}),
    ParseCase("Tickets", sample(EntityType="Tickets"), {"actionable": True}),
    ParseCase("no EntityType", sample(EntityType=None), {"actionable": True}),
    ParseCase("ticket note", sample(EntityType="TicketNote"), None),
    ParseCase("company", sample(EntityType="Company"), None),
    ParseCase("unknown action", sample(Action="Merge"), {"actionable": False}),
    ParseCase("other sequence", sample(SequenceNumber=2), {"dedupe_key": CREATE_KEY[:-1] + "2"}),
    ParseCase("no Guid", UNGUIDED,
              {"dedupe_key": "sha256:" + hashlib.sha256(UNGUIDED).hexdigest()}),
    ParseCase("no key", b"{}", None),
    ParseCase("unrelated", b'{"hello": "world"}', None),
]  # fmt: skip

MALFORMED = [
    Malformed("not json", b"not json", "not JSON"),
    Malformed("array", b"[1, 2]", "not a JSON object"),
    Malformed("no id", sample(Id=None), "no Id"),
    Malformed("bad id", sample(Id="abc"), "no Id"),
    Malformed("zero id", sample(Id=0), "no Id"),
]

REFUSED = [
    Refused("edited", lambda body, headers: (body.replace(b"Create", b"Update"), headers)),
    Refused("trailing byte", lambda body, headers: (body + b" ", headers)),
    Refused("missing", lambda body, headers: (body, {"content-type": "application/json"})),
    Refused("garbage", lambda body, headers: (body, {"x-hook-signature": "sha1=not base64!"})),
    Refused("empty", lambda body, headers: (body, {"x-hook-signature": "sha1="})),
    Refused("not utf-8", lambda body, headers: (b"\xff\xfe", headers)),
]
# A title that Autotask's serializer escapes: the re-escaped body must not pass either.
REFUSED = [
    *(Refused(r.id, r.change, title=TRICKY) for r in REFUSED),
    Refused("another secret", lambda body, headers: (body, headers),
            fake={"webhook_secret": "someone-else"}),
]  # fmt: skip

PERMISSION = {"errors": ["The logged in Resource does not have the adequate permissions."]}
ERRORS = [
    ErrorCase("401", 401, AuthFailed, "401", body={"errors": ["Unauthorized"]}),
    ErrorCase("403", 403, AuthFailed, "403"),
    ErrorCase("429", 429, TransientError, "429", headers={"Retry-After": "7"}),
    ErrorCase("429, no Retry-After: 60 s", 429, TransientError, "429"),
    ErrorCase("500", 500, TransientError, "500"),
    ErrorCase("500, timeout", 500, TransientError, "Timeout expired",
              body={"errors": ["Timeout expired"]}),
    ErrorCase("500, permission", 500, AuthFailed, "lacks a permission", body=PERMISSION),
    ErrorCase("500, no match", 500, NotFound, "not found",
              body={"errors": ["No matching records found."]}),
    ErrorCase("500, invalid", 500, PermanentError, "Invalid filter",
              body={"errors": [{"message": "Invalid filter"}]}),
    ErrorCase("502", 502, TransientError, "502"),
    ErrorCase("503", 503, TransientError, "503", headers={"Retry-After": "2"}),
    ErrorCase("400", 400, PermanentError, "Bad query", body={"errors": ["Bad query"]}),
    ErrorCase("404", 404, NotFound, "not found"),
    ErrorCase("409", 409, PermanentError, "409 for ticket .*: busy", body={"errors": ["busy"]}),
]  # fmt: skip

BAD_CONFIG = [
    BadConfig({"username": "two words"}),
    BadConfig({"webhook_secret": "plain-text"}),
    BadConfig({"discovery_url": "https://webservices.autotask.net/ATServicesRest?x=1"}),
    BadConfig({"zone_url": "ftp://example.com"}),
    BadConfig({"facets": ["queueID", "queueID"]}),
    BadConfig({"facets": ["status"]}),
    BadConfig({"page_size": 501}),
    BadConfig({"concurrent_per_endpoint": 4}),
    BadConfig({"threshold_check_at": 0}),
    BadConfig({"note_publish": "All Autotask Users"}),
    BadConfig({"webhook_name": "x" * 51}),
    BadConfig({"unknown": 1}),
]

CASES = Cases(
    parse=PARSE,
    malformed=MALFORMED,
    refused=REFUSED,
    errors=ERRORS,
    bad_config=BAD_CONFIG,
    rotation=ROTATION,
    concurrency=[Concurrency({"api_resource_id": 1}, cap=3, endpoint=lambda fake: "Tickets")],
    window=lambda calls: {
        "requests_per_window": calls,
        "threshold_check_at": 1.0,
        "api_resource_id": 1,
    },
    connection_check=r"Autotask 127\.0\.0\.1 \(API user resource 29682885; \d+ of 10000 "
    r"requests used in the current window\)",
    bad_credentials=(FakeAutotask.CODE_ENV, "another-integration-code", "refused"),
    taxonomy_shows=("10/136", "Hardware › Printer"),
    taxonomy_hides=("Legacy", "Fax"),
)


def kit() -> ContractKit:
    """The contract-suite kit for Autotask (see ``tests/fakes/kit.py``); starts the fake."""
    fake = FakeAutotask().start()

    def tamper(delivery: Delivery) -> Delivery:
        body, headers = delivery
        return body.replace(b'"Ticket"', b'"ticket"', 1), headers

    def categorized() -> tuple[str, Ticket]:
        ticket_id = fake.add_ticket(
            "Printer jams", "The printer jams.", issue_type=10, sub_issue_type=136
        )
        return str(ticket_id), Ticket(
            id=str(ticket_id),
            title="Printer jams",
            description="The printer jams.",
            scope="tickets",
            scope_name="Tickets",
            company_id="174",
            company_name="Contoso Ltd",
            current=(
                LevelValue("issueType", "10", "Hardware"),
                LevelValue("subIssueType", "136", "Printer"),
            ),
        )

    def history_ticket(title: str, created: datetime, categorized: bool, closed: bool) -> str:
        levels = {"issue_type": 10, "sub_issue_type": 136} if categorized else {}
        ticket_id = fake.add_ticket(title, f"text of {title}", created=created, **levels)
        if closed:
            fake.complete_ticket(ticket_id)
        return str(ticket_id)

    categories = ({"issue_type": 10, "sub_issue_type": 136},
                  {"issue_type": 11, "sub_issue_type": 140})  # fmt: skip

    def closed_ticket(
        title: str, created: datetime, closed: datetime, category: int | None, company: int
    ) -> str:
        levels = categories[category] if category is not None else {}
        ticket_id = fake.add_ticket(
            title, f"text of {title}", created=created, company_id=174 + company, **levels
        )
        fake.complete_ticket(ticket_id, closed)
        return str(ticket_id)

    return kit_of(
        "autotask",
        fake,
        new_ticket=lambda title, description: str(fake.add_ticket(title, description)),
        created=lambda ticket_id: fake.delivery(int(ticket_id)),
        updated=lambda ticket_id: fake.delivery(int(ticket_id), "Update", person_id=30691780),
        tamper=tamper,
        category_writes=lambda ticket_id: fake.patches(int(ticket_id)),
        notes=lambda ticket_id: [n["description"] for n in fake.notes(int(ticket_id))],
        fail_path=lambda ticket_id: rf"/Tickets/{ticket_id}$",
        secrets=[fake.secret, fake.integration_code, fake.webhook_secret],
        cases=CASES,
        add_note=lambda ticket_id, text: fake.add_note(int(ticket_id), text),
        categorized=categorized,
        field_value=lambda ticket_id, field: _field_value(fake, ticket_id, field),
        history_ticket=history_ticket,
        history_path=r"/Tickets/query",
        registrations=lambda: len(fake.webhooks),
        close=lambda ticket_id: fake.complete_ticket(int(ticket_id)),
        delete=lambda ticket_id: fake.delete_ticket(int(ticket_id)),
        touch=lambda ticket_id, person: fake.touch(int(ticket_id), int(person)),
        closed_ticket=closed_ticket,
        add_time=lambda ticket_id, hours: fake.add_time(int(ticket_id), hours),
        deny_time=lambda: setattr(fake, "time_denied", True),
        time_path=r"/TimeEntries/query$",
        report_categories=("Hardware › Printer", "Software › Email"),
    )


def _field_value(fake: FakeAutotask, ticket_id: str, field: str) -> str | None:
    value = fake.tickets[int(ticket_id)].get(
        {"priority": "priority", "routing": "queueID", "status": "status"}[field]
    )
    return None if value is None else str(value)
