"""How PSAs page their lists, read the same way for every adapter.

* **Next link** (``follow``): each page names the next one: ConnectWise in a ``Link: <...>;
  rel="next"`` header, Autotask in ``pageDetails.nextPageUrl``. The link is followed on our own
  origin only (``on_origin``), so credentials never go where a page points; a link seen before
  ends the list.
* **Page number** (``numbered``): pages 1, 2, 3... of a fixed size: HaloPSA (``page_no``) and
  Kaseya BMS (``PageNumber``). The list ends at an empty page, at the total the PSA states, or at a
  page with nothing new (a server that ignores the page number).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import httpx

Page = TypeVar("Page")
Record = TypeVar("Record", bound=Mapping[str, Any])
MAX_PAGES = 10_000


def follow(
    first: Page, next_url: Callable[[Page], str | None], fetch: Callable[[str], Page]
) -> Iterator[Page]:
    """``first`` and every page after it, each fetched from the link on the one before."""
    page, seen = first, set[str]()
    yield page
    while (url := next_url(page)) is not None and url not in seen:
        seen.add(url)
        page = fetch(url)
        yield page


def on_origin(url: str, origin: str | httpx.URL) -> str:
    """``url``'s path and query on ``origin`` (scheme, host and port): a next-page link that names
    another host is never followed there."""
    return str(httpx.URL(origin).copy_with(raw_path=httpx.URL(url).raw_path))


def numbered(
    fetch: Callable[[int], tuple[list[Record], int | None]], *, one_page_without_total: bool = False
) -> Iterator[Record]:
    """The records of pages 1, 2, 3... ``fetch(n)`` gives page ``n`` and the total the PSA states,
    if any; with ``one_page_without_total`` an answer without a total is the whole list (HaloPSA's
    plain arrays). A short page is not taken as the end: a PSA may cap the page size below ours."""
    seen: set[str] = set()
    count = 0
    for number in range(1, MAX_PAGES + 1):
        records, total = fetch(number)
        fresh = [r for r in records if _fingerprint(r) not in seen]
        seen.update(_fingerprint(r) for r in fresh)
        yield from fresh
        count += len(records)
        if not fresh or (total is not None and count >= total):
            return
        if total is None and one_page_without_total:
            return


def _fingerprint(record: Mapping[str, Any]) -> str:
    return str(record.get("id")) if record.get("id") is not None else repr(sorted(record.items()))
