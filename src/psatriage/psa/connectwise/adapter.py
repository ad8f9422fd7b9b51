"""ConnectWise Manage (ConnectWise PSA): callbacks in, REST API 3.0 out.

A ticket's category is its board's *type > subtype > item*; the valid combinations are the board's
type/subtype/item associations (``taxonomy``). New tickets arrive as callbacks whose
``x-content-signature`` is checked with a signing key fetched from ``Metadata.key_url``
(``callbacks``). Every API call goes to ``{origin}/{codebase}apis/3.0/`` through ``client``.
Where this module relies on a fact the PSA reference marks [UNSURE], a comment says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

import httpx

from psatriage.domain import (
    Category,
    ClosedTicket,
    Facet,
    LabeledTicket,
    LevelValue,
    NewTicket,
    Taxonomy,
    Ticket,
    TicketEvent,
    TicketState,
)
from psatriage.errors import CategoryRejected, ConfigError, PermanentError, WebhookRejected
from psatriage.psa.base import TITLE_LEVEL, AdapterConfig, PSAAdapter
from psatriage.psa.connectwise import outcomes, time
from psatriage.psa.connectwise.callbacks import (
    SigningKeys,
    entity_of,
    key_url_allowed,
    ticket_snapshot,
)
from psatriage.psa.connectwise.client import ConnectWiseClient
from psatriage.psa.connectwise.config import ConnectWiseConfig
from psatriage.psa.connectwise.taxonomy import (
    LEVELS,
    association_paths,
    by_id,
    current_levels,
    fallback_paths,
)
from psatriage.psa.wire import (
    JSON,
    body_hash,
    lower_keys,
    numeric,
    record_id,
    timestamp,
    utc_text,
    webhook_object,
)

OUR_NOTE_MARKER = "psatriage:"
FIELD_LEVELS = ("board", "priority", "status")  # the ticket fields set beside the category
_PROJECT_RECORD_TYPES = frozenset({"projectticket", "projectissue"})


class ConnectWiseAdapter(PSAAdapter[ConnectWiseConfig]):
    """ConnectWise Manage through its REST API 3.0 and callbacks."""

    kind: ClassVar[str] = "connectwise"
    Config: ClassVar[type[AdapterConfig]] = ConnectWiseConfig
    ticket_fields: ClassVar[frozenset[str]] = frozenset({"priority", "routing", "status", "title"})
    routing_sets_scope: ClassVar[bool] = True  # the board owns the category tree

    def __init__(self, tenant: str, config: ConnectWiseConfig, http: httpx.Client) -> None:
        super().__init__(tenant, config, http)
        self.client = ConnectWiseClient(tenant, config, http)
        # Outside the call limits: the webhook path must never wait on them (see the client).
        self._keys = SigningKeys(self.client.fetch_signing_key, self.client.raise_for)

    # -- webhooks ---------------------------------------------------------------------------------

    def warm_up(self) -> None:
        self.client.codebase()

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        signature = headers.get("x-content-signature")
        if not signature:
            raise WebhookRejected("the x-content-signature header is missing", status=401)
        metadata = lower_keys(webhook_object(body).get("metadata"))
        key_url = metadata.get("key_url")
        if not isinstance(key_url, str) or not key_url:
            raise WebhookRejected("the body has no Metadata.key_url", status=400)
        if not key_url_allowed(key_url, self.config.trusted_key_origins):
            raise WebhookRejected("Metadata.key_url is not a trusted ConnectWise host", status=401)
        self._keys.check(key_url, body, signature)

    def verify_needs_io(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Only a trusted key URL whose key this process has not fetched yet needs the network."""
        if not headers.get("x-content-signature"):
            return False
        try:
            key_url = lower_keys(webhook_object(body).get("metadata")).get("key_url")
        except WebhookRejected:
            return False
        return (
            isinstance(key_url, str)
            and key_url_allowed(key_url, self.config.trusted_key_origins)
            and not self._keys.cached(key_url)
        )

    def parse(self, body: bytes) -> TicketEvent | None:
        payload = webhook_object(body)
        if str(payload.get("type") or "").lower() != "ticket":
            return None
        entity = entity_of(payload.get("entity"))
        ticket_id = record_id(payload.get("id")) or record_id(entity.get("id"))
        if ticket_id is None:
            raise WebhookRejected("the ticket callback has no ID (nor Entity.id)", status=400)
        action = str(payload.get("action") or "")
        message_id = payload.get("messageid")
        actor = payload.get("memberid")
        actionable = action.lower() == "added" and self._in_scope(entity)
        return TicketEvent(
            tenant=self.tenant,
            ticket_id=ticket_id,
            action=action,
            actionable=actionable,
            dedupe_key=str(message_id) if message_id else body_hash(body),
            occurred_at=timestamp(lower_keys(entity.get("_info")).get("dateentered")),
            actor=str(actor) if actor not in (None, "") else None,
            scope=record_id(lower_keys(entity.get("board")).get("id")),
            snapshot=ticket_snapshot(ticket_id, entity) if actionable else None,
        )

    def _in_scope(self, entity: Mapping[str, Any]) -> bool:
        # Type "ticket" covers project tickets too; recordType tells them apart.
        # A missing recordType is taken as a service ticket.
        if str(entity.get("recordtype") or "").lower() in _PROJECT_RECORD_TYPES:
            return False
        if not self.config.boards:
            return True
        # Without an Entity the board is unknown: only act on what is known to be in scope.
        board = lower_keys(entity.get("board"))
        wanted = {b.lower() for b in self.config.boards}
        return str(board.get("id")) in wanted or str(board.get("name") or "").lower() in wanted

    # -- tickets ----------------------------------------------------------------------------------

    def get_ticket(self, ticket_id: str) -> Ticket:
        number = _numeric(ticket_id, "ticket id")
        data = self.client.json("GET", f"service/tickets/{number}", what=f"ticket {number}")
        return self._as_ticket(number, lower_keys(data), with_initial_note=True)

    def ticket_from_snapshot(self, ticket_id: str, snapshot: Mapping[str, Any]) -> Ticket:
        """The ticket from an ``added`` callback's ``Entity`` (kept by ``parse``) and one read,
        its notes: the description lives in the first note, never in the record."""
        number = _numeric(ticket_id, "ticket id")
        if ticket_snapshot(str(number), snapshot) is None:  # not a snapshot of this ticket
            return self.get_ticket(ticket_id)
        return self._as_ticket(number, snapshot, with_initial_note=True)

    def _as_ticket(
        self, number: int, data: Mapping[str, Any], *, with_initial_note: bool
    ) -> Ticket:
        """The ticket from its record and its notes (one more call): the first discussion note is
        the description, the first internal one (not ours) the initial note."""
        notes = self._notes(number)
        board, company = lower_keys(data.get("board")), lower_keys(data.get("company"))
        initial = ""
        if with_initial_note:
            initial = _first_text(
                n
                for n in notes
                if n.get("internalAnalysisFlag") is True
                and OUR_NOTE_MARKER not in str(n.get("text") or "")
            )
        return Ticket(
            id=str(number),
            title=str(data.get("summary") or ""),
            description=_first_text(n for n in notes if n.get("detailDescriptionFlag") is True),
            initial_note=initial,
            scope=str(board.get("id") or ""),
            scope_name=str(board.get("name") or ""),
            company_id=str(company["id"]) if company.get("id") is not None else None,
            company_name=str(company["name"]) if company.get("name") is not None else None,
            current=current_levels(data),
        )

    def _notes(self, number: int) -> list[JSON]:
        """The ticket's notes, earliest first (by dateCreated, then id)."""
        notes = self.client.get_all(
            f"service/tickets/{number}/notes", what=f"notes of ticket {number}"
        )
        return sorted(notes, key=_note_order)

    def set_category(self, ticket: Ticket, category: Category) -> None:
        """One PATCH: the board first (a new board's tree and statuses are then checked), the
        priority and the status, then type, subtype and item; a path of fields alone leaves the
        category as it is."""
        number = _numeric(ticket.id, "ticket id")
        ids = category.ids()
        title = ids.pop(TITLE_LEVEL, None)
        unknown = sorted(set(ids) - {*LEVELS, *FIELD_LEVELS})
        if unknown:
            raise CategoryRejected(f"{', '.join(unknown)} is not a ConnectWise ticket field")
        tree = any(level in ids for level in LEVELS)
        if tree and "type" not in ids:
            raise CategoryRejected(f"category {category.key!r} has no type")
        present = {value.level for value in ticket.current}
        operations: list[JSON] = [
            {
                "op": "replace",
                "path": level,
                "value": {"id": _numeric(ids[level], f"{level} id", CategoryRejected)},
            }
            for level in FIELD_LEVELS
            if level in ids
        ]
        if title is not None:
            operations.append({"op": "replace", "path": "summary", "value": title[:100]})
        for level in LEVELS if tree else ():
            if level in ids:
                value = {"id": _numeric(ids[level], f"{level} id", CategoryRejected)}
                operations.append({"op": "replace", "path": level, "value": value})
            elif level in present:
                # [UNSURE] "remove" on a reference field is inferred from pyconnectwise's patch
                # maker; not confirmed against a live tenant.
                operations.append({"op": "remove", "path": level})
        self.client.call(
            "PATCH",
            f"service/tickets/{number}",
            json_body=operations,
            what=f"ticket {number}",
            rejected=CategoryRejected,
        )

    def add_note(self, ticket: Ticket, text: str) -> None:
        number = _numeric(ticket.id, "ticket id")
        note = {
            "text": text,
            "detailDescriptionFlag": False,
            "internalAnalysisFlag": True,
            "resolutionFlag": False,
            "processNotifications": False,
            "customerUpdatedFlag": False,
        }
        self.client.call("POST", f"service/tickets/{number}/notes", json_body=note, what="the note")

    def find_note(self, ticket: Ticket, marker: str) -> bool:
        notes = self._notes(_numeric(ticket.id, "ticket id"))
        return any(marker in str(note.get("text") or "") for note in notes)

    # -- taxonomy ---------------------------------------------------------------------------------

    def get_taxonomy(self, ticket: Ticket) -> Taxonomy:
        board = _numeric(ticket.scope, "board id")
        base = f"service/boards/{board}"
        types = by_id(self.client.get_all(f"{base}/types", what=f"types of board {board}"))
        subtypes = by_id(self.client.get_all(f"{base}/subtypes", what=f"subtypes of board {board}"))
        items = by_id(self.client.get_all(f"{base}/items", what=f"items of board {board}"))
        associations = self.client.get_all(
            f"{base}/typeSubTypeItemAssociations", what=f"associations of board {board}"
        )
        if associations:
            paths = association_paths(associations, types, subtypes, items)
        else:
            paths = fallback_paths(types, subtypes)
        leaves: dict[str, Category] = {}
        for path in paths:
            key = "/".join(value.id for value in path)
            leaves.setdefault(key, Category(key=key, path=path))
        return Taxonomy(
            scope=str(board),
            scope_name=ticket.scope_name,
            levels=LEVELS,
            leaves=tuple(leaves.values()),
            defaults=frozenset(("type", i) for i, t in types.items() if t.get("defaultFlag")),
        )

    def field_values(self, ticket: Ticket, field: str) -> Facet:
        """Priorities (``service/priorities``) or the active service boards (``list_scopes``)."""
        if field == "priority":
            records = self.client.get_all("service/priorities", what="priorities")
            records = sorted(records, key=lambda r: (r.get("sortOrder") or 0, r.get("id") or 0))
            options = tuple(
                LevelValue("priority", str(r["id"]), str(r.get("name") or r["id"]))
                for r in records
                if r.get("id") is not None
            )
            return Facet("priority", "Priority", options)
        if field == "routing":
            boards = self.list_scopes()
            return Facet("routing", "Board", tuple(LevelValue("board", i, n) for i, n in boards))
        if field == "status":  # a board's own statuses
            board = _numeric(ticket.scope, "board id")
            records = self.client.get_all(
                f"service/boards/{board}/statuses",
                params={"conditions": "inactive=false"},
                what=f"the statuses of board {board}",
            )
            records = sorted(records, key=lambda r: (r.get("sortOrder") or 0, r.get("id") or 0))
            options = tuple(
                LevelValue("status", str(r["id"]), str(r.get("name") or r["id"]))
                for r in records
                if r.get("id") is not None and r.get("inactive") is not True
            )
            return Facet("status", "Status", options)
        return super().field_values(ticket, field)

    def field_scope(self, ticket: Ticket, field: str) -> str:
        """Statuses belong to a board, so to the ticket's scope."""
        return f"status;{ticket.scope}" if field == "status" else field

    def list_scopes(self) -> list[tuple[str, str]]:
        """Active service boards (those in ``boards`` when it is set), as ``(id, name)``."""
        boards = self.client.get_all(
            "service/boards",
            params={"conditions": "inactiveFlag=false and projectFlag=false"},
            what="service boards",
        )
        wanted = {b.lower() for b in self.config.boards}
        return [
            (str(board["id"]), str(board.get("name") or ""))
            for board in boards
            if not wanted
            or str(board["id"]) in wanted
            or str(board.get("name") or "").lower() in wanted
        ]

    # -- polling and history ----------------------------------------------------------------------

    def list_new_tickets(self, since: datetime) -> list[NewTicket]:
        """Service tickets entered at or after ``since`` (naive means UTC), oldest first.

        The reference's reconciliation query (``conditions=dateEntered > [...]``); project
        tickets and boards outside ``boards`` are left out, as ``parse`` leaves them out.
        """
        records = self.client.get_all(
            "service/tickets",
            params={
                "conditions": f"dateEntered >= [{utc_text(since)}]",
                "orderBy": "id asc",
                "fields": "id,recordType,board,_info",
            },
            what="new tickets",
        )
        found = []
        for record in records:
            entity = lower_keys(record)
            entered = timestamp(lower_keys(entity.get("_info")).get("dateentered"))
            if entered is None or not self._in_scope(entity):
                continue
            created = entered.astimezone(UTC).replace(tzinfo=None)
            found.append(NewTicket(str(entity["id"]), created))
        return sorted(found, key=lambda t: (t.created_at, int(t.ticket_id)))

    def list_labeled_tickets(
        self, since: datetime, limit: int, *, until: datetime | None = None
    ) -> list[LabeledTicket]:
        """Closed service tickets entered at or after ``since`` (and before ``until``) with a
        type, newest first.

        ``conditions=closedFlag=true and dateEntered >= [...]`` ordered ``dateEntered desc``,
        read page by page until ``limit`` categorized tickets are found. The description is the
        first discussion note, which costs one notes call per kept ticket (at most ``limit``).
        Project tickets and boards outside ``boards`` are left out, as ``parse`` leaves them out.
        [UNSURE] ``closedFlag`` is read as "closed/resolved" (statuses with the closed flag set).
        """
        moment = since if since.tzinfo else since.replace(tzinfo=UTC)
        end = None if until is None else until if until.tzinfo else until.replace(tzinfo=UTC)
        conditions = f"closedFlag=true and dateEntered >= [{utc_text(since)}]"
        if until is not None:
            conditions += f" and dateEntered < [{utc_text(until)}]"
        params = {
            "conditions": conditions,
            "orderBy": "dateEntered desc, id desc",
            "fields": "id,summary,recordType,board,company,type,subType,item,priority,_info",
        }
        found: list[tuple[datetime, int, JSON]] = []
        for record in self.client.pages("service/tickets", params=params, what="closed tickets"):
            entity = lower_keys(record)
            entered = timestamp(lower_keys(entity.get("_info")).get("dateentered"))
            number = record_id(entity.get("id"))
            if number is None or entered is None or entered < moment:
                continue
            if end is not None and entered >= end:
                continue
            if not current_levels(entity) or not self._in_scope(entity):
                continue  # no category: nothing to learn from
            found.append((entered, int(number), entity))
            if len(found) >= limit:
                break
        found.sort(key=lambda item: (item[0], item[1]), reverse=True)
        labeled = []
        for _, ticket_number, record in found[:limit]:
            ticket = self._as_ticket(ticket_number, record, with_initial_note=False)
            fields = _stored_fields(record)
            labeled.append(LabeledTicket(ticket=ticket, path=ticket.current, fields=fields))
        return labeled

    # -- outcomes ---------------------------------------------------------------------------------

    state_batch_size: ClassVar[int] = outcomes.BATCH

    def read_ticket_states(self, ticket_ids: Sequence[str]) -> dict[str, TicketState]:
        """Many tickets per ``id in (...)`` list query (``outcomes``)."""
        return outcomes.ticket_states(self.client, ticket_ids)

    # -- reports ----------------------------------------------------------------------------------

    def list_closed_tickets(self, since: datetime, until: datetime) -> list[ClosedTicket]:
        """Service tickets closed in ``[since, until)`` (``time.closed_tickets``)."""
        return time.closed_tickets(self.client, since, until, self._in_scope)

    def time_spent(self, ticket_ids: Sequence[str]) -> dict[str, float]:
        """The ``actualHours`` of the time entries charged to each ticket (``time.hours``)."""
        return time.hours(self.client, ticket_ids)

    # -- set-up -----------------------------------------------------------------------------------

    def register_webhook(self, url: str) -> str:
        if '"' in url:
            raise PermanentError("the callback url must not contain a double quote")
        existing = [
            entry
            for entry in self.client.get_all(
                "system/callbacks", params={"conditions": f'url="{url}"'}, what="callbacks"
            )
            if entry.get("url") == url and str(entry.get("type") or "").lower() == "ticket"
        ]
        if not self.config.boards:
            return self._ensure_callback(existing, url, level="owner", object_id=1)
        ids = [
            self._ensure_callback(existing, url, level="board", object_id=board)
            for board in self._board_ids()
        ]
        return ",".join(ids)

    def _ensure_callback(
        self, existing: list[JSON], url: str, *, level: str, object_id: int
    ) -> str:
        for entry in existing:
            if (
                str(entry.get("level") or "").lower() == level
                and entry.get("objectId") == object_id
            ):
                return str(entry["id"])
        # django-connectwise registers with lower-case "owner"; the docs capitalise levels.
        entry = {
            "type": "ticket",
            "description": "psatriage: categorize new tickets",
            "url": url,
            "objectId": object_id,
            "level": level,
        }
        created = self.client.json("POST", "system/callbacks", json_body=entry, what="the callback")
        return str(lower_keys(created).get("id"))

    def _board_ids(self) -> list[int]:
        names = [b for b in self.config.boards if not b.isdigit()]
        known: dict[str, int] = {}
        if names:
            known = {
                str(board.get("name") or "").lower(): int(board["id"])
                for board in self.client.get_all("service/boards", what="service boards")
            }
        ids: list[int] = []
        for board in self.config.boards:
            if board.isdigit():
                ids.append(int(board))
            elif board.lower() in known:
                ids.append(known[board.lower()])
            else:
                raise ConfigError(
                    f"tenant {self.tenant!r}: connection.boards names {board!r}, which is not a "
                    "service board; use a board id or an existing board name"
                )
        return ids

    def ticket_url(self, ticket_id: str) -> str:
        """The service ticket in Manage's web client: the API host without its ``api-`` prefix
        (``api-na.myconnectwise.net`` → ``na.myconnectwise.net``), or ``base_url`` when set."""
        site = (self.config.site or "").removeprefix("api-")
        origin = self.config.base_url or f"https://{site}"
        codebase = self.config.codebase or "v4_6_release/"
        query = urlencode({"locale": "en_US", "routeTo": "ServiceFV", "recid": ticket_id})
        return f"{origin}/{codebase}ConnectWise.aspx?{query}"

    def check_connection(self) -> str:
        info = lower_keys(self.client.json("GET", "system/info", what="system info"))
        where = "cloud" if info.get("iscloud") else "on-premise"
        return f"ConnectWise {info.get('version') or 'unknown version'} ({where})"


def _numeric(value: str, what: str, error: type[PermanentError] = PermanentError) -> int:
    return numeric(value, what, psa="ConnectWise", error=error)


def _note_order(note: Mapping[str, Any]) -> tuple[bool, float, int]:
    created = timestamp(note.get("dateCreated"))
    note_id = note.get("id")
    return (
        created is None,
        created.timestamp() if created else 0.0,
        note_id if isinstance(note_id, int) else 0,
    )


def _first_text(notes: Iterable[Mapping[str, Any]]) -> str:
    return next((str(note.get("text") or "") for note in notes), "")


def _stored_fields(data: Mapping[str, Any]) -> dict[str, LevelValue]:
    """The priority and the board of a ticket record, as ``field_values`` names them."""
    found: dict[str, LevelValue] = {}
    for field, key, level in (("priority", "priority", "priority"), ("routing", "board", "board")):
        ref = lower_keys(data.get(key))
        if ref.get("id") is not None:
            found[field] = LevelValue(level, str(ref["id"]), str(ref.get("name") or ref["id"]))
    return found
