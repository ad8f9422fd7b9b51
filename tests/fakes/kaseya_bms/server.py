"""A fake Kaseya BMS: REST API v2 on 127.0.0.1, shaped like the shared PSA reference (§4).

It issues bearer tokens from ``POST /v2/security/authenticate`` (form: ``GrantType=password``,
``UserName``, ``Password``, ``Tenant``; any key case) that expire after ``token_lifetime``
seconds and can be renewed at ``/v2/security/refreshtoken``; it answers every call in the
``{"success", "error", "result"}`` envelope, in camelCase like the live API (``pascal_case =
True`` for the spec's PascalCase), with errors as HTTP statuses or, with ``errors_as_200``, as
``Success: false`` inside an HTTP 200. It serves the lookups (issue types › sub-issue types,
queues, priorities, ``/system/lookup/{table}``), tickets (GET, PATCH with JSON Patch validated
against the tree, the list with ``Filter.CreatedOnFrom`` and ``PageSize``/``PageNumber``,
newest first like BMS's grid), notes, and the webhook admin endpoints. Each endpoint (method and
path with ids as ``{id}``) is limited to ``rate_limit`` calls per ``rate_window`` seconds (BMS:
1,500 an hour), answering 429 beyond. Every write is recorded (``writes``).

Webhook bodies are not documented publicly, so ``webhook()`` builds a plausible one and signs it
with ``signature_scheme`` (HMAC of the raw body with ``webhook_secret``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qs

from tests.fakes.base import FakePSA, Request, Response
from tests.fakes.kit import Delivery

V2 = "/v2"
# What a row of the ticket list carries (TicketListDto in the API's spec), where the ticket has it.
LIST_KEYS = (
    "Id", "TicketNumber", "Title", "AccountId", "AccountName", "StatusId", "StatusName",
    "IssueTypeId", "IssueTypeName", "SubIssueTypeId", "SubIssueTypeName", "TypeId", "TypeName",
    "QueueId", "QueueName", "PriorityId", "PriorityName", "OpenDate", "CreatedOn",
    "CompletedDate",
)  # fmt: skip
TICKET_FIELDS = ("IssueTypeId", "SubIssueTypeId", "TypeId", "QueueId", "PriorityId", "StatusId")
EPOCH = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def camel(key: str) -> str:
    """.NET's camelCase: ``IssueTypeId`` → ``issueTypeId``, ``SLAId`` → ``slaId``."""
    match = re.match(r"^([A-Z]+)(?=[A-Z][a-z]|$)", key)
    if match:
        return match.group(1).lower() + key[match.end() :]
    return key[:1].lower() + key[1:]


def cased(value: Any, pascal: bool) -> Any:
    if isinstance(value, dict):
        return {(k if pascal else camel(k)): cased(v, pascal) for k, v in value.items()}
    if isinstance(value, list):
        return [cased(v, pascal) for v in value]
    return value


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def sign(scheme: str, secret: str, body: bytes) -> str:
    """The ``Signature`` header under one of the candidate schemes (e.g. ``hmac-sha256-hex``)."""
    algorithm = hashlib.sha256 if "sha256" in scheme else hashlib.sha1
    digest = hmac.new(secret.encode(), body, algorithm).digest()
    return digest.hex() if scheme.endswith("hex") else base64.b64encode(digest).decode()


