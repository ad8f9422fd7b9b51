"""HaloPSA's quirks, against the fake HaloPSA on 127.0.0.1 through a real httpx client: webhook
authentication methods and path tokens, the OAuth token shared by threads and worker processes,
category fields by ticket type, confirmed writes, private actions, the service and the CLI. What
every PSA does is checked by the contract suite (``tests/psa/contract/``) from the case tables in
``tests/fakes/halopsa/kit.py``."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from psatriage import jobs
from psatriage.cli import app
from psatriage.config import load_config, parse_config
from psatriage.domain import Category, LevelValue, Ticket
from psatriage.errors import (
    AuthFailed,
    CategoryRejected,
    ConfigError,
    PermanentError,
    TransientError,
    WebhookRejected,
)
from psatriage.http import make_client
from psatriage.psa.base import PATH_TOKEN_HEADER
from psatriage.psa.halopsa import HaloPSAAdapter, HaloPSAConfig
from psatriage.psa.halopsa.history import leaf_key as _leaf_key
from psatriage.runtime import Runtime
from psatriage.settings import Settings
from psatriage.shared.tokens import SharedTokens, share_tokens, tokens_for
from psatriage.store.tables import EventState
from psatriage.web import create_app
from tests.fakes.halopsa import FakeHaloPSA
from tests.fakes.halopsa.kit import fixture
from tests.fakes.openai import DEFAULT_API_KEY, FakeOpenAI
from tests.psa.conftest import OPENAI_KEY_ENV, serving, write_tenants
from tests.shared.test_tokens import raw_values

ADAPTER = HaloPSAAdapter  # what make_adapter builds (tests/psa/conftest.py)
MakeAdapter = Callable[..., HaloPSAAdapter]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHaloPSA]:
    yield from serving(FakeHaloPSA(), monkeypatch)


@pytest.fixture
def no_backoff() -> Iterator[None]:
    """stamina's test mode: our attempt count, no waiting."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


def dumps(payload: Any) -> bytes:
    return json.dumps(payload).encode()


# -- parse ------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", ["full", "small", "event"])
def test_parse_every_payload_type_from_the_fake(
    fake: FakeHaloPSA, adapter: HaloPSAAdapter, payload: str
) -> None:
    ticket_id = fake.add_ticket("Printer", "Jammed")
    body, headers = fake.delivery(ticket_id, payload=payload, delivery_id="d-1")
    adapter.verify(headers, body)
    event = adapter.parse(body)
    assert event is not None
    assert (event.ticket_id, event.actionable, event.dedupe_key) == (str(ticket_id), True, "d-1")


# -- verify -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "header"), [("hmac", "Token"), ("hmac", "X-Halo-Signature"), ("basic", "Token"),
                         ("header", "X-Psatriage-Secret")]
)  # fmt: skip
def test_verify_accepts_each_method(
    fake: FakeHaloPSA, make_adapter: MakeAdapter, auth: str, header: str
) -> None:
    fake.webhook_auth, fake.webhook_header = auth, header
    adapter = make_adapter()
    body, headers = fake.delivery(fake.add_ticket("VPN", "Down"))
    adapter.verify(headers, body)
    assert fake.requests == []  # the webhook path calls nothing


TOKEN = "path-token-0123456789abcdef"


def test_verify_with_only_a_path_token(
    fake: FakeHaloPSA, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FakeHaloPSA.PATH_TOKEN_ENV, TOKEN)
    fake.path_token = TOKEN
    config = fake.connection_config(webhook_secret=None)
    adapter = HaloPSAAdapter("acme", HaloPSAConfig.model_validate(config), http)
    body, headers = fake.delivery(fake.add_ticket("VPN", "Down"))
    adapter.verify(headers, body)
    adapter.verify({PATH_TOKEN_HEADER: TOKEN}, body + b" ")  # nothing else is asked for
    for token in (None, TOKEN[:-1], TOKEN + "x"):
        changed = {k: v for k, v in headers.items() if k != PATH_TOKEN_HEADER}
        if token is not None:
            changed[PATH_TOKEN_HEADER] = token
        with pytest.raises(WebhookRejected, match="secret segment") as info:
            adapter.verify(changed, body)
        assert info.value.status == 401 and TOKEN not in str(info.value)


# -- configuration ----------------------------------------------------------------------------


