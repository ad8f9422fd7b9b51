"""The contract suite's kit and case tables for Kaseya BMS (see ``tests/fakes/kit.py``)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from psatriage.domain import LevelValue, Ticket
from psatriage.errors import AuthFailed, NotFound, PermanentError, TransientError
from tests.fakes.kaseya_bms.server import FakeKaseyaBMS, sign
from tests.fakes.kit import (
    ROTATION,
    BadConfig,
    Cases,
    ContractKit,
    Delivery,
    ErrorCase,
    Malformed,
    ParseCase,
    Refused,
    kit_of,
)


def envelope_error(code: int, message: str) -> dict[str, Any]:
    """BMS's failure envelope, with the stack trace it must never pass on."""
    error = {"code": code, "message": message, "stackStrace": "at Secret.Internals()"}
    return {"success": False, "error": error, "result": None}


def _parse(name: str, payload: Any, expected: dict[str, Any] | None) -> ParseCase:
    return ParseCase(name, json.dumps(payload).encode(), expected)


PARSE = [
    _parse("fake's shape", {"EventName": "Created", "EntityType": "Ticket", "Data": {"Id": 77}},
           {"ticket_id": "77", "actionable": True, "dedupe_key": "77:ticketcreated"}),
    _parse("TicketId at the top", {"TicketId": 78}, {"ticket_id": "78", "actionable": True}),
    _parse("ticket_id string", {"ticket_id": "079"}, {"ticket_id": "79"}),
    _parse("camelCase nested", {"event": "Ticket Created", "data": {"ticket": {"id": "80"}}},
           {"ticket_id": "80", "dedupe_key": "80:ticketcreated", "action": "ticket created"}),
    _parse("Entity as JSON text", {"Entity": json.dumps({"Id": 81})}, {"ticket_id": "81"}),
    _parse("TicketId beats Id", {"Data": {"Id": 5, "TicketId": 82}}, {"ticket_id": "82"}),
    _parse("top Id when about a ticket", {"Event": "New Ticket", "Id": 83},
           {"ticket_id": "83", "actionable": True}),
    _parse("event object",
           {"Event": {"Id": 21, "Name": "Created", "CategoryName": "Ticket"}, "Id": 84},
           {"ticket_id": "84", "actionable": True, "dedupe_key": "84:ticketcreated"}),
    _parse("updated", {"EventName": "Updated", "EntityType": "Ticket", "Data": {"Id": 85}},
           {"actionable": False, "dedupe_key": "85:ticketupdated"}),
    _parse("note added", {"Event": "Ticket Note Created", "TicketId": 86}, {"actionable": False}),
    _parse("unknown event", {"Event": "Escalated", "TicketId": 87}, {"actionable": False}),
    _parse("about an account", {"EntityType": "Account", "Data": {"Id": 5}}, None),
    ParseCase("form-encoded",
              b"payload=" + json.dumps({"TicketId": 90}).encode().replace(b" ", b"+"),
              {"ticket_id": "90"}),
]  # fmt: skip

MALFORMED = [
    Malformed("not json", b"not json", "not JSON"),
    Malformed("array", b"[1, 2]", "not a JSON object"),
    Malformed("an id nothing says is a ticket's", b'{"Id": 5}', "no ticket id"),
    Malformed("zero id", b'{"EventName": "Created", "Data": {"Id": 0}}', "no ticket id"),
    Malformed("letters", b'{"TicketId": "abc", "TicketNumber": "T20260302.0001"}', "no ticket"),
    Malformed("boolean", b'{"TicketId": true}', "no ticket id"),
    Malformed("bad form", b"payload=%7Bnot", "not JSON"),
]

REFUSED = [
    Refused("trailing byte", lambda body, headers: (body + b" ", headers)),
    Refused("missing", lambda body, headers: (body, {})),
    Refused("empty", lambda body, headers: (body, {"signature": ""})),
    Refused("another secret", lambda body, headers: (
        body, {"signature": sign("hmac-sha256-hex", "another-secret", body)})),
    Refused("another scheme than the pinned one", lambda body, headers: (body, headers),
            connection={"signature_scheme": "hmac-sha1-base64"}),
]  # fmt: skip

ERRORS = [
    ErrorCase("403", 403, AuthFailed, "No permission", body=envelope_error(403, "No permission")),
    ErrorCase("429", 429, TransientError, "429", headers={"Retry-After": "7"}),
    ErrorCase("500", 500, TransientError, "Oops", body=envelope_error(500, "Oops")),
    ErrorCase("502", 502, TransientError, "502"),
    ErrorCase("503", 503, TransientError, "503", headers={"Retry-After": "2"}),
    ErrorCase("404", 404, NotFound, "not found: Ticket missing",
              body=envelope_error(404, "Ticket missing")),
    ErrorCase("400", 400, PermanentError, r"rejected .* \(400\): Bad",
              body=envelope_error(400, "Bad thing")),
    ErrorCase("200, refused", 200, PermanentError, "refused .*Denied by rule",
              body=envelope_error(0, "Denied by rule")),
    ErrorCase("200, code 503", 200, TransientError, "503 .*Busy", body=envelope_error(503, "Busy")),
    ErrorCase("200, code 404", 200, NotFound, "not found: Gone",
              body=envelope_error(404, "Gone")),
    ErrorCase("200, Success false", 200, PermanentError, "Success is false",
              body={"success": False}),
    ErrorCase("200, no envelope", 200, PermanentError, "without its Success/Result envelope",
              body={"Id": 1, "Title": "bare"}),
    ErrorCase("302", 302, PermanentError, "redirected",
              headers={"Location": "https://elsewhere.example"}),
]  # fmt: skip

