"""ConnectWise's quirks, against the fake ConnectWise on 127.0.0.1 through a real httpx client:
signing keys fetched from the callback, codebases, board trees, JSON Patch writes, callbacks per
board. What every PSA does is checked by the contract suite (``tests/psa/contract/``) from the
case tables in ``tests/fakes/connectwise/kit.py``."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

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
from psatriage.psa.connectwise import ConnectWiseAdapter, ConnectWiseConfig, key_url_allowed
from tests.fakes.base import FakeServer
from tests.fakes.connectwise import FakeConnectWise
from tests.psa.conftest import in_parallel, serving

ADAPTER = ConnectWiseAdapter  # what make_adapter builds (tests/psa/conftest.py)
MakeAdapter = Callable[..., ConnectWiseAdapter]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConnectWise]:
    yield from serving(FakeConnectWise(), monkeypatch)


# -- parse (the cases are in tests/fakes/connectwise/kit.py) ----------------------------------


def test_parse_callback_from_fake(fake: FakeConnectWise, adapter: ConnectWiseAdapter) -> None:
    ticket_id = fake.add_ticket("Printer jams", "It jams.")
    body, _ = fake.callback(ticket_id, message_id="3f1c")
    event = adapter.parse(body)
    assert event is not None
    assert (event.ticket_id, event.dedupe_key, event.actor) == (str(ticket_id), "3f1c", "User1")
    assert event.actionable


# -- verify -----------------------------------------------------------------------------------


def key_fetches(fake: FakeConnectWise) -> int:
    return len(fake.requests_to("/system/callbackkey/"))


def test_verify_accepts_a_good_signature(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter
) -> None:
    body, headers = fake.callback(fake.add_ticket("Laptop", "Will not boot."))
    adapter.verify(headers, body)
    key_request = fake.requests_to("/system/callbackkey/")[0]
    assert key_request.headers["clientid"] == fake.client_id
    assert "authorization" not in key_request.headers


def test_verify_caches_the_key_per_key_url(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter
) -> None:
    for _ in range(2):
        body, headers = fake.callback(fake.add_ticket("Laptop", "Will not boot."))
        adapter.verify(headers, body)
    assert key_fetches(fake) == 1


def test_verify_fetches_once_when_concurrent(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter
) -> None:
    body, headers = fake.callback(fake.add_ticket("Laptop", "Will not boot."))
    fake.delay = 0.1
    errors: list[BaseException] = []

    def verify() -> None:
        try:
            adapter.verify(headers, body)
        except WebhookRejected as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=verify) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert key_fetches(fake) == 1


@pytest.mark.parametrize(
    "key_url",
    [
        "{attacker}/key?id=1",  # a host nobody trusted
        "http://user:pw@{attacker_host}/key",  # credentials in the URL
        "http://api-na.myconnectwise.net/v2025_1/system/callbackkey/index.rails?id=1",  # no TLS
        "https://evil.myconnectwise.net/v2025_1/system/callbackkey/index.rails?id=1",
    ],
    ids=["untrusted host", "userinfo", "plain http", "unknown subdomain"],
)
def test_verify_never_fetches_an_untrusted_key_url(
    fake: FakeConnectWise, make_adapter: MakeAdapter, key_url: str
) -> None:
    with FakeServer() as attacker:
        host = attacker.url.removeprefix("http://")
        adapter = make_adapter(trusted_key_origins=[fake.url, f"https://{host}"])
        url = key_url.format(attacker=attacker.url, attacker_host=host)
        body = json.dumps({"Type": "ticket", "ID": 1, "Metadata": {"key_url": url}}).encode()
        with pytest.raises(WebhookRejected, match="not a trusted") as info:
            adapter.verify({"x-content-signature": fake.sign(body)}, body)
        assert info.value.status == 401
        assert attacker.requests == []


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api-na.myconnectwise.net/v4_6_release/system/callbackkey/index.rails?id=1", True),
        ("https://sandbox-eu.myconnectwise.net/v2025_1/system/callbackkey/index.rails", True),
        ("https://AU.myconnectwise.net:443/x", True),
        ("http://api-na.myconnectwise.net/x", False),  # not HTTPS
        ("https://api-na.myconnectwise.net:8443/x", False),
        ("https://evil.myconnectwise.net/x", False),
        ("https://api-na.myconnectwise.net.evil.example/x", False),
        ("https://user:pw@api-na.myconnectwise.net/x", False),
        ("https://evil.example\\@api-na.myconnectwise.net/x", False),
        ("https://cw.example.com/key", True),  # trusted on-premise origin
        ("http://cw.example.com/key", False),
        ("not a url", False),
    ],
)
def test_key_url_allow_list(url: str, allowed: bool) -> None:
    assert key_url_allowed(url, ("https://cw.example.com",)) is allowed


def test_key_url_answers_are_remembered_per_trusted_origins() -> None:
    url = "https://cw.example.com/key"
    # the same URL, asked again under other trusted origins, is answered for those
    assert key_url_allowed(url, ("https://cw.example.com",)) is True
    assert key_url_allowed(url, ()) is False
    assert key_url_allowed(url, ["https://cw.example.com"]) is True  # any iterable


@pytest.mark.parametrize(
    ("status", "error"), [(503, TransientError), (500, TransientError), (404, WebhookRejected)]
)
def test_verify_key_fetch_failures(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter, status: int, error: type[Exception]
) -> None:
    body, headers = fake.callback(fake.add_ticket("Laptop", "Will not boot."))
    fake.fail("GET", "/system/callbackkey/", status)
    with pytest.raises(error):
        adapter.verify(headers, body)
    adapter.verify(headers, body)  # nothing cached from the failure; the next fetch works


# -- tickets and notes ------------------------------------------------------------------------


def test_get_ticket_reads_the_notes_page_by_page(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter
) -> None:
    ticket_id = fake.add_ticket("Printer jams", "The 3rd floor printer jams.")
    fake.add_ticket_note(ticket_id, "Categorized. [psatriage:7]", internal=True)
    fake.add_ticket_note(ticket_id, "It is the HP on the left.", internal=True)
    fake.max_page_size = 2
    ticket = adapter.get_ticket(str(ticket_id))
    assert ticket.initial_note == "It is the HP on the left."  # the first that is not ours
    assert len(fake.requests_to(rf"/service/tickets/{ticket_id}/notes$")) == 2


def test_get_ticket_takes_the_earliest_description(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter
) -> None:
    ticket_id = fake.add_ticket("VPN", "Later text")
    fake.ticket_notes[ticket_id].append(
        {"id": 1, "text": "First text", "detailDescriptionFlag": True, "dateCreated": "2026-01-01"}
    )
    assert adapter.get_ticket(str(ticket_id)).description == "First text"


def test_a_ticket_not_found_does_not_rediscover_a_codebase_that_did_not_move(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter
) -> None:
    with pytest.raises(PermanentError, match="ticket 424242 not found"):
        adapter.get_ticket("424242")
    assert len(fake.requests_to("/service/tickets/424242$")) == 1
    assert len(fake.requests_to("/login/companyinfo/")) == 2  # discovered, checked after the 404


def test_add_note_is_internal_and_never_the_initial_note(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter
) -> None:
    ticket_id = fake.add_ticket("VPN", "Cannot connect.")
    ticket = adapter.get_ticket(str(ticket_id))
    adapter.add_note(ticket, "Categorized as Network > VPN. [psatriage:41]")
    assert fake.writes_to("POST", rf"/service/tickets/{ticket_id}/notes$")[0].json() == {
        "text": "Categorized as Network > VPN. [psatriage:41]",
        "detailDescriptionFlag": False,
        "internalAnalysisFlag": True,
        "resolutionFlag": False,
        "processNotifications": False,
        "customerUpdatedFlag": False,
    }
    assert adapter.get_ticket(str(ticket_id)).initial_note == ""  # our note is not the user's


# -- taxonomy ---------------------------------------------------------------------------------


def taxonomy_of(adapter: ConnectWiseAdapter, board: int, name: str = "") -> Any:
    return adapter.get_taxonomy(
        Ticket(id="1", title="", description="", scope=str(board), scope_name=name)
    )


def test_taxonomy_from_associations(fake: FakeConnectWise, adapter: ConnectWiseAdapter) -> None:
    fake.max_page_size = 2
    taxonomy = taxonomy_of(adapter, 1, "Help Desk")
    assert [leaf.key for leaf in taxonomy.leaves] == [
        "10/20/30", "10/20/31", "10/21/31", "10/21", "11/22/32", "11/23", "12/24", "14",
    ]  # fmt: skip
    assert taxonomy.get("10/20/30").label == "Hardware › Printer › Paper jam"
    assert taxonomy.get("12/24").path == (
        LevelValue("type", "12", "Network"),
        LevelValue("subType", "24", "VPN"),
    )
    assert (taxonomy.scope, taxonomy.scope_name) == ("1", "Help Desk")
    assert taxonomy.levels == ("type", "subType", "item")
    assert taxonomy.defaults == frozenset({("type", "14")})
    assert len(fake.requests_to("/service/boards/1/types$")) == 3  # 5 types, 2 a page
    assert len(fake.requests_to("/service/boards/1/typeSubTypeItemAssociations$")) == 7


def test_taxonomy_of_another_board(adapter: ConnectWiseAdapter) -> None:
    taxonomy = taxonomy_of(adapter, 2)
    assert [leaf.key for leaf in taxonomy.leaves] == ["60/70/80", "60/71", "61/70"]
    assert taxonomy.defaults == frozenset()


def test_taxonomy_falls_back_to_types_and_subtypes(adapter: ConnectWiseAdapter) -> None:
    taxonomy = taxonomy_of(adapter, 3)
    assert [leaf.label for leaf in taxonomy.leaves] == [
        "Access › Accounts", "Access › Permissions", "Equipment",
    ]  # fmt: skip
    assert [leaf.key for leaf in taxonomy.leaves] == ["40/50", "40/51", "41"]


# -- set_category -----------------------------------------------------------------------------


def category(key: str) -> Category:
    levels = ("type", "subType", "item")[: key.count("/") + 1]
    ids = key.split("/")
    return Category(key, tuple(LevelValue(lvl, i, i) for lvl, i in zip(levels, ids, strict=True)))


def test_set_category_replaces_every_level(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter
) -> None:
    ticket_id = fake.add_ticket("Printer jams", "Jams.")
    adapter.set_category(adapter.get_ticket(str(ticket_id)), category("10/20/30"))
    assert fake.patches(ticket_id) == [
        [
            {"op": "replace", "path": "type", "value": {"id": 10}},
            {"op": "replace", "path": "subType", "value": {"id": 20}},
            {"op": "replace", "path": "item", "value": {"id": 30}},
        ]
    ]
    assert fake.tickets[ticket_id]["item"]["name"] == "Paper jam"


def test_set_category_removes_levels_the_category_lacks(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter
) -> None:
    ticket_id = fake.add_ticket("Word", "Crashes.", type_id=10, subtype_id=21, item_id=31)
    adapter.set_category(adapter.get_ticket(str(ticket_id)), category("11/23"))
    assert fake.patches(ticket_id) == [
        [
            {"op": "replace", "path": "type", "value": {"id": 11}},
            {"op": "replace", "path": "subType", "value": {"id": 23}},
            {"op": "remove", "path": "item"},
        ]
    ]
    assert "item" not in fake.tickets[ticket_id]


@pytest.mark.parametrize(("board", "key"), [(1, "12/20/30"), (1, "13"), (3, "41/50")])
def test_set_category_rejected(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter, board: int, key: str
) -> None:
    ticket_id = fake.add_ticket("Odd", "Odd.", board_id=board)
    before = dict(fake.tickets[ticket_id])
    with pytest.raises(CategoryRejected, match="InvalidObject: ticket object is invalid; The"):
        adapter.set_category(adapter.get_ticket(str(ticket_id)), category(key))
    assert fake.tickets[ticket_id] == before


def test_set_category_on_a_fallback_board(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter
) -> None:
    ticket_id = fake.add_ticket("New starter", "Needs accounts.", board_id=3)
    adapter.set_category(adapter.get_ticket(str(ticket_id)), category("40/50"))
    assert fake.tickets[ticket_id]["subType"]["name"] == "Accounts"


# -- set-up calls -----------------------------------------------------------------------------

HOOK = "https://triage.example.com/webhooks/acme?token=t0ken"


def test_register_webhook_for_the_whole_company(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter
) -> None:
    first = adapter.register_webhook(HOOK)
    posts = fake.writes_to("POST", "/system/callbacks$")
    assert [p.json() for p in posts] == [
        {
            "type": "ticket",
            "description": "psatriage: categorize new tickets",
            "url": HOOK,
            "objectId": 1,
            "level": "owner",
        }
    ]
    assert first == str(fake.callbacks[0]["id"])
    assert fake.requests_to("/system/callbacks$", "GET")[0].arg("conditions") == f'url="{HOOK}"'


def test_register_webhook_per_board(fake: FakeConnectWise, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(boards=[1, "network operations"])
    ids = adapter.register_webhook(HOOK)
    assert ids == ",".join(str(c["id"]) for c in fake.callbacks)
    assert [(c["level"], c["objectId"]) for c in fake.callbacks] == [("board", 1), ("board", 2)]
    assert adapter.register_webhook(HOOK) == ids
    assert len(fake.callbacks) == 2
    with pytest.raises(ConfigError, match="'Nope'"):
        make_adapter(boards=["Nope"]).register_webhook(HOOK)


def test_the_api_version_is_pinned_in_accept(
    fake: FakeConnectWise, make_adapter: MakeAdapter
) -> None:
    assert make_adapter(api_version="2025.1").check_connection() == "ConnectWise v2025.1 (cloud)"
    accept = fake.requests_to("/system/info$")[0].headers["accept"]
    assert accept == "application/vnd.connectwise.com+json; version=2025.1"


# -- codebase discovery -----------------------------------------------------------------------


def test_codebase_is_discovered_again_after_a_404(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter
) -> None:
    ticket_id = fake.add_ticket("VPN", "Down.")
    adapter.check_connection()
    fake.codebase = "v2025_2/"  # the hosted instance moved
    assert adapter.get_ticket(str(ticket_id)).title == "VPN"
    assert len(fake.requests_to("/login/companyinfo/")) == 2
    assert adapter.check_connection()
    assert len(fake.requests_to("/login/companyinfo/")) == 2


def test_warm_up_discovers_the_codebase_before_the_first_ticket(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter
) -> None:
    adapter.warm_up()  # a new worker process, before its first ticket
    assert len(fake.requests) == 1 and fake.requests_to("/login/companyinfo/")
    adapter.get_ticket(str(fake.add_ticket("VPN", "Down.")))
    assert len(fake.requests_to("/login/companyinfo/")) == 1


def test_configured_codebase_is_not_discovered(
    fake: FakeConnectWise, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(codebase="v2024_1")
    with pytest.raises(PermanentError, match="system info not found"):
        adapter.check_connection()
    assert fake.requests_to("/login/companyinfo/") == []
    assert fake.requests_to("/v2024_1/apis/3.0/system/info$")


def test_unknown_company(make_adapter: MakeAdapter) -> None:
    with pytest.raises(PermanentError, match="does not know the company id 'someone_else'"):
        make_adapter(company_id="someone_else").check_connection()


# -- configuration and secrets ----------------------------------------------------------------


def test_a_refusal_never_shows_the_basic_credentials(
    fake: FakeConnectWise, make_adapter: MakeAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FakeConnectWise.PRIVATE_KEY_ENV, "wrong-private-S3CRET")
    with pytest.raises(AuthFailed) as info:
        make_adapter().check_connection()
    authorization = fake.requests_to("/system/info$")[0].headers["authorization"]
    assert authorization.split()[1] not in str(info.value)


def test_config_normalizes(fake: FakeConnectWise) -> None:
    config = ConnectWiseConfig.model_validate(
        fake.connection_config(
            boards=[1, "Help Desk"],
            codebase="v2025_1",
            trusted_key_origins=["HTTPS://CW.Example.com:443/"],
        )
    )
    assert config.boards == ("1", "Help Desk")
    assert config.codebase == "v2025_1/"
    assert config.trusted_key_origins == ("https://cw.example.com",)
    assert config.public_key.get_secret_value() == fake.public_key


# -- history (training data) ----------------------------------------------------------------


def test_list_labeled_tickets_reads_closed_categorized_tickets_newest_first(
    fake: FakeConnectWise, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(page_size=2)
    since = datetime(2026, 1, 1)

    def ticket(day: int, *, closed: bool = True, **levels: int) -> int:
        entered = datetime(2026, 1, day, tzinfo=UTC)
        ticket_id = fake.add_ticket(f"ticket {day}", f"text {day}", entered=entered, **levels)
        if closed:
            fake.close_ticket(ticket_id)
        return ticket_id

    printer = ticket(3, type_id=10, subtype_id=20, item_id=30)
    email = ticket(5, type_id=11, subtype_id=22)
    ticket(6)  # closed but never categorized
    ticket(7, closed=False, type_id=12, subtype_id=24)  # still open
    fake.add_ticket("old", "before since", type_id=12, entered=datetime(2025, 12, 1, tzinfo=UTC))
    vpn = ticket(8, type_id=12, subtype_id=24)
    ticket(9, board_id=2, type_id=60, subtype_id=71)
    before = len(fake.requests_to(r"/service/tickets$"))

    history = adapter.list_labeled_tickets(since, limit=10)

    network = [t for t in history if t.ticket.scope == "2"]
    help_desk = [t for t in history if t.ticket.scope == "1"]
    assert [t.ticket.id for t in help_desk] == [str(vpn), str(email), str(printer)]
    assert len(network) == 1 and history[0].ticket.scope == "2"  # entered last: first
    first = help_desk[-1]
    assert first.key == "10/20/30" and first.label == "Hardware › Printer › Paper jam"
    assert first.ticket.title == "ticket 3"
    assert first.ticket.description == "text 3"
    assert first.ticket.company_name == "Contoso Ltd" and first.ticket.scope_name == "Help Desk"
    pages = fake.requests_to(r"/service/tickets$")[before:]
    assert len(pages) >= 2  # paged (page size 2)
    assert "closedFlag=true" in pages[0].arg("conditions")


def test_list_labeled_tickets_stops_at_the_limit(
    fake: FakeConnectWise, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(page_size=2)
    for day in range(1, 11):
        ticket_id = fake.add_ticket(
            f"t{day}", "d", type_id=11, subtype_id=23, entered=datetime(2026, 2, day, tzinfo=UTC)
        )
        fake.close_ticket(ticket_id)
    history = adapter.list_labeled_tickets(datetime(2026, 1, 1, tzinfo=UTC), limit=3)
    assert [t.ticket.title for t in history] == ["t10", "t9", "t8"]
    assert len(fake.requests_to(r"/service/tickets$")) == 2  # not every page
    assert len(fake.requests_to(r"/service/tickets/\d+/notes$")) == 3  # one per kept ticket
    assert ConnectWiseAdapter.can_list_history()


# -- limits -----------------------------------------------------------------------------------


def test_the_signing_key_fetch_is_outside_the_limits(
    fake: FakeConnectWise, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(requests_per_window=1, codebase=fake.codebase)
    adapter.check_connection()
    with pytest.raises(TransientError, match="client-side limit"):
        adapter.check_connection()
    body, headers = fake.callback(fake.add_ticket("Laptop", "Will not boot."))
    adapter.verify(headers, body)  # the webhook path never waits on (or is refused by) limits
    assert key_fetches(fake) == 1


def test_the_ticket_and_its_notes_are_capped_apart(fake: FakeConnectWise) -> None:
    tickets = [fake.add_ticket(f"T{n}", "x") for n in range(8)]
    with make_client(timeout=10, max_connections=32) as client:
        config = ConnectWiseConfig.model_validate(fake.connection_config(concurrent_per_endpoint=2))
        adapter = ConnectWiseAdapter("acme", config, client)
        adapter.get_ticket(str(tickets[0]))  # the codebase, discovered once
        fake.delay = 0.05
        errors = in_parallel(lambda t: adapter.get_ticket(str(t)), tickets)
    assert errors == []
    tickets_path = f"GET /{fake.codebase}apis/3.0/service/tickets/{{id}}"
    assert fake.max_active_by_endpoint[f"{tickets_path}/notes"] == 2
    assert fake.max_active > 2  # the two endpoints were busy at the same time


def test_a_board_change_and_a_category_of_the_new_board_are_one_patch(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter
) -> None:
    ticket_id = fake.add_ticket("Firewall down", "No internet")
    ticket = adapter.get_ticket(str(ticket_id))
    boards = adapter.field_values(ticket, "routing")
    network = next(o for o in boards.options if o.name == "Network Operations")
    priorities = adapter.field_values(ticket, "priority")
    assert priorities.options[0].name == "Priority 1 - Emergency Response"
    moved = dataclasses.replace(ticket, scope=network.id)
    leaf = adapter.get_taxonomy(moved).leaves[0]
    adapter.set_category(ticket, leaf.with_facets((priorities.options[0], network)))
    (patch,) = fake.patches(ticket_id)
    assert [op["path"] for op in patch] == ["board", "priority", "type", "subType", "item"]
    stored = fake.tickets[ticket_id]
    assert stored["board"]["id"] == 2 and stored["priority"]["id"] == 1
    assert stored["type"]["id"] == int(leaf.path[0].id)


def test_a_category_of_another_board_without_the_move_is_rejected(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter
) -> None:
    ticket = adapter.get_ticket(str(fake.add_ticket("Firewall down", "No internet")))
    other = adapter.get_taxonomy(dataclasses.replace(ticket, scope="2")).leaves[0]
    with pytest.raises(CategoryRejected, match="not an active value of board Help Desk"):
        adapter.set_category(ticket, other)
