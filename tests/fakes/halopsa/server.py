"""A fake HaloPSA: the REST API and its OAuth2 token endpoint on 127.0.0.1, shaped like the shared
PSA reference.

Auth: ``GET /api/authinfo`` names the authorisation server (``{url}/auth``, or ``auth_path``);
``POST {auth}/token`` (form-encoded client credentials) issues a Bearer token and, like Halo,
invalidates the one issued before (``issue_token()`` does that as another process would). The API
answers 401 to any other token, and to an expired one (``token_lifetime``).

Data: ticket types 1 "Incident" (allowed categories, a default "Triage"), 2 "Service Request"
(every category), 3 "Change" (none), 4 "Legacy" (hidden); categories of field 1 with a ``>``
hierarchy, an inactive and a hidden value, and two values of field 2; priorities of SLAs 1 and 2;
action outcomes. ``POST /api/Tickets`` validates categories against the ticket type (400, or a
silent no-op with ``category_policy = "ignore"``) and priorities against the ticket's SLA.
Lists page with ``pageinate``/``page_size``/``page_no`` where Halo wraps them (tickets, actions).

``delivery()`` builds a webhook call for a ticket and signs it the way the tenant is configured
(``webhook_auth``: base64 HMAC-SHA256 in the ``Token`` header, Basic auth, or the secret in a
header; and ``path_token``, the URL's secret segment). The adapter reads its secrets from
``CLIENT_SECRET_ENV``/``WEBHOOK_SECRET_ENV``/``PATH_TOKEN_ENV``; see ``secret_env()``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import itertools
import json
import re
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs

from psatriage.psa.base import PATH_TOKEN_HEADER
from tests.fakes.base import FakePSA, Request, Response
from tests.fakes.kit import Delivery

NEW_TICKET_NOTIFICATION = 57  # the id Halo gives the webhook's event binding (ours: any)
UPDATED_NOTIFICATION = 61
_TAG = re.compile(r"<[^>]+>")


class FakeHaloPSA(FakePSA):
    """HaloPSA as the adapter sees it. Start it, then point the adapter at ``url``."""

    CLIENT_SECRET_ENV = "PSATRIAGE_TEST_HALO_CLIENT_SECRET"
    WEBHOOK_SECRET_ENV = "PSATRIAGE_TEST_HALO_WEBHOOK_SECRET"
    PATH_TOKEN_ENV = "PSATRIAGE_TEST_HALO_PATH_TOKEN"
    SECRETS: ClassVar[dict[str, str]] = {
        CLIENT_SECRET_ENV: "client_secret",
        WEBHOOK_SECRET_ENV: "webhook_secret",
        PATH_TOKEN_ENV: "path_token",
    }

    def __init__(
        self,
        *,
        client_id: str = "0b7f4c1e-psatriage-test",
        client_secret: str = "fake-halo-client-secret",
        webhook_secret: str = "fake-halo-webhook-secret",
        webhook_auth: str = "hmac",
        webhook_header: str = "Token",
        webhook_username: str = "psatriage",
        path_token: str | None = None,
        tenant: str | None = None,
    ) -> None:
        super().__init__(max_page_size=100)
        self.client_id, self.client_secret, self.tenant = client_id, client_secret, tenant
        self.webhook_secret, self.webhook_auth = webhook_secret, webhook_auth
        self.webhook_header, self.webhook_username = webhook_header, webhook_username
        self.path_token = path_token  # the secret segment of the webhook URL, if the tenant has one
        self.auth_path = "/auth"
        self.auth_server: str | None = None  # what authinfo names instead of {url}{auth_path}
        self.authinfo_enabled = True
        self.token_lifetime = 3600.0
        self.token_delay = 0.0
        self.token: str | None = None
        self.token_expires = 0.0
        self.category_policy = "reject"  # or "ignore": answer 200 and apply nothing
        self.ignored_fields: set[str] = set()  # dropped silently from ticket updates
        self.ticket_types: dict[int, dict[str, Any]] = {}
        self.categories: list[dict[str, Any]] = []
        self.priorities: list[dict[str, Any]] = []
        self.outcomes: list[dict[str, Any]] = []
        self.teams: list[dict[str, Any]] = [
            {"id": 1, "name": "1st Line", "inactive": False},
            {"id": 2, "name": "2nd Line", "inactive": False},
            {"id": 3, "name": "Projects", "inactive": False},
            {"id": 4, "name": "Old team", "inactive": True},
        ]
        self.statuses: list[dict[str, Any]] = [  # GET /api/Status (reference sample shape)
            {"id": n, "name": name, "shortname": name[:4], "type": kind, "sequence": n}
            for n, name, kind in ((1, "New", 0), (2, "In Progress", 0), (3, "Waiting", 0),
                                  (9, "Closed", 1))
        ]  # fmt: skip
        self.tickets: dict[int, dict[str, Any]] = {}
        self.actions: dict[int, list[dict[str, Any]]] = {}
        self.time_denied = False  # the application's agent may not see actions' time (403)
        self.webhooks: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self._ids = itertools.count(5000)
        self._seed()
        self._add_routes()

    # -- helpers for tests and bench ------------------------------------------------------

    def connection(self) -> dict[str, Any]:
        """The tenant's ``[connection]`` table pointing the adapter at this fake."""
        return {
            "url": self.url,
            "client_id": self.client_id,
            "client_secret": f"env:{self.CLIENT_SECRET_ENV}",
            "webhook_auth": self.webhook_auth,
            "webhook_secret": f"env:{self.WEBHOOK_SECRET_ENV}",
            "webhook_header": self.webhook_header,
            "webhook_username": self.webhook_username,
            "tenant": self.tenant,
            "webhook_path_token": f"env:{self.PATH_TOKEN_ENV}" if self.path_token else None,
        }

    def add_ticket(
        self,
        summary: str,
        details: str,
        *,
        tickettype_id: int = 1,
        sla_id: int = 1,
        priority_id: int = 3,
        client: tuple[int, str] = (12, "Contoso Ltd"),
        category_id: int | None = None,
        dateoccurred: str | None = None,
        ticket_id: int | None = None,
    ) -> int:
        """Create a ticket (GET shape, uncategorized unless ``category_id``); return its id."""
        with self._data:
            number = ticket_id or next(self._ids)
            ticket: dict[str, Any] = {
                "id": number,
                "summary": summary,
                "details": details,
                "details_html": f"<p>{html.escape(details)}</p>",
                "tickettype_id": tickettype_id,
                "tickettype_name": self.ticket_types[tickettype_id]["name"],
                "status_id": 1,
                "sla_id": sla_id,
                "priority_id": priority_id,
                "client_id": client[0],
                "client_name": client[1],
                "site_id": 3,
                "user_id": 9,
                "agent_id": 0,
                "team": "1st Line",
                "team_id": 1,
                "dateoccurred": dateoccurred or _now(),
                "hasbeenclosed": False,
                "version_id": 1,
            }
            for n in range(1, 5):
                ticket[f"category_{n}"], ticket[f"categoryid_{n}"] = "", 0
            if category_id is not None:
                record = self.category(category_id)
                ticket["category_1"], ticket["categoryid_1"] = record["value"], category_id
            self.tickets[number] = ticket
            self.actions[number] = []
            return number

    def delete_ticket(self, ticket_id: int) -> None:
        with self._data:
            del self.tickets[ticket_id]

    def close_ticket(self, ticket_id: int, when: datetime | None = None) -> None:
        """Close the ticket as an agent would (status Closed, ``hasbeenclosed``) at ``when``
        (default: now), its ``dateclosed``."""
        moment = (when or datetime.now(UTC)).astimezone(UTC)
        with self._data:
            self.tickets[ticket_id].update(
                status_id=9,
                hasbeenclosed=True,
                dateclosed=moment.strftime("%Y-%m-%dT%H:%M:%S.%f"),
            )

    def add_time(self, ticket_id: int, hours: float) -> int:
        """An action with time taken (decimal hours), as an agent records work."""
        action_id = self.add_action(ticket_id, f"worked {hours} h")
        with self._data:
            self.actions[ticket_id][-1]["timetaken"] = hours
        return action_id

    def add_action(self, ticket_id: int, note: str, *, outcome: str = "Note") -> int:
        """An action as a person would add it (a private note by default)."""
        with self._data:
            action_id = next(self._ids)
            self.actions[ticket_id].append(
                {
                    "id": action_id,
                    "ticket_id": ticket_id,
                    "outcome": outcome,
                    "who": "Ann Agent",
                    "note": note,
                    "note_html": f"<p>{html.escape(note)}</p>",
                    "hiddenfromuser": True,
                    "datetime": _now(),
                }
            )
            return action_id

    def category(self, category_id: int) -> dict[str, Any]:
        return next(c for c in self.categories if c["id"] == category_id)

    def issue_token(self) -> str:
        """A token for someone else (another process): the adapter's token stops working."""
        with self._data:
            self.token = secrets.token_urlsafe(16)
            self.token_expires = time.monotonic() + self.token_lifetime
            return self.token

    def delivery(
        self,
        ticket_id: int,
        *,
        event: str = "New Ticket Logged",
        payload: str = "full",
        notification_id: int | None = NEW_TICKET_NOTIFICATION,
        delivery_id: str | None = None,
    ) -> Delivery:
        """A signed webhook call about the ticket: ``payload`` "full", "small" or "event".

        With ``path_token``, the headers also carry the URL's secret segment the way the web edge
        hands it to ``verify`` (posted to ``/webhooks/NAME/<token>``, the edge sets it itself).
        """
        with self._data:
            ticket = dict(self.tickets[ticket_id])
        body: dict[str, Any] = {
            "id": delivery_id or str(uuid.uuid4()),
            "webhook_id": self.webhooks[0]["id"] if self.webhooks else str(uuid.uuid4()),
            "event": event,
            "object_id": ticket_id,
        }
        if payload != "event":
            body |= {
                "notification_id": notification_id,
                "escmsg_id": str(uuid.uuid4()),
                "message": f"{event} for Ticket ID: {ticket_id:07d}.",
                "agent_id": 3,
                "timestamp": _now(),
            }
            if notification_id is None:
                del body["notification_id"]
            keys = ("id", "summary", "tickettype_id", "status_id", "client_id", "team")
            body["ticket"] = ticket if payload == "full" else {k: ticket[k] for k in keys}
        raw = json.dumps(body).encode()
        headers = {"content-type": "application/json", **self.sign(raw)}
        if self.path_token:  # as the web edge hands the URL's segment to verify()
            headers[PATH_TOKEN_HEADER] = self.path_token
        return raw, headers

    def sign(self, body: bytes) -> dict[str, str]:
        """The authentication headers Halo sends with ``body`` (lower-case names)."""
        secret = self.webhook_secret.encode()
        if self.webhook_auth == "basic":
            user = f"{self.webhook_username}:{self.webhook_secret}".encode()
            return {"authorization": "Basic " + base64.b64encode(user).decode()}
        if self.webhook_auth == "header":
            return {self.webhook_header.lower(): self.webhook_secret}
        digest = hmac.new(secret, body, hashlib.sha256).digest()
        return {self.webhook_header.lower(): base64.b64encode(digest).decode()}

    def ticket_updates(self, ticket_id: int) -> list[dict[str, Any]]:
        """The elements of ``POST /api/Tickets`` received for the ticket, oldest first."""
        return [
            element
            for request in self.writes_to("POST", r"/api/Tickets$")
            for element in request.json()
            if isinstance(element, dict) and element.get("id") == ticket_id
        ]

    def notes(self, ticket_id: int) -> list[dict[str, Any]]:
        """Every action on the ticket (people's and ours), oldest first."""
        with self._data:
            return [dict(action) for action in self.actions[ticket_id]]

    def token_requests(self) -> int:
        return len(self.requests_to(r"/token$"))

    # -- data --------------------------------------------------------------------------------

    def _seed(self) -> None:
        values = [
            (16, "Hardware", ""), (17, "Hardware>Printer", "Printers, scanners and copiers"),
            (18, "Hardware>Laptop", ""), (19, "Hardware>Printer>Paper jam", ""),
            (20, "Software>Email", ""), (21, "Software>Office", "inactive"),
            (22, "Network", ""), (23, "Triage", ""), (24, "Retired", "hidden"),
        ]  # fmt: skip
        for cid, value, note in values:
            record = {"id": cid, "value": value, "type_id": 1, "category_name": "Category"}
            record["note"] = "" if note in ("inactive", "hidden") else note
            if note in ("inactive", "hidden"):
                record[note] = True
            self.categories.append(record)
        for cid, value in ((30, "Remote fix"), (31, "On site")):
            self.categories.append({"id": cid, "value": value, "type_id": 2, "note": ""})
        self._ticket_type(1, "Incident", allowed=[17, 18, 19, 20, 21, 22, 23], default="Triage")
        self._ticket_type(2, "Service Request", allowed=None, sla=2)
        self._ticket_type(3, "Change", allowed=[])
        self._ticket_type(4, "Legacy", allowed=None, visible=False)
        for sla, rows in {
            1: [(1, "Critical"), (2, "High"), (3, "Medium"), (4, "Low"), (5, "Planned", "hidden")],
            2: [(1, "Urgent"), (2, "Normal")],
        }.items():
            for priority, name, *hidden in rows:
                self.priorities.append(
                    {"id": str(uuid.uuid4()), "slaid": sla, "priorityid": priority, "name": name,
                     "ishidden": bool(hidden), "colour": "#f44e3b"}
                )  # fmt: skip
        self.outcomes = [
            {"id": 1, "outcome": "Note", "buttonname": "Note", "hidden": False, "systemid": 0},
            {"id": 3, "outcome": "Private Note", "buttonname": "Private Note", "hidden": False,
             "systemid": 0, "default_private_note": True},
            {"id": 4, "outcome": "Email User", "buttonname": "Email", "hidden": False},
        ]  # fmt: skip

    def _ticket_type(
        self,
        type_id: int,
        name: str,
        *,
        allowed: list[int] | None,
        default: str = "",
        sla: int = 1,
        visible: bool = True,
    ) -> None:
        restriction = [
            {"id": 900 + cid, "type": 1, "tickettype_id": type_id, "category_id": cid,
             "category_value": self.category(cid)["value"]}
            for cid in allowed or []
        ]  # fmt: skip
        self.ticket_types[type_id] = {
            "id": type_id,
            "name": name,
            "visible": visible,
            "agentscanselect": visible,
            "default_sla": sla,
            "default_priority": 3,
            "default_category_1": default,
            "allowall_category1": allowed is None,
            "allowed_category1": restriction,
            "allowall_category2": True,
            "allowed_category2": [],
            "group_id": 1,
            "group_name": "Service Desk",
        }

    def _allows(self, type_id: int, field: int, category_id: int) -> bool:
        ticket_type = self.ticket_types[type_id]
        if ticket_type.get(f"allowall_category{field}"):
            return True
        listed = ticket_type.get(f"allowed_category{field}") or []
        return any(r["category_id"] == category_id for r in listed)

    # -- routes ------------------------------------------------------------------------------

    def authorize(self, request: Request) -> Response | None:
        if not request.path.startswith("/api/") or request.path == "/api/authinfo":
            return None
        given = request.headers.get("authorization", "")
        with self._data:
            valid = self.token is not None and time.monotonic() < self.token_expires
            if not valid or not hmac.compare_digest(given, f"Bearer {self.token}"):
                return Response(401, raw=b"")
        return None

    def _add_routes(self) -> None:
        routes = [
            ("GET", r"/api/authinfo", self._authinfo),
            ("POST", r"/(auth|identity)/token", self._token),
            ("GET", r"/api/Tickets", self._list_tickets),
            ("GET", r"/api/Tickets/(?P<ticket>\d+)", self._get_ticket),
            ("POST", r"/api/Tickets", self._update_tickets),
            ("GET", r"/api/TicketType", self._list_types),
            ("GET", r"/api/TicketType/(?P<type>\d+)", self._get_type),
            ("GET", r"/api/Category", self._list_categories),
            ("GET", r"/api/Priority", self._list_priorities),
            ("GET", r"/api/Team", lambda r: Response(200, self.teams)),
            ("GET", r"/api/Status", lambda r: Response(200, self.statuses)),
            ("GET", r"/api/Outcome", lambda r: Response(200, self.outcomes)),
            ("GET", r"/api/Actions", self._list_actions),
            ("POST", r"/api/Actions", self._add_actions),
            ("GET", r"/api/Webhook", lambda r: Response(200, self.webhooks)),
            ("POST", r"/api/Webhook", self._add_webhook),
            ("GET", r"/api/Notification", self._list_notifications),
            ("POST", r"/api/Notification", self._add_notification),
        ]
        for method, pattern, handler in routes:
            unlocked = handler == self._token  # token requests overlap, as on a real server
            self.route(method, pattern, handler if unlocked else self.locked(handler))

    def _authinfo(self, request: Request) -> Response:
        if not self.authinfo_enabled:
            return Response(404, raw=b"")
        info: dict[str, Any] = {"auth_url": self.auth_server or f"{self.url}{self.auth_path}"}
        if self.tenant:
            info["tenant_id"] = self.tenant
        return Response(200, info)

    def _token(self, request: Request) -> Response:
        if self.token_delay:
            time.sleep(self.token_delay)
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if self.tenant and request.arg("tenant") != self.tenant:
            return Response(400, {"error": "invalid_request", "error_description": "tenant"})
        if form.get("grant_type") != "client_credentials" or not form.get("scope"):
            return Response(400, {"error": "invalid_request"})
        if form.get("client_id") != self.client_id or form.get("client_secret") != (
            self.client_secret
        ):
            return Response(401, {"error": "invalid_client"})
        token = self.issue_token()
        return Response(
            200,
            {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime,
             "scope": form["scope"]},
        )  # fmt: skip

    def _get_ticket(self, request: Request) -> Response:
        ticket = self.tickets.get(int(request.params["ticket"]))
        if ticket is None:
            return Response(404, {"ClassName": "HaloNotFound", "Message": "Ticket not found"})
        return Response(200, ticket)

    def _list_tickets(self, request: Request) -> Response:
        tickets = list(self.tickets.values())
        start, end = request.arg("startdate"), request.arg("enddate")
        if request.arg("datesearch") == "dateoccured" and start:
            tickets = [t for t in tickets if t["dateoccurred"] >= start]
        if request.arg("datesearch") == "dateoccured" and end:
            tickets = [t for t in tickets if t["dateoccurred"] < end]
        if request.arg("datesearch") == "dateclosed":
            tickets = [
                t
                for t in tickets
                if t.get("dateclosed")
                and (not start or t["dateclosed"] >= start)
                and (not end or t["dateclosed"] < end)
            ]
        if request.arg("closed_only") == "true":
            tickets = [t for t in tickets if t["hasbeenclosed"]]
        if request.arg("order") == "dateoccurred":
            descending = request.arg("orderdesc") == "true"
            tickets.sort(key=lambda t: (t["dateoccurred"], t["id"]), reverse=descending)
        return self._page(request, tickets, "tickets")

    def _update_tickets(self, request: Request) -> Response:
        elements = request.json()
        if not isinstance(elements, list):
            return Response(400, "A JSON array of tickets is expected.")
        updated = []
        for element in elements:
            ticket = self.tickets.get(element.get("id"))
            if ticket is None:
                return Response(400, {"resultCode": 1, "errorMessage": "Ticket not found"})
            problem, new = self._apply(ticket, element)
            if problem is not None:
                return problem
            self.tickets[ticket["id"]] = new
            updated.append(new)
        return Response(201, updated)

    def _apply(
        self, ticket: dict[str, Any], element: dict[str, Any]
    ) -> tuple[Response | None, dict[str, Any]]:
        new = dict(ticket)
        fields = {k: v for k, v in element.items() if k not in self.ignored_fields}
        if "tickettype_id" in fields:
            ticket_type = self.ticket_types.get(fields["tickettype_id"])
            if ticket_type is None or not ticket_type["visible"]:
                return Response(400, "The ticket type is not valid."), new
            new["tickettype_id"], new["tickettype_name"] = ticket_type["id"], ticket_type["name"]
        for n in range(1, 5):
            if f"categoryid_{n}" not in fields:
                continue
            cid = fields[f"categoryid_{n}"]
            record = next((c for c in self.categories if c["id"] == cid), None)
            valid = (
                record is not None
                and record["type_id"] == n
                and not record.get("inactive")
                and not record.get("hidden")
                and self._allows(new["tickettype_id"], n, cid)
            )
            if not valid:
                if self.category_policy == "ignore":
                    continue
                return Response(400, "The category is not valid for this ticket type."), new
            assert record is not None
            new[f"categoryid_{n}"], new[f"category_{n}"] = cid, record["value"]
        if "priority_id" in fields:
            valid_ids = {
                p["priorityid"]
                for p in self.priorities
                if p["slaid"] == new["sla_id"] and not p["ishidden"]
            }
            if fields["priority_id"] not in valid_ids:
                return Response(
                    400, {"ClassName": "System.Exception", "Message": "Invalid priority"}
                ), new
            new["priority_id"] = fields["priority_id"]
        if isinstance(fields.get("summary"), str):
            new["summary"] = fields["summary"]
        refused = self._team_and_status(fields, new)
        if refused is not None:
            return refused, new
        new["version_id"] = ticket.get("version_id", 0) + 1
        return None, new

    def _team_and_status(self, fields: dict[str, Any], new: dict[str, Any]) -> Response | None:
        if "status_id" in fields:
            status = next((x for x in self.statuses if x["id"] == fields["status_id"]), None)
            if status is None:
                return Response(400, {"ClassName": "System.Exception", "Message": "Status"})
            new["status_id"] = status["id"]
        if "team_id" in fields:
            team = next((t for t in self.teams if t["id"] == fields["team_id"]), None)
            if team is None or team["inactive"]:
                return Response(400, {"ClassName": "System.Exception", "Message": "Team"})
            new["team_id"], new["team"] = team["id"], team["name"]
        return None

    def _list_types(self, request: Request) -> Response:
        return Response(200, list(self.ticket_types.values()))

    def _get_type(self, request: Request) -> Response:
        ticket_type = self.ticket_types.get(int(request.params["type"]))
        if ticket_type is None:
            return Response(404, {"Message": "Ticket type not found"})
        return Response(200, ticket_type)

    def _list_categories(self, request: Request) -> Response:
        field = int(request.arg("type_id") or 1)
        records = [c for c in self.categories if c["type_id"] == field]
        type_id = request.arg("tickettype_id")
        if type_id is not None:
            records = [c for c in records if self._allows(int(type_id), field, c["id"])]
        return Response(200, records)

    def _list_priorities(self, request: Request) -> Response:
        sla = request.arg("slaid")
        records = [p for p in self.priorities if sla is None or p["slaid"] == int(sla)]
        return Response(200, records)

    def _list_actions(self, request: Request) -> Response:
        if self.time_denied:
            return Response(403, {"ClassName": "Forbidden", "Message": "Access denied"})
        ticket_id = int(request.arg("ticket_id") or 0)
        if ticket_id not in self.tickets:
            return Response(404, {"Message": "Ticket not found"})
        return self._page(request, self.actions[ticket_id], "actions")

    def _add_actions(self, request: Request) -> Response:
        created = []
        for element in request.json():
            ticket_id = element.get("ticket_id")
            if ticket_id not in self.tickets:
                return Response(400, {"resultCode": 1, "errorMessage": "Ticket not found"})
            outcome = next(
                (
                    o
                    for o in self.outcomes
                    if o["id"] == element.get("outcome_id")
                    or o["outcome"] == element.get("outcome")
                ),
                None,
            )
            if outcome is None:
                return Response(400, {"resultCode": 2, "errorMessage": "Invalid outcome"})
            text = html.unescape(_TAG.sub("\n", element.get("note_html") or "")).strip()
            action = {
                **element,
                "id": next(self._ids),
                "outcome": outcome["outcome"],
                "note": element.get("note") or re.sub(r"\n+", "\n", text),
                "who": "psatriage API",
                "datetime": _now(),
            }
            self.actions[ticket_id].append(action)
            created.append(action)
        return Response(201, created[0] if len(created) == 1 else created)

    def _add_webhook(self, request: Request) -> Response:
        (element,) = request.json()
        webhook = {**element, "id": str(uuid.uuid4())}
        self.webhooks.append(webhook)
        return Response(201, webhook)

    def _list_notifications(self, request: Request) -> Response:
        webhook = request.arg("webhook_id")
        records = [n for n in self.notifications if webhook is None or n["webhook_id"] == webhook]
        return Response(200, records)

    def _add_notification(self, request: Request) -> Response:
        (element,) = request.json()
        binding = {**element, "id": NEW_TICKET_NOTIFICATION + len(self.notifications)}
        self.notifications.append(binding)
        return Response(201, binding)

    def _page(self, request: Request, records: list[dict[str, Any]], key: str) -> Response:
        """Halo's wrapped list; one page when ``pageinate`` is set (page size at most 100)."""
        if request.arg("pageinate") != "true":
            return Response(200, {"record_count": len(records), key: records})
        page = max(1, int(request.arg("page_no") or 1))
        size = min(max(1, int(request.arg("page_size") or 50)), self.max_page_size)
        chunk, _ = self.page_of(records, page, size)
        return Response(
            200, {"page_no": page, "page_size": size, "record_count": len(records), key: chunk}
        )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
