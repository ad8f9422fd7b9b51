"""``config check`` for the fields: what the tenants file names must exist, active, in the PSA.

A priority the matrix, ``order`` or ``at_least`` names; a routing target; a board / queue /
team or a category a noise action sets: each is looked up in the PSA's live values and a missing
or inactive one is a problem naming tenant, key and fix.
"""

from __future__ import annotations

from typing import Any

from psatriage.config.fields import NOISE_KINDS
from psatriage.config.tenant import Tenant
from psatriage.domain import Facet, Ticket
from psatriage.fields.noise import configured_category
from psatriage.psa.base import PSAAdapter


def problems(tenant: Tenant, adapter: PSAAdapter[Any]) -> list[str]:
    """One line per name in the fields settings that the PSA does not have (active)."""
    settings = tenant.fields
    scopes = adapter.list_scopes()
    sample = Ticket(
        id="config-check", title="", description="", scope=scopes[0][0] if scopes else ""
    )
    found: list[str] = []
    if "priority" in settings.enabled:
        values = adapter.field_values(sample, "priority")
        rules = settings.priority
        named = [("fields.priority.order", n) for n in rules.order]
        named += [("fields.priority.at_least", rules.at_least)] if rules.at_least else []
        named += [
            (f"fields.priority.matrix.{u}.{i}", n)
            for u, row in rules.matrix.items()
            for i, n in row.items()
        ]
        named += [
            (f"companies.{company}.fields.priority.at_least", o.at_least)
            for company, override in tenant.companies.items()
            if (o := override.fields.get("priority")) is not None and o.at_least
        ]
        found += _missing(tenant.name, values, named)
    routes: Facet | None = None
    wants_routes = "routing" in settings.enabled or any(
        settings.noise.action_for(kind).routing for kind in NOISE_KINDS
    )
    if wants_routes and "routing" in adapter.ticket_fields:
        routes = adapter.field_values(sample, "routing")
        named = [("fields.routing.targets", n) for n in settings.routing.targets]
        named += [
            (f"fields.noise.{kind}.routing", route)
            for kind in NOISE_KINDS
            if (route := settings.noise.action_for(kind).routing)
        ]
        found += _missing(tenant.name, routes, named)
    if "noise" in settings.enabled and "status" in adapter.ticket_fields:
        found += _missing_statuses(tenant, adapter, sample, routes)
    if "noise" in settings.enabled:
        found += _missing_categories(tenant, adapter, routes, scopes)
    return found


def _missing_categories(
    tenant: Tenant,
    adapter: PSAAdapter[Any],
    routes: Facet | None,
    scopes: list[tuple[str, str]],
) -> list[str]:
    """The categories noise actions set, looked up in the tree the ticket will be on: where the
    routing picks the tree (a ConnectWise board), the board the action routes to; else every
    tree, as a noise ticket may arrive on any (a ConnectWise board, a HaloPSA ticket type)."""
    found: list[str] = []
    for kind in NOISE_KINDS:
        action = tenant.fields.noise.action_for(kind)
        if action.category is None:
            continue
        places = scopes or [("", "")]
        if action.routing and routes is not None and adapter.routing_sets_scope:
            route = _by_name(routes, action.routing)
            name = dict(scopes).get(route or "", action.routing)
            places = [(route, name)] if route else []  # a missing route is named above
        for scope, name in places:
            taxonomy = adapter.get_taxonomy(
                Ticket(id="config-check", title="", description="", scope=scope, scope_name=name)
            )
            if configured_category(taxonomy, action.category) is None:
                tree = taxonomy.scope_name or scope
                found.append(
                    f"tenant {tenant.name!r}, key 'fields.noise.{kind}.category': "
                    f"{action.category!r} is not an active category of {tree}; fix: name an "
                    f"active category of {tree} (key or path)"
                )
    return found


def _missing_statuses(
    tenant: Tenant, adapter: PSAAdapter[Any], sample: Ticket, routes: Facet | None
) -> list[str]:
    """The statuses noise actions set, looked up where the ticket will be (on ConnectWise the
    board it is routed to, else every board: statuses belong to a board)."""
    found: list[str] = []
    for kind in NOISE_KINDS:
        action = tenant.fields.noise.action_for(kind)
        if action.status is None:
            continue
        places = [sample]
        if adapter.routing_sets_scope:
            route = _by_name(routes, action.routing) if routes and action.routing else None
            boards = [(route, action.routing or "")] if route else adapter.list_scopes()
            places = [
                Ticket(id="config-check", title="", description="", scope=board, scope_name=name)
                for board, name in boards
                if board
            ]
        for where in places:
            values = adapter.field_values(where, "status")
            if _by_name(values, action.status) is None:
                have = ", ".join(repr(o.name) for o in values.options) or "none"
                on = f" on {where.scope_name}" if adapter.routing_sets_scope else ""
                found.append(
                    f"tenant {tenant.name!r}, key 'fields.noise.{kind}.status': the PSA has no "
                    f"active status {action.status!r}{on} (it has {have}); fix: use one of those "
                    "names"
                )
    return found


def _missing(tenant: str, values: Facet, named: list[tuple[str, str]]) -> list[str]:
    have = ", ".join(repr(o.name) for o in values.options) or "none"
    return [
        f"tenant {tenant!r}, key {key!r}: the PSA has no active {values.label.lower()} "
        f"{name!r} (it has {have}); fix: use one of those names"
        for key, name in named
        if _by_name(values, name) is None
    ]


def _by_name(values: Facet, name: str) -> str | None:
    return next(
        (o.id for o in values.options if o.name.casefold() == name.casefold() or o.id == name),
        None,
    )
