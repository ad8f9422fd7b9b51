"""A fake Datto PSA (Autotask): REST API V1.0 on 127.0.0.1, shaped like the shared PSA reference.

Zone discovery answers at ``/ATServicesRest/V1.0/zoneInformation?user=`` (no credentials) with a
zone on the same server, ``/{zone}/ATServicesRest/``; every zone call must carry the
``ApiIntegrationCode``, ``UserName`` and ``Secret`` headers, and a call to a zone the database
has left (``fake.zone`` changed) gets 401, as Autotask does. Errors are ``{"errors": [...]}``;
invalid picklist values in writes come back as **HTTP 500** (Autotask's habit for business rules,
[UNSURE] for this exact case). Queries page with ``MaxRecords`` (≤ ``max_page_size``) and
``pageDetails.nextPageUrl``.

Picklists (``Tickets/entityInformation/fields``): issue types 10 Hardware, 11 Software,
12 Network, 13 Legacy (inactive), 14 Triage (default, no sub-issue types), 15 Security (no
sub-issue types); sub-issue types by ``parentValue``, with an inactive one, one under an inactive
parent and one without a parent; queues, priorities, ticket categories with inactive values.
``TicketNotes`` has ``publish`` (1 "All Autotask Users" = portal-visible, 2 "Internal Project
Team", 4 "Internal & Co-Managed") and ``noteType``.

``delivery()`` signs like Autotask [UNSURE, reference §2.1]: ``X-Hook-Signature: sha1=<base64
HMAC-SHA1>`` over the .NET serialization of the payload (``& < > ' " ` +`` and non-ASCII as
``\\uXXXX``), while the wire carries plain UTF-8 unless ``escaped_wire=True``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from tests.fakes.autotask.data import (
    BASE_TIME,
    HOOK_FIELDS,
    PICKLIST_FIELDS,
    TICKET_KEYS,
    dotnet_json,
    endpoint_key,
    errors,
    field_info,
    iso,
    lower_keys,
    matches,
    note_fields,
    pick,
    ticket_fields,
)
from tests.fakes.base import FakePSA, Request, Response
from tests.fakes.kit import Delivery

API = r"/(?P<zone>[^/]+)/ATServicesRest/V1\.0"
DISCOVERY = "/ATServicesRest/V1.0/zoneInformation"


class FakeAutotask(FakePSA):
    """Autotask as the adapter sees it. Start it, then point the adapter at ``discovery_url``."""

    SECRET_ENV = "PSATRIAGE_TEST_AT_SECRET"
    CODE_ENV = "PSATRIAGE_TEST_AT_INTEGRATION_CODE"
    HOOK_ENV = "PSATRIAGE_TEST_AT_WEBHOOK_SECRET"
    SECRETS: ClassVar[dict[str, str]] = {
        SECRET_ENV: "secret",
        CODE_ENV: "integration_code",
        HOOK_ENV: "webhook_secret",
    }

    def __init__(
        self,
        *,
        username: str = "psatriage-api@example.com",
        secret: str = "fake-at-S3cret",
        integration_code: str = "FAKE-TRACKING-ID-0001",
        webhook_secret: str = "fake-webhook-s3cret",
        api_resource_id: int = 29682885,
    ) -> None:
        super().__init__(max_page_size=500)
        self.username, self.secret, self.integration_code = username, secret, integration_code
        self.webhook_secret, self.api_resource_id = webhook_secret, api_resource_id
        self.zone = "zone5"
        self.require_note_titles = True
        self.threshold_count: int | None = None  # None: the number of zone calls seen so far
        self.ticket_fields = ticket_fields()
        self.note_fields = note_fields()
        self.webhook_field_info = [
            field_info("fieldID", [pick(i, n) for i, n in enumerate(HOOK_FIELDS, start=1)]),
            field_info("webhookID"),
        ]
        self.tickets: dict[int, dict[str, Any]] = {}
        self.ticket_notes: dict[int, list[dict[str, Any]]] = {}
        self.companies = {174: "Contoso Ltd", 175: "Fabrikam Inc"}
        self.time_entries: list[dict[str, Any]] = []
        self.time_denied = False  # the API user's security level may not see time entries
        self.resources = [
            {"id": 4, "userName": "jdoe", "email": "jdoe@example.com", "isActive": True},
            {"id": api_resource_id, "userName": username, "email": username, "isActive": True},
        ]
        self.webhooks: dict[int, dict[str, Any]] = {}
        self.webhook_fields: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.excluded: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self._pages: dict[str, tuple[str, list[dict[str, Any]], int]] = {}
        self._ids = itertools.count(351181)
        self._sequence = itertools.count(1)
        self._add_routes()

    # -- helpers for tests and bench ------------------------------------------------------

    def connection(self) -> dict[str, Any]:
        """The tenant's ``[connection]`` table pointing the adapter at this fake."""
        return {
            "username": self.username,
            "secret": f"env:{self.SECRET_ENV}",
            "integration_code": f"env:{self.CODE_ENV}",
            "webhook_secret": f"env:{self.HOOK_ENV}",
            "discovery_url": f"{self.url}/ATServicesRest",
        }

    @property
    def zone_url(self) -> str:
        return f"{self.url}/{self.zone}/ATServicesRest/"

    def add_ticket(
        self,
        title: str,
        description: str,
        *,
        issue_type: int | None = None,
        sub_issue_type: int | None = None,
        queue_id: int = 29682833,
        priority: int = 2,
        ticket_category: int = 3,
        company_id: int = 174,
        created: datetime | None = None,
    ) -> int:
        """Create a ticket (the GET shape of the reference sample); return its id."""
        with self._data:
            ticket_id = next(self._ids)
            when = created or BASE_TIME + timedelta(minutes=len(self.tickets))
            self.tickets[ticket_id] = {
                "id": ticket_id,
                "ticketNumber": f"T20260302.{len(self.tickets) + 1:04d}",
                "title": title,
                "description": description,
                "companyID": company_id,
                "contactID": 29683586,
                "createDate": iso(when),
                "creatorResourceID": 4,
                "creatorType": 1,
                "issueType": issue_type,
                "subIssueType": sub_issue_type,
                "queueID": queue_id,
                "priority": priority,
                "ticketCategory": ticket_category,
                "ticketType": 1,
                "source": 2,
                "status": 1,
                "completedDate": None,
                "lastActivityResourceID": 4,
                "userDefinedFields": [],
            }
            self.ticket_notes[ticket_id] = []
            return ticket_id

    def delete_ticket(self, ticket_id: int) -> None:
        with self._data:
            del self.tickets[ticket_id]

    def touch(self, ticket_id: int, resource_id: int) -> None:
        """Record a resource as the ticket's last activity (``lastActivityResourceID``)."""
        with self._data:
            self.tickets[ticket_id]["lastActivityResourceID"] = resource_id

    def complete_ticket(self, ticket_id: int, when: datetime | None = None) -> None:
        """Move the ticket to Complete (status 5), which sets its ``completedDate``."""
        with self._data:
            ticket = self.tickets[ticket_id]
            ticket["status"] = 5
            ticket["completedDate"] = iso(when or datetime.now(UTC))

    def add_time(self, ticket_id: int, hours: float) -> int:
        """A time entry on the ticket, as a technician would log it."""
        with self._data:
            entry_id = next(self._ids)
            self.time_entries.append(
                {
                    "id": entry_id,
                    "ticketID": ticket_id,
                    "taskID": None,
                    "resourceID": 4,
                    "dateWorked": iso(BASE_TIME),
                    "hoursWorked": hours,
                    "hoursToBill": hours,
                    "summaryNotes": "worked on it",
                }
            )
            return entry_id

    def add_note(self, ticket_id: int, description: str, *, publish: int = 2) -> int:
        """A note as a technician would add it."""
        with self._data:
            note_id = next(self._ids)
            self.ticket_notes[ticket_id].append(
                {
                    "id": note_id,
                    "ticketID": ticket_id,
                    "title": "Note",
                    "description": description,
                    "noteType": 3,
                    "publish": publish,
                    "creatorResourceID": 4,
                    "createDateTime": iso(BASE_TIME),
                }
            )
            return note_id

    def set_active(self, field: str, value: int, active: bool) -> None:
        """(De)activate a ticket picklist value, as an administrator would."""
        with self._data:
            for entry in self._picklist(field):
                if entry["value"] == str(value):
                    entry["isActive"] = active

    def payload(
        self,
        ticket_id: int,
        action: str = "Create",
        *,
        person_id: int | None = 30691780,
        person_key: str = "PersonID",
        guid: str | None = None,
        sequence: int | None = None,
    ) -> dict[str, Any]:
        """The body Autotask POSTs for a ticket event (only subscribed/display-always Fields)."""
        with self._data:
            ticket = self.tickets.get(ticket_id, {})
        body: dict[str, Any] = {
            "Action": action,
            "Guid": guid or self.webhook_guid,
            "EntityType": "Ticket",
            "Id": ticket_id,
            "Fields": {
                "TicketNumber": ticket.get("ticketNumber", ""),
                "Title": ticket.get("title"),
            },
            "EventTime": iso(datetime.now(UTC)).replace(".000", ""),
            "SequenceNumber": sequence if sequence is not None else next(self._sequence),
        }
        if person_id is not None:
            body[person_key] = person_id
        return body

    def delivery(
        self, ticket_id: int, action: str = "Create", *, escaped_wire: bool = False, **kw: Any
    ) -> Delivery:
        """A signed delivery for the ticket, as Autotask would POST it: ``(body, headers)``."""
        return self.signed(self.payload(ticket_id, action, **kw), escaped_wire=escaped_wire)

    def deactivation(self) -> Delivery:
        """The notice Autotask sends to the deactivation URL when it gives up on the webhook."""
        payload = {
            "Action": "Deactivated",
            "Guid": self.webhook_guid,
            "EventTime": "2026-03-02T10:00:00Z",
        }
        return self.signed(payload)

    def signed(self, payload: dict[str, Any], *, escaped_wire: bool = False) -> Delivery:
        if escaped_wire:
            body = dotnet_json(payload).encode()
        else:
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "content-type": "application/json",
            "x-hook-signature": self.sign_payload(payload),
        }
        return body, headers

    def sign_payload(self, payload: dict[str, Any]) -> str:
        """``sha1=`` + base64 HMAC-SHA1 of the .NET serialization, keyed with the webhook secret."""
        return self.sign(dotnet_json(payload).encode())

    def sign(self, data: bytes) -> str:
        digest = hmac.new(self.webhook_secret.encode(), data, hashlib.sha1).digest()
        return "sha1=" + base64.b64encode(digest).decode()

    @property
    def webhook_guid(self) -> str:
        with self._data:
            hooks = list(self.webhooks.values())
        return hooks[0]["webhookGUID"] if hooks else "a1da62a4-2c49-40a8-8183-69994ce5b3eb"

    def changes(self) -> list[Request]:
        """Every write that changes something (``writes`` without the POSTed queries)."""
        return [r for r in list(self.writes) if not r.path.endswith("/query")]

    def patches(self, ticket_id: int) -> list[dict[str, Any]]:
        """The ``PATCH /Tickets`` bodies received for the ticket, oldest first."""
        bodies = [r.json() for r in self.writes_to("PATCH", r"/V1\.0/Tickets$")]
        return [b for b in bodies if isinstance(b, dict) and b.get("id") == ticket_id]

    def notes(self, ticket_id: int) -> list[dict[str, Any]]:
        """Every note on the ticket (people's and ours), oldest first."""
        with self._data:
            return [dict(note) for note in self.ticket_notes[ticket_id]]

    # -- routes ------------------------------------------------------------------------------

    def authorize(self, request: Request) -> Response | None:
        if request.path == DISCOVERY:
            return None  # no credentials, like Autotask's
        headers = request.headers
        if (
            headers.get("apiintegrationcode") != self.integration_code
            or headers.get("username") != self.username
            or headers.get("secret") != self.secret
        ):
            return errors(401, "User is not authorized to access this resource.")
        match = re.match(API, request.path)
        if match is None or match["zone"] != self.zone:
            return errors(401, "The user is not in this zone.")  # the database moved
        return None

    def endpoint_key(self, request: Request) -> str:
        return endpoint_key(request.path)  # Autotask's object endpoint: "Tickets/Notes"

    def _add_routes(self) -> None:
        self.route("GET", DISCOVERY, self._zone_information)
        api: list[tuple[str, str, Any]] = [
            ("GET", r"/(?P<rest>.+)/next", self._next_page),
            ("GET", r"/ThresholdInformation", self._threshold),
            ("GET", r"/Tickets/entityInformation/fields", lambda r: self._fields("ticket")),
            ("GET", r"/TicketNotes/entityInformation/fields", lambda r: self._fields("note")),
            ("GET", r"/TicketWebhookFields/entityInformation/fields",
             lambda r: self._fields("webhook")),
            ("POST", r"/(?P<entity>Tickets|Resources|TicketWebhooks|Companies|TimeEntries)/query",
             self._query),
            ("GET", r"/Tickets/(?P<id>\d+)", self._get_ticket),
            ("PATCH", r"/Tickets", self._patch_ticket),
            ("GET", r"/Tickets/(?P<id>\d+)/Notes", self._list_notes),
            ("POST", r"/Tickets/(?P<id>\d+)/Notes", self._create_note),
            ("GET", r"/Companies/(?P<id>\d+)", self._get_company),
            ("POST", r"/TicketWebhooks", self._create_webhook),
            ("PATCH", r"/TicketWebhooks", self._patch_webhook),
            ("GET", r"/TicketWebhooks/(?P<id>\d+)", self._get_webhook),
            ("GET", r"/TicketWebhooks/(?P<id>\d+)/(?P<child>Fields|ExcludedResources)",
             self._list_child),
            ("POST", r"/TicketWebhooks/(?P<id>\d+)/(?P<child>Fields|ExcludedResources)",
             self._create_child),
        ]  # fmt: skip
        for method, pattern, handler in api:
            self.route(method, API + pattern, self.locked(handler))

    def _zone_information(self, request: Request) -> Response:
        if (request.arg("user") or "").casefold() != self.username.casefold():
            return errors(404, "No zone information for this user.")  # [UNSURE] the real answer
        return Response(
            200,
            {"zoneName": "Fake Zone", "url": self.zone_url, "webUrl": f"{self.url}/", "ci": 42},
        )

    def _threshold(self, request: Request) -> Response:
        count = self.threshold_count
        if count is None:
            count = sum(1 for r in list(self.requests) if r.path != DISCOVERY)
        return Response(
            200,
            {
                "externalRequestThreshold": 10000,
                "requestThresholdTimeframe": 60,
                "currentTimeframeRequestCount": count,
            },
        )

    def _fields(self, entity: str) -> Response:
        fields = {"ticket": self.ticket_fields, "note": self.note_fields}.get(entity)
        return Response(200, {"fields": json.loads(json.dumps(fields or self.webhook_field_info))})

    def _picklist(self, name: str) -> list[dict[str, Any]]:
        for field in self.ticket_fields:
            if field["name"] == name and field["picklistValues"] is not None:
                values: list[dict[str, Any]] = field["picklistValues"]
                return values
        return []

    def _active_value(self, name: str, value: Any) -> dict[str, Any] | None:
        return next(
            (p for p in self._picklist(name) if p["value"] == str(value) and p["isActive"]), None
        )

    # -- tickets and notes -------------------------------------------------------------------

    def _get_ticket(self, request: Request) -> Response:
        return Response(200, {"item": self.tickets.get(int(request.params["id"]))})

    def _patch_ticket(self, request: Request) -> Response:
        body = lower_keys(request.json())
        ticket = self.tickets.get(body.get("id") if isinstance(body.get("id"), int) else -1)
        if ticket is None:
            return errors(500, "No matching records found.")
        updated = dict(ticket)
        for key, value in body.items():
            field = next((f for f in TICKET_KEYS if f.lower() == key), None)
            if field is None or field == "id":
                continue
            if field in PICKLIST_FIELDS:
                if value is None and field == "subIssueType":
                    updated[field] = None
                    continue
                if not isinstance(value, int) or self._active_value(field, value) is None:
                    return errors(500, f"Value {value!r} is not valid for field {field}.")
            updated[field] = value
        sub = updated.get("subIssueType")
        if sub is not None:
            parent = next(p for p in self._picklist("subIssueType") if p["value"] == str(sub))
            if parent["parentValue"] != str(updated.get("issueType")):
                return errors(500, "The Sub-Issue Type is not valid for the Issue Type (parent).")
        updated["lastActivityResourceID"] = self.api_resource_id  # the API user changed it
        self.tickets[ticket["id"]] = updated
        return Response(200, {"itemId": ticket["id"]})

    def _list_notes(self, request: Request) -> Response:
        ticket_id = int(request.params["id"])
        return self._paged(request, self.ticket_notes.get(ticket_id, []))

    def _create_note(self, request: Request) -> Response:
        ticket_id = int(request.params["id"])
        if ticket_id not in self.tickets:
            return errors(500, "No matching records found.")
        body = lower_keys(request.json())
        problems = []
        for name in ("noteType", "publish"):
            values = next(f["picklistValues"] for f in self.note_fields if f["name"] == name)
            if not any(p["value"] == str(body.get(name.lower())) and p["isActive"] for p in values):
                problems.append(f"{name} is required and must be an active picklist value.")
        if not body.get("description"):
            problems.append("description is required.")
        if self.require_note_titles and not body.get("title"):
            problems.append("title is required by this ticket category.")
        if body.get("ticketid") not in (None, ticket_id):
            problems.append("ticketID does not match the parent ticket.")
        if problems:
            return errors(500, *problems)
        note_id = self.add_note(ticket_id, str(body["description"]), publish=body["publish"])
        note = self.ticket_notes[ticket_id][-1]
        note.update(
            title=body.get("title"),
            noteType=body["notetype"],
            creatorResourceID=self.api_resource_id,
        )
        return Response(200, {"itemId": note_id})

    def _get_company(self, request: Request) -> Response:
        company_id = int(request.params["id"])
        name = self.companies.get(company_id)
        return Response(
            200, {"item": None if name is None else {"id": company_id, "companyName": name}}
        )

    # -- queries and paging ------------------------------------------------------------------

    def _query(self, request: Request) -> Response:
        body = lower_keys(request.json())
        if request.params["entity"] == "TimeEntries" and self.time_denied:
            return errors(
                500,
                "The logged in Resource does not have the adequate permissions to query this "
                "entity type.",
            )
        records = {
            "TimeEntries": lambda: self.time_entries,
            "Tickets": lambda: list(self.tickets.values()),
            "Resources": lambda: self.resources,
            "TicketWebhooks": lambda: list(self.webhooks.values()),
            "Companies": lambda: [{"id": i, "companyName": n} for i, n in self.companies.items()],
        }[request.params["entity"]]()
        filters = body.get("filter")
        if not isinstance(filters, list) or not filters:
            return errors(500, "A query needs at least one filter.")
        try:
            found = [r for r in records if all(matches(r, f) for f in filters)]
        except ValueError as exc:
            return errors(500, str(exc))
        size = body.get("maxrecords") or self.max_page_size
        if not isinstance(size, int) or not 1 <= size <= 500:
            return errors(500, "MaxRecords must be between 1 and 500.")
        return self._paged(request, found, min(size, self.max_page_size))

    def _paged(self, request: Request, records: list[dict[str, Any]], size: int = 0) -> Response:
        size = size or self.max_page_size
        token = uuid.uuid4().hex
        self._pages[token] = (request.path, list(records), size)
        return self._page(token, 0)

    def _page(self, token: str, start: int) -> Response:
        path, records, size = self._pages[token]
        chunk = records[start : start + size]
        next_url = None
        if start + size < len(records):
            base = path.rstrip("/") + "/next"
            next_url = f"{self.url}{base}?paging={token}&start={start + size}"
        details = {"count": len(chunk), "requestCount": size, "prevPageUrl": None,
                   "nextPageUrl": next_url}  # fmt: skip
        return Response(200, {"items": chunk, "pageDetails": details})

    def _next_page(self, request: Request) -> Response:
        token = request.arg("paging") or ""
        if token not in self._pages:
            return errors(500, "The paging token is not valid.")
        return self._page(token, int(request.arg("start") or 0))

    # -- webhooks ----------------------------------------------------------------------------

    def _create_webhook(self, request: Request) -> Response:
        body = request.json()
        lowered = lower_keys(body)
        missing = [k for k in ("name", "webhookUrl", "deactivationUrl", "secretKey")
                   if not lowered.get(k.lower())]  # fmt: skip
        if missing or len(str(lowered.get("secretkey") or "")) > 64:
            return errors(500, *(f"{k} is required." for k in missing), "secretKey is invalid.")
        hook_id = next(self._ids)
        self.webhooks[hook_id] = {
            **body,
            "id": hook_id,
            "isReady": False,
            "webhookGUID": str(uuid.uuid4()),
            "ownerResourceID": self.api_resource_id,
        }
        return Response(200, {"itemId": hook_id})

    def _patch_webhook(self, request: Request) -> Response:
        body = request.json()
        hook = self.webhooks.get(body.get("id"))
        if hook is None:
            return errors(500, "No matching records found.")
        hook.update({k: v for k, v in body.items() if k != "id"})
        return Response(200, {"itemId": hook["id"]})

    def _get_webhook(self, request: Request) -> Response:
        hook = self.webhooks.get(int(request.params["id"]))
        item = None if hook is None else {k: v for k, v in hook.items() if k != "secretKey"}
        return Response(200, {"item": item})

    def _children(self, request: Request) -> list[dict[str, Any]] | None:
        hook_id = int(request.params["id"])
        if hook_id not in self.webhooks:
            return None
        store = self.webhook_fields if request.params["child"] == "Fields" else self.excluded
        return store[hook_id]

    def _list_child(self, request: Request) -> Response:
        children = self._children(request)
        if children is None:
            return errors(500, "No matching records found.")
        return self._paged(request, children)

    def _create_child(self, request: Request) -> Response:
        children = self._children(request)
        if children is None:
            return errors(500, "No matching records found.")
        hook_id = int(request.params["id"])
        body = {**request.json(), "id": next(self._ids)}
        if lower_keys(body).get("webhookid") != hook_id:
            return errors(500, "webhookID does not match the parent webhook.")
        children.append(body)
        if request.params["child"] == "Fields" and body.get("isSubscribedField") is True:
            self.webhooks[hook_id]["isReady"] = True
        return Response(200, {"itemId": body["id"]})
