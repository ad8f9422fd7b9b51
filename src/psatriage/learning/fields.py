"""The local engine's ticket fields: priority, routing and noise learned from a tenant's history.

``train_fields`` fits one local-engine model per enabled field (the engine's public ``train``)
on the values the tenant's closed tickets ended with: priority and routing as the PSA holds them
(``LabeledTicket.fields``, by value id), noise from the category a noise action sets (a ticket
people left in the tenant's spam category was spam; every other ticket a real request).
``FieldModels`` keeps them in the database (one per tenant and field, replaced by each training)
and answers a ticket's fields as a model call would (``FieldAnswer`` with a calibrated
confidence): the pipeline asks it for the fields an answer left out, which is every field for
the local engine and for a hybrid ticket decided without the LLM.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

import structlog
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from psatriage.config.fields import NOISE_KINDS, FieldsSettings
from psatriage.config.tenant import Tenant, category_matches
from psatriage.domain import Category, FieldAnswer, Ticket
from psatriage.fields.noise import REQUEST
from psatriage.learning.dataset import Labeled, categories
from psatriage.store.tables import FieldModelRow, utcnow

if TYPE_CHECKING:
    from psatriage.local_engine.embed import Embedder
    from psatriage.local_engine.model import TrainedModel

log = structlog.get_logger(__name__)

LEARNED: Final = ("priority", "routing", "noise")
"""The fields the local engine learns (the others: language offline, the rest need an LLM)."""
LOCAL_ENGINE: Final = "local"
"""``Classification.engine`` of the local engine's answers, which the field models complete."""


def wanted(tenant: Tenant) -> tuple[str, ...]:
    """The learned fields the tenant or one of its companies enables."""
    enabled = set(tenant.fields.enabled)
    for company in tenant.companies.values():
        enabled |= {name for name, o in company.fields.items() if o.enabled}
    return tuple(name for name in LEARNED if name in enabled)


def noise_kind(settings: FieldsSettings, category: Category) -> str | None:
    """The noise kind a ticket left in ``category`` was: the kind whose action sets that
    category, else a real request; None when no noise action sets a category (nothing to tell
    noise by)."""
    kinds = [(k, c) for k in NOISE_KINDS if (c := settings.noise.action_for(k).category)]
    if not kinds:
        return None
    return next((k for k, pattern in kinds if category_matches(category, pattern)), REQUEST)


def field_labels(tenant: Tenant, items: Iterable[Labeled], name: str) -> list[tuple[str, str]]:
    """The ``(text, value id)`` pairs of one field in a training set (history only carries
    fields; noise is read from the category a noise action sets, none without such an action)."""
    if name != "noise":
        return [(item.text, item.fields[name]) for item in items if name in item.fields]
    pairs = []
    for item in items:
        (leaf,) = categories([item])
        kind = noise_kind(tenant.fields, leaf)
        if kind is None:
            return []
        pairs.append((item.text, kind))
    return pairs


def train_fields(
    tenant: Tenant, items: Sequence[Labeled], embedder: Embedder, *, min_examples: int
) -> dict[str, TrainedModel | str]:
    """Field name -> its model, or why it could not be trained (too few tickets or values)."""
    from psatriage.local_engine import DataError  # noqa: PLC0415 - the engine loads when used
    from psatriage.local_engine.training import train  # noqa: PLC0415

    trained: dict[str, TrainedModel | str] = {}
    for name in wanted(tenant):
        pairs = field_labels(tenant, items, name)
        if not pairs:
            trained[name] = (
                "no noise action sets a category to learn from"
                if name == "noise"
                else "no closed ticket carries it"
            )
            continue
        try:
            trained[name] = train(
                [text for text, _ in pairs],
                [value for _, value in pairs],
                embedder,
                label=name,
                source=f"{tenant.name} history ({name})",
                min_examples=min_examples,
            )
        except DataError as exc:
            trained[name] = str(exc)
    return trained


class FieldModels:
    """The tenants' field models in the database, loaded once per ``refresh_seconds``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        refresh_seconds: float = 300.0,
        embedder: Callable[[], Embedder] | None = None,
    ) -> None:
        self._sessions = sessions
        self._refresh = refresh_seconds
        self._embedder = embedder
        self._loaded: dict[str, tuple[float, dict[str, TrainedModel]]] = {}
        self._lock = threading.Lock()

    def store(self, tenant: str, trained: Mapping[str, TrainedModel | str]) -> list[str]:
        """Keep the trained models (each replaces the field's earlier one); returns their names."""
        kept = {name: m for name, m in trained.items() if not isinstance(m, str)}
        with self._sessions.begin() as session:
            for name, model in kept.items():
                session.execute(
                    delete(FieldModelRow).where(
                        FieldModelRow.tenant == tenant, FieldModelRow.field == name
                    )
                )
                session.add(
                    FieldModelRow(
                        tenant=tenant,
                        field=name,
                        data=model.to_bytes(),
                        report=model.report.to_dict(),
                        trained_at=utcnow(),
                    )
                )
        with self._lock:
            self._loaded.pop(tenant, None)
        return sorted(kept)

    def models(self, tenant: str) -> dict[str, TrainedModel]:
        from psatriage.local_engine.model import TrainedModel  # noqa: PLC0415

        now = time.monotonic()
        with self._lock:
            held = self._loaded.get(tenant)
        if held is not None and now - held[0] < self._refresh:
            return held[1]
        with self._sessions() as session:
            rows = session.scalars(select(FieldModelRow).where(FieldModelRow.tenant == tenant))
            loaded = {
                row.field: TrainedModel.from_bytes(row.data, name=f"the {row.field} model")
                for row in rows
            }
        with self._lock:
            self._loaded[tenant] = (now, loaded)
        return loaded

    def answers(self, tenant: str, ticket: Ticket, names: Iterable[str]) -> dict[str, FieldAnswer]:
        """The value (id) each field's model gives the ticket, with its probability; fields
        without a model are left out."""
        from psatriage.local_engine.embed import shared_embedder  # noqa: PLC0415

        models = self.models(tenant)
        asked = {name: models[name] for name in names if name in models}
        if not asked:
            return {}
        return learned_answers(asked, ticket, (self._embedder or shared_embedder)())


def learned_answers(
    models: Mapping[str, TrainedModel], ticket: Ticket, embedder: Embedder
) -> dict[str, FieldAnswer]:
    """Each field's value (id) by its model, with its probability; one embedding of the ticket
    for all of them."""
    from psatriage.local_engine.data import ticket_text  # noqa: PLC0415
    from psatriage.local_engine.features import prepare  # noqa: PLC0415

    if not models:
        return {}
    text = ticket_text(ticket.title, ticket.description, ticket.initial_note)
    vectors = embedder.embed([text])
    prepared = [prepare(text)]
    found = {}
    for name, model in models.items():
        row = model.probabilities(prepared, vectors)[0]
        best = int(row.argmax())
        found[name] = FieldAnswer(model.classes[best], float(row[best]))
    return found