class FakeKaseyaBMS(FakePSA):
    """Kaseya BMS as the adapter sees it. Start it, then point the adapter at ``url``."""

    PASSWORD_ENV = "PSATRIAGE_TEST_BMS_PASSWORD"
    WEBHOOK_SECRET_ENV = "PSATRIAGE_TEST_BMS_WEBHOOK_SECRET"
    SECRETS: ClassVar[dict[str, str]] = {
        PASSWORD_ENV: "password",
        WEBHOOK_SECRET_ENV: "webhook_secret",
    }

    def __init__(
        self,
        *,
        username: str = "psatriage-api",
        password: str = "fake-bms-password",
        company: str = "PsatriageTest",
        webhook_secret: str = "fake-bms-webhook-secret",
    ) -> None:
        super().__init__(max_page_size=500)
        self.username, self.password, self.company = username, password, company
        self.webhook_secret = webhook_secret
        self.signature_scheme = "hmac-sha256-hex"
        self.pascal_case = False
        self.errors_as_200 = False
        self.include_total_records = True
        self.token_lifetime = 3600.0
        self.rate_limit = 1500
        self.rate_window = 3600.0
        self.ignored_patch_fields: set[str] = set()  # accepted but silently not saved
        self.tokens: dict[str, float] = {}  # access token -> expiry (time.monotonic)
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> its access token
        self.logins = 0
        self.refreshes = 0
        self.issue_types: list[dict[str, Any]] = []
        self.sub_issue_types: dict[int, list[dict[str, Any]]] = {}
        self.queues: list[dict[str, Any]] = []
        self.priorities: list[dict[str, Any]] = []
        self.lookups: dict[str, list[dict[str, Any]]] = {}
        self.webhook_events: list[dict[str, Any]] = []
        self.webhooks: list[dict[str, Any]] = []
        self.tickets: dict[int, dict[str, Any]] = {}
        self.time_logs: dict[int, list[dict[str, Any]]] = {}
        self.time_denied = False  # the API user's role may not see time logs
        self.ticket_notes: dict[int, list[dict[str, Any]]] = {}
        self._calls: dict[str, deque[float]] = {}
        self._ids = itertools.count(5000)
        self._seed()
        self._add_routes()

    # -- helpers for tests and bench ------------------------------------------------------

    def connection(self) -> dict[str, Any]:
        """The tenant's ``[connection]`` table pointing the adapter at this fake."""
        return {
            "username": self.username,
            "password": f"env:{self.PASSWORD_ENV}",
            "company": self.company,
            "base_url": self.url,
            "webhook_secret": f"env:{self.WEBHOOK_SECRET_ENV}",
        }

    def add_ticket(
        self,
        title: str,
        details: str = "",
        *,
        created_on: datetime | None = None,
        account: tuple[int, str] = (310, "Contoso Ltd"),
        issue_type_id: int | None = None,
        sub_issue_type_id: int | None = None,
        type_id: int = 401,
        queue_id: int | None = None,
        priority_id: int = 302,
    ) -> int:
        """Create a ticket (GET shape, PascalCase inside) and return its id.

        ``created_on`` is its ``CreatedOn`` (default: now), what ``Filter.CreatedOnFrom`` filters.
        """
        created = created_on or datetime.now(UTC)
        with self._data:
            ticket_id = next(self._ids)
            ticket: dict[str, Any] = {
                "Id": ticket_id,
                "TicketNumber": f"T{created:%Y%m%d}.{ticket_id:04d}",
                "Title": title,
                "Details": details,
                "AccountId": account[0],
                "AccountName": account[1],
                "LocationId": 1,
                "StatusId": 1,
                "StatusName": "New",
                "SourceId": 1,
                "OpenDate": iso(created),
                "CreatedOn": iso(created),
                "TenantId": 77,
            }
            self.tickets[ticket_id] = ticket
            self.ticket_notes[ticket_id] = []
            for field, value in (
                ("IssueTypeId", issue_type_id),
                ("SubIssueTypeId", sub_issue_type_id),
                ("TypeId", type_id),
                ("QueueId", queue_id),
                ("PriorityId", priority_id),
            ):
                self._set_field(ticket, field, value)
            return ticket_id

    def delete_ticket(self, ticket_id: int) -> None:
        with self._data:
            del self.tickets[ticket_id]

    def touch(self, ticket_id: int, user_id: int) -> None:
        """Record a user as the last to change the ticket (``ModifiedBy``, ``ModifiedOn``)."""
        with self._data:
            self.tickets[ticket_id].update(ModifiedBy=user_id, ModifiedOn=iso(datetime.now(UTC)))

    def close_ticket(
        self, ticket_id: int, status_id: int = 3, when: datetime | None = None
    ) -> None:
        """Close the ticket (status 3 "Closed"; 4 is "Completed") at ``when`` (default: now),
        its ``CompletedDate``."""
        with self._data:
            self._set_field(self.tickets[ticket_id], "StatusId", status_id)
            self.tickets[ticket_id]["CompletedDate"] = iso(when or datetime.now(UTC))

    def add_time(self, ticket_id: int, hours: float) -> int:
        """A time log on the ticket (``Timespent`` in hours), as a technician would log it."""
        with self._data:
            log_id = next(self._ids)
            self.time_logs.setdefault(ticket_id, []).append(
                {"Id": log_id, "StartDate": "2026-03-02T09:00:00", "Timespent": hours,
                 "UserId": 12, "EmployeeName": "Ann Agent", "Approved": False, "Billed": False,
                 "Posted": False}
            )  # fmt: skip
            return log_id

    def add_note(self, ticket_id: int, details: str, *, internal: bool = False) -> int:
        """A note as a person would add it."""
        with self._data:
            note_id = next(self._ids)
            self.ticket_notes[ticket_id].append(
                {
                    "Id": note_id,
                    "Details": details,
                    "IsInternal": internal,
                    "TypeId": 901,
                    "TypeName": "General",
                    "CreatedOn": iso(datetime.now(UTC)),
                    "CreatedByName": "Jo Tech",
                }
            )
            return note_id

    def webhook(
        self,
        ticket_id: int,
        event: str = "Created",
        *,
        body: dict[str, Any] | None = None,
        scheme: str | None = None,
    ) -> Delivery:
        """A signed delivery ``(body, headers)``; the default body shape is a guess [UNSURE]."""
        payload = body or {
            "WebhookId": self.webhooks[0]["Id"] if self.webhooks else 1,
            "EventId": self._event_id(event),
            "EventName": event,
            "EntityType": "Ticket",
            "Data": {"Id": ticket_id, "TicketNumber": f"T.{ticket_id}", "Title": "..."},
            "Timestamp": iso(datetime.now(UTC)),
        }
        raw = json.dumps(payload).encode()
        signature = sign(scheme or self.signature_scheme, self.webhook_secret, raw)
        return raw, {"content-type": "application/json", "signature": signature}

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working (as after its lifetime)."""
        with self._data:
            for token in self.tokens:
                self.tokens[token] = 0.0

    def patches(self, ticket_id: int) -> list[Any]:
        """The JSON Patch bodies received for the ticket, oldest first."""
        return [r.json() for r in self.writes_to("PATCH", rf"/servicedesk/tickets/{ticket_id}$")]

    def notes(self, ticket_id: int) -> list[dict[str, Any]]:
        with self._data:
            return [dict(note) for note in self.ticket_notes[ticket_id]]

    # -- data --------------------------------------------------------------------------------

    def _seed(self) -> None:
        tree = {
            (101, "Hardware", True): [(201, "Printer"), (202, "Laptop")],
            (102, "Software", True): [(203, "Email"), (204, "Office")],
            (103, "Network", True): [(205, "VPN")],
            (104, "Legacy", False): [(206, "Fax")],
            (105, "General", True): [],
        }
        for (issue_id, name, active), subs in tree.items():
            self.issue_types.append({"Id": issue_id, "Name": name, "IsActive": active})
            self.sub_issue_types[issue_id] = [{"Id": i, "Name": n} for i, n in subs]
        self.queues = [
            {"Id": 501, "Name": "Help Desk", "IsActive": True},
            {"Id": 502, "Name": "Projects", "IsActive": True},
            {"Id": 503, "Name": "Old queue", "IsActive": False},
        ]
        self.priorities = [
            {"Id": n, "Name": name, "Color": "#fff", "IsDefault": n == 302}
            for n, name in ((301, "Low"), (302, "Medium"), (303, "High"), (304, "Critical"))
        ]
        self.lookups = {
            "TicketType": [
                {"Id": 401, "Name": "Incident", "IsDefault": True, "IsActive": True},
                {"Id": 402, "Name": "Service Request", "IsDefault": False, "IsActive": True},
                {"Id": 403, "Name": "Retired", "IsDefault": False, "IsActive": False},
            ],
            "NoteType": [
                {"Id": 900, "Name": "Old", "IsDefault": False, "IsActive": False},
                {"Id": 901, "Name": "General", "IsDefault": False, "IsActive": True},
                {"Id": 902, "Name": "Internal Analysis", "IsDefault": True, "IsActive": True},
            ],
        }
        self.statuses = [
            {"Id": n, "Name": name, "TypeId": t, "IsSystemStatus": 1, "IsActive": True}
            for n, name, t in ((1, "New", 1), (2, "In Progress", 2), (3, "Closed", 3),
                               (4, "Completed", 3))
        ]  # fmt: skip
        self.webhook_events = [
            {"Id": n, "Name": name, "CategoryName": category, "CategoryId": c}
            for n, name, category, c in (
                (11, "Created", "Account", 1),
                (21, "Created", "Ticket", 2),
                (22, "Updated", "Ticket", 2),
                (23, "Deleted", "Ticket", 2),
            )
        ]

    def _event_id(self, name: str) -> int:
        return next(
            (
                e["Id"]
                for e in self.webhook_events
                if e["CategoryName"] == "Ticket" and e["Name"] == name
            ),
            0,
        )

    def _names(self, field: str) -> dict[int, str]:
        records = {
            "IssueTypeId": self.issue_types,
            "SubIssueTypeId": [s for subs in self.sub_issue_types.values() for s in subs],
            "TypeId": self.lookups["TicketType"],
            "QueueId": self.queues,
            "PriorityId": self.priorities,
            "StatusId": self.statuses,
        }[field]
        return {r["Id"]: r["Name"] for r in records}

    def _set_field(self, ticket: dict[str, Any], field: str, value: int | None) -> None:
        ticket[field] = value
        ticket[field.removesuffix("Id") + "Name"] = (
            None if value is None else self._names(field).get(value, f"#{value}")
        )

    def _field_error(self, ticket: dict[str, Any]) -> str | None:
        """Why the ticket's categorization is invalid, or None."""
        issue, sub = ticket.get("IssueTypeId"), ticket.get("SubIssueTypeId")
        if issue is not None:
            record = next((t for t in self.issue_types if t["Id"] == issue), None)
            if record is None or not record["IsActive"]:
                return f"Issue type {issue} is not valid."
        if sub is not None and sub not in {s["Id"] for s in self.sub_issue_types.get(issue, [])}:
            return f"Sub-issue type {sub} does not belong to issue type {issue}."
        for field, records in (
            ("TypeId", self.lookups["TicketType"]),
            ("QueueId", self.queues),
            ("StatusId", self.statuses),
        ):
            value = ticket.get(field)
            active = {r["Id"] for r in records if r.get("IsActive", True)}
            if value is not None and value not in active:
                return f"{field} {value} is not valid."
        if ticket.get("PriorityId") not in {p["Id"] for p in self.priorities}:
            return f"PriorityId {ticket.get('PriorityId')} is not valid."
        return None

    # -- envelope, auth, limits --------------------------------------------------------------

    def ok(self, result: Any, **extra: Any) -> Response:
        body = {"Success": True, "Error": None, "Result": result, **extra}
        return Response(200, cased(body, self.pascal_case))

    def error(self, status: int, message: str, details: str = "") -> Response:
        error = {"Code": status, "Message": message, "Details": details or None,
                 "StackStrace": "at Bms.Api.Controllers...", "SubErrors": None}  # fmt: skip
        body = cased({"Success": False, "Error": error, "Result": None}, self.pascal_case)
        return Response(200 if self.errors_as_200 else status, body)

    def authorize(self, request: Request) -> Response | None:
        limited = self._rate_limited(request)
        if limited is not None:
            return limited
        if request.path.startswith(f"{V2}/security/"):
            return None
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip()
        with self._data:
            expiry = self.tokens.get(token) if header.startswith("Bearer ") else None
        if expiry is None or expiry <= time.monotonic():
            return self.error(401, "Unauthorized", "The access token is invalid or has expired.")
        return None

    def _rate_limited(self, request: Request) -> Response | None:
        key = request.method + " " + re.sub(r"/\d+(?=/|$)", "/{id}", request.path.rstrip("/"))
        now = time.monotonic()
        with self._data:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - self.rate_window:
                calls.popleft()
            if len(calls) >= self.rate_limit:
                wait = max(1, int(calls[0] + self.rate_window - now + 1))
                response = self.error(429, "Too many requests", f"Limit of {self.rate_limit}.")
                response.headers["Retry-After"] = str(wait)
                return response
            calls.append(now)
        return None

    def _issue_token(self) -> Response:
        with self._data:
            access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            self.tokens[access] = time.monotonic() + self.token_lifetime
            self.refresh_tokens[refresh] = access
        now = datetime.now(UTC)
        return self.ok(
            {
                "AccessToken": access,
                "RefreshToken": refresh,
                "AccessTokenExpireOn": iso(now + timedelta(seconds=self.token_lifetime)),
                "RefreshTokenExpireOn": iso(now + timedelta(days=1)),
            }
        )

    # -- routes ------------------------------------------------------------------------------

    def _add_routes(self) -> None:
        routes: list[tuple[str, str, Callable[[Request], Response]]] = [
            ("POST", r"/security/authenticate", self._authenticate),
            ("POST", r"/security/refreshtoken", self._refresh),
            ("GET", r"/system/issuetypes/lookup", lambda r: self.ok(self.issue_types)),
            ("GET", r"/system/issuetypes/(?P<id>\d+)/issuesubtypes/lookup", self._subs),
            ("GET", r"/system/queues/lookup", lambda r: self.ok(self.queues)),
            ("GET", r"/system/statuses/lookup", lambda r: self.ok(self.statuses)),
            ("GET", r"/system/priorities/lookup", lambda r: self.ok(self.priorities)),
            ("GET", r"/system/lookup/(?P<table>\w+)", self._lookup),
            ("GET", r"/servicedesk/tickets", self._list_tickets),
            ("GET", r"/servicedesk/tickets/(?P<id>\d+)", self._get_ticket),
            ("PATCH", r"/servicedesk/tickets/(?P<id>\d+)", self._patch_ticket),
            ("GET", r"/servicedesk/tickets/(?P<id>\d+)/notes", self._list_notes),
            ("POST", r"/servicedesk/tickets/(?P<id>\d+)/notes", self._create_note),
            ("GET", r"/servicedesk/tickets/(?P<id>\d+)/timelogs", self._list_time_logs),
            ("GET", r"/admin/webhooks/events/lookup", lambda r: self.ok(self.webhook_events)),
            ("POST", r"/admin/webhooks/search", self._search_webhooks),
            ("POST", r"/admin/webhooks", self._create_webhook),
            ("PUT", r"/admin/webhooks/(?P<id>\d+)", self._update_webhook),
        ]
        for method, pattern, handler in routes:
            self.route(method, V2 + pattern, self.locked(handler))

    def _form(self, request: Request) -> dict[str, str]:
        if "x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return {}
        form = parse_qs(request.body.decode(), keep_blank_values=True)
        return {key.lower(): values[0] for key, values in form.items()}

    def _authenticate(self, request: Request) -> Response:
        form = self._form(request)
        if form.get("granttype") != "password":
            return self.error(400, "Invalid grant type")
        if (form.get("username"), form.get("password"), form.get("tenant")) != (
            self.username,
            self.password,
            self.company,
        ):
            return self.error(401, "Invalid username, password or tenant")
        self.logins += 1
        return self._issue_token()

    def _refresh(self, request: Request) -> Response:
        form = self._form(request)
        access = self.refresh_tokens.pop(form.get("refreshtoken", ""), None)
        if access is None or access != form.get("accesstoken"):
            return self.error(401, "Invalid refresh token")
        self.tokens.pop(access, None)
        self.refreshes += 1
        return self._issue_token()

    def _subs(self, request: Request) -> Response:
        issue = int(request.params["id"])
        if issue not in self.sub_issue_types:
            return self.error(404, f"Issue type {issue} not found")
        return self.ok(self.sub_issue_types[issue])

    def _lookup(self, request: Request) -> Response:
        table = self.lookups.get(request.params["table"])
        if table is None:
            return self.error(400, f"Unknown lookup table {request.params['table']}")
        return self.ok(table)

    def _page(self, request: Request, records: list[Any]) -> list[Any]:
        page = int(request.arg("PageNumber") or 1)
        return self.page_of(records, page, int(request.arg("PageSize") or 50))[0]

    def _list_tickets(self, request: Request) -> Response:
        since = request.arg("Filter.CreatedOnFrom")
        tickets = sorted(self.tickets.values(), key=lambda t: (t["CreatedOn"], t["Id"]))
        if since:
            start = datetime.fromisoformat(since.replace("Z", "+00:00"))
            tickets = [t for t in tickets if _moment(t["CreatedOn"]) >= start]
        for name, after in (("Filter.CompletedDateFrom", True), ("Filter.CompletedDateTo", False)):
            bound = request.arg(name)
            if bound:
                moment = _moment(bound)
                tickets = [
                    t
                    for t in tickets
                    if t.get("CompletedDate") and (_moment(t["CompletedDate"]) >= moment) == after
                ]
        statuses = request.arg("Filter.StatusIds")
        if statuses:
            wanted = {int(s) for s in statuses.split(",") if s.strip()}
            tickets = [t for t in tickets if t["StatusId"] in wanted]
        tickets.reverse()  # newest first
        rows = [
            {key: t.get(key) for key in LIST_KEYS if key in t} for t in self._page(request, tickets)
        ]
        extra = {"TotalRecords": len(tickets)} if self.include_total_records else {}
        return self.ok(rows, **extra)

    def _list_time_logs(self, request: Request) -> Response:
        if self.time_denied:
            return self.error(403, "Forbidden", "The user has no access to time logs.")
        ticket_id = int(request.params["id"])
        if ticket_id not in self.tickets:
            return self.error(404, f"Ticket {ticket_id} not found")
        logs = self.time_logs.get(ticket_id, [])
        return self.ok(self._page(request, logs), TotalRecords=len(logs))

    def _get_ticket(self, request: Request) -> Response:
        ticket = self.tickets.get(int(request.params["id"]))
        if ticket is None:
            return self.error(404, f"Ticket {request.params['id']} not found")
        return self.ok(ticket)

    def _patch_ticket(self, request: Request) -> Response:
        ticket = self.tickets.get(int(request.params["id"]))
        if ticket is None:
            return self.error(404, f"Ticket {request.params['id']} not found")
        operations = request.json()
        if not isinstance(operations, list):
            return self.error(400, "A JSON Patch array is expected")
        updated = dict(ticket)
        for operation in operations:
            path = str(operation.get("path", "")).strip("/")
            if path.lower() == "title" and isinstance(operation.get("value"), str):
                updated["Title"] = operation["value"]
                continue
            field = next((f for f in TICKET_FIELDS if f.lower() == path.lower()), None)
            if operation.get("op") != "replace" or field is None:
                return self.error(400, f"Unsupported operation on '{path}'")
            value = operation.get("value")
            if value is not None and not isinstance(value, int):
                return self.error(400, f"{field} must be a number")
            if field not in self.ignored_patch_fields:
                self._set_field(updated, field, value)
        problem = self._field_error(updated)
        if problem is not None:
            return self.error(400, "Validation failed", problem)
        self.tickets[ticket["Id"]] = updated
        return self.ok(updated)

    def _list_notes(self, request: Request) -> Response:
        notes = self.ticket_notes.get(int(request.params["id"]))
        if notes is None:
            return self.error(404, f"Ticket {request.params['id']} not found")
        return self.ok(self._page(request, notes))

    def _create_note(self, request: Request) -> Response:
        ticket_id = int(request.params["id"])
        if ticket_id not in self.tickets:
            return self.error(404, f"Ticket {ticket_id} not found")
        body = request.json()
        missing = [k for k in ("Details", "IsInternal", "NoteDate", "TypeId") if k not in body]
        if missing or not body.get("Details"):
            return self.error(400, "Validation failed", f"Required: {', '.join(missing)}")
        types = {t["Id"]: t for t in self.lookups["NoteType"] if t["IsActive"]}
        if body["TypeId"] not in types:
            return self.error(400, "Validation failed", f"Note type {body['TypeId']} is invalid")
        note_id = self.add_note(ticket_id, body["Details"], internal=body["IsInternal"] is True)
        note = self.ticket_notes[ticket_id][-1]
        note.update(TypeId=body["TypeId"], TypeName=types[body["TypeId"]]["Name"])
        note["NoteDate"] = body["NoteDate"]
        return self.ok({**note, "Id": note_id})

    def _search_webhooks(self, request: Request) -> Response:
        body = request.json() or {}
        page = int(body.get("PageNumber") or 1)
        chunk = self.page_of(self.webhooks, page, int(body.get("PageSize") or 50))[0]
        return self.ok([self._webhook_out(w) for w in chunk], TotalRecords=len(self.webhooks))

    def _webhook_in(self, request: Request) -> dict[str, Any] | Response:
        body = request.json()
        events = {e["Id"] for e in self.webhook_events}
        if not body.get("PayloadURL") or any(e not in events for e in body.get("Events") or []):
            return self.error(400, "Validation failed", "PayloadURL and known Events required")
        return body

    def _create_webhook(self, request: Request) -> Response:
        body = self._webhook_in(request)
        if isinstance(body, Response):
            return body
        webhook = {"Id": next(self._ids), **body}
        self.webhooks.append(webhook)
        return self.ok(self._webhook_out(webhook))

    def _update_webhook(self, request: Request) -> Response:
        webhook = next((w for w in self.webhooks if w["Id"] == int(request.params["id"])), None)
        if webhook is None:
            return self.error(404, "Webhook not found")
        body = self._webhook_in(request)
        if isinstance(body, Response):
            return body
        webhook.update(body)
        return self.ok(self._webhook_out(webhook))

    def _webhook_out(self, webhook: dict[str, Any]) -> dict[str, Any]:
        return {
            "Id": webhook["Id"],
            "IsEnabled": webhook.get("IsEnabled", False),
            "PayloadUrl": webhook.get("PayloadURL"),
            "Name": webhook.get("Name"),
            "ContentType": webhook.get("ContentType", 0),
            "SendAllEvents": webhook.get("SendAllEvents", False),
            "Events": webhook.get("Events") or [],
            "HasSecret": bool(webhook.get("Secret")),
        }


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
