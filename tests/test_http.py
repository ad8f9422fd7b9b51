"""The outbound HTTP client factory and the one reading of ``Retry-After``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from psatriage.http import USER_AGENT, make_client, retry_after


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_headers(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after(headers) == expected


def test_retry_after_as_a_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = retry_after({"retry-after": when})
    assert seconds is not None and 25 <= seconds <= 31
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert retry_after({"retry-after": past}) == 0.0
    unzoned = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S -0000")
    seconds = retry_after({"retry-after": unzoned})
    assert seconds is not None and 25 <= seconds <= 31  # "-0000" is UTC, not local time


def test_retry_after_reads_httpx_headers_in_any_case() -> None:
    assert retry_after(httpx.Headers({"Retry-After": "4"})) == 4.0
    assert retry_after(httpx.Headers({"Retry-After-Ms": "250"})) == 0.25


def test_clients_send_our_user_agent_and_never_follow_redirects() -> None:
    with make_client() as client:
        assert client.headers["user-agent"] == USER_AGENT
        assert client.follow_redirects is False


def test_clients_keep_no_cookies_so_none_goes_from_one_tenant_to_the_next() -> None:
    sent: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "session=tenant-a; Path=/"})

    with make_client(transport=httpx.MockTransport(answer)) as client:
        client.get("https://api.psa.example/v4_6_release/apis/3.0/service/tickets/1")
        client.get("https://api.psa.example/v4_6_release/apis/3.0/service/tickets/2")
        assert not client.cookies
        client.cookies = {"session": "given"}  # dropped as well
        client.cookies.set("session", "set")
        client.get("https://api.psa.example/v4_6_release/apis/3.0/service/tickets/3")
        assert not client.cookies
    assert sent == [None, None, None]
