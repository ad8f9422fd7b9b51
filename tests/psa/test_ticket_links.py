"""Each adapter's link to a ticket in the PSA's web interface (the console shows it), made from
the connection settings alone: no call to the PSA."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from psatriage.psa import adapters

SECRET = SecretStr("not-used-here")


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"a ticket link made a call: {request.url}")

    with httpx.Client(transport=httpx.MockTransport(refuse)) as client:
        yield client


def _adapter(kind: str, http: httpx.Client, **connection: Any) -> Any:
    cls = adapters()[kind]
    return cls("acme", cls.Config.model_validate(connection), http)


def test_connectwise_links_to_the_service_ticket(http: httpx.Client) -> None:
    cloud = _adapter(
        "connectwise",
        http,
        site="api-na.myconnectwise.net",
        company_id="acme",
        public_key=SECRET,
        private_key=SECRET,
        client_id="00000000-0000-0000-0000-000000000000",
    )
    assert cloud.ticket_url("4711") == (
        "https://na.myconnectwise.net/v4_6_release/ConnectWise.aspx"
        "?locale=en_US&routeTo=ServiceFV&recid=4711"
    )
    own = _adapter(
        "connectwise",
        http,
        site="cw.example.com",
        company_id="acme",
        public_key=SECRET,
        private_key=SECRET,
        client_id="00000000-0000-0000-0000-000000000000",
        codebase="v2025_1",
    )
    assert own.ticket_url("12").startswith("https://cw.example.com/v2025_1/ConnectWise.aspx?")


def test_halopsa_links_to_the_ticket(http: httpx.Client) -> None:
    halo = _adapter(
        "halopsa",
        http,
        url="https://acme.halopsa.com/api",
        client_id="client",
        client_secret=SECRET,
        webhook_secret=SECRET,
    )
    assert halo.ticket_url("123") == "https://acme.halopsa.com/ticket?id=123"


def test_autotask_links_once_the_zone_is_known(http: httpx.Client) -> None:
    base = {
        "username": "api@acme.example",
        "secret": SECRET,
        "integration_code": SECRET,
        "webhook_secret": SecretStr("a-webhook-secret-of-length"),
    }
    pinned = _adapter(
        "autotask", http, **base, zone_url="https://webservices5.autotask.net/ATServicesRest"
    )
    assert pinned.ticket_url("9") == (
        "https://ww5.autotask.net/Autotask/AutotaskExtend/ExecuteCommand.aspx"
        "?Code=OpenTicketDetail&TicketID=9"
    )
    assert _adapter("autotask", http, **base).ticket_url("9") is None  # no call to find it


def test_kaseya_bms_knows_no_ticket_address(http: httpx.Client) -> None:
    bms = _adapter("kaseya_bms", http, username="api", password=SECRET, company="acme")
    assert bms.ticket_url("9") is None
