"""Category trees, cached per tenant and scope: in memory, then in the database, then the PSA.

The live values of ticket fields (``PSAAdapter.field_values``: priorities, boards, queues, teams)
are cached the same way, each under the scope ``field:<field_scope>``.

A tree is re-read when its time is up, and at once when the PSA rejects a value we wrote
(``refresh``), so a value deactivated in the PSA stops being offered.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from psatriage.domain import Facet, Taxonomy, Ticket
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

    def field_values(
        self,
        tenant: str,
        adapter: PSAAdapter[Any],
        ticket: Ticket,
        field: str,
        *,
        ttl_seconds: float,
        refresh: bool = False,
    ) -> Facet:
        """A ticket field's live values, read from the PSA once per expiry (or ``refresh``)."""
        scope = f"field:{adapter.field_scope(ticket, field)}"
        key = (tenant, scope)
        now = utcnow()
        if not refresh:
            with self._lock:
                cached = self._memory.get(key)
            if cached is None or cached[1] <= now:
                cached = self._stored.load(tenant, scope)
            if cached is not None and cached[1] > now and cached[0].facets:
                with self._lock:
                    self._memory[key] = cached
                return cached[0].facets[0]
        facet = adapter.field_values(ticket, field)
        holder = Taxonomy(scope=scope, scope_name=field, levels=(), leaves=(), facets=(facet,))
        expires = self._stored.save(tenant, holder, ttl_seconds=ttl_seconds)
        with self._lock:
            self._memory[key] = (holder, expires)
        return facet
