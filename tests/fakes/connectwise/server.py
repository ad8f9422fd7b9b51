"""A fake ConnectWise Manage: REST API 3.0 on 127.0.0.1, shaped like the shared PSA reference.

It checks Basic auth (``company+public:private``) and the ``clientId`` header, names its codebase
at ``/login/companyinfo/{company}``, pages lists with ``page``/``pageSize`` and a ``Link``
header, validates category PATCHes against the board's associations (400 ``InvalidObject``
otherwise), and signs callbacks like ConnectWise: ``x-content-signature`` = base64 HMAC-SHA256 of
the body keyed with SHA-256 of the signing key served at ``Metadata.key_url`` (unauthenticated).

Boards: 1 "Help Desk" (associations, inactive values, a default type), 2 "Network Operations"
(associations), 3 "Onboarding" (no associations: types x subtypes by ``typeAssociationIds``).
The adapter reads its secrets from ``PUBLIC_KEY_ENV``/``PRIVATE_KEY_ENV``; see ``secret_env()``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

from tests.fakes.base import FakePSA, Request, Response

API = r"/(?P<codebase>[^/]+/)/?apis/3\.0"
LEVELS = ("type", "subType", "item")
_CONDITION = re.compile(r'^\s*url\s*=\s*"(?P<url>[^"]*)"\s*$', re.IGNORECASE)


@dataclass
class Board:
    """One service board and its category tree, as ConnectWise lists it."""

    id: int
    name: str
    types: list[dict[str, Any]] = field(default_factory=list)
    subtypes: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    associations: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.statuses:  # each board has statuses of its own (ids differ per board)
            names = ("New", "In Progress", "Waiting on client", "Closed (resolved)", "Old status")
            self.statuses = [
                {"id": self.id * 100 + n, "name": name, "sortOrder": n, "inactive": n == 5,
                 "closedStatus": name.startswith("Closed"), "board": self.ref()}
                for n, name in enumerate(names, start=1)
            ]  # fmt: skip

    def ref(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}

    def find(self, level: str, value_id: int) -> dict[str, Any] | None:
        records = {"type": self.types, "subType": self.subtypes, "item": self.items}[level]
        return next((r for r in records if r["id"] == value_id), None)

    def associate(self, type_id: int, subtype_id: int | None, item_id: int | None) -> None:
        """Add a ``typeSubTypeItemAssociation`` (names copied from the lists, as CW does)."""
        entry: dict[str, Any] = {"id": 20000 + len(self.associations), "board": self.ref()}
        for level, value_id in (("type", type_id), ("subType", subtype_id), ("item", item_id)):
            record = self.find(level, value_id) if value_id is not None else None
            name = record["name"] if record else f"#{value_id}"
            entry[level] = None if value_id is None else {"id": value_id, "name": name}
        self.associations.append(entry)

    def category_error(self, ticket: dict[str, Any]) -> tuple[str, str] | None:
        """``(field, message)`` saying why the ticket's type/subType/item is invalid, or None."""
        chosen = tuple((ticket.get(level) or {}).get("id") for level in LEVELS)
        if not any(chosen):
            return None  # no category yet: nothing to check
        for level, value_id in zip(LEVELS, chosen, strict=True):
            record = self.find(level, value_id) if value_id is not None else {}
            if record is None or record.get("inactiveFlag"):
                return level, f"The {level} {value_id} is not an active value of board {self.name}."
        if self.associations:
            valid = {
                tuple((a[level] or {}).get("id") for level in LEVELS) for a in self.associations
            }
            valid |= {(t, s, None) for t, s, _ in valid} | {(t, None, None) for t, _, _ in valid}
            if chosen not in valid:
                return "item", "The Type/Subtype/Item combination is not valid for this board."
            return None
        type_id, subtype_id, item_id = chosen
        subtype = self.find("subType", subtype_id) if subtype_id is not None else None
        if item_id is not None or (subtype and type_id not in subtype["typeAssociationIds"]):
            return "subType", "The Subtype is not valid for the Type."
        return None


