"""Model versions on real SQLite and PostgreSQL: one active version, promote and rollback, and
old model files dropped while their versions stay listed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from psatriage.learning.retrain import fit
from psatriage.learning.versions import KEEP_MODELS, ModelVersions, UnknownVersion, parse_version
from psatriage.local_engine.embed import shared_embedder
from psatriage.store import db
from tests.learning.test_retrain import _items


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield db.make_sessionmaker(engine)
    engine.dispose()


def test_only_the_newest_versions_keep_their_model_file(sessions: sessionmaker[Session]) -> None:
    versions = ModelVersions(sessions)
    model = fit(_items("a", last=4), shared_embedder(), source="test", min_examples=2)
    versions.add("acme", model, state="active", trigger="train")
    for _ in range(KEEP_MODELS + 2):
        versions.add("acme", model, state="refused", trigger="schedule")
    versions.add("other", model, state="refused", trigger="schedule")
    listed = versions.list("acme")
    assert [(v.version, v.kept) for v in listed] == [
        *[(n, True) for n in range(KEEP_MODELS + 3, 3, -1)],
        (3, False),
        (2, False),
        (1, True),  # the active one keeps its file however old
    ]
    assert listed[-1].state == "active" and listed[0].report["version"] == "v0009"
    with pytest.raises(UnknownVersion, match="the model of v0003 is no longer kept"):
        versions.promote("acme", 3)
    assert versions.promote("acme", 4).state == "active"
    left, now = versions.rollback("acme")
    assert (left.version, now.version) == (4, 1)
    with pytest.raises(UnknownVersion, match="nothing to roll back to"):
        versions.rollback("acme")
    assert [v.kept for v in versions.list("other")] == [True]
    with pytest.raises(UnknownVersion, match="has no model version v0042"):
        versions.load("acme", 42)
    assert versions.load("acme", 1)[1].classes == model.classes


def test_version_names() -> None:
    assert parse_version("acme", "v0003") == parse_version("acme", "3") == 3
    for wrong in ("latest", "v0", "-1", ""):
        with pytest.raises(UnknownVersion, match="is not a model version"):
            parse_version("acme", wrong)
