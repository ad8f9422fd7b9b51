"""Training a tenant's model on its history and examples, and the scheduled retrain.

``fit`` fits a model on closed-ticket history and labeled examples together
(``psatriage train --tenant T`` stores it as the tenant's active version at once).

``retrain`` is the careful variant the schedule runs: the newest ``held_out`` share of the
tenant's closed tickets (its recent outcomes) is put aside; a candidate is fitted on the rest and
the labeled examples; the candidate and the model in use (zero-shot when there is none) rank the
same held-out tickets, and the candidate becomes active only when it is right on more of them by
more than chance explains (``significantly_better``).
A refused candidate is kept as version ``refused`` with both scores, so ``psatriage model list``
shows why nothing changed. With too few held-out tickets to compare, the candidate is kept for a
person to promote (unless the tenant has no model at all, when it is promoted).

``scheduled_retrain`` is the one call in the housekeeping loop: for each tenant whose local or
hybrid classifier is due (``learning.retrain_every``), one process claims the tenant's
``retrain_marks`` row, reads history from the PSA within the tenant's call limits (a limit
reached postpones the retrain; it never waits in a worker slot) and runs ``retrain``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import structlog
from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from psatriage.errors import CallLimitReached, PsatriageError
from psatriage.learning.dataset import Labeled, categories, training_set
from psatriage.learning.versions import ModelVersions, VersionInfo
from psatriage.store.tables import RetrainMarkRow, utcnow

if TYPE_CHECKING:
    from psatriage.config.tenant import Tenant
    from psatriage.domain import Category
    from psatriage.local_engine.embed import Embedder
    from psatriage.local_engine.model import TrainedModel
    from psatriage.runtime import Runtime

log = structlog.get_logger(__name__)

LEARNING_KINDS: Final = frozenset({"local", "hybrid"})  # classifiers that use a trained model
RETRY_SECONDS: Final = 3600.0  # a retrain that could not run is tried again this much later
PROMOTE_Z: Final = 1.28  # one-sided, about 90%: see ``significantly_better``


@dataclass(frozen=True)
class Comparison:
    """Both models on the same held-out tickets."""

    held_out: int
    current: str  # the version in use (v0003) or "zero-shot"
    current_accuracy: float | None
    candidate_accuracy: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "held_out": self.held_out,
            "current": self.current,
            "current_accuracy": self.current_accuracy,
            "candidate_accuracy": self.candidate_accuracy,
        }


@dataclass(frozen=True)
class RetrainResult:
    promoted: bool
    reason: str
    version: VersionInfo | None = None
    comparison: Comparison | None = None
    data: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        """One line for the retrain mark and the log."""
        if self.version is None:
            return f"nothing promoted: {self.reason}"
        return f"{'promoted' if self.promoted else 'refused'} {self.version.name}: {self.reason}"


def fit(
    items: Sequence[Labeled],
    embedder: Embedder,
    *,
    source: str,
    min_examples: int,
) -> TrainedModel:
    """A model of the items' category keys (``DataError`` when too little to learn)."""
    from psatriage.local_engine.training import train  # noqa: PLC0415

    return train(
        [i.text for i in items],
        [i.key for i in items],
        embedder,
        label="category",
        source=source,
        min_examples=min_examples,
    )


def hits(
    model: TrainedModel | None,
    items: Sequence[Labeled],
    candidates: Sequence[Category],
    embedder: Embedder,
) -> list[bool]:
    """Whether ``model`` (zero-shot when None), ranking ``candidates`` as the local engine
    decides, puts each item's category first."""
    from psatriage.local_engine.ranker import Ranker  # noqa: PLC0415

    if not items:
        return []
    ranker = Ranker(embedder, model)
    probabilities, _ = ranker.probabilities([i.text for i in items], candidates)
    chosen = probabilities.argmax(axis=1).tolist()
    return [bool(candidates[c].key == i.key) for c, i in zip(chosen, items, strict=True)]


def accuracy(
    model: TrainedModel | None,
    items: Sequence[Labeled],
    candidates: Sequence[Category],
    embedder: Embedder,
) -> float:
    """Top-1 accuracy of ``model`` on ``items`` (see ``hits``)."""
    found = hits(model, items, candidates, embedder)
    return sum(found) / len(found) if found else 0.0


def significantly_better(candidate: Sequence[bool], current: Sequence[bool]) -> bool:
    """Whether the candidate is right on more of the same tickets than the model in use, by
    more than chance explains: McNemar's test on the tickets where only one of them is right,
    one-sided, z at least ``PROMOTE_Z`` (about 90%). A tie, or a lead of a ticket or two on a
    small slice, is not better."""
    gained = sum(c and not k for c, k in zip(candidate, current, strict=True))
    lost = sum(k and not c for c, k in zip(candidate, current, strict=True))
    if gained <= lost:
        return False
    return (gained - lost) / math.sqrt(gained + lost) >= PROMOTE_Z