class FakeConnectWise(FakePSA):
    """ConnectWise Manage as the adapter sees it. Start it, then point the adapter at ``url``."""

    PUBLIC_KEY_ENV = "PSATRIAGE_TEST_CW_PUBLIC_KEY"
    PRIVATE_KEY_ENV = "PSATRIAGE_TEST_CW_PRIVATE_KEY"
    SECRETS: ClassVar[dict[str, str]] = {
        PUBLIC_KEY_ENV: "public_key",
        PRIVATE_KEY_ENV: "private_key",
    }

    def __init__(
        self,
        *,
        company_id: str = "psatriage_test",
        public_key: str = "fake-public-key",
        private_key: str = "fake-private-key",
        client_id: str = "0d6c3b1e-7f55-4b39-9f2a-4ad2f1c0a001",
        signing_key: str = "fake-signing-key",
    ) -> None:
        super().__init__(max_page_size=1000)
        self.company_id, self.client_id, self.signing_key = company_id, client_id, signing_key
        self.public_key, self.private_key = public_key, private_key
        self.codebase = "v2025_1/"
        self.key_id = str(uuid.uuid4())
        self.boards: dict[int, Board] = {}
        self.tickets: dict[int, dict[str, Any]] = {}
        self.ticket_notes: dict[int, list[dict[str, Any]]] = {}
        self.callbacks: list[dict[str, Any]] = []
        self.priorities: list[dict[str, Any]] = [
            {"id": 1, "name": "Priority 1 - Emergency Response", "sortOrder": 1},
            {"id": 2, "name": "Priority 2 - Quick Response", "sortOrder": 2},
            {"id": 4, "name": "Priority 3 - Normal Response", "sortOrder": 3, "defaultFlag": True},
            {"id": 5, "name": "Priority 4 - Schedule Maintenance", "sortOrder": 4},
        ]
        self.time_entries: list[dict[str, Any]] = []
        self.time_denied = False  # the API member's role may not read time entries (403)
        self._ids = itertools.count(1000)
        self._seed_boards()
        self._add_routes()

    # -- helpers for tests and bench ------------------------------------------------------

    def connection(self) -> dict[str, Any]:
        """The tenant's ``[connection]`` table pointing the adapter at this fake.

        The fake has no rate limit, so the client-side window is opened wide: bursts of hundreds
        of tickets (crash tests, bench) are not held back by the default guess of 300 calls a
        minute. Tests of the limits pass ``requests_per_window`` themselves.
        """
        return {
            "site": "api-na.myconnectwise.net",
            "company_id": self.company_id,
            "public_key": f"env:{self.PUBLIC_KEY_ENV}",
            "private_key": f"env:{self.PRIVATE_KEY_ENV}",
            "client_id": self.client_id,
            "base_url": self.url,
            "trusted_key_origins": [self.url],
            "requests_per_window": 100_000,
        }

    def add_ticket(
        self,
        summary: str,
        description: str,
        *,
        board_id: int = 1,
        company: tuple[int, str] = (250, "Contoso Ltd"),
        type_id: int | None = None,
        subtype_id: int | None = None,
        item_id: int | None = None,
        record_type: str = "ServiceTicket",
        entered: datetime | None = None,
    ) -> int:
        """Create a ticket (GET shape) and its first, detailDescription note; return its id.

        ``entered`` (default: now) is its ``_info.dateEntered``, what polling filters on.
        """
        moment = (entered or datetime.now(UTC)).astimezone(UTC)
        board = self.boards[board_id]
        with self._data:
            ticket_id = next(self._ids)
            ticket: dict[str, Any] = {
                "id": ticket_id,
                "summary": summary,
                "recordType": record_type,
                "board": board.ref(),
                "status": {"id": 1, "name": "New"},
                "closedFlag": False,
                "company": {"id": company[0], "identifier": "Contoso", "name": company[1]},
                "priority": {"id": 4, "name": "Priority 3 - Normal Response"},
                "severity": "Medium",
                "impact": "Medium",
                "_info": {
                    "dateEntered": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "updatedBy": "User1",
                },
            }
            self.tickets[ticket_id] = ticket
            self.ticket_notes[ticket_id] = []
            for level, value in (("type", type_id), ("subType", subtype_id), ("item", item_id)):
                if value is not None:
                    ticket[level] = self._value_ref(board, level, value)
        self.add_ticket_note(ticket_id, description, detail=True)
        return ticket_id

    def delete_ticket(self, ticket_id: int) -> None:
        with self._data:
            del self.tickets[ticket_id]

    def touch(self, ticket_id: int, member: str) -> None:
        """Record ``member`` as the last to save the ticket (``_info.updatedBy``)."""
        with self._data:
            self.tickets[ticket_id]["_info"]["updatedBy"] = member

    def close_ticket(self, ticket_id: int, when: datetime | None = None) -> None:
        """Close the ticket as a technician would (a status with the closed flag), at ``when``
        (default: now), its ``closedDate``."""
        moment = (when or datetime.now(UTC)).astimezone(UTC)
        with self._data:
            ticket = self.tickets[ticket_id]
            ticket["status"] = {"id": 6, "name": "Closed (resolved)"}
            ticket["closedFlag"] = True
            ticket["closedDate"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def add_time(self, ticket_id: int, hours: float, *, charge_type: str = "ServiceTicket") -> int:
        """A time entry charged to the ticket, as a technician would enter it."""
        with self._data:
            entry_id = next(self._ids)
            self.time_entries.append(
                {
                    "id": entry_id,
                    "company": {"id": 250, "identifier": "Contoso"},
                    "chargeToId": ticket_id,
                    "chargeToType": charge_type,
                    "member": {"id": 176, "identifier": "User1"},
                    "timeStart": "2026-03-02T09:00:00Z",
                    "actualHours": hours,
                    "hoursDeduct": 0.0,
                    "hoursBilled": hours,
                    "billableOption": "Billable",
                }
            )
            return entry_id

    def add_ticket_note(
        self, ticket_id: int, text: str, *, detail: bool = False, internal: bool = False
    ) -> int:
        """Add a note as a person would (discussion when ``detail``, internal when ``internal``)."""
        with self._data:
            notes = self.ticket_notes[ticket_id]
            note_id = next(self._ids)
            minute = len(notes)
            notes.append(
                {
                    "id": note_id,
                    "ticketId": ticket_id,
                    "text": text,
                    "detailDescriptionFlag": detail,
                    "internalAnalysisFlag": internal,
                    "resolutionFlag": False,
                    "dateCreated": f"2026-03-02T09:{15 + minute:02d}:00Z",
                    "createdBy": "User1",
                }
            )
            return note_id

    def move(self, ticket_id: int, board_id: int) -> None:
        """A person moves the ticket to another board: its type, subtype and item go (they
        belong to the old board)."""
        with self._data:
            ticket = self.tickets[ticket_id]
            for level in LEVELS:
                ticket.pop(level, None)
            ticket["board"] = self.boards[board_id].ref()

    def callback(
        self,
        ticket_id: int,
        action: str = "added",
        record_type: str = "ServiceTicket",
        message_id: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A signed callback for the ticket, as ConnectWise would POST it: ``(body, headers)``."""
        with self._data:
            entity = {**self.tickets[ticket_id], "recordType": record_type}
        payload = {
            "MessageId": message_id or str(uuid.uuid4()),
            "FromUrl": "api-na.myconnectwise.net",
            "CompanyId": self.company_id,
            "MemberId": "User1",
            "Action": action,
            "Type": "ticket",
            "ID": ticket_id,
            "ProductInstanceId": "639c96cab2eb560001dd1324",
            "PartnerId": "61ddc2817bcddc0001c74208",
            "Entity": json.dumps(entity),
            "Metadata": {"key_url": self.key_url},
            "CallbackObjectRecId": self.callbacks[0]["id"] if self.callbacks else 26567,
        }
        body = json.dumps(payload).encode()
        return body, {"content-type": "application/json", "x-content-signature": self.sign(body)}

    @property
    def key_url(self) -> str:
        query = urlencode({"companyName": self.company_id, "id": self.key_id})
        return f"{self.url}/{self.codebase}system/callbackkey/index.rails?{query}"

    def sign(self, body: bytes) -> str:
        """``x-content-signature`` for ``body``: base64(HMAC-SHA256(SHA-256(signing key), body))."""
        key = hashlib.sha256(self.signing_key.encode()).digest()
        return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()

    def patches(self, ticket_id: int) -> list[Any]:
        """The JSON Patch bodies received for the ticket, oldest first."""
        return [r.json() for r in self.writes_to("PATCH", rf"/service/tickets/{ticket_id}$")]

    def notes(self, ticket_id: int) -> list[dict[str, Any]]:
        """Every note on the ticket (people's and ours), oldest first."""
        with self._data:
            return [dict(note) for note in self.ticket_notes[ticket_id]]

    # -- data --------------------------------------------------------------------------------

    def _seed_boards(self) -> None:
        help_desk = self._board(
            1,
            "Help Desk",
            types=[(10, "Hardware"), (11, "Software"), (12, "Network"), (13, "Legacy", "off"),
                   (14, "Triage", "default")],
            subtypes=[(20, "Printer"), (21, "Laptop"), (22, "Email"), (23, "Office"),
                      (24, "VPN"), (25, "Fax", "off")],
            items=[(30, "Paper jam"), (31, "Will not power on"), (32, "Setup"),
                   (33, "Toner", "off")],
        )  # fmt: skip
        for triple in [
            (10, 20, 30), (10, 20, 31), (10, 21, 31), (10, 21, None), (11, 22, 32),
            (11, 23, None), (12, 24, None), (14, None, None), (10, 20, 30),  # a duplicate
            (13, 20, 30), (10, 25, 30), (10, 20, 33), (10, 20, 34),  # inactive or unknown
        ]:  # fmt: skip
            help_desk.associate(*triple)
        network = self._board(
            2,
            "Network Operations",
            types=[(60, "Outage"), (61, "Change")],
            subtypes=[(70, "Firewall"), (71, "Switch")],
            items=[(80, "Down")],
        )
        for triple in [(60, 70, 80), (60, 71, None), (61, 70, None)]:
            network.associate(*triple)
        onboarding = self._board(
            3,
            "Onboarding",
            types=[(40, "Access"), (41, "Equipment"), (42, "Retired", "off")],
            subtypes=[(50, "Accounts"), (51, "Permissions"), (52, "Badges", "off")],
            items=[],
        )
        for subtype in onboarding.subtypes:
            subtype["typeAssociationIds"] = [40, 42]

    def _board(self, board_id: int, name: str, **levels: list[tuple[Any, ...]]) -> Board:
        board = Board(board_id, name)
        for level, rows in levels.items():
            records = getattr(board, level)
            for value_id, value_name, *flags in rows:
                record = {"id": value_id, "name": value_name, "inactiveFlag": "off" in flags}
                record["board"] = board.ref()
                if level == "types":
                    record |= {"category": "Reactive", "defaultFlag": "default" in flags}
                if level == "subtypes":
                    record["typeAssociationIds"] = []
                records.append(record)
        self.boards[board_id] = board
        return board

    def _value_ref(self, board: Board, level: str, value_id: int) -> dict[str, Any]:
        record = board.find(level, value_id)
        name = record["name"] if record else f"#{value_id}"
        return {"id": value_id, "name": name}

    # -- routes ------------------------------------------------------------------------------

    def authorize(self, request: Request) -> Response | None:
        if "/login/companyinfo/" in request.path or "/system/callbackkey/" in request.path:
            return None  # public, like ConnectWise's
        token = f"{self.company_id}+{self.public_key}:{self.private_key}".encode()
        if request.headers.get("authorization") != "Basic " + base64.b64encode(token).decode():
            return _error(401, "Unauthorized", "The API member's credentials are not valid.")
        if request.headers.get("clientid") != self.client_id:
            return _error(401, "Unauthorized", "A valid clientId header is required.")
        return None

    def _add_routes(self) -> None:
        self.route("GET", r"/login/companyinfo/(?P<company>[^/]+)", self._company_info)
        self.route("GET", r"/(?P<codebase>[^/]+/)/?system/callbackkey/index\.rails", self._key)
        api = [
            ("GET", r"/system/info", self._system_info),
            ("GET", r"/system/callbacks", self._list_callbacks),
            ("POST", r"/system/callbacks", self._create_callback),
            ("GET", r"/service/boards", lambda r: self._page(r, [b.ref() for b in self._all()])),
            ("GET", r"/service/priorities", lambda r: self._page(r, self.priorities)),
            ("GET", r"/service/boards/(?P<board>\d+)/(?P<level>types|subtypes|items)", self._level),
            ("GET", r"/service/boards/(?P<board>\d+)/typeSubTypeItemAssociations", self._assocs),
            ("GET", r"/service/boards/(?P<board>\d+)/statuses", self._statuses),
            ("GET", r"/service/tickets", self._list_tickets),
            ("GET", r"/service/tickets/(?P<ticket>\d+)", self._get_ticket),
            ("PATCH", r"/service/tickets/(?P<ticket>\d+)", self._patch_ticket),
            ("GET", r"/service/tickets/(?P<ticket>\d+)/notes", self._list_notes),
            ("POST", r"/service/tickets/(?P<ticket>\d+)/notes", self._create_note),
            ("GET", r"/time/entries", self._list_time),
        ]
        for method, pattern, handler in api:
            self.route(method, API + pattern, self._in_codebase(handler))

    def _in_codebase(self, handler: Any) -> Any:
        def checked(request: Request) -> Response:
            if request.params.get("codebase") != self.codebase:
                return _error(404, "NotFound", "Not found")  # the instance moved codebase
            response: Response = handler(request)
            return response

        return self.locked(checked)

    def _all(self) -> list[Board]:
        return list(self.boards.values())

    def _company_info(self, request: Request) -> Response:
        if request.params["company"].lower() != self.company_id.lower():
            return Response(200, raw=b"null")  # what ConnectWise answers for an unknown company
        version = self.codebase.strip("/").replace("_", ".")
        return Response(
            200,
            {"CompanyName": "Psatriage Test", "Codebase": self.codebase, "VersionCode": version,
             "VersionNumber": "v4.6.2025", "CompanyID": self.company_id, "IsCloud": True},
        )  # fmt: skip

    def _key(self, request: Request) -> Response:
        if request.arg("id") != self.key_id:
            return _error(404, "NotFound", "Callback key not found")
        return Response(200, {"signing_key": self.signing_key})

    def _system_info(self, request: Request) -> Response:
        return Response(200, {"version": "v2025.1", "isCloud": True, "cloudRegion": "NA"})

    def _list_callbacks(self, request: Request) -> Response:
        records = self.callbacks
        condition = request.arg("conditions")
        if condition:
            match = _CONDITION.match(condition)
            if match is None:
                return _error(400, "InvalidObject", f"unsupported conditions {condition!r}")
            records = [c for c in records if c["url"] == match["url"]]
        return self._page(request, records)

    def _create_callback(self, request: Request) -> Response:
        entry = {"id": next(self._ids), **request.json(), "memberId": 176, "inactiveFlag": False}
        self.callbacks.append(entry)
        return Response(201, entry)

    def _level(self, request: Request) -> Response:
        board = self.boards.get(int(request.params["board"]))
        if board is None:
            return _error(404, "NotFound", "Board not found")
        return self._page(request, getattr(board, request.params["level"]))

    def _statuses(self, request: Request) -> Response:
        board = self.boards.get(int(request.params["board"]))
        if board is None:
            return _error(404, "NotFound", "Board not found")
        return self._page(request, board.statuses)

    def _assocs(self, request: Request) -> Response:
        board = self.boards.get(int(request.params["board"]))
        if board is None:
            return _error(404, "NotFound", "Board not found")
        return self._page(request, board.associations)

    def _get_ticket(self, request: Request) -> Response:
        ticket = self.tickets.get(int(request.params["ticket"]))
        if ticket is None:
            return _error(404, "NotFound", f"Ticket {request.params['ticket']} was not found")
        return Response(200, ticket)

    def _list_tickets(self, request: Request) -> Response:
        """Tickets, filtered by ``conditions`` (``dateEntered >= [ISO]``, ``closedFlag=true``)
        and ordered by ``orderBy`` (``id asc`` by default, or ``dateEntered desc``)."""
        conditions = request.arg("conditions") or ""
        match = re.search(r"dateEntered\s*(>=|>)\s*\[([^\]]+)\]", conditions)
        closed = re.search(r"closedFlag\s*=\s*(true|false)", conditions, re.IGNORECASE)
        ids = re.search(r"\bid\s+in\s*\(([\d,\s]*)\)", conditions, re.IGNORECASE)
        with self._data:
            tickets = sorted(self.tickets.values(), key=lambda t: t["id"])
        if ids:
            wanted_ids = {int(i) for i in ids.group(1).split(",") if i.strip()}
            tickets = [t for t in tickets if t["id"] in wanted_ids]
        if (request.arg("orderBy") or "").lower().startswith("dateentered desc"):
            tickets.sort(key=lambda t: (t["_info"]["dateEntered"], t["id"]), reverse=True)
        for operator, moment in re.findall(r"closedDate\s*(>=|<)\s*\[([^\]]+)\]", conditions):
            bound = datetime.fromisoformat(moment)
            tickets = [
                t
                for t in tickets
                if t.get("closedDate")
                and (datetime.fromisoformat(t["closedDate"]) >= bound) == (operator == ">=")
            ]
        if closed:
            wanted = closed.group(1).lower() == "true"
            tickets = [t for t in tickets if bool(t.get("closedFlag")) == wanted]
        if match:
            since = datetime.fromisoformat(match.group(2))
            strict = match.group(1) == ">"
            tickets = [
                t
                for t in tickets
                if (entered := datetime.fromisoformat(t["_info"]["dateEntered"])) > since
                or (not strict and entered == since)
            ]
        before = re.search(r"dateEntered\s*<\s*\[([^\]]+)\]", conditions)
        if before:
            until = datetime.fromisoformat(before.group(1))
            tickets = [
                t for t in tickets if datetime.fromisoformat(t["_info"]["dateEntered"]) < until
            ]
        return self._page(request, tickets)

    def _patch_ticket(self, request: Request) -> Response:
        ticket = self.tickets.get(int(request.params["ticket"]))
        operations = request.json()
        if ticket is None:
            return _error(404, "NotFound", f"Ticket {request.params['ticket']} was not found")
        if not isinstance(operations, list):
            return _error(400, "InvalidObject", "A JSON Patch array is expected")
        board = self.boards[ticket["board"]["id"]]
        updated = dict(ticket)
        for operation in operations:
            path = str(operation.get("path", "")).strip("/")
            value = operation.get("value")
            value_id = value.get("id") if isinstance(value, dict) else None
            if path == "board":  # later operations (the category) are checked on the new board
                if value_id not in self.boards:
                    return _error(400, "InvalidObject", "ticket object is invalid", "board", "?")
                board = self.boards[value_id]
                updated["board"] = board.ref()
            elif path in ("priority", "status"):
                # a status of the ticket's board (the new one, if moved)
                known = self.priorities if path == "priority" else board.statuses
                found = next((x for x in known if x["id"] == value_id), None)
                if found is None or found.get("inactive"):
                    return _error(400, "InvalidObject", "ticket object is invalid", path, "?")
                updated[path] = {"id": found["id"], "name": found["name"]}
            elif operation.get("op") == "remove":
                updated.pop(path, None)
            elif path in LEVELS:
                updated[path] = self._value_ref(board, path, int(operation["value"]["id"]))
            else:
                updated[path] = operation.get("value")
        problem = board.category_error(updated)
        if problem is not None:
            return _error(400, "InvalidObject", "ticket object is invalid", *problem)
        self.tickets[ticket["id"]] = updated
        return Response(200, updated)

    def _list_notes(self, request: Request) -> Response:
        ticket_id = int(request.params["ticket"])
        if ticket_id not in self.tickets:
            return _error(404, "NotFound", f"Ticket {ticket_id} was not found")
        return self._page(request, self.ticket_notes[ticket_id])

    def _create_note(self, request: Request) -> Response:
        ticket_id = int(request.params["ticket"])
        if ticket_id not in self.tickets:
            return _error(404, "NotFound", f"Ticket {ticket_id} was not found")
        body = request.json()
        note_id = self.add_ticket_note(ticket_id, body.get("text", ""))
        note = self.ticket_notes[ticket_id][-1]
        note.update(body, id=note_id, ticketId=ticket_id)
        return Response(201, note)

    def _list_time(self, request: Request) -> Response:
        """Time entries, filtered by ``chargeToType="..." and chargeToId in (...)``."""
        if self.time_denied:
            return _error(403, "Forbidden", "You do not have permission to Inquire Time Entry.")
        conditions = request.arg("conditions") or ""
        kind = re.search(r'chargeToType\s*=\s*"([^"]*)"', conditions)
        ids = re.search(r"chargeToId\s+in\s*\(([\d,\s]*)\)", conditions, re.IGNORECASE)
        if conditions and (kind is None or ids is None):
            return _error(400, "InvalidObject", f"unsupported conditions {conditions!r}")
        entries = list(self.time_entries)
        if kind is not None and ids is not None:
            wanted = {int(i) for i in ids.group(1).split(",") if i.strip()}
            entries = [
                e
                for e in entries
                if e["chargeToType"] == kind.group(1) and e["chargeToId"] in wanted
            ]
        return self._page(request, entries)

    def _page(self, request: Request, records: list[dict[str, Any]]) -> Response:
        """One page of ``records`` with ConnectWise's ``Link`` header (default page size 25)."""
        page = max(1, int(request.arg("page") or 1))
        chunk, more = self.page_of(records, page, int(request.arg("pageSize") or 25))
        headers = {}
        if more:
            query = {k: v[0] for k, v in request.query.items()} | {"page": page + 1}
            headers["Link"] = f'<{self.url}{request.path}?{urlencode(query)}>; rel="next"'
        return Response(200, chunk, headers)


def _error(
    status: int, code: str, message: str, field_name: str = "", detail: str = ""
) -> Response:
    """ConnectWise's ``ErrorResponseMessage`` (with one ``ValidationError`` when ``detail``)."""
    body: dict[str, Any] = {"code": code, "message": message}
    if detail:
        body["errors"] = [
            {"code": "InvalidValue", "message": detail, "resource": "ticket", "field": field_name}
        ]
    return Response(status, body)
