"""End to end for the ticket fields, every PSA: one real `psatriage serve` with a tenant per PSA
deciding priority, routing, noise, sentiment and summary beside the category, alert storms on.

Each check waits for the ledger to say its events finished, then looks at what the PSA received.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from psatriage.psa import adapters
from tests.fakes.connectwise import FakeConnectWise
from tests.fakes.kit import ContractKit
from tests.fakes.openai import FakeOpenAI
from tests.harness import kit_for, kit_tenant
from tests.test_e2e import Service, serve

pytestmark = pytest.mark.slow

PSAS = sorted(adapters())
FIELDS = {"enabled": ["priority", "routing", "noise", "sentiment", "summary"]}
POLICY = {"fields": {"routing": {"apply_at": 0.8}}}
ROUTED_FIRST = {"connectwise"}  # the board owns the category tree: one more model call
# one client company keeps the priority and the board / queue / team its tickets come in with
COMPANIES = {
    "Fabrikam Inc": {"fields": {"priority": {"enabled": False}, "routing": {"enabled": False}}}
}
# a newsletter gets a status of its own (ConnectWise: one of the Help Desk board's)
NEWSLETTER_STATUS = {
    "autotask": "In Progress",
    "connectwise": "Waiting on client",
    "halopsa": "Waiting",
    "kaseya_bms": "In Progress",
}
FABRIKAM: dict[str, dict[str, Any]] = {  # how each fake creates a ticket of that company
    "autotask": {"company_id": 175},
    "connectwise": {"company": (251, "Fabrikam Inc")},
    "halopsa": {"client": (13, "Fabrikam Inc")},
    "kaseya_bms": {"account": (311, "Fabrikam Inc")},
}


@dataclass
class FieldsService(Service):
    llm: FakeOpenAI | None = None


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FieldsService]:
    root = tmp_path_factory.mktemp("e2e-fields")
    with ExitStack() as stack:
        llm = stack.enter_context(FakeOpenAI())
        kits: dict[str, ContractKit] = {}
        for psa in PSAS:
            kits[psa] = kit_for(psa)
            stack.callback(kits[psa].fake.stop)
        tenants = {
            psa: {
                **kit_tenant(kit, llm),
                "fields": {
                    **FIELDS,
                    "noise": {"newsletter": {"action": "set", "status": NEWSLETTER_STATUS[psa]}},
                },
                "policy": POLICY,
                "companies": COMPANIES,
                "storm_window_minutes": 30,
            }
            for psa, kit in kits.items()
        }
        url, _ = serve(stack, root, tenants, kits)
        yield FieldsService(url, kits, llm=llm)


def _run(service: Service, psa: str, ticket: str) -> dict[str, Any]:
    response = service.deliver(psa, service.kits[psa].created(ticket))
    assert response.status_code == 202, response.text
    return service.finished(response.json()["event_id"])


def _ours(kit: ContractKit, ticket: str) -> list[str]:
    return [text for text in kit.notes(ticket) if "psatriage:" in text]


@pytest.mark.parametrize("psa", PSAS)
def test_one_update_carries_category_priority_and_routing(service: Service, psa: str) -> None:
    kit = service.kits[psa]
    assert kit.field_value is not None
    ticket = kit.new_ticket("Printer on 3rd floor", "My printer has a paper jam")
    event = _run(service, psa, ticket)
    assert event["state"] == "done", event
    decision = event["decision"]
    assert decision["outcome"] == "applied"
    fields = {f["name"]: f for f in decision["fields"]}
    assert list(fields) == ["priority", "routing", "noise", "sentiment", "summary"]
    assert fields["priority"]["outcome"] == fields["routing"]["outcome"] == "applied"
    assert len(event["model_calls"]) == (2 if psa in ROUTED_FIRST else 1)
    assert len(kit.category_writes(ticket)) == 1  # one update for all three
    assert kit.field_value(ticket, "priority") == fields["priority"]["value_id"]
    assert kit.field_value(ticket, "routing") == fields["routing"]["value_id"]
    (note,) = _ours(kit, ticket)
    for field in fields.values():
        assert f"{field['label']}: {field['value']}" in note
    assert "Noise: a real request" in note and "Summary: A short summary." in note


@pytest.mark.parametrize("psa", PSAS)
def test_fields_a_company_turns_off_are_neither_asked_nor_written(
    service: Service, psa: str
) -> None:
    kit = service.kits[psa]
    assert kit.field_value is not None
    created = kit.fake.add_ticket(  # type: ignore[attr-defined]
        "Printer on 3rd floor", "My printer has a paper jam", **FABRIKAM[psa]
    )
    ticket = str(created)
    before = {name: kit.field_value(ticket, name) for name in ("priority", "routing")}
    event = _run(service, psa, ticket)
    assert event["state"] == "done", event
    decision = event["decision"]
    assert decision["outcome"] == "applied"
    assert [f["name"] for f in decision["fields"]] == ["noise", "sentiment", "summary"]
    assert len(event["model_calls"]) == 1  # no routing asked first, even on ConnectWise
    assert len(kit.category_writes(ticket)) == 1  # the category alone
    assert {name: kit.field_value(ticket, name) for name in before} == before
    (note,) = _ours(kit, ticket)
    assert "Priority:" not in note and "Summary: A short summary." in note


@pytest.mark.parametrize("psa", PSAS)
def test_a_newsletter_gets_its_configured_status_in_one_update(
    service: FieldsService, psa: str
) -> None:
    kit, llm = service.kits[psa], service.llm
    assert kit.field_value is not None and llm is not None
    ticket = kit.new_ticket("Our December offers", "Read our newsletter for this month.")
    llm.facet_answers["noise"] = "newsletter"
    try:
        event = _run(service, psa, ticket)
    finally:
        del llm.facet_answers["noise"]
    assert event["state"] == "done", event
    decision = event["decision"]
    assert decision["outcome"] == "skipped", decision
    status = next(f for f in decision["fields"] if f["name"] == "status")
    assert status["value"] == NEWSLETTER_STATUS[psa]
    assert len(kit.category_writes(ticket)) == 1  # the status alone, one update
    assert kit.field_value(ticket, "status") == status["value_id"]
    assert _ours(kit, ticket) == []  # skipped: no note


@pytest.mark.parametrize("psa", PSAS)
def test_an_auto_reply_is_skipped_without_a_model_call(service: Service, psa: str) -> None:
    kit = service.kits[psa]
    ticket = kit.new_ticket("Automatic reply: Printer on 3rd floor", "I am away until Monday.")
    event = _run(service, psa, ticket)
    assert event["state"] == "done", event
    assert event["decision"]["outcome"] == "skipped"
    assert event["model_calls"] == []
    assert kit.category_writes(ticket) == [] and _ours(kit, ticket) == []


@pytest.mark.parametrize("psa", PSAS)
def test_an_alert_storm_of_twenty_tickets_makes_one_model_call(service: Service, psa: str) -> None:
    kit = service.kits[psa]
    tickets = [
        kit.new_ticket(f"Backup failed on SRV-{n:02}", f"Job {n} ended with error {1000 + n}.")
        for n in range(1, 21)
    ]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda t: service.deliver(psa, kit.created(t)), tickets))
    assert [r.status_code for r in responses] == [202] * 20
    events = [service.finished(r.json()["event_id"]) for r in responses]
    assert all(e["state"] == "done" for e in events), events
    calls = sum(len(e["model_calls"]) for e in events)
    assert calls == (2 if psa in ROUTED_FIRST else 1)  # one ticket's decision, reused 19 times
    followed = [e["decision"]["followed"] for e in events if e["decision"]["followed"]]
    assert len(followed) == 19 and len(set(followed)) == 1
    assert all(len(kit.category_writes(t)) == 1 for t in tickets)
    assert sum(f"Same as ticket {followed[0]}" in _ours(kit, t)[0] for t in tickets) == 19


def test_a_connectwise_board_change_decides_the_category_within_the_new_board(
    service: Service,
) -> None:
    kit = service.kits["connectwise"]
    assert isinstance(kit.fake, FakeConnectWise)
    ticket = kit.new_ticket("Network operations: firewall down", "The firewall is down again.")
    event = _run(service, "connectwise", ticket)
    assert event["state"] == "done", event
    routing = next(f for f in event["decision"]["fields"] if f["name"] == "routing")
    assert (routing["value"], routing["outcome"]) == ("Network Operations", "applied")
    board_call, category_call = event["model_calls"]
    assert event["decision"]["category"] == "Outage › Firewall › Down"
    (patch,) = kit.category_writes(ticket)
    assert [op["path"] for op in patch][:2] == ["board", "priority"]
    stored = kit.fake.tickets[int(ticket)]
    assert stored["board"]["id"] == 2 and stored["type"]["id"] == 60
    assert board_call["chosen_key"] == "2" and category_call["chosen_key"] == "60/70/80"


def test_a_person_moving_a_connectwise_ticket_to_another_board_re_decides_its_category(
    service: Service,
) -> None:
    kit = service.kits["connectwise"]
    fake = kit.fake
    assert isinstance(fake, FakeConnectWise)
    ticket = kit.new_ticket("Printer in room 12", "The printer in room 12 has a paper jam")
    first = _run(service, "connectwise", ticket)
    assert first["decision"]["outcome"] == "applied"
    assert fake.tickets[int(ticket)]["board"]["id"] == 1

    fake.move(int(ticket), 2)
    response = service.deliver("connectwise", fake.callback(int(ticket), action="updated"))
    assert response.status_code == 202 and response.json()["status"] == "accepted"
    event = service.finished(response.json()["event_id"])
    assert event["state"] == "done", event
    assert event["decision"]["outcome"] == "applied" and event["decision"]["fields"] == []
    assert len(event["model_calls"]) == 1  # the category alone, within the new board
    *_, patch = kit.category_writes(ticket)
    assert [op["path"] for op in patch] == ["type", "subType", "item"]
    assert fake.tickets[int(ticket)]["type"]["id"] in {60, 61}
    assert len(_ours(kit, ticket)) == 2

    # once per change: another update on the same board is recorded and ignored
    again = service.deliver("connectwise", fake.callback(int(ticket), action="updated"))
    assert again.status_code == 202 and again.json()["status"] == "ignored"
