"""Datto PSA (Autotask): ticket webhooks in, REST API out.

A ticket's category is its *issue type › sub-issue type*, two picklists of the ``Tickets``
entity: each sub-issue type names its issue type in ``parentValue``. Tenants may also let the model
set the queue, the ticket category or the priority (facets), each checked against its picklist.
Autotask has one tree per database, so the taxonomy scope is the constant ``"tickets"``.

New tickets arrive as ``TicketWebhooks`` deliveries signed with ``X-Hook-Signature``; the body is
thin, so the ticket is always read by id. Our own writes cause ``Update`` deliveries, which are
never acted on; the webhook excludes our API user and ``parse`` ignores events it caused anyway.
HTTP details (zone discovery, headers, limits, paging, error mapping) are in ``_autotask_client``,
the signature check in ``_autotask_hooks``. Where this module relies on a fact the PSA reference
marks [UNSURE], a comment says so.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

import httpx
import structlog

from psatriage.domain import (
    Category,
    LabeledTicket,
    LevelValue,
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
    TransientError,
    WebhookRejected,
)
from psatriage.limits import CallLimits
from psatriage.psa._autotask_client import AutotaskClient
from psatriage.psa._autotask_config import FACET_LABELS, PORTAL_VISIBLE, AutotaskConfig, FacetName
from psatriage.psa._autotask_hooks import (
    SIGNATURE_HEADER,
    body_hash,
    record_id,
    signature_matches,
    text_of,
    timestamp,
)
from psatriage.psa._autotask_picklists import (
    LEVELS,
    SCOPE,
    SCOPE_NAME,
    Picklists,
    check_active,
    find_pick,
    label_of,
    parse_picklists,
    taxonomy_from,
)
from psatriage.psa._wire import lower_keys as ci
from psatriage.psa._wire import webhook_object as load_object
from psatriage.psa.base import AdapterConfig, PSAAdapter

log = structlog.get_logger(__name__)

NOTE_MAX_CHARS = 32000
_JSON = dict[str, Any]

__all__ = ["FACET_LABELS", "LEVELS", "SCOPE", "AutotaskAdapter", "AutotaskConfig", "FacetName"]


class AutotaskAdapter(PSAAdapter[AutotaskConfig]):
    """Datto PSA (Autotask) through its REST API and ticket webhooks."""

    kind: ClassVar[str] = "autotask"
    Config: ClassVar[type[AdapterConfig]] = AutotaskConfig

    def __init__(self, tenant: str, config: AutotaskConfig, http: httpx.Client) -> None:
        super().__init__(tenant, config, http)
        limits = CallLimits(
            per_window=config.requests_per_window,
            window_seconds=config.window_seconds,
            per_endpoint=False,
            concurrent_per_endpoint=config.concurrent_per_endpoint,
            scope=f"autotask:{tenant}",
        )
        self.client = AutotaskClient(
            http,
            username=config.username,
            secret=config.secret,
            integration_code=config.integration_code,
            discovery_url=config.discovery_url,
            zone_url=config.zone_url,
            limits=limits,
            per_window=config.requests_per_window,
            window_seconds=config.window_seconds,
            threshold_check_at=config.threshold_check_at,
            page_size=config.page_size,
        )
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
        data = self.client.call("GET", f"Tickets/{number}", what=f"ticket {number}")
        item = ci(data).get("item")
        if not isinstance(item, dict):
            raise PermanentError(f"ticket {number} not found")
        self._learn_our_resource()
        ticket = ci(item)
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
            data = self.client.call("GET", f"Companies/{company_id}", what=f"company {company_id}")
            name: str | None = text_of(ci(ci(data).get("item")).get("companyname")) or None
        except (PermanentError, AuthFailed) as exc:
            log.warning("company name unavailable", company=company_id, error=str(exc))
            name = None
        with self._lock:
            self._companies[company_id] = name
        return name

    def set_category(self, ticket: Ticket, category: Category) -> None:
        number = _numeric(ticket.id, "ticket id")
        ids = category.ids()
        unknown = sorted(set(ids) - {*LEVELS, *self.config.facets})
        if unknown or "issueType" not in ids:
            raise CategoryRejected(
                f"category {category.key!r} has no issue type or sets fields this tenant does "
                f"not categorize ({', '.join(unknown) or 'none'})"
            )
        lists = self._lists()
        for level, value in ids.items():
            check_active(lists, level, value)
        issue, sub = ids["issueType"], ids.get("subIssueType")
        if sub is not None:
            parent = find_pick(lists, "subIssueType", sub)
            if parent is not None and parent.parent != issue:
                raise CategoryRejected(
                    f"sub-issue type {sub} belongs to issue type {parent.parent or 'none'}, "
                    f"not {issue}; it is never written under another issue type"
                )
        body: _JSON = {"id": number}
        for level in (*LEVELS, *self.config.facets):
            if level in ids:
                body[level] = _numeric(ids[level], f"{level} value", CategoryRejected)
        if sub is None and any(v.level == "subIssueType" for v in ticket.current):
            body["subIssueType"] = None
        self.client.call(
            "PATCH",
            "Tickets",
            json_body=body,
            what=f"the category of ticket {number}",
            rejected=CategoryRejected,
        )

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
            self.client.call("GET", f"Tickets/{number}/Notes", what=what), what
        )
        return any(marker in text_of(ci(note).get("description")) for note in notes)

    def _note_picks(self) -> tuple[int, int]:
        """``(publish, noteType)`` for our notes, resolved by label once per process."""
        if self._note_values is not None:
            return self._note_values
        fields = self.client.call(
            "GET", "TicketNotes/entityInformation/fields", what="the note fields"
        )
        lists = parse_picklists(fields)
        wanted = self.config.note_publish.casefold()
        publish = next(
            (p for p in lists.get("publish", ()) if p.active and p.label.casefold() == wanted), None
        )
        if publish is None or publish.label.casefold() == PORTAL_VISIBLE:
            internal = [p.label for p in lists.get("publish", ()) if p.active]
            raise ConfigError(
                f"tenant {self.tenant!r}, key 'connection.note_publish': Autotask has no active "
                f"publish value {self.config.note_publish!r}; fix: use one of "
                f"{[label for label in internal if label.casefold() != PORTAL_VISIBLE]}"
            )
        types = [p for p in lists.get("noteType", ()) if p.active]
        note_type = next(
            (p for p in types if p.label.casefold() == self.config.note_type.casefold()), None
        )
        if note_type is None:
            # [UNSURE] which note type a tenant has; the picklist's default is the safe fallback.
            note_type = next((p for p in types if p.default), types[0] if types else None)
            if note_type is None:
                raise PermanentError("Autotask lists no active note type for ticket notes")
            log.warning(
                "note type not found; using another",
                wanted=self.config.note_type,
                used=note_type.label,
            )
        self._note_values = (int(publish.id), int(note_type.id))
        return self._note_values

    # -- taxonomy ---------------------------------------------------------------------------

    def get_taxonomy(self, ticket: Ticket) -> Taxonomy:
        return taxonomy_from(self._lists(refresh=True), self.config.facets)

    def list_scopes(self) -> list[tuple[str, str]]:
        """Autotask has one category tree per database."""
        return [(SCOPE, SCOPE_NAME)]

    def _lists(self, *, refresh: bool = False) -> Picklists:
        """The ticket picklists: read fresh for a taxonomy, else the last ones read."""
        with self._lock:
            cached = self._picklists
        if cached is not None and not refresh:
            return cached
        fields = self.client.call(
            "GET", "Tickets/entityInformation/fields", what="the ticket fields"
        )
        lists = parse_picklists(fields)
        with self._lock:
            self._picklists = lists
        return lists

    # -- polling ----------------------------------------------------------------------------

    def list_new_tickets(self, since: datetime) -> list[NewTicket]:
        when = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
        value = when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        records = self.client.query(
            "Tickets",
            [{"op": "gte", "field": "createDate", "value": value}],
            include=("id", "createDate"),
            what="new tickets",
        )
        found = []
        for record in records:
            entry = ci(record)
            ticket_id, created = record_id(entry.get("id")), timestamp(entry.get("createdate"))
            if ticket_id is not None and created is not None:
                found.append(NewTicket(ticket_id, created))
        return sorted(found, key=lambda t: (t.created_at, int(t.ticket_id)))

    def list_labeled_tickets(self, since: datetime, limit: int) -> list[LabeledTicket]:
        """Completed tickets created at or after ``since`` with an issue type, newest first.

        One ``Tickets`` query (``createDate gte``, ``completedDate exist``, ``issueType exist``)
        read through every page: Autotask queries come back in id order and cannot be sorted,
        so the newest ``limit`` are chosen here. The description is on the ticket itself; the
        company name costs one cached call per company. [UNSURE] "closed" is read as "has a
        ``completedDate``" (Autotask sets it when a ticket reaches the Complete status).
        """
        when = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
        value = when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        records = self.client.query(
            "Tickets",
            [
                {"op": "gte", "field": "createDate", "value": value},
                {"op": "exist", "field": "completedDate"},
                {"op": "exist", "field": "issueType"},
            ],
            include=(
                "id",
                "title",
                "description",
                "companyID",
                "createDate",
                "completedDate",
                "issueType",
                "subIssueType",
                *self.config.facets,
            ),
            what="completed tickets",
        )
        found: list[tuple[datetime, int, _JSON]] = []
        for record in records:
            entry = ci(record)
            ticket_id, created = record_id(entry.get("id")), timestamp(entry.get("createdate"))
            if ticket_id is None or created is None:
                continue
            created = created if created.tzinfo else created.replace(tzinfo=UTC)
            if created < when:
                continue
            categorized = record_id(entry.get("issuetype")) is not None
            if entry.get("completeddate") in (None, "") or not categorized:
                continue  # still open, or never categorized: nothing to learn from
            found.append((created, int(ticket_id), entry))
        found.sort(key=lambda item: (item[0], item[1]), reverse=True)
        labeled = []
        for _, number, entry in found[:limit]:
            company_id = record_id(entry.get("companyid"))
            current = self._current(entry)
            ticket = Ticket(
                id=str(number),
                title=text_of(entry.get("title")),
                description=text_of(entry.get("description")),
                scope=SCOPE,
                scope_name=SCOPE_NAME,
                company_id=company_id,
                company_name=self._company_name(company_id),
                current=current,
            )
            path = tuple(v for v in current if v.level in LEVELS)
            labeled.append(LabeledTicket(ticket=ticket, path=path))
        return labeled

    # -- set-up -----------------------------------------------------------------------------

    def register_webhook(self, url: str) -> str:
        if not 1 <= len(url) <= 500:
            raise PermanentError("Autotask accepts webhook urls of at most 500 characters")
        resource = int(self.resource_id())
        existing = [
            hook
            for hook in self.client.query(
                "TicketWebhooks",
                [{"op": "eq", "field": "webhookUrl", "value": url}],
                what="ticket webhooks",
            )
            if ci(hook).get("webhookurl") == url
        ]
        secret = self.config.webhook_secret.get_secret_value()
        if existing:
            hook_id = _numeric(str(ci(existing[0]).get("id")), "webhook id")
            # Re-activates a webhook Autotask disabled, and makes its secret ours again.
            update = {"id": hook_id, "isActive": True, "secretKey": secret}
            self.client.call("PATCH", "TicketWebhooks", json_body=update, what="the webhook")
        else:
            hook_id = self._create_webhook(url, secret)
        self._ensure_subscribed_field(hook_id)
        self._ensure_excluded(hook_id, resource)
        data = self.client.call("GET", f"TicketWebhooks/{hook_id}", what=f"webhook {hook_id}")
        state = ci(ci(data).get("item"))
        if state.get("isactive") is not True or state.get("isready") is not True:
            raise PermanentError(
                f"Autotask webhook {hook_id} exists but is not active and ready (isActive="
                f"{state.get('isactive')}, isReady={state.get('isready')}); check it in Autotask"
            )
        with self._lock:
            self._problems.clear()
        return str(hook_id)

    def _create_webhook(self, url: str, secret: str) -> int:
        hook: _JSON = {
            "name": self.config.webhook_name,
            "webhookUrl": url,
            "deactivationUrl": url,  # the Deactivated notice arrives like any delivery
            "isActive": True,
            "isSubscribedToCreateEvents": True,
            "isSubscribedToUpdateEvents": False,
            "isSubscribedToDeleteEvents": False,
            "secretKey": secret,
            "sendThresholdExceededNotification": False,
        }
        if self.config.notification_email:
            hook["notificationEmailAddress"] = self.config.notification_email
        created = ci(self.client.call("POST", "TicketWebhooks", json_body=hook, what="the webhook"))
        new_id = record_id(created.get("itemid")) or record_id(ci(created.get("item")).get("id"))
        if new_id is None:
            raise PermanentError("Autotask created the webhook but returned no id")
        return int(new_id)

    def _ensure_subscribed_field(self, hook_id: int) -> None:
        """A webhook is only ready with one subscribed field (reference §2.1, Nango)."""
        path = f"TicketWebhooks/{hook_id}/Fields"
        what = f"fields of webhook {hook_id}"
        fields = self.client.pages(self.client.call("GET", path, what=what), what)
        if any(ci(f).get("issubscribedfield") is True for f in fields):
            return
        info = self.client.call(
            "GET", "TicketWebhookFields/entityInformation/fields", what="the webhook fields"
        )
        choices = [p for p in parse_picklists(info).get("fieldID", ()) if p.active]
        wanted = self.config.webhook_field.replace(" ", "").casefold()
        pick = next((p for p in choices if p.label.replace(" ", "").casefold() == wanted), None)
        if pick is None and not choices:
            raise PermanentError("Autotask lists no ticket fields a webhook can subscribe to")
        field = pick or choices[0]
        body = {
            "fieldID": int(field.id),
            "isSubscribedField": True,
            "isDisplayAlwaysField": False,
            "webhookID": hook_id,
        }
        self.client.call("POST", path, json_body=body, what="the webhook field")

    def _ensure_excluded(self, hook_id: int, resource: int) -> None:
        """Exclude our API user, so our own writes never call us."""
        path = f"TicketWebhooks/{hook_id}/ExcludedResources"
        what = f"excluded resources of webhook {hook_id}"
        excluded = self.client.pages(self.client.call("GET", path, what=what), what)
        if any(record_id(ci(e).get("resourceid")) == str(resource) for e in excluded):
            return
        body = {"resourceID": resource, "webhookID": hook_id}
        self.client.call("POST", path, json_body=body, what="the excluded resource")

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
    if not value.isdigit():
        raise error(f"{what} {value!r} is not an Autotask id (a number)")
    return int(value)
