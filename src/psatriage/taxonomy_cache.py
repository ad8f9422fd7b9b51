"""Category trees, cached per tenant and scope: in memory, then in the database, then the PSA.

A tree is re-read when its time is up, and at once when the PSA rejects a value we wrote
(``refresh``), so a value deactivated in the PSA stops being offered.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from psatriage.domain import Taxonomy, Ticket
from psatriage.psa.base import PSAAdapter
from psatriage.store.tables import utcnow
from psatriage.store.taxonomies import StoredTaxonomies


class TaxonomyCache:
    def __init__(self, stored: StoredTaxonomies) -> None:
        self._stored = stored
        self._memory: dict[tuple[str, str], tuple[Taxonomy, datetime]] = {}
        self._lock = threading.Lock()

    def get(
        self, tenant: str, adapter: PSAAdapter[Any], ticket: Ticket, *, ttl_seconds: float
    ) -> Taxonomy:
        key = (tenant, ticket.scope)
        now = utcnow()
        with self._lock:
            cached = self._memory.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        stored = self._stored.load(tenant, ticket.scope)
        if stored is not None and stored[1] > now:
            with self._lock:
                self._memory[key] = stored
            return stored[0]
        return self.refresh(tenant, adapter, ticket, ttl_seconds=ttl_seconds)

    def refresh(
        self, tenant: str, adapter: PSAAdapter[Any], ticket: Ticket, *, ttl_seconds: float
    ) -> Taxonomy:
        taxonomy = adapter.get_taxonomy(ticket)
        expires = self._stored.save(tenant, taxonomy, ttl_seconds=ttl_seconds)
        with self._lock:
            self._memory[(tenant, ticket.scope)] = (taxonomy, expires)
        return taxonomy
