"""Next-link and page-number paging (``psatriage.psa.paging``)."""

from __future__ import annotations

from typing import Any

from psatriage.psa.paging import follow, numbered, on_origin


def test_follow_reads_every_linked_page_once() -> None:
    pages = {"/1": ["a"], "/2": ["b"], "/3": ["c"]}
    links = {"/1": "/2", "/2": "/3", "/3": "/2"}  # the last page links back: no loop
    fetched: list[str] = []

    def fetch(url: str) -> str:
        fetched.append(url)
        return url

    assert [pages[p] for p in follow("/1", links.get, fetch)] == [["a"], ["b"], ["c"]]
    assert fetched == ["/2", "/3"]


def test_a_next_link_is_only_followed_on_our_origin() -> None:
    link = "https://elsewhere.example/zone5/next?paging=abc&start=2"
    assert (
        on_origin(link, "http://127.0.0.1:9000")
        == "http://127.0.0.1:9000/zone5/next?paging=abc&start=2"
    )


def pager(pages: list[list[dict[str, Any]]], total: int | None) -> Any:
    asked: list[int] = []

    def fetch(number: int) -> tuple[list[dict[str, Any]], int | None]:
        asked.append(number)
        return (pages[number - 1] if number <= len(pages) else []), total

    return fetch, asked


def test_numbered_pages_end_at_the_stated_total() -> None:
    fetch, asked = pager([[{"id": 1}, {"id": 2}], [{"id": 3}]], total=3)
    assert [r["id"] for r in numbered(fetch)] == [1, 2, 3]
    assert asked == [1, 2]


def test_numbered_pages_without_a_total_end_at_an_empty_page_or_at_once() -> None:
    fetch, asked = pager([[{"id": 1}], [{"id": 2}]], total=None)
    assert [r["id"] for r in numbered(fetch)] == [1, 2]
    assert asked == [1, 2, 3]
    fetch, asked = pager([[{"id": 1}], [{"id": 2}]], total=None)
    assert [r["id"] for r in numbered(fetch, one_page_without_total=True)] == [1]
    assert asked == [1]


def test_numbered_pages_end_when_the_server_ignores_the_page_number() -> None:
    fetch, asked = pager([[{"id": 1}]] * 5, total=None)
    assert [r["id"] for r in numbered(fetch)] == [1]
    assert asked == [1, 2]  # page 2 brought nothing new


def test_numbered_pages_are_read_as_they_are_consumed() -> None:
    fetch, asked = pager([[{"id": 1}], [{"id": 2}], [{"id": 3}]], total=3)
    assert next(iter(numbered(fetch))) == {"id": 1}
    assert asked == [1]
