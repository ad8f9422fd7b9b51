"""Adding a PSA is one package under ``psa/``, one fake and one test file of quirks
(``docs/adding-a-psa.md``). This checks it with a minimal example defined in the tests
(``tests/psa/examples/``): discovered from its package the way the real PSAs are, then held to
every part of the contract suite that applies to an adapter the service does not run (the CLI and
the service itself need a PSA registered in ``psatriage.psa``; history is optional)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from psatriage.plugins import discover
from psatriage.psa.base import PSAAdapter
from tests.fakes.kit import ContractKit
from tests.psa import examples
from tests.psa.contract import test_setup, test_tickets, test_webhooks
from tests.psa.contract.conftest import adapter, build, http, parametrize, stop_soon
from tests.psa.examples import fake as example_fake
from tests.psa.examples.example import ExampleAdapter

__all__ = ["adapter", "build", "http"]  # the contract's fixtures, for the tests below

EXAMPLES = discover(examples, PSAAdapter, skip=frozenset(), packages=True)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize(metafunc, sorted(EXAMPLES), lambda kind: example_fake.CASES)


@pytest.fixture
def kit(monkeypatch: pytest.MonkeyPatch) -> Iterator[ContractKit]:
    made = example_fake.kit()
    for key, value in made.env.items():
        monkeypatch.setenv(key, value)
    yield made
    stop_soon(made.fake)


@pytest.fixture
def adapter_class(kit: ContractKit) -> type[PSAAdapter[Any]]:
    cls: type[PSAAdapter[Any]] = EXAMPLES[kit.psa]
    return cls


def test_the_example_is_discovered_from_its_package() -> None:
    assert {"example": ExampleAdapter} == EXAMPLES
    assert ExampleAdapter.__module__ == "tests.psa.examples.example.adapter"


# -- the contract, as it applies ------------------------------------------------------------------

test_created_delivery_verifies_and_parses_as_actionable = (
    test_webhooks.test_created_delivery_verifies_and_parses_as_actionable
)
test_other_events_are_not_acted_on = test_webhooks.test_other_events_are_not_acted_on
test_tampered_or_unsigned_deliveries_are_refused = (
    test_webhooks.test_tampered_or_unsigned_deliveries_are_refused
)
test_verify_refuses = test_webhooks.test_verify_refuses
test_parse_is_total = test_webhooks.test_parse_is_total
test_parse = test_webhooks.test_parse
test_parse_refuses_malformed_bodies = test_webhooks.test_parse_refuses_malformed_bodies

test_reads_ticket_and_taxonomy = test_tickets.test_reads_ticket_and_taxonomy
test_reads_every_field_of_a_categorized_ticket = (
    test_tickets.test_reads_every_field_of_a_categorized_ticket
)
test_an_unknown_ticket_is_not_found_and_an_id_is_a_number = (
    test_tickets.test_an_unknown_ticket_is_not_found_and_an_id_is_a_number
)
test_writes_category_and_an_internal_note_it_can_find = (
    test_tickets.test_writes_category_and_an_internal_note_it_can_find
)
test_find_note_reads_every_page = test_tickets.test_find_note_reads_every_page
test_errors_map_to_the_tree = test_tickets.test_errors_map_to_the_tree
test_every_psa_maps_the_usual_failures = test_tickets.test_every_psa_maps_the_usual_failures
test_a_429_is_retried_briefly_inside_the_call = (
    test_tickets.test_a_429_is_retried_briefly_inside_the_call
)
test_timeouts_and_outages_are_transient = test_tickets.test_timeouts_and_outages_are_transient
test_secrets_never_in_reprs_or_logs = test_tickets.test_secrets_never_in_reprs_or_logs
test_refused_credentials_are_auth_failed_and_never_shown = (
    test_tickets.test_refused_credentials_are_auth_failed_and_never_shown
)

test_the_connection_table_refuses = test_setup.test_the_connection_table_refuses
test_register_webhook_is_idempotent = test_setup.test_register_webhook_is_idempotent
test_check_connection_says_what_answered = test_setup.test_check_connection_says_what_answered
test_a_full_window_reschedules_instead_of_sending = (
    test_setup.test_a_full_window_reschedules_instead_of_sending
)
test_calls_in_flight_are_capped_per_endpoint = (
    test_setup.test_calls_in_flight_are_capped_per_endpoint
)
