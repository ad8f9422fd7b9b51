"""The contract, outcomes: what the outcome sweep reads of tickets it decided (their category,
whether they are closed, who changed them last, whether they still exist), for every PSA, in
list queries where the PSA can filter by id."""

from __future__ import annotations

from typing import Any

import pytest

from psatriage.errors import TransientError
from psatriage.psa.base import PSAAdapter
from tests.fakes.kit import ContractKit
from tests.psa.contract.conftest import Build


def test_states_tell_category_closed_and_gone(
    kit: ContractKit, adapter_class: type[PSAAdapter[Any]], build: Build
) -> None:
    assert kit.close is not None and kit.delete is not None
    adapter = build()
    untouched = kit.new_ticket("VPN", "Cannot connect.")
    categorized = kit.new_ticket("Printer", "It jams.")
    closed = kit.new_ticket("Mail", "Bounces.")
    gone = kit.new_ticket("Old", "Deleted.")
    ticket = adapter.get_ticket(categorized)
    leaf = adapter.get_taxonomy(ticket).leaves[0]
    adapter.set_category(ticket, leaf)
    kit.close(closed)
    kit.delete(gone)
    listed = len(kit.fake.requests_to(kit.history_path))

    states = adapter.read_ticket_states([untouched, categorized, closed, gone])

    assert set(states) == {untouched, categorized, closed}
    assert states[untouched].current == () and not states[untouched].closed
    wanted = [(v.level, v.id) for v in leaf.path]
    assert [(v.level, v.id) for v in states[categorized].current][: len(wanted)] == wanted
    assert (
        states[categorized].scope == ticket.scope and states[categorized].ticket_id == categorized
    )
    assert states[closed].closed and not states[categorized].closed
    if adapter_class.state_batch_size > 1:  # one list query for all four
        assert len(kit.fake.requests_to(kit.history_path)) == listed + 1
    assert adapter.read_ticket_states([]) == {}


def test_states_say_who_changed_a_ticket_where_the_psa_does(kit: ContractKit, build: Build) -> None:
    if kit.touch is None:
        pytest.skip(f"{kit.psa} does not say who last changed a ticket")
    ticket_id = kit.new_ticket("Printer", "It jams.")
    kit.touch(ticket_id, "4")
    state = build().read_ticket_states([ticket_id])[ticket_id]
    assert state.changed_by == "4" and state.changed_by_us is not True


def test_states_map_errors(kit: ContractKit, build: Build) -> None:
    ticket_id = kit.new_ticket("Printer", "It jams.")
    kit.fake.fail("*", "(?i)tickets", 503, headers={"Retry-After": "7"}, times=10)
    with pytest.raises(TransientError) as caught:
        build().read_ticket_states([ticket_id])
    assert caught.value.retry_after == 7


def test_an_id_that_is_no_number_never_reaches_the_psa(kit: ContractKit, build: Build) -> None:
    before = len(kit.fake.requests)
    with pytest.raises(Exception, match=r"is not an? .* id"):
        build().read_ticket_states(["../system/info"])
    assert len(kit.fake.requests) == before
