"""ConnectWise adapter against the fake ConnectWise on 127.0.0.1, through a real httpx client."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

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
from psatriage.psa.client import RateLimited
from psatriage.psa.connectwise import ConnectWiseAdapter, ConnectWiseConfig, key_url_allowed
from tests.fakes.base import FakeServer
from tests.fakes.connectwise import FakeConnectWise
from tests.psa.conftest import in_parallel, serving

FIXTURES = Path(__file__).parent.parent / "fixtures" / "connectwise"
MakeAdapter = Callable[..., ConnectWiseAdapter]


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConnectWise]:
    yield from serving(FakeConnectWise(), monkeypatch)


@pytest.fixture
def make_adapter(fake: FakeConnectWise, http: httpx.Client) -> MakeAdapter:
    def build(client: httpx.Client | None = None, **overrides: Any) -> ConnectWiseAdapter:
        config = ConnectWiseConfig.model_validate(fake.connection_config(**overrides))
        return ConnectWiseAdapter("acme", config, client or http)

    return build


# -- parse ------------------------------------------------------------------------------------


def ticket_added(entity: dict[str, Any] | None = None, **keys: Any) -> bytes:
    """The ticket-added sample with top-level keys replaced (None removes) and Entity patched."""
    payload = fixture("callback-ticket-added.json")
    if entity is not None:
        payload["Entity"] = json.dumps({**json.loads(payload["Entity"]), **entity})
    for key, value in keys.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    return json.dumps(payload).encode()


SAMPLE = ticket_added()
SAMPLE_HASH = "sha256:" + hashlib.sha256(SAMPLE).hexdigest()
ENTITY_NULL = json.dumps({**fixture("callback-ticket-added.json"), "Entity": None}).encode()
UPPER = json.dumps(
    {"MESSAGEID": "m-1", "TYPE": "Ticket", "ACTION": "Added", "ID": "69", "MEMBERID": "jdoe"}
).encode()

PARSE_CASES: list[tuple[str, bytes, dict[str, Any], dict[str, Any] | None]] = [
    ("ticket added", SAMPLE, {}, {"ticket_id": "69", "action": "added", "actionable": True}),
    ("contact added", json.dumps(fixture("callback-contact-added.json")).encode(), {}, None),
    ("updated", ticket_added(Action="updated"), {}, {"actionable": False, "action": "updated"}),
    ("deleted, no entity", ticket_added(Action="deleted", Entity=None), {}, {"actionable": False}),
    ("project ticket", ticket_added({"recordType": "ProjectTicket"}), {}, {"actionable": False}),
    ("project issue", ticket_added({"recordType": "ProjectIssue"}), {}, {"actionable": False}),
    ("no recordType", ticket_added({"recordType": None}), {}, {"actionable": True}),
    ("Entity missing", ticket_added(Entity=None), {}, {"ticket_id": "69", "actionable": True}),
    ("Entity empty", ticket_added(Entity=""), {}, {"actionable": True, "occurred_at": None}),
    ("Entity null", ENTITY_NULL, {}, {"ticket_id": "69", "actionable": True}),
    ("Entity not JSON", ticket_added(Entity="{oops"), {}, {"ticket_id": "69"}),
    ("id from Entity", ticket_added(ID=None), {}, {"ticket_id": "69"}),
    ("upper-case keys", UPPER, {}, {"dedupe_key": "m-1", "actor": "jdoe", "actionable": True}),
    ("MessageID", ticket_added(MessageID="m-2"), {}, {"dedupe_key": "m-2"}),
    ("board by id", SAMPLE, {"boards": ["1"]}, {"actionable": True}),
    ("board by name", SAMPLE, {"boards": ["service a"]}, {"actionable": True}),
    ("other board", SAMPLE, {"boards": ["2", "Help Desk"]}, {"actionable": False}),
    ("board unknown", ticket_added(Entity=None), {"boards": ["1"]}, {"actionable": False}),
    ("no Type", ticket_added(Type=None), {}, None),
]


@pytest.mark.parametrize(
    ("body", "overrides", "expected"),
    [case[1:] for case in PARSE_CASES],
    ids=[case[0] for case in PARSE_CASES],
)
def test_parse(
    make_adapter: MakeAdapter,
    body: bytes,
    overrides: dict[str, Any],
    expected: dict[str, Any] | None,
) -> None:
    event = make_adapter(**overrides).parse(body)
    if expected is None:
        assert event is None
        return
    assert event is not None
    assert event.tenant == "acme"
    for name, value in expected.items():
        assert getattr(event, name) == value, name


def test_parse_sample_details(adapter: ConnectWiseAdapter) -> None:
    event = adapter.parse(SAMPLE)
    assert event is not None
    assert event.dedupe_key == SAMPLE_HASH
    assert event.occurred_at == datetime(2005, 5, 27, 17, 30, 19, tzinfo=UTC)
    assert event.actor is None


def test_parse_callback_from_fake(fake: FakeConnectWise, adapter: ConnectWiseAdapter) -> None:
    ticket_id = fake.add_ticket("Printer jams", "It jams.")
    body, _ = fake.callback(ticket_id, message_id="3f1c")
    event = adapter.parse(body)
    assert event is not None
    assert (event.ticket_id, event.dedupe_key, event.actor) == (str(ticket_id), "3f1c", "User1")
    assert event.actionable


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (ticket_added(ID=None, Entity=None), "no ID"),
        (ticket_added(ID="abc", Entity="{}"), "no ID"),
    ],
    ids=["not json", "array", "no id", "bad id"],
)
def test_parse_rejects_malformed(adapter: ConnectWiseAdapter, body: bytes, message: str) -> None:
    with pytest.raises(WebhookRejected, match=message) as info:
        adapter.parse(body)
    assert info.value.status == 400


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
    ("change", "status"),
    [
        (lambda body, headers: (body + b" ", headers), 401),  # tampered body
        (lambda body, headers: (body.replace(b"Laptop", b"Desktop"), headers), 401),
        (lambda body, headers: (body, {"content-type": "application/json"}), 401),  # no header
        (lambda body, headers: (b"not json", headers), 400),
        (lambda body, headers: (json.dumps({"Type": "ticket"}).encode(), headers), 400),
    ],
    ids=["trailing byte", "edited text", "missing header", "not json", "no key_url"],
)
def test_verify_rejects(
    fake: FakeConnectWise,
    adapter: ConnectWiseAdapter,
    change: Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]],
    status: int,
) -> None:
    body, headers = change(*fake.callback(fake.add_ticket("Laptop", "Will not boot.")))
    with pytest.raises(WebhookRejected) as info:
        adapter.verify(headers, body)
    assert info.value.status == status


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


def test_get_ticket(fake: FakeConnectWise, adapter: ConnectWiseAdapter) -> None:
    ticket_id = fake.add_ticket(
        "Printer jams", "The 3rd floor printer jams.", type_id=10, subtype_id=20
    )
    fake.add_ticket_note(ticket_id, "Categorized. [psatriage:7]", internal=True)
    fake.add_ticket_note(ticket_id, "It is the HP on the left.", internal=True)
    fake.add_ticket_note(ticket_id, "Any news?", detail=True)
    fake.max_page_size = 2
    assert adapter.get_ticket(str(ticket_id)) == Ticket(
        id=str(ticket_id),
        title="Printer jams",
        description="The 3rd floor printer jams.",
        scope="1",
        scope_name="Help Desk",
        initial_note="It is the HP on the left.",
        company_id="250",
        company_name="Contoso Ltd",
        current=(LevelValue("type", "10", "Hardware"), LevelValue("subType", "20", "Printer")),
    )
    assert len(fake.requests_to(rf"/service/tickets/{ticket_id}/notes$")) == 2


def test_get_ticket_takes_the_earliest_description(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter
) -> None:
    ticket_id = fake.add_ticket("VPN", "Later text")
    fake.ticket_notes[ticket_id].append(
        {"id": 1, "text": "First text", "detailDescriptionFlag": True, "dateCreated": "2026-01-01"}
    )
    assert adapter.get_ticket(str(ticket_id)).description == "First text"


def test_get_ticket_not_found(fake: FakeConnectWise, adapter: ConnectWiseAdapter) -> None:
    with pytest.raises(PermanentError, match="ticket 424242 not found"):
        adapter.get_ticket("424242")
    assert len(fake.requests_to("/service/tickets/424242$")) == 1  # codebase did not move
    with pytest.raises(PermanentError, match="not a ConnectWise id"):
        adapter.get_ticket("../system/info")


def test_add_note_and_find_note(fake: FakeConnectWise, adapter: ConnectWiseAdapter) -> None:
    ticket_id = fake.add_ticket("VPN", "Cannot connect.")
    ticket = adapter.get_ticket(str(ticket_id))
    assert not adapter.find_note(ticket, "[psatriage:41]")
    adapter.add_note(ticket, "Categorized as Network > VPN. [psatriage:41]")
    assert fake.writes_to("POST", rf"/service/tickets/{ticket_id}/notes$")[0].json() == {
        "text": "Categorized as Network > VPN. [psatriage:41]",
        "detailDescriptionFlag": False,
        "internalAnalysisFlag": True,
        "resolutionFlag": False,
        "processNotifications": False,
        "customerUpdatedFlag": False,
    }
    fake.max_page_size = 1
    assert adapter.find_note(ticket, "[psatriage:41]")
    assert not adapter.find_note(ticket, "[psatriage:42]")
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


def test_register_webhook_is_idempotent(fake: FakeConnectWise, adapter: ConnectWiseAdapter) -> None:
    first = adapter.register_webhook(HOOK)
    assert adapter.register_webhook(HOOK) == first
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
    assert fake.requests_to("/system/callbacks$")[-1].arg("conditions") == f'url="{HOOK}"'


def test_register_webhook_per_board(fake: FakeConnectWise, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(boards=[1, "network operations"])
    ids = adapter.register_webhook(HOOK)
    assert ids == ",".join(str(c["id"]) for c in fake.callbacks)
    assert [(c["level"], c["objectId"]) for c in fake.callbacks] == [("board", 1), ("board", 2)]
    assert adapter.register_webhook(HOOK) == ids
    assert len(fake.callbacks) == 2
    with pytest.raises(ConfigError, match="'Nope'"):
        make_adapter(boards=["Nope"]).register_webhook(HOOK)


def test_check_connection_and_version_pin(fake: FakeConnectWise, make_adapter: MakeAdapter) -> None:
    assert make_adapter(api_version="2025.1").check_connection() == "ConnectWise v2025.1 (cloud)"
    accept = fake.requests_to("/system/info$")[0].headers["accept"]
    assert accept == "application/vnd.connectwise.com+json; version=2025.1"


# -- errors -----------------------------------------------------------------------------------

INVALID = fixture("error-invalidobject.json")
ERROR_CASES: list[tuple[int, dict[str, str], Any, type[Exception], str]] = [
    (401, {}, {"code": "Unauthorized"}, AuthFailed, "401"),
    (403, {}, {"message": "no access"}, AuthFailed, "no access"),
    (429, {"Retry-After": "7"}, None, TransientError, "429"),
    (500, {}, {"message": "timeout"}, TransientError, "timeout"),
    (502, {}, None, TransientError, "502"),
    (503, {"Retry-After": "2"}, None, TransientError, "503"),
    (504, {}, None, TransientError, "504"),
    (400, {}, INVALID, PermanentError, "yearEstablished must be between 1900 and 9999"),
    (409, {}, {"code": "Conflict", "message": "busy"}, PermanentError, "Conflict: busy"),
]


@pytest.mark.parametrize(
    ("status", "headers", "body", "error", "message"),
    ERROR_CASES,
    ids=[str(c[0]) for c in ERROR_CASES],
)
def test_error_mapping(
    fake: FakeConnectWise,
    adapter: ConnectWiseAdapter,
    status: int,
    headers: dict[str, str],
    body: Any,
    error: type[Exception],
    message: str,
) -> None:
    ticket_id = fake.add_ticket("VPN", "Down.")
    fake.fail("GET", rf"/service/tickets/{ticket_id}$", status, body=body, headers=headers)
    with pytest.raises(error, match=message) as info:
        adapter.get_ticket(str(ticket_id))
    assert type(info.value) is (RateLimited if status == 429 else error)
    if "Retry-After" in headers:
        assert isinstance(info.value, TransientError)
        assert info.value.retry_after == float(headers["Retry-After"])


def test_timeout_is_transient(fake: FakeConnectWise, make_adapter: MakeAdapter) -> None:
    with make_client(timeout=0.2, connect_timeout=0.2) as client:
        adapter = make_adapter(client=client)
        fake.fail("GET", "/system/info$", 200, delay=0.6)
        with pytest.raises(TransientError, match="did not answer"):
            adapter.check_connection()


def test_unreachable_is_transient(fake: FakeConnectWise, adapter: ConnectWiseAdapter) -> None:
    fake.stop()
    with pytest.raises(TransientError):
        adapter.check_connection()


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


def test_secrets_never_show(
    fake: FakeConnectWise, make_adapter: MakeAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FakeConnectWise.PRIVATE_KEY_ENV, "wrong-private-S3CRET")
    adapter = make_adapter()
    with pytest.raises(AuthFailed) as info:
        adapter.check_connection()
    shown = [repr(adapter), repr(adapter.config), str(adapter.config), str(info.value)]
    for secret in ("wrong-private-S3CRET", fake.public_key):
        assert not any(secret in text for text in shown)
    authorization = fake.requests_to("/system/info$")[0].headers["authorization"]
    assert authorization.split()[1] not in str(info.value)


CONFIG_ERRORS: list[dict[str, Any]] = [
    {"base_url": "http://127.0.0.1:1/v2025_1"},
    {"site": "https://api-na.myconnectwise.net"},
    {"page_size": 0},
    {"page_size": 1001},
    {"public_key": "plain-text-key"},
    {"trusted_key_origins": ["https://cw.example.com/keys"]},
    {"codebase": "../etc"},
    {"codebase": ".."},
    {"unknown": 1},
]


@pytest.mark.parametrize("overrides", CONFIG_ERRORS, ids=[str(c) for c in CONFIG_ERRORS])
def test_config_rejects(fake: FakeConnectWise, overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ConnectWiseConfig.model_validate(fake.connection_config(**overrides))


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


def test_list_labeled_tickets_maps_errors(
    fake: FakeConnectWise, adapter: ConnectWiseAdapter
) -> None:
    fake.fail("GET", r"/service/tickets$", 503, headers={"Retry-After": "7"})
    with pytest.raises(TransientError) as caught:
        adapter.list_labeled_tickets(datetime(2026, 1, 1), limit=5)
    assert caught.value.retry_after == 7


# -- limits -----------------------------------------------------------------------------------


def test_a_full_window_reschedules_instead_of_sending(
    fake: FakeConnectWise, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(requests_per_window=3)
    adapter.check_connection()  # codebase discovery and system/info: both counted
    adapter.check_connection()
    assert len(fake.requests) == 3
    with pytest.raises(TransientError, match="client-side limit of 3 calls per 60 s") as caught:
        adapter.check_connection()
    assert caught.value.retry_after is not None and 50 < caught.value.retry_after <= 60
    assert len(fake.requests) == 3  # refused before it was sent
    assert fake.requests_to("/login/companyinfo/")


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


def test_calls_in_flight_are_capped_per_endpoint(fake: FakeConnectWise) -> None:
    tickets = [fake.add_ticket(f"T{n}", "x") for n in range(8)]
    with make_client(timeout=10, max_connections=32) as client:
        config = ConnectWiseConfig.model_validate(fake.connection_config(concurrent_per_endpoint=2))
        adapter = ConnectWiseAdapter("acme", config, client)
        adapter.get_ticket(str(tickets[0]))  # the codebase, discovered once
        fake.delay = 0.05
        errors = in_parallel(lambda t: adapter.get_ticket(str(t)), tickets)
    assert errors == []
    tickets_path = f"GET /{fake.codebase}apis/3.0/service/tickets/{{id}}"
    assert fake.max_active_by_endpoint[tickets_path] == 2
    assert fake.max_active_by_endpoint[f"{tickets_path}/notes"] == 2
    assert fake.max_active > 2  # the two endpoints were busy at the same time


def test_limits_config(fake: FakeConnectWise) -> None:
    table = fake.connection_config()
    del table["requests_per_window"]  # the fake's table opens the window wide
    config = ConnectWiseConfig.model_validate(table)
    assert (config.requests_per_window, config.window_seconds) == (300, 60.0)
    assert config.concurrent_per_endpoint == 4
    for bad in ({"requests_per_window": 0}, {"window_seconds": 0}, {"concurrent_per_endpoint": 0}):
        with pytest.raises(ValidationError):
            ConnectWiseConfig.model_validate(fake.connection_config(**bad))
