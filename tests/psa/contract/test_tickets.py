"""The contract, tickets: reading tickets and trees, writing categories and notes, history, and
how every failure of the PSA maps into the error tree, for every PSA."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stamina

from psatriage.errors import AuthFailed, PermanentError, TransientError
from psatriage.http import make_client
from psatriage.psa.base import PSAAdapter
from psatriage.psa.client import RateLimited
from tests.fakes.kit import ContractKit, ErrorCase
from tests.psa.contract.conftest import Build


def test_reads_ticket_and_taxonomy(kit: ContractKit, adapter: PSAAdapter[Any]) -> None:
    ticket = adapter.get_ticket(kit.new_ticket("Printer on floor 3", "My printer has a paper jam"))
    assert ticket.title == "Printer on floor 3"
    assert "paper jam" in ticket.description + ticket.initial_note
    assert ticket.scope
    taxonomy = adapter.get_taxonomy(ticket)
    keys = [leaf.key for leaf in taxonomy.leaves]
    assert keys and len(keys) == len(set(keys))
    assert all(leaf.path and leaf.active for leaf in taxonomy.leaves)


def test_reads_every_field_of_a_categorized_ticket(
    kit: ContractKit, adapter: PSAAdapter[Any]
) -> None:
    assert kit.categorized is not None
    ticket_id, expected = kit.categorized()
    assert adapter.get_ticket(ticket_id) == expected


def test_a_kept_snapshot_reads_as_the_ticket_with_fewer_calls(
    kit: ContractKit, adapter: PSAAdapter[Any]
) -> None:
    assert kit.categorized is not None
    ticket_id, expected = kit.categorized()
    event = adapter.parse(kit.created(ticket_id)[0])
    assert event is not None and event.actionable
    if not adapter.keeps_snapshots():
        assert event.snapshot is None
        assert adapter.ticket_from_snapshot(ticket_id, {}) == expected
        return
    assert event.snapshot is not None
    before = len(kit.fake.requests)
    assert adapter.get_ticket(ticket_id) == expected
    full = len(kit.fake.requests) - before
    assert adapter.ticket_from_snapshot(ticket_id, event.snapshot) == expected
    assert len(kit.fake.requests) - before - full < full


def test_an_unknown_ticket_is_not_found_and_an_id_is_a_number(adapter: PSAAdapter[Any]) -> None:
    with pytest.raises(PermanentError, match="ticket 424242 not found"):
        adapter.get_ticket("424242")
    with pytest.raises(PermanentError, match=r"'\.\./system/info' is not an? .* id"):
        adapter.get_ticket("../system/info")


def test_writes_category_and_an_internal_note_it_can_find(
    kit: ContractKit, adapter: PSAAdapter[Any]
) -> None:
    ticket_id = kit.new_ticket("Printer", "jam")
    ticket = adapter.get_ticket(ticket_id)
    leaf = adapter.get_taxonomy(ticket).leaves[0]
    adapter.set_category(ticket, leaf)
    assert len(kit.category_writes(ticket_id)) == 1
    reread = adapter.get_ticket(ticket_id)
    assert [(v.level, v.id) for v in reread.current][: len(leaf.path)] == [
        (v.level, v.id) for v in leaf.path
    ]
    adapter.add_note(ticket, "categorized [psatriage:contract-1]")
    assert any("psatriage:contract-1" in text for text in kit.notes(ticket_id))
    assert adapter.find_note(ticket, "psatriage:contract-1")
    assert not adapter.find_note(ticket, "psatriage:contract-2")


def test_find_note_reads_every_page(kit: ContractKit, build: Build) -> None:
    assert kit.add_note is not None
    ticket_id = kit.new_ticket("VPN", "Cannot connect.")
    for n in range(3):
        kit.add_note(ticket_id, f"a person's note {n}")
    kit.add_note(ticket_id, "ours [psatriage:9]")
    kit.fake.max_page_size = 1
    adapter = build(page_size=1)
    ticket = adapter.get_ticket(ticket_id)
    assert adapter.find_note(ticket, "[psatriage:9]")
    assert not adapter.find_note(ticket, "[psatriage:10]")


def test_errors_map_to_the_tree(
    kit: ContractKit, adapter: PSAAdapter[Any], errors: ErrorCase
) -> None:
    ticket_id = kit.new_ticket("VPN", "Down.")
    kit.fake.fail("GET", kit.fail_path(ticket_id), errors.status, times=10,
                  body=errors.body, headers=dict(errors.headers))  # fmt: skip
    with pytest.raises(errors.error, match=errors.message) as caught:
        adapter.get_ticket(ticket_id)
    assert type(caught.value) is (RateLimited if errors.status == 429 else errors.error)
    if "Retry-After" in errors.headers:
        assert isinstance(caught.value, TransientError)
        assert caught.value.retry_after == float(errors.headers["Retry-After"])
    for secret in kit.secrets:
        assert secret not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "headers", "error"),
    [
        (401, {}, AuthFailed),
        (429, {"Retry-After": "3"}, TransientError),
        (503, {}, TransientError),
        (500, {}, TransientError),
    ],
)
def test_every_psa_maps_the_usual_failures(
    kit: ContractKit,
    adapter: PSAAdapter[Any],
    status: int,
    headers: dict[str, str],
    error: type[Exception],
) -> None:
    ticket_id = kit.new_ticket("Printer", "jam")
    kit.fake.fail("*", kit.fail_path(ticket_id), status, times=10, headers=headers)
    with pytest.raises(error) as caught:
        adapter.get_ticket(ticket_id)
    if headers:
        assert isinstance(caught.value, TransientError) and caught.value.retry_after == 3
    for secret in kit.secrets:
        assert secret not in str(caught.value)


def test_a_429_is_retried_briefly_inside_the_call(
    kit: ContractKit, adapter: PSAAdapter[Any]
) -> None:
    ticket_id = kit.new_ticket("VPN", "Down.")
    path = kit.fail_path(ticket_id)
    with stamina.set_testing(True, attempts=100, cap=True):  # our attempts, without the waits
        kit.fake.fail("GET", path, 429, times=2, headers={"Retry-After": "1"})
        assert adapter.get_ticket(ticket_id).title == "VPN"
        kit.fake.fail("GET", path, 429, times=3, headers={"Retry-After": "1"})
        with pytest.raises(RateLimited):
            adapter.get_ticket(ticket_id)
    assert len(kit.fake.requests_to(path)) == 3 + 3  # two retries each, no more


def test_timeouts_and_outages_are_transient(kit: ContractKit, build: Build) -> None:
    ticket_id = kit.new_ticket("VPN", "Down.")
    with make_client(timeout=0.2, connect_timeout=0.2) as client:
        kit.fake.fail("GET", kit.fail_path(ticket_id), 200, delay=0.6)
        with pytest.raises(TransientError, match="did not answer"):
            build(client=client).get_ticket(ticket_id)
    adapter = build()
    kit.fake.stop()
    with pytest.raises(TransientError):
        adapter.check_connection()


def test_secrets_never_in_reprs_or_logs(
    kit: ContractKit, adapter: PSAAdapter[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ticket = adapter.get_ticket(kit.new_ticket("Printer", "jam"))
    adapter.add_note(ticket, "x")
    shown = repr(adapter) + repr(adapter.config) + str(adapter.config) + caplog.text
    shown += repr(getattr(adapter, "client", ""))
    for secret in kit.secrets:
        assert secret not in shown


def test_refused_credentials_are_auth_failed_and_never_shown(
    kit: ContractKit, build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    variable, wrong, message = kit.cases.bad_credentials
    monkeypatch.setenv(variable, wrong)
    adapter = build()
    with pytest.raises(AuthFailed, match=message) as caught:
        adapter.check_connection()
    shown = [str(caught.value), repr(adapter), repr(adapter.config), str(adapter.config)]
    shown.append(repr(getattr(adapter, "client", "")))
    for secret in (wrong, *kit.secrets):
        assert not any(secret in text for text in shown)


def test_labeled_history_is_closed_categorized_tickets_newest_first(
    kit: ContractKit, adapter_class: type[PSAAdapter[Any]], build: Build
) -> None:
    assert kit.history_ticket is not None and adapter_class.can_list_history()
    day = datetime(2026, 1, 1, tzinfo=UTC)

    def ticket(title: str, days: int, *, categorized: bool = True, closed: bool = True) -> str:
        assert kit.history_ticket is not None
        return kit.history_ticket(title, day + timedelta(days=days), categorized, closed)

    first = ticket("ticket 3", 3)
    ticket("never categorized", 5, categorized=False)
    ticket("still open", 6, closed=False)
    ticket("before since", -5)
    newest = ticket("ticket 7", 7)
    adapter = build(page_size=1)
    history = adapter.list_labeled_tickets(day.replace(tzinfo=None), limit=10)
    assert [t.ticket.id for t in history] == [newest, first]
    assert history[1].ticket.title == "ticket 3" and history[1].ticket.description == (
        "text of ticket 3"
    )
    assert history[1].path and history[1].key and history[1].label
    assert len(kit.fake.requests_to(kit.history_path)) >= 2  # paged (page size 1)
    assert [t.ticket.id for t in adapter.list_labeled_tickets(day, limit=1)] == [newest]
    until = day + timedelta(days=7)  # before ticket 7 was created
    assert [t.ticket.id for t in adapter.list_labeled_tickets(day, 10, until=until)] == [first]
    naive = until.replace(tzinfo=None)
    assert [t.ticket.id for t in adapter.list_labeled_tickets(day, 10, until=naive)] == [first]


def test_labeled_history_maps_errors(kit: ContractKit, adapter: PSAAdapter[Any]) -> None:
    kit.fake.fail("*", kit.history_path, 503, headers={"Retry-After": "7"}, times=10)
    with pytest.raises(TransientError) as caught:
        adapter.list_labeled_tickets(datetime(2026, 1, 1), limit=5)
    assert caught.value.retry_after == 7
