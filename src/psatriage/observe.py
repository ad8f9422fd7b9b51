"""The state of the service as gauges, read when ``/metrics`` is scraped: what waits in the
ledger, the oldest waiting event, events by state, the review queue, breakers and degraded
tenants.

The counters and histograms of ``psatriage.metrics`` count as things happen in a process; these
are read from the database (shared by every process) at scrape time, except the model breakers,
which live in the processes that run events (with ``serve``'s embedded workers: this one).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import func, select

from psatriage.runtime import Runtime
from psatriage.store.tables import EventRow, EventState, ReviewRow, ReviewState, utcnow

WAITING = (EventState.RECEIVED.value, EventState.RETRYING.value)
SHOWN_STATES = (
    EventState.RECEIVED.value,
    EventState.PROCESSING.value,
    EventState.RETRYING.value,
    EventState.PARKED.value,
    EventState.FAILED.value,
)
"""States counted by ``psatriage_events_in_state``: those that wait or need a person (the ones
that ended well are counted as they end, by ``psatriage_events_total``)."""


def state_registry(runtime: Runtime) -> CollectorRegistry:
    """A registry holding the service's gauges as of now."""
    registry = CollectorRegistry(auto_describe=True)
    depth = Gauge(
        "psatriage_queue_depth",
        "Events waiting to be worked on (received or retrying), by tenant.",
        ["tenant"],
        registry=registry,
    )
    in_state = Gauge(
        "psatriage_events_in_state",
        "Events that wait or need a person, by tenant and state.",
        ["tenant", "state"],
        registry=registry,
    )
    oldest = Gauge(
        "psatriage_oldest_waiting_event_age_seconds",
        "Age of the oldest event still waiting (received or retrying), by tenant.",
        ["tenant"],
        registry=registry,
    )
    breaker = Gauge(
        "psatriage_breaker_open",
        "1 while the tenant's model circuit breaker is open in this process.",
        ["tenant"],
        registry=registry,
    )
    degraded = Gauge(
        "psatriage_tenant_degraded",
        "1 while the tenant has repeated PSA or model failures (/readyz says why).",
        ["tenant"],
        registry=registry,
    )
    reviews = Gauge(
        "psatriage_review_queue_size",
        "Suggestions waiting for a person in the review queue, by tenant.",
        ["tenant"],
        registry=registry,
    )
    tenants = sorted(runtime.config.tenants)
    for tenant in tenants:
        depth.labels(tenant).set(0)
        oldest.labels(tenant).set(0)
        reviews.labels(tenant).set(0)
    now = utcnow()
    with runtime.sessions() as session:
        rows = session.execute(
            select(EventRow.tenant, EventRow.state, func.count(), func.min(EventRow.received_at))
            .where(EventRow.state.in_(SHOWN_STATES))
            .group_by(EventRow.tenant, EventRow.state)
        ).all()
        waiting = session.execute(
            select(ReviewRow.tenant, func.count())
            .where(ReviewRow.state == ReviewState.PENDING.value)
            .group_by(ReviewRow.tenant)
        ).all()
    for tenant, count in waiting:
        reviews.labels(tenant).set(count)
    ages: dict[str, float] = {}
    for tenant, state, count, first in rows:
        in_state.labels(tenant, state).set(count)
        if state in WAITING:
            depth.labels(tenant).inc(count)
            age = max(0.0, (now - first).total_seconds())
            ages[tenant] = max(ages.get(tenant, 0.0), age)
    for tenant, age in ages.items():
        oldest.labels(tenant).set(age)
    for tenant, is_open in runtime.breakers_open().items():
        breaker.labels(tenant).set(1 if is_open else 0)
    trouble = runtime.degraded()
    for tenant in tenants:
        degraded.labels(tenant).set(1 if tenant in trouble else 0)
    return registry
