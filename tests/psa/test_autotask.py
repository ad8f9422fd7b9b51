"""Autotask's quirks, against the fake Autotask on 127.0.0.1 through a real httpx client: zones,
.NET-escaped signatures, events of our own API user, picklists and facets, the request
threshold, webhook registration and deactivation, through the whole service too. What every PSA
does is checked by the contract suite (``tests/psa/contract/``) from the case tables in
``tests/fakes/autotask/kit.py``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from structlog.testing import capture_logs

from psatriage import jobs
from psatriage.config import load_config
from psatriage.domain import Category, LevelValue, Ticket
from psatriage.errors import (
    AuthFailed,
    CategoryRejected,
    ConfigError,
    PermanentError,
    TransientError,
)
from psatriage.http import make_client
from psatriage.psa.autotask import LEVELS, AutotaskAdapter, AutotaskConfig
from psatriage.psa.autotask.hooks import dotnet_escape
from psatriage.psa.autotask.picklists import parse_picklists, taxonomy_from
from psatriage.runtime import Runtime
from psatriage.settings import Settings
from psatriage.store.tables import EventState
from psatriage.web import create_app
from tests.fakes.autotask import TRICKY, FakeAutotask, dotnet_json
from tests.fakes.autotask.kit import fixture, sample
from tests.fakes.base import FakeServer, Response
from tests.fakes.openai import DEFAULT_API_KEY, FakeOpenAI
from tests.psa.conftest import OPENAI_KEY_ENV, in_parallel, serving, write_tenants

ADAPTER = AutotaskAdapter  # what make_adapter builds (tests/psa/conftest.py)
MakeAdapter = Callable[..., AutotaskAdapter]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAutotask]:
    yield from serving(FakeAutotask(), monkeypatch)


# -- parse ------------------------------------------------------------------------------------


def test_deactivated_is_recorded_ignored_and_reported(
    fake: FakeAutotask, adapter: AutotaskAdapter
) -> None:
    body, headers = fake.deactivation()
    adapter.verify(headers, body)
    with capture_logs() as logs:
        event = adapter.parse(body)
    assert event is not None
    assert (event.action, event.actionable, event.ticket_id) == ("Deactivated", False, "")
    assert event.dedupe_key.startswith("deactivated:")
    (problem,) = adapter.problems()
    assert "deactivated" in problem and "webhooks register" in problem
    assert adapter.parse(body) is not None and len(adapter.problems()) == 1
    assert [e["log_level"] for e in logs] == ["error"]  # logged loudly


def test_events_of_our_own_api_user_are_not_acted_on(
    fake: FakeAutotask, adapter: AutotaskAdapter
) -> None:
    ticket_id = fake.add_ticket("Printer", "jam")
    mine, _ = fake.delivery(ticket_id, person_id=fake.api_resource_id)
    before = adapter.parse(mine)
    assert before is not None and before.actionable  # our resource id is not known yet
    adapter.get_ticket(str(ticket_id))  # the worker's path learns it (once)
    after = adapter.parse(mine)
    assert after is not None and not after.actionable
    other = adapter.parse(fake.delivery(ticket_id, person_id=4)[0])
    assert other is not None and other.actionable
    assert len(fake.requests_to("/Resources/query$")) == 1


def test_configured_resource_id_needs_no_lookup(
    fake: FakeAutotask, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(api_resource_id=777)
    event = adapter.parse(fake.delivery(fake.add_ticket("x", "y"), person_id=777)[0])
    assert event is not None and not event.actionable
    assert adapter.resource_id() == "777" and fake.requests == []


# -- verify -----------------------------------------------------------------------------------


@pytest.mark.parametrize("escaped_wire", [False, True], ids=["plain wire", "escaped wire"])
@pytest.mark.parametrize(
    "title",
    ["Printer & scanner", "Bob's laptop", 'The "VPN"', "a <b> c", "Café", "🚀 launch", TRICKY],
)
def test_verify_accepts_autotask_signatures(
    fake: FakeAutotask, adapter: AutotaskAdapter, title: str, escaped_wire: bool
) -> None:
    body, headers = fake.delivery(fake.add_ticket(title, "x"), escaped_wire=escaped_wire)
    adapter.verify(headers, body)
    event = adapter.parse(body)
    assert event is not None and event.actionable


def test_verify_accepts_a_signature_over_the_raw_bytes(
    fake: FakeAutotask, adapter: AutotaskAdapter
) -> None:
    body = sample(Fields={"Title": TRICKY})
    adapter.verify({"x-hook-signature": fake.sign(body)}, body)
    adapter.verify({"x-hook-signature": fake.sign(body).removeprefix("sha1=")}, body)


@pytest.mark.parametrize("text", [TRICKY, "plain", 'a\\"b\\\\c\n\t', "", "日本語 ✓ 😀😀"])
def test_dotnet_escape_matches_the_serializer(text: str) -> None:
    payload = {"Fields": {"Title": text, "N": 1, "L": [text, None, True]}, "Id": 5}
    plain = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    assert dotnet_escape(plain) == dotnet_json(payload)
    assert dotnet_escape(dotnet_json(payload)) == dotnet_json(payload)  # escaping twice is a no-op


# -- zone discovery ---------------------------------------------------------------------------


def discoveries(fake: FakeAutotask) -> int:
    return len(fake.requests_to("zoneInformation"))


def test_warm_up_discovers_the_zone_before_the_first_ticket(
    fake: FakeAutotask, adapter: AutotaskAdapter
) -> None:
    adapter.warm_up()  # a new worker process, before its first ticket
    assert discoveries(fake) == 1 and len(fake.requests) == 1
    adapter.get_ticket(str(fake.add_ticket("VPN", "Down.")))
    assert discoveries(fake) == 1


def test_zone_is_discovered_once_without_credentials(
    fake: FakeAutotask, adapter: AutotaskAdapter
) -> None:
    ticket_id = fake.add_ticket("VPN", "Down.")
    adapter.get_ticket(str(ticket_id))
    adapter.get_ticket(str(ticket_id))
    (request,) = fake.requests_to("zoneInformation")
    assert request.arg("user") == fake.username
    assert "secret" not in request.headers and "apiintegrationcode" not in request.headers
    call = fake.requests_to(rf"/Tickets/{ticket_id}$")[0]
    assert call.path.startswith("/zone5/ATServicesRest/V1.0/")
    assert (call.headers["username"], call.headers["secret"]) == (fake.username, fake.secret)
    assert call.headers["apiintegrationcode"] == fake.integration_code


def test_zone_is_discovered_again_after_a_401(fake: FakeAutotask, adapter: AutotaskAdapter) -> None:
    ticket_id = fake.add_ticket("VPN", "Down.")
    adapter.get_ticket(str(ticket_id))
    fake.zone = "zone6"  # the database moved
    assert adapter.get_ticket(str(ticket_id)).title == "VPN"
    assert discoveries(fake) == 2
    assert fake.requests_to(rf"/zone6/.*/Tickets/{ticket_id}$")


def test_a_401_in_the_same_zone_is_auth_failed(
    fake: FakeAutotask, adapter: AutotaskAdapter
) -> None:
    ticket_id = fake.add_ticket("VPN", "Down.")
    adapter.get_ticket(str(ticket_id))
    fake.secret = "rotated"
    with pytest.raises(AuthFailed, match=r"refused the API user \(401\)") as info:
        adapter.get_ticket(str(ticket_id))
    assert discoveries(fake) == 2
    assert "rotated" not in str(info.value) and "S3cret" not in str(info.value)


def test_pinned_zone_is_never_discovered(fake: FakeAutotask, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(zone_url=fake.zone_url)
    adapter.get_ticket(str(fake.add_ticket("VPN", "Down.")))
    fake.zone = "zone6"
    with pytest.raises(AuthFailed):
        adapter.get_ticket(str(fake.add_ticket("VPN", "Down.")))
    assert discoveries(fake) == 0


def test_discovery_never_sends_credentials_to_an_untrusted_zone(make_adapter: MakeAdapter) -> None:
    with FakeServer() as discovery:
        evil = {"url": "http://evil.example/ATServicesRest/"}
        discovery.route(
            "GET", r"/ATServicesRest/V1\.0/zoneInformation", lambda r: Response(200, evil)
        )
        adapter = make_adapter(discovery_url=f"{discovery.url}/ATServicesRest")
        with pytest.raises(PermanentError, match="untrusted host"):
            adapter.get_ticket("1")


def test_unknown_api_user(make_adapter: MakeAdapter) -> None:
    with pytest.raises(PermanentError, match="zone of the API user not found"):
        make_adapter(username="nobody@example.com").get_ticket("1")


# -- tickets and notes ------------------------------------------------------------------------


def test_get_ticket_reads_the_picklists_and_the_company_once(
    fake: FakeAutotask, adapter: AutotaskAdapter
) -> None:
    ticket_id = fake.add_ticket("Printer jams", "x", issue_type=10, sub_issue_type=136)
    assert adapter.get_ticket(str(ticket_id)).current_label == "Hardware › Printer"
    calls = len(fake.requests)
    assert adapter.get_ticket(str(ticket_id)).current_label == "Hardware › Printer"
    assert len(fake.requests) == calls + 1  # steady state: one read per ticket


def test_get_ticket_of_the_reference_sample(fake: FakeAutotask, adapter: AutotaskAdapter) -> None:
    fake.tickets[100] = fixture("ticket-get-by-id.json")["item"]
    ticket = adapter.get_ticket("100")
    assert (ticket.title, ticket.company_id, ticket.company_name) == (
        "Monthy Services Checkup*",
        "174",
        "Contoso Ltd",
    )
    assert ticket.current_label == "Hardware › Printer"


def test_get_ticket_reports_facets_once_categorized(
    fake: FakeAutotask, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(facets=["queueID", "priority"])
    empty = fake.add_ticket("New", "x")
    assert adapter.get_ticket(str(empty)).current == ()  # Autotask's own queue and priority
    done = fake.add_ticket("Done", "x", issue_type=12, sub_issue_type=150, priority=1)
    assert [(v.level, v.id, v.name) for v in adapter.get_ticket(str(done)).current] == [
        ("issueType", "12", "Network"),
        ("subIssueType", "150", "VPN"),
        ("queueID", "29682833", "Level I Support"),
        ("priority", "1", "High"),
    ]


def test_add_note_is_internal(fake: FakeAutotask, adapter: AutotaskAdapter) -> None:
    ticket_id = fake.add_ticket("VPN", "Cannot connect.")
    ticket = adapter.get_ticket(str(ticket_id))
    adapter.add_note(ticket, "Categorized as Network › VPN. [psatriage:41]")
    adapter.add_note(ticket, "Again [psatriage:42]")
    bodies = [r.json() for r in fake.writes_to("POST", rf"/Tickets/{ticket_id}/Notes$")]
    assert bodies[0] == {
        "ticketID": ticket_id,
        "title": "psatriage",
        "description": "Categorized as Network › VPN. [psatriage:41]",
        "noteType": 3,
        "publish": 2,
    }
    assert all(body["publish"] != 1 for body in bodies)  # never portal-visible
    assert len(fake.requests_to("/TicketNotes/entityInformation/fields$")) == 1


def test_note_values_are_resolved_by_label(fake: FakeAutotask, make_adapter: MakeAdapter) -> None:
    ticket_id = fake.add_ticket("VPN", "x")
    adapter = make_adapter(note_publish="internal & co-managed", note_type="No such type")
    adapter.add_note(adapter.get_ticket(str(ticket_id)), "x")
    note = fake.notes(ticket_id)[-1]
    assert (note["publish"], note["noteType"]) == (4, 3)  # noteType: the picklist's default


def test_an_unknown_publish_label_is_a_config_error(
    fake: FakeAutotask, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(note_publish="Secret Team")
    with pytest.raises(ConfigError, match="'Internal Project Team'") as info:
        adapter.add_note(adapter.get_ticket(str(fake.add_ticket("x", "y"))), "x")
    assert "All Autotask Users" not in str(info.value)


# -- taxonomy ---------------------------------------------------------------------------------


def test_taxonomy(fake: FakeAutotask, adapter: AutotaskAdapter) -> None:
    taxonomy = adapter.get_taxonomy(adapter.get_ticket(str(fake.add_ticket("x", "y"))))
    assert [leaf.key for leaf in taxonomy.leaves] == [
        "10/136", "10/137", "11/140", "11/141", "12/150", "12/151", "14", "15",
    ]  # fmt: skip
    assert taxonomy.get("12/151").label == "Network › Wi-Fi"
    assert (taxonomy.scope, taxonomy.levels) == ("tickets", ("issueType", "subIssueType"))
    assert taxonomy.defaults == frozenset({("issueType", "14")})
    assert taxonomy.facets == ()
    assert adapter.list_scopes() == [("tickets", "Tickets")]


def test_taxonomy_with_facets(fake: FakeAutotask, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(facets=["queueID", "priority", "ticketCategory"])
    taxonomy = adapter.get_taxonomy(Ticket(id="", title="", description="", scope="tickets"))
    queue, priority, category = taxonomy.facets
    assert (queue.name, queue.label) == ("queueID", "Queue")
    assert [o.name for o in queue.options] == [
        "Client Portal",
        "Level I Support",
        "Level II Support",
    ]
    assert [o.id for o in priority.options] == ["4", "1", "2", "3"]  # by sortOrder, active only
    assert [o.name for o in category.options] == ["Standard", "AEM Alert"]
    assert ("queueID", "29682833") in taxonomy.defaults and ("priority", "2") in taxonomy.defaults


def test_taxonomy_of_the_reference_fixture() -> None:
    lists = parse_picklists(fixture("tickets-entityinformation-fields-picklists.json"))
    assert [p.label for p in lists["priority"]] == ["High"]  # the repeated entry is ignored
    taxonomy = taxonomy_from(lists, ["queueID"])
    assert [(leaf.key, leaf.label) for leaf in taxonomy.leaves] == [("2", "Hardware")]
    assert [o.name for o in taxonomy.facets[0].options] == ["Client Portal"]
    note_lists = parse_picklists(fixture("ticketnotes-notetype-field.json"))
    assert note_lists["noteType"][0].label == "Task Detail"


# -- set_category -----------------------------------------------------------------------------


def category(key: str, *facets: tuple[str, str]) -> Category:
    ids = key.split("/")
    path = tuple(LevelValue(level, i, i) for level, i in zip(LEVELS, ids, strict=False))
    return Category(key, path).with_facets(tuple(LevelValue(f, v, v) for f, v in facets))


def test_set_category_patches_the_ids(fake: FakeAutotask, adapter: AutotaskAdapter) -> None:
    ticket_id = fake.add_ticket("Printer jams", "Jams.")
    adapter.set_category(adapter.get_ticket(str(ticket_id)), category("10/136"))
    assert fake.patches(ticket_id) == [{"id": ticket_id, "issueType": 10, "subIssueType": 136}]
    assert adapter.get_ticket(str(ticket_id)).current_label == "Hardware › Printer"


def test_set_category_clears_a_sub_issue_type_it_does_not_set(
    fake: FakeAutotask, adapter: AutotaskAdapter
) -> None:
    ticket_id = fake.add_ticket("Threat", "x", issue_type=10, sub_issue_type=137)
    adapter.set_category(adapter.get_ticket(str(ticket_id)), category("15"))
    assert fake.patches(ticket_id) == [{"id": ticket_id, "issueType": 15, "subIssueType": None}]


def test_a_sub_issue_type_of_another_issue_type_is_never_written(
    fake: FakeAutotask, adapter: AutotaskAdapter
) -> None:
    ticket_id = fake.add_ticket("Odd", "x")
    with pytest.raises(CategoryRejected, match="belongs to issue type 12, not 10"):
        adapter.set_category(adapter.get_ticket(str(ticket_id)), category("10/150"))
    assert fake.patches(ticket_id) == []


def test_a_value_deactivated_since_the_read_is_rejected_by_autotask(
    fake: FakeAutotask, adapter: AutotaskAdapter
) -> None:
    ticket_id = fake.add_ticket("Printer", "x")
    ticket = adapter.get_ticket(str(ticket_id))
    adapter.get_taxonomy(ticket)
    fake.set_active("subIssueType", 136, False)
    with pytest.raises(CategoryRejected, match=r"\(500\): Value 136 is not valid"):
        adapter.set_category(ticket, category("10/136"))
    assert len(fake.patches(ticket_id)) == 1
    adapter.get_taxonomy(ticket)  # the pipeline re-reads the tree after a rejection
    with pytest.raises(CategoryRejected, match="not an active value"):
        adapter.set_category(ticket, category("10/136"))
    assert len(fake.patches(ticket_id)) == 1  # known-inactive values are not even sent


def test_set_category_writes_facets(fake: FakeAutotask, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(facets=["queueID", "priority"])
    ticket_id = fake.add_ticket("VPN", "x")
    ticket = adapter.get_ticket(str(ticket_id))
    adapter.set_category(ticket, category("12/150", ("queueID", "29682969"), ("priority", "1")))
    assert fake.patches(ticket_id) == [
        {"id": ticket_id, "issueType": 12, "subIssueType": 150, "queueID": 29682969, "priority": 1}
    ]
    for bad in [("queueID", "29683000"), ("priority", "77")]:  # inactive, unknown
        with pytest.raises(CategoryRejected, match="not an active value"):
            adapter.set_category(ticket, category("12/150", bad))
    with pytest.raises(CategoryRejected, match="does not categorize"):
        adapter.set_category(ticket, category("12/150", ("ticketCategory", "3")))
    assert len(fake.patches(ticket_id)) == 1


# -- errors -----------------------------------------------------------------------------------


def test_a_rejected_category_write_is_category_rejected(
    fake: FakeAutotask, adapter: AutotaskAdapter
) -> None:
    ticket = adapter.get_ticket(str(fake.add_ticket("VPN", "x")))
    fake.fail("PATCH", r"/Tickets$", 400, body={"errors": ["Issue Type is locked"]})
    with pytest.raises(CategoryRejected, match="Issue Type is locked"):
        adapter.set_category(ticket, category("12/150"))


# -- limits -----------------------------------------------------------------------------------


def test_each_object_endpoint_has_its_three_calls(fake: FakeAutotask) -> None:
    tickets = [fake.add_ticket(f"T{n}", "x") for n in range(6)]
    with make_client(timeout=10, max_connections=32) as client:
        config = AutotaskConfig.model_validate(fake.connection_config(api_resource_id=1))
        adapter = AutotaskAdapter("acme", config, client)
        adapter.get_ticket(str(tickets[0]))  # zone, fields and company read once
        fake.delay = 0.05

        def work(ticket_id: int) -> None:
            ticket = adapter.get_ticket(str(ticket_id))
            adapter.find_note(ticket, "psatriage:1")

        errors = in_parallel(work, tickets * 3)
    assert errors == []
    assert fake.max_active_by_endpoint["Tickets/Notes"] == 3
    assert fake.max_active > 3  # the two endpoints were busy at the same time


def test_the_window_is_the_whole_database_for_an_hour(
    fake: FakeAutotask, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(requests_per_window=2, threshold_check_at=1.0, api_resource_id=1)
    ticket_id = str(fake.add_ticket("x", "y"))
    adapter.get_ticket(ticket_id)  # the ticket and its company: 2 calls
    with pytest.raises(TransientError, match="client-side limit of 2 calls") as info:
        adapter.get_ticket(ticket_id)
    assert info.value.retry_after is not None and info.value.retry_after > 3000


def test_threshold_information_pauses_calls_when_autotask_is_nearly_full(
    fake: FakeAutotask, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(requests_per_window=100, threshold_check_at=0.02, api_resource_id=1)
    ticket_id = str(fake.add_ticket("x", "y"))
    adapter.get_ticket(ticket_id)  # 2 calls: the local window is now "close"
    fake.threshold_count = 9990
    with pytest.raises(TransientError, match="9990 of 10000") as info:
        adapter.get_ticket(ticket_id)
    assert info.value.retry_after == 300.0  # a twelfth of the window
    calls = len(fake.requests)
    with pytest.raises(TransientError, match="pausing"):
        adapter.get_ticket(ticket_id)
    assert len(fake.requests) == calls  # paused: nothing sent


def test_threshold_information_is_asked_sparingly(
    fake: FakeAutotask, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(requests_per_window=100, threshold_check_at=0.01, api_resource_id=1)
    ticket_id = str(fake.add_ticket("x", "y"))
    for _ in range(5):
        adapter.get_ticket(ticket_id)
    assert len(fake.requests_to("/ThresholdInformation$")) == 1


# -- polling ----------------------------------------------------------------------------------


def test_list_new_tickets(fake: FakeAutotask, adapter: AutotaskAdapter) -> None:
    base = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    late = fake.add_ticket("late", "x", created=base + timedelta(minutes=30))
    early = fake.add_ticket("early", "x", created=base + timedelta(minutes=10))
    fake.add_ticket("old", "x", created=base - timedelta(minutes=1))
    same = fake.add_ticket("same", "x", created=base)
    fake.max_page_size = 2
    found = adapter.list_new_tickets(base)
    assert [t.ticket_id for t in found] == [str(same), str(early), str(late)]
    assert found[0].created_at == base
    query = fake.requests_to("/Tickets/query$")[0].json()
    assert query["filter"] == [
        {"op": "gte", "field": "createDate", "value": "2026-03-02T09:00:00.000Z"}
    ]
    assert query["MaxRecords"] == 500 and query["IncludeFields"] == ["id", "createDate"]
    assert adapter.can_poll()


# -- set-up calls -----------------------------------------------------------------------------

HOOK = "https://triage.example.com/webhooks/acme"


def test_register_webhook(fake: FakeAutotask, adapter: AutotaskAdapter) -> None:
    hook_id = adapter.register_webhook(HOOK)
    hook = fake.webhooks[int(hook_id)]
    assert {k: hook[k] for k in hook if k.startswith("is")} == {
        "isActive": True,
        "isSubscribedToCreateEvents": True,
        "isSubscribedToUpdateEvents": False,
        "isSubscribedToDeleteEvents": False,
        "isReady": True,
    }
    assert (hook["webhookUrl"], hook["deactivationUrl"]) == (HOOK, HOOK)
    assert hook["secretKey"] == fake.webhook_secret and hook["name"] == "psatriage"
    (field,) = fake.webhook_fields[int(hook_id)]
    assert (field["fieldID"], field["isSubscribedField"], field["isDisplayAlwaysField"]) == (
        2,
        True,
        False,
    )  # "Status"
    assert fake.excluded[int(hook_id)][0]["resourceID"] == fake.api_resource_id
    assert adapter.register_webhook(HOOK) == hook_id  # again: nothing new
    assert len(fake.writes_to("POST", r"/TicketWebhooks$")) == 1
    assert len(fake.webhook_fields[int(hook_id)]) == len(fake.excluded[int(hook_id)]) == 1


def test_register_webhook_bodies_match_the_reference_samples(
    fake: FakeAutotask, make_adapter: MakeAdapter
) -> None:
    hook_id = make_adapter(notification_email="ops@example.com").register_webhook(HOOK)
    (created,) = fake.writes_to("POST", r"/TicketWebhooks$")
    (field,) = fake.writes_to("POST", rf"/TicketWebhooks/{hook_id}/Fields$")
    sample_hook = {k.lower() for k in fixture("ticketwebhook-create-request.json")}
    sample_field = {k.lower() for k in fixture("ticketwebhookfield-create-request.json")}
    assert {k.lower() for k in created.json()} == sample_hook
    assert {k.lower() for k in field.json()} == sample_field


def test_query_pages_of_the_reference_samples(adapter: AutotaskAdapter) -> None:
    (ticket,) = adapter.client.pages(fixture("ticket-query-page.json"), "tickets")
    assert ticket["ticketNumber"] == "T20120604.0002.005"
    assert adapter.client.pages(fixture("empty-query-page.json"), "tickets") == []
    (note,) = adapter.client.pages(fixture("ticketnote-query-page.json"), "notes")
    assert note["publish"] == 1  # what a portal-visible note looks like: never ours


def test_register_webhook_reactivates_and_clears_the_problem(
    fake: FakeAutotask, adapter: AutotaskAdapter
) -> None:
    hook_id = int(adapter.register_webhook(HOOK))
    fake.webhooks[hook_id]["isActive"] = False  # after 25 failed deliveries
    adapter.parse(fake.deactivation()[0])
    assert adapter.problems()
    assert adapter.register_webhook(HOOK) == str(hook_id)
    assert fake.webhooks[hook_id]["isActive"] is True and adapter.problems() == []


def test_register_webhook_says_when_it_is_not_ready(
    fake: FakeAutotask, adapter: AutotaskAdapter
) -> None:
    hook_id = int(adapter.register_webhook(HOOK))
    fake.webhooks[hook_id]["isReady"] = False
    with pytest.raises(PermanentError, match="not active and ready"):
        adapter.register_webhook(HOOK)


def test_our_resource_is_found_by_email_or_configured(
    fake: FakeAutotask, make_adapter: MakeAdapter
) -> None:
    fake.resources[1]["userName"] = "psatriage-api"
    assert make_adapter().resource_id() == str(fake.api_resource_id)
    fake.resources.pop()
    with pytest.raises(ConfigError, match="api_resource_id"):
        make_adapter().resource_id()


# -- configuration and secrets ----------------------------------------------------------------


def test_config_rejects_a_long_webhook_secret(
    fake: FakeAutotask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FakeAutotask.HOOK_ENV, "s" * 65)
    with pytest.raises(ValidationError, match="1 to 64 characters"):
        AutotaskConfig.model_validate(fake.connection_config())


# -- the whole service ------------------------------------------------------------------------

JAM = "My printer has a paper jam"


def tenants_file(fake: FakeAutotask, llm: FakeOpenAI, root: Path, **connection: Any) -> Path:
    connection_table = fake.connection_config(**connection)
    return write_tenants(root / "psatriage.toml", "t1", "autotask", connection_table, llm)


@pytest.fixture
def runtime(
    fake: FakeAutotask, llm: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Runtime]:
    monkeypatch.setenv(OPENAI_KEY_ENV, DEFAULT_API_KEY)
    built = Runtime(
        Settings(data_dir=tmp_path / "data"), load_config(tenants_file(fake, llm, tmp_path))
    )
    yield built
    built.close()


def deliver(runtime: Runtime, body: bytes, headers: dict[str, str]) -> httpx.Response:
    with TestClient(create_app(runtime)) as client:
        return client.post("/webhooks/t1", content=body, headers=headers)


def test_signed_webhook_makes_one_patch_and_one_internal_note(
    fake: FakeAutotask, runtime: Runtime
) -> None:
    ticket_id = fake.add_ticket("Printer broken", JAM)
    response = deliver(runtime, *fake.delivery(ticket_id))
    assert response.status_code == 202, response.text
    assert jobs.process_event(runtime, response.json()["event_id"]) is EventState.DONE
    assert fake.patches(ticket_id) == [{"id": ticket_id, "issueType": 10, "subIssueType": 136}]
    (note,) = fake.notes(ticket_id)
    assert note["publish"] == 2 and note["title"] == "psatriage"  # internal, never portal (1)
    assert "Hardware › Printer" in note["description"] and "[psatriage:" in note["description"]
    assert fake.tickets[ticket_id]["subIssueType"] == 136


def test_facets_chosen_by_the_model_are_written_with_the_category(
    fake: FakeAutotask, llm: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(OPENAI_KEY_ENV, DEFAULT_API_KEY)
    config = load_config(tenants_file(fake, llm, tmp_path, facets=["queueID", "priority"]))
    runtime = Runtime(Settings(data_dir=tmp_path / "data"), config)
    llm.facet_answers = {"queueID": "29682969", "priority": "1"}
    try:
        ticket_id = fake.add_ticket("Printer broken", JAM)
        event_id = deliver(runtime, *fake.delivery(ticket_id)).json()["event_id"]
        assert jobs.process_event(runtime, event_id) is EventState.DONE
    finally:
        runtime.close()
    assert fake.patches(ticket_id) == [
        {"id": ticket_id, "issueType": 10, "subIssueType": 136, "queueID": 29682969, "priority": 1}
    ]
    (note,) = fake.notes(ticket_id)
    assert "Level II Support" in note["description"] and "High" in note["description"]


def test_an_update_storm_of_our_own_writes_processes_nothing(
    fake: FakeAutotask, runtime: Runtime
) -> None:
    ticket_id = fake.add_ticket("Printer broken", JAM)
    runtime.adapter("t1").get_ticket(str(ticket_id))  # a worker has learned our resource id
    answers = [
        deliver(runtime, *fake.delivery(ticket_id, action, person_id=fake.api_resource_id))
        for action in ["Update"] * 12 + ["Create"]
    ]
    assert {a.status_code for a in answers} == {202}
    assert {a.json()["status"] for a in answers} == {"ignored"}
    rows = runtime.ledger.search(tenant="t1", limit=50)
    assert len(rows) == 13 and {row.state for row in rows} == {"ignored"}
    assert fake.changes() == []


def test_a_deactivation_notice_is_recorded_and_reported(
    fake: FakeAutotask, runtime: Runtime
) -> None:
    response = deliver(runtime, *fake.deactivation())
    assert response.status_code == 202 and response.json()["status"] == "ignored"
    adapter = runtime.adapter("t1")
    assert isinstance(adapter, AutotaskAdapter) and adapter.problems()


def test_a_rejected_value_refreshes_the_tree_once_then_fails(
    fake: FakeAutotask, runtime: Runtime
) -> None:
    warm = fake.add_ticket("Printer broken", JAM)
    assert (
        jobs.process_event(runtime, deliver(runtime, *fake.delivery(warm)).json()["event_id"])
        is EventState.DONE
    )
    fake.set_active("subIssueType", 136, False)  # deactivated since the tree was cached
    ticket_id = fake.add_ticket("Printer broken", JAM)
    event_id = deliver(runtime, *fake.delivery(ticket_id)).json()["event_id"]
    assert jobs.process_event(runtime, event_id) is EventState.FAILED
    row = runtime.ledger.get(event_id)
    assert row is not None and "no longer in the category tree" in row.reason
    assert len(fake.requests_to("/Tickets/entityInformation/fields$")) == 2
    assert len(fake.patches(ticket_id)) == 1 and fake.tickets[ticket_id]["issueType"] is None


def test_a_deactivated_webhook_shows_in_readyz(fake: FakeAutotask, runtime: Runtime) -> None:
    with TestClient(create_app(runtime)) as client:
        body, headers = fake.deactivation()
        assert client.post("/webhooks/t1", content=body, headers=headers).status_code == 202
        ready = client.get("/readyz")
    assert ready.status_code == 200  # the service still works; an operator must re-register
    (problem,) = ready.json()["tenants"]["t1"]
    assert "deactivated" in problem and "webhooks register" in problem


# -- history (training data) ----------------------------------------------------------------


def test_history_is_one_query_of_completed_tickets_with_an_issue_type(
    fake: FakeAutotask, make_adapter: MakeAdapter
) -> None:
    day = datetime(2026, 1, 1, tzinfo=UTC)
    for n, levels in ((3, {"issue_type": 10, "sub_issue_type": 136}), (4, {"issue_type": 15}),
                      (7, {"issue_type": 12, "sub_issue_type": 150})):  # fmt: skip
        ticket_id = fake.add_ticket(f"ticket {n}", "x", created=day + timedelta(days=n), **levels)
        fake.complete_ticket(ticket_id)
    history = make_adapter(page_size=2).list_labeled_tickets(day, limit=10)
    assert [t.key for t in history] == ["12/150", "15", "10/136"]  # 15: no sub-issue types
    assert history[2].ticket.company_name == "Contoso Ltd"  # read by id, once per company
    queries = fake.requests_to(r"/Tickets/query", "POST")
    pages = fake.requests_to(r"/Tickets/query/next", "GET")
    assert len(queries) == 1 and len(pages) == 1  # one query, read through its pages
    filters = {f["field"]: f["op"] for f in queries[0].json()["filter"]}
    assert filters == {"createDate": "gte", "completedDate": "exist", "issueType": "exist"}
