"""The offline local engine as a classifier (``kind = "local"``): no key, no network.

With no trained model it is zero-shot: the ticket against each candidate's path names and
description (static embeddings shipped in the ``wordllama`` wheel). With a model trained on the
tenant's history (``psatriage train``) it uses that model's calibrated probabilities for the
categories it knows and zero-shot for the others (see ``psatriage.local_engine.ranker``).

``model = "auto"`` (the default) uses the tenant's active model version in the database
(``psatriage train``, the scheduled retrain, ``psatriage model promote|rollback``), else its newest
model file in ``models_dir``, and notices a change within ``reload_seconds``, so training again
needs no restart. Facets (queue,
priority...) are chosen zero-shot by their option names.

Every classification is one ``ModelCall`` row, engine ``local``, with no tokens and no cost.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pydantic import Field, field_validator
from sqlalchemy.orm import Session, sessionmaker

from psatriage.classifiers.base import (
    ClassificationRequest,
    Classifier,
    ClassifierConfig,
    model_call,
)
from psatriage.domain import Category, Classification
from psatriage.errors import PermanentError, PsatriageError
from psatriage.learning.versions import ModelVersions
from psatriage.local_engine import DEFAULT_TEMPERATURE, DEFAULT_UNSEEN_WEIGHT
from psatriage.local_engine.data import ticket_text
from psatriage.local_engine.store import ModelStore
from psatriage.settings import get_settings

if TYPE_CHECKING:
    from psatriage.local_engine.ranker import Ranker, Scored

ENGINE: Final = "local"
_VERSION_REF: Final = "version:"


class LocalConfig(ClassifierConfig):
    """The offline engine: zero-shot, or a model trained on the tenant's history."""

    model: str = Field(
        default="auto",
        min_length=1,
        description="'auto': the tenant's active model version (from 'psatriage train', the "
        "scheduled retrain or 'psatriage model promote'), zero-shot while there is none; "
        "'zero-shot': never a trained model; or the path of a model file (.npz).",
    )
    models_dir: Path | None = Field(
        default=None,
        description="Model files of a tenant without model versions in the database (written "
        "by earlier versions of psatriage), one folder per tenant; the newest is used. Default: "
        "PSATRIAGE_DATA_DIR/models.",
    )
    reload_seconds: float = Field(
        default=30.0,
        ge=0,
        description="With model 'auto', how often to look for another active model version.",
    )
    temperature: float = Field(
        default=DEFAULT_TEMPERATURE,
        gt=0,
        le=1,
        description="Zero-shot softmax temperature: lower makes zero-shot confidences sharper.",
    )
    unseen_weight: float = Field(
        default=DEFAULT_UNSEEN_WEIGHT,
        ge=0,
        le=1,
        description="The prior share of tickets in categories a trained model has never seen "
        "(new or rare ones, scored zero-shot); raised for a ticket whose zero-shot scores favour "
        "them. 0: never chosen while the model knows other candidates.",
    )
    alternatives: int = Field(
        default=3, ge=0, le=20, description="Runner-up categories named in the reasoning."
    )

    @field_validator("model")
    @classmethod
    def _model_reference(cls, value: str) -> str:
        if value in {"auto", "zero-shot"} or value.endswith(".npz"):
            return value
        raise ValueError(
            f"model {value!r} is neither 'auto', 'zero-shot' nor a model file (.npz); an LLM "
            "model name belongs under the hybrid classifier's [llm] table"
        )