BAD_CONFIG = [
    BadConfig({"base_url": "https://api.bms.kaseya.com/v2"}),
    BadConfig({"region": "mars"}),
    BadConfig({"password": "plain-text-password"}),
    BadConfig({"facets": ["IssueTypeId"]}),
    BadConfig({"page_size": 0}),
    BadConfig({"calls_per_hour": 0}),
    BadConfig({"api_timezone": "Mars/Olympus"}),
    BadConfig({"note_type_table": "../x"}),
    BadConfig({"signature_scheme": "md5"}),
    BadConfig({"unknown": 1}),
]

CASES = Cases(
    parse=PARSE,
    malformed=MALFORMED,
    refused=REFUSED,
    errors=ERRORS,
    bad_config=BAD_CONFIG,
    rotation=ROTATION,
    window=lambda calls: {"calls_per_hour": calls, "rate_window_seconds": 600},
    connection_check=r"Kaseya BMS at 127\.0\.0\.1 \(5 issue types\)",
    bad_credentials=(FakeKaseyaBMS.PASSWORD_ENV, "wrong-S3CRET", "Invalid username, password"),
    taxonomy_shows=("101/201", "Hardware › Printer", "Service Desk (tickets)"),
    taxonomy_hides=("Legacy",),
)


def kit() -> ContractKit:
    """The contract-suite kit for Kaseya BMS (see ``tests/fakes/kit.py``); starts the fake."""
    fake = FakeKaseyaBMS().start()

    def tamper(delivery: Delivery) -> Delivery:
        body, headers = delivery
        return body.replace(b'"Title": "..."', b'"Title": "!!!"'), headers

    def categorized() -> tuple[str, Ticket]:
        ticket_id = fake.add_ticket(
            "Printer jams", "The 3rd floor printer jams.", issue_type_id=101, sub_issue_type_id=201
        )
        return str(ticket_id), Ticket(
            id=str(ticket_id),
            title="Printer jams",
            description="The 3rd floor printer jams.",
            scope="tickets",
            scope_name="Service Desk",
            company_id="310",
            company_name="Contoso Ltd",
            current=(
                LevelValue("IssueTypeId", "101", "Hardware"),
                LevelValue("SubIssueTypeId", "201", "Printer"),
            ),
        )

    def history_ticket(title: str, created: datetime, categorized: bool, closed: bool) -> str:
        levels = {"issue_type_id": 101, "sub_issue_type_id": 201} if categorized else {}
        ticket_id = fake.add_ticket(
            title, f"text of {title}", created_on=created, queue_id=501, **levels
        )
        if closed:
            fake.close_ticket(ticket_id)
        return str(ticket_id)

    categories = ({"issue_type_id": 101, "sub_issue_type_id": 201},
                  {"issue_type_id": 102, "sub_issue_type_id": 203})  # fmt: skip
    accounts = ((310, "Contoso Ltd"), (311, "Fabrikam Inc"))

    def closed_ticket(
        title: str, created: datetime, closed: datetime, category: int | None, company: int
    ) -> str:
        levels = categories[category] if category is not None else {}
        ticket_id = fake.add_ticket(
            title, f"text of {title}", created_on=created, account=accounts[company], **levels
        )
        fake.close_ticket(ticket_id, when=closed)
        return str(ticket_id)

    return kit_of(
        "kaseya_bms",
        fake,
        new_ticket=lambda title, description: str(fake.add_ticket(title, description)),
        created=lambda ticket_id: fake.webhook(int(ticket_id)),
        updated=lambda ticket_id: fake.webhook(int(ticket_id), "Updated"),
        tamper=tamper,
        category_writes=lambda ticket_id: fake.patches(int(ticket_id)),
        notes=lambda ticket_id: [n["Details"] for n in fake.notes(int(ticket_id))],
        fail_path=lambda ticket_id: rf"/v2/servicedesk/tickets/{ticket_id}$",
        secrets=[fake.password, fake.webhook_secret],
        cases=CASES,
        add_note=lambda ticket_id, text: fake.add_note(int(ticket_id), text),
        categorized=categorized,
        field_value=lambda ticket_id, field: _field_value(fake, ticket_id, field),
        history_ticket=history_ticket,
        history_path=r"/servicedesk/tickets$",
        registrations=lambda: len(fake.webhooks),
        close=lambda ticket_id: fake.close_ticket(int(ticket_id)),
        delete=lambda ticket_id: fake.delete_ticket(int(ticket_id)),
        touch=lambda ticket_id, person: fake.touch(int(ticket_id), int(person)),
        closed_ticket=closed_ticket,
        add_time=lambda ticket_id, hours: fake.add_time(int(ticket_id), hours),
        deny_time=lambda: setattr(fake, "time_denied", True),
        time_path=r"/timelogs$",
        report_categories=("Hardware › Printer", "Software › Email"),
    )


def _field_value(fake: FakeKaseyaBMS, ticket_id: str, field: str) -> str | None:
    value = fake.tickets[int(ticket_id)].get(
        {"priority": "PriorityId", "routing": "QueueId", "status": "StatusId"}[field]
    )
    return None if value is None else str(value)
