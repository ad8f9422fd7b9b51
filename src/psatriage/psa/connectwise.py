"""ConnectWise Manage (ConnectWise PSA): callbacks in, REST API 3.0 out.

A ticket's category is its board's *type > subtype > item*; the valid combinations are the board's
type/subtype/item associations. New tickets arrive as callbacks whose ``x-content-signature`` is
checked with a signing key fetched from ``Metadata.key_url``. Every API call goes to
``{origin}/{codebase}apis/3.0/`` through ``_connectwise_client`` (Basic auth, the ``clientId``
header, codebase discovery, paging, the tenant's call limits and the error mapping).
Where this module relies on a fact the PSA reference marks [UNSURE], a comment says so.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

import httpx

from psatriage.domain import (
    Category,
    LabeledTicket,
    NewTicket,
    Taxonomy,
    Ticket,
    TicketEvent,
)
from psatriage.errors import (
    AuthFailed,
    CategoryRejected,
    ConfigError,
    PermanentError,
    WebhookRejected,
)
from psatriage.psa._connectwise_client import ConnectWiseClient, json_of, raise_for
from psatriage.psa._connectwise_config import ConnectWiseConfig, origin_of
from psatriage.psa._connectwise_taxonomy import (
    LEVELS,
    association_paths,
    by_id,
    current_levels,
    fallback_paths,
)
from psatriage.psa._wire import lower_keys as _ci
from psatriage.psa._wire import webhook_object as _load_object
from psatriage.psa.base import AdapterConfig, PSAAdapter

OUR_NOTE_MARKER = "psatriage:"
_KEY_SUBDOMAINS = ("api-na", "api-eu", "api-au", "sandbox-na", "sandbox-eu", "sandbox-au")
KEY_HOSTS = frozenset(f"{sub}.myconnectwise.net" for sub in (*_KEY_SUBDOMAINS, "na", "eu", "au"))
_PROJECT_RECORD_TYPES = frozenset({"projectticket", "projectissue"})
_JSON = dict[str, Any]


class ConnectWiseAdapter(PSAAdapter[ConnectWiseConfig]):
    """ConnectWise Manage through its REST API 3.0 and callbacks."""

    kind: ClassVar[str] = "connectwise"
    Config: ClassVar[type[AdapterConfig]] = ConnectWiseConfig

    def __init__(self, tenant: str, config: ConnectWiseConfig, http: httpx.Client) -> None:
        super().__init__(tenant, config, http)
        self.client = ConnectWiseClient(tenant, config, http)
        self._keys: dict[str, bytes] = {}  # key_url -> SHA-256 of its signing key
        self._key_locks: dict[str, threading.Lock] = {}
        self._keys_lock = threading.Lock()

    # -- webhooks ---------------------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        signature = headers.get("x-content-signature")
        if not signature:
            raise WebhookRejected("the x-content-signature header is missing", status=401)
        metadata = _ci(_load_object(body).get("metadata"))
        key_url = metadata.get("key_url")
        if not isinstance(key_url, str) or not key_url:
            raise WebhookRejected("the body has no Metadata.key_url", status=400)
        if not key_url_allowed(key_url, self.config.trusted_key_origins):
            raise WebhookRejected("Metadata.key_url is not a trusted ConnectWise host", status=401)
        digest = hmac.new(self._signing_key(key_url), body, hashlib.sha256).digest()
        if not hmac.compare_digest(base64.b64encode(digest), signature.strip().encode()):
            raise WebhookRejected("the x-content-signature does not match the body", status=401)

    def parse(self, body: bytes) -> TicketEvent | None:
        payload = _load_object(body)
        if str(payload.get("type") or "").lower() != "ticket":
            return None
        entity = _entity(payload.get("entity"))
        ticket_id = _record_id(payload.get("id")) or _record_id(entity.get("id"))
        if ticket_id is None:
            raise WebhookRejected("the ticket callback has no ID (nor Entity.id)", status=400)
        action = str(payload.get("action") or "")
        message_id = payload.get("messageid")
        actor = payload.get("memberid")
        return TicketEvent(
            tenant=self.tenant,
            ticket_id=ticket_id,
            action=action,
            actionable=action.lower() == "added" and self._in_scope(entity),
            dedupe_key=str(message_id) if message_id else _body_hash(body),
            occurred_at=_timestamp(_ci(entity.get("_info")).get("dateentered")),
            actor=str(actor) if actor not in (None, "") else None,
        )

    def _in_scope(self, entity: Mapping[str, Any]) -> bool:
        # Type "ticket" covers project tickets too; recordType tells them apart.
        # A missing recordType is taken as a service ticket.
        if str(entity.get("recordtype") or "").lower() in _PROJECT_RECORD_TYPES:
            return False
        if not self.config.boards:
            return True
        # Without an Entity the board is unknown: only act on what is known to be in scope.
        board = _ci(entity.get("board"))
        wanted = {b.lower() for b in self.config.boards}
        return str(board.get("id")) in wanted or str(board.get("name") or "").lower() in wanted

    def _signing_key(self, key_url: str) -> bytes:
        """SHA-256 of the signing key, fetched once per key_url even by concurrent callbacks."""
        key = self._keys.get(key_url)
        if key is not None:
            return key
        with self._keys_lock:
            lock = self._key_locks.setdefault(key_url, threading.Lock())
        with lock:  # one fetch per key_url; other key_urls are not held up
            key = self._keys.get(key_url)
            if key is None:
                key = hashlib.sha256(self._fetch_signing_key(key_url).encode()).digest()
                self._keys[key_url] = key
            return key

    def _fetch_signing_key(self, key_url: str) -> str:
        # Outside the call limits: the webhook path must never wait on them (see the client).
        response = self.client.fetch_signing_key(key_url)
        try:
            raise_for(response, "the callback signing key")
            key = _ci(response.json()).get("signing_key")
        except (PermanentError, AuthFailed, ValueError) as exc:
            raise WebhookRejected("the callback signing key could not be fetched") from exc
        if not isinstance(key, str) or not key:
            raise WebhookRejected("the callback signing key response has no signing_key")
        return key

    # -- tickets ----------------------------------------------------------------------------

    def get_ticket(self, ticket_id: str) -> Ticket:
        number = _numeric(ticket_id, "ticket id")
        data = _ci(
            json_of(self.client.api("GET", f"service/tickets/{number}", what=f"ticket {number}"))
        )
        notes = self._notes(number)
        board, company = _ci(data.get("board")), _ci(data.get("company"))
        return Ticket(
            id=str(number),
            title=str(data.get("summary") or ""),
            description=_first_text(n for n in notes if n.get("detailDescriptionFlag") is True),
            initial_note=_first_text(
                n
                for n in notes
                if n.get("internalAnalysisFlag") is True
                and OUR_NOTE_MARKER not in str(n.get("text") or "")
            ),
            scope=str(board.get("id") or ""),
            scope_name=str(board.get("name") or ""),
            company_id=str(company["id"]) if company.get("id") is not None else None,
            company_name=str(company["name"]) if company.get("name") is not None else None,
            current=current_levels(data),
        )

    def _notes(self, number: int) -> list[_JSON]:
        """The ticket's notes, earliest first (by dateCreated, then id)."""
        notes = self.client.get_all(
            f"service/tickets/{number}/notes", what=f"notes of ticket {number}"
        )
        return sorted(notes, key=_note_order)

    def set_category(self, ticket: Ticket, category: Category) -> None:
        number = _numeric(ticket.id, "ticket id")
        ids = category.ids()
        if "type" not in ids:
            raise CategoryRejected(f"category {category.key!r} has no type")
        present = {value.level for value in ticket.current}
        operations: list[_JSON] = []
        for level in LEVELS:
            if level in ids:
                value = {"id": _numeric(ids[level], f"{level} id", CategoryRejected)}
                operations.append({"op": "replace", "path": level, "value": value})
            elif level in present:
                # [UNSURE] "remove" on a reference field is inferred from pyconnectwise's patch
                # maker; not confirmed against a live tenant.
                operations.append({"op": "remove", "path": level})
        self.client.api(
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
        self.client.api("POST", f"service/tickets/{number}/notes", json_body=note, what="the note")

    def find_note(self, ticket: Ticket, marker: str) -> bool:
        notes = self._notes(_numeric(ticket.id, "ticket id"))
        return any(marker in str(note.get("text") or "") for note in notes)

    # -- taxonomy ---------------------------------------------------------------------------

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

    def list_new_tickets(self, since: datetime) -> list[NewTicket]:
        """Service tickets entered at or after ``since`` (naive means UTC), oldest first.

        The reference's reconciliation query (``conditions=dateEntered > [...]``); project
        tickets and boards outside ``boards`` are left out, as ``parse`` leaves them out.
        """
        moment = since if since.tzinfo else since.replace(tzinfo=UTC)
        stamp = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        records = self.client.get_all(
            "service/tickets",
            params={
                "conditions": f"dateEntered >= [{stamp}]",
                "orderBy": "id asc",
                "fields": "id,recordType,board,_info",
            },
            what="new tickets",
        )
        found = []
        for record in records:
            entity = _ci(record)
            entered = _timestamp(_ci(entity.get("_info")).get("dateentered"))
            if entered is None or not self._in_scope(entity):
                continue
            created = entered.astimezone(UTC).replace(tzinfo=None)
            found.append(NewTicket(str(entity["id"]), created))
        return sorted(found, key=lambda t: (t.created_at, int(t.ticket_id)))

    def list_labeled_tickets(self, since: datetime, limit: int) -> list[LabeledTicket]:
        """Closed service tickets entered at or after ``since`` with a type, newest first.

        ``conditions=closedFlag=true and dateEntered >= [...]`` ordered ``dateEntered desc``,
        read page by page until ``limit`` categorized tickets are found. The description is the
        first discussion note, which costs one notes call per kept ticket (at most ``limit``).
        Project tickets and boards outside ``boards`` are left out, as ``parse`` leaves them out.
        [UNSURE] ``closedFlag`` is read as "closed/resolved" (statuses with the closed flag set).
        """
        moment = since if since.tzinfo else since.replace(tzinfo=UTC)
        stamp = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        params = {
            "conditions": f"closedFlag=true and dateEntered >= [{stamp}]",
            "orderBy": "dateEntered desc, id desc",
            "fields": "id,summary,recordType,board,company,type,subType,item,_info",
        }
        found: list[tuple[datetime, int, _JSON]] = []
        for record in self.client.pages("service/tickets", params=params, what="closed tickets"):
            entity = _ci(record)
            entered = _timestamp(_ci(entity.get("_info")).get("dateentered"))
            number = _record_id(entity.get("id"))
            if number is None or entered is None or entered.astimezone(UTC) < moment:
                continue
            if not current_levels(entity) or not self._in_scope(entity):
                continue  # no category: nothing to learn from
            found.append((entered.astimezone(UTC), int(number), entity))
            if len(found) >= limit:
                break
        found.sort(key=lambda item: (item[0], item[1]), reverse=True)
        labeled = []
        for _, ticket_number, record in found[:limit]:
            ticket = self._history_ticket(ticket_number, record)
            labeled.append(LabeledTicket(ticket=ticket, path=ticket.current))
        return labeled

    def _history_ticket(self, number: int, data: Mapping[str, Any]) -> Ticket:
        """The ``get_ticket`` shape from a list record and its notes (one call)."""
        notes = self._notes(number)
        board, company = _ci(data.get("board")), _ci(data.get("company"))
        return Ticket(
            id=str(number),
            title=str(data.get("summary") or ""),
            description=_first_text(n for n in notes if n.get("detailDescriptionFlag") is True),
            scope=str(board.get("id") or ""),
            scope_name=str(board.get("name") or ""),
            company_id=str(company["id"]) if company.get("id") is not None else None,
            company_name=str(company["name"]) if company.get("name") is not None else None,
            current=current_levels(data),
        )

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

    # -- set-up -----------------------------------------------------------------------------

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
        self, existing: list[_JSON], url: str, *, level: str, object_id: int
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
        created = self.client.api("POST", "system/callbacks", json_body=entry, what="the callback")
        return str(_ci(json_of(created)).get("id"))

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
        origin = self.config.base_url or f"https://{self.config.site.removeprefix('api-')}"
        codebase = self.config.codebase or "v4_6_release/"
        query = urlencode({"locale": "en_US", "routeTo": "ServiceFV", "recid": ticket_id})
        return f"{origin}/{codebase}ConnectWise.aspx?{query}"

    def check_connection(self) -> str:
        info = _ci(json_of(self.client.api("GET", "system/info", what="system info")))
        where = "cloud" if info.get("iscloud") else "on-premise"
        return f"ConnectWise {info.get('version') or 'unknown version'} ({where})"


# -- helpers ----------------------------------------------------------------------------------


def key_url_allowed(key_url: str, trusted_origins: Iterable[str] = ()) -> bool:
    """Whether a callback's ``Metadata.key_url`` may be fetched (a guard against SSRF).

    HTTPS on a known ConnectWise cloud host, or an origin the tenant configured; never a URL
    with credentials in it.
    """
    if any(c in key_url for c in "\\ \t\r\n"):
        return False
    try:
        url = httpx.URL(key_url)
    except httpx.InvalidURL:
        return False
    if url.userinfo or not url.host:
        return False
    if origin_of(url) in trusted_origins:
        return True
    return url.scheme == "https" and url.port in (None, 443) and url.host in KEY_HOSTS


def _entity(value: object) -> dict[str, Any]:
    """``Entity`` is the record serialized as a JSON string; it may be null, empty or unreadable."""
    if isinstance(value, str) and value.strip():
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return _ci(value)


def _record_id(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and value.strip().isdigit():
        return value.strip()
    return None


def _numeric(value: str, what: str, error: type[PermanentError] = PermanentError) -> int:
    if not value.isdigit():
        raise error(f"{what} {value!r} is not a ConnectWise id (a number)")
    return int(value)


def _body_hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _note_order(note: Mapping[str, Any]) -> tuple[bool, float, int]:
    created = _timestamp(note.get("dateCreated"))
    note_id = note.get("id")
    return (
        created is None,
        created.timestamp() if created else 0.0,
        note_id if isinstance(note_id, int) else 0,
    )


def _first_text(notes: Iterable[Mapping[str, Any]]) -> str:
    return next((str(note.get("text") or "") for note in notes), "")
