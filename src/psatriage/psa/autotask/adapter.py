"""Datto PSA (Autotask): ticket webhooks in, REST API out.

A ticket's category is its *issue type › sub-issue type*, two picklists of the ``Tickets``
entity: each sub-issue type names its issue type in ``parentValue``. Tenants may also let the model
set the queue, the ticket category or the priority (facets), each checked against its picklist.
Autotask has one tree per database, so the taxonomy scope is the constant ``"tickets"``.

New tickets arrive as ``TicketWebhooks`` deliveries signed with ``X-Hook-Signature``; the body is
thin, so the ticket is always read by id. Our own writes cause ``Update`` deliveries, which are
never acted on; the webhook excludes our API user and ``parse`` ignores events it caused anyway.
HTTP details (zone discovery, headers, the request threshold, paging, error bodies) are in
``client``, the signature check in ``hooks``, the picklists in ``picklists`` and the webhook's
registration in ``webhooks``. Where this module relies on a fact the PSA reference marks [UNSURE],
a comment says so.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

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
from psatriage.errors import (
    AuthFailed,
    CategoryRejected,
    ConfigError,
    NotFound,
    PermanentError,
    TransientError,
    WebhookRejected,
)
from psatriage.psa.autotask import history, outcomes, time, webhooks
from psatriage.psa.autotask.client import AutotaskClient
from psatriage.psa.autotask.config import AutotaskConfig
from psatriage.psa.autotask.hooks import SIGNATURE_HEADER, signature_matches, text_of
from psatriage.psa.autotask.picklists import (
    LEVELS,
    SCOPE,
    SCOPE_NAME,
    Picklists,
    check_active,
    find_pick,
    label_of,
    note_picks,
    parse_picklists,
    taxonomy_from,
)
from psatriage.psa.base import TITLE_LEVEL, AdapterConfig, PSAAdapter
from psatriage.psa.wire import JSON, body_hash, numeric, record_id, timestamp
from psatriage.psa.wire import lower_keys as ci
from psatriage.psa.wire import webhook_object as load_object

log = structlog.get_logger(__name__)

NOTE_MAX_CHARS = 32000
FIELD_LEVELS = {"priority": "priority", "routing": "queueID"}  # ticket field -> picklist
FIELD_LABELS = {"priority": "Priority", "routing": "Queue", "status": "Status"}
STATUS = "status"  # the status picklist: what a noise action may set


class AutotaskAdapter(PSAAdapter[AutotaskConfig]):
    """Datto PSA (Autotask) through its REST API and ticket webhooks."""

    ticket_fields: ClassVar[frozenset[str]] = frozenset({*FIELD_LEVELS, STATUS, "title"})
    field_facets: ClassVar[Mapping[str, str]] = FIELD_LEVELS
    kind: ClassVar[str] = "autotask"
    Config: ClassVar[type[AdapterConfig]] = AutotaskConfig

    def __init__(self, tenant: str, config: AutotaskConfig, http: httpx.Client) -> None:
        super().__init__(tenant, config, http)
        self.client = AutotaskClient(tenant, config, http)
        self._lock = threading.Lock()
        self._picklists: Picklists | None = None
        self._note_values: tuple[int, int] | None = None
        self._companies: dict[str, str | None] = {}
        self._resource: str | None = (
            str(config.api_resource_id) if config.api_resource_id is not None else None
        )
        self._resource_lookup_failed = False
        self._problems: list[str] = []

    def problems(self) -> list[str]:
        """Tenant problems an operator must fix (a deactivated webhook), for ``/readyz``."""
        with self._lock:
            return list(self._problems)

    # -- webhooks ---------------------------------------------------------------------------

    def warm_up(self) -> None:
        _ = self.client.zone  # discovered once, unless configured

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        signature = headers.get(SIGNATURE_HEADER)
        if not signature:
            raise WebhookRejected("the X-Hook-Signature header is missing", status=401)
        secrets = [self.config.webhook_secret, self.config.previous_webhook_secret()]
        if not any(
            signature_matches(s.get_secret_value().encode(), body, signature) for s in secrets if s
        ):
            raise WebhookRejected("the X-Hook-Signature does not match the body", status=401)

    def parse(self, body: bytes) -> TicketEvent | None:
        payload = load_object(body)
        action = text_of(payload.get("action"))
        if action.lower() == "deactivated":
            return self._deactivated(payload, body)
        if not action and payload.get("id") is None:
            return None
        entity = text_of(payload.get("entitytype")).lower()
        if entity and entity not in {"ticket", "tickets"}:
            return None
        ticket_id = record_id(payload.get("id"))
        if ticket_id is None:
            raise WebhookRejected("the ticket delivery has no Id", status=400)
        actor = record_id(payload.get("personid"))  # PersonID or PersonId [UNSURE which]
        ours = self._resource is not None and actor == self._resource
        if ours:
            log.info("ignoring an event caused by our own API user", ticket=ticket_id)
        return TicketEvent(
            tenant=self.tenant,
            ticket_id=ticket_id,
            action=action,
            actionable=action.lower() == "create" and not ours,
            dedupe_key=_dedupe_key(payload, ticket_id, body),
            occurred_at=timestamp(payload.get("eventtime")),
            actor=actor,
        )

    def _deactivated(self, payload: Mapping[str, Any], body: bytes) -> TicketEvent:
        """Autotask gave up on the webhook (25 failed events, or deleted): say so loudly."""
        guid = text_of(payload.get("guid"))
        problem = (
            f"Autotask deactivated the ticket webhook {guid}".rstrip()
            + ": new tickets no longer arrive; run 'psatriage webhooks register' for this tenant"
        )
        log.error("autotask webhook deactivated", tenant=self.tenant, guid=guid, problem=problem)
        with self._lock:
            if problem not in self._problems:
                self._problems.append(problem)
        return TicketEvent(
            tenant=self.tenant,
            ticket_id=record_id(payload.get("id")) or "",
            action="Deactivated",
            actionable=False,
            dedupe_key=f"deactivated:{guid}:{text_of(payload.get('eventtime'))}"
            if guid
            else body_hash(body),
            occurred_at=timestamp(payload.get("eventtime")),
        )

    # -- tickets ----------------------------------------------------------------------------

    def get_ticket(self, ticket_id: str) -> Ticket:
        number = _numeric(ticket_id, "ticket id")
        data = self.client.json("GET", f"Tickets/{number}", what=f"ticket {number}")
        item = ci(data).get("item")
        if not isinstance(item, dict):
            raise NotFound(f"ticket {number} not found")
        self._learn_our_resource()
        return self._as_ticket(number, ci(item))

    def _as_ticket(self, number: int, ticket: Mapping[str, Any]) -> Ticket:
        company_id = record_id(ticket.get("companyid"))
        return Ticket(
            id=str(number),
            title=text_of(ticket.get("title")),
            description=text_of(ticket.get("description")),
            scope=SCOPE,
            scope_name=SCOPE_NAME,
            company_id=company_id,
            company_name=self._company_name(company_id),
            current=self._current(ticket),
        )

    def _current(self, ticket: Mapping[str, Any]) -> tuple[LevelValue, ...]:
        """Issue type, sub-issue type, then the facet fields (only once an issue type is set).

        Facets are left out of an uncategorized ticket: Autotask fills queue and priority on
        every new ticket, and that must not read as "a person already categorized it".
        """
        issue = record_id(ticket.get("issuetype"))
        if issue is None:
            return ()
        lists = self._lists()
        values = [LevelValue("issueType", issue, label_of(lists, "issueType", issue))]
        for level in ("subIssueType", *self.config.facets):
            value = record_id(ticket.get(level.lower()))
            if value is not None:
                values.append(LevelValue(level, value, label_of(lists, level, value)))
        return tuple(values)

    def _company_name(self, company_id: str | None) -> str | None:
        """The company's name (for per-company overrides by name), read once per company."""
        if company_id is None:
            return None
        with self._lock:
            if company_id in self._companies:
                return self._companies[company_id]
        try:
            data = self.client.json("GET", f"Companies/{company_id}", what=f"company {company_id}")
            name: str | None = text_of(ci(ci(data).get("item")).get("companyname")) or None
        except (PermanentError, AuthFailed) as exc:
            log.warning("company name unavailable", company=company_id, error=str(exc))
            name = None
        with self._lock:
            self._companies[company_id] = name
        return name

    def set_category(self, ticket: Ticket, category: Category) -> None:
        """One PATCH: issue type, sub-issue type, the facets and the ticket fields (priority,
        queueID, status); a path of fields alone leaves the category as it is."""
        number = _numeric(ticket.id, "ticket id")
        ids = category.ids()
        title = ids.pop(TITLE_LEVEL, None)
        written = (*LEVELS, *self.config.facets, *FIELD_LEVELS.values(), STATUS)
        unknown = sorted(set(ids) - set(written))
        tree = any(level in ids for level in LEVELS)
        if unknown or (tree and "issueType" not in ids) or not (ids or title):
            raise CategoryRejected(
                f"category {category.key!r} has no issue type or sets fields this tenant does "
                f"not categorize ({', '.join(unknown) or 'none'})"
            )
        lists = self._lists()
        for level, value in ids.items():
            check_active(lists, level, value)
        body: JSON = {"id": number}
        for level in dict.fromkeys(written):
            if level in ids:
                body[level] = _numeric(ids[level], f"{level} value", CategoryRejected)
        if title is not None:
            body["title"] = title[:255]
        if tree:
            self._check_tree(ticket, ids, body)
        self.client.call(
            "PATCH",
            "Tickets",
            json_body=body,
            what=f"the category of ticket {number}",
            rejected=CategoryRejected,
        )

    def _check_tree(self, ticket: Ticket, ids: Mapping[str, str], body: JSON) -> None:
        """A sub-issue type only under its own issue type; one no longer wanted is cleared."""
        lists = self._lists()
        issue, sub = ids["issueType"], ids.get("subIssueType")
        if sub is not None:
            parent = find_pick(lists, "subIssueType", sub)
            if parent is not None and parent.parent != issue:
                raise CategoryRejected(
                    f"sub-issue type {sub} belongs to issue type {parent.parent or 'none'}, "
                    f"not {issue}; it is never written under another issue type"
                )
        if sub is None and any(v.level == "subIssueType" for v in ticket.current):
            body["subIssueType"] = None

    def add_note(self, ticket: Ticket, text: str) -> None:
        number = _numeric(ticket.id, "ticket id")
        publish, note_type = self._note_picks()
        note = {
            "ticketID": number,
            "title": self.config.note_title,
            "description": text[:NOTE_MAX_CHARS],
            "noteType": note_type,
            "publish": publish,
        }
        self.client.call("POST", f"Tickets/{number}/Notes", json_body=note, what="the note")

    def find_note(self, ticket: Ticket, marker: str) -> bool:
        number = _numeric(ticket.id, "ticket id")
        what = f"notes of ticket {number}"
        notes = self.client.pages(
            self.client.json("GET", f"Tickets/{number}/Notes", what=what), what
        )
        return any(marker in text_of(ci(note).get("description")) for note in notes)

    def _note_picks(self) -> tuple[int, int]:
        """``(publish, noteType)`` for our notes, resolved by label once per process."""
        if self._note_values is None:
            fields = self.client.json(
                "GET", "TicketNotes/entityInformation/fields", what="the note fields"
            )
            self._note_values = note_picks(parse_picklists(fields), self.config, self.tenant)
        return self._note_values

    # -- taxonomy ---------------------------------------------------------------------------

    def get_taxonomy(self, ticket: Ticket) -> Taxonomy:
        return taxonomy_from(self._lists(refresh=True), self.config.facets)

    def field_values(self, ticket: Ticket, field: str) -> Facet:
        """The active values of the ``priority``, ``queueID`` or ``status`` picklist."""
        level = STATUS if field == STATUS else FIELD_LEVELS.get(field)
        if level is None:
            return super().field_values(ticket, field)
        picks = self._lists(refresh=True).get(level, ())
        options = tuple(LevelValue(level, p.id, p.label) for p in picks if p.active)
        return Facet(field, FIELD_LABELS[field], options)

    def list_scopes(self) -> list[tuple[str, str]]:
        """Autotask has one category tree per database."""
        return [(SCOPE, SCOPE_NAME)]

    def _lists(self, *, refresh: bool = False) -> Picklists:
        """The ticket picklists: read fresh for a taxonomy, else the last ones read."""
        with self._lock:
            cached = self._picklists
        if cached is not None and not refresh:
            return cached
        fields = self.client.json(
            "GET", "Tickets/entityInformation/fields", what="the ticket fields"
        )
        lists = parse_picklists(fields)
        with self._lock:
            self._picklists = lists
        return lists

    # -- polling ----------------------------------------------------------------------------

    def list_new_tickets(self, since: datetime) -> list[NewTicket]:
        return history.new_tickets(self.client, since)

    def list_labeled_tickets(
        self, since: datetime, limit: int, *, until: datetime | None = None
    ) -> list[LabeledTicket]:
        """Completed tickets created at or after ``since`` with an issue type, newest first (see
        ``history.completed``); the company name costs one cached call per company."""
        labeled = []
        for number, entry in history.completed(
            self.client, self.config.facets, since, limit, until
        ):
            ticket = self._as_ticket(number, entry)
            path = tuple(v for v in ticket.current if v.level in LEVELS)
            fields = self._stored_fields(entry)
            labeled.append(LabeledTicket(ticket=ticket, path=path, fields=fields))
        return labeled

    def _stored_fields(self, entry: Mapping[str, Any]) -> dict[str, LevelValue]:
        """The priority and the queue of a ticket record, as ``field_values`` names them."""
        lists = self._lists()
        found: dict[str, LevelValue] = {}
        for field, level in FIELD_LEVELS.items():
            value = record_id(entry.get(level.lower()))
            if value is not None:
                found[field] = LevelValue(level, value, label_of(lists, level, value))
        return found

    # -- outcomes ---------------------------------------------------------------------------

    state_batch_size: ClassVar[int] = outcomes.BATCH

    def read_ticket_states(self, ticket_ids: Sequence[str]) -> dict[str, TicketState]:
        """Many tickets per ``Tickets/query`` (``outcomes``)."""
        for ticket_id in ticket_ids:  # checked before any call
            _numeric(ticket_id, "ticket id")
        self._learn_our_resource()
        return outcomes.ticket_states(
            self.client,
            ticket_ids,
            facets=self.config.facets,
            current=self._current,
            ours=self._resource,
        )

    # -- reports ----------------------------------------------------------------------------

    def list_closed_tickets(self, since: datetime, until: datetime) -> list[ClosedTicket]:
        """Tickets completed in ``[since, until)`` (``time.closed_tickets``)."""
        return time.closed_tickets(
            self.client,
            since,
            until,
            lambda entry: tuple(v for v in self._current(entry) if v.level in LEVELS),
        )

    def time_spent(self, ticket_ids: Sequence[str]) -> dict[str, float]:
        """The ``hoursWorked`` of each ticket's ``TimeEntries`` (``time.hours``)."""
        return time.hours(self.client, ticket_ids)

    # -- set-up -----------------------------------------------------------------------------

    def register_webhook(self, url: str) -> str:
        hook_id = webhooks.register(self.client, self.config, url, int(self.resource_id()))
        with self._lock:
            self._problems.clear()
        return hook_id

    def resource_id(self) -> str:
        """Our API user's resource id: configured, or found once by user name (then e-mail)."""
        with self._lock:
            if self._resource is not None:
                return self._resource
        # [UNSURE] that an API user's Resources.userName equals its UserName header; the e-mail
        # is tried next, and connection.api_resource_id settles it.
        for field in ("userName", "email"):
            found = self.client.query(
                "Resources",
                [{"op": "eq", "field": field, "value": self.config.username}],
                what="the API user's resource",
            )
            ids = [record_id(ci(r).get("id")) for r in found]
            resource = next((i for i in ids if i is not None), None)
            if resource is not None:
                with self._lock:
                    self._resource = resource
                return resource
        raise ConfigError(
            f"tenant {self.tenant!r}, key 'connection.username': no Autotask resource has the "
            f"user name {self.config.username!r}; fix: set connection.api_resource_id"
        )

    def _learn_our_resource(self) -> None:
        """Find our resource id on the worker's path, so ``parse`` can ignore our own events."""
        if self._resource is not None or self._resource_lookup_failed:
            return
        try:
            self.resource_id()
        except TransientError:
            return  # tried again with the next ticket
        except (PermanentError, AuthFailed, ConfigError) as exc:
            self._resource_lookup_failed = True
            log.warning("own resource id unknown; own events are told apart by action only",
                        error=str(exc))  # fmt: skip

    def ticket_url(self, ticket_id: str) -> str | None:
        """The ticket in Autotask's web interface (the "open ticket detail" command), on the web
        host of the API zone (``webservicesN`` → ``wwN``) once the zone is known."""
        zone = self.client.known_zone
        host = httpx.URL(zone).host if zone else ""
        if not host.startswith("webservices"):
            return None
        web = "ww" + host.removeprefix("webservices")
        query = urlencode({"Code": "OpenTicketDetail", "TicketID": ticket_id})
        return f"https://{web}/Autotask/AutotaskExtend/ExecuteCommand.aspx?{query}"

    def check_connection(self) -> str:
        count, threshold, _ = self.client.threshold()
        resource = self.resource_id()
        host = httpx.URL(self.client.zone).host
        return (
            f"Autotask {host} (API user resource {resource}; {count} of {threshold} requests "
            "used in the current window)"
        )


# -- helpers ----------------------------------------------------------------------------------


def _dedupe_key(payload: Mapping[str, Any], ticket_id: str, body: bytes) -> str:
    """``Guid:Id:SequenceNumber`` (reference §5), or a hash of the body without a Guid."""
    guid = text_of(payload.get("guid"))
    if not guid:
        return body_hash(body)
    return f"{guid}:{ticket_id}:{text_of(payload.get('sequencenumber'))}"


def _numeric(value: str, what: str, error: type[PermanentError] = PermanentError) -> int:
    return numeric(value, what, psa="Autotask", error=error)
