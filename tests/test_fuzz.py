"""Fuzzing: every adapter's parser and the webhook edge take arbitrary input without a crash, a
5xx, or anything recorded. Fixed seeds in CI (derandomized); a longer run for developers:
``PSATRIAGE_FUZZ_EXAMPLES=5000 uv run pytest tests/test_fuzz.py``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from psatriage.domain import TicketEvent
from psatriage.errors import WebhookRejected
from psatriage.http import make_client
from psatriage.psa import adapters
from psatriage.psa.base import PSAAdapter
from psatriage.runtime import Runtime
from psatriage.web import create_app
from tests.harness import TENANT, Harness
from tests.psa.contract.conftest import kit_for

EXAMPLES = int(os.environ.get("PSATRIAGE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

KEYS = st.sampled_from(
    ["Action", "action", "Type", "ID", "Id", "id", "Entity", "Guid", "SequenceNumber",
     "EntityType", "Fields", "PersonID", "object_id", "ticket", "event", "TicketId", "Metadata",
     "MessageId", "notification_id", "eventno", "Ticket", "Data", "x"]
)  # fmt: skip
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=12,
)
BODIES = (
    st.binary(max_size=300)
    | st.dictionaries(KEYS, JSON_VALUES, max_size=8).map(lambda d: json.dumps(d).encode())
    | JSON_VALUES.map(lambda v: json.dumps(v).encode())
)


@pytest.fixture(params=sorted(adapters()))
def adapter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    made = kit_for(request.param)
    for key, value in made.env.items():
        monkeypatch.setenv(key, value)
    cls = adapters()[made.psa]
    http = make_client(timeout=2)
    yield cls("fuzz", cls.Config.model_validate(made.connection), http)
    http.close()
    made.fake.stop()


@FUZZ
@given(body=BODIES)
def test_parse_is_total(adapter: PSAAdapter[Any], body: bytes) -> None:
    try:
        event = adapter.parse(body)
    except WebhookRejected as exc:
        assert exc.status == 400
    else:
        assert event is None or isinstance(event, TicketEvent)


@FUZZ
@given(
    body=BODIES,
    headers=st.dictionaries(st.text(max_size=20).map(str.lower), st.text(max_size=40), max_size=4),
)
def test_verify_refuses_what_it_cannot_prove(
    adapter: PSAAdapter[Any], body: bytes, headers: dict[str, str]
) -> None:
    with pytest.raises(WebhookRejected):
        adapter.verify(headers, body)


@pytest.fixture
def client(harness: Harness) -> Iterator[tuple[TestClient, Runtime]]:
    runtime = harness.runtime()
    with TestClient(create_app(runtime)) as test_client:
        yield test_client, runtime
    runtime.close()


@FUZZ
@given(
    body=BODIES,
    signature=st.none() | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=60),
    tenant=st.sampled_from([TENANT, "nobody", "x" * 80, "..", "%00"]),
)
def test_the_webhook_edge_never_fails_and_stores_nothing_unsigned(
    client: tuple[TestClient, Runtime], body: bytes, signature: str | None, tenant: str
) -> None:
    test_client, runtime = client
    headers = {} if signature is None else {"x-content-signature": signature}
    response = test_client.post(f"/webhooks/{tenant}", content=body, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert runtime.ledger.search() == []