def split_held_out(
    examples: Sequence[Labeled], share: float
) -> tuple[list[Labeled], list[Labeled]]:
    """(older examples, the newest ``share`` of them): examples are oldest first."""
    count = int(len(examples) * share)
    if count == 0:
        return list(examples), []
    return list(examples[:-count]), list(examples[-count:])


def retrain(
    versions: ModelVersions,
    tenant: str,
    history: Sequence[Labeled],
    examples: Sequence[Labeled],
    embedder: Embedder,
    *,
    held_out: float,
    min_held_out: int,
    min_examples: int,
    trigger: str = "schedule",
) -> RetrainResult:
    """Train a candidate without the newest tickets, compare, promote only when better
    (``significantly_better``).

    ``history`` and ``examples`` are oldest first. The held-out slice is the newest ``held_out``
    share of the closed tickets that the model in use has not learned (with the category of an
    example where there is one): the recent outcomes, ours right or wrong as they came. Examples
    alone are no fair slice (a correction is a ticket the model in use got wrong, so they favour
    the candidate): with too few recent closed tickets the candidate is kept as a ``candidate``
    for a person to promote, never promoted here (unless the tenant has no model at all)."""
    from psatriage.local_engine import DataError  # noqa: PLC0415

    active = versions.active(tenant)
    seen = active[0].trained_on if active is not None else frozenset()
    newest = split_held_out(history, held_out)[1]
    unseen = {h.ticket_id for h in newest} - seen  # what the model in use learned is no test
    # the held-out slice: recent closed tickets, with the category a person gave where an
    # example says so
    recent = training_set(
        [h for h in newest if h.ticket_id in unseen],
        [e for e in examples if e.ticket_id in unseen],
    ).items
    data = training_set(
        [h for h in history if h.ticket_id not in unseen],
        [e for e in examples if e.ticket_id not in unseen],
    )
    described = {**data.describe(), "held_out": len(recent)}
    learned = [i.ticket_id for i in data.items]
    try:
        candidate = fit(
            data.items, embedder, source=f"{tenant} (retrain)", min_examples=min_examples
        )
    except DataError as exc:
        return RetrainResult(False, f"nothing to train: {exc}", data=described)
    if active is None and len(recent) < min_held_out:
        info = versions.add(
            tenant, candidate, state="active", trigger=trigger, extra=described, trained_on=learned
        )
        return RetrainResult(True, "the tenant had no model", info, data=described)
    if len(recent) < min_held_out:
        info = versions.add(
            tenant,
            candidate,
            state="candidate",
            trigger=trigger,
            extra=described,
            trained_on=learned,
        )
        return RetrainResult(
            False,
            f"{len(recent)} recent closed tickets to compare on, fewer than {min_held_out}: "
            "kept as a candidate for a person to promote",
            info,
            data=described,
        )
    everything = [*data.items, *recent]
    candidates = categories(everything)
    current_model = active[1] if active is not None else None
    current_hits = hits(current_model, recent, candidates, embedder)
    candidate_hits = hits(candidate, recent, candidates, embedder)
    comparison = Comparison(
        held_out=len(recent),
        current=active[0].name if active is not None else "zero-shot",
        current_accuracy=round(sum(current_hits) / len(recent), 4),
        candidate_accuracy=round(sum(candidate_hits) / len(recent), 4),
    )
    better = significantly_better(candidate_hits, current_hits)
    scores = (
        f"candidate {comparison.candidate_accuracy:.3f} vs {comparison.current} "
        f"{comparison.current_accuracy:.3f} on {len(recent)} held-out tickets"
    )
    info = versions.add(
        tenant,
        candidate,
        state="active" if better else "refused",
        trigger=trigger,
        evaluation=comparison.to_dict(),
        extra=described,
        trained_on=learned,
    )
    reason = f"better: {scores}" if better else f"not better: {scores}"
    return RetrainResult(better, reason, info, comparison, described)


# -- the schedule ---------------------------------------------------------------------------


