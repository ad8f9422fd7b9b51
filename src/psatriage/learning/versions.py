"""Trained local-engine models per tenant, in the database (``model_versions``).

Every ``psatriage train`` and every scheduled retrain adds a version: the model file's bytes and
its training report, numbered 1, 2, ... per tenant. At most one version is ``active`` (the one the
local and hybrid classifiers use, within ``reload_seconds``); ``promote`` makes any version active,
``rollback`` goes back to the version that was active before. A retrain that scored worse than
the model in use is kept as ``refused``, with both scores, so the refusal can be read later.
Keeping the bytes in the database lets every worker process, on any host, use the same model.
Only the active version and the ``KEEP_MODELS`` newest others keep their model file (a few MB
each); older versions stay listed with their reports, and cannot be promoted again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, defer, sessionmaker

from psatriage.errors import ConfigError
from psatriage.store.tables import ModelVersionRow, utcnow

if TYPE_CHECKING:
    from psatriage.local_engine.model import TrainedModel

State = Literal["active", "candidate", "retired", "refused"]
ACTIVE: Final = "active"
TRAINED_ON: Final = "trained_on"  # the report's list of ticket ids the model learned
KEEP_MODELS: Final = 6  # versions beside the active one that keep their model file


class UnknownVersion(ConfigError):
    """A model version the tenant does not have."""


@dataclass(frozen=True)
class VersionInfo:
    """One version without its bytes (for listing)."""

    tenant: str
    version: int
    state: str
    trigger: str
    report: dict[str, Any]
    evaluation: dict[str, Any] | None
    created_at: datetime
    promoted_at: datetime | None
    kept: bool = True  # whether its model file is still kept (promotable)
    trained_on: frozenset[str] = frozenset()  # the ids of the tickets it learned

    @property
    def name(self) -> str:
        return version_name(self.version)


def version_name(number: int) -> str:
    return f"v{number:04d}"


def parse_version(tenant: str, text: str) -> int:
    """``v0003``, ``3`` → 3; anything else is an ``UnknownVersion``."""
    digits = text.strip().lower().removeprefix("v")
    if not digits.isdigit() or int(digits) < 1:
        raise UnknownVersion(
            f"tenant {tenant!r}: {text!r} is not a model version; fix: use a version listed by "
            f"'psatriage model list --tenant {tenant}' (e.g. v0003)"
        )
    return int(digits)


class ModelVersions:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(
        self,
        tenant: str,
        model: TrainedModel,
        *,
        state: State,
        trigger: str,
        evaluation: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        trained_on: Iterable[str] = (),
    ) -> VersionInfo:
        """Store ``model`` as the tenant's next version (made active when ``state`` is active).

        ``model.report.version`` is set to the version's name; ``extra`` is added to the stored
        report (what the training set was made of); ``trained_on`` are the ids of the tickets it
        learned, kept so a later retrain holds out only tickets this model has not seen."""
        from dataclasses import replace  # noqa: PLC0415

        with self._sessions.begin() as session:
            newest = session.execute(
                select(func.max(ModelVersionRow.version)).where(ModelVersionRow.tenant == tenant)
            ).scalar_one_or_none()
            number = (newest or 0) + 1
            model.report = replace(model.report, version=version_name(number))
            now = utcnow()
            if state == ACTIVE:
                self._retire_active(session, tenant)
            row = ModelVersionRow(
                tenant=tenant,
                version=number,
                state=state,
                trigger=trigger,
                data=model.to_bytes(),
                report={
                    **model.report.to_dict(),
                    **(extra or {}),
                    TRAINED_ON: sorted(set(trained_on)),
                },
                evaluation=evaluation,
                created_at=now,
                promoted_at=now if state == ACTIVE else None,
            )
            session.add(row)
            session.flush()
            self._prune(session, tenant)
            return _info(row)

    def list(self, tenant: str) -> list[VersionInfo]:
        """The tenant's versions, newest first (without loading their model files)."""
        with self._sessions() as session:
            rows = session.execute(
                select(ModelVersionRow, func.length(ModelVersionRow.data) > 0)
                .where(ModelVersionRow.tenant == tenant)
                .order_by(ModelVersionRow.version.desc())
                .options(defer(ModelVersionRow.data))
            ).all()
            return [_info(row, kept=bool(kept)) for row, kept in rows]

    def active_number(self, tenant: str) -> int | None:
        """The active version's number (a cheap query, for noticing a change)."""
        with self._sessions() as session:
            return session.execute(
                select(ModelVersionRow.version).where(
                    ModelVersionRow.tenant == tenant, ModelVersionRow.state == ACTIVE
                )
            ).scalar_one_or_none()

    def active(self, tenant: str) -> tuple[VersionInfo, TrainedModel] | None:
        with self._sessions() as session:
            row = session.execute(
                select(ModelVersionRow).where(
                    ModelVersionRow.tenant == tenant, ModelVersionRow.state == ACTIVE
                )
            ).scalar_one_or_none()
            return None if row is None else (_info(row), _model(row))

    def load(self, tenant: str, number: int) -> tuple[VersionInfo, TrainedModel]:
        with self._sessions() as session:
            row = self._get(session, tenant, number)
            return _info(row), _model(row)

    def promote(self, tenant: str, number: int) -> VersionInfo:
        """Make ``number`` the active version (the active one is retired)."""
        with self._sessions.begin() as session:
            row = self._get(session, tenant, number)
            if not row.data:
                raise UnknownVersion(
                    f"tenant {tenant!r}: the model of {version_name(number)} is no longer kept "
                    f"(only the {KEEP_MODELS} newest versions beside the active one keep theirs); "
                    f"fix: promote a newer version or train again"
                )
            if row.state != ACTIVE:
                self._retire_active(session, tenant)
                row.state, row.promoted_at = ACTIVE, utcnow()
            session.flush()
            return _info(row)

    def rollback(self, tenant: str) -> tuple[VersionInfo, VersionInfo]:
        """Make the version that was active before the current one active again; returns
        (the version left, the version now active)."""
        with self._sessions.begin() as session:
            current = session.execute(
                select(ModelVersionRow).where(
                    ModelVersionRow.tenant == tenant, ModelVersionRow.state == ACTIVE
                )
            ).scalar_one_or_none()
            if current is None:
                raise UnknownVersion(
                    f"tenant {tenant!r} has no active model version to roll back; fix: train "
                    f"one with 'psatriage train --tenant {tenant}' or promote a listed version"
                )
            earlier = session.execute(
                select(ModelVersionRow)
                .where(
                    ModelVersionRow.tenant == tenant,
                    ModelVersionRow.state == "retired",
                    ModelVersionRow.promoted_at.is_not(None),
                    ModelVersionRow.id != current.id,
                    func.length(ModelVersionRow.data) > 0,
                )
                .order_by(ModelVersionRow.promoted_at.desc(), ModelVersionRow.version.desc())
                .limit(1)
            ).scalar_one_or_none()
            if earlier is None:
                raise UnknownVersion(
                    f"tenant {tenant!r}: {version_name(current.version)} is the only version "
                    "that was ever active; nothing to roll back to"
                )
            current.state = "candidate"  # left, not retired: a second rollback goes further back
            earlier.state, earlier.promoted_at = ACTIVE, utcnow()
            session.flush()
            return _info(current), _info(earlier)

    def _get(self, session: Session, tenant: str, number: int) -> ModelVersionRow:
        row = session.execute(
            select(ModelVersionRow).where(
                ModelVersionRow.tenant == tenant, ModelVersionRow.version == number
            )
        ).scalar_one_or_none()
        if row is None:
            raise UnknownVersion(
                f"tenant {tenant!r} has no model version {version_name(number)}; fix: use one "
                f"listed by 'psatriage model list --tenant {tenant}'"
            )
        return row

    @staticmethod
    def _prune(session: Session, tenant: str) -> None:
        """Drop the model files of all but the active and the ``KEEP_MODELS`` newest others."""
        keep = (
            select(ModelVersionRow.id)
            .where(ModelVersionRow.tenant == tenant, ModelVersionRow.state != ACTIVE)
            .order_by(ModelVersionRow.version.desc())
            .limit(KEEP_MODELS)
        )
        session.execute(
            update(ModelVersionRow)
            .where(
                ModelVersionRow.tenant == tenant,
                ModelVersionRow.state != ACTIVE,
                ModelVersionRow.id.not_in(keep.scalar_subquery()),
                func.length(ModelVersionRow.data) > 0,
            )
            .values(data=b"")
            .execution_options(synchronize_session=False)
        )

    @staticmethod
    def _retire_active(session: Session, tenant: str) -> None:
        session.execute(
            update(ModelVersionRow)
            .where(ModelVersionRow.tenant == tenant, ModelVersionRow.state == ACTIVE)
            .values(state="retired")
        )


def _info(row: ModelVersionRow, *, kept: bool = True) -> VersionInfo:
    report = dict(row.report)
    trained_on = frozenset(str(t) for t in report.pop(TRAINED_ON, ()))
    return VersionInfo(
        tenant=row.tenant,
        version=row.version,
        state=row.state,
        trigger=row.trigger,
        report=report,
        evaluation=dict(row.evaluation) if row.evaluation is not None else None,
        created_at=row.created_at,
        promoted_at=row.promoted_at,
        kept=kept,
        trained_on=trained_on,
    )


def _model(row: ModelVersionRow) -> TrainedModel:
    from psatriage.local_engine.model import TrainedModel  # noqa: PLC0415

    return TrainedModel.from_bytes(row.data, name=f"{row.tenant} {version_name(row.version)}")