class LocalClassifier(Classifier[LocalConfig]):
    """Zero-shot or trained ranking of the candidates; see the module docstring."""

    kind = "local"
    Config = LocalConfig

    def __init__(self, tenant: str, config: LocalConfig) -> None:
        super().__init__(tenant, config)
        self._lock = threading.Lock()
        self._ranker: Ranker | None = None
        self._model_ref: str | None = None
        self._checked = 0.0
        self._store = ModelStore(config.models_dir or get_settings().data_dir / "models")
        self._versions: ModelVersions | None = None

    def use_database(self, sessions: sessionmaker[Session]) -> None:
        with self._lock:
            self._versions = ModelVersions(sessions)
            self._ranker = None  # look again, in the database first

    def ranker(self) -> Ranker:
        """The ranker in use: loaded on first use, replaced when another model becomes active."""
        with self._lock:
            now = time.monotonic()
            due = self._ranker is None or (
                self.config.model == "auto" and now - self._checked >= self.config.reload_seconds
            )
            if due:
                self._checked = now
                wanted = self._wanted()
                if self._ranker is None or wanted != self._model_ref:
                    self._ranker = self._load(wanted)
                    self._model_ref = wanted
            assert self._ranker is not None
            return self._ranker

    def _load(self, reference: str | None) -> Ranker:
        # numpy, scikit-learn and the tokenizer load here, on first use, not at import: a
        # service whose tenants all use an LLM never pays for them
        from psatriage.local_engine.embed import shared_embedder  # noqa: PLC0415
        from psatriage.local_engine.model import TrainedModel  # noqa: PLC0415
        from psatriage.local_engine.ranker import Ranker  # noqa: PLC0415

        model: TrainedModel | None = None
        if reference is not None and reference.startswith(_VERSION_REF):
            assert self._versions is not None
            number = int(reference.removeprefix(_VERSION_REF))
            model = self._versions.load(self.tenant, number)[1]
        elif reference is not None:
            model = TrainedModel.load(Path(reference))
        return Ranker(
            shared_embedder(),
            model,
            temperature=self.config.temperature,
            unseen_weight=self.config.unseen_weight,
        )

    def _wanted(self) -> str | None:
        """What to use: ``version:N`` (the active version in the database), a model file, or
        None (zero-shot)."""
        if self.config.model == "zero-shot":
            return None
        if self.config.model == "auto":
            if self._versions is not None:
                number = self._versions.active_number(self.tenant)
                if number is not None:
                    return f"{_VERSION_REF}{number}"
            latest = self._store.latest(self.tenant)
            return str(latest) if latest is not None else None
        return self.config.model

    def warm_up(self) -> None:
        """The libraries, the embedding and the active model."""
        self.ranker()

    def classify(self, request: ClassificationRequest) -> Classification:
        return self.decide(request)[0]

    def decide(self, request: ClassificationRequest) -> tuple[Classification, list[Scored]]:
        """The classification, and every candidate ranked (for the hybrid and the CLI)."""
        started = time.perf_counter()
        if not request.candidates:
            raise PermanentError("there are no candidate categories to choose from")
        ticket = request.ticket
        text = ticket_text(ticket.title, ticket.description, ticket.initial_note)
        try:
            ranker = self.ranker()
            ranked = ranker.rank(text, request.candidates)
            facets = {f.name: ranker.choose_option(text, f)[0].id for f in request.facets}
        except PsatriageError as exc:
            self._record(request, started, model=self.config.model, error=str(exc))
            raise
        best = ranked[0]
        self._record(request, started, model=ranker.name, best=best)
        classification = Classification(
            key=best.category.key,
            confidence=best.probability,
            confidence_source="model",
            reasoning=reasoning(ranked, self.config.alternatives),
            engine=ENGINE,
            model=ranker.name,
            latency_ms=(time.perf_counter() - started) * 1000,
            facets=facets,
            alternatives=tuple(
                (s.category.key, s.probability) for s in ranked[1 : 1 + self.config.alternatives]
            ),
        )
        return classification, ranked

    def check_connection(self) -> str:
        ranker = self.ranker()
        return f"offline engine ready ({ranker.name})"

    def _record(
        self,
        request: ClassificationRequest,
        started: float,
        *,
        model: str,
        best: Scored | None = None,
        error: str | None = None,
    ) -> None:
        request.record(
            model_call(
                request,
                engine=ENGINE,
                model=model,
                latency_ms=(time.perf_counter() - started) * 1000,
                key=best.category.key if best else None,
                confidence=best.probability if best else None,
                error=error,
            )
        )


def reasoning(ranked: list[Scored], alternatives: int) -> str:
    """One line for the note: how the choice was made and the runners-up."""
    best = ranked[0]
    if best.source == "unreadable":
        return (
            "Local engine: the ticket has no word it can read (a script or language it does "
            f"not cover?); every category is equally likely ({best.probability:.0%})."
        )
    how = (
        "the tenant's trained model"
        if best.source == "model"
        else "zero-shot similarity to the category names"
    )
    text = f"Local engine ({how}): {_label(best.category)} {best.probability:.0%}."
    others = [f"{_label(s.category)} {s.probability:.0%}" for s in ranked[1 : 1 + alternatives]]
    if others:
        text += " Next: " + "; ".join(others) + "."
    return text


def _label(category: Category) -> str:
    return category.label or category.key
