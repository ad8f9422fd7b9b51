"""Kaseya BMS: REST API v2 out; polling (or its undocumented webhooks) in.

A ticket's category is its *issue type › sub-issue type*; sub-issue types belong to one issue
type. The ticket type, queue and priority can be set beside it (``facets``). Calls go to a
regional host through ``client`` (the token, the ``{"Success", "Error", "Result"}`` envelope
checked even on HTTP 200, paging; BMS counts calls per endpoint, 1,500 an hour, and so does the
client-side limiter). Webhook bodies and signatures are not publicly documented, so polling
(``list_new_tickets``) is the dependable trigger and webhooks are verified against every
candidate signature scheme. Where this module relies on a fact the PSA reference marks [UNSURE],
a comment says so; ``docs/kaseya-bms.md`` lists them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from time import monotonic
from typing import Any, ClassVar

import httpx
import structlog

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
from psatriage.errors import CategoryRejected, PermanentError, WebhookRejected
from psatriage.psa.base import TITLE_LEVEL, AdapterConfig, PSAAdapter
from psatriage.psa.client import endpoint_of
from psatriage.psa.kaseya_bms import outcomes, time
from psatriage.psa.kaseya_bms.client import BMSClient
from psatriage.psa.kaseya_bms.config import FACETS, LEVELS, SCOPE, SCOPE_NAME, KaseyaBMSConfig
from psatriage.psa.kaseya_bms.webhooks import (
    SCHEMES,
    event_of,
    is_creation,
    load_body,
    match_scheme,
    register,
    slug,
    ticket_id_in,
)
from psatriage.psa.kaseya_bms.wire import plain_text
from psatriage.psa.wire import JSON, numeric, record_id, timestamp, utc_text
from psatriage.psa.wire import lower_keys as ci

STATUSES_SECONDS = 300.0  # the outcome sweep's closed statuses are looked up this often
FIELD_LEVELS = {"priority": "PriorityId", "routing": "QueueId"}  # ticket field -> BMS field
STATUS_FIELD = "StatusId"  # the ticket's status (a noise action may set it)


class KaseyaBMSAdapter(PSAAdapter[KaseyaBMSConfig]):
    """Kaseya BMS through its REST API v2; polling first, webhooks when configured."""

    ticket_fields: ClassVar[frozenset[str]] = frozenset({*FIELD_LEVELS, "status", "title"})
    field_facets: ClassVar[Mapping[str, str]] = FIELD_LEVELS
    kind: ClassVar[str] = "kaseya_bms"
    needs_token_cache: ClassVar[bool] = True
    default_trigger: ClassVar[str] = "poll"  # BMS webhooks are undocumented (docs/kaseya-bms.md)
    Config: ClassVar[type[AdapterConfig]] = KaseyaBMSConfig

    def __init__(self, tenant: str, config: KaseyaBMSConfig, http: httpx.Client) -> None:
        super().__init__(tenant, config, http)
        self.client = BMSClient(tenant, config, http)
        self.limits = self.client.limits
        self.signature_scheme: str | None = (
            None if config.signature_scheme == "auto" else config.signature_scheme
        )
        self._note_type: int | None = None
        self._note_type_lock = threading.Lock()
        self._problems: set[str] = set()
        self._closed: tuple[float, frozenset[str]] | None = None  # (when, closed status ids)

    # -- webhooks ---------------------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        secret = self.config.webhook_secret
        if secret is None:
            self._problems.add(
                "webhooks arrive but connection.webhook_secret is not set: they are refused"
            )
            raise WebhookRejected("no connection.webhook_secret is configured", status=401)
        signature = headers.get("signature") or headers.get("x-signature")
        if not signature:
            raise WebhookRejected("the Signature header is missing", status=401)
        pinned = self.config.signature_scheme
        schemes = list(SCHEMES) if pinned == "auto" else [pinned]
        scheme = match_scheme(secret.get_secret_value(), body, signature, schemes)
        previous = self.config.previous_webhook_secret()
        if scheme is None and previous is not None:
            scheme = match_scheme(previous.get_secret_value(), body, signature, schemes)
        if scheme is None:
            raise WebhookRejected("the Signature header does not match the body", status=401)
        if scheme != self.signature_scheme:
            self.signature_scheme = scheme
            # A fresh logger, not a cached one: this line is rare and tests capture it.
            structlog.get_logger(__name__).info(
                "BMS webhook signature scheme identified", tenant=self.tenant, scheme=scheme
            )

    def parse(self, body: bytes) -> TicketEvent | None:
        payload = load_body(body)
        entity, event = event_of(payload)
        if entity and "ticket" not in entity:
            return None  # about an account, a contact...: not ours
        ticket_id = ticket_id_in(payload, about_ticket="ticket" in f"{entity} {event}")
        if ticket_id is None:
            raise WebhookRejected("no ticket id found in the webhook body", status=400)
        name = slug(f"{entity} {event}") or "created"
        name = name if name.startswith("ticket") else "ticket" + name
        return TicketEvent(
            tenant=self.tenant,
            ticket_id=ticket_id,
            action=event or "created",
            actionable=is_creation(event),
            # [UNSURE] BMS's delivery id is unknown: a redelivery must dedupe with the original.
            dedupe_key=f"{ticket_id}:{name}",
        )

    # -- tickets ----------------------------------------------------------------------------

    def get_ticket(self, ticket_id: str) -> Ticket:
        number = _numeric(ticket_id, "ticket id")
        return self._as_ticket(number, self._read(number))

    def _as_ticket(self, number: int, data: Mapping[str, Any]) -> Ticket:
        account = data.get("accountid")
        return Ticket(
            id=str(number),
            title=str(data.get("title") or ""),
            description=plain_text(data.get("details")),
            scope=SCOPE,
            scope_name=SCOPE_NAME,
            company_id=str(account) if account is not None else None,
            company_name=str(data["accountname"]) if data.get("accountname") else None,
            current=self._current(data),
        )

    def _read(self, number: int) -> JSON:
        return ci(
            self.client.result("GET", f"servicedesk/tickets/{number}", what=f"ticket {number}")
        )

    def _current(self, data: Mapping[str, Any]) -> tuple[LevelValue, ...]:
        """Tree levels, then the tenant's facets, each only when the ticket has a value."""
        values = []
        for field in (*LEVELS, *self.config.facets):
            value = data.get(field.lower())
            if value is not None:
                name = data.get(field.lower().removesuffix("id") + "name") or ""
                values.append(LevelValue(field, str(value), str(name)))
        return tuple(values)

    def list_new_tickets(self, since: datetime) -> list[NewTicket]:
        """Tickets created at or after ``since`` (naive means UTC), oldest first.

        ``Filter.CreatedOnFrom`` with every page; the window is checked again on our side, with
        ``CreatedOn`` read in ``api_timezone`` when it has no offset.
        """
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
        found: dict[str, datetime] = {}
        params = {"Filter.CreatedOnFrom": utc_text(since)}
        for record in self.client.paged("servicedesk/tickets", params=params, what="new tickets"):
            ticket_id = record_id(record.get("id") or record.get("ticketid"))
            if ticket_id is None:
                continue
            # A ticket without a readable CreatedOn passed BMS's own filter: keep it at ``since``.
            created = timestamp(record.get("createdon"), self.config.zone) or since
            if created >= since:
                found[ticket_id] = created
        ordered = sorted(found.items(), key=lambda item: (item[1], int(item[0])))
        # created_at in naive UTC, as the ledger stores it (and as ConnectWise's adapter gives it)
        return [
            NewTicket(ticket_id, created.astimezone(UTC).replace(tzinfo=None))
            for ticket_id, created in ordered
        ]

    def list_labeled_tickets(
        self, since: datetime, limit: int, *, until: datetime | None = None
    ) -> list[LabeledTicket]:
        """Closed tickets created at or after ``since`` (and before ``until``) with an issue
        type, newest first.

        The ticket list with ``Filter.CreatedOnFrom`` and a status filter (the statuses whose
        name says closed, completed or resolved), every page; then each ticket is read once,
        newest first, until ``limit`` categorized ones are found: the list row has neither the
        details nor (in the spec) the issue type, so this costs one call per ticket read, all
        through the per-endpoint limiter. [UNSURE] the ``Filter.StatusIds`` parameter name and
        telling closed statuses by name (BMS publishes no closed flag); both are checked again
        on our side.
        """
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
        end = None if until is None else until if until.tzinfo else until.replace(tzinfo=UTC)
        statuses = self.client.lookup("system/statuses/lookup", "ticket statuses")
        closed = {
            str(record.get("id")): str(record.get("name") or "").casefold()
            for record in statuses
            if _closed_name(str(record.get("name") or ""))
        }
        if not closed:
            raise PermanentError("Kaseya BMS lists no closed, completed or resolved status")
        params = {"Filter.CreatedOnFrom": utc_text(since), "Filter.StatusIds": ",".join(closed)}
        rows: dict[str, datetime] = {}
        pages = self.client.paged("servicedesk/tickets", params=params, what="closed tickets")
        for record in pages:
            ticket_id = record_id(record.get("id") or record.get("ticketid"))
            created = timestamp(record.get("createdon"), self.config.zone)
            if ticket_id is None or created is None or created < since:
                continue
            if end is not None and created >= end:
                continue  # read no ticket outside the period
            if not _row_closed(record, closed):
                continue
            rows[ticket_id] = created
        newest = sorted(rows.items(), key=lambda item: (item[1], int(item[0])), reverse=True)
        labeled: list[LabeledTicket] = []
        for ticket_id, _ in newest:
            if len(labeled) >= limit:
                break
            data = self._read(int(ticket_id))
            if str(data.get("statusid")) not in closed or data.get("issuetypeid") is None:
                continue  # reopened since, or never categorized: nothing to learn from
            ticket = self._as_ticket(int(ticket_id), data)
            path = tuple(v for v in ticket.current if v.level in LEVELS)
            labeled.append(LabeledTicket(ticket=ticket, path=path, fields=_stored_fields(data)))
        return labeled

    def list_closed_tickets(self, since: datetime, until: datetime) -> list[ClosedTicket]:
        """Tickets completed in ``[since, until)`` (``time.closed_tickets``)."""
        return time.closed_tickets(self.client, since, until, self.config.zone)

    def time_spent(self, ticket_ids: Sequence[str]) -> dict[str, float]:
        """The ``Timespent`` of each ticket's time logs (``time.hours``)."""
        return time.hours(self.client, ticket_ids)

    def set_category(self, ticket: Ticket, category: Category) -> None:
        number = _numeric(ticket.id, "ticket id")
        wanted: dict[str, int | str | None] = {}
        for value in category.path:
            if value.level == TITLE_LEVEL:
                wanted["Title"] = value.id
                continue
            if value.level not in (*LEVELS, *FACETS, STATUS_FIELD):
                raise CategoryRejected(f"{value.level!r} is not a Kaseya BMS ticket field")
            wanted[value.level] = _numeric(value.id, f"{value.level} id", CategoryRejected)
        tree = any(level in wanted for level in LEVELS)
        if (tree and "IssueTypeId" not in wanted) or not wanted:
            raise CategoryRejected(f"category {category.key!r} has no issue type")
        present = {v.level for v in ticket.current}
        if tree and "SubIssueTypeId" not in wanted and "SubIssueTypeId" in present:
            wanted["SubIssueTypeId"] = None  # [UNSURE] clearing with null, not "remove"
        operations = [{"op": "replace", "path": f"/{k}", "value": v} for k, v in wanted.items()]
        saved = self.client.result(
            "PATCH",
            f"servicedesk/tickets/{number}",
            json_body=operations,
            what=f"the category of ticket {number}",
            rejected=CategoryRejected,
        )
        self._confirm(number, wanted, ci(saved))

    def _confirm(self, number: int, wanted: Mapping[str, int | str | None], saved: JSON) -> None:
        """Check the ticket as saved (the PATCH answer, else a re-read) has what was written."""
        if saved.get("id") is None:
            saved = self._read(number)
        missed = [f"{k}={v}" for k, v in wanted.items() if saved.get(k.lower()) != v]
        if missed:
            raise CategoryRejected(
                f"Kaseya BMS did not keep {', '.join(missed)} on ticket {number}"
            )

    def add_note(self, ticket: Ticket, text: str) -> None:
        number = _numeric(ticket.id, "ticket id")
        note = {
            "Details": text,
            "IsInternal": True,
            "NoteDate": utc_text(datetime.now(UTC)),
            "TypeId": self._note_type_id(),
        }
        self.client.call(
            "POST", f"servicedesk/tickets/{number}/notes", json_body=note, what="the note"
        )

    def find_note(self, ticket: Ticket, marker: str) -> bool:
        number = _numeric(ticket.id, "ticket id")
        notes = self.client.paged(f"servicedesk/tickets/{number}/notes", what=f"notes of {number}")
        return any(marker in str(note.get("details") or "") for note in notes)

    def _note_type_id(self) -> int:
        """The configured note type's id, resolved by name through the lookup once."""
        wanted = self.config.note_type
        if wanted is not None and wanted.isdigit():
            return int(wanted)
        with self._note_type_lock:
            if self._note_type is None:
                table = self.config.note_type_table
                try:
                    types = [
                        t
                        for t in self.client.lookup(f"system/lookup/{table}", "note types")
                        if _active(t)
                    ]
                except PermanentError as exc:
                    raise PermanentError(
                        f"note types could not be read ({exc}); set connection.note_type to the "
                        "note type id, or connection.note_type_table to the right lookup"
                    ) from exc
                self._note_type = _pick_note_type(types, wanted)
            return self._note_type

    # -- taxonomy ---------------------------------------------------------------------------

    def get_taxonomy(self, ticket: Ticket) -> Taxonomy:
        leaves: list[Category] = []
        for issue in self.client.lookup("system/issuetypes/lookup", "issue types"):
            if not _active(issue) or record_id(issue.get("id")) is None:
                continue
            top = LevelValue("IssueTypeId", str(issue["id"]), str(issue.get("name") or ""))
            subs = self.client.lookup(
                f"system/issuetypes/{top.id}/issuesubtypes/lookup", f"sub-issue types of {top.id}"
            )
            paths: list[tuple[LevelValue, ...]] = [
                (top, LevelValue("SubIssueTypeId", str(sub["id"]), str(sub.get("name") or "")))
                for sub in subs
                if record_id(sub.get("id")) is not None and _active(sub)
            ]
            for path in paths or [(top,)]:
                leaves.append(Category(key="/".join(v.id for v in path), path=path))
        return Taxonomy(
            scope=SCOPE,
            scope_name=SCOPE_NAME,
            levels=LEVELS,
            leaves=tuple({leaf.key: leaf for leaf in leaves}.values()),
            facets=tuple(self._facet(name) for name in self.config.facets),
        )

    def _facet(self, name: str) -> Facet:
        path = {
            "TypeId": f"system/lookup/{self.config.ticket_type_table}",
            "QueueId": "system/queues/lookup",
            "PriorityId": "system/priorities/lookup",
        }[name]
        options = tuple(
            LevelValue(name, str(record["id"]), str(record.get("name") or ""))
            for record in self.client.lookup(path, FACETS[name].lower() + "s")
            if record_id(record.get("id")) is not None and _active(record)
        )
        return Facet(name=name, label=FACETS[name], options=options)

    def field_values(self, ticket: Ticket, field: str) -> Facet:
        """The active priorities (``PriorityId``), queues (``QueueId``) or statuses
        (``StatusId``, from ``system/statuses/lookup``)."""
        if field == "status":
            records = self.client.lookup("system/statuses/lookup", "ticket statuses")
            options = tuple(
                LevelValue(STATUS_FIELD, str(r["id"]), str(r.get("name") or r["id"]))
                for r in records
                if record_id(r.get("id")) is not None and r.get("isactive") is not False
            )
            return Facet("status", "Status", options)
        name = FIELD_LEVELS.get(field)
        if name is None:
            return super().field_values(ticket, field)
        return replace(self._facet(name), name=field)

    def list_scopes(self) -> list[tuple[str, str]]:
        return [(SCOPE, SCOPE_NAME)]

    # -- outcomes ---------------------------------------------------------------------------

    state_endpoint: ClassVar[str] = endpoint_of("GET", "v2/servicedesk/tickets/0")

    def read_ticket_states(self, ticket_ids: Sequence[str]) -> dict[str, TicketState]:
        """One read per ticket (``outcomes``)."""
        return outcomes.ticket_states(
            ticket_ids,
            read=self._read,
            as_ticket=self._as_ticket,
            closed_statuses=self._closed_statuses,
            zone=self.config.zone,
        )

    def _closed_statuses(self) -> frozenset[str]:
        """The ids of the closed statuses, looked up at most every ``STATUSES_SECONDS``."""
        now = monotonic()
        cached = self._closed
        if cached is not None and now - cached[0] < STATUSES_SECONDS:
            return cached[1]
        statuses = self.client.lookup("system/statuses/lookup", "ticket statuses")
        closed = frozenset(
            str(s.get("id")) for s in statuses if _closed_name(str(s.get("name") or ""))
        )
        self._closed = (now, closed)
        return closed

    # -- set-up -----------------------------------------------------------------------------

    def register_webhook(self, url: str) -> str:
        """Create (or update) the webhook that calls ``url`` on the ticket-created event."""
        return register(self.client, self.config, url, name=f"psatriage {self.tenant}")

    def problems(self) -> list[str]:
        return sorted(self._problems)

    def check_connection(self) -> str:
        issue_types = self.client.lookup("system/issuetypes/lookup", "issue types")
        host = httpx.URL(self.config.origin).host
        return f"Kaseya BMS at {host} ({len(issue_types)} issue types)"


