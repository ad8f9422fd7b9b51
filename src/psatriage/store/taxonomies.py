"""The category trees read from the PSAs, kept per tenant and scope until they expire.

``psatriage.taxonomy_cache`` keeps them in memory in front of this table, so every worker process
reads a tree from the PSA once per expiry.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from psatriage.domain import Taxonomy
from psatriage.store.tables import TaxonomyCacheRow, utcnow


class StoredTaxonomies:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def load(self, tenant: str, scope: str) -> tuple[Taxonomy, datetime] | None:
        with self._sessions() as session:
            row = session.get(TaxonomyCacheRow, (tenant, scope))
            if row is None:
                return None
            return Taxonomy.from_dict(row.data), row.expires_at

    def save(self, tenant: str, taxonomy: Taxonomy, *, ttl_seconds: float) -> datetime:
        now = utcnow()
        expires = now + timedelta(seconds=ttl_seconds)
        values = {
            "tenant": tenant,
            "scope": taxonomy.scope,
            "fingerprint": taxonomy.fingerprint,
            "data": taxonomy.to_dict(),
            "fetched_at": now,
            "expires_at": expires,
        }
        with self._sessions.begin() as session:  # an upsert: two workers may read one tree
            insert = _insert_for(session)(TaxonomyCacheRow).values(**values)
            session.execute(
                insert.on_conflict_do_update(
                    index_elements=["tenant", "scope"],
                    set_={
                        k: insert.excluded[k]
                        for k in ("fingerprint", "data", "fetched_at", "expires_at")
                    },
                )
            )
        return expires


def _insert_for(session: Session) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (SQLite and PostgreSQL alike)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
