"""ConnectWise over HTTP: the codebase, the credentials, the Link-header paging and the error body.

Every API call goes to ``{origin}/{codebase}apis/3.0/`` with Basic auth ``company+public:private``
and a ``clientId`` header; the codebase comes from ``{origin}/login/companyinfo/{company}`` unless
configured, and is discovered again once when the API answers 404 (hosted instances move).
Lists follow the ``Link: <...>; rel="next"`` header, always on our own origin.

Every call to the tenant's ConnectWise, codebase discovery included, passes through the tenant's
``CallLimits`` (``PSAClient.send``). ConnectWise publishes no number, so they are the tenant's
``requests_per_window``/``window_seconds`` and ``concurrent_per_endpoint``. The callback
signing-key fetch is the one request that does not pass through them: see ``fetch_signing_key``.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator
from typing import ClassVar
from urllib.parse import quote

import httpx

from psatriage.errors import PermanentError
from psatriage.psa.client import Form, Params, PSAClient, endpoint_of
from psatriage.psa.connectwise.config import ConnectWiseConfig
from psatriage.psa.paging import follow, on_origin
from psatriage.psa.wire import JSON, lower_keys

_CODEBASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/$")


class ConnectWiseClient(PSAClient):
    """Authenticated, limited calls to one ConnectWise tenant. Shared by its worker threads."""

    psa: ClassVar[str] = "ConnectWise"
    principal: ClassVar[str] = "the API member"

    def __init__(self, tenant: str, config: ConnectWiseConfig, http: httpx.Client) -> None:
        super().__init__(
            http,
            config.call_limits(f"connectwise:{tenant}"),
            config,
            scrub=(config.public_key.get_secret_value(), config.private_key.get_secret_value()),
        )
        self.config = config
        self.origin = config.origin
        self._codebase = config.codebase
        self._codebase_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ConnectWiseClient(origin={self.origin!r})"

    # -- calls ------------------------------------------------------------------------------------

    def exchange(
        self, method: str, path: str, *, params: Params | None, json_body: object, data: Form | None
    ) -> httpx.Response:
        """One request to ``path`` (under ``apis/3.0/``); a 404 re-discovers the codebase once."""
        endpoint = endpoint_of(method, path)
        codebase = self.codebase()
        response = self.send(
            method,
            self._url(codebase, path),
            endpoint=endpoint,
            headers=self._headers(),
            params=params,
            json_body=json_body,
        )
        if response.status_code == 404 and self._rediscovered(codebase):
            response = self.send(
                method,
                self._url(self.codebase(), path),
                endpoint=endpoint,
                headers=self._headers(),
                params=params,
                json_body=json_body,
            )
        return response

    def get_all(self, path: str, *, what: str, params: Params | None = None) -> list[JSON]:
        """Every record of a list, following the ``Link: <...>; rel="next"`` header."""
        return list(self.pages(path, what=what, params=params))

    def pages(self, path: str, *, what: str, params: Params | None = None) -> Iterator[JSON]:
        """The records of a list, page by page as they are consumed (``Link`` header)."""
        query = {**(params or {}), "page": 1, "pageSize": self.config.page_size}
        first = self.call("GET", path, params=query, what=what)
        endpoint = endpoint_of("GET", path)

        def fetch(url: str) -> httpx.Response:
            response = self.send("GET", url, endpoint=endpoint, headers=self._headers())
            self.raise_for(response, what)
            return response

        for response in follow(first, self._next_page, fetch):
            yield from self._records(response, what)

    def fetch_signing_key(self, key_url: str) -> httpx.Response:
        """``GET key_url`` without credentials and outside the limits.

        The fetch happens on the webhook path, which must answer ConnectWise at once and never
        wait on (or be refused by) the tenant's call limits; it is made once per ``key_url`` and
        process, and goes to ConnectWise's key host, not to the tenant's API.
        """
        return self.send_unlimited("GET", key_url, headers=self._headers(authenticated=False))

    # -- hooks of the error ladder ----------------------------------------------------------------

    def detail(self, response: httpx.Response) -> str:
        """': code: message; field: message' from ConnectWise's error body, or ''."""
        try:
            body = lower_keys(response.json())
        except ValueError:
            return ""
        parts = [f"{body['code']}: {body.get('message') or ''}".strip()] if body.get("code") else []
        if not parts and body.get("message"):
            parts.append(str(body["message"]))
        for error in body.get("errors") or []:
            message = lower_keys(error).get("message")
            if message:
                parts.append(str(message))
        return ": " + "; ".join(parts)[:500] if parts else ""

    # -- internals --------------------------------------------------------------------------------

    def _url(self, codebase: str, path: str) -> str:
        return f"{self.origin}/{codebase}apis/3.0/{path}"

    def _headers(self, *, authenticated: bool = True) -> dict[str, str]:
        accept = "application/json"
        if self.config.api_version:
            accept = f"application/vnd.connectwise.com+json; version={self.config.api_version}"
        headers = {"clientId": self.config.client_id, "Accept": accept}
        if authenticated:
            user = f"{self.config.company_id}+{self.config.public_key.get_secret_value()}"
            token = f"{user}:{self.config.private_key.get_secret_value()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        return headers

    def _records(self, response: httpx.Response, what: str) -> list[JSON]:
        data = self.json_of(response, what)
        if not isinstance(data, list):
            raise PermanentError(f"ConnectWise answered {what} with no list")
        return [record for record in data if isinstance(record, dict)]

    def _next_page(self, response: httpx.Response) -> str | None:
        """The next page's URL, always on our own origin (credentials never go elsewhere)."""
        link = response.links.get("next", {}).get("url")
        return on_origin(link, self.origin) if link else None

    def _discover_codebase(self) -> str:
        company = quote(self.config.company_id, safe="")
        url = f"{self.origin}/login/companyinfo/{company}"
        response = self.send("GET", url, endpoint="GET login/companyinfo", headers=self._headers())
        self.raise_for(response, "the company info")
        codebase = lower_keys(self.json_of(response, "the company info")).get("codebase")
        if not isinstance(codebase, str) or not _CODEBASE.match(codebase):
            raise PermanentError(
                f"ConnectWise does not know the company id {self.config.company_id!r}"
            )
        return codebase

    def codebase(self) -> str:
        """The codebase, discovered now unless it is configured or known already."""
        with self._codebase_lock:
            if self._codebase is None:
                self._codebase = self._discover_codebase()
            return self._codebase

    def _rediscovered(self, used: str) -> bool:
        """After a 404: whether the codebase moved since ``used`` (discovering it again once)."""
        if self.config.codebase is not None:
            return False  # configured by hand: never second-guessed
        with self._codebase_lock:
            if self._codebase == used:
                self._codebase = self._discover_codebase()
            return self._codebase != used