class RetrainMarks:
    """Per tenant: when the scheduled retrain is next due; ``claim`` lets one process run it."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def claim(self, tenant: str, every_seconds: float, now: datetime | None = None) -> bool:
        """Whether this caller runs the tenant's retrain now (the next one is then due in
        ``every_seconds``). A tenant seen for the first time is due one period from now."""
        now = now or utcnow()
        following = now + timedelta(seconds=every_seconds)
        with self._sessions.begin() as session:
            dialect = session.get_bind().dialect.name
            claimed = session.execute(
                update(RetrainMarkRow)
                .where(RetrainMarkRow.tenant == tenant, RetrainMarkRow.next_run_at <= now)
                .values(next_run_at=following, last_run_at=now, updated_at=now)
                .returning(RetrainMarkRow.tenant)
            ).scalar_one_or_none()
            if claimed is not None:
                return True
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            session.execute(
                insert(RetrainMarkRow)
                .values(tenant=tenant, next_run_at=following, result="", updated_at=now)
                .on_conflict_do_nothing(index_elements=["tenant"])
            )
            return False

    def finish(self, tenant: str, result: str, *, retry_at: datetime | None = None) -> None:
        """Record how the run ended; ``retry_at`` brings the next run forward (a run that
        could not read what it needed)."""
        values: dict[str, Any] = {"result": result[:2000], "updated_at": utcnow()}
        if retry_at is not None:
            values["next_run_at"] = retry_at
        with self._sessions.begin() as session:
            session.execute(
                update(RetrainMarkRow).where(RetrainMarkRow.tenant == tenant).values(**values)
            )

    def get(self, tenant: str) -> RetrainMarkRow | None:
        with self._sessions() as session:
            return session.get(RetrainMarkRow, tenant)


HistoryReader = Callable[[str, datetime, int], list[Labeled]]

_running_lock = threading.Lock()
_running: threading.Thread | None = None


def kick_retrains(runtime: Runtime) -> bool:
    """Run the due retrains in a background thread of this process unless one already runs
    (the housekeeping loop's one call: it must not hold up reaping and polling, nor take a
    worker slot from new tickets). Returns whether a thread was started."""
    global _running  # noqa: PLW0603 - one retrain thread per process
    if not any(
        t.learning.retrain_seconds is not None and t.classifier_kind in LEARNING_KINDS
        for t in runtime.config.tenants.values()
    ):
        return False
    with _running_lock:
        if _running is not None and _running.is_alive():
            return False

        def run() -> None:
            try:
                scheduled_retrain(runtime)
            except Exception:  # a database blip: logged, tried again next round
                log.exception("scheduled retrain failed; trying again next round")

        _running = threading.Thread(target=run, name="psatriage-retrain", daemon=True)
        _running.start()
        return True


def scheduled_retrain(runtime: Runtime, read_history: HistoryReader | None = None) -> int:
    """Run every due retrain of this round (the housekeeping loop's one call); returns how
    many ran."""
    from psatriage.learning.dataset import from_examples  # noqa: PLC0415
    from psatriage.store.examples import list_examples  # noqa: PLC0415

    marks = RetrainMarks(runtime.sessions)
    ran = 0
    for tenant in runtime.config.tenants.values():
        every = tenant.learning.retrain_seconds
        if every is None or tenant.classifier_kind not in LEARNING_KINDS:
            continue
        if not marks.claim(tenant.name, every):
            continue
        ran += 1
        started = time.monotonic()
        try:
            since = utcnow() - timedelta(days=tenant.learning.history_days)
            reader = read_history or psa_history(runtime)
            history = (
                reader(tenant.name, since, tenant.learning.history_limit)
                if tenant.learning.history_days
                else []
            )
            examples = from_examples(list_examples(runtime.sessions, tenant=tenant.name))
            result = retrain(
                ModelVersions(runtime.sessions),
                tenant.name,
                history,
                examples,
                _embedder(),
                held_out=tenant.learning.held_out,
                min_held_out=tenant.learning.min_held_out,
                min_examples=_min_examples(),
            )
            fields = _retrain_fields(runtime, tenant, history)
        except CallLimitReached as exc:
            retry = utcnow() + timedelta(seconds=RETRY_SECONDS)
            marks.finish(tenant.name, f"postponed: {exc}", retry_at=retry)
            log.info("retrain postponed", tenant=tenant.name, error=str(exc))
            continue
        except PsatriageError as exc:
            retry = utcnow() + timedelta(seconds=RETRY_SECONDS)
            marks.finish(tenant.name, f"failed: {exc}", retry_at=retry)
            log.warning("retrain failed", tenant=tenant.name, error=str(exc))
            continue
        marks.finish(tenant.name, result.line())
        log.info(
            "retrain finished",
            tenant=tenant.name,
            promoted=result.promoted,
            reason=result.reason,
            fields=fields,
            seconds=round(time.monotonic() - started, 1),
        )
    return ran


def _retrain_fields(runtime: Runtime, tenant: Tenant, history: Sequence[Labeled]) -> list[str]:
    """The tenant's field models trained again on the same history (``learning.fields``); the
    fields trained."""
    from psatriage.learning.fields import train_fields  # noqa: PLC0415

    trained = train_fields(tenant, history, _embedder(), min_examples=_min_examples())
    return runtime.field_models.store(tenant.name, trained)


def psa_history(runtime: Runtime) -> HistoryReader:
    """Reads a tenant's closed, categorized tickets from its PSA, oldest first."""
    from psatriage.learning.dataset import from_history  # noqa: PLC0415

    def read(tenant: str, since: datetime, limit: int) -> list[Labeled]:
        adapter = runtime.adapter(tenant)
        if not adapter.can_list_history():
            return []
        return from_history(reversed(adapter.list_labeled_tickets(since, limit)))  # oldest first

    return read


def _embedder() -> Embedder:
    from psatriage.local_engine.embed import shared_embedder  # noqa: PLC0415

    return shared_embedder()


def _min_examples() -> int:
    from psatriage.local_engine import DEFAULT_MIN_EXAMPLES  # noqa: PLC0415

    return DEFAULT_MIN_EXAMPLES