# -- helpers ----------------------------------------------------------------------------------


def _pick_note_type(types: list[JSON], wanted: str | None) -> int:
    usable = [t for t in types if record_id(t.get("id")) is not None]
    if wanted is not None:
        match = next(
            (t for t in usable if str(t.get("name") or "").lower() == wanted.lower()), None
        )
        if match is None:
            names = ", ".join(str(t.get("name")) for t in usable) or "none"
            raise PermanentError(
                f"Kaseya BMS has no active note type named {wanted!r} (it has: {names}); "
                "fix connection.note_type"
            )
        return int(match["id"])
    chosen = next((t for t in usable if t.get("isdefault") is True), usable[0] if usable else None)
    if chosen is None:
        raise PermanentError("Kaseya BMS lists no active note type; set connection.note_type")
    return int(chosen["id"])


_CLOSED_WORDS = ("closed", "complete", "resolved")


def _closed_name(name: str) -> bool:
    return any(word in name.casefold() for word in _CLOSED_WORDS)


def _row_closed(row: Mapping[str, Any], closed: Mapping[str, str]) -> bool:
    """Whether a list row is in a closed status, as far as the row tells (else: trust BMS)."""
    if row.get("statusid") is not None:
        return str(row["statusid"]) in closed
    if row.get("statusname"):
        return _closed_name(str(row["statusname"]))
    return True


def _active(record: Mapping[str, Any]) -> bool:
    return record.get("isactive") is not False


def _numeric(value: str, what: str, error: type[PermanentError] = PermanentError) -> int:
    return numeric(value, what, psa="Kaseya BMS", error=error)


def _stored_fields(data: Mapping[str, Any]) -> dict[str, LevelValue]:
    """The priority and the queue of a ticket record, as ``field_values`` names them."""
    found: dict[str, LevelValue] = {}
    for field, level in FIELD_LEVELS.items():
        value = data.get(level.lower())
        if value is not None:
            name = data.get(level.lower().removesuffix("id") + "name") or value
            found[field] = LevelValue(level, str(value), str(name))
    return found
