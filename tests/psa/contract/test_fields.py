"""The contract, ticket fields: every PSA lists the live values of priority and routing and
writes them in the same single update as the category, or alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from psatriage.domain import Category, LevelValue
from psatriage.errors import CategoryRejected
from psatriage.psa.base import TITLE_LEVEL, PSAAdapter
from tests.fakes.kit import ContractKit

FIELDS = ("priority", "routing")


def test_stores_priority_routing_and_title(adapter: PSAAdapter[Any]) -> None:
    assert {*FIELDS, "title"} <= adapter.ticket_fields


def test_rewrites_the_title_in_the_same_update(kit: ContractKit, adapter: PSAAdapter[Any]) -> None:
    ticket_id = kit.new_ticket("Help", "The printer on floor 3 has a paper jam")
    ticket = adapter.get_ticket(ticket_id)
    leaf = adapter.get_taxonomy(ticket).leaves[0]
    title = "Paper jam in the floor 3 printer"
    adapter.set_category(ticket, leaf.with_facets((LevelValue(TITLE_LEVEL, title, title),)))
    assert len(kit.category_writes(ticket_id)) == 1
    assert adapter.get_ticket(ticket_id).title == title


def test_lists_the_live_values_of_each_field(kit: ContractKit, adapter: PSAAdapter[Any]) -> None:
    ticket = adapter.get_ticket(kit.new_ticket("Printer", "jam"))
    for field in FIELDS:
        values = adapter.field_values(ticket, field)
        assert values.name == field and values.label
        ids = [o.id for o in values.options]
        assert ids and len(ids) == len(set(ids))
        assert len({o.level for o in values.options}) == 1  # one PSA field to write
        assert adapter.field_scope(ticket, field).startswith(field)


def test_writes_category_priority_and_routing_in_one_update(
    kit: ContractKit, adapter: PSAAdapter[Any]
) -> None:
    assert kit.field_value is not None
    ticket_id = kit.new_ticket("Printer", "jam")
    ticket = adapter.get_ticket(ticket_id)
    leaf = adapter.get_taxonomy(ticket).leaves[0]
    priority = adapter.field_values(ticket, "priority").options[-1]
    routes = adapter.field_values(ticket, "routing").options
    # where routing owns the tree (a ConnectWise board) the category must stay on its board
    route = next((o for o in routes if o.id == ticket.scope), routes[-1])
    adapter.set_category(ticket, leaf.with_facets((priority, route)))
    assert len(kit.category_writes(ticket_id)) == 1
    assert kit.field_value(ticket_id, "priority") == priority.id
    assert kit.field_value(ticket_id, "routing") == route.id
    reread = adapter.get_ticket(ticket_id)
    assert [(v.level, v.id) for v in reread.current][: len(leaf.path)] == [
        (v.level, v.id) for v in leaf.path
    ]


def test_writes_fields_alone_leaving_the_category(
    kit: ContractKit, adapter: PSAAdapter[Any]
) -> None:
    assert kit.field_value is not None
    ticket_id = kit.new_ticket("Printer", "jam")
    ticket = adapter.get_ticket(ticket_id)
    priority = adapter.field_values(ticket, "priority").options[0]
    adapter.set_category(ticket, Category("fields", ()).with_facets((priority,)))
    assert len(kit.category_writes(ticket_id)) == 1
    assert kit.field_value(ticket_id, "priority") == priority.id
    assert adapter.get_ticket(ticket_id).current == ticket.current


def test_an_unknown_field_value_is_rejected(kit: ContractKit, adapter: PSAAdapter[Any]) -> None:
    ticket = adapter.get_ticket(kit.new_ticket("Printer", "jam"))
    priority = adapter.field_values(ticket, "priority").options[0]
    wrong = type(priority)(priority.level, "987654", "Nonexistent")
    with pytest.raises(CategoryRejected):
        adapter.set_category(ticket, Category("fields", ()).with_facets((wrong,)))


def test_unsupported_fields_say_so(kit: ContractKit, adapter: PSAAdapter[Any]) -> None:
    ticket = adapter.get_ticket(kit.new_ticket("Printer", "jam"))
    with pytest.raises(NotImplementedError, match="does not store the ticket field 'colour'"):
        adapter.field_values(ticket, "colour")


def test_labeled_history_carries_the_fields_people_left(
    kit: ContractKit, adapter: PSAAdapter[Any]
) -> None:
    """A closed ticket's priority and routing, as ``field_values`` names their values: what a
    backtest scores the fields against and what the local engine learns them from."""
    assert kit.history_ticket is not None and kit.field_value is not None
    day = datetime(2026, 1, 1, tzinfo=UTC)
    ticket_id = kit.history_ticket("ticket with fields", day + timedelta(days=1), True, True)
    (labeled,) = adapter.list_labeled_tickets(day, limit=5)
    assert labeled.ticket.id == ticket_id
    for field in FIELDS:
        held = kit.field_value(ticket_id, field)
        assert held is not None
        value = labeled.fields[field]
        assert value.id == held and value.name
        level = adapter.field_values(labeled.ticket, field).options[0].level
        assert value.level == level


def test_writes_a_status_in_the_same_update_as_the_category(
    kit: ContractKit, adapter: PSAAdapter[Any]
) -> None:
    """What a noise action's ``status`` writes: a live, active status, with the category."""
    assert "status" in adapter.ticket_fields and kit.field_value is not None
    ticket_id = kit.new_ticket("Printer", "jam")
    ticket = adapter.get_ticket(ticket_id)
    statuses = adapter.field_values(ticket, "status")
    assert statuses.name == "status" and statuses.label
    assert statuses.options and len({o.level for o in statuses.options}) == 1
    assert adapter.field_scope(ticket, "status").startswith("status")
    status = statuses.options[-1]
    leaf = adapter.get_taxonomy(ticket).leaves[0]
    adapter.set_category(ticket, leaf.with_facets((status,)))
    assert len(kit.category_writes(ticket_id)) == 1
    assert kit.field_value(ticket_id, "status") == status.id
    wrong = type(status)(status.level, "987654", "Nonexistent")
    with pytest.raises(CategoryRejected):
        adapter.set_category(ticket, Category("fields", ()).with_facets((wrong,)))
