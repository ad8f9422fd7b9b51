"""The contract, webhooks: what ``verify`` accepts and refuses, what ``parse`` reads, for every
PSA (fed by each fake's kit and case tables)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from psatriage.domain import TicketEvent
from psatriage.errors import WebhookRejected
from psatriage.psa import adapters
from psatriage.psa.base import PSAAdapter, RotatingWebhookSecret
from tests.fakes.kit import ContractKit, Malformed, ParseCase, Refused, Rotation
from tests.psa.contract.conftest import Build, cases_of

JUNK = [b"", b"null", b"[]", b"{}", b'{"a": 1}', b"\xff\xfe", b'"text"', b"42", b"{" * 50]


def test_created_delivery_verifies_and_parses_as_actionable(
    kit: ContractKit, adapter: PSAAdapter[Any]
) -> None:
    ticket = kit.new_ticket("Printer", "My printer has a paper jam")
    body, headers = kit.created(ticket)
    adapter.verify(headers, body)
    event = adapter.parse(body)
    assert isinstance(event, TicketEvent)
    assert event.actionable and event.ticket_id == ticket and event.tenant == "contract"
    assert event.dedupe_key
    again = adapter.parse(body)
    assert again is not None and again.dedupe_key == event.dedupe_key


def test_other_events_are_not_acted_on(kit: ContractKit, adapter: PSAAdapter[Any]) -> None:
    body, headers = kit.updated(kit.new_ticket("Printer", "jam"))
    adapter.verify(headers, body)
    event = adapter.parse(body)
    assert event is None or not event.actionable


def test_tampered_or_unsigned_deliveries_are_refused(
    kit: ContractKit, adapter: PSAAdapter[Any]
) -> None:
    delivery = kit.created(kit.new_ticket("Printer", "jam"))
    body, headers = kit.tamper(delivery)
    with pytest.raises(WebhookRejected) as caught:
        adapter.verify(headers, body)
    assert caught.value.status == 401
    with pytest.raises(WebhookRejected):
        adapter.verify({}, delivery[0])


def test_verify_refuses(kit: ContractKit, build: Build, refused: Refused) -> None:
    for name, value in refused.fake.items():
        setattr(kit.fake, name, value)
    adapter = build(**refused.connection)
    body, headers = refused.change(*kit.created(kit.new_ticket(refused.title, "jam")))
    with pytest.raises(WebhookRejected) as caught:
        adapter.verify(headers, body)
    assert caught.value.status == refused.status
    assert not any(secret in str(caught.value) for secret in kit.secrets)


@pytest.mark.parametrize("body", JUNK)
def test_parse_is_total(adapter: PSAAdapter[Any], body: bytes) -> None:
    try:
        event = adapter.parse(body)
    except WebhookRejected as exc:
        assert exc.status == 400
    else:
        assert event is None or isinstance(event, TicketEvent)


def test_parse(build: Build, parse: ParseCase) -> None:
    event = build(**parse.connection).parse(parse.body)
    if parse.expected is None:
        assert event is None
        return
    assert event is not None and event.tenant == "contract"
    assert {name: getattr(event, name) for name in parse.expected} == dict(parse.expected)


def test_parse_refuses_malformed_bodies(adapter: PSAAdapter[Any], malformed: Malformed) -> None:
    with pytest.raises(WebhookRejected, match=malformed.message) as caught:
        adapter.parse(malformed.body)
    assert caught.value.status == 400


def test_a_rotated_webhook_secret_is_accepted_only_during_its_grace_period(
    kit: ContractKit,
    adapter_class: type[PSAAdapter[Any]],
    build: Build,
    monkeypatch: pytest.MonkeyPatch,
    rotation: Rotation,
) -> None:
    monkeypatch.setenv("CONTRACT_NEW_WEBHOOK_SECRET", "a-brand-new-webhook-secret")
    until = datetime.now(UTC) + timedelta(hours=1 if rotation.still_valid else -1)
    rotated = build(
        webhook_secret="env:CONTRACT_NEW_WEBHOOK_SECRET",
        webhook_secret_previous=kit.connection["webhook_secret"],  # what the fake signs with
        webhook_secret_previous_until=until.isoformat(),
    )
    body, headers = kit.created(kit.new_ticket("Printer", "jam"))
    if rotation.still_valid:
        rotated.verify(headers, body)
    else:
        with pytest.raises(WebhookRejected):
            rotated.verify(headers, body)
    unfinished = {**kit.connection, "webhook_secret_previous": kit.connection["webhook_secret"]}
    with pytest.raises(ValueError, match="a rotation must end"):
        adapter_class.Config.model_validate(unfinished)


@pytest.mark.parametrize("kind", sorted(adapters()))
def test_every_psa_that_rotates_webhook_secrets_has_the_rotation_cases(kind: str) -> None:
    rotates = issubclass(adapters()[kind].Config, RotatingWebhookSecret)
    assert bool(cases_of(kind).rotation) == rotates