def test_webhook_authentication_is_required(
    fake: FakeHaloPSA, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = {k: v for k, v in fake.connection_config().items() if k != "webhook_secret"}
    assert HaloPSAConfig.model_validate(bare).webhook_config_problem() is not None
    monkeypatch.setenv("HALO_TOKEN", "t" * 16)
    path_only = HaloPSAConfig.model_validate(bare | {"webhook_path_token": "env:HALO_TOKEN"})
    assert path_only.webhook_config_problem() is None
    for weak in ("short", "sixteen-chars-but/slash"):
        monkeypatch.setenv("HALO_WEAK", weak)
        with pytest.raises(ValidationError, match="at least 16 characters"):
            HaloPSAConfig.model_validate(bare | {"webhook_path_token": "env:HALO_WEAK"})
    tenant = {"psa": "halopsa", "connection": bare, "classifier": {"api_key": "env:HALO_TOKEN"}}
    with pytest.raises(ConfigError, match=r"needs webhook_secret .* or webhook_path_token"):
        parse_config({"tenants": {"acme": tenant}})
    assert parse_config({"tenants": {"acme": tenant | {"trigger": "poll"}}}).tenants["acme"]
    with pytest.raises(WebhookRejected, match="no webhook authentication") as info:
        HaloPSAAdapter("acme", HaloPSAConfig.model_validate(bare), http).verify({}, b"{}")
    assert info.value.status == 401


def test_config_normalizes(fake: FakeHaloPSA) -> None:
    config = HaloPSAConfig.model_validate(
        fake.connection_config(url="HTTPS://Acme.HaloPSA.com/api/", ticket_types=[1, "Incident"])
    )
    assert config.url == "https://acme.halopsa.com"
    assert config.ticket_types == ("1", "Incident")
    assert config.client_secret.get_secret_value() == fake.client_secret
    assert fake.client_secret not in repr(config) + str(config)


# -- the access token -------------------------------------------------------------------------


def test_token_from_authinfo_then_reused(fake: FakeHaloPSA, adapter: HaloPSAAdapter) -> None:
    fake.auth_path = "/identity"
    ticket_id = fake.add_ticket("VPN", "Down")
    adapter.get_ticket(str(ticket_id))
    adapter.get_ticket(str(ticket_id))
    (token_request,) = fake.requests_to(r"/token$")
    assert token_request.path == "/identity/token"
    assert token_request.query == {}
    assert dict(httpx.QueryParams(token_request.body.decode())) == {
        "grant_type": "client_credentials",
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "scope": "all",
    }
    assert len(fake.requests_to("/api/authinfo$")) == 1
    api = fake.requests_to(rf"/api/Tickets/{ticket_id}$")
    assert [r.headers["authorization"] for r in api] == [f"Bearer {fake.token}"] * 2


def test_token_for_a_hosted_tenant(fake: FakeHaloPSA, make_adapter: MakeAdapter) -> None:
    fake.tenant = "acme"
    ticket_id = fake.add_ticket("VPN", "Down")
    make_adapter(tenant="acme").get_ticket(str(ticket_id))  # configured
    make_adapter().get_ticket(str(ticket_id))  # named by authinfo's tenant_id
    assert [r.arg("tenant") for r in fake.requests_to(r"/token$")] == ["acme", "acme"]


def test_token_endpoint_fallback_and_override(fake: FakeHaloPSA, make_adapter: MakeAdapter) -> None:
    fake.authinfo_enabled = False
    ticket_id = fake.add_ticket("VPN", "Down")
    make_adapter().get_ticket(str(ticket_id))
    assert fake.requests_to(r"/token$")[-1].path == "/auth/token"
    before = len(fake.requests_to("/api/authinfo$"))
    make_adapter(auth_url=f"{fake.url}/identity/").get_ticket(str(ticket_id))
    assert fake.requests_to(r"/token$")[-1].path == "/identity/token"
    assert len(fake.requests_to("/api/authinfo$")) == before


def test_no_secret_to_an_untrusted_auth_server(fake: FakeHaloPSA, adapter: HaloPSAAdapter) -> None:
    with FakeHaloPSA() as elsewhere:
        fake.auth_server = f"{elsewhere.url}/auth"  # plain HTTP on another origin
        with pytest.raises(AuthFailed, match="auth_url"):
            adapter.get_ticket(str(fake.add_ticket("VPN", "Down")))
        assert elsewhere.requests == []


def test_token_endpoint_outage_is_transient(fake: FakeHaloPSA, adapter: HaloPSAAdapter) -> None:
    fake.fail("POST", r"/token$", 503, headers={"Retry-After": "9"})
    with pytest.raises(TransientError) as info:
        adapter.check_connection()
    assert info.value.retry_after == 9
    assert adapter.check_connection()


def run_together(count: int, work: Callable[[], object]) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def run() -> None:
        barrier.wait()
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - collected and asserted by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_one_token_request_for_many_workers(fake: FakeHaloPSA, adapter: HaloPSAAdapter) -> None:
    ticket_id = str(fake.add_ticket("VPN", "Down"))
    fake.token_delay = 0.2
    assert run_together(12, lambda: adapter.get_ticket(ticket_id)) == []
    assert fake.token_requests() == 1
    fake.issue_token()  # another process took a token: ours is refused from now on
    assert run_together(12, lambda: adapter.get_ticket(ticket_id)) == []
    assert fake.token_requests() == 2  # one renewal for all twelve 401s


def test_token_renewed_once_on_401_then_auth_fails(
    fake: FakeHaloPSA, adapter: HaloPSAAdapter
) -> None:
    ticket_id = fake.add_ticket("VPN", "Down")
    adapter.get_ticket(str(ticket_id))
    fake.fail("GET", rf"/api/Tickets/{ticket_id}$", 401, times=2)
    with pytest.raises(AuthFailed, match="401"):
        adapter.get_ticket(str(ticket_id))
    assert fake.token_requests() == 2


def test_token_renewed_before_it_expires(fake: FakeHaloPSA, adapter: HaloPSAAdapter) -> None:
    fake.token_lifetime = 1.0  # under the 60 s margin: renewed at half-life
    ticket_id = fake.add_ticket("VPN", "Down")
    adapter.get_ticket(str(ticket_id))
    time.sleep(0.6)
    adapter.get_ticket(str(ticket_id))
    assert fake.token_requests() == 2
    assert len(fake.requests_to(rf"/api/Tickets/{ticket_id}$")) == 2  # no 401 on the way


# -- the access token, shared by worker processes ---------------------------------------------

SHARED_KEY = SecretStr(Fernet.generate_key().decode())
AsProcess = Callable[..., HaloPSAAdapter]


@pytest.fixture
def as_process(make_adapter: MakeAdapter) -> Iterator[AsProcess]:
    """Adapters built as separate worker processes build them: each over its own store object
    (its own connections) on the queue's server at ``url``."""
    stores: list[SharedTokens] = []

    def build(url: str, key: SecretStr = SHARED_KEY) -> HaloPSAAdapter:
        store = tokens_for(url, key)
        assert store is not None
        stores.append(store)
        share_tokens(store)  # as the Runtime does before it builds adapters
        try:
            return make_adapter()
        finally:
            share_tokens(None)

    yield build
    for store in stores:
        store.close()


def test_worker_processes_share_one_token_and_renew_it_once(
    fake: FakeHaloPSA, as_process: AsProcess, shared_url: str
) -> None:
    ticket_id = str(fake.add_ticket("VPN", "Down"))
    one, other = as_process(shared_url), as_process(shared_url)
    fake.token_delay = 0.2  # both ask at the same moment
    calls = itertools.cycle([one, other])
    assert run_together(12, lambda: next(calls).get_ticket(ticket_id)) == []
    assert fake.token_requests() == 1  # for both processes
    assert all(fake.token.encode() not in raw for raw in raw_values(shared_url))
    fake.issue_token()  # Halo refuses the shared token from now on
    assert run_together(12, lambda: next(calls).get_ticket(ticket_id)) == []  # no AuthFailed
    assert fake.token_requests() == 2  # one renewal for both processes


def test_a_renewal_before_expiry_is_shared(
    fake: FakeHaloPSA, as_process: AsProcess, shared_url: str
) -> None:
    fake.token_lifetime = 2.0  # renewed at half-life
    ticket_id = str(fake.add_ticket("VPN", "Down"))
    one, other = as_process(shared_url), as_process(shared_url)
    one.get_ticket(ticket_id)
    other.get_ticket(ticket_id)
    time.sleep(1.1)
    one.get_ticket(ticket_id)
    other.get_ticket(ticket_id)  # takes the one renewed by the first process
    assert fake.token_requests() == 2
    assert len(fake.requests_to(rf"/api/Tickets/{ticket_id}$")) == 4  # no 401 on the way


def test_a_shared_token_refused_too_gets_one_more_replacement(
    fake: FakeHaloPSA, as_process: AsProcess, shared_url: str
) -> None:
    ticket_id = str(fake.add_ticket("VPN", "Down"))
    one, other = as_process(shared_url), as_process(shared_url)
    one.get_ticket(ticket_id)
    other.get_ticket(ticket_id)  # both hold the first token
    fake.issue_token()  # another integration of the same API application takes a token
    one.get_ticket(ticket_id)  # 401: renewed and shared
    fake.issue_token()  # and takes one again: the shared token is refused as well
    other.get_ticket(ticket_id)  # 401, the shared one: 401 again, then its own renewal
    assert fake.token_requests() == 3


def test_a_token_sealed_with_another_key_is_replaced(
    fake: FakeHaloPSA, as_process: AsProcess, shared_url: str
) -> None:
    ticket_id = str(fake.add_ticket("VPN", "Down"))
    as_process(shared_url).get_ticket(ticket_id)
    new_key = SecretStr(Fernet.generate_key().decode())
    as_process(shared_url, key=new_key).get_ticket(ticket_id)  # cannot read it: asks for its own
    assert fake.token_requests() == 2
    as_process(shared_url, key=new_key).get_ticket(ticket_id)  # reads the replacement
    assert fake.token_requests() == 2


def test_tokens_are_shared_per_api_application(
    fake: FakeHaloPSA, as_process: AsProcess, shared_url: str
) -> None:
    as_process(shared_url).get_ticket(str(fake.add_ticket("VPN", "Down")))
    store = tokens_for(shared_url, SHARED_KEY)
    share_tokens(store)  # a process of the same deployment, for the same tenant name...
    try:
        with FakeHaloPSA() as elsewhere, make_client(timeout=5) as http:  # ...on another Halo
            config = HaloPSAConfig.model_validate(elsewhere.connection_config())
            HaloPSAAdapter("acme", config, http).get_ticket(str(elsewhere.add_ticket("A", "B")))
            assert (fake.token_requests(), elsewhere.token_requests()) == (1, 1)
    finally:
        share_tokens(None)
        assert store is not None
        store.close()


@pytest.mark.parametrize(
    "down",
    ["redis://127.0.0.1:1/0", "postgresql://postgres@127.0.0.1:1/none"],
    ids=["redis", "postgresql"],
)
def test_a_store_that_is_down_leaves_each_process_its_own_token(
    fake: FakeHaloPSA, as_process: AsProcess, down: str
) -> None:
    ticket_id = str(fake.add_ticket("VPN", "Down"))
    one, other = as_process(down), as_process(down)
    for adapter in (one, other, one, other):
        adapter.get_ticket(ticket_id)  # works, as before tokens were shared
    assert fake.token_requests() == 4  # each new token knocked out the other process's


# -- tickets ----------------------------------------------------------------------------------


def test_get_ticket_asks_for_the_details(fake: FakeHaloPSA, adapter: HaloPSAAdapter) -> None:
    ticket_id = fake.add_ticket("Printer jams", "The 3rd floor printer jams.", category_id=19)
    assert adapter.get_ticket(str(ticket_id)).description == "The 3rd floor printer jams."
    assert fake.requests_to(rf"/api/Tickets/{ticket_id}$")[0].arg("includedetails") == "true"


def test_get_ticket_sample_shape(fake: FakeHaloPSA, adapter: HaloPSAAdapter) -> None:
    fake.tickets[4321] = {**fixture("ticket.json"), "tickettype_id": 2}
    ticket = adapter.get_ticket("4321")
    assert (ticket.title, ticket.description, ticket.scope) == ("Printer offline", "", "2")
    assert (ticket.company_id, ticket.company_name) == ("7", None)
    assert ticket.current == (LevelValue("category_1", "16", "Account Administration"),)


def test_get_ticket_reads_html_details(fake: FakeHaloPSA, adapter: HaloPSAAdapter) -> None:
    ticket_id = fake.add_ticket("Mail", "")
    fake.tickets[ticket_id]["details_html"] = "<p>Outlook &amp; Teams</p><p>crash<br/>daily</p>"
    assert adapter.get_ticket(str(ticket_id)).description == "Outlook & Teams\ncrash\ndaily"


def test_get_ticket_with_type_and_priority(fake: FakeHaloPSA, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(set_ticket_type=True, facets=["priorityid"])
    ticket_id = fake.add_ticket("Mail", "Down", category_id=20, sla_id=2, priority_id=1)
    ticket = adapter.get_ticket(str(ticket_id))
    assert (ticket.scope, ticket.scope_name) == ("all;sla=2", "All ticket types")
    assert [(v.level, v.id) for v in ticket.current] == [
        ("tickettype_id", "1"), ("category_1", "Software"), ("category_1.2", "20"),
        ("priorityid", "1"),
    ]  # fmt: skip
    uncategorized = make_adapter(facets=["priorityid"]).get_ticket(str(fake.add_ticket("a", "b")))
    assert (uncategorized.scope, uncategorized.current) == ("1;sla=1", ())


# -- taxonomy ---------------------------------------------------------------------------------


def taxonomy_of(adapter: HaloPSAAdapter, scope: str) -> Any:
    return adapter.get_taxonomy(Ticket(id="1", title="", description="", scope=scope))


def test_taxonomy_of_a_ticket_type(adapter: HaloPSAAdapter) -> None:
    taxonomy = taxonomy_of(adapter, "1")
    assert [leaf.key for leaf in taxonomy.leaves] == ["17", "18", "19", "20", "22", "23"]
    assert [leaf.label for leaf in taxonomy.leaves][:3] == [
        "Hardware › Printer", "Hardware › Laptop", "Hardware › Printer › Paper jam",
    ]  # fmt: skip
    assert taxonomy.get("17").description == "Printers, scanners and copiers"
    assert taxonomy.levels == ("category_1", "category_1.2", "category_1.3")
    assert (taxonomy.scope, taxonomy.scope_name) == ("1", "Incident")
    assert taxonomy.defaults == frozenset({("category_1", "23")})
    assert taxonomy.facets == ()


def test_taxonomy_of_other_types(adapter: HaloPSAAdapter) -> None:
    every = taxonomy_of(adapter, "2")  # allowall: inactive and hidden values still left out
    assert [leaf.key for leaf in every.leaves] == ["16", "17", "18", "19", "20", "22", "23"]
    assert taxonomy_of(adapter, "3").leaves == ()


def test_taxonomy_without_hierarchy_or_of_another_field(make_adapter: MakeAdapter) -> None:
    flat = taxonomy_of(make_adapter(category_separator=""), "1")
    assert flat.get("19").path == (LevelValue("category_1", "19", "Hardware>Printer>Paper jam"),)
    second = taxonomy_of(make_adapter(category_field=2), "1")
    assert [(leaf.key, leaf.label) for leaf in second.leaves] == [
        ("30", "Remote fix"), ("31", "On site"),
    ]  # fmt: skip
    assert second.levels == ("category_2",)


def test_taxonomy_when_the_model_sets_the_type(make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(set_ticket_type=True)
    taxonomy = taxonomy_of(adapter, "all")
    keys = [leaf.key for leaf in taxonomy.leaves]
    assert keys[:2] == ["1/17", "1/18"] and "2/16" in keys and "3" in keys
    assert not any(k.startswith("4") for k in keys)  # a hidden type
    assert taxonomy.levels[0] == "tickettype_id"
    assert taxonomy.get("2/16").label == "Service Request › Hardware"
    assert taxonomy.defaults == frozenset({("tickettype_id", "1"), ("category_1", "23")})
    assert adapter.list_scopes() == [("all", "All ticket types")]
    only = taxonomy_of(make_adapter(set_ticket_type=True, ticket_types=["incident", 3]), "all")
    assert {leaf.key.split("/")[0] for leaf in only.leaves} == {"1", "3"}


def test_taxonomy_with_the_priority_facet(make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(facets=["priorityid"])
    (facet,) = taxonomy_of(adapter, "1;sla=1").facets
    assert (facet.name, facet.label) == ("priorityid", "Priority")
    assert [(o.id, o.name) for o in facet.options] == [
        ("1", "Critical"), ("2", "High"), ("3", "Medium"), ("4", "Low"),
    ]  # fmt: skip
    (default_sla,) = taxonomy_of(adapter, "2").facets  # the type's default SLA
    assert [o.name for o in default_sla.options] == ["Urgent", "Normal"]


def test_taxonomy_from_the_priority_sample(fake: FakeHaloPSA, make_adapter: MakeAdapter) -> None:
    fake.priorities = fixture("priority-list.json")
    (facet,) = taxonomy_of(make_adapter(facets=["priorityid"]), "1;sla=2").facets
    assert [(o.id, o.name) for o in facet.options] == [("1", "Urgent")]


def test_ticket_types_in_the_template_shape(fake: FakeHaloPSA, adapter: HaloPSAAdapter) -> None:
    (template,) = fixture("tickettype-list-template.json")
    restricted = template | {"id": 1, "name": "Incident", "allowall_category1": False}
    restricted["allowed_category1"] = [{**template["allowed_category1"][0], "category_id": 22}]
    fake.ticket_types[1] = restricted
    assert [leaf.key for leaf in taxonomy_of(adapter, "1").leaves] == ["22"]
    fake.ticket_types[2] = template | {"id": 2, "name": "Service Request", "default_sla": 2}
    assert len(taxonomy_of(adapter, "2").leaves) == 7  # allowall_category1: true


def test_list_scopes(fake: FakeHaloPSA, make_adapter: MakeAdapter) -> None:
    assert make_adapter().list_scopes() == [
        ("1", "Incident"), ("2", "Service Request"), ("3", "Change"),
    ]  # fmt: skip
    assert make_adapter(ticket_types=["change"]).list_scopes() == [("3", "Change")]
    assert fake.requests_to(r"/api/TicketType/\d+$") == []  # names only: no details read


@pytest.mark.parametrize("scope", ["", "x", "1;priority=2", "0"])
def test_taxonomy_bad_scope(adapter: HaloPSAAdapter, scope: str) -> None:
    with pytest.raises(PermanentError, match="scope"):
        taxonomy_of(adapter, scope)


# -- set_category -----------------------------------------------------------------------------


def leaf(adapter: HaloPSAAdapter, ticket: Ticket, key: str) -> Category:
    found = adapter.get_taxonomy(ticket).get(key)
    assert found is not None
    return found


def test_set_category_writes_then_confirms(fake: FakeHaloPSA, adapter: HaloPSAAdapter) -> None:
    ticket_id = fake.add_ticket("Printer jams", "Jams.")
    ticket = adapter.get_ticket(str(ticket_id))
    chosen = leaf(adapter, ticket, "19")
    adapter.set_category(ticket, chosen)
    assert fake.ticket_updates(ticket_id) == [
        {
            "id": ticket_id,
            "categoryid_1": 19,
            "category_1": "Hardware>Printer>Paper jam",
            "_dont_fire_automations": True,
            "sendemail": False,
        }
    ]
    assert len(fake.requests_to(rf"/api/Tickets/{ticket_id}$")) == 2  # read, then confirm
    assert adapter.get_ticket(str(ticket_id)).current == chosen.path


def test_set_category_without_cached_taxonomy(fake: FakeHaloPSA, make_adapter: MakeAdapter) -> None:
    ticket_id = fake.add_ticket("Mail", "Down")
    ticket = make_adapter().get_ticket(str(ticket_id))
    chosen = leaf(make_adapter(), ticket, "20")
    fresh = make_adapter(dont_do_rules=True)  # another process: the type is read again
    fresh.set_category(ticket, chosen)
    assert fake.ticket_updates(ticket_id)[0]["dont_do_rules"] is True
    assert fake.tickets[ticket_id]["categoryid_1"] == 20


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("16", (LevelValue("category_1", "16", "Hardware"),)),  # not allowed for Incident
        ("21", (LevelValue("category_1", "21", "Office"),)),  # inactive
        ("99", (LevelValue("category_1", "99", "Nope"),)),  # unknown
        ("2/17", (LevelValue("tickettype_id", "2", "SR"), LevelValue("category_1", "17", "P"))),
        ("x", (LevelValue("queue", "3", "Q"),)),
        ("y", (LevelValue("category_1", "Hardware", "Hardware"),)),
    ],
    ids=["not allowed", "inactive", "unknown", "type not settable", "unknown level", "no id"],
)
def test_set_category_refused_before_writing(
    fake: FakeHaloPSA, adapter: HaloPSAAdapter, key: str, path: tuple[LevelValue, ...]
) -> None:
    ticket_id = fake.add_ticket("Odd", "Odd.")
    with pytest.raises(CategoryRejected):
        adapter.set_category(adapter.get_ticket(str(ticket_id)), Category(key, path))
    assert fake.ticket_updates(ticket_id) == []


def test_a_silent_no_op_is_a_failure(fake: FakeHaloPSA, adapter: HaloPSAAdapter) -> None:
    ticket_id = fake.add_ticket("Mail", "Down")
    ticket = adapter.get_ticket(str(ticket_id))
    fake.ignored_fields = {"categoryid_1"}  # Halo answers 201 and changes nothing
    with pytest.raises(CategoryRejected, match="did not apply it: categoryid_1 is 0, not 20"):
        adapter.set_category(ticket, leaf(adapter, ticket, "20"))
    assert len(fake.ticket_updates(ticket_id)) == 1


def test_set_category_with_type_and_priority(fake: FakeHaloPSA, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(set_ticket_type=True, facets=["priorityid"])
    ticket_id = fake.add_ticket("New laptop", "For Bob", sla_id=1)
    ticket = adapter.get_ticket(str(ticket_id))
    high = LevelValue("priorityid", "2", "High")
    chosen = leaf(adapter, ticket, "2/18").with_facets((high,))
    adapter.set_category(ticket, chosen)
    (update,) = fake.ticket_updates(ticket_id)
    assert {k: update[k] for k in ("tickettype_id", "categoryid_1", "priority_id")} == {
        "tickettype_id": 2,
        "categoryid_1": 18,
        "priority_id": 2,
    }
    assert [(v.level, v.id) for v in adapter.get_ticket(str(ticket_id)).current] == [
        (v.level, v.id) for v in chosen.path
    ]
    with pytest.raises(CategoryRejected, match="Invalid priority"):  # hidden in SLA 1
        adapter.set_category(ticket, chosen.with_facets((LevelValue("priorityid", "5", "P"),)))
    adapter.set_category(ticket, leaf(adapter, ticket, "3"))  # a type without categories
    assert fake.ticket_updates(ticket_id)[-1] == {
        "id": ticket_id, "tickettype_id": 3, "_dont_fire_automations": True, "sendemail": False,
    }  # fmt: skip


# -- notes ------------------------------------------------------------------------------------


def test_add_note_is_a_hidden_private_action(fake: FakeHaloPSA, adapter: HaloPSAAdapter) -> None:
    ticket_id = fake.add_ticket("VPN", "Down")
    ticket = adapter.get_ticket(str(ticket_id))
    adapter.add_note(ticket, "Categorized as Network.\nR&D <ok> [psatriage:41]")
    adapter.add_note(ticket, "second")
    action = fake.writes_to("POST", "/api/Actions$")[0].json()[0]
    assert action == {
        "ticket_id": ticket_id,
        "outcome": "Private Note",
        "outcome_id": 3,
        "note_html": "<p>Categorized as Network.<br>R&amp;D &lt;ok&gt; [psatriage:41]</p>",
        "hiddenfromuser": True,
        "sendemail": False,
        "send_survey": False,
        "_dont_fire_automations": True,
    }
    sample = fixture("action-private-note-request-no-automations.json")[0]
    assert set(sample) <= set(action)
    assert len(fake.requests_to("/api/Outcome$")) == 1  # looked up once
    assert fake.notes(ticket_id)[0]["note"] == "Categorized as Network.\nR&D <ok> [psatriage:41]"


@pytest.mark.parametrize(("name", "expected"), [("private note", "Private Note"),
                                                ("Email", "Email User")])  # fmt: skip
def test_note_outcome_by_name_or_button(
    fake: FakeHaloPSA, make_adapter: MakeAdapter, name: str, expected: str
) -> None:
    ticket_id = fake.add_ticket("VPN", "Down")
    adapter = make_adapter(note_outcome=name)
    adapter.add_note(adapter.get_ticket(str(ticket_id)), "x")
    assert fake.notes(ticket_id)[0]["outcome"] == expected


def test_missing_note_outcome(fake: FakeHaloPSA, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(note_outcome="Robot Note")
    with pytest.raises(PermanentError, match="no action outcome named 'Robot Note'"):
        adapter.add_note(adapter.get_ticket(str(fake.add_ticket("VPN", "Down"))), "x")


def test_find_note_pages_through_actions(fake: FakeHaloPSA, adapter: HaloPSAAdapter) -> None:
    ticket_id = fake.add_ticket("VPN", "Down")
    for sample in fixture("actions-list.json")["actions"]:
        fake.actions[ticket_id].append({**sample, "ticket_id": ticket_id})
    fake.add_action(ticket_id, "Done [psatriage:7]")
    fake.max_page_size = 1
    ticket = adapter.get_ticket(str(ticket_id))
    assert adapter.find_note(ticket, "psatriage:7")
    assert adapter.find_note(ticket, "Rebooted the printer")
    assert not adapter.find_note(ticket, "psatriage:8")
    pages = [r.arg("page_no") for r in fake.requests_to("/api/Actions$")]
    assert pages == ["1", "2", "3", "1", "1", "2", "3"]


# -- set-up calls and polling -----------------------------------------------------------------

HOOK = "https://triage.example.com/webhooks/acme"


def test_register_webhook_bodies_match_the_samples(
    fake: FakeHaloPSA, adapter: HaloPSAAdapter
) -> None:
    first = adapter.register_webhook(HOOK)
    (webhook,) = fake.webhooks
    assert first == f"{webhook['id']} (new-ticket notification 57)"
    sample = fixture("webhook-register-request.json")[0] | {"basic_password": fake.webhook_secret}
    auth = ("authentication_type", "authentication_header", "basic_password", "algorithm")
    assert {k: webhook[k] for k in auth} == {k: sample[k] for k in auth}
    assert {k: webhook[k] for k in ("url", "type", "method", "active", "content_type")} == {
        "url": HOOK, "type": 0, "method": 0, "active": True, "content_type": "application/json",
    }  # fmt: skip
    (binding,) = fake.writes_to("POST", "/api/Notification$")
    expected = fixture("notification-event-binding-request.json")
    expected[0]["webhook_id"] = webhook["id"]
    assert binding.json() == expected


def test_register_webhook_with_basic_auth_binds_an_existing_hook(
    fake: FakeHaloPSA, make_adapter: MakeAdapter
) -> None:
    fake.webhooks.append({"id": "0d9e", "url": HOOK, "type": 0})
    assert make_adapter().register_webhook(HOOK) == "0d9e (new-ticket notification 57)"
    assert fake.writes_to("POST", "/api/Webhook$") == []
    make_adapter(webhook_auth="basic").register_webhook("https://other.example.com/h")
    created = fake.webhooks[-1]
    assert (created["authentication_type"], created["basic_username"]) == ("1", "psatriage")
    assert "algorithm" not in created


def test_register_webhook_with_a_path_token_only(
    fake: FakeHaloPSA,
    make_adapter: MakeAdapter,
    http: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HALO_TOKEN", TOKEN)
    adapter = make_adapter(webhook_path_token="env:HALO_TOKEN")
    shown = adapter.register_webhook(HOOK + "/")
    assert adapter.register_webhook(HOOK) == shown and TOKEN not in shown
    (webhook,) = fake.webhooks
    assert webhook["url"] == f"{HOOK}/{TOKEN}"
    assert webhook["authentication_type"] == "3"  # the HMAC secret is still configured
    config = {k: v for k, v in fake.connection_config().items() if k != "webhook_secret"}
    config["webhook_path_token"] = "env:HALO_TOKEN"
    path_only = HaloPSAAdapter("acme", HaloPSAConfig.model_validate(config), http)
    path_only.register_webhook("https://other.example.com/webhooks/acme")
    assert "authentication_type" not in fake.webhooks[-1]


def test_list_new_tickets(fake: FakeHaloPSA, make_adapter: MakeAdapter) -> None:
    since = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    old = fake.add_ticket("old", "x", dateoccurred="2026-03-02T08:59:59")
    later = fake.add_ticket("later", "x", dateoccurred="2026-03-02T09:30:00")
    first = fake.add_ticket("first", "x", dateoccurred="2026-03-02T09:00:00")
    change = fake.add_ticket("change", "x", dateoccurred="2026-03-02T09:10:00", tickettype_id=3)
    found = make_adapter(page_size=2).list_new_tickets(since)
    assert [(t.ticket_id, t.created_at) for t in found] == [
        (str(first), since),
        (str(change), since + timedelta(minutes=10)),
        (str(later), since + timedelta(minutes=30)),
    ]
    assert str(old) not in [t.ticket_id for t in found]
    request = fake.requests_to("/api/Tickets$")[0]
    assert (request.arg("datesearch"), request.arg("startdate")) == (
        "dateoccured",
        "2026-03-02T09:00:00",
    )
    assert [t.ticket_id for t in make_adapter(ticket_types=[1]).list_new_tickets(since)] == [
        str(first),
        str(later),
    ]


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_backoff")
def test_a_retried_write_logs_no_secret(
    fake: FakeHaloPSA,
    adapter: HaloPSAAdapter,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.fail("POST", "/api/Webhook$", 429)
    adapter.register_webhook(HOOK)
    assert len(fake.requests_to("/api/Webhook$")) == 3  # list, 429, create
    shown = caplog.text + "".join(capsys.readouterr())
    assert "retry" in shown
    for secret in (fake.webhook_secret, fake.client_secret):
        assert secret not in shown


# -- through the whole service ----------------------------------------------------------------


@pytest.fixture
def service(fake: FakeHaloPSA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A tenants file for tenant 'acme' on the fake Halo and the fake OpenAI; yields its path."""
    fake.path_token = TOKEN
    monkeypatch.setenv(FakeHaloPSA.PATH_TOKEN_ENV, TOKEN)
    with FakeOpenAI() as llm:
        path = tmp_path / "psatriage.toml"
        write_tenants(
            path, "acme", "halopsa", fake.connection_config(), llm, policy={"mode": "apply"}
        )
        monkeypatch.setenv(OPENAI_KEY_ENV, DEFAULT_API_KEY)
        monkeypatch.setenv("PSATRIAGE_CONFIG", str(path))
        monkeypatch.setenv("PSATRIAGE_DATA_DIR", str(tmp_path / "data"))
        yield path


def test_new_tickets_through_the_service(fake: FakeHaloPSA, service: Path, tmp_path: Path) -> None:
    runtime = Runtime(Settings(data_dir=tmp_path / "data"), load_config(service))
    tickets = [fake.add_ticket("Outlook email software crashes", "At start") for _ in range(2)]
    try:
        with TestClient(create_app(runtime)) as client:
            body, headers = fake.delivery(tickets[0])
            for url, sent in [
                (f"/webhooks/acme/{TOKEN}", {}),  # no signature
                ("/webhooks/acme", headers),  # no path token (the edge drops the header)
                (f"/webhooks/acme/{TOKEN[:-1]}", headers),
            ]:
                assert client.post(url, content=body, headers=sent).status_code == 401
            events = []
            url = f"/webhooks/acme/{TOKEN}"
            for ticket_id in tickets:
                body, headers = fake.delivery(ticket_id)
                response = client.post(url, content=body, headers=headers)
                assert response.status_code == 202, response.text
                assert client.post(url, content=body, headers=headers).json() == {
                    "status": "duplicate",
                    "event_id": response.json()["event_id"],
                }
                events.append(response.json()["event_id"])
        for event_id in events:
            assert jobs.process_event(runtime, event_id) is EventState.DONE
    finally:
        runtime.close()
    for ticket_id in tickets:
        assert fake.ticket_updates(ticket_id) == [
            {
                "id": ticket_id,
                "categoryid_1": 20,
                "category_1": "Software>Email",
                "_dont_fire_automations": True,
                "sendemail": False,
            }
        ]
        (note,) = fake.notes(ticket_id)
        assert note["hiddenfromuser"] is True and note["outcome"] == "Private Note"
        assert "Software › Email" in note["note"] and "psatriage:" in note["note"]
    assert fake.token_requests() == 1


def test_cli_shows_one_ticket_type_and_registers_the_path_token(
    fake: FakeHaloPSA, service: Path
) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["taxonomy", "show", "--tenant", "acme", "--board", "Incident"])
    assert shown.exit_code == 0, shown.output
    assert "Paper jam" in shown.output and "Service Request" not in shown.output
    hook = runner.invoke(
        app, ["webhooks", "register", "--tenant", "acme", "--url", "https://t.example.com/w"]
    )
    assert hook.exit_code == 0, hook.output
    assert fake.webhooks[0]["id"] in hook.output and len(fake.notifications) == 1
    assert fake.webhooks[0]["url"] == f"https://t.example.com/w/{TOKEN}"
    assert TOKEN not in hook.output


# -- history (training data) ----------------------------------------------------------------


def test_history_asks_for_closed_tickets_newest_first_and_keys_them_by_record(
    fake: FakeHaloPSA, make_adapter: MakeAdapter
) -> None:
    for day, category in ((3, 17), (4, 22), (7, 19)):
        ticket_id = fake.add_ticket(f"ticket {day}", "x", category_id=category,
                                    dateoccurred=f"2026-01-{day:02d}T10:00:00.000")  # fmt: skip
        fake.close_ticket(ticket_id)
    history = make_adapter(page_size=2).list_labeled_tickets(datetime(2026, 1, 1), limit=10)
    assert [t.key for t in history] == ["19", "22", "17"]
    assert history[2].label == "Hardware › Printer"
    assert history[2].path[-1].id == "17"  # the Halo record, as the taxonomy's leaf key
    lists = fake.requests_to(r"/api/Tickets$")
    assert lists[0].arg("closed_only") == "true" and lists[0].arg("orderdesc") == "true"
    before = len(fake.requests_to(r"/api/Tickets$"))
    make_adapter(page_size=2).list_labeled_tickets(datetime(2026, 1, 1, tzinfo=UTC), limit=1)
    assert len(fake.requests_to(r"/api/Tickets$")) - before == 1  # stopped after one page


def test_history_keys_match_the_taxonomy_keys_for_nested_categories() -> None:
    nested = (
        LevelValue("category_1", "Hardware", "Hardware"),
        LevelValue("category_1.2", "17", "Printer"),
    )
    assert _leaf_key(nested) == "17"
    typed = (LevelValue("tickettype_id", "1", "Incident"), *nested)
    assert _leaf_key(typed) == "1/17"
    assert _leaf_key(()) == ""


# -- limits -----------------------------------------------------------------------------------


def test_token_requests_count_against_the_window(
    fake: FakeHaloPSA, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(requests_per_window=3)
    ticket_id = str(fake.add_ticket("VPN", "Down"))
    adapter.get_ticket(ticket_id)  # authinfo, the token and the ticket: all three counted
    assert len(fake.requests) == 3 and fake.token_requests() == 1
    with pytest.raises(TransientError, match="client-side limit of 3 calls per 60 s") as caught:
        adapter.get_ticket(ticket_id)
    assert caught.value.retry_after is not None and 50 < caught.value.retry_after <= 60
    assert len(fake.requests) == 3  # refused before it was sent, and not retried as a 429
