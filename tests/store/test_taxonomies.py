"""Stored category trees on real SQLite and PostgreSQL: kept per tenant and scope, replaced in
place when read again (two workers may store the same tree at once)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from psatriage.store import db
from psatriage.store.tables import utcnow
from psatriage.store.taxonomies import StoredTaxonomies
from tests.fakes.inprocess import TREE, with_priority


@pytest.fixture
def stored(database_url: str) -> Iterator[StoredTaxonomies]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield StoredTaxonomies(db.make_sessionmaker(engine))
    engine.dispose()


def test_a_tree_comes_back_as_it_was_stored_until_it_expires(stored: StoredTaxonomies) -> None:
    assert stored.load("acme", TREE.scope) is None
    tree = with_priority()
    expires = stored.save("acme", tree, ttl_seconds=3600)
    loaded = stored.load("acme", TREE.scope)
    assert loaded is not None
    assert loaded[0] == tree and loaded[0].fingerprint == tree.fingerprint
    assert loaded[1] == expires and expires > utcnow()
    assert stored.load("contoso", TREE.scope) is None  # per tenant


def test_storing_again_replaces_the_tree_even_from_many_workers(stored: StoredTaxonomies) -> None:
    stored.save("acme", TREE, ttl_seconds=0)
    fresh = replace(TREE, leaves=TREE.leaves[1:])
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def save() -> None:
        try:
            start.wait()
            stored.save("acme", fresh, ttl_seconds=60)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    loaded = stored.load("acme", TREE.scope)
    assert loaded is not None and loaded[0] == fresh
