"""In-process fakes: a PSA and a classifier that live in memory, for the fast pipeline tier.

``MemoryPSA`` is a real ``PSAAdapter`` holding tickets, one category tree, notes and every write;
failures are injected per method, before the call has any effect or after it (the PSA did the
write but its answer was lost). ``ScriptedClassifier`` answers from a script of classifications
and errors and records one ``ModelCall`` per call, as every classifier does. Neither opens a
socket: they test the pipeline's own logic (policy, resume after a crash, idempotency); the wire
formats are tested against the HTTP fakes beside this module.
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TypeVar

import httpx
from pydantic import Field

from psatriage.classifiers.base import ClassificationRequest, Classifier, ClassifierConfig
from psatriage.domain import (
    Category,
    Classification,
    Facet,
    FieldAnswer,
    LevelValue,
    ModelCall,
    Taxonomy,
    Ticket,
    TicketEvent,
    Usage,
)
from psatriage.errors import CategoryRejected, PermanentError, PsatriageError, WebhookRejected
from psatriage.psa.base import AdapterConfig, PSAAdapter

T = TypeVar("T")

HARDWARE = LevelValue("type", "10", "Hardware")
PRINTER = LevelValue("subType", "20", "Printer")
SOFTWARE = LevelValue("type", "11", "Software")
EMAIL = LevelValue("subType", "22", "Email")
TRIAGE = LevelValue("type", "14", "Triage")
PRIORITY = Facet(
    "priority",
    "Priority",
    (LevelValue("priority", "1", "High"), LevelValue("priority", "3", "Low")),
)

PRIORITIES = Facet(
    "priority",
    "Priority",
    (
        LevelValue("priority", "1", "High"),
        LevelValue("priority", "2", "Medium"),
        LevelValue("priority", "3", "Low"),
    ),
)
BOARDS = Facet(
    "routing",
    "Board",
    (LevelValue("board", "1", "Help Desk"), LevelValue("board", "2", "Network")),
)
STATUSES = Facet(
    "status",
    "Status",
    (LevelValue("status", "1", "New"), LevelValue("status", "5", "Closed")),
)
"""The live values of the in-memory PSA's ticket fields (``field_values``)."""

TREE = Taxonomy(
    scope="1",
    scope_name="Help Desk",
    levels=("type", "subType", "item"),
    leaves=(
        Category("10/20/30", (HARDWARE, PRINTER, LevelValue("item", "30", "Paper jam"))),
        Category("10/20/31", (HARDWARE, PRINTER, LevelValue("item", "31", "Toner"))),
        Category("10/21", (HARDWARE, LevelValue("subType", "21", "Laptop"))),
        Category("11/22/32", (SOFTWARE, EMAIL, LevelValue("item", "32", "Outlook"))),
        Category("11/23", (SOFTWARE, LevelValue("subType", "23", "VPN"))),
        Category("12", (LevelValue("type", "12", "Security"),)),
        Category("13", (LevelValue("type", "13", "Retired"),), active=False),
        Category("14", (TRIAGE,)),
    ),
    defaults=frozenset({("type", "14")}),
)
"""Board "Help Desk": leaves keyed by their ids, "Triage" the PSA's placeholder, one inactive."""


def _no_http(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"the in-memory PSA makes no HTTP calls (asked for {request.url})")


class MemoryConfig(AdapterConfig):
    """The in-memory PSA needs no connection settings."""


