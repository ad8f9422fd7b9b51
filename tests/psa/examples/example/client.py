"""The Example PSA over HTTP: the API key header, page-numbered lists and the error body
``{"error": "..."}``; the rest (limits, the error ladder, 429 retries) is ``PSAClient``'s."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import httpx

from psatriage.psa.client import Form, Params, PSAClient, endpoint_of
from psatriage.psa.paging import numbered
from psatriage.psa.wire import JSON, lower_keys
from tests.psa.examples.example.config import ExampleConfig


class ExampleClient(PSAClient):
    psa: ClassVar[str] = "Example PSA"
    principal: ClassVar[str] = "the API key"
    rejected_statuses: ClassVar[frozenset[int]] = frozenset({400, 422})

    def __init__(self, tenant: str, config: ExampleConfig, http: httpx.Client) -> None:
        key = config.api_key.get_secret_value()
        super().__init__(http, config.call_limits(f"example:{tenant}"), config, scrub=(key,))
        self.config = config

    def exchange(
        self, method: str, path: str, *, params: Params | None, json_body: object, data: Form | None
    ) -> httpx.Response:
        headers = {"X-Api-Key": self.config.api_key.get_secret_value()}
        return self.send(
            method,
            f"{self.config.url}/api/{path}",
            endpoint=endpoint_of(method, path),
            headers=headers,
            params=params,
            json_body=json_body,
        )

    def pages(self, path: str, *, what: str) -> Iterator[JSON]:
        def page(number: int) -> tuple[list[JSON], int | None]:
            query = {"page": number, "per_page": self.config.page_size}
            data = lower_keys(self.json("GET", path, params=query, what=what))
            return [r for r in data.get("items") or [] if isinstance(r, dict)], data.get("total")

        return numbered(page)

    def detail(self, response: httpx.Response) -> str:
        try:
            message = lower_keys(response.json()).get("error")
        except ValueError:
            return ""
        return f": {message}" if message else ""
