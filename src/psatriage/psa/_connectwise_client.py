"""The HTTP side of the ConnectWise adapter: codebase, headers, limits, paging and error mapping.

Every API call goes to ``{origin}/{codebase}apis/3.0/`` with Basic auth ``company+public:private``
and a ``clientId`` header; the codebase comes from ``{origin}/login/companyinfo/{company}`` unless
configured, and is discovered again once when the API answers 404 (hosted instances move).
Lists follow the ``Link: <...>; rel="next"`` header, always on our own origin.

Every call to the tenant's ConnectWise, codebase discovery included, passes through one
``CallLimits`` per adapter (``send``): a rolling window for the whole tenant and a cap on calls in
flight per endpoint (``"GET service/tickets/{id}"``). ConnectWise publishes no number, so both
are the tenant's ``requests_per_window``/``window_seconds`` and ``concurrent_per_endpoint``.
The callback signing-key fetch is the one request that does not pass through them: see
``fetch_signing_key``.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from psatriage.errors import AuthFailed, PermanentError, TransientError
from psatriage.psa._connectwise_config import ConnectWiseConfig
from psatriage.psa._wire import lower_keys as _ci
from psatriage.psa._wire import retry_after as _retry_after

JSON = dict[str, Any]
Params = Mapping[str, str | int]
_CODEBASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/$")
_ID = re.compile(r"/\d+(?=/|$)")


class ConnectWiseClient:
    """Authenticated, limited calls to one ConnectWise tenant. Shared by its worker threads."""

    def __init__(self, tenant: str, config: ConnectWiseConfig, http: httpx.Client) -> None:
        self.config, self.http = config, http
        self.origin = config.base_url or f"https://{config.site}"
        self.limits = config.call_limits(f"connectwise:{tenant}")
        self._codebase = config.codebase
        self._codebase_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ConnectWiseClient(origin={self.origin!r})"

    # -- calls --------------------------------------------------------------------------------

    def api(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Params | None = None,
        json_body: object = None,
        rejected: type[PermanentError] = PermanentError,
    ) -> httpx.Response:
        """One API call to ``path`` (under ``apis/3.0/``); a 404 re-discovers the codebase once."""
        endpoint = endpoint_of(method, path)
        codebase = self._current_codebase()
        url = f"{self.origin}/{codebase}apis/3.0/{path}"
        response = self.send(method, url, endpoint=endpoint, params=params, json_body=json_body)
        if response.status_code == 404 and self._rediscovered(codebase):
            url = f"{self.origin}/{self._codebase}apis/3.0/{path}"
            response = self.send(method, url, endpoint=endpoint, params=params, json_body=json_body)
        raise_for(response, what, rejected=rejected)
        return response

    def get_all(self, path: str, *, what: str, params: Params | None = None) -> list[JSON]:
        """Every record of a list, following the ``Link: <...>; rel="next"`` header."""
        return list(self.pages(path, what=what, params=params))

    def pages(self, path: str, *, what: str, params: Params | None = None) -> Iterator[JSON]:
        """The records of a list, page by page as they are consumed (``Link`` header)."""
        query = {**(params or {}), "page": 1, "pageSize": self.config.page_size}
        response = self.api("GET", path, params=query, what=what)
        yield from json_list(response)
        seen: set[str] = set()
        while (next_url := self._next_page(response)) is not None and str(next_url) not in seen:
            seen.add(str(next_url))
            response = self.send("GET", next_url, endpoint=endpoint_of("GET", path))
            raise_for(response, what)
            yield from json_list(response)

    def send(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        endpoint: str,
        params: Params | None = None,
        json_body: object = None,
    ) -> httpx.Response:
        """One authenticated request, counted against the tenant's limits as ``endpoint``.

        Waits briefly for a free slot; a full window raises ``CallLimitReached(retry_after)``
        before anything is sent.
        """
        with self.limits.call(endpoint):
            return self._request(method, url, params=params, json_body=json_body)

    def fetch_signing_key(self, key_url: str) -> httpx.Response:
        """``GET key_url`` without credentials and outside the limits.

        The fetch happens on the webhook path, which must answer ConnectWise at once and never
        wait on (or be refused by) the tenant's call limits; it is made once per ``key_url`` and
        process, and goes to ConnectWise's key host, not to the tenant's API.
        """
        return self._request("GET", key_url, authenticated=False)

    # -- under the limits ---------------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        params: Params | None = None,
        json_body: object = None,
        authenticated: bool = True,
    ) -> httpx.Response:
        try:
            return self.http.request(
                method,
                url,
                params=params,
                json=json_body,
                headers=self._headers(authenticated=authenticated),
                follow_redirects=False,
            )
        except httpx.TransportError as exc:
            raise TransientError(
                f"ConnectWise did not answer {method} {httpx.URL(url).path}: {type(exc).__name__}"
            ) from exc

    def _headers(self, *, authenticated: bool) -> dict[str, str]:
        accept = "application/json"
        if self.config.api_version:
            accept = f"application/vnd.connectwise.com+json; version={self.config.api_version}"
        headers = {"clientId": self.config.client_id, "Accept": accept}
        if authenticated:
            user = f"{self.config.company_id}+{self.config.public_key.get_secret_value()}"
            token = f"{user}:{self.config.private_key.get_secret_value()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        return headers

    # -- codebase -----------------------------------------------------------------------------

    def _discover_codebase(self) -> str:
        company = quote(self.config.company_id, safe="")
        url = f"{self.origin}/login/companyinfo/{company}"
        response = self.send("GET", url, endpoint="GET login/companyinfo")
        raise_for(response, "the company info")
        codebase = _ci(json_of(response)).get("codebase")
        if not isinstance(codebase, str) or not _CODEBASE.match(codebase):
            raise PermanentError(
                f"ConnectWise does not know the company id {self.config.company_id!r}"
            )
        return codebase

    def _current_codebase(self) -> str:
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

    def _next_page(self, response: httpx.Response) -> httpx.URL | None:
        """The next page's URL, always on our own origin (credentials never go elsewhere)."""
        link = response.links.get("next", {}).get("url")
        if not link:
            return None
        return httpx.URL(self.origin).copy_with(raw_path=httpx.URL(link).raw_path)


