"""The small readers every adapter shares (``psatriage.psa.wire``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from psatriage.errors import CategoryRejected, PermanentError, WebhookRejected
from psatriage.psa.wire import (
    body_hash,
    lower_keys,
    numeric,
    record_id,
    timestamp,
    trusted_url,
    utc_text,
    webhook_object,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(69, "69"), ("69", "69"), (" 079 ", "79"), (0, None), ("0", None), (-3, None), (True, None),
     ("abc", None), ("", None), (None, None), (4.0, None), ({"id": 1}, None)],
)  # fmt: skip
def test_record_id(value: object, expected: str | None) -> None:
    assert record_id(value) == expected


def test_numeric_names_the_psa_and_the_class_of_error() -> None:
    assert numeric("42", "ticket id", psa="Autotask") == 42
    with pytest.raises(PermanentError, match=r"'\.\./x' is not an Autotask id"):
        numeric("../x", "ticket id", psa="Autotask")
    with pytest.raises(CategoryRejected, match="type id '-1' is not a ConnectWise id"):
        numeric("-1", "type id", psa="ConnectWise", error=CategoryRejected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T09:15:00Z", datetime(2026, 3, 2, 9, 15, tzinfo=UTC)),
        ("2026-03-02T10:15:00+01:00", datetime(2026, 3, 2, 9, 15, tzinfo=UTC)),
        ("2026-03-02T09:15:00", datetime(2026, 3, 2, 9, 15, tzinfo=UTC)),  # naive means UTC
        ("2026-03-02T09:15:00.1234567", datetime(2026, 3, 2, 9, 15, 0, 123456, tzinfo=UTC)),
        (" 2026-03-02 ", datetime(2026, 3, 2, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
        (20260302, None),
    ],
)
def test_timestamp_reads_naive_times_as_utc(text: object, expected: datetime | None) -> None:
    found = timestamp(text)
    assert found == expected
    assert found is None or found.tzinfo is not None


def test_timestamp_in_a_psa_that_writes_local_time() -> None:
    amsterdam = ZoneInfo("Europe/Amsterdam")
    assert timestamp("2026-03-02T10:00:00", amsterdam) == datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert timestamp("2026-03-02T10:00:00Z", amsterdam) == datetime(2026, 3, 2, 10, tzinfo=UTC)


def test_utc_text() -> None:
    moment = datetime(2026, 3, 2, 10, 0, 0, 999999, tzinfo=timezone(timedelta(hours=1)))
    assert utc_text(moment) == "2026-03-02T09:00:00Z"  # whole seconds, rounded down
    assert utc_text(moment, millis=True) == "2026-03-02T09:00:00.999Z"
    assert utc_text(datetime(2026, 3, 2, 9)) == "2026-03-02T09:00:00Z"  # naive means UTC


def test_webhook_object_and_lower_keys() -> None:
    assert webhook_object(b'{"MessageID": 1, "Type": "x"}') == {"messageid": 1, "type": "x"}
    assert lower_keys([1]) == {}
    for body, message in ((b"{", "not JSON"), (b"[]", "not a JSON object")):
        with pytest.raises(WebhookRejected, match=message) as caught:
            webhook_object(body)
        assert caught.value.status == 400


def test_webhook_object_decodes_a_body_once_and_gives_each_caller_its_own_copy() -> None:
    body = b'{"Type": "ticket", "ID": 7}'
    first = webhook_object(body)
    first["type"] = "changed by the first caller"
    assert webhook_object(body) == {"type": "ticket", "id": 7}
    with pytest.raises(WebhookRejected):  # a refusal is not remembered as an answer
        webhook_object(b"{")
    with pytest.raises(WebhookRejected):
        webhook_object(b"{")


def test_body_hash_is_stable_and_distinct() -> None:
    assert body_hash(b"a") == body_hash(b"a") != body_hash(b"b")
    assert body_hash(b"a").startswith("sha256:")


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("https://host.example.net/x", True),  # HTTPS on a host the PSA accepts
        ("http://host.example.net/x", False),  # not HTTPS
        ("https://other.example.org/x", False),
        ("http://127.0.0.1:8080/x", True),  # a trusted origin, even without TLS
        ("http://127.0.0.1:8081/x", False),
        ("https://user:pw@host.example.net/x", False),  # credentials in the URL
        ("https:///nohost", False),
        ("not a url at all", False),
    ],
)
def test_trusted_url(url: str, trusted: bool) -> None:
    found = trusted_url(
        url,
        origins=("http://127.0.0.1:8080",),
        https_host=lambda parsed: parsed.host.endswith(".example.net"),
    )
    assert found is trusted
