"""The one interface every classifier implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session, sessionmaker

from psatriage.domain import (
    CallRecorder,
    Category,
    Classification,
    Facet,
    FieldSpec,
    ModelCall,
    Ticket,
)
from psatriage.prompts import PromptExample, PromptTemplate

_MAX_QUOTE_CHARS = 200


def clip(text: str, limit: int = _MAX_QUOTE_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters: for quoting a server or a model."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ClassifierConfig(BaseModel):
    """Base of every classifier's ``Config``: unknown keys are errors, values are immutable.

    ``default_model`` and ``default_max_tokens`` are what a request names when the ticket's
    company sets none (read by ``Tenant.effective``); a classifier that asks no LLM leaves them
    empty.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def default_model(self) -> str:
        return ""

    @property
    def default_max_tokens(self) -> int:
        return 0


ConfigT = TypeVar("ConfigT", bound=ClassifierConfig)


def _discard(call: ModelCall) -> None:
    """A recorder that keeps nothing (for one-off use outside the service)."""


@dataclass(frozen=True, slots=True)
class ClassificationRequest:
    """Everything a classifier needs for one ticket.

    ``model`` and ``max_tokens`` are already resolved from tenant and company settings.
    ``facets`` are fields to choose beside the category (one option each, by id).
    ``fields`` are the tenant's enabled ticket fields (``psatriage.fields``), answered in the same
    call; an answer outside a field's values leaves that field out, never the category.
    ``ticket`` is already redacted; ``redactions`` counts what was masked, for the call log.
    ``record`` receives one ``ModelCall`` per call made (including corrective retries and failures).
    ``examples`` are the tenant's labeled tickets most like this one (``learning.examples``).
    """

    tenant: str
    ticket: Ticket
    candidates: tuple[Category, ...]
    prompt: PromptTemplate
    model: str
    max_tokens: int
    instructions: str = ""
    company: str = ""
    taxonomy_hash: str = ""
    facets: tuple[Facet, ...] = ()
    fields: tuple[FieldSpec, ...] = ()
    redactions: Mapping[str, int] = field(default_factory=dict)
    event_id: int | None = None
    record: CallRecorder = _discard
    examples: tuple[PromptExample, ...] = ()  # labeled tickets like this one, for an LLM


def model_call(
    request: ClassificationRequest,
    *,
    engine: str,
    model: str,
    latency_ms: float,
    template_hash: str = "",
    tokens_in: int = 0,
    tokens_out: int = 0,
    cost_usd: float = 0.0,
    key: str | None = None,
    confidence: float | None = None,
    error: str | None = None,
) -> ModelCall:
    """The audit row of one call made for ``request``: every classifier builds it here, so each
    row carries the request's tenant, ticket, event, taxonomy and redaction counts alike."""
    return ModelCall(
        tenant=request.tenant,
        ticket_id=request.ticket.id,
        event_id=request.event_id,
        engine=engine,
        model=model,
        template_hash=template_hash,
        taxonomy_hash=request.taxonomy_hash,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        latency_ms=latency_ms,
        cost_usd=cost_usd,
        chosen_key=key,
        confidence=confidence,
        error=clip(error) if error is not None else None,
        redactions=request.redactions,
    )


class Classifier(ABC, Generic[ConfigT]):
    """A way of choosing a category. Subclasses set ``kind`` and ``Config``."""

    kind: ClassVar[str]
    Config: ClassVar[type[ClassifierConfig]]

    def __init__(self, tenant: str, config: ConfigT) -> None:
        self.tenant = tenant
        self.config = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tenant={self.tenant!r})"

    @abstractmethod
    def classify(self, request: ClassificationRequest) -> Classification:
        """Choose one of ``request.candidates``. The returned key is always one of them.

        Raises ``TransientError`` (try later), ``AuthFailed``, or ``InvalidAnswer`` and other
        ``PermanentError``s.
        """

    def capabilities(self) -> dict[str, str] | None:
        """What the model's server was found to support (``/readyz``); ``None`` for engines
        that have nothing to find out."""
        return None

    @abstractmethod
    def check_connection(self) -> str:
        """Make one cheap call; return a short description of what answered."""

    def use_database(self, sessions: sessionmaker[Session]) -> None:
        """Give the classifier the service's database (the local engine reads its trained
        model versions there); the default needs none."""

    def warm_up(self) -> None:
        """Load now what the first classification would load or find out (libraries, clients,
        models, what the model server supports), so the first tickets a worker process takes
        do not wait for it. The default has nothing to load."""

    def close(self) -> None:
        """Release connections and files (the default holds none)."""