class MemoryPSA(PSAAdapter[MemoryConfig]):
    """A PSA in memory: see the module docstring. ``calls`` lists every method called, in order;
    ``writes`` every category written and note added, as ``(kind, ticket id, key or text)``."""

    kind = "memory"
    Config = MemoryConfig
    ticket_fields = frozenset({"priority", "routing", "status", "title"})

    def __init__(self, taxonomy: Taxonomy = TREE, tenant: str = "acme") -> None:
        super().__init__(
            tenant, MemoryConfig(), httpx.Client(transport=httpx.MockTransport(_no_http))
        )
        self.taxonomy = taxonomy
        self.field_facets = {"priority": PRIORITIES, "routing": BOARDS, "status": STATUSES}
        self.tickets: dict[str, Ticket] = {}
        self.notes: dict[str, list[str]] = defaultdict(list)
        self.writes: list[tuple[str, str, str]] = []
        self.calls: list[str] = []
        self._failures: dict[str, list[tuple[PsatriageError, bool]]] = defaultdict(list)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- driving the fake ---------------------------------------------------------------------

    def add_ticket(
        self,
        title: str,
        description: str,
        *,
        initial_note: str = "",
        current: tuple[LevelValue, ...] = (),
        company_id: str | None = None,
        company_name: str | None = None,
    ) -> str:
        ticket_id = str(next(self._ids))
        self.tickets[ticket_id] = Ticket(
            id=ticket_id,
            title=title,
            description=description,
            scope=self.taxonomy.scope,
            scope_name=self.taxonomy.scope_name,
            initial_note=initial_note,
            company_id=company_id,
            company_name=company_name,
            current=current,
        )
        return ticket_id

    def fail(
        self, method: str, error: PsatriageError, *, times: int = 1, after: bool = False
    ) -> None:
        """The next ``times`` calls of ``method`` raise ``error``: before they have any effect,
        or ``after`` it (the write happened, the answer was lost)."""
        self._failures[method].extend([(error, after)] * times)

    def category_writes(self, ticket_id: str) -> list[str]:
        return [
            value for kind, tid, value in self.writes if kind == "category" and tid == ticket_id
        ]

    def ours(self, ticket_id: str) -> list[str]:
        """The notes psatriage left on the ticket (they carry its marker)."""
        return [text for text in self.notes[ticket_id] if "psatriage:" in text]

    # -- the adapter ----------------------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        raise WebhookRejected("the in-memory PSA sends no webhooks")

    def parse(self, body: bytes) -> TicketEvent | None:
        return None

    def get_ticket(self, ticket_id: str) -> Ticket:
        def read() -> Ticket:
            ticket = self.tickets.get(ticket_id)
            if ticket is None:
                raise PermanentError(f"ticket {ticket_id} does not exist")
            return ticket

        return self._call("get_ticket", read)

    def get_taxonomy(self, ticket: Ticket) -> Taxonomy:
        return self._call("get_taxonomy", lambda: self.taxonomy)

    def set_category(self, ticket: Ticket, category: Category) -> None:
        def write() -> None:
            tree = [v for v in category.path if v.level in self.taxonomy.levels]
            leaf = self.taxonomy.find_by_ids(tree)
            if tree and (leaf is None or not leaf.active):
                raise CategoryRejected(f"{category.label} is not a valid category here")
            stored = self.tickets[ticket.id]
            title = next((v.id for v in category.path if v.level == "title"), stored.title)
            path = tuple(v for v in category.path if v.level != "title")
            written = {v.level for v in path}
            kept = () if tree else tuple(v for v in stored.current if v.level not in written)
            self.tickets[ticket.id] = replace(stored, title=title, current=kept + path)
            self.writes.append(("category", ticket.id, category.key))

        self._call("set_category", write)

    def field_values(self, ticket: Ticket, field: str) -> Facet:
        return self._call("field_values", lambda: self.field_facets[field])

    def add_note(self, ticket: Ticket, text: str) -> None:
        def post() -> None:
            self.notes[ticket.id].append(text)
            self.writes.append(("note", ticket.id, text))

        self._call("add_note", post)

    def find_note(self, ticket: Ticket, marker: str) -> bool:
        return self._call("find_note", lambda: any(marker in n for n in self.notes[ticket.id]))

    def register_webhook(self, url: str) -> str:
        raise PermanentError("the in-memory PSA has no webhooks to register")

    def check_connection(self) -> str:
        return f"in-memory PSA ({len(self.tickets)} tickets)"

    def _call(self, method: str, effect: Callable[[], T]) -> T:
        with self._lock:
            self.calls.append(method)
            pending = self._failures[method]
            failure = pending.pop(0) if pending else None
        if failure is not None and not failure[1]:
            raise failure[0]
        result = effect()
        if failure is not None:
            raise failure[0]
        return result


class ScriptedConfig(ClassifierConfig):
    model: str = Field(default="scripted-model", description="The model a request names.")
    max_tokens: int = Field(default=200, description="The answer budget a request names.")

    @property
    def default_model(self) -> str:
        return self.model

    @property
    def default_max_tokens(self) -> int:
        return self.max_tokens


Step = Classification | PsatriageError | Callable[[ClassificationRequest], Classification]


def answer(
    key: str,
    confidence: float = 0.92,
    reasoning: str = "The ticket describes a paper jam.",
    *,
    facets: Mapping[str, str] | None = None,
    fields: Mapping[str, str | FieldAnswer] | None = None,
) -> Classification:
    """A model's answer, with token use as an LLM reports it; ``fields`` by value (confidence
    unknown) or as ``FieldAnswer``."""
    return Classification(
        key=key,
        confidence=confidence,
        confidence_source="logprobs",
        reasoning=reasoning,
        engine="scripted",
        model="scripted-model",
        usage=Usage(tokens_in=120, tokens_out=12, cost_usd=0.0001),
        facets=dict(facets or {}),
        fields={
            name: value if isinstance(value, FieldAnswer) else FieldAnswer(value)
            for name, value in (fields or {}).items()
        },
    )


class ScriptedClassifier(Classifier[ScriptedConfig]):
    """Answers each call with the next step of its script: a classification, an error to raise,
    or a function of the request. Asked more often than scripted, it fails the test. ``requests``
    keeps every request it was given."""

    kind = "scripted"
    Config = ScriptedConfig

    def __init__(self, *script: Step, config: ScriptedConfig | None = None) -> None:
        super().__init__("acme", config or ScriptedConfig())
        self.script: list[Step] = list(script)
        self.requests: list[ClassificationRequest] = []

    def then(self, *steps: Step) -> None:
        self.script.extend(steps)

    def classify(self, request: ClassificationRequest) -> Classification:
        self.requests.append(request)
        if not self.script:
            raise AssertionError(f"the classifier was asked {len(self.requests)} times")
        step = self.script.pop(0)
        if isinstance(step, PsatriageError):
            self._record(request, None, str(step))
            raise step
        result = step if isinstance(step, Classification) else step(request)
        self._record(request, result, None)
        return result

    def check_connection(self) -> str:
        return f"scripted classifier ({len(self.script)} answers left)"

    def _record(
        self, request: ClassificationRequest, result: Classification | None, error: str | None
    ) -> None:
        request.record(
            ModelCall(
                tenant=request.tenant,
                ticket_id=request.ticket.id,
                event_id=request.event_id,
                engine=self.kind,
                model=request.model,
                template_hash="",
                taxonomy_hash=request.taxonomy_hash,
                tokens_in=result.usage.tokens_in if result else 0,
                tokens_out=result.usage.tokens_out if result else 0,
                latency_ms=0.0,
                cost_usd=result.usage.cost_usd if result else 0.0,
                chosen_key=result.key if result else None,
                confidence=result.confidence if result else None,
                error=error,
                redactions=request.redactions,
            )
        )


def with_priority(taxonomy: Taxonomy = TREE) -> Taxonomy:
    """The tree with a priority facet the model sets beside the category."""
    return replace(taxonomy, facets=(PRIORITY,))
