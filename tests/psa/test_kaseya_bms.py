"""Kaseya BMS's quirks, against the fake BMS on 127.0.0.1 through a real httpx client: the login and
its refresh token, the envelope inside HTTP 200, per-endpoint limits, both casings, JSON Patch
writes, note types, polling with its time zone, undocumented webhooks, and the service with
polling, webhooks or both. What every PSA does is checked by the contract suite
(``tests/psa/contract/``) from the case tables in ``tests/fakes/kaseya_bms/kit.py``."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import pytest
import structlog
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import update

from psatriage import jobs
from psatriage.config import load_config
from psatriage.domain import Category, LevelValue, NewTicket, Ticket
from psatriage.errors import (
    AuthFailed,
    CategoryRejected,
    ConfigError,
    PermanentError,
    TransientError,
    WebhookRejected,
)
from psatriage.psa.kaseya_bms import KaseyaBMSAdapter, KaseyaBMSConfig
from psatriage.runtime import Runtime
from psatriage.settings import Settings
from psatriage.shared.tokens import share_tokens, tokens_for
from psatriage.store.tables import EventState, PollMarkRow, utcnow
from psatriage.web import create_app
from tests.fakes.kaseya_bms import FakeKaseyaBMS, envelope_error, sign
from tests.fakes.openai import DEFAULT_API_KEY, FakeOpenAI
from tests.harness import to_toml
from tests.psa.conftest import OPENAI_KEY_ENV, serving, write_tenants

os.environ["COLUMNS"] = "200"  # Rich sizes its console when psatriage.cli is first imported

ADAPTER = KaseyaBMSAdapter  # what make_adapter builds (tests/psa/conftest.py)
MakeAdapter = Callable[..., KaseyaBMSAdapter]
SCHEMES = ("hmac-sha256-hex", "hmac-sha256-base64", "hmac-sha1-hex", "hmac-sha1-base64")
T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
N0 = T0.replace(tzinfo=None)  # NewTicket.created_at is naive UTC


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKaseyaBMS]:
    yield from serving(FakeKaseyaBMS(), monkeypatch)


def form_of(request: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.body.decode()).items()}


# -- configuration ----------------------------------------------------------------------------


def test_config_normalizes_and_picks_the_region(fake: FakeKaseyaBMS) -> None:
    config = KaseyaBMSConfig.model_validate(
        fake.connection_config(
            base_url=None, region="emea", facets=["queue", "PriorityId", "type_id"], note_type=7
        )
    )
    assert config.origin == "https://api.bmsemea.kaseya.com"
    assert config.facets == ("QueueId", "PriorityId", "TypeId")
    assert config.note_type == "7"
    assert config.webhook_config_problem() is None
    assert fake.password not in repr(config) + str(config)
    bare = KaseyaBMSConfig.model_validate(fake.connection_config(webhook_secret=None))
    assert "webhook_secret" in str(bare.webhook_config_problem())


# -- tokens -----------------------------------------------------------------------------------


def test_logs_in_once_with_a_form_and_reuses_the_token(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter
) -> None:
    ticket_id = fake.add_ticket("VPN", "Down")
    adapter.get_ticket(str(ticket_id))
    adapter.get_ticket(str(ticket_id))
    (login,) = fake.requests_to("/v2/security/authenticate$")
    assert login.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form_of(login) == {
        "GrantType": "password",
        "UserName": fake.username,
        "Password": fake.password,
        "Tenant": fake.company,
    }
    assert fake.logins == 1 and fake.refreshes == 0
    reads = fake.requests_to(rf"/servicedesk/tickets/{ticket_id}$")
    assert all(r.headers["authorization"].startswith("Bearer ") for r in reads)


def test_expired_token_is_refreshed_once_and_the_call_repeated(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter
) -> None:
    ticket_id = fake.add_ticket("VPN", "Down")
    adapter.get_ticket(str(ticket_id))
    fake.expire_tokens()
    assert adapter.get_ticket(str(ticket_id)).title == "VPN"
    assert (fake.logins, fake.refreshes) == (1, 1)
    (refresh,) = fake.requests_to("/v2/security/refreshtoken$")
    assert set(form_of(refresh)) == {"AccessToken", "RefreshToken"}


def test_token_is_refreshed_before_it_expires(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter
) -> None:
    fake.token_lifetime = 0.4
    ticket_id = fake.add_ticket("VPN", "Down")
    adapter.get_ticket(str(ticket_id))
    time.sleep(0.25)  # past half the lifetime: refreshed before the next call, not after a 401
    adapter.get_ticket(str(ticket_id))
    assert fake.refreshes == 1
    assert len(fake.requests_to(rf"/tickets/{ticket_id}$")) == 2  # none refused and repeated


def test_refused_refresh_falls_back_to_a_login(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter
) -> None:
    ticket_id = fake.add_ticket("VPN", "Down")
    adapter.get_ticket(str(ticket_id))
    fake.expire_tokens()
    fake.refresh_tokens.clear()
    assert adapter.get_ticket(str(ticket_id)).title == "VPN"
    assert fake.logins == 2


def test_one_login_for_concurrent_calls(fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter) -> None:
    ticket_id = fake.add_ticket("VPN", "Down")
    fake.delay = 0.05
    errors: list[BaseException] = []

    def read() -> None:
        try:
            adapter.get_ticket(str(ticket_id))
        except PermanentError as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and fake.logins == 1


def test_worker_processes_share_one_login_and_its_refresh(
    fake: FakeKaseyaBMS, make_adapter: MakeAdapter, shared_url: str
) -> None:
    key = SecretStr(Fernet.generate_key().decode())
    stores = [tokens_for(shared_url, key) for _ in range(2)]
    adapters = []
    for store in stores:  # each adapter as a worker process builds it, over its own store
        share_tokens(store)
        try:
            adapters.append(make_adapter())
        finally:
            share_tokens(None)
    try:
        ticket_id = str(fake.add_ticket("VPN", "Down"))
        for adapter in (*adapters, *adapters):
            adapter.get_ticket(ticket_id)
        assert (fake.logins, fake.refreshes) == (1, 0)  # one login for both processes
        fake.expire_tokens()
        for adapter in (*adapters, *adapters):
            adapter.get_ticket(ticket_id)
        assert (fake.logins, fake.refreshes) == (1, 1)  # one refresh, of the shared refresh token
    finally:
        for store in stores:
            assert store is not None
            store.close()


def test_a_refused_login_inside_http_200_is_auth_failed(
    fake: FakeKaseyaBMS, make_adapter: MakeAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.errors_as_200 = True
    monkeypatch.setenv(FakeKaseyaBMS.PASSWORD_ENV, "wrong-S3CRET")
    adapter = make_adapter()
    with pytest.raises(AuthFailed, match="Invalid username, password or tenant") as info:
        adapter.check_connection()
    for text in (str(info.value), repr(adapter), repr(adapter.config), repr(adapter.client)):
        assert "wrong-S3CRET" not in text and "StackStrace" not in text


def test_token_refused_twice_is_auth_failed(fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter) -> None:
    ticket_id = fake.add_ticket("VPN", "Down")
    fake.fail("GET", rf"/servicedesk/tickets/{ticket_id}$", 401, times=2)
    with pytest.raises(AuthFailed):
        adapter.get_ticket(str(ticket_id))
    assert fake.refreshes == 1  # once, not in a loop


# -- the envelope -----------------------------------------------------------------------------


def test_success_false_on_http_200_is_never_data(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter
) -> None:
    fake.errors_as_200 = True
    with pytest.raises(PermanentError, match="ticket 424242 not found"):
        adapter.get_ticket("424242")
    with pytest.raises(PermanentError, match="not a Kaseya BMS id"):
        adapter.get_ticket("../security/authenticate")


# -- limits -----------------------------------------------------------------------------------


def test_client_side_limit_counts_per_endpoint(
    fake: FakeKaseyaBMS, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(calls_per_hour=2, rate_window_seconds=600)
    first, second = fake.add_ticket("A"), fake.add_ticket("B")
    adapter.get_ticket(str(first))
    adapter.get_ticket(str(second))  # another id, the same endpoint
    with pytest.raises(TransientError, match="client-side limit") as info:
        adapter.get_ticket(str(first))
    assert info.value.retry_after is not None and info.value.retry_after > 500
    assert adapter.check_connection()  # other endpoints still have room
    assert adapter.limits.used("GET v2/servicedesk/tickets/{id}") == 2
    assert len(fake.requests_to(r"/servicedesk/tickets/\d+$")) == 2


def test_fake_rate_limit_answers_429_as_transient(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter
) -> None:
    fake.rate_limit, fake.rate_window = 2, 30.0
    ticket_id = fake.add_ticket("A")
    adapter.get_ticket(str(ticket_id))
    adapter.get_ticket(str(ticket_id))
    with pytest.raises(TransientError, match="429") as info:
        adapter.get_ticket(str(ticket_id))
    assert info.value.retry_after is not None and 1 <= info.value.retry_after <= 31
    assert adapter.check_connection()  # per endpoint


# -- tickets ----------------------------------------------------------------------------------


def test_get_ticket_in_pascal_case_and_with_facets(
    fake: FakeKaseyaBMS, make_adapter: MakeAdapter
) -> None:
    fake.pascal_case = True  # the spec's casing (the live API answers in camelCase)
    ticket_id = fake.add_ticket(
        "Printer jams", "The 3rd floor printer jams.", issue_type_id=101, sub_issue_type_id=201
    )
    ticket = make_adapter().get_ticket(str(ticket_id))
    assert (ticket.title, ticket.company_name) == ("Printer jams", "Contoso Ltd")
    assert [(v.level, v.id, v.name) for v in ticket.current] == [
        ("IssueTypeId", "101", "Hardware"),
        ("SubIssueTypeId", "201", "Printer"),
    ]
    with_facets = make_adapter(facets=["PriorityId", "QueueId", "TypeId"])
    assert with_facets.get_ticket(str(ticket_id)).current[2:] == (
        LevelValue("PriorityId", "302", "Medium"),
        LevelValue("TypeId", "401", "Incident"),
    )  # no queue set: not reported


def test_html_details_are_read_as_text(fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter) -> None:
    details = "<p>My <b>printer</b> jams&nbsp;&amp; beeps.</p><p>Floor 3<br/>Room 12</p>"
    ticket = adapter.get_ticket(str(fake.add_ticket("Printer", details)))
    assert ticket.description == "My printer jams\xa0& beeps.\nFloor 3\nRoom 12"
    plain = adapter.get_ticket(str(fake.add_ticket("VPN", "a < b and c > d")))
    assert plain.description == "a < b and c > d"


def test_uncategorized_ticket_has_no_current(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter
) -> None:
    assert adapter.get_ticket(str(fake.add_ticket("New", "x"))).current == ()


# -- taxonomy ---------------------------------------------------------------------------------

PROBE = Ticket(id="", title="", description="", scope="tickets", scope_name="Service Desk")


@pytest.mark.parametrize("pascal", [False, True], ids=["camelCase", "PascalCase"])
def test_taxonomy(fake: FakeKaseyaBMS, make_adapter: MakeAdapter, pascal: bool) -> None:
    fake.pascal_case = pascal
    taxonomy = make_adapter().get_taxonomy(PROBE)
    assert [leaf.key for leaf in taxonomy.leaves] == [
        "101/201", "101/202", "102/203", "102/204", "103/205", "105",
    ]  # fmt: skip
    assert taxonomy.get("101/201") == Category(
        "101/201",
        (
            LevelValue("IssueTypeId", "101", "Hardware"),
            LevelValue("SubIssueTypeId", "201", "Printer"),
        ),
    )
    assert (taxonomy.scope, taxonomy.levels, taxonomy.facets) == (
        "tickets",
        ("IssueTypeId", "SubIssueTypeId"),
        (),
    )
    assert fake.requests_to("/issuetypes/104/") == []  # inactive: its sub-types are not read


def test_taxonomy_facets(fake: FakeKaseyaBMS, make_adapter: MakeAdapter) -> None:
    taxonomy = make_adapter(facets=["TypeId", "queue", "priority"]).get_taxonomy(PROBE)
    assert [(f.name, f.label, [o.id for o in f.options]) for f in taxonomy.facets] == [
        ("TypeId", "Ticket type", ["401", "402"]),
        ("QueueId", "Queue", ["501", "502"]),
        ("PriorityId", "Priority", ["301", "302", "303", "304"]),
    ]
    assert taxonomy.facets[1].get("501") == LevelValue("QueueId", "501", "Help Desk")
    assert fake.requests_to("/system/lookup/TicketType$")


def test_one_scope(adapter: KaseyaBMSAdapter) -> None:
    assert adapter.list_scopes() == [("tickets", "Service Desk")]


# -- set_category -----------------------------------------------------------------------------


def category(*pairs: tuple[str, str]) -> Category:
    path = tuple(LevelValue(level, value, value) for level, value in pairs)
    return Category("/".join(v for _, v in pairs), path)


def test_set_category_patches_and_confirms_from_the_answer(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter
) -> None:
    ticket_id = fake.add_ticket("Printer jams", "Jams.")
    ticket = adapter.get_ticket(str(ticket_id))
    adapter.set_category(ticket, category(("IssueTypeId", "101"), ("SubIssueTypeId", "201")))
    assert fake.patches(ticket_id) == [
        [
            {"op": "replace", "path": "/IssueTypeId", "value": 101},
            {"op": "replace", "path": "/SubIssueTypeId", "value": 201},
        ]
    ]
    assert fake.tickets[ticket_id]["SubIssueTypeName"] == "Printer"
    assert len(fake.requests_to(rf"/servicedesk/tickets/{ticket_id}$", "GET")) == 1  # no re-read


def test_set_category_writes_facets_and_clears_the_sub_issue_type(
    fake: FakeKaseyaBMS, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(facets=["QueueId", "PriorityId"])
    ticket_id = fake.add_ticket("Odd", "x", issue_type_id=101, sub_issue_type_id=202)
    ticket = adapter.get_ticket(str(ticket_id))
    leaf = category(("IssueTypeId", "105"))
    facets = (LevelValue("QueueId", "502", "Projects"), LevelValue("PriorityId", "303", "High"))
    adapter.set_category(ticket, leaf.with_facets(facets))
    assert fake.patches(ticket_id) == [
        [
            {"op": "replace", "path": "/IssueTypeId", "value": 105},
            {"op": "replace", "path": "/QueueId", "value": 502},
            {"op": "replace", "path": "/PriorityId", "value": 303},
            {"op": "replace", "path": "/SubIssueTypeId", "value": None},
        ]
    ]
    reread = adapter.get_ticket(str(ticket_id))
    assert [(v.level, v.id) for v in reread.current] == [
        ("IssueTypeId", "105"),
        ("QueueId", "502"),
        ("PriorityId", "303"),
    ]


@pytest.mark.parametrize("as_200", [False, True], ids=["http 400", "success false"])
@pytest.mark.parametrize(
    "pairs",
    [
        (("IssueTypeId", "101"), ("SubIssueTypeId", "203")),  # another issue type's sub-type
        (("IssueTypeId", "104"),),  # inactive
        (("IssueTypeId", "101"), ("QueueId", "503")),  # inactive queue
    ],
    ids=["wrong parent", "inactive", "inactive queue"],
)
def test_set_category_rejected(
    fake: FakeKaseyaBMS,
    adapter: KaseyaBMSAdapter,
    pairs: tuple[tuple[str, str], ...],
    as_200: bool,
) -> None:
    fake.errors_as_200 = as_200
    ticket_id = fake.add_ticket("Odd", "x")
    before = dict(fake.tickets[ticket_id])
    with pytest.raises(CategoryRejected, match="Validation failed; "):
        adapter.set_category(adapter.get_ticket(str(ticket_id)), category(*pairs))
    assert fake.tickets[ticket_id] == before


@pytest.mark.parametrize(
    "pairs",
    [(("SubIssueTypeId", "201"),), (("IssueTypeId", "x1"),), (("SourceId", "2"),)],
    ids=["no issue type", "not a number", "not a category field"],
)
def test_set_category_refuses_what_it_cannot_write(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter, pairs: tuple[tuple[str, str], ...]
) -> None:
    ticket = adapter.get_ticket(str(fake.add_ticket("Odd", "x")))
    with pytest.raises(CategoryRejected):
        adapter.set_category(ticket, category(*pairs))
    assert fake.writes_to("PATCH", ".") == []


def test_set_category_not_kept_is_rejected(fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter) -> None:
    fake.ignored_patch_fields = {"SubIssueTypeId"}
    ticket_id = fake.add_ticket("Odd", "x")
    with pytest.raises(CategoryRejected, match="did not keep SubIssueTypeId=201"):
        adapter.set_category(
            adapter.get_ticket(str(ticket_id)),
            category(("IssueTypeId", "101"), ("SubIssueTypeId", "201")),
        )


def test_set_category_rereads_when_the_answer_has_no_ticket(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter
) -> None:
    ticket_id = fake.add_ticket("Odd", "x")
    ticket = adapter.get_ticket(str(ticket_id))
    fake.fail("PATCH", rf"/tickets/{ticket_id}$", 200, body={"success": True, "result": None})
    with pytest.raises(CategoryRejected, match="did not keep IssueTypeId=105"):
        adapter.set_category(ticket, category(("IssueTypeId", "105")))  # the fake saved nothing
    assert len(fake.requests_to(rf"/servicedesk/tickets/{ticket_id}$", "GET")) == 2


# -- notes ------------------------------------------------------------------------------------


def test_add_note_is_internal_with_the_default_note_type(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter
) -> None:
    ticket_id = fake.add_ticket("VPN", "Down")
    ticket = adapter.get_ticket(str(ticket_id))
    adapter.add_note(ticket, "Categorized as Network › VPN. [psatriage:41]")
    adapter.add_note(ticket, "second")
    (body, _) = [w.json() for w in fake.writes_to("POST", rf"/tickets/{ticket_id}/notes$")]
    note_date = datetime.fromisoformat(body.pop("NoteDate").replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - note_date) < timedelta(seconds=5)
    assert body == {
        "Details": "Categorized as Network › VPN. [psatriage:41]",
        "IsInternal": True,
        "TypeId": 902,  # the active default of the NoteType lookup
    }
    assert len(fake.requests_to("/system/lookup/NoteType$")) == 1  # resolved once


@pytest.mark.parametrize(("note_type", "expected"), [("general", 901), (901, 901), ("42", 42)])
def test_note_type_by_name_or_id(
    fake: FakeKaseyaBMS, make_adapter: MakeAdapter, note_type: Any, expected: int
) -> None:
    fake.lookups["NoteType"].append({"Id": 42, "Name": "Unlisted", "IsActive": True})
    adapter = make_adapter(note_type=note_type)
    ticket = adapter.get_ticket(str(fake.add_ticket("VPN", "Down")))
    adapter.add_note(ticket, "x")
    assert fake.writes_to("POST", "/notes$")[-1].json()["TypeId"] == expected
    if str(note_type).isdigit():
        assert fake.requests_to("/system/lookup/") == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"note_type": "Old"}, "no active note type named 'Old' .*General, Internal Analysis"),
        ({"note_type_table": "TicketNoteType"}, "set connection.note_type to the note type id"),
    ],
)
def test_note_type_problems_say_the_fix(
    fake: FakeKaseyaBMS, make_adapter: MakeAdapter, overrides: dict[str, str], message: str
) -> None:
    adapter = make_adapter(**overrides)
    ticket = adapter.get_ticket(str(fake.add_ticket("VPN", "Down")))
    with pytest.raises(PermanentError, match=message):
        adapter.add_note(ticket, "x")


# -- list_new_tickets -------------------------------------------------------------------------


def created(fake: FakeKaseyaBMS, *offsets: float) -> list[int]:
    return [fake.add_ticket(f"t{o}", created_on=T0 + timedelta(seconds=o)) for o in offsets]


def test_new_tickets_window_is_inclusive_and_oldest_first(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter
) -> None:
    before, at, after, later = created(fake, -1, 0, 1, 3600)
    tie = fake.add_ticket("same second", created_on=T0 + timedelta(seconds=1))
    found = adapter.list_new_tickets(T0)
    assert found == [
        NewTicket(str(at), N0),
        NewTicket(str(after), N0 + timedelta(seconds=1)),
        NewTicket(str(tie), N0 + timedelta(seconds=1)),
        NewTicket(str(later), N0 + timedelta(hours=1)),
    ]
    assert str(before) not in [t.ticket_id for t in found]
    (request,) = fake.requests_to("/v2/servicedesk/tickets$")
    assert request.arg("Filter.CreatedOnFrom") == "2026-03-02T09:00:00Z"
    assert (request.arg("PageSize"), request.arg("PageNumber")) == ("100", "1")


def test_new_tickets_since_is_sent_in_utc_rounded_down(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter
) -> None:
    (ticket_id,) = created(fake, 0.5)
    naive_utc = T0.replace(tzinfo=None, microsecond=250000)  # naive: read as UTC
    assert [t.ticket_id for t in adapter.list_new_tickets(naive_utc)] == [str(ticket_id)]
    amsterdam = T0.astimezone(ZoneInfo("Europe/Amsterdam")).replace(microsecond=999999)
    adapter.list_new_tickets(amsterdam)
    sent = [r.arg("Filter.CreatedOnFrom") for r in fake.requests_to("/servicedesk/tickets$")]
    assert sent == ["2026-03-02T09:00:00Z", "2026-03-02T09:00:00Z"]


@pytest.mark.parametrize("totals", [True, False], ids=["TotalRecords", "until empty"])
def test_new_tickets_pages(fake: FakeKaseyaBMS, make_adapter: MakeAdapter, totals: bool) -> None:
    fake.include_total_records = totals
    ids = created(fake, *range(5))
    found = make_adapter(page_size=2).list_new_tickets(T0)
    assert [t.ticket_id for t in found] == [str(i) for i in ids]
    pages = [r.arg("PageNumber") for r in fake.requests_to("/servicedesk/tickets$")]
    assert pages == (["1", "2", "3"] if totals else ["1", "2", "3", "4"])


def test_new_tickets_when_bms_caps_the_page_size(
    fake: FakeKaseyaBMS, make_adapter: MakeAdapter
) -> None:
    fake.include_total_records = False
    fake.max_page_size = 2
    ids = created(fake, *range(5))
    found = make_adapter(page_size=50).list_new_tickets(T0)
    assert sorted(t.ticket_id for t in found) == sorted(str(i) for i in ids)


@pytest.mark.parametrize("pascal", [False, True], ids=["camelCase", "PascalCase"])
def test_new_tickets_in_both_casings(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter, pascal: bool
) -> None:
    fake.pascal_case = pascal
    ids = created(fake, 10, 5)
    assert [t.ticket_id for t in adapter.list_new_tickets(T0)] == [str(ids[1]), str(ids[0])]


def canned(records: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"success": True, "error": None, "result": records, **extra}


def test_new_tickets_read_naive_times_in_the_api_timezone(
    fake: FakeKaseyaBMS, make_adapter: MakeAdapter
) -> None:
    body = canned(
        [
            {"id": 7, "createdOn": "2026-03-02T10:00:00.1234567"},  # 09:00Z in Amsterdam
            {"id": 8, "createdOn": "2026-03-02T09:59:59"},  # 08:59:59Z: before the window
            {"id": 9, "createdOn": None},  # unreadable: kept at ``since``
            {"title": "no id"},
        ],
        totalRecords=4,
    )
    fake.fail("GET", "/servicedesk/tickets$", 200, body=body)
    found = make_adapter(api_timezone="Europe/Amsterdam").list_new_tickets(T0)
    assert found == [NewTicket("9", N0), NewTicket("7", N0.replace(microsecond=123456))]


def test_new_tickets_stop_when_bms_ignores_the_page_number(
    fake: FakeKaseyaBMS, make_adapter: MakeAdapter
) -> None:
    body = canned([{"id": 7, "createdOn": "2026-03-02T09:00:00Z"}])
    fake.fail("GET", "/servicedesk/tickets$", 200, body=body, times=5)
    assert [t.ticket_id for t in make_adapter(page_size=1).list_new_tickets(T0)] == ["7"]
    assert len(fake.requests_to("/servicedesk/tickets$")) == 2


def test_new_tickets_errors_are_mapped(fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter) -> None:
    fake.fail("GET", "/servicedesk/tickets$", 200, body=envelope_error(500, "Search down"))
    with pytest.raises(TransientError, match="new tickets: Search down"):
        adapter.list_new_tickets(T0)


# -- webhooks: verify -------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_verify_accepts_every_candidate_scheme_and_records_it(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter, scheme: str
) -> None:
    body, headers = fake.webhook(fake.add_ticket("VPN"), scheme=scheme)
    with structlog.testing.capture_logs() as logs:
        adapter.verify(headers, body)
        adapter.verify(headers, body)
    assert adapter.signature_scheme == scheme
    matched = [e for e in logs if e["event"] == "BMS webhook signature scheme identified"]
    assert len(matched) == 1 and matched[0]["scheme"] == scheme
    assert matched[0]["log_level"] == "info"


@pytest.mark.parametrize(
    "signature",
    [
        lambda secret, body: "sha256=" + sign("hmac-sha256-hex", secret, body),
        lambda secret, body: sign("hmac-sha1-hex", secret, body).upper(),
        lambda secret, body: " " + sign("hmac-sha256-base64", secret, body) + " ",
    ],
    ids=["sha256= prefix", "upper-case hex", "spaces"],
)
def test_verify_tolerates_signature_forms(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter, signature: Callable[[str, bytes], str]
) -> None:
    body, _ = fake.webhook(fake.add_ticket("VPN"))
    adapter.verify({"signature": signature(fake.webhook_secret, body)}, body)


def test_without_a_secret_every_delivery_is_refused_and_reported(
    fake: FakeKaseyaBMS, make_adapter: MakeAdapter
) -> None:
    body, headers = fake.webhook(fake.add_ticket("VPN"))
    no_secret = make_adapter(webhook_secret=None)
    with pytest.raises(WebhookRejected, match=r"no connection\.webhook_secret") as info:
        no_secret.verify(headers, body)
    assert info.value.status == 401
    assert no_secret.problems() == [
        "webhooks arrive but connection.webhook_secret is not set: they are refused"
    ]
    assert make_adapter().problems() == []
    assert fake.requests == []  # verifying calls nothing


# -- webhooks: parse --------------------------------------------------------------------------

# -- webhooks: parse (the cases are in tests/fakes/kaseya_bms/kit.py) ------------------------


def test_redelivery_and_reshaped_delivery_dedupe(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter
) -> None:
    ticket_id = fake.add_ticket("VPN")
    first, _ = fake.webhook(ticket_id)
    again, _ = fake.webhook(ticket_id)  # a redelivery: new timestamp
    other = json.dumps({"Event": "Ticket Created", "TicketId": ticket_id}).encode()
    events = [adapter.parse(body) for body in (first, again, other)]
    assert {e.dedupe_key for e in events if e is not None} == {f"{ticket_id}:ticketcreated"}


# -- webhooks: register -----------------------------------------------------------------------

HOOK = "https://triage.example.com/webhooks/acme"


def test_register_webhook_subscribes_to_ticket_created(
    fake: FakeKaseyaBMS, adapter: KaseyaBMSAdapter
) -> None:
    first = adapter.register_webhook(HOOK)
    assert adapter.register_webhook(HOOK) == first
    created = fake.writes_to("POST", "/admin/webhooks$")[0].json()
    assert created == {
        "Name": "psatriage acme",
        "PayloadURL": HOOK,
        "IsEnabled": True,
        "Secret": fake.webhook_secret,
        "ContentType": 1,
        "SendAllEvents": False,
        "Events": [21],  # Ticket › Created, not Account › Created
    }
    assert [w.json() for w in fake.writes_to("PUT", f"/admin/webhooks/{first}$")] == [created]


def test_register_webhook_finds_the_event_by_full_name(
    fake: FakeKaseyaBMS, make_adapter: MakeAdapter
) -> None:
    fake.webhook_events = [
        {"Id": 3, "Name": "Ticket Updated", "CategoryName": None},
        {"Id": 4, "Name": "ticket created", "CategoryName": None},
    ]
    make_adapter(webhook_event="TicketCreated").register_webhook(HOOK)
    assert fake.webhooks[0]["Events"] == [4]


def test_register_webhook_problems(fake: FakeKaseyaBMS, make_adapter: MakeAdapter) -> None:
    with pytest.raises(PermanentError, match=r"no webhook event named 'Ticket Born' .*Ticket Upd"):
        make_adapter(webhook_event="Ticket Born").register_webhook(HOOK)
    with pytest.raises(PermanentError, match="webhook_secret"):
        make_adapter(webhook_secret=None).register_webhook(HOOK)
    assert fake.webhooks == []


# -- through the whole service ----------------------------------------------------------------


def tenants_file(
    path: Path,
    fake: FakeKaseyaBMS,
    llm: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    **settings: Any,
) -> Path:
    monkeypatch.setenv(OPENAI_KEY_ENV, DEFAULT_API_KEY)
    return write_tenants(path, "bms", "kaseya_bms", fake.connection_config(), llm, **settings)


def test_webhook_through_the_service_one_patch_and_one_internal_note(
    fake: FakeKaseyaBMS, llm: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tenants_file(tmp_path / "psatriage.toml", fake, llm, monkeypatch, trigger="webhook")
    runtime = Runtime(Settings(data_dir=tmp_path / "data"), load_config(path))
    try:
        ticket_id = fake.add_ticket("Printer broken", "My printer has a paper jam")
        body, headers = fake.webhook(ticket_id, scheme="hmac-sha1-base64")
        with TestClient(create_app(runtime)) as client:
            response = client.post("/webhooks/bms", content=body, headers=headers)
            assert response.status_code == 202, response.text
            redelivery = fake.webhook(ticket_id, scheme="hmac-sha1-base64")  # a new timestamp
            again = client.post("/webhooks/bms", content=redelivery[0], headers=redelivery[1])
            assert again.status_code == 200 and again.json()["status"] == "duplicate"
            no_id = b'{"EventName": "Created"}'
            signed = {"signature": sign("hmac-sha1-base64", fake.webhook_secret, no_id)}
            assert client.post("/webhooks/bms", content=no_id, headers=signed).status_code == 400
            tampered = client.post("/webhooks/bms", content=body + b" ", headers=headers)
            assert tampered.status_code == 401
        adapter = runtime.adapter("bms")
        assert isinstance(adapter, KaseyaBMSAdapter)
        assert adapter.signature_scheme == "hmac-sha1-base64"
        assert jobs.process_event(runtime, response.json()["event_id"]) is EventState.DONE
    finally:
        runtime.close()
    (patch,) = fake.patches(ticket_id)
    assert [op["path"] for op in patch] == ["/IssueTypeId", "/SubIssueTypeId"]
    ours = [n for n in fake.notes(ticket_id) if "psatriage:" in n["Details"]]
    assert len(ours) == 1 and ours[0]["IsInternal"] is True and ours[0]["TypeId"] == 902
    assert fake.logins == 1


def ours(fake: FakeKaseyaBMS, ticket_id: int) -> list[dict[str, Any]]:
    return [n for n in fake.notes(ticket_id) if "psatriage:" in n["Details"]]


def received(runtime: Runtime) -> list[EventState | None]:
    return [jobs.process_event(runtime, row.id) for row in runtime.ledger.search(state="received")]


def test_poll_tenant_through_the_service_once_per_ticket(
    fake: FakeKaseyaBMS, llm: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tenants_file(tmp_path / "t.toml", fake, llm, monkeypatch, trigger="poll")
    runtime = Runtime(Settings(data_dir=tmp_path / "data"), load_config(path))
    try:
        old = fake.add_ticket("Old", "from last year", created_on=T0 - timedelta(days=365))
        new = fake.add_ticket("Printer broken", "My printer has a paper jam")
        assert jobs.poll_tenant(runtime, "bms") == 1
        assert received(runtime) == [EventState.DONE]
        with runtime.sessions.begin() as session:  # the next poll is due now
            session.execute(update(PollMarkRow).values(next_poll_at=utcnow()))
        assert jobs.poll_tenant(runtime, "bms") == 0  # the overlap sees it again: not new
    finally:
        runtime.close()
    assert len(fake.patches(new)) == 1 and len(ours(fake, new)) == 1
    assert fake.patches(old) == [] and ours(fake, old) == []
    assert fake.requests_to("/servicedesk/tickets$")[0].arg("Filter.CreatedOnFrom")


def test_both_triggers_make_one_decision(
    fake: FakeKaseyaBMS, llm: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tenants_file(tmp_path / "t.toml", fake, llm, monkeypatch, trigger="both")
    runtime = Runtime(Settings(data_dir=tmp_path / "data"), load_config(path))
    try:
        ticket_id = fake.add_ticket("Printer broken", "My printer has a paper jam")
        body, headers = fake.webhook(ticket_id)
        with TestClient(create_app(runtime)) as client:
            assert client.post("/webhooks/bms", content=body, headers=headers).status_code == 202
        assert jobs.poll_tenant(runtime, "bms") == 1  # another dedupe key: recorded too
        received(runtime)
    finally:
        runtime.close()
    assert len(fake.patches(ticket_id)) == 1 and len(ours(fake, ticket_id)) == 1


# -- triggers ---------------------------------------------------------------------------------


def test_polling_is_the_default_trigger_and_webhooks_then_need_a_secret(
    fake: FakeKaseyaBMS, llm: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(tenants_file(tmp_path / "a.toml", fake, llm, monkeypatch))
    assert config.tenant("bms").trigger.value == "poll"
    without_secret = {**fake.connection_config()}
    without_secret.pop("webhook_secret", None)
    path = tmp_path / "b.toml"
    monkeypatch.setenv(OPENAI_KEY_ENV, DEFAULT_API_KEY)
    tenant = {"psa": "kaseya_bms", "trigger": "both", "connection": without_secret}
    path.write_text(to_toml({"tenants": {"bms": tenant}}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tenant 'bms', key 'connection': webhooks need"):
        load_config(path)


# -- history (training data) ----------------------------------------------------------------


def test_history_asks_for_the_closed_statuses_and_reads_each_ticket(
    fake: FakeKaseyaBMS, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(page_size=2)
    general = fake.add_ticket("general", "x", created_on=T0 + timedelta(hours=2), issue_type_id=105)
    fake.close_ticket(general, 4)  # "Completed" counts as closed
    vpn = fake.add_ticket("vpn", "x", created_on=T0 + timedelta(hours=5), issue_type_id=103,
                          sub_issue_type_id=205, queue_id=501)  # fmt: skip
    fake.close_ticket(vpn)
    history = adapter.list_labeled_tickets(N0, limit=10)
    assert [t.ticket.id for t in history] == [str(vpn), str(general)]
    assert history[0].label == "Network › VPN"  # the queue is a facet, not part of the label
    lists = fake.requests_to(r"/servicedesk/tickets$", "GET")
    assert lists[0].arg("Filter.StatusIds") == "3,4"
    assert lists[0].arg("Filter.CreatedOnFrom") == "2026-03-02T09:00:00Z"
    reads = len(fake.requests_to(r"/servicedesk/tickets/\d+$", "GET"))
    assert [t.ticket.id for t in adapter.list_labeled_tickets(T0, limit=1)] == [str(vpn)]
    assert len(fake.requests_to(r"/servicedesk/tickets/\d+$", "GET")) - reads == 1
