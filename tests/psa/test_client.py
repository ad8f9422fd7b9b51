"""The client every PSA builds on (``psatriage.psa.client``), on an in-memory transport: the
limits it sends under, transport failures, the error ladder and its 429 retries. The contract
suite checks the same through each PSA's fake."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import ClassVar

import httpx
import pytest
import stamina

from psatriage.errors import (
    AuthFailed,
    CategoryRejected,
    NotFound,
    PermanentError,
    TransientError,
)
from psatriage.http import make_client
from psatriage.psa.base import AdapterConfig
from psatriage.psa.client import Form, Params, PSAClient, RateLimited, endpoint_of
from psatriage.shared.limits import CallLimits


class Client(PSAClient):
    psa: ClassVar[str] = "Demo"
    principal: ClassVar[str] = "the key"

    def exchange(
        self, method: str, path: str, *, params: Params | None, json_body: object, data: Form | None
    ) -> httpx.Response:
        return self.send(method, f"https://demo.example/{path}", endpoint=endpoint_of(method, path))

    def detail(self, response: httpx.Response) -> str:
        return f": {response.text}" if response.text else ""


Answer = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def answers() -> list[Answer]:
    return []


@pytest.fixture
def client(answers: list[Answer]) -> Iterator[Client]:
    def handle(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)(request) if answers else httpx.Response(200, json={"ok": True})

    with make_client(transport=httpx.MockTransport(handle)) as http:
        limits = CallLimits(per_window=100, window_seconds=60, max_wait=0, scope="demo:acme")
        yield Client(http, limits, AdapterConfig(), scrub=("s3cret",))


def status(code: int, text: str = "", **headers: str) -> Answer:
    return lambda request: httpx.Response(code, text=text, headers=headers)


def test_calls_count_against_the_limits_and_unlimited_ones_do_not(client: Client) -> None:
    client.limits = CallLimits(per_window=3, window_seconds=60, max_wait=0, scope="demo:acme")
    client.call("GET", "tickets/1", what="ticket 1")
    client.send_unlimited("GET", "https://keys.example/key")
    assert client.limits.used() == 1
    client.call("GET", "tickets/2", what="ticket 2")
    client.call("GET", "tickets/3", what="ticket 3")
    with pytest.raises(TransientError, match="client-side limit of 3 calls"):
        client.call("GET", "tickets/4", what="ticket 4")


def test_a_transport_failure_is_transient(answers: list[Answer], client: Client) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    answers.append(refuse)
    with pytest.raises(TransientError, match="Demo did not answer GET /tickets/1: ConnectError"):
        client.call("GET", "tickets/1", what="ticket 1")


@pytest.mark.parametrize(
    ("method", "failure", "settle"),
    [
        ("PATCH", httpx.ReadTimeout, 7.0),  # sent, no answer: the server may apply it later
        ("POST", httpx.RemoteProtocolError, 7.0),  # the connection dropped after it was sent
        ("POST", httpx.ConnectError, None),  # never sent
        ("GET", httpx.ReadTimeout, None),  # a read changes nothing
    ],
)
def test_a_write_without_an_answer_is_tried_again_after_a_timeout_more(
    answers: list[Answer],
    client: Client,
    method: str,
    failure: type[httpx.TransportError],
    settle: float | None,
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise failure("no answer", request=request)

    client.timeout = 7.0
    answers.append(fail)
    with pytest.raises(TransientError, match=f"Demo did not answer {method} /tickets/1") as raised:
        client.call(method, "tickets/1", what="ticket 1")
    assert raised.value.retry_after == settle


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (status(401), AuthFailed, r"Demo refused the key \(401\) for ticket 1"),
        (status(403, "no"), AuthFailed, r"\(403\) for ticket 1: no"),
        (status(404, "gone"), NotFound, "ticket 1 not found: gone"),
        (status(302, Location="https://x"), PermanentError, r"redirected .* \(302\)"),
        (status(400, "bad"), CategoryRejected, r"Demo rejected ticket 1 \(400\): bad"),
        (status(409, "busy"), PermanentError, "Demo answered 409 for ticket 1: busy"),
        (status(502), TransientError, "Demo answered 502"),
        (status(400, "key s3cret"), CategoryRejected, r"key \*\*\*$"),
    ],
)
def test_the_ladder(
    answers: list[Answer], client: Client, answer: Answer, error: type[Exception], message: str
) -> None:
    answers.append(answer)
    with pytest.raises(error, match=message) as caught:
        client.call("GET", "tickets/1", what="ticket 1", rejected=CategoryRejected)
    assert type(caught.value) is error


def test_a_429_is_retried_with_its_short_wait_and_a_long_one_is_left_to_the_scheduler(
    answers: list[Answer], client: Client
) -> None:
    with stamina.set_testing(True, attempts=100, cap=True):
        answers.extend(
            [status(429, **{"Retry-After": "1"}), status(429, **{"retry-after-ms": "5"})]
        )
        assert client.json("GET", "tickets/1", what="ticket 1") == {"ok": True}
        assert answers == []
        answers.extend([status(429, **{"Retry-After": "30"})] * 2)
        with pytest.raises(RateLimited) as caught:
            client.call("GET", "tickets/1", what="ticket 1")
        assert caught.value.retry_after == 30 and len(answers) == 1  # not retried


def test_an_answer_that_is_not_json(answers: list[Answer], client: Client) -> None:
    answers.append(status(200, "<html>"))
    with pytest.raises(PermanentError, match="Demo answered ticket 1 with something other than"):
        client.json("GET", "tickets/1", what="ticket 1")


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    [("get", "service/tickets/42/notes?page=2", "GET service/tickets/{id}/notes"),
     ("PATCH", "/Tickets/", "PATCH Tickets"), ("GET", "v2/lookup/7", "GET v2/lookup/{id}")],
)  # fmt: skip
def test_endpoint_of(method: str, path: str, endpoint: str) -> None:
    assert endpoint_of(method, path) == endpoint


def test_the_client_never_shows_a_secret(client: Client) -> None:
    assert "s3cret" not in repr(client)
    assert client.scrubbed("a s3cret b") == "a *** b"