def endpoint_of(method: str, path: str) -> str:
    """What a call counts against: ``"GET service/tickets/{id}/notes"`` (ids and query left out,
    so one endpoint is one key however many records it is asked for)."""
    return f"{method.upper()} {_ID.sub('/{id}', path.split('?', 1)[0].strip('/'))}"


# -- error mapping ----------------------------------------------------------------------------


def raise_for(
    response: httpx.Response, what: str, *, rejected: type[PermanentError] = PermanentError
) -> None:
    """Turn a non-2xx answer into the error tree (transport errors are mapped in ``_request``)."""
    status = response.status_code
    if status < 300:
        return
    detail = _error_detail(response)
    if status in (401, 403):
        raise AuthFailed(f"ConnectWise refused the API member ({status}) for {what}{detail}")
    if status == 429 or status >= 500:
        raise TransientError(
            f"ConnectWise answered {status} for {what}{detail}",
            retry_after=_retry_after(response.headers.get("retry-after")),
        )
    if status == 404:
        raise PermanentError(f"{what} not found")
    if status == 400:
        raise rejected(f"ConnectWise rejected {what} (400){detail}")
    if status < 400:
        raise PermanentError(f"ConnectWise redirected the request for {what} ({status})")
    raise PermanentError(f"ConnectWise answered {status} for {what}{detail}")


def _error_detail(response: httpx.Response) -> str:
    """': code: message; field: message' from ConnectWise's error body, or ''."""
    try:
        body = _ci(response.json())
    except ValueError:
        return ""
    parts = [f"{body['code']}: {body.get('message') or ''}".strip()] if body.get("code") else []
    if not parts and body.get("message"):
        parts.append(str(body["message"]))
    for error in body.get("errors") or []:
        message = _ci(error).get("message")
        if message:
            parts.append(str(message))
    return ": " + "; ".join(parts)[:500] if parts else ""


def json_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise PermanentError(f"ConnectWise answered {response.url.path} with non-JSON") from exc


def json_list(response: httpx.Response) -> list[JSON]:
    data = json_of(response)
    if not isinstance(data, list):
        raise PermanentError(f"ConnectWise answered {response.url.path} with no list")
    return [record for record in data if isinstance(record, dict)]
